//! Decoding image files: EXIF orientation, the pixel budget, and files that are not
//! images. PNGs are built here, chunk by chunk, so each case is exactly what it claims.

use std::path::PathBuf;

use datasets::{load_image, DecodeError, DEFAULT_MAX_PIXELS};
use image::{ImageFormat, Rgb, RgbImage};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-datasets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A 3x2 image whose top-left pixel is red and the rest black, as PNG bytes.
fn marked_png() -> Vec<u8> {
    let mut img = RgbImage::new(3, 2);
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut covered = kind.to_vec();
    covered.extend_from_slice(data);
    out.extend_from_slice(&crc32(&covered).to_be_bytes());
    out
}

/// Inserts `extra` right after the IHDR chunk (8-byte signature + 25-byte IHDR).
fn with_chunk_after_header(png: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend_from_slice(extra);
    out.extend_from_slice(&png[33..]);
    out
}

/// A little-endian TIFF/EXIF block holding only Orientation = `value`.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut e = b"II*\0".to_vec();
    e.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
    e.extend_from_slice(&1u16.to_le_bytes()); // one entry
    e.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    e.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    e.extend_from_slice(&1u32.to_le_bytes()); // count
    e.extend_from_slice(&value.to_le_bytes());
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    e
}

#[test]
fn exif_orientation_is_applied() {
    // 6 = "rotate 90 degrees clockwise to display": 3x2 becomes 2x3, and the red
    // top-left pixel moves to the top-right.
    let png = with_chunk_after_header(&marked_png(), &chunk(b"eXIf", &exif_orientation(6)));
    let path = tmp("rotated.png");
    std::fs::write(&path, png).unwrap();
    let img = load_image(&path, DEFAULT_MAX_PIXELS).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (2, 3));
    assert_eq!(img.get_pixel(1, 0), &Rgb([255, 0, 0]));
    assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 0]));

    let plain = tmp("plain.png");
    std::fs::write(&plain, marked_png()).unwrap();
    let img = load_image(&plain, DEFAULT_MAX_PIXELS).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (3, 2));
    assert_eq!(img.get_pixel(0, 0), &Rgb([255, 0, 0]));
}

#[test]
fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
    // Rewrite IHDR to claim 50000 x 50000 (2.5 gigapixels).
    let png = marked_png();
    let mut ihdr = png[16..29].to_vec();
    ihdr[..4].copy_from_slice(&50_000u32.to_be_bytes());
    ihdr[4..8].copy_from_slice(&50_000u32.to_be_bytes());
    let mut bomb = png[..8].to_vec();
    bomb.extend_from_slice(&chunk(b"IHDR", &ihdr));
    bomb.extend_from_slice(&png[33..]);
    let path = tmp("bomb.png");
    std::fs::write(&path, bomb).unwrap();
    let err = load_image(&path, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 50_000,
                height: 50_000,
                ..
            } | DecodeError::Image { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bomb.png"), "{err}");

    // And a real image over a small budget.
    let small = tmp("small.png");
    std::fs::write(&small, marked_png()).unwrap();
    let err = load_image(&small, 5).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 3,
                height: 2,
                max: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn files_that_are_not_images_name_the_file_and_the_problem() {
    let empty = tmp("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let err = load_image(&empty, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(
        matches!(err, DecodeError::Empty { .. }) && err.to_string().contains("empty.jpg"),
        "{err}"
    );

    let text = tmp("notes.png");
    std::fs::write(&text, b"hello, not a picture").unwrap();
    let err = load_image(&text, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(
        matches!(err, DecodeError::Image { .. }) && err.to_string().contains("notes.png"),
        "{err}"
    );

    let missing = tmp("missing.png");
    let err = load_image(&missing, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(
        matches!(err, DecodeError::Io { .. }) && err.to_string().contains("missing.png"),
        "{err}"
    );

    let png = marked_png();
    let cut = tmp("cut.png");
    std::fs::write(&cut, &png[..png.len() - 20]).unwrap();
    let err = load_image(&cut, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(err.to_string().contains("cut.png"), "{err}");
}
