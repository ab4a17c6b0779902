//! The commands: `init` (commands/init.rs), `create` (commands/create.rs), `snapshots`, `ls`,
//! `restore` (commands/restore.rs). The CLI (`main.rs`, `run.rs`) only parses arguments and
//! prints.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::chunker::Chunker;
use crate::crypto::{KeyFile, Keys};
use crate::erasure;
use crate::error::{remote, Error};
use crate::filter::PathFilter;
use crate::pack::{self, Location, PackBuilder, PACK_BYTES_TARGET};
use crate::progress::Progress;
use crate::repo::{self, Repo, RepoConfig, Slot};
use crate::tree::{Kind, Node, Snapshot};

mod create;
mod init;
mod restore;

pub use create::*;
pub use init::*;
pub use restore::*;

/// FastCDC sizes: about 1 MiB chunks.
pub const CHUNK_MIN: u32 = 256 << 10;
pub const CHUNK_AVG: u32 = 1 << 20;
pub const CHUNK_MAX: u32 = 4 << 20;

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

use node::now_s;

/// The snapshot `which` names: an id, an id prefix, or `latest`.
pub async fn find_snapshot(repo: &Repo, which: &str) -> Result<Snapshot, Error> {
    if which.is_empty() {
        return Err(Error::Usage(
            "which snapshot? give an id (or its first characters) or `latest`".into(),
        ));
    }
    let all = repo.snapshots().await?;
    let found = if which == "latest" {
        all.into_iter().last()
    } else {
        let mut matching: Vec<Snapshot> = all
            .into_iter()
            .filter(|s| s.id.starts_with(which))
            .collect();
        if matching.len() > 1 {
            return Err(Error::Usage(format!(
                "snapshot prefix {which} is ambiguous"
            )));
        }
        matching.pop()
    };
    found.ok_or_else(|| Error::Usage(format!("no snapshot {which}")))
}
