//! `docs/telemetry.schema.json` against `docs/PROTOCOL.md` and the decoder: every block marked
//! `<!-- payload example -->` validates and decodes with nothing refused; every block marked
//! `<!-- invalid payload example: REASON -->` fails both (the decoder with exactly REASON); and on a
//! hand-written corpus the schema and the decoder agree.
#![cfg(feature = "std")]

use serde_json::Value;
use telemetry::json;
use telemetry::{Limits, RejectReason};

const NOW: i64 = 1_764_000_000_000;

fn root(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&root("docs/telemetry.schema.json")).unwrap();
    assert!(
        jsonschema::meta::is_valid(&schema),
        "schema does not validate against its meta-schema"
    );
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::validator_for(&schema).unwrap()
}

/// `(marker comment text, json block)` for every ```json block directly after an HTML comment.
fn marked_blocks(doc: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(marker) = l.strip_prefix("<!--").and_then(|m| m.strip_suffix("-->")) {
            assert_eq!(
                lines.get(i + 1).map(|s| s.trim()),
                Some("```json"),
                "marker {l:?} not followed by ```json"
            );
            let mut body = String::new();
            let mut j = i + 2;
            while lines[j].trim() != "```" {
                body.push_str(lines[j]);
                body.push('\n');
                j += 1;
            }
            out.push((marker.trim().to_string(), body));
            i = j;
        }
        i += 1;
    }
    out
}

/// The decoder's verdict: `None` when every reading is accepted, else the one reason (whole message,
/// or shared by every refused reading).
fn decoder_verdict(text: &str) -> Option<RejectReason> {
    match json::decode(text.as_bytes(), &Limits::default(), NOW) {
        Err(e) => Some(e.reason),
        Ok(d) if d.rejected.is_empty() => None,
        Ok(d) => {
            let r = d.rejected[0].reason;
            assert!(
                d.rejected.iter().all(|x| x.reason == r),
                "{text}: mixed reasons {:?}",
                d.rejected
            );
            Some(r)
        }
    }
}

#[test]
fn protocol_examples_validate_and_decode() {
    let v = validator();
    let blocks = marked_blocks(&root("docs/PROTOCOL.md"));
    let mut valid = 0;
    let mut invalid = 0;
    for (marker, body) in &blocks {
        if marker == "payload example" {
            let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{body}: {errors:?}");
            let d = json::decode(body.as_bytes(), &Limits::default(), NOW)
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(d.rejected.is_empty(), "{body}: {:?}", d.rejected);
            assert_eq!(
                d.readings.len(),
                value["readings"].as_array().unwrap().len()
            );
            valid += 1;
        } else if let Some(reason) = marker.strip_prefix("invalid payload example:") {
            let reason = RejectReason::from_name(reason.trim())
                .unwrap_or_else(|| panic!("unknown reason in {marker:?}"));
            let value: Value = serde_json::from_str(body).unwrap();
            assert!(!v.is_valid(&value), "schema accepts invalid example {body}");
            assert_eq!(decoder_verdict(body), Some(reason), "{body}");
            invalid += 1;
        } else {
            panic!("unknown marker {marker:?}");
        }
    }
    assert!(
        valid >= 2 && invalid >= 4,
        "found {valid} valid and {invalid} invalid examples"
    );
}

const CHANGE: &str = r#"{"type":"parking_change","occupied":true,"field_ut":48.5}"#;

fn msg_with(device: &str, ts: &str, data: &str) -> String {
    format!(
        r#"{{"v":1,"readings":[{{"device":{device},"site":"s1","district":"central","boot":1,"seq":0,"ts_ms":{ts},"data":{data}}}]}}"#
    )
}

