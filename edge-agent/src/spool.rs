//! Durable store-and-forward spool: every reading is committed to a SQLite file before it is offered to
//! MQTT and deleted only after the broker's PUBACK for the message that carried it.
//!
//! # On-disk format
//! One SQLite database (default `spool.sqlite`) in WAL mode, `PRAGMA user_version = 1`:
//! - `spool(id INTEGER PRIMARY KEY AUTOINCREMENT, enq_ms INTEGER NOT NULL, bytes INTEGER NOT NULL,
//!   payload BLOB NOT NULL)`: one row per reading. `id` is the monotonic spool id (AUTOINCREMENT: never
//!   reused, even after the newest rows are deleted, so "id < boundary" comparisons stay meaningful
//!   across restarts). `enq_ms` is the gateway's wall clock at enqueue (UTC epoch ms, drives the age
//!   bound). `payload` is the reading as serde JSON ([`telemetry::Reading`]); `bytes` is its length and is
//!   what the byte bound counts (SQLite page and WAL overhead come on top: about +30–50 % on disk).
//!   Integrity: SQLite's own page format and journal; a payload that no longer decodes is counted
//!   (`corrupt`) and deleted rather than blocking the queue.
//! - `meta(key TEXT PRIMARY KEY, value INTEGER)`: drop counters (`dropped_overflow`, `dropped_age`,
//!   `dropped_newest`, `corrupt`). Index `spool_enq` on `enq_ms` keeps the age check O(log n). They are updated in the same transaction as the deletes they count, so
//!   they stay exact across crashes.
//!
//! # Ledger
//! The table *is* the ledger: a row present = not yet acknowledged. Which rows are in flight (published,
//! awaiting PUBACK) is kept in memory by the delivery loop ([`crate::delivery`]): after a restart every row
//! is simply offered again, oldest first.
//!
//! # Crash recovery
//! Nothing to do: open the file, let SQLite roll the WAL forward, recompute the byte and row totals with
//! one `SUM`/`COUNT`. A crash between PUBACK and the delete commit re-sends those readings after restart
//! (at-least-once; consumers dedup on `(device, boot, seq)`). A crash before the append commits loses
//! only readings that were never offered to MQTT (the frame was not acknowledged to anyone either).
//!
//! # fsync policy and its cost
//! [`SyncMode::Normal`] (default): `synchronous = NORMAL` in WAL mode. A commit is a `write()` into the
//! WAL, no fsync; SQLite fsyncs at checkpoints. Survives process crashes and `kill -9` (the data is in the
//! OS page cache), may lose the last commits on power loss or a kernel crash. Cost: tens of µs per commit.
//! [`SyncMode::Full`]: `synchronous = FULL`, an fsync of the WAL on every commit: survives power loss,
//! costs one fsync per commit (0.1–10 ms depending on the disk), so appends are grouped into one
//! transaction per batch of readings to amortise it. Both are measured by the `edge-bench` binary.
//!
//! # Bounds and overflow
//! Bounded by payload bytes (`max_bytes`) and by age (`max_age_s`, enqueue time). Over the byte bound the
//! [`OverflowPolicy`] decides: `drop_oldest` (default) deletes the oldest rows until the new ones fit;
//! `drop_newest` refuses the incoming readings that do not fit. Every drop is counted.
//!
//! The spool is plain blocking code with no network IO; the delivery loop owns it on its own thread.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use telemetry::Reading;

/// What to do when new readings do not fit under the byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Delete the oldest readings until the new ones fit (default: fresh data matters most).
    #[default]
    DropOldest,
    /// Refuse the incoming readings that do not fit (keeps the history of the outage start).
    DropNewest,
}

