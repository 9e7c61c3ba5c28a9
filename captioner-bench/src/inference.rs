//! Images per second of a BLIP-base-sized model (or a ViT-GPT-2 one, [`Arch`]) with
//! random weights, built in-process, on the four cases that
//! `scripts/bench_transformers.py` runs with transformers, so the two give a ratio.
//!
//! Every generation case writes exactly `tokens` tokens per caption (`[SEP]` is forbidden
//! until then), so random weights cannot change the amount of work.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use text_decoder::{generate, GenerationConfig, TextConfig, TextDecoder};
use vision_encoder::{VisionConfig, VisionLayout, VisionModel};

use crate::{time, BenchCase, BenchOptions, Result};

/// BLIP-base's shapes: ViT-B/16 at 384 px and a BERT-base decoder over a 30524-token
/// vocabulary (the hub's `Salesforce/blip-image-captioning-base` config).
pub fn blip_base_configs() -> (VisionConfig, TextConfig) {
    let vision = VisionConfig::default();
    let text = TextConfig {
        num_attention_heads: 12,
        encoder_hidden_size: Some(vision.hidden_size),
        ..TextConfig::default()
    };
    (vision, text)
}

/// nlpconnect/vit-gpt2-image-captioning's shapes: ViT-B/16 at 224 px and GPT-2 small
/// (12 layers of 768, 1024 positions, 50257 tokens) with cross-attention, as a
/// `VisionEncoderDecoderModel` holds them.
pub fn vit_gpt2_configs() -> (VisionConfig, TextConfig) {
    let vision = VisionConfig {
        image_size: 224,
        layer_norm_eps: 1e-12,
        layout: VisionLayout::Vit,
        ..VisionConfig::default()
    };
    let text = TextConfig::from_gpt2(&serde_json::json!({ "add_cross_attention": true }))
        .expect("GPT-2's defaults are a valid config");
    (vision, text)
}

/// The model sizes the speed cases run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// BLIP-base ([`blip_base_configs`]).
    #[default]
    BlipBase,
    /// ViT-B/16 + GPT-2 small ([`vit_gpt2_configs`]).
    VitGpt2,
}

impl Arch {
    pub fn configs(self) -> (VisionConfig, TextConfig) {
        match self {
            Self::BlipBase => blip_base_configs(),
            Self::VitGpt2 => vit_gpt2_configs(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BlipBase => "BLIP-base size",
            Self::VitGpt2 => "ViT-B/16 + GPT-2 small size",
        }
    }
}

/// Draws each weight as it is asked for, with the initialiser the model names (candle's
/// defaults), as a plain tensor as a loaded checkpoint's are: variables would send
/// inference down the autograd-capable path.
struct RandomWeights;

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: candle_core::Shape,
        _: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Ok(init.var(s, dtype, dev)?.as_detached_tensor())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights have no shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// Both models with random weights, in `precision`, each layer packed as it is drawn
/// as [`captioner::Captioner::load_in`] packs a checkpoint's as they are read.
pub fn random_models(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    device: &Device,
    precision: captioner::Precision,
) -> Result<(VisionModel, TextDecoder)> {
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, device.clone());
    precision.load_models(vision_cfg, text_cfg, vb)
}

/// Runs the four cases, reporting each as it finishes through `progress`.
pub fn run(
    opts: &BenchOptions,
    device: &Device,
    mut progress: impl FnMut(&BenchCase),
) -> Result<Vec<BenchCase>> {
    let (vision_cfg, text_cfg) = opts.arch.configs();
    let mut built = None;
    (opts.load_with)(&mut || {
        built = Some(random_models(
            &vision_cfg,
            &text_cfg,
            device,
            opts.precision,
        ))
    });
    let (vision, decoder) = built.expect("load_with runs the load")?;
    let size = vision_cfg.image_size;
    let pixels = |b: usize| Tensor::randn(0f32, 1.0, (b, 3, size, size), device);
    let gen = |beams: usize| GenerationConfig {
        max_new_tokens: opts.tokens,
        min_new_tokens: opts.tokens,
        num_beams: beams,
        ..GenerationConfig::new(text_cfg.sep_token_id)
    };
    let prompt = [text_cfg.bos_token_id];
    let b = opts.batch;
    let mut cases = Vec::new();
    let mut record = |name: &str, batch: usize, seconds: Vec<f64>| {
        let case = BenchCase {
            name: name.into(),
            batch,
            seconds,
        };
        progress(&case);
        cases.push(case);
    };

    let x = pixels(b)?;
    let s = time(opts.warmup, opts.runs, || Ok(vision.forward(&x)?))?;
    record(&format!("vision encoder, batch {b}"), b, s);
    for (name, batch, beams) in [
        ("greedy, batch 1".to_string(), 1, 1),
        (format!("greedy, batch {b}"), b, 1),
        (format!("3 beams, batch {b}"), b, 3),
    ] {
        let x = pixels(batch)?;
        let cfg = gen(beams);
        let s = time(opts.warmup, opts.runs, || {
            let embeds = vision.forward(&x)?;
            Ok(generate(&decoder, &embeds, &prompt, &cfg)?)
        })?;
        record(&name, batch, s);
    }
    Ok(cases)
}
