//! captioner: BLIP-style image captioning on candle.
//!
//! [`Captioner`] composes the vision encoder, the text decoder and the tokenizer of one
//! checkpoint ([`checkpoint`]); [`run`] captions many images in batches into an
//! [`output`] that [`resume`] opens, resuming an earlier run's. The `captioner` binary is
//! a thin layer over them.

pub mod attention;
pub mod bench;
pub mod captioner;
pub mod checkpoint;
pub mod hub;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod quality;
pub mod resume;
pub mod run;
pub mod train;
mod weights;

pub use captioner::{Caption, CaptionOptions, Captioner, Precision};

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
