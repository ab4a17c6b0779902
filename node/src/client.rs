//! Clients: the generic signed HTTP client every service's client builds on, the issuer client,
//! and the wallet's persisted counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::{sign_request, verify_response, EntityId, ErrorBody, KeyPair};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

/// Longest a request may take, on top of any long-poll wait it asks for.
pub const REQUEST_MS_MAX: u64 = 30_000;
/// Longest a connection attempt may take.
pub const CONNECT_MS_MAX: u64 = 5_000;
/// Longest a client keeps an idle connection for reuse: below the servers' keep-alive
/// (`http::KEEP_ALIVE_MS`, 5 s). A client that reused a connection the server was closing at
/// that moment got "connection closed before message completed" (seen once in CI).
pub const POOL_IDLE_MS_MAX: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The error body's `details`, when it has any (e.g. a `402`'s `amount_due`).
        details: Option<serde_json::Value>,
    },
    #[error("the server's answer could not be understood: {0}")]
    Decode(String),
    #[error("the server's receipt signature does not verify: the answer may be forged")]
    BadReceipt,
    #[error("{0}")]
    Config(String),
    #[error("wallet state file {path}: {message}")]
    State { path: String, message: String },
}

impl ClientError {
    /// The stable code of an API error, if this is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What a `402 payment_required` says is due, when it says.
    pub fn amount_due(&self) -> Option<u64> {
        match self {
            ClientError::Api {
                details: Some(d), ..
            } => d["amount_due"].as_u64(),
            _ => None,
        }
    }
}

/// Refuse a server URL without a scheme up front: the HTTP stack's own error for
/// `127.0.0.1:7000` is "relative URL without a base".
pub fn check_url(url: &str) -> Result<(), ClientError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else if url.contains("://") {
        Err(ClientError::Config(format!(
            "{url:?}: only http:// and https:// URLs are supported"
        )))
    } else {
        Err(ClientError::Config(format!(
            "{url:?} is not a URL: write it as http://{url} (or https://)"
        )))
    }
}

/// Options shared by every client.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Extra PEM root certificate to trust (for self-signed test or private deployments).
    pub ca_cert: Option<PathBuf>,
    /// Longest wait for the next bytes of an answer (none: as long as the server takes). A
    /// server that accepts connections and then hangs would otherwise stall its client.
    pub read_ms_max: Option<u64>,
}

pub fn http_client(options: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(CONNECT_MS_MAX))
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_millis(POOL_IDLE_MS_MAX))
        .tcp_nodelay(true);
    if let Some(ms) = options.read_ms_max {
        builder = builder.read_timeout(Duration::from_millis(ms));
    }
    if let Some(path) = &options.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Config(format!(
                "cannot read CA certificate {}: {e}",
                path.display()
            ))
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            ClientError::Config(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))
}

/// A command's answer, with the server's receipt checked.
#[derive(Debug, Clone)]
pub struct CommandAnswer<T> {
    pub value: T,
    pub counter: u64,
    /// The server's signature over (sender, counter, status, body): proof of the answer.
    pub receipt: String,
}

/// Counters from the clock, strictly increasing within the process: for clients that keep no
/// counter file (agents' and markets' buyers, heartbeats). Servers only need a sender's
/// counters to be unique, but two processes with one key (two backups from one wallet) once
/// drew the same values from the clock. So the low [`ClockCounter::TAG_BITS`] bits are a
/// random tag fixed per instance, and the rest counts milliseconds: two instances collide
/// only if their tags do (one chance in 65,536). A restarted process starts above its
/// predecessor's counters as long as it made fewer than a thousand requests a second.
#[derive(Debug)]
pub struct ClockCounter {
    last: std::sync::atomic::AtomicU64,
    tag: u64,
}

impl ClockCounter {
    pub const TAG_BITS: u32 = 16;

