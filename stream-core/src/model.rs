//! Records that flow through the dataflow, the window settings and the registry view the cores use.

use crate::store::QualityRow;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use telemetry::message::{Alert, WindowAggregate};
use telemetry::registry::Registry;
use telemetry::{
    DeviceId, DeviceKind, DistrictId, GridEvent, GridSummary, Measurement, ParkingChange,
    ParkingHeartbeat, Reading, SiteId, TimeSource,
};

/// A reading with its receive time on its way between workers (the Dedup exchange, keyed by site).
///
/// Records that cross a process boundary are serialized by timely with bincode, which cannot read
/// self-describing forms: the contract's [`Measurement`] is an internally tagged enum (its JSON shape)
/// and would fail with `DeserializeAnyNotSupported`. This record therefore serializes the reading with
/// an externally tagged mirror of the reading, which bincode reads back exactly; within a process
/// records are moved, not serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// The reading.
    #[serde(with = "ReadingWire")]
    pub reading: Reading,
    /// Receive time, UTC epoch ms.
    pub ingest_ms: i64,
}

/// Exchange form of [`Reading`] (serde remote definition; see [`Routed`]).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Reading")]
struct ReadingWire {
    device: DeviceId,
    site: SiteId,
    district: DistrictId,
    boot: u32,
    seq: u32,
    ts_ms: i64,
    time_source: TimeSource,
    replayed: bool,
    #[serde(with = "MeasurementWire")]
    data: Measurement,
}

/// Exchange form of [`Measurement`]: externally tagged (a variant index in bincode).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Measurement")]
enum MeasurementWire {
    ParkingChange(ParkingChange),
    ParkingHeartbeat(ParkingHeartbeat),
    GridSummary(GridSummary),
    GridEvent(GridEvent),
}

/// One input record of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum CoreInput {
    /// A reading that passed the telemetry validation and is durably stored raw.
    Reading {
        /// The reading.
        reading: Reading,
        /// Receive time, UTC epoch ms (for timeliness).
        ingest_ms: i64,
    },
    /// A refused reading or message (counts against validity of its source).
    Rejected {
        /// Device id if known, else the topic's device or gateway level, else `unknown`.
        source: String,
        /// `parking`, `grid` or `unknown`.
        dataset: String,
    },
}

/// One output record of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoreOutput {
    /// A window result (first version or a correction).
    Aggregate(WindowAggregate),
    /// An alert transition.
    Alert(Alert),
    /// A data-quality row (upserted: a later row for the same key replaces the earlier one).
    Quality(QualityRow),
    /// A reading left out of the aggregates: `duplicate` or `too_late` (stable reject names).
    Dropped {
        /// `duplicate` or `too_late`.
        reason: String,
        /// Device id.
        source: String,
    },
}

/// Window, lateness and alert settings of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Tumbling window lengths, ms, smallest first (default 60,000 and 900,000). Alerts are evaluated on
    /// the smallest.
    pub windows_ms: Vec<i64>,
    /// How long after a window's end (in watermark time) readings are still folded into its first
    /// result, ms (default 60,000).
    pub allowed_lateness_ms: i64,
    /// Readings older than watermark − this are `too_late`: stored raw, counted, not aggregated; younger
    /// late readings yield corrected windows (version + 1). ms, default 86,400,000 (24 h).
    pub correction_horizon_ms: i64,
    /// Quality window length, ms (default 900,000).
    pub quality_window_ms: i64,
    /// Occupancy ratio at or above which a lot counts as full (default 0.95).
    pub full_ratio: f64,
    /// How long a lot must stay full before `lot_full` is raised, ms (default 300,000).
    pub lot_full_for_ms: i64,
    /// EN 50160 band around nominal voltage, fraction (default 0.10 = ±10 %).
    pub voltage_band_ratio: f64,
    /// A device is offline after this many missed report intervals (default 3).
    pub offline_after_intervals: u32,
    /// Battery percentage below which `battery_low` is raised (default 15).
    pub battery_low_pct: f64,
    /// Battery percentage above which `battery_low` clears (default 20).
    pub battery_clear_pct: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            windows_ms: vec![60_000, 900_000],
            allowed_lateness_ms: 60_000,
            correction_horizon_ms: 86_400_000,
            quality_window_ms: 900_000,
            full_ratio: 0.95,
            lot_full_for_ms: 300_000,
            voltage_band_ratio: 0.10,
            offline_after_intervals: 3,
            battery_low_pct: 15.0,
            battery_clear_pct: 20.0,
        }
    }
}

