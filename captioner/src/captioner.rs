//! The Captioner: one checkpoint's vision encoder, text decoder, tokenizer and image
//! processor, and the caption options a user sets.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use image::DynamicImage;
use kernels::cached_kv::KvType;
use kernels::packed::Scheme;
use text_decoder::{
    generate, DecoderFamily, EarlyStopping, GenerationConfig, Hypothesis, Packing, Sampling,
    TextConfig, TextDecoder,
};
use tokenizers::Tokenizer;
use vision_encoder::{VisionConfig, VisionModel};

use crate::checkpoint::{self, CheckpointMeta};
use crate::maps::{word_maps, Layer, WordMaps};
use crate::{Error, Result};

/// How to caption. Lengths left as `None` follow the checkpoint
/// ([`CheckpointMeta::new_token_limits`]: BLIP's `max_length` 20 and `min_length` 5,
/// counted with the decoder prompt, as transformers counts them).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionOptions {
    pub num_beams: usize,
    pub max_new_tokens: Option<usize>,
    pub min_new_tokens: Option<usize>,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub no_repeat_ngram_size: usize,
    pub repetition_penalty: f32,
    pub num_return_sequences: usize,
    pub sampling: Option<Sampling>,
    /// Text the caption starts from, e.g. BLIP's "a picture of".
    pub prompt: Option<String>,
    /// Leave the prompt out of the caption text (LAVIS' behaviour); transformers keeps it.
    pub strip_prompt: bool,
    pub output_attentions: bool,
}

pub use crate::checkpoint::{BLIP_MAX_LENGTH, BLIP_MIN_LENGTH};

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            num_beams: 3,
            max_new_tokens: None,
            min_new_tokens: None,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            num_return_sequences: 1,
            sampling: None,
            prompt: None,
            strip_prompt: false,
            output_attentions: false,
        }
    }
}

impl CaptionOptions {
    /// The search, with `(max_new_tokens, min_new_tokens)` standing for lengths left as
    /// `None`.
    pub fn generation_config(
        &self,
        eos_token_id: u32,
        (max_new_tokens, min_new_tokens): (usize, usize),
    ) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens.unwrap_or(max_new_tokens),
            min_new_tokens: self.min_new_tokens.unwrap_or(min_new_tokens),
            num_beams: self.num_beams,
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            repetition_penalty: self.repetition_penalty,
            num_return_sequences: self.num_return_sequences,
            sampling: self.sampling.clone(),
            eos_token_id,
            output_attentions: self.output_attentions,
        }
    }
}

/// The decoder's tokens for `text`, as captions start with it and training feeds it:
/// the start token (BLIP's `[DEC]`, a VisionEncoderDecoder's `decoder_start_token_id`),
/// then the tokens of `text`, without a final end-of-sequence. BLIP's come without
/// special tokens (its `[CLS]` is what `[DEC]` overwrites); the others' with them, so
/// TrOCR's `<s>` follows the start token as in its training.
pub fn decoder_tokens(tokenizer: &Tokenizer, cfg: &TextConfig, text: &str) -> Result<Vec<u32>> {
    let blip = cfg.family == DecoderFamily::Blip;
    let enc = tokenizer
        .encode(text, !blip)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut ids = vec![cfg.bos_token_id];
    ids.extend_from_slice(enc.get_ids());
    if !blip && ids.len() > 1 && ids.last() == Some(&cfg.sep_token_id) {
        ids.pop();
    }
    Ok(ids)
}

/// One caption of one image.
#[derive(Debug, Clone)]
pub struct Caption {
    pub text: String,
    /// transformers' `sequences_scores` for beam search; the same length-normalised
    /// log-probability for greedy search and sampling.
    pub score: f32,
    /// The whole sequence as transformers returns it: `[DEC]`, the prompt, the caption
    /// and `[SEP]` when one was generated.
    pub tokens: Vec<u32>,
    /// Per generated token, cross-attention `[layers, heads, 1 + patches]`.
    pub cross_attentions: Option<Vec<Tensor>>,
}

