//! InfluxDB line protocol for storage, built with influxdata's `influxdb-line-protocol` crate.
//!
//! The crate escapes correctly but has two gaps (measured, see `PITFALLS.md`): it writes `NaN`/`inf`
//! float fields as they are (servers reject the line) and writes a tag value ending in `\` in a form its
//! own parser rejects. [`write_point`] refuses both before anything reaches the builder, as well as empty
//! names/values (invalid in line protocol) and control characters in names (a newline would end the line).
//! Reference: <https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>.

use crate::message::WindowAggregate;
use crate::reading::{Measurement, Reading};
use crate::reject::RejectReason;
use influxdb_line_protocol::LineProtocolBuilder;

/// A field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// Float (must be finite).
    F64(f64),
    /// Signed integer (`i` suffix).
    I64(i64),
    /// Unsigned integer (`u` suffix).
    U64(u64),
    /// Boolean.
    Bool(bool),
    /// String (quoted; `"` and `\` escaped by the builder).
    Str(&'a str),
}

/// One point: measurement, tags, fields, optional timestamp in ns.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// Measurement name.
    pub measurement: &'a str,
    /// Tag key → value, in the order written.
    pub tags: Vec<(&'a str, &'a str)>,
    /// Field key → value; at least one.
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
    /// Timestamp, ns since the epoch (`None`: server time).
    pub ts_ns: Option<i64>,
}

/// A point that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {what}")]
pub struct LineError {
    /// `non_finite`, `empty_value`, `trailing_backslash` or `bad_identifier`.
    pub reason: RejectReason,
    /// Which name or field.
    pub what: String,
}

fn check_name(kind: &str, s: &str) -> Result<(), LineError> {
    let err = |reason| {
        Err(LineError {
            reason,
            what: format!("{kind} {s:?}"),
        })
    };
    if s.is_empty() {
        return err(RejectReason::EmptyValue);
    }
    if s.ends_with('\\') {
        return err(RejectReason::TrailingBackslash);
    }
    if s.chars().any(char::is_control) {
        return err(RejectReason::BadIdentifier);
    }
    Ok(())
}

/// Validates `p` and appends it as one line (with `\n`) to `buf`.
///
/// # Errors
/// [`LineError`]: `empty_value` (empty measurement, key or tag value; no fields), `trailing_backslash`,
/// `bad_identifier` (control characters in a name), `non_finite` (NaN/±inf float field). Nothing is
/// written on error.
pub fn write_point(buf: &mut Vec<u8>, p: &Point<'_>) -> Result<(), LineError> {
    check_name("measurement", p.measurement)?;
    if p.measurement.starts_with('#') {
        return Err(LineError {
            reason: RejectReason::BadIdentifier,
            what: "measurement starts with #".into(),
        });
    }
    for (k, v) in &p.tags {
        check_name("tag key", k)?;
        check_name("tag value", v)?;
    }
    if p.fields.is_empty() {
        return Err(LineError {
            reason: RejectReason::EmptyValue,
            what: "no fields".into(),
        });
    }
    for (k, v) in &p.fields {
        check_name("field key", k)?;
        if let FieldValue::F64(x) = v
            && !x.is_finite()
        {
            return Err(LineError {
                reason: RejectReason::NonFinite,
                what: format!("field {k}"),
            });
        }
    }
    let mut b = LineProtocolBuilder::new_with(std::mem::take(buf)).measurement(p.measurement);
    for (k, v) in &p.tags {
        b = b.tag(k, v);
    }
    let (k0, v0) = &p.fields[0];
    let mut b = add_field(b, k0, *v0);
    for (k, v) in &p.fields[1..] {
        b = add_field2(b, k, *v);
    }
    *buf = match p.ts_ns {
        Some(ts) => b.timestamp(ts).close_line().build(),
        None => b.close_line().build(),
    };
    Ok(())
}

type AfterMeasurement =
    LineProtocolBuilder<Vec<u8>, influxdb_line_protocol::builder::AfterMeasurement>;
type AfterField = LineProtocolBuilder<Vec<u8>, influxdb_line_protocol::builder::AfterField>;

fn add_field(b: AfterMeasurement, k: &str, v: FieldValue<'_>) -> AfterField {
    match v {
        FieldValue::F64(x) => b.field(k, x),
        FieldValue::I64(x) => b.field(k, x),
        FieldValue::U64(x) => b.field(k, x),
        FieldValue::Bool(x) => b.field(k, x),
        FieldValue::Str(x) => b.field(k, x),
    }
}

