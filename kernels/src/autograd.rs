//! Differentiable CPU ops for training: a linear layer (with GELU), layer norm, GELU,
//! softmax and attention, each one candle op with a backward pass written out by hand.
//!
//! candle builds these from chains of element-wise ops, and its backward pass runs
//! every op of the chain again in reverse, each allocating and sweeping its own output
//! (a layer norm is about twenty passes over the activations, and GELU's derivative
//! calls a scalar `erf` per element). Here each is one pass forward and one or two
//! back, on the same vectorised `exp`/`erf` as inference. A linear layer also skips
//! the input's gradient when nothing upstream wants it (a frozen vision encoder's
//! output), where candle computes both sides of every product.
//!
//! Every reduction over rows runs in a fixed order (fixed blocks, summed in sequence),
//! so gradients are bit-identical from run to run: resuming a run depends on it.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

mod attention;
pub use attention::{attention, packed_attention};

use crate::linear::{matmul, parallelism, Linear};
use crate::math::{erf, exp, softmax_row};

/// Rows per parallel task of the row-wise ops, and per partial sum of the reductions.
const ROW_BLOCK: usize = 64;

/// Whether these ops can run on `tensors`: f32 on the CPU.
pub fn on_cpu(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}

fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("expected f32 data")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

/// A tensor's data as a contiguous vector (a copy).
fn data(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A contiguous tensor's data, borrowed.
fn borrow(t: &Tensor) -> Result<crate::CpuF32<'_>> {
    match crate::cpu_f32(t) {
        Some(d) => Ok(d),
        None => bail!("expected a contiguous f32 CPU tensor"),
    }
}

fn tensor(v: Vec<f32>, shape: &Shape) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}

/// Column sums of `rows × width` data: block partial sums in parallel, then added in
/// block order.
fn column_sums(
    xs: &[f32],
    width: usize,
    term: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = xs
        .par_chunks(ROW_BLOCK * width)
        .enumerate()
        .map(|(block, rows)| {
            let mut acc = vec![0f32; width];
            for (i, row) in rows.chunks_exact(width).enumerate() {
                term(block * ROW_BLOCK + i, row, &mut acc);
            }
            acc
        })
        .collect();
    let mut sum = vec![0f32; width];
    for p in partial {
        sum.iter_mut().zip(p).for_each(|(s, p)| *s += p);
    }
    sum
}

// ---------------------------------------------------------------------------------------
// Linear: y = x Wᵀ + b, then GELU when asked.

struct LinearOp {
    gelu: bool,
    /// With GELU: its input, kept by the forward pass for its derivative.
    pre_activation: OnceLock<Vec<f32>>,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = wl.dims()[0];
        let layer = Linear {
            weight: f32s(ws, wl)?,
            bias: Some(f32s(bs, bl)?),
            out_features: out,
        };
        let mut y = layer.forward(f32s(xs, xl)?, None);
        if self.gelu {
            let _ = self.pre_activation.set(y.clone());
            crate::math::gelu_in_place(&mut y);
        }
        let mut shape = xl.dims().to_vec();
        *shape.last_mut().expect("checked by `linear`") = out;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp;
        let (x_c, w_c) = (x.contiguous()?, w.contiguous()?);
        let (xv, wv) = (borrow(&x_c)?, borrow(&w_c)?);
        let grad = grad.contiguous()?;
        let grad = borrow(&grad)?;
        let through_gelu;
        let g: &[f32] = match self.pre_activation.get() {
            Some(pre) => {
                let mut g = grad.to_vec();
                g.par_chunks_mut(1 << 14)
                    .zip(pre.par_chunks(1 << 14))
                    .for_each(|(g, z)| gelu_grad_serial(z, g));
                through_gelu = g;
                &through_gelu
            }
            None if self.gelu => bail!("linear's backward pass ran before its forward pass"),
            None => &grad,
        };
        // dx [rows, in] = g [rows, out] · W [out, in]
        let dx = x.track_op().then(|| {
            let mut dx = vec![0f32; rows * inp];
            // SAFETY: the strides describe g, W and dx as stated, within their buffers.
            unsafe {
                matmul(
                    (rows, inp, out),
                    (dx.as_mut_ptr(), inp, 1),
                    (g.as_ptr(), out, 1),
                    (wv.as_ptr(), inp, 1),
                    false,
                    1.0,
                    parallelism(),
                )
            }
            dx
        });
        // dW [out, in] = gᵀ [out, rows] · x [rows, in]
        let mut dw = vec![0f32; out * inp];
        // SAFETY: as above; gᵀ is g read with swapped strides.
        unsafe {
            matmul(
                (out, inp, rows),
                (dw.as_mut_ptr(), inp, 1),
                (g.as_ptr(), 1, out),
                (xv.as_ptr(), inp, 1),
                false,
                1.0,
                parallelism(),
            )
        }
        let db = column_sums(g, out, |_, row, acc| {
            acc.iter_mut().zip(row).for_each(|(a, g)| *a += g)
        });
        Ok((
            dx.map(|dx| tensor(dx, x.shape())).transpose()?,
            Some(tensor(dw, w.shape())?),
            Some(tensor(db, &Shape::from(out))?),
        ))
    }
}

