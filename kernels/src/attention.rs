//! Softmax attention on raw buffers: the ViT's self-attention over all its tokens, and
//! the decoder's cross-attention of a few queries (one per beam) over an image.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::linear::{assume_init, matmul, uninit};
use crate::math::{softmax_in_place, softmax_row};

#[cfg(target_arch = "x86_64")]
mod tiles;

/// Most queries per task of [`packed_self_attention`]. Each task's products repack the
/// head's keys and values, so fewer, larger blocks pack them less often; up to about 320
/// queries the block's scores (`QUERY_BLOCK × T` floats, 740 KB for ViT-B at 384 px)
/// still stay in the core's L2 cache between the two products. (One layer over 8 images
/// took 52 ms in 96-query blocks, 47 ms in 144, 41 ms in 289 and 43 ms in one block of
/// 577, on a 2-core Xeon.)
const QUERY_BLOCK: usize = 320;

/// A pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub(crate) *mut f32);
// SAFETY: every task writes a region no other task touches.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// # Safety
    /// `offset` must lie within the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// Multi-head self-attention (no mask) from a fused projection `qkv` `[B*T, 3D]`, each
/// row holding all heads' queries, then keys, then values (BLIP's ViT `qkv` layout).
/// `(B, T)` gives the batch and tokens. Returns the context `[B*T, D]`, heads side by side, as `softmax(scale·QKᵀ)·V`.
pub fn packed_self_attention(
    qkv: &[f32],
    (batch, t): (usize, usize),
    heads: usize,
    scale: f32,
) -> Vec<f32> {
    let (d, hd) = qkv_dims(qkv, (batch, t), heads);
    let blocks = t.div_ceil(QUERY_BLOCK);
    let task = |b: usize, h: usize, blk: usize, out: Shared| {
        let q0 = blk * t / blocks;
        let m = (blk + 1) * t / blocks - q0;
        let base = b * t * 3 * d + h * hd;
        // SAFETY: q, k, v are read within qkv with row stride 3D; the context block
        // (rows q0..q1 of image b, columns of head h) belongs to this task.
        unsafe {
            attend(
                (m, t, hd),
                (qkv[base + q0 * 3 * d..].as_ptr(), 3 * d),
                (qkv[base + d..].as_ptr(), 3 * d),
                (qkv[base + 2 * d..].as_ptr(), 3 * d),
                scale,
                None,
                &mut uninit(m * t),
                Cow::Borrowed,
                (out.at((b * t + q0) * d + h * hd), d),
            );
        }
    };
    // SAFETY: the blocks cover every query of every (image, head).
    unsafe { by_blocks((batch, t, d), heads, blocks, task) }
}

/// `D` and the head width of `qkv` `[B*T, 3D]`.
fn qkv_dims(qkv: &[f32], (batch, t): (usize, usize), heads: usize) -> (usize, usize) {
    let d = qkv.len() / (3 * batch * t).max(1);
    let hd = d / heads;
    assert_eq!(qkv.len(), batch * t * 3 * d, "qkv is not [B*T, 3D]");
    assert_eq!(hd * heads, d, "{heads} heads do not divide {d}");
    (d, hd)
}

/// The context `[B*T, D]`, written by one parallel `task(b, h, block, out)` per image,
/// head and block of queries through `out`.
///
/// # Safety
/// The tasks must write every element of the context, each one its own.
unsafe fn by_blocks(
    (batch, t, d): (usize, usize, usize),
    heads: usize,
    blocks: usize,
    task: impl Fn(usize, usize, usize, Shared) + Sync,
) -> Vec<f32> {
    let mut ctx = uninit(batch * t * d);
    let out = Shared(ctx.as_mut_ptr().cast());
    (0..batch * heads * blocks).into_par_iter().for_each(|i| {
        let (bh, blk) = (i / blocks, i % blocks);
        task(bh / heads, bh % heads, blk, out)
    });
    // SAFETY: the caller's contract.
    unsafe { assume_init(ctx) }
}

