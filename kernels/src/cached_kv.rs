//! An image's cross-attention keys and values held in bf16 or int8 for decoding.
//!
//! Every generated token reads every layer's keys and values of its image once: for
//! BLIP-base, 577 keys × 768 × 2 × 12 layers, 42 MB a token per image in f32, more than
//! the int8 decoder's weights by the second image of a batch. bf16 halves that and int8
//! quarters it. int8 keys and values take one scale per key (per image and head), which
//! the attention applies to that key's score and to its weight in the sum.

use rayon::prelude::*;

use crate::attention::{attend_bf16, attend_int8, few_queries_with};
use crate::packed::{bf16, round_row_bf16};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    Bf16,
    Int8,
}

#[derive(Debug, Clone)]
enum Data {
    Bf16 {
        k_t: Vec<u16>,
        v: Vec<u16>,
    },
    Int8 {
        k_t: Vec<i8>,
        k_scales: Vec<f32>,
        v: Vec<i8>,
        v_scales: Vec<f32>,
    },
}

/// Keys transposed `[B, H, hd, N]` and values `[B, H, N, hd]`, in reduced precision.
#[derive(Debug, Clone)]
pub struct CachedKv {
    /// (images, heads, head width, keys)
    dims: (usize, usize, usize, usize),
    data: Data,
}

impl CachedKv {
    /// Rounds the key and value projections' rows `k`, `v` `[B, N, H·hd]` into keys
    /// transposed `[B, H, hd, N]` and values `[B, H, N, hd]`, each (image, head) in one
    /// pass: the projections are read once, with no f32 copy split into heads.
    pub fn new(k: &[f32], v: &[f32], (b, h, n): (usize, usize, usize), ty: KvType) -> Self {
        let d = k.len().checked_div(b * n).unwrap_or(0);
        let hd = d.checked_div(h).unwrap_or(0);
        assert_eq!(k.len(), b * n * h * hd, "keys are not [B, N, H·hd]");
        assert_eq!(v.len(), k.len(), "values are not [B, N, H·hd]");
        let block = (hd * n).max(1);
        // Where key or value j of (image, head) bh starts: within a projection row.
        let row = |bh: usize, j: usize| ((bh / h) * n + j) * d + (bh % h) * hd;
        let data = match ty {
            KvType::Bf16 => {
                let (mut kq, mut vq) = (vec![0u16; k.len()], vec![0u16; v.len()]);
                kq.par_chunks_mut(block)
                    .zip(vq.par_chunks_mut(block))
                    .enumerate()
                    .for_each(|(bh, (kt, vo))| {
                        for j in 0..n {
                            // A key is a column of Kᵀ.
                            for (e, &x) in k[row(bh, j)..][..hd].iter().enumerate() {
                                kt[e * n + j] = bf16(x);
                            }
                            round_row_bf16(&v[row(bh, j)..][..hd], &mut vo[j * hd..][..hd]);
                        }
                    });
                Data::Bf16 { k_t: kq, v: vq }
            }
            KvType::Int8 => {
                let (mut kq, mut vq) = (vec![0i8; k.len()], vec![0i8; v.len()]);
                let mut k_scales = vec![0f32; b * h * n];
                let mut v_scales = vec![0f32; b * h * n];
                kq.par_chunks_mut(block)
                    .zip(vq.par_chunks_mut(block))
                    .zip(
                        k_scales
                            .par_chunks_mut(n.max(1))
                            .zip(v_scales.par_chunks_mut(n.max(1))),
                    )
                    .enumerate()
                    .for_each(|(bh, ((kt, vo), (ks, vs)))| {
                        for j in 0..n {
                            let key = &k[row(bh, j)..][..hd];
                            ks[j] = scale_of(key.iter().copied());
                            for (e, &x) in key.iter().enumerate() {
                                kt[e * n + j] = round(x, ks[j]);
                            }
                            let value = &v[row(bh, j)..][..hd];
                            quantize_row(value, &mut vo[j * hd..][..hd], &mut vs[j]);
                        }
                    });
                Data::Int8 {
                    k_t: kq,
                    k_scales,
                    v: vq,
                    v_scales,
                }
            }
        };
        Self {
            dims: (b, h, hd, n),
            data,
        }
    }

    pub fn kv_type(&self) -> KvType {
        match self.data {
            Data::Bf16 { .. } => KvType::Bf16,
            Data::Int8 { .. } => KvType::Int8,
        }
    }

