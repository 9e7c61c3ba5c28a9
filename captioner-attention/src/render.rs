//! Heatmaps drawn over the image: a word's patch grid upsampled smoothly (bilinear) to
//! the size shown, coloured from blue (little) to red (most), and the Show-Attend-Tell
//! sheet: the image, then one tile per word with its heatmap and the word under it.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use captioner::WordMaps;
use image::{imageops::FilterType, DynamicImage, Rgb, RgbImage};

/// The longest side of a tile of the sheet; smaller images keep their size.
pub const TILE: u32 = 256;
/// Tiles per row of the sheet.
const COLUMNS: usize = 5;
const PAD: u32 = 8;
/// The words' font: DejaVu Sans (assets/fonts/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The words' size in pixels (an em), and the height of the strip they are written in.
const TEXT_PX: f32 = 15.0;
const LINE: u32 = 16;

/// `weights` (`rows × cols`, row-major) upsampled to `width × height` by bilinear
/// interpolation between patch centres (edges held), as a row-major grid.
pub fn upsample(weights: &[f32], rows: usize, cols: usize, width: u32, height: u32) -> Vec<f32> {
    // Source coordinate of each output pixel's centre, and its two neighbours' weights.
    let axis = |n: u32, cells: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let x = ((i as f32 + 0.5) * cells as f32 / n as f32 - 0.5)
                    .clamp(0.0, (cells - 1) as f32);
                let lo = x.floor() as usize;
                (lo, (lo + 1).min(cells - 1), x - lo as f32)
            })
            .collect()
    };
    let (xs, ys) = (axis(width, cols), axis(height, rows));
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let at = |y: usize, x: usize| weights[y * cols + x];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The colour of `v` in [0, 1]: dark blue, blue, cyan, yellow, red, dark red ("jet").
pub fn heat_color(v: f32) -> [u8; 3] {
    let channel = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// `image` with the heatmap `heat` (one value per pixel) over it, each value scaled by
/// the largest: the colour covers the image in proportion to the attention.
pub fn overlay(image: &RgbImage, heat: &[f32]) -> RgbImage {
    let top = heat.iter().copied().fold(0f32, f32::max);
    let scale = if top > 0.0 { 1.0 / top } else { 0.0 };
    let mut out = image.clone();
    for (px, &h) in out.pixels_mut().zip(heat) {
        let v = h * scale;
        let alpha = 0.75 * v;
        let c = heat_color(v);
        for (p, c) in px.0.iter_mut().zip(c) {
            *p = (*p as f32 * (1.0 - alpha) + c as f32 * alpha).round() as u8;
        }
    }
    out
}

/// The image as a tile: its own size, or scaled to fit `TILE` on its longest side.
fn tile_image(image: &DynamicImage) -> RgbImage {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w.max(h) <= TILE {
        return rgb;
    }
    let s = TILE as f32 / w.max(h) as f32;
    let (tw, th) = (
        ((w as f32 * s).round() as u32).max(1),
        ((h as f32 * s).round() as u32).max(1),
    );
    image::imageops::resize(&rgb, tw, th, FilterType::Triangle)
}

/// The Show-Attend-Tell sheet: the image, then each word's heatmap over it with the
/// word written under it, five tiles to a row.
pub fn sheet(image: &DynamicImage, maps: &WordMaps) -> RgbImage {
    let tile = tile_image(image);
    let (tw, th) = tile.dimensions();
    let label = LINE + PAD;
    let cells = 1 + maps.words.len();
    let columns = cells.min(COLUMNS) as u32;
    let rows = cells.div_ceil(COLUMNS) as u32;
    let (cw, ch) = (tw + PAD, th + label + PAD);
    let mut out = RgbImage::from_pixel(columns * cw + PAD, rows * ch + PAD, Rgb([255, 255, 255]));
    let mut place = |i: usize, img: &RgbImage, text: &str| {
        let (x, y) = (
            PAD + (i as u32 % columns) * cw,
            PAD + (i as u32 / columns) * ch,
        );
        image::imageops::replace(&mut out, img, x.into(), y.into());
        draw_text(&mut out, text, x, y + th + PAD / 2, tw);
    };
    place(0, &tile, "");
    for (i, word) in maps.words.iter().enumerate() {
        let heat = upsample(&word.weights, maps.rows, maps.cols, tw, th);
        place(i + 1, &overlay(&tile, &heat), &word.word);
    }
    out
}

/// `text` in black, anti-aliased, centred in `width` pixels from `x`, its top at `y`;
/// cut short with ".." when it does not fit.
fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, width: u32) {
    let font = FontRef::try_from_slice(FONT).expect("the bundled font parses");
    let scaled = font.as_scaled(PxScale::from(TEXT_PX));
    let mut chars: Vec<char> = text.chars().collect();
    if text_width(&scaled, &chars) > width as f32 {
        while !chars.is_empty()
            && text_width(&scaled, &[&chars[..], &['.', '.']].concat()) > width as f32
        {
            chars.pop();
        }
        chars.extend(['.', '.']);
    }
    let mut caret = x as f32 + (width as f32 - text_width(&scaled, &chars)).max(0.0) / 2.0;
    let baseline = y as f32 + scaled.ascent();
    let mut previous = None;
    for &c in &chars {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(scaled.scale(), ab_glyph::point(caret, baseline));
        caret += scaled.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let (px, py) = (
                bounds.min.x as i64 + gx as i64,
                bounds.min.y as i64 + gy as i64,
            );
            if (0..img.width() as i64).contains(&px) && (0..img.height() as i64).contains(&py) {
                let p = img.get_pixel_mut(px as u32, py as u32);
                for v in p.0.iter_mut() {
                    *v = (*v as f32 * (1.0 - coverage.clamp(0.0, 1.0))).round() as u8;
                }
            }
        });
    }
}

