//! BMP decoded as Pillow 13 opens it, so that the pixels a transformers processor sees
//! are Pillow's, byte for byte, and the files Pillow refuses are refused.
//!
//! Written from the format and from Pillow's observable behaviour, quirks included:
//! - headers of 12 (OS/2 v1), 40, 52, 56, 64 (OS/2 v2), 108 and 124 bytes; a height
//!   whose top byte is 0xFF means top-down, any other is read unsigned (as the width
//!   always is), so a negative width is a huge one;
//! - a palette that is exactly black/white makes mode `1`, one that is the identity gray
//!   ramp makes mode `L`, and those modes then read 1 or 8 bits a pixel whatever the
//!   file's depth says; indices past the palette are black; more than 256 entries fail;
//! - 5- and 6-bit channels scale as `v * 255 / max`, truncated;
//! - 32-bit BI_RGB ignores the 4th byte; BITFIELDS accept only Pillow's list of masks,
//!   and those with an alpha mask (or all-zero masks) are RGBA;
//! - RLE4/RLE8 unpack as one linear run of indices (skipped pixels are index 0), the
//!   word alignment after an absolute run follows the position in the file, and an
//!   image the stream does not fill is an error ("not enough image data");
//! - uncompressed data may end without the last row's padding, but not earlier.

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use super::Failure;

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
    let offset = u32_at(data, 10)? as u64;
    let header_size = u32_at(data, 14)?;
    if !matches!(header_size, 12 | 40 | 52 | 56 | 64 | 108 | 124) {
        return Err(bad(format!("unsupported BMP header size ({header_size})")));
    }
    // Pillow reads on from here: the 40-byte header's masks, then the palette.
    let mut pos = 14 + header_size as usize;
    if data.len() < pos {
        return Err(bad("truncated BMP header"));
    }
    let field16 = |at: usize| u16_at(data, 14 + at);
    let field32 = |at: usize| u32_at(data, 14 + at);
    let (width, height, top_down, bits, compression, colors, entry_size);
    if header_size == 12 {
        (width, height, top_down) = (field16(4)?, field16(6)?, false);
        (bits, compression, colors, entry_size) = (field16(10)?, 0, 0, 3);
    } else {
        let stored_height = field32(8)?;
        top_down = stored_height >> 24 == 0xFF;
        width = field32(4)?;
        height = if top_down {
            stored_height.wrapping_neg()
        } else {
            stored_height
        };
        (bits, compression, colors, entry_size) = (field16(14)?, field32(16)?, field32(32)?, 4);
    }
    let mut masks = [0u32; 4];
    if compression == 3 {
        if header_size >= 52 {
            let alpha = if header_size >= 56 { field32(52)? } else { 0 };
            masks = [field32(40)?, field32(44)?, field32(48)?, alpha];
        } else {
            for mask in &mut masks[..3] {
                *mask = u32_at(data, pos)?;
                pos += 4;
            }
        }
    }
    if width == 0 || height == 0 {
        return Err(bad("BMP image has no pixels"));
    }
    Failure::check_size(width, height, max_pixels)?;

    let colors = match colors {
        0 if bits <= 8 => 1u64 << bits,
        n => n as u64,
    };
    // A data offset pointing right after the header means the palette was forgotten.
    let mut start = offset;
    if offset == 14 + header_size as u64 && bits <= 8 {
        start += entry_size * colors;
    }
    let rle4 = match (compression, bits) {
        (0 | 3, _) => None,
        (1 | 2, 1 | 4 | 8) => Some(compression == 2),
        (1 | 2, _) => return Err(bad("RLE compression on a BMP without a palette")),
        _ => return Err(bad(format!("unsupported BMP compression ({compression})"))),
    };
    if compression == 3 && !supported(bits, masks) {
        return Err(bad("unsupported BMP bitfields layout"));
    }
    let (pixel, sample_bits) = match (bits, compression) {
        (1 | 4 | 8, _) => palette(data, &mut pos, colors, entry_size, bits)?,
        (16, _) => (packed16(masks), 16),
        (24, _) => (Pixel::Bytes([16, 8, 0], None), 24),
        (32, 0) => (Pixel::Bytes([16, 8, 0], None), 32),
        (32, _) => (packed32(masks), 32),
        _ => return Err(bad(format!("unsupported BMP pixel depth ({bits})"))),
    };
    // Offset 0 means "right here", after what was read so far.
    let start = if start == 0 {
        pos as u128
    } else {
        start as u128
    };
    let (w, h) = (width as usize, height as usize);
    match rle4 {
        Some(rle4) => {
            let indices = unpack_rle(data, start, w, h, rle4)?;
            Ok(assemble(w, h, top_down, &pixel, 8, |y| {
                &indices[y * w..(y + 1) * w]
            }))
        }
        None => {
            // Pillow memory-maps the file when its raw mode is the image's own (8-bit P,
            // and L) and all rows fit, rows then at least `width` bytes apart; otherwise
            // its raw decoder needs every row but the last one's padding, and refuses
            // rows too short for their pixels (L read from a 4-bit file).
            let stride = ((width as u128 * bits as u128 + 31) >> 3) & !3;
            let row_bytes = (width as u128 * sample_bits as u128).div_ceil(8);
            let mappable = matches!(pixel, Pixel::Gray | Pixel::Index(_)) && sample_bits == 8;
            let mapped = stride.max(width as u128);
            let len = data.len() as u128;
            let step = if mappable && start + height as u128 * mapped <= len {
                mapped
            } else if row_bytes > stride {
                return Err(bad("BMP rows are narrower than their pixels"));
            } else if start + (height as u128 - 1) * stride + row_bytes <= len {
                stride
            } else {
                return Err(bad("image file is truncated"));
            };
            // Every row now lies inside `data`.
            let (start, step, row_bytes) = (start as usize, step as usize, row_bytes as usize);
            Ok(assemble(w, h, top_down, &pixel, sample_bits, |y| {
                &data[start + y * step..start + y * step + row_bytes]
            }))
        }
    }
}

