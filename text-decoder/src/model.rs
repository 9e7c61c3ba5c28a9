//! `BlipTextLMHeadModel`, with submodules named as the checkpoint names them
//! (`bert.embeddings`, `bert.encoder.layer.{i}.attention.self.query`, `cls.predictions`, ...),
//! and the decoders of transformers' `VisionEncoderDecoderModel` (GPT-2, TrOCR) in the
//! same structs, their names mapped where each part is read ([`DecoderFamily`]).
//!
//! Rows of a decoder batch are grouped by image: with `B` images in the cross-attention
//! cache and `R = B * G` rows, rows `i*G .. (i+1)*G` all read image `i`. Cross-attention
//! then stacks those `G` rows' queries against the one copy of the image's keys and
//! values, so beams share them without any copy.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, Linear, VarBuilder};
use kernels::autograd::Dropout;
use kernels::cached_kv::{CachedKv, KvType};
use kernels::packed::Scheme;
use kernels::Dense;

use crate::{DecoderFamily, Error, Result, TextConfig};

/// Cross-attention of a few queries per image and head on the CPU kernels: `q`
/// `[B, H, M, hd]`, keys `[B, H, hd, N]`, values `[B, H, N, hd]` to probabilities
/// `[B, H, M, N]` and context `[B, H, M, hd]`. `None` off the CPU, under autograd or
/// with more queries than the kernel takes.
fn few_queries(q: &Tensor, k_t: &Tensor, v: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    let (b, h, m, hd) = q.dims4()?;
    let n = v.dim(2)?;
    if m > kernels::attention::MAX_QUERIES || !kernels::inference_on_cpu(&[q, k_t, v]) {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (Some(qs), Some(ks), Some(vs)) = (
        kernels::cpu_f32(&q),
        kernels::cpu_f32(k_t),
        kernels::cpu_f32(v),
    ) else {
        return Ok(None);
    };
    let (probs, ctx) = kernels::attention::few_queries(&qs, &ks, &vs, (b * h, m, hd));
    Ok(Some((
        kernels::from_vec(probs, (b, h, m, n))?,
        kernels::from_vec(ctx, (b, h, m, hd))?,
    )))
}

/// [`few_queries`] over a reduced-precision cache.
fn cached_few_queries(q: &Tensor, kv: &CachedKv) -> Result<Option<(Tensor, Tensor)>> {
    let (b, h, m, hd) = q.dims4()?;
    let n = kv.dims().3;
    if m > kernels::attention::MAX_QUERIES || !kernels::inference_on_cpu(&[q]) {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let Some(qs) = kernels::cpu_f32(&q) else {
        return Ok(None);
    };
    let (probs, ctx) = kv.few_queries(&qs, m);
    Ok(Some((
        kernels::from_vec(probs, (b, h, m, n))?,
        kernels::from_vec(ctx, (b, h, m, hd))?,
    )))
}

/// Added to the scores of keys a query may not see.
const MASKED: f32 = -1e30;

struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// Where position 0's row is: TrOCR's learned positions start at row 2.
    position_offset: usize,
    /// The token embeddings are multiplied by this (TrOCR's `scale_embedding`).
    scale: f64,
    layer_norm: Option<LayerNorm>,
    dropout: Dropout,
}

impl Embeddings {
    /// `vb`: BLIP's `bert.embeddings`, GPT-2's `transformer`, TrOCR's `model.decoder`.
    fn new(cfg: &TextConfig, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let (d, positions) = (cfg.hidden_size, cfg.max_position_embeddings);
        let eps = cfg.layer_norm_eps;
        let (words, position, offset, scale, norm) = match cfg.family {
            DecoderFamily::Blip => (
                "word_embeddings",
                "position_embeddings",
                0,
                1.0,
                Some("LayerNorm"),
            ),
            DecoderFamily::Gpt2 => ("wte", "wpe", 0, 1.0, None),
            DecoderFamily::TrOcr {
                embed_scale,
                layernorm_embedding,
                learned_positions,
            } => {
                let offset = if learned_positions {
                    2
                } else {
                    cfg.pad_token_id as usize + 1
                };
                (
                    "embed_tokens",
                    "embed_positions",
                    offset,
                    embed_scale,
                    layernorm_embedding.then_some("layernorm_embedding"),
                )
            }
        };
        let position_embeddings = match cfg.family {
            DecoderFamily::TrOcr {
                learned_positions: false,
                ..
            } => {
                let table = sinusoids(positions + offset, d, cfg.pad_token_id as usize);
                Embedding::new(
                    Tensor::from_vec(table, (positions + offset, d), vb.device())?,
                    d,
                )
            }
            _ => embedding(positions + offset, d, vb.pp(position))?,
        };
        Ok(Self {
            dropout: dropout.clone(),
            word_embeddings: embedding(cfg.vocab_size, d, vb.pp(words))?,
            position_embeddings,
            position_offset: offset,
            scale,
            layer_norm: norm.map(|n| layer_norm(d, eps, vb.pp(n))).transpose()?,
        })
    }

    fn forward(&self, input_ids: &Tensor, past_len: usize) -> Result<Tensor> {
        let t = input_ids.dim(1)?;
        let first = (past_len + self.position_offset) as u32;
        let positions = Tensor::arange(first, first + t as u32, input_ids.device())?;
        let mut words = self.word_embeddings.forward(input_ids)?;
        if self.scale != 1.0 {
            words = (words * self.scale)?;
        }
        let x = words.broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        let x = match &self.layer_norm {
            Some(norm) => kernels::layer_norm(norm, &x)?,
            None => x,
        };
        Ok(self.dropout.hidden(&x)?)
    }
}

/// fairseq's sinusoidal positions, as TrOCR computes them in f32: `rows x d`, the sines
/// of each position times `exp(-i ln(10000) / (d/2 - 1))` then their cosines, a zero
/// column where `d` is odd, and the padding row zero.
fn sinusoids(rows: usize, d: usize, padding_idx: usize) -> Vec<f32> {
    let half = d / 2;
    let step = (10000f64.ln() / (half as f64 - 1.0)) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut table = vec![0f32; rows * d];
    for (pos, row) in table.chunks_mut(d).enumerate() {
        if pos == padding_idx {
            continue;
        }
        for (i, f) in freqs.iter().enumerate() {
            let angle = pos as f32 * f;
            row[i] = angle.sin();
            row[half + i] = angle.cos();
        }
    }
    table
}

/// The MLP's activation (`hidden_act`, GPT-2's and TrOCR's `activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Exact (erf) GELU, fused into the product.
    Gelu,
    /// The tanh approximation (`gelu_new`, GPT-2's).
    GeluTanh,
    Relu,
}

