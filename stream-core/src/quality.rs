//! The quality core: per dataset, source and quality window — completeness against the registry's
//! report interval, timeliness (ingest lag p50/p95), validity, uniqueness, consistency. Sans-IO; wrapped
//! by the `"Quality"` operator.
//!
//! Accepted readings and duplicates count in the window of their event time; refusals and `too_late`
//! readings (whose event time is unreliable or long gone) in the window of the watermark time at which
//! they arrived. A window's row is emitted when the watermark passes its end + lateness, and re-emitted
//! (same key, upserted) when later inputs change it within the retention period.

use crate::dedup::{Seen, SeenOutcome};
use crate::model::{SiteInfo, WindowConfig, window_start};
use crate::store::QualityRow;
use crate::symbol::{FastMap, Names, Sym, route_of_str};
use std::collections::BTreeSet;
use std::sync::Arc;
use telemetry::DeviceKind;

/// Input of the quality core.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum QualityIn {
    /// From dedup.
    Seen(Seen),
    /// A refused reading or message.
    Rejected {
        /// Source.
        source: String,
        /// Dataset.
        dataset: String,
    },
}

impl QualityIn {
    /// The routing hash of the source (equal for a [`Seen`] and a refusal of the same source; see
    /// [`Sym::route`]).
    pub fn route(&self) -> u64 {
        match self {
            QualityIn::Seen(s) => s.source.route(),
            QualityIn::Rejected { source, .. } => route_of_str(source),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Stats {
    received: u64,
    periodic: u64,
    duplicates: u64,
    rejected: u64,
    inconsistent: u64,
    lags: Vec<i64>,
    /// The window's first row was emitted (later changes re-emit it).
    closed: bool,
}

type QKey = (String, String, i64);
/// Dataset and source symbol indices and window start.
type IKey = (u32, u32, i64);

/// What one input adds to its window's stats.
enum Apply {
    Accepted {
        lag_ms: i64,
        periodic: bool,
        consistent: bool,
    },
    Duplicate,
    Rejected,
}

impl Apply {
    fn to(&self, st: &mut Stats) {
        match *self {
            Apply::Accepted {
                lag_ms,
                periodic,
                consistent,
            } => {
                st.received += 1;
                st.periodic += u64::from(periodic);
                st.inconsistent += u64::from(!consistent);
                st.lags.push(lag_ms);
            }
            Apply::Duplicate => st.duplicates += 1,
            Apply::Rejected => st.rejected += 1,
        }
    }
}

/// Quality state of one worker.
#[derive(Debug)]
///
/// Keys are `(dataset, source)` [`Sym`]s with the window start, in hash maps with a multiplicative
/// hash (one look-up per input, no allocation, no string); only a window's first input adds it to
/// the ordered `open` set (by id strings), which keeps the emission order of the earlier
/// `BTreeMap<(String, String, i64), _>` layout. Refused sources are interned into the process-wide
/// symbol table too (see [`crate::symbol`] on its memory).
pub struct QualityCore {
    cfg: WindowConfig,
    info: Arc<SiteInfo>,
    /// Symbols of the datasets `parking` and `grid`.
    kinds: [Sym; 2],
    stats: FastMap<IKey, Stats>,
    /// (close time, (dataset, source, start), key) of windows not yet closed.
    open: BTreeSet<(u64, QKey, IKey)>,
    last_evict: i64,
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

impl QualityCore {
    /// A new core.
    pub fn new(cfg: WindowConfig, info: Arc<SiteInfo>) -> Self {
        QualityCore {
            cfg,
            info,
            kinds: [Sym::intern("parking"), Sym::intern("grid")],
            stats: FastMap::default(),
            open: BTreeSet::new(),
            last_evict: i64::MIN,
        }
    }

    /// Next window close time.
    pub fn next_close(&self) -> Option<u64> {
        self.open.first().map(|o| o.0)
    }

    fn row(&self, k: &QKey, s: &Stats) -> QualityRow {
        let qw = self.cfg.quality_window_ms;
        let expected = self
            .info
            .interval_ms(&k.1)
            .map_or(0, |iv| (qw / iv.max(1)) as u64);
        let mut lags = s.lags.clone();
        lags.sort_unstable();
        let total = s.received + s.duplicates + s.rejected;
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                1.0
            } else {
                1.0 - num as f64 / den as f64
            }
        };
        QualityRow {
            dataset: k.0.clone(),
            source: k.1.clone(),
            start_ms: k.2,
            window_ms: qw,
            completeness: if expected == 0 {
                1.0
            } else {
                (s.periodic as f64 / expected as f64).min(1.0)
            },
            timeliness_p50_ms: pct(&lags, 0.50),
            timeliness_p95_ms: pct(&lags, 0.95),
            validity: ratio(s.rejected, total),
            uniqueness: ratio(s.duplicates, s.received + s.duplicates),
            consistency: ratio(s.inconsistent, s.received),
            received: s.received,
            expected,
            rejected: s.rejected,
            duplicates: s.duplicates,
        }
    }

    /// The string key of a symbol key.
    fn qkey(names: &Names, k: IKey, d: Sym, src: Sym) -> QKey {
        (names.name(d).to_string(), names.name(src).to_string(), k.2)
    }

    /// Adds inputs at watermark time `t`; rows of already closed windows that changed go to `out`.
    pub fn ingest(&mut self, t: u64, batch: Vec<QualityIn>, out: &mut Vec<QualityRow>) {
        let ti = i64::try_from(t).unwrap_or(i64::MAX);
        let qw = self.cfg.quality_window_ms;
        let mut touched = Vec::new();
        let mut new_open: Vec<(u64, IKey, Sym, Sym)> = Vec::new();
        for q in batch {
            let (dataset, source, start, apply): (Sym, Sym, i64, Apply) = match &q {
                QualityIn::Seen(s) => {
                    let d = self.kinds[usize::from(s.dataset == DeviceKind::Grid)];
                    match s.outcome {
                        SeenOutcome::Accepted {
                            lag_ms,
                            periodic,
                            consistent,
                        } => (
                            d,
                            s.source,
                            window_start(s.ts_ms, qw),
                            Apply::Accepted {
                                lag_ms,
                                periodic,
                                consistent,
                            },
                        ),
                        SeenOutcome::Duplicate => {
                            (d, s.source, window_start(s.ts_ms, qw), Apply::Duplicate)
                        }
                        SeenOutcome::TooLate => {
                            (d, s.source, window_start(ti, qw), Apply::Rejected)
                        }
                    }
                }
                QualityIn::Rejected { source, dataset } => (
                    Sym::intern(dataset),
                    Sym::intern(source),
                    window_start(ti, qw),
                    Apply::Rejected,
                ),
            };
            let k = (dataset.index(), source.index(), start);
            // A key is in `open` from its first input until its window closes, then `closed`.
            if let Some(st) = self.stats.get_mut(&k) {
                apply.to(st);
                if st.closed {
                    touched.push((k, dataset, source));
                }
                continue;
            }
            let mut st = Stats::default();
            apply.to(&mut st);
            self.stats.insert(k, st);
            let close =
                u64::try_from((start + qw + self.cfg.allowed_lateness_ms).max(0)).unwrap_or(0);
            new_open.push((close, k, dataset, source));
        }
        if !new_open.is_empty() || !touched.is_empty() {
            let names = Names::get();
            for (close, k, d, src) in new_open {
                self.open
                    .insert((close, QualityCore::qkey(&names, k, d, src), k));
            }
            // Changed closed windows, once each, in key order.
            let mut keyed: Vec<(QKey, IKey)> = touched
                .into_iter()
                .map(|(k, d, src)| (QualityCore::qkey(&names, k, d, src), k))
                .collect();
            drop(names);
            keyed.sort();
            keyed.dedup();
            for (qk, k) in keyed {
                if let Some(s) = self.stats.get(&k) {
                    out.push(self.row(&qk, s));
                }
            }
        }
        // Forget windows beyond the retention period (no input can reach them any more: dedup
        // refuses readings older than the horizon, so this only frees memory).
        if self.last_evict == i64::MIN || ti - self.last_evict >= qw {
            self.last_evict = ti;
            let cut = ti.saturating_sub(self.cfg.retention_ms());
            self.stats.retain(|k, _| k.2 >= cut);
        }
    }

    /// Emits rows of windows closing at or before `t`.
    pub fn close_until(&mut self, t: u64, out: &mut Vec<QualityRow>) {
        while let Some(o) = self.open.first().filter(|o| o.0 <= t).cloned() {
            self.open.remove(&o);
            let k = o.2;
            if let Some(s) = self.stats.get(&k) {
                out.push(self.row(&o.1, s));
            }
            if let Some(s) = self.stats.get_mut(&k) {
                s.closed = true;
            }
        }
    }
}