/// What one stored sample becomes.
enum Pixel {
    /// Mode `P`: a palette index; indices past the palette are black.
    Index(Vec<[u8; 3]>),
    /// Mode `1`: zero is black, anything else white.
    Bilevel,
    /// Mode `L`: the sample is the gray level.
    Gray,
    /// 16-bit 5-5-5 or 5-6-5, blue in the low bits; the field is the green width.
    Rgb16(u32),
    /// Whole-byte channels at these shifts (red, green, blue), and alpha if any.
    Bytes([u32; 3], Option<u32>),
}

/// The palette after the header, or the `1`/`L` mode Pillow uses instead of a palette
/// that is black/white or the gray ramp; with the bits a sample then has.
fn palette(
    data: &[u8],
    pos: &mut usize,
    colors: u64,
    entry_size: u64,
    bits: u32,
) -> Result<(Pixel, u32), Failure> {
    if !(1..=65536).contains(&colors) {
        return Err(bad(format!("unsupported BMP palette size ({colors})")));
    }
    let (colors, entry_size) = (colors as usize, entry_size as usize);
    let table = data.get(*pos..).unwrap_or_default();
    let table = &table[..table.len().min(colors * entry_size)];
    *pos += table.len();
    // Two colours are compared with black and white, more with 0, 1, 2... (as bytes);
    // an entry cut short by the end of the file is not gray.
    let level = |i: usize| if colors == 2 { [0, 255][i] } else { i as u8 };
    let gray = (0..colors).all(|i| {
        let entry = table.get(i * entry_size..).unwrap_or_default();
        entry.get(..3) == Some(&[level(i); 3][..])
    });
    Ok(match (gray, colors <= 2) {
        (true, true) => (Pixel::Bilevel, 1),
        (true, false) => (Pixel::Gray, 8),
        (false, _) => {
            if table.len() / entry_size > 256 {
                return Err(bad("BMP palette has more than 256 colours"));
            }
            let entries = table.chunks_exact(entry_size);
            (
                Pixel::Index(entries.map(|e| [e[2], e[1], e[0]]).collect()),
                bits,
            )
        }
    })
}

/// Pillow's bitfields: these exact masks, no others.
fn supported(bits: u32, [r, g, b, a]: [u32; 4]) -> bool {
    const LAYOUTS_32: [[u32; 4]; 8] = [
        [0xFF0000, 0xFF00, 0xFF, 0],
        [0xFF000000, 0xFF0000, 0xFF00, 0],
        [0xFF000000, 0xFF00, 0xFF, 0],
        [0xFF000000, 0xFF0000, 0xFF00, 0xFF],
        [0xFF, 0xFF00, 0xFF0000, 0xFF000000],
        [0xFF0000, 0xFF00, 0xFF, 0xFF000000],
        [0xFF000000, 0xFF00, 0xFF, 0xFF0000],
        [0, 0, 0, 0],
    ];
    match bits {
        32 => LAYOUTS_32.contains(&[r, g, b, a]),
        24 => [r, g, b] == [0xFF0000, 0xFF00, 0xFF],
        16 => [r, g, b] == [0xF800, 0x7E0, 0x1F] || [r, g, b] == [0x7C00, 0x3E0, 0x1F],
        _ => false,
    }
}

