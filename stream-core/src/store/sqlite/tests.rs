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

/// The raw table is keyed by `(ts_ms, device, boot, seq)`: the same `(device, boot, seq)` received
/// again with another event time (e.g. stamped twice by a gateway) is a second raw row, which the
/// counts show (the dataflow's dedup is what keeps it out of aggregates); with the same event time it
/// is stored once.
#[test]
fn same_key_with_another_event_time_is_a_second_raw_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("core.sqlite")).unwrap();
    let first = reading("d1", 1, 7, T0, change(true));
    let restamped = reading("d1", 1, 7, T0 + 40, change(true));
    assert_eq!(
        s.write_readings(std::slice::from_ref(&first), T0 + 50)
            .unwrap(),
        1
    );
    assert_eq!(
        s.write_readings(std::slice::from_ref(&first), T0 + 60)
            .unwrap(),
        0
    );
    assert_eq!(s.write_readings(&[restamped], T0 + 70).unwrap(), 1);
    assert_eq!(
        s.reading_counts().unwrap(),
        ReadingCounts {
            rows: 2,
            distinct_keys: 1
        }
    );
}

/// Stored readings come back bit for bit through both read paths, including an `f32` that plain
/// serde_json rounds twice when reading a `Reading` (`7.038531e-26`, bits `0x15ae43fd`, comes back as
/// `0x15ae43fe` through `serde_json::from_str::<Reading>`) and an `f64` whose shortest text the
/// non-round-trip float parser misreads.
#[test]
fn stored_floats_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("core.sqlite")).unwrap();
    let tricky_f32 = f32::from_bits(0x15ae_43fd);
    let r = reading(
        "d1",
        1,
        1,
        T0,
        Measurement::ParkingChange(ParkingChange {
            occupied: true,
            field_ut: tricky_f32,
        }),
    );
    let mut g = reading("g1", 1, 1, T0 + 1, hb(50.0));
    g.data = Measurement::GridSummary(telemetry::GridSummary {
        interval_s: 60,
        v_rms_v: 230.1,
        v_min_v: 229.0,
        v_max_v: 231.0,
        i_rms_a: 1.5,
        p_kw: 0.3,
        q_kvar: 0.1,
        pf: 0.95,
        freq_hz: 50.0,
        energy_kwh: f64::from_bits(0x426b_fb1a_aa63_8dda),
    });
    // The reference: the written values themselves (the bug this guards against is in reading).
    let sent = vec![r, g];
    s.write_readings(&sent, T0 + 10).unwrap();
    let q = ReadingQuery {
        device: None,
        site: None,
        from_ms: T0,
        to_ms: T0 + 2,
        limit: 10,
    };
    let bits = |v: &[Reading]| -> Vec<u64> {
        v.iter()
            .map(|r| match &r.data {
                Measurement::ParkingChange(c) => u64::from(c.field_ut.to_bits()),
                Measurement::GridSummary(g) => g.energy_kwh.to_bits(),
                _ => 0,
            })
            .collect()
    };
    assert_eq!(bits(&s.query_readings(&q).unwrap()), bits(&sent));
    let replayed: Vec<Reading> = s
        .replay_readings(T0, None, 10)
        .unwrap()
        .into_iter()
        .map(|x| x.reading)
        .collect();
    assert_eq!(bits(&replayed), bits(&sent));
    assert_eq!(bits(&sent), vec![0x15ae_43fd, 0x426b_fb1a_aa63_8dda]);
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
    // The same transitions again (the replay after a restart): stored once.
    s.write_alerts(&[a(T0, AlertState::Raised), a(T0 + 10, AlertState::Cleared)])
        .unwrap();
    assert_eq!(s.recent_alerts(T0, 10).unwrap().len(), 2);

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

/// Reference for "highest version per window": every inserted row keyed by (series, window length,
/// start), keeping the highest version (a re-upsert of the same version replaces it).
type RefKey = (String, i64, i64);

