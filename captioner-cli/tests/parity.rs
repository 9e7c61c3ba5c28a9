//! Parity with transformers 5 on two small random BLIP checkpoints, and on three small
//! random VisionEncoderDecoder ones (ViT + GPT-2, with and without `enc_to_dec_proj`,
//! and ViT + TrOCR). The expected values were recorded by scripts/make_fixtures.py and
//! scripts/make_ved_fixtures.py (see tests/fixtures/README.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use captioner::checkpoint::{self, CheckpointMeta};
use captioner::{CaptionOptions, Captioner};
use serde_json::Value;
use sha2::{Digest, Sha256};
use text_decoder::{generate, EarlyStopping, GenerationConfig};

const CHECKPOINTS: [&str; 2] = ["tiny-a", "tiny-b"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Fixture {
    dir: PathBuf,
    captioner: Captioner,
    expected: HashMap<String, Tensor>,
    json: Value,
}

fn fixture(name: &str) -> Fixture {
    fixture_with(name, "expected")
}

/// A checkpoint with the references recorded in its `STEM.json` and `STEM.safetensors`.
fn fixture_with(name: &str, stem: &str) -> Fixture {
    let dir = fixtures().join(name);
    let captioner = Captioner::load(&dir, &Device::Cpu).expect("fixture checkpoint loads");
    let expected =
        candle_core::safetensors::load(dir.join(format!("{stem}.safetensors")), &Device::Cpu)
            .unwrap();
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    Fixture {
        dir,
        captioner,
        expected,
        json,
    }
}

fn images(json: &Value) -> Vec<image::DynamicImage> {
    json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            datasets::load_image(
                &fixtures().join("images").join(n.as_str().unwrap()),
                1 << 30,
            )
            .unwrap()
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn resize_matches_pil_pixels() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        let expected = f.expected["resized_u8"].to_dtype(DType::F32).unwrap();
        let processor = &f.captioner.meta.processor;
        let ours: Vec<Tensor> = images(&f.json)
            .iter()
            .map(|img| {
                let rgb = processor.resize_u8(img);
                let (w, h) = rgb.dimensions();
                Tensor::from_vec(rgb.into_raw(), (h as usize, w as usize, 3), &Device::Cpu).unwrap()
            })
            .collect();
        let ours = Tensor::stack(&ours, 0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        // PIL's integer arithmetic reproduced: the same bytes, not merely close ones.
        let max = max_abs_diff(&ours, &expected);
        assert_eq!(max, 0.0, "{name}: a resized pixel is {max}/255 off PIL");
    }
}

#[test]
fn pixel_values_match_transformers() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        let ours = f.captioner.pixel_values(&images(&f.json)).unwrap();
        let max = max_abs_diff(&ours, &f.expected["pixel_values"]);
        // One 8-bit step is 1/255/std in normalised units; we stay far below it.
        assert!(max < 1e-5, "{name}: pixel_values differ by {max}");
    }
}

#[test]
fn vision_output_matches_transformers() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        let ours = f
            .captioner
            .vision
            .forward(&f.expected["pixel_values"])
            .unwrap();
        let max = max_abs_diff(&ours, &f.expected["vision_last_hidden_state"]);
        assert!(max <= 1e-4, "{name}: vision output differs by {max}");
    }
}

#[test]
fn teacher_forced_logits_match_transformers() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        let ids = f.expected["tf_input_ids"].to_dtype(DType::U32).unwrap();
        let mask = &f.expected["tf_attention_mask"];
        let idx = f.expected["tf_image_index"].to_dtype(DType::U32).unwrap();
        let embeds = f.expected["vision_last_hidden_state"]
            .index_select(&idx, 0)
            .unwrap();
        let ours = f
            .captioner
            .decoder
            .logits(&ids, &embeds, Some(mask))
            .unwrap();
        // Padded positions' logits are meaningless in both; compare the real ones.
        let keep = mask
            .to_dtype(DType::F32)
            .unwrap()
            .unsqueeze(D::Minus1)
            .unwrap();
        let diff = ((&ours - &f.expected["tf_logits"])
            .unwrap()
            .broadcast_mul(&keep))
        .unwrap();
        let max = diff
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max <= 1e-4, "{name}: teacher-forced logits differ by {max}");
    }
}

