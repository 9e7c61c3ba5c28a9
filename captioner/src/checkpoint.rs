//! Checkpoints in the Hugging Face BLIP layout, the only model format:
//!
//! ```text
//! config.json                 BlipConfig: vision_config + text_config
//! model.safetensors           tensors named exactly as transformers names them
//! tokenizer.json              (+ tokenizer_config.json, special_tokens_map.json)
//! preprocessor_config.json    image size, mean/std, resample (or transformers 5's
//!                             processor_config.json, which nests it)
//! generation_config.json      optional: generation defaults, and how the model
//!                             wants to be prompted ([`Prompting`])
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
pub const GENERATION: &str = "generation_config.json";

impl Prompting {
    /// `prompt` and `strip_prompt` where a caller gives them, this checkpoint's where not.
    pub fn or_given(&self, prompt: Option<String>, strip_prompt: Option<bool>) -> Self {
        Self {
            prompt: prompt.or_else(|| self.prompt.clone()),
            strip_prompt: strip_prompt.unwrap_or(self.strip_prompt),
        }
    }
}

/// BLIP's caption lengths, counted as transformers counts them (prompt included).
pub const BLIP_MAX_LENGTH: usize = 20;
pub const BLIP_MIN_LENGTH: usize = 5;

/// How a checkpoint wants to be prompted: `prompt` and `strip_prompt` in its
/// generation_config.json. LAVIS' BLIP keeps its prompt in its model config;
/// transformers' generation config has no such field, and keeps and ignores keys it does
/// not know, so the file still loads there. Hub BLIP checkpoints have neither key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompting {
    /// Text the captions start from, e.g. "a picture of".
    pub prompt: Option<String>,
    /// Leave the prompt out of the caption text (LAVIS' behaviour).
    pub strip_prompt: bool,
}

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
    /// generation_config.json as read (saving writes it back), when there is one.
    pub generation: Option<serde_json::Map<String, serde_json::Value>>,
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
        let generation = match optional(GENERATION)? {
            None => None,
            Some(text) => {
                let path = dir.join(GENERATION);
                let map = serde_json::from_str(&text).map_err(|e| Error::file(&path, e))?;
                // A malformed prompt is refused here rather than at the first caption.
                prompting_of(&map).map_err(|e| Error::file(&path, e))?;
                Some(map)
            }
        };
        Ok(Self {
            config,
            processor,
            tokenizer,
            generation,
        })
    }

    /// How the checkpoint wants to be prompted (no prompt, and the prompt kept in the
    /// text, where its generation_config.json does not say).
    pub fn prompting(&self) -> Prompting {
        self.generation
            .as_ref()
            .and_then(|g| prompting_of(g).ok())
            .unwrap_or_default()
    }

    /// Records `prompting` in the generation config saved with the checkpoint, with
    /// BLIP's generation defaults (its special tokens, `max_length` 20 and `min_length`
    /// 5) where the config has none, so that transformers generates as captioner does.
    pub fn set_prompting(&mut self, prompting: &Prompting) {
        let text = &self.config.text_config;
        let g = self.generation.get_or_insert_with(Default::default);
        for (key, value) in [
            ("bos_token_id", text.bos_token_id as usize),
            ("eos_token_id", text.sep_token_id as usize),
            ("sep_token_id", text.sep_token_id as usize),
            ("pad_token_id", text.pad_token_id as usize),
            ("max_length", BLIP_MAX_LENGTH),
            ("min_length", BLIP_MIN_LENGTH),
        ] {
            g.entry(key).or_insert(value.into());
        }
        g.insert(
            "prompt".into(),
            prompting
                .prompt
                .clone()
                .map_or(serde_json::Value::Null, Into::into),
        );
        g.insert("strip_prompt".into(), prompting.strip_prompt.into());
    }
}

fn prompting_of(
    g: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<Prompting, String> {
    use serde_json::Value;
    let prompt = match g.get("prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.trim().to_string()).filter(|p| !p.is_empty()),
        Some(other) => return Err(format!("\"prompt\" is {other}, not a string")),
    };
    let strip_prompt = match g.get("strip_prompt") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("\"strip_prompt\" is {other}, not true or false")),
    };
    Ok(Prompting {
        prompt,
        strip_prompt,
    })
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
    if let Some(g) = &meta.generation {
        let text = serde_json::to_string_pretty(g).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&dir.join(GENERATION), (text + "\n").as_bytes())?;
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

/// SHA-256 (hex) of a checkpoint directory: every regular file directly in it (links
/// followed), in name order, each as its name and its bytes. Two directories with the
/// same files give the same digest wherever they are.
pub fn digest(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in names {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        let mut f = fs::File::open(&path).map_err(|e| Error::file(&path, e))?;
        hash.update(
            f.metadata()
                .map_err(|e| Error::file(&path, e))?
                .len()
                .to_le_bytes(),
        );
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::file(&path, e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_follows_the_files_not_where_they_are() {
        let root = std::env::temp_dir().join(format!("captioner-digest-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(d.join(CONFIG), b"{}").unwrap();
            fs::write(d.join(WEIGHTS), [1u8, 2, 3]).unwrap();
        }
        fs::write(b.join("sub/ignored"), b"folders are not hashed").unwrap();
        assert_eq!(digest(&a).unwrap(), digest(&b).unwrap());
        assert_eq!(digest(&a).unwrap().len(), 64);
        fs::write(b.join(WEIGHTS), [1u8, 2, 4]).unwrap();
        assert_ne!(digest(&a).unwrap(), digest(&b).unwrap());
        fs::rename(b.join(WEIGHTS), b.join("other.safetensors")).unwrap();
        fs::write(b.join("other.safetensors"), [1u8, 2, 3]).unwrap();
        assert_ne!(digest(&a).unwrap(), digest(&b).unwrap(), "names count");
        fs::remove_dir_all(&root).unwrap();
    }
}
