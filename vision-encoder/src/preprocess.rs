//! Image preprocessing identical to transformers' `BlipImageProcessor` on its PIL backend:
//! RGB (alpha composited onto white), resize to exactly `size` ignoring aspect ratio with
//! PIL's convolution resampling in 8-bit fixed point, rescale, normalize, CHW float32.
//!
//! PIL resizes in two separable passes (horizontal, then vertical), each rounding back to
//! 8 bits, with filter supports widened by the scale factor when shrinking (antialiasing).
//! Reproducing those integer steps is what makes our pixels equal to PIL's.

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use crate::Error;

/// OpenAI CLIP statistics, BLIP's defaults, written as transformers writes them.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// PIL's resampling filters, numbered as PIL numbers them (the `resample` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    pub fn from_pil(code: u32) -> Result<Self, Error> {
        Ok(match code {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            other => return Err(Error::Config(format!(
                "resample {other} is not supported (use 1 lanczos, 2 bilinear, 3 bicubic, 4 box or 5 hamming)"
            ))),
        })
    }

    pub fn to_pil(self) -> u32 {
        match self {
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => (1.0 - x.abs()).max(0.0),
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Bicubic => {
                // Keys' cubic with a = -0.5, as PIL uses.
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if x > -3.0 && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The settings of a `preprocessor_config.json` that change pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub height: usize,
    pub width: usize,
    pub resample: Resample,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub do_convert_rgb: bool,
}

impl ImageProcessorConfig {
    /// BLIP's processor for a model trained at `image_size`.
    pub fn blip(image_size: usize) -> Self {
        Self {
            height: image_size,
            width: image_size,
            resample: Resample::Bicubic,
            do_resize: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            do_convert_rgb: true,
        }
    }

    /// `ViTImageProcessor`'s defaults (the processor of transformers'
    /// `VisionEncoderDecoderModel` checkpoints) at `image_size`: bilinear, mean and std 0.5.
    pub fn vit(image_size: usize) -> Self {
        Self {
            resample: Resample::Bilinear,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            ..Self::blip(image_size)
        }
    }

    /// Reads the JSON object transformers writes, either flat (`preprocessor_config.json`)
    /// or nested under `image_processor` (transformers 5's `processor_config.json`).
    /// Fields it leaves out take BLIP's defaults for `default_size`.
    pub fn from_json(value: &serde_json::Value, default_size: usize) -> Result<Self, Error> {
        Self::from_json_over(value, Self::blip(default_size))
    }

    /// [`ImageProcessorConfig::from_json`], with `defaults` for the fields left out.
    pub fn from_json_over(value: &serde_json::Value, defaults: Self) -> Result<Self, Error> {
        let v = value.get("image_processor").unwrap_or(value);
        let mut cfg = defaults;
        if let Some(size) = v.get("size") {
            // Older configs give a bare number for a square size.
            let side = size.as_u64().map(|n| n as usize);
            match (
                side,
                size.get("height"),
                size.get("width"),
                size.get("shortest_edge"),
            ) {
                (Some(n), ..) => (cfg.height, cfg.width) = (n, n),
                (_, Some(h), Some(w), _) => {
                    cfg.height = as_usize(h, "size.height")?;
                    cfg.width = as_usize(w, "size.width")?;
                }
                (.., Some(e)) => {
                    cfg.height = as_usize(e, "size.shortest_edge")?;
                    cfg.width = cfg.height;
                }
                _ => return Err(Error::Config(format!("unreadable size {size}"))),
            }
        }
        if let Some(r) = v.get("resample") {
            cfg.resample = Resample::from_pil(as_usize(r, "resample")? as u32)?;
        }
        read_bool(v, "do_resize", &mut cfg.do_resize)?;
        read_bool(v, "do_rescale", &mut cfg.do_rescale)?;
        read_bool(v, "do_normalize", &mut cfg.do_normalize)?;
        read_bool(v, "do_convert_rgb", &mut cfg.do_convert_rgb)?;
        if let Some(f) = v.get("rescale_factor") {
            cfg.rescale_factor = f
                .as_f64()
                .ok_or_else(|| Error::Config(format!("rescale_factor {f:?} is not a number")))?;
        }
        read_triple(v, "image_mean", &mut cfg.image_mean)?;
        read_triple(v, "image_std", &mut cfg.image_std)?;
        Ok(cfg)
    }

    /// The flat `preprocessor_config.json` layout transformers reads.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "image_processor_type": "BlipImageProcessor",
            "processor_class": "BlipProcessor",
            "do_resize": self.do_resize,
            "size": {"height": self.height, "width": self.width},
            "resample": self.resample.to_pil(),
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "do_convert_rgb": self.do_convert_rgb,
        })
    }
}

fn as_usize(v: &serde_json::Value, what: &str) -> Result<usize, Error> {
    v.as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| Error::Config(format!("{what} {v} is not a non-negative integer")))
}

fn read_bool(v: &serde_json::Value, key: &str, out: &mut bool) -> Result<(), Error> {
    if let Some(b) = v.get(key) {
        *out = b
            .as_bool()
            .ok_or_else(|| Error::Config(format!("{key} {b} is not a boolean")))?;
    }
    Ok(())
}

