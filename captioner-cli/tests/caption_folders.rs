//! `captioner caption` on folders as a user runs it: walking, bad files, the output
//! formats, resuming after a kill, tag files. The model is the tiny random checkpoint
//! `tiny-a`, with greedy search, so every run is quick.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use captioner::{CaptionOptions, Captioner};
use captioner_runner::output::{self, JsonLine};
use image::ImageFormat;
use serde_json::{json, Value};

mod common;
use common::{png_chunk, tmp, Run, GREEDY};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model() -> String {
    fixtures().join("tiny-a").display().to_string()
}

fn fixture_image(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

fn captioner(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_captioner"))
        .arg("caption")
        .args(["--model", &model()])
        .args(args)
        .output()
        .unwrap()
        .into()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The captions the library gives, in process, for these files (greedy, as [`GREEDY`]).
fn library_captions(files: &[PathBuf]) -> BTreeMap<String, String> {
    let captioner = Captioner::load(&fixtures().join("tiny-a"), &Device::Cpu).unwrap();
    let opts = CaptionOptions {
        num_beams: 1,
        max_new_tokens: Some(20),
        min_new_tokens: Some(0),
        ..CaptionOptions::default()
    };
    files
        .iter()
        .map(|f| {
            let img = datasets::load_image(f, datasets::DEFAULT_MAX_PIXELS).unwrap();
            let caps = captioner.caption(&[img], &opts).unwrap();
            (s(f), caps[0][0].text.clone())
        })
        .collect()
}

/// transformers' greedy_default texts for the fixture images, by file name.
fn transformers_texts() -> BTreeMap<String, String> {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny-a/expected.json")).unwrap(),
    )
    .unwrap();
    let case = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "greedy_default")
        .unwrap();
    json["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["texts"].as_array().unwrap())
        .map(|(n, t)| (n.as_str().unwrap().into(), t.as_str().unwrap().into()))
        .collect()
}

fn save_as(src: &str, dst: &Path, format: ImageFormat) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let img = image::open(fixture_image(src)).unwrap();
    let img = match format {
        ImageFormat::Jpeg => image::DynamicImage::ImageRgb8(img.to_rgb8()),
        _ => img,
    };
    img.save_with_format(dst, format).unwrap();
}

fn copy(src: &str, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(fixture_image(src), dst).unwrap();
}

/// A valid PNG whose IHDR (with a correct CRC) claims 50000 x 50000 pixels.
fn bomb_png() -> Vec<u8> {
    let png = std::fs::read(fixture_image("odd_rgb.png")).unwrap();
    let mut ihdr = png[16..29].to_vec();
    ihdr[..4].copy_from_slice(&50_000u32.to_be_bytes());
    ihdr[4..8].copy_from_slice(&50_000u32.to_be_bytes());
    let mut out = png[..8].to_vec();
    out.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    out.extend_from_slice(&png[33..]);
    out
}

fn jsonl(text: &str) -> Vec<JsonLine> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// file -> caption of the captioned records; panics if a file appears twice.
fn captions(records: &[JsonLine]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in records {
        if let Some(c) = &r.caption {
            assert!(
                out.insert(r.file.clone(), c.clone()).is_none(),
                "{} twice",
                r.file
            );
        }
    }
    out
}

