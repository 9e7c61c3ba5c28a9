//! The `captioner` command line: a thin layer over the `captioner` library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use caption_metrics::{self as metrics, Report};
use captioner::checkpoint::Prompting;
use captioner::Layer;
use captioner::{CaptionOptions, Captioner};
use captioner_attention::{self as attention, AttentionSink};
use captioner_runner::output::{Format, Sink, TagMode, Tee};
use captioner_runner::progress::Progress;
use captioner_runner::resume::{self, OutputSpec};
use captioner_runner::run::{self, RunOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use datasets::{ImageWalk, References};
use text_decoder::{EarlyStopping, Sampling};

#[derive(Parser)]
#[command(
    name = "captioner",
    version,
    about = "Caption images with BLIP-style models (Hugging Face BLIP checkpoints)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Caption images and folders of images; one JSON line per image by default.
    #[command(
        after_help = "Exit status: 0 all captioned (or skipped as done), 2 some images failed, \
                      1 fatal error. --help tells about inputs, outputs and resuming.",
        after_long_help = CAPTION_HELP
    )]
    Caption(Box<CaptionArgs>),
    /// Caption images and draw where the decoder looked for each word: per image, a
    /// sheet (the image, then each word's heatmap) and the maps as JSON.
    #[command(after_long_help = ATTEND_HELP)]
    Attend(Box<AttendArgs>),
    /// Benchmarks: images/s of a BLIP-base-sized model, or the time to score captions.
    ///
    /// A BLIP-base-sized model with random weights (built in-process, no download): the
    /// vision encoder at batch 8, greedy at batch 1 and 8, 3 beams at batch 8, each
    /// writing exactly 20 tokens. scripts/bench_transformers.py runs the same cases with
    /// transformers. With --metrics: the COCO caption evaluation of 5,000 synthetic
    /// images; scripts/bench_pycocoevalcap.py times pycocoevalcap on the same captions.
    /// With --train: training steps of the tiny preset and of BLIP-base with a frozen
    /// vision encoder.
    Bench(BenchArgs),
    /// Score captions with the COCO caption evaluation: Bleu_1..4, ROUGE_L and CIDEr,
    /// the numbers pycocoevalcap gives (METEOR and SPICE are not computed).
    #[command(after_long_help = SCORE_HELP)]
    Score(ScoreArgs),
    /// Fine-tune a checkpoint, or train a new model, on COCO-style captions.
    #[command(after_long_help = TRAIN_HELP)]
    Train(Box<TrainArgs>),
    /// Data sets: `dataset synth` writes the synthetic shapes data set.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Caption the images of a COCO-style or Karpathy data set (or one split) and score
    /// the captions; writes results.json, scores.json and per_image.json to --out.
    #[command(after_long_help = SCORE_HELP)]
    Eval(Box<EvalArgs>),
}

const ATTEND_HELP: &str = "\
Maps:
  For each generated token, its cross-attention over the image: one decoder layer
  (--attn-layer) or the mean over layers, the mean over heads, the class token left out,
  on the patch grid (24 x 24 for a 384 px model). The pieces of a WordPiece word are
  averaged into one map. Sheets upsample each map smoothly (bilinear) to the image as
  shown (its own size up to 256 px on the longer side) and colour it from blue (least)
  to red (most), each map scaled by its largest value.

Outputs (--out DIR), named after the image (its path relative to the folder given):
  DIR/NAME.png   the image, then one tile per word with its heatmap, the word under it
  DIR/NAME.json  file, caption, tokens (the whole sequence's ids), layer, grid [rows,
                 cols] and per word its word, tokens, positions among the generated
                 tokens, and weights (rows of the grid)
  --report FILE  one self-contained HTML page: every image with its caption; hovering
                 or tapping a word draws its heatmap over the image. It needs no network
                 and no other file.
  The captions themselves go to standard output as JSON lines, as `caption` writes them.
  With beam search, the maps are those of the returned caption's own steps.";

const SCORE_HELP: &str = "\
References (--refs, --ann):
  a COCO caption annotation file (images[] with id and file_name, annotations[] with
  image_id and caption), or Karpathy's dataset_coco.json (images[] with filepath,
  filename, cocoid, split and sentences[].raw; --split picks train, val, test or restval).

