//! Physical-range and timestamp checks: pure functions, `no_std`.
//!
//! Ranges are wide physical bounds, not alarm thresholds: a value outside them cannot come from a working
//! sensor. Sources: LIS3MDL full scale ±16 gauss = ±1600 µT (ST DS10530 Table 3), low-voltage networks up
//! to 1000 V AC (IEC 60038), frequency band far outside EN 50160 §4.2.1's 50 Hz ±6 % / -6 % extreme.

use crate::reading::{
    GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat, Reading,
};
use crate::reject::RejectReason;

/// 2000-01-01T00:00:00Z in UTC epoch milliseconds: no reading is older.
pub const TS_MIN_MS: i64 = 946_684_800_000;
/// Upper bound of plausible epoch *seconds* (2100-01-01): between [`TS_MIN_MS`]/1000 and this, a value is
/// taken for seconds mistaken for milliseconds.
pub const TS_SECONDS_MAX: i64 = 4_102_444_800;
/// From here on a value is taken for epoch microseconds (ms would be past the year 5138).
pub const TS_MICROS_MIN: i64 = 100_000_000_000_000;
/// From here on a value is taken for epoch nanoseconds.
pub const TS_NANOS_MIN: i64 = 100_000_000_000_000_000;

/// Hard limits of the contract. Defaults are the documented ones in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "std", serde(default, deny_unknown_fields))]
pub struct Limits {
    /// Largest accepted MQTT payload, bytes (default 65,536).
    pub max_payload_bytes: usize,
    /// Deepest accepted JSON nesting (objects and arrays; default 8).
    pub max_depth: usize,
    /// Most readings in one message (default 1,000).
    pub max_readings_per_batch: usize,
    /// How far ahead of the receiver's clock an event time may be, ms (default 300,000 = 5 min).
    pub max_future_skew_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 65_536,
            max_depth: 8,
            max_readings_per_batch: 1_000,
            max_future_skew_ms: 300_000,
        }
    }
}

/// A refusal of a single value: the reason and the JSON field it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    /// Why.
    pub reason: RejectReason,
    /// Which field (`ts_ms`, `data.v_rms_v`, ...).
    pub field: &'static str,
}

/// Checks an event time in UTC epoch milliseconds against `now_ms` (the receiver's clock).
///
/// # Errors
/// `ts_seconds`, `ts_microseconds`, `ts_nanoseconds` when the magnitude says the wrong unit was used;
/// `ts_before_2000`; `ts_future` when `ts_ms > now_ms + max_future_skew_ms`.
pub fn check_timestamp(ts_ms: i64, now_ms: i64, limits: &Limits) -> Result<(), RejectReason> {
    if ts_ms < TS_MIN_MS {
        if (TS_MIN_MS / 1000..TS_SECONDS_MAX).contains(&ts_ms) {
            return Err(RejectReason::TsSeconds);
        }
        return Err(RejectReason::TsBefore2000);
    }
    if ts_ms >= TS_NANOS_MIN {
        return Err(RejectReason::TsNanoseconds);
    }
    if ts_ms >= TS_MICROS_MIN {
        return Err(RejectReason::TsMicroseconds);
    }
    if ts_ms > now_ms.saturating_add(limits.max_future_skew_ms) {
        return Err(RejectReason::TsFuture);
    }
    Ok(())
}

fn range(v: f32, lo: f32, hi: f32, field: &'static str) -> Result<(), FieldError> {
    if !v.is_finite() {
        return Err(FieldError {
            reason: RejectReason::NonFinite,
            field,
        });
    }
    if v < lo || v > hi {
        return Err(FieldError {
            reason: RejectReason::OutOfRange,
            field,
        });
    }
    Ok(())
}