/// Our generation settings for a recorded case, from the configuration transformers
/// actually used (its lengths count the prompt).
fn generation_config(case: &Value, prompt_len: usize, eos: u32) -> GenerationConfig {
    let e = &case["effective"];
    let num = |k: &str| e[k].as_u64().map(|v| v as usize);
    let min_new = num("min_new_tokens")
        .unwrap_or(0)
        .max(num("min_length").unwrap().saturating_sub(prompt_len));
    GenerationConfig {
        max_new_tokens: num("max_length").unwrap() - prompt_len,
        min_new_tokens: min_new,
        num_beams: num("num_beams").unwrap(),
        length_penalty: e["length_penalty"].as_f64().unwrap() as f32,
        early_stopping: match &e["early_stopping"] {
            Value::Bool(true) => EarlyStopping::Always,
            Value::String(s) if s == "never" => EarlyStopping::Never,
            _ => EarlyStopping::Heuristic,
        },
        no_repeat_ngram_size: num("no_repeat_ngram_size").unwrap(),
        repetition_penalty: e["repetition_penalty"].as_f64().unwrap() as f32,
        num_return_sequences: num("num_return_sequences").unwrap(),
        sampling: None,
        eos_token_id: eos,
        output_attentions: false,
    }
}

/// transformers pads shorter rows (with [PAD] in greedy search, [SEP] in beam search);
/// ours must be the row's prefix with only padding (`pad`) after it.
fn assert_same_sequence(ours: &[u32], theirs: &[u32], pad: u32, what: &str) {
    assert!(
        ours.len() <= theirs.len(),
        "{what}: ours {ours:?} is longer than transformers' {theirs:?}"
    );
    assert_eq!(ours, &theirs[..ours.len()], "{what}: tokens differ");
    let fill = &theirs[ours.len()..];
    assert!(
        fill.iter()
            .all(|&t| t == pad || t == theirs[theirs.len() - 1]),
        "{what}: {theirs:?} continues past ours {ours:?}"
    );
}

#[test]
fn generation_matches_transformers() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        assert_generation(&f, &f.expected["vision_last_hidden_state"], name);
    }
}

/// Every recorded generate() case of `f`, run from `embeds`: the same tokens, texts and
/// (beam search) sequence scores within 1e-4.
fn assert_generation(f: &Fixture, embeds: &Tensor, name: &str) {
    assert_cases(f, &f.json["cases"], embeds, name)
}

