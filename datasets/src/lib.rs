//! Data for captioner: finding image files, decoding them safely, and COCO-style
//! annotations. Knows no model.

pub mod captions;
pub mod coco;
mod decode;
pub mod rng;
pub mod synth;
pub mod walk;

pub use captions::{ImageId, RefImage, References};
pub use coco::{CocoError, ImageIds, LookupError};
pub use decode::{load_image, DecodeError, DEFAULT_MAX_PIXELS};
pub use rng::{epoch_order, Rng};
pub use walk::{has_image_extension, Found, ImageWalk, WalkError, IMAGE_EXTENSIONS};
