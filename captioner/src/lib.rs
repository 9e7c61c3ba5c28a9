//! captioner: BLIP-style image captioning on candle.
//!
//! [`Captioner`] composes the vision encoder, the text decoder and the tokenizer of one
//! checkpoint in the Hugging Face BLIP layout ([`checkpoint`]; [`hub`] finds one in the
//! Hugging Face cache or downloads it), in f32 or a reduced [`Precision`]. It captions
//! images with beam search, greedy decoding or sampling, batched, and gives each word's
//! cross-attention map over the image ([`maps`]).
//!
//! Captioning one image with the project's small model (the synthetic shapes data set's;
//! the scene generator put a large purple circle and a small green square in this one):
//!
//! ```
//! use candle_core::Device;
//! use captioner::{CaptionOptions, Captioner};
//!
//! let model = Captioner::load("../weights/shapes-tiny".as_ref(), &Device::Cpu)?;
//! let image = image::open("../datasets/sample/images/test/000001.png")?;
//! let options = CaptionOptions {
//!     prompt: Some("a picture of".into()),
//!     strip_prompt: true,
//!     ..CaptionOptions::default()
//! };
//! let caption = &model.caption(&[image], &options)?[0][0];
//! assert!(caption.text.contains("purple circle") && caption.text.contains("green"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Folder runs, training, attention sheets, the COCO metrics and the benchmarks are
//! crates of their own (captioner-runner, captioner-train, captioner-attention,
//! caption-metrics, captioner-bench); the `captioner` binary is a thin layer over them.

pub mod captioner;
pub mod checkpoint;
pub mod hub;
pub mod maps;
mod weights;

pub use captioner::{decoder_tokens, Caption, CaptionOptions, Captioner, Precision};
pub use maps::{Layer, WordMap, WordMaps};

use std::fmt::Display;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Vision(#[from] vision_encoder::Error),
    #[error(transparent)]
    Decoder(#[from] text_decoder::Error),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An error about one file, naming it.
    pub fn file(path: impl AsRef<Path>, msg: impl Display) -> Self {
        Self::File {
            path: path.as_ref().to_path_buf(),
            msg: msg.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
