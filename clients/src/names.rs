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
        // A transparent account is its own key: a transfer to it names no customer.
        userid: (!answer.transparent).then_some(answer.userid),
        name: Some(name),
    })
}

/// How long where to pay an agent is remembered ([`agent_payee`]): an agent that moves its
/// account is paid at the new one within this.
pub const AGENT_PAYEE_TTL_MS: u64 = 600_000;
/// At most this many agents' payees are remembered; past it the memory starts again.
const AGENT_PAYEES_MAX: usize = 4_096;

type PayeeMemory = std::sync::Mutex<std::collections::HashMap<(String, String), (Payee, u64)>>;

fn payee_memory() -> &'static PayeeMemory {
    static MEMORY: std::sync::OnceLock<PayeeMemory> = std::sync::OnceLock::new();
    MEMORY.get_or_init(Default::default)
}

/// One HTTP client for the payee lookups of a process (made at the first).
fn shared_http() -> Result<reqwest::Client, ClientError> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(h) = HTTP.get() {
        return Ok(h.clone());
    }
    let made = node::client::http_client(&ClientOptions {
        read_ms_max: Some(RESOLVE_MS_MAX),
        ..Default::default()
    })?;
    Ok(HTTP.get_or_init(|| made).clone())
}

fn remember(agent: &EntityId, issuer: &EntityId, payee: &Payee) {
    let mut m = payee_memory().lock().unwrap_or_else(|p| p.into_inner());
    if m.len() >= AGENT_PAYEES_MAX {
        m.clear();
    }
    m.insert(
        (agent.to_string(), issuer.to_string()),
        (payee.clone(), node::now_ms()),
    );
}

/// Whom to pay for `agent` in `issuer`'s currency, by its offer's `pay_to` (DESIGN 14): the
/// name resolved, or the agent itself when the offer names nobody. Remembered for
/// [`agent_payee`].
pub async fn offer_payee(
    terms: &protocol::market::OfferCurrency,
    agent: &EntityId,
) -> Result<Payee, ClientError> {
    let payee = match &terms.pay_to {
        Some(to) => resolve_with(to, &shared_http()?).await?,
        None => Payee::entity(agent.clone()),
    };
    remember(agent, &terms.issuer, &payee);
    Ok(payee)
}

/// Whom to pay for `agent` (reached at `endpoint`) in `issuer`'s currency: the `pay_to` its
/// descriptor names for that currency, resolved, or the agent itself. Asked once per
/// [`AGENT_PAYEE_TTL_MS`]; an agent that does not answer is an error (paying its own entity
/// instead could put the money where the agent never looks).
pub async fn agent_payee(
    endpoint: &str,
    agent: &EntityId,
    issuer: &EntityId,
) -> Result<Payee, ClientError> {
    let now = node::now_ms();
    if let Some((payee, at)) = payee_memory()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(agent.to_string(), issuer.to_string()))
    {
        if at.saturating_add(AGENT_PAYEE_TTL_MS) > now {
            return Ok(payee.clone());
        }
    }
    let http = shared_http()?;
    let probe = node::client::SignedClient::new(
        http.clone(),
        endpoint,
        std::sync::Arc::new(
            protocol::KeyPair::generate().map_err(|e| ClientError::Config(e.to_string()))?,
        ),
    );
    let d = probe.descriptor().await?;
    if d["entity"].as_str() != Some(agent.as_str()) {
        return Err(ClientError::Decode(format!(
            "{endpoint} is not agent {agent} (its descriptor names {})",
            d["entity"]
        )));
    }
    let pay_to = d["currencies"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["issuer"].as_str() == Some(issuer.as_str()))
            .and_then(|c| c["pay_to"].as_str().map(str::to_owned))
    });
    let payee = match pay_to {
        Some(to) => resolve_with(&to, &http).await?,
        None => Payee::entity(agent.clone()),
    };
    remember(agent, issuer, &payee);
    Ok(payee)
}