impl Activation {
    pub(crate) fn of(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// `act(layer(x))`.
    fn after(self, layer: &Dense, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Gelu => layer.forward(x, None, true)?,
            Self::GeluTanh => layer.forward(x, None, false)?.gelu()?,
            Self::Relu => layer.forward(x, None, false)?.relu()?,
        })
    }
}

/// `residual + dropout(layer(x))`; the residual is folded into the product when
/// dropout is off.
fn dropout_then_residual(
    dropout: &Dropout,
    layer: &Dense,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    if dropout.is_on() {
        Ok((dropout.hidden(&layer.forward(x, None, false)?)? + residual)?)
    } else {
        Ok(layer.forward(x, Some(residual), false)?)
    }
}

/// Whether attention runs as one differentiable op: autograd follows one of `xs`, on
/// the CPU.
fn under_autograd(xs: &[&Tensor]) -> bool {
    xs.iter().any(|x| x.track_op()) && kernels::autograd::on_cpu(xs)
}

/// One layer's cross-attention keys and values for a batch of images.
#[derive(Clone)]
enum ImageKv {
    /// Keys transposed to `[B, H, hd, N]` (the layout the score matmul runs fastest on,
    /// paid once per image instead of at every step) and values `[B, H, N, hd]`.
    Heads(Tensor, Tensor),
    /// Keys and values `[B, N, D]` as projected, for the attention op under autograd.
    Rows(Tensor, Tensor),
    /// As `Heads`, rounded to bf16 or int8 (a reduced-precision decoder's).
    Cached(Arc<CachedKv>),
}

impl ImageKv {
    /// Keys transposed `[B, H, hd, N]` and values `[B, H, N, hd]`, split here when kept
    /// as rows.
    fn heads(&self, heads: usize) -> Result<(Tensor, Tensor)> {
        match self {
            Self::Heads(k_t, v) => Ok((k_t.clone(), v.clone())),
            Self::Cached(c) => {
                let (b, h, hd, n) = c.dims();
                let (k_t, v) = c.to_f32();
                Ok((
                    kernels::from_vec(k_t, (b, h, hd, n))?,
                    kernels::from_vec(v, (b, h, n, hd))?,
                ))
            }
            Self::Rows(k, v) => Ok((
                split_heads(k, heads)?.t()?.contiguous()?,
                split_heads(v, heads)?,
            )),
        }
    }

    fn num_images(&self) -> Result<usize> {
        match self {
            Self::Heads(k, _) | Self::Rows(k, _) => Ok(k.dim(0)?),
            Self::Cached(c) => Ok(c.dims().0),
        }
    }

