//! Weight-only int8 linear layers: each output channel's weights stored as `i8` with one
//! f32 scale (symmetric, `scale = max |w| / 127`), activations and sums kept in f32.
//!
//! Decoding a caption is bound by streaming the decoder's weights from memory once per
//! token; int8 weights are a quarter of the bytes. A few input rows (decoding steps)
//! take a streaming product. With AVX-512 VNNI each input row is quantized too (per
//! row, symmetric, offset by 128 to the unsigned bytes `vpdpbusd` takes) and 64
//! products are one instruction; without VNNI, 16 weights at a time are widened to f32
//! and the input stays f32. More rows (the image's cross-attention keys and values)
//! dequantize the weight once and take the f32 gemm, where the arithmetic, not the
//! bytes, is the cost.

use rayon::prelude::*;

use crate::linear::{uninit, Linear, FEW_ROWS};

/// A linear layer `y = x Wᵀ + b` with `W` `[out, in]` quantized per output channel.
#[derive(Debug, Clone)]
pub struct QuantLinear {
    weight: Vec<i8>,
    scales: Vec<f32>,
    /// Each row's sum of weights: the correction for the inputs' +128 offset.
    row_sums: Vec<i32>,
    bias: Option<Vec<f32>>,
    out_features: usize,
}

/// Output channels per parallel task of the streaming product.
const OUT_BLOCK: usize = 64;
/// The streaming product's register tile: weight rows by input rows.
const TILE_OUT: usize = 8;
const TILE_ROWS: usize = 3;

impl QuantLinear {
    /// Quantizes `weight` `[out_features, in]` row by row (round to nearest).
    pub fn quantize(weight: &[f32], bias: Option<&[f32]>, out_features: usize) -> Self {
        let k = weight.len() / out_features;
        assert_eq!(k * out_features, weight.len(), "weight is not [out, in]");
        let mut q = vec![0i8; weight.len()];
        let scales: Vec<f32> = q
            .par_chunks_mut(k.max(1))
            .zip(weight.par_chunks(k.max(1)))
            .map(|(q, w)| {
                let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                for (q, &v) in q.iter_mut().zip(w) {
                    *q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                }
                scale
            })
            .collect();
        let row_sums = q
            .chunks(k.max(1))
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        Self {
            weight: q,
            scales,
            row_sums,
            bias: bias.map(<[f32]>::to_vec),
            out_features,
        }
    }

    pub fn in_features(&self) -> usize {
        self.weight.len() / self.out_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Bytes the layer holds (weights, scales and bias).
    pub fn size_in_bytes(&self) -> usize {
        self.weight.len() + 4 * (self.scales.len() + self.bias.as_ref().map_or(0, Vec::len))
    }

    /// The f32 weight `[out, in]` this layer computes with.
    pub fn dequantize(&self) -> Vec<f32> {
        let k = self.in_features();
        let mut w = vec![0f32; self.weight.len()];
        w.par_chunks_mut(k.max(1))
            .zip(self.weight.par_chunks(k.max(1)))
            .zip(&self.scales)
            .for_each(|((w, q), &s)| w.iter_mut().zip(q).for_each(|(w, &q)| *w = q as f32 * s));
        w
    }

    /// `x [rows, in]` to `x Wᵀ + b + residual` `[rows, out]`.
    pub fn forward(&self, x: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.in_features(), self.out_features);
        let rows = x.len() / k;
        assert_eq!(rows * k, x.len(), "input is not [rows, {k}]");
        if rows > FEW_ROWS || crate::simd::level() != crate::simd::Level::V4 {
            let w = self.dequantize();
            let layer = Linear {
                weight: &w,
                bias: self.bias.as_deref(),
                out_features: n,
            };
            return layer.forward(x, residual);
        }
        let mut y = uninit(rows * n);
        let out = crate::attention::Shared(y.as_mut_ptr().cast());
        let quantized = vnni().then(|| quantize_rows(x, k));
        (0..n.div_ceil(OUT_BLOCK)).into_par_iter().for_each(|blk| {
            let (o0, o1) = (blk * OUT_BLOCK, ((blk + 1) * OUT_BLOCK).min(n));
            // SAFETY: this task alone writes columns o0..o1 of every row of y; VNNI
            // was found on this CPU when `quantized` is set.
            unsafe {
                match &quantized {
                    Some((xq, xs)) => self.block_vnni(xq, xs, residual, (o0, o1), out),
                    None => self.block(x, residual, (o0, o1), out),
                }
            };
        });
        // SAFETY: the blocks covered every column of every row.
        unsafe { crate::linear::assume_init(y) }
    }