/// [`assert_generation`] for the cases in `cases`.
fn assert_cases(f: &Fixture, cases: &Value, embeds: &Tensor, name: &str) {
    let id = |key: &str| f.json[key].as_u64().map(|v| v as u32);
    // BLIP's records name its end token sep, the others eos.
    let eos = id("sep_token_id").or(id("eos_token_id")).unwrap();
    let pad = id("pad_token_id").unwrap();
    let start = f.captioner.meta.config.text_config.bos_token_id;
    for case in cases.as_array().unwrap() {
        let case_name = format!("{name}/{}", case["name"].as_str().unwrap());
        let prompt: Vec<u32> = case["decoder_input_ids"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // Our prompt encoding gives transformers' decoder input; TrOCR's puts its <s>
        // after the start token, as its training does (the record has the prompt's
        // tokens alone).
        let mut ours_prompt = f.captioner.decoder_prompt(case["prompt"].as_str()).unwrap();
        if case["prompt"].is_string() && id("bos_token_id").is_some_and(|b| b != start) {
            let bos = ours_prompt.remove(1);
            assert_eq!(
                Some(bos),
                id("bos_token_id"),
                "{case_name}: <s> after the start"
            );
        }
        assert_eq!(ours_prompt, prompt, "{case_name}: decoder prompt");
        let cfg = generation_config(case, prompt.len(), eos);
        let hyps = generate(&f.captioner.decoder, embeds, &prompt, &cfg).unwrap();
        let rows: Vec<_> = hyps.iter().flatten().collect();
        let sequences = case["sequences"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            sequences.len(),
            "{case_name}: number of sequences"
        );
        let longest = rows.iter().map(|h| h.tokens.len()).max().unwrap();
        assert_eq!(
            longest,
            sequences[0].as_array().unwrap().len(),
            "{case_name}: output length"
        );
        for (i, (h, seq)) in rows.iter().zip(sequences).enumerate() {
            let theirs: Vec<u32> = seq
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_same_sequence(&h.tokens, &theirs, pad, &format!("{case_name} row {i}"));
            let text = f.captioner.decode(&h.tokens).unwrap();
            assert_eq!(
                text,
                case["texts"][i].as_str().unwrap(),
                "{case_name} row {i}: text"
            );
        }
        if let Some(scores) = case["sequences_scores"].as_array() {
            for (i, (h, s)) in rows.iter().zip(scores).enumerate() {
                let s = s.as_f64().unwrap() as f32;
                assert!(
                    (h.score - s).abs() <= 1e-4,
                    "{case_name} row {i}: score {} vs {s}",
                    h.score
                );
            }
        }
    }
}

/// Photos saved as JPEG (4:2:0, progressive 4:2:2, 4:4:4, CMYK, EXIF-rotated), WebP
/// (lossy, lossy with alpha, lossless) and TIFF (LZW, JPEG-compressed YCbCr, 16-bit):
/// decoded from their files, their RGB bytes are the ones transformers' processor
/// received, and greedy and beam search from our own pixels give transformers' tokens.
#[test]
fn jpeg_webp_and_tiff_files_give_transformers_captions() {
    for name in CHECKPOINTS {
        let f = fixture_with(name, "expected_formats");
        let decoded = images(&f.json);
        for (img, info) in decoded.iter().zip(f.json["image_info"].as_array().unwrap()) {
            let rgb = vision_encoder::preprocess::convert_to_rgb(img);
            let digest: String = Sha256::digest(rgb.as_raw())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                digest,
                info["rgb_sha256"].as_str().unwrap(),
                "{name}: {} decodes to other pixels",
                info["file"]
            );
        }
        let pixels = f.captioner.pixel_values(&decoded).unwrap();
        let max = max_abs_diff(&pixels, &f.expected["pixel_values"]);
        assert!(max < 1e-5, "{name}: pixel_values differ by {max}");
        let embeds = f.captioner.vision.forward(&pixels).unwrap();
        assert_generation(&f, &embeds, name);
    }
}

