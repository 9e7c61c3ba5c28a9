//! The training curves as a PNG, drawn by plotters: train loss per step and validation
//! loss per validation on the left axis, Bleu_4 and CIDEr on the right, with ticks,
//! axis labels and a legend, in the DejaVu Sans the project bundles.

use std::sync::Once;

use image::RgbImage;
use plotters::prelude::*;

use crate::{Error, Result};

const W: u32 = 720;
const H: u32 = 420;

const TRAIN: RGBColor = RGBColor(70, 110, 200);
const VAL: RGBColor = RGBColor(220, 90, 40);
const BLEU: RGBColor = RGBColor(40, 160, 80);
const CIDER: RGBColor = RGBColor(150, 60, 170);

/// DejaVu Sans (assets/fonts/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// One series: points (step, value).
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Draws losses (left axis, from 0) and scores (right axis, from 0) against steps.
pub fn plot(train: &Series, val: &Series, bleu: &Series, cider: &Series) -> Result<RgbImage> {
    static FONT_REGISTERED: Once = Once::new();
    FONT_REGISTERED.call_once(|| {
        // The font is ours and parses; plotters keeps it for every chart after this.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
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
    // An axis of nothing but zeros (no validation yet, or scores of 0) still spans 0..1.
    let span = |m: f64| if m < 1e-6 { 1.0 } else { m };
    let (loss_max, score_max) = (span(top(&[train, val])), span(top(&[bleu, cider])));
    let mut pixels = vec![0u8; (W * H * 3) as usize];
    draw(
        &mut pixels,
        [train, val, bleu, cider],
        max_step,
        loss_max,
        score_max,
    )
    .map_err(|e| Error::Other(format!("drawing the training curves: {e}")))?;
    Ok(RgbImage::from_raw(W, H, pixels).expect("the buffer is W x H x 3"))
}

fn draw<'a>(
    pixels: &'a mut [u8],
    [train, val, bleu, cider]: [&Series; 4],
    max_step: f64,
    loss_max: f64,
    score_max: f64,
) -> std::result::Result<(), Box<dyn std::error::Error + 'a>> {
    let root = BitMapBackend::with_buffer(pixels, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0.0..max_step, 0.0..loss_max)?
        .set_secondary_coord(0.0..max_step, 0.0..score_max);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 13))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("score")
        .label_style(("sans-serif", 13))
        .draw()?;
    // Lines everywhere, dots only where there are few points (validations); losses
    // on the left axis, scores on the right.
    let line =
        |s: &Series, colour: RGBColor| LineSeries::new(s.points.clone(), colour.stroke_width(2));
    let dots = |s: &Series, colour: RGBColor| -> Vec<Circle<(f64, f64), i32>> {
        let few = s.points.len() < 50;
        let shown = if few { &s.points[..] } else { &[] };
        shown
            .iter()
            .map(|&p| Circle::new(p, 3, colour.filled()))
            .collect()
    };
    let legend = |colour: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
    };
    for (s, colour) in [(train, TRAIN), (val, VAL)] {
        chart
            .draw_series(line(s, colour))?
            .label(s.name)
            .legend(legend(colour));
        chart.draw_series(dots(s, colour))?;
    }
    for (s, colour) in [(bleu, BLEU), (cider, CIDER)] {
        chart
            .draw_secondary_series(line(s, colour))?
            .label(s.name)
            .legend(legend(colour));
        chart.draw_secondary_series(dots(s, colour))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each series is drawn in its colour, on its own axis: a falling loss goes down
    /// the picture from left to right, a rising score up.
    #[test]
    fn series_are_drawn_where_their_values_say() {
        let series = |name, points: Vec<(f64, f64)>| Series { name, points };
        let img = plot(
            &series(
                "train loss",
                (1..=100)
                    .map(|s| (s as f64, 5.0 - s as f64 * 0.04))
                    .collect(),
            ),
            &series("val loss", vec![]),
            &series("Bleu-4", vec![(50.0, 0.1), (100.0, 0.3)]),
            &series("CIDEr", vec![]),
        )
        .unwrap();
        assert_eq!(img.dimensions(), (W, H));
        let mean_row = |colour: RGBColor, xs: std::ops::Range<u32>| {
            let rows: Vec<u32> = img
                .enumerate_pixels()
                .filter(|(x, _, p)| xs.contains(x) && p.0 == [colour.0, colour.1, colour.2])
                .map(|(_, y, _)| y)
                .collect();
            assert!(!rows.is_empty(), "{colour:?} in {xs:?}");
            rows.iter().sum::<u32>() as f64 / rows.len() as f64
        };
        // The legend sits at the right, middle: compare the plot's left and centre.
        assert!(mean_row(TRAIN, 80..200) < mean_row(TRAIN, 330..450));
        assert!(mean_row(BLEU, 330..400) > mean_row(BLEU, 500..560));
    }
}
