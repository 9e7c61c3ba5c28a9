//! The captioning loss: cross-entropy of each next token, with label smoothing, over the
//! tokens that are not ignored (torch's `CrossEntropyLoss(label_smoothing=..)`, mean).

use candle_core::{Tensor, D};

use super::text::IGNORE;
use crate::{Error, Result};

/// `logits` `[B, T, V]` predict the token after each position: position `j` is scored
/// against `labels[j + 1]`. Returns the mean over scored tokens of
/// `(1 - smoothing) * nll + smoothing * (mean over the vocabulary of -log p)`.
pub fn caption_loss(logits: &Tensor, labels: &[i64], smoothing: f64) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    if labels.len() != b * t {
        return Err(Error::Other(format!(
            "{} labels for logits of {b} x {t} positions",
            labels.len()
        )));
    }
    let (rows, targets): (Vec<u32>, Vec<u32>) = scored(labels, t)
        .map(|(row, label)| (row as u32, label as u32))
        .unzip();
    if rows.is_empty() {
        return Err(Error::Other(
            "no caption token to learn from in this batch".into(),
        ));
    }
    let n = rows.len();
    let device = logits.device();
    let picked = logits
        .reshape((b * t, v))?
        .index_select(&Tensor::from_vec(rows, n, device)?, 0)?;
    let logp = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let nll = logp
        .gather(&Tensor::from_vec(targets, (n, 1), device)?, 1)?
        .squeeze(1)?
        .neg()?;
    let uniform = logp.mean(D::Minus1)?.neg()?;
    let per_token = ((nll * (1.0 - smoothing))? + (uniform * smoothing)?)?;
    Ok(per_token.mean_all()?)
}

/// The positions scored, with their targets: position `j` of caption `i` (of `t`
/// positions) against `labels[i·t + j + 1]`, where that label is not ignored.
fn scored(labels: &[i64], t: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
    labels
        .chunks(t.max(1))
        .enumerate()
        .flat_map(move |(i, caption)| {
            caption
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, &label)| label != IGNORE)
                .map(move |(j, &label)| (i * t + j - 1, label))
        })
}

/// How many tokens of `labels` (captions of `t` positions) the loss scores.
pub fn scored_tokens(labels: &[i64], t: usize) -> usize {
    scored(labels, t).count()
}
