//! The vision encoder: a pre-norm ViT (BLIP's, or transformers' ViT/DeiT) that turns
//! `[B, 3, S, S]` pixels into `[B, P + N, D]` token embeddings (the class token, and
//! DeiT's distillation token, before the N patches), and the image preprocessing that
//! produces those pixels exactly as transformers' image processors do with Pillow.
//!
//! The crate takes tensors, images in memory and configs; it reads no files.

mod config;
mod model;
pub mod preprocess;

pub use config::{VisionConfig, VisionLayout};
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
