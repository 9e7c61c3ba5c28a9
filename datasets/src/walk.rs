//! Finding images: files named on the command line, and folders walked recursively for
//! image files, streamed in a stable order.
//!
//! A folder's entries are sorted by name and visited depth-first (by walkdir), so two
//! walks of the same tree give the same sequence. Only one folder listing per level of
//! the current path is held in memory, never the whole list of files. Symbolic links
//! are followed; a folder already visited (by its canonical path) is not entered again,
//! which makes symlink loops and two links to one folder harmless. Hidden entries
//! (names starting with `.`) inside walked folders are left out.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Extensions of the files a folder walk yields, compared case-insensitively.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tiff", "tif"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// One image file found by [`ImageWalk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path to open: the argument, joined with the path inside it for a folder.
    pub path: PathBuf,
    /// The path relative to the folder argument it was found in; for a file named
    /// directly, the argument as given.
    pub relative: PathBuf,
}

/// A path that could not be listed or read, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WalkError {
    pub path: PathBuf,
    pub source: io::Error,
}

type Walk = Box<dyn Iterator<Item = walkdir::Result<walkdir::DirEntry>> + Send>;

/// Iterator over the image files of some paths: a file is yielded as it is (whatever
/// its extension), a folder is walked for files with an image extension.
pub struct ImageWalk {
    roots: std::vec::IntoIter<PathBuf>,
    /// The folder being walked, and the walk.
    current: Option<(PathBuf, Walk)>,
    /// Canonical paths of the folders entered so far, over all the roots.
    visited: Arc<Mutex<HashSet<PathBuf>>>,
}

impl ImageWalk {
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self {
            roots: paths
                .into_iter()
                .map(|p| p.as_ref().to_path_buf())
                .collect::<Vec<_>>()
                .into_iter(),
            current: None,
            visited: Arc::default(),
        }
    }

    /// walkdir's walk of `root`, following links, by name, hidden entries and folders
    /// entered before left out.
    fn walk(&self, root: &Path) -> Walk {
        let visited = self.visited.clone();
        let keep = move |e: &walkdir::DirEntry| {
            if e.depth() > 0 && e.file_name().as_encoded_bytes().starts_with(b".") {
                return false;
            }
            if !e.file_type().is_dir() {
                return true;
            }
            let folder = fs::canonicalize(e.path()).unwrap_or_else(|_| e.path().to_path_buf());
            let mut visited = visited.lock().unwrap_or_else(|p| p.into_inner());
            visited.insert(folder)
        };
        Box::new(
            walkdir::WalkDir::new(root)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(keep),
        )
    }
}

impl Iterator for ImageWalk {
    type Item = Result<Found, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((root, walk)) = &mut self.current else {
                let root = self.roots.next()?;
                match fs::metadata(&root) {
                    Ok(m) if m.is_dir() => self.current = Some((root.clone(), self.walk(&root))),
                    Ok(_) => {
                        return Some(Ok(Found {
                            relative: root.clone(),
                            path: root,
                        }))
                    }
                    Err(source) => return Some(Err(WalkError { path: root, source })),
                }
                continue;
            };
            let entry = match walk.next() {
                None => {
                    self.current = None;
                    continue;
                }
                Some(Ok(entry)) => entry,
                Some(Err(e)) => match walk_error(e, root) {
                    Some(e) => return Some(Err(e)),
                    None => continue,
                },
            };
            let path = entry.path();
            if entry.file_type().is_file() && has_image_extension(path) {
                let relative = path.strip_prefix(&*root).unwrap_or(path).to_path_buf();
                return Some(Ok(Found {
                    path: path.to_path_buf(),
                    relative,
                }));
            }
        }
    }
}

/// What a walk's error means to the user: a link back to a folder above it is no
/// error (it is not entered again); a dangling link or an unreadable entry matters
/// only where it looks like an image, or is a folder that cannot be listed.
fn walk_error(e: walkdir::Error, root: &Path) -> Option<WalkError> {
    if e.loop_ancestor().is_some() {
        return None;
    }
    let path = e.path().unwrap_or(root).to_path_buf();
    let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
    if !is_dir && !has_image_extension(&path) {
        return None;
    }
    let source = e
        .into_io_error()
        .unwrap_or_else(|| io::Error::other("cannot be walked"));
    Some(WalkError { path, source })
}
