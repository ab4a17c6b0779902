//! The signed manifest of a content and its piece arithmetic (the wire types live in
//! [`protocol::cdn`]). Range headers are read by `protocol::range`, as at the agents.

pub use protocol::cdn::{
    content_id, piece_count, piece_len, pieces_root, valid_content_id, valid_sha256_hex, Manifest,
    CONTENT_BYTES_MAX, MANIFEST_TYPE, PIECE_BYTES_DEFAULT, PIECE_BYTES_MAX, PIECE_BYTES_MIN,
};
#[cfg(test)]
mod tests {
    use super::*;

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
