//! Storage behind one object-safe, blocking trait ([`SeriesStore`]), shared by the stream core (write
//! side) and the dashboard (read side) as `Arc<dyn SeriesStore>`.
//!
//! The embedded implementation is [`SqliteStore`] (one SQLite file in WAL mode). Every write is one
//! transaction, so a batch of readings is either durable or not written at all: the MQTT ingest
//! acknowledges messages only after [`SeriesStore::write_readings`] returned `Ok`.
//!
//! Errors split into [`StoreError::Unavailable`] (retryable: busy, locked, disk full, I/O) and the rest.

mod influx;
mod sqlite;

pub use influx::{InfluxConfig, InfluxSink, SeriesSink};
pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use telemetry::DeviceKind;
use telemetry::message::{Alert, WindowAggregate};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Retryable: the database is busy or locked, the disk is full, an I/O error occurred or the server
    /// is down. Callers back off and retry; the ingest stops acknowledging meanwhile.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request or the data cannot be stored as is (bad argument, constraint violation); retrying
    /// will not help.
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// Anything else (corrupt file, schema newer than this program).
    #[error("storage error: {0}")]
    Other(String),
}

impl StoreError {
    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// One data-quality row: per dataset, source and window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityRow {
    /// `parking` or `grid`.
    pub dataset: String,
    /// Device, gateway or site id.
    pub source: String,
    /// Window start, UTC epoch ms.
    pub start_ms: i64,
    /// Window length, ms.
    pub window_ms: i64,
    /// received / expected (capped at 1; 1 when nothing was expected), 0..=1.
    pub completeness: f64,
    /// Median ingest lag (ingest time − event time), ms.
    pub timeliness_p50_ms: f64,
    /// 95th percentile of the ingest lag, ms.
    pub timeliness_p95_ms: f64,
    /// 1 − rejected share of all inputs, 0..=1.
    pub validity: f64,
    /// 1 − duplicate share of all accepted inputs, 0..=1.
    pub uniqueness: f64,
    /// Share of readings consistent with the registry (e.g. occupancy not above capacity), 0..=1.
    pub consistency: f64,
    /// Distinct valid readings received.
    pub received: u64,
    /// Readings expected from the registry's report intervals.
    pub expected: u64,
    /// Readings refused by validation.
    pub rejected: u64,
    /// Duplicate readings dropped.
    pub duplicates: u64,
}

/// A query for one aggregate series over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateQuery {
    /// Device kind.
    pub kind: DeviceKind,
    /// `device`, `lot`, `feeder` or `district`.
    pub scope: String,
    /// Id within the scope.
    pub id: String,
    /// Window length, ms.
    pub window_ms: i64,
    /// Range start (inclusive), UTC epoch ms, compared with window starts.
    pub from_ms: i64,
    /// Range end (exclusive), UTC epoch ms.
    pub to_ms: i64,
}

/// One aggregate series in columns: the rows of [`SeriesStore::query_aggregates`] (highest version per
/// window, ordered by start) as parallel vectors, so a long series is read and serialized without a
/// `BTreeMap` per row.
///
/// Shape: `start_ms`, `version`, `count` and `district` all have [`AggregateColumns::len`] entries, one
/// per window; every vector in `metrics` has the same length, with `None` where that window has no value
/// for the metric. A metric appears in `metrics` only when at least one window has it, so
/// [`AggregateColumns::to_rows`] gives back exactly the rows the columns were built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateColumns {
    /// Device kind of the series.
    pub kind: DeviceKind,
    /// `device`, `lot`, `feeder` or `district`.
    pub scope: String,
    /// Id within the scope.
    pub id: String,
    /// Window length of every row, ms.
    pub window_ms: i64,
    /// Window starts, UTC epoch ms, ascending.
    pub start_ms: Vec<i64>,
    /// Version of each window (the highest stored).
    pub version: Vec<u32>,
    /// Readings aggregated in each window.
    pub count: Vec<u64>,
    /// District of each window's row.
    pub district: Vec<String>,
    /// Metric name (unit in the name) → one value per window (`None`: absent in that window).
    pub metrics: BTreeMap<String, Vec<Option<f64>>>,
}

