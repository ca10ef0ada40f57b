//! [`SqliteStore`]: the embedded store, one SQLite file in WAL mode.
//!
//! Schema (migrations keyed by `PRAGMA user_version`):
//! - `readings`: primary key `(ts_ms, device, boot, seq)` (event-time order, so a commit appends to a
//!   few adjacent pages and every time-range query is one primary-key range scan), the reading as
//!   JSON plus its key columns. A re-sent reading (same key and event time) is stored once.
//! - `devices`: last seen / battery / boot per device, maintained in the same transaction as `readings`.
//! - `aggregates`: primary key `(kind, scope, id, window_ms, start_ms, version)`, metrics as JSON text
//!   (a name → number object; other tools read it as such). A series over a range is one primary-key
//!   range scan ([`scan_series`]); [`SeriesStore::query_aggregate_columns`] decodes the metrics straight
//!   into columns, without a map per window.
//! - `alerts`, `dead_letters`: append-only logs; an alert transition `(alert, state, site, ts_ms)` is
//!   stored once (a replay after a restart raises it again; the repeat is ignored).
//! - `quality`: primary key `(dataset, source, window_ms, start_ms)`.
//!
//! Two connections: a writer and a reader (WAL lets readers run beside the writer), each behind a mutex.

use super::{
    AggregateColumns, AggregateQuery, DeadLetter, DeviceHealth, QualityQuery, QualityRow,
    ReadingCounts, ReadingQuery, ReplayCursor, SeriesStore, StoreError, StoredReading,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use telemetry::message::{Alert, AlertState, WindowAggregate};
use telemetry::{DeviceKind, Measurement, Reading};

const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE readings (
        device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
        site TEXT NOT NULL, district TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
        ts_ms INTEGER NOT NULL, ingest_ms INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (device, boot, seq)) WITHOUT ROWID;
     CREATE INDEX readings_device_ts ON readings (device, ts_ms);
     CREATE INDEX readings_site_ts ON readings (site, ts_ms);
     CREATE INDEX readings_ts ON readings (ts_ms);
     CREATE TABLE devices (
        device TEXT PRIMARY KEY, kind TEXT NOT NULL, site TEXT NOT NULL, district TEXT NOT NULL,
        last_seen_ms INTEGER NOT NULL, battery_pct REAL, battery_ts_ms INTEGER, last_boot INTEGER NOT NULL);
     CREATE TABLE aggregates (
        kind TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, window_ms INTEGER NOT NULL,
        start_ms INTEGER NOT NULL, version INTEGER NOT NULL, district TEXT NOT NULL, count INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY (kind, scope, id, window_ms, start_ms, version)) WITHOUT ROWID;
     CREATE INDEX aggregates_latest ON aggregates (kind, scope, window_ms, start_ms);
     CREATE TABLE alerts (
        n INTEGER PRIMARY KEY AUTOINCREMENT, alert TEXT NOT NULL, state TEXT NOT NULL,
        district TEXT NOT NULL, site TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL,
        message TEXT NOT NULL);
     CREATE INDEX alerts_ts ON alerts (ts_ms);
     CREATE TABLE quality (
        dataset TEXT NOT NULL, source TEXT NOT NULL, start_ms INTEGER NOT NULL, window_ms INTEGER NOT NULL,
        completeness REAL NOT NULL, timeliness_p50_ms REAL NOT NULL, timeliness_p95_ms REAL NOT NULL,
        validity REAL NOT NULL, uniqueness REAL NOT NULL, consistency REAL NOT NULL,
        received INTEGER NOT NULL, expected INTEGER NOT NULL, rejected INTEGER NOT NULL,
        duplicates INTEGER NOT NULL,
        PRIMARY KEY (dataset, source, window_ms, start_ms)) WITHOUT ROWID;
     CREATE INDEX quality_start ON quality (start_ms);
     CREATE TABLE dead_letters (
        n INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, topic TEXT NOT NULL,
        source TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, payload BLOB NOT NULL);
     CREATE INDEX dead_letters_ts ON dead_letters (ts_ms);",
    // 2: an alert transition is stored once. After a crash the core replays stored readings, which
    // raises the same transitions again; they are now ignored (older files lose their repeats here).
    "DELETE FROM alerts WHERE n NOT IN (
        SELECT MIN(n) FROM alerts GROUP BY alert, state, site, ts_ms);
     CREATE UNIQUE INDEX alerts_transition ON alerts (alert, state, site, ts_ms);",
    // 3: no query uses these two indexes (EXPLAIN QUERY PLAN of every `readings` query: the device and
    // site filters are `?1 IS NULL OR device = ?1`, which SQLite cannot serve from an index, so every
    // time-range query uses `readings_ts`), yet each new reading dirtied a page of each, mostly one page
    // per device (`readings_device_ts`). Dropping them roughly halves the WAL pages written per reading.
    "DROP INDEX IF EXISTS readings_device_ts;
     DROP INDEX IF EXISTS readings_site_ts;",
    // 4: readings in event-time order. Keyed by `(device, boot, seq)`, each device's newest rows sat on
    // their own leaf page, so a commit holding one reading per device wrote about one 4 KiB WAL page per
    // reading. Keyed by `(ts_ms, device, boot, seq)`, a commit's readings (event times close together)
    // fill a few adjacent pages at the right edge of the tree. Every `readings` query reads a time range
    // in exactly this order, so the primary key replaces `readings_ts`. A re-sent reading (same key and
    // event time: QoS 1 redelivery, a gateway replaying its spool) is still stored once; the same
    // `(device, boot, seq)` with another event time is another row (the dataflow's dedup drops it).
    "CREATE TABLE readings_v4 (
        ts_ms INTEGER NOT NULL, device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
        site TEXT NOT NULL, district TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
        ingest_ms INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (ts_ms, device, boot, seq)) WITHOUT ROWID;
     INSERT INTO readings_v4 (ts_ms, device, boot, seq, site, district, kind, type, ingest_ms, body)
        SELECT ts_ms, device, boot, seq, site, district, kind, type, ingest_ms, body FROM readings;
     DROP TABLE readings;
     ALTER TABLE readings_v4 RENAME TO readings;",
];

