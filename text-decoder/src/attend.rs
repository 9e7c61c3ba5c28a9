//! Cross-attention for a few queries per image and head, as decoding steps have them
//! (one per beam). As batched matmuls these are hundreds of tiny products whose set-up
//! costs more than their arithmetic; here each (image, head) is one task that streams
//! its keys and values once.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;

/// Most queries per (image, head) this path takes.
pub const MAX_QUERIES: usize = 16;

fn cpu_f32(t: &Tensor) -> Option<(impl std::ops::Deref<Target = Storage> + '_, usize, usize)> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    matches!(&*storage, Storage::Cpu(CpuStorage::F32(_))).then_some((storage, start, end))
}

fn slice(s: &Storage, start: usize, end: usize) -> &[f32] {
    match s {
        Storage::Cpu(CpuStorage::F32(v)) => &v[start..end],
        _ => unreachable!("checked by cpu_f32"),
    }
}

/// Softmax attention of queries `q` `[B, H, M, hd]` (already scaled) over keys stored
/// transposed `k_t` `[B, H, hd, N]` and values `v` `[B, H, N, hd]`: returns the
/// probabilities `[B, H, M, N]` and the context `[B, H, M, hd]`, or `None` when the
/// inputs are not contiguous f32 on the CPU or `M` is too large for this path.
pub fn few_queries(
    q: &Tensor,
    k_t: &Tensor,
    v: &Tensor,
) -> candle_core::Result<Option<(Tensor, Tensor)>> {
    let (b, h, m, hd) = q.dims4()?;
    let n = v.dim(2)?;
    if m > MAX_QUERIES || !matches!(q.device(), Device::Cpu) || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (Some((qs, q0, q1)), Some((ks, k0, k1)), Some((vs, v0, v1))) =
        (cpu_f32(&q), cpu_f32(k_t), cpu_f32(v))
    else {
        return Ok(None);
    };
    let (q, k_t, v) = (slice(&qs, q0, q1), slice(&ks, k0, k1), slice(&vs, v0, v1));
    let mut probs = vec![0f32; b * h * m * n];
    let mut ctx = vec![0f32; b * h * m * hd];
    probs
        .par_chunks_mut(m * n)
        .zip(ctx.par_chunks_mut(m * hd))
        .enumerate()
        .for_each(|(bh, (p, c))| {
            let kt = &k_t[bh * hd * n..(bh + 1) * hd * n];
            let vv = &v[bh * n * hd..(bh + 1) * n * hd];
            for (i, (p, c)) in p
                .chunks_exact_mut(n)
                .zip(c.chunks_exact_mut(hd))
                .enumerate()
            {
                let qi = &q[(bh * m + i) * hd..(bh * m + i + 1) * hd];
                // scores = q · Kᵀ, one key-row of Kᵀ (all N keys of one dimension) at a time.
                for (&qd, krow) in qi.iter().zip(kt.chunks_exact(n)) {
                    p.iter_mut().zip(krow).for_each(|(s, &k)| *s += qd * k);
                }
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                p.iter_mut().for_each(|s| {
                    *s = (*s - max).exp();
                    sum += *s;
                });
                let inv = 1.0 / sum;
                p.iter_mut().for_each(|s| *s *= inv);
                // context = probs · V, one value row at a time.
                for (&pn, vrow) in p.iter().zip(vv.chunks_exact(hd)) {
                    c.iter_mut().zip(vrow).for_each(|(o, &x)| *o += pn * x);
                }
            }
        });
    let device = Device::Cpu;
    Ok(Some((
        Tensor::from_vec(probs, (b, h, m, n), &device)?,
        Tensor::from_vec(ctx, (b, h, m, hd), &device)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_matmul_softmax_matmul() {
        let d = Device::Cpu;
        let (b, h, m, hd, n) = (3, 4, 5, 16, 37);
        let q = Tensor::randn(0f32, 1.0, (b, h, m, hd), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, n, hd), &d).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, n, hd), &d).unwrap();
        let k_t = k.t().unwrap().contiguous().unwrap();
        let (p, c) = few_queries(&q, &k_t, &v).unwrap().unwrap();
        let p_ref = candle_nn::ops::softmax_last_dim(&q.matmul(&k_t).unwrap()).unwrap();
        let c_ref = p_ref.matmul(&v).unwrap();
        for (a, b) in [(p, p_ref), (c, c_ref)] {
            let diff = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
        let many = Tensor::zeros((1, 1, MAX_QUERIES + 1, hd), DType::F32, &d).unwrap();
        assert!(few_queries(
            &many,
            &k_t.narrow(0, 0, 1).unwrap().narrow(1, 0, 1).unwrap(),
            &v
        )
        .unwrap()
        .is_none());
    }
}
