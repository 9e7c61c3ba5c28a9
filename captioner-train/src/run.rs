//! The training loop: batches in a fixed order, accumulated gradients, clipping, AdamW
//! under warm-up then cosine decay, checkpoints that resume to the same bits, and a
//! metrics log.
//!
//! Where things go, under the output folder `OUT`:
//!
//! ```text
//! OUT/checkpoint-000500/   a checkpoint (Hugging Face BLIP layout) plus trainer_state.json
//!                          and optimizer.safetensors; written to a hidden temporary
//!                          folder and renamed into place
//! OUT/latest               the name of the newest checkpoint, replaced atomically
//! OUT/best/                the checkpoint with the best validation score
//! OUT/metrics.jsonl        one line per validation
//! OUT/steps.tsv            step, train loss, learning rate, gradient norm
//! OUT/curves.png           the curves of both, redrawn after each validation
//! ```
//!
//! Nothing in a step is random but the data order, which is a function of (seed, epoch),
//! so a run resumed from a checkpoint continues exactly as the uninterrupted run would.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use datasets::epoch_order;

use super::data::{load_batch, TextRecipe, TrainData};
use super::model::Trainable;
use super::optim::{AdamW, AdamWConfig};
use super::step::optimizer_step;
use super::text::TextBatch;
use crate::{Error, Result};
use captioner::checkpoint::{self, write_atomic, Prompting};

pub const TRAINER_STATE: &str = "trainer_state.json";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const LATEST: &str = "latest";
pub const BEST: &str = "best";
pub const METRICS: &str = "metrics.jsonl";
pub const STEPS: &str = "steps.tsv";
pub const CURVES: &str = "curves.png";

/// Everything that decides what a run computes; saved with every checkpoint, and taken
/// from it when resuming.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Stop after this many optimizer steps instead of `epochs`.
    pub max_steps: Option<usize>,
    pub batch: usize,
    /// Micro-batches per optimizer step.
    pub accumulate: usize,
    /// Parts of each micro-batch run side by side, one thread each. Part of the run's
    /// arithmetic, so it is kept for resuming.
    #[serde(default = "one")]
    pub shards: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub label_smoothing: f64,
    pub freeze_vision: bool,
    pub seed: u64,
    pub prompt: String,
    pub max_words: usize,
    pub max_len: usize,
    /// Save a checkpoint every this many optimizer steps (and at the end).
    pub save_every: usize,
}

impl Default for TrainConfig {
    /// BLIP's captioning fine-tune: prompt "a picture of ", label smoothing 0.1,
    /// AdamW with weight decay 0.05, at most 30 words and 40 tokens.
    fn default() -> Self {
        Self {
            epochs: 5,
            max_steps: None,
            batch: 16,
            accumulate: 1,
            shards: 1,
            lr: 1e-5,
            min_lr: 0.0,
            warmup_steps: 0,
            weight_decay: 0.05,
            max_grad_norm: 1.0,
            label_smoothing: 0.1,
            freeze_vision: false,
            seed: 42,
            prompt: "a picture of ".into(),
            max_words: 30,
            max_len: 40,
            save_every: 500,
        }
    }
}

fn one() -> usize {
    1
}

impl TrainConfig {
    fn micro_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch.max(1))
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self, n: usize) -> usize {
        self.max_steps.unwrap_or_else(|| {
            (self.epochs * self.micro_per_epoch(n)).div_ceil(self.accumulate.max(1))
        })
    }

    /// The learning rate of optimizer step `step` (0-based): linear warm-up, then cosine
    /// decay to `min_lr` at the last step.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Where a run stands; saved in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub config: TrainConfig,
    /// Optimizer steps done.
    pub step: usize,
    /// The best validation score so far (higher is better) and its step.
    pub best: Option<(f64, usize)>,
    /// Examples in the training data, to catch a resume on other data.
    pub examples: usize,
}

/// One optimizer step, as the progress display and the log see it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub total: usize,
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub images_per_s: f64,
}

/// What validation found; `score` ranks checkpoints (higher is better).
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub step: usize,
    pub epoch: f64,
    pub train_loss: f64,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub score: f64,
}

/// A training run, from a fresh model or a resumed checkpoint.
pub struct Trainer {
    pub model: Trainable,
    pub tokenizer: Tokenizer,
    pub optimizer: AdamW,
    pub state: TrainerState,
    pub out: PathBuf,
}