/// The arithmetic of the model's linear layers. LayerNorms, softmax, GELU and the
/// residual stream stay f32 whatever the precision, and so do the attention's products,
/// except that with either reduced precision, where the CPU has AMX-BF16 tiles, the
/// vision encoder's attention multiplies in bf16 on them (heads of 32 or 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// The checkpoint's weights as f32: transformers' numbers.
    #[default]
    F32,
    /// bf16 weights, widened to f32 for a generated token's products (half the bytes
    /// of f32). Where the CPU has AVX512_BF16, the vision encoder's products and the
    /// image keys' and values' round their inputs to bf16 too (AMX tiles where present),
    /// and the keys and values are kept in bf16. CPU only.
    Bf16,
    /// Integer weights. A generated token's products take 12-bit weights (an int8 byte
    /// and a 4-bit residual: 1.5 bytes a weight, against f32's 4) with one scale per
    /// output channel and 64 inputs, and quantize each input row to int14; plain int8
    /// there flipped 3% of near-tied tokens. Where the CPU has AVX-512 VNNI, the vision
    /// encoder's products and the image keys' and values' are int8 x int8 (AMX tiles
    /// where present). The keys and values are kept in int8. CPU only.
    Int8,
    /// int8 wherever the CPU has AVX-512 (with BW), else f32: the fastest precision
    /// that passes both quality gates (docs/speed.md, "Reduced precision").
    Auto,
}

impl Precision {
    /// What [`Precision::Auto`] stands for on this CPU; the others stand for themselves.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if Scheme::Int12Weights.is_fast_here() => Self::Int8,
            Self::Auto => Self::F32,
            p => p,
        }
    }

    /// How this precision runs on this CPU; `None` for f32.
    fn plan(self) -> Option<Plan> {
        use kernels::packed::{has_bf16, has_vnni};
        let (int8, bf16) = (Scheme::Int8Dynamic, Scheme::Bf16Dot);
        match self.resolve() {
            Self::F32 | Self::Auto => None,
            Self::Int8 => Some(Plan {
                encoder: has_vnni().then_some(int8),
                decoder: Packing {
                    image_kv: has_vnni().then_some(int8),
                    step: Scheme::Int12Weights,
                    cache: Some(KvType::Int8),
                },
            }),
            Self::Bf16 => Some(Plan {
                encoder: has_bf16().then_some(bf16),
                decoder: Packing {
                    image_kv: has_bf16().then_some(bf16),
                    step: Scheme::Bf16Weights,
                    cache: Some(KvType::Bf16),
                },
            }),
        }
    }

    /// [`Precision::plan`], or why this precision cannot run on `device`.
    fn plan_on(self, device: &Device) -> Result<Option<Plan>> {
        let plan = self.plan();
        if plan.is_some() && !device.is_cpu() {
            return Err(Error::Other(format!(
                "{} runs on the CPU; use --precision f32 on this device",
                self.resolve().name()
            )));
        }
        Ok(plan)
    }

    /// Converts f32 models' weights to this precision (resolved), which it returns.
    pub fn apply(self, vision: &mut VisionModel, decoder: &mut TextDecoder) -> Result<Self> {
        let Some(plan) = self.plan_on(decoder.device())? else {
            return Ok(Self::F32);
        };
        if let Some(scheme) = plan.encoder {
            vision.reduce_precision(scheme)?;
        }
        decoder.reduce_precision(&plan.decoder)?;
        Ok(self.resolve())
    }

    /// Builds both models from `vb` (a whole checkpoint, BLIP's or, as the configs'
    /// layouts say, a VisionEncoderDecoder's) in this precision, packing each layer as it
    /// is read: the f32 weights of one layer at most are held at a time.
    pub fn load_models(
        self,
        vision_cfg: &VisionConfig,
        text_cfg: &TextConfig,
        vb: VarBuilder,
    ) -> Result<(VisionModel, TextDecoder)> {
        let plan = self.plan_on(vb.device())?;
        let encoder = checkpoint::encoder_vb(vision_cfg, vb.clone());
        let vision =
            VisionModel::new_packed(vision_cfg, encoder, plan.as_ref().and_then(|p| p.encoder))?;
        let decoder = checkpoint::decoder_vb(text_cfg, vb);
        let decoder =
            TextDecoder::new_packed(text_cfg, decoder, plan.as_ref().map(|p| &p.decoder))?;
        Ok((vision, decoder))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
            Self::Auto => "auto",
        }
    }

    /// Which products run how, on this CPU, for logs and benchmarks.
    pub fn describe(self) -> String {
        let Some(plan) = self.plan() else {
            return "f32".into();
        };
        let name = |s: Option<Scheme>| match s {
            None => "f32",
            Some(Scheme::Int12Weights) => {
                "12-bit weights (int8 + 4-bit residual, 64-input groups) x int14 inputs"
            }
            Some(Scheme::Int8Dynamic) if Scheme::Int8Dynamic.has_tiles_here() => {
                "int8 x int8 (AMX tiles, VNNI)"
            }
            Some(Scheme::Int8Dynamic) => "int8 x int8 (VNNI)",
            Some(Scheme::Bf16Weights) => "bf16 weights x f32 inputs",
            Some(Scheme::Bf16Dot) if Scheme::Bf16Dot.has_tiles_here() => {
                "bf16 x bf16 (AMX tiles, AVX512_BF16)"
            }
            Some(Scheme::Bf16Dot) => "bf16 x bf16 (AVX512_BF16)",
        };
        let attention = if plan.encoder.is_some() && kernels::packed::has_bf16_tiles() {
            " with attention bf16 x bf16 (AMX tiles)"
        } else {
            ""
        };
        format!(
            "{}: vision encoder {}{attention}, image keys/values {} kept as {}, token steps {}",
            self.resolve().name(),
            name(plan.encoder),
            name(plan.decoder.image_kv),
            match plan.decoder.cache {
                None => "f32",
                Some(KvType::Bf16) => "bf16",
                Some(KvType::Int8) => "int8",
            },
            name(Some(plan.decoder.step))
        )
    }
}

