//! Reference captions: a COCO caption annotation file (`images[]` with `id` and
//! `file_name`, `annotations[]` with `image_id` and `caption`) or Karpathy's
//! `dataset_coco.json` (`images[]` with `filepath`/`filename`, `split` and
//! `sentences[].raw`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::coco::{CocoError, ImageIds};

/// An image id as the files write it, a number or a string, compared by its text:
/// `139` and `"139"` name the same image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

impl ImageId {
    /// `None` for anything but a number or a string.
    pub fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => Some(Self(n.to_string())),
            Value::String(s) => Some(Self(s.clone())),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything wrong with a file, each with where it is.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, entry: impl Into<String>, msg: impl Into<String>) {
        self.0.push((entry.into(), msg.into()));
    }

    fn into_error(self, path: &Path) -> CocoError {
        CocoError::Invalid {
            path: path.to_path_buf(),
            problems: self
                .0
                .into_iter()
                .map(|(e, m)| format!("{e}: {m}"))
                .collect(),
        }
    }
}

/// One image and its reference captions, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct RefImage {
    pub id: ImageId,
    /// The id as the file wrote it.
    pub id_json: Value,
    /// Relative to the image folder, `/`-separated.
    pub file_name: String,
    /// Karpathy's `split` (train, val, test, restval); `None` in COCO files.
    pub split: Option<String>,
    pub captions: Vec<String>,
}

/// The reference captions of a data set, by image.
#[derive(Debug, Clone)]
pub struct References {
    pub path: PathBuf,
    pub images: Vec<RefImage>,
    index: HashMap<ImageId, usize>,
    /// After [`References::split`]: the file's other images, by id and file name.
    outside: HashMap<ImageId, String>,
}