/// `x Wᵀ + b` for `x` `[.., in]`, `weight` `[out, in]`, `bias` `[out]`, all f32 on the
/// CPU, then exact GELU when `gelu` is set: one op, whatever the rank of `x`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    if x.rank() == 0 || x.dims().last() != weight.dims().get(1) {
        bail!("linear of {:?} by a weight {:?}", x.dims(), weight.dims())
    }
    let op = LinearOp {
        gelu,
        pre_activation: OnceLock::new(),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

// ---------------------------------------------------------------------------------------
// Layer norm over the last dimension.

struct LayerNormOp {
    eps: f32,
}

/// Mean and 1/σ of one row.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32s(xs, xl)?, f32s(ws, wl)?, f32s(bs, bl)?);
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(ROW_BLOCK * d)
            .zip(x.par_chunks(ROW_BLOCK * d))
            .for_each(|(ys, xs)| {
                for (y, x) in ys.chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
                    let (mean, rstd) = moments(x, self.eps);
                    for (((y, x), w), b) in y.iter_mut().zip(x).zip(w).zip(b) {
                        *y = (x - mean) * rstd * w + b;
                    }
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x_c, w_c, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xv, wv, g) = (borrow(&x_c)?, borrow(&w_c)?, borrow(&grad)?);
        let d = wv.len();
        let eps = self.eps;
        // dx = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)) with ĝ = g w, x̂ the normalised input.
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(ROW_BLOCK * d)
            .zip(
                xv.par_chunks(ROW_BLOCK * d)
                    .zip(g.par_chunks(ROW_BLOCK * d)),
            )
            .for_each(|(dxs, (xs, gs))| {
                for ((dx, x), g) in dxs
                    .chunks_exact_mut(d)
                    .zip(xs.chunks_exact(d))
                    .zip(gs.chunks_exact(d))
                {
                    let (mean, rstd) = moments(x, eps);
                    let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                    for ((x, g), w) in x.iter().zip(g).zip(wv.iter()) {
                        let gh = g * w;
                        sum_g += gh;
                        sum_gx += gh * (x - mean) * rstd;
                    }
                    let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
                    for (((dx, x), g), w) in dx.iter_mut().zip(x).zip(g).zip(wv.iter()) {
                        let xh = (x - mean) * rstd;
                        *dx = rstd * (g * w - mg - xh * mgx);
                    }
                }
            });
        // dw = Σ g x̂ and db = Σ g over the rows.
        let dw = column_sums(&g, d, |r, g, acc| {
            let x = &xv[r * d..(r + 1) * d];
            let (mean, rstd) = moments(x, eps);
            acc.iter_mut()
                .zip(g.iter().zip(x))
                .for_each(|(a, (g, x))| *a += g * (x - mean) * rstd);
        });
        let db = column_sums(&g, d, |_, row, acc| {
            acc.iter_mut().zip(row).for_each(|(a, g)| *a += g)
        });
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dw, w.shape())?),
            Some(tensor(db, b.shape())?),
        ))
    }
}

/// Layer norm of `x` over its last dimension, scaled by `weight` and shifted by `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )
}

// ---------------------------------------------------------------------------------------
// GELU (erf form) and softmax over the last dimension.

struct GeluOp;

multiversion! {
    /// g · GELU'(x), GELU'(x) = Φ(x) + x φ(x).
    fn gelu_grad_serial(x: &[f32], g: &mut [f32]) {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (g, &x) in g.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
            *g *= cdf + x * pdf;
        }
    }
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut y = f32s(s, l)?.to_vec();
        crate::math::gelu_in_place(&mut y);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let x_c = x.contiguous()?;
        let (xv, mut g) = (borrow(&x_c)?, data(grad)?);
        g.par_chunks_mut(1 << 14)
            .zip(xv.par_chunks(1 << 14))
            .for_each(|(g, x)| gelu_grad_serial(x, g));
        Ok(Some(tensor(g, x.shape())?))
    }
}