fn read_triple(v: &serde_json::Value, key: &str, out: &mut [f32; 3]) -> Result<(), Error> {
    let Some(x) = v.get(key) else { return Ok(()) };
    let bad = || Error::Config(format!("{key} {x} is not a list of 3 numbers"));
    let items = x.as_array().ok_or_else(bad)?;
    if items.len() != 3 {
        return Err(bad());
    }
    for (o, i) in out.iter_mut().zip(items) {
        *o = i.as_f64().ok_or_else(bad)? as f32;
    }
    Ok(())
}

/// transformers' `convert_to_rgb` on the image PIL would have opened: RGB as is, gray
/// replicated, anything with alpha composited onto opaque white with PIL's 8-bit
/// arithmetic. 16-bit images follow PIL too: colour keeps the high byte (PIL opens such
/// files as 8-bit), and 16-bit gray (PIL's `I;16`) is clamped to 255, not scaled.
pub fn convert_to_rgb(img: &DynamicImage) -> RgbImage {
    let high = |v: u16| (v >> 8) as u8;
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb.clone(),
        DynamicImage::ImageLuma16(g) => RgbImage::from_fn(g.width(), g.height(), |x, y| {
            let v = g.get_pixel(x, y).0[0].min(255) as u8;
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(c) => RgbImage::from_fn(c.width(), c.height(), |x, y| {
            image::Rgb(c.get_pixel(x, y).0.map(high))
        }),
        DynamicImage::ImageRgba16(c) => {
            composite(&image::RgbaImage::from_fn(c.width(), c.height(), |x, y| {
                image::Rgba(c.get_pixel(x, y).0.map(high))
            }))
        }
        DynamicImage::ImageLumaA16(c) => {
            composite(&image::RgbaImage::from_fn(c.width(), c.height(), |x, y| {
                let [v, a] = c.get_pixel(x, y).0.map(high);
                image::Rgba([v, v, v, a])
            }))
        }
        _ if !img.color().has_alpha() => img.to_rgb8(),
        _ => composite(&img.to_rgba8()),
    }
}

fn composite(rgba: &image::RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        image::Rgb([0, 1, 2].map(|c| composite_on_white(p[c] as u32, p[3] as u32)))
    })
}

/// PIL's `alpha_composite` of one channel over an opaque white pixel (7 fractional bits,
/// division by 255 done as two shifts), so rounding matches PIL exactly.
fn composite_on_white(src: u32, alpha: u32) -> u8 {
    if alpha == 0 {
        return 255;
    }
    const BITS: u32 = 7;
    let blend = 255 * (255 - alpha);
    let outa255 = alpha * 255 + blend;
    let coef1 = alpha * 255 * 255 * (1 << BITS) / outa255;
    let coef2 = 255 * (1 << BITS) - coef1;
    let tmp = src * coef1 + 255 * coef2 + (0x80 << BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> BITS) as u8
}

/// Fixed-point precision of PIL's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output pixel along one axis: the first input index and its integer weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// PIL's `precompute_coeffs` followed by its 8-bit normalisation.
fn taps(in_size: usize, out_size: usize, filter: Resample) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let inv_filterscale = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; the clamps keep the same indices.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut w: Vec<f64> = (xmin..xmax)
            .map(|x| filter.weight((x as f64 - center + 0.5) * inv_filterscale))
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            w.iter_mut().for_each(|k| *k /= total);
        }
        let one = (1u32 << PRECISION_BITS) as f64;
        weights.push(
            w.iter()
                .map(|&k| {
                    if k < 0.0 {
                        (-0.5 + k * one) as i32
                    } else {
                        (0.5 + k * one) as i32
                    }
                })
                .collect(),
        );
        start.push(xmin);
    }
    Taps { start, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit RGB exactly as PIL's `Image.resize(size, filter)` does.
/// Pillow 13 runs the vertical pass first when the height shrinks by more than twice
/// what the width does (earlier versions always went horizontal first; the two orders
/// differ by a few levels on such images).
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Resample) -> RgbImage {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let shrink_y = h0 as i64 - height as i64;
    let vertical_first = shrink_y > 0 && shrink_y > (w0 as i64 - width as i64) * 2;
    let mut data = img.as_raw().clone();
    let (mut w, mut h) = (w0, h0);
    let order = if vertical_first {
        [true, false]
    } else {
        [false, true]
    };
    for vertical in order {
        if vertical && height != h {
            data = resize_vertical(&data, w, h, height, filter);
            h = height;
        } else if !vertical && width != w {
            data = resize_horizontal(&data, w, h, width, filter);
            w = width;
        }
    }
    RgbImage::from_raw(w as u32, h as u32, data)
        .expect("buffer length is width*height*3 by construction")
}