/// Page cache of the write connection, KiB (SQLite's default is 2,000 KiB). The hot set of an ingest
/// write is the right edge of `readings` (late readings land further back) plus the `devices` rows:
/// with many thousand devices that no longer fits the default, and each miss is a read syscall.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// WAL pages after which a commit of the write connection checkpoints by itself (SQLite's default is
/// 1,000). The background checkpointer ([`CHECKPOINT_INTERVAL`]) normally runs first; this is the
/// backstop that bounds the WAL if it cannot keep up.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;
/// How often the background checkpointer copies committed WAL pages into the database file (a passive
/// checkpoint: it never blocks the writer or readers).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1_000);
/// Size the WAL file is truncated to after a checkpoint that reset it, bytes.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

/// Device-table values folded over the new readings of one write: (kind, site, district, newest
/// event time, newest heartbeat battery (pct, ts), highest boot).
type DevFold<'a> = (&'a str, &'a str, &'a str, i64, Option<(f64, i64)>, u32);

/// Inserts raw readings (idempotent) and upserts the `devices` table once per device of the write,
/// inside the caller's transaction. Returns how many readings were new.
fn write_readings_tx<'a>(
    tx: &rusqlite::Transaction<'_>,
    groups: impl Iterator<Item = (&'a [Reading], i64)>,
) -> Result<usize, StoreError> {
    let mut new = 0;
    // Device rows are upserted once per device per transaction; the upsert takes max/newest values,
    // so folding the batch first gives the same row as one upsert per reading.
    let mut devs: std::collections::HashMap<&'a str, DevFold<'a>> =
        std::collections::HashMap::new();
    let mut order: Vec<&'a str> = Vec::new();
    {
        let mut ins = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO readings (device, boot, seq, site, district, kind, type, ts_ms, ingest_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(map_err)?;
        for (readings, ingest_ms) in groups {
            for r in readings {
                let body =
                    serde_json::to_string(r).map_err(|e| StoreError::Invalid(e.to_string()))?;
                let n = ins
                    .execute(params![
                        r.device.as_str(),
                        r.boot,
                        r.seq,
                        r.site.as_str(),
                        r.district.as_str(),
                        r.kind().as_str(),
                        r.data.type_name(),
                        r.ts_ms,
                        ingest_ms,
                        body
                    ])
                    .map_err(map_err)?;
                if n == 0 {
                    continue;
                }
                new += 1;
                let bat = match &r.data {
                    Measurement::ParkingHeartbeat(h) => Some((f64::from(h.battery_pct), r.ts_ms)),
                    _ => None,
                };
                match devs.entry(r.device.as_str()) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        order.push(r.device.as_str());
                        v.insert((
                            r.kind().as_str(),
                            r.site.as_str(),
                            r.district.as_str(),
                            r.ts_ms,
                            bat,
                            r.boot,
                        ));
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        let d = o.get_mut();
                        d.0 = r.kind().as_str();
                        d.1 = r.site.as_str();
                        d.2 = r.district.as_str();
                        d.3 = d.3.max(r.ts_ms);
                        if let Some(b) = bat
                            && d.4.is_none_or(|o| b.1 >= o.1)
                        {
                            d.4 = Some(b);
                        }
                        d.5 = d.5.max(r.boot);
                    }
                }
            }
        }
    }
    let mut dev = tx
        .prepare_cached(
            "INSERT INTO devices (device, kind, site, district, last_seen_ms, battery_pct, battery_ts_ms, last_boot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (device) DO UPDATE SET
               kind = excluded.kind, site = excluded.site, district = excluded.district,
               last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
               battery_pct = CASE WHEN excluded.battery_ts_ms IS NOT NULL
                    AND (battery_ts_ms IS NULL OR excluded.battery_ts_ms >= battery_ts_ms)
                    THEN excluded.battery_pct ELSE battery_pct END,
               battery_ts_ms = CASE WHEN excluded.battery_ts_ms IS NOT NULL
                    AND (battery_ts_ms IS NULL OR excluded.battery_ts_ms >= battery_ts_ms)
                    THEN excluded.battery_ts_ms ELSE battery_ts_ms END,
               last_boot = max(last_boot, excluded.last_boot)",
        )
        .map_err(map_err)?;
    for d in order {
        let Some((kind, site, district, ts, bat, boot)) = devs.get(d) else {
            continue;
        };
        dev.execute(params![
            d,
            kind,
            site,
            district,
            ts,
            bat.map(|b| b.0),
            bat.map(|b| b.1),
            boot
        ])
        .map_err(map_err)?;
    }
    Ok(new)
}

