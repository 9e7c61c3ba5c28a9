//! `captioner bench`: images per second of a BLIP-base-sized model with random weights,
//! built in-process (nothing to download), on the four cases that
//! `scripts/bench_transformers.py` runs with transformers, so the two give a ratio.
//!
//! Every generation case writes exactly `tokens` tokens per caption ([SEP] is forbidden
//! until then), so random weights cannot change the amount of work.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use text_decoder::{generate, GenerationConfig, TextConfig, TextDecoder};
use vision_encoder::{VisionConfig, VisionModel};

use crate::checkpoint::{BlipConfig, CheckpointMeta, TokenizerFiles};
use crate::train::{optimizer_step, AdamW, AdamWConfig, TextBatch, TrainConfig, Trainable};
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
    /// The linear layers' arithmetic.
    pub precision: crate::Precision,
    /// Runs the loading of the model in `precision`: a binary whose allocator keeps
    /// freed memory can have it hand the f32 weights back to the system here.
    pub load_with: fn(&mut dyn FnMut()),
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            runs: 5,
            warmup: 1,
            tokens: 20,
            batch: 8,
            precision: crate::Precision::F32,
            load_with: |load| load(),
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
/// as [`crate::Captioner::load_in`] packs a checkpoint's as they are read.
pub fn random_models(
    vision_cfg: &VisionConfig,
    text_cfg: &TextConfig,
    device: &Device,
    precision: crate::Precision,
) -> Result<(VisionModel, TextDecoder)> {
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, device.clone());
    precision.load_models(vision_cfg, text_cfg, vb)
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
    let (tiny_vision, tiny_text) = crate::train::preset("tiny")?;
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
        config: BlipConfig {
            vision_config: vision.clone(),
            text_config: text.clone(),
            extra: serde_json::Map::new(),
        },
        processor: vision_encoder::ImageProcessorConfig::blip(vision.image_size),
        tokenizer: TokenizerFiles {
            tokenizer_json: String::new(),
            tokenizer_config: None,
            special_tokens_map: None,
        },
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
                crate::train::IGNORE
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

/// Words for synthetic captions: COCO-like nouns, verbs and the like.
const WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "man",
    "woman",
    "dog",
    "cat",
    "horse",
    "bus",
    "train",
    "kitchen",
    "table",
    "plate",
    "pizza",
    "street",
    "beach",
    "field",
    "sitting",
    "standing",
    "riding",
    "holding",
    "eating",
    "on",
    "in",
    "with",
    "next",
    "to",
    "of",
    "near",
    "top",
    "red",
    "blue",
    "white",
    "large",
    "small",
    "two",
    "three",
    "people",
    "group",
    "young",
    "boy",
    "girl",
    "skateboard",
    "surfboard",
    "wave",
    "snow",
    "grass",
    "water",
    "window",
    "bed",
    "room",
    "clock",
    "tower",
    "phone",
    "laptop",
    "bench",
    "park",
    "tennis",
    "racket",
    "ball",
    "giraffe",
    "elephant",
    "zebra",
    "sheep",
    "cow",
    "bird",
    "sky",
    "kite",
    "umbrella",
];

/// `images` images, each with `refs` reference captions and one candidate, drawn from
/// [`WORDS`] by a fixed generator: capitalised, some with commas and a final period.
pub fn synthetic_captions(images: usize, refs: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut caption = || {
        let len = 7 + next(8);
        let mut words: Vec<String> = (0..len)
            .map(|_| WORDS[next(WORDS.len())].to_string())
            .collect();
        if next(4) == 0 {
            words[len / 2].push(',');
        }
        words[0] = words[0][..1].to_uppercase() + &words[0][1..];
        let mut s = words.join(" ");
        if next(2) == 0 {
            s.push('.');
        }
        s
    };
    let refs: Vec<Vec<String>> = (0..images)
        .map(|_| (0..refs).map(|_| caption()).collect())
        .collect();
    // A candidate is a reference of another draw with about a third of its words
    // replaced, so that scores land in a realistic range.
    let cands = refs
        .iter()
        .map(|rs| {
            let words: Vec<String> = rs[next(rs.len())]
                .split(' ')
                .map(|w| match next(3) {
                    0 => WORDS[next(WORDS.len())].to_string(),
                    _ => w.to_string(),
                })
                .collect();
            words.join(" ")
        })
        .collect();
    (cands, refs)
}

