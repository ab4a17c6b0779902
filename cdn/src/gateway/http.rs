//! The gateway's HTTP routes: the video with `Range` support, the watch page and its figures,
//! the catalog page and `/metrics`; and starting the gateway's server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{Metrics, ServiceError};
use protocol::range::RangeSpec;
use serde::Deserialize;

use super::{Gateway, GatewayOptions, Session};
use crate::error::Error;

pub type State = web::Data<Arc<Gateway>>;

pub fn routes(cfg: &mut web::ServiceConfig, gateway: Arc<Gateway>) {
    cfg.app_data(web::Data::new(gateway))
        .route("/", web::get().to(index))
        .route("/v/{content}", web::get().to(video))
        .route("/v/{content}", web::head().to(video))
        .route("/watch/{content}", web::get().to(watch))
        .route("/v1/stats/{content}", web::get().to(stats))
        .route("/v1/stats/{content}/player", web::post().to(player_report))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(node::service::not_found_route));
}

/// Browsers get the clear page for an error; other clients the JSON body.
fn error_response(req: &HttpRequest, e: &Error) -> HttpResponse {
    let wants_html = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        HttpResponse::build(e.status())
            .content_type("text/html; charset=utf-8")
            .body(crate::page::error_page(e))
    } else {
        actix_web::ResponseError::error_response(e)
    }
}

async fn index(g: State) -> HttpResponse {
    match g.catalog().await {
        Ok(c) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::page::gateway_index(&c)),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

async fn video(req: HttpRequest, path: web::Path<String>, g: State) -> HttpResponse {
    let s = match g.session(&path).await {
        Ok(s) => s,
        Err(e) => return error_response(&req, &e),
    };
    let size = s.manifest.size;
    let range = match range_of(&req, size) {
        Ok(r) => r,
        Err(e) => return error_response(&req, &e),
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let mut resp = if range.is_some() {
        let mut r = HttpResponse::PartialContent();
        r.insert_header(("content-range", format!("bytes {start}-{end}/{size}")));
        r
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header(("accept-ranges", "bytes"))
        .insert_header(("cache-control", "no-store"))
        .content_type(s.manifest.mime.as_str());
    let len = if size == 0 { 0 } else { end - start + 1 };
    if req.method() == actix_web::http::Method::HEAD || len == 0 {
        resp.insert_header(("content-length", len.to_string()));
        return resp.finish();
    }
    let rx = g.stream(s, (start, end));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    resp.no_chunking(len).streaming(body)
}

/// The inclusive byte range a request's `Range` header asks for, read by the one parser
/// ([`RangeSpec`]) as the agents read it: `None` without the header or with another unit
/// (RFC 9110 ignores it), `400 invalid_range` for anything but one `bytes=` range, `416` past
/// the end.
fn range_of(req: &HttpRequest, size: u64) -> Result<Option<(u64, u64)>, Error> {
    let Some(header) = req.headers().get("range") else {
        return Ok(None);
    };
    let header = header
        .to_str()
        .map_err(|_| Error::InvalidRange("the Range header is not text".into()))?;
    let Some(spec) = RangeSpec::from_header(header)? else {
        return Ok(None);
    };
    let r = spec.resolve(size)?;
    if r.is_empty() {
        return Err(Error::RangeNotSatisfiable { size });
    }
    Ok(Some((r.start, r.end - 1)))
}

async fn watch(path: web::Path<String>, g: State) -> HttpResponse {
    match g.session(&path).await {
        Ok(s) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::page::player_page(&s.manifest)),
        Err(e) => HttpResponse::build(e.status())
            .content_type("text/html; charset=utf-8")
            .body(crate::page::error_page(&e)),
    }
}

async fn stats(path: web::Path<String>, g: State) -> HttpResponse {
    match g.existing(&path).await {
        Some(s) => {
            let mut v = serde_json::to_value(g.stats(&s)).unwrap_or_default();
            v["publisher_bytes"] = g.publisher_bytes.load(Ordering::Relaxed).into();
            v["upcoming"] = serde_json::to_value(g.upcoming(&s)).unwrap_or_default();
            HttpResponse::Ok().json(v)
        }
        None => actix_web::ResponseError::error_response(&Error::UnknownView(format!(
            "no view of {path} yet"
        ))),
    }
}

#[derive(Deserialize)]
struct PlayerReport {
    current_time_s: f64,
}

async fn player_report(
    path: web::Path<String>,
    body: web::Json<PlayerReport>,
    g: State,
) -> HttpResponse {
    if let Some(s) = g.existing(&path).await {
        if body.current_time_s.is_finite() && body.current_time_s >= 0.0 {
            s.stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .current_time_s = body.current_time_s;
        }
    }
    HttpResponse::NoContent().finish()
}

async fn metrics(g: State) -> HttpResponse {
    let sessions: Vec<Arc<Session>> = g.sessions.lock().await.values().cloned().collect();
    let (mut fetched, mut served, mut failovers, mut corrupt) = (0, 0, 0, 0);
    for s in &sessions {
        let st = g.stats(s);
        fetched += st.bytes_fetched;
        served += st.bytes_served;
        failovers += st.failovers;
        corrupt += st.corrupt;
    }
    Metrics::default()
        .gauge("cdn_gateway_views", sessions.len())
        .counter("cdn_gateway_bytes_fetched_total", fetched)
        .counter("cdn_gateway_bytes_served_total", served)
        .counter("cdn_gateway_failovers_total", failovers)
        .counter("cdn_gateway_corrupt_total", corrupt)
        .response()
}

pub struct RunningGateway {
    pub url: String,
    pub gateway: Arc<Gateway>,
    pub http: node::http::HttpHandle,
}

/// Longest the gateway waits at shutdown to record the tokens it read (the agents' answers).
pub const SHUTDOWN_RECORD_WAIT_MS_MAX: u64 = 3_000;

impl RunningGateway {
    /// Serve until SIGINT/SIGTERM, then propose the `tokens` records still noted.
    pub fn wait(self) -> std::io::Result<()> {
        let served = self.http.wait();
        let gateway = self.gateway.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let wait = std::time::Duration::from_millis(SHUTDOWN_RECORD_WAIT_MS_MAX);
            if tokio::time::timeout(wait, gateway.record_tokens_now())
                .await
                .is_err()
            {
                tracing::warn!("tokens read in the last seconds are not recorded");
            }
        });
        // A record still waiting for the wallet's chain (another process holds it) runs on a
        // blocking thread: the stop does not wait for it past the bound.
        rt.shutdown_timeout(std::time::Duration::from_millis(
            SHUTDOWN_RECORD_WAIT_MS_MAX,
        ));
        served
    }
}

pub fn start(options: GatewayOptions) -> anyhow::Result<RunningGateway> {
    let listen = options.listen.clone();
    let gateway = Arc::new(Gateway::new(options)?);
    // What the first view needs from the publisher is read now, not when a viewer waits.
    let warming = gateway.clone();
    gateway.fetch.spawn(async move { warming.warm_up().await });
    let for_routes = gateway.clone();
    let http = node::http::spawn(
        "cdn-gateway",
        &listen,
        None,
        0,
        move |cfg| routes(cfg, for_routes.clone()),
        || {},
    )?;
    Ok(RunningGateway {
        url: http.url.clone(),
        gateway,
        http,
    })
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/gateway.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../../docs/openapi/gateway.json"),
            include_str!("http.rs"),
        );
    }
}
