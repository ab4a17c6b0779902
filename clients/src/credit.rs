//! The wallet's side of credit lines and payments over credit paths (DESIGN 12, issue 17):
//! what `lcp credit lines|open|pay|trust` do, for the CLI and for tests.
//!
//! A payment from a wallet goes through one node it has a line with (`via`):
//! 1. ask `via` for the capacities toward the target (`GET /v1/credit/paths`), and add the
//!    wallet's own hop to `via` from `via`'s copy of their lines;
//! 2. split the amount over paths ([`protocol::credit::flow::split`]);
//! 3. make a secret, seal it to the target's `credit_key` (its descriptor), and send one
//!    prepare per path to `via`, all at once; each answers the secret when the whole
//!    payment arrived, or an error (then nothing moved: the target released every hold).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use node::client::{ClientError, SignedClient};
use protocol::credit::flow::{self, Edge, PathShare, PathsAnswer};
use protocol::credit::{
    capacity, check_secret, condition_of, Fulfilled, Line, LineState, LineUpdate, LineView,
    LinesPage, Prepare, Reject, TrustAnswer, ANSWER_SLACK_MS, HOP_EXPIRY_MARGIN_MS, PATH_HOPS_MAX,
    SECRET_BYTES,
};
use protocol::{EntityId, KeyPair};
use serde::Serialize;

/// How long a payment waits for all its paths by default (ms).
pub const PAY_WAIT_MS_DEFAULT: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CreditPayError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the paths known toward {to} carry at most {most} of the {amount} asked")]
    Capacity { to: String, amount: u64, most: u64 },
    #[error("{0}")]
    Target(String),
    #[error("the payment did not arrive whole ({code}: {message}); nothing moved")]
    Failed { code: String, message: String },
}

impl CreditPayError {
    /// A stable code for `--json` output and scripts.
    pub fn code(&self) -> &str {
        match self {
            CreditPayError::Client(e) => e.code().unwrap_or("unreachable"),
            CreditPayError::Capacity { .. } => "insufficient_capacity",
            CreditPayError::Target(_) => "unknown_target",
            CreditPayError::Failed { code, .. } => code,
        }
    }
}

/// Counters for the signed commands one payment sends (one per prepare or reject).
pub struct Counters {
    next: AtomicU64,
}

