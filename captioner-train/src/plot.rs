//! The training curves as a PNG: train loss per step and validation loss per epoch on
//! the left axis, Bleu_4 and CIDEr on the right, with a small built-in bitmap font for
//! the labels (so no font file is needed).

use image::{Rgb, RgbImage};

const W: u32 = 720;
const H: u32 = 420;
const LEFT: u32 = 60;
const RIGHT: u32 = 60;
const TOP: u32 = 40;
const BOTTOM: u32 = 40;

const TRAIN: Rgb<u8> = Rgb([70, 110, 200]);
const VAL: Rgb<u8> = Rgb([220, 90, 40]);
const BLEU: Rgb<u8> = Rgb([40, 160, 80]);
const CIDER: Rgb<u8> = Rgb([150, 60, 170]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// One series: points (step, value).
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Draws losses (left axis, from 0) and scores (right axis, from 0) against steps.
pub fn plot(train: &Series, val: &Series, bleu: &Series, cider: &Series) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let max_step = [train, val, bleu, cider]
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let top = |ss: &[&Series]| {
        ss.iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(1e-9, f64::max)
            * 1.05
    };
    let (loss_max, score_max) = (top(&[train, val]), top(&[bleu, cider]));
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let x_of = |step: f64| LEFT as f64 + step / max_step * pw;
    let y_of = |v: f64, max: f64| TOP as f64 + ph - (v / max).clamp(0.0, 1.0) * ph;
    for i in 0..=4 {
        let y = (TOP as f64 + ph * i as f64 / 4.0) as u32;
        line(
            &mut img,
            (LEFT as f64, y as f64),
            ((W - RIGHT) as f64, y as f64),
            GRID,
        );
        let frac = 1.0 - i as f64 / 4.0;
        text(
            &mut img,
            4,
            y.saturating_sub(3),
            &format!("{:.2}", loss_max * frac),
            INK,
        );
        text(
            &mut img,
            W - RIGHT + 6,
            y.saturating_sub(3),
            &format!("{:.2}", score_max * frac),
            INK,
        );
    }
    let (x0, y0, x1, y1) = (
        LEFT as f64,
        (H - BOTTOM) as f64,
        (W - RIGHT) as f64,
        TOP as f64,
    );
    line(&mut img, (x0, y0), (x1, y0), INK);
    line(&mut img, (x0, y0), (x0, y1), INK);
    line(&mut img, (x1, y0), (x1, y1), INK);
    text(&mut img, LEFT, H - BOTTOM + 8, "0", INK);
    let steps = format!("{max_step:.0}");
    text(
        &mut img,
        W - RIGHT - 4 * steps.len() as u32,
        H - BOTTOM + 8,
        &steps,
        INK,
    );
    text(&mut img, W / 2 - 10, H - BOTTOM + 20, "STEP", INK);
    let mut legend = LEFT;
    for (s, colour, max) in [
        (train, TRAIN, loss_max),
        (val, VAL, loss_max),
        (bleu, BLEU, score_max),
        (cider, CIDER, score_max),
    ] {
        for w in s.points.windows(2) {
            line(
                &mut img,
                (x_of(w[0].0), y_of(w[0].1, max)),
                (x_of(w[1].0), y_of(w[1].1, max)),
                colour,
            );
        }
        for p in &s.points {
            if s.points.len() < 50 {
                dot(&mut img, x_of(p.0), y_of(p.1, max), colour);
            }
        }
        text(&mut img, legend, 14, s.name, colour);
        legend += 4 * s.name.len() as u32 + 24;
    }
    img
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < W && (y as u32) < H {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (xa, ya): (f64, f64), (xb, yb): (f64, f64), c: Rgb<u8>) {
    let n = (xb - xa).abs().max((yb - ya).abs()).ceil().max(1.0) as usize;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        put(
            img,
            (xa + (xb - xa) * t).round() as i64,
            (ya + (yb - ya) * t).round() as i64,
            c,
        );
    }
}

fn dot(img: &mut RgbImage, x: f64, y: f64, c: Rgb<u8>) {
    for dy in -2..=2 {
        for dx in -2..=2 {
            put(img, x.round() as i64 + dx, y.round() as i64 + dy, c);
        }
    }
}

/// 3x5 glyphs, one row per 3 bits, top row first.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' | '_' => [0, 0, 7, 0, 0],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'I' => [7, 2, 2, 2, 7],
        'L' => [4, 4, 4, 4, 7],
        'N' => [5, 7, 7, 5, 5],
        'O' => [7, 5, 5, 5, 7],
        'P' => [7, 5, 7, 4, 4],
        'R' => [6, 5, 6, 5, 5],
        'S' => [7, 4, 7, 1, 7],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    put(
                        img,
                        (x + 4 * i as u32 + col) as i64,
                        (y + row as u32) as i64,
                        c,
                    );
                }
            }
        }
    }
}
