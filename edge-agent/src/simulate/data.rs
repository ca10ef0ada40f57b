//! Loading the replay data sets (see `data/README.md`): Birmingham car-park occupancy, UCI household
//! power (1 min) and SimBench load profiles (15 min). Pure parsing and interpolation, no pacing.

use crate::intake::lorawan::parse_rfc3339_ms;
use std::collections::BTreeMap;
use std::path::Path;

/// Car-park file name in the data dir.
pub const PARKING_FILE: &str = "birmingham_carparks_occupancy_2016.csv";
/// Household power file name.
pub const UCI_FILE: &str = "uci_household_power_2008-01_1min.csv";
/// SimBench file name.
pub const SIMBENCH_FILE: &str = "simbench_loadprofiles_2016-01-04_14d_15min.csv";

/// Data loading failures (the file and the line are named).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// IO or CSV syntax.
    #[error("{file}: {detail}")]
    Read {
        /// File.
        file: String,
        /// What went wrong.
        detail: String,
    },
}

fn read_err(file: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Read {
        file: file.display().to_string(),
        detail: e.to_string(),
    }
}

/// Local time `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, taken as UTC (the sources give local time
/// without a zone; the one-hour BST shift in October is ignored — only time of day patterns matter).
pub fn parse_local_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 19 {
        return None;
    }
    parse_rfc3339_ms(&format!("{}T{}Z", &s[..10], &s[11..]))
}

/// One car park's recorded series.
#[derive(Debug, Clone, PartialEq)]
pub struct LotSeries {
    /// `SystemCodeNumber`.
    pub code: String,
    /// Recorded capacity, spaces (the last row's).
    pub capacity: u32,
    /// (time ms, occupancy / capacity clamped to 0..=1), sorted by time.
    pub samples: Vec<(i64, f64)>,
}

impl LotSeries {
    /// Occupancy ratio at `t_ms`: linear between samples, held before the first and after the last.
    pub fn ratio_at(&self, t_ms: i64) -> f64 {
        let s = &self.samples;
        let Some(first) = s.first() else { return 0.0 };
        let i = s.partition_point(|&(t, _)| t <= t_ms);
        if i == 0 {
            return first.1;
        }
        if i == s.len() {
            return s[i - 1].1;
        }
        let (t0, r0) = s[i - 1];
        let (t1, r1) = s[i];
        if t1 == t0 {
            r1
        } else {
            r0 + (r1 - r0) * (t_ms - t0) as f64 / (t1 - t0) as f64
        }
    }
}

/// The car-park data set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parking {
    /// Lots in file order of first appearance.
    pub lots: Vec<LotSeries>,
    /// Rows read.
    pub rows: u64,
    /// Rows with occupancy above capacity (real data faults, clamped to 1).
    pub over_capacity: u64,
    /// Rows with negative occupancy (clamped to 0).
    pub negative: u64,
    /// Rows that did not parse (skipped).
    pub unparsable: u64,
}

impl Parking {
    /// First sample time over all lots, ms.
    pub fn start_ms(&self) -> i64 {
        self.lots
            .iter()
            .filter_map(|l| l.samples.first().map(|s| s.0))
            .min()
            .unwrap_or(0)
    }
    /// Last sample time over all lots, ms.
    pub fn end_ms(&self) -> i64 {
        self.lots
            .iter()
            .filter_map(|l| l.samples.last().map(|s| s.0))
            .max()
            .unwrap_or(0)
    }
}

/// Loads the Birmingham file.
///
/// # Errors
/// [`DataError`] when the file cannot be read or has no usable rows.
pub fn load_parking(dir: &Path) -> Result<Parking, DataError> {
    let path = dir.join(PARKING_FILE);
    let mut rd = csv::Reader::from_path(&path).map_err(|e| read_err(&path, e))?;
    let mut p = Parking::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| read_err(&path, e))?;
        p.rows += 1;
        let (Some(code), Some(cap), Some(occ), Some(t)) =
            (rec.get(0), rec.get(1), rec.get(2), rec.get(3))
        else {
            p.unparsable += 1;
            continue;
        };
        let (Ok(cap), Ok(occ), Some(t)) = (
            cap.trim().parse::<i64>(),
            occ.trim().parse::<i64>(),
            parse_local_ms(t),
        ) else {
            p.unparsable += 1;
            continue;
        };
        if cap <= 0 {
            p.unparsable += 1;
            continue;
        }
        if occ > cap {
            p.over_capacity += 1;
        }
        if occ < 0 {
            p.negative += 1;
        }
        let i = *index.entry(code.to_string()).or_insert_with(|| {
            p.lots.push(LotSeries {
                code: code.to_string(),
                capacity: 0,
                samples: Vec::new(),
            });
            p.lots.len() - 1
        });
        let lot = &mut p.lots[i];
        lot.capacity = cap as u32;
        lot.samples
            .push((t, (occ as f64 / cap as f64).clamp(0.0, 1.0)));
    }
    for l in &mut p.lots {
        l.samples.sort_by_key(|s| s.0);
    }
    if p.lots.is_empty() {
        return Err(read_err(&path, "no usable rows"));
    }
    Ok(p)
}

/// One minute of the UCI household.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerMinute {
    /// Active power, kW.
    pub p_kw: f32,
    /// Reactive power, kvar.
    pub q_kvar: f32,
    /// RMS voltage, V.
    pub v_rms_v: f32,
}

/// The UCI month (44,640 minutes from 2008-01-01T00:00).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Household {
    /// Minutes in file order.
    pub minutes: Vec<PowerMinute>,
    /// Time of the first minute, ms.
    pub start_ms: i64,
}

