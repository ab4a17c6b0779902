//! What a peer can sell: the files of its shared directory and the copies it bought while
//! concealing its sources (`DIR/copies/<sha256>`), each named by the SHA-256 of its bytes.
//!
//! The shared directory is hashed once at start (off the async workers); a document is served
//! as it is on disk then, unchecked, so a file changed since is caught by its buyer, who
//! checks every byte against the name (seed 001's fake delivery), and contested.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Files larger than this are not shared (a peer serves no more in one answer).
pub const DOCUMENT_BYTES_MAX: u64 = clients::peer::DOCUMENT_BYTES_MAX as u64;
/// Files in the shared directory indexed at most.
pub const SHARED_FILES_MAX: usize = 100_000;

#[derive(Default)]
pub struct Documents {
    by_name: RwLock<HashMap<String, PathBuf>>,
    copies_dir: PathBuf,
}

/// The SHA-256 of a file, read in pieces.
fn hash_file(path: &Path) -> std::io::Result<String> {
    use ring::digest::{Context, SHA256};
    let mut file = std::fs::File::open(path)?;
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

impl Documents {
    /// Index `share` (its regular files, not below) and the copies under `data_dir`.
    /// Blocking: call it off the async workers.
    pub fn open(share: Option<&Path>, data_dir: &Path) -> std::io::Result<Documents> {
        let copies_dir = data_dir.join("copies");
        std::fs::create_dir_all(&copies_dir)?;
        let mut by_name = HashMap::new();
        for dir in share
            .into_iter()
            .chain(std::iter::once(copies_dir.as_path()))
        {
            for entry in std::fs::read_dir(dir)?.take(SHARED_FILES_MAX) {
                let path = entry?.path();
                // One unreadable file (a broken link, no permission) is skipped, not fatal.
                let hashed = std::fs::metadata(&path).and_then(|meta| {
                    if !meta.is_file() || meta.len() > DOCUMENT_BYTES_MAX {
                        return Ok(None);
                    }
                    hash_file(&path).map(Some)
                });
                match hashed {
                    Ok(Some(name)) => {
                        by_name.insert(name, path);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "not shared"),
                }
            }
        }
        Ok(Documents {
            by_name: RwLock::new(by_name),
            copies_dir,
        })
    }

    pub fn has(&self, document: &str) -> bool {
        self.read().contains_key(document)
    }

    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// The names of the copies this peer keeps (bought while concealing).
    pub fn copies(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, p)| p.starts_with(&self.copies_dir))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The document's bytes as they are on disk now, or `None` when it is gone. Blocking.
    pub fn read_bytes(&self, document: &str) -> Option<Vec<u8>> {
        let path = self.read().get(document).cloned()?;
        std::fs::read(path).ok()
    }

    /// Keep a copy bought from another peer (its bytes checked by the caller) and sell it.
    /// Blocking.
    pub fn keep_copy(&self, document: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.copies_dir.join(document);
        node::client::write_durably(&path, bytes)?;
        self.by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(document.to_owned(), path);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PathBuf>> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