/// SQLite durability level (see the module docs for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// `synchronous = NORMAL`: survives process crashes, not power loss; no fsync per commit.
    #[default]
    Normal,
    /// `synchronous = FULL`: fsync per commit; survives power loss.
    Full,
}

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// SQLite file path (created if missing; default `spool.sqlite`).
    pub path: PathBuf,
    /// Most payload bytes kept (default 256 MiB).
    pub max_bytes: u64,
    /// Oldest reading kept, s since enqueue (default 7 days); `0` = no age bound.
    pub max_age_s: u64,
    /// What to do when full (default `drop_oldest`).
    pub overflow: OverflowPolicy,
    /// Durability level (default `normal`).
    pub sync: SyncMode,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: PathBuf::from("spool.sqlite"),
            max_bytes: 256 << 20,
            max_age_s: 7 * 24 * 3600,
            overflow: OverflowPolicy::DropOldest,
            sync: SyncMode::Normal,
        }
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// SQLite refused (disk full, locked, corrupt file...).
    #[error("spool sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file has a newer format than this program understands.
    #[error("spool {path}: unsupported format version {version}")]
    Version {
        /// File path.
        path: String,
        /// `user_version` found.
        version: i64,
    },
}

/// One spooled reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    /// Spool id (monotonic).
    pub id: i64,
    /// The reading as stored.
    pub reading: Reading,
    /// Its payload size, bytes.
    pub bytes: u64,
}

/// Counters and totals, for the gateway status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Readings in the spool (unacknowledged).
    pub depth: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Readings appended since open.
    pub appended: u64,
    /// Readings deleted after acknowledgement since open.
    pub acked: u64,
    /// Oldest readings deleted to make room (persistent, since the file was created).
    pub dropped_overflow: u64,
    /// Readings deleted for exceeding the age bound (persistent).
    pub dropped_age: u64,
    /// Incoming readings refused under `drop_newest` or larger than the whole bound (persistent).
    pub dropped_newest: u64,
    /// Rows whose payload no longer decodes, deleted (persistent).
    pub corrupt: u64,
}

const FORMAT_VERSION: i64 = 1;

