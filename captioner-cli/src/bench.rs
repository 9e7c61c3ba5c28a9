//! `captioner bench`: images per second of a BLIP-base-sized model with random weights,
//! built in-process (nothing to download), on the four cases that
//! `scripts/bench_transformers.py` runs with transformers, so the two give a ratio.
//!
//! Every generation case writes exactly `tokens` tokens per caption ([SEP] is forbidden
//! until then), so random weights cannot change the amount of work.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use text_decoder::{generate, GenerationConfig, TextConfig, TextDecoder};
use vision_encoder::{VisionConfig, VisionModel};

use crate::Result;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed runs per case; the median is reported.
    pub runs: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Tokens generated per caption.
    pub tokens: usize,
    /// The batch size of the batched cases.
    pub batch: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            runs: 5,
            warmup: 1,
            tokens: 20,
            batch: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchCase {
    pub name: String,
    pub batch: usize,
    /// Seconds of each timed run.
    pub seconds: Vec<f64>,
}

impl BenchCase {
    pub fn median_seconds(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / self.median_seconds()
    }
}

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

/// Both models with random weights (candle's default initialisers), held as plain
/// tensors as a loaded checkpoint's are: variables would send inference down the
/// autograd-capable path.
pub fn random_models(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    device: &Device,
) -> Result<(VisionModel, TextDecoder)> {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
    VisionModel::new(vision_cfg, vb.pp("vision_model"))?;
    TextDecoder::new(text_cfg, vb.pp("text_decoder"))?;
    let tensors: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .expect("no other thread holds the new VarMap")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let vision = VisionModel::new(vision_cfg, vb.pp("vision_model"))?;
    let decoder = TextDecoder::new(text_cfg, vb.pp("text_decoder"))?;
    Ok((vision, decoder))
}

fn time<T>(warmup: usize, runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}

/// Runs the four cases, reporting each as it finishes through `progress`.
pub fn run(
    opts: &BenchOptions,
    device: &Device,
    mut progress: impl FnMut(&BenchCase),
) -> Result<Vec<BenchCase>> {
    let (vision_cfg, text_cfg) = blip_base_configs();
    let (vision, decoder) = random_models(&vision_cfg, &text_cfg, device)?;
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
