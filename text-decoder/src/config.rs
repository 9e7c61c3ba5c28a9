//! `text_config` of a Hugging Face `BlipConfig`, with transformers' class defaults for
//! any field a config.json leaves out; GPT-2's and TrOCR's decoder configs are read into
//! the same fields ([`TextConfig::from_gpt2`], [`TextConfig::from_trocr`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which decoder a checkpoint holds. All three are layers of causal self-attention,
/// cross-attention over the image tokens and an MLP; they differ in where the
/// LayerNorms sit and how the tensors are named.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum DecoderFamily {
    /// `BlipTextLMHeadModel`: BERT, LayerNorm after each block (`bert.encoder.layer.{i}`).
    #[default]
    Blip,
    /// `GPT2LMHeadModel` with `add_cross_attention`: LayerNorm before each block, a
    /// final `ln_f`, `Conv1D` weights stored `(in, out)` (`transformer.h.{i}`).
    Gpt2,
    /// `TrOCRForCausalLM`: BART-style, LayerNorm after each block, positions offset by 2
    /// (`model.decoder.layers.{i}`).
    TrOcr {
        /// The token embeddings are multiplied by this (`sqrt(d_model)` with
        /// `scale_embedding`, else 1).
        embed_scale: f64,
        /// A LayerNorm after the embeddings (`layernorm_embedding`).
        layernorm_embedding: bool,
        /// Learned positions (`embed_positions.weight`), else fairseq's sinusoids.
        learned_positions: bool,
    },
}

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
    #[serde(skip)]
    pub family: DecoderFamily,
    /// Width of the encoder's tokens where the model first projects them to
    /// `encoder_hidden_size` (a `VisionEncoderDecoderModel`'s `enc_to_dec_proj`).
    #[serde(skip)]
    pub image_projection: Option<usize>,
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
            family: DecoderFamily::Blip,
            image_projection: None,
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

    /// A `GPT2Config` (with `add_cross_attention`), as transformers reads it.
    pub fn from_gpt2(json: &Value) -> Result<Self, String> {
        let get = Fields(json);
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
            if get.bool(flag, false)? {
                return Err(format!("decoder.{flag} is not supported"));
            }
        }
        if !get.bool("add_cross_attention", false)? {
            return Err(
                "decoder.add_cross_attention is false: this GPT-2 cannot read an image".into(),
            );
        }
        if !get.bool("scale_attn_weights", true)? {
            return Err("decoder.scale_attn_weights false is not supported".into());
        }
        let hidden = get.usize("n_embd", 768)?;
        let eos = get.u32("eos_token_id", 50256)?;
        Ok(Self {
            vocab_size: get.usize("vocab_size", 50257)?,
            hidden_size: hidden,
            encoder_hidden_size: Some(hidden),
            intermediate_size: get.opt_usize("n_inner")?.unwrap_or(4 * hidden),
            num_hidden_layers: get.usize("n_layer", 12)?,
            num_attention_heads: get.usize("n_head", 12)?,
            max_position_embeddings: get.usize("n_positions", 1024)?,
            hidden_act: get.str("activation_function", "gelu_new")?,
            layer_norm_eps: get.f64("layer_norm_epsilon", 1e-5)?,
            hidden_dropout_prob: get.f64("resid_pdrop", 0.1)?,
            attention_probs_dropout_prob: get.f64("attn_pdrop", 0.1)?,
            initializer_range: get.f64("initializer_range", 0.02)?,
            bos_token_id: get.u32("bos_token_id", 50256)?,
            eos_token_id: eos,
            pad_token_id: get.opt_u32("pad_token_id")?.unwrap_or(eos),
            sep_token_id: eos,
            family: DecoderFamily::Gpt2,
            extra: Map::new(),
            ..Self::default()
        })
    }

    /// A `TrOCRConfig`, as transformers reads it.
    pub fn from_trocr(json: &Value) -> Result<Self, String> {
        let get = Fields(json);
        let hidden = get.usize("d_model", 1024)?;
        let eos = get.u32("eos_token_id", 2)?;
        let embed_scale = if get.bool("scale_embedding", false)? {
            (hidden as f64).sqrt()
        } else {
            1.0
        };
        Ok(Self {
            vocab_size: get.usize("vocab_size", 50265)?,
            hidden_size: hidden,
            encoder_hidden_size: Some(
                get.opt_usize("cross_attention_hidden_size")?
                    .unwrap_or(hidden),
            ),
            intermediate_size: get.usize("decoder_ffn_dim", 4096)?,
            num_hidden_layers: get.usize("decoder_layers", 12)?,
            num_attention_heads: get.usize("decoder_attention_heads", 16)?,
            max_position_embeddings: get.usize("max_position_embeddings", 512)?,
            hidden_act: get.str("activation_function", "gelu")?,
            // torch's nn.LayerNorm default, which TrOCR's layers use.
            layer_norm_eps: 1e-5,
            hidden_dropout_prob: get.f64("dropout", 0.1)?,
            attention_probs_dropout_prob: get.f64("attention_dropout", 0.0)?,
            initializer_range: get.f64("init_std", 0.02)?,
            bos_token_id: get.u32("bos_token_id", 0)?,
            eos_token_id: eos,
            pad_token_id: get.u32("pad_token_id", 1)?,
            sep_token_id: eos,
            family: DecoderFamily::TrOcr {
                embed_scale,
                layernorm_embedding: get.bool("layernorm_embedding", true)?,
                learned_positions: get.bool("use_learned_position_embeddings", true)?,
            },
            extra: Map::new(),
            ..Self::default()
        })
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
        if crate::model::Activation::of(&self.hidden_act).is_none() {
            return Err(format!(
                "the decoder's activation {:?} is not supported (\"gelu\", \"gelu_new\" or \"relu\")",
                self.hidden_act
            ));
        }
        Ok(())
    }
}

/// A config's fields with transformers' defaults where absent (or null); a present field
/// of the wrong type is an error naming it.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong(key: &str, v: &Value, want: &str) -> String {
        format!("decoder.{key} is {v}, not {want}")
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, String> {
        self.field(key)
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| Self::wrong(key, v, "a whole number"))
            })
            .transpose()
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize, String> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>, String> {
        self.opt_usize(key)?
            .map(|n| u32::try_from(n).map_err(|_| format!("decoder.{key} {n} is too large")))
            .transpose()
    }

    fn u32(&self, key: &str, default: u32) -> Result<u32, String> {
        Ok(self.opt_u32(key)?.unwrap_or(default))
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64, String> {
        self.field(key)
            .map(|v| v.as_f64().ok_or_else(|| Self::wrong(key, v, "a number")))
            .transpose()
            .map(|v| v.unwrap_or(default))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        self.field(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| Self::wrong(key, v, "true or false"))
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    }

    fn str(&self, key: &str, default: &str) -> Result<String, String> {
        self.field(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Self::wrong(key, v, "a string"))
            })
            .transpose()
            .map(|v| v.unwrap_or_else(|| default.to_string()))
    }
}
