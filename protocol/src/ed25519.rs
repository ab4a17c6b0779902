//! Verifying Ed25519 signatures, one at a time or in batches, by one rule (issue 21).
//!
//! Ed25519 leaves implementations a choice the RFC does not settle: which encodings a verifier
//! accepts and whether it checks the equation with the cofactor. A batch check must use the
//! cofactor, so where single checks do not, a signature crafted by its own key's holder can pass
//! in a batch and fail alone (or the other way round). Here both use the ZIP-215 rules
//! (cofactored, as ed25519-zebra implements them; written out here over curve25519-dalek, so
//! a single check and a batch share one set of parsed parts and agree on every input), and
//! before any curve arithmetic this module refuses what ZIP-215 would accept but no honest
//! signer produces:
//!
//! - a public key `A` or commitment `R` whose `y` is not reduced below p (a second encoding of
//!   a point), or that encodes one of the eight points of small order (a key anyone can sign
//!   for, or a commitment that leaks nothing);
//! - a scalar `S` that is not reduced below the group order L (a malleated signature).
//!
//! So every signature gets the same answer alone and in any batch. For a signature whose key
//! and R have no small-order part (every honest signature: R = rB and A = aB) the answer is
//! RFC 8032's. A key holder can still craft one that differs from a cofactorless verifier
//! such as ring: with a small-order part added to R (or to its own key), the cofactored
//! equation accepts what ring refuses. Outsiders cannot forge or alter anything this way; the
//! difference only lets a signer make its own signatures that other verifiers refuse.
//! Refusing them would cost a scalar multiplication per signature (a torsion check of R) and
//! is not done. Signing stays with ring's keys ([`crate::KeyPair`]).

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use curve25519_dalek::Scalar;

pub const PUBLIC_KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;

/// The `y` coordinates (sign bit cleared) of the eight points of small order: the identity
/// (y = 1), the point of order 2 (y = p - 1), the two of order 4 (y = 0) and the four of order
/// 8 (two values of y, each with both signs of x). The test `small_order_points_are_all_listed`
/// derives the whole subgroup from one point of order 8 and checks it against this list.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    // y = 0
    [0; 32],
    // y = 1
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // y = p - 1
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // the points of order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// The field's prime p = 2^255 - 19, little-endian.
const P: [u8; 32] = [
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
];

/// `y` of an encoded point: the encoding with the sign bit of `x` cleared.
fn y_of(point: &[u8; 32]) -> [u8; 32] {
    let mut y = *point;
    y[31] &= 0x7f;
    y
}

/// Little-endian `a < b`.
fn less_than(a: &[u8; 32], b: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

/// A point encoding this module accepts: `y` reduced and not a point of small order. (Whether
/// it is on the curve at all is left to the curve arithmetic, which refuses it.)
fn acceptable_point(point: &[u8; 32]) -> bool {
    let y = y_of(point);
    less_than(&y, &P) && !SMALL_ORDER_Y.contains(&y)
}

/// What a signature and key must pass before any curve arithmetic (see the module's notes).
pub fn precheck(key: &[u8; 32], signature: &[u8; 64]) -> bool {
    let (r, s) = signature.split_at(32);
    let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
        return false;
    };
    acceptable_point(key)
        && acceptable_point(&r)
        && bool::from(Scalar::from_canonical_bytes(s).is_some())
}

/// Whether `signature` is `key`'s signature of `message`: the [`precheck`], then ZIP-215's
/// single check (on the same parsed parts as a batch's).
pub fn verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let item = Item {
        key: *key,
        message,
        signature: *signature,
    };
    Prepared::new(&item, |key| CompressedEdwardsY(*key).decompress())
        .is_some_and(|p| p.verify_alone())
}

/// One signature to check in a batch.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub key: [u8; 32],
    pub message: &'a [u8],
    pub signature: [u8; 64],
}

/// Below this many candidates a failed batch is checked one by one rather than halved.
const BISECT_BELOW: usize = 4;

/// Most public keys a [`KeyCache`] holds; when full it starts again empty (a verifier sees the
/// same few thousand senders over and over, and a cleared cache only costs decompressions).
pub const KEY_CACHE_MAX: usize = 16_384;

/// Public keys already decompressed, kept between batches by one verifier. Decompressing a key
/// is a field square root, about a sixth of a batched check; senders repeat, so a verifier that
/// keeps them saves it on every signature but a sender's first.
#[derive(Default)]
pub struct KeyCache {
    points: std::collections::HashMap<[u8; 32], EdwardsPoint>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("keys", &self.points.len())
            .finish()
    }
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key's point, or `None` when the bytes are not a point on the curve (not kept).
    fn point(&mut self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        if let Some(point) = self.points.get(key) {
            return Some(*point);
        }
        let point = CompressedEdwardsY(*key).decompress()?;
        if self.points.len() >= KEY_CACHE_MAX {
            self.points.clear();
        }
        self.points.insert(*key, point);
        Some(point)
    }
}

