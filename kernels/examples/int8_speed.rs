//! The int8 and f32 linear kernels on the text decoder's shapes (a decoding step's
//! rows by BLIP-base's 768/3072/30524 widths), each weight streamed from memory:
//! `cargo run --release -p kernels --example int8_speed`.

use std::time::Instant;
fn main() {
    for (rows, k, n) in [
        (1usize, 768usize, 3072usize),
        (1, 3072, 768),
        (1, 768, 30524),
        (8, 768, 3072),
        (24, 768, 768),
        (4616, 768, 768),
    ] {
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.1).collect();
        // Many copies of the weight so that each call streams from memory, not cache.
        let copies = (200_000_000 / (n * k * 4)).max(2);
        let ws: Vec<Vec<f32>> = (0..copies)
            .map(|c| (0..n * k).map(|i| ((i + c) % 17) as f32 * 0.01).collect())
            .collect();
        let qs: Vec<_> = ws
            .iter()
            .map(|w| kernels::int8::QuantLinear::quantize(w, None, n))
            .collect();
        let t = Instant::now();
        for w in &ws {
            let l = kernels::linear::Linear {
                weight: w,
                bias: None,
                out_features: n,
            };
            std::hint::black_box(l.forward(&x, None));
        }
        let f = t.elapsed().as_secs_f64() / copies as f64;
        let t = Instant::now();
        for q in &qs {
            std::hint::black_box(q.forward(&x, None));
        }
        let i = t.elapsed().as_secs_f64() / copies as f64;
        println!(
            "{rows}x{k}x{n}: f32 {:.1} us ({:.1} GB/s), int8 {:.1} us ({:.1} GB/s)",
            f * 1e6,
            (n * k * 4) as f64 / f / 1e9,
            i * 1e6,
            (n * k) as f64 / i / 1e9
        );
    }
}