    /// Columns `o0..o1` of `y [rows, n]` from inputs quantized by [`quantize_rows`]
    /// (`xq` offset by 128, one scale per row in `xs`), with integer dot products.
    ///
    /// # Safety
    /// As [`Self::write_tiles`], and the CPU must have AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    unsafe fn block_vnni(
        &self,
        xq: &[u8],
        xs: &[f32],
        residual: Option<&[f32]>,
        (o0, o1): (usize, usize),
        y: crate::attention::Shared,
    ) {
        let k = self.in_features();
        let tile = |o: usize, wo: usize, r: usize, tr: usize| {
            let mut dots = [[0i32; TILE_OUT]; TILE_ROWS];
            let w = &self.weight[o * k..(o + wo) * k];
            let xr = &xq[r * k..(r + tr) * k];
            // SAFETY: VNNI is present (the caller's contract); whole rows are given.
            unsafe {
                match (wo, tr) {
                    (TILE_OUT, 3) => avx512::tile_vnni::<TILE_OUT, 3>(w, xr, k, &mut dots),
                    (TILE_OUT, 2) => avx512::tile_vnni::<TILE_OUT, 2>(w, xr, k, &mut dots),
                    (TILE_OUT, 1) => avx512::tile_vnni::<TILE_OUT, 1>(w, xr, k, &mut dots),
                    _ => tile_int(w, xr, k, &mut dots),
                }
            }
            // The +128 offset of the inputs comes back out through the row sums.
            let mut out = [[0f32; TILE_OUT]; TILE_ROWS];
            for (i, row) in out.iter_mut().enumerate().take(tr) {
                for (j, v) in row.iter_mut().enumerate().take(wo) {
                    let dot = dots[i][j] - 128 * self.row_sums[o + j];
                    *v = dot as f32 * xs[r + i] * self.scales[o + j];
                }
            }
            out
        };
        // SAFETY: forwarded from the caller.
        unsafe { self.write_tiles(xs.len(), residual, (o0, o1), y, tile) }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn block_vnni(
        &self,
        _: &[u8],
        _: &[f32],
        _: Option<&[f32]>,
        _: (usize, usize),
        _: crate::attention::Shared,
    ) {
        unreachable!("VNNI is an x86-64 extension")
    }

    /// Columns `o0..o1` of `y [rows, n]` from f32 inputs, the weights widened to f32.
    ///
    /// # Safety
    /// As [`Self::write_tiles`].
    unsafe fn block(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        (o0, o1): (usize, usize),
        y: crate::attention::Shared,
    ) {
        let k = self.in_features();
        let tile = |o: usize, wo: usize, r: usize, tr: usize| {
            let mut sums = [[0f32; TILE_OUT]; TILE_ROWS];
            tile(
                &self.weight[o * k..(o + wo) * k],
                &x[r * k..(r + tr) * k],
                k,
                &mut sums,
            );
            for row in sums.iter_mut() {
                for (j, v) in row.iter_mut().enumerate().take(wo) {
                    *v *= self.scales[o + j];
                }
            }
            sums
        };
        // SAFETY: forwarded from the caller.
        unsafe { self.write_tiles(x.len() / k, residual, (o0, o1), y, tile) }
    }

    /// Columns `o0..o1` of `y [rows, n]`, tile by tile: `tile(o, wo, r, tr)` gives the
    /// scaled products of outputs `o..o + wo` with rows `r..r + tr`; bias and residual
    /// are added here.
    ///
    /// # Safety
    /// `y` must be valid for `rows × n` floats and no other thread may write these
    /// columns.
    unsafe fn write_tiles(
        &self,
        rows: usize,
        residual: Option<&[f32]>,
        (o0, o1): (usize, usize),
        y: crate::attention::Shared,
        tile: impl Fn(usize, usize, usize, usize) -> [[f32; TILE_OUT]; TILE_ROWS],
    ) {
        let n = self.out_features;
        let mut o = o0;
        while o < o1 {
            let wo = TILE_OUT.min(o1 - o);
            let mut r = 0;
            while r < rows {
                let tr = TILE_ROWS.min(rows - r);
                let values = tile(o, wo, r, tr);
                for (i, row) in values.iter().enumerate().take(tr) {
                    for (j, &v) in row.iter().enumerate().take(wo) {
                        let (rr, oo) = (r + i, o + j);
                        let v = v
                            + self.bias.as_ref().map_or(0.0, |b| b[oo])
                            + residual.map_or(0.0, |res| res[rr * n + oo]);
                        // SAFETY: (rr, oo) lies in this task's columns of y.
                        unsafe { *y.at(rr * n + oo) = v };
                    }
                }
                r += tr;
            }
            o += wo;
        }
    }
}