fn resize_horizontal(data: &[u8], w: usize, h: usize, new_w: usize, filter: Resample) -> Vec<u8> {
    let t = taps(w, new_w, filter);
    let mut out = vec![0u8; new_w * h * 3];
    for (row, out_row) in data
        .chunks_exact(w * 3)
        .zip(out.chunks_exact_mut(new_w * 3))
    {
        for (x, (&s, k)) in t.start.iter().zip(&t.weights).enumerate() {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &kk) in k.iter().enumerate() {
                    acc += row[(s + i) * 3 + c] as i64 * kk as i64;
                }
                out_row[x * 3 + c] = clip8(acc);
            }
        }
    }
    out
}

fn resize_vertical(data: &[u8], w: usize, h: usize, new_h: usize, filter: Resample) -> Vec<u8> {
    let t = taps(h, new_h, filter);
    let stride = w * 3;
    let mut out = vec![0u8; stride * new_h];
    for (out_row, (&s, k)) in out
        .chunks_exact_mut(stride)
        .zip(t.start.iter().zip(&t.weights))
    {
        for (x, o) in out_row.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (i, &kk) in k.iter().enumerate() {
                acc += data[(s + i) * stride + x] as i64 * kk as i64;
            }
            *o = clip8(acc);
        }
    }
    out
}

impl ImageProcessorConfig {
    /// RGB conversion and resize: the 8-bit image the model will see.
    pub fn resize_u8(&self, img: &DynamicImage) -> RgbImage {
        let rgb = if self.do_convert_rgb {
            convert_to_rgb(img)
        } else {
            img.to_rgb8()
        };
        if self.do_resize {
            resize(&rgb, self.width, self.height, self.resample)
        } else {
            rgb
        }
    }

    /// One image as CHW float32 values, rescaled and normalized in transformers' order
    /// (rescale in f64 then cast, normalize in f32).
    pub fn pixels(&self, img: &DynamicImage) -> Vec<f32> {
        let rgb = self.resize_u8(img);
        let plane = (rgb.width() * rgb.height()) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                let mut v = p.0[c] as f64;
                if self.do_rescale {
                    v *= self.rescale_factor;
                }
                let mut v = v as f32;
                if self.do_normalize {
                    v = (v - self.image_mean[c]) / self.image_std[c];
                }
                out[c * plane + i] = v;
            }
        }
        out
    }

    /// A batch `[B, 3, H, W]`, the images preprocessed in parallel.
    pub fn batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor, Error> {
        if !self.do_resize
            && images
                .iter()
                .any(|i| (i.width(), i.height()) != (images[0].width(), images[0].height()))
        {
            return Err(Error::Config(
                "do_resize is false and the images differ in size".into(),
            ));
        }
        let per: Vec<Vec<f32>> = images.par_iter().map(|img| self.pixels(img)).collect();
        let (h, w) = if self.do_resize {
            (self.height, self.width)
        } else {
            images
                .first()
                .map_or((0, 0), |i| (i.height() as usize, i.width() as usize))
        };
        let flat: Vec<f32> = per.concat();
        Ok(Tensor::from_vec(flat, (images.len(), 3, h, w), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PIL 13's values: a 16-bit RGB PNG opens with the high byte kept (0xABFF -> 171,
    /// 0x00FF -> 0), and `I;16` gray converts to RGB clamped (1000 -> 255, 100 -> 100).
    #[test]
    fn sixteen_bit_images_convert_as_pil() {
        let rgb =
            image::ImageBuffer::from_raw(2, 1, vec![0xABFFu16, 0x00FF, 257, 65535, 0, 0x8000])
                .unwrap();
        let out = convert_to_rgb(&DynamicImage::ImageRgb16(rgb));
        assert_eq!(out.into_raw(), vec![171, 0, 1, 255, 0, 128]);
        let gray = image::ImageBuffer::from_raw(3, 1, vec![100u16, 256, 1000]).unwrap();
        let out = convert_to_rgb(&DynamicImage::ImageLuma16(gray));
        assert_eq!(
            out.into_raw(),
            vec![100, 100, 100, 255, 255, 255, 255, 255, 255]
        );
    }

    #[test]
    fn reads_flat_nested_and_old_processor_configs() {
        // As on the hub for Salesforce/blip-image-captioning-base.
        let flat = serde_json::json!({
            "do_normalize": true, "do_resize": true, "image_processor_type": "BlipImageProcessor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"height": 384, "width": 384}
        });
        let cfg = ImageProcessorConfig::from_json(&flat, 224).unwrap();
        assert_eq!(cfg, ImageProcessorConfig::blip(384));
        let nested = serde_json::json!({"image_processor": {"size": {"height": 96, "width": 96}, "resample": 2}});
        let cfg = ImageProcessorConfig::from_json(&nested, 64).unwrap();
        assert_eq!(
            (cfg.height, cfg.width, cfg.resample),
            (96, 96, Resample::Bilinear)
        );
        let old = serde_json::json!({"size": 384});
        assert_eq!(
            ImageProcessorConfig::from_json(&old, 64).unwrap().height,
            384
        );
        let round_trip = ImageProcessorConfig::from_json(&cfg.to_json(), 1).unwrap();
        assert_eq!(round_trip, cfg);
        let bad = serde_json::json!({"resample": 0});
        assert!(ImageProcessorConfig::from_json(&bad, 64)
            .unwrap_err()
            .to_string()
            .contains("resample 0"));
    }
}