/// The embedded SQLite store. Cheap to share as `Arc<dyn SeriesStore>`.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// Separate read connection for files (WAL readers do not wait for the writer); `None` in memory.
    reader: Option<Mutex<Connection>>,
    /// The background checkpointer of a file store: dropping the sender stops it.
    checkpointer: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.checkpointer.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// Runs passive checkpoints on its own connection every [`CHECKPOINT_INTERVAL`] until `stop` is
/// dropped. Why: a checkpoint copies every page changed since the last one into the database file and
/// fsyncs it; run from the writer's commit (SQLite's auto-checkpoint) that work sat between a group
/// commit and its acknowledgements. Here it runs beside the writer (WAL lets a checkpoint proceed while
/// new frames are appended), and a page changed by many commits between two checkpoints is copied once.
/// Durability is unchanged: a commit is durable against a process crash once it is in the WAL.
fn checkpointer(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background WAL checkpoint failed (the writer's backstop applies)");
        }
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly => StoreError::Unavailable(e.to_string()),
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                StoreError::Invalid(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        },
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::InvalidParameterName(_) => {
            StoreError::Invalid(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves the connection usable (SQLite rolls back open transactions
    // when they are dropped), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn kind_of(s: &str) -> DeviceKind {
    DeviceKind::parse(s).unwrap_or(DeviceKind::Parking)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) a database file, sets WAL and runs migrations.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened; [`StoreError::Other`] when the schema
    /// is newer than this program.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, 5_000)
    }

    /// As [`SqliteStore::open`] with a busy timeout in ms.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: &Path, busy_timeout_ms: u64) -> Result<Self, StoreError> {
        let w = Connection::open(path).map_err(map_err)?;
        w.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(map_err)?;
        // Switching a new file to WAL needs an exclusive lock and SQLite does not call the busy
        // handler for it: when another process opens the same new file at this moment, retry.
        let deadline = std::time::Instant::now() + Duration::from_millis(busy_timeout_ms);
        loop {
            match w.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        // WAL + NORMAL: a commit survives a process crash; only a power loss may lose the last commits.
        w.pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_err)?;
        w.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(map_err)?;
        w.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(map_err)?;
        w.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(map_err)?;
        migrate(&w)?;
        let r = Connection::open(path).map_err(map_err)?;
        r.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(map_err)?;
        let c = Connection::open(path).map_err(map_err)?;
        c.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(map_err)?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(c, stopped))
            .map_err(|e| StoreError::Other(format!("starting the checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            writer: Mutex::new(w),
            reader: Some(Mutex::new(r)),
            checkpointer: Some((stop, handle)),
        })
    }

    /// An in-memory database (tests, benchmarks).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let w = Connection::open_in_memory().map_err(map_err)?;
        migrate(&w)?;
        Ok(SqliteStore {
            writer: Mutex::new(w),
            reader: None,
            checkpointer: None,
        })
    }

    /// The schema version after migrations (`PRAGMA user_version`).
    ///
    /// # Errors
    /// Storage failures.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        lock(&self.writer)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err)
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        lock(self.reader.as_ref().unwrap_or(&self.writer))
    }
}

