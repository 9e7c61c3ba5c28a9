//! What is scored: results (a COCO results file `[{"image_id", "caption"}]`, or
//! captioner's JSON lines), matched to the references' images. As in pycocoevalcap, the
//! images scored are those with a result, in the references' order; a result for an
//! image the references do not know, or two for one image, is an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datasets::{ImageId, References};
use serde_json::Value;

use crate::{Error, Result};

/// One caption to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Where it is in its file: `[3]` or `line 4`.
    pub entry: String,
    pub image_id: Option<ImageId>,
    /// The image's path (JSON lines without `image_id`), matched to `file_name`s.
    pub file: Option<String>,
    pub caption: String,
}

/// A results file, read.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub path: PathBuf,
    pub items: Vec<Prediction>,
    /// Error records of JSON lines (images that could not be captioned).
    pub failed: usize,
}

/// Reads a COCO results file or captioner's JSON lines (told apart by the first
/// character: `[` or `{`).
pub fn load_predictions(path: &Path) -> Result<Predictions> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    let bad = |entry: &str, msg: &str| Error::file(path, format!("{entry}: {msg}"));
    let mut out = Predictions {
        path: path.to_path_buf(),
        items: Vec::new(),
        failed: 0,
    };
    match text.trim_start().chars().next() {
        Some('[') => {
            let list: Vec<Value> = serde_json::from_str(&text)
                .map_err(|e| Error::file(path, format!("not a COCO results list: {e}")))?;
            for (i, v) in list.iter().enumerate() {
                let entry = format!("[{i}]");
                let image_id = v.get("image_id").and_then(ImageId::from_json);
                let caption = v.get("caption").and_then(Value::as_str);
                let (Some(image_id), Some(caption)) = (image_id, caption) else {
                    return Err(bad(&entry, "expected {\"image_id\": number or string, \"caption\": string}"));
                };
                out.items.push(Prediction {
                    entry,
                    image_id: Some(image_id),
                    file: None,
                    caption: caption.to_string(),
                });
            }
        }
        Some('{') => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let entry = format!("line {}", i + 1);
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    bad(&entry, &format!("not JSON lines ({e}); expected a COCO results list or captioner's JSON lines"))
                })?;
                if v.get("annotations").is_some() {
                    return Err(bad(&entry, "this is an annotation file: give it as the references"));
                }
                if v.get("error").is_some() {
                    out.failed += 1;
                    continue;
                }
                let image_id = v.get("image_id").and_then(ImageId::from_json);
                let file = v.get("file").and_then(Value::as_str).map(str::to_string);
                let Some(caption) = v.get("caption").and_then(Value::as_str) else {
                    return Err(bad(&entry, "no caption string"));
                };
                if image_id.is_none() && file.is_none() {
                    return Err(bad(&entry, "neither image_id nor file says which image it is"));
                }
                out.items.push(Prediction {
                    entry,
                    image_id,
                    file,
                    caption: caption.to_string(),
                });
            }
        }
        _ => {
            return Err(Error::file(
                path,
                "empty or not JSON: expected a COCO results list [{\"image_id\", \"caption\"}] or captioner's JSON lines",
            ))
        }
    }
    Ok(out)
}

/// Results matched to references, image by image, in the references' order.
#[derive(Debug, Clone, Default)]
pub struct Matched {
    /// The images' ids as the references write them.
    pub ids: Vec<Value>,
    pub cands: Vec<String>,
    pub refs: Vec<Vec<String>>,
    /// Where the numbers mean less than they seem.
    pub warnings: Vec<String>,
}

/// Pairs each result with its image's references.
pub fn match_predictions(refs: &References, preds: &Predictions) -> Result<Matched> {
    let by_file = preds
        .items
        .iter()
        .any(|p| p.image_id.is_none())
        .then(|| refs.by_file());
    let wrong =
        |p: &Prediction, msg: String| Error::file(&preds.path, format!("{}: {msg}", p.entry));
    let mut chosen: HashMap<usize, &Prediction> = HashMap::with_capacity(preds.items.len());
    let mut outside = 0;
    for p in &preds.items {
        let at = match (&p.image_id, &by_file) {
            (Some(id), _) if refs.is_outside(id) => None,
            (Some(id), _) => Some(refs.position(id).ok_or_else(|| {
                wrong(
                    p,
                    format!(
                        "image_id {id} is not in the references {}",
                        refs.path.display()
                    ),
                )
            })?),
            (None, Some(files)) => {
                let file = p.file.as_deref().unwrap_or_default();
                *files
                    .lookup(Path::new(file))
                    .map_err(|e| wrong(p, format!("{file}: {e} in {}", refs.path.display())))?
            }
            (None, None) => unreachable!("by_file exists when an id is missing"),
        };
        let Some(at) = at else {
            outside += 1;
            continue;
        };
        if let Some(first) = chosen.insert(at, p) {
            return Err(wrong(
                p,
                format!(
                    "a second result for image {} (the first is {}); the COCO evaluation takes one caption per image",
                    refs.images[at].id, first.entry
                ),
            ));
        }
    }
    let mut out = Matched::default();
    let (mut missing, mut no_refs) = (Vec::new(), Vec::new());
    for (i, image) in refs.images.iter().enumerate() {
        match chosen.get(&i) {
            None => missing.push(&image.id),
            Some(_) if image.captions.is_empty() => no_refs.push(&image.id),
            Some(p) => {
                out.ids.push(image.id_json.clone());
                out.cands.push(p.caption.clone());
                out.refs.push(image.captions.clone());
            }
        }
    }
    let some = |ids: &[&ImageId]| {
        let shown: Vec<String> = ids.iter().take(5).map(|i| i.to_string()).collect();
        format!(
            "{}{}",
            shown.join(", "),
            if ids.len() > 5 { ", ..." } else { "" }
        )
    };
    if !missing.is_empty() {
        out.warnings.push(format!(
            "{} of {} images in {} have no result and are not scored (ids {})",
            missing.len(),
            refs.images.len(),
            refs.path.display(),
            some(&missing)
        ));
    }
    if !no_refs.is_empty() {
        out.warnings.push(format!(
            "{} results are for images without reference captions and are not scored (ids {})",
            no_refs.len(),
            some(&no_refs)
        ));
    }
    if outside > 0 {
        out.warnings.push(format!(
            "{outside} results are for images outside the split chosen and are not scored"
        ));
    }
    if preds.failed > 0 {
        out.warnings.push(format!(
            "{} error records in {} (images that were not captioned) are not scored",
            preds.failed,
            preds.path.display()
        ));
    }
    match out.ids.len() {
        0 => {
            return Err(Error::file(
                &preds.path,
                format!("no result matches an image of {} that has captions", refs.path.display()),
            ))
        }
        1 => out.warnings.push(
            "CIDEr of a single image is always 0: its document frequencies come from the scored images' references".into(),
        ),
        _ => {}
    }
    Ok(out)
}
