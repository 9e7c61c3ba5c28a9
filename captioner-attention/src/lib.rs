//! captioner-attention: where the decoder looked. The per-word maps a
//! [`captioner::Captioner`] computes from each generated token's cross-attention
//! ([`captioner::maps`]), drawn as Show-Attend-Tell sheets and in an HTML report, written
//! beside a folder run's captions ([`AttentionSink`]), and scored against the synthetic
//! data set's boxes ([`localise()`]).

pub mod localise;
pub mod render;
pub mod report;

use std::path::{Component, Path, PathBuf};

use serde_json::json;

pub use captioner::maps::{word_maps, Layer, WordMap, WordMaps};
pub use localise::{localise, Localisation, WordHit};
pub use report::Report;

use captioner::checkpoint::write_atomic;
use captioner::{Error, Result};
use captioner_runner::output::{Record, Sink, Text};

/// Writes, for each captioned image, its sheet (`NAME.png`) and maps (`NAME.json`) under
/// a folder, and/or adds it to an HTML report written when the run ends. The image is
/// decoded again from its file (the run keeps only the model's pixels).
pub struct AttentionSink {
    pub folder: Option<PathBuf>,
    pub report: Option<(PathBuf, Report)>,
    pub layer: Layer,
    pub max_pixels: u64,
    pub names: Names,
}

/// Output names of the images of a run, each used once.
#[derive(Default)]
pub struct Names(std::collections::HashSet<PathBuf>);

impl Names {
    /// The image's path relative to the folder it was found in (its file name when it
    /// was named itself), normal components only so that nothing lands outside the
    /// output folder; "-2", "-3".. added to a name already taken.
    fn name(&mut self, r: &Record) -> PathBuf {
        let given = if r.relative == r.path {
            PathBuf::from(r.path.file_name().unwrap_or_default())
        } else {
            relative_name(&r.relative)
        };
        let mut name = given.clone();
        let stem = given
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for n in 2.. {
            if self.0.insert(name.with_extension("")) {
                break;
            }
            name = given.with_file_name(format!("{stem}-{n}.png"));
        }
        name
    }
}

impl Sink for AttentionSink {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        for r in records {
            let Ok(texts) = &r.result else { continue };
            let Some((text, maps)) = texts.first().and_then(|t| Some((t, t.attention.as_ref()?)))
            else {
                continue;
            };
            // It decoded a moment ago; if it no longer does, its captions stand.
            let image = match datasets::load_image(&r.path, self.max_pixels) {
                Ok(image) => image,
                Err(e) => {
                    eprintln!("warning: no attention maps for {}: {e}", r.file);
                    continue;
                }
            };
            if let Some(dir) = &self.folder {
                let base = dir.join(self.names.name(r));
                if let Some(parent) = base.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::file(parent, e))?;
                }
                let png = base.with_extension("png");
                let mut bytes = Vec::new();
                render::sheet(&image, maps)
                    .write_to(
                        &mut std::io::Cursor::new(&mut bytes),
                        image::ImageFormat::Png,
                    )
                    .map_err(|e| Error::file(&png, e))?;
                write_atomic(&png, &bytes)?;
                let doc = maps_json(&r.file, text, maps, self.layer);
                let json = base.with_extension("json");
                let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::file(&json, e))?;
                write_atomic(&json, (text + "\n").as_bytes())?;
            }
            if let Some((_, report)) = &mut self.report {
                report.add(&r.file, &image, &text.caption, maps)?;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        if let Some((path, report)) = &self.report {
            write_atomic(
                path,
                report
                    .html("Captions and where the decoder looked")
                    .as_bytes(),
            )?;
        }
        Ok(())
    }
}

/// The JSON written beside a sheet: the caption, its token ids (the whole sequence, as
/// the captions' output has them), and per word its tokens and grid of weights (rows of
/// the patch grid).
pub fn maps_json(file: &str, text: &Text, maps: &WordMaps, layer: Layer) -> serde_json::Value {
    json!({
        "file": file,
        "caption": text.caption,
        "tokens": text.tokens,
        "layer": match layer {
            Layer::Mean => json!("mean"),
            Layer::Index(l) => json!(l),
        },
        "grid": [maps.rows, maps.cols],
        "words": maps.words.iter().map(|w| json!({
            "word": w.word,
            "tokens": w.tokens,
            "positions": w.positions,
            "weights": w.weights.chunks(maps.cols.max(1)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// A path's normal components only.
fn relative_name(file: &Path) -> PathBuf {
    let kept: PathBuf = file
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    if kept.as_os_str().is_empty() {
        PathBuf::from("image")
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_stay_inside_the_folder() {
        for (file, want) in [
            ("a/b.jpg", "a/b.jpg"),
            ("/abs/c.png", "abs/c.png"),
            ("../up/d.png", "up/d.png"),
            ("./e.png", "e.png"),
        ] {
            let name = super::relative_name(std::path::Path::new(file));
            assert_eq!(name, std::path::PathBuf::from(want));
        }
    }
}
