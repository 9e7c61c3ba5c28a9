//! Multi-head softmax attention as one differentiable op: scores, mask, softmax,
//! dropout and the weighted sum of values forward, and all their gradients back.
//!
//! As a chain of candle ops, attention under autograd is a dozen graph nodes per block
//! (head split, copies, scale, two products, softmax, dropout, head merge), and the
//! backward pass allocates, zero-fills and accumulates a gradient for every one of
//! them. Here each head reads its columns of Q, K and V in place and writes its
//! columns of the context and of the gradients, heads in parallel.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{borrow, f32s, tensor, Dropout, DropoutOp};
use crate::attention::{attend, Shared};
use crate::linear::matmul;
use gemm::Parallelism::None as Serial;

/// One of Q, K, V (or of their gradients) in a `[B, T, width]` buffer: its heads side
/// by side from column `offset` of each row.
#[derive(Clone, Copy)]
struct Part {
    offset: usize,
    width: usize,
}

/// `batch` images, `tq` queries over `tk` keys, `heads` heads of `hd` columns.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    tq: usize,
    tk: usize,
    heads: usize,
    hd: usize,
}

impl Dims {
    /// Offset of head `h` of image `b` in a part of `t` rows per image.
    fn at(&self, part: Part, t: usize, b: usize, h: usize) -> usize {
        b * t * part.width + part.offset + h * self.hd
    }
}

struct AttentionOp {
    heads: usize,
    scale: f32,
    /// Additive mask `[B or 1, Tq, Tk]`, the same for every head; `true` when per image.
    mask: Option<(Vec<f32>, bool)>,
    dropout: Option<DropoutOp>,
    /// The probabilities `[B, H, Tq, Tk]` before dropout, kept for the backward pass.
    probs: OnceLock<Vec<f32>>,
}

