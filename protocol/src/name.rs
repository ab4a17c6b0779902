//! Names of bank customers (DESIGN section 14): a transfer may name a customer of the
//! recipient (`userid`), and people write a customer as `user@host[:port]` wherever an entity
//! id is accepted. This module only parses and checks; resolving a name over HTTP
//! (`GET /.well-known/lcp-names?name=user`) is the clients crate's.

use serde::{Deserialize, Serialize};

/// The longest `userid`.
pub const USERID_CHARS_MAX: usize = 64;
/// The longest host part of a name (a DNS name is at most 253 characters, plus `:port`).
pub const NAME_HOST_CHARS_MAX: usize = 259;

/// True for a `userid`: 1 to [`USERID_CHARS_MAX`] characters of `[a-z0-9._-]`.
pub fn is_userid(text: &str) -> bool {
    (1..=USERID_CHARS_MAX).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a name: a name is user@host or user@host:port")]
    Malformed(String),
    #[error("{0:?} is not a user name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
    BadUser(String),
    #[error("{0:?} is not a host: letters, digits, '.', '-' and an optional :port")]
    BadHost(String),
}

/// A customer's name at a bank: `user@host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    pub user: String,
    /// `host` or `host:port`, lowercase.
    pub host: String,
}

impl Name {
    /// Parse `user@host[:port]`. The user part must be a [`is_userid`]; the host a DNS name or
    /// an IPv4 address, with an optional decimal port.
    pub fn parse(text: &str) -> Result<Name, NameError> {
        let (user, host) = text
            .split_once('@')
            .ok_or_else(|| NameError::Malformed(text.to_owned()))?;
        if host.contains('@') {
            return Err(NameError::Malformed(text.to_owned()));
        }
        if !is_userid(user) {
            return Err(NameError::BadUser(user.to_owned()));
        }
        let host = host.to_ascii_lowercase();
        let (hostname, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host.as_str(), None),
        };
        let hostname_ok = !hostname.is_empty()
            && host.len() <= NAME_HOST_CHARS_MAX
            && hostname
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63 && !label.starts_with('-'))
            && hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if !hostname_ok || !port_ok {
            return Err(NameError::BadHost(host.clone()));
        }
        Ok(Name {
            user: user.to_owned(),
            host,
        })
    }

    /// True when `text` looks like a name rather than an entity id (it has an `@`): the test
    /// callers use to choose between resolving and parsing an id.
    pub fn looks_like(text: &str) -> bool {
        text.contains('@')
    }

    /// The host without its port.
    pub fn hostname(&self) -> &str {
        self.host
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.host)
    }

    /// True for a loopback host (`localhost`, `127.x.x.x`), which names resolve over plain
    /// http; every other host over https (DESIGN section 14).
    pub fn is_loopback(&self) -> bool {
        let h = self.hostname();
        h == "localhost"
            || h.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Where the name resolves: `http(s)://host[:port]/.well-known/lcp-names?name=user`.
    pub fn resolve_url(&self) -> String {
        let scheme = if self.is_loopback() { "http" } else { "https" };
        format!(
            "{scheme}://{}/.well-known/lcp-names?name={}",
            self.host, self.user
        )
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

/// The answer of `GET /.well-known/lcp-names?name=user`: pay `entity` naming this `userid`
/// (an opaque account, held under the bank's entity), or, when `transparent`, pay `entity`
/// alone (the customer's own key, which the bank keeps; seed 000 section 5.2's last
/// paragraph: such a transfer names no userid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameAnswer {
    pub entity: String,
    pub userid: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transparent: bool,
    /// Issuers (URLs) whose currency the bank takes for this customer.
    #[serde(default)]
    pub currencies: Vec<String>,
}

/// The answer of a bank's `GET /lcp/v1/account` to an app (`Authorization: Bearer`): whose
/// token it holds, in which currency, and how much of its limit is left. An app that is paid
/// into its customer's account (a storage agent) offers `name` as where to pay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAnswer {
    /// `user@host`: the customer's name.
    pub name: String,
    pub userid: String,
    /// Where transfers to the customer go: the bank's entity, naming `userid` (an opaque
    /// account), or the customer's own key, which the bank keeps (a transparent one).
    pub bank: String,
    /// The token's currency: its issuer's entity id and URL.
    pub issuer: String,
    pub issuer_url: String,
    pub balance: i64,
    /// What the token may still spend (amounts and fees), minor units.
    pub allowance: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        let n = Name::parse("bob@Bank.example:8443").expect("name");
        assert_eq!(n.user, "bob");
        assert_eq!(n.host, "bank.example:8443");
        assert_eq!(n.hostname(), "bank.example");
        assert!(!n.is_loopback());
        assert_eq!(n.to_string(), "bob@bank.example:8443");
        assert_eq!(
            n.resolve_url(),
            "https://bank.example:8443/.well-known/lcp-names?name=bob"
        );
        let local = Name::parse("a.b-c_d@127.0.0.1:9000").expect("loopback name");
        assert!(local.is_loopback());
        assert!(local.resolve_url().starts_with("http://127.0.0.1:9000/"));
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "bob",
            "@host",
            "Bob@host",
            "bob@",
            "bob@host:0",
            "bob@host:99999",
            "bob@ho st",
            "bob@a@b",
            "bob@-host",
            "bob@host..example",
            &format!("{}@host", "a".repeat(65)),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn userids_are_short_lowercase_words() {
        assert!(is_userid("bob"));
        assert!(is_userid("a.b_c-9"));
        assert!(is_userid(&"x".repeat(64)));
        assert!(!is_userid(""));
        assert!(!is_userid("Bob"));
        assert!(!is_userid("bob smith"));
        assert!(!is_userid(&"x".repeat(65)));
    }
}
