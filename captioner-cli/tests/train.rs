//! One training step against torch autograd on the same batch (fixtures by
//! scripts/make_train_fixtures.py on the tiny-a checkpoint): the text recipe's tokens
//! and labels, the loss with label smoothing, gradients of named weights, gradient
//! clipping and one AdamW update.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use captioner_train::{self as train, AdamW, AdamWConfig, Trainable};
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

mod tensors;
use tensors::rel_diff;

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
        &model.meta.config.text_config,
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
    let all = params.iter().filter_map(|(_, v)| grads.get(v.as_tensor()));
    let (norm, factor) = train::clip_factor(all, 1.0).unwrap();
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

/// The batch cut into shards that run side by side gives torch's loss and gradients of
/// the whole batch: each shard's mean loss weighs by its share of the scored tokens.
#[test]
fn sharded_batch_matches_torch() {
    let fx = fixture();
    let model = Trainable::load(&fixtures().join("tiny-a"), &Device::Cpu).unwrap();
    let text = batch(&fx, &model);
    let vars = model.named_vars();
    let by_name: HashMap<String, candle_core::Var> = vars.iter().cloned().collect();
    let rows = text.shape.0;
    for shards in [2, rows] {
        let cfg = train::TrainConfig {
            shards,
            label_smoothing: fx.json["label_smoothing"].as_f64().unwrap(),
            ..Default::default()
        };
        let replicas: Vec<_> = (0..shards).map(|_| model.replica(false).unwrap()).collect();
        let (loss, grads) = train::micro_batch(
            &replicas,
            &vars,
            &fx.tensors["pixel_values"],
            &text,
            &cfg,
            0,
            1.0,
        )
        .unwrap();
        let want = fx.json["loss"].as_f64().unwrap();
        assert!(
            ((loss - want) / want).abs() < 1e-4,
            "{shards} shards: loss {loss} vs {want}"
        );
        let grads = grads.unwrap();
        for name in fx.json["grad_names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let g = &grads[&by_name[name].as_tensor().id()];
            let d = rel_diff(g, &fx.tensors[&format!("grad.{name}")]);
            assert!(
                d < 1e-4,
                "{shards} shards: gradient of {name} differs by {d}"
            );
        }
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

mod common;

/// A tiny training set over the fixture images: 4 images, 2 captions each.
fn tiny_set(dir: &Path) -> (datasets::References, PathBuf) {
    let ann = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "odd_rgb.png"}, {"id": 2, "file_name": "wide_rgba.png"},
            {"id": 3, "file_name": "gray.png"}, {"id": 4, "file_name": "tall_rgb.png"}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "A man riding a horse."},
            {"id": 2, "image_id": 1, "caption": "a horse on the beach"},
            {"id": 3, "image_id": 2, "caption": "Two dogs on a bed."},
            {"id": 4, "image_id": 2, "caption": "dogs sitting"},
            {"id": 5, "image_id": 3, "caption": "a red bus on a street"},
            {"id": 6, "image_id": 3, "caption": "the bus is parked"},
            {"id": 7, "image_id": 4, "caption": "a tall clock tower"},
            {"id": 8, "image_id": 4, "caption": "a tower near buildings"}
        ]
    });
    let path = dir.join("ann.json");
    std::fs::write(&path, ann.to_string()).unwrap();
    (
        datasets::References::load(&path).unwrap(),
        fixtures().join("images"),
    )
}

fn small_config() -> train::TrainConfig {
    train::TrainConfig {
        epochs: 2,
        batch: 3,
        accumulate: 2,
        // Batches of 3 in shards of 1 and 2 images.
        shards: 2,
        lr: 1e-3,
        warmup_steps: 1,
        save_every: 1,
        seed: 7,
        ..Default::default()
    }
}

fn latest_weights(out: &Path) -> Vec<u8> {
    let name = std::fs::read_to_string(out.join("latest")).unwrap();
    std::fs::read(out.join(name.trim()).join("model.safetensors")).unwrap()
}

