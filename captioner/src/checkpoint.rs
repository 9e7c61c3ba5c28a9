//! Checkpoints in the Hugging Face layouts of BLIP and of `VisionEncoderDecoderModel`:
//!
//! ```text
//! config.json                 BlipConfig (vision_config + text_config), or
//!                             VisionEncoderDecoderConfig (encoder: ViT or DeiT,
//!                             decoder: GPT-2 or TrOCR)
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
use serde_json::Value;
use text_decoder::{DecoderFamily, TextConfig, TextDecoder};
use vision_encoder::{ImageProcessorConfig, VisionConfig, VisionLayout, VisionModel};

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

/// Which of the two layouts a checkpoint is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelFamily {
    /// `BlipForConditionalGeneration`: `vision_model.*`, `text_decoder.*`.
    #[default]
    Blip,
    /// `VisionEncoderDecoderModel`: `encoder.*`, `decoder.*`, and `enc_to_dec_proj`
    /// where the two widths differ.
    VisionEncoderDecoder,
}

/// A checkpoint's config.json, read into the two sub-configs the models take, plus
/// whatever else the file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vision_config: VisionConfig,
    pub text_config: TextConfig,
    /// The rest of a BLIP config; the whole of a VisionEncoderDecoder config, which is
    /// written back as read.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    pub family: ModelFamily,
}

