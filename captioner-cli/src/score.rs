//! `captioner score` and `captioner eval`: the COCO caption evaluation of a results
//! file, or of a split captioned first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use caption_metrics::{self as metrics, Report};
use captioner::Layer;
use captioner_attention as attention;
use captioner_runner::output::Sink;
use captioner_runner::resume::OutputSpec;
use captioner_runner::run;
use clap::{Args, ValueEnum};
use datasets::References;

use crate::caption::{caption_into, GenerateArgs, ModelArgs, Total};

pub(crate) const SCORE_HELP: &str = "\
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

#[derive(Args)]
pub(crate) struct ScoreArgs {
    /// Reference captions: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json")]
    pub(crate) refs: PathBuf,
    /// Captions to score: COCO results or captioner's JSON lines.
    #[arg(long, value_name = "RESULTS.json")]
    pub(crate) preds: PathBuf,
    /// Write every image's scores to FILE (JSON).
    #[arg(long, value_name = "FILE")]
    pub(crate) per_image: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) scoring: ScoringArgs,
}

/// What `score` and `eval` share: which references, which BLEU, how to print.
#[derive(Args)]
pub(crate) struct ScoringArgs {
    /// Only this split of a Karpathy file (train, val, test, restval).
    #[arg(long)]
    pub(crate) split: Option<String>,
    /// Print JSON: scores, counts, BLEU statistics and warnings.
    #[arg(long)]
    pub(crate) json: bool,
    /// Which BLEU to report.
    #[arg(long, value_enum, default_value_t = BleuArg::Coco)]
    pub(crate) bleu: BleuArg,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// The data set's references: COCO annotations or Karpathy's dataset_coco.json.
    #[arg(long, value_name = "ANN.json")]
    pub(crate) ann: PathBuf,
    /// The folder the references' file names are relative to.
    #[arg(long, value_name = "DIR")]
    pub(crate) images: PathBuf,
    /// Where results.json (resumed when it exists), scores.json and per_image.json go.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Caption every image again instead of resuming results.json.
    #[arg(long)]
    pub(crate) overwrite: bool,
    #[command(flatten)]
    pub(crate) scoring: ScoringArgs,
    /// Also score where the decoder looks, on a data set whose annotations hold scenes
    /// (`dataset synth`): per colour or shape word naming objects of the image, the
    /// share of its attention inside their boxes and whether its peak is inside
    /// (pointing), beside chance (the boxes' share of the image). Captions every image
    /// again, as --overwrite does.
    #[arg(long)]
    pub(crate) attention: bool,
    /// With --attention: the decoder layer scored, from 0 [default: the mean over layers].
    #[arg(long, value_name = "N", requires = "attention")]
    pub(crate) attn_layer: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) generate: GenerateArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum BleuArg {
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

/// References, restricted to a split when one is named.
pub(crate) fn references(path: &std::path::Path, split: Option<&str>) -> Result<References> {
    let refs = References::load(path)?;
    Ok(match split {
        Some(s) => refs.split(s)?,
        None => refs,
    })
}

/// Prints the report (or its JSON) and the warnings, and writes per-image scores.
/// With `json`, prints that instead of the table.
pub(crate) fn report(
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
pub(crate) fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    Ok(captioner::checkpoint::write_atomic(path, text.as_bytes())?)
}

pub(crate) fn score(args: &ScoreArgs) -> Result<ExitCode> {
    let refs = references(&args.refs, args.scoring.split.as_deref())?;
    let preds = metrics::load_predictions(&args.preds)?;
    let r = metrics::score(&refs, &preds, args.scoring.bleu.into())?;
    let json = args.scoring.json.then(|| r.to_json());
    report(&r, json.as_ref(), args.per_image.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let refs = references(&args.ann, args.scoring.split.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let results = args.out.join("results.json");
    // Scoring attention needs every image's maps: caption them all again.
    let spec = OutputSpec::coco_results(results.clone(), &refs, args.overwrite || args.attention);
    let found = run::images_of(&refs, &args.images);
    let captioner = args.model.load()?;
    let total = Total::Known(found.len() as u64);
    let hits = Arc::new(Mutex::new(Vec::new()));
    let localisation = if args.attention {
        Some(localisation_sink(args, hits.clone())?)
    } else {
        None
    };
    let found = found.into_iter().map(Ok);
    let status = caption_into(
        &captioner,
        found,
        spec,
        &args.generate,
        args.quiet,
        total,
        localisation,
    )?;
    let preds = metrics::load_predictions(&results)?;
    let r = metrics::score(&refs, &preds, args.scoring.bleu.into())?;
    let mut scores = r.to_json();
    if let Some(acc) = metrics::scene_accuracy(&args.ann, &r)? {
        scores["scene_accuracy"] = serde_json::json!(acc);
        if !args.scoring.json {
            eprintln!("scene accuracy: {acc:.4} (captions naming every object's colour and shape)");
        }
    }
    if args.attention {
        let hits = hits.lock().unwrap_or_else(|e| e.into_inner());
        let l = attention::Localisation::of(&hits);
        if !args.scoring.json {
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
        args.scoring.json.then_some(&scores),
        Some(&args.out.join("per_image.json")),
    )?;
    Ok(status)
}

/// The sink that scores each caption's attention against the scenes of `args.ann`.
fn localisation_sink(
    args: &EvalArgs,
    hits: Arc<Mutex<Vec<attention::WordHit>>>,
) -> Result<(Box<dyn Sink>, Layer)> {
    let scenes = datasets::synth::load_scenes(&args.ann).with_context(|| {
        format!(
            "--attention scores attention against the scenes of a synthetic data set; {} has none",
            args.ann.display()
        )
    })?;
    let sink = attention::localise::LocalisationSink { scenes, hits };
    Ok((Box::new(sink), Layer::from(args.attn_layer)))
}