impl Trainer {
    /// Starts a run into `out` (created; a folder holding an earlier run is refused:
    /// resume it instead).
    pub fn start(
        mut model: Trainable,
        data: &TrainData,
        config: TrainConfig,
        out: &Path,
    ) -> Result<Self> {
        if out.join(LATEST).exists() {
            return Err(Error::file(
                out,
                "holds a training run already: resume it (--resume) or choose another --out",
            ));
        }
        fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
        // The checkpoints caption as the model was trained: from the training prompt,
        // which is left out of the text (as validation scores it).
        model.meta.set_prompting(&Prompting {
            prompt: Some(config.prompt.trim().to_string()).filter(|p| !p.is_empty()),
            strip_prompt: true,
        });
        let tokenizer = model.tokenizer()?;
        let optimizer = AdamW::new(
            model.trainable_vars(config.freeze_vision),
            adamw_config(&config),
        )?;
        Ok(Self {
            model,
            tokenizer,
            optimizer,
            state: TrainerState {
                config,
                step: 0,
                best: None,
                examples: data.len(),
            },
            out: out.to_path_buf(),
        })
    }

    /// Resumes the run in `out` from its latest checkpoint: weights, optimizer moments,
    /// step and configuration.
    pub fn resume(out: &Path, data: &TrainData, device: &Device) -> Result<Self> {
        let latest = out.join(LATEST);
        let name = fs::read_to_string(&latest).map_err(|e| {
            Error::file(
                &latest,
                format!("{e}: no checkpoint to resume from in {}", out.display()),
            )
        })?;
        let dir = out.join(name.trim());
        let state_path = dir.join(TRAINER_STATE);
        let state: TrainerState = serde_json::from_str(
            &fs::read_to_string(&state_path).map_err(|e| Error::file(&state_path, e))?,
        )
        .map_err(|e| Error::file(&state_path, e))?;
        if state.examples != data.len() {
            return Err(Error::file(
                &state_path,
                format!(
                    "was trained on {} examples, the data given has {}: resume with the same data",
                    state.examples,
                    data.len()
                ),
            ));
        }
        let model = Trainable::load(&dir, device)?;
        let tokenizer = model.tokenizer()?;
        let mut optimizer = AdamW::new(
            model.trainable_vars(state.config.freeze_vision),
            adamw_config(&state.config),
        )?;
        let moments = candle_core::safetensors::load(dir.join(OPTIMIZER), device)
            .map_err(|e| Error::file(dir.join(OPTIMIZER), e))?;
        for (i, (name, _)) in optimizer.params.iter().enumerate() {
            let get = |kind: &str| {
                moments
                    .get(&format!("{kind}.{name}"))
                    .cloned()
                    .ok_or_else(|| {
                        Error::file(dir.join(OPTIMIZER), format!("has no {kind}.{name}"))
                    })
            };
            optimizer.m[i] = get("m")?;
            optimizer.v[i] = get("v")?;
        }
        optimizer.step = state.step as u64;
        Ok(Self {
            model,
            tokenizer,
            optimizer,
            state,
            out: out.to_path_buf(),
        })
    }

