//! The shipped model, weights/shapes-tiny: transformers loads it and computes our logits
//! and our greedy caption (fixtures by scripts/check_in_transformers.py), and it names
//! the shapes of the committed sample images.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use captioner::{CaptionOptions, Captioner, Precision};
use serde_json::Value;

mod tensors;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> Captioner {
    Captioner::load(&repo().join("weights/shapes-tiny"), &Device::Cpu).unwrap()
}

#[test]
fn transformers_computes_our_logits_and_caption() {
    let dir = repo().join("captioner-cli/tests/fixtures/shapes-tiny-hf");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let t = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let c = model();
    let embeds = c.vision.forward(&t["pixel_values"]).unwrap();
    let ids = t["input_ids"].to_dtype(DType::U32).unwrap();
    let logits = c.decoder.logits(&ids, &embeds, None).unwrap();
    let d = tensors::rel_diff(&logits, &t["logits"]);
    assert!(d < 1e-4, "logits differ by {d} (relative)");

    // bf16 and int8: the same next token as transformers' f32 at (nearly) every position.
    for (precision, percent) in [(Precision::Bf16, 99), (Precision::Int8, 99)] {
        let mut q = model();
        q.set_precision(precision).unwrap();
        let embeds = q.vision.forward(&t["pixel_values"]).unwrap();
        let ours = q.decoder.logits(&ids, &embeds, None).unwrap();
        let top = |l: &candle_core::Tensor| -> Vec<u32> {
            l.argmax(candle_core::D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (a, b) = (top(&ours), top(&t["logits"]));
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        let rel = tensors::rel_diff(&ours, &t["logits"]);
        println!(
            "{precision:?}: top-1 agreement {agree}/{}, relative logit error {rel:.4}",
            a.len()
        );
        assert!(
            agree * 100 >= percent * a.len(),
            "{precision:?} top-1 agreement {agree}/{}",
            a.len()
        );
    }

    let image = image::open(repo().join(json["image"].as_str().unwrap())).unwrap();
    let opts = CaptionOptions {
        num_beams: 1,
        prompt: Some(json["prompt"].as_str().unwrap().trim().to_string()),
        min_new_tokens: Some(0),
        ..CaptionOptions::default()
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

/// Greedy captions of the 12 committed sample images, checked against each image's
/// scene (every object's colour and shape named, and nothing else), in f32, bf16 and
/// int8.
#[test]
fn names_the_shapes_of_the_sample() {
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        names_the_shapes(precision);
    }
}

fn names_the_shapes(precision: Precision) {
    let sample = repo().join("datasets/sample");
    let scenes = datasets::synth::load_scenes(&sample.join("test.json")).unwrap();
    let refs = datasets::References::load(&sample.join("test.json")).unwrap();
    let mut c = model();
    c.set_precision(precision).unwrap();
    let images: Vec<_> = refs
        .images
        .iter()
        .map(|i| image::open(sample.join(&i.file_name)).unwrap())
        .collect();
    let opts = CaptionOptions {
        num_beams: 1,
        prompt: Some("a picture of".into()),
        strip_prompt: true,
        ..CaptionOptions::default()
    };
    let captions = c.caption(&images, &opts).unwrap();
    let pairs: Vec<(&str, &datasets::synth::Scene)> = refs
        .images
        .iter()
        .zip(&captions)
        .map(|(i, c)| {
            (
                c[0].text.as_str(),
                &scenes[&i.id.as_str().parse::<i64>().unwrap()],
            )
        })
        .collect();
    let acc = datasets::synth::scene_accuracy(pairs.iter().copied());
    // weights/README.md: 92% on the 500 test images; 11 of these 12.
    assert!(
        acc >= 0.9,
        "{precision:?}: scene accuracy {acc} on the sample: {:#?}",
        pairs.iter().map(|p| p.0).collect::<Vec<_>>()
    );
}
