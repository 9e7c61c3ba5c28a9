//! WebDataset tar shards read as the webdataset library reads them: regular members
//! only, `__…__` metadata members skipped, and adjacent members that share a key (the
//! path up to the first dot of the file name) grouped into one sample, each file under
//! its lower-cased suffix. One sample is held at a time, so memory does not grow with
//! the shard.

use std::io::Read;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShardReadError {
    /// The tar stream itself is unreadable from here on (truncated, not a tar).
    #[error("reading the tar stream: {0}")]
    Tar(#[from] std::io::Error),
    /// A Parquet file's metadata or data is unreadable, or it has no image column.
    #[error("reading the Parquet file: {0}")]
    Parquet(String),
}

/// One sample: its key, and its files in the order of the shard, each under its suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub key: String,
    pub files: Vec<(String, Vec<u8>)>,
    /// A member whose suffix the sample already had (webdataset stops the shard there;
    /// here the sample carries it as its error).
    pub duplicate: Option<String>,
}

impl Sample {
    /// The first of `suffixes` (in that order of preference) the sample has, with its
    /// bytes.
    pub fn pick<'a>(&'a self, suffixes: &[String]) -> Option<(&'a str, &'a [u8])> {
        self.position(suffixes)
            .map(|i| (self.files[i].0.as_str(), self.files[i].1.as_slice()))
    }

    /// [`Sample::pick`]'s file, taken out of the sample (no copy of its bytes).
    pub fn take(&mut self, suffixes: &[String]) -> Option<(String, Vec<u8>)> {
        self.position(suffixes).map(|i| self.files.swap_remove(i))
    }

    fn position(&self, suffixes: &[String]) -> Option<usize> {
        suffixes
            .iter()
            .find_map(|want| self.files.iter().position(|(s, _)| s == want))
    }
}

/// `(key, suffix)` of a member name, as webdataset's `^((?:.*/|)[^.]+)[.]([^/]*)$`
/// splits it, or `None` where that does not match (no dot in the file name).
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let base_at = name.rfind('/').map_or(0, |i| i + 1);
    let base = &name[base_at..];
    match base.find('.') {
        Some(0) => {
            // A hidden file's name has no key of its own; the pattern then takes the
            // folder's last component as the key's tail, if that has no dot.
            let dir = &name[..base_at];
            let parent = dir.trim_end_matches('/');
            let parent = &parent[parent.rfind('/').map_or(0, |i| i + 1)..];
            (!dir.is_empty() && !parent.contains('.')).then(|| (dir, &base[1..]))
        }
        Some(dot) => Some((&name[..base_at + dot], &base[dot + 1..])),
        None => None,
    }
}

/// Whether webdataset skips this member as metadata (`__…__` at the top level, or a
/// `__…__/` folder).
fn is_metadata(name: &str) -> bool {
    let top = name.split('/').next().unwrap_or("");
    top.len() >= 4 && top.starts_with("__") && top.ends_with("__")
}

/// Calls `each` with every sample of the tar stream `reader`, in order. A sample
/// begins where the key changes, so a key whose members are not adjacent gives two
/// samples, as it does in webdataset. `each` may stop the walk with its own error.
pub fn for_each_sample<R: Read, E: From<ShardReadError>>(
    reader: R,
    mut each: impl FnMut(Sample) -> Result<(), E>,
) -> Result<(), E> {
    let mut archive = tar::Archive::new(reader);
    let mut current: Option<Sample> = None;
    for entry in archive.entries().map_err(ShardReadError::from)? {
        let mut entry = entry.map_err(ShardReadError::from)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if is_metadata(&name) {
            continue;
        }
        let Some((key, suffix)) = split_name(&name) else {
            continue;
        };
        let suffix = suffix.to_lowercase();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(ShardReadError::from)?;
        match &mut current {
            Some(s) if s.key == key => {
                if s.files.iter().any(|(x, _)| *x == suffix) {
                    s.duplicate.get_or_insert(name);
                } else {
                    s.files.push((suffix, bytes));
                }
            }
            _ => {
                if let Some(done) = current.take() {
                    each(done)?;
                }
                current = Some(Sample {
                    key: key.to_string(),
                    files: vec![(suffix, bytes)],
                    duplicate: None,
                });
            }
        }
    }
    match current {
        Some(done) => each(done),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_webdataset_splits_them() {
        assert_eq!(split_name("a/b/000123.jpg"), Some(("a/b/000123", "jpg")));
        assert_eq!(split_name("x.seg.PNG"), Some(("x", "seg.PNG")));
        assert_eq!(split_name("a.b/c.jpg"), Some(("a.b/c", "jpg")));
        assert_eq!(split_name("dir/.hidden.jpg"), Some(("dir/", "hidden.jpg")));
        assert_eq!(split_name("d.x/.hidden.jpg"), None);
        assert_eq!(split_name(".hidden.jpg"), None);
        assert_eq!(split_name("noext"), None);
        assert_eq!(split_name("a.b/noext"), None);
        assert!(is_metadata("__key__") && is_metadata("__meta__/x.json"));
        assert!(!is_metadata("a/__key__") && !is_metadata("__x.jpg"));
    }
}
