//! `text_config` of a Hugging Face `BlipConfig`, with transformers' class defaults for
//! any field a config.json leaves out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the image tokens the cross-attention reads. Hub configs leave it out;
    /// the checkpoint loader then takes the vision config's `hidden_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_hidden_size: Option<usize>,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub initializer_range: f64,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
    pub sep_token_id: u32,
    pub is_decoder: bool,
    pub use_cache: bool,
    pub label_smoothing: f64,
    /// Fields this crate does not use, kept so a saved config loses nothing.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: None,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            bos_token_id: 30522,
            eos_token_id: 2,
            pad_token_id: 0,
            sep_token_id: 102,
            is_decoder: true,
            use_cache: true,
            label_smoothing: 0.0,
            extra: Default::default(),
        }
    }
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The width cross-attention keys and values are projected from.
    pub fn cross_width(&self) -> usize {
        self.encoder_hidden_size.unwrap_or(self.hidden_size)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "text_config.hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, id) in [
            ("bos", self.bos_token_id),
            ("sep", self.sep_token_id),
            ("pad", self.pad_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return Err(format!(
                    "text_config.{name}_token_id {id} is outside vocab_size {}",
                    self.vocab_size
                ));
            }
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "text_config.hidden_act {:?} is not supported (BLIP uses \"gelu\", exact erf GELU)",
                self.hidden_act
            ));
        }
        Ok(())
    }
}