/// Whether [`packed_self_attention_bf16`] runs on this CPU for heads of `head_dim`:
/// where it has AMX-BF16, for heads of 32 or 64.
pub fn bf16_tiles_serve(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return tiles::serve(head_dim);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// [`packed_self_attention`] with its products in bf16 on AMX tiles (queries, keys,
/// values and probabilities rounded to bf16, sums, softmax and context in f32), for the
/// reduced precisions.
///
/// # Panics
/// Where [`bf16_tiles_serve`] is false for the heads' size.
pub fn packed_self_attention_bf16(
    qkv: &[f32],
    (batch, t): (usize, usize),
    heads: usize,
    scale: f32,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    return tiles::packed_self_attention_bf16(qkv, (batch, t), heads, scale);
    #[cfg(not(target_arch = "x86_64"))]
    panic!(
        "no bf16 tiles here for {} values in {batch}x{t} by {heads} heads at {scale}",
        qkv.len()
    );
}

/// The attention of `m` queries of one head over `n` keys: scores `scale · Q Kᵀ` (plus
/// an additive `mask`, `m × n`) into `probs` (every element written, so it need not be
/// initialised), softmax row by row, then the context
/// `P V` written at `ctx`, with `P` as `dropped` makes it (dropout) first. Each matrix is
/// a pointer and a row stride, its `hd` columns contiguous, so a head's columns of a
/// wider buffer are read and written in place.
///
/// # Safety
/// Every pointer must be valid for the rows and columns its stride reaches (`m` rows of
/// `q` and `ctx`, `n` of `k` and `v`), and `ctx` must not overlap the others.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend<'p>(
    (m, n, hd): (usize, usize, usize),
    (q, q_stride): (*const f32, usize),
    (k, k_stride): (*const f32, usize),
    (v, v_stride): (*const f32, usize),
    scale: f32,
    mask: Option<&[f32]>,
    probs: &'p mut [MaybeUninit<f32>],
    dropped: impl FnOnce(&'p [f32]) -> Cow<'p, [f32]>,
    (ctx, ctx_stride): (*mut f32, usize),
) {
    assert_eq!(probs.len(), m * n);
    let probs = unsafe {
        matmul(
            (m, n, hd),
            (probs.as_mut_ptr().cast(), n, 1),
            (q, q_stride, 1),
            (k, 1, k_stride),
            false,
            scale,
            gemm::Parallelism::None,
        );
        // SAFETY: the product wrote every element.
        &mut *(probs as *mut [MaybeUninit<f32>] as *mut [f32])
    };
    if let Some(mask) = mask {
        probs.iter_mut().zip(mask).for_each(|(s, m)| *s += m);
    }
    probs.chunks_exact_mut(n).for_each(softmax_row);
    let p = dropped(probs);
    unsafe {
        matmul(
            (m, hd, n),
            (ctx, ctx_stride, 1),
            (p.as_ptr(), n, 1),
            (v, v_stride, 1),
            false,
            1.0,
            gemm::Parallelism::None,
        );
    }
}

/// Most queries per (image, head) that [`few_queries`] takes.
pub const MAX_QUERIES: usize = 16;

/// Softmax attention of `m` queries per (image, head) `q` `[BH, m, hd]` (already
/// scaled) over keys stored transposed `k_t` `[BH, hd, n]` and values `v` `[BH, n, hd]`.
/// Returns the probabilities `[BH, m, n]` and the context `[BH, m, hd]`.
///
/// As batched matmuls these are hundreds of tiny products whose set-up costs more than
/// their arithmetic; here each (image, head) is one task that streams its keys and
/// values once.
pub fn few_queries(
    q: &[f32],
    k_t: &[f32],
    v: &[f32],
    (bh, m, hd): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    if bh == 0 || m == 0 || hd == 0 {
        return (Vec::new(), vec![0.0; bh * m * hd]);
    }
    let n = v.len() / (bh * hd);
    assert_eq!(q.len(), bh * m * hd, "q is not [BH, m, hd]");
    assert_eq!(k_t.len(), bh * hd * n, "k_t is not [BH, hd, n]");
    let one = |i: usize, q: &[f32], p: &mut [f32], c: &mut [f32]| {
        let k = &k_t[i * hd * n..(i + 1) * hd * n];
        attend_f32(q, k, &v[i * n * hd..(i + 1) * n * hd], p, c, hd)
    };
    few_queries_with(q, (bh, m, hd), n, one)
}

/// The parallel walk of [`few_queries`] over (image, head) tasks, `one(i, q, probs,
/// ctx)` attending task `i`'s queries over its keys and values.
pub(crate) fn few_queries_with(
    q: &[f32],
    (bh, m, hd): (usize, usize, usize),
    n: usize,
    one: impl Fn(usize, &[f32], &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let mut probs = vec![0f32; bh * m * n];
    let mut ctx = vec![0f32; bh * m * hd];
    probs
        .par_chunks_mut(m * n)
        .zip(ctx.par_chunks_mut(m * hd))
        .enumerate()
        .for_each(|(i, (p, c))| one(i, &q[i * m * hd..(i + 1) * m * hd], p, c));
    (probs, ctx)
}

/// A key or value as a cache stores it, read as f32.
pub(crate) trait Elem: Copy {
    fn f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

/// bf16 bits.
impl Elem for u16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// int8, scaled by the caller.
impl Elem for i8 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self as f32
    }
}

multiversion! {
    fn attend_f32(q: &[f32], k_t: &[f32], v: &[f32], probs: &mut [f32], ctx: &mut [f32], hd: usize) {
        attend_one(q, k_t, &[], v, &[], probs, ctx, hd)
    }
}

multiversion! {
    pub(crate) fn attend_bf16(q: &[f32], k_t: &[u16], v: &[u16], probs: &mut [f32], ctx: &mut [f32], hd: usize) {
        attend_one(q, k_t, &[], v, &[], probs, ctx, hd)
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_int8(
        q: &[f32],
        k_t: &[i8],
        k_scales: &[f32],
        v: &[i8],
        v_scales: &[f32],
        probs: &mut [f32],
        ctx: &mut [f32],
        hd: usize,
    ) {
        attend_one(q, k_t, k_scales, v, v_scales, probs, ctx, hd)
    }
}

/// One (image, head): queries `[m, hd]`, keys transposed `[hd, n]`, values `[n, hd]`
/// into zeroed probabilities `[m, n]` and context `[m, hd]`. Each key's scores are
/// multiplied by its `k_scales` entry and each value by its `v_scales` entry, where
/// those are not empty (int8 caches).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_one<E: Elem>(
    q: &[f32],
    k_t: &[E],
    k_scales: &[f32],
    v: &[E],
    v_scales: &[f32],
    probs: &mut [f32],
    ctx: &mut [f32],
    hd: usize,
) {
    let n = v.len() / hd;
    for ((qi, p), c) in q
        .chunks_exact(hd)
        .zip(probs.chunks_exact_mut(n))
        .zip(ctx.chunks_exact_mut(hd))
    {
        // Scores one key dimension (a row of Kᵀ) at a time: a multiply-add over all n keys.
        for (&qd, krow) in qi.iter().zip(k_t.chunks_exact(n)) {
            p.iter_mut()
                .zip(krow)
                .for_each(|(s, &k)| *s += qd * k.f32());
        }
        if !k_scales.is_empty() {
            p.iter_mut().zip(k_scales).for_each(|(s, &f)| *s *= f);
        }
        softmax_in_place(p);
        if hd.is_multiple_of(64) {
            for (c0, out) in c.chunks_exact_mut(64).enumerate() {
                weighted_sum::<64, E>(p, v_scales, &v[c0 * 64..], hd, out.try_into().unwrap());
            }
        } else {
            for (j, (&pj, vrow)) in p.iter().zip(v.chunks_exact(hd)).enumerate() {
                let pj = if v_scales.is_empty() {
                    pj
                } else {
                    pj * v_scales[j]
                };
                c.iter_mut()
                    .zip(vrow)
                    .for_each(|(o, &x)| *o += pj * x.f32());
            }
        }
    }
}

/// `out = Σ_j p[j] · scale[j] · v[j*stride .. j*stride + W]` (no scale when `scales` is
/// empty), the W sums kept in registers.
#[inline(always)]
fn weighted_sum<const W: usize, E: Elem>(
    p: &[f32],
    scales: &[f32],
    v: &[E],
    stride: usize,
    out: &mut [f32; W],
) {
    let mut acc = [0f32; W];
    for (j, &pj) in p.iter().enumerate() {
        let pj = if scales.is_empty() {
            pj
        } else {
            pj * scales[j]
        };
        let row: &[E; W] = v[j * stride..j * stride + W].try_into().unwrap();
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += pj * x.f32();
        }
    }
    *out = acc;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 211) as f32 / 60.0 - 1.7)
            .collect()
    }

    /// softmax(scale · q Kᵀ) V for one query, in f64.
    fn attend(q: &[f32], keys: &[&[f32]], vals: &[&[f32]], scale: f64) -> (Vec<f64>, Vec<f64>) {
        let s: Vec<f64> = keys
            .iter()
            .map(|k| {
                scale
                    * q.iter()
                        .zip(*k)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
            })
            .collect();
        let m = s.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|x| x / z).collect();
        let hd = vals[0].len();
        let c = (0..hd)
            .map(|d| p.iter().zip(vals).map(|(p, v)| p * v[d] as f64).sum())
            .collect();
        (p, c)
    }

    /// Checks `ctx` against the definition over `qkv` for every image, head, query and
    /// column, asserting `ok(error, mass)` with `mass` = Σ p·|v| of that column; returns
    /// the worst error over its mass.
    fn check_self_attention(
        qkv: &[f32],
        ctx: &[f32],
        (b, t, heads, hd): (usize, usize, usize, usize),
        scale: f32,
        ok: impl Fn(f64, f64) -> bool,
    ) -> f64 {
        let d = heads * hd;
        let at = |bi: usize, ti: usize, part: usize, h: usize| {
            let start = (bi * t + ti) * 3 * d + part * d + h * hd;
            &qkv[start..start + hd]
        };
        let mut worst = 0f64;
        for bi in 0..b {
            for h in 0..heads {
                let keys: Vec<&[f32]> = (0..t).map(|j| at(bi, j, 1, h)).collect();
                let vals: Vec<&[f32]> = (0..t).map(|j| at(bi, j, 2, h)).collect();
                for i in 0..t {
                    let (p, want) = attend(at(bi, i, 0, h), &keys, &vals, scale as f64);
                    let got = &ctx[(bi * t + i) * d + h * hd..][..hd];
                    for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                        let mass: f64 = p
                            .iter()
                            .zip(&vals)
                            .map(|(p, v)| p * v[e].abs() as f64)
                            .sum();
                        let err = (*g as f64 - w).abs();
                        worst = worst.max(err / (mass + 1e-6));
                        assert!(ok(err, mass), "hd {hd} b{bi} h{h} q{i}: {g} vs {w}");
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn packed_self_attention_matches_the_definition() {
        // Two query blocks, so the block boundary is exercised.
        let (b, t, heads, hd) = (2, QUERY_BLOCK + 7, 3, 8);
        let qkv = values(b * t * 3 * heads * hd, 1);
        let ctx = packed_self_attention(&qkv, (b, t), heads, 0.35);
        check_self_attention(&qkv, &ctx, (b, t, heads, hd), 0.35, |err, _| err < 1e-5);
    }

    #[test]
    fn bf16_self_attention_is_within_bf16_rounding_of_the_definition() {
        // 100 tokens: two query blocks, a last tile of 4 queries, padded key tiles and
        // value steps; heads of 64 and of 32.
        for (heads, hd) in [(2, 64), (3, 32)] {
            if !bf16_tiles_serve(hd) {
                eprintln!("skipped: this CPU has no AMX-BF16 tiles");
                return;
            }
            let (b, t) = (2, 100);
            let qkv = values(b * t * 3 * heads * hd, 5);
            let scale = (hd as f32).powf(-0.5);
            let ctx = packed_self_attention_bf16(&qkv, (b, t), heads, scale);
            // The definition over the inputs as rounded to bf16; then each probability is
            // rounded to bf16 (8 significant bits, so within 2⁻⁸ of itself) before the
            // context's sum, and the rest is f32 summation.
            let rounded: Vec<f32> = qkv
                .iter()
                .map(|&x| f32::from_bits((crate::packed::bf16(x) as u32) << 16))
                .collect();
            let worst =
                check_self_attention(&rounded, &ctx, (b, t, heads, hd), scale, |err, mass| {
                    err <= mass / 256.0 + 1e-5
                });
            eprintln!("heads of {hd}: worst error {worst:.2e} of the context's mass");
        }
    }

    #[test]
    fn few_queries_match_the_definition() {
        // hd 64 takes the register-blocked context sum, hd 12 the plain one.
        for (bh, m, hd, n) in [(3, 4, 64, 37), (2, 3, 12, 50), (1, MAX_QUERIES, 64, 5)] {
            let q = values(bh * m * hd, 2);
            let k = values(bh * n * hd, 3); // [BH, n, hd]
            let v = values(bh * n * hd, 4);
            let mut k_t = vec![0f32; k.len()];
            for i in 0..bh {
                for j in 0..n {
                    for e in 0..hd {
                        k_t[(i * hd + e) * n + j] = k[(i * n + j) * hd + e];
                    }
                }
            }
            let (probs, ctx) = few_queries(&q, &k_t, &v, (bh, m, hd));
            for i in 0..bh {
                let keys: Vec<&[f32]> = (0..n).map(|j| &k[(i * n + j) * hd..][..hd]).collect();
                let vals: Vec<&[f32]> = (0..n).map(|j| &v[(i * n + j) * hd..][..hd]).collect();
                for r in 0..m {
                    let (p, c) = attend(&q[(i * m + r) * hd..][..hd], &keys, &vals, 1.0);
                    let got_p = &probs[(i * m + r) * n..][..n];
                    let got_c = &ctx[(i * m + r) * hd..][..hd];
                    for (g, w) in got_p.iter().zip(&p).chain(got_c.iter().zip(&c)) {
                        assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
                    }
                }
            }
        }
    }
}
