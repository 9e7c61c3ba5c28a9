//! `captioner bench`: the benchmarks of captioner-bench, printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use captioner_runner::run;
use clap::{Args, ValueEnum};

use crate::caption::PrecisionArg;
use crate::returning_freed_memory;
use crate::score::write_json;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Timed runs per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: usize,
    /// Tokens per caption.
    #[arg(long, default_value_t = 20)]
    pub(crate) tokens: usize,
    /// Batch size of the batched cases.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// Threads [default: all cores].
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// The linear layers' arithmetic in the captioning cases (see `caption --help`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub(crate) precision: PrecisionArg,
    /// The captioning cases' model: BLIP-base, or ViT-B/16 at 224 px + GPT-2 small
    /// (nlpconnect/vit-gpt2-image-captioning's sizes). `scripts/bench_transformers.py
    /// --arch` builds the same in transformers.
    #[arg(long, value_enum, default_value_t = ArchArg::BlipBase)]
    pub(crate) arch: ArchArg,
    /// Measure quality instead: the reduced precisions' teacher-forced top-1 agreement
    /// with f32, and their logit error, on a BLIP-base-sized random checkpoint with the
    /// parity fixtures' large-margin initialisation (--batch images, --tokens positions
    /// each; bf16 and int8, or only --precision when given).
    #[arg(long, conflicts_with_all = ["metrics", "train", "decode"])]
    pub(crate) agreement: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Time the COCO caption evaluation instead: tokenizing and scoring 5,000 synthetic
    /// images with 5 references each.
    #[arg(long)]
    pub(crate) metrics: bool,
    /// With --metrics: also write the synthetic data to DIR (refs.json, results.json), for
    /// scripts/bench_pycocoevalcap.py to time pycocoevalcap on the same captions.
    #[arg(long, value_name = "DIR", requires = "metrics")]
    pub(crate) save_data: Option<PathBuf>,
    /// Time training steps instead (forward, loss, backward, clipping, AdamW): the tiny
    /// preset at --batch and at 32, and BLIP-base with a frozen vision encoder at --batch.
    /// `scripts/bench_transformers.py --train` runs the same steps in PyTorch.
    #[arg(long, conflicts_with = "metrics")]
    pub(crate) train: bool,
    /// Time image decoding instead: the images in DIR, or without DIR 16 synthetic
    /// 12-megapixel (4000x3000) JPEGs written to a temporary folder, decoded as captioning
    /// decodes them (libjpeg-turbo, Pillow's pixels) and by the `image` crate's decoder.
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with_all = ["metrics", "train"])]
    pub(crate) decode: Option<Option<PathBuf>>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ArchArg {
    BlipBase,
    VitGpt2,
}

impl From<ArchArg> for captioner_bench::Arch {
    fn from(a: ArchArg) -> Self {
        match a {
            ArchArg::BlipBase => Self::BlipBase,
            ArchArg::VitGpt2 => Self::VitGpt2,
        }
    }
}

pub(crate) fn bench_agreement(args: &BenchArgs) -> Result<ExitCode> {
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
    if args.json {
        let rows: Vec<_> = results.iter().map(|a| a.to_json()).collect();
        println!("{}", serde_json::Value::from(rows));
    } else {
        for a in &results {
            println!("{a}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn bench(args: &BenchArgs) -> Result<ExitCode> {
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
    bench_speed(args)
}

/// Images per second of a BLIP-base-sized model, or training steps per second.
fn bench_speed(args: &BenchArgs) -> Result<ExitCode> {
    let opts = captioner_bench::BenchOptions {
        runs: args.runs.max(1),
        warmup: args.warmup,
        tokens: args.tokens,
        batch: args.batch.max(1),
        precision: args.precision.into(),
        arch: args.arch.into(),
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
            opts.arch.name()
        },
        opts.precision.describe(),
        rayon::current_num_threads(),
        opts.runs
    );
    let mut first = true;
    let show = |c: &captioner_bench::BenchCase| {
        if !args.json {
            println!("{}", case_line(c));
        }
        // The model is loaded and converted by now: what the process holds while running
        // (freed memory stays with the allocator), beside the peak so far.
        if std::mem::take(&mut first) {
            if let (Some(now), Some(peak)) = (memory_kb("VmRSS"), memory_kb("VmHWM")) {
                let gb = |kb: u64| kb as f64 / 1e6;
                eprintln!(
                    "resident after the first case {:.2} GB, peak so far {:.2} GB",
                    gb(now),
                    gb(peak)
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
        let rows: Vec<_> = cases.iter().map(case_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn case_line(c: &captioner_bench::BenchCase) -> String {
    format!(
        "{:<30} {:>7.3} img/s  (median {:.3} s)",
        c.name,
        c.images_per_second(),
        c.median_seconds()
    )
}

fn case_json(c: &captioner_bench::BenchCase) -> serde_json::Value {
    serde_json::json!({"case": c.name, "batch": c.batch, "images_per_s": c.images_per_second(),
        "median_s": c.median_seconds(), "seconds": c.seconds})
}

/// A line of /proc/self/status, in kB (Linux).
pub(crate) fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn bench_decode(args: &BenchArgs, dir: Option<&Path>) -> Result<ExitCode> {
    let opts = captioner_bench::BenchOptions {
        runs: args.runs.max(1),
        warmup: args.warmup,
        ..Default::default()
    };
    let scratch = std::env::temp_dir().join(format!("captioner-bench-{}", std::process::id()));
    let files = decode_inputs(dir, &scratch)?;
    let megapixels = captioner_bench::decode::mean_megapixels(&files);
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

/// The images in `dir`, or 16 synthetic photo-sized JPEGs written to `scratch`.
fn decode_inputs(dir: Option<&Path>, scratch: &Path) -> Result<Vec<PathBuf>> {
    let files = match dir {
        Some(dir) => datasets::ImageWalk::new([dir])
            .map(|f| f.map(|f| f.path))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None => {
            eprintln!(
                "writing 16 synthetic 4000x3000 JPEGs to {}",
                scratch.display()
            );
            captioner_bench::decode::write_test_jpegs(scratch, 16, 4000, 3000)?
        }
    };
    if files.is_empty() {
        bail!("no images to decode");
    }
    Ok(files)
}

pub(crate) fn bench_metrics(args: &BenchArgs) -> Result<ExitCode> {
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
