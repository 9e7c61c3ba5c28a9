//! TIFF as Pillow 13 opens it (first page, `load()`, `ImageOps.exif_transpose`), so
//! that what `convert_to_rgb` makes of it equals what transformers gets from Pillow.
//!
//! Pillow decides everything from its own reading of the first directory (`ifd`, also
//! for BigTIFF and the malformed headers Pillow accepts):
//! the mode from its `OPEN_INFO` table (`setup`), refusing unknown combinations
//! (float16/64, WebP compression, ...). Uncompressed files go through Pillow's own raw
//! decoder, reproduced in `raw` with its quirks (rows read from each strip offset
//! whatever StripByteCounts says, 16-bit planar RGB read as 8-bit samples). Every
//! other compression goes through libtiff, as Pillow's TiffDecode.c drives it
//! (`libtiff`): linking the system libtiff gives the same codecs and the same YCbCr
//! and JPEG conversions as Pillow's bundled one. The samples are unpacked into
//! Pillow's modes (`unpack`) and converted as Pillow converts them to RGB (`convert`).
//! The Orientation tag (or XMP's, where the tag is absent) is applied last, as
//! `exif_transpose` applies it.
//!
//! One Pillow behaviour is deliberately not copied: opened by path, an uncompressed
//! file whose mode Pillow memory-maps (L, P, I;16, RGBA, CMYK...) with Orientation 5-8
//! comes out scrambled; the result here is the one Pillow gives for the same bytes
//! opened from memory. The system libtiff (Debian 12: 4.5.0) is older than Pillow's
//! (4.7.2); they differ on damaged data (4.7 decodes G3 faxes without EOLs, zeroes
//! what a failed strip did not fill) and on tiled 4x4-subsampled YCbCr (deflate, LZW:
//! not JPEG) whose right-hand tiles are clipped (a libtiff bug fixed after 4.5).

mod convert;
mod ffi;
mod ifd;
mod libtiff;
mod raw;
mod setup;
mod unpack;

use image::metadata::Orientation;
use image::DynamicImage;

use super::orientation::Metadata;
use super::Failure;
use setup::Source;

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
    let ifd = ifd::first(data).map_err(Failure::Bad)?;
    let plan = setup::plan(&ifd).map_err(Failure::Bad)?;
    Failure::check_size(plan.width, plan.height, max_pixels)?;
    let canvas = match &plan.source {
        Source::Raw(tiles) => raw::decode(data, plan.mode, plan.width, plan.height, tiles),
        Source::Libtiff {
            rawmode,
            ifd_offset,
        } => libtiff::decode(
            data,
            plan.mode,
            (plan.width, plan.height),
            rawmode,
            *ifd_offset,
        ),
    }
    .map_err(Failure::Bad)?;
    let mut img = convert::to_image(canvas, plan.palette.as_deref()).map_err(Failure::Bad)?;
    img.apply_orientation(orientation(&plan));
    Ok(img)
}

/// `exif_transpose`'s orientation: the tag's value when it equals 1-8 (Python's
/// `==`, so 6.0 counts); only without the tag does XMP's `tiff:Orientation` count.
fn orientation(plan: &setup::Plan) -> Orientation {
    if !plan.has_orientation {
        let xmp = Metadata {
            exif: None,
            xmp: plan.xmp.clone(),
        };
        return xmp.orientation();
    }
    let value = plan.orientation.and_then(|n| n.integral());
    match value.and_then(|v| u8::try_from(v).ok()) {
        Some(v) => Orientation::from_exif(v).unwrap_or(Orientation::NoTransforms),
        None => Orientation::NoTransforms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every truncation and a sweep of single-byte corruptions of a compressed and an
    /// uncompressed file, classic and BigTIFF, decode or fail cleanly: no panic (libtiff
    /// and the raw path both see lying offsets, counts and sizes).
    #[test]
    fn hostile_variants_fail_cleanly() {
        let files: [&[u8]; 4] = [
            include_bytes!("../../tests/fixtures/pillow/tiff/rgb8_lzw_predictor2_45x29.tif"),
            include_bytes!("../../tests/fixtures/pillow/tiff/rgb8_tiled_planar_45x29.tif"),
            include_bytes!(
                "../../tests/fixtures/pillow/tiff/bigtiff_rgb8_lzw_predictor2_45x29.tif"
            ),
            include_bytes!("../../tests/fixtures/pillow/tiff/bigtiff_rgba8_tiled_raw_45x29.tif"),
        ];
        for file in files {
            for len in 0..file.len() {
                let _ = decode(&file[..len], 1 << 20);
            }
            // All four keep their header, directory and tag data in the first 400 bytes.
            for at in 0..400 {
                for value in [0, 1, 0x7f, 0xff] {
                    let mut bad = file.to_vec();
                    bad[at] = value;
                    let _ = decode(&bad, 1 << 20);
                }
            }
        }
    }

    #[test]
    fn pixel_budget_is_checked_before_decoding() {
        let file = include_bytes!("../../tests/fixtures/pillow/tiff/rgb8_lzw_45x29.tif");
        assert!(matches!(
            decode(file, 45 * 29 - 1),
            Err(Failure::TooLarge {
                width: 45,
                height: 29
            })
        ));
        assert!(decode(file, 45 * 29).is_ok());
    }
}
