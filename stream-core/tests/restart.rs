//! Restarts: the broker loses our session mid-stream; the core is SIGKILLed mid-window.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use stream_core::store::{SeriesStore, SqliteStore};
use stream_core::{CoreConfig, CoreReport};

fn stored_rows(db: &Path) -> u64 {
    SqliteStore::open(db)
        .map(|s| s.reading_counts().map(|c| c.rows).unwrap_or(0))
        .unwrap_or(0)
}

fn metric(http: &str, name: &str) -> Option<u64> {
    let (_, text) = get(&format!("{http}/metrics"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Broker SIGKILLed and restarted with its persistence file deleted (session lost) while a publisher
/// (clean session off, QoS 1, retransmitting) sends N readings: the core re-subscribes on the CONNACK
/// without session; all N stored once, and the aggregates count each exactly once.
#[test]
fn broker_restart_with_session_lost_loses_nothing() {
    let Some(mut broker) = testkit::Mosquitto::start("broker_restart_with_session_lost") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("core.sqlite");
    let mut cfg = core_config(broker.port, "core-restart", &db);
    cfg.mqtt.keep_alive_s = 5;
    cfg.publish = false;
    let core = Core::start(cfg);
    wait_ready(&core.http);

    const N: u32 = 600;
    let t0 = now_ms() - 3_600_000;
    let topic = telemetry::topic::for_reading(&parking(2, 0, 0, t0, false));
    // After a connection error the publisher waits until the core subscribed again (a broker without
    // our session delivers nothing to a subscriber that is not there yet: that loss is the broker's).
    let http = core.http.clone();
    let publisher = Publisher::start(broker.port, "pub-restart", topic, move || {
        wait_until("core re-subscribed", Duration::from_secs(60), || {
            metric(&http, "citybrain_core_subscribes_total").is_some_and(|n| n >= 2)
                && matches!(get(&format!("{http}/readyz")), Some((200, _)))
        })
    });
    let body = |i: u32| {
        telemetry::json::encode(&[parking(
            2,
            0,
            i,
            t0 + i64::from(i) * 5_000,
            i.is_multiple_of(3),
        )])
    };
    for i in 0..N / 2 {
        publisher.send(body(i));
    }
    wait_until("a third stored", Duration::from_secs(30), || {
        stored_rows(&db) >= u64::from(N / 3)
    });
    broker.kill();
    let persisted = broker.dir().join("mosquitto.db");
    let _ = std::fs::remove_file(&persisted);
    assert!(!persisted.exists());
    for i in N / 2..N {
        publisher.send(body(i));
    }
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    assert!(publisher.finish() >= u64::from(N));
    wait_until("all stored", Duration::from_secs(60), || {
        stored_rows(&db) == u64::from(N)
    });
    let report = core.stop();
    assert!(report.subscribes >= 2, "re-subscribed: {report:?}");
    let store = SqliteStore::open(&db).unwrap();
    let counts = store.reading_counts().unwrap();
    assert_eq!(counts.rows, u64::from(N));
    assert_eq!(counts.distinct_keys, u64::from(N));
    let keys: BTreeSet<(String, u32, u32)> = store
        .query_readings(&stream_core::store::ReadingQuery {
            device: None,
            site: Some("L2".into()),
            from_ms: 0,
            to_ms: i64::MAX,
            limit: 100_000,
        })
        .unwrap()
        .into_iter()
        .map(|r| (r.device.to_string(), r.boot, r.seq))
        .collect();
    let expected: BTreeSet<_> = (0..N).map(|i| ("L2-b0".to_string(), 1, i)).collect();
    assert_eq!(keys, expected);
    assert_eq!(report.readings_new, u64::from(N));
    // Redelivered copies (if any) are duplicates, not counted twice in the aggregates.
    let lot = store
        .query_aggregates(&stream_core::store::AggregateQuery {
            kind: telemetry::DeviceKind::Parking,
            scope: "lot".into(),
            id: "L2".into(),
            window_ms: 900_000,
            from_ms: 0,
            to_ms: i64::MAX,
        })
        .unwrap();
    assert_eq!(lot.iter().map(|a| a.count).sum::<u64>(), u64::from(N));
    assert_eq!(
        report.readings_valid - report.readings_new,
        report.dropped.get("duplicate").copied().unwrap_or(0),
        "every redelivered copy counted as a duplicate"
    );
}

/// Input for the crash test: 3 lots × 4 bays, one reading per bay every 20 s for 30 minutes of event
/// time, in event-time order (one message each).
fn crash_input(t0: i64) -> Vec<telemetry::Reading> {
    let mut v = Vec::new();
    for step in 0..90u32 {
        for lot in 0..3 {
            for bay in 0..4 {
                let occupied = (step / (2 + bay + lot)).is_multiple_of(2);
                v.push(parking(
                    10 + lot,
                    bay,
                    step,
                    t0 + i64::from(step) * 20_000 + i64::from(lot * 4 + bay) * 100,
                    occupied,
                ));
            }
        }
    }
    v
}

type AggRow = (String, String, String, i64, i64, i64, String, i64, String);

fn aggregate_table(db: &Path) -> Vec<AggRow> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT kind, scope, id, window_ms, start_ms, version, district, count, metrics
             FROM aggregates ORDER BY kind, scope, id, window_ms, start_ms, version",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn crash_config(port: u16, client: &str, db: &Path) -> CoreConfig {
    let mut cfg = core_config(port, client, db);
    cfg.publish = false;
    // Event time alone drives the watermark (no wall-clock jumps while the core is down).
    cfg.idle_advance_ms = 3_600_000;
    cfg
}

/// Core SIGKILLed mid-window (its binary), restarted, finite flush → the aggregate table equals the
/// one of an uninterrupted run over the same input.
#[test]
fn core_killed_mid_window_restarts_with_the_same_aggregates() {
    let Some(broker_ref) = testkit::Mosquitto::start("core_killed_mid_window (reference)") else {
        return;
    };
    let Some(broker) = testkit::Mosquitto::start("core_killed_mid_window") else {
        return;
    };
    let t0 = {
        let t = now_ms() - 3 * 3_600_000;
        t - t.rem_euclid(900_000)
    };
    let input = crash_input(t0);
    let n = input.len() as u64;
    // One publisher on one gateway-batch topic: arrival order = event order, so neither run issues
    // corrections and the reference is deterministic.
    let send_all = |port: u16, client: &str, range: std::ops::Range<usize>| {
        let p = Publisher::start(
            port,
            client,
            telemetry::topic::gateway_batch("gw-test"),
            || {},
        );
        let sent = range.len() as u64;
        for r in &input[range] {
            p.send(telemetry::json::encode(std::slice::from_ref(r)));
        }
        assert!(p.finish() >= sent);
    };
    // Reference: uninterrupted, in-process.
    let dir = tempfile::tempdir().unwrap();
    let db_ref = dir.path().join("ref.sqlite");
    let core = Core::start(crash_config(broker_ref.port, "core-ref", &db_ref));
    wait_ready(&core.http);
    send_all(broker_ref.port, "pub-ref", 0..input.len());
    wait_until("reference stored", Duration::from_secs(60), || {
        stored_rows(&db_ref) == n
    });
    let ref_report = core.stop();
    assert_eq!(ref_report.readings_new, n);

    // Crashed: the binary, SIGKILLed after about half the input is stored, then restarted.
    let db = dir.path().join("crash.sqlite");
    let cfg = crash_config(broker.port, "core-crash", &db);
    let http = format!("http://{}", cfg.http_addr);
    let conf = dir.path().join("core.toml");
    std::fs::write(&conf, toml::to_string(&cfg).unwrap()).unwrap();
    // The core's log, shown when a wait below times out.
    let log = dir.path().join("core.log");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_stream-core"))
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !cond() {
            if std::time::Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                panic!(
                    "timed out waiting for {what} ({} of {n} stored); core log, newest last:\n{}",
                    stored_rows(&db),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut child = spawn();
    wait_ready(&http);
    let half = input.len() / 2;
    send_all(broker.port, "pub-crash", 0..half);
    wait("half stored", &|| stored_rows(&db) >= (half as u64) * 3 / 4);
    child.kill().unwrap(); // SIGKILL: no drain, no flush
    child.wait().unwrap();
    let before_restart = stored_rows(&db);
    assert!(before_restart < n);
    // The rest arrives while the core is down (the broker queues it for the core's session).
    send_all(broker.port, "pub-crash", half..input.len());
    let child = spawn();
    wait("all stored after restart", &|| stored_rows(&db) == n);
    wait_ready(&http);
    // Let the dataflow take the last readings, then stop gracefully (SIGINT → finite flush).
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(
        Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "core exited with {:?}", out.status);
    let report: CoreReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report.replayed_readings >= before_restart,
        "recovery replayed the stored readings: {report:?}"
    );

    let counts = SqliteStore::open(&db).unwrap().reading_counts().unwrap();
    assert_eq!((counts.rows, counts.distinct_keys), (n, n));
    let reference = aggregate_table(&db_ref);
    let crashed = aggregate_table(&db);
    assert!(!reference.is_empty());
    // Lot and device rows: the full tables, versions included, are equal.
    let sites =
        |t: &[AggRow]| -> Vec<AggRow> { t.iter().filter(|r| r.1 != "district").cloned().collect() };
    let (sr, sc) = (sites(&reference), sites(&crashed));
    assert!(
        sr.iter().all(|r| r.5 == 1),
        "in-order input: no corrections in the reference"
    );
    assert_eq!(sr.len(), sc.len());
    for (a, b) in sr.iter().zip(&sc) {
        assert_eq!(a, b);
    }
    // District roll-ups issue a new version whenever one of their lots' rows arrives in a new batch, so
    // their version numbers follow batching (replay feeds 5,000 readings per batch); the newest version of
    // every district window must agree in count and metrics.
    let newest = |t: &[AggRow]| -> std::collections::BTreeMap<(String, i64, i64), (i64, String)> {
        let mut m = std::collections::BTreeMap::new();
        for r in t.iter().filter(|r| r.1 == "district") {
            // Rows are ordered by version: the last one wins.
            m.insert((r.2.clone(), r.3, r.4), (r.7, r.8.clone()));
        }
        m
    };
    let (nr, nc) = (newest(&reference), newest(&crashed));
    assert!(!nr.is_empty());
    assert_eq!(nr, nc);
    // And the same number of readings counted as in the reference (nothing lost or doubled).
    assert_eq!(
        report.dropped.get("duplicate").copied().unwrap_or(0),
        report.readings_valid - report.readings_new
    );
}