/// The whole path a user takes: decode the files, preprocess, encode, generate, decode text.
#[test]
fn captioner_end_to_end_matches_transformers() {
    for name in CHECKPOINTS {
        let f = fixture(name);
        let case = f.json["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "beam3_blip_eval")
            .unwrap();
        let opts = CaptionOptions {
            num_beams: 3,
            prompt: Some("a picture of".into()),
            ..Default::default()
        };
        let captions = f.captioner.caption(&images(&f.json), &opts).unwrap();
        for (i, caps) in captions.iter().enumerate() {
            assert_eq!(
                caps[0].text,
                case["texts"][i].as_str().unwrap(),
                "{name} image {i}"
            );
            let s = case["sequences_scores"][i].as_f64().unwrap() as f32;
            assert!((caps[0].score - s).abs() <= 1e-4, "{name} image {i}: score");
        }
    }
}

#[test]
fn save_then_load_gives_identical_tensors() {
    let f = fixture("tiny-a");
    let tensors = checkpoint::load_tensors(&f.dir, &Device::Cpu).unwrap();
    let out = tempdir("save-load");
    checkpoint::save(&out, &f.captioner.meta, &tensors).unwrap();
    let again = checkpoint::load_tensors(&out, &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), again.len());
    for (name, t) in &tensors {
        let u = &again[name];
        assert_eq!(t.dims(), u.dims(), "{name}");
        assert_eq!(max_abs_diff(t, u), 0.0, "{name}");
    }
    let meta = CheckpointMeta::load(&out).unwrap();
    assert_eq!(meta.processor, f.captioner.meta.processor);
    assert_eq!(meta.config.text_config, f.captioner.meta.config.text_config);
    assert_eq!(
        meta.config.vision_config,
        f.captioner.meta.config.vision_config
    );
    // And the saved checkpoint captions as the original does.
    let reloaded = Captioner::load(&out, &Device::Cpu).unwrap();
    let opts = CaptionOptions::default();
    let imgs = images(&f.json);
    let a = f.captioner.caption(&imgs, &opts).unwrap();
    let b = reloaded.caption(&imgs, &opts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x[0].tokens, y[0].tokens);
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn wrong_shape_and_missing_tensor_are_named() {
    assert_bad_tensor_named(
        "tiny-a",
        "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
        (32, 31),
        "[32, 32]",
    );
}

/// Checkpoint `name` with tensor `tensor` of shape `bad` instead of `good`, then without
/// it: both are refused with errors naming the tensor (and both shapes).
fn assert_bad_tensor_named(name: &str, tensor: &str, bad: (usize, usize), good: &str) {
    let f = fixture(name);
    let mut tensors = checkpoint::load_tensors(&f.dir, &Device::Cpu).unwrap();
    let out = tempdir(&format!("bad-shape-{}", name.replace('/', "-")));
    tensors.insert(
        tensor.into(),
        Tensor::zeros(bad, DType::F32, &Device::Cpu).unwrap(),
    );
    checkpoint::save(&out, &f.captioner.meta, &tensors).unwrap();
    let err = Captioner::load(&out, &Device::Cpu)
        .err()
        .expect("a wrong shape is refused")
        .to_string();
    let bad = format!("[{}, {}]", bad.0, bad.1);
    assert!(
        err.contains(tensor) && err.contains(&bad) && err.contains(good),
        "{err}"
    );

    tensors.remove(tensor);
    checkpoint::save(&out, &f.captioner.meta, &tensors).unwrap();
    let err = Captioner::load(&out, &Device::Cpu)
        .err()
        .expect("a missing tensor is refused")
        .to_string();
    assert!(err.contains(tensor), "{err}");
    // Saved as read, the checkpoint keeps its family.
    let saved = CheckpointMeta::load(&out).unwrap().config.family;
    assert_eq!(saved, f.captioner.meta.config.family);
    std::fs::remove_dir_all(&out).ok();
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-test-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// The hub's files differ from what transformers 5 saves: no `encoder_hidden_size`, a
/// flat `preprocessor_config.json`, and the tied LM-head weight stored explicitly.
#[test]
fn hub_layout_loads_and_gives_the_same_captions() {
    let f = fixture("tiny-a");
    let out = tempdir("hub-layout");
    let mut tensors = checkpoint::load_tensors(&f.dir, &Device::Cpu).unwrap();
    let words = tensors["text_decoder.bert.embeddings.word_embeddings.weight"].clone();
    tensors.insert("text_decoder.cls.predictions.decoder.weight".into(), words);
    checkpoint::save(&out, &f.captioner.meta, &tensors).unwrap();
    let config = out.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    cfg["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("encoder_hidden_size");
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    assert!(
        out.join("preprocessor_config.json").is_file()
            && !out.join("processor_config.json").exists()
    );

    let hub = Captioner::load(&out, &Device::Cpu).unwrap();
    assert_eq!(hub.meta.config.text_config.encoder_hidden_size, Some(32));
    let opts = CaptionOptions {
        num_beams: 3,
        prompt: Some("a picture of".into()),
        ..Default::default()
    };
    let imgs = images(&f.json);
    let ours = hub.caption(&imgs, &opts).unwrap();
    let case = f.json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "beam3_blip_eval")
        .unwrap();
    for (i, caps) in ours.iter().enumerate() {
        assert_eq!(caps[0].text, case["texts"][i].as_str().unwrap());
    }
    std::fs::remove_dir_all(&out).ok();
}

/// f16 and bf16 checkpoints, in shards, load as the f32 checkpoint of the same (rounded)
/// values does, as transformers upcasts them: the same captions to the last bit of
/// their scores.
#[test]
fn half_precision_shards_load_as_their_f32_values() {
    let f = fixture("tiny-a");
    let tensors = checkpoint::load_tensors(&f.dir, &Device::Cpu).unwrap();
    let opts = CaptionOptions {
        num_beams: 2,
        ..CaptionOptions::default()
    };
    let imgs = images(&f.json);
    for dtype in [DType::F16, DType::BF16] {
        let half: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.to_dtype(dtype).unwrap()))
            .collect();
        let widened: HashMap<String, Tensor> = half
            .iter()
            .map(|(n, t)| (n.clone(), t.to_dtype(DType::F32).unwrap()))
            .collect();
        let sharded = tempdir(&format!("shards-{dtype:?}"));
        checkpoint::save(&sharded, &f.captioner.meta, &half).unwrap();
        std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
        let mut names: Vec<&String> = half.keys().collect();
        names.sort();
        let mut weight_map = serde_json::Map::new();
        for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", i + 1);
            let shard: HashMap<&String, Tensor> =
                part.iter().map(|n| (*n, half[*n].clone())).collect();
            candle_core::safetensors::save(&shard, sharded.join(&file)).unwrap();
            for n in part {
                weight_map.insert(n.to_string(), Value::from(file.clone()));
            }
        }
        let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(
            sharded.join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        let single = tempdir(&format!("widened-{dtype:?}"));
        checkpoint::save(&single, &f.captioner.meta, &widened).unwrap();

        let a = Captioner::load(&sharded, &Device::Cpu).unwrap();
        let b = Captioner::load(&single, &Device::Cpu).unwrap();
        let (a, b) = (
            a.caption(&imgs, &opts).unwrap(),
            b.caption(&imgs, &opts).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x[0].tokens, y[0].tokens, "{dtype:?}");
            assert_eq!(x[0].score.to_bits(), y[0].score.to_bits(), "{dtype:?}");
        }
        std::fs::remove_dir_all(&sharded).ok();
        std::fs::remove_dir_all(&single).ok();
    }
}