/// A folder of good images in every format, nested, with upper-case extensions and a
/// link back to its root; returns the good images (lossless copies first, with the
/// fixture each was made from).
#[cfg(unix)]
fn good_tree(root: &Path) -> (Vec<(PathBuf, &'static str)>, Vec<PathBuf>) {
    let lossless = vec![
        (root.join("a/odd_rgb.png"), "odd_rgb.png"),
        (root.join("a/b/deep/tall_rgb.BMP"), "tall_rgb.png"),
        (root.join("c/gray.TIFF"), "gray.png"),
        (root.join("c/wide_rgba.webp"), "wide_rgba.png"),
    ];
    copy("odd_rgb.png", &lossless[0].0);
    save_as("tall_rgb.png", &lossless[1].0, ImageFormat::Bmp);
    save_as("gray.png", &lossless[2].0, ImageFormat::Tiff);
    save_as("wide_rgba.png", &lossless[3].0, ImageFormat::WebP);
    let lossy = vec![root.join("c/odd_rgb.jpg"), root.join("c/wide_rgba.Gif")];
    save_as("odd_rgb.png", &lossy[0], ImageFormat::Jpeg);
    save_as("wide_rgba.png", &lossy[1], ImageFormat::Gif);
    std::os::unix::fs::symlink("..", root.join("c/back")).unwrap();
    std::fs::write(root.join("c/readme.txt"), "not an image, not looked at").unwrap();
    (lossless, lossy)
}

#[cfg(unix)]
#[test]
fn a_folder_tree_is_captioned_once_per_image_and_bad_files_are_named() {
    let root = tmp("tree");
    let (lossless, lossy) = good_tree(&root);
    let bad = [
        (root.join("bad/corrupt.png"), "not a decodable image"),
        (root.join("bad/empty.jpeg"), "empty"),
        (root.join("bad/text.jpg"), "not a decodable image"),
        (root.join("bad/bomb.png"), "50000"),
    ];
    std::fs::create_dir_all(root.join("bad")).unwrap();
    let png = std::fs::read(fixture_image("tall_rgb.png")).unwrap();
    std::fs::write(&bad[0].0, &png[..png.len() / 2]).unwrap();
    std::fs::write(&bad[1].0, b"").unwrap();
    std::fs::write(&bad[2].0, b"just some text, named like a photo\n").unwrap();
    std::fs::write(&bad[3].0, bomb_png()).unwrap();

    let out = root.join("captions.jsonl");
    let mut args = vec![s(&root), "-o".into(), s(&out), "--batch".into(), "3".into()];
    args.extend(GREEDY.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = captioner(&args);
    assert_eq!(run.code, 2, "some images failed: {}", run.stderr);
    let records = jsonl(&std::fs::read_to_string(&out).unwrap());

    // In walk order: sorted names, depth first.
    let order: Vec<&str> = records.iter().map(|r| r.file.as_str()).collect();
    let expected_order: Vec<String> = [
        "a/b/deep/tall_rgb.BMP",
        "a/odd_rgb.png",
        "bad/bomb.png",
        "bad/corrupt.png",
        "bad/empty.jpeg",
        "bad/text.jpg",
        "c/gray.TIFF",
        "c/odd_rgb.jpg",
        "c/wide_rgba.Gif",
        "c/wide_rgba.webp",
    ]
    .iter()
    .map(|r| s(&root.join(r)))
    .collect();
    assert_eq!(order, expected_order);

    // Every good image once, with the library's caption; the lossless copies with
    // transformers' caption of the image they were made from.
    let got = captions(&records);
    let good: Vec<PathBuf> = lossless
        .iter()
        .map(|(p, _)| p.clone())
        .chain(lossy.iter().cloned())
        .collect();
    assert_eq!(got, library_captions(&good));
    let theirs = transformers_texts();
    for (path, source) in &lossless {
        assert_eq!(got[&s(path)], theirs[*source], "{}", path.display());
    }

    // Every bad one reported, naming the file and the problem, in the output and on stderr.
    for (path, reason) in &bad {
        let rec = records.iter().find(|r| r.file == s(path)).unwrap();
        let err = rec.error.as_deref().unwrap();
        assert!(err.contains(&s(path)) && err.contains(reason), "{err}");
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("error:") && l.contains(&s(path))),
            "{}",
            run.stderr
        );
    }
    let summary = run.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("captioned 6, failed 4, skipped 0 in "),
        "{summary}"
    );

    // Only good images: exit status 0. A file named directly is captioned whatever its
    // name says. (Without the link back to the root: through it, `c` leads to `bad`.)
    std::fs::remove_file(root.join("c/back")).unwrap();
    let odd_name = root.join("photo.data");
    std::fs::copy(fixture_image("gray.png"), &odd_name).unwrap();
    let mut args = vec![s(&root.join("a")), s(&root.join("c")), s(&odd_name)];
    args.extend(GREEDY.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = captioner(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = captions(&jsonl(&run.stdout));
    assert_eq!(got.len(), 7);
    assert_eq!(got[&s(&odd_name)], theirs["gray.png"]);
}

/// Copies of the fixture images under `dir`, with the fixture each copies.
fn copies(dir: &Path, n: usize) -> Vec<(PathBuf, &'static str)> {
    let names = ["odd_rgb.png", "wide_rgba.png", "gray.png", "tall_rgb.png"];
    (0..n)
        .map(|i| {
            let src = names[i % names.len()];
            let dst = dir.join(format!("{}/{i:03}_{src}", i / 5));
            copy(src, &dst);
            (dst, src)
        })
        .collect()
}

fn run_to(dir: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![s(dir), "-o".into(), s(out), "--batch".into(), "3".into()];
    args.extend(GREEDY.iter().map(|a| a.to_string()));
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    captioner(&args)
}

#[test]
fn a_cut_short_jsonl_output_is_resumed_to_the_uninterrupted_result() {
    let root = tmp("resume-jsonl");
    let images = root.join("images");
    copies(&images, 10);
    std::fs::write(images.join("1/broken.png"), b"broken").unwrap();

    let reference = root.join("reference.jsonl");
    let run = run_to(&images, &reference, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let full = std::fs::read_to_string(&reference).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.len(), 11);
    let want = captions(&jsonl(&full));
    assert_eq!(want.len(), 10);

    let cuts = [
        // Killed while writing a line.
        lines[..4].join("\n").len() + 1 + lines[4].len() / 2,
        // Killed between two lines of one batch (batches of 3).
        lines[..4].join("\n").len() + 1,
        // Killed before the newline of the last line of a batch.
        lines[..6].join("\n").len(),
        // Nothing written yet but half a line.
        lines[0].len() / 3,
    ];
    for (i, cut) in cuts.into_iter().enumerate() {
        let out = root.join(format!("cut{i}.jsonl"));
        std::fs::write(&out, &full.as_bytes()[..cut]).unwrap();
        let run = run_to(&images, &out, &[]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        let records = jsonl(&text);
        assert_eq!(captions(&records), want, "cut at byte {cut}");
        assert_eq!(records.len(), 11, "each file once: {text}");
        assert!(text.ends_with('\n'));
        if cut > lines[0].len() {
            assert!(run.stderr.contains("resuming"), "{}", run.stderr);
        }
    }

    // The finished output again: nothing to caption but the failed image, whose old
    // error record is replaced by the new one.
    let out = root.join("again.jsonl");
    std::fs::copy(&reference, &out).unwrap();
    let run = run_to(&images, &out, &["--resume"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("captioned 0, failed 1, skipped 10 in "),
        "{}",
        run.stderr
    );
    let records = jsonl(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(records.len(), 11);
    assert_eq!(captions(&records), want);
    assert_eq!(records.iter().filter(|r| r.error.is_some()).count(), 1);

    // Once the broken image is fixed, it is captioned and its error record is gone.
    copy("gray.png", &images.join("1/broken.png"));
    let run = run_to(&images, &out, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = jsonl(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(records.len(), 11);
    assert!(records.iter().all(|r| r.error.is_none()));

    // --overwrite starts over.
    let run = run_to(&images, &out, &["--overwrite"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("captioned 11, failed 0, skipped 0"));
    assert_eq!(jsonl(&std::fs::read_to_string(&out).unwrap()).len(), 11);

    // A file that is not a captioner output is left alone.
    let foreign = root.join("notes.jsonl");
    std::fs::write(&foreign, "{\"some\": \"thing\"}\n{\"else\": 1}\n").unwrap();
    let run = run_to(&images, &foreign, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--overwrite"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "{\"some\": \"thing\"}\n{\"else\": 1}\n"
    );
}

#[test]
fn csv_and_json_outputs_resume_too() {
    let root = tmp("resume-other");
    let images = root.join("images");
    copies(&images, 7);

    let csv_ref = root.join("reference.csv");
    assert_eq!(run_to(&images, &csv_ref, &[]).code, 0);
    let full = std::fs::read_to_string(&csv_ref).unwrap();
    assert!(full.starts_with("file,caption\r\n"), "{full}");
    let want = output::read_csv(full.as_bytes()).unwrap();
    assert_eq!(want.len(), 8);
    for cut in [full.len() / 2, 14, 5] {
        let out = root.join(format!("cut{cut}.csv"));
        std::fs::write(&out, &full.as_bytes()[..cut]).unwrap();
        let run = run_to(&images, &out, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(output::read_csv(got.as_bytes()).unwrap(), want, "cut {cut}");
    }

    // json: the COCO results file appears only at the end; a killed run leaves its
    // journal, which the next run resumes.
    let json_ref = root.join("reference.json");
    let run = run_to(&images, &json_ref, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!output::journal_path(&json_ref).exists());
    let want = output::read_coco_results(&json_ref).unwrap();
    assert_eq!(want.len(), 7);
    assert_eq!(want[0].image_id, json!("000_odd_rgb"));

    let out = root.join("killed.json");
    let journal = output::journal_path(&out);
    let mut text = String::new();
    for r in &want[..3] {
        let line = JsonLine {
            file: "whatever".into(),
            image_id: Some(r.image_id.clone()),
            caption: Some(r.caption.clone()),
            ..JsonLine::default()
        };
        text.push_str(&line.to_line());
        text.push('\n');
    }
    text.push_str("{\"file\": \"cut sh");
    std::fs::write(&journal, text).unwrap();
    let run = run_to(&images, &out, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("skipped 3"), "{}", run.stderr);
    assert_eq!(output::read_coco_results(&out).unwrap(), want);
    assert!(!journal.exists());

    // A finished results file is resumed as well: a run on more images adds to it.
    let more = root.join("more.json");
    let first: Vec<String> = std::fs::read_dir(images.join("0"))
        .unwrap()
        .map(|e| s(&e.unwrap().path()))
        .collect();
    let mut args: Vec<&str> = first.iter().map(String::as_str).collect();
    let more_s = s(&more);
    args.extend(["-o", &more_s]);
    args.extend(GREEDY);
    assert_eq!(captioner(&args).code, 0);
    assert_eq!(output::read_coco_results(&more).unwrap().len(), 5);
    let run = run_to(&images, &more, &[]);
    assert!(run.stderr.contains("skipped 5"), "{}", run.stderr);
    let mut got = output::read_coco_results(&more).unwrap();
    let key = |r: &output::CocoResult| r.image_id.to_string();
    got.sort_by_key(key);
    let mut want = want;
    want.sort_by_key(key);
    assert_eq!(got, want);
}

/// A real kill: the binary captioning one image per batch is killed as soon as its
/// output has a few lines; a second run finishes the job. Whenever the kill lands (or if
/// the first run finished before it), the result is every image once, as captioned by an
/// uninterrupted run.
#[cfg(unix)]
#[test]
fn a_killed_run_resumes_without_losing_or_repeating_images() {
    let root = tmp("kill");
    let images = root.join("images");
    let all = copies(&images, 120);
    let theirs = transformers_texts();
    let want: BTreeMap<String, String> = all
        .iter()
        .map(|(p, src)| (s(p), theirs[*src].clone()))
        .collect();

    let out = root.join("out.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args([
            "caption",
            "--model",
            &model(),
            "--batch",
            "1",
            "-o",
            &s(&out),
        ])
        .args(GREEDY)
        .arg(&images)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let lines = std::fs::read_to_string(&out).map_or(0, |t| t.lines().count());
        if lines >= 3 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();

    let run = run_to(&images, &out, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = jsonl(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(records.len(), 120);
    assert_eq!(captions(&records), want);
}

#[test]
fn every_format_parses_back_to_the_captions() {
    let root = tmp("formats");
    let images = root.join("images");
    let all = copies(&images, 4);
    let theirs = transformers_texts();
    for (name, extra) in [
        ("out.jsonl", vec!["--num-return", "1"]),
        ("out.csv", vec![]),
        ("out.json", vec![]),
        ("out.data", vec!["--format", "csv"]),
    ] {
        let out = root.join(name);
        let run = run_to(&images, &out, &extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let got: BTreeMap<String, String> = match name {
            "out.jsonl" => captions(&output::read_jsonl(&out).unwrap()),
            "out.json" => output::read_coco_results(&out)
                .unwrap()
                .into_iter()
                .map(|r| (r.image_id.as_str().unwrap().to_string(), r.caption))
                .collect(),
            _ => {
                let rows = output::read_csv(std::fs::File::open(&out).unwrap()).unwrap();
                assert_eq!(rows[0], ["file", "caption"]);
                rows[1..]
                    .iter()
                    .map(|r| (r[0].clone(), r[1].clone()))
                    .collect()
            }
        };
        let want: BTreeMap<String, String> = all
            .iter()
            .map(|(p, src)| {
                let key = if name == "out.json" {
                    p.file_stem().unwrap().to_string_lossy().into_owned()
                } else {
                    s(p)
                };
                (key, theirs[*src].clone())
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }
    // To standard output, json is a COCO results array too.
    let run = captioner(&[&s(&images), "--format", "json", "--beams", "1"]);
    let parsed: Vec<output::CocoResult> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed.len(), 4);
}

#[test]
fn n_best_lists_are_candidates() {
    let root = tmp("nbest");
    let images = root.join("images");
    copies(&images, 2);
    let out = root.join("out.jsonl");
    let (dir, out_s) = (s(&images), s(&out));
    let run = captioner(&[&dir, "-o", &out_s, "--beams", "3", "--num-return", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for r in output::read_jsonl(&out).unwrap() {
        let c = r.candidates.unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(Some(&c[0].caption), r.caption.as_ref());
        assert_eq!(Some(&c[0].tokens), r.tokens.as_ref());
    }
}

#[test]
fn coco_ids_come_from_the_annotation_file() {
    let root = tmp("ann");
    let images = root.join("images");
    copy("odd_rgb.png", &images.join("val/odd.png"));
    copy("gray.png", &images.join("gray.png"));
    copy("tall_rgb.png", &images.join("stranger.png"));
    let ann = root.join("ann.json");
    std::fs::write(
        &ann,
        json!({"images": [
            {"id": 42, "file_name": "val/odd.png"},
            {"id": 7, "file_name": "train2014/gray.png"},
        ], "annotations": []})
        .to_string(),
    )
    .unwrap();
    let out = root.join("results.json");
    let run = run_to(&images, &out, &["--ann", &s(&ann)]);
    assert_eq!(run.code, 2, "one image is not in the annotations");
    assert!(
        run.stderr.lines().any(|l| l.starts_with("error:")
            && l.contains("stranger.png")
            && l.contains("annotations")),
        "{}",
        run.stderr
    );
    let got = output::read_coco_results(&out).unwrap();
    let theirs = transformers_texts();
    assert_eq!(
        got,
        [
            output::CocoResult {
                image_id: json!(7),
                caption: theirs["gray.png"].clone()
            },
            output::CocoResult {
                image_id: json!(42),
                caption: theirs["odd_rgb.png"].clone()
            },
        ]
    );
}

#[test]
fn tag_files_are_kept_unless_asked_and_captions_are_appended_once() {
    let root = tmp("tags");
    copy("odd_rgb.png", &root.join("one.png"));
    copy("gray.png", &root.join("two.jpg.png"));
    let theirs = transformers_texts();
    let (one, two) = (&theirs["odd_rgb.png"], &theirs["gray.png"]);
    let tags = root.join("one.txt");
    std::fs::write(&tags, "1girl, solo, smile\n").unwrap();
    let dir = s(&root);
    let txt = |extra: &[&str]| {
        let mut args = vec![dir.as_str(), "--format", "txt"];
        args.extend(GREEDY);
        args.extend(extra);
        captioner(&args)
    };

    let run = txt(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("captioned 1, failed 0, skipped 1"));
    assert_eq!(
        std::fs::read_to_string(&tags).unwrap(),
        "1girl, solo, smile\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("two.jpg.txt")).unwrap(),
        format!("{two}\n")
    );

    assert_eq!(txt(&["--append"]).code, 0);
    let appended = format!("1girl, solo, smile, {one}\n");
    assert_eq!(std::fs::read_to_string(&tags).unwrap(), appended);
    // Appending again changes nothing.
    assert_eq!(txt(&["--append"]).code, 0);
    assert_eq!(std::fs::read_to_string(&tags).unwrap(), appended);

    std::fs::write(&tags, "1girl, solo\n").unwrap();
    assert_eq!(txt(&["--prepend"]).code, 0);
    assert_eq!(
        std::fs::read_to_string(&tags).unwrap(),
        format!("{one}, 1girl, solo\n")
    );

    assert_eq!(txt(&["--overwrite"]).code, 0);
    assert_eq!(std::fs::read_to_string(&tags).unwrap(), format!("{one}\n"));

    assert_eq!(txt(&["--sidecar-ext", ".caption"]).code, 0);
    assert_eq!(
        std::fs::read_to_string(root.join("one.caption")).unwrap(),
        format!("{one}\n")
    );
    // No temporary files are left beside the images.
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn options_that_cannot_work_are_fatal_errors() {
    let img = s(&fixture_image("gray.png"));
    let run = captioner(&[&img, "--device", "cuda"]);
    if !cfg!(feature = "cuda") {
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("--features cuda"), "{}", run.stderr);
    }
    let run = captioner(&[&img, "--append"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--format txt"), "{}", run.stderr);
    let run = captioner(&[&img, "--resume"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("-o"), "{}", run.stderr);
    let run = captioner(&[&img, "--format", "txt", "-o", "x.txt"]);
    assert_eq!(run.code, 1);
    let run = captioner(&[&img, "--threads", "2", "--beams", "1", "--quiet"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "--quiet prints no summary");
    assert_eq!(jsonl(&run.stdout).len(), 1);
}

/// The hostile files of the Pillow corpus (empty, random bytes, lying headers,
/// decompression bombs, files named as another format), truncated copies of good ones,
/// and the tiled planar TIFF that crashed a decoder: each file Pillow refuses is one
/// error line naming it, with no panic text, and every file Pillow opens is captioned.
#[test]
fn hostile_files_are_one_error_line_each_and_the_run_goes_on() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/pillow");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap())
            .unwrap();
    let dir = tmp("hostile");
    let mut refused = Vec::new();
    let mut opened = Vec::new();
    for entry in manifest["files"].as_array().unwrap() {
        let name = entry["file"].as_str().unwrap();
        let wanted = name.starts_with("hostile/")
            || name.contains("truncated")
            || name.contains("tiled_planar");
        // The 89-megapixel one is refused below by --max-pixels, as a bomb would be.
        if !wanted || name.contains("9460") {
            continue;
        }
        let to = dir.join(name.replace('/', "_"));
        std::fs::copy(corpus.join(name), &to).unwrap();
        match entry["opens"].as_bool().unwrap() {
            true => opened.push(s(&to)),
            false => refused.push(s(&to)),
        }
    }
    assert!(refused.len() > 30 && opened.len() >= 3);

    let out = dir.join("captions.jsonl");
    let mut args = vec![
        s(&dir),
        "-o".into(),
        s(&out),
        "--max-pixels".into(),
        "50000000".into(),
    ];
    args.extend(GREEDY.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = captioner(&args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{}",
        run.stderr
    );
    let records = jsonl(&std::fs::read_to_string(&out).unwrap());
    let got = captions(&records);
    for file in &opened {
        assert!(
            got.contains_key(file),
            "{file} was not captioned: {}",
            run.stderr
        );
    }
    for file in &refused {
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains(file.as_str()))
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error:"),
            "{file}: {lines:?}"
        );
    }
    assert_eq!(records.len(), opened.len() + refused.len());
}
