//! Object bytes, through object_store: the local filesystem under the data directory (default),
//! memory (tests), or S3-compatible storage.
//!
//! Every PUT writes a new key (`c/<contract>/<name>.<uuid>`); the metadata row names the current
//! one. So a crash between writing bytes and committing the row leaves at worst an unreferenced
//! file (removed by [`Store::sweep`] at start), never a row that points at other bytes.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::{path::Path as StorePath, ObjectStore, PutPayload};

use crate::error::Error;

#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Set for the local filesystem: where keys live, so writes can be fsynced.
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner)
    }
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

impl Store {
    /// `file` (or empty): `data_dir/objects`; `memory://`: in memory; `s3://bucket/prefix`:
    /// S3-compatible storage configured from the environment.
    pub fn open(spec: &str, data_dir: &std::path::Path) -> anyhow::Result<Store> {
        match spec {
            "" | "file" => {
                let root = data_dir.join("objects");
                std::fs::create_dir_all(&root)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
                Ok(Store {
                    inner: Arc::new(fs),
                    local_root: Some(root),
                })
            }
            "memory://" | "memory" => Ok(Store {
                inner: Arc::new(object_store::memory::InMemory::new()),
                local_root: None,
            }),
            s3 if s3.starts_with("s3://") => {
                let rest = &s3["s3://".len()..];
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                anyhow::ensure!(
                    !bucket.is_empty(),
                    "s3 store needs a bucket: s3://bucket/prefix"
                );
                // Credentials, region and endpoint come from the environment (AWS_ACCESS_KEY_ID,
                // AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT for S3-compatible servers,
                // AWS_ALLOW_HTTP=true for plain-HTTP endpoints).
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| anyhow::anyhow!("cannot configure S3 store {s3}: {e}"))?;
                let prefix = prefix.trim_matches('/');
                let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
                };
                Ok(Store {
                    inner,
                    local_root: None,
                })
            }
            other => anyhow::bail!(
                "unsupported store {other:?}: use `file`, `memory://` or `s3://bucket/prefix`"
            ),
        }
    }

    /// Bytes free for this process on the filesystem that holds local objects; `None` for other
    /// stores (their room is the operator's business). A statvfs call: cheap, but a syscall,
    /// so async callers make it from the blocking pool.
    pub fn available_bytes(&self) -> Option<u64> {
        let root = self.local_root.as_ref()?;
        let st = rustix::fs::statvfs(root).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// The directory keys live under when objects are on the local filesystem.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    pub fn new_key(contract_id: &str, name: &str) -> String {
        format!("c/{contract_id}/{name}.{}", uuid::Uuid::new_v4().simple())
    }

    /// Store `bytes` at `key`; durable when this returns.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), Error> {
        self.inner
            .put(&StorePath::from(key), PutPayload::from_bytes(bytes))
            .await
            .map_err(store_err)?;
        if let Some(root) = &self.local_root {
            // object_store renames a staged file into place but does not fsync; an answered
            // write must survive power loss, so sync the file and its directory.
            let path = root.join(key);
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(&path)?.sync_all()?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })
            .await
            .map_err(store_err)?
            .map_err(store_err)?;
        }
        Ok(())
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.inner
            .get_range(&StorePath::from(key), range)
            .await
            .map_err(store_err)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, Error> {
        let result = self
            .inner
            .get(&StorePath::from(key))
            .await
            .map_err(store_err)?;
        result.bytes().await.map_err(store_err)
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.inner.delete(&StorePath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Delete every stored key `keep` does not name (crash leftovers). Answers how many went.
    pub async fn sweep(&self, keep: &std::collections::HashSet<String>) -> Result<usize, Error> {
        if let Some(root) = self.local_root.clone() {
            // On disk, walk the files themselves: object_store's listing skips the staging files
            // (`<key>#<n>`) a write killed half-way leaves behind.
            let keep = keep.clone();
            return tokio::task::spawn_blocking(move || sweep_dir(&root, &root.join("c"), &keep))
                .await
                .map_err(store_err)?
                .map_err(store_err);
        }
        let listed: Vec<_> = self
            .inner
            .list(Some(&StorePath::from("c")))
            .try_collect()
            .await
            .map_err(store_err)?;
        let mut removed = 0;
        for meta in listed {
            if !keep.contains(meta.location.as_ref()) {
                self.delete(meta.location.as_ref()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Delete every file under `dir` whose key (path relative to `root`, `/`-separated) `keep` does
/// not name. Answers how many went.
fn sweep_dir(
    root: &std::path::Path,
    dir: &std::path::Path,
    keep: &std::collections::HashSet<String>,
) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            removed += sweep_dir(root, &path, keep)?;
            continue;
        }
        let key = path
            .strip_prefix(root)
            .map(|rel| {
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        if !keep.contains(&key) {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}
