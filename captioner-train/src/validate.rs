//! Validation of a checkpoint: the loss and perplexity of the validation captions
//! (teacher forced), and greedy captions of the validation images scored with the COCO
//! caption evaluation (Bleu_4, CIDEr), as BLIP validates.

use std::path::{Path, PathBuf};

use candle_core::Device;
use datasets::References;
use serde_json::{json, Map};

use super::data::{load_batch, TextRecipe, TrainData};
use super::loss::caption_loss;
use super::run::{StepReport, TrainConfig, Validation};
use caption_metrics as metrics;
use captioner::{CaptionOptions, Captioner, Error, Result};

/// The validation set, at most `max_images` of its images.
pub struct ValSet {
    pub refs: References,
    pub root: PathBuf,
    pub data: TrainData,
}

impl ValSet {
    pub fn new(refs: References, root: &Path, max_images: usize) -> Result<Self> {
        let mut refs = refs;
        refs.images.retain(|i| !i.captions.is_empty());
        refs.images.truncate(max_images);
        let data = TrainData::new(&refs, root)?;
        Ok(Self {
            refs,
            root: root.to_path_buf(),
            data,
        })
    }
}

/// Validates the checkpoint in `dir`; the score is CIDEr.
pub fn validate(
    dir: &Path,
    val: &ValSet,
    cfg: &TrainConfig,
    step: &StepReport,
    device: &Device,
) -> Result<Validation> {
    let captioner = Captioner::load(dir, device)?;
    let recipe = TextRecipe {
        prompt: cfg.prompt.clone(),
        max_words: cfg.max_words,
        max_len: cfg.max_len,
        text: captioner.meta.config.text_config.clone(),
    };
    // Loss over every validation caption, without label smoothing: its exp is the
    // perplexity.
    let (mut total, mut batches) = (0f64, 0usize);
    let all: Vec<usize> = (0..val.data.len()).collect();
    for chunk in all.chunks(cfg.batch.max(1)) {
        let (pixels, text) = load_batch(
            &val.data,
            chunk,
            &captioner.meta.processor,
            &captioner.tokenizer,
            &recipe,
            device,
        )?;
        let embeds = captioner.vision.forward(&pixels)?;
        let logits =
            captioner
                .decoder
                .logits(&text.input_ids, &embeds, Some(&text.attention_mask))?;
        total += caption_loss(&logits, &text.labels, 0.0)?.to_scalar::<f32>()? as f64;
        batches += 1;
    }
    let val_loss = total / batches.max(1) as f64;
    // Greedy captions, the prompt left out (as LAVIS scores them).
    let opts = CaptionOptions {
        num_beams: 1,
        prompt: Some(cfg.prompt.trim().to_string()).filter(|p| !p.is_empty()),
        strip_prompt: true,
        ..CaptionOptions::default()
    };
    let mut cands = Vec::with_capacity(val.refs.images.len());
    for chunk in val.refs.images.chunks(16) {
        let images = chunk
            .iter()
            .map(|i| {
                datasets::load_image(&val.root.join(&i.file_name), datasets::DEFAULT_MAX_PIXELS)
                    .map_err(|e| Error::Other(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        for c in captioner.caption(&images, &opts)? {
            cands.push(c[0].text.clone());
        }
    }
    let refs: Vec<Vec<String>> = val.refs.images.iter().map(|i| i.captions.clone()).collect();
    let scores = metrics::evaluate(
        &metrics::tokenize_all(&cands),
        &metrics::tokenize_refs(&refs),
    );
    let mut m = Map::new();
    m.insert("val_loss".into(), json!(val_loss));
    m.insert("perplexity".into(), json!(val_loss.exp()));
    m.insert("Bleu_4".into(), json!(scores.corpus.bleu[3]));
    m.insert("CIDEr".into(), json!(scores.corpus.cider));
    m.insert("lr".into(), json!(step.lr));
    m.insert("example".into(), json!(cands.first()));
    Ok(Validation {
        step: step.step,
        epoch: step.epoch,
        train_loss: step.loss,
        score: scores.corpus.cider,
        metrics: m,
    })
}
