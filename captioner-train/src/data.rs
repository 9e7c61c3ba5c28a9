//! Training data: (image, caption) pairs from reference captions, an order fixed by
//! (seed, epoch), and batches decoded and preprocessed in parallel.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use datasets::References;
use rayon::prelude::*;
use text_decoder::TextConfig;
use tokenizers::Tokenizer;
use vision_encoder::ImageProcessorConfig;

use super::text::{encode, pre_caption, TextBatch};
use crate::{Error, Result};

/// One caption of one image: a training example.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: usize,
    pub caption: String,
}

/// The examples of a data set, with its image files.
#[derive(Debug, Clone)]
pub struct TrainData {
    pub files: Vec<PathBuf>,
    pub samples: Vec<Sample>,
}

impl TrainData {
    /// Every caption of every image of `refs`, after the checks of
    /// [`References::check_for_training`] (all problems reported at once).
    pub fn new(refs: &References, root: &Path) -> Result<Self> {
        refs.check_for_training(root)
            .map_err(|e| Error::Other(e.to_string()))?;
        let files = refs
            .images
            .iter()
            .map(|i| root.join(&i.file_name))
            .collect();
        let samples = refs
            .images
            .iter()
            .enumerate()
            .flat_map(|(image, i)| {
                i.captions.iter().map(move |c| Sample {
                    image,
                    caption: c.clone(),
                })
            })
            .collect();
        Ok(Self { files, samples })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// How captions become decoder inputs.
#[derive(Debug, Clone)]
pub struct TextRecipe {
    pub prompt: String,
    pub max_words: usize,
    pub max_len: usize,
    /// The decoder's config: its start, end and padding tokens and its family.
    pub text: TextConfig,
}

/// Pixels `[B, 3, H, W]` and the encoded captions of some examples; images are
/// decoded and preprocessed in parallel. A file that does not decode is an error
/// naming it.
pub fn load_batch(
    data: &TrainData,
    indices: &[usize],
    processor: &ImageProcessorConfig,
    tokenizer: &Tokenizer,
    recipe: &TextRecipe,
    device: &Device,
) -> Result<(Tensor, TextBatch)> {
    let pixels: Vec<Vec<f32>> = indices
        .par_iter()
        .map(|&i| {
            let path = &data.files[data.samples[i].image];
            let img = datasets::load_image(path, datasets::DEFAULT_MAX_PIXELS)
                .map_err(|e| Error::Other(e.to_string()))?;
            Ok(processor.pixels(&img))
        })
        .collect::<Result<_>>()?;
    let (h, w) = (processor.height, processor.width);
    let flat: Vec<f32> = pixels.into_iter().flatten().collect();
    let pixels = Tensor::from_vec(flat, (indices.len(), 3, h, w), device)?;
    let captions: Vec<String> = indices
        .iter()
        .map(|&i| pre_caption(&data.samples[i].caption, recipe.max_words))
        .collect();
    let text = encode(
        tokenizer,
        &captions,
        &recipe.prompt,
        recipe.max_len,
        &recipe.text,
        device,
    )?;
    Ok((pixels, text))
}
