//! What a snapshot records: every file, directory and symlink under the backed-up paths, with
//! its mode and modification time, and each file's chunks in order. Hard links to one file
//! are recorded as links to its first path.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    /// Path relative to the snapshot root, `/`-separated; the first component is the name of
    /// the backed-up path.
    pub path: String,
    pub kind: Kind,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A file that is a hard link to an earlier file of the snapshot (this path): it has that
    /// file's chunks, and a restore that restores that file links to it (like restic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// RFC 3339.
    pub time: String,
    pub unix_s: i64,
    /// Milliseconds, to order snapshots taken within one second.
    #[serde(default)]
    pub unix_ms: u64,
    pub hostname: String,
    pub paths: Vec<String>,
    pub nodes: Vec<Node>,
    pub files: u64,
    pub bytes: u64,
    /// Bytes of packs uploaded by this backup (after dedup, compression and encryption,
    /// before erasure coding).
    pub data_added: u64,
}
