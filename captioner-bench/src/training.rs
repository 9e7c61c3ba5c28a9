//! Optimizer steps of BLIP's caption training, as `scripts/bench_transformers.py
//! --train` times them in transformers.

use candle_core::{DType, Device, Tensor};
use captioner::checkpoint::{CheckpointMeta, ModelConfig, TokenizerFiles};
use captioner_train::{optimizer_step, AdamW, AdamWConfig, TextBatch, TrainConfig, Trainable};

use text_decoder::TextConfig;
use vision_encoder::VisionConfig;

use crate::{blip_base_configs, time, BenchCase, BenchOptions, Result};

/// Tokens of every training caption: `[DEC]`, the prompt's 3 tokens, 15 caption
/// tokens and `[SEP]`, as scripts/bench_transformers.py --train builds them.
const TRAIN_TOKENS: usize = 20;
const TRAIN_PROMPT: usize = 4;

/// Times the optimizer step of BLIP's caption training (forward, label-smoothed loss,
/// backward, gradient clipping, AdamW) on random images and captions, for three cases:
/// the `tiny` preset at `opts.batch` and at 32 images, and BLIP-base with its vision
/// encoder frozen at `opts.batch`.
pub fn run_training(
    opts: &BenchOptions,
    device: &Device,
    mut progress: impl FnMut(&BenchCase),
) -> Result<Vec<BenchCase>> {
    let (tiny_vision, tiny_text) = captioner_train::preset("tiny")?;
    // The shipped shapes-tiny's vocabulary and special tokens, as the reference script
    // has them too.
    let tiny_text = TextConfig {
        vocab_size: 223,
        bos_token_id: 5,
        sep_token_id: 3,
        eos_token_id: 3,
        pad_token_id: 0,
        encoder_hidden_size: Some(tiny_vision.hidden_size),
        ..tiny_text
    };
    let (base_vision, base_text) = blip_base_configs();
    let b = opts.batch;
    let mut cases = Vec::new();
    for (name, vision, text, batch, freeze) in [
        (
            format!("train tiny, batch {b}"),
            &tiny_vision,
            &tiny_text,
            b,
            false,
        ),
        (
            "train tiny, batch 32".to_string(),
            &tiny_vision,
            &tiny_text,
            32,
            false,
        ),
        (
            format!("train base frozen ViT, b{b}"),
            &base_vision,
            &base_text,
            b,
            true,
        ),
    ] {
        let case = BenchCase {
            name,
            batch,
            seconds: time_training(opts, vision, text, batch, freeze, device)?,
        };
        progress(&case);
        cases.push(case);
    }
    Ok(cases)
}

fn time_training(
    opts: &BenchOptions,
    vision: &VisionConfig,
    text: &TextConfig,
    batch: usize,
    freeze_vision: bool,
    device: &Device,
) -> Result<Vec<f64>> {
    let meta = CheckpointMeta {
        config: ModelConfig::blip(vision.clone(), text.clone()),
        processor: vision_encoder::ImageProcessorConfig::blip(vision.image_size),
        processor_file: None,
        tokenizer: TokenizerFiles {
            tokenizer_json: String::new(),
            tokenizer_config: None,
            special_tokens_map: None,
        },
        generation: None,
    };
    let model = Trainable::new(meta, device)?;
    let cfg = TrainConfig {
        freeze_vision,
        shards: rayon::current_num_threads(),
        ..TrainConfig::default()
    };
    let mut optimizer = AdamW::new(model.trainable_vars(freeze_vision), AdamWConfig::default())?;
    let size = vision.image_size;
    let pixels = Tensor::randn(0f32, 1.0, (batch, 3, size, size), device)?;
    // Caption tokens drawn past the special tokens, by a fixed generator.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut ids = Vec::with_capacity(batch * TRAIN_TOKENS);
    for _ in 0..batch {
        ids.push(text.bos_token_id);
        for _ in 1..TRAIN_TOKENS - 1 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids.push(1000.min(text.vocab_size / 2) as u32 + ((state >> 33) as u32) % 100);
        }
        ids.push(text.sep_token_id);
    }
    let labels = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if i % TRAIN_TOKENS < TRAIN_PROMPT {
                captioner_train::IGNORE
            } else {
                i64::from(t)
            }
        })
        .collect();
    let captions = TextBatch {
        input_ids: Tensor::from_vec(ids, (batch, TRAIN_TOKENS), device)?,
        attention_mask: Tensor::ones((batch, TRAIN_TOKENS), DType::U32, device)?,
        labels,
        shape: (batch, TRAIN_TOKENS),
    };
    time(opts.warmup, opts.runs, || {
        optimizer_step(&model, &mut optimizer, &cfg, 1e-5, || {
            Ok((pixels.clone(), captions.clone(), batch))
        })
    })
}
