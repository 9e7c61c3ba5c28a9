//! Captioning WebDataset shards (or Parquet files of images) as one worker of many
//! (SLURM job arrays, Ray, Spark),
//! by the contract the tools around WebDataset share: one input shard is one unit of
//! work, its output is written under the same shard name, and a marker written last
//! says it is done.
//!
//! For an input `NAME.tar` (or `NAME.parquet`) the worker writes `NAME.tar` in the
//! output folder, a tar of
//! `KEY.txt` (the best caption) and `KEY.json` (captions, scores, status, error, and
//! the settings that made them) per sample, in the input's order, so that it joins
//! with the image shard; it is written under a temporary name and renamed when
//! complete. Then `NAME_stats.json`, the marker: counts, time and settings. A shard
//! with a marker is skipped; output without one is redone; a marker written with other
//! settings is refused unless the job overwrites. A sample that cannot be captioned (no
//! image, an image that does not decode) is a record with its error, and the shard
//! still completes; a shard that cannot be read to its end fails, leaving no output.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use arrow_array::{ArrayRef, StringArray};
use arrow_schema::{DataType, Field};
use datasets::parquet;
use datasets::webdataset::{for_each_sample, Sample, ShardReadError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::output::Record;

mod parquet_out;
use crate::resume::Todo;
use crate::run::{caption_batch, pixels_of, Prepared, RunOptions};
use captioner::{Captioner, Error, Result};

/// What each shard's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardFormat {
    /// A tar of `KEY.txt` and `KEY.json` per sample, to join with the image shard.
    Tar,
    /// One `KEY.json` object a line.
    Jsonl,
    /// A Parquet file: `key`, `status`, `caption`, `score`, `captions`, `scores`,
    /// `error` per sample; the model and settings in its key-value metadata.
    Parquet,
}

impl ShardFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tar => "tar",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

/// The input name that stands for a tar read from standard input.
pub const STDIN: &str = "-";

/// How to caption shards.
#[derive(Debug, Clone)]
pub struct ShardJob {
    pub out_dir: PathBuf,
    pub format: ShardFormat,
    /// The shard name the outputs of a tar read from standard input take.
    pub stdin_name: String,
    /// The image's suffix in each sample, in order of preference (`jpg`, `png`, ...);
    /// for Parquet files, the names of binary image columns to look for.
    pub image_ext: Vec<String>,
    /// Parquet files' image and key columns (found when `None`), and the input columns
    /// (a tar's member suffixes) that Parquet output carries beside the captions.
    pub columns: parquet::Columns,
    /// Redo shards that have a marker, whatever settings it names.
    pub overwrite: bool,
    /// The model as the user named it (for the record; `settings` holds its hash).
    pub model: String,
    /// What makes the captions (model, its hash, precision, decoding settings): written
    /// into every sample's JSON and the marker, and compared with an existing marker's.
    pub settings: Value,
}

impl ShardJob {
    /// Whether the job's settings go together.
    pub fn check(&self) -> Result<()> {
        if !self.columns.keep.is_empty() && self.format != ShardFormat::Parquet {
            return Err(Error::Other(format!(
                "kept input columns ({}) are written into Parquet output only: use the Parquet format",
                self.columns.keep.join(", ")
            )));
        }
        Ok(())
    }
}

/// A shard's marker: what it came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: String,
    pub output: String,
    pub samples: usize,
    pub captioned: usize,
    pub failed: usize,
    pub seconds: f64,
    pub model: String,
    pub settings: Value,
    pub captioner_version: String,
}

/// What became of one shard.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardOutcome {
    Captioned(ShardStats),
    /// Its marker was there, with these settings.
    AlreadyDone(ShardStats),
}

