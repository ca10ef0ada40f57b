//! Real Mosquitto, a historical replay (event times hours behind the wall clock) in which one parking
//! sensor's clock is an hour fast: the watermark ignores it, so no other device's readings turn late —
//! every window comes out once (version 1), with exactly the readings a plain count expects, and none
//! is dropped as too late.

mod common;

use common::{
    Core, Publisher, core_config, historical_t0, lot_minute_counts, parking, stored_lot_minutes,
    wait_ready, wait_until,
};
use std::collections::BTreeMap;
use std::time::Duration;
use stream_core::store::{SeriesStore, SqliteStore};

const FAST_MS: i64 = 3_600_000;

#[test]
fn a_fast_device_clock_does_not_move_the_watermark() {
    let Some(broker) = testkit::Mosquitto::start("a_fast_device_clock_does_not_move_the_watermark")
    else {
        return;
    };
    let t0 = historical_t0();
    // 3 lots × 4 bays, one reading per bay every 20 s for 30 minutes, in true-time order; the sensor
    // L10-b0 stamps its readings an hour ahead.
    let mut input = Vec::new();
    for step in 0..90u32 {
        for lot in 10..13u32 {
            for bay in 0..4u32 {
                let ts = t0 + i64::from(step) * 20_000 + i64::from((lot - 10) * 4 + bay) * 100;
                let fast = if lot == 10 && bay == 0 { FAST_MS } else { 0 };
                input.push(parking(
                    lot,
                    bay,
                    step,
                    ts + fast,
                    (step / (2 + bay)) % 2 == 0,
                ));
            }
        }
    }
    let expected = lot_minute_counts(&input);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("core.sqlite");
    let mut cfg = core_config(broker.port, "core-fast-clock", &db);
    cfg.publish = false;
    // Event time alone drives the watermark during the replay.
    cfg.idle_advance_ms = 3_600_000;
    let core = Core::start(cfg);
    wait_ready(&core.http);
    let p = Publisher::start(
        broker.port,
        "pub-fast-clock",
        telemetry::topic::gateway_batch("gw-test"),
        || {},
    );
    for r in &input {
        p.send(telemetry::json::encode(std::slice::from_ref(r)));
    }
    let n = input.len() as u64;
    assert!(p.finish() >= n);
    let store = SqliteStore::open(&db).unwrap();
    wait_until("all stored", Duration::from_secs(60), || {
        store.reading_counts().is_ok_and(|c| c.rows == n)
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = core.stop();
    assert_eq!(report.readings_new, n);
    assert_eq!(report.dropped.get("too_late").copied().unwrap_or(0), 0);

    let stored = stored_lot_minutes(&db, &["L10", "L11", "L12"]);
    for ((lot, start), (_, version)) in &stored {
        assert_eq!(
            *version, 1,
            "{lot} window {start} was corrected: the watermark ran ahead"
        );
    }
    let got: BTreeMap<(String, i64), u64> = stored.into_iter().map(|(k, (c, _))| (k, c)).collect();
    assert_eq!(got, expected);
}