/// Packing each layer as it is read gives the model that converting after loading in
/// f32 gives; converted weights refuse another reduced precision.
#[test]
fn loading_in_a_precision_matches_converting_after() {
    use captioner::Precision;
    let f = fixture("tiny-a");
    let imgs = images(&f.json);
    let opts = CaptionOptions::default();
    for precision in [Precision::Bf16, Precision::Int8] {
        let a = Captioner::load_in(&f.dir, &Device::Cpu, precision).unwrap();
        let mut b = Captioner::load(&f.dir, &Device::Cpu).unwrap();
        assert_eq!(b.set_precision(precision).unwrap(), precision);
        assert_eq!(a.precision(), precision);
        let (x, y) = (
            a.caption(&imgs, &opts).unwrap(),
            b.caption(&imgs, &opts).unwrap(),
        );
        for (x, y) in x.iter().zip(&y) {
            assert_eq!(x[0].tokens, y[0].tokens, "{precision:?}");
            assert_eq!(x[0].score.to_bits(), y[0].score.to_bits(), "{precision:?}");
        }
        let other = match precision {
            Precision::Bf16 => Precision::Int8,
            _ => Precision::Bf16,
        };
        let err = b.set_precision(other).unwrap_err().to_string();
        assert!(err.contains("load the checkpoint again"), "{err}");
    }
}

/// A truncated weights file is refused, naming the file and the tensor cut off.
#[test]
fn truncated_weights_are_named() {
    let f = fixture("tiny-a");
    let out = tempdir("truncated");
    let tensors = checkpoint::load_tensors(&f.dir, &Device::Cpu).unwrap();
    checkpoint::save(&out, &f.captioner.meta, &tensors).unwrap();
    let file = out.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let err = Captioner::load(&out, &Device::Cpu)
        .err()
        .expect("a truncated file is refused")
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );
    std::fs::write(&file, b"short").unwrap();
    let err = Captioner::load(&out, &Device::Cpu)
        .err()
        .expect("a file too short for a header is refused")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