/// A run with dropout, stopped after step 2 (as a kill between steps leaves it) and
/// resumed, ends with the very bytes of an uninterrupted run.
#[test]
fn resumed_run_is_bit_identical() {
    let dir = common::tmp("resume");
    let (refs, root) = tiny_set(&dir);
    let data = train::TrainData::new(&refs, &root).unwrap();
    let dev = Device::Cpu;
    let tiny = fixtures().join("tiny-a");
    let steps = small_config().total_steps(data.len());
    assert_eq!(steps, 3, "2 epochs of 3 micro-batches, 2 per step");
    let with_dropout = || {
        let mut m = Trainable::load(&tiny, &dev).unwrap();
        m.set_dropout(0.2);
        m
    };

    let whole = dir.join("whole");
    let mut t = train::Trainer::start(with_dropout(), &data, small_config(), &whole).unwrap();
    let mut losses = Vec::new();
    t.run(&data, &dev, |r| losses.push(r.loss), |_, _| Ok(None), None)
        .unwrap();
    assert_eq!(losses.len(), steps);
    assert!(losses.iter().all(|l| l.is_finite()));

    // Dropout is on: the first step's loss differs from the same step's without it.
    let mut t = train::Trainer::start(
        Trainable::load(&tiny, &dev).unwrap(),
        &data,
        small_config(),
        &dir.join("no-dropout"),
    )
    .unwrap();
    let mut plain = Vec::new();
    t.run(
        &data,
        &dev,
        |r| plain.push(r.loss),
        |_, _| Ok(None),
        Some(1),
    )
    .unwrap();
    assert_ne!(plain[0], losses[0]);

    let cut = dir.join("cut");
    let mut t = train::Trainer::start(with_dropout(), &data, small_config(), &cut).unwrap();
    t.run(&data, &dev, |_| {}, |_, _| Ok(None), Some(2))
        .unwrap();
    drop(t);
    // The rate travels in the checkpoint's config, as transformers keeps it.
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cut.join("checkpoint-000002").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["text_config"]["hidden_dropout_prob"], 0.2);
    // A half-written checkpoint from the kill is ignored.
    std::fs::create_dir_all(cut.join(".checkpoint-000003.tmp-1")).unwrap();
    let mut t = train::Trainer::resume(&cut, &data, &dev).unwrap();
    assert_eq!(t.state.step, 2);
    let mut resumed = Vec::new();
    t.run(&data, &dev, |r| resumed.push(r.loss), |_, _| Ok(None), None)
        .unwrap();
    assert_eq!(resumed, losses[2..].to_vec());
    assert!(
        latest_weights(&whole) == latest_weights(&cut),
        "weights differ after resuming"
    );
    // Starting over in a folder that holds a run is refused.
    let e = train::Trainer::start(
        Trainable::load(&tiny, &dev).unwrap(),
        &data,
        small_config(),
        &cut,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("resume"), "{e}");
}

/// An infinite loss stops the run with a clear message and leaves the last checkpoint
/// whole.
#[test]
fn infinite_loss_stops_and_keeps_the_checkpoint() {
    let dir = common::tmp("nan");
    let (refs, root) = tiny_set(&dir);
    let data = train::TrainData::new(&refs, &root).unwrap();
    let dev = Device::Cpu;
    let out = dir.join("out");
    let config = train::TrainConfig {
        lr: 1e30,
        max_grad_norm: 1e30,
        ..small_config()
    };
    let mut t = train::Trainer::start(
        Trainable::load(&fixtures().join("tiny-a"), &dev).unwrap(),
        &data,
        config,
        &out,
    )
    .unwrap();
    let e = t
        .run(&data, &dev, |_| {}, |_, _| Ok(None), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("loss became") && e.contains("intact"), "{e}");
    let name = std::fs::read_to_string(out.join("latest")).unwrap();
    assert_eq!(name.trim(), "checkpoint-000001");
    Trainable::load(&out.join(name.trim()), &dev).unwrap();
}

fn captioner(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(args)
        .output()
        .unwrap()
}

/// The commands a user runs: write a synthetic data set, train a new tiny model on it
/// for two steps with validation, and caption with the best checkpoint.
#[test]
fn synth_train_caption_from_the_command_line() {
    let dir = common::tmp("cli-train");
    let data = dir.join("shapes");
    let s = |p: &Path| p.display().to_string();
    let out = captioner(&[
        "dataset",
        "synth",
        "--out",
        &s(&data),
        "--train",
        "6",
        "--val",
        "3",
        "--test",
        "0",
        "--seed",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = captioner(&["dataset", "synth", "--out", &s(&data), "--train", "6"]);
    assert!(
        !again.status.success(),
        "an existing data set is not overwritten"
    );

    let run = dir.join("run");
    let out = captioner(&[
        "train",
        "--train",
        &s(&data.join("train.json")),
        "--images",
        &s(&data),
        "--val",
        &s(&data.join("val.json")),
        "--preset",
        "tiny",
        "--out",
        &s(&run),
        "--steps",
        "2",
        "--batch",
        "4",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(run.join("latest")).unwrap().trim(),
        "checkpoint-000002"
    );
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for k in ["val_loss", "perplexity", "Bleu_4", "CIDEr"] {
        assert!(
            last["metrics"][k].as_f64().unwrap().is_finite(),
            "{k} in {last}"
        );
    }
    assert_eq!(image::open(run.join("curves.png")).unwrap().width(), 720);
    assert_eq!(
        std::fs::read_to_string(run.join("steps.tsv"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let out = captioner(&[
        "caption",
        "--model",
        &s(&run.join("best")),
        "--beams",
        "1",
        &s(&data.join("images/val/000001.png")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["caption"].is_string());

    // The checkpoint remembers the training prompt (generation_config.json), and
    // captions start from it unless told otherwise.
    let best = run.join("best");
    let meta = captioner::checkpoint::CheckpointMeta::load(&best).unwrap();
    assert_eq!(
        meta.prompting(),
        captioner::checkpoint::Prompting {
            prompt: Some("a picture of".into()),
            strip_prompt: true,
        }
    );
    let image = s(&data.join("images/val/000001.png"));
    let out = captioner(&["caption", "--model", &s(&best), "--keep-prompt", &image]);
    let kept: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        kept["caption"]
            .as_str()
            .unwrap()
            .starts_with("a picture of"),
        "{kept}"
    );
}
