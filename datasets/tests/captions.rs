//! Reference captions: COCO annotation files and Karpathy splits, and the checks that
//! report every problem of a file at once, each with its entry.

use std::path::PathBuf;

use datasets::{CocoError, ImageId, References};
use serde_json::json;

#[path = "../../captioner-cli/tests/common/mod.rs"]
mod common;

fn write(dir: &std::path::Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn problems(e: CocoError) -> Vec<String> {
    match e {
        CocoError::Invalid { problems, .. } => problems,
        other => panic!("expected a list of problems, got {other}"),
    }
}

#[test]
fn every_problem_of_an_annotation_file_is_reported() {
    let dir = common::tmp("captions-all");
    let path = write(
        &dir,
        "ann.json",
        &json!({
            "images": [
                {"id": 1, "file_name": "a.png"},
                {"id": 1, "file_name": "b.png"},
                {"file_name": "c.png"},
                {"id": 2, "file_name": "d.png"}
            ],
            "annotations": [
                {"id": 10, "image_id": 1, "caption": "a cat"},
                {"id": 10, "image_id": 2, "caption": "a dog"},
                {"id": 11, "image_id": 7, "caption": "a bus"},
                {"id": 12, "image_id": 2}
            ]
        }),
    );
    let e = References::load(&path).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("ann.json") && text.contains("5 problems"),
        "{text}"
    );
    let p = problems(e);
    let expect = [
        ("images[1]", "image id 1 appears twice"),
        ("images[2]", "no id"),
        ("annotations[1]", "annotation id 10 appears twice"),
        ("annotations[2]", "image_id 7 is not in the `images` list"),
        ("annotations[3]", "no caption"),
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for ((entry, what), got) in expect.iter().zip(&p) {
        assert!(
            got.starts_with(entry) && got.contains(what),
            "{got} (want {entry}: {what})"
        );
    }
}

#[test]
fn training_check_refuses_escaping_names_and_reports_missing_files() {
    let dir = common::tmp("captions-train");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("images/ok.png"), b"not checked here").unwrap();
    std::fs::write(dir.join("outside.png"), b"x").unwrap();
    let path = write(
        &dir,
        "ann.json",
        &json!({
            "images": [
                {"id": 1, "file_name": "ok.png"},
                {"id": 2, "file_name": "../outside.png"},
                {"id": 3, "file_name": "/etc/passwd"},
                {"id": 4, "file_name": "gone.png"},
                {"id": 5, "file_name": "ok.png"}
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "caption": "a cat"},
                {"id": 2, "image_id": 5, "caption": "   "}
            ]
        }),
    );
    let refs = References::load(&path).unwrap();
    let p = problems(refs.check_for_training(&dir.join("images")).unwrap_err());
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(
        p[0].starts_with("image 2 (../outside.png)") && p[0].contains("refused"),
        "{}",
        p[0]
    );
    assert!(
        p[1].starts_with("image 3 (/etc/passwd)") && p[1].contains("refused"),
        "{}",
        p[1]
    );
    assert!(
        p[2].starts_with("image 4 (gone.png)") && p[2].contains("no such file"),
        "{}",
        p[2]
    );
    assert!(
        p[3].starts_with("image 5 (ok.png)") && p[3].contains("empty"),
        "{}",
        p[3]
    );
}

#[test]
fn karpathy_files_read_with_their_splits() {
    let dir = common::tmp("captions-karpathy");
    let sentence = |s: &str| json!({"raw": s, "tokens": [], "imgid": 0, "sentid": 0});
    let path = write(
        &dir,
        "dataset_coco.json",
        &json!({"dataset": "coco", "images": [
            {"filepath": "val2014", "filename": "x.jpg", "imgid": 0, "cocoid": 391895, "split": "test",
             "sentences": [sentence("A man."), sentence("A bike.")]},
            {"filepath": "train2014", "filename": "y.jpg", "imgid": 1, "cocoid": 7, "split": "train",
             "sentences": [sentence("A dog.")]}
        ]}),
    );
    let refs = References::load(&path).unwrap();
    assert_eq!(refs.images.len(), 2);
    let test = refs.split("test").unwrap();
    assert_eq!(test.images.len(), 1);
    let img = &test.images[0];
    assert_eq!(img.id, ImageId::from_json(&json!(391895)).unwrap());
    assert_eq!(img.file_name, "val2014/x.jpg");
    assert_eq!(img.captions, vec!["A man.", "A bike."]);
    assert!(test.is_outside(&ImageId::from_json(&json!("7")).unwrap()));
    let e = References::load(&path)
        .unwrap()
        .split("restval")
        .unwrap_err()
        .to_string();
    assert!(e.contains("restval") && e.contains("test, train"), "{e}");
}

#[test]
fn held_out_images_are_a_seeded_share() {
    let dir = common::tmp("captions-hold-out");
    let images: Vec<_> = (1..=20)
        .map(|i| json!({"id": i, "file_name": format!("{i}.png")}))
        .collect();
    let anns: Vec<_> = (1..=20)
        .map(|i| json!({"id": i, "image_id": i, "caption": "x"}))
        .collect();
    let path = write(
        &dir,
        "ann.json",
        &json!({"images": images, "annotations": anns}),
    );
    let refs = References::load(&path).unwrap();
    let (rest, held) = refs.clone().hold_out(0.25, 3);
    assert_eq!((rest.images.len(), held.images.len()), (15, 5));
    let ids = |r: &References| {
        r.images
            .iter()
            .map(|i| i.id.to_string())
            .collect::<Vec<_>>()
    };
    let (mut all, held_ids) = (ids(&rest), ids(&held));
    assert!(held_ids.iter().all(|i| !all.contains(i)), "disjoint");
    all.extend(held_ids.clone());
    all.sort_by_key(|i| i.parse::<u32>().unwrap());
    assert_eq!(all, (1..=20).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        ids(&refs.clone().hold_out(0.25, 3).1),
        held_ids,
        "same seed, same images"
    );
    assert_ne!(
        ids(&refs.hold_out(0.25, 4).1),
        held_ids,
        "another seed, others"
    );
}
