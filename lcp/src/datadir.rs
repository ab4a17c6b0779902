//! One server per data directory: a second `serve` on the same directory would run a second
//! ledger writer on the same database (duplicate sequence numbers, refused transfers). The lock
//! is an exclusive OS file lock on `DIR/<name>.lock`, released when the process exits, kill -9
//! included, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Held for as long as the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path, name: &str) -> anyhow::Result<DirLock> {
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "another {name} is already running on {} (stop it first, or use another --data directory)",
            dir.display()
        ),
        Err(TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = super::lock(dir.path(), "issuer").expect("first lock");
        let err = super::lock(dir.path(), "issuer").expect_err("second lock");
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        super::lock(dir.path(), "issuer").expect("free again once released");
    }
}
