//! Decoding one image file: format from the content, a pixel budget checked against the
//! header before any pixel is decoded (decompression bombs), EXIF orientation applied,
//! 16-bit colour reduced to 8 bits as PIL reduces it when it opens the file.

use std::path::Path;

use image::{DynamicImage, GrayAlphaImage, ImageDecoder, ImageReader, Limits, RgbImage, RgbaImage};

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
///
/// The image comes back as PIL opens it, which is what BLIP's image processor sees:
/// 16-bit RGB, RGBA and gray+alpha images become 8-bit by keeping the high byte of each
/// sample (PIL's `RGB;16B`/`RGB;16L` raw modes; it opens gray+alpha as RGBA). 16-bit
/// gray stays 16-bit, as PIL's mode `I;16` does; converting that to RGB is the
/// preprocessor's business. CMYK JPEGs arrive as RGB, converted as PIL converts them.
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
    Ok(as_pil_opens(img))
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
