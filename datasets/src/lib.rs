//! Data for captioner: finding image files, decoding them safely, COCO-style
//! annotations, and WebDataset and Parquet shards and how workers split them. Knows no model.

pub mod captions;
pub mod coco;
mod decode;
pub mod parquet;
pub mod rng;
pub mod shards;
pub mod synth;
pub mod walk;
pub mod webdataset;

pub use captions::{ImageId, RefImage, References};
pub use coco::{CocoError, ImageIds, LookupError};
pub use decode::{load_image, load_image_bytes, DecodeError, DEFAULT_MAX_PIXELS};
pub use rng::{epoch_order, Rng};
pub use walk::{has_image_extension, Found, ImageWalk, WalkError, IMAGE_EXTENSIONS};
