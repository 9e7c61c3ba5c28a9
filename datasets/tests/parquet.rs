//! Parquet image files as pyarrow wrote them (scripts/make_shard_fixtures.py): both
//! image column kinds, keys from a column or the row's index, row groups, a null image,
//! snappy and zstd, checked against the rows pyarrow read back.

use datasets::parquet::{for_each_row, Columns, Row};
use datasets::webdataset::ShardReadError;
use sha2::{Digest, Sha256};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet")
}

fn rows(file: &str, columns: &Columns) -> Result<Vec<Row>, ShardReadError> {
    let mut out = Vec::new();
    let ext = ["jpg".to_string(), "png".to_string()];
    for_each_row(&fixtures().join(file), columns, &ext, |r| {
        out.push(r);
        Ok::<(), ShardReadError>(())
    })?;
    Ok(out)
}

#[test]
fn rows_match_what_pyarrow_read() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("rows.json")).unwrap())
            .unwrap();
    for file in ["hf_image.parquet", "img2dataset.parquet"] {
        let got = rows(file, &Columns::default()).unwrap();
        let want = want[file].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{file}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let key = w["key"].as_str().map_or(i.to_string(), String::from);
            assert_eq!(g.key, key, "{file} row {i}");
            match (&g.image, w["sha256"].as_str()) {
                (Ok((bytes, name)), Some(sha)) => {
                    let hex: String = Sha256::digest(bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    assert_eq!(hex, sha, "{file} row {i}");
                    let want_name = w["path"]
                        .as_str()
                        .map_or(format!("{key}.jpg"), String::from);
                    assert_eq!(name, &want_name);
                }
                (Err(e), None) => assert!(e.contains("no image"), "{e}"),
                (g, w) => panic!("{file} row {i}: {g:?} against {w:?}"),
            }
        }
    }
}

#[test]
fn named_columns_are_checked() {
    let by_text = Columns {
        key: Some("text".into()),
        ..Columns::default()
    };
    let got = rows("hf_image.parquet", &by_text).unwrap();
    assert_eq!(got[1].key, "caption 1");
    for bad in [
        Columns {
            image: Some("text".into()),
            ..Columns::default()
        },
        Columns {
            image: Some("nope".into()),
            ..Columns::default()
        },
        Columns {
            key: Some("nope".into()),
            ..Columns::default()
        },
    ] {
        let e = rows("hf_image.parquet", &bad).unwrap_err().to_string();
        assert!(e.contains("column"), "{e}");
    }
    // No image column at all (img2dataset's `jpg` is not among the suffixes asked for):
    // the error lists the columns there are.
    let e = for_each_row(
        &fixtures().join("img2dataset.parquet"),
        &Columns::default(),
        &["webp".into()],
        |_| Ok::<(), ShardReadError>(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no image column") && e.contains("caption"),
        "{e}"
    );
}
