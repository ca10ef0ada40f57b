//! The dedup core: drops readings whose `(device, boot, seq)` was already accepted within the
//! correction horizon, and classifies readings older than `watermark − correction_horizon` as
//! `too_late`. Sans-IO; wrapped by the `"Dedup"` operator.
//!
//! Keys are kept for the retention period (horizon + longest window + lateness); a copy arriving after
//! its key was forgotten is older than the horizon, hence `too_late`, so nothing is aggregated twice.

use crate::model::{SiteInfo, is_periodic};
use std::collections::HashMap;
use std::sync::Arc;
use telemetry::Reading;

/// What the dedup core says about a reading, for the quality operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// `parking` / `grid`.
    pub dataset: String,
    /// Device id.
    pub source: String,
    /// Event time, ms.
    pub ts_ms: i64,
    /// Outcome.
    pub outcome: SeenOutcome,
}

/// Outcome of one reading in dedup.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SeenOutcome {
    /// New reading.
    Accepted {
        /// Ingest lag, ms.
        lag_ms: i64,
        /// Heartbeat or summary.
        periodic: bool,
        /// Consistent with registry and physics.
        consistent: bool,
    },
    /// Already seen.
    Duplicate,
    /// Older than the correction horizon.
    TooLate,
}

/// Dedup state of one worker.
#[derive(Debug)]
pub struct DedupCore {
    horizon_ms: i64,
    retention_ms: i64,
    info: Arc<SiteInfo>,
    keys: HashMap<(String, u32, u32), i64>,
    last_evict: i64,
}

impl DedupCore {
    /// A new core.
    pub fn new(horizon_ms: i64, retention_ms: i64, info: Arc<SiteInfo>) -> Self {
        DedupCore {
            horizon_ms,
            retention_ms,
            info,
            keys: HashMap::new(),
            last_evict: i64::MIN,
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Classifies a batch received at watermark time `t`; returns accepted readings and one [`Seen`] per
    /// input. The batch is sorted first, so the result does not depend on arrival order.
    pub fn ingest(&mut self, t: u64, mut batch: Vec<(Reading, i64)>) -> (Vec<Reading>, Vec<Seen>) {
        let t = i64::try_from(t).unwrap_or(i64::MAX);
        batch.sort_by(|a, b| {
            (a.0.device.as_str(), a.0.boot, a.0.seq, a.1, a.0.ts_ms).cmp(&(
                b.0.device.as_str(),
                b.0.boot,
                b.0.seq,
                b.1,
                b.0.ts_ms,
            ))
        });
        let mut acc = Vec::new();
        let mut seen = Vec::with_capacity(batch.len());
        for (r, ingest_ms) in batch {
            let outcome = if r.ts_ms < t.saturating_sub(self.horizon_ms) {
                SeenOutcome::TooLate
            } else {
                let k = (r.device.to_string(), r.boot, r.seq);
                if let std::collections::hash_map::Entry::Vacant(v) = self.keys.entry(k) {
                    v.insert(r.ts_ms);
                    SeenOutcome::Accepted {
                        lag_ms: ingest_ms - r.ts_ms,
                        periodic: is_periodic(&r.data),
                        consistent: self.info.consistent(&r),
                    }
                } else {
                    SeenOutcome::Duplicate
                }
            };
            seen.push(Seen {
                dataset: r.kind().as_str().into(),
                source: r.device.to_string(),
                ts_ms: r.ts_ms,
                outcome: outcome.clone(),
            });
            if matches!(outcome, SeenOutcome::Accepted { .. }) {
                acc.push(r);
            }
        }
        if self.last_evict == i64::MIN || t - self.last_evict >= 60_000 {
            self.last_evict = t;
            let cut = t.saturating_sub(self.retention_ms);
            self.keys.retain(|_, ts| *ts >= cut);
        }
        (acc, seen)
    }
}
