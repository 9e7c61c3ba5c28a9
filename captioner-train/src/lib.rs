//! captioner-train: fine-tuning and training BLIP-style captioners on COCO-style data,
//! with BLIP's captioning recipe (label-smoothed loss, AdamW, warm-up and cosine decay,
//! gradient clipping) on variables that autograd follows (the inference kernels step
//! aside for them). [`Trainer`] checkpoints atomically and resumes a killed run to the
//! same bits; [`validate()`] scores the validation split with the COCO metrics.
//!
//! Fine-tuning the project's small model for two steps on the 12 sample images:
//!
//! ```
//! use candle_core::Device;
//! use captioner_train::{TrainConfig, TrainData, Trainable, Trainer};
//! use datasets::References;
//!
//! let refs = References::load("../datasets/sample/test.json".as_ref())?;
//! let data = TrainData::new(&refs, "../datasets/sample".as_ref())?;
//! let model = Trainable::load("../weights/shapes-tiny".as_ref(), &Device::Cpu)?;
//! let config = TrainConfig { epochs: 1, batch: 4, ..TrainConfig::default() };
//! let out = std::env::temp_dir().join(format!("captioner-doc-train-{}", std::process::id()));
//! let mut trainer = Trainer::start(model, &data, config, &out)?;
//! let mut losses = Vec::new();
//! let no_validation = |_: &std::path::Path, _: &_| Ok(None);
//! trainer.run(&data, &Device::Cpu, |s| losses.push(s.loss), no_validation, Some(2))?;
//! // Label-smoothed cross-entropy of a model trained on this data: far below the
//! // ln(223) = 5.4 of a uniform guess over its vocabulary.
//! assert!(losses.len() == 2 && losses.iter().all(|&l| l < 2.5), "{losses:?}");
//! std::fs::remove_dir_all(&out)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod data;
pub mod fresh;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod run;
pub mod select;
pub mod step;
pub mod text;
pub mod validate;

pub use data::TrainData;
pub use fresh::{fresh_meta, fresh_model, from_preset, preset, train_tokenizer};
pub use loss::caption_loss;
pub use model::{Replica, Trainable};
pub use optim::{clip_factor, AdamW, AdamWConfig};
pub use run::{StepReport, TrainConfig, Trainer, TrainerState, Validation};
pub use step::{micro_batch, optimizer_step, StepOutcome};
pub use text::{encode, pre_caption, TextBatch, IGNORE};
pub use validate::{validate, ValSet};

pub use captioner::{Error, Result};
