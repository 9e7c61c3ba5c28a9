//! The pre-norm ViT of `BlipVisionModel` and of transformers' `ViTModel`/`DeiTModel`,
//! with submodules named as BLIP's checkpoints name them
//! (`vision_model.embeddings.patch_embedding`, `encoder.layers.{i}.self_attn.qkv`, ...);
//! ViT's names are mapped onto them where each part is read ([`VisionLayout`]).

use candle_core::Tensor;
use candle_nn::{
    conv2d, layer_norm, linear, linear_b, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder,
};
use kernels::autograd::Dropout;
use kernels::packed::Scheme;
use kernels::Dense;

use crate::{Error, Result, VisionConfig, VisionLayout};

/// Class token(s), patch projection and learned position embeddings.
struct Embeddings {
    /// The class token, then DeiT's distillation token: `[1, P, D]`.
    class_embedding: Tensor,
    patch_embedding: Conv2d,
    position_embedding: Tensor,
}

impl Embeddings {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let conv_cfg = Conv2dConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        let (class, patch, position) = match cfg.layout {
            VisionLayout::Blip => ("class_embedding", "patch_embedding", "position_embedding"),
            VisionLayout::Vit => (
                "cls_token",
                "patch_embeddings.projection",
                "position_embeddings",
            ),
        };
        let mut class_embedding = vb.get((1, 1, d), class)?;
        if cfg.distillation_token {
            let distillation = vb.get((1, 1, d), "distillation_token")?;
            class_embedding = Tensor::cat(&[&class_embedding, &distillation], 1)?;
        }
        Ok(Self {
            class_embedding,
            patch_embedding: conv2d(3, d, cfg.patch_size, conv_cfg, vb.pp(patch))?,
            position_embedding: vb.get((1, cfg.num_positions(), d), position)?,
        })
    }

    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixel_values.dims4()?;
        // The patches do not overlap (stride = kernel), so the convolution is one product
        // of every flattened patch [c, i, j] with the flattened kernels: a linear layer,
        // which runs on the kernels (and under autograd needs no input gradient).
        let kernel = self.patch_embedding.weight();
        let (d, p) = (kernel.dim(0)?, kernel.dim(2)?);
        let (gh, gw) = (h / p, w / p);
        let cols = pixel_values
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b * gh * gw, c * p * p))?;
        let weight = kernel.reshape((d, c * p * p))?;
        let patches = kernels::linear_op(&weight, self.patch_embedding.bias(), &cols, None, false)?
            .reshape((b, gh * gw, d))?;
        let class = self
            .class_embedding
            .expand((b, self.class_embedding.dim(1)?, d))?;
        let tokens = Tensor::cat(&[&class, &patches], 1)?;
        Ok(tokens.broadcast_add(&self.position_embedding)?)
    }
}

/// ViT's separate `query`, `key` and `value` (under `attention.attention`) as one
/// fused projection, rows in BLIP's `qkv` order.
fn fused_qkv(cfg: &VisionConfig, vb: VarBuilder) -> Result<Linear> {
    let d = cfg.hidden_size;
    let parts = ["query", "key", "value"]
        .map(|name| linear_b(d, d, cfg.qkv_bias, vb.pp(name)))
        .into_iter()
        .collect::<candle_core::Result<Vec<_>>>()?;
    let weight = Tensor::cat(&parts.iter().map(|l| l.weight()).collect::<Vec<_>>(), 0)?;
    let bias = parts
        .iter()
        .map(|l| l.bias().cloned())
        .collect::<Option<Vec<_>>>()
        .map(|b| Tensor::cat(&b, 0))
        .transpose()?;
    Ok(Linear::new(weight, bias))
}

/// Multi-head self-attention with one fused `qkv` projection.
struct Attention {
    qkv: Dense,
    projection: Dense,
    num_heads: usize,
    scale: f64,
    dropout: Dropout,
    /// Products in bf16 on AMX tiles (set with the reduced precisions, where the CPU
    /// has them).
    bf16_products: bool,
}

