//! The `captioner` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

fn case<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn captioner(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn image_args(json: &Value) -> Vec<String> {
    json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            fixtures()
                .join("images")
                .join(n.as_str().unwrap())
                .display()
                .to_string()
        })
        .collect()
}

/// BLIP's defaults (3 beams, max_length 20, min_length 5) with its prompt reproduce
/// transformers' `generate(num_beams=3, max_length=20, min_length=5)`.
#[test]
fn caption_defaults_are_blips_evaluation_settings() {
    let json = expected("tiny-b");
    let model = fixtures().join("tiny-b").display().to_string();
    let images = image_args(&json);
    let mut args = vec![
        "caption",
        "--model",
        &model,
        "--prompt",
        "a picture of",
        "--batch",
        "3",
    ];
    args.extend(images.iter().map(String::as_str));
    let (code, lines, stderr) = captioner(&args);
    assert_eq!(code, 0, "{stderr}");
    let case = case(&json, "beam3_blip_eval");
    assert_eq!(lines.len(), images.len());
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["file"], images[i].as_str());
        assert_eq!(line["caption"], case["texts"][i]);
        let score = line["score"].as_f64().unwrap();
        assert!((score - case["sequences_scores"][i].as_f64().unwrap()).abs() < 1e-4);
        let tokens: Vec<u64> = line["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        let theirs: Vec<u64> = case["sequences"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(tokens, theirs[..tokens.len()].to_vec());
    }
}

#[test]
fn n_best_lists_and_strip_prompt() {
    let json = expected("tiny-a");
    let model = fixtures().join("tiny-a").display().to_string();
    let images = image_args(&json);
    let mut args = vec![
        "caption",
        "--model",
        &model,
        "--beams",
        "3",
        "--num-return",
        "2",
        "--length-penalty",
        "1.5",
        "--max-new-tokens",
        "12",
        "--min-new-tokens",
        "0",
        "--prompt",
        "a picture of",
    ];
    args.extend(images.iter().map(String::as_str));
    let (code, lines, stderr) = captioner(&args);
    assert_eq!(code, 0, "{stderr}");
    let case = case(&json, "beam3_prompt");
    for (i, line) in lines.iter().enumerate() {
        let candidates = line["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 2);
        for (j, c) in candidates.iter().enumerate() {
            assert_eq!(c["caption"], case["texts"][2 * i + j]);
        }
    }
    // LAVIS' behaviour: the prompt's words are not part of the caption.
    args.push("--strip-prompt");
    let (_, stripped, _) = captioner(&args);
    for (full, cut) in lines.iter().zip(&stripped) {
        let full = full["caption"].as_str().unwrap();
        let cut = cut["caption"].as_str().unwrap();
        assert_eq!(
            full.strip_prefix("a picture of").map(str::trim),
            Some(cut),
            "{full} / {cut}"
        );
    }
}

#[test]
fn a_bad_image_is_one_error_record_and_the_rest_are_captioned() {
    let json = expected("tiny-a");
    let model = fixtures().join("tiny-a").display().to_string();
    let dir = std::env::temp_dir().join(format!("captioner-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"this is not an image").unwrap();
    let truncated = dir.join("truncated.png");
    let png = std::fs::read(fixtures().join("images/odd_rgb.png")).unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let images = image_args(&json);
    let (e, j, t) = (
        empty.display().to_string(),
        junk.display().to_string(),
        truncated.display().to_string(),
    );
    let args = vec![
        "caption", "--model", &model, "--beams", "1", &e, &images[0], &j, &t, &images[1],
    ];
    let (code, lines, stderr) = captioner(&args);
    assert_eq!(code, 2, "some images failed: exit status 2");
    let errors: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(errors.len(), 3, "{lines:?}");
    for (rec, path) in errors.iter().zip([&e, &j, &t]) {
        assert_eq!(rec["file"], path.as_str());
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        3,
        "{stderr}"
    );
    let ok: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("caption").is_some())
        .collect();
    assert_eq!(ok.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_model_says_what_is_wrong() {
    let (code, _, stderr) = captioner(&["caption", "--model", "/nonexistent/model", "x.png"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/model") && stderr.contains("checkpoint"),
        "{stderr}"
    );
}

/// `--precision` reaches the model: the plan is printed, the scores move off f32's (the
/// weights were converted), and the sample's greedy captions are (nearly all) f32's.
#[test]
fn precision_flag_converts_the_model() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = repo.join("weights/shapes-tiny").display().to_string();
    let sample = repo.join("datasets/sample").display().to_string();
    let run = |precision: &str| {
        let (code, lines, stderr) = captioner(&[
            "caption",
            &sample,
            "--model",
            &model,
            "--beams",
            "1",
            "--prompt",
            "a picture of",
            "--precision",
            precision,
        ]);
        assert_eq!(code, 0, "{stderr}");
        let captions: Vec<String> = lines
            .iter()
            .map(|l| {
                l["caption"]
                    .as_str()
                    .expect("every image captioned")
                    .to_string()
            })
            .collect();
        assert_eq!(captions.len(), 12);
        (captions, stderr)
    };
    let (f32_captions, stderr) = run("f32");
    assert!(!stderr.contains("precision"), "{stderr}");
    for (precision, plan) in [("int8", "precision int8: "), ("auto", "precision ")] {
        let (captions, stderr) = run(precision);
        assert!(stderr.contains(plan), "{precision}: {stderr}");
        let same = captions
            .iter()
            .zip(&f32_captions)
            .filter(|(a, b)| a == b)
            .count();
        assert!(same >= 10, "{precision}: {same} of 12 captions are f32's");
    }
}

/// weights/shapes-tiny's generation_config.json gives its training prompt, left out of
/// the text: the same captions as asking for them; --keep-prompt and --prompt override
/// it, and a malformed prompt is refused naming the file.
#[test]
fn the_checkpoint_prompt_is_the_default() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = repo.join("weights/shapes-tiny").display().to_string();
    let image = repo
        .join("datasets/sample/images/test/000001.png")
        .display()
        .to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["caption", "--model", &model, "--beams", "1", &image];
        args.extend(extra);
        let (code, lines, stderr) = captioner(&args);
        assert_eq!(code, 0, "{stderr}");
        lines[0].clone()
    };
    let default = run(&[]);
    assert_eq!(
        default,
        run(&["--prompt", "a picture of", "--strip-prompt"])
    );
    let kept = run(&["--keep-prompt"]);
    assert_eq!(kept["tokens"], default["tokens"]);
    assert_eq!(
        kept["caption"].as_str().unwrap(),
        format!("a picture of {}", default["caption"].as_str().unwrap())
    );
    let unprompted = run(&["--prompt", ""]);
    assert_ne!(unprompted["tokens"], default["tokens"]);

    let bad = std::env::temp_dir().join(format!("captioner-bad-prompt-{}", std::process::id()));
    std::fs::create_dir_all(&bad).unwrap();
    for f in std::fs::read_dir(repo.join("weights/shapes-tiny")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, bad.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(bad.join("generation_config.json"), r#"{"prompt": 3}"#).unwrap();
    let (code, _, stderr) = captioner(&["caption", "--model", &bad.display().to_string(), &image]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("generation_config.json") && stderr.contains("not a string"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&bad).ok();
}