/// Brings the schema up to date, one migration per transaction. Each step starts with `BEGIN
/// IMMEDIATE` (the write lock, waiting up to the busy timeout) and re-reads `user_version` under it, so
/// several processes opening the same new file at once (a cluster of cores) run every step once.
fn migrate(c: &Connection) -> Result<(), StoreError> {
    // Up to date (the common case): no write lock at all, so opening never waits on a busy writer.
    let v: usize = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if v == MIGRATIONS.len() {
        return Ok(());
    }
    loop {
        let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let v: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err)?;
        if v > MIGRATIONS.len() {
            return Err(StoreError::Other(format!(
                "database schema version {v} is newer than this program ({})",
                MIGRATIONS.len()
            )));
        }
        let Some(m) = MIGRATIONS.get(v) else {
            return tx.commit().map_err(map_err);
        };
        tx.execute_batch(m).map_err(map_err)?;
        tx.pragma_update(None, "user_version", v + 1)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
    }
}

fn row_to_aggregate(r: &rusqlite::Row<'_>) -> rusqlite::Result<(WindowAggregate, String)> {
    let kind: String = r.get(0)?;
    let metrics: String = r.get(8)?;
    Ok((
        WindowAggregate {
            kind: kind_of(&kind),
            scope: r.get(1)?,
            id: r.get(2)?,
            window_ms: r.get(3)?,
            start_ms: r.get(4)?,
            version: r.get(5)?,
            district: r.get(6)?,
            count: r.get::<_, i64>(7)?.max(0) as u64,
            metrics: Default::default(),
        },
        metrics,
    ))
}

fn finish_aggregates(
    rows: Vec<(WindowAggregate, String)>,
) -> Result<Vec<WindowAggregate>, StoreError> {
    rows.into_iter()
        .map(|(mut a, m)| {
            a.metrics = serde_json::from_str(&m)
                .map_err(|e| StoreError::Other(format!("metrics JSON: {e}")))?;
            Ok(a)
        })
        .collect()
}

/// One stored window of a series as [`scan_series`] reads it (text borrowed from SQLite's row buffer).
struct ScanRow<'a> {
    start_ms: i64,
    version: u32,
    count: u64,
    district: &'a str,
    /// The metrics column: a JSON object of metric name → number.
    metrics: &'a str,
}

