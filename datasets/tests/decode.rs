//! Decoding image files: EXIF orientation, the pixel budget, and files that are not
//! images. PNGs are built here, chunk by chunk, so each case is exactly what it claims.

use std::path::{Path, PathBuf};

use datasets::{load_image, DecodeError, DEFAULT_MAX_PIXELS};
use image::{ImageFormat, Rgb, RgbImage};

// The integration tests' shared helpers live with the CLI's tests.
#[path = "../../captioner-cli/tests/common/mod.rs"]
mod common;
use common::png_chunk;

/// A scratch file `name` in a folder of its own, removed with it when the test passes
/// (the folder is held for its `Drop`).
struct Scratch(#[allow(dead_code)] common::Tmp, PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.1
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.1
    }
}

fn tmp(name: &str) -> Scratch {
    let dir = common::tmp(&format!("decode-{name}"));
    let path = dir.join(name);
    Scratch(dir, path)
}

/// A 3x2 image whose top-left pixel is red and the rest black, as PNG bytes.
fn marked_png() -> Vec<u8> {
    let mut img = RgbImage::new(3, 2);
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
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
    let png = with_chunk_after_header(&marked_png(), &png_chunk(b"eXIf", &exif_orientation(6)));
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
    bomb.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
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
            }
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
        matches!(err, DecodeError::Unknown { .. }) && err.to_string().contains("notes.png"),
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

fn write_png<P: image::Pixel<Subpixel = u16> + image::PixelWithColorType>(
    name: &str,
    width: u32,
    samples: Vec<u16>,
) -> Scratch {
    let height = samples.len() as u32 / width / P::CHANNEL_COUNT as u32;
    let img = image::ImageBuffer::<P, Vec<u16>>::from_raw(width, height, samples).unwrap();
    let path = tmp(name);
    img.save_with_format(&path, ImageFormat::Png).unwrap();
    path
}

/// Pillow 13 opens 16-bit RGB and RGBA PNGs as 8-bit RGB/RGBA by keeping the high byte
/// of each sample (raw mode `RGB;16B`), not by rounding: 0xABFF is 171, 0x00FF is 0.
/// The expected values are what `Image.open(...).getdata()` gave for these samples.
#[test]
fn sixteen_bit_colour_is_opened_as_pil_opens_it() {
    let rgb = write_png::<image::Rgb<u16>>(
        "rgb16.png",
        3,
        vec![
            0x1234, 0xABFF, 0x0080, 0xFF7F, 0x00FF, 0x8080, 0xFFFF, 0, 257,
        ],
    );
    let img = load_image(&rgb, DEFAULT_MAX_PIXELS).unwrap();
    let img = img.as_rgb8().expect("8-bit RGB, as PIL's mode RGB");
    let pixels: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert_eq!(pixels, [[18, 171, 0], [255, 0, 128], [255, 0, 1]]);

    let rgba = write_png::<image::Rgba<u16>>(
        "rgba16.png",
        2,
        vec![
            0x1234, 0xABFF, 0x0080, 0x8000, 0xFF7F, 0x00FF, 0x8080, 0xFFFF,
        ],
    );
    let img = load_image(&rgba, DEFAULT_MAX_PIXELS).unwrap();
    let img = img.as_rgba8().expect("8-bit RGBA");
    let pixels: Vec<[u8; 4]> = img.pixels().map(|p| p.0).collect();
    assert_eq!(pixels, [[18, 171, 0, 128], [255, 0, 128, 255]]);

    // PIL opens 16-bit gray as mode I;16 (all 16 bits kept); so do we.
    let gray = write_png::<image::Luma<u16>>("gray16.png", 3, vec![0, 1000, 65535]);
    let img = load_image(&gray, DEFAULT_MAX_PIXELS).unwrap();
    let img = img.as_luma16().expect("16-bit gray kept");
    assert_eq!(img.as_raw(), &[0, 1000, 65535]);
}

/// A 4x1 CMYK JPEG as Pillow 13 writes it (Adobe marker, inverted CMYK), made with
/// `im = Image.new("CMYK", (4, 1)); im.putdata([(0, 0, 0, 0), (255, 0, 0, 0),
/// (100, 50, 20, 30), (10, 200, 30, 128)]); im.save("cmyk.jpg", quality=100)`.
const CMYK_JPEG_HEX: [&str; 9] = [
    "ffd8ffee000e41646f626500640000000000ffdb00430001010101010101010101010101010101010101010101010101",
    "010101010101010101010101010101010101010101010101010101010101010101010101010101ffc000140800010004",
    "044311004d11005911004b1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc4",
    "00b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115",
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566",
    "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2",
    "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000e0443004d005900",
    "4b00003f00fe98ff00e094dff24e3f6ccffb4acffc150fff005b43e2d573bff073bffca48343ff00b369f861ff00a95f",
    "c4bafed3be2aff00c8e57bff005eb61ffa4b1d7ead7fc1657fe4ee34affb23be0dff00d3f78cabffd9",
];

/// CMYK JPEGs arrive as RGB with the values of Pillow's `convert("RGB")` (what
/// transformers' `convert_to_rgb` gives for them).
#[test]
fn cmyk_jpegs_become_rgb_as_pil_converts_them() {
    let hex: String = CMYK_JPEG_HEX.concat();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let path = tmp("cmyk.jpg");
    std::fs::write(&path, bytes).unwrap();
    let img = load_image(&path, DEFAULT_MAX_PIXELS).unwrap().to_rgb8();
    let pixels: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert_eq!(
        pixels,
        [
            [255, 255, 255],
            [0, 255, 255],
            [137, 181, 207],
            [122, 27, 112]
        ]
    );
}