    fn select(&self, indices: &Tensor) -> Result<Self> {
        let pick = |t: &Tensor| t.index_select(indices, 0);
        Ok(match self {
            Self::Heads(k, v) => Self::Heads(pick(k)?, pick(v)?),
            Self::Rows(k, v) => Self::Rows(pick(k)?, pick(v)?),
            Self::Cached(c) => {
                let images: Vec<usize> = indices
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|i| i as usize)
                    .collect();
                Self::Cached(Arc::new(c.select(&images)))
            }
        })
    }
}

/// `[R, T, H*hd]` to `[R, H, T, hd]`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (r, t, d) = x.dims3()?;
    Ok(x.reshape((r, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// `[R, H, T, hd]` to `[R, T, H*hd]`.
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (r, h, t, hd) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((r, t, h * hd))?)
}

/// How [`TextDecoder::reduce_precision`] packs the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packing {
    /// Every linear layer run once per generated token (a few rows each).
    pub step: Scheme,
    /// The cross-attention's key and value projections of the image tokens (many rows,
    /// once per image); f32 when `None`.
    pub image_kv: Option<Scheme>,
    /// How the projected keys and values are kept while decoding; f32 when `None`.
    pub cache: Option<KvType>,
}

/// A checkpoint's linear layer, f32 until [`TextDecoder::reduce_precision`].
fn linear_layer(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Dense> {
    Ok(candle_nn::linear(in_dim, out_dim, vb)?.into())
}

/// GPT-2's `Conv1D` layers: one weight stored `(in, out)` and a bias, of which each of
/// `outs` takes its share of the outputs in turn (`c_attn` holds query, key and value).
fn conv1d_layers(in_dim: usize, outs: &[usize], vb: VarBuilder) -> Result<Vec<Dense>> {
    let total = outs.iter().sum::<usize>();
    // GPT-2's initialisation, for models built without a checkpoint.
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    };
    let weight = vb.get_with_hints((in_dim, total), "weight", init)?.t()?;
    let bias = vb.get(total, "bias")?;
    let mut start = 0;
    let mut layers = Vec::new();
    for &n in outs {
        let w = weight.narrow(0, start, n)?.contiguous()?;
        layers.push(Linear::new(w, Some(bias.narrow(0, start, n)?)).into());
        start += n;
    }
    Ok(layers)
}

/// Query/key/value projections of one attention block, the output projection, and the
/// post-norm families' residual LayerNorm after it.
struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    dense: Dense,
    layer_norm: Option<LayerNorm>,
    heads: usize,
    scale: f64,
    dropout: Dropout,
}

impl Attention {
    /// BLIP's `attention` or `crossattention` (`self.{query,key,value}`,
    /// `output.{dense,LayerNorm}`).
    fn new(cfg: &TextConfig, kv_width: usize, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let d = cfg.hidden_size;
        let s = vb.pp("self");
        let o = vb.pp("output");
        Ok(Self::of(
            cfg,
            [
                linear_layer(d, d, s.pp("query"))?,
                linear_layer(kv_width, d, s.pp("key"))?,
                linear_layer(kv_width, d, s.pp("value"))?,
                linear_layer(d, d, o.pp("dense"))?,
            ],
            Some(layer_norm(d, cfg.layer_norm_eps, o.pp("LayerNorm"))?),
            dropout,
        ))
    }

    /// GPT-2's `attn` (`c_attn` holding query, key and value) or `crossattention`
    /// (`q_attn`, and `c_attn` holding key and value); `c_proj` after either.
    fn gpt2(cfg: &TextConfig, cross: bool, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let d = cfg.hidden_size;
        let mut qkv = if cross {
            let mut q = conv1d_layers(d, &[d], vb.pp("q_attn"))?;
            q.extend(conv1d_layers(d, &[d, d], vb.pp("c_attn"))?);
            q
        } else {
            conv1d_layers(d, &[d, d, d], vb.pp("c_attn"))?
        };
        let dense = conv1d_layers(d, &[d], vb.pp("c_proj"))?.remove(0);
        let (v, k, q) = (qkv.remove(2), qkv.remove(1), qkv.remove(0));
        Ok(Self::of(cfg, [q, k, v, dense], None, dropout))
    }

