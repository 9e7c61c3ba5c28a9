//! One optimizer step, shared by the training loop and the training benchmark:
//! micro-batches' gradients summed, clipped by their global norm, then AdamW.
//!
//! A micro-batch runs as `cfg.shards` shards side by side, each on a thread of its own
//! with serial kernels: a small model's step is a long chain of small ops, which
//! parallel kernels cannot split finely enough to keep two cores busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{Tensor, TensorId, Var};

use super::loss::scored_tokens;
use super::model::{Replica, Trainable};
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
    let replicas = (0..cfg.shards.max(1))
        .map(|_| model.replica(cfg.freeze_vision))
        .collect::<Result<Vec<_>>>()?;
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    let (mut loss_sum, mut images) = (0f64, 0usize);
    for micro in 0..accumulate {
        let (pixels, text, count) = next()?;
        images += count;
        // Dropout masks from (seed, step, micro-batch, shard) alone, so a resumed run
        // draws the same ones.
        let mut rng = datasets::Rng::new(cfg.seed);
        let seed = rng.next_u64() ^ (optimizer.step << 16) ^ micro as u64;
        let scale = 1.0 / accumulate as f64;
        let (value, micro_grads) = micro_batch(
            &replicas,
            &optimizer.params,
            &pixels,
            &text,
            cfg,
            seed,
            scale,
        )?;
        let Some(micro_grads) = micro_grads else {
            return Ok(StepOutcome {
                loss: value,
                grad_norm: f64::NAN,
                images,
            });
        };
        loss_sum += value;
        add_into(&mut grads, micro_grads)?;
    }
    let (grad_norm, factor) = clip_factor(grads.values(), cfg.max_grad_norm)?;
    rayon::scope(|_| optimizer.update(|p| grads.get(&p.id()).cloned(), lr, factor))?;
    Ok(StepOutcome {
        loss: loss_sum / accumulate as f64,
        grad_norm,
        images,
    })
}

/// One micro-batch's mean loss, and the gradients of `loss · scale` for `params`
/// (`None` when the loss is not finite). Its shards run side by side on `replicas`,
/// the first few of which it uses; dropout masks come from `seed`.
pub fn micro_batch(
    replicas: &[Replica],
    params: &[(String, Var)],
    pixels: &Tensor,
    text: &TextBatch,
    cfg: &TrainConfig,
    seed: u64,
    scale: f64,
) -> Result<(f64, Option<HashMap<TensorId, Tensor>>)> {
    let shards = shards(pixels, text, replicas.len())?;
    let outcomes = side_by_side(shards.len(), |s| {
        let (pixels, text, weight) = &shards[s];
        let replica = &replicas[s];
        replica.dropout(Some(seed ^ ((s as u64) << 48)));
        let run = || -> Result<_> {
            let loss = replica.loss(pixels, text, cfg.label_smoothing)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Ok((value, None));
            }
            Ok((value, Some((loss * (weight * scale))?.backward()?)))
        };
        let outcome = run();
        replica.dropout(None);
        outcome
    });
    let (mut loss, mut grads) = (0f64, HashMap::new());
    for ((_, _, weight), outcome) in shards.iter().zip(outcomes) {
        let (value, g) = outcome?;
        let Some(g) = g else {
            return Ok((value, None));
        };
        loss += weight * value;
        let found = params.iter().filter_map(|(_, var)| {
            let t = var.as_tensor();
            g.get(t).map(|g| (t.id(), g.clone()))
        });
        add_into(&mut grads, found.collect())?;
    }
    Ok((loss, Some(grads)))
}

/// Adds each gradient of `more` to the one in `sum` for the same variable.
fn add_into(sum: &mut HashMap<TensorId, Tensor>, more: HashMap<TensorId, Tensor>) -> Result<()> {
    for (id, g) in more {
        let total = match sum.remove(&id) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        sum.insert(id, total);
    }
    Ok(())
}

/// The micro-batch cut into at most `n` runs of consecutive images, each with its
/// share of the scored tokens (the weight of its mean loss in the micro-batch's).
fn shards(pixels: &Tensor, text: &TextBatch, n: usize) -> Result<Vec<(Tensor, TextBatch, f64)>> {
    let (rows, t) = text.shape;
    let total = scored_tokens(&text.labels, t);
    let n = n.clamp(1, rows.max(1));
    if n == 1 || total == 0 {
        // Whole: also where the loss's own error about nothing to learn from belongs.
        return Ok(vec![(pixels.clone(), text.clone(), 1.0)]);
    }
    let total = total as f64;
    let mut out = Vec::with_capacity(n);
    for s in 0..n {
        let (start, end) = (s * rows / n, (s + 1) * rows / n);
        let labels = text.labels[start * t..end * t].to_vec();
        let scored = scored_tokens(&labels, t);
        if scored == 0 {
            continue;
        }
        let part = |x: &Tensor| x.narrow(0, start, end - start);
        out.push((
            part(pixels)?,
            TextBatch {
                input_ids: part(&text.input_ids)?,
                attention_mask: part(&text.attention_mask)?,
                labels,
                shape: (end - start, t),
            },
            scored as f64 / total,
        ));
    }
    Ok(out)
}

/// `f(0)`, .., `f(n - 1)` side by side, each on a pool of one thread (so the kernels
/// inside run serially), results in order. A single one runs on the global pool, its
/// kernels in parallel, in place on a pool thread rather than waking the pool op after
/// op.
fn side_by_side<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n <= 1 {
        return (0..n).map(|i| rayon::scope(|_| f(i))).collect();
    }
    let pools = single_thread_pools(n);
    std::thread::scope(|scope| {
        let f = &f;
        let running: Vec<_> = pools
            .iter()
            .enumerate()
            .map(|(i, pool)| scope.spawn(move || pool.install(|| f(i))))
            .collect();
        running
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// `n` pools of one thread each, made once and kept.
fn single_thread_pools(n: usize) -> Vec<Arc<rayon::ThreadPool>> {
    static POOLS: Mutex<Vec<Arc<rayon::ThreadPool>>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    while pools.len() < n {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "shard".into())
            .build()
            .expect("a thread for a training shard");
        pools.push(Arc::new(pool));
    }
    pools[..n].to_vec()
}