/// The spool: a SQLite file plus running totals.
pub struct Spool {
    conn: Connection,
    cfg: SpoolConfig,
    stats: SpoolStats,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.cfg.path)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Spool {
    /// Opens (or creates) the spool file and recovers its totals.
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`] when the file cannot be opened or migrated; [`SpoolError::Version`].
    pub fn open(cfg: &SpoolConfig) -> Result<Self, SpoolError> {
        let conn = Connection::open(&cfg.path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match cfg.sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > FORMAT_VERSION {
            return Err(SpoolError::Version {
                path: cfg.path.display().to_string(),
                version,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                enq_ms INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                payload BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS spool_enq ON spool(enq_ms);
             CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             PRAGMA user_version = 1;",
        )?;
        let (depth, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM spool",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let meta = |k: &str| -> Result<u64, rusqlite::Error> {
            let v: Option<i64> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()?;
            Ok(v.unwrap_or(0) as u64)
        };
        let stats = SpoolStats {
            depth: depth as u64,
            bytes: bytes as u64,
            dropped_overflow: meta("dropped_overflow")?,
            dropped_age: meta("dropped_age")?,
            dropped_newest: meta("dropped_newest")?,
            corrupt: meta("corrupt")?,
            ..SpoolStats::default()
        };
        Ok(Spool {
            conn,
            cfg: cfg.clone(),
            stats,
        })
    }

    /// Settings in use.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Current totals and counters.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// The id the next appended reading will get (AUTOINCREMENT: greater than every id ever used).
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`].
    pub fn next_id(&self) -> Result<i64, SpoolError> {
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spool'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) + 1)
    }

    /// Appends readings in one transaction, enforcing the bounds first. Returns how many were stored
    /// (fewer than given only under `drop_newest` or for a reading larger than the whole bound).
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`] (nothing of this call is stored then).
    pub fn append(&mut self, readings: &[Reading], now_ms: i64) -> Result<usize, SpoolError> {
        let payloads: Vec<Vec<u8>> = readings
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap_or_default())
            .collect();
        let max = self.cfg.max_bytes;
        let tx = self.conn.transaction()?;
        let mut d = Deltas::default();
        // Age bound first: old rows go before we decide what else must go.
        if self.cfg.max_age_s > 0 {
            expire(&tx, now_ms - (self.cfg.max_age_s as i64) * 1000, &mut d)?;
        }
        let mut total = self.stats.bytes - d.bytes_freed;
        let mut keep = Vec::with_capacity(payloads.len());
        let incoming: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        match self.cfg.overflow {
            OverflowPolicy::DropOldest => {
                // Readings bigger than the whole bound, or the oldest of this call when the call alone
                // exceeds it, are dropped as the oldest would be.
                let mut need = incoming;
                let mut skip = 0;
                while need > max && skip < payloads.len() {
                    need -= payloads[skip].len() as u64;
                    d.overflow += 1;
                    skip += 1;
                }
                if total + need > max {
                    d.overflow_rows += drop_oldest(&tx, total + need - max, &mut d)?;
                }
                keep.extend(skip..payloads.len());
            }
            OverflowPolicy::DropNewest => {
                for (i, p) in payloads.iter().enumerate() {
                    if total + p.len() as u64 <= max {
                        total += p.len() as u64;
                        keep.push(i);
                    } else {
                        d.newest += 1;
                    }
                }
            }
        }
        {
            let mut ins =
                tx.prepare_cached("INSERT INTO spool(enq_ms, bytes, payload) VALUES (?1, ?2, ?3)")?;
            for &i in &keep {
                ins.execute(params![now_ms, payloads[i].len() as i64, &payloads[i]])?;
            }
        }
        d.overflow += d.overflow_rows;
        bump_meta(&tx, &d)?;
        tx.commit()?;
        let stored_bytes: u64 = keep.iter().map(|&i| payloads[i].len() as u64).sum();
        self.apply(&d);
        self.stats.depth += keep.len() as u64;
        self.stats.bytes += stored_bytes;
        self.stats.appended += keep.len() as u64;
        Ok(keep.len())
    }

    /// Deletes readings older than the age bound (also done on every append). Returns how many went.
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`].
    pub fn expire(&mut self, now_ms: i64) -> Result<u64, SpoolError> {
        if self.cfg.max_age_s == 0 {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut d = Deltas::default();
        expire(&tx, now_ms - (self.cfg.max_age_s as i64) * 1000, &mut d)?;
        bump_meta(&tx, &d)?;
        tx.commit()?;
        self.apply(&d);
        Ok(d.age)
    }

    /// Up to `limit` readings with id > `after_id`, oldest first, stopping before `max_bytes` of payload
    /// would be exceeded (at least one is returned if any exists). Rows that no longer decode are deleted
    /// and counted as `corrupt`.
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`].
    pub fn peek(
        &mut self,
        after_id: i64,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let mut sum = 0u64;
        {
            let mut st = self.conn.prepare_cached(
                "SELECT id, bytes, payload FROM spool WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let mut rows = st.query(params![after_id, limit as i64])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let bytes: i64 = row.get(1)?;
                let payload = row.get_ref(2)?.as_blob().unwrap_or_default();
                if !out.is_empty() && sum + bytes as u64 > max_bytes {
                    break;
                }
                match telemetry::json::parse_reading(payload) {
                    Ok(reading) => {
                        sum += bytes as u64;
                        out.push(Spooled {
                            id,
                            reading,
                            bytes: bytes as u64,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(spool_id = id, error = %e, "spool row does not decode; deleting it");
                        bad.push(id);
                    }
                }
            }
        }
        if !bad.is_empty() {
            let tx = self.conn.transaction()?;
            let mut d = Deltas::default();
            for id in bad {
                if let Some(b) = delete_row(&tx, id)? {
                    d.bytes_freed += b;
                    d.rows_freed += 1;
                    d.corrupt += 1;
                }
            }
            bump_meta(&tx, &d)?;
            tx.commit()?;
            self.apply(&d);
        }
        Ok(out)
    }

    /// Deletes acknowledged readings by id in one transaction (ids already gone are ignored). Returns
    /// how many rows were deleted.
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`].
    pub fn ack(&mut self, ids: &[i64]) -> Result<u64, SpoolError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut d = Deltas::default();
        for &id in ids {
            if let Some(b) = delete_row(&tx, id)? {
                d.bytes_freed += b;
                d.rows_freed += 1;
            }
        }
        tx.commit()?;
        self.apply(&d);
        self.stats.acked += d.rows_freed;
        Ok(d.rows_freed)
    }

    fn apply(&mut self, d: &Deltas) {
        self.stats.depth = self.stats.depth.saturating_sub(d.rows_freed);
        self.stats.bytes = self.stats.bytes.saturating_sub(d.bytes_freed);
        self.stats.dropped_overflow += d.overflow;
        self.stats.dropped_age += d.age;
        self.stats.dropped_newest += d.newest;
        self.stats.corrupt += d.corrupt;
    }
}

