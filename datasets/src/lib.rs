//! Data for captioner: decoding image files safely, and (later) COCO-style caption
//! annotations. Knows no model.

mod decode;

pub use decode::{load_image, DecodeError, DEFAULT_MAX_PIXELS};
