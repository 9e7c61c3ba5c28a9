//! Scoring a results file against references, and the report: a table for people, JSON
//! for programs, and per-image scores.

use datasets::References;
use serde_json::{json, Map, Value};

use super::pairs::{match_predictions, Matched, Predictions};
use super::sacrebleu::{corpus_bleu, SacreBleu};
use super::{evaluate, tokenize_all, tokenize_refs, Evaluation, NAMES};
use crate::Result;

/// Which BLEU a report gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BleuKind {
    /// pycocoevalcap's Bleu_1..Bleu_4 on PTB tokens.
    #[default]
    Coco,
    /// sacreBLEU's default corpus BLEU (13a tokens of the raw text, exp smoothing, 0-100).
    SacreBleu,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub matched: Matched,
    pub evaluation: Evaluation,
    /// With [`BleuKind::SacreBleu`].
    pub sacrebleu: Option<SacreBleu>,
    pub references: usize,
}

/// Scores `preds` against `refs`: pycocoevalcap's tokenization and metrics.
pub fn score(refs: &References, preds: &Predictions, bleu: BleuKind) -> Result<Report> {
    let matched = match_predictions(refs, preds)?;
    let cands = tokenize_all(&matched.cands);
    let evaluation = evaluate(&cands, &tokenize_refs(&matched.refs));
    let sacrebleu = (bleu == BleuKind::SacreBleu).then(|| {
        let hyps: Vec<&str> = matched.cands.iter().map(String::as_str).collect();
        let refs: Vec<Vec<&str>> = matched
            .refs
            .iter()
            .map(|rs| rs.iter().map(String::as_str).collect())
            .collect();
        corpus_bleu(&hyps, &refs)
    });
    Ok(Report {
        references: flat_len(&matched),
        matched,
        evaluation,
        sacrebleu,
    })
}

fn flat_len(m: &Matched) -> usize {
    m.refs.iter().map(Vec::len).sum()
}

impl Report {
    /// The metrics this report gives, by name, in table order.
    fn rows(&self) -> Vec<(&'static str, f64)> {
        let mut rows: Vec<(&str, f64)> = NAMES
            .iter()
            .copied()
            .zip(self.evaluation.corpus.values())
            .collect();
        if let Some(s) = &self.sacrebleu {
            rows.splice(0..4, [("BLEU (sacreBLEU)", s.score)]);
        }
        rows
    }

    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (name, v) in self.rows() {
            out += &format!("{name:<17} {v:.6}\n");
        }
        out += &format!(
            "{} images, {} reference captions; PTB-tokenized as pycocoevalcap{}\n",
            self.matched.ids.len(),
            self.references,
            if let Some(s) = &self.sacrebleu {
                format!(
                    "; sacreBLEU on raw text: 13a tokens, exp smoothing, counts {:?}/{:?}, bp {:.4}, sys_len {}, ref_len {}",
                    s.counts, s.totals, s.bp, s.sys_len, s.ref_len
                )
            } else {
                String::new()
            }
        );
        out
    }

    /// `{"scores": {name: value}, "images", "references", "bleu_stats", "warnings"}`,
    /// plus `"sacrebleu"` with its counts.
    pub fn to_json(&self) -> Value {
        let scores: Map<String, Value> = self
            .rows()
            .into_iter()
            .filter(|(n, _)| NAMES.contains(n))
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        let mut out = json!({
            "scores": scores,
            "images": self.matched.ids.len(),
            "references": self.references,
            "bleu_stats": self.evaluation.bleu_stats,
            "warnings": self.matched.warnings,
        });
        if let Some(s) = &self.sacrebleu {
            out["sacrebleu"] = json!(s);
        }
        out
    }

    /// One object per scored image: `image_id`, the caption and its metrics (the
    /// pycocoevalcap per-image values; Bleu_n only when the report gives COCO BLEU).
    pub fn per_image(&self) -> Value {
        let coco_bleu = self.sacrebleu.is_none();
        let list = self
            .matched
            .ids
            .iter()
            .zip(&self.matched.cands)
            .zip(&self.evaluation.per_image)
            .map(|((id, caption), s)| {
                let mut o = Map::new();
                o.insert("image_id".into(), id.clone());
                o.insert("caption".into(), json!(caption));
                for (n, v) in NAMES.iter().zip(s.values()) {
                    if coco_bleu || !n.starts_with("Bleu") {
                        o.insert(n.to_string(), json!(v));
                    }
                }
                Value::Object(o)
            })
            .collect();
        Value::Array(list)
    }
}

/// For the synthetic shapes data set (annotations at `ann` holding each image's scene):
/// the share of scored captions that name every object's colour and shape, and no
/// other; `None` for annotations without scenes.
pub fn scene_accuracy(ann: &std::path::Path, report: &Report) -> Result<Option<f64>> {
    use datasets::synth::{load_scenes, Scene, SynthError};
    let scenes = match load_scenes(ann) {
        Ok(s) => s,
        Err(SynthError::Json { .. }) => return Ok(None),
        Err(e) => return Err(crate::Error::other(e)),
    };
    let pairs: Vec<(&str, &Scene)> = report
        .matched
        .ids
        .iter()
        .zip(&report.matched.cands)
        .filter_map(|(id, c)| Some((c.as_str(), scenes.get(&id.as_i64()?)?)))
        .collect();
    Ok((!pairs.is_empty()).then(|| datasets::synth::scene_accuracy(pairs)))
}
