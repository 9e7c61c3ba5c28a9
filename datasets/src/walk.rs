//! Finding images: files named on the command line, and folders walked recursively for
//! image files, streamed in a stable order.
//!
//! A folder's entries are sorted by name and visited depth-first, so two walks of the
//! same tree give the same sequence. Only one folder listing per level of the current
//! path is held in memory, never the whole list of files. Symbolic links are followed;
//! a folder already visited (by its canonical path) is not entered again, which makes
//! symlink loops and two links to one folder harmless. Hidden entries (names starting
//! with `.`) inside walked folders are left out.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

struct Frame {
    dir: PathBuf,
    relative: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

/// Iterator over the image files of some paths: a file is yielded as it is (whatever
/// its extension), a folder is walked for files with an image extension.
pub struct ImageWalk {
    roots: std::vec::IntoIter<PathBuf>,
    stack: Vec<Frame>,
    /// Canonical paths of the folders entered so far.
    visited: HashSet<PathBuf>,
}

impl ImageWalk {
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self {
            roots: paths
                .into_iter()
                .map(|p| p.as_ref().to_path_buf())
                .collect::<Vec<_>>()
                .into_iter(),
            stack: Vec::new(),
            visited: HashSet::new(),
        }
    }

    /// Pushes `dir`'s sorted listing, unless the folder was entered before.
    fn enter(&mut self, dir: PathBuf, relative: PathBuf) -> Result<(), WalkError> {
        let err = |source| WalkError {
            path: dir.clone(),
            source,
        };
        let canonical = fs::canonicalize(&dir).map_err(err)?;
        if !self.visited.insert(canonical) {
            return Ok(());
        }
        let mut names = fs::read_dir(&dir)
            .map_err(err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(err)?;
        names.sort_unstable();
        self.stack.push(Frame {
            dir,
            relative,
            names: names.into_iter(),
        });
        Ok(())
    }
}

impl Iterator for ImageWalk {
    type Item = Result<Found, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                let root = self.roots.next()?;
                match fs::metadata(&root) {
                    Ok(m) if m.is_dir() => {
                        if let Err(e) = self.enter(root, PathBuf::new()) {
                            return Some(Err(e));
                        }
                        continue;
                    }
                    Ok(_) => {
                        return Some(Ok(Found {
                            relative: root.clone(),
                            path: root,
                        }))
                    }
                    Err(source) => return Some(Err(WalkError { path: root, source })),
                }
            };
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = frame.dir.join(&name);
            let relative = frame.relative.join(&name);
            // Follows symbolic links.
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    if let Err(e) = self.enter(path, relative) {
                        return Some(Err(e));
                    }
                }
                Ok(m) if m.is_file() && has_image_extension(&path) => {
                    return Some(Ok(Found { path, relative }))
                }
                Ok(_) => {}
                // A dangling link or an unreadable entry matters only if it looks like an image.
                Err(source) if has_image_extension(&path) => {
                    return Some(Err(WalkError { path, source }))
                }
                Err(_) => {}
            }
        }
    }
}