/// Times the COCO caption evaluation (tokenization and all metrics) of `images`
/// synthetic images with `refs` references each.
pub fn run_metrics(opts: &BenchOptions, images: usize, refs: usize) -> BenchCase {
    let (cands, references) = synthetic_captions(images, refs);
    let seconds = time(opts.warmup, opts.runs, || {
        let c = crate::metrics::tokenize_all(&cands);
        let r = crate::metrics::tokenize_refs(&references);
        Ok(crate::metrics::evaluate(&c, &r))
    })
    .expect("scoring cannot fail");
    BenchCase {
        name: format!("score {images} images x {refs} refs"),
        batch: images,
        seconds,
    }
}

/// Writes `count` photo-sized JPEGs (`width` x `height`, quality 90, the `image` crate's
/// 4:2:2 encoder) to `dir`: smooth gradients, noise and a few discs, so the entropy
/// decoder has a photo's amount of work.
pub fn write_test_jpegs(
    dir: &std::path::Path,
    count: usize,
    width: u32,
    height: u32,
) -> Result<Vec<std::path::PathBuf>> {
    use rayon::prelude::*;
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::file(dir, e))?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = datasets::Rng::new(i as u64);
            let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..6)
                .map(|_| {
                    let c = [0; 3].map(|_| rng.below(256) as u8);
                    let mut unit = || rng.below(1000) as f32 / 1000.0;
                    (unit(), unit(), 0.05 + 0.2 * unit(), c)
                })
                .collect();
            let img = image::RgbImage::from_fn(width, height, |x, y| {
                let (u, v) = (x as f32 / width as f32, y as f32 / height as f32);
                let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 23) as f32;
                let mut p = [255.0 * u, 255.0 * v, 128.0 + 100.0 * (6.0 * u * v).sin()];
                for (cx, cy, r, c) in &discs {
                    if (u - cx).powi(2) + (v - cy).powi(2) < r * r {
                        p = c.map(f32::from);
                    }
                }
                image::Rgb(p.map(|c| (c + noise).clamp(0.0, 255.0) as u8))
            });
            let path = dir.join(format!("photo-{i}.jpg"));
            let file = std::fs::File::create(&path).map_err(|e| crate::Error::file(&path, e))?;
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
                .encode_image(&img)
                .map_err(|e| crate::Error::file(&path, e))?;
            Ok(path)
        })
        .collect()
}

/// Times decoding `files` on the rayon pool, two ways: `datasets::load_image` (what
/// captioning runs: Pillow's pixels) and the `image` crate's own decoders (the pure-Rust
/// path captioner used before), one case each.
pub fn run_decode(
    opts: &BenchOptions,
    files: &[std::path::PathBuf],
    mut progress: impl FnMut(&BenchCase),
) -> Result<Vec<BenchCase>> {
    use rayon::prelude::*;
    type Decode = fn(&std::path::Path) -> Result<u32>;
    let decoders: [(&str, Decode); 2] = [
        ("decode, as Pillow (captioner)", decode_as_captioner),
        ("decode, image crate", decode_with_image_crate),
    ];
    let mut cases = Vec::new();
    for (name, decode) in decoders {
        let seconds = time(opts.warmup, opts.runs, || {
            files
                .par_iter()
                .map(|f| decode(f))
                .collect::<Result<Vec<_>>>()
        })?;
        let case = BenchCase {
            name: name.into(),
            batch: files.len(),
            seconds,
        };
        progress(&case);
        cases.push(case);
    }
    Ok(cases)
}

fn decode_as_captioner(path: &std::path::Path) -> Result<u32> {
    let img = datasets::load_image(path, datasets::DEFAULT_MAX_PIXELS)
        .map_err(|e| crate::Error::Other(e.to_string()))?;
    Ok(img.width())
}

fn decode_with_image_crate(path: &std::path::Path) -> Result<u32> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| crate::Error::file(path, e))?
        .decode()
        .map_err(|e| crate::Error::file(path, e))?;
    Ok(img.width())
}
