//! `captioner train` and `captioner dataset synth`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use candle_core::Device;
use captioner::checkpoint::{CheckpointMeta, ModelFamily};
use captioner_runner::run;
use captioner_train::{select, TrainConfig, TrainData, Trainable, Trainer, ValSet};
use clap::{Args, Subcommand};
use datasets::References;

pub(crate) const TRAIN_HELP: &str = "\
Data:
  --train takes a COCO caption annotation file or Karpathy's dataset_coco.json, with
  image file names relative to --images. Validation: --val ANN.json, else the file's
  `val` split (Karpathy), else --val-fraction of the training images (chosen by --seed).
  Every problem of the files (missing images, empty captions, duplicate ids, captions
  for unknown images, file names leaving the image folder) is reported before training.

Model:
  --init DIR|HUB_ID fine-tunes a checkpoint (BLIP, or a VisionEncoderDecoder such as
  ViT + GPT-2 or TrOCR); --preset tiny builds a new BLIP-shaped model, with a WordPiece
  vocabulary learnt from the training captions.

Recipe (BLIP's): teacher forcing from [DEC] with the prompt \"a picture of \"; the loss
  skips padding and the prompt; cross-entropy with label smoothing 0.1; AdamW with
  weight decay; linear warm-up then cosine decay; gradient clipping; --accumulate
  micro-batches per step; --freeze-vision; dropout at the config's rates or --dropout.
  A VisionEncoderDecoder trains as transformers' VisionEncoderDecoderModel computes its
  loss: from its decoder_start_token_id, no prompt and no label smoothing by default,
  the tokenizer's own special tokens kept and its eos token closing each caption.

Output (--out DIR):
  DIR/checkpoint-NNNNNN/  checkpoints in the Hugging Face BLIP layout, each with the
                          optimizer state and step, written atomically
  DIR/best/               the checkpoint with the best validation CIDEr
  DIR/latest              the newest checkpoint's name
  DIR/metrics.jsonl       train loss, validation loss, perplexity, Bleu_4, CIDEr per epoch
  --resume continues the run in DIR from its latest checkpoint; the result is the same,
  bit for bit, as a run that was never stopped. A non-finite loss stops the run and
  leaves the last checkpoint as it was.";

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Training captions: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json", required_unless_present = "resume")]
    pub(crate) train: Option<PathBuf>,
    /// The folder the file names are relative to.
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub(crate) images: Option<PathBuf>,
    /// Train on these captions instead of --train's (a COCO results file or captioner's
    /// JSON lines, e.g. a bigger model's: distillation); --train still names the files.
    #[arg(long, value_name = "RESULTS.json")]
    pub(crate) captions: Option<PathBuf>,
    /// Validation captions (COCO annotations).
    #[arg(long, value_name = "ANN.json")]
    pub(crate) val: Option<PathBuf>,
    /// The validation images' folder [default: --images].
    #[arg(long, value_name = "DIR")]
    pub(crate) val_images: Option<PathBuf>,
    /// Hold out this share of the training images for validation.
    #[arg(long, value_name = "F")]
    pub(crate) val_fraction: Option<f64>,
    /// Validate on at most this many images.
    #[arg(long, default_value_t = 500)]
    pub(crate) val_max: usize,
    /// Where checkpoints and logs go.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Continue the run in --out from its latest checkpoint (its settings are kept).
    #[arg(long)]
    pub(crate) resume: bool,
    /// Fine-tune this checkpoint (a directory or a hub id).
    #[arg(long, value_name = "DIR|HUB_ID", conflicts_with = "preset")]
    pub(crate) init: Option<String>,
    /// Train a new model of these shapes (tiny).
    #[arg(long)]
    pub(crate) preset: Option<String>,
    /// Largest vocabulary for a new model's tokenizer.
    #[arg(long, default_value_t = 1000)]
    pub(crate) vocab_size: usize,
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    /// Stop after this many optimizer steps instead.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub(crate) accumulate: usize,
    /// Peak learning rate [default: 1e-5 fine-tuning, 3e-4 a new model].
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// The learning rate at the end of the cosine decay.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) min_lr: f64,
    /// Steps of linear warm-up.
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup: usize,
    #[arg(long, default_value_t = 0.05)]
    pub(crate) weight_decay: f64,
    /// Clip the gradients' global norm to this.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) max_grad_norm: f64,
    /// Label smoothing of the loss [default: 0.1 for BLIP, 0 for a VisionEncoderDecoder].
    #[arg(long)]
    pub(crate) label_smoothing: Option<f64>,
    /// Train the text decoder only (the vision encoder runs as at inference).
    #[arg(long)]
    pub(crate) freeze_vision: bool,
    /// Dropout rate of hidden states and attention probabilities [default: the
    /// checkpoint's config, 0 for BLIP's hub checkpoints and new models]. Saved in the
    /// checkpoints' config, as transformers keeps it.
    #[arg(long, value_name = "P")]
    pub(crate) dropout: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// The text every caption starts from [default: "a picture of " for BLIP, none for a
    /// VisionEncoderDecoder].
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// Save a checkpoint every N optimizer steps (and after every epoch).
    #[arg(long, default_value_t = 500)]
    pub(crate) save_every: usize,
    /// Threads [default: all cores]. Each batch is cut into as many shards (or fewer,
    /// one image at least each) run side by side; a resumed run keeps its first count.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// No progress line.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Subcommand)]
pub(crate) enum DatasetCommand {
    /// Write the synthetic shapes data set: images of one to three coloured shapes, five
    /// captions each, and each object's shape, colour and box in the annotations.
    Synth(SynthArgs),
}

#[derive(Args)]
pub(crate) struct SynthArgs {
    /// Output folder: images/{train,val,test}/ and {train,val,test}.json.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    #[arg(long, default_value_t = 5000)]
    pub(crate) train: usize,
    #[arg(long, default_value_t = 500)]
    pub(crate) val: usize,
    #[arg(long, default_value_t = 500)]
    pub(crate) test: usize,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 96)]
    pub(crate) size: u32,
    /// Replace an existing data set in --out.
    #[arg(long)]
    pub(crate) overwrite: bool,
}

