//! A new model to train from scratch: a preset's shapes, a WordPiece vocabulary learnt
//! from the training captions, and weights drawn as transformers initialises BLIP
//! (normal with std 0.02, zero biases, unit layer norms), from the run's seed.

use candle_core::{DType, Device, Tensor};
use datasets::Rng;
use text_decoder::TextConfig;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};
use vision_encoder::{ImageProcessorConfig, VisionConfig};

use crate::model::Trainable;
use crate::{pre_caption, Error, Result, TrainConfig, TrainData};
use captioner::checkpoint::{CheckpointMeta, ModelConfig, TokenizerFiles};

/// BERT's special tokens in BERT's order, then BLIP's decoder start `[DEC]`.
const SPECIAL: [&str; 6] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"];

/// Model shapes by name.
pub fn preset(name: &str) -> Result<(VisionConfig, TextConfig)> {
    match name {
        // Small enough to train on a laptop CPU in minutes, for the shapes data set.
        "tiny" => Ok((
            VisionConfig {
                hidden_size: 128,
                intermediate_size: 512,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                image_size: 96,
                patch_size: 12,
                ..VisionConfig::default()
            },
            TextConfig {
                hidden_size: 128,
                intermediate_size: 512,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                max_position_embeddings: 64,
                ..TextConfig::default()
            },
        )),
        other => Err(Error::Other(format!(
            "no preset {other:?}; the presets are: tiny"
        ))),
    }
}

/// A lower-cased WordPiece tokenizer (as BERT's) with up to `vocab_size` entries,
/// learnt from `captions`; `[CLS] .. [SEP]` around every text.
pub fn train_tokenizer(captions: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let mut tokenizer = Tokenizer::new(
        WordPiece::builder()
            .unk_token("[UNK]".into())
            .build()
            .map_err(err)?,
    );
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(SPECIAL.iter().map(|t| AddedToken::from(*t, true)).collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, captions.iter())
        .map_err(err)?;
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .expect("special tokens are in the vocabulary")
    };
    let post = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .special_tokens(vec![("[CLS]", id("[CLS]")), ("[SEP]", id("[SEP]"))])
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    tokenizer.with_post_processor(Some(post));
    Ok(tokenizer)
}

/// The checkpoint files around a new model: config, processor, tokenizer.
pub fn fresh_meta(
    vision: VisionConfig,
    text: TextConfig,
    tokenizer: &Tokenizer,
) -> Result<CheckpointMeta> {
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .expect("special tokens are in the vocabulary")
    };
    let text = TextConfig {
        vocab_size: tokenizer.get_vocab_size(true),
        encoder_hidden_size: Some(vision.hidden_size),
        bos_token_id: id("[DEC]"),
        eos_token_id: id("[SEP]"),
        sep_token_id: id("[SEP]"),
        pad_token_id: id("[PAD]"),
        ..text
    };
    let processor = ImageProcessorConfig::blip(vision.image_size);
    let tokenizer_json = tokenizer
        .to_string(true)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": true,
        "bos_token": "[DEC]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
        "model_max_length": text.max_position_embeddings,
    });
    Ok(CheckpointMeta {
        config: ModelConfig::blip(vision, text),
        processor,
        processor_file: None,
        tokenizer: TokenizerFiles {
            tokenizer_json,
            tokenizer_config: Some(tokenizer_config.to_string()),
            special_tokens_map: None,
        },
        generation: None,
    })
}

/// A model with BLIP's initialisation, drawn from `seed`.
pub fn fresh_model(meta: CheckpointMeta, seed: u64, device: &Device) -> Result<Trainable> {
    let model = Trainable::new(meta, device)?;
    let mut rng = Rng::new(seed);
    for (name, var) in model.named_vars() {
        let shape = var.dims().to_vec();
        let n: usize = shape.iter().product();
        let is_norm =
            name.contains("layer_norm") || name.contains("LayerNorm") || name.contains("layernorm");
        let values: Vec<f32> = if is_norm && name.ends_with("weight") {
            vec![1.0; n]
        } else if name.ends_with("bias") || is_norm {
            vec![0.0; n]
        } else {
            (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
        };
        var.set(&Tensor::from_vec(values, shape, device)?.to_dtype(DType::F32)?)?;
    }
    Ok(model)
}

/// A new model of `preset`'s shapes whose vocabulary is learnt from the training
/// captions as the recipe prepares them (and the prompt), initialised from
/// `config.seed`.
pub fn from_preset(
    preset_name: &str,
    data: &TrainData,
    config: &TrainConfig,
    vocab_size: usize,
    device: &Device,
) -> Result<Trainable> {
    let (vision, text) = preset(preset_name)?;
    let captions: Vec<String> = data
        .samples
        .iter()
        .map(|s| pre_caption(&s.caption, config.max_words))
        .chain(std::iter::once(config.prompt.clone()))
        .collect();
    let tokenizer = train_tokenizer(&captions, vocab_size)?;
    fresh_model(fresh_meta(vision, text, &tokenizer)?, config.seed, device)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
