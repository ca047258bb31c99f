//! Test support (feature `testing`): a region path of its own per test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A unique region path under `/dev/shm` (process id and a counter), with
/// the file removed on drop, so that tests running in parallel, in one
/// process or several, never share a region.
#[derive(Debug)]
pub struct TempRegion(PathBuf);

impl TempRegion {
    /// A fresh path; `tag` goes into the file name to tell tests apart.
    pub fn new(tag: &str) -> TempRegion {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempRegion(PathBuf::from(format!(
            "/dev/shm/scistream-{tag}-{}-{n}",
            std::process::id()
        )))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