/// Changes made inside one transaction, applied to the in-memory totals after commit.
#[derive(Default)]
struct Deltas {
    rows_freed: u64,
    bytes_freed: u64,
    overflow: u64,
    overflow_rows: u64,
    age: u64,
    newest: u64,
    corrupt: u64,
}

fn delete_row(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Option<u64>, rusqlite::Error> {
    let mut st = tx.prepare_cached("DELETE FROM spool WHERE id = ?1 RETURNING bytes")?;
    st.query_row([id], |r| r.get::<_, i64>(0))
        .optional()
        .map(|o| o.map(|b| b as u64))
}

fn expire(
    tx: &rusqlite::Transaction<'_>,
    cutoff_ms: i64,
    d: &mut Deltas,
) -> Result<(), rusqlite::Error> {
    let (n, b): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM spool WHERE enq_ms < ?1",
        [cutoff_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n > 0 {
        tx.execute("DELETE FROM spool WHERE enq_ms < ?1", [cutoff_ms])?;
        d.age += n as u64;
        d.rows_freed += n as u64;
        d.bytes_freed += b as u64;
    }
    Ok(())
}

/// Deletes the oldest rows until at least `need` payload bytes are freed; returns the rows deleted.
fn drop_oldest(
    tx: &rusqlite::Transaction<'_>,
    need: u64,
    d: &mut Deltas,
) -> Result<u64, rusqlite::Error> {
    let mut freed = 0u64;
    let mut rows = 0u64;
    let mut last_id = None;
    {
        let mut st = tx.prepare_cached("SELECT id, bytes FROM spool ORDER BY id")?;
        let mut q = st.query([])?;
        while freed < need {
            let Some(row) = q.next()? else { break };
            let id: i64 = row.get(0)?;
            let b: i64 = row.get(1)?;
            freed += b as u64;
            rows += 1;
            last_id = Some(id);
        }
    }
    if let Some(id) = last_id {
        tx.execute("DELETE FROM spool WHERE id <= ?1", [id])?;
    }
    d.rows_freed += rows;
    d.bytes_freed += freed;
    Ok(rows)
}

fn bump_meta(tx: &rusqlite::Transaction<'_>, d: &Deltas) -> Result<(), rusqlite::Error> {
    for (k, v) in [
        ("dropped_overflow", d.overflow),
        ("dropped_age", d.age),
        ("dropped_newest", d.newest),
        ("corrupt", d.corrupt),
    ] {
        if v > 0 {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = value + ?2",
                params![k, v as i64],
            )?;
        }
    }
    Ok(())
}

/// True if `path` looks like an existing spool file (used by tools).
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::{DeviceId, DistrictId, Measurement, ParkingChange, SiteId, TimeSource};

    fn reading(seq: u32) -> Reading {
        Reading {
            device: DeviceId::new("dev-1").unwrap(),
            site: SiteId::new("lot-1").unwrap(),
            district: DistrictId::new("central").unwrap(),
            boot: 1,
            seq,
            ts_ms: 1_700_000_000_000,
            time_source: TimeSource::Device,
            replayed: false,
            data: Measurement::ParkingChange(ParkingChange {
                occupied: true,
                field_ut: 40.0,
            }),
        }
    }

    fn size(r: &Reading) -> u64 {
        serde_json::to_vec(r).unwrap().len() as u64
    }

    fn cfg(dir: &tempfile::TempDir) -> SpoolConfig {
        SpoolConfig {
            path: dir.path().join("s.sqlite"),
            ..SpoolConfig::default()
        }
    }

    #[test]
    fn append_peek_ack_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir);
        let rs: Vec<Reading> = (0..10).map(reading).collect();
        {
            let mut s = Spool::open(&c).unwrap();
            assert_eq!(s.next_id().unwrap(), 1);
            assert_eq!(s.append(&rs, 1000).unwrap(), 10);
            let got = s.peek(0, 4, u64::MAX).unwrap();
            assert_eq!(
                got.iter().map(|g| g.reading.seq).collect::<Vec<_>>(),
                vec![0, 1, 2, 3]
            );
            assert_eq!(s.ack(&[got[0].id, got[1].id, 999]).unwrap(), 2);
            assert_eq!(s.stats().depth, 8);
        }
        // Reopen: totals recovered from the file, ids keep growing.
        let mut s = Spool::open(&c).unwrap();
        let st = s.stats();
        assert_eq!(st.depth, 8);
        assert_eq!(st.bytes, rs[2..].iter().map(size).sum::<u64>());
        assert_eq!(s.next_id().unwrap(), 11);
        let rest = s.peek(0, 100, u64::MAX).unwrap();
        assert_eq!(
            rest.iter().map(|g| g.reading.seq).collect::<Vec<_>>(),
            (2..10).collect::<Vec<_>>()
        );
        // Byte-limited peek returns whole readings only.
        let one = size(&rs[0]);
        assert_eq!(s.peek(0, 100, one * 3 + 1).unwrap().len(), 3);
        let ids: Vec<i64> = rest.iter().map(|g| g.id).collect();
        s.ack(&ids).unwrap();
        s.append(&rs[..1], 2000).unwrap();
        assert_eq!(
            s.peek(0, 10, u64::MAX).unwrap()[0].id,
            11,
            "ids are never reused"
        );
    }

    #[test]
    fn drop_oldest_counts_exactly_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let one = size(&reading(0));
        // seq 0..=9 all encode to the same length (one digit).
        let c = SpoolConfig {
            max_bytes: one * 4,
            ..cfg(&dir)
        };
        {
            let mut s = Spool::open(&c).unwrap();
            for i in 0..10 {
                s.append(&[reading(i)], 0).unwrap();
            }
            let st = s.stats();
            assert_eq!(st.dropped_overflow, 6);
            assert_eq!(st.depth, 4);
        }
        let mut s = Spool::open(&c).unwrap();
        assert_eq!(
            s.stats().dropped_overflow,
            6,
            "drop counter survives reopen"
        );
        let left: Vec<u32> = s
            .peek(0, 100, u64::MAX)
            .unwrap()
            .iter()
            .map(|g| g.reading.seq)
            .collect();
        assert_eq!(left, vec![6, 7, 8, 9]);
        // One call bigger than the bound keeps its newest part.
        let batch: Vec<Reading> = (0..6).map(reading).collect();
        s.append(&batch, 0).unwrap();
        assert_eq!(s.stats().dropped_overflow, 6 + 4 + 2);
        let left: Vec<u32> = s
            .peek(0, 100, u64::MAX)
            .unwrap()
            .iter()
            .map(|g| g.reading.seq)
            .collect();
        assert_eq!(left, vec![2, 3, 4, 5]);
    }

    #[test]
    fn drop_newest_and_age_bound() {
        let dir = tempfile::tempdir().unwrap();
        let one = size(&reading(0));
        let c = SpoolConfig {
            max_bytes: one * 3,
            overflow: OverflowPolicy::DropNewest,
            max_age_s: 10,
            ..cfg(&dir)
        };
        let mut s = Spool::open(&c).unwrap();
        let batch: Vec<Reading> = (0..5).map(reading).collect();
        assert_eq!(s.append(&batch, 0).unwrap(), 3);
        assert_eq!(s.stats().dropped_newest, 2);
        let left: Vec<u32> = s
            .peek(0, 100, u64::MAX)
            .unwrap()
            .iter()
            .map(|g| g.reading.seq)
            .collect();
        assert_eq!(left, vec![0, 1, 2]);
        // 10 s later nothing has expired yet (strictly older than the bound goes), at 10.001 s all have.
        assert_eq!(s.expire(10_000).unwrap(), 0);
        assert_eq!(s.expire(10_001).unwrap(), 3);
        assert_eq!(s.stats().dropped_age, 3);
        assert_eq!(s.stats().depth, 0);
        assert_eq!(s.stats().bytes, 0);
    }

    #[test]
    fn corrupt_row_is_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir);
        let mut s = Spool::open(&c).unwrap();
        s.append(&[reading(0), reading(1)], 0).unwrap();
        s.conn
            .execute("UPDATE spool SET payload = x'7b7b' WHERE id = 1", [])
            .unwrap();
        let got = s.peek(0, 10, u64::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].reading.seq, 1);
        assert_eq!(s.stats().corrupt, 1);
        assert_eq!(s.stats().depth, 1);
    }
}