impl Attention {
    fn new(cfg: &VisionConfig, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let d = cfg.hidden_size;
        let (qkv, projection) = match cfg.layout {
            VisionLayout::Blip => (linear(d, 3 * d, vb.pp("qkv"))?, vb.pp("projection")),
            VisionLayout::Vit => (fused_qkv(cfg, vb.pp("attention"))?, vb.pp("output.dense")),
        };
        Ok(Self {
            qkv: qkv.into(),
            projection: linear(d, d, projection)?.into(),
            num_heads: cfg.num_attention_heads,
            scale: (cfg.head_dim() as f64).powf(-0.5),
            dropout: dropout.clone(),
            bf16_products: false,
        })
    }

    /// `x + projection(attention(x))` for the block's normalised input `h`.
    fn forward(&self, h: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = h.dims3()?;
        let qkv = self.qkv.forward(h, None, false)?;
        let ctx = match kernels::cpu_f32(&qkv).filter(|_| kernels::inference_on_cpu(&[&qkv])) {
            Some(packed) => {
                let attend = if self.bf16_products {
                    kernels::attention::packed_self_attention_bf16
                } else {
                    kernels::attention::packed_self_attention
                };
                kernels::from_vec(
                    attend(&packed, (b, t), self.num_heads, self.scale as f32),
                    (b, t, d),
                )?
            }
            None if kernels::autograd::on_cpu(&[&qkv]) => kernels::autograd::packed_attention(
                &qkv,
                self.num_heads,
                self.scale,
                &self.dropout,
            )?,
            None => {
                let hd = d / self.num_heads;
                // [B, T, 3D] -> [3, B, H, T, hd]
                let qkv = qkv
                    .reshape((b, t, 3, self.num_heads, hd))?
                    .permute((2, 0, 3, 1, 4))?;
                let q = (qkv.get(0)?.contiguous()? * self.scale)?;
                let k = qkv.get(1)?.contiguous()?;
                let v = qkv.get(2)?.contiguous()?;
                let probs = kernels::softmax_last_dim(&q.matmul(&k.t()?)?)?;
                let probs = self.dropout.attention(&probs)?;
                probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?
            }
        };
        Ok(self.projection.forward(&ctx, Some(x), false)?)
    }
}

struct Mlp {
    fc1: Dense,
    fc2: Dense,
}

impl Mlp {
    /// `vb` is the block's (ViT's MLP is `intermediate.dense` and `output.dense` there).
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (fc1, fc2) = match cfg.layout {
            VisionLayout::Blip => (vb.pp("mlp.fc1"), vb.pp("mlp.fc2")),
            VisionLayout::Vit => (vb.pp("intermediate.dense"), vb.pp("output.dense")),
        };
        Ok(Self {
            fc1: linear(cfg.hidden_size, cfg.intermediate_size, fc1)?.into(),
            fc2: linear(cfg.intermediate_size, cfg.hidden_size, fc2)?.into(),
        })
    }

    /// `x + fc2(gelu(fc1(h)))` for the block's normalised input `h`.
    fn forward(&self, h: &Tensor, x: &Tensor) -> Result<Tensor> {
        let f = self.fc1.forward(h, None, true)?;
        Ok(self.fc2.forward(&f, Some(x), false)?)
    }
}

