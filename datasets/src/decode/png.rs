//! PNG as Pillow opens it: the default image (IDAT, so an APNG's first frame), samples
//! unpacked by Pillow's rules (1-bit to 0/255, 2- and 4-bit gray scaled to 8 bits,
//! 16-bit colour to its high byte, 16-bit gray kept), and a tRNS chunk applied the way
//! Pillow's `convert("RGBA")` applies it: after the pixels are 8-bit, a pixel becomes
//! transparent where it equals the low byte of each key sample (so 16-bit and 2/4-bit
//! keys rarely match, as in Pillow). Chunk checksums are checked where Pillow checks
//! them, on every chunk before the image data; a missing IEND is tolerated.

use std::borrow::Cow;
use std::io::Cursor;

use ::png::{BitDepth, ColorType, Transformations};
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, Luma, RgbImage, RgbaImage};

use super::orientation::{self, Metadata};
use super::Failure;

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<(DynamicImage, Metadata), Failure> {
    check_header_crcs(data)?;
    let bad = |e: ::png::DecodingError| Failure::Bad(e.to_string());
    // The decoder reads on to the chunk after the image data; Pillow stops at the data's
    // end, so a file that ends there gets the IEND it lacks.
    const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
    let whole: Cow<[u8]> = if data.ends_with(&IEND) {
        Cow::Borrowed(data)
    } else {
        Cow::Owned([data, &IEND].concat())
    };
    let mut decoder =
        ::png::Decoder::new_with_limits(Cursor::new(&*whole), ::png::Limits { bytes: usize::MAX });
    decoder.set_transformations(Transformations::IDENTITY);
    decoder.ignore_checksums(true);
    let mut reader = decoder.read_info().map_err(bad)?;
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    Failure::check_size(w, h, max_pixels)?;
    let (color, depth) = (info.color_type, info.bit_depth);
    let trns = info.trns.as_ref().map(|t| t.to_vec());
    let palette = info.palette.as_ref().map(|p| p.to_vec());
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Failure::Bad("image too large for memory".into()))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(bad)?;
    let stride = frame.line_size;
    let (w, h) = (frame.width as usize, frame.height as usize);
    buf.truncate(stride * h);
    let bits = depth as usize;
    // Every sample, row after row, widened to 8 bits as Pillow widens them (16-bit: the
    // high byte). Rows of 8 and 16 bits are packed, so they need no row loop.
    let widen = |buf: Vec<u8>, per_pixel: usize| -> Vec<u8> {
        match depth {
            BitDepth::Eight => buf,
            BitDepth::Sixteen => buf.iter().step_by(2).copied().collect(),
            _ => buf
                .chunks_exact(stride)
                .flat_map(|row| {
                    (0..w * per_pixel).map(move |i| {
                        (row[i * bits / 8] >> (8 - bits - i * bits % 8)) & ((1 << bits) - 1)
                    })
                })
                .collect(),
        }
    };
    // Key samples are kept whole at 16 bits and as bytes below; Pillow compares low bytes.
    let key = |i: usize| {
        let at = if depth == BitDepth::Sixteen {
            2 * i + 1
        } else {
            i
        };
        trns.as_ref().and_then(|t| t.get(at).copied())
    };
    let (w32, h32) = (w as u32, h as u32);
    let built = "a buffer of the frame's own size";
    let img: DynamicImage = match color {
        ColorType::Grayscale if depth == BitDepth::Sixteen && trns.is_none() => {
            // Pillow's I;16: all 16 bits, clipped only when converted.
            let v = buf
                .chunks_exact(2)
                .map(|s| u16::from_be_bytes([s[0], s[1]]));
            ImageBuffer::<Luma<u16>, _>::from_raw(w32, h32, v.collect())
                .expect(built)
                .into()
        }
        ColorType::Grayscale => {
            let gray: Vec<u8> = match depth {
                // I;16 converts by clipping, not by its high byte.
                BitDepth::Sixteen => buf
                    .chunks_exact(2)
                    .map(|s| u16::from_be_bytes([s[0], s[1]]).min(255) as u8)
                    .collect(),
                _ => {
                    let scale = 255 / ((1u16 << bits) - 1) as u8;
                    let mut g = widen(buf, 1);
                    if scale != 1 {
                        g.iter_mut().for_each(|v| *v *= scale);
                    }
                    g
                }
            };
            match key(0) {
                Some(k) => {
                    let la = gray.iter().flat_map(|&v| [v, if v == k { 0 } else { 255 }]);
                    GrayAlphaImage::from_raw(w32, h32, la.collect())
                        .expect(built)
                        .into()
                }
                None => GrayImage::from_raw(w32, h32, gray).expect(built).into(),
            }
        }
        ColorType::Rgb => {
            let rgb = widen(buf, 3);
            match (key(0), key(1), key(2)) {
                (Some(r), Some(g), Some(b)) => {
                    let rgba = rgb
                        .chunks_exact(3)
                        .flat_map(|p| [p[0], p[1], p[2], if p == [r, g, b] { 0 } else { 255 }]);
                    RgbaImage::from_raw(w32, h32, rgba.collect())
                        .expect(built)
                        .into()
                }
                _ => RgbImage::from_raw(w32, h32, rgb).expect(built).into(),
            }
        }
        ColorType::Indexed => {
            let palette =
                palette.ok_or_else(|| Failure::Bad("palette image without PLTE".into()))?;
            // Pillow's palettes start as a gray ramp; PLTE overwrites its head, tRNS gives
            // the head's alphas.
            let table: Vec<[u8; 4]> = (0..256)
                .map(|i| {
                    let c = palette
                        .get(3 * i..3 * i + 3)
                        .map_or([i as u8; 3], |c| [c[0], c[1], c[2]]);
                    let a = trns.as_ref().and_then(|t| t.get(i)).copied().unwrap_or(255);
                    [c[0], c[1], c[2], a]
                })
                .collect();
            let indices = widen(buf, 1);
            if trns.is_some() {
                let rgba = indices.iter().flat_map(|&i| table[i as usize]);
                RgbaImage::from_raw(w32, h32, rgba.collect())
                    .expect(built)
                    .into()
            } else {
                let rgb = indices.iter().flat_map(|&i| {
                    let [r, g, b, _] = table[i as usize];
                    [r, g, b]
                });
                RgbImage::from_raw(w32, h32, rgb.collect())
                    .expect(built)
                    .into()
            }
        }
        ColorType::GrayscaleAlpha => GrayAlphaImage::from_raw(w32, h32, widen(buf, 2))
            .expect(built)
            .into(),
        ColorType::Rgba => RgbaImage::from_raw(w32, h32, widen(buf, 4))
            .expect(built)
            .into(),
    };
    Ok((img, orientation::png(data)))
}

/// Pillow reads the chunks before the first IDAT with their CRCs checked, and refuses
/// the file when one is wrong; the image data's own checksums it never checks.
fn check_header_crcs(data: &[u8]) -> Result<(), Failure> {
    let mut i = 8;
    while let Some(head) = data.get(i..i + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if &head[4..] == b"IDAT" {
            return Ok(());
        }
        let end = (i + 8).saturating_add(len);
        let (Some(chunk), Some(crc)) = (data.get(i + 4..end), data.get(end..end + 4)) else {
            return Err(Failure::Bad("truncated before the image data".into()));
        };
        if crc32(chunk).to_be_bytes() != crc {
            let name = String::from_utf8_lossy(&head[4..]);
            return Err(Failure::Bad(format!("bad checksum in the {name} chunk")));
        }
        i = end + 4;
    }
    Ok(())
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = flate2::Crc::new();
    h.update(bytes);
    h.sum()
}
