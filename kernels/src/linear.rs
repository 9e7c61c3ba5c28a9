//! Linear layers `y = x Wᵀ + b (+ residual)` with gemm accumulating onto the bias.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

/// A buffer of `n` floats that the caller fills completely before reading.
pub(crate) fn uninit(n: usize) -> Box<[MaybeUninit<f32>]> {
    Box::new_uninit_slice(n)
}

/// # Safety
/// Every element of `buf` must have been written.
pub(crate) unsafe fn assume_init(buf: Box<[MaybeUninit<f32>]>) -> Vec<f32> {
    unsafe { buf.assume_init() }.into_vec()
}

pub(crate) fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, each matrix given by its pointer, row stride and
/// column stride (in elements).
///
/// # Safety
/// The pointers must be valid for every element their strides reach; `dst` must not
/// overlap the others, and must be initialised when `accumulate` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, dst_cs): (*mut f32, usize, usize),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    accumulate: bool,
    scale: f32,
    parallelism: Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Up to this many rows, a product is a stream over the weight (each weight row read
/// once from memory, dotted with every input row while in cache) rather than a gemm:
/// gemm packs and tiles for reuse that a few rows cannot give, and reaches a third of
/// the memory bandwidth on decoding steps.
pub const FEW_ROWS: usize = 32;

/// The few-rows product's register tile: 8 weight rows by 3 input rows, 24 of the 32
/// vector registers as accumulators.
const TILE_OUT: usize = 8;
const TILE_ROWS: usize = 3;

/// Weight rows per parallel task of the few-rows product.
const OUT_BLOCK: usize = 64;

/// A linear layer's weight `[out, in]` (row-major, as checkpoints store it) and bias.
#[derive(Clone, Copy)]
pub struct Linear<'a> {
    pub weight: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub out_features: usize,
}

impl Linear<'_> {
    pub fn in_features(&self) -> usize {
        self.weight.len() / self.out_features
    }

    /// `x [rows, in]` to `x Wᵀ + b + residual` `[rows, out]`; `residual` is `[rows, out]`.
    pub fn forward(&self, x: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.in_features(), self.out_features);
        let rows = x.len() / k;
        assert_eq!(rows * k, x.len(), "input is not [rows, {k}]");
        assert_eq!(self.weight.len(), n * k);
        // The streaming product's tile is written for AVX-512; elsewhere gemm does better.
        if rows <= FEW_ROWS && crate::simd::level() == crate::simd::Level::V4 {
            return self.few_rows(x, residual);
        }
        let mut dst = uninit(rows * n);
        // Start from bias + residual so that gemm's accumulation is the only other pass.
        dst.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            let res = residual.map(|res| &res[r * n..(r + 1) * n]);
            match (self.bias, res) {
                (Some(b), Some(res)) => row
                    .iter_mut()
                    .zip(b.iter().zip(res))
                    .for_each(|(y, (b, x))| _ = y.write(b + x)),
                (Some(b), None) => row.iter_mut().zip(b).for_each(|(y, b)| _ = y.write(*b)),
                (None, Some(res)) => row.iter_mut().zip(res).for_each(|(y, x)| _ = y.write(*x)),
                (None, None) => row.iter_mut().for_each(|y| _ = y.write(0.0)),
            }
        });
        // SAFETY: dst is now initialised; the strides describe x [rows, k], Wᵀ [k, n]
        // (W read in place) and dst [rows, n].
        unsafe {
            matmul(
                (rows, n, k),
                (dst.as_mut_ptr().cast(), n, 1),
                (x.as_ptr(), k, 1),
                (self.weight.as_ptr(), 1, k),
                true,
                1.0,
                parallelism(),
            );
            assume_init(dst)
        }
    }
}

impl Linear<'_> {
    fn few_rows(&self, x: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.in_features(), self.out_features);
        let rows = x.len() / k;
        let mut y = uninit(rows * n);
        let out = crate::attention::Shared(y.as_mut_ptr().cast());
        (0..n.div_ceil(OUT_BLOCK)).into_par_iter().for_each(|blk| {
            let (o0, o1) = (blk * OUT_BLOCK, ((blk + 1) * OUT_BLOCK).min(n));
            // SAFETY: this task alone writes columns o0..o1 of every row of y.
            unsafe { few_rows_block(self.weight, self.bias, x, residual, k, n, o0, o1, out) };
        });
        // SAFETY: the blocks covered every column of every row.
        unsafe { assume_init(y) }
    }
}

