//! A devnet's services: how each is started (its program, arguments and log), stopped,
//! killed and started again on the same port, and the small helpers the devnet's modules
//! share to make one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::process::ChildGuard;

use crate::{netns, ServiceInfo, START_WAIT_MS_MAX, STOP_WAIT_MS_MAX};

/// A running (or stopped) service: how to start it again and what it is.
pub struct Service {
    pub name: String,
    pub url: String,
    pub entity: String,
    pub data: PathBuf,
    /// Its network namespace (`--netns`), where it runs and can be cut off or slowed.
    pub netns: Option<String>,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) child: Option<ChildGuard>,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn info(&self) -> ServiceInfo {
        ServiceInfo {
            url: self.url.clone(),
            entity: self.entity.clone(),
            pid: self.pid().unwrap_or(0),
            data: self.data.clone(),
            netns: self.netns.clone(),
            address: self.netns.as_ref().and_then(|_| {
                let host = self.url.split("://").nth(1)?.split('/').next()?;
                Some(host.rsplit_once(':').map_or(host, |(h, _)| h).to_string())
            }),
        }
    }

    /// Start the process; its stderr goes to `logs/<name>.log` under the devnet directory.
    pub(crate) fn start(&mut self, log_dir: &Path) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(log_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", self.name)))?;
        let mut cmd = match &self.netns {
            Some(ns) => netns::command_in(ns, &self.program),
            None => Command::new(&self.program),
        };
        cmd.args(&self.args).stderr(Stdio::from(log)).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let (guard, url) =
            node::process::spawn_server(cmd, START_WAIT_MS_MAX).with_context(|| {
                format!(
                    "{} did not start (see {}/{}.log)",
                    self.name,
                    log_dir.display(),
                    self.name
                )
            })?;
        self.url = url;
        self.child = Some(guard);
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_WAIT_MS_MAX`].
    pub(crate) fn stop(&mut self) {
        let Some(mut guard) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &guard.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS_MAX);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = guard.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(guard); // SIGKILL and reap
    }

    /// If the process has exited on its own, reap it (no zombie is left) and say how it ended.
    pub(crate) fn reap_if_exited(&mut self) -> Option<String> {
        let guard = self.child.as_mut()?;
        let pid = guard.0.id();
        let status = guard.0.try_wait().ok()??;
        // Reaped by try_wait; the guard's kill and wait on drop are harmless now.
        self.child = None;
        Some(format!("{} (pid {pid}) exited: {status}", self.name))
    }

    /// SIGKILL now, as a crash would.
    pub(crate) fn kill(&mut self) {
        drop(self.child.take());
    }
}

/// The port of a recorded URL, to listen on again.
pub(crate) fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// Where a service listens: its host's address (loopback, or its namespace's), on the port
/// it had (a new one on loopback, [`netns::PORT`] in a namespace of its own).
pub(crate) fn listen_for(host: Option<&netns::Host>, previous: Option<&ServiceInfo>) -> String {
    let port = previous.and_then(|p| port_of(&p.url));
    match host {
        Some(h) => format!("{}:{}", h.address, port.unwrap_or(netns::PORT)),
        None => format!("127.0.0.1:{}", port.unwrap_or(0)),
    }
}

pub(crate) fn bin(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the services first (cargo build --release --workspace --bins), \
             or set DEVNET_BIN_DIR",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn entity_of_key(path: &Path) -> anyhow::Result<String> {
    Ok(node::keyfile::load_or_create(path)?.entity().to_string())
}

pub(crate) fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// After the first start on port 0, listen on the port it got from now on (on the same
/// address).
pub(crate) fn pin_port(s: &mut Service) {
    if let Some(port) = port_of(&s.url) {
        if let Some(i) = s.args.iter().position(|a| a == "--listen") {
            let host = s.args[i + 1]
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h)
                .to_string();
            s.args[i + 1] = format!("{host}:{port}");
        }
    }
}
