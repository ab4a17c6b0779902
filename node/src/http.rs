//! Running an actix-web server for any service: on its own thread with its own actix system,
//! bound before `spawn` returns (port 0 allowed), TLS with rustls, stopped when dropped.
//! Every service's `serve` builds on this, so they all print the same `listening on` line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::{web, App, HttpServer};

/// How long `spawn` waits for the server thread to bind before giving up.
const BIND_WAIT_MS_MAX: u64 = 10_000;
/// Connections waiting to be accepted, per listener.
const BACKLOG_MAX: u32 = 4096;
/// How long a server keeps an idle keep-alive connection open (actix's default, made
/// explicit). Clients give theirs up sooner (`client::POOL_IDLE_MS_MAX`), so a client never
/// reuses a connection the server is closing.
pub const KEEP_ALIVE_MS: u64 = 5_000;
const _: () = assert!(crate::client::POOL_IDLE_MS_MAX < KEEP_ALIVE_MS);

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running HTTP server. Dropping it stops the server.
pub struct HttpHandle {
    /// `http://HOST:PORT` or `https://HOST:PORT`, with the real port.
    pub url: String,
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl HttpHandle {
    /// Block until the server stops (SIGINT/SIGTERM, or [`HttpHandle::stop`] from elsewhere).
    pub fn wait(mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }

    pub fn stop(&self) {
        // The stop command is sent when called; the returned future only awaits completion.
        drop(self.handle.stop(false));
    }
}

/// Longest dropping a [`HttpHandle`] waits for its server thread to end.
pub const STOP_WAIT_MS_MAX: u64 = 5_000;

impl Drop for HttpHandle {
    /// Stop the server and wait (at most [`STOP_WAIT_MS_MAX`]) until its thread has ended, so
    /// a dropped server answers nothing more: not even on a keep-alive connection a client
    /// pooled before (a worker finishing its shutdown used to answer one such request, and a
    /// "stopped" agent then passed the market's probe).
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_millis(STOP_WAIT_MS_MAX);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Bind `listen` and serve the routes `configure` registers. `on_start` runs inside the server's
/// actix system once it is bound: spawn background tasks (`actix_web::rt::spawn`) there.
/// `workers` 0 means one per core.
pub fn spawn<C, S>(
    name: &str,
    listen: &str,
    tls: Option<&TlsFiles>,
    workers: usize,
    configure: C,
    on_start: S,
) -> anyhow::Result<HttpHandle>
where
    C: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    S: FnOnce() + Send + 'static,
{
    let tls = tls.map(load_tls).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let workers = match workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let listen_owned = listen.to_owned();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-http"))
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(extractor_errors::query())
                        .app_data(extractor_errors::path())
                        .app_data(extractor_errors::json())
                        .configure(configure.clone())
                })
                .workers(workers)
                .keep_alive(std::time::Duration::from_millis(KEEP_ALIVE_MS))
                .backlog(BACKLOG_MAX)
                .max_connection_rate(4096);
                let bound = match tls {
                    Some(config) => server.bind_rustls_0_23(&listen_owned, config),
                    None => server.bind(&listen_owned),
                };
                let server = match bound {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return Ok(());
                    }
                };
                let addrs = server.addrs();
                let running = server.run();
                let _ = ready_tx.send(Ok((addrs, running.handle())));
                on_start();
                running.await
            })
        })?;
    let (addrs, handle) = ready_rx
        .recv_timeout(Duration::from_millis(BIND_WAIT_MS_MAX))
        .map_err(|_| anyhow::anyhow!("the HTTP server did not start within {BIND_WAIT_MS_MAX} ms"))?
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = *addrs
        .first()
        .ok_or_else(|| anyhow::anyhow!("the server bound no address"))?;
    Ok(HttpHandle {
        url: format!("{scheme}://{addr}"),
        addr,
        handle,
        thread: Some(thread),
    })
}

