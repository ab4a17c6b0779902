//! The Merkle tree of DESIGN section 5, used by audits and CDN pieces.
//!
//! - Leaves are 16 KiB chunks; leaf hash `SHA-256(0x00 || chunk)`.
//! - Node hash `SHA-256(0x01 || left || right)`.
//! - The leaf level is padded to a power of two with 32 zero bytes (a padding *hash*, not a chunk).
//! - An empty object is one empty leaf.
//! - A proof lists sibling hashes from the leaf up.

use ring::digest::{Context, SHA256};

pub const LEAF_BYTES: usize = 16 * 1024;
pub type Hash = [u8; 32];

const LEAF_TAG: u8 = 0x00;
const NODE_TAG: u8 = 0x01;
const PADDING: Hash = [0u8; 32];

pub fn leaf_hash(chunk: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_TAG]);
    ctx.update(chunk);
    to_hash(ctx)
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_TAG]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx)
}

fn to_hash(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Leaves of an object of `size` bytes (an empty object has one).
pub fn leaf_count_for(size: u64) -> u64 {
    size.div_ceil(LEAF_BYTES as u64).max(1)
}

/// Builds a tree from bytes fed in any pieces (streaming: only leaf hashes are kept).
#[derive(Debug, Default, Clone)]
pub struct MerkleBuilder {
    leaves: Vec<Hash>,
    partial: Vec<u8>,
}

impl MerkleBuilder {
    pub fn new() -> Self {
        MerkleBuilder::default()
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (LEAF_BYTES - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == LEAF_BYTES {
                self.leaves.push(leaf_hash(&self.partial));
                self.partial.clear();
            }
        }
    }

    pub fn finish(mut self) -> MerkleTree {
        if !self.partial.is_empty() || self.leaves.is_empty() {
            self.leaves.push(leaf_hash(&self.partial));
        }
        MerkleTree::from_leaves(self.leaves)
    }
}

/// A whole tree: every level from the (padded) leaves up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    leaf_count: u64,
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn from_bytes(data: &[u8]) -> MerkleTree {
        let mut b = MerkleBuilder::new();
        b.update(data);
        b.finish()
    }

    /// `leaves` must be non-empty (an empty object has one leaf: `leaf_hash(b"")`).
    pub fn from_leaves(mut leaves: Vec<Hash>) -> MerkleTree {
        if leaves.is_empty() {
            leaves.push(leaf_hash(b""));
        }
        let leaf_count = leaves.len() as u64;
        leaves.resize(leaves.len().next_power_of_two(), PADDING);
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up: Vec<Hash> = below.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
            levels.push(up);
        }
        MerkleTree { leaf_count, levels }
    }

    pub fn root(&self) -> Hash {
        // Invariant: `from_leaves` always leaves a top level of exactly one hash.
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(PADDING)
    }

    pub fn root_hex(&self) -> String {
        hex::encode(self.root())
    }

    /// Real (unpadded) leaves.
    pub fn leaf_count(&self) -> u64 {
        self.leaf_count
    }

    /// Sibling hashes from leaf `index` up to (not including) the root; `None` past the last leaf.
    pub fn proof(&self, index: u64) -> Option<Vec<Hash>> {
        if index >= self.leaf_count {
            return None;
        }
        let mut i = usize::try_from(index).ok()?;
        let mut proof = Vec::with_capacity(self.levels.len().saturating_sub(1));
        for level in &self.levels[..self.levels.len() - 1] {
            proof.push(level[i ^ 1]);
            i /= 2;
        }
        Some(proof)
    }
}

