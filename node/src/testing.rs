//! Helpers for the services' tests: Debian's headless Chromium (which `.ci/run` installs),
//! bounded waits, and where the workspace's binaries are. Not used by any service at run
//! time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest Chromium may take to render a page.
pub const BROWSER_WAIT_MS_MAX: u64 = 60_000;

/// The Chromium binary, or `None` when it is not installed. Under `CI=true` a missing browser
/// is a failure (panics), since `.ci/run` installs it; elsewhere the caller skips its test.
pub fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium is not installed (.ci/run installs it)"
        );
        eprintln!("skipping: chromium not installed (apt-get install -y chromium)");
    }
    found
}

/// Run headless Chromium with `args` (plus the sandbox-free, offline flags) and answer its
/// stdout. Blocking: call it from `spawn_blocking` in async tests.
pub fn run_chromium(binary: &str, profile: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // Read its output as it comes: a page larger than the pipe's buffer (64 KiB) would
    // otherwise keep Chromium blocked on its write, and never exiting.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        let _ = tx.send(out);
    });
    let deadline = Instant::now() + Duration::from_millis(BROWSER_WAIT_MS_MAX);
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish within {BROWSER_WAIT_MS_MAX} ms");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Chromium exited; its helpers may hold the pipe a moment longer, within the same bound.
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let out = rx
        .recv_timeout(left)
        .expect("chromium's output did not end after it exited");
    String::from_utf8_lossy(&out).into_owned()
}

/// A screenshot of `url` in a `width` x `height` window, written to `path`; whether a real
/// image (over 1,000 bytes) was written. Blocking, like [`run_chromium`].
pub fn screenshot(
    binary: &str,
    profile: &std::path::Path,
    url: &str,
    (width, height): (u32, u32),
    path: &std::path::Path,
) -> bool {
    let window = format!("--window-size={width},{height}");
    let shot = format!("--screenshot={}", path.display());
    run_chromium(binary, profile, &[&window, &shot, url]);
    std::fs::metadata(path)
        .map(|m| m.len() > 1000)
        .unwrap_or(false)
}

/// Poll `check` every 50 ms until it answers true, or panic after `wait_ms_max`.
pub async fn eventually<F, Fut>(wait_ms_max: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {wait_ms_max} ms waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory the workspace's binaries are built in (`target/<profile>`), seen from a
/// running test binary (`target/<profile>/deps/...`): for tests that run another package's
/// binary (which `cargo build --workspace --bins` or `cargo test --workspace` builds).
pub fn bin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The sources of the shared route modules a server may mount (`node::records::routes`,
/// `node::credit::http::routes`), for [`assert_routes_described`].
pub const RECORDS_ROUTES_SOURCE: &str = include_str!("records/http.rs");
pub const CREDIT_ROUTES_SOURCE: &str = include_str!("credit/http.rs");

/// Every `(method, path)` registered with `.route("PATH", web::METHOD()...)` in `source`.
/// Comment lines are skipped. Any other way of registering a route (a path that is not a
/// string literal, a method that is not `web::METHOD()`, `web::resource`, `web::scope`,
/// `.service(`) panics, so a route this reader cannot see never goes unchecked.
pub fn routes_in_source(source: &str) -> std::collections::BTreeSet<(String, String)> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for other in ["web::resource(", "web::scope(", ".service("] {
        assert!(
            !code.contains(other),
            "routes registered with {other} are not read by routes_in_source: extend it"
        );
    }
    let mut out = std::collections::BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let text = rest
            .trim_start()
            .strip_prefix('"')
            .expect("a .route( whose path is not a string literal");
        let end = text.find('"').expect("an unterminated route path");
        let path = &text[..end];
        let after = text[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        let m = after
            .strip_prefix("web::")
            .unwrap_or_else(|| panic!("route {path}: its method is not web::METHOD()"));
        let method: String = m.chars().take_while(char::is_ascii_alphabetic).collect();
        out.insert((method, path.to_string()));
    }
    out
}

/// Every `(method, path)` an OpenAPI document describes.
pub fn openapi_operations(doc: &str) -> std::collections::BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(doc).expect("the OpenAPI file is JSON");
    let mut out = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "head", "patch", "options"] {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// The routes registered in `server_source` (plus the shared modules it mounts) are exactly
/// the operations of the OpenAPI document `doc`: none undescribed, none described that no
/// route serves.
pub fn assert_routes_described(doc: &str, server_source: &str) {
    let mut registered = routes_in_source(server_source);
    assert!(
        !registered.is_empty(),
        "no routes found in the server source"
    );
    if server_source.contains("records::routes(") {
        registered.extend(routes_in_source(RECORDS_ROUTES_SOURCE));
    }
    if server_source.contains("credit::http::routes(") {
        registered.extend(routes_in_source(CREDIT_ROUTES_SOURCE));
    }
    let described = openapi_operations(doc);
    let missing: Vec<_> = registered.difference(&described).collect();
    let extra: Vec<_> = described.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in the OpenAPI file: {missing:?}; described but not served: {extra:?}"
    );
}

#[cfg(test)]
mod route_tests {
    #[test]
    fn routes_are_read_from_source_across_lines() {
        let src = r#"cfg.route("/a", web::get().to(a))
            .route(
                "/b/{id}",
                web::put().to(b),
            )
            .route("/a", web::post().to(c));"#;
        let found = super::routes_in_source(src);
        let want: std::collections::BTreeSet<(String, String)> =
            [("get", "/a"), ("post", "/a"), ("put", "/b/{id}")]
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect();
        assert_eq!(found, want);
    }
}
