//! `BlipTextLMHeadModel`, with submodules named as the checkpoint names them
//! (`bert.embeddings`, `bert.encoder.layer.{i}.attention.self.query`, `cls.predictions`, ...).
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

use crate::{Error, Result, TextConfig};

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
    layer_norm: LayerNorm,
    dropout: Dropout,
}

impl Embeddings {
    fn new(cfg: &TextConfig, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            dropout: dropout.clone(),
            word_embeddings: embedding(cfg.vocab_size, d, vb.pp("word_embeddings"))?,
            position_embeddings: embedding(
                cfg.max_position_embeddings,
                d,
                vb.pp("position_embeddings"),
            )?,
            layer_norm: layer_norm(d, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, past_len: usize) -> Result<Tensor> {
        let t = input_ids.dim(1)?;
        let positions = Tensor::arange(past_len as u32, (past_len + t) as u32, input_ids.device())?;
        let x = self
            .word_embeddings
            .forward(input_ids)?
            .broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        Ok(self
            .dropout
            .hidden(&kernels::layer_norm(&self.layer_norm, &x)?)?)
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

/// Query/key/value projections of one attention block (`attention.self` or
/// `crossattention.self`), and the dense + residual LayerNorm after it.
struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    dense: Dense,
    layer_norm: LayerNorm,
    heads: usize,
    scale: f64,
    dropout: Dropout,
}

impl Attention {
    fn new(cfg: &TextConfig, kv_width: usize, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let d = cfg.hidden_size;
        let s = vb.pp("self");
        let o = vb.pp("output");
        Ok(Self {
            query: linear_layer(d, d, s.pp("query"))?,
            key: linear_layer(kv_width, d, s.pp("key"))?,
            value: linear_layer(kv_width, d, s.pp("value"))?,
            dense: linear_layer(d, d, o.pp("dense"))?,
            layer_norm: layer_norm(d, cfg.layer_norm_eps, o.pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            scale: 1.0 / (cfg.head_dim() as f64).sqrt(),
            dropout: dropout.clone(),
        })
    }

    fn output(&self, ctx: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let y = dropout_then_residual(&self.dropout, &self.dense, ctx, residual)?;
        Ok(kernels::layer_norm(&self.layer_norm, &y)?)
    }

    /// Causal self-attention over the cached positions plus this step's.
    fn forward_self(
        &self,
        x: &Tensor,
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
            return Ok((self.output(&ctx, x)?, kv));
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
        Ok((self.output(&ctx, x)?, (k, v)))
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

    /// Cross-attention of `R = B*G` rows over their images' keys and values; also
    /// returns the probabilities `[R, H, T, N]` when asked.
    fn forward_cross(
        &self,
        x: &Tensor,
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
                return Ok((self.output(&ctx, x)?, None));
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
        Ok((self.output(&ctx, x)?, probs))
    }
}

struct Layer {
    attention: Attention,
    crossattention: Attention,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
    dropout: Dropout,
}

impl Layer {
    fn new(cfg: &TextConfig, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: Attention::new(cfg, d, vb.pp("attention"), dropout)?,
            crossattention: Attention::new(
                cfg,
                cfg.cross_width(),
                vb.pp("crossattention"),
                dropout,
            )?,
            intermediate: linear_layer(d, i, vb.pp("intermediate.dense"))?,
            output: linear_layer(i, d, vb.pp("output.dense"))?,
            output_norm: layer_norm(d, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
            dropout: dropout.clone(),
        })
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

/// The LM head: dense, GELU, LayerNorm, then the (tied) word embeddings plus a bias.
struct LmHead {
    dense: Dense,
    layer_norm: LayerNorm,
    /// The tied word embeddings with `cls.predictions.bias`.
    decoder: Dense,
    /// The same in f32 (shared with the embeddings when tied), to rescore a reduced-
    /// precision decoder's best tokens exactly.
    exact: Linear,
}

/// Tokens per row whose reduced-precision logits are recomputed in f32.
const RESCORED: usize = 16;

impl LmHead {
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
            dense: linear_layer(d, d, p.pp("transform.dense"))?,
            layer_norm: layer_norm(d, cfg.layer_norm_eps, p.pp("transform.LayerNorm"))?,
            decoder: Linear::new(decoder.clone(), Some(bias.clone())).into(),
            exact: Linear::new(decoder, Some(bias)),
        })
    }

    fn pack(&mut self, scheme: Scheme) -> Result<()> {
        self.dense.pack(scheme)?;
        Ok(self.decoder.pack(scheme)?)
    }

    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = kernels::layer_norm(&self.layer_norm, &self.dense.forward(hidden, None, true)?)?;
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
    embeddings: Embeddings,
    layers: Vec<Layer>,
    cls: LmHead,
    cfg: TextConfig,
}

impl TextDecoder {
    /// Loads `BlipTextLMHeadModel`: pass `vb.pp("text_decoder")` on a full BLIP checkpoint.
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        Self::new_packed(cfg, vb, None)
    }

    /// [`TextDecoder::new`], packing each layer as soon as it is read, so that the f32
    /// weights of one layer at most are held at a time (see
    /// [`TextDecoder::reduce_precision`]).
    pub fn new_packed(cfg: &TextConfig, vb: VarBuilder, packing: Option<&Packing>) -> Result<Self> {
        cfg.validate().map_err(Error::Config)?;
        let bert = vb.pp("bert");
        let dropout = Dropout::new(cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob);
        let embeddings = Embeddings::new(cfg, bert.pp("embeddings"), &dropout)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let mut layer = Layer::new(cfg, bert.pp(format!("encoder.layer.{i}")), &dropout)?;
                if let Some(p) = packing {
                    layer.pack(p)?;
                }
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut cls = LmHead::new(cfg, vb.pp("cls"), embeddings.word_embeddings.embeddings())?;
        if let Some(p) = packing {
            cls.pack(p.step)?;
        }
        Ok(Self {
            image_cache: packing.and_then(|p| p.cache),
            dropout,
            embeddings,
            layers,
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

    /// Projects image tokens `[B, N, encoder_hidden_size]` to every layer's
    /// cross-attention keys and values, once per image.
    pub fn cross_kv(&self, image_embeds: &Tensor) -> Result<CrossKv> {
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
            let (h, kv) = layer
                .attention
                .forward_self(&x, past_kv.as_ref(), mask.as_ref())?;
            grown.push(Some(kv));
            let (h, probs) = layer
                .crossattention
                .forward_cross(&h, image_kv, output_attentions)?;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
            let ff = layer.intermediate.forward(&h, None, true)?;
            let y = dropout_then_residual(&layer.dropout, &layer.output, &ff, &h)?;
            x = kernels::layer_norm(&layer.output_norm, &y)?;
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
