//! Grouping tar members into samples, against what the webdataset library does with
//! the same members (its rules: regular files only, `__…__` metadata skipped, a new
//! sample wherever the key changes, suffixes lower-cased).

use datasets::webdataset::{for_each_sample, Sample, ShardReadError};

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn samples(bytes: &[u8]) -> Vec<Sample> {
    let mut out = Vec::new();
    for_each_sample(bytes, |s| {
        out.push(s);
        Ok::<(), ShardReadError>(())
    })
    .unwrap();
    out
}

fn keys_and_suffixes(s: &[Sample]) -> Vec<(String, Vec<String>)> {
    s.iter()
        .map(|s| {
            (
                s.key.clone(),
                s.files.iter().map(|(x, _)| x.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn members_group_into_samples_as_webdataset_groups_them() {
    let mut with_dir = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_cksum();
    with_dir.append_data(&mut dir, "part/", &[][..]).unwrap();
    let tail = tar_of(&[
        ("__meta__", b"m"),
        ("part/000.JPG", b"a"),
        ("part/000.txt", b"t"),
        ("part/000.seg.png", b"s"),
        ("part/001.jpg", b"b"),
        ("notes", b"no dot: skipped"),
        ("part/000.json", b"j"),
        ("part/002.json", b"only json"),
    ]);
    // One archive: the directory entry, then the members.
    let mut bytes = with_dir.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024); // drop the first archive's end blocks
    bytes.extend_from_slice(&tail);
    let got = samples(&bytes);
    assert_eq!(
        keys_and_suffixes(&got),
        [
            (
                "part/000".into(),
                vec!["jpg".into(), "txt".into(), "seg.png".into()]
            ),
            ("part/001".into(), vec!["jpg".into()]),
            // Not adjacent to its key's other files: a sample of its own.
            ("part/000".into(), vec!["json".into()]),
            ("part/002".into(), vec!["json".into()]),
        ]
    );
    assert_eq!(got[0].files[0].1, b"a");
    let prefs = ["png".to_string(), "jpg".to_string()];
    assert_eq!(got[0].pick(&prefs), Some(("jpg", &b"a"[..])));
    assert_eq!(got[3].pick(&prefs), None);
}

#[test]
fn a_repeated_suffix_marks_its_sample_and_a_truncated_shard_fails() {
    let bytes = tar_of(&[("k.jpg", b"1"), ("k.JPG", b"2"), ("l.jpg", b"3")]);
    let got = samples(&bytes);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].files, [("jpg".to_string(), b"1".to_vec())]);
    assert_eq!(got[0].duplicate.as_deref(), Some("k.JPG"));
    assert_eq!(got[1].duplicate, None);

    let cut = &bytes[..bytes.len() / 2 + 100];
    let mut seen = 0;
    let result = for_each_sample(cut, |_| {
        seen += 1;
        Ok::<(), ShardReadError>(())
    });
    assert!(
        result.is_err(),
        "a truncated tar reads as complete after {seen} samples"
    );
}

/// The edge cases' shard as the webdataset library itself grouped it
/// (scripts/make_shard_fixtures.py wrote both files).
#[test]
fn the_edge_case_shard_groups_as_the_webdataset_library_grouped_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webdataset");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("edge.json")).unwrap()).unwrap();
    let got = samples(&std::fs::read(dir.join("edge.tar")).unwrap());
    let got: Vec<serde_json::Value> = got
        .iter()
        .map(|s| {
            let files: Vec<(String, String)> = s
                .files
                .iter()
                .map(|(x, b)| (x.clone(), String::from_utf8(b.clone()).unwrap()))
                .collect();
            serde_json::json!({"key": s.key, "files": files})
        })
        .collect();
    assert_eq!(serde_json::Value::from(got), want);
}