impl WindowConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.windows_ms.is_empty() || self.windows_ms.iter().any(|w| *w <= 0) {
            return Err("windows_ms: at least one positive window length".into());
        }
        if self.windows_ms.windows(2).any(|w| w[0] >= w[1]) {
            return Err("windows_ms: must be strictly increasing".into());
        }
        if self.allowed_lateness_ms < 0 || self.correction_horizon_ms < self.allowed_lateness_ms {
            return Err("allowed_lateness_ms must be >= 0 and <= correction_horizon_ms".into());
        }
        if self.quality_window_ms <= 0 {
            return Err("quality_window_ms must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.full_ratio) {
            return Err("full_ratio must be within 0..=1".into());
        }
        Ok(())
    }

    /// The smallest window length, ms.
    pub fn base_window_ms(&self) -> i64 {
        self.windows_ms.first().copied().unwrap_or(60_000)
    }

    /// How long history is kept behind the watermark, ms.
    pub fn retention_ms(&self) -> i64 {
        self.correction_horizon_ms
            + self
                .windows_ms
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(self.quality_window_ms)
            + self.allowed_lateness_ms
    }
}

/// What the cores need from the registry, indexed.
#[derive(Debug, Clone, Default)]
pub struct SiteInfo {
    /// Lot id → capacity (bays).
    pub lot_capacity: HashMap<String, u32>,
    /// Feeder id → nominal voltage, V.
    pub feeder_nominal_v: HashMap<String, f64>,
    /// Device id → (site, kind, report interval s).
    pub devices: HashMap<String, (String, DeviceKind, u32)>,
}

impl SiteInfo {
    /// Indexes a registry.
    pub fn from_registry(r: &Registry) -> Self {
        SiteInfo {
            lot_capacity: r
                .lots
                .iter()
                .map(|l| (l.id.to_string(), l.capacity))
                .collect(),
            feeder_nominal_v: r
                .feeders
                .iter()
                .map(|f| (f.id.to_string(), f64::from(f.nominal_v)))
                .collect(),
            devices: r
                .devices
                .iter()
                .map(|d| {
                    (
                        d.id.to_string(),
                        (d.site.to_string(), d.kind, d.report_interval_s),
                    )
                })
                .collect(),
        }
    }

    /// The report interval of a device, ms, if registered.
    pub fn interval_ms(&self, device: &str) -> Option<i64> {
        self.devices.get(device).map(|d| i64::from(d.2) * 1000)
    }

    /// Consistency of a reading with the registry and with physics: the device's registered site (if
    /// registered) equals the reading's site; a grid summary's |P| is at most 1.1 × V × I (single phase).
    pub fn consistent(&self, r: &Reading) -> bool {
        if let Some((site, kind, _)) = self.devices.get(r.device.as_str())
            && (site != r.site.as_str() || *kind != r.kind())
        {
            return false;
        }
        if let Measurement::GridSummary(s) = &r.data {
            let s_kva = f64::from(s.v_rms_v) * f64::from(s.i_rms_a) / 1000.0;
            return f64::from(s.p_kw).abs() <= 1.1 * s_kva + 0.05;
        }
        true
    }
}