    /// TrOCR's `self_attn` or `encoder_attn` (`{q,k,v,out}_proj`) with its LayerNorm.
    fn trocr(
        cfg: &TextConfig,
        kv_width: usize,
        vb: VarBuilder,
        norm: VarBuilder,
        dropout: &Dropout,
    ) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self::of(
            cfg,
            [
                linear_layer(d, d, vb.pp("q_proj"))?,
                linear_layer(kv_width, d, vb.pp("k_proj"))?,
                linear_layer(kv_width, d, vb.pp("v_proj"))?,
                linear_layer(d, d, vb.pp("out_proj"))?,
            ],
            Some(layer_norm(d, cfg.layer_norm_eps, norm)?),
            dropout,
        ))
    }

    fn of(
        cfg: &TextConfig,
        [query, key, value, dense]: [Dense; 4],
        layer_norm: Option<LayerNorm>,
        dropout: &Dropout,
    ) -> Self {
        Self {
            query,
            key,
            value,
            dense,
            layer_norm,
            heads: cfg.num_attention_heads,
            scale: 1.0 / (cfg.head_dim() as f64).sqrt(),
            dropout: dropout.clone(),
        }
    }

    fn output(&self, ctx: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let y = dropout_then_residual(&self.dropout, &self.dense, ctx, residual)?;
        Ok(match &self.layer_norm {
            Some(norm) => kernels::layer_norm(norm, &y)?,
            None => y,
        })
    }

    /// Causal self-attention over the cached positions plus this step's, for the
    /// block's input `x` (normalised first in pre-norm families) and its `residual`.
    fn forward_self(
        &self,
        x: &Tensor,
        residual: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let q = self.query.forward(x, None, false)?;
        let k = self.key.forward(x, None, false)?;
        let v = self.value.forward(x, None, false)?;
        if past.is_none() && under_autograd(&[&q, &k, &v]) {
            let ctx = kernels::autograd::attention(
                &q,
                &k,
                &v,
                self.heads,
                self.scale,
                mask,
                &self.dropout,
            )?;
            let kv = (split_heads(&k, self.heads)?, split_heads(&v, self.heads)?);
            return Ok((self.output(&ctx, residual)?, kv));
        }
        let q = (split_heads(&q, self.heads)? * self.scale)?;
        let mut k = split_heads(&k, self.heads)?;
        let mut v = split_heads(&v, self.heads)?;
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = self
            .dropout
            .attention(&kernels::softmax_last_dim(&scores)?)?;
        let ctx = merge_heads(&probs.matmul(&v)?)?;
        Ok((self.output(&ctx, residual)?, (k, v)))
    }

    /// The image's keys and values, split into heads for decoding steps, or as
    /// projected under autograd.
    fn image_kv(&self, image_embeds: &Tensor, cache: Option<KvType>) -> Result<ImageKv> {
        let k = self.key.forward(image_embeds, None, false)?;
        let v = self.value.forward(image_embeds, None, false)?;
        if under_autograd(&[&k, &v]) {
            return Ok(ImageKv::Rows(k, v));
        }
        if let Some(ty) = cache {
            if let (Some(ks), Some(vs)) = (kernels::cpu_f32(&k), kernels::cpu_f32(&v)) {
                let (b, n, _) = k.dims3()?;
                return Ok(ImageKv::Cached(Arc::new(CachedKv::new(
                    &ks,
                    &vs,
                    (b, self.heads, n),
                    ty,
                ))));
            }
        }
        let (k_t, v) = ImageKv::Rows(k, v).heads(self.heads)?;
        Ok(ImageKv::Heads(k_t, v))
    }

    /// Cross-attention of `R = B*G` rows over their images' keys and values, for the
    /// block's input `x` and its `residual`; also returns the probabilities `[R, H, T, N]`
    /// when asked.
    fn forward_cross(
        &self,
        x: &Tensor,
        residual: &Tensor,
        kv: &ImageKv,
        want_probs: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (r, t, d) = x.dims3()?;
        if let ImageKv::Rows(k, v) = kv {
            if !want_probs && k.dim(0)? == r {
                let q = self.query.forward(x, None, false)?;
                let ctx = kernels::autograd::attention(
                    &q,
                    k,
                    v,
                    self.heads,
                    self.scale,
                    None,
                    &self.dropout,
                )?;
                return Ok((self.output(&ctx, residual)?, None));
            }
        }
        let b = kv.num_images()?;
        let g = r / b;
        let hd = d / self.heads;
        // [R, T, D] -> [B, G, T, H, hd] -> [B, H, G*T, hd]: one matmul per image and head.
        let q = (self.query.forward(x, None, false)? * self.scale)?
            .reshape((b, g, t, self.heads, hd))?
            .permute((0, 3, 1, 2, 4))?
            .reshape((b, self.heads, g * t, hd))?;
        let found = match kv {
            ImageKv::Cached(c) => cached_few_queries(&q, c)?,
            _ => None,
        };
        let (probs, ctx) = match found {
            Some(found) => found,
            None => {
                let (k_t, v) = kv.heads(self.heads)?;
                match few_queries(&q, &k_t, &v)? {
                    Some(found) => found,
                    None => {
                        let probs = kernels::softmax_last_dim(&q.matmul(&k_t)?)?;
                        // The probabilities returned are those before dropout, as
                        // transformers'.
                        let ctx = self.dropout.attention(&probs)?.matmul(&v)?;
                        (probs, ctx)
                    }
                }
            }
        };
        let ctx = ctx
            .reshape((b, self.heads, g, t, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((r, t, d))?;
        let probs = if want_probs {
            let n = probs.dim(3)?;
            Some(
                probs
                    .reshape((b, self.heads, g, t, n))?
                    .transpose(1, 2)?
                    .reshape((r, self.heads, t, n))?,
            )
        } else {
            None
        };
        Ok((self.output(&ctx, residual)?, probs))
    }
}

struct Layer {
    attention: Attention,
    crossattention: Attention,
    intermediate: Dense,
    output: Dense,
    activation: Activation,
    /// After the MLP's residual (BLIP's `output.LayerNorm`, TrOCR's `final_layer_norm`).
    output_norm: Option<LayerNorm>,
    /// GPT-2's LayerNorms before the self-attention, cross-attention and MLP (`ln_1`,
    /// `ln_cross_attn`, `ln_2`).
    pre_norms: Option<[LayerNorm; 3]>,
    dropout: Dropout,
}

impl Layer {
    /// Layer `i`, from the decoder's `vb` (`bert`, `transformer` or `model.decoder`).
    fn new(cfg: &TextConfig, i: usize, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let (d, n, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let activation = Activation::of(&cfg.hidden_act)
            .ok_or_else(|| Error::Config(format!("activation {:?}", cfg.hidden_act)))?;
        let norm = |vb: VarBuilder| layer_norm(d, eps, vb);
        Ok(match cfg.family {
            DecoderFamily::Blip => {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                Self {
                    attention: Attention::new(cfg, d, vb.pp("attention"), dropout)?,
                    crossattention: Attention::new(
                        cfg,
                        cfg.cross_width(),
                        vb.pp("crossattention"),
                        dropout,
                    )?,
                    intermediate: linear_layer(d, n, vb.pp("intermediate.dense"))?,
                    output: linear_layer(n, d, vb.pp("output.dense"))?,
                    activation,
                    output_norm: Some(norm(vb.pp("output.LayerNorm"))?),
                    pre_norms: None,
                    dropout: dropout.clone(),
                }
            }
            DecoderFamily::Gpt2 => {
                let vb = vb.pp(format!("h.{i}"));
                let mut mlp = conv1d_layers(d, &[n], vb.pp("mlp.c_fc"))?;
                mlp.extend(conv1d_layers(n, &[d], vb.pp("mlp.c_proj"))?);
                let (output, intermediate) = (mlp.remove(1), mlp.remove(0));
                Self {
                    attention: Attention::gpt2(cfg, false, vb.pp("attn"), dropout)?,
                    crossattention: Attention::gpt2(cfg, true, vb.pp("crossattention"), dropout)?,
                    intermediate,
                    output,
                    activation,
                    output_norm: None,
                    pre_norms: Some([
                        norm(vb.pp("ln_1"))?,
                        norm(vb.pp("ln_cross_attn"))?,
                        norm(vb.pp("ln_2"))?,
                    ]),
                    dropout: dropout.clone(),
                }
            }
            DecoderFamily::TrOcr { .. } => {
                let vb = vb.pp(format!("layers.{i}"));
                Self {
                    attention: Attention::trocr(
                        cfg,
                        d,
                        vb.pp("self_attn"),
                        vb.pp("self_attn_layer_norm"),
                        dropout,
                    )?,
                    crossattention: Attention::trocr(
                        cfg,
                        cfg.cross_width(),
                        vb.pp("encoder_attn"),
                        vb.pp("encoder_attn_layer_norm"),
                        dropout,
                    )?,
                    intermediate: linear_layer(d, n, vb.pp("fc1"))?,
                    output: linear_layer(n, d, vb.pp("fc2"))?,
                    activation,
                    output_norm: Some(norm(vb.pp("final_layer_norm"))?),
                    pre_norms: None,
                    dropout: dropout.clone(),
                }
            }
        })
    }

    /// `x`, or its `i`th pre-norm in the families that have them.
    fn pre_norm(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.pre_norms {
            Some(norms) => kernels::layer_norm(&norms[i], x)?,
            None => x.clone(),
        })
    }

    /// Self-attention (cache grown by this call's positions), cross-attention (with
    /// its probabilities when asked) and the MLP.
    fn forward(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        image_kv: &ImageKv,
        want_probs: bool,
    ) -> Result<(Tensor, (Tensor, Tensor), Option<Tensor>)> {
        let (h, kv) = self
            .attention
            .forward_self(&self.pre_norm(0, x)?, x, past, mask)?;
        let (h, probs) =
            self.crossattention
                .forward_cross(&self.pre_norm(1, &h)?, &h, image_kv, want_probs)?;
        let ff = self
            .activation
            .after(&self.intermediate, &self.pre_norm(2, &h)?)?;
        let y = dropout_then_residual(&self.dropout, &self.output, &ff, &h)?;
        let y = match &self.output_norm {
            Some(norm) => kernels::layer_norm(norm, &y)?,
            None => y,
        };
        Ok((y, kv, probs))
    }
}

impl Layer {
    fn pack(&mut self, packing: &Packing) -> Result<()> {
        let (s, c) = (&mut self.attention, &mut self.crossattention);
        for d in [&mut s.query, &mut s.key, &mut s.value, &mut s.dense] {
            d.pack(packing.step)?;
        }
        c.query.pack(packing.step)?;
        c.dense.pack(packing.step)?;
        if let Some(scheme) = packing.image_kv {
            c.key.pack(scheme)?;
            c.value.pack(scheme)?;
        }
        self.intermediate.pack(packing.step)?;
        Ok(self.output.pack(packing.step)?)
    }
}

/// The LM head: BLIP's dense, GELU and LayerNorm first, then the (tied) word
/// embeddings, with a bias in BLIP's.
struct LmHead {
    /// BLIP's `predictions.transform`.
    transform: Option<(Dense, LayerNorm)>,
    /// The tied word embeddings (with `cls.predictions.bias` in BLIP's).
    decoder: Dense,
    /// The same in f32 (shared with the embeddings when tied), to rescore a reduced-
    /// precision decoder's best tokens exactly.
    exact: Linear,
}

/// Tokens per row whose reduced-precision logits are recomputed in f32.
const RESCORED: usize = 16;

impl LmHead {
    /// BLIP's `cls`.
    fn new(cfg: &TextConfig, vb: VarBuilder, word_embeddings: &Tensor) -> Result<Self> {
        let p = vb.pp("predictions");
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        // transformers ties this weight to the word embeddings and leaves it out of saved files.
        let decoder = if p.contains_tensor("decoder.weight") {
            p.get((v, d), "decoder.weight")?
        } else {
            word_embeddings.clone()
        };
        let bias = if p.contains_tensor("bias") || !p.contains_tensor("decoder.bias") {
            p.get(v, "bias")?
        } else {
            p.get(v, "decoder.bias")?
        };
        Ok(Self {
            transform: Some((
                linear_layer(d, d, p.pp("transform.dense"))?,
                layer_norm(d, cfg.layer_norm_eps, p.pp("transform.LayerNorm"))?,
            )),
            decoder: Linear::new(decoder.clone(), Some(bias.clone())).into(),
            exact: Linear::new(decoder, Some(bias)),
        })
    }

    /// A bias-free projection: `vb.get(name)` where the checkpoint has it (GPT-2's
    /// `lm_head`, TrOCR's `output_projection`), else the tied `word_embeddings`.
    fn untied_or(
        cfg: &TextConfig,
        vb: VarBuilder,
        name: &str,
        word_embeddings: &Tensor,
    ) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        let decoder = if vb.contains_tensor(name) {
            vb.get((v, d), name)?
        } else {
            word_embeddings.clone()
        };
        // The rescoring kernel adds a bias: zeros leave the product as it is.
        let zeros = Tensor::zeros(v, DType::F32, decoder.device())?;
        Ok(Self {
            transform: None,
            decoder: Linear::new(decoder.clone(), None).into(),
            exact: Linear::new(decoder, Some(zeros)),
        })
    }

    fn pack(&mut self, scheme: Scheme) -> Result<()> {
        if let Some((dense, _)) = &mut self.transform {
            dense.pack(scheme)?;
        }
        Ok(self.decoder.pack(scheme)?)
    }

    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = match &self.transform {
            Some((dense, norm)) => kernels::layer_norm(norm, &dense.forward(hidden, None, true)?)?,
            None => hidden.clone(),
        };
        let logits = self.decoder.forward(&h, None, false)?;
        if self.decoder.scheme().is_none() {
            return Ok(logits);
        }
        let h = h.contiguous()?;
        let (Some(hs), Some(w), Some(b)) = (
            kernels::cpu_f32(&h),
            kernels::cpu_f32(self.exact.weight()),
            self.exact.bias().and_then(kernels::cpu_f32),
        ) else {
            return Ok(logits);
        };
        let mut out = logits.flatten_all()?.to_vec1::<f32>()?;
        kernels::packed::rescore_top(&hs, &mut out, &w, &b, RESCORED);
        Ok(kernels::from_vec(out, logits.shape())?)
    }
}

