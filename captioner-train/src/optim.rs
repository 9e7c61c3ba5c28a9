//! AdamW as torch implements it (decoupled weight decay, bias-corrected moments), with
//! its state in plain tensors so that a checkpoint can hold it, and gradient clipping
//! by the global norm.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }
}

/// The optimizer over named variables; `m` and `v` are its moment estimates.
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub params: Vec<(String, Var)>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Steps taken.
    pub step: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(Self {
            cfg,
            m: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<candle_core::Result<_>>()?,
            params,
            step: 0,
        })
    }

    /// One update at learning rate `lr`, gradients scaled by `grad_scale` (from
    /// clipping). A parameter without a gradient (frozen) is left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.update(|p| grads.get(p).cloned(), lr, grad_scale)
    }

    /// [`AdamW::step`] with the gradients from `grad_of(parameter)`.
    pub fn update(
        &mut self,
        grad_of: impl Fn(&Tensor) -> Option<Tensor>,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        let fused = kernels::autograd::AdamWStep {
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            eps: c.eps as f32,
            decay: (1.0 - lr * c.weight_decay) as f32,
            step: (lr / bias1) as f32,
            bias2_sqrt: bias2_sqrt as f32,
            grad_scale: grad_scale as f32,
        };
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grad_of(p.as_tensor()) else {
                continue;
            };
            // On the CPU one pass over the four tensors; elsewhere candle's ops.
            let g = g.contiguous()?;
            let pt = p.as_tensor();
            let fused_step = match (
                kernels::cpu_f32(pt),
                kernels::cpu_f32(&g),
                kernels::cpu_f32(&self.m[i]),
                kernels::cpu_f32(&self.v[i]),
            ) {
                (Some(pd), Some(gd), Some(md), Some(vd)) => {
                    Some(kernels::autograd::adamw(&pd, &gd, &md, &vd, fused))
                }
                _ => None,
            };
            if let Some((p2, m2, v2)) = fused_step {
                p.set(&kernels::from_vec(p2, pt.shape())?)?;
                self.m[i] = kernels::from_vec(m2, pt.shape())?;
                self.v[i] = kernels::from_vec(v2, pt.shape())?;
                continue;
            }
            let g = (g * grad_scale)?;
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let decayed = (p.as_tensor() * (1.0 - lr * c.weight_decay))?;
            let denom = ((v.sqrt()? / bias2_sqrt)? + c.eps)?;
            p.set(&(decayed - (m.div(&denom)? * (lr / bias1))?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// The global L2 norm of some gradients, and the factor that brings it down to
/// `max_norm` (1 when it is below): torch's `clip_grad_norm_`.
pub fn clip_factor<'a>(
    grads: impl IntoIterator<Item = &'a Tensor>,
    max_norm: f64,
) -> Result<(f64, f64)> {
    let mut sum = 0f64;
    for g in grads {
        sum += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = sum.sqrt();
    Ok((norm, (max_norm / (norm + 1e-6)).min(1.0)))
}