/// Exact GELU, `0.5 x (1 + erf(x / √2))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluOp)
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut y = f32s(s, l)?.to_vec();
        y.par_chunks_mut(ROW_BLOCK * n)
            .for_each(|rows| rows.chunks_exact_mut(n).for_each(softmax_row));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dx = y (g - Σ g y), row by row.
        let n = y.dims().last().copied().unwrap_or(1).max(1);
        let y_c = y.contiguous()?;
        let (yv, mut g) = (borrow(&y_c)?, data(grad)?);
        g.par_chunks_mut(ROW_BLOCK * n)
            .zip(yv.par_chunks(ROW_BLOCK * n))
            .for_each(|(gs, ys)| {
                for (g, y) in gs.chunks_exact_mut(n).zip(ys.chunks_exact(n)) {
                    softmax_grad_row(g, y);
                }
            });
        Ok(Some(tensor(g, y.shape())?))
    }
}

/// The gradient `y (g - Σ g y)` of softmax's input, in place of its output's gradient
/// `g`, for one row of probabilities `y`.
fn softmax_grad_row(g: &mut [f32], y: &[f32]) {
    let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
    // Tiny probabilities give denormal products, which would slow every product the
    // gradient flows into; they are flushed to 0.
    g.iter_mut().zip(y).for_each(|(g, y)| {
        let d = y * (*g - dot);
        *g = if d.abs() < f32::MIN_POSITIVE { 0.0 } else { d };
    });
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxOp)
}

// ---------------------------------------------------------------------------------------
// Dropout.

/// A model's dropout: off (inference) until a training step turns it on with a seed.
/// Every site draws its own mask from (seed, the site's place in the forward pass), so
/// a step's masks depend on nothing but its seed, and a resumed run draws the same ones.
/// Clones share one state, so a model hands one to each of its layers.
#[derive(Clone, Debug, Default)]
pub struct Dropout {
    state: std::sync::Arc<std::sync::Mutex<DropoutState>>,
}

#[derive(Debug, Default)]
struct DropoutState {
    hidden: f32,
    attention: f32,
    /// The step's seed and the sites drawn so far; `None` when off.
    active: Option<(u64, u64)>,
}

impl Dropout {
    /// Dropout of hidden states with probability `hidden` and of attention
    /// probabilities with `attention` (the config's rates), off for now.
    pub fn new(hidden: f64, attention: f64) -> Self {
        let d = Self::default();
        d.set_rates(hidden, attention);
        d
    }

    pub fn set_rates(&self, hidden: f64, attention: f64) {
        let mut s = self.lock();
        s.hidden = hidden as f32;
        s.attention = attention as f32;
    }

    /// Turns dropout on, with masks drawn from `seed`.
    pub fn on(&self, seed: u64) {
        self.lock().active = Some((seed, 0));
    }

    pub fn off(&self) {
        self.lock().active = None;
    }

    pub fn is_on(&self) -> bool {
        self.lock().active.is_some()
    }

