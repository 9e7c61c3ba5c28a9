//! The `captioner` command line: a thin layer over the `captioner` library.

mod bench;
mod caption;
mod score;
mod shards;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bench::BenchArgs;
use caption::{AttendArgs, CaptionArgs, ATTEND_HELP, CAPTION_HELP};
use score::{EvalArgs, ScoreArgs, SCORE_HELP};
use train::{DatasetCommand, TrainArgs, TRAIN_HELP};

#[derive(Parser)]
#[command(
    name = "captioner",
    version,
    about = "Caption images with Hugging Face BLIP and VisionEncoderDecoder (ViT + GPT-2, TrOCR) checkpoints"
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
    /// A BLIP-base-sized model (or with --arch vit-gpt2 ViT-B/16 + GPT-2 small) with
    /// random weights (built in-process, no download): the
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
    /// Caption WebDataset tar shards as one worker of many (SLURM job arrays, Ray,
    /// Spark): an output tar and a marker per input shard, resumable, split by --shard
    /// I/N or the scheduler's variables.
    #[command(after_long_help = shards::SHARDS_HELP)]
    Shards(Box<shards::ShardsArgs>),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Caption(args) => caption::caption(args),
        Command::Attend(args) => caption::attend(args),
        Command::Bench(args) => bench::bench(args),
        Command::Score(args) => score::score(args),
        Command::Train(args) => train::train(args),
        Command::Dataset(DatasetCommand::Synth(args)) => train::synth(args),
        Command::Eval(args) => score::eval(args),
        Command::Shards(args) => shards::shards(args),
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
pub(crate) fn returning_freed_memory(f: &mut dyn FnMut()) {
    // SAFETY: allocator options, and a collection that touches no live allocation.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    f();
    unsafe { libmimalloc_sys::mi_collect(true) };
    keep_freed_memory();
}