/// The cross-attention keys and values of every layer for a batch of images, computed
/// once from the image tokens.
#[derive(Clone)]
pub struct CrossKv {
    layers: Vec<ImageKv>,
}

impl CrossKv {
    pub fn num_images(&self) -> Result<usize> {
        Ok(self
            .layers
            .first()
            .map(ImageKv::num_images)
            .transpose()?
            .unwrap_or(0))
    }

    /// Keeps the images at `indices` (u32), in that order; repeat an index to give an
    /// image several independent rows.
    pub fn select(&self, indices: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|kv| kv.select(indices))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

/// Self-attention keys and values of every layer, `[R, H, T, hd]`, for the `T`
/// positions seen so far.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the rows at `indices` (u32), in that order: beam reordering and dropping
    /// finished sequences are both this.
    pub fn select(&self, indices: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((
                    k.index_select(indices, 0)?,
                    v.index_select(indices, 0)?,
                ))),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

pub struct DecoderOutput {
    /// Last hidden states `[R, T, D]`, before the LM head.
    pub hidden: Tensor,
    /// The cache grown by this call's `T` positions.
    pub cache: KvCache,
    /// Per layer, cross-attention probabilities `[R, H, T, N]` (when asked for).
    pub cross_attentions: Option<Vec<Tensor>>,
}

pub struct TextDecoder {
    /// How the image's cross-attention keys and values are kept for decoding.
    image_cache: Option<KvType>,
    dropout: Dropout,
    /// `enc_to_dec_proj`: the image tokens to the decoder's width, where they differ.
    image_projection: Option<Dense>,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// GPT-2's `ln_f`.
    final_norm: Option<LayerNorm>,
    cls: LmHead,
    cfg: TextConfig,
}

impl TextDecoder {
    /// Loads `BlipTextLMHeadModel`: pass `vb.pp("text_decoder")` on a full BLIP checkpoint.
    /// For the decoders of a `VisionEncoderDecoderModel` ([`DecoderFamily`]), pass the
    /// whole checkpoint's `vb`: the decoder is under `decoder`, and `enc_to_dec_proj`
    /// (read when [`TextConfig::image_projection`] says so) beside it.
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        Self::new_packed(cfg, vb, None)
    }

