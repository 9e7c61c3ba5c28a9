//! The output writers and their parsers, on captions a model would rarely write: commas,
//! quotes, line breaks, non-ASCII. And opening existing outputs for resuming.

use std::path::{Path, PathBuf};

use captioner_runner::output::{
    self, csv_line, merge_tags, JsonLine, LineKind, LineSink, Record, Sink, TagMode, Text,
};
use captioner_runner::resume::{self, OutputSpec};
use serde_json::json;

mod common;
use common::tmp;

const AWKWARD: [&str; 7] = [
    "a dog, a cat, and a bird",
    "a sign that says \"stop\"",
    "\"quoted\" at the start, and at the end \"",
    "two\nlines, and a\r\ncarriage return",
    "plain words",
    "",
    "un café à Zürich, 東京",
];

fn records() -> Vec<Record> {
    let mut out: Vec<Record> = AWKWARD
        .iter()
        .enumerate()
        .map(|(i, caption)| Record {
            path: PathBuf::from(format!("dir, with comma/{i}.png")),
            relative: PathBuf::from(format!("{i}.png")),
            file: format!("dir, with comma/{i}.png"),
            image_id: Some(json!(i)),
            result: Ok(vec![
                Text {
                    caption: caption.to_string(),
                    score: -0.5 - i as f32,
                    tokens: vec![188, i as u32, 3],
                    attention: None,
                },
                Text {
                    caption: "second best".into(),
                    score: -2.0,
                    tokens: vec![188, 3],
                    attention: None,
                },
            ]),
        })
        .collect();
    out.push(Record {
        path: "broken.png".into(),
        relative: "broken.png".into(),
        file: "broken.png".into(),
        image_id: None,
        result: Err("broken.png: not a decodable image".into()),
    });
    out
}

fn write_all(kind: LineKind) -> Vec<u8> {
    let mut sink = LineSink::new(Vec::new(), "memory", kind);
    if kind == LineKind::Csv {
        sink.header().unwrap();
    }
    let recs = records();
    // In two batches, as a run writes them.
    sink.write(&recs[..3]).unwrap();
    sink.write(&recs[3..]).unwrap();
    sink.close().unwrap()
}

/// One field written as a record of its own, without the line break.
fn csv_field(s: &str) -> String {
    csv_line(&[s]).strip_suffix("\r\n").unwrap().to_string()
}

#[test]
fn csv_fields_are_quoted_as_rfc_4180_says() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a, b"), "\"a, b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_line(&["a,b", "c"]), "\"a,b\",c\r\n");
}

#[test]
fn csv_round_trips() {
    let bytes = write_all(LineKind::Csv);
    let rows = output::read_csv(bytes.as_slice()).unwrap();
    assert_eq!(rows[0], ["file", "caption"]);
    // The failed image has no row.
    assert_eq!(rows.len(), 1 + AWKWARD.len());
    for (i, (row, caption)) in rows[1..].iter().zip(AWKWARD).enumerate() {
        assert_eq!(
            row,
            &[format!("dir, with comma/{i}.png"), caption.to_string()]
        );
    }
    // A record cut short is seen as such.
    let cut = &bytes[..bytes.len() - 5];
    let mut reader = std::io::BufReader::new(cut);
    let mut last = None;
    while let Some(rec) = output::read_csv_record(&mut reader).unwrap() {
        last = Some(rec);
    }
    assert!(!last.unwrap().complete);
}

#[test]
fn jsonl_round_trips() {
    let bytes = write_all(LineKind::Jsonl);
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text.lines().count(), AWKWARD.len() + 1);
    let lines: Vec<JsonLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, (line, caption)) in lines.iter().zip(AWKWARD).enumerate() {
        assert_eq!(line.caption.as_deref(), Some(caption));
        assert_eq!(line.score, Some(-0.5 - i as f32));
        assert_eq!(line.tokens, Some(vec![188, i as u32, 3]));
        assert_eq!(line.candidates.as_ref().unwrap().len(), 2);
        assert_eq!(line.image_id, Some(json!(i)));
    }
    let failed = lines.last().unwrap();
    assert_eq!(failed.file, "broken.png");
    assert!(failed.caption.is_none() && failed.error.is_some());
    // The keys come in the documented order.
    assert!(text.starts_with("{\"file\":"), "{text}");
}

