//! The signed manifest of a content and its piece arithmetic (the wire types live in
//! [`protocol::cdn`]), and the lenient `Range` reading of [`parse_range`]. Pure: no IO.

pub use protocol::cdn::{
    content_id, piece_count, piece_len, pieces_root, valid_content_id, valid_sha256_hex, Manifest,
    CONTENT_BYTES_MAX, MANIFEST_TYPE, PIECE_BYTES_DEFAULT, PIECE_BYTES_MAX, PIECE_BYTES_MIN,
};
use protocol::range::RangeSpec;

/// An inclusive byte range of a body of `size` bytes, from a `Range` header, read leniently:
/// `Ok(None)` (the whole body) when there is no header, its unit is not `bytes` (RFC 9110) or
/// it asks for several ranges; `Err(())` when it cannot be served. Parsed by
/// [`protocol::range::RangeSpec`], the one parser. The gateway does not use it: it answers as
/// the agents do (`400 invalid_range` for what `RangeSpec` refuses).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    if !h.trim().starts_with("bytes=") || h.contains(',') {
        return Ok(None);
    }
    let r = RangeSpec::parse(h)
        .and_then(|r| r.resolve(size))
        .map_err(|_| ())?;
    if r.is_empty() {
        return Err(());
    }
    Ok(Some((r.start, r.end - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Ok(Some((2, 4))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("items=1-2"), 10), Ok(None));
    }

    #[test]
    fn pieces_and_ids() {
        assert_eq!(piece_count(0, 4), 0);
        assert_eq!(piece_count(9, 4), 3);
        assert_eq!(piece_len(9, 4, 2), 1);
        assert_eq!(piece_len(8, 4, 1), 4);
        let p = vec![protocol::sha256_hex(b"a"), protocol::sha256_hex(b"b")];
        let id = content_id(5, 4, &p);
        assert_eq!(id.len(), 32);
        assert_ne!(id, content_id(6, 4, &p));
        assert!(valid_sha256_hex(&p[0]));
        assert!(!valid_sha256_hex("AB"));
        assert!(valid_content_id(&id));
        assert!(!valid_content_id(&id.to_uppercase()));
        assert!(!valid_content_id(&id[..31]));
    }
}