/// Check that `leaf_data` is leaf `index` of an object with `leaf_count` leaves under `root`.
pub fn verify_proof(
    root: &Hash,
    index: u64,
    leaf_count: u64,
    leaf_data: &[u8],
    proof: &[Hash],
) -> bool {
    if index >= leaf_count || leaf_data.len() > LEAF_BYTES {
        return false;
    }
    // The proof's length is fixed by the padded width; a shorter or longer one is forged.
    // A hostile leaf_count near u64::MAX has no next power of two: no valid proof.
    let Some(width) = leaf_count.checked_next_power_of_two() else {
        return false;
    };
    let depth = width.trailing_zeros() as usize;
    if proof.len() != depth {
        return false;
    }
    let mut hash = leaf_hash(leaf_data);
    let mut i = index;
    for sibling in proof {
        hash = if i.is_multiple_of(2) {
            node_hash(&hash, sibling)
        } else {
            node_hash(sibling, &hash)
        };
        i /= 2;
    }
    &hash == root
}

/// Parse a hex hash (64 lowercase or uppercase hex digits).
pub fn parse_hash(text: &str) -> Option<Hash> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent, deliberately naive implementation of the DESIGN rules for cross-checking.
    fn naive_root(data: &[u8]) -> Hash {
        let sha = |parts: &[&[u8]]| {
            let mut ctx = Context::new(&SHA256);
            for p in parts {
                ctx.update(p);
            }
            to_hash(ctx)
        };
        let mut level: Vec<Hash> = if data.is_empty() {
            vec![sha(&[&[0u8], b""])]
        } else {
            data.chunks(LEAF_BYTES).map(|c| sha(&[&[0u8], c])).collect()
        };
        let mut width = 1;
        while width < level.len() {
            width *= 2;
        }
        level.resize(width, [0u8; 32]);
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| sha(&[&[1u8], &p[0], &p[1]]))
                .collect();
        }
        level[0]
    }

    #[test]
    fn roots_match_the_design_rules() {
        for size in [
            0usize,
            1,
            LEAF_BYTES - 1,
            LEAF_BYTES,
            LEAF_BYTES + 1,
            3 * LEAF_BYTES,
            5 * LEAF_BYTES + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let tree = MerkleTree::from_bytes(&data);
            assert_eq!(tree.root(), naive_root(&data), "size {size}");
            assert_eq!(tree.leaf_count(), leaf_count_for(size as u64));
        }
        assert_eq!(
            MerkleTree::from_bytes(b"").root(),
            leaf_hash(b""),
            "empty object: one empty leaf"
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
        let mut b = MerkleBuilder::new();
        for piece in data.chunks(999) {
            b.update(piece);
        }
        assert_eq!(b.finish(), MerkleTree::from_bytes(&data));
    }

    #[test]
    fn proofs_verify_and_reject_tampering() {
        let data: Vec<u8> = (0..(5 * LEAF_BYTES + 100))
            .map(|i| (i % 199) as u8)
            .collect();
        let tree = MerkleTree::from_bytes(&data);
        let root = tree.root();
        let n = tree.leaf_count();
        for i in 0..n {
            let start = i as usize * LEAF_BYTES;
            let leaf = &data[start..(start + LEAF_BYTES).min(data.len())];
            let proof = tree.proof(i).expect("proof");
            assert!(verify_proof(&root, i, n, leaf, &proof), "leaf {i}");
            let mut bad = leaf.to_vec();
            bad[0] ^= 1;
            assert!(!verify_proof(&root, i, n, &bad, &proof), "altered leaf {i}");
            assert!(
                !verify_proof(&root, (i + 1) % n, n, leaf, &proof),
                "wrong index {i}"
            );
            assert!(
                !verify_proof(&root, i, n, leaf, &proof[..proof.len() - 1]),
                "short proof {i}"
            );
        }
        assert!(tree.proof(n).is_none());
        assert!(
            !verify_proof(
                &root,
                0,
                u64::MAX,
                &data[..LEAF_BYTES],
                &tree.proof(0).expect("proof")
            ),
            "hostile leaf_count"
        );
        let single = MerkleTree::from_bytes(b"abc");
        assert!(verify_proof(
            &single.root(),
            0,
            1,
            b"abc",
            &single.proof(0).expect("proof")
        ));
    }
}