impl ModelConfig {
    /// A BLIP config of these two parts.
    pub fn blip(vision_config: VisionConfig, text_config: TextConfig) -> Self {
        Self {
            vision_config,
            text_config,
            extra: Default::default(),
            family: ModelFamily::Blip,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(&read(path)?).map_err(|e| Error::file(path, e))?;
        match value.get("model_type").and_then(|t| t.as_str()) {
            None | Some("blip") => {}
            Some("vision-encoder-decoder") => {
                return Self::vision_encoder_decoder(value).map_err(|e| Error::file(path, e))
            }
            Some(other) => {
                return Err(Error::file(
                    path,
                    format!("is a {other:?} model; captioner reads BLIP (BlipForConditionalGeneration) and VisionEncoderDecoderModel (ViT or DeiT with GPT-2 or TrOCR) checkpoints"),
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

    /// A `VisionEncoderDecoderConfig`, with transformers' rules for the token ids and
    /// for `enc_to_dec_proj`.
    fn vision_encoder_decoder(value: Value) -> std::result::Result<Self, String> {
        let part = |key: &str| {
            let v = value
                .get(key)
                .filter(|v| v.is_object())
                .ok_or_else(|| format!("has no {key:?} config"))?;
            let kind = v.get("model_type").and_then(Value::as_str).unwrap_or("");
            Ok::<_, String>((v, kind))
        };
        let (encoder, kind) = part("encoder")?;
        if !matches!(kind, "vit" | "deit") {
            return Err(format!(
                "has a {kind:?} encoder; the encoders read are ViT and DeiT"
            ));
        }
        let mut vision = vit_config(encoder)?;
        vision.distillation_token = kind == "deit";
        let (decoder, kind) = part("decoder")?;
        let mut text = match kind {
            "gpt2" => TextConfig::from_gpt2(decoder)?,
            "trocr" => TextConfig::from_trocr(decoder)?,
            _ => {
                return Err(format!(
                    "has a {kind:?} decoder; the decoders read are GPT-2 and TrOCR"
                ))
            }
        };
        // The top level's ids win over the decoder's, as generate() takes them.
        let id = |v: &Value, key: &str| -> std::result::Result<Option<u32>, String> {
            match v.get(key).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(x) => x
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| format!("{key} is {x}, not a token id")),
            }
        };
        if let Some(eos) = id(&value, "eos_token_id")? {
            text.eos_token_id = eos;
        }
        text.sep_token_id = text.eos_token_id;
        if let Some(pad) = id(&value, "pad_token_id")? {
            text.pad_token_id = pad;
        }
        // The token the decoder starts from stands where BLIP's [DEC] does.
        text.bos_token_id = [
            id(&value, "decoder_start_token_id")?,
            id(decoder, "decoder_start_token_id")?,
            id(&value, "bos_token_id")?,
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(text.bos_token_id);
        // transformers adds enc_to_dec_proj when the widths differ and the decoder does
        // not read the encoder's width itself.
        let reads_own_width = decoder
            .get("cross_attention_hidden_size")
            .is_some_and(|v| !v.is_null());
        if vision.hidden_size != text.hidden_size && !reads_own_width {
            text.image_projection = Some(vision.hidden_size);
            text.encoder_hidden_size = Some(text.hidden_size);
        } else if text.cross_width() != vision.hidden_size {
            return Err(format!(
                "the decoder's cross-attention reads {} wide tokens but the encoder gives {}",
                text.cross_width(),
                vision.hidden_size
            ));
        }
        vision.validate()?;
        text.validate()?;
        let Value::Object(extra) = value else {
            unreachable!("a config with an encoder is an object")
        };
        Ok(Self {
            vision_config: vision,
            text_config: text,
            extra,
            family: ModelFamily::VisionEncoderDecoder,
        })
    }

    pub fn to_json(&self) -> Result<String> {
        if self.family == ModelFamily::VisionEncoderDecoder {
            return serde_json::to_string_pretty(&self.extra)
                .map_err(|e| Error::Other(e.to_string()));
        }
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
    pub config: ModelConfig,
    pub processor: ImageProcessorConfig,
    /// The image processor's file as read, by name. Saving writes a VisionEncoderDecoder's
    /// back as it was (transformers has a class per family); BLIP's from `processor`.
    pub processor_file: Option<(String, String)>,
    pub tokenizer: TokenizerFiles,
    /// generation_config.json as read (saving writes it back), when there is one.
    pub generation: Option<serde_json::Map<String, serde_json::Value>>,
}

impl CheckpointMeta {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::file(dir, "is not a checkpoint directory"));
        }
        let config = ModelConfig::from_file(&dir.join(CONFIG))?;
        let (processor, processor_file) = load_processor(dir, &config)?;
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
            processor_file,
            tokenizer,
            generation,
        })
    }

    /// The most and fewest new tokens (the end token included) a caption after a decoder
    /// prompt of `prompt_len` tokens gets, as transformers counts them: BLIP's
    /// `max_length` 20 and `min_length` 5, which count the prompt; for a
    /// VisionEncoderDecoder, its generation_config.json's `max_length` and `min_length`
    /// (which count it too), else transformers' defaults: 20 new tokens, and none.
    pub fn new_token_limits(&self, prompt_len: usize) -> (usize, usize) {
        let after = |length: usize| length.saturating_sub(prompt_len);
        if self.config.family == ModelFamily::Blip {
            return (after(BLIP_MAX_LENGTH).max(1), after(BLIP_MIN_LENGTH));
        }
        let get = |key: &str| {
            self.generation
                .as_ref()
                .and_then(|g| g.get(key))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
        };
        (
            get("max_length").map_or(20, |l| after(l).max(1)),
            get("min_length").map_or(0, after),
        )
    }

    /// How the checkpoint wants to be prompted (no prompt, and the prompt kept in the
    /// text, where its generation_config.json does not say).
    pub fn prompting(&self) -> Prompting {
        self.generation
            .as_ref()
            .and_then(|g| prompting_of(g).ok())
            .unwrap_or_default()
    }

    /// Records `prompting` in the generation config saved with the checkpoint, with the
    /// generation defaults captioner uses where the config has none (the special tokens;
    /// BLIP's lengths, where transformers' own defaults differ), so that transformers
    /// generates as captioner does.
    pub fn set_prompting(&mut self, prompting: &Prompting) {
        let text = &self.config.text_config;
        let mut defaults = vec![
            ("eos_token_id", text.sep_token_id as usize),
            ("pad_token_id", text.pad_token_id as usize),
        ];
        // BLIP starts from its bos token ([DEC]); a VisionEncoderDecoder from its
        // decoder_start_token_id.
        match self.config.family {
            ModelFamily::Blip => defaults.extend([
                ("bos_token_id", text.bos_token_id as usize),
                ("sep_token_id", text.sep_token_id as usize),
                ("max_length", BLIP_MAX_LENGTH),
                ("min_length", BLIP_MIN_LENGTH),
            ]),
            ModelFamily::VisionEncoderDecoder => {
                defaults.push(("decoder_start_token_id", text.bos_token_id as usize))
            }
        }
        let g = self.generation.get_or_insert_with(Default::default);
        for (key, value) in defaults {
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

/// The encoder's part of a checkpoint's `vb`: BLIP's `vision_model`, a
/// VisionEncoderDecoder's `encoder`.
pub fn encoder_vb<'a>(cfg: &VisionConfig, vb: VarBuilder<'a>) -> VarBuilder<'a> {
    vb.pp(encoder_prefix(cfg))
}

/// The `vb` [`TextDecoder::new`] takes from a checkpoint's: BLIP's `text_decoder`; the
/// whole of a VisionEncoderDecoder's (its decoder finds `decoder` and `enc_to_dec_proj`).
pub fn decoder_vb<'a>(cfg: &TextConfig, vb: VarBuilder<'a>) -> VarBuilder<'a> {
    match cfg.family {
        DecoderFamily::Blip => vb.pp("text_decoder"),
        _ => vb,
    }
}

