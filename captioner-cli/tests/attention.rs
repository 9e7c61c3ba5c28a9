//! Attention maps from the command line, with the shipped model on the committed
//! sample: `attend` writes the returned beam's own attention (checked against the
//! decoder's attention recomputed teacher-forced), and `eval --attention` finds the
//! objects the captions name better than chance.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use captioner::Captioner;
use serde_json::Value;

mod common;

const PROMPT: &str = "a picture of";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample(name: &str) -> PathBuf {
    repo().join("datasets/sample/images/test").join(name)
}

fn captioner_cmd(sub: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_captioner"));
    cmd.arg(sub)
        .args([
            "--model".as_ref(),
            repo().join("weights/shapes-tiny").as_os_str(),
        ])
        .args(["--prompt", PROMPT, "--strip-prompt", "-q"]);
    cmd
}

fn succeeded(run: &std::process::Output) {
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Per generated token, the attention on the patches (mean over layers and heads,
/// class token left out) of the step that chose it, from one teacher-forced pass.
fn teacher_forced(c: &Captioner, image: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    let pixels = c.pixel_values(&[image::open(image).unwrap()]).unwrap();
    let cross = c
        .decoder
        .cross_kv(&c.vision.forward(&pixels).unwrap())
        .unwrap();
    let ids = Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = c
        .decoder
        .forward(&ids, &c.decoder.empty_cache(), &cross, None, true)
        .unwrap();
    // [layers][heads][query][key]
    let layers: Vec<Vec<Vec<Vec<f32>>>> = out
        .cross_attentions
        .unwrap()
        .iter()
        .map(|l| l.squeeze(0).unwrap().to_vec3().unwrap())
        .collect();
    let prompt = c.decoder_prompt(Some(PROMPT)).unwrap().len();
    (prompt..tokens.len())
        .map(|p| {
            let n = layers[0][0][0].len();
            let mut mean = vec![0f32; n - 1];
            let count = (layers.len() * layers[0].len()) as f32;
            for heads in &layers {
                for rows in heads {
                    for (m, a) in mean.iter_mut().zip(&rows[p - 1][1..]) {
                        *m += a / count;
                    }
                }
            }
            mean
        })
        .collect()
}

#[test]
fn attend_writes_the_returned_beams_own_attention() {
    let out = common::tmp("attend");
    let names = ["000001.png", "000005.png", "000011.png"];
    let run = captioner_cmd("attend")
        .args(names.map(sample))
        .args(["--beams", "3"])
        .args(["--out".as_ref(), out.as_os_str()])
        .args(["--report".as_ref(), out.join("report.html").as_os_str()])
        .output()
        .unwrap();
    succeeded(&run);
    let lines: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), names.len());
    let c = Captioner::load(&repo().join("weights/shapes-tiny"), &Device::Cpu).unwrap();
    for (name, line) in names.iter().zip(&lines) {
        let maps = read_json(&out.join(name).with_extension("json"));
        let caption = line["caption"].as_str().unwrap();
        assert_eq!(maps["caption"], caption);
        assert_eq!(maps["tokens"], line["tokens"]);
        let words = maps["words"].as_array().unwrap();
        let text: Vec<&str> = words.iter().map(|w| w["word"].as_str().unwrap()).collect();
        assert_eq!(text.join(" "), caption, "the words are the caption's");
        assert_eq!(maps["grid"], serde_json::json!([8, 8]));

        let tokens: Vec<u32> = line["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let truth = teacher_forced(&c, &sample(name), &tokens);
        for w in words {
            let positions: Vec<usize> = w["positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap() as usize)
                .collect();
            let got: Vec<f32> = w["weights"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                })
                .collect();
            for (k, g) in got.iter().enumerate() {
                let want =
                    positions.iter().map(|&p| truth[p][k]).sum::<f32>() / positions.len() as f32;
                assert!(
                    (g - want).abs() < 1e-5,
                    "{name} {}: patch {k} {g} vs {want}",
                    w["word"]
                );
            }
        }

        // The sheet: the image (96 px), then a tile per word, five to a row, each
        // 8 px apart with a 24 px label strip.
        let sheet = image::open(out.join(name)).unwrap();
        let cells = 1 + words.len();
        let (cols, rows) = (cells.min(5) as u32, cells.div_ceil(5) as u32);
        assert_eq!(
            (sheet.width(), sheet.height()),
            (8 + cols * 104, 8 + rows * 128)
        );
    }
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        report.matches("<figure class=\"item\"").count(),
        names.len()
    );
    assert!(
        !report.contains("http:") && !report.contains("https:"),
        "no network"
    );
}

