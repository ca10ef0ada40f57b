//! Every rejection reason the contract can produce, each from a hand-written input, with the exact
//! reason (and index / field where the contract reports one).
//!
//! `duplicate`, `too_late` and `unknown_device` are produced by the stream core and the gateway (they
//! need state: seen keys, watermarks, the registry), not by this crate; they are only checked to be
//! documented.
#![cfg(feature = "std")]

use telemetry::frame::{self, FrameError, InvalidFrame};
use telemetry::json::{self, Decoded, Rejection};
use telemetry::line::{self, FieldValue, Point};
use telemetry::topic;
use telemetry::validate::{self, check_timestamp};
use telemetry::{Limits, RejectReason as R};

/// Receiver clock for every test: 2025-11-24T16:00:00Z in epoch ms.
const NOW: i64 = 1_764_000_000_000;

/// A valid parking-change reading; `{ts}` and `{data}` are spliced in by [`reading`].
fn reading_with(device: &str, ts_ms: &str, data: &str) -> String {
    format!(
        r#"{{"device":"{device}","site":"s1","district":"central","boot":1,"seq":0,"ts_ms":{ts_ms},"data":{data}}}"#
    )
}

const CHANGE: &str = r#"{"type":"parking_change","occupied":true,"field_ut":48.5}"#;

fn reading(data: &str) -> String {
    reading_with("d1", "1764000000000", data)
}