/// Deterministic 64-bit hash for routing records between workers and processes (never `RandomState`).
pub fn route_hash(s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Floor of `ts` to a multiple of `len` (also for negative times).
pub fn window_start(ts: i64, len: i64) -> i64 {
    ts.div_euclid(len) * len
}

/// Whether a measurement is periodic (heartbeat, summary) and so counts towards completeness.
pub fn is_periodic(m: &Measurement) -> bool {
    matches!(
        m,
        Measurement::ParkingHeartbeat(_) | Measurement::GridSummary(_)
    )
}

/// Interned identifiers: each distinct key (one or more id parts) gets a dense `u32` index, so
/// per-device state can live in flat `Vec`s instead of maps keyed by `String`.
///
/// Memory: the keys' text in one arena `String` (parts joined by `\0`, which identifiers cannot
/// contain, so a joined key sorts exactly like the tuple of its parts), one `u32` end offset per key,
/// and an open-addressing index of `u32` slots (linear probing, at most 3/4 full): about
/// `text + 4 + 4..10` bytes per key and no allocation per key. Keys are never removed (devices and
/// sites come from a fixed registry; an unregistered id costs its text once).
#[derive(Debug, Default, Clone)]
pub struct Interner {
    text: String,
    ends: Vec<u32>,
    /// Index + 1 of the key in each slot; 0 = empty.
    slots: Vec<u32>,
}

fn parts_hash(parts: &[&str]) -> u64 {
    // FNV-1a over the joined bytes: deterministic, and fast enough for short ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ (h >> 29)
}

impl Interner {
    /// The text of key `id` (parts joined by `\0`). Panics on an index not handed out by this interner.
    pub fn resolve(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no key is interned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn matches(&self, id: u32, parts: &[&str]) -> bool {
        let mut s = self.resolve(id);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                match s.strip_prefix('\0') {
                    Some(r) => s = r,
                    None => return false,
                }
            }
            match s.strip_prefix(p) {
                Some(r) => s = r,
                None => return false,
            }
        }
        s.is_empty()
    }

    /// The index of the key made of `parts`, if interned.
    pub fn get(&self, parts: &[&str]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = parts_hash(parts) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return None,
                s if self.matches(s - 1, parts) => return Some(s - 1),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The index of the key made of `parts`, interning it if new.
    pub fn intern(&mut self, parts: &[&str]) -> u32 {
        if let Some(id) = self.get(parts) {
            return id;
        }
        if (self.ends.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.text.push('\0');
            }
            self.text.push_str(p);
        }
        let id = self.ends.len() as u32;
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.place(parts_hash(parts), id);
        id
    }

    fn place(&mut self, h: u64, id: u32) {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = id + 1;
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        self.slots = vec![0; n];
        for id in 0..self.ends.len() as u32 {
            let parts: Vec<&str> = self.resolve(id).split('\0').collect();
            let h = parts_hash(&parts);
            let mask = self.slots.len() - 1;
            let mut i = h as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = id + 1;
        }
    }
}

#[cfg(test)]
mod interner_tests {
    use super::Interner;
    use std::collections::HashMap;

    #[test]
    fn interner_matches_a_map() {
        let mut i = Interner::default();
        let mut m: HashMap<(String, String), u32> = HashMap::new();
        for k in 0..5_000u32 {
            let a = format!("s{}", k % 37);
            let b = format!("d{}", (k * 7919) % 1_013);
            let id = i.intern(&[&a, &b]);
            let want = *m.entry((a.clone(), b.clone())).or_insert(id);
            assert_eq!(id, want);
            assert_eq!(i.resolve(id), format!("{a}\0{b}"));
            assert_eq!(i.get(&[&a, &b]), Some(id));
        }
        assert_eq!(i.len(), m.len());
        // Part boundaries matter: ("s1", "0d1") is not ("s10", "d1").
        assert_eq!(i.get(&["s1", "0d1"]), None);
        assert_eq!(i.get(&["s10"]), None);
    }
}