/// The output and the marker of `shard` in the job's folder.
pub fn output_paths(job: &ShardJob, shard: &Path) -> (PathBuf, PathBuf) {
    let name = if shard == Path::new(STDIN) {
        job.stdin_name.clone()
    } else {
        shard.file_name().map_or_else(
            || shard.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let stem = [".tar", ".parquet"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name)
        .to_string();
    (
        job.out_dir.join(format!("{stem}.{}", job.format.name())),
        job.out_dir.join(format!("{stem}_stats.json")),
    )
}

/// Captions `shard` (unless its marker says it is done) into `job.out_dir`.
pub fn caption_shard(
    captioner: &Captioner,
    shard: &Path,
    job: &ShardJob,
    run: &RunOptions,
) -> Result<ShardOutcome> {
    job.check()?;
    let (out, marker) = output_paths(job, shard);
    if same_file(&out, shard) {
        return Err(Error::file(
            shard,
            "its output would replace it: give another --out folder",
        ));
    }
    if marker.exists() {
        let text = fs::read_to_string(&marker).map_err(|e| Error::file(&marker, e))?;
        let stats: ShardStats = serde_json::from_str(&text)
            .map_err(|e| Error::file(&marker, format!("is not a shard marker: {e}")))?;
        if !job.overwrite {
            if stats.settings != job.settings {
                return Err(Error::file(
                    &marker,
                    format!(
                        "was written with other settings ({}): give --overwrite to \
                         caption the shard again",
                        differences(&stats.settings, &job.settings)
                    ),
                ));
            }
            return Ok(ShardOutcome::AlreadyDone(stats));
        }
        fs::remove_file(&marker).map_err(|e| Error::file(&marker, e))?;
    }
    fs::create_dir_all(&job.out_dir).map_err(|e| Error::file(&job.out_dir, e))?;
    let partial = partial_path(&out);
    let start = Instant::now();
    let counts = write_captions(captioner, shard, &partial, job, run);
    let (samples, failed) = match counts {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    fs::rename(&partial, &out).map_err(|e| Error::file(&out, e))?;
    let stats = ShardStats {
        shard: shard.display().to_string(),
        output: out.display().to_string(),
        samples,
        captioned: samples - failed,
        failed,
        seconds: start.elapsed().as_secs_f64(),
        model: job.model.clone(),
        settings: job.settings.clone(),
        captioner_version: env!("CARGO_PKG_VERSION").into(),
    };
    let text = serde_json::to_string_pretty(&stats).map_err(|e| Error::Other(e.to_string()))?;
    write_atomically(&marker, text.as_bytes())?;
    Ok(ShardOutcome::Captioned(stats))
}

/// The settings that differ, `name: there -> here` each.
fn differences(there: &Value, here: &Value) -> String {
    let (Some(a), Some(b)) = (there.as_object(), here.as_object()) else {
        return format!("{there} -> {here}");
    };
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("none".into(), Value::to_string);
            format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!(".{name}.partial"))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over
/// `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    let mut f = File::create(&tmp).map_err(|e| Error::file(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::file(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::file(path, e))
}

/// A sample on its way: its key, its image's bytes and name or why it has none, and its
/// kept columns' values.
struct Pending {
    key: String,
    image: std::result::Result<(Vec<u8>, String), String>,
    kept: Vec<ArrayRef>,
}

/// A sample's key and kept values, beside its record.
type Carried = (String, Vec<ArrayRef>);

enum Msg {
    Batch(Vec<Carried>, Vec<Prepared>),
    Failed(String),
}

/// Captions the samples of `shard` into the tar `partial`, a batch at a time, while the
/// next batch is read and decoded on other threads. Returns (samples, failed).
fn write_captions(
    captioner: &Captioner,
    shard: &Path,
    partial: &Path,
    job: &ShardJob,
    run: &RunOptions,
) -> Result<(usize, usize)> {
    let processor = &captioner.meta.processor;
    let batch = run.batch.max(1);
    let shard_name = shard.display().to_string();
    let out = File::create(partial).map_err(|e| Error::file(partial, e))?;
    let mut writer = match job.format {
        ShardFormat::Tar => Writer::Tar(tar::Builder::new(BufWriter::new(out))),
        ShardFormat::Jsonl => Writer::Jsonl(BufWriter::new(out)),
        ShardFormat::Parquet => Writer::Parquet(Box::new(
            parquet_out::ParquetOut::new(out, job, kept_fields(shard, job)?)
                .map_err(|e| Error::file(partial, e))?,
        )),
    };
    let (mut samples, mut failed) = (0, 0);
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = sync_channel::<Msg>(1);
        s.spawn(move || {
            let send = |pending: Vec<Pending>| {
                let (carried, prepared) = pending
                    .into_par_iter()
                    .map(|mut p| {
                        let carried = (p.key.clone(), std::mem::take(&mut p.kept));
                        (carried, prepare(p, &shard_name, run.max_pixels, processor))
                    })
                    .unzip();
                tx.send(Msg::Batch(carried, prepared)).is_ok()
            };
            let mut pending = Vec::with_capacity(batch);
            let read = read_samples(shard, job, |p| {
                pending.push(p);
                if pending.len() == batch && !send(std::mem::take(&mut pending)) {
                    return Err(Stop::Receiver);
                }
                Ok(())
            });
            let read = read.and_then(|_| {
                if pending.is_empty() || send(pending) {
                    Ok(())
                } else {
                    Err(Stop::Receiver)
                }
            });
            if let Err(Stop::Read(e)) = read {
                let _ = tx.send(Msg::Failed(format!("{shard_name}: {e}")));
            }
        });
        for msg in rx {
            match msg {
                Msg::Failed(e) => return Err(Error::Other(e)),
                Msg::Batch(carried, prepared) => {
                    let records = caption_batch(captioner, prepared, run);
                    for ((key, kept), record) in carried.into_iter().zip(&records) {
                        samples += 1;
                        failed += record.result.is_err() as usize;
                        writer
                            .sample(&key, kept, record, job)
                            .map_err(|e| Error::file(partial, e))?;
                    }
                }
            }
        }
        Ok(())
    })?;
    writer.finish().map_err(|e| Error::file(partial, e))?;
    Ok((samples, failed))
}

