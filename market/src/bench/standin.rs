//! The stand-in for every synthetic agent's server: one actix server in this process, on one
//! loopback address per synthetic /24 network (`127.A.B.1`, port picked by the kernel),
//! answering `GET /agent/<i>/.well-known/lcp` as agent `i`.
//!
//! Why this shape: the market checks an offer by fetching `<endpoint>/.well-known/lcp` (the
//! endpoint's path kept) and comparing the `entity` it answers with the offer's agent, and it
//! groups agents by the /24 of their endpoint's address (`book::network_of`). So one listener
//! per network and a path per agent pass the real check, with as many distinct networks as
//! the bench wants, without binding anything but loopback addresses it chose (all of
//! 127.0.0.0/8 is local on Linux). The market's code is not changed for the bench.
//!
//! For tests, an agent can be made silent (its descriptor answers `503`, as a dead agent's
//! endpoint would fail the market's checks and probes), and the whole stand-in can hold its
//! answers (requests wait unanswered until released); answers are counted per agent. The bench
//! itself uses none of these.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use protocol::EntityId;

use super::BenchError;

/// Networks the stand-in can place agents on: 127.1.0.0/24 up to 127.254.255.0/24.
pub const NETWORKS_MAX: usize = 254 * 256;
/// How long `start` waits for the server thread to bind its listeners.
const START_WAIT_MS_MAX: u64 = 10_000;
/// Worker threads answering descriptors: one, so the stand-in takes as little CPU as it can
/// from the market it shares the machine with (each answer is a few microseconds).
const WORKERS: usize = 1;
/// Connections waiting to be accepted, per listener.
const BACKLOG_MAX: u32 = 1024;
/// Idle connections are kept this long: longer than the market's HTTP client keeps them in
/// its pool (90 s), so the client always closes first and never reuses a connection the
/// stand-in is closing (which would fail a check for the stand-in's sake, not the market's).
const KEEP_ALIVE_S: u64 = 300;
/// How often a held request looks whether the stand-in was released.
const HOLD_TICK_MS: u64 = 10;

/// The loopback address of synthetic network `g`: `127.(1 + g / 256).(g % 256).1`. 127.0.0.0/24
/// is left alone: real services on this machine listen there.
pub fn address_of(network: usize) -> Option<Ipv4Addr> {
    if network >= NETWORKS_MAX {
        return None;
    }
    let a = u8::try_from(1 + network / 256).ok()?;
    let b = u8::try_from(network % 256).ok()?;
    Some(Ipv4Addr::new(127, a, b, 1))
}

/// What the server thread shares with the [`StandIn`] handle.
struct Shared {
    served: AtomicU64,
    /// Descriptors answered as each agent (silent agents' refusals and held requests not
    /// counted).
    answered: Vec<AtomicU64>,
    silent: Vec<AtomicBool>,
    held: AtomicBool,
}

struct Descriptors {
    entities: Arc<Vec<EntityId>>,
    shared: Arc<Shared>,
}

async fn descriptor(path: web::Path<usize>, data: web::Data<Descriptors>) -> HttpResponse {
    let shared = &data.shared;
    shared.served.fetch_add(1, Ordering::Relaxed);
    // Held: no answer until released (the asker's own timeout ends the wait).
    while shared.held.load(Ordering::Acquire) {
        actix_web::rt::time::sleep(Duration::from_millis(HOLD_TICK_MS)).await;
    }
    let i = path.into_inner();
    let Some(entity) = data.entities.get(i) else {
        return node::service::not_found();
    };
    if shared
        .silent
        .get(i)
        .is_some_and(|s| s.load(Ordering::Acquire))
    {
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "error": {"code": "agent_down", "message": "this synthetic agent is silent"}
        }));
    }
    if let Some(n) = shared.answered.get(i) {
        n.fetch_add(1, Ordering::AcqRel);
    }
    node::service::descriptor("agent", entity, serde_json::json!({}))
}

