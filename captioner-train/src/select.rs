//! Which captions a run trains and validates on: the training file's Karpathy splits
//! or all of it, a validation file or a held-out share, and, for distillation, another
//! model's captions in place of the references.

use std::collections::HashMap;
use std::path::Path;

use datasets::{ImageId, References};

use crate::{Error, Result};

/// Where validation captions come from.
#[derive(Debug, Clone, Default)]
pub enum Validation {
    /// The file's `val` split where it has Karpathy splits; else none.
    #[default]
    FromSplits,
    /// A separate references file.
    File(References),
    /// This share of the training images, chosen by the seed.
    HeldOut { fraction: f64, seed: u64 },
}

/// `(train, validation)`: with Karpathy splits, BLIP trains on `train` and `restval`;
/// without them, on everything not held out.
pub fn split(all: References, validation: Validation) -> Result<(References, Option<References>)> {
    let has_splits = all.images.iter().any(|i| i.split.is_some());
    let bad = |e: datasets::CocoError| Error::Other(e.to_string());
    let training = |all: References| {
        if has_splits {
            all.splits(&["train", "restval"]).map_err(bad)
        } else {
            Ok(all)
        }
    };
    Ok(match validation {
        Validation::File(val) => (training(all)?, Some(val)),
        Validation::HeldOut { fraction, seed } => {
            let (t, v) = all.hold_out(fraction, seed);
            (t, Some(v))
        }
        Validation::FromSplits if has_splits => (training(all.clone())?, all.split("val").ok()),
        Validation::FromSplits => (all, None),
    })
}

/// Distillation: keeps the images that the COCO results file (or JSON lines) at
/// `captions` has captions for, and trains on those captions instead of the references;
/// returns how many images are kept.
pub fn use_captions_of(refs: &mut References, captions: &Path) -> Result<usize> {
    let metric = |e: caption_metrics::Error| Error::Other(e.to_string());
    let preds = caption_metrics::load_predictions(captions).map_err(metric)?;
    let matched = caption_metrics::match_predictions(refs, &preds).map_err(metric)?;
    let mut by_id: HashMap<ImageId, Vec<String>> = HashMap::new();
    for (id, c) in matched.ids.iter().zip(matched.cands) {
        let id = ImageId::from_json(id).expect("the ids are the references'");
        by_id.entry(id).or_default().push(c);
    }
    Ok(refs.replace_captions(&by_id))
}