/// Calls `f` for every stored version of every window of the series in `q` over
/// `[from_ms, to_ms)`, ordered by `(start_ms, version)`: so the last row of each window start is its
/// highest version.
///
/// Why not pick the highest version in SQL: a correlated `max(version)` subquery costs one more B-tree
/// search per window (about a third of a 43,200-window read); the primary key
/// `(kind, scope, id, window_ms, start_ms, version)` already delivers the rows in this order, so the
/// query is one range scan without a sort, and callers drop superseded versions as they go.
fn scan_series(
    c: &Connection,
    q: &AggregateQuery,
    mut f: impl FnMut(ScanRow<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT start_ms, version, district, count, metrics FROM aggregates
             WHERE kind = ?1 AND scope = ?2 AND id = ?3 AND window_ms = ?4 AND start_ms >= ?5 AND start_ms < ?6
             ORDER BY start_ms, version",
        )
        .map_err(map_err)?;
    let mut rows = st
        .query(params![
            q.kind.as_str(),
            q.scope,
            q.id,
            q.window_ms,
            q.from_ms,
            q.to_ms
        ])
        .map_err(map_err)?;
    while let Some(r) = rows.next().map_err(map_err)? {
        let text = |i: usize| -> Result<&str, StoreError> {
            r.get_ref(i)
                .map_err(map_err)?
                .as_str()
                .map_err(|e| StoreError::Other(format!("aggregates column {i}: {e}")))
        };
        f(ScanRow {
            start_ms: r.get(0).map_err(map_err)?,
            version: r.get(1).map_err(map_err)?,
            district: text(2)?,
            count: r.get::<_, i64>(3).map_err(map_err)?.max(0) as u64,
            metrics: text(4)?,
        })?;
    }
    Ok(())
}

/// Calls `f(name, value)` for each entry of a stored metrics object (`{"name": number, ...}`, as
/// `serde_json` writes a `BTreeMap<String, f64>`), in text order. Names without escapes are borrowed
/// from `text`, so nothing is allocated per entry. Accepts and refuses exactly what parsing into a
/// `BTreeMap<String, f64>` does (a repeated name is reported twice; map callers keep the last value).
///
/// # Errors
/// [`StoreError::Other`] when the text is not such an object.
fn for_each_metric(text: &str, f: impl FnMut(&str, f64)) -> Result<(), StoreError> {
    use serde::Deserializer as _;
    use serde::de::{MapAccess, Visitor};
    use std::borrow::Cow;

    struct Key<'de>(Cow<'de, str>);
    impl<'de> serde::Deserialize<'de> for Key<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a metric name")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }
    struct MapVisitor<F>(F);
    impl<'de, F: FnMut(&str, f64)> Visitor<'de> for MapVisitor<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of metric name to number")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<Key<'de>>()? {
                let v: f64 = m.next_value()?;
                (self.0)(&k.0, v);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(MapVisitor(f))
        .and_then(|()| de.end())
        .map_err(|e| StoreError::Other(format!("metrics JSON: {e}")))
}

/// Builds [`AggregateColumns`] from [`scan_series`] rows: a later version of the same window start
/// replaces the previous row; metric columns are padded with `None` where a window lacks the metric.
struct ColumnsBuilder {
    cols: AggregateColumns,
    /// Metric columns in first-seen order (stored objects list names in the same order every row, so
    /// the next name is almost always the next column: `hint`).
    names: Vec<String>,
    values: Vec<Vec<Option<f64>>>,
}

