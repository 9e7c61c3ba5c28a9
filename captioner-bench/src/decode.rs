//! Decoding images as captioning does (Pillow's pixels) against the `image` crate's
//! own decoders.

use crate::{time, BenchCase, BenchOptions, Result};

/// Writes `count` photo-sized JPEGs (`width` x `height`, quality 90, the `image` crate's
/// 4:2:2 encoder) to `dir`: smooth gradients, noise and a few discs, so the entropy
/// decoder has a photo's amount of work.
pub fn write_test_jpegs(
    dir: &std::path::Path,
    count: usize,
    width: u32,
    height: u32,
) -> Result<Vec<std::path::PathBuf>> {
    use rayon::prelude::*;
    std::fs::create_dir_all(dir).map_err(|e| captioner::Error::file(dir, e))?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = datasets::Rng::new(i as u64);
            let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..6)
                .map(|_| {
                    let c = [0; 3].map(|_| rng.below(256) as u8);
                    let mut unit = || rng.below(1000) as f32 / 1000.0;
                    (unit(), unit(), 0.05 + 0.2 * unit(), c)
                })
                .collect();
            let img = image::RgbImage::from_fn(width, height, |x, y| {
                let (u, v) = (x as f32 / width as f32, y as f32 / height as f32);
                let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 23) as f32;
                let mut p = [255.0 * u, 255.0 * v, 128.0 + 100.0 * (6.0 * u * v).sin()];
                for (cx, cy, r, c) in &discs {
                    if (u - cx).powi(2) + (v - cy).powi(2) < r * r {
                        p = c.map(f32::from);
                    }
                }
                image::Rgb(p.map(|c| (c + noise).clamp(0.0, 255.0) as u8))
            });
            let path = dir.join(format!("photo-{i}.jpg"));
            let file =
                std::fs::File::create(&path).map_err(|e| captioner::Error::file(&path, e))?;
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
                .encode_image(&img)
                .map_err(|e| captioner::Error::file(&path, e))?;
            Ok(path)
        })
        .collect()
}

/// Times decoding `files` on the rayon pool, two ways: `datasets::load_image` (what
/// captioning runs: Pillow's pixels) and the `image` crate's own decoders (the pure-Rust
/// path captioner used before), one case each.
pub fn run_decode(
    opts: &BenchOptions,
    files: &[std::path::PathBuf],
    mut progress: impl FnMut(&BenchCase),
) -> Result<Vec<BenchCase>> {
    use rayon::prelude::*;
    type Decode = fn(&std::path::Path) -> Result<u32>;
    let decoders: [(&str, Decode); 2] = [
        ("decode, as Pillow (captioner)", decode_as_captioner),
        ("decode, image crate", decode_with_image_crate),
    ];
    let mut cases = Vec::new();
    for (name, decode) in decoders {
        let seconds = time(opts.warmup, opts.runs, || {
            files
                .par_iter()
                .map(|f| decode(f))
                .collect::<Result<Vec<_>>>()
        })?;
        let case = BenchCase {
            name: name.into(),
            batch: files.len(),
            seconds,
        };
        progress(&case);
        cases.push(case);
    }
    Ok(cases)
}

fn decode_as_captioner(path: &std::path::Path) -> Result<u32> {
    let img = datasets::load_image(path, datasets::DEFAULT_MAX_PIXELS)
        .map_err(|e| captioner::Error::Other(e.to_string()))?;
    Ok(img.width())
}

fn decode_with_image_crate(path: &std::path::Path) -> Result<u32> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| captioner::Error::file(path, e))?
        .decode()
        .map_err(|e| captioner::Error::file(path, e))?;
    Ok(img.width())
}

/// The mean size of `files` in megapixels (a file that cannot be read counts as 0).
pub fn mean_megapixels(files: &[std::path::PathBuf]) -> f64 {
    let total: f64 = files
        .iter()
        .map(|f| image::image_dimensions(f).map_or(0.0, |(w, h)| w as f64 * h as f64 / 1e6))
        .sum();
    total / files.len().max(1) as f64
}
