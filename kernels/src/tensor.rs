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
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && !t.track_op())
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
/// product, GELU in place); otherwise (autograd, other devices) on candle's ops, as one
/// 2-D matmul: candle would run a 3-D input as one small matmul per leading index, each
/// re-reading the whole weight.
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
    let mut y = x.reshape(((), last[0]))?.matmul(&weight.t()?)?;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    let mut y = y.reshape(out_shape)?;
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