/// Check many signatures together: the answer for each is exactly what [`verify`] answers for
/// it. Those that fail the [`precheck`] are refused up front; the rest are checked as one batch
/// (about half the work per signature of single checks). A batch that fails is halved and each
/// half checked again, down to a few checked one by one: one bad signature in a batch of 64
/// then costs about a dozen small batches, not 64 single checks (anyone can send one, so it
/// must not be a cheap way to slow every honest request down).
pub fn verify_batch(items: &[Item<'_>]) -> Vec<bool> {
    verify_batch_cached(items, &mut KeyCache::new())
}

/// [`verify_batch`] with the keys' points taken from (and added to) `keys`.
pub fn verify_batch_cached(items: &[Item<'_>], keys: &mut KeyCache) -> Vec<bool> {
    let mut prepared: Vec<Option<Prepared>> = items
        .iter()
        .map(|item| Prepared::new(item, |key| keys.point(key)))
        .collect();
    let mut answers: Vec<bool> = prepared.iter().map(Option::is_some).collect();
    let candidates: Vec<usize> = (0..items.len()).filter(|i| answers[*i]).collect();
    check_group(&mut prepared, &candidates, &mut answers);
    answers
}

/// One signature's parts, decoded once for every group it is checked in.
struct Prepared {
    key: [u8; 32],
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    /// k = SHA-512(R || A || message) mod L.
    k: Scalar,
}

impl Prepared {
    /// `None` when the signature fails the [`precheck`] or R or the key is not on the curve:
    /// what [`verify`] refuses before its equation. `key_point` decompresses the key (or
    /// finds it in a verifier's [`KeyCache`]).
    fn new(
        item: &Item<'_>,
        key_point: impl FnOnce(&[u8; 32]) -> Option<EdwardsPoint>,
    ) -> Option<Prepared> {
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&item.signature[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&item.signature[32..]);
        // The precheck, with S parsed once.
        if !acceptable_point(&item.key) || !acceptable_point(&r_bytes) {
            return None;
        }
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
        let r = CompressedEdwardsY(r_bytes).decompress()?;
        let a = key_point(&item.key)?;
        let mut hash = ring::digest::Context::new(&ring::digest::SHA512);
        hash.update(&r_bytes);
        hash.update(&item.key);
        hash.update(item.message);
        let mut wide = [0u8; 64];
        wide.copy_from_slice(hash.finish().as_ref());
        Some(Prepared {
            key: item.key,
            a,
            r,
            s,
            k: Scalar::from_bytes_mod_order_wide(&wide),
        })
    }

    /// ZIP-215's single check, [8](R - ([s]B - [k]A)) = 0 (ed25519-zebra's `verify`).
    fn verify_alone(&self) -> bool {
        let r_prime = EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        (self.r - r_prime).mul_by_cofactor().is_identity()
    }
}

/// Settle `answers[i]` for every `i` in `group` (all prepared).
fn check_group(prepared: &mut [Option<Prepared>], group: &[usize], answers: &mut [bool]) {
    let ok = match group.len() {
        0 => return,
        n if n < BISECT_BELOW => {
            for &i in group {
                answers[i] = prepared[i].as_ref().is_some_and(Prepared::verify_alone);
            }
            return;
        }
        _ => batch_holds(prepared, group),
    };
    if ok {
        return;
    }
    let (left, right) = group.split_at(group.len() / 2);
    check_group(prepared, left, answers);
    check_group(prepared, right, answers);
}

/// The cofactored batch equation over `group`, as ed25519-zebra's batch verifier states it:
/// [8](-sum(z_i s_i) B + sum(z_i R_i) + sum_keys(sum(z_i k_i) A)) = 0, with each z_i a fresh
/// random 128-bit scalar and the terms of one key gathered into one coefficient.
fn batch_holds(prepared: &[Option<Prepared>], group: &[usize]) -> bool {
    let mut random = vec![0u8; 16 * group.len()];
    if rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut random).is_err() {
        // Without randomness a batch proves nothing: check one by one instead.
        return group
            .iter()
            .all(|&i| prepared[i].as_ref().is_some_and(Prepared::verify_alone));
    }
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * group.len() + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * group.len() + 1);
    // Per key: its index in `points`/`scalars` (a batch holds few keys twice; a scan is cheap).
    let mut key_slots: Vec<([u8; 32], usize)> = Vec::with_capacity(group.len());
    for (n, &i) in group.iter().enumerate() {
        let Some(p) = prepared[i].as_ref() else {
            return false;
        };
        let mut z_bytes = [0u8; 16];
        z_bytes.copy_from_slice(&random[16 * n..16 * (n + 1)]);
        let z = Scalar::from(u128::from_le_bytes(z_bytes));
        b_coefficient -= z * p.s;
        scalars.push(z);
        points.push(p.r);
        let zk = z * p.k;
        match key_slots.iter().find(|(key, _)| *key == p.key) {
            Some(&(_, slot)) => scalars[slot] += zk,
            None => {
                key_slots.push((p.key, scalars.len()));
                scalars.push(zk);
                points.push(p.a);
            }
        }
    }
    scalars.push(b_coefficient);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(n: usize) -> Vec<([u8; 32], Vec<u8>, [u8; 64])> {
        (0..n)
            .map(|i| {
                let key = crate::KeyPair::generate().expect("keygen");
                let message = format!("message {i}").into_bytes();
                let signature: [u8; 64] = key.sign(&message).try_into().expect("64 bytes");
                let public: [u8; 32] = key.entity().public_key().try_into().expect("32 bytes");
                (public, message, signature)
            })
            .collect()
    }

    fn items(v: &[([u8; 32], Vec<u8>, [u8; 64])]) -> Vec<Item<'_>> {
        v.iter()
            .map(|(key, message, signature)| Item {
                key: *key,
                message,
                signature: *signature,
            })
            .collect()
    }

    #[test]
    fn small_order_points_are_all_listed() {
        let order8 = CompressedEdwardsY(SMALL_ORDER_Y[3])
            .decompress()
            .expect("on the curve");
        // Order exactly 8: 8T is the identity and 4T is not.
        let four = order8 + order8 + order8 + order8;
        assert!(!four.is_identity());
        assert!(order8.mul_by_cofactor().is_identity());
        let mut multiple = order8;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            assert!(multiple.is_small_order());
            seen.insert(y_of(&multiple.compress().to_bytes()));
            multiple += order8;
        }
        let listed: std::collections::BTreeSet<[u8; 32]> = SMALL_ORDER_Y.into_iter().collect();
        assert_eq!(seen, listed, "the subgroup of order 8 has exactly these y");
        for y in SMALL_ORDER_Y {
            assert!(!acceptable_point(&y));
            let mut negative = y;
            negative[31] |= 0x80;
            assert!(!acceptable_point(&negative), "either sign of x");
        }
    }

    #[test]
    fn good_signatures_pass_alone_and_together() {
        let v = signed(40);
        for (key, message, signature) in &v {
            assert!(verify(key, message, signature));
        }
        assert!(verify_batch(&items(&v)).into_iter().all(|ok| ok));
    }

    /// Every kind of bad signature gets the same answer alone and inside a batch of good ones,
    /// and never costs a good one its answer.
    /// A verifier keeps its keys between batches and gathers one key's signatures into one
    /// term: the answers must still be each signature's own, whichever batch it comes in.
    #[test]
    fn kept_keys_and_one_key_signing_many_give_each_signature_its_own_answer() {
        let key = crate::KeyPair::generate().expect("keygen");
        let public: [u8; 32] = key.entity().public_key().try_into().expect("32 bytes");
        let mut v: Vec<([u8; 32], Vec<u8>, [u8; 64])> = (0..16)
            .map(|i| {
                let message = format!("payment {i}").into_bytes();
                let signature: [u8; 64] = key.sign(&message).try_into().expect("64 bytes");
                (public, message, signature)
            })
            .collect();
        v.extend(signed(8));
        // Spoil one of the shared key's: its message no longer matches.
        v[5].1 = b"another payment".to_vec();
        let mut keys = KeyCache::new();
        for round in 0..3 {
            let answers = verify_batch_cached(&items(&v), &mut keys);
            for (i, ok) in answers.iter().enumerate() {
                assert_eq!(*ok, i != 5, "round {round}, signature {i}");
                assert_eq!(*ok, verify(&v[i].0, &v[i].1, &v[i].2), "alone, {i}");
            }
        }
        assert_eq!(keys.points.len(), 9, "one point per distinct key");
        // A key that is not a point is refused and not kept.
        let mut off_curve = v[0].clone();
        off_curve.0 = [0xff; 32];
        off_curve.0[31] = 0x0f;
        let answers = verify_batch_cached(&items(&[off_curve, v[1].clone()]), &mut keys);
        assert_eq!(answers, vec![false, true]);
        assert_eq!(keys.points.len(), 9);
    }

    #[test]
    fn bad_signatures_are_refused_alone_and_in_batches() {
        let v = signed(12);
        let mut bad = v.clone();
        // A flipped bit in R, in S, in the message; another key; S + L (non-canonical).
        bad[0].2[3] ^= 1;
        bad[1].2[40] ^= 1;
        bad[2].1.push(b'!');
        bad[3].0 = v[4].0;
        {
            let s = curve25519_dalek::Scalar::from_canonical_bytes(
                bad[5].2[32..].try_into().expect("32"),
            )
            .expect("canonical");
            // L, little-endian: S + L encodes the same scalar mod L, non-canonically.
            let l: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut sum = [0u8; 32];
            let mut carry = 0u16;
            let s_bytes = s.to_bytes();
            for i in 0..32 {
                let t = u16::from(s_bytes[i]) + u16::from(l[i]) + carry;
                sum[i] = t as u8;
                carry = t >> 8;
            }
            if carry == 0 && sum[31] & 0xe0 == 0 {
                bad[5].2[32..].copy_from_slice(&sum);
            } else {
                bad[5].2[33] ^= 1;
            }
        }
        // A non-canonical R (y >= p) and a small-order key and R.
        bad[6].2[..32].copy_from_slice(&[0xff; 32]);
        bad[7].0 = SMALL_ORDER_Y[1];
        bad[8].2[..32].copy_from_slice(&SMALL_ORDER_Y[0]);
        // A key that is not on the curve at all (y = 2 has no x).
        bad[9].0 = {
            let mut k = [0u8; 32];
            k[0] = 2;
            k
        };
        let bad_indexes = [0, 1, 2, 3, 5, 6, 7, 8, 9];
        for (i, (key, message, signature)) in bad.iter().enumerate() {
            assert_eq!(
                verify(key, message, signature),
                !bad_indexes.contains(&i),
                "alone: {i}"
            );
        }
        // Mixed with good ones, in every position of a batch.
        let good = signed(20);
        for (i, b) in bad.iter().enumerate() {
            let mut mixed = good.clone();
            mixed.insert(i % 20, b.clone());
            let answers = verify_batch(&items(&mixed));
            for (j, ok) in answers.iter().enumerate() {
                let expected = if j == i % 20 {
                    !bad_indexes.contains(&i)
                } else {
                    true
                };
                assert_eq!(*ok, expected, "bad {i} at {}, answer {j}", i % 20);
            }
        }
        // All bad together.
        let answers = verify_batch(&items(&bad));
        for (i, ok) in answers.iter().enumerate() {
            assert_eq!(*ok, !bad_indexes.contains(&i), "all bad: {i}");
        }
    }

    /// The documented difference, made on purpose: a key holder adds a point of order 8 to
    /// its R. The cofactored rule accepts it, alone and in every position of a batch (so the
    /// two still agree); ring, cofactorless, refuses it. Nobody else could have made it.
    #[test]
    fn a_signer_crafted_small_order_part_in_r_passes_here_and_fails_ring() {
        use curve25519_dalek::{EdwardsPoint, Scalar};
        use ring::rand::SecureRandom;
        let random_scalar = || {
            let mut wide = [0u8; 64];
            ring::rand::SystemRandom::new()
                .fill(&mut wide)
                .expect("random");
            Scalar::from_bytes_mod_order_wide(&wide)
        };
        let (a, r) = (random_scalar(), random_scalar());
        let key = EdwardsPoint::mul_base(&a).compress().to_bytes();
        let torsion = CompressedEdwardsY(SMALL_ORDER_Y[3])
            .decompress()
            .expect("on the curve");
        let big_r = (EdwardsPoint::mul_base(&r) + torsion).compress().to_bytes();
        let message = b"signed by its own key, with a twist";
        let mut hashed = ring::digest::Context::new(&ring::digest::SHA512);
        hashed.update(&big_r);
        hashed.update(&key);
        hashed.update(message);
        let k: [u8; 64] = hashed.finish().as_ref().try_into().expect("64 bytes");
        let s = r + Scalar::from_bytes_mod_order_wide(&k) * a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(&s.to_bytes());

        assert!(
            precheck(&key, &signature),
            "nothing wrong with its encodings"
        );
        assert!(
            verify(&key, message, &signature),
            "the cofactored equation holds"
        );
        let ring_ok = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(message, &signature)
            .is_ok();
        assert!(!ring_ok, "ring's cofactorless equation does not");
        let good = signed(8);
        for position in 0..=good.len() {
            let mut mixed = items(&good);
            mixed.insert(
                position,
                Item {
                    key,
                    message,
                    signature,
                },
            );
            assert!(
                verify_batch(&mixed).into_iter().all(|ok| ok),
                "at {position}"
            );
        }
    }

    #[test]
    fn ring_agrees_on_honest_signatures_and_refuses_what_we_refuse() {
        use ring::signature::{UnparsedPublicKey, ED25519};
        let mut v = signed(8);
        v[1].2[60] ^= 0x10;
        v[2].2[..32].copy_from_slice(&[0xff; 32]);
        for (key, message, signature) in &v {
            let ring_ok = UnparsedPublicKey::new(&ED25519, key)
                .verify(message, signature)
                .is_ok();
            assert_eq!(verify(key, message, signature), ring_ok);
        }
    }
}