fn add_field2(b: AfterField, k: &str, v: FieldValue<'_>) -> AfterField {
    match v {
        FieldValue::F64(x) => b.field(k, x),
        FieldValue::I64(x) => b.field(k, x),
        FieldValue::U64(x) => b.field(k, x),
        FieldValue::Bool(x) => b.field(k, x),
        FieldValue::Str(x) => b.field(k, x),
    }
}

/// An `f32` reading value as a float field, through the shortest decimal that round-trips the `f32`:
/// `57.3_f32` is stored as `57.3`, not as `f64::from(57.3_f32)` = `57.29999923706055`.
fn f32_field(x: f32) -> FieldValue<'static> {
    let wide = if x.is_finite() {
        x.to_string().parse::<f64>().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    };
    FieldValue::F64(wide)
}

/// The point for a raw reading: measurement `parking` or `grid`; tags `device`, `site`, `district`,
/// `type`; fields the measurement's values plus `boot`, `seq` (u64) and `replayed`; timestamp `ts_ms`
/// in ns. `f32` values are widened through their shortest decimal (`57.3`, not `57.29999923706055`).
pub fn reading_point(r: &Reading) -> Point<'_> {
    use FieldValue::*;
    let mut fields: Vec<(&str, FieldValue<'_>)> = Vec::with_capacity(12);
    match &r.data {
        Measurement::ParkingChange(p) => {
            fields.push(("occupied", Bool(p.occupied)));
            fields.push(("field_ut", f32_field(p.field_ut)));
        }
        Measurement::ParkingHeartbeat(h) => {
            fields.push(("occupied", Bool(h.occupied)));
            fields.push(("battery_pct", f32_field(h.battery_pct)));
            fields.push(("field_ut", f32_field(h.field_ut)));
            fields.push(("transitions", U64(u64::from(h.transitions))));
            fields.push(("dropped", U64(u64::from(h.dropped))));
        }
        Measurement::GridSummary(s) => {
            fields.push(("interval_s", U64(u64::from(s.interval_s))));
            fields.push(("v_rms_v", f32_field(s.v_rms_v)));
            fields.push(("v_min_v", f32_field(s.v_min_v)));
            fields.push(("v_max_v", f32_field(s.v_max_v)));
            fields.push(("i_rms_a", f32_field(s.i_rms_a)));
            fields.push(("p_kw", f32_field(s.p_kw)));
            fields.push(("q_kvar", f32_field(s.q_kvar)));
            fields.push(("pf", f32_field(s.pf)));
            fields.push(("freq_hz", f32_field(s.freq_hz)));
            fields.push(("energy_kwh", F64(s.energy_kwh)));
        }
        Measurement::GridEvent(e) => {
            fields.push(("event", Str(e.event.as_str())));
            fields.push(("duration_ms", U64(u64::from(e.duration_ms))));
            fields.push(("extreme_v", f32_field(e.extreme_v)));
        }
    }
    fields.push(("boot", U64(u64::from(r.boot))));
    fields.push(("seq", U64(u64::from(r.seq))));
    fields.push(("replayed", Bool(r.replayed)));
    Point {
        measurement: r.kind().as_str(),
        tags: vec![
            ("device", r.device.as_str()),
            ("site", r.site.as_str()),
            ("district", r.district.as_str()),
            ("type", r.data.type_name()),
        ],
        fields,
        ts_ns: Some(r.ts_ms.saturating_mul(1_000_000)),
    }
}

/// The point for a window aggregate: measurement `{kind}_agg`; tags `scope`, `id`, `district`,
/// `window`; fields every metric plus `count` and `version`; timestamp the window start in ns.
pub fn aggregate_point<'a>(a: &'a WindowAggregate, window_label: &'a str) -> Point<'a> {
    let measurement = match a.kind {
        crate::DeviceKind::Parking => "parking_agg",
        crate::DeviceKind::Grid => "grid_agg",
    };
    let mut fields: Vec<(&str, FieldValue<'_>)> = a
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), FieldValue::F64(*v)))
        .collect();
    fields.push(("count", FieldValue::U64(a.count)));
    fields.push(("version", FieldValue::U64(u64::from(a.version))));
    Point {
        measurement,
        tags: vec![
            ("scope", a.scope.as_str()),
            ("id", a.id.as_str()),
            ("district", a.district.as_str()),
            ("window", window_label),
        ],
        fields,
        ts_ns: Some(a.start_ms.saturating_mul(1_000_000)),
    }
}