impl AggregateColumns {
    /// No windows yet, for the series `kind`/`scope`/`id` at `window_ms`.
    pub fn new(kind: DeviceKind, scope: &str, id: &str, window_ms: i64) -> Self {
        AggregateColumns {
            kind,
            scope: scope.to_string(),
            id: id.to_string(),
            window_ms,
            start_ms: Vec::new(),
            version: Vec::new(),
            count: Vec::new(),
            district: Vec::new(),
            metrics: BTreeMap::new(),
        }
    }

    /// Columns of `rows` (taken in the given order; their own kind/scope/id/window are not checked
    /// against the arguments).
    pub fn from_rows(
        kind: DeviceKind,
        scope: &str,
        id: &str,
        window_ms: i64,
        rows: &[WindowAggregate],
    ) -> Self {
        let mut c = Self::new(kind, scope, id, window_ms);
        c.start_ms.reserve(rows.len());
        c.version.reserve(rows.len());
        c.count.reserve(rows.len());
        c.district.reserve(rows.len());
        for (i, r) in rows.iter().enumerate() {
            c.start_ms.push(r.start_ms);
            c.version.push(r.version);
            c.count.push(r.count);
            c.district.push(r.district.clone());
            for (name, v) in &r.metrics {
                let col = c
                    .metrics
                    .entry(name.clone())
                    .or_insert_with(|| vec![None; i]);
                col.push(Some(*v));
            }
            for col in c.metrics.values_mut() {
                if col.len() == i {
                    col.push(None);
                }
            }
        }
        c
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.start_ms.len()
    }

    /// True when there are no windows.
    pub fn is_empty(&self) -> bool {
        self.start_ms.is_empty()
    }

    /// Window `i` as a row (`None` when `i >= len()`).
    pub fn row(&self, i: usize) -> Option<WindowAggregate> {
        Some(WindowAggregate {
            kind: self.kind,
            scope: self.scope.clone(),
            id: self.id.clone(),
            district: self.district.get(i)?.clone(),
            start_ms: *self.start_ms.get(i)?,
            window_ms: self.window_ms,
            version: *self.version.get(i)?,
            count: *self.count.get(i)?,
            metrics: self
                .metrics
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), (*v.get(i)?)?)))
                .collect(),
        })
    }

    /// All windows as rows, in order.
    pub fn to_rows(&self) -> Vec<WindowAggregate> {
        (0..self.len()).filter_map(|i| self.row(i)).collect()
    }
}

/// A query for raw readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingQuery {
    /// Only this device.
    pub device: Option<String>,
    /// Only this site (lot or feeder).
    pub site: Option<String>,
    /// Range start (inclusive), event time, UTC epoch ms.
    pub from_ms: i64,
    /// Range end (exclusive), event time, UTC epoch ms.
    pub to_ms: i64,
    /// Most rows returned (the oldest first).
    pub limit: usize,
}

/// A query for data-quality rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityQuery {
    /// Only this dataset (`parking` / `grid`).
    pub dataset: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Range start (inclusive) on window starts, UTC epoch ms.
    pub from_ms: i64,
    /// Range end (exclusive), UTC epoch ms.
    pub to_ms: i64,
}

/// A refused input kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When it was refused (receive time), UTC epoch ms.
    pub ts_ms: i64,
    /// MQTT topic it arrived on.
    pub topic: String,
    /// Source: device id when known, else the topic's device/gateway level, else `unknown`.
    pub source: String,
    /// Stable reason name (`RejectReason::as_str`).
    pub reason: String,
    /// Human-readable detail (never the payload itself).
    pub detail: String,
    /// The payload, capped (the core keeps at most 4 KiB).
    pub payload: Vec<u8>,
}

/// Last known state of one device, from its raw readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    /// Device id.
    pub device: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// Site (lot or feeder).
    pub site: String,
    /// District.
    pub district: String,
    /// Newest event time seen, UTC epoch ms.
    pub last_seen_ms: i64,
    /// Battery from the newest heartbeat, percent (parking sensors only).
    pub battery_pct: Option<f64>,
    /// Highest boot counter seen.
    pub last_boot: u32,
}

