//! Who may see the agent's own figures (the dashboard, `/v1/status`, `/metrics`): contract ids,
//! earnings and errors are the owner's business. A request from loopback (the owner's own
//! machine) is the owner; from anywhere else it must carry the owner's token, kept in
//! `DIR/owner.token` (written by `init`, or at the first `serve` of an older directory), as
//! `?token=...` or `Authorization: Bearer ...`.
//!
//! Behind a reverse proxy on the same machine every request comes from loopback: such a proxy
//! must do its own authentication.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The token file in the data directory.
pub const TOKEN_FILE: &str = "owner.token";
/// Random bytes in a token (hex-encoded in the file).
const TOKEN_BYTES: usize = 24;

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Read the owner's token, creating it (mode 0600) when the directory has none.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let token = hex::encode(bytes);
    let mut file = node::keyfile::create_private(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Whether a request from `peer` carrying `given` (from `?token=` or a bearer header) is the
/// owner's. An empty configured token admits loopback only.
pub fn is_owner(peer: Option<IpAddr>, given: Option<&str>, token: &str) -> bool {
    if peer.is_some_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }) {
        return true;
    }
    match given {
        Some(g) if !token.is_empty() => constant_time_eq(g.as_bytes(), token.as_bytes()),
        _ => false,
    }
}

/// The agent's own figures (earnings, contracts, errors) are the owner's: loopback, or a request
/// with the owner's token. For the HTTP layer (`server`, `dashboard`).
pub fn require_owner(
    req: &actix_web::HttpRequest,
    agent: &crate::agent::Agent,
) -> Result<(), crate::Error> {
    let peer = req.peer_addr().map(|a| a.ip());
    let given = given_token(req);
    if is_owner(peer, given.as_deref(), agent.owner_token()) {
        Ok(())
    } else {
        Err(crate::Error::OwnerOnly)
    }
}

/// Compare without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries: `?token=` in the query or `Authorization: Bearer`.
pub fn given_token(req: &actix_web::HttpRequest) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    query_token(req.query_string()).map(str::to_owned)
}

/// The `token=` value of a query string, as it came.
pub fn query_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_or_the_token() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let far: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(is_owner(Some(lo), None, "t0k"));
        assert!(is_owner(Some(lo6), None, "t0k"));
        assert!(is_owner(Some(mapped), None, "t0k"));
        assert!(!is_owner(Some(far), None, "t0k"));
        assert!(!is_owner(Some(far), Some("t0j"), "t0k"));
        assert!(!is_owner(Some(far), Some("t0k0"), "t0k"));
        assert!(is_owner(Some(far), Some("t0k"), "t0k"));
        assert!(!is_owner(Some(far), Some(""), ""));
        assert!(!is_owner(None, None, "t0k"));
    }

    #[test]
    fn the_token_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("create");
        let b = load_or_create(dir.path()).expect("read");
        assert_eq!(a, b);
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }
}
