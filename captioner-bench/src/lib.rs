//! captioner-bench: what `captioner bench` measures, each case timed in-process on
//! inputs made here (nothing to download), to set beside the reference tools run on
//! the same machine by the scripts in `scripts/`:
//!
//! - [`inference`]: images per second of a BLIP-base-sized model with random weights
//!   on the four cases `scripts/bench_transformers.py` runs with transformers;
//! - [`training`]: optimizer steps of BLIP's caption training;
//! - [`metrics`]: the COCO caption evaluation of 5,000 synthetic images, against
//!   `scripts/bench_pycocoevalcap.py`;
//! - [`decode`]: decoding images as captioning does, against the `image` crate and
//!   `scripts/bench_pillow_decode.py`;
//! - [`quality`]: the reduced precisions' agreement with f32 at BLIP-base's size.

pub mod decode;
pub mod inference;
pub mod metrics;
pub mod quality;
pub mod training;

use std::time::Instant;

pub use captioner::{Error, Result};
pub use inference::{blip_base_configs, random_models, run, vit_gpt2_configs, Arch};
pub use training::run_training;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed runs per case; the median is reported.
    pub runs: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Tokens generated per caption.
    pub tokens: usize,
    /// The batch size of the batched cases.
    pub batch: usize,
    /// The linear layers' arithmetic.
    pub precision: captioner::Precision,
    /// The model sizes of the captioning cases.
    pub arch: Arch,
    /// Runs the loading of the model in `precision`: a binary whose allocator keeps
    /// freed memory can have it hand the f32 weights back to the system here.
    pub load_with: fn(&mut dyn FnMut()),
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            runs: 5,
            warmup: 1,
            tokens: 20,
            batch: 8,
            precision: captioner::Precision::F32,
            arch: Arch::BlipBase,
            load_with: |load| load(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchCase {
    pub name: String,
    pub batch: usize,
    /// Seconds of each timed run.
    pub seconds: Vec<f64>,
}

impl BenchCase {
    pub fn median_seconds(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / self.median_seconds()
    }
}

pub(crate) fn time<T>(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<T>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}
