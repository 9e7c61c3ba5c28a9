//! Captioning many images: batches through the model, while the next batch is decoded
//! and preprocessed in parallel on other threads.
//!
//! A producer thread walks the inputs, asks the [`Gate`] which images to do, and turns
//! each batch of them into pixels with rayon (every image on its own: one that cannot
//! be decoded becomes an error record and the rest of its batch goes on). It hands
//! batches over a channel holding one, so decoding batch k+1 overlaps the model's work
//! on batch k and at most three batches of pixels exist at a time. The calling thread
//! runs the model and writes each batch's records before taking the next.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use candle_core::Tensor;
use datasets::{Found, ImageWalk, WalkError};
use rayon::prelude::*;
use vision_encoder::ImageProcessorConfig;

use crate::output::{Record, Sink, Text};
use crate::progress::{Progress, Summary};
use crate::resume::{Check, Gate, Todo};
use captioner::Layer;
use captioner::{CaptionOptions, Captioner, Error, Result};

/// How to run a captioning job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Images per forward pass.
    pub batch: usize,
    /// Refuse images with more pixels (decompression bombs).
    pub max_pixels: u64,
    pub caption: CaptionOptions,
    /// With `caption.output_attentions`: the layer the word maps show.
    pub attention_layer: Layer,
}

/// Uses `n` threads for rayon's global pool (decoding, preprocessing) and for candle's
/// CPU kernels. Call it before any other work.
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Other("--threads must be at least 1".into()));
    }
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| Error::Other(format!("setting up {n} threads: {e}")))
}

/// For training, whose shards run side by side on threads of their own: candle's
/// element-wise ops then run on the calling thread, where candle's own worker pool
/// would compete with the shards for the cores (and serialise them on its lock).
/// Call it before any candle op.
pub fn candle_ops_on_caller() {
    std::env::set_var("CANDLE_NUM_THREADS", "1");
}

/// Counts the images under `inputs` on a background thread (a walk that decodes
/// nothing) and stores the count in `total` when done.
pub fn count_in_background(inputs: &[PathBuf], total: Arc<AtomicU64>) {
    let inputs = inputs.to_vec();
    std::thread::spawn(move || {
        let n = ImageWalk::new(inputs).count();
        total.store(n as u64, Ordering::Relaxed);
    });
}

/// An image's pixels, CHW.
pub(crate) struct Pixels {
    data: Vec<f32>,
    height: usize,
    width: usize,
}

pub(crate) struct Prepared {
    pub(crate) todo: Todo,
    pub(crate) pixels: std::result::Result<Pixels, String>,
}

enum Msg {
    Skipped(usize),
    Batch(Vec<Prepared>),
}

/// How many skipped images make a progress update when nothing else happens.
const SKIP_REPORT: usize = 256;

/// Captions every image `found` yields that `gate` lets through, `opts.batch` at a time,
/// writing each batch's records to `sink`, then finishes the sink. Errors about one
/// image become its record (and a line on stderr); an error writing the output ends the
/// run.
pub fn caption_all<I>(
    captioner: &Captioner,
    found: I,
    gate: &Gate,
    mut sink: Box<dyn Sink>,
    opts: &RunOptions,
    progress: &mut Progress,
) -> Result<Summary>
where
    I: Iterator<Item = std::result::Result<Found, WalkError>> + Send,
{
    let batch = opts.batch.max(1);
    let processor = &captioner.meta.processor;
    let max_pixels = opts.max_pixels;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = sync_channel::<Msg>(1);
        s.spawn(move || {
            let send_batch = |todo: Vec<(Todo, Option<String>)>| {
                let prepared = todo
                    .into_par_iter()
                    .map(|(todo, failed)| {
                        let pixels = match failed {
                            Some(e) => Err(e),
                            None => load_pixels(&todo.path, max_pixels, processor),
                        };
                        Prepared { todo, pixels }
                    })
                    .collect();
                tx.send(Msg::Batch(prepared)).is_ok()
            };
            let mut pending: Vec<(Todo, Option<String>)> = Vec::with_capacity(batch);
            let mut images = 0;
            let mut skipped = 0;
            for item in found {
                match item {
                    Ok(f) => match gate.check(&f) {
                        Check::Done => skipped += 1,
                        Check::Caption(todo) => {
                            pending.push((todo, None));
                            images += 1;
                        }
                        Check::Fail(todo, e) => pending.push((todo, Some(e))),
                    },
                    Err(e) => {
                        let todo = Todo {
                            file: e.path.display().to_string(),
                            relative: e.path.clone(),
                            path: e.path.clone(),
                            image_id: None,
                        };
                        pending.push((todo, Some(e.to_string())));
                    }
                }
                if skipped >= SKIP_REPORT || (skipped > 0 && images == batch) {
                    if tx.send(Msg::Skipped(skipped)).is_err() {
                        return;
                    }
                    skipped = 0;
                }
                // Failures ride along with the images; a run of them is sent on too,
                // so nothing piles up.
                if images == batch || pending.len() >= 4 * batch {
                    if !send_batch(std::mem::take(&mut pending)) {
                        return;
                    }
                    images = 0;
                }
            }
            if skipped > 0 && tx.send(Msg::Skipped(skipped)).is_err() {
                return;
            }
            if !pending.is_empty() {
                send_batch(pending);
            }
        });
        for msg in rx {
            match msg {
                Msg::Skipped(n) => progress.add(0, 0, n),
                Msg::Batch(prepared) => {
                    let records = caption_batch(captioner, prepared, opts);
                    let mut failed = 0;
                    for r in &records {
                        if let Err(e) = &r.result {
                            failed += 1;
                            progress.message(&format!("error: {e}"));
                        }
                    }
                    sink.write(&records)?;
                    progress.add(records.len() - failed, failed, 0);
                }
            }
        }
        Ok(())
    })?;
    sink.finish()?;
    Ok(progress.finish())
}