/// Counts for "nothing lost, nothing counted twice" checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingCounts {
    /// Rows in the raw readings table.
    pub rows: u64,
    /// Distinct `(device, boot, seq)` keys. Equal to `rows` unless a key was received again with
    /// another event time (stored raw as a second row; see the SQLite store's schema notes).
    pub distinct_keys: u64,
}

/// A raw reading as stored, with its receive time (for replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReading {
    /// The reading.
    pub reading: telemetry::Reading,
    /// When the core received it, UTC epoch ms.
    pub ingest_ms: i64,
}

/// Position after the last row of a replay page: `(ts_ms, device, boot, seq)` of that row.
pub type ReplayCursor = (i64, String, u32, u32);

/// The storage interface. Blocking; async callers use `tokio::task::spawn_blocking`.
pub trait SeriesStore: Send + Sync {
    /// Raw readings, idempotent on (device, boot, seq, ts_ms): a second write of the same reading
    /// changes nothing. `ingest_ms` is the receive time (UTC epoch ms). Returns how many were new. One
    /// transaction.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when retryable; nothing was written then.
    fn write_readings(
        &self,
        readings: &[telemetry::Reading],
        ingest_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Several groups of raw readings, each with its own receive time (UTC epoch ms), as
    /// [`SeriesStore::write_readings`]; returns how many were new in total. Used by the ingest's group
    /// commit (all messages buffered at once). Implementations should write everything in **one**
    /// transaction (the SQLite store does); this default writes group by group, which is still safe to
    /// retry (writes are idempotent) but may under-count `new` after a partial failure.
    ///
    /// # Errors
    /// As [`SeriesStore::write_readings`].
    fn write_reading_groups(
        &self,
        groups: &[(Vec<telemetry::Reading>, i64)],
    ) -> Result<usize, StoreError> {
        let mut new = 0;
        for (readings, ingest_ms) in groups {
            new += self.write_readings(readings, *ingest_ms)?;
        }
        Ok(new)
    }
    /// Idempotent upsert keyed by (kind, scope, id, window_ms, start_ms, version).
    ///
    /// # Errors
    /// As [`SeriesStore::write_readings`].
    fn upsert_aggregates(&self, rows: &[WindowAggregate]) -> Result<(), StoreError>;
    /// Appends alert transitions; a transition already stored (same alert, state, site and time, e.g.
    /// raised again by the replay after a restart) is ignored.
    ///
    /// # Errors
    /// As [`SeriesStore::write_readings`].
    fn write_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError>;
    /// Upserts quality rows keyed by (dataset, source, window_ms, start_ms).
    ///
    /// # Errors
    /// As [`SeriesStore::write_readings`].
    fn write_quality(&self, rows: &[QualityRow]) -> Result<(), StoreError>;
    /// Appends dead letters.
    ///
    /// # Errors
    /// As [`SeriesStore::write_readings`].
    fn write_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError>;
    /// Aggregates of one series over [from_ms, to_ms), highest version per window only, ordered by start.
    ///
    /// # Errors
    /// Storage failures.
    fn query_aggregates(&self, q: &AggregateQuery) -> Result<Vec<WindowAggregate>, StoreError>;
    /// As [`SeriesStore::query_aggregates`], in columns ([`AggregateColumns`]; `window_ms` and the
    /// series come from the query). The default builds the columns from `query_aggregates`; the SQLite
    /// store reads them directly, without a row struct or a metric map per window.
    ///
    /// # Errors
    /// Storage failures.
    fn query_aggregate_columns(&self, q: &AggregateQuery) -> Result<AggregateColumns, StoreError> {
        let rows = self.query_aggregates(q)?;
        Ok(AggregateColumns::from_rows(
            q.kind,
            &q.scope,
            &q.id,
            q.window_ms,
            &rows,
        ))
    }
    /// The newest window (highest version) of every series of a kind/scope/window length, optionally
    /// only windows starting before `before_ms`.
    ///
    /// # Errors
    /// Storage failures.
    fn latest_aggregates(
        &self,
        kind: DeviceKind,
        scope: &str,
        window_ms: i64,
        before_ms: Option<i64>,
    ) -> Result<Vec<WindowAggregate>, StoreError>;
    /// Raw readings of one device or site over a range, ordered by ts_ms (limit applies).
    ///
    /// # Errors
    /// Storage failures.
    fn query_readings(&self, q: &ReadingQuery) -> Result<Vec<telemetry::Reading>, StoreError>;
    /// Alert transitions with `ts_ms >= since_ms`, newest first, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn recent_alerts(&self, since_ms: i64, limit: usize) -> Result<Vec<Alert>, StoreError>;
    /// Quality rows matching the query, ordered by start, then dataset and source.
    ///
    /// # Errors
    /// Storage failures.
    fn query_quality(&self, q: &QualityQuery) -> Result<Vec<QualityRow>, StoreError>;
    /// Dead letters with `ts_ms >= since_ms`, newest first, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn recent_dead_letters(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// Last seen, battery, boot per device (from raw readings / heartbeats), ordered by device id.
    ///
    /// # Errors
    /// Storage failures.
    fn device_health(&self) -> Result<Vec<DeviceHealth>, StoreError>;
    /// Counts for "nothing lost, nothing counted twice" checks.
    ///
    /// # Errors
    /// Storage failures.
    fn reading_counts(&self) -> Result<ReadingCounts, StoreError>;
    /// One page of raw readings with `ts_ms >= from_ms`, ordered by `(ts_ms, device, boot, seq)`,
    /// strictly after `after`, at most `limit` rows (crash recovery replays these into the dataflow).
    ///
    /// # Errors
    /// Storage failures; the default implementation says the store cannot replay
    /// ([`StoreError::Other`]).
    fn replay_readings(
        &self,
        from_ms: i64,
        after: Option<&ReplayCursor>,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let _ = (from_ms, after, limit);
        Err(StoreError::Other(
            "this store cannot replay readings".into(),
        ))
    }
    /// Newest event time among raw readings, UTC epoch ms; `None` when empty.
    ///
    /// # Errors
    /// Storage failures; the default implementation says the store cannot replay.
    fn newest_reading_ms(&self) -> Result<Option<i64>, StoreError> {
        Err(StoreError::Other(
            "this store cannot replay readings".into(),
        ))
    }
}

/// Which time-series backend receives raw readings and aggregates besides SQLite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded SQLite file only (default).
    #[default]
    Sqlite,
    /// SQLite (system of record: acks, replay, dashboard) plus an InfluxDB v2 server ([`InfluxSink`]).
    Influxdb,
}

