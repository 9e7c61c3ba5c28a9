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
    let rows = buf.chunks_exact(stride).take(h);
    let bits = depth as usize;
    // Samples of one row, as Pillow widens them to 8 bits (16-bit: the high byte).
    let samples = |row: &[u8], per_pixel: usize| -> Vec<u8> {
        match depth {
            BitDepth::Sixteen => row
                .chunks_exact(2)
                .map(|s| s[0])
                .take(w * per_pixel)
                .collect(),
            BitDepth::Eight => row[..w * per_pixel].to_vec(),
            _ => (0..w * per_pixel)
                .map(|i| (row[i * bits / 8] >> (8 - bits - i * bits % 8)) & ((1 << bits) - 1))
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
    let built = "a buffer of the frame's own size";
    let img: DynamicImage = match color {
        ColorType::Grayscale => {
            if depth == BitDepth::Sixteen && trns.is_none() {
                // Pillow's I;16: all 16 bits, clipped only when converted.
                let v: Vec<u16> = rows
                    .flat_map(|r| {
                        r.chunks_exact(2)
                            .take(w)
                            .map(|s| u16::from_be_bytes([s[0], s[1]]))
                    })
                    .collect();
                ImageBuffer::<Luma<u16>, _>::from_raw(w as u32, h as u32, v)
                    .expect(built)
                    .into()
            } else {
                let gray: Vec<u8> = match depth {
                    // I;16 converts by clipping, not by its high byte.
                    BitDepth::Sixteen => rows
                        .flat_map(|r| {
                            r.chunks_exact(2)
                                .take(w)
                                .map(|s| u16::from_be_bytes([s[0], s[1]]).min(255) as u8)
                        })
                        .collect(),
                    _ => {
                        let scale = 255 / ((1u16 << bits) - 1) as u8;
                        rows.flat_map(|r| samples(r, 1))
                            .map(|v| v * scale)
                            .collect()
                    }
                };
                match key(0) {
                    Some(k) => GrayAlphaImage::from_raw(
                        w as u32,
                        h as u32,
                        gray.iter()
                            .flat_map(|&v| [v, if v == k { 0 } else { 255 }])
                            .collect(),
                    )
                    .expect(built)
                    .into(),
                    None => GrayImage::from_raw(w as u32, h as u32, gray)
                        .expect(built)
                        .into(),
                }
            }
        }
        ColorType::Rgb => {
            let rgb: Vec<u8> = rows.flat_map(|r| samples(r, 3)).collect();
            match (key(0), key(1), key(2)) {
                (Some(r), Some(g), Some(b)) => RgbaImage::from_raw(
                    w as u32,
                    h as u32,
                    rgb.chunks_exact(3)
                        .flat_map(|p| [p[0], p[1], p[2], if p == [r, g, b] { 0 } else { 255 }])
                        .collect(),
                )
                .expect(built)
                .into(),
                _ => RgbImage::from_raw(w as u32, h as u32, rgb)
                    .expect(built)
                    .into(),
            }
        }
        ColorType::Indexed => {
            let palette =
                palette.ok_or_else(|| Failure::Bad("palette image without PLTE".into()))?;
            let alphas = trns.unwrap_or_default();
            let rgba: Vec<u8> = rows
                .flat_map(|r| samples(r, 1))
                .flat_map(|i| {
                    let i = i as usize;
                    // Pillow's palettes start as a gray ramp; PLTE overwrites its head.
                    let c = palette
                        .get(3 * i..3 * i + 3)
                        .map_or([i as u8; 3], |c| [c[0], c[1], c[2]]);
                    [c[0], c[1], c[2], alphas.get(i).copied().unwrap_or(255)]
                })
                .collect();
            let opaque = rgba.chunks_exact(4).all(|p| p[3] == 255);
            let img = RgbaImage::from_raw(w as u32, h as u32, rgba).expect(built);
            if opaque {
                DynamicImage::ImageRgba8(img).to_rgb8().into()
            } else {
                img.into()
            }
        }
        ColorType::GrayscaleAlpha => {
            let la: Vec<u8> = rows.flat_map(|r| samples(r, 2)).collect();
            GrayAlphaImage::from_raw(w as u32, h as u32, la)
                .expect(built)
                .into()
        }
        ColorType::Rgba => {
            let rgba: Vec<u8> = rows.flat_map(|r| samples(r, 4)).collect();
            RgbaImage::from_raw(w as u32, h as u32, rgba)
                .expect(built)
                .into()
        }
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
