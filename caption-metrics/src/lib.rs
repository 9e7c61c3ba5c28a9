//! caption-metrics: the COCO caption evaluation, with pycocoevalcap's numbers: its PTB
//! tokenization ([`ptb`]), then Bleu_1..Bleu_4, ROUGE_L and CIDEr (CIDEr-D), per image
//! and over the corpus, in f64 and in its order of operations. [`sacrebleu`] gives
//! sacreBLEU's corpus BLEU for comparison with machine-translation tooling. [`pairs`]
//! reads the field's files and matches results to references. No model, no candle:
//! this crate scores captions from anywhere.
//!
//! METEOR and SPICE are not here: they need Java tools and data we do not ship.
//!
//! Scoring a COCO results file against COCO-style references, as pycocoevalcap's
//! `COCOEvalCap` does (its scores for these files are in the fixtures' expected.json):
//!
//! ```
//! use caption_metrics::{load_predictions, score, BleuKind};
//! use datasets::References;
//!
//! let refs = References::load("tests/fixtures/main.refs.json".as_ref())?;
//! let preds = load_predictions("tests/fixtures/main.results.json".as_ref())?;
//! let report = score(&refs, &preds, BleuKind::Coco)?;
//! let scores = &report.to_json()["scores"];
//! println!("CIDEr {}", scores["CIDEr"]);
//!
//! let expected: serde_json::Value =
//!     serde_json::from_str(&std::fs::read_to_string("tests/fixtures/expected.json")?)?;
//! for name in caption_metrics::NAMES {
//!     let pycocoevalcap = expected["main"]["corpus"][name].as_f64().unwrap();
//!     assert!((scores[name].as_f64().unwrap() - pycocoevalcap).abs() < 1e-9);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bleu;
mod cider;
mod ngrams;
pub mod pairs;
pub mod ptb;
mod report;
mod rouge;
pub mod sacrebleu;

use rayon::prelude::*;

pub use bleu::BleuStats;
pub use pairs::{load_predictions, match_predictions, Matched, Prediction, Predictions};
pub use report::{scene_accuracy, score, BleuKind, Report};

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// What went wrong, and with which file when a file is to blame.
#[derive(Debug)]
pub struct Error {
    pub path: Option<PathBuf>,
    pub msg: String,
}

impl Error {
    /// An error about one file, naming it.
    pub fn file(path: impl AsRef<Path>, msg: impl Display) -> Self {
        Self {
            path: Some(path.as_ref().to_path_buf()),
            msg: msg.to_string(),
        }
    }

    pub fn other(msg: impl Display) -> Self {
        Self {
            path: None,
            msg: msg.to_string(),
        }
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The metric names, as pycocoevalcap writes them.
pub const NAMES: [&str; 6] = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"];

/// One image's scores, or a corpus'.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub bleu: [f64; 4],
    pub rouge_l: f64,
    pub cider: f64,
}

impl Scores {
    /// In [`NAMES`] order.
    pub fn values(&self) -> [f64; 6] {
        let [b1, b2, b3, b4] = self.bleu;
        [b1, b2, b3, b4, self.rouge_l, self.cider]
    }
}

/// What [`evaluate`] finds.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub corpus: Scores,
    /// In the order of the images given.
    pub per_image: Vec<Scores>,
    /// BLEU's pooled counts.
    pub bleu_stats: BleuStats,
}

/// Tokenizes captions as pycocoevalcap does one batch (one run of its Java tokenizer, whose
/// lexer looks past each line into the next), in parallel.
pub fn tokenize_all(captions: &[String]) -> Vec<String> {
    (0..captions.len())
        .into_par_iter()
        .map(|i| ptb::tokenize_in_batch(captions, i))
        .collect()
}

/// [`tokenize_all`] of each image's references, as one batch in this order (as
/// pycocoevalcap tokenizes them).
pub fn tokenize_refs(refs: &[Vec<String>]) -> Vec<Vec<String>> {
    let flat: Vec<String> = refs.iter().flatten().cloned().collect();
    let mut flat = tokenize_all(&flat).into_iter();
    refs.iter()
        .map(|rs| flat.by_ref().take(rs.len()).collect())
        .collect()
}

/// Scores one candidate per image against that image's references (at least one), all
/// already tokenized ([`tokenize_all`], [`tokenize_refs`]).
pub fn evaluate(cands: &[String], refs: &[Vec<String>]) -> Evaluation {
    assert_eq!(cands.len(), refs.len(), "one candidate per image");
    fn counts<'a>(s: &'a str, vocab: &mut ngrams::Vocab<'a>) -> (usize, ngrams::Counts) {
        let words = vocab.words(s);
        (words.len(), ngrams::Counts::new(&words))
    }
    let mut vocab = ngrams::Vocab::default();
    let mut cand_counts = Vec::with_capacity(cands.len());
    let mut ref_counts = Vec::with_capacity(refs.len());
    let mut ref_lens = Vec::with_capacity(refs.len());
    for (c, rs) in cands.iter().zip(refs) {
        cand_counts.push(counts(c, &mut vocab));
        let (lens, cs): (Vec<usize>, Vec<ngrams::Counts>) =
            rs.iter().map(|r| counts(r, &mut vocab)).unzip();
        ref_lens.push(lens);
        ref_counts.push(cs);
    }
    let mut pooled = BleuStats::default();
    let mut per_image: Vec<Scores> = (0..cands.len())
        .map(|i| {
            let stats = BleuStats::new(
                cand_counts[i].0,
                &cand_counts[i].1,
                &ref_lens[i],
                &ref_counts[i],
            );
            pooled.add(&stats);
            let ref_text: Vec<&str> = refs[i].iter().map(String::as_str).collect();
            Scores {
                bleu: stats.scores(),
                rouge_l: rouge::rouge_l(&cands[i], &ref_text),
                cider: 0.0,
            }
        })
        .collect();
    let only_counts: Vec<ngrams::Counts> = cand_counts.into_iter().map(|(_, c)| c).collect();
    for (s, c) in per_image
        .iter_mut()
        .zip(cider::cider(&only_counts, &ref_counts))
    {
        s.cider = c;
    }
    let rouge: Vec<f64> = per_image.iter().map(|s| s.rouge_l).collect();
    let cider: Vec<f64> = per_image.iter().map(|s| s.cider).collect();
    Evaluation {
        corpus: Scores {
            bleu: pooled.scores(),
            rouge_l: np_mean(&rouge),
            cider: np_mean(&cider),
        },
        per_image,
        bleu_stats: pooled,
    }
}

/// `np.mean` of float64s: numpy's pairwise sum (blocks of up to 128, unrolled by 8),
/// then the division, so that means agree with pycocoevalcap's to the bit.
fn np_mean(a: &[f64]) -> f64 {
    fn sum(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(0.0, |s, x| s + x)
        } else if n <= 128 {
            let mut r: [f64; 8] = a[..8].try_into().expect("8 values");
            let full = n - n % 8;
            for chunk in a[8..full].chunks_exact(8) {
                (0..8).for_each(|j| r[j] += chunk[j]);
            }
            let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            a[full..].iter().fold(head, |s, x| s + x)
        } else {
            let half = n / 2 - (n / 2) % 8;
            sum(&a[..half]) + sum(&a[half..])
        }
    }
    sum(a) / a.len() as f64
}