/// Seeded random series with corrections, windows lacking some metrics, a metric that only a
/// superseded version has, a district change, other series and window lengths as noise: the row and
/// the column reads both equal a plain reference.
#[test]
fn aggregate_reads_match_a_plain_reference() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let s = SqliteStore::open_in_memory().unwrap();
    let names = [
        "arrivals",
        "occupancy_mean_ratio",
        "occupancy_max_ratio",
        "departures",
    ];
    let mut reference: BTreeMap<RefKey, WindowAggregate> = BTreeMap::new();
    let mut batch = Vec::new();
    for n in 0..3_000 {
        let id = if rng.random_bool(0.8) { "L1" } else { "L2" };
        let window_ms = if rng.random_bool(0.8) {
            60_000
        } else {
            900_000
        };
        let start_ms = T0 + rng.random_range(0..400i64) * 60_000;
        let version = rng.random_range(1..4u32);
        let mut metrics = BTreeMap::new();
        for name in names {
            if rng.random_bool(0.8) {
                // Values JSON round-trips exactly (serde_json's default float parsing may be one
                // ulp off for arbitrary doubles: `metric_decoding_matches_serde_json` covers those).
                let v = f64::from(rng.random_range(-100_000..100_000i32)) / 1024.0;
                metrics.insert(name.to_string(), v);
            }
        }
        if version == 1 && rng.random_bool(0.05) {
            metrics.insert("only_in_v1".to_string(), 1.0);
        }
        if rng.random_bool(0.01) {
            // A name with escapes in its JSON form (not borrowed from the text).
            metrics.insert("we\"ird\\name\u{e9}".to_string(), 0.5);
        }
        let row = WindowAggregate {
            kind: DeviceKind::Parking,
            scope: "lot".into(),
            id: id.into(),
            district: if start_ms < T0 + 200 * 60_000 {
                "central"
            } else {
                "north"
            }
            .into(),
            start_ms,
            window_ms,
            version,
            count: rng.random_range(0..100),
            metrics,
        };
        let key = (id.to_string(), window_ms, start_ms);
        match reference.get(&key) {
            Some(old) if old.version > version => {}
            _ => {
                reference.insert(key, row.clone());
            }
        }
        batch.push(row);
        if n % 500 == 499 {
            s.upsert_aggregates(&batch).unwrap();
            batch.clear();
        }
    }
    s.upsert_aggregates(&batch).unwrap();
    // A grid series with the same id must not leak in.
    let mut grid = agg("L1", T0, 9, 9.0);
    grid.kind = DeviceKind::Grid;
    s.upsert_aggregates(&[grid]).unwrap();

    for (id, window_ms, from_ms, to_ms) in [
        ("L1", 60_000, T0, T0 + 400 * 60_000),
        ("L1", 60_000, T0 + 10 * 60_000, T0 + 250 * 60_000 + 1),
        ("L2", 60_000, T0, T0 + 400 * 60_000),
        ("L1", 900_000, T0, T0 + 400 * 60_000),
        ("L1", 60_000, T0 + 500 * 60_000, T0 + 600 * 60_000),
    ] {
        let want: Vec<WindowAggregate> = reference
            .iter()
            .filter(|((i, w, st), _)| i == id && *w == window_ms && *st >= from_ms && *st < to_ms)
            .map(|(_, r)| r.clone())
            .collect();
        let q = AggregateQuery {
            kind: DeviceKind::Parking,
            scope: "lot".into(),
            id: id.into(),
            window_ms,
            from_ms,
            to_ms,
        };
        let rows = s.query_aggregates(&q).unwrap();
        assert_eq!(rows, want, "{q:?}");
        let cols = s.query_aggregate_columns(&q).unwrap();
        assert_eq!(cols.len(), want.len());
        assert_eq!(cols.to_rows(), want, "{q:?}");
        // Built independently from the reference rows (one column per metric name present).
        let names_present: std::collections::BTreeSet<&String> =
            want.iter().flat_map(|r| r.metrics.keys()).collect();
        assert_eq!(
            cols.metrics
                .keys()
                .collect::<std::collections::BTreeSet<_>>(),
            names_present
        );
        for (name, col) in &cols.metrics {
            assert_eq!(col.len(), want.len());
            for (v, r) in col.iter().zip(&want) {
                assert_eq!(*v, r.metrics.get(name).copied(), "{name}");
            }
        }
        assert_eq!(
            cols,
            AggregateColumns::from_rows(DeviceKind::Parking, "lot", id, window_ms, &want)
        );
    }
    // Sanity of the fixture: corrections, gaps and the superseded-only metric all occur.
    assert!(reference.values().any(|r| r.version > 1));
    assert!(reference.values().any(|r| r.metrics.len() < names.len()));
}

