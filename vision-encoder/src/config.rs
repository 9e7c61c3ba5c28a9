//! `vision_config` of a Hugging Face `BlipConfig`, or the `encoder` of a
//! `VisionEncoderDecoderConfig` (ViT, DeiT), with transformers' class defaults for any
//! field a config.json leaves out.

use serde::{Deserialize, Serialize};

/// How a checkpoint names the encoder's tensors; both are the same pre-norm ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VisionLayout {
    /// `BlipVisionModel`: `embeddings.class_embedding`, `encoder.layers.{i}.self_attn.qkv`,
    /// `post_layernorm`.
    #[default]
    Blip,
    /// transformers' `ViTModel` and `DeiTModel`: `embeddings.cls_token`,
    /// `encoder.layer.{i}.attention.attention.{query,key,value}`, `layernorm`.
    Vit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub attention_dropout: f64,
    pub initializer_range: f64,
    pub projection_dim: usize,
    /// ViT's `qkv_bias`; BLIP's configs leave it out (BLIP always has the biases).
    #[serde(skip_serializing_if = "is_true")]
    pub qkv_bias: bool,
    #[serde(skip)]
    pub layout: VisionLayout,
    /// DeiT's second class token (`embeddings.distillation_token`), after the first.
    #[serde(skip)]
    pub distillation_token: bool,
    /// Fields this crate does not use, kept so a saved config loses nothing.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 1e-10,
            projection_dim: 512,
            qkv_bias: true,
            layout: VisionLayout::Blip,
            distillation_token: false,
            extra: Default::default(),
        }
    }
}

impl VisionConfig {
    /// Patches per side of the (square) input.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens before the patches: the class token, and DeiT's distillation token.
    pub fn prefix_tokens(&self) -> usize {
        1 + usize::from(self.distillation_token)
    }

    /// Tokens the encoder returns per image: the prefix tokens plus one per patch.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + self.prefix_tokens()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Shapes that would make the model ill-formed, caught before any tensor is read.
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "vision_config.hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}