    /// Trains until the configured end. `report` sees every step; `validate` runs after
    /// each epoch and at the end, on a checkpoint just written, and its score picks the
    /// best checkpoint. `stop_after` ends the run early (after that many steps in all,
    /// with a checkpoint), as a kill would, for tests.
    pub fn run(
        &mut self,
        data: &TrainData,
        device: &Device,
        mut report: impl FnMut(&StepReport),
        mut validate: impl FnMut(&Path, &StepReport) -> Result<Option<Validation>>,
        stop_after: Option<usize>,
    ) -> Result<()> {
        let cfg = self.state.config.clone();
        let n = data.len();
        let total = cfg.total_steps(n);
        let per_epoch = cfg.micro_per_epoch(n);
        let recipe = TextRecipe {
            prompt: cfg.prompt.clone(),
            max_words: cfg.max_words,
            max_len: cfg.max_len,
            text: self.model.meta.config.text_config.clone(),
        };
        let processor = self.model.meta.processor.clone();
        if !processor.do_resize {
            return Err(Error::Other(
                "training needs images of one size: the checkpoint's processor has do_resize off"
                    .into(),
            ));
        }
        let accumulate = cfg.accumulate.max(1);
        let mut steps_log = self.open_steps_log()?;
        let tokenizer = self.tokenizer.clone();
        let (first, end) = (self.state.step * accumulate, total * accumulate);
        let batch = cfg.batch;
        let seed = cfg.seed;
        std::thread::scope(|scope| -> Result<()> {
            // The next micro-batches are decoded on another thread while this one trains.
            let (tx, batches) = sync_channel::<Result<(Tensor, TextBatch, usize)>>(2);
            scope.spawn(move || {
                let mut orders: HashMap<u64, Vec<usize>> = HashMap::new();
                for micro in first..end {
                    let epoch = (micro / per_epoch) as u64;
                    let at = micro % per_epoch;
                    let order = orders
                        .entry(epoch)
                        .or_insert_with(|| epoch_order(n, seed, epoch));
                    let indices = &order[at * batch..((at + 1) * batch).min(n)];
                    let loaded = load_batch(data, indices, &processor, &tokenizer, &recipe, device)
                        .map(|(p, t)| (p, t, indices.len()));
                    if tx.send(loaded).is_err() {
                        return;
                    }
                }
            });
            let result = self.steps(
                &batches,
                total,
                per_epoch,
                &mut steps_log,
                &mut report,
                &mut validate,
                stop_after,
            );
            // Hung up, the loader stops at its next batch and the scope can end.
            drop(batches);
            result
        })
    }

    /// The optimizer steps, on the micro-batches `batches` delivers in order.
    #[allow(clippy::too_many_arguments)]
    fn steps(
        &mut self,
        batches: &Receiver<Result<(Tensor, TextBatch, usize)>>,
        total: usize,
        per_epoch: usize,
        steps_log: &mut fs::File,
        report: &mut impl FnMut(&StepReport),
        validate: &mut impl FnMut(&Path, &StepReport) -> Result<Option<Validation>>,
        stop_after: Option<usize>,
    ) -> Result<()> {
        let cfg = self.state.config.clone();
        let accumulate = cfg.accumulate.max(1);
        while self.state.step < total {
            let step = self.state.step;
            let started = Instant::now();
            let lr = cfg.lr_at(step, total);
            let outcome = optimizer_step(&self.model, &mut self.optimizer, &cfg, lr, || {
                batches
                    .recv()
                    .map_err(|_| Error::Other("the data loader stopped".into()))?
            })?;
            if !outcome.loss.is_finite() {
                return Err(Error::Other(format!(
                    "the loss became {} at step {}: stopping; the last checkpoint in {} is intact (try a lower --lr)",
                    outcome.loss,
                    step + 1,
                    self.out.display()
                )));
            }
            self.state.step += 1;
            let done = self.state.step;
            let r = StepReport {
                step: done,
                total,
                epoch: (done * accumulate) as f64 / per_epoch as f64,
                loss: outcome.loss,
                lr,
                grad_norm: outcome.grad_norm,
                images_per_s: outcome.images as f64 / started.elapsed().as_secs_f64(),
            };
            report(&r);
            writeln!(
                steps_log,
                "{}\t{}\t{}\t{}",
                r.step, r.loss, r.lr, r.grad_norm
            )
            .and_then(|()| steps_log.flush())
            .map_err(|e| Error::file(self.out.join(STEPS), e))?;
            let epoch_end = (done * accumulate) / per_epoch > ((done - 1) * accumulate) / per_epoch;
            let last = done == total || stop_after == Some(done);
            if done.is_multiple_of(cfg.save_every.max(1)) || epoch_end || last {
                let dir = self.save_checkpoint()?;
                if epoch_end || done == total {
                    if let Some(v) = validate(&dir, &r)? {
                        self.log(&v)?;
                        self.draw_curves()?;
                        if self.state.best.is_none_or(|(s, _)| v.score > s) {
                            self.state.best = Some((v.score, done));
                            copy_checkpoint(&dir, &self.out.join(BEST))?;
                            // The state in the checkpoint knows its own bestness too.
                            write_atomic(&dir.join(TRAINER_STATE), &self.state_json()?)?;
                        }
                    }
                }
            }
            if stop_after == Some(done) {
                break;
            }
        }
        Ok(())
    }