impl Counters {
    /// Counters from `first` on (a block the caller reserved).
    pub fn from(first: u64) -> Counters {
        Counters {
            next: AtomicU64::new(first),
        }
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The next counter, for a command sent by hand.
    pub fn take(&self) -> u64 {
        self.next()
    }
}

/// Commands one payment sends at most, over all its attempts: a prepare per path and a
/// reject each time ([`PAY_PATHS_MAX`] x [`PAY_ATTEMPTS_MAX`] stays within it).
pub const PAY_COMMANDS_MAX: u64 = 64;
/// Paths one payment takes at most.
pub const PAY_PATHS_MAX: usize = 16;

/// A node's lines with `party`.
pub async fn lines(
    http: &reqwest::Client,
    node_url: &str,
    party: &str,
) -> Result<Vec<LineView>, ClientError> {
    let url = format!(
        "{}/v1/credit/lines?party={party}",
        node_url.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let resp = node::client::check_status(resp).await?;
    let page: LinesPage = resp
        .json()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    Ok(page.lines)
}

/// What the wallet asks of a node: extend it a line (`Give`), or be extended one (`Ask`).
#[derive(Debug, Clone, Copy)]
pub enum Open {
    Give(u64),
    Ask(u64),
}

/// Open a line between the wallet and `node`: given (the wallet signs as creditor, the node
/// countersigns) or asked for (the node proposes, the wallet countersigns and sends it
/// back). Answers the line in force, both signatures on it.
pub async fn open(
    node: &SignedClient,
    key: &KeyPair,
    currency: &str,
    how: Open,
    counters: &Counters,
) -> Result<LineUpdate, ClientError> {
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
    let proposal = match how {
        Open::Give(limit) => {
            let node_entity = node.audience().await?.to_string();
            let state = LineState {
                id: uuid::Uuid::new_v4().to_string(),
                creditor: key.entity().to_string(),
                debtor: node_entity,
                currency: currency.to_owned(),
                limit,
                owed: 0,
                seq: 1,
            };
            LineUpdate::sign(state, key).map_err(|e| ClientError::Config(e.to_string()))?
        }
        Open::Ask(limit) => {
            let body = json(serde_json::json!({"ask": {"currency": currency, "limit": limit}}));
            let mut proposal = node
                .command::<LineUpdate>("POST", "/v1/credit/lines", body, counters.next())
                .await?
                .value;
            let s = &proposal.state;
            if s.debtor != key.entity().as_str() || s.currency != currency || s.limit != limit {
                return Err(ClientError::Decode(
                    "the node proposed another line than asked".into(),
                ));
            }
            proposal
                .verify()
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            proposal
                .countersign(key)
                .map_err(|e| ClientError::Config(e.to_string()))?;
            proposal
        }
    };
    let body = json(serde_json::json!({ "update": proposal }));
    let in_force = node
        .command::<LineUpdate>("POST", "/v1/credit/lines", body, counters.next())
        .await?
        .value;
    if in_force.state != proposal.state || in_force.verify() != Ok(true) {
        return Err(ClientError::Decode(
            "the node answered a line not signed by both".into(),
        ));
    }
    Ok(in_force)
}

/// A payment's plan: the paths and what each carries, and where the target answers.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub shares: Vec<PathShare>,
    pub target_url: String,
    pub edges: usize,
}

/// What a node's line views say the wallet can pay it (the wallet's own hop).
fn own_edge(views: &[LineView], payer: &str, node: &str, url: &str) -> Edge {
    let line = |creditor: &str, debtor: &str| {
        views
            .iter()
            .find(|v| v.creditor == creditor && v.debtor == debtor)
            .map(|v| Line {
                limit: v.limit,
                owed: v.owed,
                held: v.held,
                repaying: v.repaying,
            })
    };
    let to_from = line(node, payer);
    let from_to = line(payer, node);
    Edge {
        from: payer.to_owned(),
        to: node.to_owned(),
        url: url.to_owned(),
        capacity: capacity(to_from.as_ref(), from_to.as_ref()),
    }
}

/// The most the edges carry from `payer` to `to` by [`flow::split`] (binary search).
fn most(edges: &[Edge], payer: &str, to: &str) -> u64 {
    let (mut lo, mut hi) = (
        0u64,
        edges
            .iter()
            .map(|e| e.capacity)
            .fold(0u64, u64::saturating_add),
    );
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if flow::split(edges, payer, to, mid).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Find paths for `amount` of `currency` from the wallet through `via` to `to`.
pub async fn plan(
    http: &reqwest::Client,
    key: &KeyPair,
    via: &SignedClient,
    to: &str,
    currency: &str,
    amount: u64,
) -> Result<Plan, CreditPayError> {
    let payer = key.entity().to_string();
    let via_entity = via.audience().await?.to_string();
    let mut edges = Vec::new();
    if via_entity != to {
        let url = format!(
            "{}/v1/credit/paths?to={to}&currency={currency}&amount={amount}&hops_left={}&seen={payer}",
            via.base_url(),
            PATH_HOPS_MAX - 1
        );
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let resp = node::client::check_status(resp).await?;
        let body = node::client::body_capped(resp, flow::ANSWER_BYTES_MAX).await?;
        let answer: PathsAnswer =
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        edges = answer.edges;
    }
    let views = lines(http, via.base_url(), &payer).await?;
    edges.push(own_edge(&views, &payer, &via_entity, via.base_url()));
    let shares = flow::split(&edges, &payer, to, amount).filter(|s| s.len() <= PAY_PATHS_MAX);
    let Some(shares) = shares else {
        return Err(CreditPayError::Capacity {
            to: to.to_owned(),
            amount,
            most: most(&edges, &payer, to),
        });
    };
    let target_url = if via_entity == to {
        via.base_url().to_owned()
    } else {
        edges
            .iter()
            .find(|e| e.to == to && !e.url.is_empty())
            .map(|e| e.url.clone())
            .ok_or_else(|| CreditPayError::Target(format!("no node said where {to} answers")))?
    };
    Ok(Plan {
        shares,
        target_url,
        edges: edges.len(),
    })
}

/// A payment that arrived: its id and the paths it took.
#[derive(Debug, Clone, Serialize)]
pub struct Paid {
    pub payment: String,
    pub amount: u64,
    pub currency: String,
    pub to: String,
    pub paths: Vec<PathShare>,
}

/// Send `shares` (what each path carries) of a payment of `total` through `via` to the
/// target, whose descriptor at `target_url` gives its credit key. Every path is prepared at
/// once; the payment arrived when every prepare answers the secret. `total` may exceed the
/// shares' sum (then the target never fulfils, and every hold is released: for tests).
/// `transaction_id` says what the payment is for at the target (a contract id at an agent).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    http: &reqwest::Client,
    key: &Arc<KeyPair>,
    via: &SignedClient,
    target_url: &str,
    currency: &str,
    shares: &[PathShare],
    total: u64,
    transaction_id: Option<&str>,
    wait_ms: u64,
    counters: &Counters,
) -> Result<Paid, CreditPayError> {
    let target = SignedClient::new(http.clone(), target_url, key.clone());
    let descriptor = target.descriptor().await?;
    let to = descriptor["entity"].as_str().unwrap_or_default().to_owned();
    if shares.iter().any(|s| s.path.last() != Some(&to)) {
        return Err(CreditPayError::Target(format!(
            "{target_url} answers as {to}, not as the paths' target"
        )));
    }
    let credit_key = descriptor["credit_key"].as_str().ok_or_else(|| {
        CreditPayError::Target(format!(
            "{target_url} shows no credit_key: not a credit node"
        ))
    })?;
    // Sealed only to a key the target signed, whoever answered for it.
    let vouched = descriptor["credit_key_signature"]
        .as_str()
        .zip(EntityId::parse(&to).ok())
        .is_some_and(|(sig, entity)| {
            protocol::credit::seal::verify_credit_key(&entity, credit_key, sig)
        });
    if !vouched {
        return Err(CreditPayError::Target(format!(
            "{target_url}'s credit_key is not signed by {to}"
        )));
    }
    let secret = random_secret()?;
    let condition = condition_of(&secret);
    let sealed = protocol::credit::seal::seal(&secret, &condition, credit_key)
        .map_err(|e| CreditPayError::Target(e.to_string()))?;
    let payment = uuid::Uuid::new_v4().to_string();
    let hops_max = shares.iter().map(|s| s.path.len() - 1).max().unwrap_or(1) as u64;
    let expires_at = node::now_ms() + wait_ms + hops_max * HOP_EXPIRY_MARGIN_MS;
    let prepares = shares.iter().map(|share| {
        let p = Prepare {
            payment: payment.clone(),
            amount: share.amount,
            total,
            currency: currency.to_owned(),
            path: share.path.clone(),
            condition: condition.clone(),
            sealed_secret: sealed.clone(),
            expires_at,
            lines: Vec::new(),
            transaction_id: transaction_id.map(str::to_owned),
        };
        let body = serde_json::to_vec(&p).unwrap_or_default();
        let counter = counters.next();
        let wait = expires_at.saturating_sub(node::now_ms()) + ANSWER_SLACK_MS;
        async move {
            via.command_waiting::<Fulfilled>("POST", "/v1/credit/prepare", body, counter, wait)
                .await
        }
    });
    let answers = join_all(prepares).await;
    // The target reveals the secret only once the whole total is in: any path answering it
    // means the payment arrived, whatever the others heard.
    let arrived = answers
        .iter()
        .any(|a| matches!(a, Ok(f) if check_secret(&f.value.secret, &condition).is_ok()));
    let mut failure = None;
    for a in answers.iter().filter(|_| !arrived) {
        match a {
            Ok(f) if check_secret(&f.value.secret, &condition).is_ok() => {}
            Ok(_) => {
                failure = Some((
                    "wrong_secret".to_owned(),
                    "a hop answered a wrong secret".to_owned(),
                ))
            }
            Err(ClientError::Api { code, message, .. }) => {
                failure.get_or_insert((code.clone(), message.clone()));
            }
            Err(e) => {
                failure.get_or_insert(("unreachable".to_owned(), e.to_string()));
            }
        }
    }
    if let Some((code, message)) = failure {
        // Call off what may still wait (the other paths hold until the target gives up).
        let r = Reject {
            payment: payment.clone(),
            reason: message.clone(),
        };
        let body = serde_json::to_vec(&r).unwrap_or_default();
        let _ = via
            .command::<serde_json::Value>("POST", "/v1/credit/reject", body, counters.next())
            .await;
        return Err(CreditPayError::Failed { code, message });
    }
    Ok(Paid {
        payment,
        amount: shares.iter().map(|s| s.amount).sum(),
        currency: currency.to_owned(),
        to,
        paths: shares.to_vec(),
    })
}

/// Plans a payment tries at most: capacities seen by a plan may be taken by other payments
/// before its prepares arrive (`over_limit`), and a fresh plan then finds what is left.
pub const PAY_ATTEMPTS_MAX: u32 = 3;

/// Plan and send a payment of `amount`, planning again (at most [`PAY_ATTEMPTS_MAX`] times)
/// when a line on the way filled up meanwhile. Nothing moved in a failed attempt.
#[allow(clippy::too_many_arguments)]
pub async fn pay(
    http: &reqwest::Client,
    key: &Arc<KeyPair>,
    via: &SignedClient,
    to: &str,
    currency: &str,
    amount: u64,
    transaction_id: Option<&str>,
    wait_ms: u64,
    counters: &Counters,
) -> Result<Paid, CreditPayError> {
    let mut attempt = 1;
    loop {
        let plan = plan(http, key, via, to, currency, amount).await?;
        let sent = send(
            http,
            key,
            via,
            &plan.target_url,
            currency,
            &plan.shares,
            amount,
            transaction_id,
            wait_ms,
            counters,
        )
        .await;
        match sent {
            Err(CreditPayError::Failed { code, .. })
                if code == "over_limit" && attempt < PAY_ATTEMPTS_MAX =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `via`'s trust in `to` (seed 003).
pub async fn trust(
    http: &reqwest::Client,
    via_url: &str,
    to: &str,
) -> Result<TrustAnswer, ClientError> {
    let url = format!("{}/v1/credit/trust?to={to}", via_url.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
    node::client::check_status(resp)
        .await?
        .json()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))
}

fn random_secret() -> Result<[u8; SECRET_BYTES], ClientError> {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ClientError::Config("no random source".into()))?;
    Ok(secret)
}