/// Which store to open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (default) or `influxdb`.
    pub backend: StoreBackend,
    /// InfluxDB settings, used when `backend = "influxdb"`.
    pub influxdb: InfluxConfig,
    /// SQLite database file (created with its directory if missing; default `data/citybrain.sqlite`).
    pub sqlite_path: PathBuf,
    /// How long a writer waits on a locked database before reporting `Unavailable`, ms (default 5,000).
    pub busy_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            influxdb: InfluxConfig::default(),
            sqlite_path: PathBuf::from("data/citybrain.sqlite"),
            busy_timeout_ms: 5_000,
        }
    }
}

/// Opens the store named by the config (runs migrations).
///
/// # Errors
/// [`StoreError`] when the file cannot be created or migrated.
pub fn open_store(cfg: &StoreConfig) -> Result<Arc<dyn SeriesStore>, StoreError> {
    if let Some(dir) = cfg.sqlite_path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    Ok(Arc::new(SqliteStore::open_with(
        &cfg.sqlite_path,
        cfg.busy_timeout_ms,
    )?))
}

/// Builds the extra time-series sink named by the config (`None` for `sqlite`).
///
/// # Errors
/// [`StoreError::Invalid`] for bad InfluxDB settings.
pub fn open_sink(cfg: &StoreConfig) -> Result<Option<Arc<dyn SeriesSink>>, StoreError> {
    Ok(match cfg.backend {
        StoreBackend::Sqlite => None,
        StoreBackend::Influxdb => Some(Arc::new(InfluxSink::new(&cfg.influxdb)?)),
    })
}
