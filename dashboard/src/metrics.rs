//! Counters and gauges for `/metrics`, rendered in the Prometheus text exposition format (0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Every counter the dashboard keeps. All monotonic except the `*_current` gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests answered, any status.
    pub requests: AtomicU64,
    /// Responses with a 4xx status.
    pub responses_4xx: AtomicU64,
    /// Responses with a 5xx status.
    pub responses_5xx: AtomicU64,
    /// 401 responses (missing or bad token).
    pub unauthorized: AtomicU64,
    /// 403 responses (beyond the token's scope).
    pub forbidden: AtomicU64,
    /// 429 responses (rate limit).
    pub rate_limited: AtomicU64,
    /// SSE clients connected now (gauge).
    pub sse_clients_current: AtomicI64,
    /// SSE connections accepted in total.
    pub sse_connections: AtomicU64,
    /// Audit rows written by this process.
    pub audit_rows: AtomicU64,
    /// Audit writes that failed (the request is refused then).
    pub audit_failures: AtomicU64,
    /// MQTT messages received by the live bridge.
    pub mqtt_messages: AtomicU64,
    /// MQTT messages dropped: off-schema topic or undecodable payload.
    pub mqtt_bad_messages: AtomicU64,
    /// MQTT (re)connections.
    pub mqtt_connects: AtomicU64,
    /// Live events published to the broadcast channel.
    pub live_events: AtomicU64,
    /// Live events an SSE client missed because it fell behind (channel overflow, drop-oldest).
    pub live_lagged: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders all metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "dashboard_http_requests_total",
            "HTTP requests answered.",
            g(&self.requests),
        );
        counter(
            "dashboard_http_responses_4xx_total",
            "Responses with a 4xx status.",
            g(&self.responses_4xx),
        );
        counter(
            "dashboard_http_responses_5xx_total",
            "Responses with a 5xx status.",
            g(&self.responses_5xx),
        );
        counter(
            "dashboard_unauthorized_total",
            "401 responses.",
            g(&self.unauthorized),
        );
        counter(
            "dashboard_forbidden_total",
            "403 responses (beyond token scope).",
            g(&self.forbidden),
        );
        counter(
            "dashboard_rate_limited_total",
            "429 responses.",
            g(&self.rate_limited),
        );
        counter(
            "dashboard_sse_connections_total",
            "SSE connections accepted.",
            g(&self.sse_connections),
        );
        counter(
            "dashboard_audit_rows_total",
            "Audit rows written.",
            g(&self.audit_rows),
        );
        counter(
            "dashboard_audit_failures_total",
            "Audit writes that failed.",
            g(&self.audit_failures),
        );
        counter(
            "dashboard_mqtt_messages_total",
            "MQTT messages received.",
            g(&self.mqtt_messages),
        );
        counter(
            "dashboard_mqtt_bad_messages_total",
            "MQTT messages dropped as off-schema.",
            g(&self.mqtt_bad_messages),
        );
        counter(
            "dashboard_mqtt_connects_total",
            "MQTT connections established.",
            g(&self.mqtt_connects),
        );
        counter(
            "dashboard_live_events_total",
            "Live events broadcast.",
            g(&self.live_events),
        );
        counter(
            "dashboard_live_lagged_total",
            "Live events lost by slow SSE clients.",
            g(&self.live_lagged),
        );
        let _ = writeln!(
            s,
            "# HELP dashboard_sse_clients SSE clients connected.\n# TYPE dashboard_sse_clients gauge\ndashboard_sse_clients {}",
            self.sse_clients_current.load(Ordering::Relaxed)
        );
        s
    }
}