/// 5-6-5 for its masks, else 5-5-5 (BI_RGB's implicit layout too).
fn packed16(masks: [u32; 4]) -> Pixel {
    Pixel::Rgb16(if masks[1] == 0x7E0 { 6 } else { 5 })
}

/// A supported 32-bit layout; all-zero masks read as BGRA, as in Pillow.
fn packed32(masks: [u32; 4]) -> Pixel {
    let [r, g, b, a] = if masks == [0; 4] {
        [0xFF0000, 0xFF00, 0xFF, 0xFF000000]
    } else {
        masks
    };
    let shift = |m: u32| m.trailing_zeros();
    Pixel::Bytes([shift(r), shift(g), shift(b)], (a != 0).then(|| shift(a)))
}

/// RLE4/RLE8 as Pillow unpacks it: indices appended to one buffer in file-row order;
/// a run stops at the row's end, an absolute run does not; end-of-line and delta fill
/// with index 0 (a delta moves `right + up * width` pixels on, linearly).
fn unpack_rle(
    data: &[u8],
    start: u128,
    width: usize,
    height: usize,
    rle4: bool,
) -> Result<Vec<u8>, Failure> {
    let total = width * height;
    let mut out: Vec<u8> = Vec::new();
    let mut pos = usize::try_from(start).unwrap_or(usize::MAX);
    let byte = |at: usize| data.get(at).copied();
    // Where the encoder believes it is in the row; an absolute run can leave it past the
    // end, and then runs add nothing until the next end-of-line or delta.
    let mut x = 0;
    while out.len() < total {
        let (Some(count), Some(value)) = (byte(pos), byte(pos.saturating_add(1))) else {
            break;
        };
        pos += 2;
        let pair = if rle4 {
            [value >> 4, value & 15]
        } else {
            [value; 2]
        };
        match (count, value) {
            (0, 0) => {
                out.resize(out.len().next_multiple_of(width), 0);
                x = 0;
            }
            (0, 1) => break,
            (0, 2) => {
                let (Some(right), Some(up)) = (byte(pos), byte(pos + 1)) else {
                    break;
                };
                pos += 2;
                let skip = (right as usize + up as usize * width).min(total - out.len());
                out.resize(out.len() + skip, 0);
                x = out.len() % width;
            }
            (0, n) => {
                let n = n as usize;
                let count = n.min(total - out.len());
                let stored = if rle4 { count.div_ceil(2) } else { count };
                let Some(src) = data.get(pos..pos + stored) else {
                    return Err(bad("not enough image data"));
                };
                pos += stored;
                if rle4 {
                    out.extend((0..count).map(|i| (src[i / 2] >> (4 - 4 * (i % 2))) & 15));
                } else {
                    out.extend_from_slice(src);
                }
                x += n;
                // Runs are word-aligned in the file, not relative to the pixel data.
                pos += pos % 2;
            }
            (n, _) => {
                let n = (n as usize).min(width.saturating_sub(x));
                out.extend((0..n).map(|i| pair[i % 2]));
                x += n;
            }
        }
    }
    if out.len() < total {
        return Err(bad("not enough image data"));
    }
    out.truncate(total);
    Ok(out)
}

/// The image from its stored rows (`row(y)` is the y-th row in the file, bottom-up
/// unless `top_down`), each sample turned into a pixel as Pillow's mode has it.
fn assemble<'a>(
    width: usize,
    height: usize,
    top_down: bool,
    pixel: &Pixel,
    sample_bits: u32,
    row: impl Fn(usize) -> &'a [u8],
) -> DynamicImage {
    let channels = match pixel {
        Pixel::Bilevel | Pixel::Gray => 1,
        Pixel::Bytes(_, Some(_)) => 4,
        _ => 3,
    };
    let mut out = vec![0u8; width * height * channels];
    for y in 0..height {
        let src = row(y);
        let dest_y = if top_down { y } else { height - 1 - y };
        let dest = &mut out[dest_y * width * channels..][..width * channels];
        // Plain 24-bit BGR, nearly every photo saved as BMP: bytes swapped, no sample loop.
        if let (Pixel::Bytes([16, 8, 0], None), 24) = (pixel, sample_bits) {
            for (px, bgr) in dest.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                px.copy_from_slice(&[bgr[2], bgr[1], bgr[0]]);
            }
            continue;
        }
        for (x, px) in dest.chunks_exact_mut(channels).enumerate() {
            let s = sample(src, x, sample_bits);
            match pixel {
                Pixel::Index(colours) => {
                    px.copy_from_slice(colours.get(s as usize).unwrap_or(&[0; 3]))
                }
                Pixel::Bilevel => px[0] = if s == 0 { 0 } else { 255 },
                Pixel::Gray => px[0] = s as u8,
                Pixel::Rgb16(green) => {
                    let scale = |v: u32, bits: u32| (v * 255 / ((1 << bits) - 1)) as u8;
                    px[0] = scale((s >> (5 + green)) & 31, 5);
                    px[1] = scale((s >> 5) & ((1 << green) - 1), *green);
                    px[2] = scale(s & 31, 5);
                }
                Pixel::Bytes(shifts, alpha) => {
                    for (c, shift) in shifts.iter().chain(alpha).enumerate() {
                        px[c] = (s >> shift) as u8;
                    }
                }
            }
        }
    }
    let (w, h) = (width as u32, height as u32);
    let whole = "a buffer of the image's own size";
    match channels {
        1 => GrayImage::from_raw(w, h, out).expect(whole).into(),
        3 => RgbImage::from_raw(w, h, out).expect(whole).into(),
        _ => RgbaImage::from_raw(w, h, out).expect(whole).into(),
    }
}

