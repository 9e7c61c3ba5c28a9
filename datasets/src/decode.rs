//! Decoding one image file: format from the content, a pixel budget checked against the
//! header before any pixel is decoded (decompression bombs), EXIF orientation applied.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// 100 megapixels, as a default budget per image.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: is empty (0 bytes)", path.display())]
    Empty { path: std::path::PathBuf },
    #[error("{}: {width}x{height} is over the limit of {max} pixels", path.display())]
    TooLarge {
        path: std::path::PathBuf,
        width: u32,
        height: u32,
        max: u64,
    },
    #[error("{}: not a decodable image: {source}", path.display())]
    Image {
        path: std::path::PathBuf,
        source: image::ImageError,
    },
}

/// Decodes `path` (jpeg, png, webp, gif's first frame, bmp, tiff) with its EXIF
/// orientation applied, refusing images of more than `max_pixels` pixels.
pub fn load_image(path: &Path, max_pixels: u64) -> Result<DynamicImage, DecodeError> {
    let io = |source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |source| DecodeError::Image {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::metadata(path).map_err(io)?.len() == 0 {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut reader = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?;
    let mut limits = Limits::default();
    // Side limits too: a header can claim a huge size on one axis.
    let side = max_pixels.min(u32::MAX as u64) as u32;
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > max_pixels {
        return Err(DecodeError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max: max_pixels,
        });
    }
    let orientation = decoder.orientation().map_err(bad)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img)
}
