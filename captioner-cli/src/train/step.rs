//! One optimizer step, shared by the training loop and the training benchmark:
//! micro-batches' gradients summed, clipped by their global norm, then AdamW.

use std::collections::HashMap;

use candle_core::{Tensor, TensorId};

use super::model::Trainable;
use super::optim::{clip_factor, AdamW};
use super::run::TrainConfig;
use super::text::TextBatch;
use crate::Result;

/// What one optimizer step did.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// The mean loss of its micro-batches; not finite when the step stopped short.
    pub loss: f64,
    /// The gradients' global norm before clipping (NaN when the step stopped short).
    pub grad_norm: f64,
    pub images: usize,
}

/// Takes `cfg.accumulate` micro-batches `(pixels, text, images)` from `next`, sums their
/// gradients (each loss divided by the count) and updates the weights at `lr`. A loss
/// that is not finite ends the step before anything is updated; the caller sees it in
/// [`StepOutcome::loss`].
pub fn optimizer_step(
    model: &Trainable,
    optimizer: &mut AdamW,
    cfg: &TrainConfig,
    lr: f64,
    mut next: impl FnMut() -> Result<(Tensor, TextBatch, usize)>,
) -> Result<StepOutcome> {
    let accumulate = cfg.accumulate.max(1);
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    let (mut loss_sum, mut images) = (0f64, 0usize);
    for micro in 0..accumulate {
        let (pixels, text, count) = next()?;
        images += count;
        // Dropout masks from (seed, step, micro-batch) alone, so a resumed run draws the
        // same ones.
        let mut rng = datasets::Rng::new(cfg.seed);
        let seed = rng.next_u64() ^ (optimizer.step << 16) ^ micro as u64;
        model.dropout(Some(seed));
        // On a pool thread, the kernels' parallel loops over small tensors run in place
        // instead of waking the pool and blocking on it, op after op.
        let outcome = rayon::scope(|_| -> Result<_> {
            let loss = model.loss(&pixels, &text, cfg.label_smoothing, cfg.freeze_vision)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Ok((value, None));
            }
            Ok((value, Some((loss / accumulate as f64)?.backward()?)))
        });
        model.dropout(None);
        let (value, g) = outcome?;
        let Some(g) = g else {
            return Ok(StepOutcome {
                loss: value,
                grad_norm: f64::NAN,
                images,
            });
        };
        loss_sum += value;
        for (_, var) in &optimizer.params {
            if let Some(gv) = g.get(var.as_tensor()) {
                let id = var.as_tensor().id();
                let sum = match grads.remove(&id) {
                    Some(prev) => (prev + gv)?,
                    None => gv.clone(),
                };
                grads.insert(id, sum);
            }
        }
    }
    let (grad_norm, factor) = clip_factor(grads.values(), cfg.max_grad_norm)?;
    rayon::scope(|_| optimizer.update(|p| grads.get(&p.id()).cloned(), lr, factor))?;
    Ok(StepOutcome {
        loss: loss_sum / accumulate as f64,
        grad_norm,
        images,
    })
}
