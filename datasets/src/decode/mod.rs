//! Decoding one image file as Pillow 13 opens it, which is what transformers' image
//! processors see: format from the content, a pixel budget checked against the header
//! before any pixel is decoded (decompression bombs), EXIF or XMP orientation applied as
//! `ImageOps.exif_transpose` applies it, 16-bit colour reduced to 8 bits as Pillow
//! reduces it. JPEG and WebP go through the C libraries Pillow links; the other formats
//! through the `image` crate.

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

use image::{DynamicImage, GrayAlphaImage, ImageDecoder, ImageReader, Limits, RgbImage, RgbaImage};

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
    #[error("{}: not a decodable image: {source}", path.display())]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{}: not a decodable {format} image: {message}", path.display())]
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
    Image(image::ImageError),
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
            Failure::Image(source) => DecodeError::Image { path, source },
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
        } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
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
            Format::Other => return decode_other(data, max_pixels, true),
        };
        img.apply_orientation(meta.orientation());
        Ok(img)
    }
}

/// Decodes `path` (jpeg, png, webp, gif's first frame, bmp, tiff) with its orientation
/// applied, refusing images of more than `max_pixels` pixels.
///
/// The image comes back as Pillow opens it: 16-bit RGB, RGBA and gray+alpha images
/// become 8-bit by keeping the high byte of each sample (Pillow's `RGB;16B` raw modes;
/// it opens gray+alpha as RGBA). 16-bit gray stays 16-bit, as Pillow's mode `I;16`
/// does; converting that to RGB is the preprocessor's business. CMYK JPEGs arrive as
/// RGB, converted as Pillow converts them. A decoder that panics on a hostile file
/// gives an error, and nothing is printed.
pub fn load_image(path: &Path, max_pixels: u64) -> Result<DynamicImage, DecodeError> {
    let data = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if data.is_empty() {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let format = Format::sniff(&data);
    let img = quietly(|| format.decode(&data, max_pixels))
        .unwrap_or_else(|panic| Err(Failure::Bad(format!("the decoder failed: {panic}"))))
        .map_err(|f| f.at(path, format, max_pixels))?;
    Ok(as_pil_opens(img))
}

/// Through the `image` crate, with the orientation it reads if `oriented`: formats
/// without a decoder of our own.
fn decode_other(data: &[u8], max_pixels: u64, oriented: bool) -> Result<DynamicImage, Failure> {
    let mut reader = ImageReader::new(std::io::Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| Failure::Image(e.into()))?;
    let mut limits = Limits::default();
    // Side limits too: a header can claim a huge size on one axis.
    let side = max_pixels.min(u32::MAX as u64) as u32;
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(Failure::Image)?;
    let (width, height) = decoder.dimensions();
    Failure::check_size(width, height, max_pixels)?;
    let orientation = decoder.orientation().map_err(Failure::Image)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(Failure::Image)?;
    if oriented {
        img.apply_orientation(orientation);
    }
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

/// 16-bit colour reduced to 8 bits by the high byte of each sample, as PIL's decoders do.
fn as_pil_opens(img: DynamicImage) -> DynamicImage {
    fn high_bytes(samples: Vec<u16>) -> Vec<u8> {
        samples.into_iter().map(|v| (v >> 8) as u8).collect()
    }
    let (w, h) = (img.width(), img.height());
    let same_size = "a buffer of the image's own size";
    match img {
        DynamicImage::ImageRgb16(i) => RgbImage::from_raw(w, h, high_bytes(i.into_raw()))
            .expect(same_size)
            .into(),
        DynamicImage::ImageRgba16(i) => RgbaImage::from_raw(w, h, high_bytes(i.into_raw()))
            .expect(same_size)
            .into(),
        DynamicImage::ImageLumaA16(i) => GrayAlphaImage::from_raw(w, h, high_bytes(i.into_raw()))
            .expect(same_size)
            .into(),
        other => other,
    }
}
