//! `captioner caption` and `captioner attend`: their arguments, and the folder run
//! they drive (captioner-runner), with attention maps where asked (captioner-attention).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use captioner::Layer;
use captioner::{CaptionOptions, Captioner};
use captioner_attention::{self as attention, AttentionSink};
use captioner_runner::output::{Format, Sink, TagMode, Tee};
use captioner_runner::progress::Progress;
use captioner_runner::resume::{self, OutputSpec};
use captioner_runner::run::{self, RunOptions};
use clap::{Args, ValueEnum};
use datasets::ImageWalk;
use text_decoder::{EarlyStopping, Sampling};

use crate::returning_freed_memory;

pub(crate) const ATTEND_HELP: &str = "\
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

pub(crate) const CAPTION_HELP: &str = "\
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
pub(crate) struct AttendArgs {
    /// Image files and folders (folders are walked for images, as `caption` walks them).
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Where each image's sheet (NAME.png) and maps (NAME.json) go.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) maps: MapArgs,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) generate: GenerateArgs,
}

#[derive(Args)]
pub(crate) struct CaptionArgs {
    /// Image files and folders (folders are walked for images, see below).
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Output format [default: from -o's extension (.json, .csv), else jsonl].
    #[arg(long, value_enum)]
    pub(crate) format: Option<OutFormat>,
    /// Resume -o FILE (the default when it exists; this makes it explicit and needs -o).
    #[arg(long, conflicts_with = "overwrite")]
    pub(crate) resume: bool,
    /// Start -o FILE over instead of resuming it; with --format txt, replace existing tag
    /// files.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// --format txt: add the caption at the end of an existing tag file ("tags, caption");
    /// a caption already among its comma-separated tags is not added again.
    #[arg(long, conflicts_with_all = ["overwrite", "prepend"])]
    pub(crate) append: bool,
    /// --format txt: add the caption at the start of an existing tag file ("caption, tags").
    #[arg(long, conflicts_with = "overwrite")]
    pub(crate) prepend: bool,
    /// --format txt: extension of the tag files.
    #[arg(long, default_value = "txt", value_name = "EXT")]
    pub(crate) sidecar_ext: String,
    /// COCO annotation file whose images[] give the image ids (json; adds image_id to jsonl).
    #[arg(long, value_name = "ANN.json")]
    pub(crate) ann: Option<PathBuf>,
    /// Also write each image's attention sheet and maps under DIR (see `attend --help`).
    #[arg(long, value_name = "DIR")]
    pub(crate) attention: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) maps: MapArgs,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) generate: GenerateArgs,
}

/// The attention maps' HTML report and layer (`attend`, and `caption` with --attention
/// or --report).
#[derive(Args)]
pub(crate) struct MapArgs {
    /// Also write one HTML page of every image captioned in this run, its caption and,
    /// on hovering or tapping a word, that word's heatmap.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// The decoder layer the maps show, from 0 [default: the mean over layers].
    #[arg(long, value_name = "N")]
    pub(crate) attn_layer: Option<usize>,
}

impl MapArgs {
    /// The sink of attention sheets under `folder` and of the HTML report, when either
    /// is asked for.
    fn sink(&self, folder: Option<PathBuf>, max_pixels: u64) -> Option<(Box<dyn Sink>, Layer)> {
        if folder.is_none() && self.report.is_none() {
            return None;
        }
        let layer = Layer::from(self.attn_layer);
        let sink = AttentionSink {
            folder,
            report: self
                .report
                .clone()
                .map(|path| (path, attention::Report::new())),
            layer,
            max_pixels,
            names: Default::default(),
        };
        Some((Box::new(sink), layer))
    }
}

