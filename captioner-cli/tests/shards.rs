//! `captioner shards` as a worker of a job array runs it: shards split over workers,
//! captions equal to captioning the same images from a folder, failed samples as
//! records, markers, resuming, and settings that do not match.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{tmp, Run, GREEDY};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn captioner(command: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_captioner"))
        .arg(command)
        .args(["--model", &fixtures().join("tiny-a").display().to_string()])
        .args(GREEDY)
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_PROCID")
        .env_remove("RANK")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
        .into()
}

/// The Parquet image files pyarrow wrote (scripts/make_shard_fixtures.py).
fn parquet_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/parquet")
}

/// `captioner shards INPUT --out OUT EXTRA...`, with no scheduler variables.
fn shards_into(input: &Path, out: &Path, extra: &[&str]) -> Run {
    let (input, out) = (input.display().to_string(), out.display().to_string());
    let mut args = vec![input.as_str(), "--out", &out];
    args.extend(extra);
    captioner("shards", &args, &[])
}

fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// (name, bytes) of each member of the tar at `path`.
fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Four shards of the fixture images: keys with a folder prefix, an upper-case suffix,
/// a sample without an image, an image that does not decode, and a key whose members
/// are not adjacent (two samples, as webdataset makes them).
fn make_shards(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let image = |n: &str| std::fs::read(fixtures().join("images").join(n)).unwrap();
    let m = |name: &str, data: Vec<u8>| (name.to_string(), data);
    let shards = [
        vec![
            m("a/000.jpg", image("photo_420_baseline.jpg")),
            m("a/000.txt", b"a source caption".to_vec()),
            m("a/001.PNG", image("odd_rgb.png")),
        ],
        vec![
            m("b/000.webp", image("photo_lossy.webp")),
            m("b/001.json", b"{}".to_vec()),
            m("b/002.jpg", b"not a jpeg".to_vec()),
        ],
        vec![
            m("c/000.jpg", image("photo_exif6.jpg")),
            m("c/001.jpg", image("photo_444_q95.jpg")),
            m("c/000.txt", b"not adjacent".to_vec()),
        ],
        vec![m("d/000.png", image("gray.png"))],
    ];
    let keys = [
        vec!["a/000", "a/001"],
        vec!["b/000", "b/001", "b/002"],
        vec!["c/000", "c/001", "c/000"],
        vec!["d/000"],
    ];
    shards
        .iter()
        .zip(keys)
        .enumerate()
        .map(|(i, (members, keys))| {
            let path = dir.join(format!("part-{i:03}.tar"));
            std::fs::write(&path, tar_of(members)).unwrap();
            (path, keys.into_iter().map(String::from).collect())
        })
        .collect()
}

