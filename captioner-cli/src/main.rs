//! The `captioner` command line: a thin layer over the `captioner` library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::Device;
use captioner::{CaptionOptions, Captioner};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Caption images; prints one JSON line per image: file, caption, score, tokens.
    Caption(CaptionArgs),
}

#[derive(Args)]
struct CaptionArgs {
    /// Image files (jpeg, png, webp, gif, bmp, tiff).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Checkpoint directory in the Hugging Face BLIP layout (config.json,
    /// model.safetensors, tokenizer.json, preprocessor_config.json).
    #[arg(long)]
    model: PathBuf,
    /// Beam width; 1 is greedy search.
    #[arg(long, default_value_t = 3)]
    beams: usize,
    /// Images per forward pass.
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
    /// Text the caption starts from, e.g. "a picture of".
    #[arg(long)]
    prompt: Option<String>,
    /// Leave the prompt out of the caption (LAVIS); by default it is kept (transformers).
    #[arg(long)]
    strip_prompt: bool,
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

#[derive(Clone, Copy, ValueEnum)]
enum Stop {
    /// Stop when no running beam can beat the finished ones (transformers' False).
    Heuristic,
    /// Stop once num_beams captions are finished (True).
    Always,
    /// Keep searching while a beam could still improve at full length ("never").
    Never,
}

impl CaptionArgs {
    fn options(&self) -> CaptionOptions {
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
            prompt: self.prompt.clone(),
            strip_prompt: self.strip_prompt,
            output_attentions: false,
        }
    }
}

fn caption(args: &CaptionArgs) -> Result<ExitCode> {
    let device = Device::Cpu;
    let captioner = Captioner::load(&args.model, &device)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let opts = args.options();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for chunk in args.images.chunks(args.batch.max(1)) {
        let mut images = Vec::with_capacity(chunk.len());
        let mut files = Vec::with_capacity(chunk.len());
        for path in chunk {
            match datasets::load_image(path, args.max_pixels) {
                Ok(img) => {
                    images.push(img);
                    files.push(path);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                    let record = serde_json::json!({"file": path.display().to_string(), "error": e.to_string()});
                    writeln!(out, "{record}")?;
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        let captions = captioner.caption(&images, &opts)?;
        for (file, caps) in files.iter().zip(captions) {
            let best = &caps[0];
            let mut record = serde_json::json!({
                "file": file.display().to_string(),
                "caption": best.text,
                "score": best.score,
                "tokens": best.tokens,
            });
            if caps.len() > 1 {
                record["candidates"] = caps
                    .iter()
                    .map(|c| serde_json::json!({"caption": c.text, "score": c.score, "tokens": c.tokens}))
                    .collect();
            }
            writeln!(out, "{record}")?;
        }
        out.flush()?;
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Caption(args) => caption(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
