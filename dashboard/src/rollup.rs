//! Rolling 15-minute window rows up to coarser UTC-aligned buckets (1 h, 1 d). Pure functions.
//!
//! How each metric combines is read from its name (the catalogue in `docs/PROTOCOL.md`):
//! - `*_max_*` (and names ending `_max`): the maximum of the maxima;
//! - `*_min_*` (and names ending `_min`): the minimum of the minima;
//! - `*_mean_*`, names ending `_mean`, and ratios (`*_ratio`): the mean weighted by each row's `count`
//!   (a plain mean when every count is 0);
//! - everything else (`arrivals`, `departures`, `full_minutes`, `energy_kwh`, `sags`, `swells`,
//!   `interruptions`, ...): the sum.
//!
//! The rolled-up row's `count` is the sum of counts, `version` the highest version, `window_ms` the
//! bucket length and `start_ms` the bucket start (`floor(start / bucket) * bucket`).

use std::collections::BTreeMap;
use telemetry::message::WindowAggregate;

/// How one metric combines across rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Count-weighted mean.
    WeightedMean,
    /// Sum.
    Sum,
}

/// The combine rule for a metric name.
pub fn combine_rule(name: &str) -> Combine {
    if name.contains("_max_") || name.ends_with("_max") {
        Combine::Max
    } else if name.contains("_min_") || name.ends_with("_min") {
        Combine::Min
    } else if name.contains("_mean_") || name.ends_with("_mean") || name.ends_with("_ratio") {
        Combine::WeightedMean
    } else {
        Combine::Sum
    }
}

/// Rolls rows (of one series, any order) up into buckets of `bucket_ms`, ordered by bucket start.
/// Rows longer than the bucket are passed through unchanged in their own bucket.
pub fn rollup(rows: &[WindowAggregate], bucket_ms: i64) -> Vec<WindowAggregate> {
    if bucket_ms <= 0 {
        return rows.to_vec();
    }
    let mut buckets: BTreeMap<i64, Vec<&WindowAggregate>> = BTreeMap::new();
    for r in rows {
        buckets
            .entry(r.start_ms.div_euclid(bucket_ms) * bucket_ms)
            .or_default()
            .push(r);
    }
    buckets
        .into_iter()
        .map(|(start, group)| combine(&group, start, bucket_ms))
        .collect()
}

fn combine(group: &[&WindowAggregate], start_ms: i64, window_ms: i64) -> WindowAggregate {
    let first = group[0];
    let count: u64 = group.iter().map(|r| r.count).sum();
    let mut names: Vec<&String> = group.iter().flat_map(|r| r.metrics.keys()).collect();
    names.sort();
    names.dedup();
    let mut metrics = BTreeMap::new();
    for name in names {
        let vals: Vec<(f64, u64)> = group
            .iter()
            .filter_map(|r| r.metrics.get(name).map(|v| (*v, r.count)))
            .filter(|(v, _)| v.is_finite())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let v = match combine_rule(name) {
            Combine::Max => vals.iter().map(|x| x.0).fold(f64::NEG_INFINITY, f64::max),
            Combine::Min => vals.iter().map(|x| x.0).fold(f64::INFINITY, f64::min),
            Combine::Sum => vals.iter().map(|x| x.0).sum(),
            Combine::WeightedMean => {
                let w: u64 = vals.iter().map(|x| x.1).sum();
                if w == 0 {
                    vals.iter().map(|x| x.0).sum::<f64>() / vals.len() as f64
                } else {
                    vals.iter().map(|x| x.0 * x.1 as f64).sum::<f64>() / w as f64
                }
            }
        };
        metrics.insert(name.clone(), v);
    }
    WindowAggregate {
        kind: first.kind,
        scope: first.scope.clone(),
        id: first.id.clone(),
        district: first.district.clone(),
        start_ms,
        window_ms,
        version: group.iter().map(|r| r.version).max().unwrap_or(1),
        count,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::DeviceKind;

    fn row(start_ms: i64, count: u64, m: &[(&str, f64)]) -> WindowAggregate {
        WindowAggregate {
            kind: DeviceKind::Parking,
            scope: "lot".into(),
            id: "L1".into(),
            district: "central".into(),
            start_ms,
            window_ms: 900_000,
            version: 1,
            count,
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn hourly_rollup_by_hand() {
        let h = 3_600_000;
        let rows = vec![
            row(
                0,
                1,
                &[
                    ("occupancy_mean_ratio", 0.2),
                    ("occupancy_max_ratio", 0.3),
                    ("arrivals", 2.0),
                ],
            ),
            row(
                900_000,
                3,
                &[
                    ("occupancy_mean_ratio", 0.6),
                    ("occupancy_max_ratio", 0.9),
                    ("arrivals", 5.0),
                ],
            ),
            row(
                h,
                2,
                &[("occupancy_mean_ratio", 0.5), ("v_rms_min_v", 220.0)],
            ),
            row(h + 900_000, 2, &[("v_rms_min_v", 215.0)]),
        ];
        let out = rollup(&rows, h);
        assert_eq!(out.len(), 2);
        // (0.2*1 + 0.6*3) / 4 = 2.0 / 4 = 0.5
        assert!((out[0].metrics["occupancy_mean_ratio"] - 0.5).abs() < 1e-12);
        assert_eq!(out[0].metrics["occupancy_max_ratio"], 0.9);
        assert_eq!(out[0].metrics["arrivals"], 7.0);
        assert_eq!(out[0].count, 4);
        assert_eq!(out[0].window_ms, h);
        assert_eq!(out[1].start_ms, h);
        assert_eq!(out[1].metrics["occupancy_mean_ratio"], 0.5);
        assert_eq!(out[1].metrics["v_rms_min_v"], 215.0);
    }

    #[test]
    fn rules() {
        assert_eq!(combine_rule("pf_mean"), Combine::WeightedMean);
        assert_eq!(combine_rule("en50160_ok_ratio"), Combine::WeightedMean);
        assert_eq!(combine_rule("freq_max_hz"), Combine::Max);
        assert_eq!(combine_rule("energy_kwh"), Combine::Sum);
        assert_eq!(combine_rule("full_minutes"), Combine::Sum);
    }
}
