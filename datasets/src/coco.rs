//! COCO-style annotation files: the `images` list, which names each image's file and id,
//! and finding an image's entry by its path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    // The causes are part of the messages, not `source`s, so that they print once.
    #[error("{}: cannot read: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a COCO annotation file (expected an `images` list of {{id, file_name}}): {error}", path.display())]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: {}", path.display(), list_problems(problems))]
    Invalid {
        path: PathBuf,
        /// Each `entry: what is wrong`.
        problems: Vec<String>,
    },
    #[error("{}: {entry}: {msg}", path.display())]
    Entry {
        path: PathBuf,
        /// Where in the file, e.g. `annotations[12]`.
        entry: String,
        msg: String,
    },
}

/// One problem on the line, or a count and then one per line (the first 50).
fn list_problems(problems: &[String]) -> String {
    const SHOWN: usize = 50;
    match problems {
        [one] => one.clone(),
        _ => {
            let mut out = format!("{} problems:", problems.len());
            for p in problems.iter().take(SHOWN) {
                out += &format!("\n  {p}");
            }
            if problems.len() > SHOWN {
                out += &format!("\n  ... and {} more", problems.len() - SHOWN);
            }
            out
        }
    }
}

#[derive(Deserialize)]
struct Annotations {
    images: Vec<ImageEntry>,
}

#[derive(Deserialize)]
struct ImageEntry {
    id: serde_json::Value,
    file_name: String,
}

/// Where an image's id could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no image in the annotations has file_name {relative:?} or {name:?}")]
    Unknown { relative: String, name: String },
    #[error("file name {0:?} matches several images in the annotations; name it by its path relative to the folder")]
    Ambiguous(String),
}

/// The ids of a COCO annotation file's images (or anything else `Id` says about them),
/// found by `file_name`.
#[derive(Debug, Clone)]
pub struct ImageIds<Id = serde_json::Value> {
    by_path: HashMap<String, Id>,
    /// By the last component of `file_name`; `None` when several images share it.
    by_name: HashMap<String, Option<Id>>,
}

impl<Id> Default for ImageIds<Id> {
    fn default() -> Self {
        Self {
            by_path: HashMap::new(),
            by_name: HashMap::new(),
        }
    }
}

impl ImageIds {
    /// Reads the `images` list of a COCO annotation file (`id` kept as written: number
    /// or string).
    pub fn load(path: &Path) -> Result<Self, CocoError> {
        let text = std::fs::read_to_string(path).map_err(|error| CocoError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let ann: Annotations = serde_json::from_str(&text).map_err(|error| CocoError::Json {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(Self::new(
            ann.images.into_iter().map(|i| (i.file_name, i.id)),
        ))
    }
}

impl<Id: Clone> ImageIds<Id> {
    /// From `(file_name, id)` pairs.
    pub fn new(images: impl IntoIterator<Item = (String, Id)>) -> Self {
        let mut ids = Self::default();
        for (file_name, id) in images {
            let file_name = file_name.replace('\\', "/");
            let name = file_name.rsplit('/').next().unwrap_or_default().to_string();
            ids.by_name
                .entry(name)
                .and_modify(|e| *e = None)
                .or_insert_with(|| Some(id.clone()));
            ids.by_path.insert(file_name, id);
        }
        ids
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The id of the image whose `file_name` is `path` (with `/` separators) or the
    /// longest tail of it (so `/data/coco/val2014/x.jpg` finds `val2014/x.jpg`), or else
    /// whose `file_name` ends in the same file name.
    pub fn lookup(&self, path: &Path) -> Result<&Id, LookupError> {
        let parts: Vec<_> = path
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .map(|c| c.as_os_str().to_string_lossy())
            .collect();
        for start in 0..parts.len() {
            if let Some(id) = self.by_path.get(&parts[start..].join("/")) {
                return Ok(id);
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.by_name.get(&name) {
            Some(Some(id)) => Ok(id),
            Some(None) => Err(LookupError::Ambiguous(name)),
            None => Err(LookupError::Unknown {
                relative: parts.join("/"),
                name,
            }),
        }
    }
}
