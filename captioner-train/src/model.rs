//! A checkpoint's two models built over variables, so that autograd reaches every
//! weight, and the captioning loss of a batch.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use text_decoder::TextDecoder;
use vision_encoder::VisionModel;

use super::loss::caption_loss;
use super::text::TextBatch;
use crate::{Error, Result};
use captioner::checkpoint::{self, CheckpointMeta};

pub struct Trainable {
    pub meta: CheckpointMeta,
    pub varmap: VarMap,
    /// The checkpoint's tensors the models do not read (a ViT's pooler, old GPT-2
    /// causal-mask buffers), saved back unchanged so that the file stays whole.
    pub passengers: HashMap<String, Tensor>,
    pub vision: VisionModel,
    pub decoder: TextDecoder,
    device: Device,
}

impl Trainable {
    /// The models of `meta`'s config over fresh variables (candle-nn's initialisation).
    pub fn new(meta: CheckpointMeta, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let cfg = &meta.config;
        let vision = VisionModel::new(
            &cfg.vision_config,
            checkpoint::encoder_vb(&cfg.vision_config, vb.clone()),
        )?;
        let decoder = TextDecoder::new(
            &cfg.text_config,
            checkpoint::decoder_vb(&cfg.text_config, vb),
        )?;
        Ok(Self {
            meta,
            varmap,
            passengers: HashMap::new(),
            vision,
            decoder,
            device: device.clone(),
        })
    }

    /// A checkpoint directory's models, every weight a variable. The LM head's weight is
    /// the word embeddings' variable, as in transformers.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let mut model = Self::new(CheckpointMeta::load(dir)?, device)?;
        let mut tensors = checkpoint::load_tensors(dir, device)?;
        for (name, var) in model.varmap.data().lock().expect("not poisoned").iter() {
            let t = tensors
                .get(name)
                .ok_or_else(|| Error::file(dir, format!("has no tensor {name}")))?;
            if t.dims() != var.dims() {
                return Err(Error::file(
                    dir,
                    format!(
                        "{name} is {:?}, the config wants {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        {
            let vars = model.varmap.data().lock().expect("not poisoned");
            tensors.retain(|name, _| !vars.contains_key(name));
        }
        model.passengers = tensors;
        Ok(model)
    }

    /// Sets every dropout rate of both models (text hidden states and attention, vision
    /// attention) to `p`, in the config that checkpoints save too.
    pub fn set_dropout(&mut self, p: f64) {
        let cfg = &mut self.meta.config;
        cfg.text_config.hidden_dropout_prob = p;
        cfg.text_config.attention_probs_dropout_prob = p;
        cfg.vision_config.attention_dropout = p;
        self.decoder.dropout().set_rates(p, p);
        self.vision.dropout().set_rates(0.0, p);
    }

    /// The checkpoint's tokenizer.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        tokenizers::Tokenizer::from_bytes(self.meta.tokenizer.tokenizer_json.as_bytes())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Every variable by name, sorted.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut all: Vec<(String, Var)> = self
            .varmap
            .data()
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The variables the optimizer updates: all, or all but the vision encoder's.
    pub fn trainable_vars(&self, freeze_vision: bool) -> Vec<(String, Var)> {
        self.named_vars()
            .into_iter()
            .filter(|(n, _)| !(freeze_vision && self.is_encoders(n)))
            .collect()
    }

    /// Whether the variable named `name` is the vision encoder's.
    fn is_encoders(&self, name: &str) -> bool {
        let prefix = checkpoint::encoder_prefix(&self.meta.config.vision_config);
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Logits `[B, T, V]` of teacher-forced captions over their images. With
    /// `freeze_vision` no gradient reaches the encoder, and it runs on the inference
    /// kernels, which stand aside for tracked variables.
    pub fn logits(&self, pixels: &Tensor, text: &TextBatch, freeze_vision: bool) -> Result<Tensor> {
        let detached;
        let vision = if freeze_vision {
            detached = self.detached_vision()?;
            &detached
        } else {
            &self.vision
        };
        logits(vision, &self.decoder, pixels, text)
    }

    /// The vision encoder over untracked views of its variables (same storage, so it
    /// sees every update); cheap to build, as no weight is copied.
    fn detached_vision(&self) -> Result<VisionModel> {
        let tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(name, _)| self.is_encoders(name))
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &self.device);
        let cfg = &self.meta.config.vision_config;
        Ok(VisionModel::new(cfg, checkpoint::encoder_vb(cfg, vb))?)
    }

    pub fn loss(
        &self,
        pixels: &Tensor,
        text: &TextBatch,
        smoothing: f64,
        freeze_vision: bool,
    ) -> Result<Tensor> {
        caption_loss(
            &self.logits(pixels, text, freeze_vision)?,
            &text.labels,
            smoothing,
        )
    }

    /// Both models again over the same variables (no weight copied), with dropout of
    /// their own: the shards of a batch run on replicas side by side. With
    /// `freeze_vision` the encoder is built as in [`Self::logits`].
    pub fn replica(&self, freeze_vision: bool) -> Result<Replica> {
        let cfg = &self.meta.config;
        let vb = VarBuilder::from_varmap(&self.varmap, DType::F32, &self.device);
        Ok(Replica {
            vision: if freeze_vision {
                self.detached_vision()?
            } else {
                let encoder = checkpoint::encoder_vb(&cfg.vision_config, vb.clone());
                VisionModel::new(&cfg.vision_config, encoder)?
            },
            decoder: TextDecoder::new(
                &cfg.text_config,
                checkpoint::decoder_vb(&cfg.text_config, vb),
            )?,
        })
    }
}

/// A [`Trainable`]'s models over its variables, with their own dropout state.
pub struct Replica {
    vision: VisionModel,
    decoder: TextDecoder,
}

impl Replica {
    /// Turns both models' dropout on, with masks drawn from `seed`, or off (`None`).
    pub fn dropout(&self, seed: Option<u64>) {
        for d in [self.decoder.dropout(), self.vision.dropout()] {
            match seed {
                Some(s) => d.on(s),
                None => d.off(),
            }
        }
    }

    pub fn loss(&self, pixels: &Tensor, text: &TextBatch, smoothing: f64) -> Result<Tensor> {
        let logits = logits(&self.vision, &self.decoder, pixels, text)?;
        caption_loss(&logits, &text.labels, smoothing)
    }
}

fn logits(
    vision: &VisionModel,
    decoder: &TextDecoder,
    pixels: &Tensor,
    text: &TextBatch,
) -> Result<Tensor> {
    let embeds = vision.forward(pixels)?;
    Ok(decoder.logits(&text.input_ids, &embeds, Some(&text.attention_mask))?)
}
