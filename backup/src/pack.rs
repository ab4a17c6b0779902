//! Packs: sealed blobs (zstd-compressed, encrypted chunks) gathered into one object of about
//! [`PACK_BYTES_TARGET`], so a repository of many small files still makes few, large shards.

use serde::{Deserialize, Serialize};

use crate::crypto::Keys;
use crate::error::Error;

/// A pack is closed once it holds this much.
pub const PACK_BYTES_TARGET: usize = 16 << 20;
/// zstd level: fast, and most of the gain.
pub const ZSTD_LEVEL: i32 = 3;

/// Where a chunk's sealed blob lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Location {
    pub pack: String,
    pub offset: u64,
    pub length: u64,
}

/// Compresses and seals chunks with one zstd context for all of them: a context is costly to
/// set up (its tables are allocated and cleared), and a backup seals thousands of chunks.
pub struct Sealer {
    zstd: zstd::bulk::Compressor<'static>,
}

impl Sealer {
    pub fn new() -> Result<Sealer, Error> {
        Ok(Sealer {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .map_err(|e| Error::Io(format!("zstd: {e}")))?,
        })
    }

    pub fn seal(&mut self, keys: &Keys, chunk: &[u8]) -> Result<Vec<u8>, Error> {
        let compressed = self
            .zstd
            .compress(chunk)
            .map_err(|e| Error::Io(format!("zstd: {e}")))?;
        keys.seal(&compressed)
    }
}

/// Room for a pack: it closes at the first blob that takes it to [`PACK_BYTES_TARGET`], and
/// a blob is at most a sealed 4 MiB chunk (zstd's bound, nonce and tag included).
pub const PACK_BYTES_MAX: usize = PACK_BYTES_TARGET + (4 << 20) + (64 << 10);

/// Opens many chunks one after another into one reused buffer (a restore): no allocation
/// of a chunk-sized output per chunk.
pub struct ChunkOpener {
    zstd: zstd::bulk::Decompressor<'static>,
    plain: Vec<u8>,
}

impl std::fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkOpener(..)")
    }
}

impl ChunkOpener {
    /// For chunks of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Result<ChunkOpener, Error> {
        Ok(ChunkOpener {
            zstd: zstd::bulk::Decompressor::new().map_err(|e| Error::Io(format!("zstd: {e}")))?,
            plain: Vec::with_capacity(max_len),
        })
    }

    /// Open then decompress one blob (a chunk of at most `max_len` bytes, else an error),
    /// into the reused buffer.
    pub fn open(&mut self, keys: &Keys, blob: &[u8]) -> Result<&[u8], Error> {
        let compressed = keys.open(blob)?;
        self.plain.clear();
        self.zstd
            .decompress_to_buffer(&compressed, &mut self.plain)
            .map_err(|e| Error::Corrupt(format!("zstd: {e}")))?;
        Ok(&self.plain)
    }
}

#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<(String, u64, u64)>,
}

impl PackBuilder {
    /// An empty pack built in `buf` (cleared; a finished pack's buffer, to reuse its memory),
    /// with room for a whole pack, so it never grows by copying.
    pub fn with_buffer(mut buf: Vec<u8>) -> PackBuilder {
        buf.clear();
        buf.reserve(PACK_BYTES_MAX);
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, id: String, blob: &[u8]) {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(blob);
        self.entries.push((id, offset, blob.len() as u64));
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.iter().any(|(e, _, _)| e == id)
    }

    /// The pack's bytes, its id (SHA-256 of them, hex) and where each blob is.
    pub fn finish(self) -> (String, Vec<u8>, Vec<(String, Location)>) {
        let id = protocol::sha256_hex(&self.buf);
        let locations = self
            .entries
            .into_iter()
            .map(|(chunk, offset, length)| {
                (
                    chunk,
                    Location {
                        pack: id.clone(),
                        offset,
                        length,
                    },
                )
            })
            .collect();
        (id, self.buf, locations)
    }
}