fn load_tls(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context;
    let cert_pem = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?;
    let key_pem = std::fs::read(&files.key)
        .with_context(|| format!("cannot read {}", files.key.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", files.cert.display()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} is not a PEM private key", files.key.display()))?
        .ok_or_else(|| anyhow::anyhow!("{} holds no private key", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not form a usable pair")?;
    Ok(config)
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Slower than [`BODY_RATE_MIN_BYTES_PER_S`] after [`BODY_GRACE_MS`]: `408
    /// body_incomplete` under the body policy (`crate::service`).
    #[error("the body arrived slower than {BODY_RATE_MIN_BYTES_PER_S} bytes/s")]
    TooSlow,
    #[error("the body could not be read: {0}")]
    Read(String),
}

/// A body may take this long before the minimum rate applies (TLS set-up, a slow start).
pub const BODY_GRACE_MS: u64 = 10_000;
/// After the grace period a body must have arrived at this average rate at least, or the
/// request is dropped: a client trickling a few bytes a second would otherwise hold an upload
/// slot (and its buffer) for as long as it liked. 16 KiB/s is a 128 kbit/s uplink.
pub const BODY_RATE_MIN_BYTES_PER_S: u64 = 16 * 1024;

/// Read the whole body, refusing more than `limit` bytes before buffering them, and dropping a
/// body that arrives slower than [`BODY_RATE_MIN_BYTES_PER_S`] after [`BODY_GRACE_MS`].
pub async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: u64,
) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let capacity = usize::try_from(declared.unwrap_or(0)).unwrap_or(0);
    let mut body = bytes::BytesMut::with_capacity(capacity);
    let started = tokio::time::Instant::now();
    loop {
        // The next chunk must come before the bytes so far fall below the minimum rate.
        let due_ms = BODY_GRACE_MS
            .saturating_add((body.len() as u64).saturating_mul(1000) / BODY_RATE_MIN_BYTES_PER_S);
        let deadline = started + Duration::from_millis(due_ms);
        let next = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(next) => next,
            Err(_) => return Err(BodyError::TooSlow),
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Verify a signed request (DESIGN section 3) against this server's entity id and clock.
pub fn authenticate(
    req: &actix_web::HttpRequest,
    body: &[u8],
    audience: &str,
    kind: protocol::RequestKind,
) -> Result<protocol::VerifiedRequest, protocol::AuthError> {
    let auth = auth_headers(req)?;
    protocol::verify_request(
        &auth,
        audience,
        req.method().as_str(),
        path_and_query(req),
        body,
        crate::now_ms(),
        kind,
    )
}

/// [`authenticate`] with the signature checked by `verifier`, in a batch with whatever other
/// requests are waiting: the same verdict, about half the CPU under load.
pub async fn authenticate_batched(
    req: &actix_web::HttpRequest,
    body: &[u8],
    audience: &str,
    kind: protocol::RequestKind,
    verifier: &crate::verifier::Verifier,
) -> Result<protocol::VerifiedRequest, protocol::AuthError> {
    let auth = auth_headers(req)?;
    let pending = protocol::prepare_request(
        &auth,
        audience,
        req.method().as_str(),
        path_and_query(req),
        &protocol::sha256_hex(body),
        crate::now_ms(),
        kind,
    )?;
    verifier.verify(pending).await
}

fn auth_headers(
    req: &actix_web::HttpRequest,
) -> Result<protocol::RequestAuth, protocol::AuthError> {
    protocol::RequestAuth::from_headers(|name| {
        req.headers().get(name).and_then(|v| v.to_str().ok())
    })
}

/// The path and query as signed (DESIGN section 3).
fn path_and_query(req: &actix_web::HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
}

/// Verify a request's signature before its body is read, against the body hash it declares in
/// `LCP-Content-SHA256`. `Ok(None)` when it declares none (the caller then reads the body and
/// uses [`authenticate_body`]). After `Ok(Some(v))` the caller must check that the body it reads
/// hashes to `v.body_sha256` ([`body_matches`]) before acting on it.
pub fn authenticate_declared(
    req: &actix_web::HttpRequest,
    audience: &str,
    kind: protocol::RequestKind,
) -> Result<Option<protocol::VerifiedRequest>, protocol::AuthError> {
    let auth = auth_headers(req)?;
    if auth.content_sha256.is_empty() {
        return Ok(None);
    }
    let declared = auth
        .declared_body_sha256()
        .ok_or(protocol::AuthError::InvalidHeader(
            protocol::HEADER_CONTENT_SHA256,
        ))?;
    protocol::verify_request_prehashed(
        &auth,
        audience,
        req.method().as_str(),
        path_and_query(req),
        declared,
        crate::now_ms(),
        kind,
    )
    .map(Some)
}

/// Whether `body` hashes to `sha256_hex`, hashed off the async workers when it is large.
pub async fn body_matches(body: bytes::Bytes, sha256_hex: &str) -> bool {
    if body.len() < BODY_HASH_INLINE_BYTES_MAX {
        return protocol::sha256_hex(&body) == sha256_hex;
    }
    let expected = sha256_hex.to_owned();
    tokio::task::spawn_blocking(move || protocol::sha256_hex(&body) == expected)
        .await
        .unwrap_or(false)
}

/// Bodies at least this large are verified (hashed) on the blocking pool, not on an async
/// worker: hashing 64 MiB takes tens of milliseconds that would stall every other connection.
pub const BODY_HASH_INLINE_BYTES_MAX: usize = 64 << 10;

/// [`authenticate`] for requests whose body may be large: the body is hashed off the async
/// workers when it is over [`BODY_HASH_INLINE_BYTES_MAX`].
pub async fn authenticate_body(
    req: &actix_web::HttpRequest,
    body: bytes::Bytes,
    audience: &str,
    kind: protocol::RequestKind,
) -> Result<protocol::VerifiedRequest, protocol::AuthError> {
    if body.len() < BODY_HASH_INLINE_BYTES_MAX {
        return authenticate(req, &body, audience, kind);
    }
    let auth = auth_headers(req)?;
    let path_and_query = path_and_query(req).to_owned();
    let (method, audience) = (req.method().as_str().to_owned(), audience.to_owned());
    tokio::task::spawn_blocking(move || {
        protocol::verify_request(
            &auth,
            &audience,
            &method,
            &path_and_query,
            &body,
            crate::now_ms(),
            kind,
        )
    })
    .await
    // Verification does not panic; if it ever did, the request is refused, not accepted.
    .unwrap_or(Err(protocol::AuthError::InvalidSignature))
}

/// Sign a command's answer (the receipt) and build the response.
pub fn signed_response(
    key: &protocol::KeyPair,
    verified: &protocol::VerifiedRequest,
    status: u16,
    body: String,
) -> actix_web::HttpResponse {
    let counter = verified.counter.unwrap_or(0);
    let signature = protocol::sign_response(
        key,
        verified.entity.as_str(),
        counter,
        status,
        body.as_bytes(),
    );
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    actix_web::HttpResponse::build(code)
        .insert_header((protocol::HEADER_ENTITY, key.entity().as_str()))
        .insert_header((protocol::HEADER_SIGNATURE, signature))
        .content_type("application/json")
        .body(body)
}

/// Every server answers a query string, path segment or JSON body its extractor cannot read
/// with `400 invalid_request` and a JSON error body (the stable form of every other error),
/// not actix's plain-text default.
mod extractor_errors {
    use actix_web::{error, web, HttpResponse};

    use protocol::ErrorBody;

    fn invalid(what: &str, e: impl std::fmt::Display) -> error::Error {
        let body = ErrorBody::new("invalid_request", format!("{what}: {e}"));
        error::InternalError::from_response(
            format!("{what}: {e}"),
            HttpResponse::BadRequest().json(body),
        )
        .into()
    }

    pub fn query() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|e, _| invalid("bad query string", e))
    }

    pub fn path() -> web::PathConfig {
        web::PathConfig::default().error_handler(|e, _| invalid("bad path", e))
    }

    pub fn json() -> web::JsonConfig {
        web::JsonConfig::default().error_handler(|e, _| invalid("bad JSON body", e))
    }
}
