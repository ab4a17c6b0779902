//! Payees by entity id or by name (DESIGN 14): `bob@bank.example` resolves at the bank
//! (`GET /.well-known/lcp-names?name=bob`) to the bank's entity and the `userid` a transfer
//! names, so wallets and services accept a name wherever they accept an entity id.

use node::client::{body_capped, check_status, ClientError, ClientOptions};
use protocol::name::{Name, NameAnswer};
use protocol::EntityId;

/// Largest name answer read: a short JSON object.
const NAME_ANSWER_BYTES_MAX: usize = 16 * 1024;
/// Longest wait for a bank to answer a name.
const RESOLVE_MS_MAX: u64 = 10_000;

/// Whom a transfer pays: an entity, and the customer of that entity it names when the
/// entity is a bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payee {
    pub entity: EntityId,
    pub userid: Option<String>,
    /// The name it was resolved from, for messages.
    pub name: Option<Name>,
}

impl Payee {
    pub fn entity(entity: EntityId) -> Payee {
        Payee {
            entity,
            userid: None,
            name: None,
        }
    }
}

impl std::fmt::Display for Payee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} ({})", self.entity),
            None => write!(f, "{}", self.entity),
        }
    }
}

/// An entity id as it is, or a name resolved at its bank. Errors say which: a malformed id or
/// name, an unknown name, a bank that does not answer. For a one-off (a CLI); a service that
/// resolves names per request keeps one HTTP client and calls [`resolve_with`].
pub async fn resolve(text: &str, options: &ClientOptions) -> Result<Payee, ClientError> {
    let mut options = options.clone();
    options.read_ms_max = Some(options.read_ms_max.unwrap_or(RESOLVE_MS_MAX));
    resolve_with(text, &node::client::http_client(&options)?).await
}

/// [`resolve`] with the caller's HTTP client.
pub async fn resolve_with(text: &str, http: &reqwest::Client) -> Result<Payee, ClientError> {
    if !Name::looks_like(text) {
        let entity = EntityId::parse(text).map_err(|_| {
            ClientError::Config(format!(
                "{text:?} is neither an entity id (ed25519:<64 hex>) nor a name (user@host)"
            ))
        })?;
        return Ok(Payee::entity(entity));
    }
    let name = Name::parse(text).map_err(|e| ClientError::Config(e.to_string()))?;
    let url = name.resolve_url();
    let resp = http
        .get(&url)
        .timeout(std::time::Duration::from_millis(RESOLVE_MS_MAX))
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: format!("cannot resolve {name}: {e}"),
        })?;
    let resp = check_status(resp).await.map_err(|e| match e.code() {
        Some("unknown_name") => {
            ClientError::Config(format!("{name}: no such name at {}", name.host))
        }
        _ => e,
    })?;
    let bytes = body_capped(resp, NAME_ANSWER_BYTES_MAX).await?;
    let answer: NameAnswer = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Decode(format!("{url}: not a name answer: {e}")))?;
    let entity = EntityId::parse(&answer.entity)
        .map_err(|_| ClientError::Decode(format!("{url}: the answer's entity is not an id")))?;
    if answer.userid != name.user {
        return Err(ClientError::Decode(format!(
            "{url}: asked for {:?}, the bank answered for {:?}",
            name.user, answer.userid
        )));
    }
    Ok(Payee {
        entity,
        userid: Some(answer.userid),
        name: Some(name),
    })
}