#[test]
fn coco_results_round_trip() {
    let bytes = write_all(LineKind::JsonArray);
    let mut got = Vec::new();
    output::for_each_coco_result(bytes.as_slice(), |r| got.push(r)).unwrap();
    assert_eq!(got.len(), AWKWARD.len());
    for (i, (r, caption)) in got.iter().zip(AWKWARD).enumerate() {
        assert_eq!(r.image_id, json!(i));
        assert_eq!(r.caption, caption);
    }
    // And through the journal, as `-o FILE.json` writes it.
    let dir = tmp("coco");
    let journal = dir.join(".out.json.partial.jsonl");
    let mut sink = LineSink::new(
        std::fs::File::create(&journal).unwrap(),
        "journal",
        LineKind::Jsonl,
    );
    sink.write(&records()).unwrap();
    let out = dir.join("out.json");
    output::write_coco_results_from_journal(&journal, &out).unwrap();
    assert_eq!(output::read_coco_results(&out).unwrap(), got);
    let none = dir.join("none.jsonl");
    std::fs::write(&none, "").unwrap();
    output::write_coco_results_from_journal(&none, &out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "[]\n");
}

#[test]
fn tags_are_appended_and_prepended_once() {
    use TagMode::*;
    assert_eq!(merge_tags("", "a dog", Append).as_deref(), Some("a dog"));
    assert_eq!(
        merge_tags("1girl, solo\n", "a dog", Append).as_deref(),
        Some("1girl, solo, a dog")
    );
    assert_eq!(
        merge_tags("1girl, solo", "a dog", Prepend).as_deref(),
        Some("a dog, 1girl, solo")
    );
    assert_eq!(merge_tags("1girl, a dog, solo", "a dog", Append), None);
    assert_eq!(
        merge_tags("1girl", "a dog", Overwrite).as_deref(),
        Some("a dog")
    );
    assert_eq!(
        output::sidecar_path(Path::new("x/photo.jpg"), ".txt"),
        Path::new("x/photo.txt")
    );
}

fn spec(format: output::Format, path: &Path) -> OutputSpec {
    OutputSpec {
        format,
        path: Some(path.to_path_buf()),
        overwrite: false,
        tag_mode: TagMode::Keep,
        sidecar_ext: "txt".into(),
        ann: None,
    }
}

#[test]
fn opening_an_existing_output_cuts_only_what_a_kill_can_leave() {
    let dir = tmp("open");
    let good = "{\"file\":\"a.png\",\"caption\":\"x\",\"score\":-1.0,\"tokens\":[1]}\n";
    let failed = "{\"file\":\"b.png\",\"error\":\"b.png: broken\"}\n";

    // A cut-short last line goes; an error record goes (to be retried); the rest stays.
    let out = dir.join("a.jsonl");
    let cut = "{\"file\":\"c.p";
    std::fs::write(&out, format!("{good}{failed}{cut}")).unwrap();
    let opened = resume::open(spec(output::Format::Jsonl, &out)).unwrap();
    let r = opened.resumed.unwrap();
    assert_eq!((r.done, r.retried, r.cut), (1, 1, cut.len() as u64));
    drop(opened.sink);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), good);

    // A file of someone else's is left alone.
    for foreign in ["hello\n", "hello", "{\"a\": 1}\n", "[1, 2]\n"] {
        let out = dir.join("notes.jsonl");
        std::fs::write(&out, foreign).unwrap();
        let err = resume::open(spec(output::Format::Jsonl, &out))
            .err()
            .unwrap();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), foreign);
    }
    let out = dir.join("table.csv");
    std::fs::write(&out, "name,size\r\nx,1\r\n").unwrap();
    assert!(resume::open(spec(output::Format::Csv, &out)).is_err());
    let out = dir.join("results.json");
    std::fs::write(&out, "{\"not\": \"a list\"}").unwrap();
    assert!(resume::open(spec(output::Format::Json, &out)).is_err());
    assert!(!output::journal_path(&out).exists());

    // A CSV cut inside its header starts over with a whole one.
    let out = dir.join("cut.csv");
    std::fs::write(&out, "file,cap").unwrap();
    let opened = resume::open(spec(output::Format::Csv, &out)).unwrap();
    drop(opened.sink);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "file,caption\r\n");
}
