//! One training step against torch autograd on the same batch (fixtures by
//! scripts/make_train_fixtures.py on the tiny-a checkpoint): the text recipe's tokens
//! and labels, the loss with label smoothing, gradients of named weights, gradient
//! clipping and one AdamW update.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use captioner::train::{self, AdamW, AdamWConfig, Trainable};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Fixture {
    json: Value,
    tensors: HashMap<String, Tensor>,
}

fn fixture() -> Fixture {
    let dir = fixtures().join("train");
    Fixture {
        json: serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
            .unwrap(),
        tensors: candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)
            .unwrap(),
    }
}

/// Largest difference relative to the largest magnitude of `want` (gradients of
/// different tensors differ in scale by orders of magnitude).
fn rel_diff(got: &Tensor, want: &Tensor) -> f32 {
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale.max(1e-12)
}

fn batch(fx: &Fixture, model: &Trainable) -> train::TextBatch {
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixtures().join("tiny-a/tokenizer.json")).unwrap();
    let j = &fx.json;
    let max_words = j["max_words"].as_u64().unwrap() as usize;
    let captions: Vec<String> = j["captions_raw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| train::pre_caption(c.as_str().unwrap(), max_words))
        .collect();
    let want_pre: Vec<&str> = j["captions_pre"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(captions, want_pre, "pre_caption");
    train::encode(
        &tokenizer,
        &captions,
        j["prompt"].as_str().unwrap(),
        j["max_txt_len"].as_u64().unwrap() as usize,
        model.meta.config.text_config.bos_token_id,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn text_recipe_matches_blip() {
    let fx = fixture();
    let model = Trainable::load(&fixtures().join("tiny-a"), &Device::Cpu).unwrap();
    let text = batch(&fx, &model);
    let ids = |t: &Tensor| -> Vec<Vec<i64>> { t.to_dtype(DType::I64).unwrap().to_vec2().unwrap() };
    assert_eq!(ids(&text.input_ids), ids(&fx.tensors["input_ids"]));
    assert_eq!(
        ids(&text.attention_mask),
        ids(&fx.tensors["attention_mask"])
    );
    let labels: Vec<i64> = fx.tensors["labels"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(text.labels, labels);
}

#[test]
fn loss_and_gradients_match_torch() {
    let fx = fixture();
    let model = Trainable::load(&fixtures().join("tiny-a"), &Device::Cpu).unwrap();
    let text = batch(&fx, &model);
    let pixels = &fx.tensors["pixel_values"];
    let smoothing = fx.json["label_smoothing"].as_f64().unwrap();

    let logits = model.logits(pixels, &text, false).unwrap();
    let d = rel_diff(&logits, &fx.tensors["logits"]);
    assert!(d < 1e-4, "logits differ by {d} (relative)");
    let loss = train::caption_loss(&logits, &text.labels, smoothing).unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    let want = fx.json["loss"].as_f64().unwrap();
    assert!(
        ((got - want) / want).abs() < 1e-4,
        "loss {got} vs torch {want}"
    );
    let plain = train::caption_loss(&logits, &text.labels, 0.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let want_plain = fx.json["loss_no_smoothing"].as_f64().unwrap();
    assert!(
        ((plain - want_plain) / want_plain).abs() < 1e-4,
        "unsmoothed loss {plain} vs {want_plain}"
    );

    let grads = loss.backward().unwrap();
    let vars: HashMap<String, candle_core::Var> = model.named_vars().into_iter().collect();
    for name in fx.json["grad_names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let g = grads
            .get(vars[name].as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let d = rel_diff(g, &fx.tensors[&format!("grad.{name}")]);
        assert!(d < 1e-4, "gradient of {name} differs by {d} (relative)");
    }

    // Clipping to norm 1, then one AdamW step, as torch did.
    let params = model.named_vars();
    let (norm, factor) = train::clip_factor(&grads, &params, 1.0).unwrap();
    let want_norm = fx.json["grad_norm"].as_f64().unwrap();
    assert!(
        ((norm - want_norm) / want_norm).abs() < 1e-4,
        "grad norm {norm} vs {want_norm}"
    );
    let want_factor = fx.json["clip_coef"].as_f64().unwrap();
    assert!(
        ((factor - want_factor) / want_factor).abs() < 1e-4,
        "clip factor {factor} vs {want_factor}"
    );
    let opt = &fx.json["optimizer"];
    let cfg = AdamWConfig {
        beta1: opt["betas"][0].as_f64().unwrap(),
        beta2: opt["betas"][1].as_f64().unwrap(),
        eps: opt["eps"].as_f64().unwrap(),
        weight_decay: opt["weight_decay"].as_f64().unwrap(),
    };
    let lr = opt["lr"].as_f64().unwrap();
    // The optimizer alone, on torch's gradients and clip factor: one AdamW update of the
    // recorded tensors. (On our own gradients the first update, about lr * g / (|g| +
    // eps) per element, magnifies the last bits of gradients near eps.)
    let clip = fx.json["clip_coef"].as_f64().unwrap();
    let names: Vec<String> = fx.json["step_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let before: Vec<Tensor> = names
        .iter()
        .map(|n| vars[n].as_tensor().copy().unwrap())
        .collect();
    let owned: Vec<(String, candle_core::Var)> = names
        .iter()
        .zip(&before)
        .map(|(n, t)| (n.clone(), candle_core::Var::from_tensor(t).unwrap()))
        .collect();
    let torch_grads: Vec<(candle_core::TensorId, Tensor)> = owned
        .iter()
        .map(|(n, v)| (v.as_tensor().id(), fx.tensors[&format!("grad.{n}")].clone()))
        .collect();
    let mut adamw = AdamW::new(owned.clone(), cfg).unwrap();
    adamw
        .update(
            |p| {
                torch_grads
                    .iter()
                    .find(|(id, _)| *id == p.id())
                    .map(|(_, g)| g.clone())
            },
            lr,
            clip,
        )
        .unwrap();
    for ((name, var), before) in owned.iter().zip(&before) {
        let want = &fx.tensors[&format!("after_step.{name}")];
        // Compare the updates: they are lr-sized, the weights much larger.
        let got_step = (var.as_tensor() - before).unwrap();
        let want_step = (want - before).unwrap();
        let d = rel_diff(&got_step, &want_step);
        assert!(d < 1e-4, "AdamW update of {name} differs by {d} (relative)");
    }
}

#[test]
fn frozen_vision_gets_no_gradient() {
    let fx = fixture();
    let model = Trainable::load(&fixtures().join("tiny-a"), &Device::Cpu).unwrap();
    let text = batch(&fx, &model);
    let smoothing = fx.json["label_smoothing"].as_f64().unwrap();
    let loss = model
        .loss(&fx.tensors["pixel_values"], &text, smoothing, true)
        .unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    let want = fx.json["frozen_vision"]["loss"].as_f64().unwrap();
    assert!(((got - want) / want).abs() < 1e-4);
    let grads = loss.backward().unwrap();
    for (name, var) in model.named_vars() {
        let has = grads.get(var.as_tensor()).is_some();
        assert_eq!(has, !name.starts_with("vision_model."), "{name}");
    }
}
