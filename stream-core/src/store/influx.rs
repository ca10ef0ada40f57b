//! [`InfluxSink`]: raw readings and window aggregates written to an InfluxDB v2 compatible server
//! (`POST /api/v2/write`) through the `influxdb2` crate.
//!
//! Lines are built with `telemetry::line` (validated and escaped; `NaN`/`inf` and trailing backslashes
//! are refused there) and sent with `write_line_protocol` at ns precision. The reqwest client has a
//! request timeout (`timeout_ms`); the crate sets none. Any reply other than 204 is an error: 5xx, 429 and
//! transport failures (refused, timeout) are [`StoreError::Unavailable`] (retryable), other 4xx are
//! [`StoreError::Invalid`]. The crate replaces the base URL's path, so `url` must be scheme + host +
//! port only (checked in [`InfluxSink::new`]).
//!
//! The SQLite store stays the system of record (ack-after-write, replay, dashboard reads); this sink is a
//! second write target selected by `StoreConfig::backend = "influxdb"`.

use super::StoreError;
use serde::{Deserialize, Serialize};
use telemetry::Reading;
use telemetry::message::WindowAggregate;

/// The write side of a time-series backend (blocking; call from a thread or `spawn_blocking`).
pub trait SeriesSink: Send + Sync {
    /// Writes raw readings (idempotent: a point with the same series and timestamp is overwritten).
    /// Returns how many points were sent.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when retryable; [`StoreError::Invalid`] when a point cannot be
    /// encoded or the server refuses it (nothing is sent for an encoding error).
    fn write_readings(&self, readings: &[Reading]) -> Result<usize, StoreError>;
    /// Writes window aggregates (one point per row; the newest version overwrites older ones).
    ///
    /// # Errors
    /// As [`SeriesSink::write_readings`].
    fn write_aggregates(&self, rows: &[WindowAggregate]) -> Result<usize, StoreError>;
}

/// InfluxDB v2 connection settings (`[core.store.influxdb]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, scheme + host + port only (default `http://127.0.0.1:8086`).
    pub url: String,
    /// Organisation (default `citybrain`).
    pub org: String,
    /// Bucket (default `citybrain`).
    pub bucket: String,
    /// API token (empty = no `Authorization` header). Never logged.
    pub token: String,
    /// Request timeout, ms (default 5,000).
    pub timeout_ms: u64,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: "http://127.0.0.1:8086".into(),
            org: "citybrain".into(),
            bucket: "citybrain".into(),
            token: String::new(),
            timeout_ms: 5_000,
        }
    }
}

/// The InfluxDB v2 sink.
pub struct InfluxSink {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for InfluxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxSink")
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn map_request_error(e: influxdb2::RequestError) -> StoreError {
    match &e {
        influxdb2::RequestError::Http { status, .. }
            if status.is_server_error() || status.as_u16() == 429 =>
        {
            StoreError::Unavailable(e.to_string())
        }
        influxdb2::RequestError::Http { .. } => StoreError::Invalid(e.to_string()),
        influxdb2::RequestError::ReqwestProcessing { .. } => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

impl InfluxSink {
    /// Builds the client (no request is made).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a URL that does not parse or has a path (the crate would drop it).
    pub fn new(cfg: &InfluxConfig) -> Result<Self, StoreError> {
        let url = reqwest_011::Url::parse(&cfg.url)
            .map_err(|e| StoreError::Invalid(format!("influxdb.url {}: {e}", cfg.url)))?;
        if url.path() != "/" && !url.path().is_empty() {
            return Err(StoreError::Invalid(format!(
                "influxdb.url {}: a path prefix is not supported (the client replaces it)",
                cfg.url
            )));
        }
        let builder = reqwest_011::Client::builder()
            .timeout(std::time::Duration::from_millis(cfg.timeout_ms.max(1)));
        let client =
            influxdb2::ClientBuilder::with_builder(builder, &cfg.url, &cfg.org, &cfg.token)
                .build()
                .map_err(|e| StoreError::Invalid(format!("influxdb client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(InfluxSink {
            client,
            org: cfg.org.clone(),
            bucket: cfg.bucket.clone(),
            rt,
        })
    }

    fn send(&self, body: Vec<u8>) -> Result<(), StoreError> {
        if body.is_empty() {
            return Ok(());
        }
        self.rt
            .block_on(
                self.client
                    .write_line_protocol(&self.org, &self.bucket, body),
            )
            .map_err(map_request_error)
    }
}

fn line_err(e: telemetry::line::LineError) -> StoreError {
    StoreError::Invalid(format!("line protocol: {e}"))
}

impl SeriesSink for InfluxSink {
    fn write_readings(&self, readings: &[Reading]) -> Result<usize, StoreError> {
        let mut body = Vec::with_capacity(readings.len() * 160);
        for r in readings {
            telemetry::line::write_point(&mut body, &telemetry::line::reading_point(r))
                .map_err(line_err)?;
        }
        self.send(body)?;
        Ok(readings.len())
    }

    fn write_aggregates(&self, rows: &[WindowAggregate]) -> Result<usize, StoreError> {
        let mut body = Vec::with_capacity(rows.len() * 240);
        for a in rows {
            let label = a.window_label();
            telemetry::line::write_point(&mut body, &telemetry::line::aggregate_point(a, &label))
                .map_err(line_err)?;
        }
        self.send(body)?;
        Ok(rows.len())
    }
}
