//! The text decoder: layers of causal self-attention, cross-attention over the image
//! tokens and an MLP (BLIP's BERT, or the GPT-2 and TrOCR decoders of transformers'
//! `VisionEncoderDecoderModel`), an LM head tied to the word embeddings, and caption
//! generation (greedy, beam search, sampling) batched over images and beams.
//!
//! The decoder's caches are values the caller owns: cross-attention keys and values
//! are computed once per image ([`TextDecoder::cross_kv`]) and shared by every beam of
//! that image; the self-attention cache ([`KvCache`]) grows by one position a step and
//! is reordered or shrunk with one `index_select` per layer.

mod config;
pub mod generate;
mod model;

pub use config::{DecoderFamily, TextConfig};
pub use generate::{
    generate, generate_with_stats, EarlyStopping, GenerationConfig, GenerationStats, Hypothesis,
    Sampling,
};
pub use model::{CrossKv, DecoderOutput, KvCache, Packing, TextDecoder};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid text config: {0}")]
    Config(String),
    #[error("invalid generation request: {0}")]
    Generation(String),
}

pub type Result<T> = std::result::Result<T, Error>;