/// Which model, where it runs.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// A checkpoint directory in the Hugging Face layout of BLIP or of a
    /// VisionEncoderDecoder (ViT + GPT-2, TrOCR): config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json. Or a hub id such as
    /// Salesforce/blip-image-captioning-large (owner/name@revision for a revision), read
    /// from the Hugging Face cache (HF_HOME) and downloaded there once when online.
    #[arg(long, default_value = captioner::hub::DEFAULT_MODEL)]
    pub(crate) model: String,
    /// Threads for decoding and the model [default: all cores].
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Where the model runs (cuda needs a build with --features cuda).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub(crate) device: DeviceArg,
    /// Arithmetic of the linear layers: f32 gives transformers' numbers; bf16 and int8
    /// convert the weights at load time (CPU only) for speed and memory, with captions
    /// close to f32's but not identical (the image's keys and values are kept in the
    /// same precision); auto picks int8 where the CPU has AVX-512, else f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub(crate) precision: PrecisionArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PrecisionArg {
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
pub(crate) struct GenerateArgs {
    /// Beam width; 1 is greedy search.
    #[arg(long, default_value_t = 3)]
    pub(crate) beams: usize,
    /// Images per forward pass; the next batch is decoded while this one runs.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// Most tokens to generate after the prompt, [SEP] included
    /// [default: BLIP's max_length 20 minus the prompt's length in tokens; a
    /// VisionEncoderDecoder's generation_config.json max_length likewise, else 20].
    #[arg(long)]
    pub(crate) max_new_tokens: Option<usize>,
    /// [SEP] is forbidden before this many new tokens
    /// [default: BLIP's min_length 5 minus the prompt's length in tokens; a
    /// VisionEncoderDecoder's generation_config.json min_length likewise, else 0].
    #[arg(long)]
    pub(crate) min_new_tokens: Option<usize>,
    /// Beam scores are sum(log p) / new_tokens^length_penalty; above 1 favours longer captions.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) length_penalty: f32,
    /// Beam search stopping rule, as transformers' early_stopping.
    #[arg(long, value_enum, default_value_t = Stop::Heuristic)]
    pub(crate) early_stopping: Stop,
    /// Forbid repeating any n-gram of this size (0 = off).
    #[arg(long, default_value_t = 0)]
    pub(crate) no_repeat_ngram: usize,
    /// Penalise tokens already written (1.0 = off; transformers' repetition_penalty).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repetition_penalty: f32,
    /// Text the caption starts from, e.g. "a picture of"; "" for none [default: the
    /// checkpoint's, from its generation_config.json, which training writes; hub BLIP
    /// checkpoints have none].
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// Leave the prompt out of the caption (LAVIS) [default: as the checkpoint says;
    /// else kept, as transformers keeps it].
    #[arg(long, conflicts_with = "keep_prompt")]
    pub(crate) strip_prompt: bool,
    /// Keep the prompt in the caption, whatever the checkpoint says.
    #[arg(long)]
    pub(crate) keep_prompt: bool,
    /// Captions per image (at most --beams; with --sample, independent samples).
    #[arg(long, default_value_t = 1)]
    pub(crate) num_return: usize,
    /// Sample tokens instead of searching (needs --beams 1).
    #[arg(long)]
    pub(crate) sample: bool,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) temperature: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 50)]
    pub(crate) top_k: usize,
    /// Sample among the most likely tokens holding this much probability.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Refuse images with more pixels than this (decompression bombs).
    #[arg(long, default_value_t = datasets::DEFAULT_MAX_PIXELS)]
    pub(crate) max_pixels: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutFormat {
    Jsonl,
    Json,
    Csv,
    Txt,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Stop {
    /// Stop when no running beam can beat the finished ones (transformers' False).
    Heuristic,
    /// Stop once num_beams captions are finished (True).
    Always,
    /// Keep searching while a beam could still improve at full length ("never").
    Never,
}

impl GenerateArgs {
    /// The options asked for, the prompt as `captioner`'s checkpoint wants it where
    /// none is given.
    pub(crate) fn options(&self, captioner: &Captioner) -> CaptionOptions {
        let opts = CaptionOptions {
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
            prompt: None,
            strip_prompt: false,
            output_attentions: false,
        };
        let strip = match (self.strip_prompt, self.keep_prompt) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        captioner.options_with(opts, self.prompt.clone(), strip)
    }
}

impl CaptionArgs {
    pub(crate) fn format(&self) -> Format {
        match (self.format, &self.output) {
            (Some(OutFormat::Jsonl), _) => Format::Jsonl,
            (Some(OutFormat::Json), _) => Format::Json,
            (Some(OutFormat::Csv), _) => Format::Csv,
            (Some(OutFormat::Txt), _) => Format::Txt,
            (None, Some(path)) => Format::from_path(path),
            (None, None) => Format::Jsonl,
        }
    }

    pub(crate) fn output_spec(&self) -> Result<OutputSpec> {
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

pub(crate) fn device(arg: DeviceArg) -> Result<Device> {
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
    pub(crate) fn load(&self) -> Result<Captioner> {
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
pub(crate) enum Total<'a> {
    /// From a counting walk of these inputs.
    Walk(&'a [PathBuf]),
    Known(u64),
}

/// Captions what `found` yields into the output `spec` names, resuming it; the exit
/// status says whether every image was captioned.
pub(crate) fn caption_into<I>(
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
        progress.note(&r.to_string());
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
        caption: generate.options(captioner),
        attention_layer: Layer::Mean,
    };
    let sink = match attention {
        Some((maps, layer)) => {
            let layers = captioner.meta.config.text_config.num_hidden_layers;
            let layer = layer.within(layers)?;
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

pub(crate) fn caption(args: &CaptionArgs) -> Result<ExitCode> {
    let spec = args.output_spec()?;
    if args.maps.attn_layer.is_some() && args.attention.is_none() && args.maps.report.is_none() {
        bail!("--attn-layer picks the layer of --attention and --report maps: give one of them");
    }
    let maps = args
        .maps
        .sink(args.attention.clone(), args.generate.max_pixels);
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
pub(crate) fn caption_paths(
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

pub(crate) fn attend(args: &AttendArgs) -> Result<ExitCode> {
    let spec = OutputSpec {
        format: Format::Jsonl,
        path: None,
        overwrite: false,
        tag_mode: TagMode::Keep,
        sidecar_ext: "txt".into(),
        ann: None,
    };
    let maps = args
        .maps
        .sink(Some(args.out.clone()), args.generate.max_pixels);
    caption_paths(
        &args.inputs,
        &args.model,
        spec,
        &args.generate,
        args.quiet,
        maps,
    )
}