Results (--preds):
  a COCO results file, [{\"image_id\", \"caption\"}], or captioner's JSON lines (by
  image_id when they have it, else by file matched to the references' file_name; error
  records are left out and counted). Two results for one image, or a result for an
  image the references do not have, is an error.

Metrics:
  As pycocoevalcap 1.2 computes them: captions are tokenized by a reimplementation of
  its Stanford PTBTokenizer step (lower case, punctuation removed), then Bleu_1..Bleu_4
  (corpus BLEU from pooled counts, closest reference length), ROUGE_L (beta 1.2, mean
  over images) and CIDEr (CIDEr-D: sigma 6, clipping, x10, document frequencies from
  the scored images' references, so one image alone always gets CIDEr 0). Only images
  with a result are scored, as pycocoevalcap's demo does; the others are listed in a
  warning. Captions containing line breaks (\\r, U+2028) are scored as if those were
  spaces, where pycocoevalcap's Java step would misalign every later caption.
  --bleu sacrebleu gives sacreBLEU's default corpus BLEU instead of Bleu_1..4 (13a
  tokens of the raw, case-kept text; exp smoothing; on a 0-100 scale).
  METEOR and SPICE are not computed: they need Java programs and data (WordNet,
  paraphrase tables, a parser) that captioner does not ship. Use pycocoevalcap on the
  results file for them.";

const TRAIN_HELP: &str = "\
Data:
  --train takes a COCO caption annotation file or Karpathy's dataset_coco.json, with
  image file names relative to --images. Validation: --val ANN.json, else the file's
  `val` split (Karpathy), else --val-fraction of the training images (chosen by --seed).
  Every problem of the files (missing images, empty captions, duplicate ids, captions
  for unknown images, file names leaving the image folder) is reported before training.

Model:
  --init DIR|HUB_ID fine-tunes a BLIP checkpoint; --preset tiny builds a new model,
  with a WordPiece vocabulary learnt from the training captions.

Recipe (BLIP's): teacher forcing from [DEC] with the prompt \"a picture of \"; the loss
  skips padding and the prompt; cross-entropy with label smoothing 0.1; AdamW with
  weight decay; linear warm-up then cosine decay; gradient clipping; --accumulate
  micro-batches per step; --freeze-vision; dropout at the config's rates or --dropout.

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
struct TrainArgs {
    /// Training captions: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json", required_unless_present = "resume")]
    train: Option<PathBuf>,
    /// The folder the file names are relative to.
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    images: Option<PathBuf>,
    /// Train on these captions instead of --train's (a COCO results file or captioner's
    /// JSON lines, e.g. a bigger model's: distillation); --train still names the files.
    #[arg(long, value_name = "RESULTS.json")]
    captions: Option<PathBuf>,
    /// Validation captions (COCO annotations).
    #[arg(long, value_name = "ANN.json")]
    val: Option<PathBuf>,
    /// The validation images' folder [default: --images].
    #[arg(long, value_name = "DIR")]
    val_images: Option<PathBuf>,
    /// Hold out this share of the training images for validation.
    #[arg(long, value_name = "F")]
    val_fraction: Option<f64>,
    /// Validate on at most this many images.
    #[arg(long, default_value_t = 500)]
    val_max: usize,
    /// Where checkpoints and logs go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Continue the run in --out from its latest checkpoint (its settings are kept).
    #[arg(long)]
    resume: bool,
    /// Fine-tune this checkpoint (a directory or a hub id).
    #[arg(long, value_name = "DIR|HUB_ID", conflicts_with = "preset")]
    init: Option<String>,
    /// Train a new model of these shapes (tiny).
    #[arg(long)]
    preset: Option<String>,
    /// Largest vocabulary for a new model's tokenizer.
    #[arg(long, default_value_t = 1000)]
    vocab_size: usize,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Stop after this many optimizer steps instead.
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Peak learning rate [default: 1e-5 fine-tuning, 3e-4 a new model].
    #[arg(long)]
    lr: Option<f64>,
    /// The learning rate at the end of the cosine decay.
    #[arg(long, default_value_t = 0.0)]
    min_lr: f64,
    /// Steps of linear warm-up.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// Clip the gradients' global norm to this.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// Train the text decoder only (the vision encoder runs as at inference).
    #[arg(long)]
    freeze_vision: bool,
    /// Dropout rate of hidden states and attention probabilities [default: the
    /// checkpoint's config, 0 for BLIP's hub checkpoints and new models]. Saved in the
    /// checkpoints' config, as transformers keeps it.
    #[arg(long, value_name = "P")]
    dropout: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The text every caption starts from.
    #[arg(long, default_value = "a picture of ")]
    prompt: String,
    /// Save a checkpoint every N optimizer steps (and after every epoch).
    #[arg(long, default_value_t = 500)]
    save_every: usize,
    /// Threads [default: all cores]. Each batch is cut into as many shards (or fewer,
    /// one image at least each) run side by side; a resumed run keeps its first count.
    #[arg(long)]
    threads: Option<usize>,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Write the synthetic shapes data set: images of one to three coloured shapes, five
    /// captions each, and each object's shape, colour and box in the annotations.
    Synth(SynthArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Output folder: images/{train,val,test}/ and {train,val,test}.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 5000)]
    train: usize,
    #[arg(long, default_value_t = 500)]
    val: usize,
    #[arg(long, default_value_t = 500)]
    test: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 96)]
    size: u32,
    /// Replace an existing data set in --out.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct ScoreArgs {
    /// Reference captions: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json")]
    refs: PathBuf,
    /// Captions to score: COCO results or captioner's JSON lines.
    #[arg(long, value_name = "RESULTS.json")]
    preds: PathBuf,
    /// Score only this split of a Karpathy file (train, val, test, restval).
    #[arg(long)]
    split: Option<String>,
    /// Print JSON: scores, counts, BLEU statistics and warnings.
    #[arg(long)]
    json: bool,
    /// Write every image's scores to FILE (JSON).
    #[arg(long, value_name = "FILE")]
    per_image: Option<PathBuf>,
    /// Which BLEU to report.
    #[arg(long, value_enum, default_value_t = BleuArg::Coco)]
    bleu: BleuArg,
}

