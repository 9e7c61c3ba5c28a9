//! Decoded pixels against Pillow 13: for every file of the corpus that
//! scripts/make_image_fixtures.py wrote (JPEG, WebP, PNG, GIF, BMP and TIFF variants),
//! the RGB bytes transformers' processor receives (`Image.open`, `load`,
//! `ImageOps.exif_transpose`, `convert_to_rgb`) equal ours, and every file Pillow
//! refuses is one clean error naming it.
//!
//! `PILLOW_FIXTURES=DIR` runs the same checks on another corpus made by that script.

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use vision_encoder::preprocess::convert_to_rgb;

fn corpus() -> PathBuf {
    std::env::var_os("PILLOW_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/pillow"),
        PathBuf::from,
    )
}

fn manifest() -> Vec<Value> {
    let path = corpus().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["files"].as_array().unwrap().clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first differing pixel against the fixture's raw RGB bytes, when it has them.
fn first_difference(entry: &Value, ours: &[u8]) -> String {
    let Some(raw) = entry["raw"].as_str() else {
        return String::new();
    };
    let theirs = std::fs::read(corpus().join(raw)).unwrap();
    let width = entry["size"][0].as_u64().unwrap() as usize;
    let diffs = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    match ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        Some(i) => format!(
            "; {diffs} bytes differ, first at x={} y={} channel {}: ours {} Pillow {}",
            i / 3 % width,
            i / 3 / width,
            i % 3,
            ours[i],
            theirs[i]
        ),
        None => String::new(),
    }
}

#[test]
fn decoded_rgb_equals_pillows_for_every_file() {
    let mut failures = Vec::new();
    let files = manifest();
    for entry in &files {
        let name = entry["file"].as_str().unwrap();
        let path = corpus().join(name);
        let case = entry["case"].as_str().unwrap_or("");
        let decoded = datasets::load_image(&path, datasets::DEFAULT_MAX_PIXELS);
        match (entry["opens"].as_bool().unwrap(), decoded) {
            (true, Ok(img)) => {
                let rgb = convert_to_rgb(&img);
                let size = [rgb.width() as u64, rgb.height() as u64];
                // Opened by path, Pillow scrambles a few rotated uncompressed TIFFs (it
                // rotates the memory-mapped file in place); the same bytes opened from
                // memory are right, and those are what we give.
                let (size_key, hash_key) = match entry.get("bytesio_sha256") {
                    Some(_) => ("bytesio_size", "bytesio_sha256"),
                    None => ("size", "sha256"),
                };
                let expected = [entry[size_key][0].as_u64(), entry[size_key][1].as_u64()];
                if expected != [Some(size[0]), Some(size[1])] {
                    failures.push(format!(
                        "{name} ({case}): size {size:?}, Pillow {expected:?}"
                    ));
                    continue;
                }
                let digest = hex(&Sha256::digest(rgb.as_raw()));
                if digest != entry[hash_key].as_str().unwrap() {
                    let detail = match hash_key {
                        "sha256" => first_difference(entry, rgb.as_raw()),
                        _ => String::new(),
                    };
                    failures.push(format!("{name} ({case}): other pixels{detail}"));
                }
            }
            (true, Err(e)) => {
                failures.push(format!("{name} ({case}): Pillow opens it, we fail: {e}"))
            }
            (false, Ok(_)) => failures.push(format!(
                "{name} ({case}): Pillow refuses it ({}), we decode it",
                entry["error"]
            )),
            (false, Err(e)) => {
                let message = e.to_string();
                if !message.contains(name.rsplit('/').next().unwrap()) || message.contains('\n') {
                    failures.push(format!(
                        "{name}: the error is not one line naming the file: {message}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ from Pillow:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
