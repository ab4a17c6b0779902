//! Packs: sealed blobs (zstd-compressed, encrypted chunks) gathered into one object of about
//! [`PACK_BYTES_TARGET`], so a repository of many small files still makes few, large shards.

use serde::{Deserialize, Serialize};

use crate::crypto::{Keys, NONCE_LEN, TAG_LEN};
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

/// Compresses and seals chunks with one zstd context and one output buffer for all of them:
/// a context is costly to set up (its tables are allocated and cleared), and a backup seals
/// thousands of chunks. A chunk is compressed straight into the buffer, after room for the
/// nonce, and encrypted there: no allocation and no copy per chunk.
pub struct Sealer {
    zstd: zstd::bulk::Compressor<'static>,
    sealed: Vec<u8>,
}

impl Sealer {
    /// For chunks of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Result<Sealer, Error> {
        let room = NONCE_LEN + zstd::zstd_safe::compress_bound(max_len) + TAG_LEN;
        Ok(Sealer {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .map_err(|e| Error::Io(format!("zstd: {e}")))?,
            sealed: vec![0; room],
        })
    }

    /// The chunk compressed and sealed (`nonce || ciphertext || tag`, as [`Keys::seal`]),
    /// valid until the next call.
    pub fn seal(&mut self, keys: &Keys, chunk: &[u8]) -> Result<&[u8], Error> {
        let body_max = self.sealed.len() - NONCE_LEN - TAG_LEN;
        if zstd::zstd_safe::compress_bound(chunk.len()) > body_max {
            return Err(Error::Io(format!(
                "a chunk of {} bytes is too large",
                chunk.len()
            )));
        }
        let n = self
            .zstd
            .compress_to_buffer(chunk, &mut self.sealed[NONCE_LEN..NONCE_LEN + body_max])
            .map_err(|e| Error::Io(format!("zstd: {e}")))?;
        let (nonce, tag) = keys.seal_parts(&mut self.sealed[NONCE_LEN..NONCE_LEN + n])?;
        self.sealed[..NONCE_LEN].copy_from_slice(&nonce);
        self.sealed[NONCE_LEN + n..NONCE_LEN + n + TAG_LEN].copy_from_slice(&tag);
        Ok(&self.sealed[..NONCE_LEN + n + TAG_LEN])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sealer lays out in its buffer opens again, chunk after chunk, and a chunk
    /// larger than the sealer was made for is refused rather than cut.
    #[test]
    fn sealed_chunks_open_again() {
        let keys = Keys::generate().expect("keys");
        let mut sealer = Sealer::new(1 << 16).expect("sealer");
        let mut opener = ChunkOpener::new(1 << 16).expect("opener");
        let text: Vec<u8> = b"compressible text ".repeat(3000);
        let noise: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for chunk in [&b""[..], &b"x"[..], &text[..], &noise[..], &text[..100]] {
            let sealed = sealer.seal(&keys, chunk).expect("seal").to_vec();
            assert!(keys.open(&sealed).is_ok());
            assert_eq!(opener.open(&keys, &sealed).expect("open"), chunk);
        }
        assert!(sealer.seal(&keys, &vec![0u8; 1 << 17]).is_err());
    }
}
