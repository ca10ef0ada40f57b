//! The district roll-up core: combines lot and feeder window rows into district rows. Sans-IO; wrapped
//! by the `"RollupDistrict"` operator (records exchanged by district).
//!
//! Combination rules: parking — occupancy mean weighted by capacity, occupancy max and full minutes are
//! the largest lot's, arrivals/departures/capacity summed, dwell mean weighted by dwell samples; grid —
//! voltage/frequency min and max over feeders, means weighted by summary count, energy and event counts
//! summed, P/Q max the largest feeder's. A district row is re-emitted with version + 1 whenever a site
//! row of the same window changes it.

use std::collections::{BTreeMap, BTreeSet};
use telemetry::DeviceKind;
use telemetry::message::WindowAggregate;

type RKey = (DeviceKind, String, i64, i64);
type Metrics = BTreeMap<String, f64>;

/// Roll-up state of one worker.
#[derive(Debug, Default)]
pub struct RollupCore {
    sites: BTreeMap<RKey, BTreeMap<String, WindowAggregate>>,
    emitted: BTreeMap<RKey, (u32, u64, Metrics)>,
    retention_ms: i64,
}

fn get(a: &WindowAggregate, k: &str) -> Option<f64> {
    a.metrics.get(k).copied()
}

fn combine(kind: DeviceKind, rows: &BTreeMap<String, WindowAggregate>) -> (u64, Metrics) {
    let mut m = Metrics::new();
    let count = rows.values().map(|r| r.count).sum();
    let sum = |k: &str| rows.values().filter_map(|r| get(r, k)).sum::<f64>();
    let max = |k: &str| {
        rows.values()
            .filter_map(|r| get(r, k))
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    let min = |k: &str| {
        rows.values()
            .filter_map(|r| get(r, k))
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))))
    };
    let weighted = |k: &str, w: &str| {
        let (num, den) = rows
            .values()
            .filter_map(|r| Some((get(r, k)?, get(r, w)?)))
            .fold((0.0, 0.0), |(n, d), (v, w)| (n + v * w, d + w));
        (den > 0.0).then(|| num / den)
    };
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    match kind {
        DeviceKind::Parking => {
            put("capacity_bays", Some(sum("capacity_bays")));
            put(
                "occupancy_mean_ratio",
                weighted("occupancy_mean_ratio", "capacity_bays"),
            );
            put(
                "occupancy_end_ratio",
                weighted("occupancy_end_ratio", "capacity_bays"),
            );
            put("occupancy_max_ratio", max("occupancy_max_ratio"));
            put("full_minutes", max("full_minutes"));
            put("arrivals", Some(sum("arrivals")));
            put("departures", Some(sum("departures")));
            put("dwell_samples", Some(sum("dwell_samples")));
            put("dwell_mean_s", weighted("dwell_mean_s", "dwell_samples"));
        }
        DeviceKind::Grid => {
            put("summaries", max("summaries").map(|_| sum("summaries")));
            put("v_rms_min_v", min("v_rms_min_v"));
            put("v_rms_max_v", max("v_rms_max_v"));
            put("v_rms_mean_v", weighted("v_rms_mean_v", "summaries"));
            put("p_mean_kw", weighted("p_mean_kw", "summaries"));
            put("p_max_kw", max("p_max_kw"));
            put("q_mean_kvar", weighted("q_mean_kvar", "summaries"));
            put("q_max_kvar", max("q_max_kvar"));
            put("pf_mean", weighted("pf_mean", "summaries"));
            put("freq_min_hz", min("freq_min_hz"));
            put("freq_max_hz", max("freq_max_hz"));
            put("energy_kwh", max("energy_kwh").map(|_| sum("energy_kwh")));
            put(
                "en50160_ok_ratio",
                weighted("en50160_ok_ratio", "summaries"),
            );
            put("sags", Some(sum("sags")));
            put("swells", Some(sum("swells")));
            put("interruptions", Some(sum("interruptions")));
        }
    }
    (count, m)
}

impl RollupCore {
    /// A new core keeping window state for `retention_ms` behind the watermark.
    pub fn new(retention_ms: i64) -> Self {
        RollupCore {
            retention_ms,
            ..Default::default()
        }
    }

    /// Applies site rows received at watermark time `t`; changed district rows go to `out`.
    pub fn ingest(
        &mut self,
        t: u64,
        mut rows: Vec<WindowAggregate>,
        out: &mut Vec<WindowAggregate>,
    ) {
        rows.sort_by(|a, b| {
            (
                a.kind,
                &a.district,
                a.window_ms,
                a.start_ms,
                &a.id,
                a.version,
            )
                .cmp(&(
                    b.kind,
                    &b.district,
                    b.window_ms,
                    b.start_ms,
                    &b.id,
                    b.version,
                ))
        });
        let mut touched = BTreeSet::new();
        for r in rows {
            if r.scope != "lot" && r.scope != "feeder" {
                continue;
            }
            let k = (r.kind, r.district.clone(), r.window_ms, r.start_ms);
            let slot = self.sites.entry(k.clone()).or_default();
            if slot.get(&r.id).is_none_or(|old| old.version <= r.version) {
                slot.insert(r.id.clone(), r);
            }
            touched.insert(k);
        }
        for k in touched {
            let Some(rows) = self.sites.get(&k) else {
                continue;
            };
            let (count, metrics) = combine(k.0, rows);
            let e = self
                .emitted
                .entry(k.clone())
                .or_insert((0, 0, Metrics::new()));
            if e.0 > 0 && e.1 == count && e.2 == metrics {
                continue;
            }
            e.0 += 1;
            e.1 = count;
            e.2 = metrics.clone();
            out.push(WindowAggregate {
                kind: k.0,
                scope: "district".into(),
                id: k.1.clone(),
                district: k.1.clone(),
                start_ms: k.3,
                window_ms: k.2,
                version: e.0,
                count,
                metrics,
            });
        }
        let cut = i64::try_from(t)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.retention_ms);
        self.sites.retain(|k, _| k.3 >= cut);
        self.emitted.retain(|k, _| k.3 >= cut);
    }
}