    /// [`TextDecoder::new`], packing each layer as soon as it is read, so that the f32
    /// weights of one layer at most are held at a time (see
    /// [`TextDecoder::reduce_precision`]).
    pub fn new_packed(cfg: &TextConfig, vb: VarBuilder, packing: Option<&Packing>) -> Result<Self> {
        cfg.validate().map_err(Error::Config)?;
        let dropout = Dropout::new(cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob);
        // Where the layers are, and where the embeddings are within that.
        let (base, embeddings) = match cfg.family {
            DecoderFamily::Blip => (vb.pp("bert"), Some("embeddings")),
            DecoderFamily::Gpt2 => (vb.pp("decoder.transformer"), None),
            DecoderFamily::TrOcr { .. } => (vb.pp("decoder.model.decoder"), None),
        };
        let embeddings_vb = embeddings.map_or_else(|| base.clone(), |e| base.pp(e));
        let embeddings = Embeddings::new(cfg, embeddings_vb, &dropout)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let mut layer = Layer::new(cfg, i, base.clone(), &dropout)?;
                if let Some(p) = packing {
                    layer.pack(p)?;
                }
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        let words = embeddings.word_embeddings.embeddings();
        let (mut cls, final_norm) = match cfg.family {
            DecoderFamily::Blip => (LmHead::new(cfg, vb.pp("cls"), words)?, None),
            DecoderFamily::Gpt2 => (
                LmHead::untied_or(cfg, vb.pp("decoder"), "lm_head.weight", words)?,
                Some(layer_norm(
                    cfg.hidden_size,
                    cfg.layer_norm_eps,
                    base.pp("ln_f"),
                )?),
            ),
            DecoderFamily::TrOcr { .. } => (
                LmHead::untied_or(cfg, vb.pp("decoder"), "output_projection.weight", words)?,
                None,
            ),
        };
        if let Some(p) = packing {
            cls.pack(p.step)?;
        }
        let image_projection = cfg
            .image_projection
            .map(|width| linear_layer(width, cfg.cross_width(), vb.pp("enc_to_dec_proj")))
            .transpose()?;
        Ok(Self {
            image_cache: packing.and_then(|p| p.cache),
            dropout,
            image_projection,
            embeddings,
            layers,
            final_norm,
            cls,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Dropout at transformers' places (`hidden_dropout_prob` after the embeddings and
    /// each block's dense layer, `attention_probs_dropout_prob` on attention), off
    /// until training turns it on.
    pub fn dropout(&self) -> &Dropout {
        &self.dropout
    }

    pub fn device(&self) -> &Device {
        // The embeddings stay f32 whatever the layers' precision.
        self.embeddings.word_embeddings.embeddings().device()
    }

    /// Packs the linear layers in reduced precision for inference on the CPU, as
    /// `packing` says. Embeddings, LayerNorms and the residual stream stay f32.
    /// Training needs the f32 layers.
    pub fn reduce_precision(&mut self, packing: &Packing) -> Result<()> {
        self.image_cache = packing.cache;
        for layer in &mut self.layers {
            layer.pack(packing)?;
        }
        self.cls.pack(packing.step)
    }

    pub fn empty_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Projects image tokens `[B, N, encoder_hidden_size]` (or, with an
    /// `enc_to_dec_proj`, the encoder's width) to every layer's cross-attention keys and
    /// values, once per image.
    pub fn cross_kv(&self, image_embeds: &Tensor) -> Result<CrossKv> {
        let projected;
        let image_embeds = match &self.image_projection {
            Some(p) => {
                projected = p.forward(image_embeds, None, false)?;
                &projected
            }
            None => image_embeds,
        };
        let layers = self
            .layers
            .iter()
            .map(|l| l.crossattention.image_kv(image_embeds, self.image_cache))
            .collect::<Result<_>>()?;
        Ok(CrossKv { layers })
    }

    /// Runs `input_ids` `[R, T]` (u32) after the cached positions. `attention_mask`
    /// `[R, past + T]` (1 = attend, 0 = padding) is only needed for padded batches.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        cache: &KvCache,
        cross: &CrossKv,
        attention_mask: Option<&Tensor>,
        output_attentions: bool,
    ) -> Result<DecoderOutput> {
        let (r, t) = input_ids.dims2()?;
        let past = cache.len();
        let b = cross.num_images()?;
        if b == 0 || r % b != 0 {
            return Err(Error::Generation(format!(
                "{r} decoder rows cannot be grouped over {b} images"
            )));
        }
        if past + t > self.cfg.max_position_embeddings {
            return Err(Error::Generation(format!(
                "sequence of {} tokens exceeds max_position_embeddings {}",
                past + t,
                self.cfg.max_position_embeddings
            )));
        }
        let mask = self.self_attention_mask(r, t, past, attention_mask, input_ids.device())?;
        let mut x = self.embeddings.forward(input_ids, past)?;
        let mut grown = Vec::with_capacity(self.layers.len());
        let mut attentions = output_attentions.then(Vec::new);
        for ((layer, past_kv), image_kv) in self.layers.iter().zip(&cache.layers).zip(&cross.layers)
        {
            let (y, kv, probs) = layer.forward(
                &x,
                past_kv.as_ref(),
                mask.as_ref(),
                image_kv,
                output_attentions,
            )?;
            grown.push(Some(kv));
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
            x = y;
        }
        if let Some(norm) = &self.final_norm {
            x = kernels::layer_norm(norm, &x)?;
        }
        Ok(DecoderOutput {
            hidden: x,
            cache: KvCache { layers: grown },
            cross_attentions: attentions,
        })
    }

    /// Vocabulary logits `[.., V]` for hidden states `[.., D]`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        self.cls.forward(hidden)
    }

    /// Teacher forcing: logits `[R, T, V]` for whole sequences `input_ids` `[R, T]` over
    /// `image_embeds` `[R, N, D]` (one image per row).
    pub fn logits(
        &self,
        input_ids: &Tensor,
        image_embeds: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cross = self.cross_kv(image_embeds)?;
        let out = self.forward(
            input_ids,
            &self.empty_cache(),
            &cross,
            attention_mask,
            false,
        )?;
        self.lm_head(&out.hidden)
    }

    /// Additive mask `[R or 1, 1, T, past + T]`: causal within this call's positions, and
    /// padding keys hidden. `None` when nothing needs hiding (one new position, no pads).
    fn self_attention_mask(
        &self,
        r: usize,
        t: usize,
        past: usize,
        attention_mask: Option<&Tensor>,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let total = past + t;
        let causal = (t > 1).then(|| {
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..total).map(move |j| if j > past + i { MASKED } else { 0.0 }))
                .collect();
            Tensor::from_vec(m, (1, 1, t, total), device)
        });
        let causal = causal.transpose()?;
        let Some(pad) = attention_mask else {
            return Ok(causal);
        };
        if pad.dims() != [r, total] {
            return Err(Error::Generation(format!(
                "attention_mask is {:?} but the rows and positions are [{r}, {total}]",
                pad.dims()
            )));
        }
        // 1 -> 0, 0 -> MASKED
        let pad =
            ((pad.to_dtype(DType::F32)? - 1.0)? * (-MASKED as f64))?.reshape((r, 1, 1, total))?;
        Ok(Some(match causal {
            Some(c) => c.broadcast_add(&pad)?,
            None => pad,
        }))
    }
}
