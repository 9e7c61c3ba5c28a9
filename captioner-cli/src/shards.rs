//! `captioner shards`: caption WebDataset tar shards as one worker of many.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use datasets::shards::{list_shards, WorkerSlot};
use serde_json::json;

use crate::caption::{GenerateArgs, ModelArgs};
use captioner::Layer;
use captioner_runner::run::RunOptions;
use captioner_runner::shards::{caption_shard, output_paths, ShardFormat, ShardJob, ShardOutcome};

pub(crate) const SHARDS_HELP: &str = "\
Inputs are brace patterns (data/{00000..01023}.tar), @LIST files of paths or patterns
(one a line, relative to the list's folder; @- reads the list from standard input),
folders (their .tar and .parquet files), tar files, Parquet files (a Hugging Face
datasets image column, or img2dataset's binary jpg column; see --image-column), and -
(one tar on standard input, its outputs named by --stdin-name). The sorted list is
split over the workers: shard j is worker I's when j mod N = I, with I/N from --shard,
else SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT (a job array),
SLURM_PROCID of SLURM_NTASKS, or RANK of WORLD_SIZE (torchrun), else 0/1.

Samples are grouped as the webdataset library groups them: the key is a member's path up
to the first dot of its file name, and adjacent members with one key are one sample.

For each shard NAME.tar (or NAME.parquet) the worker writes OUT/NAME.tar (KEY.txt with the best caption
and KEY.json with captions, scores, status, error and settings, in the input's order;
OUT/NAME.jsonl or OUT/NAME.parquet with --format jsonl or parquet), under a temporary
name until complete, then the
marker OUT/NAME_stats.json. A shard with a marker is skipped, so a rerun (with any
number of workers) does what is left; output without a marker is redone; a marker
written with another model or other settings is refused unless --overwrite. One JSON
line per finished shard goes to standard output.

Exit status: 0 every owned shard done, 2 some shard failed (rerun to retry it; samples
that fail are records in their shard's output, not shard failures), 1 fatal error.";

#[derive(Args)]
pub(crate) struct ShardsArgs {
    /// Input shards: brace patterns, @LIST files, folders of shards, tar and Parquet
    /// files, or - for one tar on standard input.
    #[arg(required = true)]
    pub(crate) inputs: Vec<String>,
    /// The output folder: NAME.tar and NAME_stats.json for each input NAME.tar or
    /// NAME.parquet.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// This worker's part, I/N [default: from SLURM's or torchrun's variables, else 0/1].
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<String>,
    /// List this worker's shards and whether each is done; caption nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Caption shards again even where a marker says they are done.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Each shard's output: a tar of KEY.txt and KEY.json, JSON lines (NAME.jsonl), or
    /// Parquet (NAME.parquet: key, status, caption, score, captions, scores, error, then
    /// the --keep-columns).
    #[arg(long, value_enum, default_value_t = OutFormat::Tar)]
    pub(crate) format: OutFormat,
    /// With `-` (a tar on standard input): the shard name its outputs take.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub(crate) stdin_name: String,
    /// Parquet files: the image column (a struct with a binary `bytes` field, as
    /// Hugging Face datasets writes images, or a binary column) [default: the first
    /// such struct, else the first binary column named by one of --image-ext].
    #[arg(long, value_name = "NAME")]
    pub(crate) image_column: Option<String>,
    /// Parquet files: the key column [default: key or __key__ where present, else the
    /// row's index in the file].
    #[arg(long, value_name = "NAME")]
    pub(crate) key_column: Option<String>,
    /// With --format parquet: input columns to carry into the output after its own, with
    /// their types (from a tar: the members of these suffixes, as text, null where a
    /// sample has none). One named like an output column is written as input_NAME.
    #[arg(long, value_name = "NAME,NAME", value_delimiter = ',')]
    pub(crate) keep_columns: Vec<String>,
    /// The image's suffix in a sample, in order of preference.
    #[arg(long, default_value = "jpg;jpeg;png;webp", value_name = "EXT;EXT")]
    pub(crate) image_ext: String,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) generate: GenerateArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum OutFormat {
    Tar,
    Jsonl,
    Parquet,
}

pub(crate) fn shards(args: &ShardsArgs) -> Result<ExitCode> {
    let slot = match &args.shard {
        Some(s) => WorkerSlot::parse(s)?,
        None => WorkerSlot::from_env(|k| std::env::var(k).ok())?,
    };
    let all = list_shards(&args.inputs, &["tar", "parquet"])?;
    if all.is_empty() {
        anyhow::bail!("no shards in {}", args.inputs.join(" "));
    }
    let owned = slot.select(all.clone());
    eprintln!(
        "worker {}/{}: {} of {} shards",
        slot.index,
        slot.count,
        owned.len(),
        all.len()
    );
    let mut job = ShardJob {
        out_dir: args.out.clone(),
        format: match args.format {
            OutFormat::Tar => ShardFormat::Tar,
            OutFormat::Jsonl => ShardFormat::Jsonl,
            OutFormat::Parquet => ShardFormat::Parquet,
        },
        stdin_name: args.stdin_name.clone(),
        model: args.model.model.clone(),
        image_ext: args
            .image_ext
            .split([';', ','])
            .map(|s| s.trim().trim_start_matches('.').to_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        overwrite: args.overwrite,
        columns: datasets::parquet::Columns {
            image: args.image_column.clone(),
            key: args.key_column.clone(),
            keep: args.keep_columns.clone(),
        },
        settings: json!(null),
    };
    job.check()?;
    // Outputs are named by the shard's file name: two inputs of one name would share them.
    let mut names = std::collections::HashMap::new();
    for shard in &all {
        if let Some(other) = names.insert(output_paths(&job, shard).1, shard) {
            anyhow::bail!(
                "{} and {} would write the same outputs in {}: their file names must differ",
                other.display(),
                shard.display(),
                args.out.display()
            );
        }
    }
    if args.dry_run {
        for shard in &owned {
            let (_, marker) = output_paths(&job, shard);
            let state = if marker.exists() { "done" } else { "to do" };
            println!("{}\t{state}", shard.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let captioner = args.model.load()?;
    let caption = args.generate.options(&captioner);
    let model_dir = captioner::hub::resolve_model(&args.model.model)?;
    job.settings = json!({
        "model_sha256": captioner::checkpoint::digest(&model_dir)
            .with_context(|| format!("hashing {}", model_dir.display()))?,
        "precision": captioner.precision().name(),
        "decoding": format!("{caption:?}"),
        "image_ext": job.image_ext,
        "format": job.format.name(),
        "image_column": job.columns.image,
        "key_column": job.columns.key,
    });
    // Only when given, so that markers written before the option existed still match.
    if !job.columns.keep.is_empty() {
        job.settings["keep_columns"] = json!(job.columns.keep);
    }
    let run = RunOptions {
        batch: args.generate.batch,
        max_pixels: args.generate.max_pixels,
        caption,
        attention_layer: Layer::Mean,
    };
    let mut failed = 0;
    for shard in &owned {
        let line = match caption_shard(&captioner, shard, &job, &run) {
            Ok(ShardOutcome::Captioned(stats)) => json!({"status": "captioned", "stats": stats}),
            Ok(ShardOutcome::AlreadyDone(stats)) => {
                json!({"status": "done before", "stats": stats})
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                json!({"status": "failed", "shard": shard.display().to_string(), "error": e.to_string()})
            }
        };
        println!("{line}");
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
