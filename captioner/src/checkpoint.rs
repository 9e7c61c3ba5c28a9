//! Checkpoints in the Hugging Face BLIP layout, the only model format:
//!
//! ```text
//! config.json                 BlipConfig: vision_config + text_config
//! model.safetensors           tensors named exactly as transformers names them
//! tokenizer.json              (+ tokenizer_config.json, special_tokens_map.json)
//! preprocessor_config.json    image size, mean/std, resample (or transformers 5's
//!                             processor_config.json, which nests it)
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use text_decoder::{TextConfig, TextDecoder};
use vision_encoder::{ImageProcessorConfig, VisionConfig, VisionModel};

use crate::{Error, Result};

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS: &str = "special_tokens_map.json";
pub const PREPROCESSOR: &str = "preprocessor_config.json";
pub const PROCESSOR: &str = "processor_config.json";

/// `BlipConfig`: the two sub-configs plus whatever else the file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlipConfig {
    pub vision_config: VisionConfig,
    pub text_config: TextConfig,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlipConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(&read(path)?).map_err(|e| Error::file(path, e))?;
        match value.get("model_type").and_then(|t| t.as_str()) {
            None | Some("blip") => {}
            Some(other) => {
                return Err(Error::file(
                    path,
                    format!("is a {other:?} model; only BLIP (BlipForConditionalGeneration) checkpoints are supported"),
                ))
            }
        }
        let mut cfg: Self = serde_json::from_value(value).map_err(|e| Error::file(path, e))?;
        // As transformers' BlipConfig: the decoder reads the vision encoder's tokens, whatever
        // the file says (hub configs leave the field out).
        cfg.text_config.encoder_hidden_size = Some(cfg.vision_config.hidden_size);
        cfg.vision_config
            .validate()
            .map_err(|e| Error::file(path, e))?;
        cfg.text_config
            .validate()
            .map_err(|e| Error::file(path, e))?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> Result<String> {
        let mut value = serde_json::to_value(self).map_err(|e| Error::Other(e.to_string()))?;
        let obj = value
            .as_object_mut()
            .expect("a struct serialises to an object");
        obj.entry("model_type").or_insert("blip".into());
        obj.entry("architectures")
            .or_insert(serde_json::json!(["BlipForConditionalGeneration"]));
        serde_json::to_string_pretty(&value).map_err(|e| Error::Other(e.to_string()))
    }
}

/// The tokenizer files, kept as read so that saving writes them back unchanged.
#[derive(Debug, Clone)]
pub struct TokenizerFiles {
    pub tokenizer_json: String,
    pub tokenizer_config: Option<String>,
    pub special_tokens_map: Option<String>,
}

/// Everything in a checkpoint directory except the weights.
#[derive(Debug, Clone)]
pub struct CheckpointMeta {
    pub config: BlipConfig,
    pub processor: ImageProcessorConfig,
    pub tokenizer: TokenizerFiles,
}

impl CheckpointMeta {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::file(dir, "is not a checkpoint directory"));
        }
        let config = BlipConfig::from_file(&dir.join(CONFIG))?;
        let processor = load_processor(dir, config.vision_config.image_size)?;
        if (processor.height, processor.width)
            != (
                config.vision_config.image_size,
                config.vision_config.image_size,
            )
            && processor.do_resize
        {
            return Err(Error::file(
                dir.join(PREPROCESSOR),
                format!(
                    "resizes to {}x{} but the model takes {}x{}",
                    processor.width,
                    processor.height,
                    config.vision_config.image_size,
                    config.vision_config.image_size
                ),
            ));
        }
        let optional = |name: &str| {
            let p = dir.join(name);
            p.is_file().then(|| read(&p)).transpose()
        };
        let tokenizer = TokenizerFiles {
            tokenizer_json: read(&dir.join(TOKENIZER))?,
            tokenizer_config: optional(TOKENIZER_CONFIG)?,
            special_tokens_map: optional(SPECIAL_TOKENS)?,
        };
        Ok(Self {
            config,
            processor,
            tokenizer,
        })
    }
}

fn load_processor(dir: &Path, image_size: usize) -> Result<ImageProcessorConfig> {
    for name in [PREPROCESSOR, PROCESSOR] {
        let path = dir.join(name);
        if path.is_file() {
            let value: serde_json::Value =
                serde_json::from_str(&read(&path)?).map_err(|e| Error::file(&path, e))?;
            return ImageProcessorConfig::from_json(&value, image_size)
                .map_err(|e| Error::file(&path, e));
        }
    }
    // Without one, BLIP's processor at the model's resolution.
    Ok(ImageProcessorConfig::blip(image_size))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::file(path, e))
}

/// The safetensors files holding the weights: one file, or the shards an index lists.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX);
    if index.is_file() {
        let value: serde_json::Value =
            serde_json::from_str(&read(&index)?).map_err(|e| Error::file(&index, e))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::file(&index, "has no weight_map"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        " (only pytorch_model.bin is there: pickled weights are not read; convert them to safetensors)"
    } else {
        ""
    };
    Err(Error::file(dir, format!("has no {WEIGHTS}{hint}")))
}

/// Builds both models from a checkpoint's weights (any float dtype; computed in f32),
/// in `precision`.
pub fn load_models(
    dir: &Path,
    cfg: &BlipConfig,
    device: &Device,
    precision: crate::Precision,
) -> Result<(VisionModel, TextDecoder)> {
    let files = weight_files(dir)?;
    let weights = crate::weights::WeightFiles::open(&files)?;
    let vb = VarBuilder::from_backend(Box::new(weights), DType::F32, device.clone());
    precision
        .load_models(&cfg.vision_config, &cfg.text_config, vb)
        .map_err(|e| match &files[..] {
            [file] => Error::file(file, e),
            _ => Error::file(dir, e),
        })
}

/// Every tensor of a checkpoint, by name.
pub fn load_tensors(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    for file in weight_files(dir)? {
        all.extend(
            candle_core::safetensors::load(&file, device).map_err(|e| Error::file(&file, e))?,
        );
    }
    Ok(all)
}

/// Writes a complete checkpoint into `dir`. Each file goes to a temporary name first and
/// is renamed into place, so a crash never leaves a half-written file under a real name.
pub fn save(dir: &Path, meta: &CheckpointMeta, tensors: &HashMap<String, Tensor>) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let mut views: Vec<(&String, &Tensor)> = tensors.iter().collect();
    views.sort_by(|a, b| a.0.cmp(b.0));
    // transformers refuses safetensors files whose metadata names another framework.
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| Error::file(dir.join(WEIGHTS), e))?;
    write_atomic(&dir.join(WEIGHTS), &bytes)?;
    write_atomic(&dir.join(CONFIG), meta.config.to_json()?.as_bytes())?;
    let processor = serde_json::to_string_pretty(&meta.processor.to_json())
        .map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&dir.join(PREPROCESSOR), processor.as_bytes())?;
    write_atomic(
        &dir.join(TOKENIZER),
        meta.tokenizer.tokenizer_json.as_bytes(),
    )?;
    if let Some(t) = &meta.tokenizer.tokenizer_config {
        write_atomic(&dir.join(TOKENIZER_CONFIG), t.as_bytes())?;
    }
    if let Some(t) = &meta.tokenizer.special_tokens_map {
        write_atomic(&dir.join(SPECIAL_TOKENS), t.as_bytes())?;
    }
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::file(path, e)
    })
}
