use super::*;
use crate::store::{AggregateQuery, QualityQuery, ReadingQuery};
use std::collections::BTreeMap;
use telemetry::{DeviceId, DistrictId, ParkingChange, ParkingHeartbeat, SiteId, TimeSource};

fn reading(dev: &str, boot: u32, seq: u32, ts_ms: i64, data: Measurement) -> Reading {
    Reading {
        device: DeviceId::new(dev).unwrap(),
        site: SiteId::new("L1").unwrap(),
        district: DistrictId::new("central").unwrap(),
        boot,
        seq,
        ts_ms,
        time_source: TimeSource::Device,
        replayed: false,
        data,
    }
}

fn hb(battery: f32) -> Measurement {
    Measurement::ParkingHeartbeat(ParkingHeartbeat {
        occupied: true,
        battery_pct: battery,
        field_ut: 40.0,
        transitions: 3,
        dropped: 0,
    })
}

fn change(occ: bool) -> Measurement {
    Measurement::ParkingChange(ParkingChange {
        occupied: occ,
        field_ut: 45.0,
    })
}

fn agg(id: &str, start_ms: i64, version: u32, v: f64) -> WindowAggregate {
    let mut metrics = BTreeMap::new();
    metrics.insert("arrivals".to_string(), v);
    WindowAggregate {
        kind: DeviceKind::Parking,
        scope: "lot".into(),
        id: id.into(),
        district: "central".into(),
        start_ms,
        window_ms: 60_000,
        version,
        count: 3,
        metrics,
    }
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn readings_are_idempotent_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let batch = vec![
            reading("d1", 1, 0, T0, change(true)),
            reading("d1", 1, 1, T0 + 10, hb(80.0)),
            reading("d2", 1, 0, T0 + 5, change(false)),
        ];
        assert_eq!(s.write_readings(&batch, T0 + 100).unwrap(), 3);
        // same keys again (a QoS 1 redelivery), plus one new
        let mut again = batch.clone();
        again.push(reading("d1", 2, 0, T0 + 20, hb(79.5)));
        assert_eq!(s.write_readings(&again, T0 + 200).unwrap(), 1);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.reading_counts().unwrap(),
        ReadingCounts {
            rows: 4,
            distinct_keys: 4
        }
    );
    let q = ReadingQuery {
        device: Some("d1".into()),
        site: None,
        from_ms: T0,
        to_ms: T0 + 1000,
        limit: 10,
    };
    let got = s.query_readings(&q).unwrap();
    assert_eq!(
        got.iter().map(|r| (r.boot, r.seq)).collect::<Vec<_>>(),
        vec![(1, 0), (1, 1), (2, 0)]
    );
    assert_eq!(got[1].data, hb(80.0));
    let q2 = ReadingQuery {
        device: None,
        site: Some("L1".into()),
        from_ms: T0,
        to_ms: T0 + 11,
        limit: 2,
    };
    assert_eq!(s.query_readings(&q2).unwrap().len(), 2);
    let h = s.device_health().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].device, "d1");
    assert_eq!(h[0].last_seen_ms, T0 + 20);
    assert_eq!(h[0].battery_pct, Some(79.5));
    assert_eq!(h[0].last_boot, 2);
    assert_eq!(h[1].battery_pct, None);
}

