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

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
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

struct Descriptors {
    entities: Arc<Vec<EntityId>>,
    served: Arc<AtomicU64>,
}

async fn descriptor(path: web::Path<usize>, data: web::Data<Descriptors>) -> HttpResponse {
    data.served.fetch_add(1, Ordering::Relaxed);
    match data.entities.get(path.into_inner()) {
        Some(entity) => node::service::descriptor("agent", entity, serde_json::json!({})),
        None => node::service::not_found(),
    }
}

/// The running stand-in. Dropping it stops the server.
pub struct StandIn {
    addrs: Vec<SocketAddr>,
    served: Arc<AtomicU64>,
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
        let served = Arc::new(AtomicU64::new(0));
        let data = web::Data::new(Descriptors {
            entities,
            served: served.clone(),
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
            served,
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
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
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
