//! Fine-tuning and training: BLIP's captioning recipe on variables that autograd
//! follows (the inference kernels step aside for them).

pub mod data;
pub mod fresh;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod run;
pub mod step;
pub mod text;
pub mod validate;

pub use data::TrainData;
pub use fresh::{fresh_meta, fresh_model, preset, train_tokenizer};
pub use loss::caption_loss;
pub use model::{Replica, Trainable};
pub use optim::{clip_factor, AdamW, AdamWConfig};
pub use run::{StepReport, TrainConfig, Trainer, TrainerState, Validation};
pub use step::{micro_batch, optimizer_step, StepOutcome};
pub use text::{encode, pre_caption, TextBatch, IGNORE};
pub use validate::{validate, ValSet};