/// The advance of `chars` set in `font`, kerning included.
fn text_width<F: Font>(font: &impl ScaleFont<F>, chars: &[char]) -> f32 {
    let ids: Vec<_> = chars.iter().map(|&c| font.glyph_id(c)).collect();
    let kerning: f32 = ids.windows(2).map(|w| font.kern(w[0], w[1])).sum();
    ids.iter().map(|&id| font.h_advance(id)).sum::<f32>() + kerning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_the_grid_at_patch_centres_and_interpolates_between() {
        // 2 × 2 grid to 4 × 4: pixel centres at 0.5 / 2 = 0.25 patch steps.
        let up = upsample(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        // Edges hold the nearest patch; the middle columns blend.
        assert_eq!(up[0], 0.0);
        assert_eq!(up[3], 1.0);
        assert_eq!(up[15], 3.0);
        assert!((up[1] - 0.25).abs() < 1e-6 && (up[2] - 0.75).abs() < 1e-6);
        assert!((up[4] - 0.5).abs() < 1e-6, "{}", up[4]);
        // The same grid at its own size is itself.
        assert_eq!(
            upsample(&[0.0, 1.0, 2.0, 3.0], 2, 2, 2, 2),
            [0.0, 1.0, 2.0, 3.0]
        );
    }

    /// Words are inked inside their strip and tile, long ones cut short with "..".
    #[test]
    fn words_stay_inside_their_strip() {
        let inked = |text: &str| {
            let mut img = RgbImage::from_pixel(140, 60, Rgb([255, 255, 255]));
            draw_text(&mut img, text, 20, 20, 100);
            let dark: Vec<(u32, u32)> = img
                .enumerate_pixels()
                .filter(|(_, _, p)| p.0[0] < 128)
                .map(|(x, y, _)| (x, y))
                .collect();
            dark
        };
        for text in ["red", "rhombus", "a-very-long-word-that-cannot-fit"] {
            let dark = inked(text);
            assert!(!dark.is_empty(), "{text} is drawn");
            assert!(
                dark.iter()
                    .all(|&(x, y)| (20..120).contains(&x) && (20..20 + LINE + PAD / 2).contains(&y)),
                "{text} leaves its strip"
            );
        }
        // Centred: a short word's ink is balanced around the middle of the strip.
        let dark = inked("red");
        let (min, max) = dark
            .iter()
            .fold((u32::MAX, 0), |(a, b), &(x, _)| (a.min(x), b.max(x)));
        assert!((min + max).abs_diff(140) <= 3, "{min}..{max}");
    }

    #[test]
    fn hot_is_red_and_cold_is_blue() {
        assert_eq!(heat_color(1.0), [127, 0, 0]);
        assert_eq!(heat_color(0.75), [255, 127, 0]);
        assert_eq!(heat_color(0.0), [0, 0, 127]);
        assert_eq!(heat_color(0.5), [127, 255, 127]);
    }
}