#[test]
fn aggregates_upsert_and_highest_version_wins() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("a.sqlite")).unwrap();
    s.upsert_aggregates(&[
        agg("L1", T0, 1, 1.0),
        agg("L1", T0 + 60_000, 1, 2.0),
        agg("L2", T0, 1, 5.0),
    ])
    .unwrap();
    // idempotent: same key rewritten
    s.upsert_aggregates(&[agg("L1", T0, 1, 1.0)]).unwrap();
    // correction
    s.upsert_aggregates(&[agg("L1", T0, 2, 1.5)]).unwrap();
    let q = AggregateQuery {
        kind: DeviceKind::Parking,
        scope: "lot".into(),
        id: "L1".into(),
        window_ms: 60_000,
        from_ms: T0,
        to_ms: T0 + 120_000,
    };
    let got = s.query_aggregates(&q).unwrap();
    assert_eq!(
        got,
        vec![agg("L1", T0, 2, 1.5), agg("L1", T0 + 60_000, 1, 2.0)]
    );
    let latest = s
        .latest_aggregates(DeviceKind::Parking, "lot", 60_000, None)
        .unwrap();
    assert_eq!(
        latest,
        vec![agg("L1", T0 + 60_000, 1, 2.0), agg("L2", T0, 1, 5.0)]
    );
    let before = s
        .latest_aggregates(DeviceKind::Parking, "lot", 60_000, Some(T0 + 60_000))
        .unwrap();
    assert_eq!(before, vec![agg("L1", T0, 2, 1.5), agg("L2", T0, 1, 5.0)]);
    assert!(
        s.latest_aggregates(DeviceKind::Grid, "lot", 60_000, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn alerts_quality_dead_letters_round_trip() {
    let s = SqliteStore::open_in_memory().unwrap();
    let a = |ts, state| Alert {
        alert: "lot_full".into(),
        state,
        district: "central".into(),
        site: "L1".into(),
        ts_ms: ts,
        value: 0.97,
        message: "full".into(),
    };
    s.write_alerts(&[a(T0, AlertState::Raised), a(T0 + 10, AlertState::Cleared)])
        .unwrap();
    assert_eq!(
        s.recent_alerts(T0, 10).unwrap(),
        vec![a(T0 + 10, AlertState::Cleared), a(T0, AlertState::Raised)]
    );
    assert_eq!(s.recent_alerts(T0 + 1, 10).unwrap().len(), 1);
    assert_eq!(s.recent_alerts(T0, 1).unwrap().len(), 1);

    let q = |src: &str, start| QualityRow {
        dataset: "parking".into(),
        source: src.into(),
        start_ms: start,
        window_ms: 900_000,
        completeness: 0.5,
        timeliness_p50_ms: 10.0,
        timeliness_p95_ms: 20.0,
        validity: 1.0,
        uniqueness: 0.9,
        consistency: 1.0,
        received: 5,
        expected: 10,
        rejected: 0,
        duplicates: 1,
    };
    s.write_quality(&[q("d1", T0), q("d2", T0), q("d1", T0 + 900_000)])
        .unwrap();
    let mut upd = q("d1", T0);
    upd.received = 6;
    s.write_quality(std::slice::from_ref(&upd)).unwrap();
    let all = s
        .query_quality(&QualityQuery {
            dataset: Some("parking".into()),
            source: None,
            from_ms: T0,
            to_ms: T0 + 1,
        })
        .unwrap();
    assert_eq!(all, vec![upd.clone(), q("d2", T0)]);
    let one = s
        .query_quality(&QualityQuery {
            dataset: None,
            source: Some("d1".into()),
            from_ms: 0,
            to_ms: i64::MAX,
        })
        .unwrap();
    assert_eq!(one.len(), 2);

    let d = DeadLetter {
        ts_ms: T0,
        topic: "citybrain/v1/x".into(),
        source: "d9".into(),
        reason: "malformed_json".into(),
        detail: "EOF".into(),
        payload: b"{\"v\":".to_vec(),
    };
    s.write_dead_letters(std::slice::from_ref(&d)).unwrap();
    assert_eq!(s.recent_dead_letters(T0, 10).unwrap(), vec![d]);
    assert!(s.recent_dead_letters(T0 + 1, 10).unwrap().is_empty());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.sqlite");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Other(_))
    ));
}

#[test]
fn open_store_creates_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::store::StoreConfig {
        sqlite_path: dir.path().join("sub/x.sqlite"),
        busy_timeout_ms: 100,
        ..Default::default()
    };
    let s = crate::store::open_store(&cfg).unwrap();
    assert_eq!(s.reading_counts().unwrap().rows, 0);
}
