//! The reading envelope and the typed measurements, with units in every field name.
//!
//! One [`Reading`] is one measurement from one device at one event time. `(device, boot, seq)` names it
//! uniquely: `boot` is the device's boot counter, `seq` counts up from 0 within a boot, so a restarted
//! device never reuses a key. Duplicates (QoS 1 redelivery, gateway replays) carry the same key.

use crate::ids::{DeviceId, DeviceKind, DistrictId, SiteId};
use serde::{Deserialize, Serialize};

/// Where the event time `ts_ms` came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The device said when it happened (absolute clock, or an age offset in the uplink frame).
    #[default]
    Device,
    /// The device gave no time: the gateway's receive time stands in (less precise).
    Gateway,
}

/// One reading: identity, ordering key, event time and the typed measurement.
///
/// `Deserialize` needs the `std` feature (the internally tagged [`Measurement`] buffers its content).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// Reporting device.
    pub device: DeviceId,
    /// The device's site: its lot (parking) or feeder (grid).
    pub site: SiteId,
    /// The site's district.
    pub district: DistrictId,
    /// Boot counter of the device (increments on every power-up).
    pub boot: u32,
    /// Sequence number, monotonic within one boot, starting at 0.
    pub seq: u32,
    /// Event time, UTC epoch milliseconds.
    pub ts_ms: i64,
    /// Where `ts_ms` came from.
    #[serde(default)]
    pub time_source: TimeSource,
    /// True when the gateway sent this reading from its spool after an outage.
    #[serde(default)]
    pub replayed: bool,
    /// What was measured.
    pub data: Measurement,
}

impl Reading {
    /// The device kind implied by the measurement.
    pub fn kind(&self) -> DeviceKind {
        self.data.kind()
    }
}

/// A typed measurement; the JSON form is an object with a `type` tag.
///
/// `Deserialize` needs the `std` feature: serde buffers an internally tagged enum's content on the heap.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Measurement {
    /// A bay changed state (arrival or departure). Sent on the `events` channel.
    ParkingChange(ParkingChange),
    /// Periodic parking-sensor heartbeat. Sent on the `telemetry` channel.
    ParkingHeartbeat(ParkingHeartbeat),
    /// Periodic grid summary (min/mean/max over the interval). Sent on `telemetry`.
    GridSummary(GridSummary),
    /// A power-quality event (IEEE 1159 sag, swell, interruption). Sent on `events`.
    GridEvent(GridEvent),
}

impl Measurement {
    /// The device kind this measurement belongs to.
    pub fn kind(&self) -> DeviceKind {
        match self {
            Measurement::ParkingChange(_) | Measurement::ParkingHeartbeat(_) => DeviceKind::Parking,
            Measurement::GridSummary(_) | Measurement::GridEvent(_) => DeviceKind::Grid,
        }
    }

    /// Stable name of the measurement type (`parking_change`, ...), as in the JSON `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Measurement::ParkingChange(_) => "parking_change",
            Measurement::ParkingHeartbeat(_) => "parking_heartbeat",
            Measurement::GridSummary(_) => "grid_summary",
            Measurement::GridEvent(_) => "grid_event",
        }
    }

    /// True for event-like measurements (state changes, power-quality events) that go on the
    /// `events` channel; false for periodic ones on `telemetry`.
    pub fn is_event(&self) -> bool {
        matches!(
            self,
            Measurement::ParkingChange(_) | Measurement::GridEvent(_)
        )
    }
}

/// A bay's state change, detected by the sensor (arrival when `occupied` becomes true).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkingChange {
    /// New state of the bay.
    pub occupied: bool,
    /// Magnitude of the field deviation from the vacant baseline at detection, µT.
    pub field_ut: f32,
}

/// Parking-sensor heartbeat: state, battery and health counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkingHeartbeat {
    /// Current state of the bay.
    pub occupied: bool,
    /// Battery state of charge, percent (0–100).
    pub battery_pct: f32,
    /// Magnitude of the field deviation from the vacant baseline, µT.
    pub field_ut: f32,
    /// State transitions since boot.
    pub transitions: u32,
    /// Frames dropped from the device outbox since boot (drop-oldest when full).
    pub dropped: u32,
}

/// Grid measurements summarised over `interval_s` seconds (RMS per cycle, aggregated on the device).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSummary {
    /// Summary interval, seconds (60 by default).
    pub interval_s: u32,
    /// Mean RMS voltage over the interval, V.
    pub v_rms_v: f32,
    /// Lowest RMS voltage in the interval, V.
    pub v_min_v: f32,
    /// Highest RMS voltage in the interval, V.
    pub v_max_v: f32,
    /// Mean RMS current, A.
    pub i_rms_a: f32,
    /// Mean active power, kW (negative = export).
    pub p_kw: f32,
    /// Mean reactive power, kvar.
    pub q_kvar: f32,
    /// Mean power factor, -1..=1.
    pub pf: f32,
    /// Mean line frequency, Hz.
    pub freq_hz: f32,
    /// Active-energy register at the end of the interval, kWh (monotonic).
    pub energy_kwh: f64,
}

/// IEEE 1159-2019 Table 2 categories of RMS variation that the device reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PqEventKind {
    /// Voltage below 0.9 pu (and at or above 0.1 pu).
    Sag,
    /// Voltage above 1.1 pu.
    Swell,
    /// Voltage below 0.1 pu.
    Interruption,
}

impl PqEventKind {
    /// Stable name (`sag`, `swell`, `interruption`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PqEventKind::Sag => "sag",
            PqEventKind::Swell => "swell",
            PqEventKind::Interruption => "interruption",
        }
    }
}

/// A finished power-quality event; the reading's `ts_ms` is the event's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridEvent {
    /// Category.
    pub event: PqEventKind,
    /// Duration, ms.
    pub duration_ms: u32,
    /// Extreme RMS voltage during the event (lowest for sag/interruption, highest for swell), V.
    pub extreme_v: f32,
}