/// Pre-norm transformer block.
struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    fn new(cfg: &VisionConfig, vb: VarBuilder, dropout: &Dropout) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let (attention, norm1, norm2) = match cfg.layout {
            VisionLayout::Blip => ("self_attn", "layer_norm1", "layer_norm2"),
            VisionLayout::Vit => ("attention", "layernorm_before", "layernorm_after"),
        };
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp(attention), dropout)?,
            layer_norm1: layer_norm(d, eps, vb.pp(norm1))?,
            mlp: Mlp::new(cfg, vb.clone())?,
            layer_norm2: layer_norm(d, eps, vb.pp(norm2))?,
        })
    }

    fn pack(&mut self, scheme: Scheme, head_dim: usize) -> Result<()> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        for d in [&mut a.qkv, &mut a.projection, &mut m.fc1, &mut m.fc2] {
            d.pack(scheme)?;
        }
        a.bf16_products = kernels::attention::bf16_tiles_serve(head_dim);
        Ok(())
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self
            .self_attn
            .forward(&kernels::layer_norm(&self.layer_norm1, x)?, x)?;
        self.mlp
            .forward(&kernels::layer_norm(&self.layer_norm2, &x)?, &x)
    }
}

/// `BlipVisionModel`: load it with `vb.pp("vision_model")` on a full BLIP checkpoint
/// (`vb.pp("encoder")` on a `VisionEncoderDecoderModel`'s, with [`VisionLayout::Vit`]).
pub struct VisionModel {
    dropout: Dropout,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    cfg: VisionConfig,
}

impl VisionModel {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        Self::new_packed(cfg, vb, None)
    }

    /// [`VisionModel::new`], packing each block's linear layers in `scheme` as soon as
    /// the block is read, so that the f32 weights of one block at most are held at a
    /// time (see [`VisionModel::reduce_precision`]).
    pub fn new_packed(cfg: &VisionConfig, vb: VarBuilder, scheme: Option<Scheme>) -> Result<Self> {
        cfg.validate().map_err(Error::Config)?;
        if cfg.hidden_act != "gelu" {
            return Err(Error::Config(format!(
                "vision_config.hidden_act {:?} is not supported (BLIP and ViT use \"gelu\", exact erf GELU)",
                cfg.hidden_act
            )));
        }
        let dropout = Dropout::new(0.0, cfg.attention_dropout);
        let (layer_prefix, final_norm) = match cfg.layout {
            VisionLayout::Blip => ("encoder.layers", "post_layernorm"),
            VisionLayout::Vit => ("encoder.layer", "layernorm"),
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let mut layer =
                    EncoderLayer::new(cfg, vb.pp(format!("{layer_prefix}.{i}")), &dropout)?;
                if let Some(scheme) = scheme {
                    layer.pack(scheme, cfg.head_dim())?;
                }
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            dropout,
            embeddings: Embeddings::new(cfg, vb.pp("embeddings"))?,
            layers,
            post_layernorm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp(final_norm))?,
            cfg: cfg.clone(),
        })
    }

    /// Packs the blocks' linear layers (attention and MLP) in `scheme` for inference on
    /// the CPU, and where the CPU has AMX-BF16 tiles, runs the attention's two products
    /// in bf16 on them; the patch embedding, LayerNorms, softmax and the residual stream
    /// stay f32. Training needs the f32 layers.
    pub fn reduce_precision(&mut self, scheme: Scheme) -> Result<()> {
        let head_dim = self.cfg.head_dim();
        self.layers
            .iter_mut()
            .try_for_each(|layer| layer.pack(scheme, head_dim))
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// The attention dropout (`attention_dropout`), off until training turns it on.
    pub fn dropout(&self) -> &Dropout {
        &self.dropout
    }

    /// `[B, 3, S, S]` pixels to `[B, P + N, D]` tokens after the post-layernorm
    /// (transformers' `last_hidden_state`, which the decoder cross-attends to).
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = pixel_values.dims4()?;
        let s = self.cfg.image_size;
        if (c, h, w) != (3, s, s) {
            return Err(Error::Config(format!(
                "pixel_values are [_, {c}, {h}, {w}] but the model takes [_, 3, {s}, {s}]"
            )));
        }
        kernels::on_workers(|| {
            let mut x = self.embeddings.forward(pixel_values)?;
            for layer in &self.layers {
                x = layer.forward(&x)?;
            }
            Ok(kernels::layer_norm(&self.post_layernorm, &x)?)
        })
    }
}