/// Which products of the model run in which scheme (`None`: f32).
struct Plan {
    encoder: Option<Scheme>,
    decoder: Packing,
}

pub struct Captioner {
    pub meta: CheckpointMeta,
    pub vision: VisionModel,
    pub decoder: TextDecoder,
    pub tokenizer: Tokenizer,
    precision: Precision,
    device: Device,
}

impl Captioner {
    /// Loads a checkpoint directory in the Hugging Face BLIP layout, in f32.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_in(dir, device, Precision::F32)
    }

    /// Loads a checkpoint in `precision`, converting each layer as it is read (which
    /// needs far less memory than [`Captioner::set_precision`] after loading in f32).
    pub fn load_in(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        let meta = CheckpointMeta::load(dir)?;
        let tokenizer = Tokenizer::from_bytes(meta.tokenizer.tokenizer_json.as_bytes())
            .map_err(|e| Error::file(dir.join(checkpoint::TOKENIZER), e))?;
        let (vision, decoder) = checkpoint::load_models(dir, &meta.config, device, precision)?;
        Ok(Self {
            meta,
            vision,
            decoder,
            tokenizer,
            precision: precision.resolve(),
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// [`CaptionOptions::default`] with the checkpoint's prompt, as its
    /// generation_config.json asks ([`CheckpointMeta::prompting`]).
    pub fn default_options(&self) -> CaptionOptions {
        self.options_with(CaptionOptions::default(), None, None)
    }

    /// `opts` with `prompt` and `strip_prompt` where given, the checkpoint's where not
    /// ([`checkpoint::Prompting::or_given`]).
    pub fn options_with(
        &self,
        opts: CaptionOptions,
        prompt: Option<String>,
        strip_prompt: Option<bool>,
    ) -> CaptionOptions {
        let p = self.meta.prompting().or_given(prompt, strip_prompt);
        CaptionOptions {
            prompt: p.prompt,
            strip_prompt: p.strip_prompt,
            ..opts
        }
    }

    /// The precision the weights are in ([`Precision::Auto`] resolved).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Converts f32 weights to `precision` and returns the precision it stands for on
    /// this CPU ([`Precision::Auto`] resolved). Weights already converted to another
    /// precision are refused: load the checkpoint again instead.
    pub fn set_precision(&mut self, precision: Precision) -> Result<Precision> {
        let wanted = precision.resolve();
        if self.precision != Precision::F32 && wanted != self.precision {
            return Err(Error::Other(format!(
                "the weights are already {}; load the checkpoint again for {}",
                self.precision.name(),
                wanted.name()
            )));
        }
        self.precision = precision.apply(&mut self.vision, &mut self.decoder)?;
        Ok(self.precision)
    }

    /// Pixels `[B, 3, S, S]` as the checkpoint's image processor makes them.
    pub fn pixel_values(&self, images: &[DynamicImage]) -> Result<Tensor> {
        Ok(self.meta.processor.batch(images, &self.device)?)
    }

    /// The decoder's start: the start token alone, or with a prompt its
    /// [`decoder_tokens`].
    pub fn decoder_prompt(&self, prompt: Option<&str>) -> Result<Vec<u32>> {
        let cfg = &self.meta.config.text_config;
        match prompt.filter(|p| !p.trim().is_empty()) {
            Some(p) => decoder_tokens(&self.tokenizer, cfg, p),
            None => Ok(vec![cfg.bos_token_id]),
        }
    }

    /// Text of token ids without the special tokens, as `decode(skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let t = &self.meta.config.text_config;
        let ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| i != t.bos_token_id && i != t.pad_token_id && i != t.sep_token_id)
            .collect();
        self.tokenizer
            .decode(&ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Captions a batch of decoded images: per image, `num_return_sequences` captions,
    /// best first.
    pub fn caption(
        &self,
        images: &[DynamicImage],
        opts: &CaptionOptions,
    ) -> Result<Vec<Vec<Caption>>> {
        let pixels = self.pixel_values(images)?;
        self.caption_pixels(&pixels, opts)
    }

    /// As [`Captioner::caption`], from preprocessed pixels.
    pub fn caption_pixels(
        &self,
        pixel_values: &Tensor,
        opts: &CaptionOptions,
    ) -> Result<Vec<Vec<Caption>>> {
        let prompt = self.decoder_prompt(opts.prompt.as_deref())?;
        let eos = self.meta.config.text_config.sep_token_id;
        let gen = opts.generation_config(eos, self.meta.new_token_limits(prompt.len()));
        let image_embeds = self.vision.forward(pixel_values)?;
        let hyps = generate(&self.decoder, &image_embeds, &prompt, &gen)?;
        hyps.into_iter()
            .map(|per_image| {
                per_image
                    .into_iter()
                    .map(|h| self.to_caption(h, opts.strip_prompt))
                    .collect()
            })
            .collect()
    }

    /// Per-word attention maps of a caption generated with `output_attentions` (`None`
    /// without them).
    pub fn word_maps(&self, caption: &Caption, layer: Layer) -> Result<Option<WordMaps>> {
        let Some(attentions) = &caption.cross_attentions else {
            return Ok(None);
        };
        let generated = &caption.tokens[caption.tokens.len().saturating_sub(attentions.len())..];
        let t = &self.meta.config.text_config;
        let skip = [t.sep_token_id, t.pad_token_id, t.bos_token_id];
        let prefix = self.meta.config.vision_config.prefix_tokens();
        word_maps(generated, attentions, &self.tokenizer, &skip, layer, prefix).map(Some)
    }

    fn to_caption(&self, h: Hypothesis, strip_prompt: bool) -> Result<Caption> {
        let text = if strip_prompt {
            self.decode(h.new_tokens())?
        } else {
            self.decode(&h.tokens)?
        };
        Ok(Caption {
            text,
            score: h.score,
            tokens: h.tokens,
            cross_attentions: h.cross_attentions,
        })
    }
}