impl ColumnsBuilder {
    fn new(q: &AggregateQuery) -> Self {
        ColumnsBuilder {
            cols: AggregateColumns::new(q.kind, &q.scope, &q.id, q.window_ms),
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, w: &ScanRow<'_>) -> Result<(), StoreError> {
        let c = &mut self.cols;
        if c.start_ms.last() == Some(&w.start_ms) {
            c.start_ms.pop();
            c.version.pop();
            c.count.pop();
            c.district.pop();
            let n = c.start_ms.len();
            for col in &mut self.values {
                col.truncate(n);
            }
        }
        let i = c.start_ms.len();
        c.start_ms.push(w.start_ms);
        c.version.push(w.version);
        c.count.push(w.count);
        match c.district.last() {
            Some(d) if d == w.district => c.district.push(d.clone()),
            _ => c.district.push(w.district.to_string()),
        }
        let (names, values) = (&mut self.names, &mut self.values);
        let mut hint = 0;
        for_each_metric(w.metrics, |name, v| {
            let k = if names.get(hint).is_some_and(|n| n == name) {
                hint
            } else if let Some(k) = names.iter().position(|n| n == name) {
                k
            } else {
                names.push(name.to_string());
                values.push(vec![None; i]);
                names.len() - 1
            };
            let col = &mut values[k];
            if col.len() > i {
                col[i] = Some(v); // a repeated name: the last value wins, as in a map
            } else {
                col.push(Some(v));
            }
            hint = k + 1;
        })?;
        for col in values.iter_mut() {
            if col.len() == i {
                col.push(None);
            }
        }
        Ok(())
    }

    fn finish(self) -> AggregateColumns {
        let mut cols = self.cols;
        // A metric seen only in a superseded version has no value left: drop it, as rows would.
        cols.metrics = self
            .names
            .into_iter()
            .zip(self.values)
            .filter(|(_, v)| v.iter().any(Option::is_some))
            .collect();
        cols
    }
}

const AGG_COLS: &str = "kind, scope, id, window_ms, start_ms, version, district, count, metrics";

impl SeriesStore for SqliteStore {
    fn write_readings(&self, readings: &[Reading], ingest_ms: i64) -> Result<usize, StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        let new = write_readings_tx(&tx, std::iter::once((readings, ingest_ms)))?;
        tx.commit().map_err(map_err)?;
        Ok(new)
    }

