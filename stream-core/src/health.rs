//! Health and metrics over HTTP, served with axum: `/healthz` (process alive), `/readyz` (503 until the
//! MQTT subscription is acknowledged and while storage writes are failing), `/metrics` (the
//! [`prometheus_client`] text encoding — OpenMetrics 1.0 text, which Prometheus scrapes natively).
//!
//! The metric families live in [`Metrics`]; the ingest, the writer and the sink update them where they
//! update the [`crate::CoreReport`].

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Label set: pairs of (name, value).
pub type Labels = Vec<(String, String)>;

/// Every metric the core exports (all names start with `citybrain_core_`).
pub struct Metrics {
    registry: Registry,
    /// MQTT messages received (not retained).
    pub messages: Counter,
    /// Rejections by `reason` (whole messages and single readings).
    pub rejected: Family<Labels, Counter>,
    /// Rejections by `source` (device, gateway or `unknown`) and `reason`.
    pub rejected_by_source: Family<Labels, Counter>,
    /// Readings that passed validation.
    pub readings_valid: Counter,
    /// Readings newly stored raw (a redelivered copy is not counted again).
    pub readings_stored: Counter,
    /// Readings left out of aggregates by `reason` (`duplicate`, `too_late`).
    pub dropped: Family<Labels, Counter>,
    /// Aggregate rows written.
    pub aggregates_written: Counter,
    /// Alert transitions written.
    pub alerts_written: Counter,
    /// Quality rows written.
    pub quality_rows_written: Counter,
    /// Storage calls retried after a retryable error, by `op` (`readings`, `outputs`).
    pub store_retries: Family<Labels, Counter>,
    /// Ingest lag of stored readings (receive time − event time), ms.
    pub ingest_lag_ms: Histogram,
    /// Ingest lag of the newest stored reading, ms.
    pub ingest_lag_last_ms: Gauge,
    /// Messages received but not yet acknowledged (bounded by `ingest_buffer_messages`).
    pub buffer_messages: Gauge,
    /// 1 while storage writes succeed, 0 while they fail.
    pub storage_ok: Gauge,
    /// CONNACKs received (1 + reconnects).
    pub connacks: Counter,
    /// Subscriptions made (one per CONNACK without session).
    pub subscribes: Counter,
    /// Outputs not published on MQTT because the client's request queue was full (they are stored).
    pub publish_dropped: Counter,
    /// Raw readings replayed from the store at start (window-state recovery).
    pub replayed_readings: Counter,
    /// Outputs given up at shutdown because storage stayed unavailable past the drain deadline.
    pub outputs_lost: Counter,
    /// Ids in the process-wide symbol table ([`crate::symbol::stats`]); it only grows, with every
    /// distinct device, site, district and dataset id seen. Set when `/metrics` is read.
    pub symbols: Gauge,
    /// Heap bytes of the process-wide symbol table. Set when `/metrics` is read.
    pub symbol_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("citybrain_core");
        let m = Metrics {
            messages: Counter::default(),
            rejected: Family::default(),
            rejected_by_source: Family::default(),
            readings_valid: Counter::default(),
            readings_stored: Counter::default(),
            dropped: Family::default(),
            aggregates_written: Counter::default(),
            alerts_written: Counter::default(),
            quality_rows_written: Counter::default(),
            store_retries: Family::default(),
            ingest_lag_ms: Histogram::new(exponential_buckets(10.0, 4.0, 10)),
            ingest_lag_last_ms: Gauge::default(),
            buffer_messages: Gauge::default(),
            storage_ok: Gauge::default(),
            connacks: Counter::default(),
            subscribes: Counter::default(),
            publish_dropped: Counter::default(),
            replayed_readings: Counter::default(),
            outputs_lost: Counter::default(),
            symbols: Gauge::default(),
            symbol_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        m.storage_ok.set(1);
        let r = &mut registry;
        r.register("messages", "MQTT messages received", m.messages.clone());
        r.register("rejected", "Rejections by reason", m.rejected.clone());
        r.register(
            "rejected_by_source",
            "Rejections by source and reason",
            m.rejected_by_source.clone(),
        );
        r.register(
            "readings_valid",
            "Readings that passed validation",
            m.readings_valid.clone(),
        );
        r.register(
            "readings_stored",
            "Readings newly stored raw",
            m.readings_stored.clone(),
        );
        r.register(
            "dropped",
            "Readings left out of aggregates by reason (duplicate, too_late)",
            m.dropped.clone(),
        );
        r.register(
            "aggregates_written",
            "Aggregate rows written",
            m.aggregates_written.clone(),
        );
        r.register(
            "alerts_written",
            "Alert transitions written",
            m.alerts_written.clone(),
        );
        r.register(
            "quality_rows_written",
            "Quality rows written",
            m.quality_rows_written.clone(),
        );
        r.register(
            "store_retries",
            "Storage calls retried after a retryable error",
            m.store_retries.clone(),
        );
        r.register(
            "ingest_lag_ms",
            "Receive time minus event time of stored readings, ms",
            m.ingest_lag_ms.clone(),
        );
        r.register(
            "ingest_lag_last_ms",
            "Ingest lag of the newest stored reading, ms",
            m.ingest_lag_last_ms.clone(),
        );
        r.register(
            "buffer_messages",
            "Messages received but not yet acknowledged",
            m.buffer_messages.clone(),
        );
        r.register(
            "storage_ok",
            "1 while storage writes succeed",
            m.storage_ok.clone(),
        );
        r.register("connacks", "CONNACKs received", m.connacks.clone());
        r.register(
            "subscribes",
            "Subscriptions made after a CONNACK without session",
            m.subscribes.clone(),
        );
        r.register(
            "publish_dropped",
            "Outputs not published on MQTT (request queue full); they are stored",
            m.publish_dropped.clone(),
        );
        r.register(
            "replayed_readings",
            "Raw readings replayed from the store at start",
            m.replayed_readings.clone(),
        );
        r.register(
            "outputs_lost",
            "Outputs given up at shutdown (storage down past the drain deadline)",
            m.outputs_lost.clone(),
        );
        r.register(
            "symbols",
            "Ids in the process-wide symbol table (only grows)",
            m.symbols.clone(),
        );
        r.register(
            "symbol_bytes",
            "Heap bytes of the process-wide symbol table",
            m.symbol_bytes.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One label pair.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Metrics {
    /// The text exposition (OpenMetrics 1.0 text, ends with `# EOF`).
    pub fn encode(&self) -> String {
        let (ids, bytes) = crate::symbol::stats();
        self.symbols.set(i64::try_from(ids).unwrap_or(i64::MAX));
        self.symbol_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// Readiness inputs shared with the HTTP handlers.
#[derive(Debug)]
pub struct Readiness {
    /// The broker acknowledged our subscription on the current connection.
    pub subscribed: AtomicBool,
    /// The last storage write succeeded.
    pub storage_ok: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            subscribed: AtomicBool::new(false),
            storage_ok: AtomicBool::new(true),
        }
    }
}

impl Readiness {
    /// Ready = subscribed and storage writable.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.subscribed.load(Ordering::Acquire) {
            return Err("not subscribed");
        }
        if !self.storage_ok.load(Ordering::Acquire) {
            return Err("storage unavailable");
        }
        Ok(())
    }
}

/// The health router over the shared counters.
pub fn router(counters: Arc<crate::run::Counters>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(counters)
}

async fn readyz(State(c): State<Arc<crate::run::Counters>>) -> impl IntoResponse {
    match c.readiness().ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics(State(c): State<Arc<crate::run::Counters>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        c.prometheus(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(app: &Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_subscription_and_storage() {
        let c = Arc::new(crate::run::Counters::default());
        let app = router(c.clone());
        assert_eq!(call(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not subscribed\n".into())
        );
        c.readiness().subscribed.store(true, Ordering::Release);
        assert_eq!(call(&app, "/readyz").await.0, StatusCode::OK);
        c.readiness().storage_ok.store(false, Ordering::Release);
        assert_eq!(
            call(&app, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable\n".into()
            )
        );
        assert_eq!(call(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_text_escapes_labels() {
        let c = Arc::new(crate::run::Counters::default());
        let m = c.metrics();
        m.rejected_by_source
            .get_or_create(&vec![
                ("source".into(), "a\"b\\c".into()),
                ("reason".into(), "malformed_json".into()),
            ])
            .inc_by(3);
        m.readings_stored.inc_by(7);
        m.store_retries
            .get_or_create(&label("op", "readings"))
            .inc();
        let (status, text) = call(&router(c.clone()), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "citybrain_core_readings_stored_total 7",
            r#"citybrain_core_rejected_by_source_total{source="a\"b\\c",reason="malformed_json"} 3"#,
            r#"citybrain_core_store_retries_total{op="readings"} 1"#,
            "citybrain_core_storage_ok 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }
}
