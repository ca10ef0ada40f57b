//! Storage down while good traffic flows through a real Mosquitto: the core keeps its MQTT session
//! alive (one CONNACK over the whole outage, longer than 1.5 × keep-alive), stops acknowledging, says
//! 503 on `/readyz`, retries with backoff, and afterwards every reading is stored exactly once.
//!
//! Fault injector: a second SQLite connection holding `BEGIN EXCLUSIVE` on the core's database file
//! (in WAL mode this blocks every other writer; the core's busy timeout is 100 ms, so each write attempt
//! fails with `SQLITE_BUSY` → `StoreError::Unavailable`).

mod common;

use common::*;
use std::time::Duration;
use stream_core::store::{SeriesStore, SqliteStore};

/// Holds an exclusive write lock on a SQLite file until dropped.
struct ExclusiveLock(rusqlite::Connection);

impl ExclusiveLock {
    fn take(db: &std::path::Path) -> ExclusiveLock {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        ExclusiveLock(c)
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[test]
fn storage_outage_loses_nothing_and_keeps_the_session() {
    let Some(broker) = testkit::Mosquitto::start("storage_outage_loses_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("core.sqlite");
    let mut cfg = core_config(broker.port, "core-outage", &db);
    cfg.store.busy_timeout_ms = 100;
    cfg.mqtt.keep_alive_s = 5;
    cfg.publish = false;
    let core = Core::start(cfg);
    wait_ready(&core.http);

    const N: u32 = 400;
    let t0 = now_ms() - 600_000;
    let topic = telemetry::topic::for_reading(&parking(1, 0, 0, t0, false));
    let publisher = Publisher::start(broker.port, "pub-outage", topic, || {});
    // 100 readings with storage up, 250 while it is locked for 9 s, 50 after.
    let body = |i: u32| {
        telemetry::json::encode(&[parking(
            1,
            0,
            i,
            t0 + i64::from(i) * 1_000,
            i.is_multiple_of(2),
        )])
    };
    for i in 0..100 {
        publisher.send(body(i));
    }
    wait_until("first 100 stored", Duration::from_secs(20), || {
        SqliteStore::open(&db)
            .unwrap()
            .reading_counts()
            .unwrap()
            .rows
            == 100
    });
    let lock = ExclusiveLock::take(&db);
    for i in 100..350 {
        publisher.send(body(i));
    }
    wait_until(
        "/readyz 503 storage unavailable",
        Duration::from_secs(10),
        || matches!(get(&format!("{}/readyz", core.http)), Some((503, b)) if b.contains("storage")),
    );
    std::thread::sleep(Duration::from_secs(9));
    let (_, metrics) = get(&format!("{}/metrics", core.http)).unwrap();
    assert!(
        metrics.lines().any(|l| l == "citybrain_core_storage_ok 0"),
        "{metrics}"
    );
    drop(lock);
    for i in 350..N {
        publisher.send(body(i));
    }
    assert!(publisher.finish() >= u64::from(N));
    wait_until("all stored", Duration::from_secs(30), || {
        SqliteStore::open(&db)
            .unwrap()
            .reading_counts()
            .unwrap()
            .rows
            == u64::from(N)
    });
    wait_ready(&core.http);
    let report = core.stop();

    let store = SqliteStore::open(&db).unwrap();
    let counts = store.reading_counts().unwrap();
    assert_eq!(counts.rows, u64::from(N), "every reading stored");
    assert_eq!(counts.distinct_keys, u64::from(N), "each exactly once");
    let seqs: Vec<u32> = store
        .query_readings(&stream_core::store::ReadingQuery {
            device: Some("L1-b0".into()),
            site: None,
            from_ms: 0,
            to_ms: i64::MAX,
            limit: 10_000,
        })
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    assert_eq!(report.readings_new, u64::from(N));
    assert_eq!(
        report.messages, report.readings_valid,
        "one reading per message"
    );
    assert!(report.store_retries > 0, "the outage was seen: {report:?}");
    assert_eq!(report.connacks, 1, "keep-alive held through the outage");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.outputs_lost, 0);
    // Readings counted by the aggregates equal the stored ones (1-minute lot windows, newest version).
    let lot_rows = store
        .query_aggregates(&stream_core::store::AggregateQuery {
            kind: telemetry::DeviceKind::Parking,
            scope: "lot".into(),
            id: "L1".into(),
            window_ms: 60_000,
            from_ms: 0,
            to_ms: i64::MAX,
        })
        .unwrap();
    assert_eq!(lot_rows.iter().map(|a| a.count).sum::<u64>(), u64::from(N));
}