/// Checks every value of a measurement against its physical range.
///
/// # Errors
/// `non_finite` for NaN/±inf, `out_of_range` otherwise, naming the field.
pub fn check_measurement(m: &Measurement) -> Result<(), FieldError> {
    match m {
        Measurement::ParkingChange(ParkingChange { field_ut, .. }) => {
            range(*field_ut, 0.0, 1600.0, "data.field_ut")
        }
        Measurement::ParkingHeartbeat(ParkingHeartbeat {
            battery_pct,
            field_ut,
            ..
        }) => {
            range(*battery_pct, 0.0, 100.0, "data.battery_pct")?;
            range(*field_ut, 0.0, 1600.0, "data.field_ut")
        }
        Measurement::GridSummary(s) => check_summary(s),
        Measurement::GridEvent(GridEvent {
            extreme_v,
            duration_ms,
            ..
        }) => {
            range(*extreme_v, 0.0, 1000.0, "data.extreme_v")?;
            if *duration_ms == 0 {
                return Err(FieldError {
                    reason: RejectReason::OutOfRange,
                    field: "data.duration_ms",
                });
            }
            Ok(())
        }
    }
}

fn check_summary(s: &GridSummary) -> Result<(), FieldError> {
    if s.interval_s == 0 || s.interval_s > 86_400 {
        return Err(FieldError {
            reason: RejectReason::OutOfRange,
            field: "data.interval_s",
        });
    }
    range(s.v_rms_v, 0.0, 1000.0, "data.v_rms_v")?;
    range(s.v_min_v, 0.0, 1000.0, "data.v_min_v")?;
    range(s.v_max_v, 0.0, 1000.0, "data.v_max_v")?;
    if s.v_min_v > s.v_rms_v || s.v_rms_v > s.v_max_v {
        return Err(FieldError {
            reason: RejectReason::OutOfRange,
            field: "data.v_rms_v",
        });
    }
    range(s.i_rms_a, 0.0, 10_000.0, "data.i_rms_a")?;
    range(s.p_kw, -10_000.0, 10_000.0, "data.p_kw")?;
    range(s.q_kvar, -10_000.0, 10_000.0, "data.q_kvar")?;
    range(s.pf, -1.0, 1.0, "data.pf")?;
    range(s.freq_hz, 40.0, 70.0, "data.freq_hz")?;
    if !s.energy_kwh.is_finite() {
        return Err(FieldError {
            reason: RejectReason::NonFinite,
            field: "data.energy_kwh",
        });
    }
    if s.energy_kwh < 0.0 || s.energy_kwh > 1.0e12 {
        return Err(FieldError {
            reason: RejectReason::OutOfRange,
            field: "data.energy_kwh",
        });
    }
    Ok(())
}

/// Checks a whole reading: event time, then measurement values.
///
/// # Errors
/// The first [`FieldError`] found.
pub fn check_reading(r: &Reading, now_ms: i64, limits: &Limits) -> Result<(), FieldError> {
    check_timestamp(r.ts_ms, now_ms, limits).map_err(|reason| FieldError {
        reason,
        field: "ts_ms",
    })?;
    check_measurement(&r.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000; // 2025-11-24

    #[test]
    fn timestamp_units_and_bounds() {
        let l = Limits::default();
        assert_eq!(check_timestamp(NOW, NOW, &l), Ok(()));
        assert_eq!(
            check_timestamp(NOW / 1000, NOW, &l),
            Err(RejectReason::TsSeconds)
        );
        assert_eq!(
            check_timestamp(NOW * 1000, NOW, &l),
            Err(RejectReason::TsMicroseconds)
        );
        assert_eq!(
            check_timestamp(NOW * 1_000_000, NOW, &l),
            Err(RejectReason::TsNanoseconds)
        );
        assert_eq!(
            check_timestamp(TS_MIN_MS - 1, NOW, &l),
            Err(RejectReason::TsBefore2000)
        );
        assert_eq!(check_timestamp(TS_MIN_MS, NOW, &l), Ok(()));
        assert_eq!(
            check_timestamp(12, NOW, &l),
            Err(RejectReason::TsBefore2000)
        );
        assert_eq!(check_timestamp(NOW + 300_000, NOW, &l), Ok(()));
        assert_eq!(
            check_timestamp(NOW + 300_001, NOW, &l),
            Err(RejectReason::TsFuture)
        );
    }
}
