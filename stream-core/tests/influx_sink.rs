//! The InfluxDB v2 sink against a real server speaking the v2 write API (Debian's VictoriaMetrics,
//! via testkit): raw readings and aggregates written, read back through `/api/v1/export` (metric names
//! `measurement_field`, timestamps in ms), values and escaped tag values compared exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use stream_core::store::{InfluxConfig, InfluxSink, SeriesSink, StoreError};
use telemetry::message::WindowAggregate;
use telemetry::{DeviceId, DistrictId, Measurement, ParkingChange, Reading, SiteId, TimeSource};

type Series = BTreeMap<String, String>;

/// `(labels incl. __name__) → [(ts_ms, value)]` from `/api/v1/export`.
fn export(base: &str, re: &str) -> BTreeMap<Series, Vec<(i64, f64)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/api/v1/export"))
            .query(&[("match[]", format!("{{__name__=~\"{re}\"}}"))])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let labels: Series = v["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let points = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["values"].as_array().unwrap())
            .map(|(t, x)| (t.as_i64().unwrap(), x.as_f64().unwrap()))
            .collect();
        out.insert(labels, points);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Series {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn readings_and_aggregates_round_trip_through_victoria_metrics() {
    let Some(vm) = testkit::VictoriaMetrics::start("influx_sink_round_trip") else {
        return;
    };
    let sink = InfluxSink::new(&InfluxConfig {
        url: vm.url(),
        org: "city".into(),
        bucket: "raw".into(),
        token: "secret".into(),
        timeout_ms: 2_000,
    })
    .unwrap();
    // Recent (VictoriaMetrics drops points older than its retention, one month by default).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now - now.rem_euclid(60_000) - 3_600_000;
    let sites = ["停车位-12", "Lot,A=1\"q"];
    let readings: Vec<Reading> = (0..4u32)
        .map(|i| Reading {
            device: DeviceId::new(&format!("d-{i}")).unwrap(),
            site: SiteId::new(sites[(i % 2) as usize]).unwrap(),
            district: DistrictId::new("Zürich").unwrap(),
            boot: 2,
            seq: 10 + i,
            ts_ms: t0 + i64::from(i) * 1_000,
            time_source: TimeSource::Device,
            replayed: false,
            data: Measurement::ParkingChange(ParkingChange {
                occupied: !i.is_multiple_of(2),
                field_ut: 40.5 + i as f32,
            }),
        })
        .collect();
    assert_eq!(sink.write_readings(&readings).unwrap(), 4);
    let agg = WindowAggregate {
        kind: telemetry::DeviceKind::Parking,
        scope: "lot".into(),
        id: "Lot A, Nord".into(),
        district: "Zürich".into(),
        start_ms: t0,
        window_ms: 60_000,
        version: 2,
        count: 7,
        metrics: [
            ("occupancy_mean_ratio".to_string(), 0.625),
            ("arrivals".to_string(), 3.0),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        sink.write_aggregates(std::slice::from_ref(&agg)).unwrap(),
        1
    );

    // Expected series, built by hand from the inputs.
    let mut expected: BTreeMap<Series, Vec<(i64, f64)>> = BTreeMap::new();
    for (i, r) in readings.iter().enumerate() {
        let base = [
            ("device", r.device.as_str()),
            ("site", r.site.as_str()),
            ("district", "Zürich"),
            ("type", "parking_change"),
        ];
        let ts = t0 + i as i64 * 1_000;
        for (field, value) in [
            ("seq", 10.0 + i as f64),
            ("boot", 2.0),
            ("field_ut", 40.5 + i as f64),
        ] {
            let mut l = labels(&base);
            l.insert("__name__".into(), format!("parking_{field}"));
            expected.insert(l, vec![(ts, value)]);
        }
    }
    for (field, value) in [
        ("count", 7.0),
        ("version", 2.0),
        ("occupancy_mean_ratio", 0.625),
        ("arrivals", 3.0),
    ] {
        let mut l = labels(&[
            ("scope", "lot"),
            ("id", "Lot A, Nord"),
            ("district", "Zürich"),
            ("window", &agg.window_label()),
        ]);
        l.insert("__name__".into(), format!("parking_agg_{field}"));
        expected.insert(l, vec![(t0, value)]);
    }

    // Fresh points become searchable after a short flush.
    let re =
        "parking_(seq|boot|field_ut)|parking_agg_(count|version|occupancy_mean_ratio|arrivals)";
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = export(&vm.url(), re);
        if got.len() >= expected.len() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>()
    );
    assert_eq!(got, expected);
    let sites_seen: BTreeSet<_> = got.keys().filter_map(|l| l.get("site").cloned()).collect();
    assert_eq!(
        sites_seen,
        sites.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
}

#[test]
fn unreachable_server_is_retryable_and_a_path_prefix_is_refused() {
    let port = testkit::free_port();
    let sink = InfluxSink::new(&InfluxConfig {
        url: format!("http://127.0.0.1:{port}"),
        timeout_ms: 500,
        ..InfluxConfig::default()
    })
    .unwrap();
    let agg = WindowAggregate {
        kind: telemetry::DeviceKind::Grid,
        scope: "feeder".into(),
        id: "F1".into(),
        district: "d".into(),
        start_ms: 0,
        window_ms: 60_000,
        version: 1,
        count: 1,
        metrics: Default::default(),
    };
    assert!(matches!(
        sink.write_aggregates(&[agg]),
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        InfluxSink::new(&InfluxConfig {
            url: "http://127.0.0.1:8086/influx".into(),
            ..InfluxConfig::default()
        }),
        Err(StoreError::Invalid(_))
    ));
}