/// Sample `x` of a row: sub-byte samples high bits first, wider ones little-endian.
fn sample(row: &[u8], x: usize, bits: u32) -> u32 {
    match bits {
        1 => (row[x / 8] >> (7 - x % 8) & 1) as u32,
        4 => (row[x / 2] >> (4 - 4 * (x % 2)) & 15) as u32,
        _ => {
            let n = bits as usize / 8;
            row[x * n..(x + 1) * n]
                .iter()
                .rev()
                .fold(0, |v, &b| v << 8 | b as u32)
        }
    }
}

fn u16_at(data: &[u8], at: usize) -> Result<u32, Failure> {
    let b = data
        .get(at..at + 2)
        .ok_or_else(|| bad("truncated BMP header"))?;
    Ok(u16::from_le_bytes([b[0], b[1]]) as u32)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, Failure> {
    let b = data
        .get(at..at + 4)
        .ok_or_else(|| bad("truncated BMP header"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn bad(message: impl Into<String>) -> Failure {
    Failure::Bad(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a 40-byte header, the palette (BGRX) right after it, then `pixels`.
    fn bmp(
        width: i32,
        height: i32,
        bits: u16,
        compression: u32,
        palette: &[u8],
        pixels: &[u8],
    ) -> Vec<u8> {
        let offset = 14 + 40 + palette.len() as u32;
        let mut f = b"BM".to_vec();
        f.extend((offset + pixels.len() as u32).to_le_bytes());
        f.extend([0; 4]);
        f.extend(offset.to_le_bytes());
        f.extend(40u32.to_le_bytes());
        f.extend(width.to_le_bytes());
        f.extend(height.to_le_bytes());
        f.extend(1u16.to_le_bytes());
        f.extend(bits.to_le_bytes());
        f.extend(compression.to_le_bytes());
        f.extend([0; 20]);
        f.extend(palette);
        f.extend(pixels);
        f
    }

    #[test]
    fn five_bit_channels_scale_truncated() {
        // 0x4210 is 16 in every 5-bit channel: 16 * 255 / 31 = 131.6, and Pillow gives 131.
        let file = bmp(2, 1, 16, 0, &[], &[0x10, 0x42, 0xFF, 0x7F]);
        let img = decode(&file, 100).ok().unwrap().to_rgb8();
        assert_eq!(img.as_raw(), &[131, 131, 131, 255, 255, 255]);
    }

    #[test]
    fn rle8_skips_are_index_0_and_an_unfilled_image_fails() {
        let palette: Vec<u8> = (0..10u8).flat_map(|i| [0, 0, i * 20, 0]).collect();
        // Bottom row: 5, end of line (0, 0 follow); top row: delta one right (index 0),
        // then 7 and 9, end of bitmap.
        let stream = [1, 5, 0, 0, 0, 2, 1, 0, 1, 7, 1, 9, 0, 1];
        let img = decode(&bmp(3, 2, 8, 1, &palette, &stream), 100)
            .ok()
            .unwrap();
        let red: Vec<u8> = img.to_rgb8().pixels().map(|p| p.0[0]).collect();
        assert_eq!(red, [0, 140, 180, 100, 0, 0]);
        // Without the 9 the image is one pixel short.
        let short = [1, 5, 0, 0, 0, 2, 1, 0, 1, 7, 0, 1];
        assert!(decode(&bmp(3, 2, 8, 1, &palette, &short), 100).is_err());
    }
}
