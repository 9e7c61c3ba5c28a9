//! Decoding one image file as Pillow 13 opens it, which is what transformers' image
//! processors see: format from the content, a pixel budget checked against the header
//! before any pixel is decoded (decompression bombs), EXIF or XMP orientation applied as
//! `ImageOps.exif_transpose` applies it. JPEG, WebP and TIFF go through the C libraries
//! Pillow links (libjpeg-turbo, libwebp, libtiff); PNG's samples are unpacked, and GIF
//! and BMP decoded, by Pillow's rules here. Each module returns an image whose
//! conversion to RGB (`convert_to_rgb` in vision-encoder) gives Pillow's RGB bytes.

mod bmp;
mod gif;
mod jpeg;
mod orientation;
mod png;
mod tiff;
mod webp;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use image::DynamicImage;

/// 100 megapixels, as a default budget per image.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: is empty (0 bytes)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {width}x{height} is over the limit of {max} pixels", path.display())]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        max: u64,
    },
    #[error("{}: not a decodable image: not a JPEG, PNG, WebP, GIF, BMP or TIFF file", path.display())]
    Unknown { path: PathBuf },
    #[error("{}: not a decodable image ({format}): {message}", path.display())]
    Format {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
}

/// Why a format's decoder gave up, before the path is known.
pub(crate) enum Failure {
    TooLarge { width: u32, height: u32 },
    Bad(String),
    Unknown,
}

impl Failure {
    fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), Failure> {
        if width as u64 * height as u64 > max_pixels {
            return Err(Failure::TooLarge { width, height });
        }
        Ok(())
    }

    fn at(self, path: &Path, format: Format, max: u64) -> DecodeError {
        let path = path.to_path_buf();
        match self {
            Failure::TooLarge { width, height } => DecodeError::TooLarge {
                path,
                width,
                height,
                max,
            },
            Failure::Bad(message) => DecodeError::Format {
                path,
                format: format.name(),
                message,
            },
            Failure::Unknown => DecodeError::Unknown { path },
        }
    }
}

/// Which decoder a file goes to, from its first bytes (never its extension).
#[derive(Debug, Clone, Copy)]
enum Format {
    Jpeg,
    Webp,
    Png,
    Gif,
    Bmp,
    Tiff,
    Other,
}

impl Format {
    fn sniff(data: &[u8]) -> Self {
        // The TIFF headers Pillow's TiffImagePlugin accepts: classic TIFF and BigTIFF in
        // either byte order, and two with the version bytes swapped that it reads as
        // classic TIFF of that byte order. Which of them decode is `tiff`'s business.
        const TIFF_MAGICS: [&[u8; 4]; 6] =
            [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+", b"MM*\0", b"II\0*"];
        if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Format::Jpeg
        } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
            Format::Webp
        } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Format::Png
        } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
            Format::Gif
        } else if data.starts_with(b"BM") {
            Format::Bmp
        } else if TIFF_MAGICS.iter().any(|m| data.starts_with(*m)) {
            Format::Tiff
        } else {
            Format::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Webp => "WebP",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Other => "",
        }
    }

    /// The image with its orientation applied.
    fn decode(self, data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
        let (mut img, meta) = match self {
            Format::Jpeg => (jpeg::decode(data, max_pixels)?, orientation::jpeg(data)),
            Format::Webp => webp::decode(data, max_pixels)?,
            Format::Png => png::decode(data, max_pixels)?,
            Format::Gif => return gif::decode(data, max_pixels),
            Format::Bmp => return bmp::decode(data, max_pixels),
            Format::Tiff => return tiff::decode(data, max_pixels),
            Format::Other => return Err(Failure::Unknown),
        };
        img.apply_orientation(meta.orientation());
        Ok(img)
    }
}

/// Decodes `path` (jpeg, png, webp, gif's first frame, bmp, tiff) with its orientation
/// applied, refusing images of more than `max_pixels` pixels.
///
/// The image comes back as Pillow opens it, 8 bits per sample: 16-bit colour keeps the
/// high byte of each sample (Pillow's `RGB;16B` raw modes), modes with no counterpart
/// here (CMYK, LAB, 32-bit integer and float, palettes) arrive converted as Pillow
/// converts them to RGB, and transparency as an alpha channel. Only a 16-bit gray PNG
/// stays 16-bit, as Pillow's mode `I;16` does; converting that to RGB (clipping) is the
/// preprocessor's business. A decoder that panics on a hostile file gives an error,
/// and nothing is printed.
pub fn load_image(path: &Path, max_pixels: u64) -> Result<DynamicImage, DecodeError> {
    let data = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_image_bytes(&data, path, max_pixels)
}

/// [`load_image`] for a file already read (a member of a shard): `path` names it in
/// errors.
pub fn load_image_bytes(
    data: &[u8],
    path: &Path,
    max_pixels: u64,
) -> Result<DynamicImage, DecodeError> {
    if data.is_empty() {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let format = Format::sniff(data);
    let img = quietly(|| format.decode(data, max_pixels))
        .unwrap_or_else(|panic| Err(Failure::Bad(format!("the decoder failed: {panic}"))))
        .map_err(|f| f.at(path, format, max_pixels))?;
    Ok(img)
}

thread_local! {
    /// Set while this thread runs a decoder whose panics are reported as errors.
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into its message. The process's panic hook stays silent
/// for panics caught here (a hostile file is one error line, not a backtrace) and
/// speaks as before for every other panic.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let was = DECODING.with(|d| d.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    DECODING.with(|d| d.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}