/// Decodes one image and preprocesses it as the checkpoint's processor does; any
/// failure is this image's error message (decoders' panics come back from
/// `load_image` as errors; a panic here after it would be our own bug).
fn load_pixels(
    path: &Path,
    max_pixels: u64,
    processor: &ImageProcessorConfig,
) -> std::result::Result<Pixels, String> {
    pixels_of(
        || datasets::load_image(path, max_pixels),
        &path.display().to_string(),
        processor,
    )
}

/// [`load_pixels`] for an image that `decode` gives, called `name` in errors.
pub(crate) fn pixels_of(
    decode: impl FnOnce() -> std::result::Result<image::DynamicImage, datasets::DecodeError>,
    name: &str,
    processor: &ImageProcessorConfig,
) -> std::result::Result<Pixels, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let img = decode().map_err(|e| e.to_string())?;
        let (height, width) = if processor.do_resize {
            (processor.height, processor.width)
        } else {
            (img.height() as usize, img.width() as usize)
        };
        Ok(Pixels {
            data: processor.pixels(&img),
            height,
            width,
        })
    }))
    .unwrap_or_else(|_| Err(format!("{name}: preprocessing failed")))
}

/// Runs the model on a batch's decoded images and makes every image's record, in the
/// batch's order. Images of one size go through together; if the model fails on a group,
/// its images are tried one by one, so an error stays with the image that caused it.
pub(crate) fn caption_batch(
    captioner: &Captioner,
    prepared: Vec<Prepared>,
    run: &RunOptions,
) -> Vec<Record> {
    let opts = &run.caption;
    let mut results: Vec<Option<std::result::Result<Vec<Text>, String>>> =
        prepared.iter().map(|_| None).collect();
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, p) in prepared.iter().enumerate() {
        match &p.pixels {
            Ok(px) => groups.entry((px.height, px.width)).or_default().push(i),
            Err(e) => results[i] = Some(Err(e.clone())),
        }
    }
    for ((height, width), members) in groups {
        let run = |members: &[usize]| -> Result<Vec<Vec<Text>>> {
            let mut data = Vec::with_capacity(members.len() * 3 * height * width);
            for &i in members {
                if let Ok(px) = &prepared[i].pixels {
                    data.extend_from_slice(&px.data);
                }
            }
            let pixels =
                Tensor::from_vec(data, (members.len(), 3, height, width), captioner.device())?;
            let captions = captioner.caption_pixels(&pixels, opts)?;
            captions
                .into_iter()
                .map(|per_image| {
                    per_image
                        .into_iter()
                        .map(|c| {
                            let attention = captioner.word_maps(&c, run.attention_layer)?;
                            Ok(Text {
                                attention,
                                ..Text::from(c)
                            })
                        })
                        .collect()
                })
                .collect()
        };
        match run(&members) {
            Ok(texts) => {
                for (&i, t) in members.iter().zip(texts) {
                    results[i] = Some(Ok(t));
                }
            }
            Err(_) if members.len() > 1 => {
                for &i in &members {
                    results[i] =
                        Some(run(&[i]).map(|mut t| t.remove(0)).map_err(|e| {
                            format!("{}: captioning failed: {e}", prepared[i].todo.file)
                        }));
                }
            }
            Err(e) => {
                let i = members[0];
                results[i] = Some(Err(format!(
                    "{}: captioning failed: {e}",
                    prepared[i].todo.file
                )));
            }
        }
    }
    prepared
        .into_iter()
        .zip(results)
        .map(|(p, result)| Record {
            path: p.todo.path,
            relative: p.todo.relative,
            file: p.todo.file,
            image_id: p.todo.image_id,
            result: result.expect("every image has a result"),
        })
        .collect()
}

/// The images of `refs` that have captions, under `root`, in the references' order, as
/// a walk would find them.
pub fn images_of(refs: &datasets::References, root: &Path) -> Vec<Found> {
    refs.images
        .iter()
        .filter(|i| !i.captions.is_empty())
        .map(|i| Found {
            path: root.join(&i.file_name),
            relative: PathBuf::from(&i.file_name),
        })
        .collect()
}
