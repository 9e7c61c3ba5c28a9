//! Fine-tuning and training: BLIP's captioning recipe on variables that autograd
//! follows (the inference kernels step aside for them).

pub mod data;
pub mod loss;
pub mod model;
pub mod optim;
pub mod run;
pub mod text;

pub use data::TrainData;
pub use loss::caption_loss;
pub use model::Trainable;
pub use optim::{clip_factor, AdamW, AdamWConfig};
pub use run::{StepReport, TrainConfig, Trainer, TrainerState, Validation};
pub use text::{encode, pre_caption, TextBatch, IGNORE};
