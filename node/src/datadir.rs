//! One server per data directory: a second `serve` on the same directory would run a second
//! ledger writer on the same database (duplicate sequence numbers, refused transfers). The lock
//! is an exclusive OS file lock on `DIR/<name>.lock`, released when the process exits, kill -9
//! included, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
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
        Ok(()) => {
            // The holder's pid, for the message a second start gets (best effort: the lock,
            // not this text, is what keeps a second process out).
            let mut f = &file;
            let _ = f.set_len(0);
            let _ = f.write_all(std::process::id().to_string().as_bytes());
            Ok(DirLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let pid = holder_pid(dir, name)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            anyhow::bail!(
                "another {name} is already running on {}{pid} (stop it first, or use another --data directory)",
                dir.display()
            )
        }
        Err(TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    }
}

/// The pid recorded by the process that holds (or last held) `dir`'s lock `name`.
pub fn holder_pid(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("{name}.lock")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = super::lock(dir.path(), "issuer").expect("first lock");
        let err = super::lock(dir.path(), "issuer").expect_err("second lock");
        assert!(err.to_string().contains("already running"), "{err}");
        let pid = format!("(pid {})", std::process::id());
        assert!(err.to_string().contains(&pid), "{err} names {pid}");
        drop(first);
        super::lock(dir.path(), "issuer").expect("free again once released");
    }
}