    pub fn next(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let step = 1u64 << Self::TAG_BITS;
        let now = (crate::now_ms() << Self::TAG_BITS) | self.tag;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            // `prev + step` keeps the tag: every value this instance hands out ends in it.
            let next = if prev == 0 {
                now
            } else {
                (prev + step).max(now)
            };
            match self
                .last
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

impl Default for ClockCounter {
    fn default() -> Self {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 2];
        // Without the OS random source the tag is the process id's low bits: still distinct
        // for two processes running at once.
        let tag = match ring::rand::SystemRandom::new().fill(&mut bytes) {
            Ok(()) => u64::from(u16::from_le_bytes(bytes)),
            Err(_) => u64::from(std::process::id()) & 0xffff,
        };
        ClockCounter {
            last: std::sync::atomic::AtomicU64::new(0),
            tag,
        }
    }
}

/// Signs every request for one server with one key (DESIGN section 3).
#[derive(Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    base: String,
    key: Arc<KeyPair>,
    audience: Arc<OnceCell<EntityId>>,
    verify_receipts: bool,
}

impl SignedClient {
    pub fn new(http: reqwest::Client, base_url: &str, key: Arc<KeyPair>) -> SignedClient {
        SignedClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            audience: Arc::new(OnceCell::new()),
            verify_receipts: true,
        }
    }

    /// Accept command answers without checking the server's receipt signature. Only for load
    /// generation on one machine, where the check's CPU would be taken from the server measured.
    pub fn without_receipt_checks(mut self) -> Self {
        self.verify_receipts = false;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: error_chain(&e),
        }
    }

    /// `GET /.well-known/lcp`, unsigned.
    pub async fn descriptor(&self) -> Result<serde_json::Value, ClientError> {
        check_url(&self.base)?;
        let resp = self
            .http
            .get(format!("{}/.well-known/lcp", self.base))
            .timeout(Duration::from_millis(REQUEST_MS_MAX))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(resp).await
    }

    /// `GET /.well-known/lcp`, unsigned, keeping the server's entity in it as the audience
    /// when none is kept yet (so a caller that reads the descriptor anyway saves a request).
    pub async fn describe(&self) -> Result<serde_json::Value, ClientError> {
        let d = self.descriptor().await?;
        if self.audience.get().is_none() {
            if let Some(entity) = d["entity"].as_str().and_then(|e| EntityId::parse(e).ok()) {
                // Another task may have set it meanwhile, from the same server.
                let _ = self.audience.set(entity);
            }
        }
        Ok(d)
    }

    /// The server's entity id (the audience requests are signed for), fetched once.
    pub async fn audience(&self) -> Result<&EntityId, ClientError> {
        self.audience
            .get_or_try_init(|| async {
                let d = self.descriptor().await?;
                let entity = d["entity"].as_str().unwrap_or_default();
                EntityId::parse(entity).map_err(|_| {
                    ClientError::Decode(format!(
                        "{} has no valid entity in /.well-known/lcp",
                        self.base
                    ))
                })
            })
            .await
    }

    /// A signed query (no counter) with a JSON answer. `path_and_query` must be percent-encoded.
    pub async fn query<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        extra_wait_ms: u64,
    ) -> Result<T, ClientError> {
        let resp = self
            .send("GET", path_and_query, Vec::new(), None, &[], extra_wait_ms)
            .await?;
        decode(resp).await
    }

    /// [`SignedClient::query`] with more headers (a payment's, say).
    pub async fn query_with_headers<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        headers: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let resp = self
            .send("GET", path_and_query, Vec::new(), None, headers, 0)
            .await?;
        decode(resp).await
    }

    /// A signed query with a JSON body (e.g. an audit challenge sent with POST).
    pub async fn query_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(
                method,
                path,
                body,
                None,
                &[("content-type", "application/json".to_owned())],
                0,
            )
            .await?;
        decode(resp).await
    }

    /// A signed command with a JSON body; the answer's receipt is verified before it is returned.
    pub async fn command<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        counter: u64,
    ) -> Result<CommandAnswer<T>, ClientError> {
        self.command_with(method, path, body, "application/json", counter)
            .await
    }

    /// A signed command with any body (e.g. object bytes) and a JSON answer.
    pub async fn command_with<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        counter: u64,
    ) -> Result<CommandAnswer<T>, ClientError> {
        self.command_with_headers(method, path, body, content_type, counter, &[])
            .await
    }

    /// [`SignedClient::command_with`] with more headers (a payment's, say).
    pub async fn command_with_headers<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        counter: u64,
        extra: &[(&str, String)],
    ) -> Result<CommandAnswer<T>, ClientError> {
        self.command_full(method, path, body, content_type, counter, extra, 0)
            .await
            .map(|(answer, _)| answer)
    }

    /// A signed JSON command whose answer's headers matter too (a tab's `LCP-Line`); the
    /// receipt is verified as for [`SignedClient::command`].
    pub async fn command_and_headers<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        counter: u64,
        extra: &[(&str, String)],
    ) -> Result<(CommandAnswer<T>, reqwest::header::HeaderMap), ClientError> {
        self.command_full("POST", path, body, "application/json", counter, extra, 0)
            .await
    }

    /// A JSON command whose answer may take `extra_wait_ms` longer than usual (a credit
    /// prepare that waits for the rest of its payment).
    pub async fn command_waiting<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        counter: u64,
        extra_wait_ms: u64,
    ) -> Result<CommandAnswer<T>, ClientError> {
        self.command_full(
            method,
            path,
            body,
            "application/json",
            counter,
            &[],
            extra_wait_ms,
        )
        .await
        .map(|(answer, _)| answer)
    }

    #[allow(clippy::too_many_arguments)]
    async fn command_full<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        counter: u64,
        extra: &[(&str, String)],
        extra_wait_ms: u64,
    ) -> Result<(CommandAnswer<T>, reqwest::header::HeaderMap), ClientError> {
        let audience = self.audience().await?.clone();
        let mut headers = vec![("content-type", content_type.to_owned())];
        headers.extend(extra.iter().cloned());
        let resp = self
            .send(method, path, body, Some(counter), &headers, extra_wait_ms)
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let receipt = resp
            .headers()
            .get(protocol::HEADER_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        let receipt = match receipt {
            Some(sig) if !self.verify_receipts => sig,
            Some(sig)
                if verify_response(
                    &audience,
                    self.key.entity().as_str(),
                    counter,
                    status,
                    &bytes,
                    &sig,
                ) =>
            {
                sig
            }
            // Errors raised before the server knew the counter (e.g. a bad signature) carry no
            // receipt; surface them as API errors rather than as forgeries.
            None if status >= 400 => return Err(api_error(status, &bytes)),
            _ => return Err(ClientError::BadReceipt),
        };
        if status >= 400 {
            return Err(api_error(status, &bytes));
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((
            CommandAnswer {
                value,
                counter,
                receipt,
            },
            headers,
        ))
    }

    /// Send a signed request (a command when `counter` is set) and answer the raw response;
    /// HTTP error statuses are the caller's to interpret. `path` must be percent-encoded.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        counter: Option<u64>,
        headers: &[(&str, String)],
        extra_wait_ms: u64,
    ) -> Result<reqwest::Response, ClientError> {
        check_url(&self.base)?;
        let audience = self.audience().await?.to_string();
        let auth = sign_request(
            &self.key,
            &audience,
            method,
            path,
            crate::now_ms(),
            counter,
            &body,
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Config(format!("bad HTTP method {method}")))?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_millis(REQUEST_MS_MAX + extra_wait_ms))
            .body(body);
        for (name, value) in auth
            .headers()
            .into_iter()
            .chain(headers.iter().map(|(n, v)| (*n, v.clone())))
        {
            req = req.header(name, value);
        }
        req.send().await.map_err(|e| self.unreachable(e))
    }
}

