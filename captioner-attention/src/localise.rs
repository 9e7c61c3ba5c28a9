//! How well attention finds the objects a caption names, on the synthetic shapes data
//! set, whose scenes give every object's box: for each colour or shape word of a
//! mention that matches objects of the scene, the share of the word's attention that
//! falls inside their boxes, and whether its peak does (pointing). Chance is the boxes'
//! share of the image.

use datasets::synth::{mention_spans, Object, Scene};
use serde::Serialize;

use captioner::WordMaps;

/// One word that names objects of the scene.
#[derive(Clone, Debug, PartialEq)]
pub struct WordHit {
    /// Its index among the caption's words.
    pub word: usize,
    /// The share of its attention inside the named objects' boxes.
    pub mass: f64,
    /// Whether its most attended patch has its centre inside one of them.
    pub peak_inside: bool,
    /// The boxes' share of the image: the mass and the pointing rate of attention
    /// spread evenly.
    pub chance: f64,
}

/// The words of `maps` that name objects of `scene` (an image `width × height`), each
/// scored. A mention whose colour and shape match no object is left out: it localises
/// nothing.
pub fn localise(maps: &WordMaps, scene: &Scene, width: u32, height: u32) -> Vec<WordHit> {
    let words: Vec<String> = maps.words.iter().map(|w| w.word.to_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut hits = Vec::new();
    for m in mention_spans(&words) {
        let named: Vec<&Object> = scene
            .objects
            .iter()
            .filter(|o| o.color == m.color && o.shape == m.shape)
            .collect();
        if named.is_empty() {
            continue;
        }
        let inside = BoxMask::new(&named, width, height);
        for word in [m.color_word, m.shape_word] {
            hits.push(score(word, &maps.words[word].weights, maps, &inside));
        }
    }
    hits
}

/// Which pixels lie in the union of some boxes.
struct BoxMask {
    width: u32,
    height: u32,
    inside: Vec<bool>,
}

impl BoxMask {
    fn new(objects: &[&Object], width: u32, height: u32) -> Self {
        let mut inside = vec![false; width as usize * height as usize];
        for o in objects {
            let [x, y, w, h] = o.bbox;
            for py in y..(y + h).min(height) {
                for px in x..(x + w).min(width) {
                    inside[(py * width + px) as usize] = true;
                }
            }
        }
        Self {
            width,
            height,
            inside,
        }
    }

    fn at(&self, x: u32, y: u32) -> bool {
        self.inside[(y.min(self.height - 1) * self.width + x.min(self.width - 1)) as usize]
    }
}

/// A word's hit: each patch covers its share of the image (the model sees the whole
/// image stretched to its square), and counts inside by the share of its pixels (by
/// their centres) that are.
fn score(word: usize, weights: &[f32], maps: &WordMaps, mask: &BoxMask) -> WordHit {
    let (rows, cols) = (maps.rows, maps.cols);
    let (w, h) = (mask.width, mask.height);
    let cell_of =
        |x: u32, n: u32, cells: usize| ((x as f64 + 0.5) * cells as f64 / n as f64) as usize;
    let mut pixels = vec![0u32; rows * cols];
    let mut inside = vec![0u32; rows * cols];
    let mut total_inside = 0u64;
    for y in 0..h {
        for x in 0..w {
            let c = cell_of(y, h, rows).min(rows - 1) * cols + cell_of(x, w, cols).min(cols - 1);
            pixels[c] += 1;
            if mask.at(x, y) {
                inside[c] += 1;
                total_inside += 1;
            }
        }
    }
    let total: f64 = weights.iter().map(|&v| v as f64).sum();
    let in_boxes: f64 = weights
        .iter()
        .zip(pixels.iter().zip(&inside))
        .map(|(&v, (&p, &i))| {
            if p == 0 {
                0.0
            } else {
                v as f64 * i as f64 / p as f64
            }
        })
        .sum();
    let peak = weights
        .iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0;
    let centre =
        |i: usize, cells: usize, n: u32| ((i as f64 + 0.5) * n as f64 / cells as f64) as u32;
    WordHit {
        word,
        mass: if total > 0.0 { in_boxes / total } else { 0.0 },
        peak_inside: mask.at(centre(peak % cols, cols, w), centre(peak / cols, rows, h)),
        chance: total_inside as f64 / (w as f64 * h as f64),
    }
}

/// Localisation over many captions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Localisation {
    /// Words that named objects of their scenes.
    pub words: usize,
    /// Mean share of their attention inside the named objects' boxes.
    pub mass_in_box: f64,
    /// Share of them whose attention peaks inside a named object's box.
    pub pointing: f64,
    /// Mean share of the image the boxes cover: both scores' value for attention spread
    /// evenly.
    pub chance: f64,
}