    /// Dropout of hidden states (`x` itself when off).
    pub fn hidden(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, |s| s.hidden)
    }

    /// Dropout of attention probabilities (`x` itself when off).
    pub fn attention(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, |s| s.attention)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DropoutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next site's mask at `rate`, when dropout is on and the rate is not 0.
    fn draw(&self, rate: impl Fn(&DropoutState) -> f32) -> Option<DropoutOp> {
        let mut s = self.lock();
        let p = rate(&s);
        match s.active.as_mut() {
            Some((seed, sites)) if p > 0.0 => {
                *sites += 1;
                Some(DropoutOp {
                    p,
                    seed: mix(*seed ^ mix(*sites)),
                })
            }
            _ => None,
        }
    }

    fn apply(&self, x: &Tensor, rate: impl Fn(&DropoutState) -> f32) -> Result<Tensor> {
        let Some(op) = self.draw(rate) else {
            return Ok(x.clone());
        };
        if !on_cpu(&[x]) {
            bail!("dropout runs on the CPU only")
        }
        x.contiguous()?.apply_op1(op)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct DropoutOp {
    p: f32,
    seed: u64,
}

impl DropoutOp {
    /// `xs` (elements `offset..`) times the mask and 1/(1-p): element `i` is dropped when
    /// its hash falls below p.
    fn scale(&self, xs: &mut [f32], offset: usize) {
        let threshold = (self.p as f64 * u64::MAX as f64) as u64;
        let keep = 1.0 / (1.0 - self.p);
        for (i, x) in xs.iter_mut().enumerate() {
            let h = mix(self
                .seed
                .wrapping_add(((offset + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            *x = if h < threshold { 0.0 } else { *x * keep };
        }
    }

    fn run(&self, mut v: Vec<f32>) -> Vec<f32> {
        const CHUNK: usize = 1 << 14;
        v.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, xs)| self.scale(xs, c * CHUNK));
        v
    }
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self.run(f32s(s, l)?.to_vec());
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(tensor(self.run(data(grad)?), x.shape())?))
    }
}

// ---------------------------------------------------------------------------------------
// The optimizer's update.

/// One AdamW step's scalars (torch's formulation): moments `m = β1 m + (1-β1) g` and
/// `v = β2 v + (1-β2) g²`, then `p ← p (1 - lr·wd) - step · m / (√v / bias2_sqrt + eps)`.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 - lr · weight_decay`.
    pub decay: f32,
    /// `lr / (1 - β1^t)`.
    pub step: f32,
    /// `√(1 - β2^t)`.
    pub bias2_sqrt: f32,
    /// Multiplies the gradient first (clipping).
    pub grad_scale: f32,
}

