//! The COCO caption evaluation against pycocoevalcap 1.2 and sacreBLEU 2.6, on the
//! fixtures scripts/make_metric_fixtures.py made by running them
//! (tests/fixtures/).

#[path = "../../captioner-cli/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use caption_metrics::{self as metrics, sacrebleu, BleuKind, NAMES};
use datasets::References;
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn expected() -> Value {
    read_json(&fixtures().join("expected.json"))
}

/// The sets of expected.json that have scores (not the error cases).
fn scored_sets() -> Vec<(String, Value)> {
    let all = expected();
    let sets: Vec<(String, Value)> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, set)| {
            set.get("corpus").is_some() && fixtures().join(format!("{name}.refs.json")).exists()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        sets.len() > 10,
        "expected the main set and the edge sets, found {}",
        sets.len()
    );
    sets
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9,
        "{what}: got {got:e}, pycocoevalcap {want:e}"
    );
}

fn score_set(name: &str) -> metrics::Report {
    let refs = References::load(&fixtures().join(format!("{name}.refs.json"))).unwrap();
    let preds =
        metrics::load_predictions(&fixtures().join(format!("{name}.results.json"))).unwrap();
    metrics::score(&refs, &preds, BleuKind::Coco).unwrap()
}

/// Each list is one batch of pycocoevalcap's tokenizer: the lexer looks past the end of
/// a caption into the next one, so `context_pairs` (captions whose last token depends on
/// the next) only come out right tokenized in order.
#[test]
fn tokenizer_matches_ptbtokenizer() {
    let fx = read_json(&fixtures().join("tokenizer.json"));
    for (list, least) in [("pairs", 1000), ("context_pairs", 100)] {
        let pairs = fx[list].as_array().unwrap();
        assert!(pairs.len() > least, "{list}");
        let raws: Vec<String> = pairs
            .iter()
            .map(|p| p["raw"].as_str().unwrap().to_string())
            .collect();
        let wrong: Vec<String> = metrics::tokenize_all(&raws)
            .iter()
            .zip(pairs)
            .filter_map(|(got, p)| {
                let want = p["tokenized"].as_str().unwrap();
                (got != want).then(|| format!("{:?}\n   got  {got:?}\n   want {want:?}", p["raw"]))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{list}: {} of {} differ from PTBTokenizer:\n{}",
            wrong.len(),
            pairs.len(),
            wrong[..wrong.len().min(20)].join("\n")
        );
    }
}

/// Without the next caption, `tokenize` assumes one starting "A man", as most COCO
/// captions do.
#[test]
fn tokenizer_alone_assumes_a_caption_follows() {
    assert_eq!(
        metrics::ptb::tokenize("A dog's toy (red), isn't it?"),
        "a dog 's toy -lrb- red -rrb- is n't it"
    );
    assert_eq!(metrics::ptb::tokenize("the letter A."), "the letter a");
    assert_eq!(
        metrics::ptb::tokenize_in_batch(&["the letter A."], 0),
        "the letter a."
    );
}

#[test]
fn scores_match_pycocoevalcap() {
    for (name, set) in scored_sets() {
        let report = score_set(&name);
        let corpus = report.evaluation.corpus.values();
        for (n, got) in NAMES.iter().zip(corpus) {
            close(
                got,
                set["corpus"][n].as_f64().unwrap(),
                &format!("{name} corpus {n}"),
            );
        }
        let stats = &set["bleu_stats"];
        let mine = serde_json::to_value(report.evaluation.bleu_stats).unwrap();
        for k in ["testlen", "reflen", "guess", "correct"] {
            assert_eq!(mine[k], stats[k], "{name} bleu_stats {k}");
        }
        let per_image = set["per_image"].as_array().unwrap();
        assert_eq!(
            report.matched.ids.len(),
            per_image.len(),
            "{name}: images scored"
        );
        for ((id, s), want) in report
            .matched
            .ids
            .iter()
            .zip(&report.evaluation.per_image)
            .zip(per_image)
        {
            assert_eq!(id, &want["image_id"], "{name}: image order");
            for (n, got) in NAMES.iter().zip(s.values()) {
                close(
                    got,
                    want[n].as_f64().unwrap(),
                    &format!("{name} image {id} {n}"),
                );
            }
        }
    }
}

/// The Gaussian length penalty of a 220-word candidate takes CIDEr to a denormal;
/// pycocoevalcap's value is kept to the bit there, not rounded to 0.
#[test]
fn cider_keeps_denormals() {
    let sets = scored_sets();
    let denormal: Vec<_> = sets
        .iter()
        .flat_map(|(name, set)| {
            set["per_image"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(move |p| {
                    let c = p["CIDEr"].as_f64().unwrap();
                    (c != 0.0 && c.abs() < f64::MIN_POSITIVE)
                        .then(|| (name.clone(), p["image_id"].clone(), c))
                })
        })
        .collect();
    assert!(!denormal.is_empty(), "the fixtures hold a denormal CIDEr");
    for (name, id, want) in denormal {
        let report = score_set(&name);
        let at = report.matched.ids.iter().position(|i| *i == id).unwrap();
        assert_eq!(
            report.evaluation.per_image[at].cider, want,
            "{name} image {id}"
        );
    }
}

#[test]
fn karpathy_split_matches_pycocoevalcap() {
    let want = &expected()["main_karpathy_test"];
    let refs = References::load(&fixtures().join("main.karpathy.json"))
        .unwrap()
        .split("test")
        .unwrap();
    let preds = metrics::load_predictions(&fixtures().join("main.results.json")).unwrap();
    // Results for the other splits' images are left out, with a warning.
    let report = metrics::score(&refs, &preds, BleuKind::Coco).unwrap();
    for (n, got) in NAMES.iter().zip(report.evaluation.corpus.values()) {
        close(
            got,
            want["corpus"][n].as_f64().unwrap(),
            &format!("karpathy test {n}"),
        );
    }
    assert!(report
        .matched
        .warnings
        .iter()
        .any(|w| w.contains("outside the split")));
}

#[test]
fn sacrebleu_matches_sacrebleu() {
    let mut checked = 0;
    for (name, set) in scored_sets() {
        let Some(want) = set.get("sacrebleu") else {
            continue;
        };
        let refs = References::load(&fixtures().join(format!("{name}.refs.json"))).unwrap();
        let preds =
            metrics::load_predictions(&fixtures().join(format!("{name}.results.json"))).unwrap();
        let report = metrics::score(&refs, &preds, BleuKind::SacreBleu).unwrap();
        let got = serde_json::to_value(report.sacrebleu.unwrap()).unwrap();
        for k in ["counts", "totals", "sys_len", "ref_len"] {
            assert_eq!(got[k], want[k], "{name} sacrebleu {k}");
        }
        for k in ["score", "bp"] {
            close(
                got[k].as_f64().unwrap(),
                want[k].as_f64().unwrap(),
                &format!("{name} sacrebleu {k}"),
            );
        }
        checked += 1;
    }
    assert!(checked >= 2);
    let pairs = read_json(&fixtures().join("sacrebleu_tokenizer.json"));
    let pairs = pairs
        .get("pairs")
        .unwrap_or(&pairs)
        .as_array()
        .unwrap()
        .clone();
    assert!(pairs.len() > 100);
    for p in pairs {
        let raw = p["raw"].as_str().unwrap();
        assert_eq!(
            sacrebleu::tokenize_13a(raw),
            p["tokenized"].as_str().unwrap(),
            "13a of {raw:?}"
        );
    }
}

/// captioner's own JSON lines (matched by file name, error records left out) score as
/// the COCO results of the same captions do.
#[test]
fn json_lines_score_like_coco_results() {
    let dir = common::tmp("jsonl");
    let refs = References::load(&fixtures().join("main.refs.json")).unwrap();
    let results = read_json(&fixtures().join("main.results.json"));
    let mut lines =
        vec![json!({"file": "/data/photos/broken.jpg", "error": "cannot decode"}).to_string()];
    for r in results.as_array().unwrap() {
        let id = datasets::ImageId::from_json(&r["image_id"]).unwrap();
        let image = refs.get(&id).unwrap();
        lines.push(json!({"file": format!("/data/photos/{}", image.file_name), "caption": r["caption"], "score": -1.5}).to_string());
    }
    let path = dir.join("captions.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let preds = metrics::load_predictions(&path).unwrap();
    assert_eq!(preds.failed, 1);
    let got = metrics::score(&refs, &preds, BleuKind::Coco).unwrap();
    let want = score_set("main");
    assert_eq!(got.evaluation.corpus, want.evaluation.corpus);
    assert!(got
        .matched
        .warnings
        .iter()
        .any(|w| w.contains("1 error records")));
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn small_refs() -> Value {
    json!({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A dog runs on the grass."},
            {"id": 11, "image_id": 2, "caption": "Two cats sleep on a bed."},
            {"id": 12, "image_id": 3, "caption": "A red bus on a street."}
        ]
    })
}

#[test]
fn bad_results_are_errors_naming_file_and_entry() {
    let dir = common::tmp("bad");
    let refs_path = write(&dir, "refs.json", &small_refs());
    let refs = References::load(&refs_path).unwrap();
    let err = |preds: Value| {
        let p = write(&dir, "preds.json", &preds);
        let loaded = metrics::load_predictions(&p);
        match loaded {
            Err(e) => e.to_string(),
            Ok(preds) => metrics::score(&refs, &preds, BleuKind::Coco)
                .unwrap_err()
                .to_string(),
        }
    };
    let e = err(json!([{"image_id": 1, "caption": "a dog"}, {"image_id": 1, "caption": "a cat"}]));
    assert!(
        e.contains("preds.json")
            && e.contains("[1]")
            && e.contains("second result")
            && e.contains("[0]"),
        "{e}"
    );
    let e = err(json!([{"image_id": 7, "caption": "a dog"}]));
    assert!(
        e.contains("preds.json") && e.contains("[0]") && e.contains("image_id 7"),
        "{e}"
    );
    let e = err(json!([{"image_id": 1, "text": "a dog"}]));
    assert!(e.contains("preds.json") && e.contains("[0]"), "{e}");
    let e = err(json!({"images": [], "annotations": []}));
    assert!(
        e.contains("preds.json") && e.contains("annotation file"),
        "{e}"
    );

    std::fs::write(dir.join("broken.json"), "[{\"image_id\": 1, \"caption\": ").unwrap();
    let e = metrics::load_predictions(&dir.join("broken.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.json"), "{e}");

    // pycocoevalcap's AssertionError on the same files.
    assert_eq!(
        expected()["two_candidates_same_image"]["error"]["type"],
        "AssertionError"
    );
    let refs2 = References::load(&fixtures().join("two_candidates_same_image.refs.json")).unwrap();
    let preds2 =
        metrics::load_predictions(&fixtures().join("two_candidates_same_image.results.json"))
            .unwrap();
    let e = metrics::score(&refs2, &preds2, BleuKind::Coco)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("two_candidates_same_image.results.json") && e.contains("second result"),
        "{e}"
    );

    let bad_refs = write(
        &dir,
        "bad_refs.json",
        &json!({"images": [{"id": 1}], "annotations": [{"image_id": 9, "caption": "x"}]}),
    );
    let e = References::load(&bad_refs).unwrap_err().to_string();
    assert!(
        e.contains("bad_refs.json") && e.contains("annotations[0]") && e.contains("9"),
        "{e}"
    );
}

#[test]
fn warnings_say_where_numbers_mean_little() {
    let dir = common::tmp("warn");
    let refs = References::load(&write(&dir, "refs.json", &small_refs())).unwrap();
    let preds = metrics::load_predictions(&write(
        &dir,
        "one.json",
        &json!([{"image_id": "2", "caption": "two cats on a bed"}]),
    ))
    .unwrap();
    let r = metrics::score(&refs, &preds, BleuKind::Coco).unwrap();
    assert_eq!(r.matched.ids, vec![json!(2)], "\"2\" names image 2");
    assert_eq!(r.evaluation.corpus.cider, 0.0);
    let w = r.matched.warnings.join("\n");
    assert!(
        w.contains("2 of 3 images") && w.contains("single image"),
        "{w}"
    );
}