impl Localisation {
    pub fn of(hits: &[WordHit]) -> Self {
        let n = hits.len();
        if n == 0 {
            return Self::default();
        }
        let mean = |f: &dyn Fn(&WordHit) -> f64| hits.iter().map(f).sum::<f64>() / n as f64;
        Self {
            words: n,
            mass_in_box: mean(&|h| h.mass),
            pointing: mean(&|h| f64::from(u8::from(h.peak_inside))),
            chance: mean(&|h| h.chance),
        }
    }
}

/// Scores every captioned image of the synthetic data set as a run goes: a sink beside
/// the run's output, its tally shared with the caller.
pub struct LocalisationSink {
    pub scenes: std::collections::HashMap<i64, Scene>,
    pub hits: std::sync::Arc<std::sync::Mutex<Vec<WordHit>>>,
}

impl captioner_runner::output::Sink for LocalisationSink {
    fn write(&mut self, records: &[captioner_runner::output::Record]) -> captioner::Result<()> {
        for r in records {
            let (Ok(texts), Some(id)) = (&r.result, r.image_id.as_ref().and_then(|v| v.as_i64()))
            else {
                continue;
            };
            let (Some(maps), Some(scene)) = (
                texts.first().and_then(|t| t.attention.as_ref()),
                self.scenes.get(&id),
            ) else {
                continue;
            };
            let (w, h) =
                image::image_dimensions(&r.path).map_err(|e| captioner::Error::file(&r.path, e))?;
            let found = localise(maps, scene, w, h);
            self.hits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(found);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> captioner::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captioner::WordMap;
    use datasets::synth::{Color, Shape, SizeClass};

    fn word(w: &str, weights: Vec<f32>) -> WordMap {
        WordMap {
            word: w.into(),
            tokens: vec![w.into()],
            positions: vec![0],
            weights,
        }
    }

    #[test]
    fn mass_pointing_and_chance_of_named_objects() {
        // An 8 × 8 image on a 2 × 2 grid; a red circle fills the top-left quarter.
        let scene = Scene {
            background: [0, 0, 0],
            background_bottom: None,
            noise_seed: 0,
            objects: vec![Object {
                shape: Shape::Circle,
                color: Color::Red,
                size: SizeClass::Small,
                bbox: [0, 0, 4, 4],
            }],
        };
        let maps = WordMaps {
            rows: 2,
            cols: 2,
            words: vec![
                word("a", vec![0.25; 4]),
                word("red", vec![0.6, 0.2, 0.2, 0.0]),
                word("circle", vec![0.1, 0.5, 0.2, 0.2]),
                word("and", vec![0.25; 4]),
                word("blue", vec![1.0, 0.0, 0.0, 0.0]),
                word("square", vec![1.0, 0.0, 0.0, 0.0]),
            ],
        };
        let hits = localise(&maps, &scene, 8, 8);
        // The blue square is not in the scene: only "red" and "circle" count.
        assert_eq!(hits.iter().map(|h| h.word).collect::<Vec<_>>(), [1, 2]);
        assert!((hits[0].mass - 0.6).abs() < 1e-6 && hits[0].peak_inside);
        assert!((hits[1].mass - 0.1).abs() < 1e-6 && !hits[1].peak_inside);
        assert_eq!(hits[0].chance, 0.25);
        let all = Localisation::of(&hits);
        assert_eq!(all.words, 2);
        assert!((all.mass_in_box - 0.35).abs() < 1e-6);
        assert_eq!((all.pointing, all.chance), (0.5, 0.25));
    }
}
