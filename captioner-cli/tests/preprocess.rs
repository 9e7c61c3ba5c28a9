//! Our reimplementation of PIL's RGB conversion and resampling against Pillow's own
//! output over a sweep of shapes, filters and colour modes (tests/fixtures/resize,
//! written by scripts/make_fixtures.py).

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use vision_encoder::preprocess::{convert_to_rgb, resize};
use vision_encoder::Resample;

#[test]
fn resize_sweep_matches_pillow() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize");
    let tensors =
        candle_core::safetensors::load(dir.join("sweep.safetensors"), &Device::Cpu).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let (mut differing, mut total, mut worst) = (0usize, 0usize, 0i32);
    for case in cases {
        let i = case["index"].as_u64().unwrap();
        let size = |k: &str| {
            let v = case[k].as_array().unwrap();
            (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
        };
        let ((w, h), (dw, dh)) = (size("src_size"), size("dst_size"));
        let src = bytes(&tensors[&format!("src_{i}")]);
        let img = match case["mode"].as_str().unwrap() {
            "RGB" => DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, src).unwrap()),
            "RGBA" => DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, src).unwrap()),
            "LA" => DynamicImage::ImageLumaA8(GrayAlphaImage::from_raw(w, h, src).unwrap()),
            "L" => DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, src).unwrap()),
            other => panic!("unknown mode {other}"),
        };
        let filter = Resample::from_pil(case["resample"].as_u64().unwrap() as u32).unwrap();
        let ours = resize(&convert_to_rgb(&img), dw as usize, dh as usize, filter).into_raw();
        let theirs = bytes(&tensors[&format!("out_{i}")]);
        assert_eq!(ours.len(), theirs.len(), "case {i}");
        for (a, b) in ours.iter().zip(&theirs) {
            let d = (*a as i32 - *b as i32).abs();
            worst = worst.max(d);
            differing += (d != 0) as usize;
        }
        total += ours.len();
    }
    // Same integer arithmetic as Pillow, so the same bytes.
    assert_eq!(
        differing, 0,
        "{differing} of {total} values differ from Pillow, the worst by {worst}/255"
    );
}

fn bytes(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}