fn message(readings: &[String]) -> String {
    format!(r#"{{"v":1,"readings":[{}]}}"#, readings.join(","))
}

fn decode(s: &str) -> Result<Decoded, Rejection> {
    json::decode(s.as_bytes(), &Limits::default(), NOW)
}

/// Asserts the whole message is refused with `reason`.
#[track_caller]
fn whole(s: &str, reason: R) -> Rejection {
    let e = decode(s).expect_err(s);
    assert_eq!(e.reason, reason, "{s}: {e}");
    assert_eq!(e.index, None, "{s}");
    e
}

/// Asserts the message envelope is accepted and its single reading refused with `reason`.
#[track_caller]
fn single(reading_json: &str, reason: R) -> Rejection {
    let s = message(&[reading_json.to_string()]);
    let d = decode(&s).unwrap_or_else(|e| panic!("{s}: whole message refused: {e}"));
    assert!(d.readings.is_empty(), "{s}: accepted {:?}", d.readings);
    assert_eq!(d.rejected.len(), 1, "{s}");
    let e = d.rejected[0].clone();
    assert_eq!(e.reason, reason, "{s}: {e}");
    assert_eq!(e.index, Some(0), "{s}");
    // The same reading through the single-reading entry point gives the same reason, no index.
    let alone =
        json::decode_reading(reading_json, &Limits::default(), NOW).expect_err(reading_json);
    assert_eq!(alone.reason, reason, "{reading_json}");
    assert_eq!(alone.index, None);
    e
}

/// As [`single`] for a validation refusal, which names the field exactly.
#[track_caller]
fn single_field(reading_json: &str, reason: R, field: &str) {
    let e = single(reading_json, reason);
    assert_eq!(e.detail, field, "{reading_json}");
}

#[test]
fn the_valid_base_is_accepted() {
    let d = decode(&message(&[reading(CHANGE)])).unwrap();
    assert_eq!(d.readings.len(), 1);
    assert!(d.rejected.is_empty());
    assert_eq!(d.readings[0].device.as_str(), "d1");
    assert_eq!(d.readings[0].ts_ms, NOW);
}

// ---------------------------------------------------------------- whole-message refusals

#[test]
fn too_large() {
    let base = message(&[reading(CHANGE)]);
    let limits = Limits {
        max_payload_bytes: base.len() + 3,
        ..Limits::default()
    };
    // Exactly at the limit (padded with whitespace, still valid JSON): accepted.
    let at = format!("{base}   ");
    assert_eq!(at.len(), limits.max_payload_bytes);
    assert_eq!(
        json::decode(at.as_bytes(), &limits, NOW)
            .unwrap()
            .readings
            .len(),
        1
    );
    // One byte over: refused before parsing, even though it is valid JSON.
    let over = format!("{base}    ");
    let e = json::decode(over.as_bytes(), &limits, NOW).unwrap_err();
    assert_eq!((e.reason, e.index), (R::TooLarge, None));
    // Default limit 65,536 bytes: a 65,537-byte payload of garbage is refused as too large, not malformed.
    let big = vec![b'x'; 65_537];
    let e = json::decode(&big, &Limits::default(), NOW).unwrap_err();
    assert_eq!(e.reason, R::TooLarge);
}

#[test]
fn malformed_json() {
    for s in [
        r#"{"v":1,"readings":["#,
        r#"{"v":1,}"#,
        r#"{"v":1 "readings":[]}"#,
        r#"{v:1,"readings":[]}"#,
        r#"{"v":1,"readings":[]}x"#,
        r#"{'v':1}"#,
        "{",
    ] {
        whole(s, R::MalformedJson);
    }
    // Invalid UTF-8 inside a string.
    let mut bytes = br#"{"v":1,""#.to_vec();
    bytes.extend_from_slice(&[0xFF, b'"', b':', b'1', b'}']);
    let e = json::decode(&bytes, &Limits::default(), NOW).unwrap_err();
    assert_eq!(e.reason, R::MalformedJson);
}

#[test]
fn not_object() {
    for s in [
        "[]",
        "[{\"v\":1}]",
        "\"v\"",
        "42",
        "-5",
        "null",
        "true",
        "",
        "   ",
    ] {
        whole(s, R::NotObject);
    }
}

#[test]
fn too_deep() {
    // Default depth limit 8: a reading carries depth 4 (message, readings, reading, data); an unknown
    // field nested 5 more levels reaches 9.
    let deep = reading(r#"{"type":"parking_change","occupied":true,"field_ut":1,"x":[[[[[]]]]]}"#);
    whole(&message(&[deep]), R::TooDeep);
    // Depth 8 exactly is not too deep: the envelope passes and the reading is refused for its field.
    let eight = reading(r#"{"type":"parking_change","occupied":true,"field_ut":1,"x":[[[[]]]]}"#);
    single(&eight, R::UnknownField);
    // Brackets inside strings do not count.
    let quoted = reading_with("[[[[[[{{{{", "1764000000000", CHANGE);
    let d = decode(&message(&[quoted])).unwrap();
    assert_eq!(d.readings.len(), 1);
    // A configurable limit.
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let e = json::decode(message(&[reading(CHANGE)]).as_bytes(), &limits, NOW).unwrap_err();
    assert_eq!(e.reason, R::TooDeep);
    // Deep garbage is refused as too deep before any parser recursion.
    let bomb = "[".repeat(100_000);
    let e = json::decode(
        bomb.as_bytes(),
        &Limits {
            max_payload_bytes: 1 << 20,
            ..Limits::default()
        },
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.reason, R::NotObject);
    let bomb = format!("{{\"v\":{}", "[".repeat(100_000));
    let e = json::decode(
        bomb.as_bytes(),
        &Limits {
            max_payload_bytes: 1 << 20,
            ..Limits::default()
        },
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.reason, R::TooDeep);
}

#[test]
fn too_many_readings() {
    let limits = Limits {
        max_readings_per_batch: 2,
        ..Limits::default()
    };
    let two = message(&[reading(CHANGE), reading(CHANGE)]);
    assert_eq!(
        json::decode(two.as_bytes(), &limits, NOW)
            .unwrap()
            .readings
            .len(),
        2
    );
    let three = message(&[reading(CHANGE), reading(CHANGE), reading(CHANGE)]);
    let e = json::decode(three.as_bytes(), &limits, NOW).unwrap_err();
    assert_eq!((e.reason, e.index), (R::TooManyReadings, None));
    // Default 1,000: 1,001 readings are refused (they fit in the default byte limit? no: use a bigger one).
    let many: Vec<String> = (0..1001).map(|_| "{}".to_string()).collect();
    let e = decode(&message(&many)).unwrap_err();
    assert_eq!(e.reason, R::TooManyReadings);
}

#[test]
fn empty_batch() {
    whole(r#"{"v":1,"readings":[]}"#, R::EmptyBatch);
    whole(r#"{ "readings" : [ ] , "v" : 1 }"#, R::EmptyBatch);
}

#[test]
fn duplicate_envelope_keys_are_malformed() {
    // RFC 8259 §4: parsers disagree on which copy of a duplicate name wins, so the message is refused.
    whole(
        &format!(r#"{{"v":1,"v":1,"readings":[{}]}}"#, reading(CHANGE)),
        R::MalformedJson,
    );
    let r = reading(CHANGE);
    whole(
        &format!(r#"{{"v":1,"readings":[{r}],"readings":[{r}]}}"#),
        R::MalformedJson,
    );
    // Inside a reading, the reading alone is refused.
    single(
        r#"{"device":"d1","device":"d2","site":"s1","district":"central","boot":1,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::MalformedJson,
    );
}

#[test]
fn missing_field_whole() {
    whole(r#"{"v":1}"#, R::MissingField);
    whole(
        &format!(r#"{{"readings":[{}]}}"#, reading(CHANGE)),
        R::MissingField,
    );
    whole("{}", R::MissingField);
}

#[test]
fn wrong_type_whole() {
    whole(
        &format!(r#"{{"v":"1","readings":[{}]}}"#, reading(CHANGE)),
        R::WrongType,
    );
    whole(r#"{"v":1,"readings":{}}"#, R::WrongType);
    whole(r#"{"v":1,"readings":null}"#, R::WrongType);
    whole(r#"{"v":1,"readings":"d1"}"#, R::WrongType);
    whole(
        &format!(r#"{{"v":null,"readings":[{}]}}"#, reading(CHANGE)),
        R::WrongType,
    );
}

#[test]
fn unknown_field_whole() {
    let e = whole(
        &format!(
            r#"{{"v":1,"readings":[{}],"gateway":"gw1"}}"#,
            reading(CHANGE)
        ),
        R::UnknownField,
    );
    assert!(e.detail.contains("gateway"), "{}", e.detail);
}

#[test]
fn unsupported_version() {
    for v in ["0", "2", "255", "256", "300", "-1", "1.5"] {
        let e = whole(
            &format!(r#"{{"v":{v},"readings":[{}]}}"#, reading(CHANGE)),
            R::UnsupportedVersion,
        );
        assert_eq!(e.index, None);
    }
    // A future version with another shape is still an unsupported version, not an unknown field.
    whole(r#"{"v":2,"items":[{"id":"d1"}]}"#, R::UnsupportedVersion);
    whole(r#"{"items":[],"v":2}"#, R::UnsupportedVersion);
}

#[test]
fn non_finite_bare_tokens_refuse_the_message() {
    for token in ["NaN", "Infinity", "-Infinity"] {
        let r = reading(&format!(
            r#"{{"type":"parking_change","occupied":true,"field_ut":{token}}}"#
        ));
        whole(&message(&[r]), R::NonFinite);
    }
    // At top level too.
    whole("NaN", R::NonFinite);
    whole("Infinity", R::NonFinite);
    whole("-Infinity", R::NonFinite);
    // The same letters inside a string are fine.
    let ok = reading_with("NaN-Infinity", "1764000000000", CHANGE);
    assert_eq!(
        decode(&message(&[ok])).unwrap().readings[0].device.as_str(),
        "NaN-Infinity"
    );
}

#[test]
fn non_finite_overflow_refuses_the_reading() {
    // 1e999 overflows f64 (and f32): serde_json reports "number out of range".
    single(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":1e999}"#),
        R::NonFinite,
    );
    single(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":-1e999}"#),
        R::NonFinite,
    );
    let summary = r#"{"type":"grid_summary","interval_s":60,"v_rms_v":230,"v_min_v":229,"v_max_v":231,"i_rms_a":5,"p_kw":1,"q_kvar":0.1,"pf":0.99,"freq_hz":50,"energy_kwh":1e999}"#;
    single(&reading(summary), R::NonFinite);
    // 1e39 fits f64 but overflows f32 to +inf: caught by validation, naming the field.
    single_field(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":1e39}"#),
        R::NonFinite,
        "data.field_ut",
    );
    // The validator itself: NaN in any float.
    let m = telemetry::Measurement::ParkingHeartbeat(telemetry::ParkingHeartbeat {
        occupied: false,
        battery_pct: f32::NAN,
        field_ut: 1.0,
        transitions: 0,
        dropped: 0,
    });
    let e = validate::check_measurement(&m).unwrap_err();
    assert_eq!((e.reason, e.field), (R::NonFinite, "data.battery_pct"));
}

// ---------------------------------------------------------------- per-reading refusals

#[test]
fn missing_field_reading() {
    for field in ["device", "site", "district", "boot", "seq", "ts_ms", "data"] {
        let full: serde_json::Value = serde_json::from_str(&reading(CHANGE)).unwrap();
        let mut obj = full.as_object().unwrap().clone();
        obj.remove(field);
        let e = single(&serde_json::Value::Object(obj).to_string(), R::MissingField);
        assert!(
            e.detail.contains(&format!("`{field}`")),
            "{field}: {}",
            e.detail
        );
    }
    let e = single(
        &reading(r#"{"occupied":true,"field_ut":1}"#),
        R::MissingField,
    );
    assert!(e.detail.contains("`type`"), "{}", e.detail);
    let e = single(
        &reading(r#"{"type":"parking_change","field_ut":1}"#),
        R::MissingField,
    );
    assert!(e.detail.contains("`occupied`"), "{}", e.detail);
}

#[test]
fn wrong_type_reading() {
    single(
        r#"{"device":"d1","site":"s1","district":"central","boot":1,"seq":"0","ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::WrongType,
    );
    single(
        r#"{"device":"d1","site":"s1","district":"central","boot":1.5,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::WrongType,
    );
    single(
        r#"{"device":7,"site":"s1","district":"central","boot":1,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::WrongType,
    );
    single(
        &reading_with("d1", "\"1764000000000\"", CHANGE),
        R::WrongType,
    );
    single(
        &reading(r#"{"type":"parking_change","occupied":"yes","field_ut":1}"#),
        R::WrongType,
    );
    single(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":null}"#),
        R::WrongType,
    );
    single(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":"48.5"}"#),
        R::WrongType,
    );
    single(&reading("[1,2]"), R::WrongType);
    single(&reading("null"), R::WrongType);
    single("[]", R::WrongType);
    single("17", R::WrongType);
    single(r#""d1""#, R::WrongType);
}

#[test]
fn unknown_field_reading() {
    let e = single(
        r#"{"device":"d1","site":"s1","district":"central","boot":1,"seq":0,"ts_ms":1764000000000,"colour":"red","data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::UnknownField,
    );
    assert!(e.detail.contains("colour"), "{}", e.detail);
    let e = single(
        &reading(r#"{"type":"parking_change","occupied":true,"field_ut":1,"colour":"red"}"#),
        R::UnknownField,
    );
    assert!(e.detail.contains("colour"), "{}", e.detail);
}

#[test]
fn unknown_type() {
    let e = single(
        &reading(r#"{"type":"water_meter","litres":3}"#),
        R::UnknownType,
    );
    assert!(e.detail.contains("water_meter"), "{}", e.detail);
    single(
        &reading(r#"{"type":"Parking_Change","occupied":true,"field_ut":1}"#),
        R::UnknownType,
    );
}

#[test]
fn other_unknown_enum_values_are_out_of_range_not_unknown_type() {
    // `unknown_type` is reserved for the measurement `type`; an unknown value of another enum field
    // (event kind, time source) is a value outside its domain.
    single(
        &reading(r#"{"type":"grid_event","event":"flicker","duration_ms":100,"extreme_v":100}"#),
        R::OutOfRange,
    );
    single(
        r#"{"device":"d1","site":"s1","district":"central","boot":1,"seq":0,"ts_ms":1764000000000,"time_source":"satellite","data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::OutOfRange,
    );
}

fn summary_with(field: &str, value: &str) -> String {
    let mut fields = vec![
        ("interval_s", "60"),
        ("v_rms_v", "230"),
        ("v_min_v", "229"),
        ("v_max_v", "231"),
        ("i_rms_a", "5"),
        ("p_kw", "1.2"),
        ("q_kvar", "0.1"),
        ("pf", "0.99"),
        ("freq_hz", "50"),
        ("energy_kwh", "12345.6"),
    ];
    for f in &mut fields {
        if f.0 == field {
            f.1 = value;
        }
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!(r#""{k}":{v}"#))
        .collect();
    reading(&format!(r#"{{"type":"grid_summary",{}}}"#, body.join(",")))
}

#[test]
fn out_of_range_each_physical_field() {
    // Parking change: field_ut 0..=1600 µT.
    let change = |v: &str| {
        reading(&format!(
            r#"{{"type":"parking_change","occupied":true,"field_ut":{v}}}"#
        ))
    };
    assert_eq!(
        decode(&message(&[change("0"), change("1600")]))
            .unwrap()
            .readings
            .len(),
        2
    );
    single_field(&change("-0.5"), R::OutOfRange, "data.field_ut");
    single_field(&change("1600.5"), R::OutOfRange, "data.field_ut");

    // Heartbeat: battery_pct 0..=100, field_ut 0..=1600.
    let hb = |b: &str, f: &str| {
        reading(&format!(
            r#"{{"type":"parking_heartbeat","occupied":false,"battery_pct":{b},"field_ut":{f},"transitions":3,"dropped":0}}"#
        ))
    };
    assert_eq!(
        decode(&message(&[hb("100", "0"), hb("0", "1600")]))
            .unwrap()
            .readings
            .len(),
        2
    );
    single_field(&hb("100.5", "1"), R::OutOfRange, "data.battery_pct");
    single_field(&hb("-1", "1"), R::OutOfRange, "data.battery_pct");
    single_field(&hb("50", "1601"), R::OutOfRange, "data.field_ut");

    // Grid summary.
    assert_eq!(
        decode(&message(&[summary_with("pf", "-1")]))
            .unwrap()
            .readings
            .len(),
        1
    );
    for (field, value) in [
        ("interval_s", "0"),
        ("interval_s", "86401"),
        ("v_rms_v", "1000.5"),
        ("v_min_v", "-1"),
        ("v_max_v", "1001"),
        ("i_rms_a", "10000.5"),
        ("i_rms_a", "-0.1"),
        ("p_kw", "-10001"),
        ("p_kw", "10001"),
        ("q_kvar", "10001"),
        ("q_kvar", "-10001"),
        ("pf", "1.01"),
        ("pf", "-1.01"),
        ("freq_hz", "39.9"),
        ("freq_hz", "70.1"),
        ("energy_kwh", "-0.001"),
        ("energy_kwh", "2e12"),
    ] {
        single_field(
            &summary_with(field, value),
            R::OutOfRange,
            &format!("data.{field}"),
        );
    }
    // min <= mean <= max, reported on the mean.
    single_field(
        &summary_with("v_min_v", "230.5"),
        R::OutOfRange,
        "data.v_rms_v",
    );
    single_field(
        &summary_with("v_max_v", "229.5"),
        R::OutOfRange,
        "data.v_rms_v",
    );

    // Grid event: extreme_v 0..=1000, duration_ms > 0.
    let ev = |d: &str, x: &str| {
        reading(&format!(
            r#"{{"type":"grid_event","event":"sag","duration_ms":{d},"extreme_v":{x}}}"#
        ))
    };
    assert_eq!(
        decode(&message(&[ev("1", "0"), ev("4294967295", "1000")]))
            .unwrap()
            .readings
            .len(),
        2
    );
    single_field(&ev("0", "180"), R::OutOfRange, "data.duration_ms");
    single_field(&ev("100", "1000.5"), R::OutOfRange, "data.extreme_v");
    single_field(&ev("100", "-3"), R::OutOfRange, "data.extreme_v");

    // Integers outside their type (serde "invalid value").
    single(&ev("4294967296", "180"), R::OutOfRange);
    single(
        r#"{"device":"d1","site":"s1","district":"central","boot":-1,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::OutOfRange,
    );
    single(
        r#"{"device":"d1","site":"s1","district":"central","boot":1,"seq":4294967296,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::OutOfRange,
    );
}

#[test]
fn empty_value() {
    single(&reading_with("", "1764000000000", CHANGE), R::EmptyValue);
    single(
        r#"{"device":"d1","site":"","district":"central","boot":1,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::EmptyValue,
    );
    single(
        r#"{"device":"d1","site":"s1","district":"","boot":1,"seq":0,"ts_ms":1764000000000,"data":{"type":"parking_change","occupied":true,"field_ut":1}}"#,
        R::EmptyValue,
    );
}

#[test]
fn bad_identifier() {
    for id in [
        "a/b",
        "a+b",
        "lot#1",
        "a b",
        "tab\\there",
        "nl\\n",
        "\\u0001x",
        "a\\u00a0b",
    ] {
        single(&reading_with(id, "1764000000000", CHANGE), R::BadIdentifier);
    }
    // 64 bytes is the longest identifier; 65 (and far more) are refused.
    let ok = "x".repeat(64);
    assert_eq!(
        decode(&message(&[reading_with(&ok, "1764000000000", CHANGE)]))
            .unwrap()
            .readings
            .len(),
        1
    );
    single(
        &reading_with(&"x".repeat(65), "1764000000000", CHANGE),
        R::BadIdentifier,
    );
    single(
        &reading_with(&"x".repeat(500), "1764000000000", CHANGE),
        R::BadIdentifier,
    );
    // 22 three-byte characters = 66 bytes although only 22 characters.
    single(
        &reading_with(&"停".repeat(22), "1764000000000", CHANGE),
        R::BadIdentifier,
    );
    assert_eq!(
        decode(&message(&[reading_with(
            "停车位-12",
            "1764000000000",
            CHANGE
        )]))
        .unwrap()
        .readings[0]
            .device
            .as_str(),
        "停车位-12"
    );
}

#[test]
fn trailing_backslash() {
    // JSON text `"ab\\"` is the identifier `ab\`.
    single(
        &reading_with("ab\\\\", "1764000000000", CHANGE),
        R::TrailingBackslash,
    );
    // A backslash inside is allowed.
    let d = decode(&message(&[reading_with("a\\\\b", "1764000000000", CHANGE)])).unwrap();
    assert_eq!(d.readings[0].device.as_str(), "a\\b");
}

#[test]
fn timestamp_units_and_bounds() {
    let ts = |t: &str| reading_with("d1", t, CHANGE);
    // Seconds where ms are due (2025-11-24 in s).
    single_field(&ts("1764000000"), R::TsSeconds, "ts_ms");
    // Microseconds and nanoseconds.
    single_field(&ts("1764000000000000"), R::TsMicroseconds, "ts_ms");
    single_field(&ts("1764000000000000000"), R::TsNanoseconds, "ts_ms");
    // Before 2000-01-01T00:00:00Z = 946,684,800,000 ms.
    single_field(&ts("946684799999"), R::TsBefore2000, "ts_ms");
    single_field(&ts("0"), R::TsBefore2000, "ts_ms");
    single_field(&ts("-1"), R::TsBefore2000, "ts_ms");
    assert_eq!(
        decode(&message(&[ts("946684800000")]))
            .unwrap()
            .readings
            .len(),
        1
    );
    // Seconds before 2000 are simply before 2000.
    single_field(&ts("946684799"), R::TsBefore2000, "ts_ms");
    // Future beyond the default 5-minute skew.
    assert_eq!(
        decode(&message(&[ts("1764000300000")]))
            .unwrap()
            .readings
            .len(),
        1
    );
    single_field(&ts("1764000300001"), R::TsFuture, "ts_ms");
    // Boundaries of the unit classes, checked on the pure function.
    let l = Limits::default();
    let far = i64::MAX / 2;
    assert_eq!(check_timestamp(4_102_444_799, far, &l), Err(R::TsSeconds));
    assert_eq!(check_timestamp(99_999_999_999_999, far, &l), Ok(()));
    assert_eq!(
        check_timestamp(100_000_000_000_000, far, &l),
        Err(R::TsMicroseconds)
    );
    assert_eq!(
        check_timestamp(99_999_999_999_999_999, far, &l),
        Err(R::TsMicroseconds)
    );
    assert_eq!(
        check_timestamp(100_000_000_000_000_000, far, &l),
        Err(R::TsNanoseconds)
    );
    assert_eq!(
        check_timestamp(i64::MAX, i64::MAX, &l),
        Err(R::TsNanoseconds)
    );
    assert_eq!(check_timestamp(i64::MIN, NOW, &l), Err(R::TsBefore2000));
}

#[test]
fn ts_future_skew_is_configurable() {
    let strict = Limits {
        max_future_skew_ms: 0,
        ..Limits::default()
    };
    let at = message(&[reading_with("d1", "1764000000000", CHANGE)]);
    assert_eq!(
        json::decode(at.as_bytes(), &strict, NOW)
            .unwrap()
            .readings
            .len(),
        1
    );
    let ahead = message(&[reading_with("d1", "1764000000001", CHANGE)]);
    let d = json::decode(ahead.as_bytes(), &strict, NOW).unwrap();
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(
        (d.rejected[0].reason, d.rejected[0].detail.as_str()),
        (R::TsFuture, "ts_ms")
    );
    let loose = Limits {
        max_future_skew_ms: 3_600_000,
        ..Limits::default()
    };
    let hour = message(&[reading_with("d1", "1764003600000", CHANGE)]);
    assert_eq!(
        json::decode(hour.as_bytes(), &loose, NOW)
            .unwrap()
            .readings
            .len(),
        1
    );
    let hour1 = message(&[reading_with("d1", "1764003600001", CHANGE)]);
    assert_eq!(
        json::decode(hour1.as_bytes(), &loose, NOW)
            .unwrap()
            .rejected[0]
            .reason,
        R::TsFuture
    );
    // The skew addition saturates: a receiver clock near i64::MAX does not overflow.
    assert_eq!(check_timestamp(NOW, i64::MAX, &Limits::default()), Ok(()));
}

#[test]
fn a_bad_reading_keeps_the_good_ones() {
    let good = |seq: u32| {
        format!(
            r#"{{"device":"d1","site":"s1","district":"central","boot":1,"seq":{seq},"ts_ms":1764000000000,"data":{CHANGE}}}"#
        )
    };
    let msg = message(&[
        good(0),
        reading_with("", "1764000000000", CHANGE), // 1: empty_value
        good(2),
        reading(r#"{"type":"parking_change","occupied":true,"field_ut":-1}"#), // 3: out_of_range
        reading(r#"{"type":"tram","x":1}"#),                                   // 4: unknown_type
        good(5),
        reading_with("d1", "1764000000", CHANGE), // 6: ts_seconds
        "{}".to_string(),                         // 7: missing_field
        "3".to_string(),                          // 8: wrong_type
    ]);
    let d = decode(&msg).unwrap();
    let seqs: Vec<u32> = d.readings.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![0, 2, 5]);
    let got: Vec<(Option<usize>, R)> = d.rejected.iter().map(|r| (r.index, r.reason)).collect();
    assert_eq!(
        got,
        vec![
            (Some(1), R::EmptyValue),
            (Some(3), R::OutOfRange),
            (Some(4), R::UnknownType),
            (Some(6), R::TsSeconds),
            (Some(7), R::MissingField),
            (Some(8), R::WrongType),
        ]
    );
    assert_eq!(d.readings.len() + d.rejected.len(), 9);
}

// ---------------------------------------------------------------- topics

fn parsed_reading(district: &str, device: &str, data: &str) -> telemetry::Reading {
    let s = format!(
        r#"{{"device":"{device}","site":"s1","district":"{district}","boot":1,"seq":0,"ts_ms":1764000000000,"data":{data}}}"#
    );
    json::decode_reading(&s, &Limits::default(), NOW).unwrap()
}

#[test]
fn topic_mismatch() {
    let r = parsed_reading("central", "d1", CHANGE);
    let ok = |t: &str| topic::check_reading_topic(&r, &topic::parse(t).unwrap());
    assert_eq!(ok("citybrain/v1/central/parking/d1/events"), Ok(()));
    assert_eq!(ok("citybrain/v1/central/parking/d1/telemetry"), Ok(()));
    assert_eq!(ok("citybrain/v1/gateway/gw1/batch"), Ok(()));
    assert_eq!(
        ok("citybrain/v1/north/parking/d1/events"),
        Err(R::TopicMismatch)
    );
    assert_eq!(
        ok("citybrain/v1/central/grid/d1/events"),
        Err(R::TopicMismatch)
    );
    assert_eq!(
        ok("citybrain/v1/central/parking/d2/events"),
        Err(R::TopicMismatch)
    );
    // A topic that carries no readings.
    assert_eq!(
        ok("citybrain/v1/central/parking/d1/status"),
        Err(R::BadTopic)
    );
    assert_eq!(ok("citybrain/v1/central/parking/d1/cmd"), Err(R::BadTopic));
    assert_eq!(ok("citybrain/v1/gateway/gw1/status"), Err(R::BadTopic));
    assert_eq!(
        ok("citybrain/v1/central/alert/s1/lot_full"),
        Err(R::BadTopic)
    );
}

#[test]
fn bad_topic() {
    for t in [
        "",
        "/",
        "citybrain",
        "citybrain/v1",
        "citybrain/v1/",
        "citybrain/v2/central/parking/d1/telemetry",
        "CityBrain/v1/central/parking/d1/telemetry",
        "/citybrain/v1/central/parking/d1/telemetry",
        "citybrain/v1/central/parking/d1/telemetry/",
        "citybrain/v1/central/parking/d1/telemetry/extra",
        "citybrain/v1/central/water/d1/telemetry",
        "citybrain/v1/central/Parking/d1/telemetry",
        "citybrain/v1/central/parking/d1/metrics",
        "citybrain/v1/central/parking/d1",
        "citybrain/v1/central/parking//telemetry",
        "citybrain/v1//parking/d1/telemetry",
        "citybrain/v1/central/parking/+/telemetry",
        "citybrain/v1/+/parking/d1/telemetry",
        "citybrain/v1/central/parking/#",
        "citybrain/v1/central/parking/d 1/telemetry",
        "citybrain/v1/central/parking/d1\\/telemetry",
        "citybrain/v1/gateway/gw1/other",
        "citybrain/v1/gateway/gw1",
        "citybrain/v1/gateway/parking/d1/telemetry",
        "citybrain/v1/central/agg/grid/house/f1/1m",
        "citybrain/v1/central/agg/water/feeder/f1/1m",
        "citybrain/v1/central/agg/grid/feeder/f1",
        "citybrain/v1/central/alert/s1",
        "citybrain/v1/central/alert/s1/lot_full/x",
    ] {
        assert_eq!(topic::parse(t), Err(R::BadTopic), "{t:?}");
    }
    let long = format!("citybrain/v1/central/parking/{}/telemetry", "x".repeat(65));
    assert_eq!(topic::parse(&long), Err(R::BadTopic));
}

// ---------------------------------------------------------------- frames

/// CRC-16/IBM-3740 (poly 0x1021, init 0xFFFF, no reflection, no xor-out), bit by bit, written from the
/// catalogue definition independently of the `crc` crate.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Appends the little-endian CRC to a hand-built frame body.
fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let c = crc16(&bytes);
    bytes.extend_from_slice(&c.to_le_bytes());
    bytes
}

/// A parking-change frame by hand: version 1 / type 1, addr 0x0102, boot 3, seq 42, age 5 ds, occupied,
/// 57.3 µT = 573 = 0x023D.
fn hand_frame() -> Vec<u8> {
    with_crc(vec![
        0x11, 0x02, 0x01, 0x03, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x3D, 0x02,
    ])
}

#[test]
fn crc_reference_check_value() {
    assert_eq!(crc16(b"123456789"), 0x29B1);
}

#[test]
fn the_hand_built_frame_parses() {
    let f = frame::parse(&hand_frame()).unwrap();
    assert_eq!((f.addr, f.boot, f.seq, f.age_ds), (0x0102, 3, 42, 5));
    assert_eq!(
        f.data,
        telemetry::Measurement::ParkingChange(telemetry::ParkingChange {
            occupied: true,
            field_ut: 57.3
        })
    );
}

#[test]
fn bad_crc() {
    let good = hand_frame();
    // Any single flipped bit in header, body or CRC.
    for byte in 1..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[byte] ^= 1 << bit;
            let e = frame::parse(&bad).unwrap_err();
            assert_eq!(
                e,
                FrameError::Invalid(InvalidFrame::BadCrc),
                "byte {byte} bit {bit}"
            );
            assert_eq!(e.reason(), R::BadCrc);
            assert_eq!(
                frame::check(&bad),
                Err(FrameError::Invalid(InvalidFrame::BadCrc))
            );
        }
    }
    // CRC written big-endian instead of little-endian.
    let mut be = good.clone();
    let n = be.len();
    be.swap(n - 2, n - 1);
    assert_eq!(frame::parse(&be).unwrap_err().reason(), R::BadCrc);
}

#[test]
fn bad_frame() {
    let good = hand_frame();
    let reason = |b: &[u8]| frame::parse(b).unwrap_err();
    // Version nibble 2, 0, F.
    for b0 in [0x21u8, 0x01, 0xF1] {
        let mut v = good[..14].to_vec();
        v[0] = b0;
        let e = reason(&with_crc(v));
        assert_eq!(e, FrameError::Invalid(InvalidFrame::BadVersion), "{b0:#x}");
        assert_eq!(e.reason(), R::BadFrame);
    }
    // Type nibble 0, 5, F.
    for b0 in [0x10u8, 0x15, 0x1F] {
        let mut v = good[..14].to_vec();
        v[0] = b0;
        let e = reason(&with_crc(v));
        assert_eq!(e, FrameError::Invalid(InvalidFrame::BadType), "{b0:#x}");
        assert_eq!(e.reason(), R::BadFrame);
    }
    // A trailing byte after a whole frame (radio packet must be exactly one frame).
    let mut long = good.clone();
    long.push(0);
    let e = reason(&long);
    assert_eq!(
        (e, e.reason()),
        (FrameError::Invalid(InvalidFrame::TooLong), R::BadFrame)
    );
    // Truncated: incomplete, which a packet reader counts as bad_frame.
    let e = reason(&good[..15]);
    assert_eq!(
        (e, e.reason()),
        (FrameError::Incomplete { needed: 16 }, R::BadFrame)
    );
    let e = reason(&[]);
    assert_eq!(
        (e, e.reason()),
        (FrameError::Incomplete { needed: 13 }, R::BadFrame)
    );
    // Grid event with kind 3 (only 0 sag, 1 swell, 2 interruption exist), CRC correct.
    let ev = with_crc(vec![
        0x14, 0x07, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0xFF,
        0xFF, // header, age unknown
        0x03, 0x64, 0x00, 0x00, 0x00, 0x50, 0x46, // kind 3, 100 ms, 180.00 V = 18000 = 0x4650
    ]);
    let e = reason(&ev);
    assert_eq!(
        (e, e.reason()),
        (FrameError::Invalid(InvalidFrame::BadValue), R::BadFrame)
    );
    // Same frame with kind 0 parses (so only the kind was wrong).
    let mut sag = ev[..18].to_vec();
    sag[11] = 0x00;
    let f = frame::parse(&with_crc(sag)).unwrap();
    assert_eq!(
        f.data,
        telemetry::Measurement::GridEvent(telemetry::GridEvent {
            event: telemetry::PqEventKind::Sag,
            duration_ms: 100,
            extreme_v: 180.0
        })
    );
    // Malformed COBS: a code byte pointing past the end, and a zero inside the packet.
    let mut out = [0u8; frame::MAX_FRAME_LEN];
    for packet in [&[0x05u8, 0x11, 0x02][..], &[0x03, 0x11, 0x00, 0x02][..]] {
        let e = frame::cobs_decode(packet, &mut out).unwrap_err();
        assert_eq!(
            (e, e.reason()),
            (FrameError::Invalid(InvalidFrame::BadCobs), R::BadFrame),
            "{packet:?}"
        );
    }
}

// ---------------------------------------------------------------- line protocol

fn line_err(p: &Point<'_>) -> (R, String) {
    let mut buf = b"keep\n".to_vec();
    let e = line::write_point(&mut buf, p).unwrap_err();
    assert_eq!(buf, b"keep\n", "nothing written on error");
    (e.reason, e.what)
}

fn point<'a>(
    m: &'a str,
    tags: Vec<(&'a str, &'a str)>,
    fields: Vec<(&'a str, FieldValue<'a>)>,
) -> Point<'a> {
    Point {
        measurement: m,
        tags,
        fields,
        ts_ns: None,
    }
}

#[test]
fn line_protocol_refusals() {
    let f = || vec![("x", FieldValue::F64(1.0))];
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            line_err(&point("m", vec![], vec![("x", FieldValue::F64(x))])).0,
            R::NonFinite
        );
    }
    assert_eq!(line_err(&point("", vec![], f())).0, R::EmptyValue);
    assert_eq!(line_err(&point("m", vec![("", "v")], f())).0, R::EmptyValue);
    assert_eq!(line_err(&point("m", vec![("k", "")], f())).0, R::EmptyValue);
    assert_eq!(line_err(&point("m", vec![], vec![])).0, R::EmptyValue);
    assert_eq!(
        line_err(&point("m", vec![], vec![("", FieldValue::I64(1))])).0,
        R::EmptyValue
    );
    assert_eq!(
        line_err(&point("m", vec![("k", "v\\")], f())).0,
        R::TrailingBackslash
    );
    assert_eq!(
        line_err(&point("m", vec![("k\\", "v")], f())).0,
        R::TrailingBackslash
    );
    assert_eq!(line_err(&point("m\\", vec![], f())).0, R::TrailingBackslash);
    assert_eq!(
        line_err(&point("m", vec![("k", "a\nb")], f())).0,
        R::BadIdentifier
    );
    assert_eq!(line_err(&point("m\r", vec![], f())).0, R::BadIdentifier);
    assert_eq!(line_err(&point("#m", vec![], f())).0, R::BadIdentifier);
}

// ---------------------------------------------------------------- documentation

#[test]
fn every_reason_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    for r in R::ALL {
        assert!(
            doc.contains(&format!("`{}`", r.as_str())),
            "{} missing from docs/PROTOCOL.md",
            r.as_str()
        );
    }
}
