//! The quality gate of the reduced precisions on BLIP-base-sized random checkpoints:
//! how often teacher-forced decoding picks f32's top-1 token, and how far the logits
//! move.
//!
//! candle's default initialisation gives near-uniform next-token distributions, where
//! any rounding flips the argmax. The weights here follow the parity fixtures' large-
//! margin initialisation instead (scripts/make_fixtures.py): normal draws, embeddings of
//! standard deviation 0.3 (0.5 for the image's), LayerNorms near identity, and matrices
//! of deviation 0.3 at width 32, scaled by `sqrt(32 / fan_in)` so that each layer keeps
//! that gain at BLIP-base's width. At that gain the text decoder's twelve layers wash
//! the tokens out of the hidden states (every position of an image then predicts the
//! same token), so its self-attention and MLP matrices take 0.1 and its cross-attention
//! 0.03, where each position's token survives to the logits.
//!
//! The teacher-forced captions are random token ids, one sequence per image. Everything
//! is drawn from one seed: the same seed gives the same model and inputs.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rayon::prelude::*;
use text_decoder::{TextConfig, TextDecoder};
use vision_encoder::{VisionConfig, VisionModel};

use captioner::{Precision, Result};

#[derive(Debug, Clone)]
pub struct AgreementOptions {
    pub images: usize,
    /// Teacher-forced positions per image.
    pub tokens: usize,
    pub seed: u64,
}

impl Default for AgreementOptions {
    fn default() -> Self {
        Self {
            images: 16,
            tokens: 30,
            seed: 0,
        }
    }
}

/// One precision against f32 on the same captions.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// As resolved on this CPU.
    pub precision: Precision,
    pub positions: usize,
    /// Positions whose top-1 token is f32's.
    pub agreeing: usize,
    /// The largest and the mean absolute logit difference from f32.
    pub max_logit_error: f32,
    pub mean_logit_error: f32,
    /// The standard deviation of f32's logits, for scale.
    pub logit_std: f32,
    /// The median gap between f32's best and second-best logits.
    pub median_margin: f32,
    /// How many different tokens f32 predicts over all positions.
    pub distinct_top1: usize,
}

impl Agreement {
    pub fn rate(&self) -> f64 {
        self.agreeing as f64 / self.positions.max(1) as f64
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "precision": self.precision.describe(),
            "positions": self.positions,
            "agreeing": self.agreeing,
            "agreement": self.rate(),
            "max_logit_error": self.max_logit_error,
            "mean_logit_error": self.mean_logit_error,
            "logit_std": self.logit_std,
            "median_top1_margin": self.median_margin,
            "distinct_top1_tokens": self.distinct_top1,
        })
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}: top-1 {}/{} ({:.2}%), logit error max {:.4} mean {:.4} \
             (f32 logits: std {:.3}, median top-1 margin {:.3}, {} distinct top-1 tokens)",
            self.precision.describe(),
            self.agreeing,
            self.positions,
            100.0 * self.rate(),
            self.max_logit_error,
            self.mean_logit_error,
            self.logit_std,
            self.median_margin,
            self.distinct_top1
        )
    }
}

/// Both models with the large-margin initialisation described above.
pub fn large_margin_models(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    seed: u64,
    device: &Device,
) -> Result<(VisionModel, TextDecoder)> {
    let tensors = large_margin_weights(vision_cfg, text_cfg, seed, device)?;
    models(vision_cfg, text_cfg, &tensors, device)
}

fn models(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<(VisionModel, TextDecoder)> {
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
    let vision = VisionModel::new(vision_cfg, vb.pp("vision_model"))?;
    let decoder = TextDecoder::new(text_cfg, vb.pp("text_decoder"))?;
    Ok((vision, decoder))
}

/// The checkpoint's tensors, by name.
fn large_margin_weights(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
    VisionModel::new(vision_cfg, vb.pp("vision_model"))?;
    TextDecoder::new(text_cfg, vb.pp("text_decoder"))?;
    let shapes: Vec<(String, Vec<usize>)> = vars
        .data()
        .lock()
        .expect("no other thread holds the new VarMap")
        .iter()
        .map(|(name, var)| (name.clone(), var.dims().to_vec()))
        .collect();
    shapes
        .into_par_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            // Each tensor's draws depend on its name only, not on the map's order.
            let mut rng = Normal::new(seed ^ fnv(&name));
            let (mean, std) = init(&name, &shape);
            let data: Vec<f32> = (0..n).map(|_| mean + std * rng.next()).collect();
            Ok((name, Tensor::from_vec(data, shape, device)?))
        })
        .collect()
}