impl References {
    /// Reads a COCO caption annotation file or a Karpathy split file, told apart by
    /// their fields.
    pub fn load(path: &Path) -> Result<Self, CocoError> {
        let text = std::fs::read_to_string(path).map_err(|error| CocoError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|error| CocoError::Json {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_json(path, &json)
    }

    /// From a parsed file; `path` names it in errors. Every problem of the file is
    /// reported at once: entries that are not images or captions, duplicate ids, and
    /// captions for images the file does not list.
    pub fn from_json(path: &Path, json: &Value) -> Result<Self, CocoError> {
        let mut problems = Problems::default();
        let Some(images) = json.get("images").and_then(Value::as_array) else {
            problems.add(
                "the top level",
                "no `images` list: expected a COCO caption annotation file or Karpathy's dataset_coco.json",
            );
            return Err(problems.into_error(path));
        };
        let karpathy = json.get("annotations").is_none()
            && images.first().is_some_and(|i| i.get("sentences").is_some());
        let mut out = Self {
            path: path.to_path_buf(),
            images: Vec::with_capacity(images.len()),
            index: HashMap::with_capacity(images.len()),
            outside: HashMap::new(),
        };
        for (i, image) in images.iter().enumerate() {
            let parsed = if karpathy {
                karpathy_image(image)
            } else {
                coco_image(image)
            };
            match parsed {
                Err(msg) => problems.add(format!("images[{i}]"), msg),
                Ok(image) if out.index.contains_key(&image.id) => problems.add(
                    format!("images[{i}]"),
                    format!("image id {} appears twice", image.id),
                ),
                Ok(image) => {
                    out.index.insert(image.id.clone(), out.images.len());
                    out.images.push(image);
                }
            }
        }
        if !karpathy {
            match json.get("annotations").and_then(Value::as_array) {
                Some(anns) => out.add_annotations(anns, &mut problems),
                None => problems.add(
                    "the top level",
                    "no `annotations` list of {image_id, caption}",
                ),
            }
        }
        if problems.0.is_empty() {
            Ok(out)
        } else {
            Err(problems.into_error(path))
        }
    }

    fn add_annotations(&mut self, anns: &[Value], problems: &mut Problems) {
        let mut ann_ids = HashMap::with_capacity(anns.len());
        for (i, ann) in anns.iter().enumerate() {
            let entry = format!("annotations[{i}]");
            if let Some(ann_id) = ann.get("id").and_then(ImageId::from_json) {
                if let Some(first) = ann_ids.insert(ann_id.clone(), i) {
                    problems.add(
                        &entry,
                        format!(
                            "annotation id {ann_id} appears twice (first at annotations[{first}])"
                        ),
                    );
                }
            }
            let Some(id) = ann.get("image_id").and_then(ImageId::from_json) else {
                problems.add(&entry, "no image_id (a number or a string)");
                continue;
            };
            let Some(caption) = ann.get("caption").and_then(Value::as_str) else {
                problems.add(&entry, "no caption string");
                continue;
            };
            match self.index.get(&id) {
                Some(&at) => self.images[at].captions.push(caption.to_string()),
                None => problems.add(&entry, format!("image_id {id} is not in the `images` list")),
            }
        }
    }

    /// What would go wrong training on these images under `root`: empty captions,
    /// file names that leave the folder (absolute, or with `..`), which are refused,
    /// and missing image files. Each problem names its image.
    pub fn check_for_training(&self, root: &Path) -> Result<(), CocoError> {
        let mut problems = Problems::default();
        for image in &self.images {
            let entry = format!("image {} ({})", image.id, image.file_name);
            for (j, c) in image.captions.iter().enumerate() {
                if c.trim().is_empty() {
                    problems.add(&entry, format!("caption {} is empty", j + 1));
                }
            }
            let rel = Path::new(&image.file_name);
            let escapes = rel.is_absolute()
                || image.file_name.starts_with('/')
                || rel.components().any(|c| {
                    matches!(
                        c,
                        std::path::Component::ParentDir | std::path::Component::Prefix(_)
                    )
                });
            if image.file_name.is_empty() {
                problems.add(&entry, "no file_name");
            } else if escapes {
                problems.add(
                    &entry,
                    "file name leaves the image folder (absolute or with `..`): refused",
                );
            } else if !root.join(rel).is_file() {
                problems.add(&entry, format!("no such file under {}", root.display()));
            }
        }
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(problems.into_error(&self.path))
        }
    }

    pub fn get(&self, id: &ImageId) -> Option<&RefImage> {
        self.position(id).map(|i| &self.images[i])
    }

    /// Where the image is in [`References::images`].
    pub fn position(&self, id: &ImageId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Only the images of a Karpathy split (`train`, `val`, `test`, `restval`).
    pub fn split(self, name: &str) -> Result<Self, CocoError> {
        self.splits(&[name])
    }

    /// Only the images of these Karpathy splits (BLIP trains on `train` and `restval`).
    pub fn splits(self, names: &[&str]) -> Result<Self, CocoError> {
        let bad = |msg: String| CocoError::Entry {
            path: self.path.clone(),
            entry: "the top level".into(),
            msg,
        };
        let wanted = names.join(" or ");
        if self.images.iter().all(|i| i.split.is_none()) {
            return Err(bad(format!(
                "has no `split` fields, so it has no split {wanted} (Karpathy's dataset_coco.json has them)"
            )));
        }
        let (images, others): (Vec<RefImage>, Vec<RefImage>) = self
            .images
            .iter()
            .cloned()
            .partition(|i| i.split.as_deref().is_some_and(|s| names.contains(&s)));
        if images.is_empty() {
            let mut splits: Vec<&str> = self
                .images
                .iter()
                .filter_map(|i| i.split.as_deref())
                .collect();
            splits.sort_unstable();
            splits.dedup();
            return Err(bad(format!(
                "no image is in split {wanted}; its splits are {}",
                splits.join(", ")
            )));
        }
        Ok(self.keep(images, others))
    }

    /// Splits off `fraction` of the images (at least one, chosen by `seed`) as a
    /// held-out set: `(rest, held_out)`, each in file order.
    pub fn hold_out(self, fraction: f64, seed: u64) -> (Self, Self) {
        let n = self.images.len();
        let k = ((n as f64 * fraction.clamp(0.0, 1.0)).round() as usize).clamp(1, n.max(1));
        let mut order: Vec<usize> = (0..n).collect();
        crate::Rng::new(seed).shuffle(&mut order);
        let mut held = vec![false; n];
        order.iter().take(k).for_each(|&i| held[i] = true);
        let (out, rest): (Vec<_>, Vec<_>) = self
            .images
            .iter()
            .cloned()
            .zip(&held)
            .partition(|(_, &h)| h);
        let out: Vec<RefImage> = out.into_iter().map(|(i, _)| i).collect();
        let rest: Vec<RefImage> = rest.into_iter().map(|(i, _)| i).collect();
        (
            self.clone().keep(rest.clone(), out.clone()),
            self.keep(out, rest),
        )
    }

    /// These images, the others remembered as outside.
    fn keep(self, images: Vec<RefImage>, others: Vec<RefImage>) -> Self {
        let index = images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.id.clone(), i))
            .collect();
        let mut outside = self.outside;
        outside.extend(others.into_iter().map(|i| (i.id, i.file_name)));
        Self {
            path: self.path,
            images,
            index,
            outside,
        }
    }

