//! BLIP's vision encoder: a pre-norm ViT that turns `[B, 3, S, S]` pixels into
//! `[B, 1 + N, D]` token embeddings (class token first), and the image preprocessing
//! that produces those pixels exactly as transformers' `BlipImageProcessor` does.
//!
//! The crate takes tensors, images in memory and configs; it reads no files.

mod config;
mod model;
pub mod preprocess;

pub use config::VisionConfig;
pub use model::VisionModel;
pub use preprocess::{ImageProcessorConfig, Resample};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid vision config: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
