//! The f32, int8 and bf16 linear kernels on BLIP-base's shapes: decoding steps (a few
//! rows, each weight streamed from memory) and the vision encoder's batch of 8 images
//! (4616 rows, arithmetic-bound), beside candle's own int8 path (a `QMatMul` of
//! GGML's q8_0 blocks, which quantizes the inputs to q8_0 too); then the encoder's
//! self-attention of one layer over 8 images in f32 and with bf16 products on AMX tiles:
//! `cargo run --release -p kernels --example packed_speed`.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use kernels::packed::{PackedLinear, Scheme};

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "{cpu}, {} threads; VNNI {}, AVX512_BF16 {}",
        rayon::current_num_threads(),
        kernels::packed::has_vnni(),
        kernels::packed::has_bf16()
    );
    let schemes = [
        Scheme::Int12Weights,
        Scheme::Int8Dynamic,
        Scheme::Bf16Weights,
        Scheme::Bf16Dot,
    ];
    println!(
        "rows x in x out: f32 | {schemes:?} | candle q8_0 (microseconds per product, speed-up over f32)"
    );
    for (rows, k, n) in [
        (1usize, 768usize, 3072usize),
        (1, 3072, 768),
        (1, 768, 30524),
        (8, 768, 3072),
        (24, 768, 768),
        (4616, 768, 2304),
        (4616, 3072, 768),
    ] {
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        // Enough copies of the weight that each call streams it from memory, not cache.
        let copies = (200_000_000 / (n * k * 4)).max(2);
        let ws: Vec<Vec<f32>> = (0..copies)
            .map(|c| (0..n * k).map(|i| ((i + c) % 17) as f32 * 0.01).collect())
            .collect();
        let time = |f: &dyn Fn(usize)| {
            f(0);
            let t = Instant::now();
            for c in 0..copies {
                f(c);
            }
            t.elapsed().as_secs_f64() / copies as f64
        };
        let f32_time = time(&|c| {
            let l = kernels::linear::Linear {
                weight: &ws[c],
                bias: None,
                out_features: n,
            };
            std::hint::black_box(l.forward(&x, None));
        });
        let mut line = format!("{rows}x{k}x{n}: f32 {:.0}", f32_time * 1e6);
        for scheme in schemes {
            let qs: Vec<_> = ws
                .iter()
                .map(|w| PackedLinear::pack(w, None, n, scheme))
                .collect();
            let t = time(&|c| {
                std::hint::black_box(qs[c].forward(&x, None));
            });
            line += &format!(" | {:.0} ({:.2}x)", t * 1e6, f32_time / t);
        }
        let xt = Tensor::from_slice(&x, (rows, k), &Device::Cpu).unwrap();
        let qs: Vec<QMatMul> = ws
            .iter()
            .map(|w| {
                let w = Tensor::from_slice(w, (n, k), &Device::Cpu).unwrap();
                QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap()
            })
            .collect();
        let t = time(&|c| {
            std::hint::black_box(qs[c].forward(&xt).unwrap());
        });
        line += &format!(" | {:.0} ({:.2}x)", t * 1e6, f32_time / t);
        println!("{line}");
    }
    attention();
}

/// One ViT-B/16 layer's self-attention at 384 px (577 tokens, 12 heads of 64) over 8
/// images, median of 5.
fn attention() {
    let (b, t, heads, hd) = (8, 577, 12, 64);
    let qkv: Vec<f32> = (0..b * t * 3 * heads * hd)
        .map(|i| (i % 29) as f32 * 0.07 - 1.0)
        .collect();
    let median = |f: &dyn Fn()| {
        f();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[2]
    };
    let scale = (hd as f32).powf(-0.5);
    type Attention = fn(&[f32], (usize, usize), usize, f32) -> Vec<f32>;
    let time = |attend: Attention| {
        median(&|| {
            std::hint::black_box(attend(&qkv, (b, t), heads, scale));
        })
    };
    let f32_time = time(kernels::attention::packed_self_attention);
    let mut line = format!(
        "self-attention, 8 x 577 tokens, 12 heads: f32 {:.1} ms",
        f32_time * 1e3
    );
    if kernels::attention::bf16_tiles_serve(hd) {
        let tiles = time(kernels::attention::packed_self_attention_bf16);
        line += &format!(
            " | bf16 on AMX tiles {:.1} ms ({:.2}x)",
            tiles * 1e3,
            f32_time / tiles
        );
    } else {
        line += " | no AMX-BF16 tiles here";
    }
    println!("{line}");
}
