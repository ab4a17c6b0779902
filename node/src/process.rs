//! Running a service binary as a child process: start it, wait for the `listening on URL` line
//! every server prints (DESIGN section 9), and kill it when the guard is dropped. Used by
//! `lcp demo`, the tests that need a real process (kill -9), and later the devnet.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn `cmd` with stdout piped and answer the URL from its `listening on` line, waiting at
/// most `wait_ms_max`. The rest of its stdout is drained in the background.
pub fn spawn_server(mut cmd: Command, wait_ms_max: u64) -> anyhow::Result<(ChildGuard, String)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {program}: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("{program} has no stdout"))?;
    let guard = ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_millis(wait_ms_max))
        .map_err(|_| {
            anyhow::anyhow!("{program} did not print its address within {wait_ms_max} ms")
        })?;
    Ok((guard, url))
}
