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
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        } as u32)
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(i..i + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
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

/// EXIF and XMP of a PNG from any of its chunks, before or after the image data (Pillow
/// reads the ones after it when it loads the pixels); a later chunk replaces an earlier
/// one. EXIF is an `eXIf` chunk, else ImageMagick's "Raw profile type exif" text; XMP
/// is the text keyed "XML:com.adobe.xmp".
pub(super) fn png(data: &[u8]) -> Metadata {
    let mut meta = Metadata::default();
    let mut raw_profile = None;
    let mut i = 8; // after the signature
    while let Some(head) = data.get(i..i + 8) {
        let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
        let Some(body) = data.get(i + 8..(i + 8).saturating_add(len)) else {
            break;
        };
        match &head[4..] {
            b"eXIf" => meta.exif = Some(body.to_vec()),
            b"tEXt" | b"zTXt" | b"iTXt" => match png_text(&head[4..], body) {
                Some((b"XML:com.adobe.xmp", text)) => meta.xmp = Some(text),
                Some((b"Raw profile type exif", text)) => raw_profile = Some(text),
                _ => {}
            },
            b"IEND" => break,
            _ => {}
        }
        i += 12 + len;
    }
    if meta.exif.is_none() {
        meta.exif = raw_profile.as_deref().and_then(raw_profile_exif);
    }
    meta
}

/// A text chunk's keyword and its text, inflated if compressed (at most Pillow's 1 MB
/// of text).
fn png_text<'a>(kind: &[u8], body: &'a [u8]) -> Option<(&'a [u8], Vec<u8>)> {
    let nul = body.iter().position(|&b| b == 0)?;
    let (key, rest) = (&body[..nul], &body[nul + 1..]);
    let text = match kind {
        b"tEXt" => rest.to_vec(),
        b"zTXt" => inflate(rest.get(1..)?)?,
        _ => {
            // iTXt: compression flag, method, language\0, translated keyword\0, text.
            let (&compressed, rest) = rest.split_first()?;
            let rest = rest.get(1..)?;
            let lang = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[lang + 1..];
            let translated = rest.iter().position(|&b| b == 0)?;
            let text = &rest[translated + 1..];
            if compressed != 0 {
                inflate(text)?
            } else {
                text.to_vec()
            }
        }
    };
    Some((key, text))
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(1 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// Pillow's `bytes.fromhex("".join(text.split("\n")[3:]))`: the hex lines after the
/// profile's three header lines.
fn raw_profile_exif(text: &[u8]) -> Option<Vec<u8>> {
    let hex: Vec<u8> = text
        .split(|&b| b == b'\n')
        .skip(3)
        .flatten()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmp_orientation_follows_pillows_pattern() {
        assert_eq!(xmp_tag(br#"<x tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(xmp_tag(b"<tiff:Orientation>8</tiff:Orientation>"), Some(8));
        assert_eq!(
            xmp_tag(b"tiff:Orientation='6' tiff:Orientation=\"3\""),
            Some(3)
        );
        assert_eq!(xmp_tag(b"<tiff:Orientation> 6</tiff:Orientation>"), None);
    }
}