    /// The per-step log, cut back to the steps done (a resumed run writes the rest
    /// again), open for appending.
    fn open_steps_log(&self) -> Result<fs::File> {
        let path = self.out.join(STEPS);
        let kept: String = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.split('\t')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|s| s <= self.state.step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())?;
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))
    }

    /// Redraws `OUT/curves.png` from the logs.
    fn draw_curves(&self) -> Result<()> {
        let steps = fs::read_to_string(self.out.join(STEPS)).unwrap_or_default();
        let train: Vec<(f64, f64)> = steps
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t').map(|x| x.parse::<f64>().ok());
                Some((f.next()??, f.next()??))
            })
            .collect();
        let metrics = fs::read_to_string(self.out.join(METRICS)).unwrap_or_default();
        let lines: Vec<serde_json::Value> = metrics
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let series = |key: &str| -> Vec<(f64, f64)> {
            lines
                .iter()
                .filter_map(|j| Some((j["step"].as_f64()?, j["metrics"][key].as_f64()?)))
                .collect()
        };
        let img = super::plot::plot(
            &super::plot::Series {
                name: "train loss",
                points: train,
            },
            &super::plot::Series {
                name: "val loss",
                points: series("val_loss"),
            },
            &super::plot::Series {
                name: "Bleu-4",
                points: series("Bleu_4"),
            },
            &super::plot::Series {
                name: "CIDEr",
                points: series("CIDEr"),
            },
        )?;
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::file(self.out.join(CURVES), e))?;
        write_atomic(&self.out.join(CURVES), &png.into_inner())
    }

    fn state_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.state).map_err(|e| Error::Other(e.to_string()))
    }

    /// Writes `OUT/checkpoint-NNNNNN/` (into a temporary folder, renamed into place)
    /// and points `OUT/latest` at it.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let name = format!("checkpoint-{:06}", self.state.step);
        let dir = self.out.join(&name);
        let tmp = self.out.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let mut tensors: HashMap<String, Tensor> = self
            .model
            .named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        tensors.extend(self.model.passengers.clone());
        checkpoint::save(&tmp, &self.model.meta, &tensors)?;
        let mut moments = HashMap::new();
        for (i, (name, _)) in self.optimizer.params.iter().enumerate() {
            moments.insert(format!("m.{name}"), self.optimizer.m[i].clone());
            moments.insert(format!("v.{name}"), self.optimizer.v[i].clone());
        }
        candle_core::safetensors::save(&moments, tmp.join(OPTIMIZER))
            .map_err(|e| Error::file(tmp.join(OPTIMIZER), e))?;
        write_atomic(&tmp.join(TRAINER_STATE), &self.state_json()?)?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&tmp, &dir).map_err(|e| Error::file(&dir, e))?;
        write_atomic(&self.out.join(LATEST), name.as_bytes())?;
        Ok(dir)
    }

    /// Appends a validation to `OUT/metrics.jsonl`, dropping lines a resumed run
    /// computes again.
    fn log(&self, v: &Validation) -> Result<()> {
        let path = self.out.join(METRICS);
        let mut kept: Vec<String> = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|j| j["step"].as_u64())
                    .is_some_and(|s| (s as usize) < v.step)
            })
            .map(str::to_string)
            .collect();
        kept.push(serde_json::to_string(v).map_err(|e| Error::Other(e.to_string()))?);
        write_atomic(&path, (kept.join("\n") + "\n").as_bytes())
    }
}

fn adamw_config(cfg: &TrainConfig) -> AdamWConfig {
    AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    }
}

/// Replaces `to` by a copy of the checkpoint folder `from`, through a temporary folder.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_file_name(format!(
        ".{}.tmp-{}",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("best"),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::file(from, e))? {
        let entry = entry.map_err(|e| Error::file(from, e))?;
        fs::copy(entry.path(), tmp.join(entry.file_name()))
            .map_err(|e| Error::file(entry.path(), e))?;
    }
    let old = to.with_file_name(format!(
        ".{}.old-{}",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("best"),
        std::process::id()
    ));
    if to.exists() {
        fs::rename(to, &old).map_err(|e| Error::file(to, e))?;
    }
    fs::rename(&tmp, to).map_err(|e| Error::file(to, e))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}