/// The kept columns' fields: from a Parquet file's schema, or text named by a tar's
/// member suffix.
fn kept_fields(shard: &Path, job: &ShardJob) -> Result<Vec<Field>> {
    let keep = &job.columns.keep;
    if is_parquet(shard) {
        return parquet::kept_fields(shard, keep).map_err(|e| Error::file(shard, e));
    }
    Ok(keep
        .iter()
        .map(|k| Field::new(k, DataType::Utf8, true))
        .collect())
}

/// Whether `shard` is a Parquet file (by its extension); anything else is a tar.
pub fn is_parquet(shard: &Path) -> bool {
    shard
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Passes each sample of `shard` (a Parquet file, or a tar file or standard input) to
/// `push`, in order.
fn read_samples(
    shard: &Path,
    job: &ShardJob,
    mut push: impl FnMut(Pending) -> std::result::Result<(), Stop>,
) -> std::result::Result<(), Stop> {
    if is_parquet(shard) {
        return parquet::for_each_row(shard, &job.columns, &job.image_ext, |row| {
            push(Pending {
                key: row.key,
                image: row.image,
                kept: row.kept,
            })
        });
    }
    let file: Box<dyn Read + Send> = if shard == Path::new(STDIN) {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(shard).map_err(ShardReadError::from)?)
    };
    for_each_sample(BufReader::new(file), |sample: Sample| {
        // A kept member's text (invalid UTF-8 replaced), null where the sample lacks it.
        let kept = job
            .columns
            .keep
            .iter()
            .map(|suffix| {
                let text = sample
                    .files
                    .iter()
                    .find(|(s, _)| s == suffix)
                    .map(|(_, b)| String::from_utf8_lossy(b).into_owned());
                std::sync::Arc::new(StringArray::from(vec![text])) as ArrayRef
            })
            .collect();
        push(Pending {
            key: sample.key.clone(),
            image: image_of(sample, &job.image_ext),
            kept,
        })
    })
}

/// Why the reading thread stopped early.
enum Stop {
    Read(ShardReadError),
    /// The captioning side has gone (it failed).
    Receiver,
}

