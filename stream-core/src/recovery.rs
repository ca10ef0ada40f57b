//! Crash recovery of window state by replaying the raw store.
//!
//! # Design
//! The dataflow's state (dedup keys, per-device history, open windows, alert flags) lives only in
//! memory. What survives a crash is the raw store: a message is acknowledged only after its readings
//! are committed, so every reading the broker no longer holds for us is in the `readings` table, and every
//! reading not yet committed is still held by the broker (persistent session) and will be redelivered.
//! Without recovery a restarted core would start its windows empty: windows open at the crash would be
//! closed with only the post-restart readings, although the store has the rest (measured by the
//! `core_killed_mid_window_*` test before this module existed).
//!
//! So on start, before the first live message, the writer feeds the dataflow with the stored readings
//! of the last retention period — `newest event time − WindowConfig::retention_ms()` (correction
//! horizon + longest window + lateness), i.e. every window that may still be emitted or corrected —
//! in `(ts_ms, device, boot, seq)` order, in pages of [`PAGE_ROWS`], each page stamped with the
//! watermark after observing its readings at their *stored* receive time (so the watermark is rebuilt as
//! the original run had it, apart from idle wall-clock advances).
//!
//! Consequences, all idempotent or counted:
//! - Windows already emitted before the crash are emitted again with the same key and, for in-order
//!   input, the same values (aggregate upsert is idempotent on `(kind, scope, id, window, start,
//!   version)`). Quality rows are upserts too.
//! - Readings that were stored but whose acknowledgement was lost are redelivered by the broker; the
//!   store ignores them (not new) and the dataflow's dedup drops them (`duplicate`, counted).
//! - Late readings are replayed in event-time order, so a window corrected before the crash (version 2)
//!   is rebuilt as one version 1 with the corrected values: the newest version's values agree, the
//!   version numbers may not.
//! - Alert transitions of replayed windows are appended again (the alert log is append-only).
//! - Dead letters are not replayed, so validity in quality rows of the replayed period counts only
//!   rejections seen after the restart.

use crate::model::{CoreInput, WindowConfig};
use crate::store::{SeriesStore, StoreError};
use crate::watermark::Watermark;
use std::sync::Arc;

/// Rows per replay page (one dataflow batch each).
pub const PAGE_ROWS: usize = 5_000;

/// Replays stored readings into the dataflow input `tx`; returns how many were replayed. The watermark
/// `wm` is advanced as the readings are observed. `shard = (index, count)`: only readings whose site
/// has `route_hash(site) % count == index` are replayed (`(0, 1)`: all), so the processes of a
/// cluster sharing one store replay each reading once.
///
/// # Errors
/// Storage failures (the caller logs them and starts with empty windows).
pub async fn replay(
    store: Arc<dyn SeriesStore>,
    cfg: &WindowConfig,
    tx: &tokio::sync::mpsc::Sender<(u64, Vec<CoreInput>)>,
    wm: &mut Watermark,
    shard: (usize, usize),
) -> Result<u64, StoreError> {
    let (shard_index, shard_count) = (shard.0 as u64, shard.1.max(1) as u64);
    let s = store.clone();
    let newest = tokio::task::spawn_blocking(move || s.newest_reading_ms())
        .await
        .map_err(|e| StoreError::Other(e.to_string()))??;
    let Some(newest) = newest else { return Ok(0) };
    let from = newest.saturating_sub(cfg.retention_ms());
    let mut after = None;
    let mut n = 0u64;
    let mut last_ingest = i64::MIN;
    loop {
        let (s, a) = (store.clone(), after.clone());
        let page =
            tokio::task::spawn_blocking(move || s.replay_readings(from, a.as_ref(), PAGE_ROWS))
                .await
                .map_err(|e| StoreError::Other(e.to_string()))??;
        let Some(last) = page.last() else { break };
        after = Some((
            last.reading.ts_ms,
            last.reading.device.to_string(),
            last.reading.boot,
            last.reading.seq,
        ));
        let full = page.len() == PAGE_ROWS;
        let batch: Vec<CoreInput> = page
            .into_iter()
            .filter(|sr| {
                shard_count == 1
                    || crate::model::route_hash(sr.reading.site.as_str()) % shard_count
                        == shard_index
            })
            .map(|sr| {
                wm.observe(sr.reading.device.as_str(), sr.reading.ts_ms, sr.ingest_ms);
                last_ingest = last_ingest.max(sr.ingest_ms);
                CoreInput::reading(sr.reading, sr.ingest_ms)
            })
            .collect();
        n += batch.len() as u64;
        let t = u64::try_from(wm.get().max(0)).unwrap_or(0);
        wm.advance(last_ingest);
        if tx.send((t, batch)).await.is_err() {
            break;
        }
        if !full {
            break;
        }
    }
    if n > 0 {
        tracing::info!(
            readings = n,
            from_ms = from,
            "replayed stored readings into the dataflow"
        );
    }
    Ok(n)
}
