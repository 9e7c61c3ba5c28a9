//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A fresh, empty temporary folder for one test, removed when the test passes.
pub struct Tmp(PathBuf);

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Tmp {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `name` must be unique within its test binary.
pub fn tmp(name: &str) -> Tmp {
    let dir = std::env::temp_dir().join(format!("captioner-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Tmp(dir)
}