impl Household {
    /// Linear interpolation at `offset_ms` from the start, wrapping around the month.
    pub fn at(&self, offset_ms: i64) -> PowerMinute {
        let n = self.minutes.len() as i64;
        if n == 0 {
            return PowerMinute {
                p_kw: 0.0,
                q_kvar: 0.0,
                v_rms_v: 230.0,
            };
        }
        let span = n * 60_000;
        let t = offset_ms.rem_euclid(span);
        let i = (t / 60_000) as usize;
        let f = (t % 60_000) as f32 / 60_000.0;
        let a = self.minutes[i];
        let b = self.minutes[(i + 1) % n as usize];
        PowerMinute {
            p_kw: a.p_kw + (b.p_kw - a.p_kw) * f,
            q_kvar: a.q_kvar + (b.q_kvar - a.q_kvar) * f,
            v_rms_v: a.v_rms_v + (b.v_rms_v - a.v_rms_v) * f,
        }
    }
}

/// Loads the UCI file.
///
/// # Errors
/// [`DataError`].
pub fn load_household(dir: &Path) -> Result<Household, DataError> {
    let path = dir.join(UCI_FILE);
    let mut rd = csv::Reader::from_path(&path).map_err(|e| read_err(&path, e))?;
    let mut h = Household::default();
    for (n, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| read_err(&path, e))?;
        let f = |i: usize| rec.get(i).and_then(|v| v.trim().parse::<f32>().ok());
        let (Some(p), Some(q), Some(v)) = (f(1), f(2), f(3)) else {
            return Err(read_err(&path, format!("row {}: bad number", n + 2)));
        };
        if n == 0 {
            h.start_ms = rec.get(0).and_then(parse_local_ms).unwrap_or(0);
        }
        h.minutes.push(PowerMinute {
            p_kw: p,
            q_kvar: q,
            v_rms_v: v,
        });
    }
    if h.minutes.is_empty() {
        return Err(read_err(&path, "no rows"));
    }
    Ok(h)
}

/// SimBench profiles: per profile type, (P, Q) p.u. every 15 min over 14 days.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profiles {
    /// Profile names (`H0-A`, `G1-A`, ...).
    pub names: Vec<String>,
    /// `values[profile][slot] = (p_pu, q_pu)`.
    pub values: Vec<Vec<(f32, f32)>>,
}

impl Profiles {
    /// Profile `k` (wrapping) at `offset_ms`, stepwise per 15-min slot, wrapping over the 14 days.
    pub fn at(&self, k: usize, offset_ms: i64) -> (f32, f32) {
        if self.values.is_empty() {
            return (0.0, 0.0);
        }
        let v = &self.values[k % self.values.len()];
        if v.is_empty() {
            return (0.0, 0.0);
        }
        let slot = (offset_ms.rem_euclid(v.len() as i64 * 900_000) / 900_000) as usize;
        v[slot]
    }
}

/// Loads the SimBench file (columns `{name}_pload`, `{name}_qload` in pairs after `time`).
///
/// # Errors
/// [`DataError`].
pub fn load_profiles(dir: &Path) -> Result<Profiles, DataError> {
    let path = dir.join(SIMBENCH_FILE);
    let mut rd = csv::Reader::from_path(&path).map_err(|e| read_err(&path, e))?;
    let headers = rd.headers().map_err(|e| read_err(&path, e))?.clone();
    let mut p = Profiles::default();
    let mut cols = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if let Some(name) = h.strip_suffix("_pload") {
            let q = headers.iter().position(|x| x == format!("{name}_qload"));
            if let Some(q) = q {
                p.names.push(name.to_string());
                cols.push((i, q));
            }
        }
    }
    p.values = vec![Vec::new(); cols.len()];
    for rec in rd.records() {
        let rec = rec.map_err(|e| read_err(&path, e))?;
        for (k, &(pi, qi)) in cols.iter().enumerate() {
            let g = |i: usize| {
                rec.get(i)
                    .and_then(|v| v.trim().parse::<f32>().ok())
                    .unwrap_or(0.0)
            };
            p.values[k].push((g(pi), g(qi)));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lot_interpolation() {
        let l = LotSeries {
            code: "x".into(),
            capacity: 10,
            samples: vec![(0, 0.2), (1000, 0.6)],
        };
        assert_eq!(l.ratio_at(-5), 0.2);
        assert!((l.ratio_at(250) - 0.3).abs() < 1e-12);
        assert_eq!(l.ratio_at(5000), 0.6);
    }

    #[test]
    fn shipped_data_loads_with_its_faults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let p = load_parking(&dir).unwrap();
        assert_eq!(p.lots.len(), 30);
        assert_eq!(p.rows, 35_717);
        // Independent count of the faults with a plain pass over the CSV text.
        let text = std::fs::read_to_string(dir.join(PARKING_FILE)).unwrap();
        let (mut over, mut neg) = (0u64, 0u64);
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (cap, occ): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            over += u64::from(occ > cap);
            neg += u64::from(occ < 0);
        }
        assert_eq!((p.over_capacity, p.negative), (over, neg));
        assert!(over > 0, "the data's faults are kept");
        let h = load_household(&dir).unwrap();
        assert_eq!(h.minutes.len(), 44_640);
        // First row: 2008-01-01T00:00:00,1.62,0.07,241.25
        assert_eq!(
            h.minutes[0],
            PowerMinute {
                p_kw: 1.62,
                q_kvar: 0.07,
                v_rms_v: 241.25
            }
        );
        let pr = load_profiles(&dir).unwrap();
        assert_eq!(pr.names.len(), 18);
        assert_eq!(pr.values[0].len(), 1_344);
        assert_eq!(pr.at(0, 0), (0.071629, 0.056858));
    }
}