/// Replaces, in each row of `logits` `[rows, vocab]`, the `top` largest int8 logits by
/// their exact f32 values `h · weight[v] + bias[v]` (`h` `[rows, d]`, `weight`
/// `[vocab, d]`). Which token wins, and the scores of the likely ones, are then f32's
/// whenever f32's best tokens are among int8's `top`, at the cost of `top` dot products
/// a row: an LM head's int8 error otherwise flips near-ties between tokens.
pub fn rescore_top(h: &[f32], logits: &mut [f32], weight: &[f32], bias: &[f32], top: usize) {
    let d = weight.len() / bias.len();
    logits
        .par_chunks_mut(bias.len())
        .zip(h.par_chunks(d))
        .for_each(|(row, hr)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            let top = top.min(row.len());
            if top < row.len() {
                order.select_nth_unstable_by(top, |&a, &b| row[b].total_cmp(&row[a]));
            }
            for &v in &order[..top] {
                let w = &weight[v * d..(v + 1) * d];
                row[v] = hr.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + bias[v];
            }
        });
}

/// Whether this CPU has AVX-512 VNNI (and the AVX-512 the other kernels need).
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| {
            crate::simd::level() == crate::simd::Level::V4
                && std::arch::is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Each row of `x` `[rows, k]` quantized symmetrically to [-127, 127] and offset by
/// 128 into a byte; with each row's scale.
fn quantize_rows(x: &[f32], k: usize) -> (Vec<u8>, Vec<f32>) {
    let mut q = vec![0u8; x.len()];
    let scales = q
        .chunks_mut(k)
        .zip(x.chunks(k))
        .map(|(q, x)| {
            let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            for (q, &v) in q.iter_mut().zip(x) {
                *q = ((v / scale).round().clamp(-127.0, 127.0) as i32 + 128) as u8;
            }
            scale
        })
        .collect();
    (q, scales)
}

/// Integer dot products of weight rows with offset input rows, for partial tiles.
fn tile_int(w: &[i8], xq: &[u8], k: usize, dots: &mut [[i32; TILE_OUT]; TILE_ROWS]) {
    for (i, xr) in xq.chunks_exact(k).enumerate() {
        for (j, wr) in w.chunks_exact(k).enumerate() {
            dots[i][j] = xr.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }
}

/// Unscaled dot products of up to `TILE_OUT` int8 weight rows `w` with up to
/// `TILE_ROWS` input rows `x` (each `k` long).
fn tile(w: &[i8], x: &[f32], k: usize, sums: &mut [[f32; TILE_OUT]; TILE_ROWS]) {
    let (nw, nx) = (w.len() / k, x.len() / k);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::Level::V4 {
        // SAFETY: AVX-512F is present; w holds nw rows and x nx rows of k values.
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
            sums[i][j] = xr.iter().zip(wr).map(|(a, &b)| a * b as f32).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{TILE_OUT, TILE_ROWS};

    /// `O × R` unscaled dot products of int8 weight rows with f32 input rows, one
    /// 16-lane accumulator each: each weight vector is widened once and used R times.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` holds `O` rows of `k` weights and `x` `R` rows
    /// of `k` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const O: usize, const R: usize>(
        w: &[i8],
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
                // SAFETY: 16 weights of row j from column c lie inside w.
                let bytes = unsafe { _mm_loadu_si128(wp.add(j * k + c).cast()) };
                *v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                // SAFETY: 16 floats of row i from column c lie inside x.
                let xv = unsafe { _mm512_loadu_ps(xp.add(i * k + c)) };
                for (a, wj) in acc_i.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(*wj, xv, *a);
                }
            }
            c += 16;
        }
        for i in 0..R {
            for j in 0..O {
                let tail: f32 = (full..k).map(|c| w[j * k + c] as f32 * x[i * k + c]).sum();
                sums[i][j] = _mm512_reduce_add_ps(acc[i][j]) + tail;
            }
        }
    }

    /// `O × R` integer dot products of int8 weight rows with offset (unsigned) input
    /// rows, 64 products per `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and VNNI; `w` holds `O` rows of `k` weights and `xq`
    /// `R` rows of `k` bytes.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn tile_vnni<const O: usize, const R: usize>(
        w: &[i8],
        xq: &[u8],
        k: usize,
        dots: &mut [[i32; TILE_OUT]; TILE_ROWS],
    ) {
        let (wp, xp) = (w.as_ptr(), xq.as_ptr());
        let mut acc = [[_mm512_setzero_si512(); O]; R];
        let full = k / 64 * 64;
        let mut c = 0;
        while c < full {
            let mut wv = [_mm512_setzero_si512(); O];
            for (j, v) in wv.iter_mut().enumerate() {
                // SAFETY: 64 weights of row j from column c lie inside w.
                *v = unsafe { _mm512_loadu_si512(wp.add(j * k + c).cast()) };
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                // SAFETY: 64 bytes of row i from column c lie inside xq.
                let xv = unsafe { _mm512_loadu_si512(xp.add(i * k + c).cast()) };
                for (a, wj) in acc_i.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xv, *wj);
                }
            }
            c += 64;
        }
        for i in 0..R {
            for j in 0..O {
                let tail: i32 = (full..k)
                    .map(|c| w[j * k + c] as i32 * xq[i * k + c] as i32)
                    .sum();
                dots[i][j] = _mm512_reduce_add_epi32(acc[i][j]) + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        res: Vec<f32>,
        rows: usize,
        k: usize,
        n: usize,
    }

    fn cases() -> Vec<Case> {
        [
            (1, 768, 80),
            (3, 48, 17),
            (7, 33, 70),
            (5, 200, 24),
            (40, 64, 96),
        ]
        .into_iter()
        .map(|(rows, k, n)| Case {
            x: (0..rows * k)
                .map(|i| ((i * 37) % 19) as f32 / 7.0 - 1.2)
                .collect(),
            w: (0..n * k)
                .map(|i| (((i * 53) % 23) as f32 / 11.0 - 1.0) * (1.0 + (i / k) as f32 / 10.0))
                .collect(),
            b: (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
            res: (0..rows * n).map(|i| ((i * 7) % 5) as f32).collect(),
            rows,
            k,
            n,
        })
        .collect()
    }

    fn exact(c: &Case, w: &[f32], r: usize, o: usize) -> f64 {
        (0..c.k)
            .map(|i| c.x[r * c.k + i] as f64 * w[o * c.k + i] as f64)
            .sum::<f64>()
            + c.b[o] as f64
            + c.res[r * c.n + o] as f64
    }

    /// Whatever the CPU, the product is within the quantization error of the f32 one:
    /// half a weight step per weight, and (on the VNNI path) half an input step per
    /// input, summed over the row.
    #[test]
    fn stays_within_the_quantization_error_of_f32() {
        for c in cases() {
            let q = QuantLinear::quantize(&c.w, Some(&c.b), c.n);
            let got = q.forward(&c.x, Some(&c.res));
            for r in 0..c.rows {
                let xr = &c.x[r * c.k..(r + 1) * c.k];
                let xmax = xr.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                for o in 0..c.n {
                    let sw = q.scales[o] as f64;
                    let bound = c.k as f64 * (xmax * sw / 2.0 + xmax / 127.0 / 2.0 * 127.0 * sw);
                    let (g, e) = (got[r * c.n + o] as f64, exact(&c, &c.w, r, o));
                    assert!((g - e).abs() <= bound + 1e-3, "{g} vs {e} (bound {bound})");
                }
            }
        }
    }

    /// The path this CPU takes computes exactly what it claims: integer dot products of
    /// the quantized inputs and weights with VNNI, else f32 products of the f32 inputs
    /// with the dequantized weights.
    #[test]
    fn this_cpus_path_computes_its_definition() {
        let path = if vnni() {
            "AVX-512 VNNI"
        } else if crate::simd::level() == crate::simd::Level::V4 {
            "AVX-512 widening"
        } else {
            "dequantized gemm"
        };
        println!("int8 path on this CPU: {path}");
        for c in cases() {
            let q = QuantLinear::quantize(&c.w, Some(&c.b), c.n);
            let got = q.forward(&c.x, Some(&c.res));
            let few = c.rows <= FEW_ROWS;
            let (xq, xs) = quantize_rows(&c.x, c.k);
            let deq = q.dequantize();
            for r in 0..c.rows {
                for o in 0..c.n {
                    let want = if vnni() && few {
                        let dot: i64 = (0..c.k)
                            .map(|i| xq[r * c.k + i] as i64 * q.weight[o * c.k + i] as i64)
                            .sum::<i64>()
                            - 128 * q.row_sums[o] as i64;
                        dot as f64 * xs[r] as f64 * q.scales[o] as f64
                            + c.b[o] as f64
                            + c.res[r * c.n + o] as f64
                    } else {
                        exact(&c, &deq, r, o)
                    };
                    let g = got[r * c.n + o] as f64;
                    assert!(
                        (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{path}: {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_row_uses_its_full_range() {
        let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0];
        let q = QuantLinear::quantize(&w, None, 2);
        assert_eq!(q.weight[..4], [64, -127, 32, 0]);
        assert_eq!(q.weight[4..], [0, 0, 127, 64]);
        assert_eq!(q.scales, [1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q.row_sums, [-31, 191]);
    }
}