/// The VisionEncoderDecoder checkpoints: ViT + GPT-2 (with old causal-mask buffers in the
/// file), ViT + GPT-2 through `enc_to_dec_proj`, ViT + TrOCR, and DeiT + TrOCR with
/// sinusoidal positions and ReLU (trocr-small's kind).
const VED: [&str; 4] = [
    "ved/vit-gpt2",
    "ved/vit-gpt2-proj",
    "ved/trocr",
    "ved/trocr-deit",
];

/// `names` of the fixture images, decoded.
fn named_images(json: &Value, key: &str) -> Vec<image::DynamicImage> {
    images(&serde_json::json!({ "images": json[key] }))
}

/// `[N, H, W, 3]` bytes of the images as the processor resizes them.
fn resized(f: &Fixture, imgs: &[image::DynamicImage]) -> Tensor {
    let ours: Vec<Tensor> = imgs
        .iter()
        .map(|img| {
            let rgb = f.captioner.meta.processor.resize_u8(img);
            let (w, h) = rgb.dimensions();
            Tensor::from_vec(rgb.into_raw(), (h as usize, w as usize, 3), &Device::Cpu).unwrap()
        })
        .collect();
    Tensor::stack(&ours, 0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// Pillow's bytes, transformers' pixels and encoder output, for the images the ViT
/// processor takes as they are (RGB) and for those it takes with `do_convert_rgb`
/// (gray, RGBA, CMYK, 16-bit), which captioner converts as that does.
#[test]
fn vision_encoder_decoder_pixels_and_encoder_match_transformers() {
    for name in VED {
        let f = fixture(name);
        for (key, prefix) in [("images", ""), ("rgb_images", "rgb_")] {
            let imgs = named_images(&f.json, key);
            if imgs.is_empty() {
                continue;
            }
            let want = f.expected[&format!("{prefix}resized")]
                .to_dtype(DType::F32)
                .unwrap();
            let max = max_abs_diff(&resized(&f, &imgs), &want);
            assert_eq!(
                max, 0.0,
                "{name} {key}: a resized pixel is {max}/255 off PIL"
            );
            let pixels = f.captioner.pixel_values(&imgs).unwrap();
            let max = max_abs_diff(&pixels, &f.expected[&format!("{prefix}pixel_values")]);
            assert!(max < 1e-5, "{name} {key}: pixel_values differ by {max}");
            let ours = f.captioner.vision.forward(&pixels).unwrap();
            let max = max_abs_diff(&ours, &f.expected[&format!("{prefix}encoder_hidden")]);
            assert!(max <= 1e-4, "{name} {key}: encoder output differs by {max}");
        }
    }
}

/// VisionEncoderDecoderModel's forward with labels: our training recipe makes its
/// decoder inputs from the same captions, and our logits are its logits.
#[test]
fn vision_encoder_decoder_teacher_forcing_matches_transformers() {
    for name in VED {
        let f = fixture(name);
        let labels = f.expected["labels"].to_dtype(DType::I64).unwrap();
        let (n, t) = labels.dims2().unwrap();
        let labels = labels.flatten_all().unwrap().to_vec1::<i64>().unwrap();
        let texts: Vec<String> = f.json["teacher_forcing"]["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        let ours = captioner_train::encode(
            &f.captioner.tokenizer,
            &texts,
            "",
            t + 1,
            &f.captioner.meta.config.text_config,
            &Device::Cpu,
        )
        .unwrap();
        // Ours is [start] + labels, scored one position on: transformers' labels and its
        // right shift of them.
        let ids = ours.input_ids.to_vec2::<u32>().unwrap();
        for i in 0..n {
            for j in 0..t {
                let theirs = labels[i * t + j];
                let (mine, label) = (ids[i][j + 1], ours.labels[i * ours.shape.1 + j + 1]);
                assert_eq!(label, theirs, "{name}: caption {i} label {j}");
                if theirs >= 0 {
                    assert_eq!(mine as i64, theirs, "{name}: caption {i} token {j}");
                }
            }
        }
        let dec_in = f.expected["decoder_input_ids"]
            .to_dtype(DType::U32)
            .unwrap();
        let logits = f
            .captioner
            .decoder
            .logits(&dec_in, &f.expected["encoder_hidden"], None)
            .unwrap()
            .flatten_to(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let theirs = f.expected["logits"]
            .flatten_to(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut max = 0f32;
        for (k, (a, b)) in logits.iter().zip(&theirs).enumerate() {
            if labels[k] >= 0 {
                for (x, y) in a.iter().zip(b) {
                    max = max.max((x - y).abs());
                }
            }
        }
        assert!(max <= 1e-4, "{name}: teacher-forced logits differ by {max}");
    }
}

#[test]
fn vision_encoder_decoder_generation_matches_transformers() {
    for name in VED {
        let f = fixture(name);
        assert_generation(&f, &f.expected["encoder_hidden"], name);
        let imgs = named_images(&f.json, "rgb_images");
        if !imgs.is_empty() {
            // From our own pixels of the images converted to RGB.
            let embeds = f
                .captioner
                .vision
                .forward(&f.captioner.pixel_values(&imgs).unwrap())
                .unwrap();
            assert_cases(&f, &f.json["rgb_cases"], &embeds, name);
        }
    }
}

/// A GPT-2 `Conv1D` weight of the wrong shape, and a missing one, are named with both
/// shapes, as BLIP's are.
#[test]
fn vision_encoder_decoder_wrong_shape_and_missing_tensor_are_named() {
    assert_bad_tensor_named(
        "ved/vit-gpt2",
        "decoder.transformer.h.1.crossattention.c_attn.weight",
        (24, 47),
        "[24, 48]",
    );
}

/// A checkpoint `captioner train` fine-tuned from ved/vit-gpt2 loads in transformers,
/// which computes our logits and our greedy caption (fixtures by
/// scripts/make_ved_trained_fixture.sh).
#[test]
fn fine_tuned_vision_encoder_decoder_gives_transformers_our_logits() {
    let c = Captioner::load(&fixtures().join("ved-trained"), &Device::Cpu).unwrap();
    let hf = fixtures().join("ved-trained-hf");
    let t = candle_core::safetensors::load(hf.join("expected.safetensors"), &Device::Cpu).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("expected.json")).unwrap()).unwrap();
    // Training moved the weights.
    let before = checkpoint::load_tensors(&fixtures().join("ved/vit-gpt2"), &Device::Cpu).unwrap();
    let after = checkpoint::load_tensors(&fixtures().join("ved-trained"), &Device::Cpu).unwrap();
    let name = "decoder.transformer.h.0.mlp.c_fc.weight";
    assert!(max_abs_diff(&before[name], &after[name]) > 1e-4);

    let image = image::open(
        fixtures()
            .join("../../..")
            .join(json["image"].as_str().unwrap()),
    )
    .unwrap();
    let pixels = c.pixel_values(std::slice::from_ref(&image)).unwrap();
    assert!(max_abs_diff(&pixels, &t["pixel_values"]) < 1e-5);
    let embeds = c.vision.forward(&pixels).unwrap();
    let ids = t["input_ids"].to_dtype(DType::U32).unwrap();
    let logits = c.decoder.logits(&ids, &embeds, None).unwrap();
    let max = max_abs_diff(&logits, &t["logits"]);
    assert!(max <= 1e-4, "logits differ by {max}");
    let opts = CaptionOptions {
        num_beams: 1,
        ..c.default_options()
    };
    let got = &c.caption(&[image], &opts).unwrap()[0][0];
    let want: Vec<u32> = json["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        got.tokens, want,
        "{} vs {}",
        got.text, json["generated_text"]
    );
}
