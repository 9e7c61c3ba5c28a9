//! PNG as Pillow opens it.

use image::DynamicImage;

use super::orientation::{self, Metadata};
use super::{decode_other, Failure};

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<(DynamicImage, Metadata), Failure> {
    Ok((
        decode_other(data, max_pixels, false)?,
        orientation::png(data),
    ))
}
