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
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for i in 0..b {
        for j in 0..t.saturating_sub(1) {
            let label = labels[i * t + j + 1];
            if label != IGNORE {
                rows.push((i * t + j) as u32);
                targets.push(label as u32);
            }
        }
    }
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