/// The running stand-in. Dropping it stops the server.
pub struct StandIn {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl StandIn {
    /// Listen on `networks` loopback addresses and answer as `entities` (agent `i` under
    /// `/agent/<i>`).
    pub fn start(networks: usize, entities: Arc<Vec<EntityId>>) -> Result<StandIn, BenchError> {
        let mut listeners = Vec::with_capacity(networks);
        let mut addrs = Vec::with_capacity(networks);
        for g in 0..networks {
            let ip = address_of(g).ok_or_else(|| {
                BenchError::Config(format!("at most {NETWORKS_MAX} networks, not {networks}"))
            })?;
            let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
                .map_err(|e| BenchError::StandIn(format!("cannot listen on {ip}: {e}")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| BenchError::StandIn(e.to_string()))?;
            addrs.push(
                listener
                    .local_addr()
                    .map_err(|e| BenchError::StandIn(e.to_string()))?,
            );
            listeners.push(listener);
        }
        let shared = Arc::new(Shared {
            served: AtomicU64::new(0),
            answered: entities.iter().map(|_| AtomicU64::new(0)).collect(),
            silent: entities.iter().map(|_| AtomicBool::new(false)).collect(),
            held: AtomicBool::new(false),
        });
        let data = web::Data::new(Descriptors {
            entities,
            shared: shared.clone(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bench-standin".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let mut server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .route("/agent/{i}/.well-known/lcp", web::get().to(descriptor))
                            .default_service(web::to(node::service::not_found_route))
                    })
                    .workers(WORKERS)
                    .keep_alive(Duration::from_secs(KEEP_ALIVE_S))
                    .backlog(BACKLOG_MAX);
                    for l in listeners {
                        server = match server.listen(l) {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return Ok(());
                            }
                        };
                    }
                    let running = server.run();
                    let _ = ready_tx.send(Ok(running.handle()));
                    running.await
                })
            })
            .map_err(|e| BenchError::StandIn(format!("cannot start its thread: {e}")))?;
        let handle = ready_rx
            .recv_timeout(Duration::from_millis(START_WAIT_MS_MAX))
            .map_err(|_| {
                BenchError::StandIn(format!("did not start within {START_WAIT_MS_MAX} ms"))
            })?
            .map_err(BenchError::StandIn)?;
        Ok(StandIn {
            addrs,
            shared,
            handle,
        })
    }

    /// Agent `agent`'s endpoint on network `network` (which must be one the stand-in serves).
    pub fn endpoint(&self, agent: usize, network: usize) -> Option<String> {
        let addr = self.addrs.get(network)?;
        Some(format!("http://{addr}/agent/{agent}"))
    }

    /// Descriptors answered so far: the market's endpoint checks, match re-checks and probes.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Descriptors answered as agent `agent` so far (0 for an agent the stand-in does not
    /// serve).
    pub fn answered(&self, agent: usize) -> u64 {
        self.shared
            .answered
            .get(agent)
            .map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// Make agent `agent` silent (its descriptor answers `503`) or answer again.
    pub fn set_silent(&self, agent: usize, silent: bool) {
        if let Some(s) = self.shared.silent.get(agent) {
            s.store(silent, Ordering::Release);
        }
    }

    /// Hold every request unanswered from now (`true`) until released (`false`). A request
    /// already past the hold is answered.
    pub fn hold(&self, held: bool) {
        self.shared.held.store(held, Ordering::Release);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.hold(false);
        // The stop command is sent now; the returned future would only await completion.
        drop(self.handle.stop(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_distinct_loopback_slash_24s() {
        assert_eq!(address_of(0), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(address_of(257), Some(Ipv4Addr::new(127, 2, 1, 1)));
        assert_eq!(
            address_of(NETWORKS_MAX - 1),
            Some(Ipv4Addr::new(127, 254, 255, 1))
        );
        assert_eq!(address_of(NETWORKS_MAX), None);
    }
}
