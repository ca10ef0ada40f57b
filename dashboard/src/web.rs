//! The HTTP shell: page routes and embedded assets, `/healthz`, `/readyz`, `/metrics`, and the layers
//! every response passes through (security headers, timeout, rate limit, request counting).
//!
//! Security headers on every response: a CSP without inline script or style (`script-src 'self'`),
//! `frame-ancestors 'none'` plus `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`.

use crate::AppState;
use crate::api;
use crate::error::AppError;
use crate::metrics::Metrics;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// The Content-Security-Policy sent with every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Static files under `assets/`, embedded at build time.
#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// The pages: path → asset file.
pub const PAGES: &[(&str, &str)] = &[
    ("/", "live.html"),
    ("/history", "history.html"),
    ("/governance", "governance.html"),
    ("/open-data", "open-data.html"),
];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn asset_response(path: &str) -> Response {
    match Assets::get(path) {
        Some(f) => {
            let mut r = Response::new(Body::from(f.data.into_owned()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => AppError::NotFound(format!("no asset `{path}`")).into_response(),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    if path.contains("..") || path.ends_with(".html") {
        return AppError::NotFound("no such asset".into()).into_response();
    }
    asset_response(&path)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the series store answers a cheap query and the access database is readable.
async fn readyz(State(state): State<AppState>) -> Response {
    let st = state.clone();
    let ok = tokio::task::spawn_blocking(move || {
        st.store.reading_counts().is_ok() && st.access.audit_count().is_ok()
    })
    .await
    .unwrap_or(false);
    if ok {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: storage unavailable",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// A token-bucket rate limiter per key (token id, or client IP without a token), with a bounded map.
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_s` sustained requests per second, bursts up to `burst`, at most `max_keys` keys tracked.
    pub fn new(per_s: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter {
            per_s: per_s.max(0.001),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; false when empty (or when the map is full of active keys).
    pub fn check(&self, key: &str, now: Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !b.contains_key(key) && b.len() >= self.max_keys {
            // Evict keys whose bucket has refilled (idle clients); refuse when none are idle.
            let (per_s, burst) = (self.per_s, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_s < burst
            });
            if b.len() >= self.max_keys {
                return false;
            }
        }
        let e = b.entry(key.to_string()).or_insert((self.burst, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() * self.per_s).min(self.burst);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The rate-limit key: the presented token id together with the client IP (so nobody who merely knows
/// a token id, which is not secret, can drain its owner's budget from elsewhere), or the IP alone.
fn rate_key(req: &Request) -> String {
    let ip = match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ci) => ci.0.ip().to_string(),
        None => "unknown".into(),
    };
    if let Some(tok) = api::presented_token(req.headers())
        && let Some(id) = tok.strip_prefix("cb_").and_then(|r| r.split('_').next())
        && id.len() == 16
    {
        return format!("token:{id}@{ip}");
    }
    format!("ip:{ip}")
}

async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.rate.check(&rate_key(&req), Instant::now()) {
        return AppError::RateLimited.into_response();
    }
    next.run(req).await
}

async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let m = &state.metrics;
    Metrics::inc(&m.requests);
    let s = resp.status();
    if s.is_client_error() {
        Metrics::inc(&m.responses_4xx);
    }
    if s.is_server_error() {
        Metrics::inc(&m.responses_5xx);
    }
    match s {
        StatusCode::UNAUTHORIZED => Metrics::inc(&m.unauthorized),
        StatusCode::FORBIDDEN => Metrics::inc(&m.forbidden),
        StatusCode::TOO_MANY_REQUESTS => Metrics::inc(&m.rate_limited),
        _ => {}
    }
    let _ = m.sse_clients_current.load(Ordering::Relaxed);
    resp
}

async fn not_found() -> AppError {
    AppError::NotFound("no such page or API route".into())
}

/// Builds the full router (see [`crate::app`]).
pub fn router(state: AppState) -> Router {
    let api = api::router().layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    let mut r = Router::new();
    for (path, file) in PAGES {
        let file: &'static str = file;
        r = r.route(path, get(move || async move { asset_response(file) }));
    }
    let timeout = Duration::from_millis(state.cfg.request_timeout_ms.max(1));
    r.route("/assets/{*path}", get(asset))
        // Browsers ask for /favicon.ico whatever the pages link: the same SVG icon.
        .route(
            "/favicon.ico",
            get(|| async { asset_response("favicon.svg") }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_counts_and_bounds() {
        let rl = RateLimiter::new(1.0, 3, 2);
        let t0 = Instant::now();
        assert!(rl.check("a", t0));
        assert!(rl.check("a", t0));
        assert!(rl.check("a", t0));
        assert!(!rl.check("a", t0), "burst of 3 used up");
        assert!(
            rl.check("a", t0 + Duration::from_millis(1100)),
            "one token refilled after 1.1 s"
        );
        assert!(rl.check("b", t0));
        // Map full with two active keys: a third is refused, not tracked.
        assert!(!rl.check("c", t0));
        assert_eq!(rl.keys(), 2);
        // Once "b" has refilled it is idle and gets evicted for a newcomer.
        assert!(rl.check("c", t0 + Duration::from_secs(10)));
    }
}
