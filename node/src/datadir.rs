//! One server per data directory: a second `serve` on the same directory would run a second
//! ledger writer on the same database (duplicate sequence numbers, refused transfers). The lock
//! is an exclusive OS file lock on `DIR/<name>.lock`, released when the process exits, kill -9
//! included, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held for as long as the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path, name: &str) -> anyhow::Result<DirLock> {
    lock_for(
        dir,
        name,
        0,
        " (stop it first, or use another --data directory)",
    )
}

/// How often [`lock_waiting`] tries the lock again while another process holds it.
pub const LOCK_POLL_MS: u64 = 5;

/// [`lock`], but while another process holds the lock, try again every [`LOCK_POLL_MS`] for
/// up to `wait_ms_max` before giving up. For locks held for moments (a record chain appended
/// by a CLI or a gateway), where a caller that comes at the wrong moment should wait its turn
/// rather than fail. Blocks the calling thread.
pub fn lock_waiting(dir: &Path, name: &str, wait_ms_max: u64) -> anyhow::Result<DirLock> {
    lock_for(dir, name, wait_ms_max, "")
}

/// [`lock_waiting`], with `hint` closing the message when the lock stays taken.
fn lock_for(dir: &Path, name: &str, wait_ms_max: u64, hint: &str) -> anyhow::Result<DirLock> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
            }
            Err(TryLockError::WouldBlock) => {
                let pid = holder_pid(dir, name)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default();
                let waited = if wait_ms_max > 0 {
                    format!(" after waiting {wait_ms_max} ms")
                } else {
                    String::new()
                };
                anyhow::bail!(
                    "another {name} is already running on {}{pid}{waited}{hint}",
                    dir.display()
                )
            }
            Err(TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
    }
    // The holder's pid, for the message a second start gets (best effort: the lock, not this
    // text, is what keeps a second process out).
    let mut f = &file;
    let _ = f.set_len(0);
    let _ = f.write_all(std::process::id().to_string().as_bytes());
    Ok(DirLock { _file: file })
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

    #[test]
    fn a_waiting_lock_gets_its_turn_or_says_how_long_it_waited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = super::lock(dir.path(), "records").expect("first lock");
        let err = super::lock_waiting(dir.path(), "records", 30).expect_err("held throughout");
        assert!(err.to_string().contains("after waiting 30 ms"), "{err}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(first);
        });
        super::lock_waiting(dir.path(), "records", 10_000).expect("the holder let go");
        release.join().expect("thread");
    }
}