impl From<ShardReadError> for Stop {
    fn from(e: ShardReadError) -> Self {
        Self::Read(e)
    }
}

/// The sample's image by suffix preference, or why it has none.
fn image_of(
    mut sample: Sample,
    prefs: &[String],
) -> std::result::Result<(Vec<u8>, String), String> {
    if let Some(name) = &sample.duplicate {
        return Err(format!(
            "{name}: a second file of the same name in one sample"
        ));
    }
    match sample.take(prefs) {
        Some((ext, bytes)) => Ok((bytes, format!("{}.{ext}", sample.key))),
        None => {
            let has: Vec<&str> = sample.files.iter().map(|(s, _)| s.as_str()).collect();
            Err(format!(
                "{}: no image ({}) among its files ({})",
                sample.key,
                prefs.join(", "),
                has.join(", ")
            ))
        }
    }
}

fn prepare(
    p: Pending,
    shard: &str,
    max_pixels: u64,
    processor: &vision_encoder::ImageProcessorConfig,
) -> Prepared {
    let file = format!("{shard}:{}", p.key);
    let pixels = match p.image {
        Ok((bytes, name)) => {
            let path = PathBuf::from(format!("{shard}:{name}"));
            pixels_of(
                || datasets::load_image_bytes(&bytes, &path, max_pixels),
                &file,
                processor,
            )
        }
        Err(e) => Err(format!("{shard}:{e}")),
    };
    Prepared {
        todo: Todo {
            path: PathBuf::from(shard),
            relative: PathBuf::from(&p.key),
            file,
            image_id: None,
        },
        pixels,
    }
}

/// A shard's output being written.
enum Writer {
    Tar(tar::Builder<BufWriter<File>>),
    Jsonl(BufWriter<File>),
    Parquet(Box<parquet_out::ParquetOut>),
}

impl Writer {
    /// The sample's record: `KEY.txt` (captioned samples only) and `KEY.json` in a tar,
    /// with fixed metadata so that the same captions give the same bytes; the JSON
    /// object as a line; or a Parquet row.
    fn sample(
        &mut self,
        key: &str,
        kept: Vec<ArrayRef>,
        record: &Record,
        job: &ShardJob,
    ) -> std::io::Result<()> {
        match self {
            Self::Tar(tar) => {
                if let Ok(texts) = &record.result {
                    let caption = texts.first().map_or("", |t| t.caption.as_str());
                    append(tar, &format!("{key}.txt"), caption.as_bytes())?;
                }
                let info = sample_json(key, record, job).to_string();
                append(tar, &format!("{key}.json"), info.as_bytes())
            }
            Self::Jsonl(w) => writeln!(w, "{}", sample_json(key, record, job)),
            Self::Parquet(p) => p.push(key, kept, record),
        }
    }

    /// Ends the output and makes it durable.
    fn finish(self) -> std::io::Result<()> {
        let mut w = match self {
            Self::Tar(tar) => tar.into_inner()?,
            Self::Jsonl(w) => w,
            Self::Parquet(p) => return p.finish(),
        };
        w.flush()?;
        w.get_ref().sync_all()
    }
}

/// A sample's `KEY.json` (and JSON line): its captions and scores or its error, and what
/// made them.
fn sample_json(key: &str, record: &Record, job: &ShardJob) -> Value {
    let (model, settings) = (&job.model, &job.settings);
    match &record.result {
        Ok(texts) => {
            let best = texts.first();
            json!({
                "key": key,
                "status": "ok",
                "caption": best.map(|t| t.caption.as_str()),
                "score": best.map(|t| t.score),
                "captions": texts.iter().map(|t| json!({"caption": t.caption, "score": t.score})).collect::<Vec<_>>(),
                "model": model,
                "settings": settings,
            })
        }
        Err(e) => {
            json!({"key": key, "status": "error", "error": e, "model": model, "settings": settings})
        }
    }
}

fn append(tar: &mut tar::Builder<BufWriter<File>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, name, data)
}
