//! BMP as Pillow opens it.

use image::DynamicImage;

use super::{decode_other, Failure};

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
    decode_other(data, max_pixels, true)
}