    /// Keeps the images that have captions in `captions` and gives them those captions
    /// instead (distillation: training on another model's captions); returns how many
    /// images are kept.
    pub fn replace_captions(&mut self, captions: &HashMap<ImageId, Vec<String>>) -> usize {
        let images = std::mem::take(&mut self.images);
        let (kept, dropped): (Vec<RefImage>, Vec<RefImage>) = images
            .into_iter()
            .map(|mut i| {
                i.captions = captions.get(&i.id).cloned().unwrap_or_default();
                i
            })
            .partition(|i| !i.captions.is_empty());
        let n = kept.len();
        let path = self.path.clone();
        let outside = std::mem::take(&mut self.outside);
        *self = Self {
            path,
            images: Vec::new(),
            index: HashMap::new(),
            outside,
        }
        .keep(kept, dropped);
        n
    }

    /// Whether the file has this image, but outside the split chosen.
    pub fn is_outside(&self, id: &ImageId) -> bool {
        self.outside.contains_key(id)
    }

    /// The images' positions in [`References::images`] (`None` for the file's images
    /// outside the split chosen), found by file name.
    pub fn by_file(&self) -> ImageIds<Option<usize>> {
        let inside = self
            .images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.file_name.clone(), Some(i)));
        let outside = self.outside.values().map(|f| (f.clone(), None));
        ImageIds::new(inside.chain(outside))
    }
}

fn coco_image(image: &Value) -> Result<RefImage, String> {
    let id_json = image
        .get("id")
        .filter(|v| ImageId::from_json(v).is_some())
        .ok_or("no id (a number or a string)")?;
    Ok(RefImage {
        id: ImageId::from_json(id_json).expect("checked"),
        id_json: id_json.clone(),
        file_name: image
            .get("file_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\\', "/"),
        split: None,
        captions: Vec::new(),
    })
}

/// Karpathy's entries: the COCO id is `cocoid` (Flickr files have only `imgid`).
fn karpathy_image(image: &Value) -> Result<RefImage, String> {
    let id_json = ["cocoid", "imgid", "id"]
        .iter()
        .find_map(|k| image.get(*k).filter(|v| ImageId::from_json(v).is_some()))
        .ok_or("no cocoid or imgid")?;
    let filename = image
        .get("filename")
        .and_then(Value::as_str)
        .ok_or("no filename")?;
    let file_name = match image.get("filepath").and_then(Value::as_str) {
        Some(dir) if !dir.is_empty() => format!("{dir}/{filename}"),
        _ => filename.to_string(),
    };
    let sentences = image
        .get("sentences")
        .and_then(Value::as_array)
        .ok_or("no sentences list")?;
    let captions = sentences
        .iter()
        .enumerate()
        .map(|(j, s)| {
            s.get("raw")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("sentences[{j}] has no raw string"))
        })
        .collect::<Result<_, _>>()?;
    Ok(RefImage {
        id: ImageId::from_json(id_json).expect("checked"),
        id_json: id_json.clone(),
        file_name: file_name.replace('\\', "/"),
        split: image
            .get("split")
            .and_then(Value::as_str)
            .map(str::to_string),
        captions,
    })
}
