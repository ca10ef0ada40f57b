//! Line-protocol corpus: points built with `line::write_point`, compared with lines escaped by hand per
//! the line-protocol reference, then parsed back with influxdata's own parser
//! (`influxdb_line_protocol::parse_lines`) and compared value by value.
//!
//! Escaping rules (<https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>):
//! measurement: `,` and space; tag keys, tag values, field keys: `,`, `=` and space; string field values:
//! `"` and `\`. The builder also escapes `\` in names as `\\`, which the parser reads back as `\`.
#![cfg(feature = "std")]

use influxdb_line_protocol::{FieldValue as Parsed, LineProtocolBuilder, parse_lines};
use std::collections::BTreeMap;
use telemetry::line::{self, FieldValue, Point};
use telemetry::message::WindowAggregate;
use telemetry::{
    DeviceId, DeviceKind, DistrictId, GridEvent, GridSummary, Measurement, ParkingChange,
    ParkingHeartbeat, PqEventKind, Reading, RejectReason, SiteId, TimeSource,
};

/// Writes `p`, checks the exact text, parses it back and checks every element.
#[track_caller]
fn round_trip(p: &Point<'_>, expected_line: &str) {
    let mut buf = Vec::new();
    line::write_point(&mut buf, p).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert_eq!(text, format!("{expected_line}\n"));
    let parsed: Vec<_> = parse_lines(&text).collect();
    assert_eq!(parsed.len(), 1, "{text}");
    let l = parsed
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(l.series.measurement.as_str(), p.measurement);
    let tags: Vec<(String, String)> = l
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let want_tags: Vec<(String, String)> = p
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(tags, want_tags, "{text}");
    assert_eq!(l.field_set.len(), p.fields.len(), "{text}");
    for ((k, v), (want_k, want_v)) in l.field_set.iter().zip(&p.fields) {
        assert_eq!(k.as_str(), *want_k, "{text}");
        match (v, want_v) {
            (Parsed::F64(a), FieldValue::F64(b)) => {
                assert_eq!(a.to_bits(), b.to_bits(), "{k}: {text}")
            }
            (Parsed::I64(a), FieldValue::I64(b)) => assert_eq!(a, b),
            (Parsed::U64(a), FieldValue::U64(b)) => assert_eq!(a, b),
            (Parsed::Boolean(a), FieldValue::Bool(b)) => assert_eq!(a, b),
            (Parsed::String(a), FieldValue::Str(b)) => assert_eq!(a.as_str(), *b, "{text}"),
            (a, b) => panic!("{k}: parsed {a:?}, wrote {b:?}"),
        }
    }
    assert_eq!(l.timestamp, p.ts_ns);
}

fn one(x: f64) -> Vec<(&'static str, FieldValue<'static>)> {
    vec![("x", FieldValue::F64(x))]
}

