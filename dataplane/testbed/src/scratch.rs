//! Names, loopback ports and directories private to one test, so that tests
//! run in parallel threads and processes without colliding.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Counter behind [`unique`]: with the process id, it makes names unique.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// `TAG-<pid>-<n>`: a name no other call in any running test process gets.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free when this returned (bound, noted,
/// closed): for a server the test is about to start.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A fresh directory `<temp>/TAG-<pid>-<n>`, removed with its contents on
/// drop (also while unwinding from a failed assertion). Derefs to its path.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<temp>/TAG-<pid>-<n>` (unique among all calls of all
    /// running test processes); panics if it cannot.
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create scratch dir {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    /// Writes `contents` to `NAME` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    /// Removes the directory and everything in it (errors ignored).
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