pub(crate) fn synth(args: &SynthArgs) -> Result<ExitCode> {
    let opts = datasets::synth::SynthOptions {
        train: args.train,
        val: args.val,
        test: args.test,
        seed: args.seed,
        size: args.size,
    };
    let started = std::time::Instant::now();
    let s = datasets::synth::write_dataset(&args.out, &opts, args.overwrite)?;
    eprintln!(
        "wrote {} images and {} captions to {} in {:.1} s",
        s.images,
        s.captions,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn train(args: &TrainArgs) -> Result<ExitCode> {
    if let Some(n) = args.threads {
        run::set_threads(n)?;
    }
    run::candle_ops_on_caller();
    let device = Device::Cpu;
    let (data, val) = data(args)?;
    let mut trainer = if args.resume {
        Trainer::resume(&args.out, &data, &device)?
    } else {
        let init = args
            .init
            .as_deref()
            .map(captioner::hub::resolve_model)
            .transpose()?;
        let family = match &init {
            Some(dir) => CheckpointMeta::load(dir)?.config.family,
            None => ModelFamily::Blip,
        };
        let config = config(args, family);
        Trainer::start(
            model(args, init.as_deref(), &data, &config, &device)?,
            &data,
            config,
            &args.out,
        )?
    };
    let cfg = trainer.state.config.clone();
    let total = cfg.total_steps(data.len());
    eprintln!(
        "training on {} captions of {} images, {} steps of {} x {}{}",
        data.len(),
        data.files.len(),
        total,
        cfg.batch,
        cfg.accumulate,
        if trainer.state.step > 0 {
            format!(", resuming after step {}", trainer.state.step)
        } else {
            String::new()
        }
    );
    let log = StepLog::new(total, trainer.state.step, args.quiet);
    let (started, first) = (log.started, trainer.state.step);
    trainer.run(
        &data,
        &device,
        |r| log.step(r),
        |dir, r| match &val {
            Some(v) => {
                let got = captioner_train::validate(dir, v, &cfg, r, &device)?;
                let line = serde_json::to_string(&got.metrics).unwrap_or_default();
                log.line(&format!("validation at step {}: {line}", r.step));
                Ok(Some(got))
            }
            None => Ok(None),
        },
        None,
    )?;
    log.bar.finish_and_clear();
    eprintln!(
        "done: {} steps in {:.0} s; checkpoints in {}",
        trainer.state.step - first,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The training captions, and the validation set, as the arguments choose them.
fn data(args: &TrainArgs) -> Result<(TrainData, Option<ValSet>)> {
    let (Some(train_path), Some(root)) = (&args.train, &args.images) else {
        bail!("--resume needs the same --train and --images as the run it continues");
    };
    let validation = match (&args.val, args.val_fraction) {
        (Some(val), _) => select::Validation::File(References::load(val)?),
        (None, Some(fraction)) => select::Validation::HeldOut {
            fraction,
            seed: args.seed,
        },
        (None, None) => select::Validation::FromSplits,
    };
    let (mut train_refs, val_refs) = select::split(References::load(train_path)?, validation)?;
    if let Some(path) = &args.captions {
        let kept = select::use_captions_of(&mut train_refs, path)?;
        eprintln!("training on {}'s captions of {kept} images", path.display());
    }
    let val_root = args.val_images.as_ref().unwrap_or(root);
    let val = match val_refs {
        Some(v) => Some(ValSet::new(v, val_root, args.val_max)?),
        None => None,
    };
    Ok((TrainData::new(&train_refs, root)?, val))
}

/// A new run's configuration (a fresh model learns faster than a fine-tune), with the
/// recipe of the model's family where the arguments leave it open.
fn config(args: &TrainArgs, family: ModelFamily) -> TrainConfig {
    let fresh = args.init.is_none();
    let blip = family == ModelFamily::Blip;
    TrainConfig {
        epochs: args.epochs,
        max_steps: args.steps,
        batch: args.batch,
        accumulate: args.accumulate,
        shards: rayon::current_num_threads(),
        lr: args.lr.unwrap_or(if fresh { 3e-4 } else { 1e-5 }),
        min_lr: args.min_lr,
        warmup_steps: args.warmup,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        label_smoothing: args.label_smoothing.unwrap_or(if blip { 0.1 } else { 0.0 }),
        freeze_vision: args.freeze_vision,
        seed: args.seed,
        prompt: args
            .prompt
            .clone()
            .unwrap_or_else(|| if blip { "a picture of " } else { "" }.into()),
        save_every: args.save_every,
        ..TrainConfig::default()
    }
}

/// The model to train: a checkpoint to fine-tune, or a new one of a preset's shapes.
fn model(
    args: &TrainArgs,
    init: Option<&std::path::Path>,
    data: &TrainData,
    config: &TrainConfig,
    device: &Device,
) -> Result<Trainable> {
    let mut model = match (init, &args.preset) {
        (Some(init), _) => Trainable::load(init, device)?,
        (None, Some(preset)) => {
            captioner_train::from_preset(preset, data, config, args.vocab_size, device)?
        }
        (None, None) => {
            bail!("say what to train: --init CHECKPOINT (fine-tune) or --preset tiny (a new model)")
        }
    };
    if let Some(p) = args.dropout {
        if !(0.0..1.0).contains(&p) {
            bail!("--dropout {p}: a rate must be at least 0 and below 1");
        }
        model.set_dropout(p);
    }
    Ok(model)
}

/// What a training run prints per step: a progress bar on a terminal, else a line every
/// 50 steps (nothing when quiet).
struct StepLog {
    bar: indicatif::ProgressBar,
    lines: bool,
    first: usize,
    started: std::time::Instant,
}

impl StepLog {
    fn new(total: usize, first: usize, quiet: bool) -> Self {
        let draw = std::io::stderr().is_terminal() && !quiet;
        let bar = if draw {
            let style = indicatif::ProgressStyle::with_template(
                "step {pos}/{len} [{bar:20}] {msg} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("#-");
            let bar = indicatif::ProgressBar::new(total as u64).with_style(style);
            bar.set_position(first as u64);
            bar.reset_eta();
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self {
            bar,
            lines: !draw && !quiet,
            first,
            started: std::time::Instant::now(),
        }
    }

    fn step(&self, r: &captioner_train::StepReport) {
        let stats = format!(
            "epoch {:.2} loss {:.4} lr {:.1e} {:.1} img/s",
            r.epoch, r.loss, r.lr, r.images_per_s
        );
        if self.lines && (r.step - self.first).is_multiple_of(50) {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!("step {}/{} {stats} {secs:.0} s", r.step, r.total);
        }
        self.bar.set_position(r.step as u64);
        self.bar.set_message(stats);
    }

    /// A line above the bar.
    fn line(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }
}