/// A metrics column that is not a map of numbers is an error, not a panic, on both read paths.
#[test]
fn bad_metrics_text_is_an_error() {
    let s = SqliteStore::open_in_memory().unwrap();
    for (n, bad) in ["{\"a\":null}", "[1,2]", "{\"a\":1} x", "not json"]
        .iter()
        .enumerate()
    {
        lock(&s.writer)
            .execute(
                &format!("INSERT INTO aggregates ({AGG_COLS}) VALUES ('parking','lot','L1',60000,?1,1,'c',1,?2)"),
                params![T0 + n as i64 * 60_000, bad],
            )
            .unwrap();
    }
    for n in 0..4 {
        let q = AggregateQuery {
            kind: DeviceKind::Parking,
            scope: "lot".into(),
            id: "L1".into(),
            window_ms: 60_000,
            from_ms: T0 + n * 60_000,
            to_ms: T0 + n * 60_000 + 1,
        };
        assert!(
            matches!(s.query_aggregates(&q), Err(StoreError::Other(_))),
            "{n}"
        );
        assert!(
            matches!(s.query_aggregate_columns(&q), Err(StoreError::Other(_))),
            "{n}"
        );
    }
}

/// The streaming metric decoder gives exactly what the previous decoder (`serde_json` into a
/// `BTreeMap<String, f64>`) gave, bit for bit, on arbitrary doubles and names with escapes.
#[test]
fn metric_decoding_matches_serde_json() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..2_000 {
        let mut m = BTreeMap::new();
        for n in 0..rng.random_range(0..6) {
            let v = f64::from_bits(rng.random::<u64>());
            let v = if v.is_finite() {
                v
            } else {
                rng.random::<f64>() * 1e300
            };
            m.insert(format!("m{n}_\u{e9}\"q"), v);
        }
        let text = serde_json::to_string(&m).unwrap();
        let want: BTreeMap<String, f64> = serde_json::from_str(&text).unwrap();
        let mut got = BTreeMap::new();
        for_each_metric(&text, |k, v| {
            got.insert(k.to_string(), v);
        })
        .unwrap();
        assert_eq!(got.len(), want.len());
        for (k, v) in &want {
            assert_eq!(got[k].to_bits(), v.to_bits(), "{text}");
        }
    }
}

/// A version-1 file that holds repeated alert transitions (written before migration 2) keeps one of
/// each after the upgrade, and from then on repeats are ignored.
#[test]
fn migration_2_removes_repeated_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        for (alert, ts) in [
            ("lot_full", T0),
            ("lot_full", T0),
            ("battery_low", T0),
            ("lot_full", T0),
        ] {
            c.execute(
                "INSERT INTO alerts (alert, state, district, site, ts_ms, value, message)
                 VALUES (?1, 'raised', 'central', 'L1', ?2, 1.0, 'm')",
                rusqlite::params![alert, ts],
            )
            .unwrap();
        }
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as u32);
    let kept: Vec<(String, i64)> = s
        .recent_alerts(0, 10)
        .unwrap()
        .into_iter()
        .map(|a| (a.alert, a.ts_ms))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
}

