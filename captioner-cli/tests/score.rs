//! `captioner score` and `captioner eval` against pycocoevalcap's numbers, on the
//! metrics crate's fixtures (caption-metrics/tests/fixtures/, made by
//! scripts/make_metric_fixtures.py) and the tiny checkpoint's recorded captions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use caption_metrics::{self as metrics, BleuKind, NAMES};
use datasets::References;
use serde_json::{json, Value};

use common::GREEDY;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../caption-metrics/tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn expected() -> Value {
    read_json(&fixtures().join("expected.json"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9,
        "{what}: got {got:e}, pycocoevalcap {want:e}"
    );
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

#[test]
fn score_command_prints_the_scores() {
    let main = fixtures();
    let dir = common::tmp("cli");
    let per_image = dir.join("per_image.json");
    let out = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(["score", "--json", "--refs"])
        .arg(main.join("main.refs.json"))
        .arg("--preds")
        .arg(main.join("main.results.json"))
        .arg("--per-image")
        .arg(&per_image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &expected()["main"];
    for n in NAMES {
        close(
            got["scores"][n].as_f64().unwrap(),
            want["corpus"][n].as_f64().unwrap(),
            n,
        );
    }
    let rows = read_json(&per_image);
    assert_eq!(
        rows.as_array().unwrap().len(),
        want["per_image"].as_array().unwrap().len()
    );
    assert_eq!(rows[0]["image_id"], want["per_image"][0]["image_id"]);

    let table = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(["score", "--bleu", "sacrebleu", "--refs"])
        .arg(main.join("main.refs.json"))
        .arg("--preds")
        .arg(main.join("main.results.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success() && text.contains("BLEU (sacreBLEU)") && text.contains("CIDEr"),
        "{text}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(["score", "--refs", "nope.json", "--preds", "nope2.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
}

/// `eval` captions a split's images (the tiny checkpoint, greedy, so its captions are
/// transformers' recorded texts), scores them, and keeps going past a missing image.
#[test]
fn eval_captions_a_split_and_scores_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let recorded = read_json(&root.join("tiny-a/expected.json"));
    let greedy = recorded["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "greedy_default")
        .unwrap();
    let texts: Vec<&str> = greedy["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let names: Vec<&str> = recorded["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let dir = common::tmp("eval");
    let image = |i: usize, name: &str, split: &str| {
        json!({"filepath": "images", "filename": name, "cocoid": 100 + i, "split": split,
               "sentences": [{"raw": "A small picture of a cake."}, {"raw": "Pizza for a group."}]})
    };
    let mut images: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| image(i, n, if i == 3 { "train" } else { "test" }))
        .collect();
    images.push(image(9, "missing.png", "test"));
    let ann = write(
        &dir,
        "dataset.json",
        &json!({"dataset": "coco", "images": images}),
    );
    let out = dir.join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_captioner"))
            .args(["eval", "--quiet", "--json", "--split", "test"])
            .args(GREEDY)
            .arg("--ann")
            .arg(&ann)
            .arg("--images")
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(root.join("tiny-a"))
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        first.status.code(),
        Some(2),
        "one image is missing: {stderr}"
    );
    assert!(stderr.contains("missing.png"), "{stderr}");
    let results = read_json(&out.join("results.json"));
    let got: Vec<(i64, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["image_id"].as_i64().unwrap(),
                r["caption"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(100, texts[0]), (101, texts[1]), (102, texts[2])]);

    let printed: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(printed, read_json(&out.join("scores.json")));
    let refs = References::load(&ann).unwrap().split("test").unwrap();
    let preds = metrics::load_predictions(&out.join("results.json")).unwrap();
    let want = metrics::score(&refs, &preds, BleuKind::Coco).unwrap();
    assert_eq!(printed, want.to_json());
    assert_eq!(read_json(&out.join("per_image.json")), want.per_image());
    assert!(
        printed["warnings"][0]
            .as_str()
            .unwrap()
            .contains("1 of 4 images"),
        "{printed}"
    );

    // A second run resumes: nothing is captioned again, the missing image fails again.
    let second = run();
    assert_eq!(second.status.code(), Some(2));
    assert_eq!(read_json(&out.join("results.json")), results);
}
