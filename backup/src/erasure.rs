//! Reed-Solomon erasure coding of a pack: `k` data shards and `m` parity shards, any `k` of
//! which rebuild it. The length travels in an 8-byte prefix, so padding is removed exactly.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::Error;

fn codec(k: usize, m: usize) -> Result<ReedSolomon, Error> {
    ReedSolomon::new(k, m).map_err(|e| Error::Corrupt(format!("erasure code {k}+{m}: {e:?}")))
}

/// Split `data` into `k + m` equal shards.
pub fn encode(data: &[u8], k: usize, m: usize) -> Result<Vec<Vec<u8>>, Error> {
    let total = data.len() + 8;
    let shard_len = total.div_ceil(k).max(1);
    let mut framed = Vec::with_capacity(shard_len * k);
    framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
    framed.extend_from_slice(data);
    framed.resize(shard_len * k, 0);
    let mut shards: Vec<Vec<u8>> = framed.chunks(shard_len).map(<[u8]>::to_vec).collect();
    shards.extend((0..m).map(|_| vec![0u8; shard_len]));
    codec(k, m)?
        .encode(&mut shards)
        .map_err(|e| Error::Corrupt(format!("erasure encode: {e:?}")))?;
    Ok(shards)
}

/// Rebuild the data from any `k` of the shards (`None` for a missing or rejected one).
pub fn decode(mut shards: Vec<Option<Vec<u8>>>, k: usize, m: usize) -> Result<Vec<u8>, Error> {
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(Error::NotEnoughShards { present, needed: k });
    }
    codec(k, m)?
        .reconstruct_data(&mut shards)
        .map_err(|e| Error::Corrupt(format!("erasure decode: {e:?}")))?;
    let mut framed = Vec::new();
    for s in shards.into_iter().take(k) {
        framed.extend_from_slice(&s.ok_or_else(|| Error::Corrupt("shard not rebuilt".into()))?);
    }
    let len_bytes: [u8; 8] = framed
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Corrupt("pack too short".into()))?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes))
        .map_err(|_| Error::Corrupt("pack length".into()))?;
    if 8 + len > framed.len() {
        return Err(Error::Corrupt("pack length beyond its shards".into()));
    }
    framed.truncate(8 + len);
    Ok(framed.split_off(8))
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
}