/// Several processes (here threads with their own connections) opening one new file at once: every
/// migration runs once and all of them open it (it used to fail with "table readings already exists").
#[test]
fn concurrent_opens_of_a_new_file_migrate_once() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("new{round}.sqlite"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let opened: Vec<u32> = (0..4)
            .map(|_| {
                let (p, b) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    SqliteStore::open(&p).unwrap().schema_version().unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(opened, vec![MIGRATIONS.len() as u32; 4]);
    }
}

/// Migrations 3 and 4 (unused `readings` indexes dropped; `readings` rekeyed by event time): a
/// version-2 file with readings keeps them readable (raw query, replay, counts) after the upgrade, the
/// table has no secondary index left, and every `readings` query runs from the primary key, never a
/// full scan or a temporary sort.
#[test]
fn migrations_3_and_4_rekey_readings_and_keep_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite");
    let old = vec![
        reading("L1-b1", 1, 1, T0, change(true)),
        reading("L1-b1", 1, 2, T0 + 1_000, change(false)),
        reading("L1-b2", 1, 1, T0 + 500, hb(80.0)),
    ];
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute_batch(MIGRATIONS[1]).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        for r in &old {
            c.execute(
                "INSERT INTO readings (device, boot, seq, site, district, kind, type, ts_ms, ingest_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    r.device.as_str(),
                    r.boot,
                    r.seq,
                    r.site.as_str(),
                    r.district.as_str(),
                    r.kind().as_str(),
                    r.data.type_name(),
                    r.ts_ms,
                    T0 + 5_000,
                    serde_json::to_string(r).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 4);
    let indexes: Vec<String> = {
        let c = lock(&s.writer);
        let mut st = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // Only SQLite's own primary-key index of the WITHOUT ROWID table.
    assert!(
        indexes
            .iter()
            .all(|n| n.starts_with("sqlite_autoindex_readings")),
        "{indexes:?}"
    );
    // Old rows: readable through every read path, in time order.
    let mut by_time = old.clone();
    by_time.sort_by_key(|r| r.ts_ms);
    let q = ReadingQuery {
        device: None,
        site: Some("L1".into()),
        from_ms: T0,
        to_ms: T0 + 2_000,
        limit: 10,
    };
    assert_eq!(s.query_readings(&q).unwrap(), by_time);
    let replayed: Vec<Reading> = s
        .replay_readings(T0, None, 10)
        .unwrap()
        .into_iter()
        .map(|x| x.reading)
        .collect();
    assert_eq!(replayed, by_time);
    // New writes beside them: the duplicate key is still ignored.
    let new = s
        .write_readings(
            &[
                reading("L1-b1", 1, 2, T0 + 1_000, change(false)),
                reading("L1-b1", 1, 3, T0 + 2_000, change(true)),
            ],
            T0 + 6_000,
        )
        .unwrap();
    assert_eq!(new, 1);
    let counts = s.reading_counts().unwrap();
    assert_eq!((counts.rows, counts.distinct_keys), (4, 4));
    // Query plans of every `readings` statement of the store: none scans the table.
    let c = lock(&s.writer);
    for sql in [
        "SELECT body FROM readings WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR site = ?2) AND ts_ms >= ?3 AND ts_ms < ?4 ORDER BY ts_ms, device, boot, seq LIMIT ?5",
        "SELECT body, ingest_ms FROM readings WHERE ts_ms >= ?1 AND (ts_ms, device, boot, seq) > (?2, ?3, ?4, ?5) ORDER BY ts_ms, device, boot, seq LIMIT ?6",
        "SELECT max(ts_ms) FROM readings",
    ] {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; st.parameter_count()];
        let plan: Vec<String> = st
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .all(|p| !p.starts_with("SCAN readings") && !p.contains("TEMP B-TREE")),
            "{sql}: {plan:?}"
        );
    }
}