/// AdamW over one parameter in a single pass: the new parameter, `m` and `v`.
pub fn adamw(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    s: AdamWStep,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    const CHUNK: usize = 1 << 14;
    let n = p.len();
    let (mut p2, mut m2, mut v2) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    p2.par_chunks_mut(CHUNK)
        .zip(m2.par_chunks_mut(CHUNK).zip(v2.par_chunks_mut(CHUNK)))
        .enumerate()
        .for_each(|(c, (po, (mo, vo)))| {
            let r = c * CHUNK..(c * CHUNK + po.len());
            let (p, g, m, v) = (&p[r.clone()], &g[r.clone()], &m[r.clone()], &v[r]);
            for i in 0..po.len() {
                let g = g[i] * s.grad_scale;
                let mi = s.beta1 * m[i] + (1.0 - s.beta1) * g;
                let vi = s.beta2 * v[i] + (1.0 - s.beta2) * g * g;
                let denom = vi.sqrt() / s.bias2_sqrt + s.eps;
                po[i] = p[i] * s.decay - s.step * (mi / denom);
                mo[i] = mi;
                vo[i] = vi;
            }
        });
    (p2, m2, v2)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var, D};

    /// Deterministic values in about [-2, 2].
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 4001) as f32 / 1000.0 - 2.0
            })
            .collect()
    }

    fn var(shape: &[usize], seed: u32) -> Var {
        let n = shape.iter().product();
        Var::from_vec(values(n, seed), shape, &Device::Cpu).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / scale
    }

    /// `f` and `reference` (candle's own differentiable ops) give the same values and the
    /// same gradients of `sum(c · f(inputs))` for every input.
    fn same_as_candle(
        inputs: &[Var],
        f: impl Fn(&[&Tensor]) -> Tensor,
        reference: impl Fn(&[&Tensor]) -> Tensor,
    ) {
        let ts: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
        let (ours, theirs) = (f(&ts), reference(&ts));
        assert!(max_rel(&ours, &theirs) < 1e-5, "values differ");
        let c =
            Tensor::from_vec(values(ours.elem_count(), 99), ours.shape(), &Device::Cpu).unwrap();
        let g1 = (ours * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (i, t) in ts.iter().enumerate() {
            let d = max_rel(g1.get(t).unwrap(), g2.get(t).unwrap());
            assert!(d < 1e-5, "gradient of input {i} differs by {d}");
        }
    }

    #[test]
    fn linear_matches_candle() {
        // 70 rows: more than one block of the bias gradient's partial sums.
        let inputs = [var(&[70, 24], 1), var(&[40, 24], 2), var(&[40], 3)];
        same_as_candle(
            &inputs,
            |t| super::linear(t[0], t[1], t[2], false).unwrap(),
            |t| {
                t[0].matmul(&t[1].t().unwrap())
                    .unwrap()
                    .broadcast_add(t[2])
                    .unwrap()
            },
        );
    }

    #[test]
    fn linear_skips_the_gradient_of_an_untracked_input() {
        let x = Tensor::from_vec(values(6 * 4, 1), (6, 4), &Device::Cpu).unwrap();
        let (w, b) = (var(&[5, 4], 2), var(&[5], 3));
        let y = super::linear(&x, w.as_tensor(), b.as_tensor(), false).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
    }

    #[test]
    fn layer_norm_matches_candle() {
        let inputs = [var(&[2, 70, 16], 4), var(&[16], 5), var(&[16], 6)];
        same_as_candle(
            &inputs,
            |t| super::layer_norm(t[0], t[1], t[2], 1e-5).unwrap(),
            |t| {
                let centred = t[0]
                    .broadcast_sub(&t[0].mean_keepdim(D::Minus1).unwrap())
                    .unwrap();
                let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                centred
                    .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(t[1])
                    .unwrap()
                    .broadcast_add(t[2])
                    .unwrap()
            },
        );
    }

    #[test]
    fn gelu_matches_candle() {
        let inputs = [var(&[3, 50], 7)];
        same_as_candle(
            &inputs,
            |t| super::gelu(t[0]).unwrap(),
            |t| t[0].gelu_erf().unwrap(),
        );
    }

    #[test]
    fn linear_with_gelu_matches_candle_at_any_rank() {
        let inputs = [var(&[2, 35, 24], 13), var(&[40, 24], 14), var(&[40], 15)];
        same_as_candle(
            &inputs,
            |t| super::linear(t[0], t[1], t[2], true).unwrap(),
            |t| {
                t[0].broadcast_matmul(&t[1].t().unwrap())
                    .unwrap()
                    .broadcast_add(t[2])
                    .unwrap()
                    .gelu_erf()
                    .unwrap()
            },
        );
    }

    /// Attention as candle's chain: heads split, scores, mask, softmax, dropout, values.
    fn attention_chain(
        [q, k, v]: [&Tensor; 3],
        heads: usize,
        mask: Option<&Tensor>,
        dropout: &super::Dropout,
    ) -> Tensor {
        let split = |x: &Tensor| {
            let (b, t, d) = x.dims3().unwrap();
            x.reshape((b, t, heads, d / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (b, tq, d) = q.dims3().unwrap();
        let scale = 1.0 / ((d / heads) as f64).sqrt();
        let mut s = (split(q).matmul(&split(k).t().unwrap()).unwrap() * scale).unwrap();
        if let Some(m) = mask {
            s = s.broadcast_add(m).unwrap();
        }
        let p = dropout
            .attention(&candle_nn::ops::softmax(&s, D::Minus1).unwrap())
            .unwrap();
        p.matmul(&split(v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, tq, d))
            .unwrap()
    }

    /// A dropout handle switched on with a fixed seed (rate 0 leaves it inert).
    fn dropout_on(p: f64) -> super::Dropout {
        let d = super::Dropout::new(0.0, p);
        d.on(7);
        d
    }

    #[test]
    fn attention_matches_candle_with_masks_and_dropout() {
        let (b, tq, tk, d, heads) = (2, 5, 7, 12, 3);
        let inputs = [
            var(&[b, tq, d], 16),
            var(&[b, tk, d], 17),
            var(&[b, tk, d], 18),
        ];
        let scale = 1.0 / ((d / heads) as f64).sqrt();
        // Per image: the second image's last three keys hidden; shared: a band.
        let per_image: Vec<f32> = (0..b * tq * tk)
            .map(|i| {
                if i >= tq * tk && i % tk >= 4 {
                    -1e30
                } else {
                    0.0
                }
            })
            .collect();
        let per_image = Tensor::from_vec(per_image, (b, 1, tq, tk), &Device::Cpu).unwrap();
        let shared: Vec<f32> = (0..tq * tk)
            .map(|i| if i % tk > i / tk + 1 { -1e30 } else { 0.0 })
            .collect();
        let shared = Tensor::from_vec(shared, (1, 1, tq, tk), &Device::Cpu).unwrap();
        for (mask, p) in [(None, 0.0), (Some(&per_image), 0.0), (Some(&shared), 0.3)] {
            let (ours, theirs) = (dropout_on(p), dropout_on(p));
            same_as_candle(
                &inputs,
                |t| super::attention(t[0], t[1], t[2], heads, scale, mask, &ours).unwrap(),
                |t| attention_chain([t[0], t[1], t[2]], heads, mask, &theirs),
            );
        }
    }

    #[test]
    fn packed_attention_matches_candle() {
        let (b, t, d, heads) = (2, 6, 12, 3);
        let inputs = [var(&[b, t, 3 * d], 19)];
        let scale = 1.0 / ((d / heads) as f64).sqrt();
        let (ours, theirs) = (dropout_on(0.2), dropout_on(0.2));
        same_as_candle(
            &inputs,
            |x| super::packed_attention(x[0], heads, scale, &ours).unwrap(),
            |x| {
                let part = |i| x[0].narrow(2, i * d, d).unwrap();
                attention_chain([&part(0), &part(1), &part(2)], heads, None, &theirs)
            },
        );
    }

    #[test]
    fn softmax_matches_candle_and_masks_to_exact_zeros() {
        let inputs = [var(&[2, 3, 5, 7], 8)];
        same_as_candle(
            &inputs,
            |t| super::softmax_last_dim(t[0]).unwrap(),
            |t| candle_nn::ops::softmax(t[0], D::Minus1).unwrap(),
        );
        let masked =
            Tensor::from_vec(vec![0.5f32, -1e30, 1.0, -1e30], (1, 4), &Device::Cpu).unwrap();
        let p = super::softmax_last_dim(&masked)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!((p[0][1], p[0][3]), (0.0, 0.0));
    }

    #[test]
    fn dropout_drops_p_and_scales_the_rest_in_both_passes() {
        let n = 50_000;
        let x = var(&[n], 13);
        let d = super::Dropout::new(0.25, 0.0);
        assert_eq!(
            d.hidden(x.as_tensor()).unwrap().id(),
            x.as_tensor().id(),
            "off: x itself"
        );
        d.on(7);
        let y = d.hidden(x.as_tensor()).unwrap();
        let again = {
            d.on(7);
            d.hidden(x.as_tensor()).unwrap()
        };
        let other = {
            d.on(8);
            d.hidden(x.as_tensor()).unwrap()
        };
        d.off();
        let (xs, ys) = (values(n, 13), y.to_vec1::<f32>().unwrap());
        assert_eq!(ys, again.to_vec1::<f32>().unwrap(), "same seed, same mask");
        assert_ne!(
            ys,
            other.to_vec1::<f32>().unwrap(),
            "another seed, another mask"
        );
        let dropped = ys.iter().filter(|&&y| y == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.25).abs() < 0.01, "dropped {dropped}");
        let grad = y.sum_all().unwrap().backward().unwrap();
        let g = grad.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        // The backward pass uses the forward's mask: a dropped element has neither
        // value nor gradient, a kept one is scaled by 1/(1-p) in both.
        for ((x, y), g) in xs.iter().zip(&ys).zip(&g) {
            if *g == 0.0 {
                assert_eq!(*y, 0.0);
            } else {
                assert!((y - x / 0.75).abs() < 1e-6 && (g - 1.0 / 0.75).abs() < 1e-6);
            }
        }
    }

    /// The fused update against torch's AdamW written out in f64.
    #[test]
    fn adamw_matches_the_formula() {
        let n = 40_000; // more than one parallel chunk
        let (p, g, m) = (values(n, 9), values(n, 10), values(n, 11));
        let v: Vec<f32> = values(n, 12).iter().map(|x| x.abs()).collect();
        let (b1, b2, eps, lr, wd, t, scale) = (0.9, 0.999, 1e-8, 1e-3, 0.05, 3, 0.5);
        let s = super::AdamWStep {
            beta1: b1 as f32,
            beta2: b2 as f32,
            eps: eps as f32,
            decay: (1.0 - lr * wd) as f32,
            step: (lr / (1.0 - f64::powi(b1, t))) as f32,
            bias2_sqrt: (1.0 - f64::powi(b2, t)).sqrt() as f32,
            grad_scale: scale as f32,
        };
        let (p2, m2, v2) = super::adamw(&p, &g, &m, &v, s);
        for i in 0..n {
            let gi = g[i] as f64 * scale;
            let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
            let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
            let denom = vi.sqrt() / (1.0 - f64::powi(b2, t)).sqrt() + eps;
            let pi = p[i] as f64 * (1.0 - lr * wd) - lr / (1.0 - f64::powi(b1, t)) * mi / denom;
            assert!((m2[i] as f64 - mi).abs() < 1e-6 && (v2[i] as f64 - vi).abs() < 1e-6);
            assert!((p2[i] as f64 - pi).abs() < 1e-5, "{i}: {} vs {pi}", p2[i]);
        }
    }
}