/// The (mean, standard deviation) of a parameter's normal draws.
fn init(name: &str, shape: &[usize]) -> (f32, f32) {
    if name.to_ascii_lowercase().contains("norm") {
        return (if name.ends_with("weight") { 1.0 } else { 0.0 }, 0.05);
    }
    if name.ends_with("class_embedding") || name.ends_with("embeddings.position_embedding") {
        return (0.0, 0.5);
    }
    if name.ends_with("word_embeddings.weight") || name.ends_with("position_embeddings.weight") {
        return (0.0, 0.3);
    }
    if shape.len() < 2 {
        return (0.0, 0.1);
    }
    let at_width_32 = if name.contains(".crossattention.") {
        CROSS_ATTENTION
    } else if name.starts_with("vision_model.") {
        0.3
    } else {
        TEXT
    };
    let fan_in: usize = shape.iter().skip(1).product();
    (0.0, at_width_32 * (32.0 / fan_in as f32).sqrt())
}

/// Deviations at width 32 of the text decoder's matrices (see the module's note).
const TEXT: f32 = 0.1;
const CROSS_ATTENTION: f32 = 0.03;

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Standard normal draws: SplitMix64 bits through Box–Muller.
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }
}

/// Teacher-forces random captions of random images through each precision and
/// compares the logits with f32's, position by position.
pub fn agreement(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    precisions: &[Precision],
    opts: &AgreementOptions,
) -> Result<Vec<Agreement>> {
    let device = Device::Cpu;
    let size = vision_cfg.image_size;
    let mut rng = Normal::new(opts.seed ^ 0x1234_5678);
    let pixels: Vec<f32> = (0..opts.images * 3 * size * size)
        .map(|_| rng.next())
        .collect();
    let pixels = Tensor::from_vec(pixels, (opts.images, 3, size, size), &device)?;

    let weights = large_margin_weights(vision_cfg, text_cfg, opts.seed, &device)?;
    let (vision, decoder) = models(vision_cfg, text_cfg, &weights, &device)?;
    let embeds = vision.forward(&pixels)?;
    // [DEC] then random tokens: position t predicts after seeing tokens 0..=t.
    let mut ids = Vec::with_capacity(opts.images * opts.tokens);
    for _ in 0..opts.images {
        ids.push(text_cfg.bos_token_id);
        for _ in 1..opts.tokens {
            ids.push((rng.uniform() * text_cfg.vocab_size as f64) as u32);
        }
    }
    let ids = Tensor::from_vec(ids, (opts.images, opts.tokens), &device)?;
    let reference = decoder.logits(&ids, &embeds, None)?;
    drop((vision, decoder, embeds));

    let (top, margins) = top_two(&reference)?;
    let mut sorted = margins.clone();
    sorted.sort_by(f32::total_cmp);
    let median_margin = sorted.get(sorted.len() / 2).copied().unwrap_or(f32::NAN);
    let mut distinct = top.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let logit_std = reference
        .flatten_all()?
        .var(0)?
        .sqrt()?
        .to_scalar::<f32>()?;

    let mut results = Vec::new();
    for &precision in precisions {
        let (mut vision, mut decoder) = models(vision_cfg, text_cfg, &weights, &device)?;
        let precision = precision.apply(&mut vision, &mut decoder)?;
        let embeds = vision.forward(&pixels)?;
        let logits = decoder.logits(&ids, &embeds, None)?;
        let (got, _) = top_two(&logits)?;
        let diff = (logits - &reference)?.abs()?.flatten_all()?;
        results.push(Agreement {
            precision,
            positions: top.len(),
            agreeing: top.iter().zip(&got).filter(|(a, b)| a == b).count(),
            max_logit_error: diff.max(0)?.to_scalar()?,
            mean_logit_error: diff.mean(0)?.to_scalar()?,
            logit_std,
            median_margin,
            distinct_top1: distinct.len(),
        });
    }
    Ok(results)
}

/// Each position's best token and its lead over the second best.
fn top_two(logits: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    let rows = logits.flatten_to(logits.rank() - 2)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|row| {
            let (mut best, mut first, mut second) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (i, &x) in row.iter().enumerate() {
                if x > first {
                    (second, first, best) = (first, x, i);
                } else if x > second {
                    second = x;
                }
            }
            (best as u32, first - second)
        })
        .unzip())
}
