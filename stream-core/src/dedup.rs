//! The dedup core: drops readings whose `(device, boot, seq)` was already accepted within the
//! correction horizon, and classifies readings older than `watermark − correction_horizon` as
//! `too_late`. Sans-IO; wrapped by the `"Dedup"` operator.
//!
//! Keys are kept for the retention period (horizon + longest window + lateness); a copy arriving after
//! its key was forgotten is older than the horizon, hence `too_late`, so nothing is aggregated twice.
//!
//! # State layout
//! Not one entry per reading: per device, a sorted list of **seq runs** `(boot, first seq, last seq,
//! newest event time in the run)`. A device that counts its seq up without gaps holds one run per
//! boot (20 bytes, inline in the device's 24-byte slot) however many readings it sent; each gap (lost or not yet arrived readings) adds a
//! run until the gap is filled (runs merge). Eviction drops a run once its newest event time is older
//! than the retention cut — every key in it is then older than the cut, exactly as with per-key
//! eviction, so outcomes are unchanged. Devices are [`Sym`]s; runs live in a flat `Vec`, the slot
//! found through a per-core [`SlotMap`] (no hashing).

use crate::model::{CoreReading, SiteInfo, is_periodic};
use crate::symbol::{SlotMap, Sym};
use std::sync::Arc;
use telemetry::DeviceKind;

/// What the dedup core says about a reading, for the quality operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// Dataset (`parking` / `grid`).
    pub dataset: DeviceKind,
    /// Device.
    pub source: Sym,
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
    /// Device → slot in `runs`.
    ids: SlotMap,
    /// Per device: seq runs, sorted by (boot, first seq), disjoint and non-adjacent.
    runs: Vec<Runs>,
    /// Remembered (device, boot, seq) keys, for [`DedupCore::len`].
    n_keys: usize,
    last_evict: i64,
}

/// A run of accepted seqs of one boot: `first..=last`, with the newest event time among them.
/// Packed to 4-byte alignment (20 bytes), so [`Runs`] is 24 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Run {
    boot: u32,
    first: u32,
    last: u32,
    newest_ts_ms: i64,
}

/// A device's runs: none, one inline (the common case: a device counting up without gaps), or a
/// `Vec` behind one pointer.
#[derive(Debug, Default)]
enum Runs {
    #[default]
    None,
    One(Run),
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Run>>),
}

impl Runs {
    /// Inserts `(boot, seq)`; false when already present. Same answers and runs as [`insert_seq`].
    fn insert(&mut self, boot: u32, seq: u32, ts_ms: i64) -> bool {
        match self {
            Runs::None => {
                *self = Runs::One(Run {
                    boot,
                    first: seq,
                    last: seq,
                    newest_ts_ms: ts_ms,
                });
                true
            }
            Runs::One(r) if r.boot == boot && r.first <= seq && seq <= r.last => false,
            Runs::One(r) if r.boot == boot && r.last.checked_add(1) == Some(seq) => {
                r.last = seq;
                r.newest_ts_ms = r.newest_ts_ms.max(ts_ms);
                true
            }
            Runs::One(r) if r.boot == boot && r.first.checked_sub(1) == Some(seq) => {
                r.first = seq;
                r.newest_ts_ms = r.newest_ts_ms.max(ts_ms);
                true
            }
            Runs::One(r) => {
                let mut v = Vec::with_capacity(2);
                v.push(*r);
                let new = insert_seq(&mut v, boot, seq, ts_ms);
                *self = Runs::Many(Box::new(v));
                new
            }
            Runs::Many(v) => insert_seq(v, boot, seq, ts_ms),
        }
    }

    /// Drops runs whose newest event time is before `cut`; returns the keys still held.
    fn evict(&mut self, cut: i64) -> usize {
        let held = |r: &Run| (r.last - r.first) as usize + 1;
        match self {
            Runs::None => 0,
            Runs::One(r) if r.newest_ts_ms >= cut => held(r),
            Runs::One(_) => {
                *self = Runs::None;
                0
            }
            Runs::Many(v) => {
                v.retain(|r| r.newest_ts_ms >= cut);
                let n = v.iter().map(held).sum();
                match v.len() {
                    0 => *self = Runs::None,
                    1 => *self = Runs::One(v[0]),
                    _ => v.shrink_to_fit(),
                }
                n
            }
        }
    }
}

/// Inserts `(boot, seq)` into a device's runs; false when already present.
fn insert_seq(runs: &mut Vec<Run>, boot: u32, seq: u32, ts_ms: i64) -> bool {
    // First run starting after (boot, seq).
    let i = runs.partition_point(|r| (r.boot, r.first) <= (boot, seq));
    if i > 0 {
        let p = &mut runs[i - 1];
        if p.boot == boot && seq <= p.last {
            return false;
        }
        if p.boot == boot && p.last.checked_add(1) == Some(seq) {
            p.last = seq;
            p.newest_ts_ms = p.newest_ts_ms.max(ts_ms);
            // Now adjacent to the next run? Merge.
            if i < runs.len() && runs[i].boot == boot && runs[i].first.checked_sub(1) == Some(seq) {
                let n = runs.remove(i);
                let p = &mut runs[i - 1];
                p.last = n.last;
                p.newest_ts_ms = p.newest_ts_ms.max(n.newest_ts_ms);
            }
            return true;
        }
    }
    if i < runs.len() && runs[i].boot == boot && runs[i].first.checked_sub(1) == Some(seq) {
        let n = &mut runs[i];
        n.first = seq;
        n.newest_ts_ms = n.newest_ts_ms.max(ts_ms);
        return true;
    }
    runs.insert(
        i,
        Run {
            boot,
            first: seq,
            last: seq,
            newest_ts_ms: ts_ms,
        },
    );
    true
}