/// The whole body of `resp`, refused (`ClientError::Decode`) past `max_bytes`: no more than
/// that is ever read, whatever the peer sends.
pub async fn body_capped(
    mut resp: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::Decode(format!("an answer larger than {max_bytes} bytes"));
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
    {
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Largest error body read (`check_status`).
pub const ERROR_BODY_BYTES_MAX: usize = 64 * 1024;

/// Turn an error response into [`ClientError::Api`]; pass successes through.
pub async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status().as_u16();
    if status < 400 {
        return Ok(resp);
    }
    // An error body is a short JSON object: no more than this is read of it.
    let bytes = body_capped(resp, ERROR_BODY_BYTES_MAX)
        .await
        .unwrap_or_default();
    Err(api_error(status, &bytes))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            details: b.error.details,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http_error".into(),
            message: String::from_utf8_lossy(bytes).chars().take(200).collect(),
            details: None,
        },
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Decode(error_chain(&e)))?;
    if status >= 400 {
        return Err(api_error(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Percent-encode a query value (everything but RFC 3986 unreserved characters).
/// The value of the unlabelled sample `name` in Prometheus exposition `text`.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of the unlabelled sample `name` in the `/metrics` of the service at `base_url`,
/// or `None` when it does not answer or has no such sample (`lcp bench` and tests read
/// counters this way).
pub async fn metric(http: &reqwest::Client, base_url: &str, name: &str) -> Option<f64> {
    let url = format!("{}/metrics", base_url.trim_end_matches('/'));
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    metric_in(&text, name)
}

pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The wallet's next counter per server, persisted in `<key file>.counters` beside the key.
///
/// A counter is reserved (written and fsynced) before the request that uses it is sent, so a
/// crash can skip counters but never reuse one. If the state file is lost, counters restart at
/// the current time in microseconds, which is above any counter issued before (as long as the
/// clock does not go back), so even then none is reused.
#[derive(Debug, Clone)]
pub struct CounterStore {
    path: PathBuf,
    lock_path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CounterFile {
    /// Next unused counter per server entity id.
    next: BTreeMap<String, u64>,
}

impl CounterStore {
    pub fn beside_key(key_path: &Path) -> CounterStore {
        let mut name = key_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".counters");
        let path = key_path.with_file_name(name);
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        CounterStore {
            path,
            lock_path: PathBuf::from(lock),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reserve `count` consecutive counters for `server`; answers the first. Blocking file IO,
    /// serialised across processes by an exclusive lock on `<state>.lock`.
    pub fn reserve(&self, server: &str, count: u64) -> Result<u64, ClientError> {
        let err = |message: String| ClientError::State {
            path: self.path.display().to_string(),
            message,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| err(format!("cannot open lock file: {e}")))?;
        lock.lock().map_err(|e| err(format!("cannot lock: {e}")))?;
        let mut state: CounterFile = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                err(format!(
                    "corrupt ({e}); move it aside to start fresh counters"
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CounterFile::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        let now_us = crate::now_ms().saturating_mul(1000);
        let first = state
            .next
            .get(server)
            .copied()
            .unwrap_or(0)
            .max(now_us)
            .max(1);
        let next = first
            .checked_add(count)
            .ok_or_else(|| err("counter space exhausted".into()))?;
        state.next.insert(server.to_owned(), next);
        let text = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
        write_durably(&self.path, &text).map_err(|e| err(e.to_string()))?;
        drop(lock);
        Ok(first)
    }
}

/// Replace `path` with `bytes` so that a crash leaves the old or the new content, never a
/// mix, and the new content is on disk when this returns: write a temporary file beside it,
/// fsync, rename over, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each instance's counters increase, keep its tag, and two instances (two processes
    /// with one key) do not hand out the same values even at the same moment.
    #[test]
    fn clock_counters_of_two_instances_differ() {
        let (a, b) = (ClockCounter::default(), ClockCounter::default());
        if a.tag == b.tag {
            return; // one chance in 65,536: nothing to compare
        }
        let mask = (1u64 << ClockCounter::TAG_BITS) - 1;
        let xs: Vec<u64> = (0..2000).map(|_| a.next()).collect();
        let ys: std::collections::HashSet<u64> = (0..2000).map(|_| b.next()).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "increasing");
        assert!(xs.iter().all(|x| x & mask == a.tag), "tagged");
        assert!(xs.iter().all(|x| !ys.contains(x)), "no value in common");
    }

    #[test]
    fn counters_never_go_back_even_across_instances() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("w.key");
        let a = CounterStore::beside_key(&key);
        let first = a.reserve("issuer-a", 5).expect("reserve");
        let second = CounterStore::beside_key(&key)
            .reserve("issuer-a", 1)
            .expect("reserve");
        assert!(
            second >= first + 5,
            "{second} must follow the reserved range of {first}"
        );
        let other = a.reserve("issuer-b", 1).expect("reserve");
        assert!(other >= 1);
        // A lost state file restarts at the clock, still above what was handed out.
        std::fs::remove_file(a.path()).expect("rm");
        // The clock counts milliseconds: a restart is at least one later.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after_loss = a.reserve("issuer-a", 1).expect("reserve");
        assert!(after_loss > second);
        std::fs::write(a.path(), b"garbage").expect("write");
        assert!(matches!(
            a.reserve("issuer-a", 1),
            Err(ClientError::State { .. })
        ));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("order 1/ä"), "order%201%2F%C3%A4");
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
    }
}