fn summary(field: &str, value: &str) -> String {
    let base = [
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
    let body: Vec<String> = base
        .iter()
        .map(|(k, v)| format!(r#""{k}":{}"#, if *k == field { value } else { v }))
        .collect();
    msg_with(
        r#""d1""#,
        "1764000000000",
        &format!(r#"{{"type":"grid_summary",{}}}"#, body.join(",")),
    )
}

#[test]
fn schema_and_decoder_agree() {
    use RejectReason as R;
    let v = validator();
    let change = |d: &str| msg_with(d, "1764000000000", CHANGE);
    let ts = |t: &str| msg_with(r#""d1""#, t, CHANGE);
    let data = |d: &str| msg_with(r#""d1""#, "1764000000000", d);
    let cases: Vec<(String, Option<RejectReason>)> = vec![
        (change(r#""d1""#), None),
        (change(r#""停车位-12""#), None),
        (change(r#""a\\b""#), None),
        (change(&format!(r#""{}""#, "x".repeat(64))), None),
        (change(r#""""#), Some(R::EmptyValue)),
        (change(r#""a/b""#), Some(R::BadIdentifier)),
        (change(r#""a+b""#), Some(R::BadIdentifier)),
        (change(r##""a#b""##), Some(R::BadIdentifier)),
        (change(r#""a b""#), Some(R::BadIdentifier)),
        (change(r#""a\tb""#), Some(R::BadIdentifier)),
        (change(r#""a\u0000b""#), Some(R::BadIdentifier)),
        (change(r#""a\u2003b""#), Some(R::BadIdentifier)),
        (
            change(&format!(r#""{}""#, "x".repeat(65))),
            Some(R::BadIdentifier),
        ),
        (change(r#""ab\\""#), Some(R::TrailingBackslash)),
        (change("7"), Some(R::WrongType)),
        (ts("946684800000"), None),
        (ts("99999999999999"), Some(R::TsFuture)), // valid to the schema; see the exception below
        (ts("946684799999"), Some(R::TsBefore2000)),
        (ts("1764000000"), Some(R::TsSeconds)),
        (ts("1764000000000000"), Some(R::TsMicroseconds)),
        (ts("1764000000000000000"), Some(R::TsNanoseconds)),
        (ts(r#""1764000000000""#), Some(R::WrongType)),
        (
            data(r#"{"type":"parking_change","occupied":true,"field_ut":1600}"#),
            None,
        ),
        (
            data(r#"{"type":"parking_change","occupied":true,"field_ut":1600.5}"#),
            Some(R::OutOfRange),
        ),
        (
            data(r#"{"type":"parking_change","occupied":true,"field_ut":-1}"#),
            Some(R::OutOfRange),
        ),
        (
            data(r#"{"type":"parking_change","occupied":1,"field_ut":1}"#),
            Some(R::WrongType),
        ),
        (
            data(r#"{"type":"parking_change","occupied":true}"#),
            Some(R::MissingField),
        ),
        (
            data(r#"{"occupied":true,"field_ut":1}"#),
            Some(R::MissingField),
        ),
        (
            data(r#"{"type":"parking_change","occupied":true,"field_ut":1,"x":1}"#),
            Some(R::UnknownField),
        ),
        (
            data(r#"{"type":"water_meter","litres":1}"#),
            Some(R::UnknownType),
        ),
        (
            data(
                r#"{"type":"parking_heartbeat","occupied":false,"battery_pct":100,"field_ut":0,"transitions":0,"dropped":4294967295}"#,
            ),
            None,
        ),
        (
            data(
                r#"{"type":"parking_heartbeat","occupied":false,"battery_pct":100.5,"field_ut":0,"transitions":0,"dropped":0}"#,
            ),
            Some(R::OutOfRange),
        ),
        (
            data(
                r#"{"type":"parking_heartbeat","occupied":false,"battery_pct":50,"field_ut":0,"transitions":-1,"dropped":0}"#,
            ),
            Some(R::OutOfRange),
        ),
        (
            data(r#"{"type":"grid_event","event":"swell","duration_ms":1,"extreme_v":1000}"#),
            None,
        ),
        (
            data(r#"{"type":"grid_event","event":"swell","duration_ms":0,"extreme_v":260}"#),
            Some(R::OutOfRange),
        ),
        (
            data(r#"{"type":"grid_event","event":"flicker","duration_ms":5,"extreme_v":260}"#),
            Some(R::OutOfRange),
        ),
        (
            data(r#"{"type":"grid_event","event":"sag","duration_ms":5,"extreme_v":1000.5}"#),
            Some(R::OutOfRange),
        ),
        (summary("pf", "-1"), None),
        (summary("interval_s", "0"), Some(R::OutOfRange)),
        (summary("interval_s", "86401"), Some(R::OutOfRange)),
        (summary("v_rms_v", "1000.5"), Some(R::OutOfRange)),
        (summary("v_min_v", "-0.5"), Some(R::OutOfRange)),
        (summary("i_rms_a", "10001"), Some(R::OutOfRange)),
        (summary("p_kw", "-10000.5"), Some(R::OutOfRange)),
        (summary("q_kvar", "10000.5"), Some(R::OutOfRange)),
        (summary("pf", "1.5"), Some(R::OutOfRange)),
        (summary("freq_hz", "39"), Some(R::OutOfRange)),
        (summary("freq_hz", "71"), Some(R::OutOfRange)),
        (summary("energy_kwh", "-1"), Some(R::OutOfRange)),
        (summary("energy_kwh", "1.5e12"), Some(R::OutOfRange)),
        (summary("energy_kwh", "null"), Some(R::WrongType)),
        (r#"{"v":1,"readings":[]}"#.into(), Some(R::EmptyBatch)),
        (
            r#"{"v":2,"readings":[]}"#.into(),
            Some(R::UnsupportedVersion),
        ),
        (r#"{"v":"1","readings":[]}"#.into(), Some(R::WrongType)),
        (r#"{"readings":[]}"#.into(), Some(R::MissingField)),
        (r#"[]"#.into(), Some(R::NotObject)),
        (r#""text""#.into(), Some(R::NotObject)),
        (
            format!(r#"{{"v":1,"readings":[{}]}}"#, vec!["{}"; 1001].join(",")),
            Some(R::TooManyReadings),
        ),
    ];
    for (text, want) in &cases {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(decoder_verdict(text), *want, "decoder on {text}");
        // The schema cannot know the receiver's clock: a far-future ts_ms below 1e14 is valid to it.
        let schema_ok = want.is_none() || *want == Some(R::TsFuture);
        assert_eq!(v.is_valid(&value), schema_ok, "schema on {text}");
    }
}

#[test]
fn encoded_readings_validate() {
    // Whatever `json::encode` writes for accepted readings is valid to the schema.
    let v = validator();
    let doc = root("docs/PROTOCOL.md");
    for (marker, body) in marked_blocks(&doc) {
        if marker != "payload example" {
            continue;
        }
        let d = json::decode(body.as_bytes(), &Limits::default(), NOW).unwrap();
        let out = json::encode(&d.readings);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert!(v.is_valid(&value), "{}", String::from_utf8_lossy(&out));
        assert_eq!(
            json::decode(&out, &Limits::default(), NOW)
                .unwrap()
                .readings,
            d.readings
        );
    }
}