impl AttentionOp {
    /// Context `[B, Tq, H·hd]` of the queries in `q` over the keys and values in `k`
    /// and `v` (buffers with their parts).
    fn forward(
        &self,
        d: Dims,
        (q, qp): (&[f32], Part),
        (k, kp): (&[f32], Part),
        (v, vp): (&[f32], Part),
    ) -> Vec<f32> {
        let (tq, tk, width) = (d.tq, d.tk, d.heads * d.hd);
        let mut probs = vec![0f32; d.batch * d.heads * tq * tk];
        let mut ctx = vec![0f32; d.batch * tq * width];
        let out = Shared(ctx.as_mut_ptr());
        let ctx_part = Part { offset: 0, width };
        probs
            .par_chunks_mut(tq * tk)
            .enumerate()
            .for_each(|(bh, p)| {
                let (b, h) = (bh / d.heads, bh % d.heads);
                let mask = self.mask.as_ref().map(|(mask, per_image)| {
                    &mask[if *per_image { b * tq * tk } else { 0 }..][..tq * tk]
                });
                // SAFETY: each head's rows lie within q, k and v at their parts' strides;
                // this task alone writes head h of image b in the context.
                unsafe {
                    attend(
                        (tq, tk, d.hd),
                        (q[d.at(qp, tq, b, h)..].as_ptr(), qp.width),
                        (k[d.at(kp, tk, b, h)..].as_ptr(), kp.width),
                        (v[d.at(vp, tk, b, h)..].as_ptr(), vp.width),
                        self.scale,
                        mask,
                        // SAFETY: f32 to MaybeUninit<f32> only forgets that it is set.
                        &mut *(p as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]),
                        |p| self.dropped(p, bh * tq * tk),
                        (out.at(d.at(ctx_part, tq, b, h)), width),
                    );
                }
            });
        let _ = self.probs.set(probs);
        ctx
    }

    /// `p` (elements `offset..` of all the probabilities) after dropout.
    fn dropped<'a>(&self, p: &'a [f32], offset: usize) -> std::borrow::Cow<'a, [f32]> {
        match &self.dropout {
            Some(op) => {
                let mut kept = p.to_vec();
                op.scale(&mut kept, offset);
                kept.into()
            }
            None => p.into(),
        }
    }

    /// The gradients of Q, K and V, written at their parts of `grads` (buffers shaped
    /// like the inputs), from the context's gradient `g` `[B, Tq, H·hd]`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        d: Dims,
        (q, qp): (&[f32], Part),
        (k, kp): (&[f32], Part),
        (v, vp): (&[f32], Part),
        g: &[f32],
        [dq, dk, dv]: [Shared; 3],
    ) -> Result<()> {
        let Some(probs) = self.probs.get() else {
            bail!("attention's backward pass ran before its forward pass")
        };
        let (tq, tk, width) = (d.tq, d.tk, d.heads * d.hd);
        let g_part = Part { offset: 0, width };
        probs.par_chunks(tq * tk).enumerate().for_each(|(bh, p)| {
            let (b, h) = (bh / d.heads, bh % d.heads);
            let g = g[d.at(g_part, tq, b, h)..].as_ptr();
            let (qh, kh) = (
                q[d.at(qp, tq, b, h)..].as_ptr(),
                k[d.at(kp, tk, b, h)..].as_ptr(),
            );
            let dropped = self.dropped(p, bh * tq * tk);
            let mut ds = vec![0f32; tq * tk];
            // SAFETY: every pointer is read or written within its buffer at its part's
            // strides; this task alone writes head h of image b in the gradients.
            unsafe {
                // dV = P̃ᵀ G, with P̃ the probabilities after dropout.
                matmul(
                    (tk, d.hd, tq),
                    (dv.at(d.at(vp, tk, b, h)), vp.width, 1),
                    (dropped.as_ptr(), 1, tk),
                    (g, width, 1),
                    false,
                    1.0,
                    Serial,
                );
                // dP̃ = G Vᵀ
                matmul(
                    (tq, tk, d.hd),
                    (ds.as_mut_ptr(), tk, 1),
                    (g, width, 1),
                    (v[d.at(vp, tk, b, h)..].as_ptr(), 1, vp.width),
                    false,
                    1.0,
                    Serial,
                );
            }
            // Dropout's gradient is the same mask and scale.
            if let Some(op) = &self.dropout {
                op.scale(&mut ds, bh * tq * tk);
            }
            for (ds, p) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)) {
                super::softmax_grad_row(ds, p);
            }
            unsafe {
                // dQ = scale · dS K
                matmul(
                    (tq, d.hd, tk),
                    (dq.at(d.at(qp, tq, b, h)), qp.width, 1),
                    (ds.as_ptr(), tk, 1),
                    (kh, kp.width, 1),
                    false,
                    self.scale,
                    Serial,
                );
                // dK = scale · dSᵀ Q
                matmul(
                    (tk, d.hd, tq),
                    (dk.at(d.at(kp, tk, b, h)), kp.width, 1),
                    (ds.as_ptr(), 1, tk),
                    (qh, qp.width, 1),
                    false,
                    self.scale,
                    Serial,
                );
            }
        });
        Ok(())
    }
}

/// `[B, T, W]` dims of a tensor or layout.
fn dims3(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        &[b, t, w] => Ok((b, t, w)),
        _ => bail!("attention wants [B, T, D] inputs, got {dims:?}"),
    }
}

impl AttentionOp {
    fn separate_dims(&self, q: &[usize], k: &[usize], v: &[usize]) -> Result<Dims> {
        let ((b, tq, w), (bk, tk, wk)) = (dims3(q)?, dims3(k)?);
        if (bk, tk, wk) != dims3(v)? || bk != b || wk != w || w % self.heads != 0 {
            bail!(
                "attention of {q:?} over keys {k:?} and values {v:?} with {} heads",
                self.heads
            )
        }
        Ok(Dims {
            batch: b,
            tq,
            tk,
            heads: self.heads,
            hd: w / self.heads,
        })
    }
}

/// Separate `q` `[B, Tq, D]`, `k` and `v` `[B, Tk, D]`.
impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.separate_dims(ql.dims(), kl.dims(), vl.dims())?;
        let part = Part {
            offset: 0,
            width: d.heads * d.hd,
        };
        let ctx = self.forward(
            d,
            (f32s(qs, ql)?, part),
            (f32s(ks, kl)?, part),
            (f32s(vs, vl)?, part),
        );
        Ok((CpuStorage::F32(ctx), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _ctx: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.separate_dims(q.dims(), k.dims(), v.dims())?;
        let part = Part {
            offset: 0,
            width: d.heads * d.hd,
        };
        let (qc, kc, vc, gc) = (
            q.contiguous()?,
            k.contiguous()?,
            v.contiguous()?,
            grad.contiguous()?,
        );
        let mut dq = vec![0f32; q.elem_count()];
        let mut dk = vec![0f32; k.elem_count()];
        let mut dv = vec![0f32; v.elem_count()];
        self.backward(
            d,
            (&borrow(&qc)?, part),
            (&borrow(&kc)?, part),
            (&borrow(&vc)?, part),
            &borrow(&gc)?,
            [&mut dq, &mut dk, &mut dv].map(|x| Shared(x.as_mut_ptr())),
        )?;
        Ok((
            Some(tensor(dq, q.shape())?),
            Some(tensor(dk, k.shape())?),
            Some(tensor(dv, v.shape())?),
        ))
    }
}