    /// (images, heads, head width, keys)
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        self.dims
    }

    pub fn size_in_bytes(&self) -> usize {
        match &self.data {
            Data::Bf16 { k_t, v } => 2 * (k_t.len() + v.len()),
            Data::Int8 {
                k_t,
                k_scales,
                v,
                v_scales,
            } => k_t.len() + v.len() + 4 * (k_scales.len() + v_scales.len()),
        }
    }

    /// The images at `images`, in that order (an index may repeat).
    pub fn select(&self, images: &[usize]) -> Self {
        let (_, h, hd, n) = self.dims;
        let per = h * hd * n;
        fn pick<T: Copy>(x: &[T], per: usize, images: &[usize]) -> Vec<T> {
            images
                .iter()
                .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
                .collect()
        }
        let data = match &self.data {
            Data::Bf16 { k_t, v } => Data::Bf16 {
                k_t: pick(k_t, per, images),
                v: pick(v, per, images),
            },
            Data::Int8 {
                k_t,
                k_scales,
                v,
                v_scales,
            } => Data::Int8 {
                k_t: pick(k_t, per, images),
                k_scales: pick(k_scales, h * n, images),
                v: pick(v, per, images),
                v_scales: pick(v_scales, h * n, images),
            },
        };
        Self {
            dims: (images.len(), h, hd, n),
            data,
        }
    }

    /// The keys transposed and the values as f32, as the attention reads them.
    pub fn to_f32(&self) -> (Vec<f32>, Vec<f32>) {
        let (_, _, hd, n) = self.dims;
        let widen = |x: &u16| f32::from_bits((*x as u32) << 16);
        match &self.data {
            Data::Bf16 { k_t, v } => (
                k_t.iter().map(widen).collect(),
                v.iter().map(widen).collect(),
            ),
            Data::Int8 {
                k_t,
                k_scales,
                v,
                v_scales,
            } => {
                let k = k_t
                    .iter()
                    .enumerate()
                    .map(|(i, &q)| q as f32 * k_scales[i / (hd * n) * n + i % n])
                    .collect();
                let v = v
                    .iter()
                    .enumerate()
                    .map(|(i, &q)| q as f32 * v_scales[i / hd])
                    .collect();
                (k, v)
            }
        }
    }

    /// Softmax attention of `m` queries per (image, head), `q` `[B·H, m, hd]` (already
    /// scaled): the probabilities `[B·H, m, N]` and the context `[B·H, m, hd]`, as
    /// [`crate::attention::few_queries`] gives them over f32 keys and values.
    pub fn few_queries(&self, q: &[f32], m: usize) -> (Vec<f32>, Vec<f32>) {
        let (b, h, hd, n) = self.dims;
        assert_eq!(q.len(), b * h * m * hd, "q is not [B·H, m, hd]");
        let block = hd * n;
        match &self.data {
            Data::Bf16 { k_t, v } => {
                let one = |i: usize, q: &[f32], p: &mut [f32], c: &mut [f32]| {
                    let (k, v) = (&k_t[i * block..][..block], &v[i * block..][..block]);
                    attend_bf16(q, k, v, p, c, hd)
                };
                few_queries_with(q, (b * h, m, hd), n, one)
            }
            Data::Int8 {
                k_t,
                k_scales,
                v,
                v_scales,
            } => {
                let one = |i: usize, q: &[f32], p: &mut [f32], c: &mut [f32]| {
                    let (k, v) = (&k_t[i * block..][..block], &v[i * block..][..block]);
                    let (ks, vs) = (&k_scales[i * n..][..n], &v_scales[i * n..][..n]);
                    attend_int8(q, k, ks, v, vs, p, c, hd)
                };
                few_queries_with(q, (b * h, m, hd), n, one)
            }
        }
    }
}

multiversion! {
    fn quantize_row(row: &[f32], q: &mut [i8], scale: &mut f32) {
        crate::packed::quantize_symmetric(row, q, scale, 127.0, |v| v as i8)
    }
}

/// The symmetric int8 scale of these values.
fn scale_of(values: impl Iterator<Item = f32>) -> f32 {
    let max = values.fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

fn round(x: f32, scale: f32) -> i8 {
    crate::packed::round_clamped(x / scale, 127.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::attention::tests::values;

    /// For both types, attending the cache gives what f32 attention gives over the
    /// cache's own (rounded) keys and values, and those are within half a rounding step
    /// of the originals; `select` keeps the chosen images.
    #[test]
    fn attends_over_its_rounded_keys_and_values() {
        for ty in [KvType::Bf16, KvType::Int8] {
            // hd 64 takes the register-blocked context sum, hd 12 the plain one.
            for (b, h, hd, n, m) in [(2, 3, 64, 37, 3), (3, 2, 12, 50, 1)] {
                // The projections' rows [B, N, H·hd], and the same split into heads.
                let (k, v_rows) = (values(b * n * h * hd, 3), values(b * n * h * hd, 4));
                let (mut k_t, mut v) = (vec![0f32; k.len()], vec![0f32; k.len()]);
                for (i, (&kx, &vx)) in k.iter().zip(&v_rows).enumerate() {
                    let (bi, j, hi, e) = (i / (n * h * hd), i / (h * hd) % n, i / hd % h, i % hd);
                    k_t[((bi * h + hi) * hd + e) * n + j] = kx;
                    v[((bi * h + hi) * n + j) * hd + e] = vx;
                }
                let cache = CachedKv::new(&k, &v_rows, (b, h, n), ty);
                assert_eq!(cache.dims(), (b, h, hd, n));
                let (kr, vr) = cache.to_f32();
                for (orig, rounded) in [(&k_t, &kr), (&v, &vr)] {
                    for (&o, &r) in orig.iter().zip(rounded) {
                        let step = match ty {
                            KvType::Bf16 => o.abs() * 2f32.powi(-7),
                            KvType::Int8 => 1.8 / 127.0, // the largest magnitude over 127
                        };
                        assert!((o - r).abs() <= step / 2.0 + 1e-7, "{ty:?}: {o} vs {r}");
                    }
                }
                let q = values(b * h * m * hd, 2);
                let (p, c) = cache.few_queries(&q, m);
                let (wp, wc) = crate::attention::few_queries(&q, &kr, &vr, (b * h, m, hd));
                // Scores reach about ±100 here (unscaled queries over 64 dimensions), and
                // int8 applies each key's scale after its sum rather than before: f32
                // rounding of 1e-6 of a score moves a probability by 1e-4 of itself.
                for (g, w) in p.iter().zip(&wp).chain(c.iter().zip(&wc)) {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{ty:?}: {g} vs {w}"
                    );
                }
                let picked = cache.select(&[b - 1, 0, b - 1]);
                let (pk, pv) = picked.to_f32();
                let per = h * hd * n;
                assert_eq!(pk[..per], kr[(b - 1) * per..]);
                assert_eq!(pk[per..2 * per], kr[..per]);
                assert_eq!(pv[2 * per..], vr[(b - 1) * per..]);
            }
        }
    }
}