/// The names of the encoder's tensors start with this (and a dot).
pub fn encoder_prefix(cfg: &VisionConfig) -> &'static str {
    match cfg.layout {
        VisionLayout::Blip => "vision_model",
        VisionLayout::Vit => "encoder",
    }
}

/// A ViT or DeiT config with `ViTConfig`'s defaults for what it leaves out.
fn vit_config(encoder: &Value) -> std::result::Result<VisionConfig, String> {
    let defaults = VisionConfig {
        image_size: 224,
        layer_norm_eps: 1e-12,
        ..VisionConfig::default()
    };
    let mut merged = serde_json::to_value(defaults).map_err(|e| e.to_string())?;
    for (k, v) in encoder.as_object().into_iter().flatten() {
        if !v.is_null() {
            merged[k] = v.clone();
        }
    }
    let mut cfg: VisionConfig =
        serde_json::from_value(merged).map_err(|e| format!("encoder: {e}"))?;
    if let Some(c) = encoder.get("num_channels").and_then(Value::as_u64) {
        if c != 3 {
            return Err(format!(
                "encoder.num_channels is {c}; the encoders read take RGB"
            ));
        }
    }
    cfg.layout = VisionLayout::Vit;
    Ok(cfg)
}

/// The image processor's settings, and its file's name and text where there is one.
fn load_processor(
    dir: &Path,
    cfg: &ModelConfig,
) -> Result<(ImageProcessorConfig, Option<(String, String)>)> {
    let size = cfg.vision_config.image_size;
    // Without a file, the family's processor at the model's resolution.
    let defaults = match cfg.family {
        ModelFamily::Blip => ImageProcessorConfig::blip(size),
        ModelFamily::VisionEncoderDecoder => ImageProcessorConfig::vit(size),
    };
    for name in [PREPROCESSOR, PROCESSOR] {
        let path = dir.join(name);
        if path.is_file() {
            let text = read(&path)?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::file(&path, e))?;
            let processor = ImageProcessorConfig::from_json_over(&value, defaults)
                .map_err(|e| Error::file(&path, e))?;
            return Ok((processor, Some((name.to_string(), text))));
        }
    }
    Ok((defaults, None))
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
    cfg: &ModelConfig,
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
    match (&meta.processor_file, meta.config.family) {
        (Some((name, text)), ModelFamily::VisionEncoderDecoder) => {
            write_atomic(&dir.join(name), text.as_bytes())?
        }
        _ => {
            let processor = serde_json::to_string_pretty(&meta.processor.to_json())
                .map_err(|e| Error::Other(e.to_string()))?;
            write_atomic(&dir.join(PREPROCESSOR), processor.as_bytes())?;
        }
    }
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
