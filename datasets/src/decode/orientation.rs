//! The orientation Pillow's `ImageOps.exif_transpose` reads: the EXIF Orientation tag
//! (0x0112) of the first IFD wherever the format keeps EXIF, else an XMP
//! `tiff:Orientation`, as `Image.getexif` falls back to it.

use image::metadata::Orientation;

/// EXIF and XMP blocks as a format's container holds them.
#[derive(Debug, Default)]
pub(super) struct Metadata {
    pub exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

impl Metadata {
    /// The transform to apply; values Pillow does not map (0, 1, 9, ...) leave the image.
    pub fn orientation(&self) -> Orientation {
        let tag = self.exif.as_deref().and_then(exif_tag);
        let value = match tag {
            Some(v) => v,
            None => self.xmp.as_deref().and_then(xmp_tag).unwrap_or(1),
        };
        Orientation::from_exif(value.min(255) as u8).unwrap_or(Orientation::NoTransforms)
    }
}

/// The Orientation entry of IFD0 in a TIFF-structured EXIF block (a leading
/// `Exif\0\0` is skipped, as Pillow skips it). `Some` when the tag is there with one
/// integer value, whatever that value is: then Pillow does not look at XMP.
fn exif_tag(data: &[u8]) -> Option<u32> {
    let mut d = data;
    while let Some(rest) = d.strip_prefix(b"Exif\0\0") {
        d = rest;
    }
    let big = match d.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |i: usize| -> Option<u32> {
        let b: [u8; 2] = d.get(i..i + 2)?.try_into().ok()?;
        Some(if big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) } as u32)
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(i..i + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    for e in 0..entries {
        let at = ifd + 2 + 12 * e;
        if u16_at(at)? != 0x0112 {
            continue;
        }
        let (kind, count) = (u16_at(at + 2)?, u32_at(at + 4)?);
        if count != 1 {
            return None;
        }
        // Inline values sit at the entry's start, whatever the byte order.
        return match kind {
            1 | 6 => d.get(at + 8).map(|&b| b as u32),
            3 | 8 => u16_at(at + 8),
            4 | 9 => u32_at(at + 8),
            _ => None,
        };
    }
    None
}

/// Pillow's `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
fn xmp_tag(xmp: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(i) = find(&xmp[from..], KEY) {
        let rest = &xmp[from + i + KEY.len()..];
        let digit = match rest {
            [b'=', b'"', d, ..] | [b'>', d, ..] => Some(*d),
            _ => None,
        };
        if let Some(d) = digit.filter(u8::is_ascii_digit) {
            return Some((d - b'0') as u32);
        }
        from += i + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// EXIF (the first APP1 `Exif` segment) and XMP (the last APP1 XMP segment) of a JPEG,
/// read from the markers before its first scan, as Pillow's JPEG plugin reads them.
pub(super) fn jpeg(data: &[u8]) -> Metadata {
    let mut meta = Metadata::default();
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            break;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan, end of image
        }
        if (0xD0..=0xD8).contains(&marker) || marker == 0x01 {
            i += 2; // markers without a length
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        let Some(body) = data.get(i + 4..i + 2 + len.max(2)) else {
            break;
        };
        if marker == 0xE1 {
            if body.starts_with(b"Exif\0\0") {
                meta.exif.get_or_insert_with(|| body.to_vec());
            } else if let Some(x) = body.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0") {
                meta.xmp = Some(x.to_vec());
            }
        }
        i += 2 + len;
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmp_orientation_follows_pillows_pattern() {
        assert_eq!(xmp_tag(br#"<x tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(xmp_tag(b"<tiff:Orientation>8</tiff:Orientation>"), Some(8));
        assert_eq!(xmp_tag(b"tiff:Orientation='6' tiff:Orientation=\"3\""), Some(3));
        assert_eq!(xmp_tag(b"<tiff:Orientation> 6</tiff:Orientation>"), None);
    }
}
