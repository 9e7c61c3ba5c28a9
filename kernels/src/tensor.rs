//! Borrowing a candle tensor's f32 data, and giving a buffer back as a tensor.

use std::ops::Deref;

use candle_core::{CpuStorage, Device, Shape, Storage, StorageRef, Tensor};

/// A contiguous f32 CPU tensor's data, borrowed.
pub struct CpuF32<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl Deref for CpuF32<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => unreachable!("checked by cpu_f32"),
        }
    }
}

/// The data of `t` when it is a contiguous f32 tensor on the CPU, else `None` (the
/// caller then takes candle's path).
pub fn cpu_f32(t: &Tensor) -> Option<CpuF32<'_>> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    matches!(&*storage, Storage::Cpu(CpuStorage::F32(_))).then_some(CpuF32 {
        storage,
        start,
        end,
    })
}

/// A CPU tensor of `shape` over `data`.
pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Whether a forward pass may take the kernels: f32 on the CPU, and nothing that
/// autograd would need to follow (the kernels have no backward pass).
pub fn inference_on_cpu(tensors: &[&Tensor]) -> bool {
    crate::autograd::on_cpu(tensors) && !tensors.iter().any(|t| t.track_op())
}

/// A linear layer (`weight` `[out, in]`, `bias` `[out]`) applied to `x` `[rows, in]`,
/// plus `residual` `[rows, out]`; `None` when the weights are not contiguous CPU f32.
pub fn linear(
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &[f32],
    residual: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let w = cpu_f32(weight)?;
    let b = match bias {
        Some(b) => Some(cpu_f32(b)?),
        None => None,
    };
    let layer = crate::linear::Linear {
        weight: &w,
        bias: b.as_deref(),
        out_features: weight.dim(0).ok()?,
    };
    Some(layer.forward(x, residual))
}

/// A linear layer over `x` `[.., in]` (`weight` `[out, in]`, `bias` `[out]`), plus
/// `residual` `[.., out]` when given, then exact GELU when `gelu` is set.
///
/// For CPU inference this runs on the kernels (bias and residual folded into the
/// product, GELU in place); under autograd on the CPU on the differentiable ops of
/// [`crate::autograd`]; elsewhere on candle's ops, as one 2-D matmul: candle would run a
/// 3-D input as one small matmul per leading index, each re-reading the whole weight.
pub fn linear_op(
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &Tensor,
    residual: Option<&Tensor>,
    gelu: bool,
) -> candle_core::Result<Tensor> {
    let (lead, last) = x.dims().split_at(x.rank() - 1);
    let out_shape = [lead, &[weight.dim(0)?]].concat();
    let mut all = vec![x, weight];
    all.extend(bias);
    all.extend(residual);
    if inference_on_cpu(&all) {
        if let Some(mut y) = linear_on_cpu(weight, bias, x, residual)? {
            if gelu {
                crate::math::gelu_in_place(&mut y);
            }
            return from_vec(y, out_shape);
        }
    }
    if let Some(b) = bias.filter(|_| crate::autograd::on_cpu(&all)) {
        // One graph node (GELU included) where a chain would add two reshapes and an
        // activation, each with its own gradient to allocate and accumulate.
        let y = crate::autograd::linear(x, weight, b, gelu && residual.is_none())?;
        return match residual {
            Some(r) if gelu => crate::autograd::gelu(&(y + r)?),
            Some(r) => y + r,
            None => Ok(y),
        };
    }
    let x2 = x.reshape(((), last[0]))?;
    let mut y = match bias {
        Some(b) => x2.matmul(&weight.t()?)?.broadcast_add(b)?,
        None => x2.matmul(&weight.t()?)?,
    }
    .reshape(out_shape)?;
    if let Some(r) = residual {
        y = (y + r)?;
    }
    if gelu {
        y = y.gelu_erf()?;
    }
    Ok(y)
}

/// [`linear_op`] for a candle-nn `Linear`.
pub fn dense(
    layer: &candle_nn::Linear,
    x: &Tensor,
    residual: Option<&Tensor>,
    gelu: bool,
) -> candle_core::Result<Tensor> {
    linear_op(layer.weight(), layer.bias(), x, residual, gelu)
}

/// `ln` applied to `x`. candle's fused layer norm has no backward pass, so when
/// autograd follows `x` or the layer's weights, the differentiable op of
/// [`crate::autograd`] runs instead (on the CPU; elsewhere the same normalisation as a
/// chain of candle ops); otherwise the fused op.
pub fn layer_norm(ln: &candle_nn::LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::{Module, D};
    let tracked = [Some(x), Some(ln.weight()), ln.bias()]
        .into_iter()
        .flatten()
        .any(Tensor::track_op);
    if !tracked {
        return ln.forward(x);
    }
    if let Some(b) = ln.bias() {
        if crate::autograd::on_cpu(&[x, ln.weight(), b]) {
            return crate::autograd::layer_norm(x, ln.weight(), b, ln.eps());
        }
    }
    let d = x.dim(D::Minus1)? as f64;
    let centred = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / d)?)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / d)?;
    let y = centred
        .broadcast_div(&(var + ln.eps())?.sqrt()?)?
        .broadcast_mul(ln.weight())?;
    match ln.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Softmax over the last dimension, differentiable: the op of [`crate::autograd`] on