/// `caption` over a folder writes its usual output and, under --attention, a sheet
/// and maps per image at its path relative to the folder.
#[test]
fn caption_writes_maps_for_a_folder_beside_its_output() {
    let out = common::tmp("caption");
    let maps = out.join("maps");
    let run = captioner_cmd("caption")
        .arg(repo().join("datasets/sample/images"))
        .args(["--beams", "1", "--attn-layer", "2"])
        .args(["-o".as_ref(), out.join("captions.jsonl").as_os_str()])
        .args(["--attention".as_ref(), maps.as_os_str()])
        .output()
        .unwrap();
    succeeded(&run);
    let lines = std::fs::read_to_string(out.join("captions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 12);
    for i in 1..=12 {
        let name = format!("test/{i:06}");
        let json = read_json(&maps.join(&name).with_extension("json"));
        assert_eq!(json["layer"], 2);
        assert!(lines.contains(&format!("\"caption\":{}", json["caption"])));
        image::open(maps.join(name).with_extension("png")).unwrap();
    }
}

#[test]
fn eval_attention_finds_the_named_objects_better_than_chance() {
    let out = common::tmp("eval");
    let run = captioner_cmd("eval")
        .args([
            "--ann".as_ref(),
            repo().join("datasets/sample/test.json").as_os_str(),
        ])
        .args([
            "--images".as_ref(),
            repo().join("datasets/sample").as_os_str(),
        ])
        .args(["--out".as_ref(), out.as_os_str()])
        .args(["--beams", "1", "--attention", "--json"])
        .output()
        .unwrap();
    succeeded(&run);
    let scores = read_json(&out.join("scores.json"));
    let a = &scores["attention"];
    let f = |k: &str| a[k].as_f64().unwrap();
    // Two words (colour, shape) per object named; the sample's 12 images hold 21.
    assert!(a["words"].as_u64().unwrap() >= 30, "{a}");
    assert!(f("chance") > 0.0 && f("chance") < 0.2, "{a}");
    assert!(f("mass_in_box") > 2.0 * f("chance"), "{a}");
    assert!(f("pointing") > 4.0 * f("chance"), "{a}");
}

#[test]
fn eval_attention_needs_scenes() {
    let out = common::tmp("no-scenes");
    let ann = out.join("ann.json");
    std::fs::write(
        &ann,
        r#"{"images": [{"id": 1, "file_name": "000001.png"}],
            "annotations": [{"image_id": 1, "caption": "a red circle"}]}"#,
    )
    .unwrap();
    let run = captioner_cmd("eval")
        .args(["--ann".as_ref(), ann.as_os_str()])
        .args([
            "--images".as_ref(),
            repo().join("datasets/sample/images/test").as_os_str(),
        ])
        .args([
            "--out".as_ref(),
            out.join("eval").as_os_str(),
            "--attention".as_ref(),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("scenes") && err.contains("ann.json"), "{err}");
}

#[test]
fn a_layer_the_decoder_lacks_is_refused_before_captioning() {
    let out = common::tmp("layer");
    let run = captioner_cmd("attend")
        .arg(sample("000001.png"))
        .args(["--attn-layer", "3"])
        .args(["--out".as_ref(), out.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("--attn-layer 3: the decoder has 3 layers"),
        "{err}"
    );
    assert!(run.stdout.is_empty(), "nothing captioned");
}