    fn write_reading_groups(&self, groups: &[(Vec<Reading>, i64)]) -> Result<usize, StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        let new = write_readings_tx(&tx, groups.iter().map(|(r, t)| (r.as_slice(), *t)))?;
        tx.commit().map_err(map_err)?;
        Ok(new)
    }

    fn upsert_aggregates(&self, rows: &[WindowAggregate]) -> Result<(), StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        {
            let mut st = tx
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO aggregates ({AGG_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))
                .map_err(map_err)?;
            for a in rows {
                let m = serde_json::to_string(&a.metrics)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                st.execute(params![
                    a.kind.as_str(),
                    a.scope,
                    a.id,
                    a.window_ms,
                    a.start_ms,
                    a.version,
                    a.district,
                    to_i64(a.count),
                    m
                ])
                .map_err(map_err)?;
            }
        }
        tx.commit().map_err(map_err)
    }

    fn write_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts (alert, state, district, site, ts_ms, value, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(map_err)?;
            for a in alerts {
                let state = match a.state {
                    AlertState::Raised => "raised",
                    AlertState::Cleared => "cleared",
                };
                st.execute(params![
                    a.alert, state, a.district, a.site, a.ts_ms, a.value, a.message
                ])
                .map_err(map_err)?;
            }
        }
        tx.commit().map_err(map_err)
    }

    fn write_quality(&self, rows: &[QualityRow]) -> Result<(), StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO quality (dataset, source, start_ms, window_ms, completeness,
                       timeliness_p50_ms, timeliness_p95_ms, validity, uniqueness, consistency,
                       received, expected, rejected, duplicates)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(map_err)?;
            for q in rows {
                st.execute(params![
                    q.dataset,
                    q.source,
                    q.start_ms,
                    q.window_ms,
                    q.completeness,
                    q.timeliness_p50_ms,
                    q.timeliness_p95_ms,
                    q.validity,
                    q.uniqueness,
                    q.consistency,
                    to_i64(q.received),
                    to_i64(q.expected),
                    to_i64(q.rejected),
                    to_i64(q.duplicates)
                ])
                .map_err(map_err)?;
            }
        }
        tx.commit().map_err(map_err)
    }

    fn write_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction().map_err(map_err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO dead_letters (ts_ms, topic, source, reason, detail, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(map_err)?;
            for d in rows {
                st.execute(params![
                    d.ts_ms, d.topic, d.source, d.reason, d.detail, d.payload
                ])
                .map_err(map_err)?;
            }
        }
        tx.commit().map_err(map_err)
    }

    fn query_aggregates(&self, q: &AggregateQuery) -> Result<Vec<WindowAggregate>, StoreError> {
        let mut out: Vec<WindowAggregate> = Vec::new();
        scan_series(&self.read(), q, |w| {
            // Versions of one window arrive in ascending order: a later one replaces the earlier.
            if out.last().is_some_and(|l| l.start_ms == w.start_ms) {
                out.pop();
            }
            let mut metrics = std::collections::BTreeMap::new();
            for_each_metric(w.metrics, |name, v| {
                metrics.insert(name.to_string(), v);
            })?;
            out.push(WindowAggregate {
                kind: q.kind,
                scope: q.scope.clone(),
                id: q.id.clone(),
                district: w.district.to_string(),
                start_ms: w.start_ms,
                window_ms: q.window_ms,
                version: w.version,
                count: w.count,
                metrics,
            });
            Ok(())
        })?;
        Ok(out)
    }

    fn query_aggregate_columns(&self, q: &AggregateQuery) -> Result<AggregateColumns, StoreError> {
        let mut b = ColumnsBuilder::new(q);
        scan_series(&self.read(), q, |w| b.push(&w))?;
        Ok(b.finish())
    }

    fn latest_aggregates(
        &self,
        kind: DeviceKind,
        scope: &str,
        window_ms: i64,
        before_ms: Option<i64>,
    ) -> Result<Vec<WindowAggregate>, StoreError> {
        let c = self.read();
        let before = before_ms.unwrap_or(i64::MAX);
        let mut st = c
            .prepare_cached(&format!(
                "SELECT {AGG_COLS} FROM aggregates a
                 WHERE kind = ?1 AND scope = ?2 AND window_ms = ?3
                   AND (start_ms, version) = (SELECT start_ms, version FROM aggregates b
                       WHERE b.kind = a.kind AND b.scope = a.scope AND b.id = a.id AND b.window_ms = a.window_ms
                         AND b.start_ms < ?4
                       ORDER BY start_ms DESC, version DESC LIMIT 1)
                 ORDER BY id"
            ))
            .map_err(map_err)?;
        let rows = st
            .query_map(
                params![kind.as_str(), scope, window_ms, before],
                row_to_aggregate,
            )
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        finish_aggregates(rows)
    }

    fn query_readings(&self, q: &ReadingQuery) -> Result<Vec<Reading>, StoreError> {
        let c = self.read();
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let mut st = c
            .prepare_cached(
                "SELECT body FROM readings
                 WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR site = ?2) AND ts_ms >= ?3 AND ts_ms < ?4
                 ORDER BY ts_ms, device, boot, seq LIMIT ?5",
            )
            .map_err(map_err)?;
        let bodies = st
            .query_map(params![q.device, q.site, q.from_ms, q.to_ms, limit], |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        bodies
            .iter()
            .map(|b| {
                telemetry::json::parse_reading(b.as_bytes())
                    .map_err(|e| StoreError::Other(format!("reading JSON: {e}")))
            })
            .collect()
    }

    fn recent_alerts(&self, since_ms: i64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let c = self.read();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = c
            .prepare_cached(
                "SELECT alert, state, district, site, ts_ms, value, message FROM alerts
                 WHERE ts_ms >= ?1 ORDER BY ts_ms DESC, n DESC LIMIT ?2",
            )
            .map_err(map_err)?;
        st.query_map(params![since_ms, limit], |r| {
            let state: String = r.get(1)?;
            Ok(Alert {
                alert: r.get(0)?,
                state: if state == "cleared" {
                    AlertState::Cleared
                } else {
                    AlertState::Raised
                },
                district: r.get(2)?,
                site: r.get(3)?,
                ts_ms: r.get(4)?,
                value: r.get(5)?,
                message: r.get(6)?,
            })
        })
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)
    }

    fn query_quality(&self, q: &QualityQuery) -> Result<Vec<QualityRow>, StoreError> {
        let c = self.read();
        let mut st = c
            .prepare_cached(
                "SELECT dataset, source, start_ms, window_ms, completeness, timeliness_p50_ms, timeliness_p95_ms,
                        validity, uniqueness, consistency, received, expected, rejected, duplicates
                 FROM quality
                 WHERE (?1 IS NULL OR dataset = ?1) AND (?2 IS NULL OR source = ?2) AND start_ms >= ?3 AND start_ms < ?4
                 ORDER BY start_ms, dataset, source, window_ms",
            )
            .map_err(map_err)?;
        st.query_map(params![q.dataset, q.source, q.from_ms, q.to_ms], |r| {
            Ok(QualityRow {
                dataset: r.get(0)?,
                source: r.get(1)?,
                start_ms: r.get(2)?,
                window_ms: r.get(3)?,
                completeness: r.get(4)?,
                timeliness_p50_ms: r.get(5)?,
                timeliness_p95_ms: r.get(6)?,
                validity: r.get(7)?,
                uniqueness: r.get(8)?,
                consistency: r.get(9)?,
                received: r.get::<_, i64>(10)?.max(0) as u64,
                expected: r.get::<_, i64>(11)?.max(0) as u64,
                rejected: r.get::<_, i64>(12)?.max(0) as u64,
                duplicates: r.get::<_, i64>(13)?.max(0) as u64,
            })
        })
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)
    }

    fn recent_dead_letters(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let c = self.read();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = c
            .prepare_cached(
                "SELECT ts_ms, topic, source, reason, detail, payload FROM dead_letters
                 WHERE ts_ms >= ?1 ORDER BY ts_ms DESC, n DESC LIMIT ?2",
            )
            .map_err(map_err)?;
        st.query_map(params![since_ms, limit], |r| {
            Ok(DeadLetter {
                ts_ms: r.get(0)?,
                topic: r.get(1)?,
                source: r.get(2)?,
                reason: r.get(3)?,
                detail: r.get(4)?,
                payload: r.get(5)?,
            })
        })
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)
    }

    fn device_health(&self) -> Result<Vec<DeviceHealth>, StoreError> {
        let c = self.read();
        let mut st = c
            .prepare_cached(
                "SELECT device, kind, site, district, last_seen_ms, battery_pct, last_boot FROM devices ORDER BY device",
            )
            .map_err(map_err)?;
        st.query_map([], |r| {
            let kind: String = r.get(1)?;
            Ok(DeviceHealth {
                device: r.get(0)?,
                kind: kind_of(&kind),
                site: r.get(2)?,
                district: r.get(3)?,
                last_seen_ms: r.get(4)?,
                battery_pct: r.get(5)?,
                last_boot: r.get(6)?,
            })
        })
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)
    }

    fn reading_counts(&self) -> Result<ReadingCounts, StoreError> {
        let c = self.read();
        let (rows, distinct): (i64, i64) = c
            .query_row(
                "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device, boot, seq FROM readings)) FROM readings",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(map_err)?
            .unwrap_or((0, 0));
        Ok(ReadingCounts {
            rows: rows.max(0) as u64,
            distinct_keys: distinct.max(0) as u64,
        })
    }

    fn replay_readings(
        &self,
        from_ms: i64,
        after: Option<&ReplayCursor>,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let c = self.read();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (a_ts, a_dev, a_boot, a_seq) = match after {
            Some((t, d, b, q)) => (*t, d.as_str(), i64::from(*b), i64::from(*q)),
            None => (i64::MIN, "", -1, -1),
        };
        let mut st = c
            .prepare_cached(
                "SELECT body, ingest_ms FROM readings
                 WHERE ts_ms >= ?1 AND (ts_ms, device, boot, seq) > (?2, ?3, ?4, ?5)
                 ORDER BY ts_ms, device, boot, seq LIMIT ?6",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![from_ms, a_ts, a_dev, a_boot, a_seq, limit], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        rows.into_iter()
            .map(|(b, ingest_ms)| {
                let reading = telemetry::json::parse_reading(b.as_bytes())
                    .map_err(|e| StoreError::Other(format!("reading JSON: {e}")))?;
                Ok(StoredReading { reading, ingest_ms })
            })
            .collect()
    }

    fn newest_reading_ms(&self) -> Result<Option<i64>, StoreError> {
        self.read()
            .query_row("SELECT max(ts_ms) FROM readings", [], |r| r.get(0))
            .map_err(map_err)
    }
}

#[cfg(test)]
mod tests;
