//! Messages the stream core and gateways publish besides readings: window aggregates, alerts, status.

use crate::ids::DeviceKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event-time window result for one series, as published on the aggregate topic and stored.
///
/// Metric names carry their unit (catalogue in `docs/PROTOCOL.md`), e.g. parking: `occupancy_mean_ratio`,
/// `occupancy_max_ratio`, `arrivals`, `departures`, `dwell_mean_s`, `full_minutes`; grid: `v_rms_min_v`,
/// `v_rms_mean_v`, `v_rms_max_v`, `p_mean_kw`, `p_max_kw`, `q_mean_kvar`, `q_max_kvar`, `energy_kwh`, `pf_mean`,
/// `freq_min_hz`, `freq_max_hz`, `sags`, `swells`, `interruptions`, `en50160_ok_ratio`; data quality:
/// `completeness`, `timeliness_p50_ms`, `timeliness_p95_ms`, `validity`, `uniqueness`, `consistency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowAggregate {
    /// Device kind the series is about.
    pub kind: DeviceKind,
    /// `device`, `lot`, `feeder` or `district`.
    pub scope: String,
    /// Id within the scope.
    pub id: String,
    /// District of the series.
    pub district: String,
    /// Window start, UTC epoch ms (inclusive).
    pub start_ms: i64,
    /// Window length, ms (tumbling windows: end = start + len).
    pub window_ms: i64,
    /// 1 for the first result; a late reading within the correction horizon yields version + 1.
    pub version: u32,
    /// Readings aggregated.
    pub count: u64,
    /// Metric name (unit in the name) → value.
    pub metrics: BTreeMap<String, f64>,
}

impl WindowAggregate {
    /// Window label for topics: `1m`, `15m`, `1h`, `1d` or `{n}s`.
    pub fn window_label(&self) -> String {
        window_label(self.window_ms)
    }
}

/// Label of a window length in ms: `1m`, `15m`, `1h`, `1d`, or `{n}s` for other lengths.
pub fn window_label(window_ms: i64) -> String {
    match window_ms {
        60_000 => "1m".into(),
        900_000 => "15m".into(),
        3_600_000 => "1h".into(),
        86_400_000 => "1d".into(),
        ms => format!("{}s", ms / 1000),
    }
}

/// Whether an alert is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition started.
    Raised,
    /// The condition ended.
    Cleared,
}

/// An alert transition, published retained on the alert topic (current state) and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Alert kind: `lot_full`, `voltage_out_of_band`, `interruption`, `device_offline`, `battery_low`.
    pub alert: String,
    /// Raised or cleared.
    pub state: AlertState,
    /// District.
    pub district: String,
    /// Site (lot or feeder) or, for device alerts, the device id.
    pub site: String,
    /// Event time of the transition, UTC epoch ms.
    pub ts_ms: i64,
    /// The measured value that triggered it (occupancy ratio, V, battery %, minutes offline...).
    pub value: f64,
    /// Human-readable text.
    pub message: String,
}

/// Online/offline status of a gateway or device, published retained (birth message and last will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `online` or `offline`.
    pub state: String,
    /// Time of the status, UTC epoch ms (0 in a last will, whose time is unknown when it is set).
    pub ts_ms: i64,
    /// Counters (spool depth, drops, bad frames...), name → value.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}
