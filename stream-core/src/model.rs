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
