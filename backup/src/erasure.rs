//! Reed-Solomon erasure coding of a pack: `k` data shards and `m` parity shards, any `k` of
//! which rebuild it. The length travels in an 8-byte prefix, so padding is removed exactly.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::Error;

/// Bytes of the length prefix.
const PREFIX: usize = 8;

fn codec(k: usize, m: usize) -> Result<ReedSolomon, Error> {
    ReedSolomon::new(k, m).map_err(|e| Error::Corrupt(format!("erasure code {k}+{m}: {e:?}")))
}

/// The length of each shard of an object of `len` bytes cut in `k`.
pub fn shard_len(len: usize, k: usize) -> usize {
    (len + PREFIX).div_ceil(k.max(1)).max(1)
}

/// Split `data` into `k + m` equal shards. The data shards are filled straight from `data`
/// (no framed copy of the whole object first): a pack is in memory once, plus its shards.
pub fn encode(data: &[u8], k: usize, m: usize) -> Result<Vec<Vec<u8>>, Error> {
    let mut shards = data_shards(data, k);
    let sl = shards.first().map_or(1, Vec::len);
    shards.reserve(m);
    shards.extend((0..m).map(|_| vec![0u8; sl]));
    codec(k, m)?
        .encode(&mut shards)
        .map_err(|e| Error::Corrupt(format!("erasure encode: {e:?}")))?;
    Ok(shards)
}

/// Shard `i` of `data` alone (a repeated write; it costs a whole encoding).
pub fn shard(data: &[u8], k: usize, m: usize, i: usize) -> Result<Vec<u8>, Error> {
    let mut shards = encode(data, k, m)?;
    if i >= shards.len() {
        return Err(Error::Corrupt(format!("no shard {i} of {}", k + m)));
    }
    Ok(shards.swap_remove(i))
}

/// The `k` data shards of `data`: prefix, data and zero padding, cut in `k`.
pub fn data_shards(data: &[u8], k: usize) -> Vec<Vec<u8>> {
    let sl = shard_len(data.len(), k);
    let prefix = (data.len() as u64).to_le_bytes();
    let mut shards: Vec<Vec<u8>> = Vec::with_capacity(k);
    for i in 0..k {
        // Shard i holds bytes [a, b) of prefix || data || zero padding.
        let (a, b) = (i * sl, (i + 1) * sl);
        let mut shard = Vec::with_capacity(sl);
        shard.extend_from_slice(prefix.get(a.min(PREFIX)..b.min(PREFIX)).unwrap_or(&[]));
        let (start, end) = (
            a.max(PREFIX) - PREFIX,
            b.saturating_sub(PREFIX).min(data.len()),
        );
        if start < end {
            shard.extend_from_slice(&data[start..end]);
        }
        shard.resize(sl, 0);
        shards.push(shard);
    }
    shards
}

/// The data shards joined and unframed: the object, without any decoding. `Err` gives the
/// shards back unchanged when they cannot be an object's data shards (lengths differ, or the
/// prefix names more bytes than they hold). The object is built in `into` (cleared first): a
/// caller that reads many objects hands back a buffer it is done with, so memory is reused
/// rather than freed and allocated again.
pub fn unframe(shards: Vec<Vec<u8>>, into: Vec<u8>) -> Result<Vec<u8>, Vec<Vec<u8>>> {
    let sl = shards.first().map_or(0, Vec::len);
    if sl == 0 || shards.iter().any(|s| s.len() != sl) {
        return Err(shards);
    }
    let mut framed = into;
    framed.clear();
    // Exactly: `reserve` may double a reused buffer that is a little short.
    framed.reserve_exact(sl * shards.len());
    for s in shards {
        // Each shard is freed as soon as it is copied.
        framed.extend_from_slice(&s);
    }
    unframe_in_place(framed).map_err(|framed| framed.chunks(sl).map(<[u8]>::to_vec).collect())
}

/// The data shards already joined in one buffer (prefix, data, padding), unframed in place.
/// `Err` gives the buffer back when the prefix names more bytes than it holds.
pub fn unframe_in_place(mut framed: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
    let len = framed
        .get(..PREFIX)
        .and_then(|b| <[u8; PREFIX]>::try_from(b).ok())
        .and_then(|b| usize::try_from(u64::from_le_bytes(b)).ok());
    match len {
        Some(len) if len <= framed.len() - PREFIX => {
            framed.truncate(PREFIX + len);
            framed.drain(..PREFIX);
            Ok(framed)
        }
        _ => Err(framed),
    }
}

/// Rebuild the data from any `k` of the shards (`None` for a missing or rejected one).
pub fn decode(mut shards: Vec<Option<Vec<u8>>>, k: usize, m: usize) -> Result<Vec<u8>, Error> {
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(Error::NotEnoughShards {
            object: String::new(),
            present,
            needed: k,
        });
    }
    codec(k, m)?
        .reconstruct_data(&mut shards)
        .map_err(|e| Error::Corrupt(format!("erasure decode: {e:?}")))?;
    let data: Vec<Vec<u8>> = shards
        .into_iter()
        .take(k)
        .map(|s| s.ok_or_else(|| Error::Corrupt("shard not rebuilt".into())))
        .collect::<Result<_, _>>()?;
    unframe(data, Vec::new()).map_err(|_| Error::Corrupt("pack length beyond its shards".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_of_n_rebuild() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let shards = encode(&data, 4, 2).expect("encode");
        assert_eq!(shards.len(), 6);
        for lost in [(0, 1), (2, 5), (4, 5), (0, 3)] {
            let mut s: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            s[lost.0] = None;
            s[lost.1] = None;
            assert_eq!(decode(s, 4, 2).expect("decode"), data);
        }
        let mut s: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
        s[0] = None;
        s[1] = None;
        s[2] = None;
        assert!(matches!(
            decode(s, 4, 2),
            Err(Error::NotEnoughShards { .. })
        ));
        assert_eq!(
            decode(
                encode(b"", 4, 2)
                    .expect("e")
                    .into_iter()
                    .map(Some)
                    .collect(),
                4,
                2
            )
            .expect("d"),
            b""
        );
    }

    #[test]
    fn data_shards_unframe_without_decoding() {
        for len in [0usize, 1, 5, 7, 8, 9, 31, 100_003] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
            for k in [1, 3, 4, 10] {
                let shards = encode(&data, k, 2).expect("encode");
                assert_eq!(shards.len(), k + 2);
                let joined = unframe(shards[..k].to_vec(), vec![9; 3]).expect("unframe");
                assert_eq!(joined, data, "len {len}, k {k}");
                // The data shards are the framed object: decoding from parity agrees.
                let mut s: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
                s[0] = None;
                assert_eq!(decode(s, k, 2).expect("decode"), data, "len {len}, k {k}");
            }
        }
        // A prefix naming more than the shards hold gives the shards back.
        let bad = vec![vec![0xff; 4], vec![0; 4]];
        assert_eq!(unframe(bad.clone(), Vec::new()), Err(bad));
        assert!(unframe(vec![vec![1, 2], vec![3]], Vec::new()).is_err());
    }
}