/// Columns `o0..o1` of `y [rows, n] = x Wᵀ + b + residual`.
///
/// # Safety
/// `y` must be valid for `rows × n` floats and no other thread may write these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn few_rows_block(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    residual: Option<&[f32]>,
    k: usize,
    n: usize,
    o0: usize,
    o1: usize,
    y: crate::attention::Shared,
) {
    let rows = x.len() / k;
    let mut o = o0;
    while o < o1 {
        let wo = TILE_OUT.min(o1 - o);
        let mut r = 0;
        while r < rows {
            let tr = TILE_ROWS.min(rows - r);
            let mut sums = [[0f32; TILE_OUT]; TILE_ROWS];
            dot_tile(
                &w[o * k..(o + wo) * k],
                &x[r * k..(r + tr) * k],
                k,
                &mut sums,
            );
            for (i, row) in sums.iter().enumerate().take(tr) {
                for (j, &s) in row.iter().enumerate().take(wo) {
                    let (rr, oo) = (r + i, o + j);
                    let v = s
                        + bias.map_or(0.0, |b| b[oo])
                        + residual.map_or(0.0, |res| res[rr * n + oo]);
                    unsafe { *y.at(rr * n + oo) = v };
                }
            }
            r += tr;
        }
        o += wo;
    }
}

/// Dot products of up to `TILE_OUT` weight rows `w` with up to `TILE_ROWS` input rows
/// `x` (each `k` long).
fn dot_tile(w: &[f32], x: &[f32], k: usize, sums: &mut [[f32; TILE_OUT]; TILE_ROWS]) {
    let (nw, nx) = (w.len() / k, x.len() / k);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::Level::V4 {
        // SAFETY: AVX-512F is present; w holds nw rows and x nx rows of k floats.
        unsafe {
            match (nw, nx) {
                (TILE_OUT, 3) => return avx512::tile::<TILE_OUT, 3>(w, x, k, sums),
                (TILE_OUT, 2) => return avx512::tile::<TILE_OUT, 2>(w, x, k, sums),
                (TILE_OUT, 1) => return avx512::tile::<TILE_OUT, 1>(w, x, k, sums),
                _ => {}
            }
        }
    }
    for (i, xr) in x.chunks_exact(k).enumerate() {
        for (j, wr) in w.chunks_exact(k).enumerate() {
            sums[i][j] = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{TILE_OUT, TILE_ROWS};

    /// `O × R` dot products with one 16-lane accumulator each, reduced at the end: each
    /// weight vector loaded is used R times, each input vector O times.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` holds `O` rows and `x` `R` rows of `k` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const O: usize, const R: usize>(
        w: &[f32],
        x: &[f32],
        k: usize,
        sums: &mut [[f32; TILE_OUT]; TILE_ROWS],
    ) {
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); O]; R];
        let full = k / 16 * 16;
        let mut c = 0;
        while c < full {
            let mut wv = [_mm512_setzero_ps(); O];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = unsafe { _mm512_loadu_ps(wp.add(j * k + c)) };
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let xv = unsafe { _mm512_loadu_ps(xp.add(i * k + c)) };
                for (a, wj) in acc_i.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(*wj, xv, *a);
                }
            }
            c += 16;
        }
        for i in 0..R {
            for j in 0..O {
                let tail: f32 = (full..k).map(|c| w[j * k + c] * x[i * k + c]).sum();
                sums[i][j] = _mm512_reduce_add_ps(acc[i][j]) + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], b: &[f32], res: &[f32], n: usize) -> Vec<f64> {
        let k = w.len() / n;
        let rows = x.len() / k;
        (0..rows)
            .flat_map(|r| {
                (0..n).map(move |o| {
                    (0..k)
                        .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                        .sum::<f64>()
                        + b[o] as f64
                        + res[r * n + o] as f64
                })
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_for_few_and_many_rows() {
        for (rows, k, n) in [(1, 48, 80), (5, 33, 17), (130, 64, 96)] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 37) % 19) as f32 / 7.0 - 1.2)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
            let res: Vec<f32> = (0..rows * n).map(|i| ((i * 7) % 5) as f32).collect();
            let layer = Linear {
                weight: &w,
                bias: Some(&b),
                out_features: n,
            };
            let got = layer.forward(&x, Some(&res));
            for (g, e) in got.iter().zip(naive(&x, &w, &b, &res, n)) {
                assert!((*g as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
            }
        }
    }
}