/// the CPU, candle-nn's chain of ops elsewhere.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if crate::autograd::on_cpu(&[x]) {
        crate::autograd::softmax_last_dim(x)
    } else {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)
    }
}

fn linear_on_cpu(
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &Tensor,
    residual: Option<&Tensor>,
) -> candle_core::Result<Option<Vec<f32>>> {
    let x = x.contiguous()?;
    let Some(xs) = cpu_f32(&x) else {
        return Ok(None);
    };
    let Some(residual) = residual else {
        return Ok(linear(weight, bias, &xs, None));
    };
    let residual = residual.contiguous()?;
    let y = cpu_f32(&residual).and_then(|r| linear(weight, bias, &xs, Some(&r)));
    Ok(y)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    /// The differentiable layer norm gives the fused op's values, and gradients that
    /// match central finite differences of `sum(c * layer_norm(x))`.
    #[test]
    fn layer_norm_is_differentiable() {
        let dev = Device::Cpu;
        let (rows, d) = (3, 8);
        let xs: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let cs: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.5)
            .collect();
        let w = Tensor::from_vec(
            (0..d).map(|i| 0.5 + i as f32 * 0.1).collect::<Vec<_>>(),
            d,
            &dev,
        )
        .unwrap();
        let b =
            Tensor::from_vec((0..d).map(|i| i as f32 * 0.05).collect::<Vec<_>>(), d, &dev).unwrap();
        let ln = candle_nn::LayerNorm::new(w, b, 1e-5);
        let c = Tensor::from_vec(cs, (rows, d), &dev).unwrap();
        let x = Var::from_vec(xs.clone(), (rows, d), &dev).unwrap();

        let y = super::layer_norm(&ln, x.as_tensor()).unwrap();
        let fused = candle_core::Module::forward(
            &ln,
            &Tensor::from_vec(xs.clone(), (rows, d), &dev).unwrap(),
        )
        .unwrap();
        let diff = (y.clone() - fused)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "values differ by {diff}");

        let loss = (y * &c).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let f = |v: &[f32]| -> f64 {
            let t = Tensor::from_vec(v.to_vec(), (rows, d), &dev).unwrap();
            let y = candle_core::Module::forward(&ln, &t).unwrap();
            (y * &c)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        for i in [0, 5, 9, 17, 23] {
            let h = 1e-2f32;
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (f(&up) - f(&down)) / (2.0 * h as f64);
            assert!(
                (numeric - g[i] as f64).abs() < 2e-3,
                "x[{i}]: autograd {} vs finite difference {numeric}",
                g[i]
            );
        }
    }
}

/// A linear layer as checkpoints hold it (f32, on any device, differentiable), or packed
/// in reduced precision ([`crate::packed`]) for inference on the CPU.
#[derive(Clone)]
pub enum Dense {
    F32(candle_nn::Linear),
    Packed(std::sync::Arc<crate::packed::PackedLinear>),
}

impl From<candle_nn::Linear> for Dense {
    fn from(layer: candle_nn::Linear) -> Self {
        Self::F32(layer)
    }
}

impl Dense {
    /// `x Wᵀ + b` over `x` `[.., in]`, plus `residual`, then exact GELU when `gelu` is set.
    pub fn forward(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        gelu: bool,
    ) -> candle_core::Result<Tensor> {
        let q = match self {
            Self::F32(layer) => return dense(layer, x, residual, gelu),
            Self::Packed(q) => q,
        };
        let (lead, _) = x.dims().split_at(x.rank() - 1);
        let out_shape = [lead, &[q.out_features()]].concat();
        let x = x.contiguous()?;
        let residual = residual.map(Tensor::contiguous).transpose()?;
        let mut all = vec![&x];
        all.extend(residual.as_ref());
        let off_cpu = || candle_core::Error::Msg("packed layers run on f32 CPU inputs".into());
        if !inference_on_cpu(&all) {
            candle_core::bail!("int8 and bf16 layers run on the CPU, at inference only")
        }
        let xs = cpu_f32(&x).ok_or_else(off_cpu)?;
        let res = match &residual {
            Some(r) => Some(cpu_f32(r).ok_or_else(off_cpu)?),
            None => None,
        };
        from_vec(q.forward_then(&xs, res.as_deref(), gelu), out_shape)
    }

    /// Replaces an f32 CPU layer by its packing in `scheme` (a no-op when already
    /// packed). The f32 weight is dropped, unless something else (tied embeddings)
    /// holds it.
    pub fn pack(&mut self, scheme: crate::packed::Scheme) -> candle_core::Result<()> {
        let Self::F32(layer) = self else {
            return Ok(());
        };
        let w = layer.weight();
        let need =
            |what: &str| candle_core::Error::Msg(format!("int8 and bf16 need {what} on the CPU"));
        let data = cpu_f32(w).ok_or_else(|| need("f32 weights"))?;
        let bias = match layer.bias() {
            Some(b) => Some(cpu_f32(b).ok_or_else(|| need("an f32 bias"))?),
            None => None,
        };
        let q = crate::packed::PackedLinear::pack(&data, bias.as_deref(), w.dim(0)?, scheme);
        drop((data, bias));
        *self = Self::Packed(std::sync::Arc::new(q));
        Ok(())
    }

    /// The scheme the layer is packed in; `None` for f32.
    pub fn scheme(&self) -> Option<crate::packed::Scheme> {
        match self {
            Self::F32(_) => None,
            Self::Packed(q) => Some(q.scheme()),
        }
    }
}