impl DedupCore {
    /// A new core.
    pub fn new(horizon_ms: i64, retention_ms: i64, info: Arc<SiteInfo>) -> Self {
        DedupCore {
            horizon_ms,
            retention_ms,
            info,
            ids: SlotMap::default(),
            runs: Vec::new(),
            n_keys: 0,
            last_evict: i64::MIN,
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.n_keys
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.n_keys == 0
    }

    /// Classifies a batch received at watermark time `t`; returns accepted readings and one [`Seen`] per
    /// input. The batch is processed in key order `(device, boot, seq, ingest, ts)`, so the result does
    /// not depend on arrival order (outputs come in input order).
    pub fn ingest(&mut self, t: u64, batch: Vec<CoreReading>) -> (Vec<CoreReading>, Vec<Seen>) {
        let mut acc = Vec::with_capacity(batch.len());
        let mut seen = Vec::new();
        self.ingest_with(t, batch, |r| acc.push(r), &mut seen);
        (acc, seen)
    }

    /// [`DedupCore::ingest`] handing each accepted reading to `accept` (in input order) and
    /// appending the [`Seen`]s to `seen`: the dataflow's path, without an intermediate vector.
    pub fn ingest_with(
        &mut self,
        t: u64,
        batch: Vec<CoreReading>,
        mut accept: impl FnMut(CoreReading),
        seen: &mut Vec<Seen>,
    ) {
        let t = i64::try_from(t).unwrap_or(i64::MAX);
        // Sort keys with their input index, not the records. Devices group by symbol: only the
        // order within a device decides outcomes (state is per device), and that order is the key
        // order `(boot, seq, ingest, ts)`, then input position.
        let mut order: Vec<(u32, u32, u32, i64, i64, u32)> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.device.index(),
                    r.boot,
                    r.seq,
                    r.ingest_ms,
                    r.ts_ms,
                    i as u32,
                )
            })
            .collect();
        order.sort_unstable();
        let mut accepted = vec![false; batch.len()];
        seen.reserve(batch.len());
        let too_late_before = t.saturating_sub(self.horizon_ms);
        for &(_, _, _, _, _, i) in &order {
            let r = &batch[i as usize];
            let outcome = if r.ts_ms < too_late_before {
                SeenOutcome::TooLate
            } else {
                let d = match self.ids.get(r.device) {
                    Some(d) => d,
                    None => {
                        let d = self.runs.len() as u32;
                        self.runs.push(Runs::default());
                        self.ids.set(r.device, d);
                        d
                    }
                };
                if self.runs[d as usize].insert(r.boot, r.seq, r.ts_ms) {
                    self.n_keys += 1;
                    accepted[i as usize] = true;
                    SeenOutcome::Accepted {
                        lag_ms: r.ingest_ms - r.ts_ms,
                        periodic: is_periodic(&r.data),
                        consistent: self.info.consistent_rec(r),
                    }
                } else {
                    SeenOutcome::Duplicate
                }
            };
            seen.push(Seen {
                dataset: r.kind(),
                source: r.device,
                ts_ms: r.ts_ms,
                outcome,
            });
        }
        for (x, a) in batch.into_iter().zip(accepted) {
            if a {
                accept(x);
            }
        }
        if self.last_evict == i64::MIN || t - self.last_evict >= 60_000 {
            self.last_evict = t;
            let cut = t.saturating_sub(self.retention_ms);
            let mut n = 0usize;
            for runs in &mut self.runs {
                n += runs.evict(cut);
            }
            self.n_keys = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn runs_are_24_bytes() {
        assert_eq!(std::mem::size_of::<Runs>(), 24);
    }

    /// Seq runs against a plain set of keys: same answers, runs stay sorted, disjoint, non-adjacent.
    #[test]
    fn runs_match_a_plain_set() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(m)) as u32
        };
        let mut runs = Vec::new();
        let mut compact = Runs::default();
        let mut set = HashSet::new();
        for i in 0..20_000u32 {
            let boot = next(3);
            // Mostly in order with jitter, some repeats and far-off seqs (incl. the u32 edges).
            let seq = match next(10) {
                0 => next(u32::MAX),
                1 => u32::MAX - next(3),
                2 => next(3),
                _ => (i / 2).saturating_sub(next(40)),
            };
            let ts = i64::from(i);
            let new = set.insert((boot, seq));
            assert_eq!(insert_seq(&mut runs, boot, seq, ts), new);
            assert_eq!(compact.insert(boot, seq, ts), new);
            if i % 1_000 == 999 {
                // Eviction keeps both forms equal too (nothing is older than the cut here).
                let held: usize = runs.iter().map(|r| (r.last - r.first) as usize + 1).sum();
                assert_eq!(compact.evict(i64::MIN), held);
            }
        }
        for w in runs.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!((a.boot, a.last) < (b.boot, b.first));
            assert!(
                a.boot != b.boot || a.last + 1 < b.first,
                "adjacent runs not merged"
            );
        }
        let held: usize = runs.iter().map(|r| (r.last - r.first) as usize + 1).sum();
        assert_eq!(held, set.len());
        let compact: Vec<(u32, u32, u32, i64)> = match &compact {
            Runs::One(r) => vec![*r],
            Runs::Many(v) => v.to_vec(),
            Runs::None => Vec::new(),
        }
        .iter()
        .map(|r| (r.boot, r.first, r.last, r.newest_ts_ms))
        .collect();
        let plain: Vec<_> = runs
            .iter()
            .map(|r| (r.boot, r.first, r.last, r.newest_ts_ms))
            .collect();
        assert_eq!(compact, plain);
    }
}