/// `captioner caption FOLDER`'s caption of each file, by file name: the captions the
/// shards' samples must have.
fn folder_captions(folder: &Path) -> impl Fn(&str) -> String {
    let r = captioner("caption", &[&folder.display().to_string()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    move |name: &str| {
        lines
            .iter()
            .find(|v| v["file"].as_str().unwrap().ends_with(name))
            .unwrap()["caption"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The status of each shard line a run printed.
fn statuses_of(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn sample_json(out: &Path, key: &str) -> Value {
    let (_, data) = members(out)
        .into_iter()
        .find(|(n, _)| *n == format!("{key}.json"))
        .unwrap_or_else(|| panic!("{key}.json in {}", out.display()));
    serde_json::from_slice(&data).unwrap()
}

#[test]
fn workers_split_the_shards_and_caption_every_sample_once() {
    let dir = tmp("split");
    let shards = make_shards(&dir);
    let out = dir.join("out");
    let pattern = dir.join("part-{000..003}.tar").display().to_string();
    let out_arg = out.display().to_string();
    // Two workers of a SLURM array numbered from 1.
    for task in ["1", "2"] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", task),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        let r = captioner(
            "shards",
            &[&pattern, "--out", &out_arg, "--batch", "2"],
            &env,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(statuses_of(&r.stdout), ["captioned"; 2], "{}", r.stdout);
    }
    // The same images captioned from a folder: the captions to match.
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    for name in [
        "photo_420_baseline.jpg",
        "odd_rgb.png",
        "photo_lossy.webp",
        "photo_exif6.jpg",
    ] {
        std::fs::copy(fixtures().join("images").join(name), folder.join(name)).unwrap();
    }
    let folder_caption = folder_captions(&folder);

    for (shard, keys) in &shards {
        let name = shard.file_name().unwrap().to_str().unwrap();
        let output = out.join(name);
        let stats: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(name.replace(".tar", "_stats.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(stats["samples"], keys.len());
        // The output's keys are the input's, in its order.
        let json_keys: Vec<String> = members(&output)
            .iter()
            .filter_map(|(n, _)| n.strip_suffix(".json").map(String::from))
            .collect();
        assert_eq!(&json_keys, keys, "{name}");
    }
    let out_of = |i: usize| out.join(format!("part-{i:03}.tar"));
    for (shard, key, image) in [
        (0, "a/000", "photo_420_baseline.jpg"),
        (0, "a/001", "odd_rgb.png"),
        (1, "b/000", "photo_lossy.webp"),
        (2, "c/000", "photo_exif6.jpg"),
    ] {
        let v = sample_json(&out_of(shard), key);
        assert_eq!(v["status"], "ok");
        assert_eq!(
            v["caption"].as_str().unwrap(),
            folder_caption(image),
            "{key}"
        );
        let txt = members(&out_of(shard))
            .into_iter()
            .find(|(n, _)| *n == format!("{key}.txt"))
            .unwrap()
            .1;
        assert_eq!(String::from_utf8(txt).unwrap(), folder_caption(image));
    }
    let no_image = sample_json(&out_of(1), "b/001");
    assert_eq!(no_image["status"], "error");
    assert!(
        no_image["error"].as_str().unwrap().contains("no image"),
        "{no_image}"
    );
    let bad = sample_json(&out_of(1), "b/002");
    assert!(
        bad["error"].as_str().unwrap().contains("b/002.jpg"),
        "{bad}"
    );
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("part-001_stats.json")).unwrap())
            .unwrap();
    assert_eq!(
        (stats["captioned"].as_u64(), stats["failed"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn reruns_skip_done_shards_redo_unmarked_ones_and_refuse_other_settings() {
    let dir = tmp("resume");
    let shards = make_shards(&dir);
    let out = dir.join("out");
    let out_arg = out.display().to_string();
    let input = dir.display().to_string();
    let r = captioner(
        "shards",
        &[&input, "--out", &out_arg, "--shard", "0/1"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first: Vec<Vec<u8>> = shards
        .iter()
        .map(|(s, _)| std::fs::read(out.join(s.file_name().unwrap())).unwrap())
        .collect();

    // A killed run: shard 2's output cut short and its marker never written.
    let cut = out.join("part-002.tar");
    std::fs::write(&cut, &first[2][..first[2].len() / 2]).unwrap();
    std::fs::remove_file(out.join("part-002_stats.json")).unwrap();
    let dry = captioner("shards", &[&input, "--out", &out_arg, "--dry-run"], &[]);
    let todo: Vec<&str> = dry
        .stdout
        .lines()
        .filter(|l| l.ends_with("to do"))
        .collect();
    assert_eq!(todo.len(), 1, "{}", dry.stdout);
    assert!(todo[0].contains("part-002.tar"));
    let r = captioner("shards", &[&input, "--out", &out_arg], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        statuses_of(&r.stdout),
        ["done before", "done before", "captioned", "done before"]
    );
    for ((s, _), bytes) in shards.iter().zip(&first) {
        assert_eq!(
            &std::fs::read(out.join(s.file_name().unwrap())).unwrap(),
            bytes
        );
    }

    // Other decoding settings: refused, shard by shard, until --overwrite.
    let r = captioner(
        "shards",
        &[&input, "--out", &out_arg, "--repetition-penalty", "1.5"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("other settings") && r.stderr.contains("decoding"),
        "{}",
        r.stderr
    );
    let r = captioner(
        "shards",
        &[
            &input,
            "--out",
            &out_arg,
            "--repetition-penalty",
            "1.5",
            "--overwrite",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses_of(&r.stdout), ["captioned"; 4]);
}

#[test]
fn two_shards_of_one_name_are_refused_before_any_work() {
    let dir = tmp("same-name");
    for sub in ["x", "y"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("000.tar"), tar_of(&[])).unwrap();
    }
    let pattern = dir.join("{x,y}/000.tar").display().to_string();
    let out = dir.join("out").display().to_string();
    let r = captioner("shards", &[&pattern, "--out", &out], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("same outputs"), "{}", r.stderr);
    assert!(!dir.join("out").exists());
}

#[test]
fn an_unreadable_shard_fails_alone_and_leaves_no_output() {
    let dir = tmp("broken");
    let shards = make_shards(&dir);
    let whole = std::fs::read(&shards[0].0).unwrap();
    std::fs::write(&shards[0].0, &whole[..700]).unwrap();
    let out = dir.join("out");
    let r = shards_into(&dir, &out, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("part-000.tar"), "{}", r.stderr);
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("part-000") || n.contains("partial")),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with("_stats.json")).count(),
        3
    );
}

#[test]
fn a_tar_on_standard_input_gives_json_lines_with_the_same_captions() {
    let dir = tmp("stdin");
    let shards = make_shards(&dir);
    let out = dir.join("out");
    let out_arg = out.display().to_string();
    let r = captioner(
        "shards",
        &[&shards[1].0.display().to_string(), "--out", &out_arg],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args([
            "shards",
            "-",
            "--out",
            &out_arg,
            "--format",
            "jsonl",
            "--stdin-name",
            "piped",
        ])
        .args(["--model", &fixtures().join("tiny-a").display().to_string()])
        .args(GREEDY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&shards[1].0).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses_of(&r.stdout), ["captioned"]);
    let lines: Vec<Value> = std::fs::read_to_string(out.join("piped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = lines.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, shards[1].1);
    for v in &lines {
        let key = v["key"].as_str().unwrap();
        let from_tar = sample_json(&out.join("part-001.tar"), key);
        assert_eq!(v["caption"], from_tar["caption"], "{key}");
        assert_eq!(v["status"], from_tar["status"], "{key}");
    }
    assert!(out.join("piped_stats.json").exists());

    // `@-`: the shard list on standard input, as Spark's RDD.pipe gives it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .args(["shards", "@-", "--out", &out_arg, "--dry-run"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list = format!("{}\n\n{}\n", shards[2].0.display(), shards[1].0.display());
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), list.as_bytes()).unwrap();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        listed,
        [
            format!("{}\tdone", shards[1].0.display()),
            format!("{}\tto do", shards[2].0.display())
        ]
    );
}

#[test]
fn parquet_files_of_both_image_kinds_caption_as_their_images_do() {
    let dir = tmp("parquet");
    let parquet = parquet_fixtures();
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in ["hf_image.parquet", "img2dataset.parquet"] {
        std::fs::copy(parquet.join(f), input.join(f)).unwrap();
    }
    let out = dir.join("out");
    let r = shards_into(&input, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses_of(&r.stdout), ["captioned"; 2]);
    let caption_of = folder_captions(&fixtures().join("images"));
    let hf = out.join("hf_image.tar");
    for (key, image) in [
        ("0", "odd_rgb.png"),
        ("1", "photo_lossy.webp"),
        ("4", "photo_420_baseline.jpg"),
    ] {
        assert_eq!(
            sample_json(&hf, key)["caption"].as_str().unwrap(),
            caption_of(image),
            "{key}"
        );
    }
    assert_eq!(sample_json(&hf, "3")["status"], "error");
    let i2d = out.join("img2dataset.tar");
    for (key, image) in [
        ("000010000", "photo_444_q95.jpg"),
        ("000010002", "photo_422_progressive.jpg"),
    ] {
        assert_eq!(
            sample_json(&i2d, key)["caption"].as_str().unwrap(),
            caption_of(image),
            "{key}"
        );
    }
}

#[test]
fn parquet_output_holds_what_the_tar_output_holds() {
    let dir = tmp("parquet-out");
    let shards = make_shards(&dir);
    let (tar_out, pq_out) = (dir.join("tar"), dir.join("pq"));
    for (out, format) in [(&tar_out, "tar"), (&pq_out, "parquet")] {
        let r = shards_into(&shards[1].0, out, &["--format", format]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let batch = read_parquet(&pq_out.join("part-001.parquet"));
    let col = |n: &str| strings(&batch, n);
    let (key, status, caption, error) = (col("key"), col("status"), col("caption"), col("error"));
    let mut keys = Vec::new();
    for i in 0..batch.num_rows() {
        let want = sample_json(&tar_out.join("part-001.tar"), key.value(i));
        assert_eq!(status.value(i), want["status"].as_str().unwrap());
        match want["caption"].as_str() {
            Some(c) => assert_eq!(caption.value(i), c),
            None => assert_eq!(error.value(i), want["error"].as_str().unwrap()),
        }
        keys.push(key.value(i).to_string());
    }
    assert_eq!(keys, shards[1].1);
}

/// The Parquet file at `path` as one batch.
fn read_parquet(path: &Path) -> arrow_array::RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The text column `name` of `batch`.
fn strings(batch: &arrow_array::RecordBatch, name: &str) -> arrow_array::StringArray {
    use arrow_array::cast::AsArray;
    batch
        .column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .clone()
}

#[test]
fn kept_columns_carry_the_input_into_parquet_output() {
    use arrow_array::Array;
    let dir = tmp("keep-columns");
    let input = dir.join("hf_image.parquet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(parquet_fixtures().join("hf_image.parquet"), &input).unwrap();
    let out = dir.join("out");
    let run = |keep: &str, format: &str| {
        shards_into(&input, &out, &["--format", format, "--keep-columns", keep])
    };

    // Outside Parquet output, and a column the file lacks: refused, naming the problem.
    let r = run("text", "tar");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Parquet"), "{}", r.stderr);
    let r = run("text,nope", "parquet");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"nope\"") && r.stderr.contains("image, text"),
        "{}",
        r.stderr
    );

    // A text column and the image struct itself, with their types and nulls.
    let r = run("text,image", "parquet");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = read_parquet(&out.join("hf_image.parquet"));
    let want = read_parquet(&input);
    assert_eq!(got.num_rows(), want.num_rows());
    for name in ["text", "image"] {
        let (g, w) = (
            got.column_by_name(name).unwrap(),
            want.column_by_name(name).unwrap(),
        );
        assert_eq!(g.data_type(), w.data_type(), "{name}");
        assert_eq!(g.to_data(), w.to_data(), "{name}");
    }
    assert!(got.column_by_name("image").unwrap().is_null(3));
    assert_eq!(strings(&got, "status").value(3), "error");

    // From a tar: members by suffix, as text, null where a sample has none; a column named
    // like one of ours is written as input_NAME.
    let shards = make_shards(&dir);
    let tar_out = dir.join("tar-out");
    let r = shards_into(
        &shards[0].0,
        &tar_out,
        &["--format", "parquet", "--keep-columns", "txt,key"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = read_parquet(&tar_out.join("part-000.parquet"));
    let txt = strings(&got, "txt");
    assert_eq!(txt.value(0), "a source caption");
    assert!(txt.is_null(1));
    assert!(got.column_by_name("input_key").unwrap().is_null(0));
}

/// pyarrow's name for an arrow type, as far as our outputs use them.
fn pyarrow_type(t: &arrow_schema::DataType) -> String {
    use arrow_schema::DataType as T;
    match t {
        T::Utf8 => "string".into(),
        T::Float32 => "float".into(),
        T::List(f) => format!("list<{}: {}>", f.name(), pyarrow_type(f.data_type())),
        t => format!("{t:?}"),
    }
}

/// Equal, numbers within 1e-4, and errors from where they name the input shard on (the
/// script ran from the repository's root, the test from elsewhere).
fn close(a: &Value, b: &Value) -> bool {
    let from_shard = |v: &Value| {
        v.as_str()
            .and_then(|s| s.rfind("hf_image.parquet:").map(|i| s[i..].to_string()))
    };
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-4,
        _ => a == b || from_shard(a).is_some_and(|x| from_shard(b) == Some(x)),
    }
}

/// Today's tar and Parquet outputs hold what webdataset and pyarrow read from the ones
/// scripts/read_shard_outputs.py wrote (committed beside what they read), so the Python
/// readers accept what we write now.
#[test]
fn outputs_hold_what_webdataset_and_pyarrow_read_from_ours() {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let fixture = fixtures().join("shard-outputs");
    let read: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("read.json")).unwrap()).unwrap();
    let dir = tmp("python-readers");
    let input = parquet_fixtures().join("hf_image.parquet");
    for (out, extra) in [
        ("tar", &[][..]),
        ("pq", &["--format", "parquet", "--keep-columns", "text"][..]),
    ] {
        let r = shards_into(&input, &dir.join(out), extra);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }

    // The tar, sample by sample as webdataset grouped it.
    let members = members(&dir.join("tar/hf_image.tar"));
    let samples = read["webdataset"].as_array().unwrap();
    let mut at = 0;
    for s in samples {
        let key = s["key"].as_str().unwrap();
        let suffixes: Vec<&str> = s["suffixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut ours: Vec<(String, Vec<u8>)> = Vec::new();
        while at < members.len() && members[at].0.split_once('.').unwrap().0 == key {
            ours.push(members[at].clone());
            at += 1;
        }
        let mut names: Vec<String> = ours
            .iter()
            .map(|(n, _)| n.split_once('.').unwrap().1.to_string())
            .collect();
        names.sort();
        assert_eq!(names, suffixes, "{key}");
        for (name, data) in &ours {
            let text = String::from_utf8(data.clone()).unwrap();
            if name.ends_with(".txt") {
                assert_eq!(text, s["txt"].as_str().unwrap(), "{key}");
            } else {
                let info: Value = serde_json::from_str(&text).unwrap();
                let mut fields: Vec<&String> = info.as_object().unwrap().keys().collect();
                fields.sort();
                assert_eq!(
                    serde_json::to_value(fields).unwrap(),
                    s["json_fields"],
                    "{key}"
                );
                for (k, want) in s["json"].as_object().unwrap() {
                    let got = info.get(k).unwrap_or(&Value::Null);
                    assert!(close(got, want), "{key} {k}: {got} against {want}");
                }
            }
        }
    }
    assert_eq!(at, members.len());

    // The Parquet file: schema as pyarrow names it, metadata keys, rows.
    let batch = read_parquet(&dir.join("pq/hf_image.parquet"));
    let want = &read["pyarrow"];
    let schema: Vec<Value> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| serde_json::json!([f.name(), pyarrow_type(f.data_type())]))
        .collect();
    assert_eq!(Value::Array(schema), want["schema"]);
    let file = std::fs::File::open(dir.join("pq/hf_image.parquet")).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap(),
    )
    .file_metadata()
    .key_value_metadata()
    .unwrap()
    .iter()
    .map(|kv| kv.key.clone())
    .collect::<std::collections::BTreeSet<_>>();
    let want_meta: std::collections::BTreeSet<String> =
        serde_json::from_value(want["metadata"].clone()).unwrap();
    assert_eq!(meta, want_meta);
    assert!(want_meta.contains("captioner.model") && want_meta.contains("captioner.settings"));
    let rows = want["rows"].as_array().unwrap();
    assert_eq!(batch.num_rows(), rows.len());
    let text = |name: &str, i: usize| {
        let c = strings(&batch, name);
        if c.is_null(i) {
            Value::Null
        } else {
            Value::from(c.value(i))
        }
    };
    for (i, row) in rows.iter().enumerate() {
        for name in ["key", "status", "caption", "error", "text"] {
            let got = text(name, i);
            assert!(
                close(&got, &row[name]),
                "row {i} {name}: {got} {}",
                row[name]
            );
        }
        let score = batch.column_by_name("score").unwrap();
        let got = if score.is_null(i) {
            Value::Null
        } else {
            let s = score
                .as_primitive::<arrow_array::types::Float32Type>()
                .value(i);
            serde_json::json!(s)
        };
        assert!(
            close(&got, &row["score"]),
            "row {i}: {got} {}",
            row["score"]
        );
        let captions = batch
            .column_by_name("captions")
            .unwrap()
            .as_list::<i32>()
            .value(i);
        let captions: Vec<Value> = captions
            .as_string::<i32>()
            .iter()
            .map(|c| Value::from(c.unwrap()))
            .collect();
        assert_eq!(Value::Array(captions), row["captions"], "row {i}");
    }
}
