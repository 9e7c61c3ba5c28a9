//! captioner-runner: captions many images with a [`captioner::Captioner`], in batches.
//!
//! [`run`] walks folders (in a fixed order, hidden files and link loops left out),
//! decodes images on every core while the model works, and writes each batch through
//! an [`output`] sink (JSON lines, JSON, CSV or tag files beside the images) that
//! [`resume`] opens, skipping the images an earlier, killed run finished. [`progress`]
//! reports count, rate and time left. [`shards`] captions WebDataset tar shards as one
//! worker of many, an output and a marker per shard.

pub mod output;
pub mod progress;
pub mod resume;
pub mod run;
pub mod shards;

pub use captioner::{Error, Result};