#[test]
fn measurement_names() {
    let p = |m| Point {
        measurement: m,
        tags: vec![],
        fields: one(1.5),
        ts_ns: None,
    };
    round_trip(&p("parking"), "parking x=1.5");
    round_trip(&p("car park"), r"car\ park x=1.5");
    round_trip(&p("a,b"), r"a\,b x=1.5");
    // `=` and `"` need no escape in a measurement.
    round_trip(&p("a=b"), "a=b x=1.5");
    round_trip(&p(r#"say"hi""#), r#"say"hi" x=1.5"#);
    round_trip(&p(r"back\slash"), r"back\\slash x=1.5");
    round_trip(&p("停车位-12"), "停车位-12 x=1.5");
    round_trip(&p("停车 位,12"), r"停车\ 位\,12 x=1.5");
}

#[test]
fn tag_keys_and_values() {
    let p = |k, v| Point {
        measurement: "m",
        tags: vec![(k, v)],
        fields: one(2.0),
        ts_ns: Some(7),
    };
    round_trip(&p("site", "停车位-12"), "m,site=停车位-12 x=2 7");
    round_trip(&p("site", "lot 1"), r"m,site=lot\ 1 x=2 7");
    round_trip(&p("site", "a,b"), r"m,site=a\,b x=2 7");
    round_trip(&p("site", "a=b"), r"m,site=a\=b x=2 7");
    round_trip(&p("site", r#""quoted""#), r#"m,site="quoted" x=2 7"#);
    round_trip(&p("site", r"a\b"), r"m,site=a\\b x=2 7");
    round_trip(&p("site", r"\lead"), r"m,site=\\lead x=2 7");
    round_trip(&p("bay id", "v"), r"m,bay\ id=v x=2 7");
    round_trip(&p("k,=", "v"), r"m,k\,\==v x=2 7");
    round_trip(&p("停车", "位 12,=\"\\x"), r#"m,停车=位\ 12\,\="\\x x=2 7"#);
    // Several tags keep their order.
    let multi = Point {
        measurement: "m",
        tags: vec![("b", "2"), ("a", "1 1")],
        fields: one(2.0),
        ts_ns: None,
    };
    round_trip(&multi, r"m,b=2,a=1\ 1 x=2");
}

#[test]
fn field_keys_and_string_values() {
    let p = |k, v| Point {
        measurement: "m",
        tags: vec![],
        fields: vec![(k, FieldValue::Str(v))],
        ts_ns: None,
    };
    round_trip(&p("note", "plain"), r#"m note="plain""#);
    round_trip(
        &p("note", "with space, comma=equals"),
        r#"m note="with space, comma=equals""#,
    );
    round_trip(&p("note", r#"say "hi""#), r#"m note="say \"hi\"""#);
    round_trip(&p("note", r"back\slash"), r#"m note="back\\slash""#);
    // A trailing backslash is fine inside a quoted string value.
    round_trip(&p("note", r"ends\"), r#"m note="ends\\""#);
    round_trip(&p("note", "停车位-12 满"), r#"m note="停车位-12 满""#);
    round_trip(&p("note", ""), r#"m note="""#);
    round_trip(&p("free spaces", "x"), r#"m free\ spaces="x""#);
    round_trip(&p("a,b=c", "x"), r#"m a\,b\=c="x""#);
    round_trip(&p("停车位", "x"), r#"m 停车位="x""#);
}

#[test]
fn field_types_and_timestamps() {
    let p = Point {
        measurement: "m",
        tags: vec![],
        fields: vec![
            ("f", FieldValue::F64(-0.07)),
            ("big", FieldValue::F64(1.0e21)),
            ("small", FieldValue::F64(1.0e-7)),
            ("i", FieldValue::I64(-5)),
            ("u", FieldValue::U64(u64::MAX)),
            ("t", FieldValue::Bool(true)),
            ("n", FieldValue::Bool(false)),
        ],
        ts_ns: Some(-1),
    };
    round_trip(
        &p,
        "m f=-0.07,big=1000000000000000000000,small=0.0000001,i=-5i,u=18446744073709551615u,t=true,n=false -1",
    );
}

#[test]
fn points_append_line_by_line() {
    let mut buf = b"first x=1\n".to_vec();
    let p = Point {
        measurement: "second",
        tags: vec![],
        fields: one(2.0),
        ts_ns: Some(3),
    };
    line::write_point(&mut buf, &p).unwrap();
    assert_eq!(buf, b"first x=1\nsecond x=2 3\n");
    assert_eq!(
        parse_lines(std::str::from_utf8(&buf).unwrap())
            .filter(|l| l.is_ok())
            .count(),
        2
    );
}

#[track_caller]
fn refused(p: &Point<'_>) -> RejectReason {
    let mut buf = Vec::new();
    let e = line::write_point(&mut buf, p).unwrap_err();
    assert!(buf.is_empty(), "nothing written on error");
    e.reason
}

#[test]
fn non_finite_fields_are_refused() {
    for x in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let p = Point {
            measurement: "m",
            tags: vec![],
            fields: one(x),
            ts_ns: None,
        };
        assert_eq!(refused(&p), RejectReason::NonFinite);
    }
    // What the upstream builder alone would write, and that its own parser does not take it as a float.
    let raw = LineProtocolBuilder::new()
        .measurement("m")
        .field("x", f64::NAN)
        .close_line()
        .build();
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text, "m x=NaN\n");
    let parsed = parse_lines(&text).next().unwrap();
    assert!(!matches!(parsed, Ok(ref l) if matches!(l.field_value("x"), Some(Parsed::F64(_)))));
}

#[test]
fn empty_names_are_refused() {
    let f = || one(1.0);
    let p = |m, tags| Point {
        measurement: m,
        tags,
        fields: f(),
        ts_ns: None,
    };
    assert_eq!(refused(&p("", vec![])), RejectReason::EmptyValue);
    assert_eq!(refused(&p("m", vec![("k", "")])), RejectReason::EmptyValue);
    assert_eq!(refused(&p("m", vec![("", "v")])), RejectReason::EmptyValue);
    let no_fields = Point {
        measurement: "m",
        tags: vec![],
        fields: vec![],
        ts_ns: None,
    };
    assert_eq!(refused(&no_fields), RejectReason::EmptyValue);
    let empty_key = Point {
        measurement: "m",
        tags: vec![],
        fields: vec![("", FieldValue::I64(1))],
        ts_ns: None,
    };
    assert_eq!(refused(&empty_key), RejectReason::EmptyValue);
}

#[test]
fn trailing_backslash_in_tags_is_refused_because_upstream_cannot_read_it_back() {
    let p = Point {
        measurement: "m",
        tags: vec![("k", r"v\")],
        fields: one(1.0),
        ts_ns: None,
    };
    assert_eq!(refused(&p), RejectReason::TrailingBackslash);
    let p = Point {
        measurement: "m",
        tags: vec![(r"k\", "v")],
        fields: one(1.0),
        ts_ns: None,
    };
    assert_eq!(refused(&p), RejectReason::TrailingBackslash);
    // The upstream builder alone writes `v\` as `v\\`, and the upstream parser refuses that line.
    let raw = LineProtocolBuilder::new()
        .measurement("m")
        .tag("k", r"v\")
        .field("x", 1.0)
        .close_line()
        .build();
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text, "m,k=v\\\\ x=1\n");
    let back = parse_lines(&text).next().unwrap();
    assert!(
        back.is_err(),
        "upstream parsed its own trailing-backslash tag: {back:?}"
    );
    assert!(back.unwrap_err().to_string().contains("backslash"));
}

fn reading(data: Measurement) -> Reading {
    Reading {
        device: DeviceId::new("BHMBCCMKT01-b007").unwrap(),
        site: SiteId::new("停车位-12").unwrap(),
        district: DistrictId::new("central").unwrap(),
        boot: 3,
        seq: 42,
        ts_ms: 1_764_000_000_000,
        time_source: TimeSource::Device,
        replayed: false,
        data,
    }
}

fn write(p: &Point<'_>) -> String {
    let mut buf = Vec::new();
    line::write_point(&mut buf, p).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn reading_points() {
    let r = reading(Measurement::ParkingChange(ParkingChange {
        occupied: true,
        field_ut: 57.3,
    }));
    assert_eq!(
        write(&line::reading_point(&r)),
        "parking,device=BHMBCCMKT01-b007,site=停车位-12,district=central,type=parking_change \
         occupied=true,field_ut=57.3,boot=3u,seq=42u,replayed=false 1764000000000000000\n"
    );

    let mut r = reading(Measurement::ParkingHeartbeat(ParkingHeartbeat {
        occupied: false,
        battery_pct: 87.5,
        field_ut: 2.1,
        transitions: 14,
        dropped: 0,
    }));
    r.replayed = true;
    assert_eq!(
        write(&line::reading_point(&r)),
        "parking,device=BHMBCCMKT01-b007,site=停车位-12,district=central,type=parking_heartbeat \
         occupied=false,battery_pct=87.5,field_ut=2.1,transitions=14u,dropped=0u,boot=3u,seq=42u,replayed=true \
         1764000000000000000\n"
    );

    let mut r = reading(Measurement::GridSummary(GridSummary {
        interval_s: 60,
        v_rms_v: 241.25,
        v_min_v: 240.5,
        v_max_v: 242.0,
        i_rms_a: 6.6,
        p_kw: 1.62,
        q_kvar: -0.07,
        pf: 0.9991,
        freq_hz: 50.012,
        energy_kwh: 12_345.678,
    }));
    r.device = DeviceId::new("sceaux-m01").unwrap();
    r.site = SiteId::new("sceaux-f1").unwrap();
    r.district = DistrictId::new("south").unwrap();
    r.ts_ms = 1_764_000_060_000;
    assert_eq!(
        write(&line::reading_point(&r)),
        "grid,device=sceaux-m01,site=sceaux-f1,district=south,type=grid_summary \
         interval_s=60u,v_rms_v=241.25,v_min_v=240.5,v_max_v=242,i_rms_a=6.6,p_kw=1.62,q_kvar=-0.07,\
         pf=0.9991,freq_hz=50.012,energy_kwh=12345.678,boot=3u,seq=42u,replayed=false 1764000060000000000\n"
    );

    let mut r = reading(Measurement::GridEvent(GridEvent {
        event: PqEventKind::Interruption,
        duration_ms: 120,
        extreme_v: 180.4,
    }));
    r.device = DeviceId::new("feeder 3".replace(' ', "-").as_str()).unwrap();
    r.site = SiteId::new("a\\b").unwrap();
    r.time_source = TimeSource::Gateway;
    assert_eq!(
        write(&line::reading_point(&r)),
        "grid,device=feeder-3,site=a\\\\b,district=central,type=grid_event \
         event=\"interruption\",duration_ms=120u,extreme_v=180.4,boot=3u,seq=42u,replayed=false \
         1764000000000000000\n"
    );
}

#[test]
fn aggregate_points() {
    let a = WindowAggregate {
        kind: DeviceKind::Parking,
        scope: "lot".into(),
        id: "停车位-12".into(),
        district: "central".into(),
        start_ms: 1_764_000_000_000,
        window_ms: 900_000,
        version: 2,
        count: 212,
        metrics: BTreeMap::from([
            ("occupancy_mean_ratio".to_string(), 0.79),
            ("arrivals".to_string(), 14.0),
            ("dwell_mean_s".to_string(), 5820.5),
        ]),
    };
    assert_eq!(
        write(&line::aggregate_point(&a, "15m")),
        "parking_agg,scope=lot,id=停车位-12,district=central,window=15m \
         arrivals=14,dwell_mean_s=5820.5,occupancy_mean_ratio=0.79,count=212u,version=2u 1764000000000000000\n"
    );
    let g = WindowAggregate {
        kind: DeviceKind::Grid,
        scope: "feeder".into(),
        id: "sceaux f1".into(),
        district: "south".into(),
        start_ms: 1_764_000_000_000,
        window_ms: 60_000,
        version: 1,
        count: 1,
        metrics: BTreeMap::from([("v_rms_mean_v".to_string(), 231.5)]),
    };
    assert_eq!(
        write(&line::aggregate_point(&g, &g.window_label())),
        "grid_agg,scope=feeder,id=sceaux\\ f1,district=south,window=1m v_rms_mean_v=231.5,count=1u,version=1u \
         1764000000000000000\n"
    );
    // A NaN metric is refused, not written.
    let mut bad = g.clone();
    bad.metrics.insert("p_mean_kw".into(), f64::NAN);
    let mut buf = Vec::new();
    assert_eq!(
        line::write_point(&mut buf, &line::aggregate_point(&bad, "1m"))
            .unwrap_err()
            .reason,
        RejectReason::NonFinite
    );
}

#[test]
fn protocol_md_line_examples_are_what_the_code_writes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    // Lines written for every reading of the payload examples.
    let mut written = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "<!-- payload example -->" {
            assert_eq!(lines.next().map(str::trim), Some("```json"));
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let d = telemetry::json::decode(
                body.join("\n").as_bytes(),
                &telemetry::Limits::default(),
                1_764_000_000_000,
            )
            .unwrap();
            for r in &d.readings {
                written.push(write(&line::reading_point(r)).trim_end().to_string());
            }
        }
    }
    // Raw-reading lines shown in the doc (measurement `parking` / `grid`, not `_agg`).
    let shown: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("parking,") || l.starts_with("grid,"))
        .collect();
    assert!(shown.len() >= 2, "{shown:?}");
    for l in shown {
        assert!(
            written.iter().any(|w| w == l),
            "doc line not produced by reading_point: {l}\nwritten: {written:#?}"
        );
        assert!(parse_lines(l).next().unwrap().is_ok(), "{l}");
    }
}