/// One packed `qkv` `[B, T, 3D]`: each row all heads' queries, then keys, then values.
struct PackedOp(AttentionOp);

impl PackedOp {
    fn dims_parts(&self, dims: &[usize]) -> Result<(Dims, [Part; 3])> {
        let (b, t, w3) = dims3(dims)?;
        let w = w3 / 3;
        if w * 3 != w3 || w % self.0.heads != 0 {
            bail!(
                "packed attention wants [B, T, 3·D] with {} heads dividing D, got {dims:?}",
                self.0.heads
            )
        }
        let d = Dims {
            batch: b,
            tq: t,
            tk: t,
            heads: self.0.heads,
            hd: w / self.0.heads,
        };
        Ok((d, [0, w, 2 * w].map(|offset| Part { offset, width: w3 })))
    }
}

impl CustomOp1 for PackedOp {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (d, [qp, kp, vp]) = self.dims_parts(l.dims())?;
        let qkv = f32s(s, l)?;
        let ctx = self.0.forward(d, (qkv, qp), (qkv, kp), (qkv, vp));
        Ok((
            CpuStorage::F32(ctx),
            Shape::from((d.batch, d.tq, d.heads * d.hd)),
        ))
    }

    fn bwd(&self, qkv: &Tensor, _ctx: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (d, [qp, kp, vp]) = self.dims_parts(qkv.dims())?;
        let (xc, gc) = (qkv.contiguous()?, grad.contiguous()?);
        let x = borrow(&xc)?;
        let mut dx = vec![0f32; qkv.elem_count()];
        let out = Shared(dx.as_mut_ptr());
        self.0
            .backward(d, (&x, qp), (&x, kp), (&x, vp), &borrow(&gc)?, [out; 3])?;
        Ok(Some(tensor(dx, qkv.shape())?))
    }
}

fn op(heads: usize, scale: f64, mask: Option<&Tensor>, dropout: &Dropout) -> Result<AttentionOp> {
    let mask = match mask {
        Some(m) => Some((m.flatten_all()?.to_vec1::<f32>()?, m.dim(0)? > 1)),
        None => None,
    };
    Ok(AttentionOp {
        heads,
        scale: scale as f32,
        mask,
        dropout: dropout.draw(|s| s.attention),
        probs: OnceLock::new(),
    })
}

/// `softmax(scale · Q Kᵀ + mask) V`, heads side by side, for `q` `[B, Tq, D]` over `k`
/// and `v` `[B, Tk, D]`, f32 on the CPU. `mask` is additive, `[B or 1, 1, Tq, Tk]`;
/// `dropout`'s attention rate applies to the probabilities (when on).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    mask: Option<&Tensor>,
    dropout: &Dropout,
) -> Result<Tensor> {
    if let Some(m) = mask {
        let ((b, tq, _), tk) = (q.dims3()?, k.dim(1)?);
        if m.dims() != [b, 1, tq, tk] && m.dims() != [1, 1, tq, tk] {
            bail!(
                "an attention mask {:?} for {b} rows of {tq} queries over {tk} keys",
                m.dims()
            )
        }
    }
    let op = op(heads, scale, mask, dropout)?;
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// [`attention`] of every token over every token of one packed `qkv` `[B, T, 3D]`
/// (BLIP's ViT layout: all queries, then keys, then values), without a mask.
pub fn packed_attention(
    qkv: &Tensor,
    heads: usize,
    scale: f64,
    dropout: &Dropout,
) -> Result<Tensor> {
    qkv.contiguous()?
        .apply_op1(PackedOp(op(heads, scale, None, dropout)?))
}