#[derive(Args)]
struct EvalArgs {
    /// The data set's references: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json")]
    ann: PathBuf,
    /// The folder the references' file names are relative to.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Only this split of a Karpathy file (train, val, test, restval).
    #[arg(long)]
    split: Option<String>,
    /// Where results.json (resumed when it exists), scores.json and per_image.json go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Caption every image again instead of resuming results.json.
    #[arg(long)]
    overwrite: bool,
    /// Print the scores as JSON.
    #[arg(long)]
    json: bool,
    /// Which BLEU to report.
    #[arg(long, value_enum, default_value_t = BleuArg::Coco)]
    bleu: BleuArg,
    /// Also score where the decoder looks, on a data set whose annotations hold scenes
    /// (`dataset synth`): per colour or shape word naming objects of the image, the
    /// share of its attention inside their boxes and whether its peak is inside
    /// (pointing), beside chance (the boxes' share of the image). Captions every image
    /// again, as --overwrite does.
    #[arg(long)]
    attention: bool,
    /// With --attention: the decoder layer scored, from 0 [default: the mean over layers].
    #[arg(long, value_name = "N", requires = "attention")]
    attn_layer: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum BleuArg {
    /// pycocoevalcap's Bleu_1..Bleu_4.
    Coco,
    /// sacreBLEU's default corpus BLEU.
    Sacrebleu,
}

impl From<BleuArg> for metrics::BleuKind {
    fn from(b: BleuArg) -> Self {
        match b {
            BleuArg::Coco => Self::Coco,
            BleuArg::Sacrebleu => Self::SacreBleu,
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// Timed runs per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Tokens per caption.
    #[arg(long, default_value_t = 20)]
    tokens: usize,
    /// Batch size of the batched cases.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// The linear layers' arithmetic in the captioning cases (see `caption --help`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// Measure quality instead: the reduced precisions' teacher-forced top-1 agreement
    /// with f32, and their logit error, on a BLIP-base-sized random checkpoint with the
    /// parity fixtures' large-margin initialisation (--batch images, --tokens positions
    /// each; bf16 and int8, or only --precision when given).
    #[arg(long, conflicts_with_all = ["metrics", "train", "decode"])]
    agreement: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Time the COCO caption evaluation instead: tokenizing and scoring 5,000 synthetic
    /// images with 5 references each.
    #[arg(long)]
    metrics: bool,
    /// With --metrics: also write the synthetic data to DIR (refs.json, results.json), for
    /// scripts/bench_pycocoevalcap.py to time pycocoevalcap on the same captions.
    #[arg(long, value_name = "DIR", requires = "metrics")]
    save_data: Option<PathBuf>,
    /// Time training steps instead (forward, loss, backward, clipping, AdamW): the tiny
    /// preset at --batch and at 32, and BLIP-base with a frozen vision encoder at --batch.
    /// `scripts/bench_transformers.py --train` runs the same steps in PyTorch.
    #[arg(long, conflicts_with = "metrics")]
    train: bool,
    /// Time image decoding instead: the images in DIR, or without DIR 16 synthetic
    /// 12-megapixel (4000x3000) JPEGs written to a temporary folder, decoded as captioning
    /// decodes them (libjpeg-turbo, Pillow's pixels) and by the `image` crate's decoder.
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with_all = ["metrics", "train"])]
    decode: Option<Option<PathBuf>>,
}

fn bench_agreement(args: &BenchArgs) -> Result<ExitCode> {
    use captioner::Precision;
    let precisions = match Precision::from(args.precision) {
        Precision::F32 => vec![Precision::Bf16, Precision::Int8],
        p => vec![p],
    };
    let opts = captioner_bench::quality::AgreementOptions {
        images: args.batch.max(1),
        tokens: args.tokens.max(1),
        seed: 0,
    };
    eprintln!(
        "teacher-forced agreement with f32: BLIP-base size, large-margin random weights, \
         {} images x {} positions, {} threads",
        opts.images,
        opts.tokens,
        rayon::current_num_threads()
    );
    let (vision_cfg, text_cfg) = captioner_bench::blip_base_configs();
    let results = captioner_bench::quality::agreement(&vision_cfg, &text_cfg, &precisions, &opts)?;
    let rows: Vec<_> = results
        .iter()
        .map(|a| {
            serde_json::json!({
                "precision": a.precision.describe(),
                "positions": a.positions,
                "agreeing": a.agreeing,
                "agreement": a.rate(),
                "max_logit_error": a.max_logit_error,
                "mean_logit_error": a.mean_logit_error,
                "logit_std": a.logit_std,
                "median_top1_margin": a.median_margin,
                "distinct_top1_tokens": a.distinct_top1,
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::Value::from(rows));
    } else {
        for a in &results {
            println!(
                "{}: top-1 {}/{} ({:.2}%), logit error max {:.4} mean {:.4} \
                 (f32 logits: std {:.3}, median top-1 margin {:.3}, {} distinct top-1 tokens)",
                a.precision.describe(),
                a.agreeing,
                a.positions,
                100.0 * a.rate(),
                a.max_logit_error,
                a.mean_logit_error,
                a.logit_std,
                a.median_margin,
                a.distinct_top1
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(args: &BenchArgs) -> Result<ExitCode> {
    if let Some(n) = args.threads {
        run::set_threads(n)?;
    }
    if args.train {
        run::candle_ops_on_caller();
    }
    if args.metrics {
        return bench_metrics(args);
    }
    if let Some(dir) = &args.decode {
        return bench_decode(args, dir.as_deref());
    }
    if args.agreement {
        return bench_agreement(args);
    }
    let opts = captioner_bench::BenchOptions {
        runs: args.runs.max(1),
        warmup: args.warmup,
        tokens: args.tokens,
        batch: args.batch.max(1),
        precision: args.precision.into(),
        load_with: returning_freed_memory,
    };
    if args.train && opts.precision != captioner::Precision::F32 {
        bail!("training steps run in f32; leave out --precision");
    }
    eprintln!(
        "{}, random weights, {}, CPU, {} threads, median of {} runs",
        if args.train {
            "training steps"
        } else {
            "BLIP-base size"
        },
        opts.precision.describe(),
        rayon::current_num_threads(),
        opts.runs
    );
    let mut first = true;
    let show = |c: &captioner_bench::BenchCase| {
        if !args.json {
            println!(
                "{:<30} {:>7.3} img/s  (median {:.3} s)",
                c.name,
                c.images_per_second(),
                c.median_seconds()
            );
        }
        // The model is loaded and converted by now: what the process holds while running
        // (freed memory stays with the allocator), beside the peak so far.
        if std::mem::take(&mut first) {
            if let (Some(now), Some(peak)) = (memory_kb("VmRSS"), memory_kb("VmHWM")) {
                eprintln!(
                    "resident after the first case {:.2} GB, peak so far {:.2} GB",
                    now as f64 / 1e6,
                    peak as f64 / 1e6
                );
            }
        }
    };
    let cases = if args.train {
        captioner_bench::run_training(&opts, &Device::Cpu, show)?
    } else {
        captioner_bench::run(&opts, &Device::Cpu, show)?
    };
    if let Some(peak) = memory_kb("VmHWM") {
        eprintln!("peak resident {:.2} GB", peak as f64 / 1e6);
    }
    if args.json {
        let rows: Vec<_> = cases
            .iter()
            .map(|c| {
                serde_json::json!({"case": c.name, "batch": c.batch, "images_per_s": c.images_per_second(),
                    "median_s": c.median_seconds(), "seconds": c.seconds})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// A line of /proc/self/status, in kB (Linux).
fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench_decode(args: &BenchArgs, dir: Option<&Path>) -> Result<ExitCode> {
    let opts = captioner_bench::BenchOptions {
        runs: args.runs.max(1),
        warmup: args.warmup,
        ..Default::default()
    };
    let scratch = std::env::temp_dir().join(format!("captioner-bench-{}", std::process::id()));
    let files = match dir {
        Some(dir) => datasets::ImageWalk::new([dir])
            .map(|f| f.map(|f| f.path))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None => {
            eprintln!(
                "writing 16 synthetic 4000x3000 JPEGs to {}",
                scratch.display()
            );
            captioner_bench::decode::write_test_jpegs(&scratch, 16, 4000, 3000)?
        }
    };
    if files.is_empty() {
        bail!("no images to decode");
    }
    let megapixels: f64 = files
        .iter()
        .map(|f| image::image_dimensions(f).map_or(0.0, |(w, h)| w as f64 * h as f64 / 1e6))
        .sum::<f64>()
        / files.len() as f64;
    eprintln!(
        "{} images of {megapixels:.1} megapixels on average, {} threads, median of {} runs",
        files.len(),
        rayon::current_num_threads(),
        opts.runs
    );
    let cases = captioner_bench::decode::run_decode(&opts, &files, |c| {
        if !args.json {
            println!(
                "{:<32} {:>7.2} img/s  {:>6.1} MP/s  (median {:.3} s)",
                c.name,
                c.images_per_second(),
                c.images_per_second() * megapixels,
                c.median_seconds()
            );
        }
    });
    if dir.is_none() {
        std::fs::remove_dir_all(&scratch).ok();
    }
    let cases = cases?;
    let ratio = cases[0].images_per_second() / cases[1].images_per_second();
    if args.json {
        let rows: Vec<_> = cases
            .iter()
            .map(|c| serde_json::json!({"case": c.name, "images": c.batch, "images_per_s": c.images_per_second(),
                "median_s": c.median_seconds(), "seconds": c.seconds}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"megapixels": megapixels, "cases": rows, "ratio": ratio})
        );
    } else {
        println!("ratio (captioner / image crate): {ratio:.2}");
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_metrics(args: &BenchArgs) -> Result<ExitCode> {
    const IMAGES: usize = 5000;
    const REFS: usize = 5;
    let opts = captioner_bench::BenchOptions {
        runs: args.runs.max(1),
        warmup: args.warmup,
        ..Default::default()
    };
    if let Some(dir) = &args.save_data {
        let (cands, refs) = captioner_bench::metrics::synthetic_captions(IMAGES, REFS);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let images: Vec<_> = (0..IMAGES)
            .map(|i| serde_json::json!({"id": i, "file_name": format!("{i}.jpg")}))
            .collect();
        let anns: Vec<_> = refs
            .iter()
            .enumerate()
            .flat_map(|(i, rs)| rs.iter().map(move |r| (i, r)))
            .enumerate()
            .map(|(id, (i, r))| serde_json::json!({"id": id, "image_id": i, "caption": r}))
            .collect();
        let results: Vec<_> = cands
            .iter()
            .enumerate()
            .map(|(i, c)| serde_json::json!({"image_id": i, "caption": c}))
            .collect();
        write_json(
            &dir.join("refs.json"),
            &serde_json::json!({"images": images, "annotations": anns}),
        )?;
        write_json(
            &dir.join("results.json"),
            &serde_json::Value::Array(results),
        )?;
    }
    let case = captioner_bench::metrics::run_metrics(&opts, IMAGES, REFS);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"case": case.name, "median_s": case.median_seconds(), "seconds": case.seconds})
        );
    } else {
        println!(
            "{}: {:.3} s (median of {}, {} threads)",
            case.name,
            case.median_seconds(),
            opts.runs,
            rayon::current_num_threads()
        );
    }
    Ok(ExitCode::SUCCESS)
}

const CAPTION_HELP: &str = "\
Inputs:
  Folders are walked recursively, in a stable order (each folder's entries sorted by
  name, depth first), for .jpg .jpeg .png .webp .gif .bmp .tiff .tif files (any case);
  hidden entries (names starting with '.') are left out; links are followed, and a
  folder already visited is not entered again. A file named on the command line is
  captioned whatever its extension.

Outputs:
  jsonl  one object per image: file, caption, score, tokens (+ candidates with
         --num-return N); an image that failed: file, error.
  json   COCO results, [{\"image_id\", \"caption\"}], written when the run ends (to a
         temporary file renamed over FILE). image_id comes from --ann (images[].file_name
         matched to the path relative to the folder argument, or to the file name), else
         it is the file name without its extension. While it runs, records go to a
         journal beside FILE, .FILE.partial.jsonl, removed at the end.
  csv    a file,caption header, then one row per captioned image (RFC 4180 quoting).
  txt    a tag file beside each image (photo.jpg -> photo.txt, see --sidecar-ext); an
         existing one is left alone and its image skipped, unless --overwrite, --append
         or --prepend. Each is written atomically.
  Failed images are reported on stderr, one line each, in every format; only jsonl (and
  the json journal) also keeps them in the output.

Resuming:
  Output is written and flushed after every batch. When -o FILE exists and is of the
  same format, the run resumes it: images already captioned in it are skipped, a
  record cut short by a killed run is cut away, and failed images are tried again (the
  file is first rewritten without their error records, so every image appears once).
  A file that is not such an output is left alone and the run stops: use --overwrite to
  start over, or another -o. Resuming assumes the same model and options.

Progress:
  A progress line (images done, images/s, and the time left once a quick counting walk
  has found the total) is drawn on stderr when it is a terminal. A summary line ends
  every run: captioned, failed, skipped, time, images/s. --quiet drops both.

Exit status:
  0  every image was captioned (or skipped as done already)
  2  some images failed (each is reported; the others were captioned)
  1  a fatal error (a missing model, an unusable output file, bad options)";

#[derive(Args)]
struct AttendArgs {
    /// Image files and folders (folders are walked for images, as `caption` walks them).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where each image's sheet (NAME.png) and maps (NAME.json) go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also write one HTML page of every image, its caption and word heatmaps.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The decoder layer the maps show, from 0 [default: the mean over layers].
    #[arg(long, value_name = "N")]
    attn_layer: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Args)]
struct CaptionArgs {
    /// Image files and folders (folders are walked for images, see below).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Output format [default: from -o's extension (.json, .csv), else jsonl].
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// Resume -o FILE (the default when it exists; this makes it explicit and needs -o).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start -o FILE over instead of resuming it; with --format txt, replace existing tag
    /// files.
    #[arg(long)]
    overwrite: bool,
    /// --format txt: add the caption at the end of an existing tag file ("tags, caption");
    /// a caption already among its comma-separated tags is not added again.
    #[arg(long, conflicts_with_all = ["overwrite", "prepend"])]
    append: bool,
    /// --format txt: add the caption at the start of an existing tag file ("caption, tags").
    #[arg(long, conflicts_with = "overwrite")]
    prepend: bool,
    /// --format txt: extension of the tag files.
    #[arg(long, default_value = "txt", value_name = "EXT")]
    sidecar_ext: String,
    /// COCO annotation file whose images[] give the image ids (json; adds image_id to jsonl).
    #[arg(long, value_name = "ANN.json")]
    ann: Option<PathBuf>,
    /// Also write each image's attention sheet and maps under DIR (see `attend --help`).
    #[arg(long, value_name = "DIR")]
    attention: Option<PathBuf>,
    /// Also write one HTML page of every image captioned in this run, its caption and,
    /// on hovering or tapping a word, that word's heatmap.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// With --attention or --report: the decoder layer the maps show, from 0 [default:
    /// the mean over layers].
    #[arg(long, value_name = "N")]
    attn_layer: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    generate: GenerateArgs,
}

/// Which model, where it runs.
#[derive(Args)]
struct ModelArgs {
    /// A checkpoint directory in the Hugging Face BLIP layout (config.json,
    /// model.safetensors, tokenizer.json, preprocessor_config.json), or a hub id such
    /// as Salesforce/blip-image-captioning-large, read from the Hugging Face cache
    /// (HF_HOME) and downloaded there once when online.
    #[arg(long, default_value = captioner::hub::DEFAULT_MODEL)]
    model: String,
    /// Threads for decoding and the model [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Where the model runs (cuda needs a build with --features cuda).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Arithmetic of the linear layers: f32 gives transformers' numbers; bf16 and int8
    /// convert the weights at load time (CPU only) for speed and memory, with captions
    /// close to f32's but not identical (the image's keys and values are kept in the
    /// same precision); auto picks bf16 where the CPU has AVX-512, else f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    F32,
    Bf16,
    Int8,
    Auto,
}

impl From<PrecisionArg> for captioner::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::Bf16 => Self::Bf16,
            PrecisionArg::Int8 => Self::Int8,
            PrecisionArg::Auto => Self::Auto,
        }
    }
}

/// How captions are written.
#[derive(Args)]
struct GenerateArgs {
    /// Beam width; 1 is greedy search.
    #[arg(long, default_value_t = 3)]
    beams: usize,
    /// Images per forward pass; the next batch is decoded while this one runs.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Most tokens to generate after the prompt, [SEP] included
    /// [default: 20 minus the prompt's length in tokens, BLIP's max_length 20].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// [SEP] is forbidden before this many new tokens
    /// [default: 5 minus the prompt's length in tokens, BLIP's min_length 5].
    #[arg(long)]
    min_new_tokens: Option<usize>,
    /// Beam scores are sum(log p) / new_tokens^length_penalty; above 1 favours longer captions.
    #[arg(long, default_value_t = 1.0)]
    length_penalty: f32,
    /// Beam search stopping rule, as transformers' early_stopping.
    #[arg(long, value_enum, default_value_t = Stop::Heuristic)]
    early_stopping: Stop,
    /// Forbid repeating any n-gram of this size (0 = off).
    #[arg(long, default_value_t = 0)]
    no_repeat_ngram: usize,
    /// Penalise tokens already written (1.0 = off; transformers' repetition_penalty).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Text the caption starts from, e.g. "a picture of"; "" for none [default: the
    /// checkpoint's, from its generation_config.json, which training writes; hub BLIP
    /// checkpoints have none].
    #[arg(long)]
    prompt: Option<String>,
    /// Leave the prompt out of the caption (LAVIS) [default: as the checkpoint says;
    /// else kept, as transformers keeps it].
    #[arg(long, conflicts_with = "keep_prompt")]
    strip_prompt: bool,
    /// Keep the prompt in the caption, whatever the checkpoint says.
    #[arg(long)]
    keep_prompt: bool,
    /// Captions per image (at most --beams; with --sample, independent samples).
    #[arg(long, default_value_t = 1)]
    num_return: usize,
    /// Sample tokens instead of searching (needs --beams 1).
    #[arg(long)]
    sample: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Sample among the most likely tokens holding this much probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Refuse images with more pixels than this (decompression bombs).
    #[arg(long, default_value_t = datasets::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutFormat {
    Jsonl,
    Json,
    Csv,
    Txt,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
enum Stop {
    /// Stop when no running beam can beat the finished ones (transformers' False).
    Heuristic,
    /// Stop once num_beams captions are finished (True).
    Always,
    /// Keep searching while a beam could still improve at full length ("never").
    Never,
}

impl GenerateArgs {
    /// The options asked for, the prompt as `checkpoint` wants it where none is given.
    fn options(&self, checkpoint: &Prompting) -> CaptionOptions {
        CaptionOptions {
            num_beams: self.beams,
            max_new_tokens: self.max_new_tokens,
            min_new_tokens: self.min_new_tokens,
            length_penalty: self.length_penalty,
            early_stopping: match self.early_stopping {
                Stop::Heuristic => EarlyStopping::Heuristic,
                Stop::Always => EarlyStopping::Always,
                Stop::Never => EarlyStopping::Never,
            },
            no_repeat_ngram_size: self.no_repeat_ngram,
            repetition_penalty: self.repetition_penalty,
            num_return_sequences: self.num_return,
            sampling: self.sample.then_some(Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            }),
            prompt: self.prompt.clone().or_else(|| checkpoint.prompt.clone()),
            strip_prompt: self.strip_prompt || (checkpoint.strip_prompt && !self.keep_prompt),
            output_attentions: false,
        }
    }
}

impl CaptionArgs {
    fn format(&self) -> Format {
        match (self.format, &self.output) {
            (Some(OutFormat::Jsonl), _) => Format::Jsonl,
            (Some(OutFormat::Json), _) => Format::Json,
            (Some(OutFormat::Csv), _) => Format::Csv,
            (Some(OutFormat::Txt), _) => Format::Txt,
            (None, Some(path)) => Format::from_path(path),
            (None, None) => Format::Jsonl,
        }
    }

    fn output_spec(&self) -> Result<OutputSpec> {
        let format = self.format();
        if format != Format::Txt && (self.append || self.prepend) {
            bail!("--append and --prepend add to tag files: use them with --format txt");
        }
        if self.resume && self.output.is_none() {
            bail!("--resume needs -o FILE (standard output cannot be resumed)");
        }
        if self.ann.is_some() && !matches!(format, Format::Json | Format::Jsonl) {
            bail!("--ann gives image ids to --format json (and jsonl)");
        }
        let ann = match &self.ann {
            Some(path) => Some(datasets::ImageIds::load(path)?),
            None => None,
        };
        Ok(OutputSpec {
            format,
            path: self.output.clone(),
            overwrite: self.overwrite,
            tag_mode: if self.append {
                TagMode::Append
            } else if self.prepend {
                TagMode::Prepend
            } else {
                TagMode::Keep
            },
            sidecar_ext: self.sidecar_ext.clone(),
            ann,
        })
    }
}

fn device(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceArg::Cuda => Device::new_cuda(0).context("opening CUDA device 0"),
        #[cfg(not(feature = "cuda"))]
        DeviceArg::Cuda => bail!(
            "this captioner was built without CUDA; rebuild it with `cargo build --release --features cuda`"
        ),
    }
}

impl ModelArgs {
    /// Sets the thread count, then loads the model (from the hub cache if need be).
    fn load(&self) -> Result<Captioner> {
        if let Some(n) = self.threads {
            run::set_threads(n)?;
        }
        let device = device(self.device)?;
        let dir = captioner::hub::resolve_model(&self.model)?;
        let precision = captioner::Precision::from(self.precision);
        if precision != captioner::Precision::F32 {
            eprintln!("precision {}", precision.describe());
        }
        let mut loaded = None;
        returning_freed_memory(&mut || loaded = Some(Captioner::load_in(&dir, &device, precision)));
        loaded
            .expect("the closure runs")
            .with_context(|| format!("loading the model from {}", dir.display()))
    }
}

/// How the progress line learns how many images there are.
enum Total<'a> {
    /// From a counting walk of these inputs.
    Walk(&'a [PathBuf]),
    Known(u64),
}

/// Captions what `found` yields into the output `spec` names, resuming it; the exit
/// status says whether every image was captioned.
fn caption_into<I>(
    captioner: &Captioner,
    found: I,
    spec: OutputSpec,
    generate: &GenerateArgs,
    quiet: bool,
    total: Total,
    attention: Option<(Box<dyn Sink>, Layer)>,
) -> Result<ExitCode>
where
    I: Iterator<Item = std::result::Result<datasets::Found, datasets::WalkError>> + Send,
{
    let opened = resume::open(spec)?;
    let mut progress = Progress::new(std::io::stderr().is_terminal(), quiet);
    if let Some(r) = &opened.resumed {
        progress.note(&format!(
            "resuming {}: {} images done already{}{}",
            r.from.display(),
            r.done,
            if r.retried > 0 {
                format!(", {} that failed before are tried again", r.retried)
            } else {
                String::new()
            },
            if r.cut > 0 {
                format!(", a cut-short last record ({} bytes) removed", r.cut)
            } else {
                String::new()
            },
        ));
    }
    if progress.draws() {
        match total {
            Total::Walk(inputs) => run::count_in_background(inputs, progress.total()),
            Total::Known(n) => progress
                .total()
                .store(n, std::sync::atomic::Ordering::Relaxed),
        }
    }
    let mut opts = RunOptions {
        batch: generate.batch,
        max_pixels: generate.max_pixels,
        caption: generate.options(&captioner.meta.prompting()),
        attention_layer: Layer::Mean,
    };
    let sink = match attention {
        Some((maps, layer)) => {
            let layers = captioner.meta.config.text_config.num_hidden_layers;
            if let Layer::Index(l) = layer {
                if l >= layers {
                    bail!(
                        "--attn-layer {l}: the decoder has {layers} layers (0 to {})",
                        layers - 1
                    );
                }
            }
            opts.caption.output_attentions = true;
            opts.attention_layer = layer;
            Box::new(Tee(vec![opened.sink, maps]))
        }
        None => opened.sink,
    };
    let summary = run::caption_all(captioner, found, &opened.gate, sink, &opts, &mut progress)?;
    Ok(if summary.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn caption(args: &CaptionArgs) -> Result<ExitCode> {
    let spec = args.output_spec()?;
    if args.attn_layer.is_some() && args.attention.is_none() && args.report.is_none() {
        bail!("--attn-layer picks the layer of --attention and --report maps: give one of them");
    }
    let maps = attention_sink(
        args.attention.clone(),
        args.report.clone(),
        args.attn_layer,
        &args.generate,
    );
    caption_paths(
        &args.inputs,
        &args.model,
        spec,
        &args.generate,
        args.quiet,
        maps,
    )
}

/// Captions the images under `inputs` (files and folders, walked) into `spec`.
fn caption_paths(
    inputs: &[PathBuf],
    model: &ModelArgs,
    spec: OutputSpec,
    generate: &GenerateArgs,
    quiet: bool,
    maps: Option<(Box<dyn Sink>, Layer)>,
) -> Result<ExitCode> {
    let captioner = model.load()?;
    caption_into(
        &captioner,
        ImageWalk::new(inputs),
        spec,
        generate,
        quiet,
        Total::Walk(inputs),
        maps,
    )
}

fn attend(args: &AttendArgs) -> Result<ExitCode> {
    let spec = OutputSpec {
        format: Format::Jsonl,
        path: None,
        overwrite: false,
        tag_mode: TagMode::Keep,
        sidecar_ext: "txt".into(),
        ann: None,
    };
    let maps = attention_sink(
        Some(args.out.clone()),
        args.report.clone(),
        args.attn_layer,
        &args.generate,
    );
    caption_paths(
        &args.inputs,
        &args.model,
        spec,
        &args.generate,
        args.quiet,
        maps,
    )
}

/// The sink of attention sheets under `folder` and of the HTML `report`, when either is
/// asked for.
fn attention_sink(
    folder: Option<PathBuf>,
    report: Option<PathBuf>,
    layer: Option<usize>,
    generate: &GenerateArgs,
) -> Option<(Box<dyn Sink>, Layer)> {
    if folder.is_none() && report.is_none() {
        return None;
    }
    let layer = Layer::from(layer);
    let sink = AttentionSink {
        folder,
        report: report.map(|path| (path, attention::Report::new())),
        layer,
        max_pixels: generate.max_pixels,
        names: Default::default(),
    };
    Some((Box::new(sink), layer))
}

/// References, restricted to a split when one is named.
fn references(path: &std::path::Path, split: Option<&str>) -> Result<References> {
    let refs = References::load(path)?;
    Ok(match split {
        Some(s) => refs.split(s)?,
        None => refs,
    })
}

/// Prints the report (or its JSON) and the warnings, and writes per-image scores.
/// With `json`, prints that instead of the table.
fn report(
    report: &Report,
    json: Option<&serde_json::Value>,
    per_image: Option<&std::path::Path>,
) -> Result<()> {
    for w in &report.matched.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = per_image {
        write_json(path, &report.per_image())?;
    }
    if let Some(json) = json {
        println!("{}", serde_json::to_string_pretty(json)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Writes JSON to a temporary file beside `path`, then renames it over `path`.
fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    Ok(captioner::checkpoint::write_atomic(path, text.as_bytes())?)
}

fn score(args: &ScoreArgs) -> Result<ExitCode> {
    let refs = references(&args.refs, args.split.as_deref())?;
    let preds = metrics::load_predictions(&args.preds)?;
    let r = metrics::score(&refs, &preds, args.bleu.into())?;
    let json = args.json.then(|| r.to_json());
    report(&r, json.as_ref(), args.per_image.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn synth(args: &SynthArgs) -> Result<ExitCode> {
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

fn train(args: &TrainArgs) -> Result<ExitCode> {
    use captioner_train::{self, TrainConfig, TrainData, Trainer, ValSet};
    if let Some(n) = args.threads {
        run::set_threads(n)?;
    }
    run::candle_ops_on_caller();
    let device = Device::Cpu;
    let resuming = args.resume;
    // The data: training references, and validation from --val, the file's val split,
    // or a held-out share.
    let (train_refs, root, val_refs, val_root) = if resuming && args.train.is_none() {
        bail!("--resume needs the same --train and --images as the run it continues");
    } else {
        let train_path = args.train.as_ref().expect("required by clap");
        let root = args.images.clone().expect("required by clap");
        let all = References::load(train_path)?;
        let has_splits = all.images.iter().any(|i| i.split.is_some());
        let (train_refs, val_refs) = match (&args.val, args.val_fraction, has_splits) {
            (Some(val), _, _) => (
                if has_splits {
                    all.splits(&["train", "restval"])?
                } else {
                    all
                },
                Some(References::load(val)?),
            ),
            (None, Some(f), _) => {
                let (t, v) = all.hold_out(f, args.seed);
                (t, Some(v))
            }
            (None, None, true) => (
                all.clone().splits(&["train", "restval"])?,
                all.split("val").ok(),
            ),
            (None, None, false) => (all, None),
        };
        let mut train_refs = train_refs;
        if let Some(path) = &args.captions {
            let preds = metrics::load_predictions(path)?;
            let matched = metrics::match_predictions(&train_refs, &preds)?;
            let mut by_id: std::collections::HashMap<datasets::ImageId, Vec<String>> =
                std::collections::HashMap::new();
            for (id, c) in matched.ids.iter().zip(matched.cands) {
                let id = datasets::ImageId::from_json(id).expect("ids of the references");
                by_id.entry(id).or_default().push(c);
            }
            let kept = train_refs.replace_captions(&by_id);
            eprintln!("training on {}'s captions of {kept} images", path.display());
        }
        let val_root = args.val_images.clone().unwrap_or_else(|| root.clone());
        (train_refs, root, val_refs, val_root)
    };
    let data = TrainData::new(&train_refs, &root)?;
    let val = match val_refs {
        Some(v) => Some(ValSet::new(v, &val_root, args.val_max)?),
        None => None,
    };
    let mut trainer = if resuming {
        Trainer::resume(&args.out, &data, &device)?
    } else {
        let fresh = args.init.is_none();
        let config = TrainConfig {
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
            label_smoothing: args.label_smoothing,
            freeze_vision: args.freeze_vision,
            seed: args.seed,
            prompt: args.prompt.clone(),
            save_every: args.save_every,
            ..TrainConfig::default()
        };
        let model = match (&args.init, &args.preset) {
            (Some(init), _) => {
                let dir = captioner::hub::resolve_model(init)?;
                captioner_train::Trainable::load(&dir, &device)?
            }
            (None, Some(preset)) => {
                let (vision, text) = captioner_train::preset(preset)?;
                let captions: Vec<String> = data
                    .samples
                    .iter()
                    .map(|s| captioner_train::pre_caption(&s.caption, config.max_words))
                    .chain(std::iter::once(config.prompt.clone()))
                    .collect();
                let tokenizer = captioner_train::train_tokenizer(&captions, args.vocab_size)?;
                let meta = captioner_train::fresh_meta(vision, text, &tokenizer)?;
                captioner_train::fresh_model(meta, args.seed, &device)?
            }
            (None, None) => bail!(
                "say what to train: --init CHECKPOINT (fine-tune) or --preset tiny (a new model)"
            ),
        };
        let mut model = model;
        if let Some(p) = args.dropout {
            if !(0.0..1.0).contains(&p) {
                bail!("--dropout {p}: a rate must be at least 0 and below 1");
            }
            model.set_dropout(p);
        }
        Trainer::start(model, &data, config, &args.out)?
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
    let draw = std::io::stderr().is_terminal() && !args.quiet;
    let started = std::time::Instant::now();
    let first = trainer.state.step;
    trainer.run(
        &data,
        &device,
        |r| {
            let line = format!(
                "step {}/{}  epoch {:.2}  loss {:.4}  lr {:.2e}  {:.1} img/s  {:.0} s",
                r.step,
                r.total,
                r.epoch,
                r.loss,
                r.lr,
                r.images_per_s,
                started.elapsed().as_secs_f64()
            );
            if draw {
                eprint!("\r{line}\x1b[K");
            } else if !args.quiet && (r.step - first) % 50 == 0 {
                eprintln!("{line}");
            }
        },
        |dir, r| match &val {
            Some(v) => {
                let got = captioner_train::validate(dir, v, &cfg, r, &device)?;
                if draw {
                    eprintln!();
                }
                eprintln!(
                    "validation at step {}: {}",
                    r.step,
                    serde_json::to_string(&got.metrics).unwrap_or_default()
                );
                Ok(Some(got))
            }
            None => Ok(None),
        },
        None,
    )?;
    if draw {
        eprintln!();
    }
    eprintln!(
        "done: {} steps in {:.0} s; checkpoints in {}",
        trainer.state.step - first,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let refs = references(&args.ann, args.split.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let results = args.out.join("results.json");
    let spec = OutputSpec {
        format: Format::Json,
        path: Some(results.clone()),
        overwrite: args.overwrite,
        tag_mode: TagMode::Keep,
        sidecar_ext: "txt".into(),
        ann: Some(datasets::ImageIds::new(
            refs.images
                .iter()
                .map(|i| (i.file_name.clone(), i.id_json.clone())),
        )),
    };
    let found: Vec<_> = refs
        .images
        .iter()
        .filter(|i| !i.captions.is_empty())
        .map(|i| {
            Ok(datasets::Found {
                path: args.images.join(&i.file_name),
                relative: PathBuf::from(&i.file_name),
            })
        })
        .collect();
    let captioner = args.model.load()?;
    let total = Total::Known(found.len() as u64);
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let localisation = if args.attention {
        let scenes = datasets::synth::load_scenes(&args.ann).with_context(|| {
            format!(
                "--attention scores attention against the scenes of a synthetic data set; {} has none",
                args.ann.display()
            )
        })?;
        let sink = attention::localise::LocalisationSink {
            scenes,
            hits: hits.clone(),
        };
        Some((
            Box::new(sink) as Box<dyn Sink>,
            Layer::from(args.attn_layer),
        ))
    } else {
        None
    };
    let spec = OutputSpec {
        overwrite: args.overwrite || args.attention,
        ..spec
    };
    let status = caption_into(
        &captioner,
        found.into_iter(),
        spec,
        &args.generate,
        args.quiet,
        total,
        localisation,
    )?;
    let preds = metrics::load_predictions(&results)?;
    let r = metrics::score(&refs, &preds, args.bleu.into())?;
    let mut scores = r.to_json();
    if let Some(acc) = scene_accuracy(&args.ann, &r)? {
        scores["scene_accuracy"] = serde_json::json!(acc);
        if !args.json {
            eprintln!("scene accuracy: {acc:.4} (captions naming every object's colour and shape)");
        }
    }
    if args.attention {
        let hits = hits.lock().unwrap_or_else(|e| e.into_inner());
        let l = attention::Localisation::of(&hits);
        if !args.json {
            eprintln!(
                "attention: {} object words; mass in box {:.3}, pointing {:.3}; chance {:.3}",
                l.words, l.mass_in_box, l.pointing, l.chance
            );
        }
        scores["attention"] = serde_json::to_value(&l)?;
    }
    write_json(&args.out.join("scores.json"), &scores)?;
    report(
        &r,
        args.json.then_some(&scores),
        Some(&args.out.join("per_image.json")),
    )?;
    Ok(status)
}

/// For the synthetic shapes data set (annotations holding each image's scene): the
/// share of scored captions that name every object's colour and shape, and no other.
fn scene_accuracy(ann: &std::path::Path, r: &Report) -> Result<Option<f64>> {
    use datasets::synth::{load_scenes, SynthError};
    let scenes = match load_scenes(ann) {
        Ok(s) => s,
        // Not a file with scenes.
        Err(SynthError::Json { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let pairs: Vec<(&str, &datasets::synth::Scene)> = r
        .matched
        .ids
        .iter()
        .zip(&r.matched.cands)
        .filter_map(|(id, c)| Some((c.as_str(), scenes.get(&id.as_i64()?)?)))
        .collect();
    Ok((!pairs.is_empty()).then(|| datasets::synth::scene_accuracy(pairs)))
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Caption(args) => caption(args),
        Command::Attend(args) => attend(args),
        Command::Bench(args) => bench(args),
        Command::Score(args) => score(args),
        Command::Train(args) => train(args),
        Command::Dataset(DatasetCommand::Synth(args)) => synth(args),
        Command::Eval(args) => eval(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tensors of tens to hundreds of MB come and go in every layer. glibc hands such blocks
/// back to the kernel when freed, and the next one faults in fresh zeroed pages (a
/// quarter of the encoder's time in a profile); mimalloc with purging off reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's option list (not exported by the -sys crate).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn keep_freed_memory() {
    // SAFETY: sets a global allocator option; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Runs `f` (loading, and converting the weights to bf16 or int8) with freed memory
/// handed back to the system: mimalloc only returns what was freed while purging was on.
fn returning_freed_memory(f: &mut dyn FnMut()) {
    // SAFETY: allocator options, and a collection that touches no live allocation.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    f();
    unsafe { libmimalloc_sys::mi_collect(true) };
    keep_freed_memory();
}
