//! Scale-out: two core processes (the `stream-core` binary) share the load through an MQTT shared
//! subscription (`$share/<group>/…`) on a real Mosquitto and form one timely cluster over loopback
//! (`processes = 2`, one worker each), writing to one shared SQLite store or to one store each. Every
//! reading is stored once and counted once in the aggregates (compared with a hand count); restarted,
//! the two processes replay what is stored exactly once (a shared store sharded by site), with no
//! duplicates.

mod common;

use common::{
    Publisher, core_config, historical_t0, lot_minute_counts, parking, stored_lot_minutes,
    wait_ready, wait_until,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use stream_core::CoreReport;
use stream_core::store::{SeriesStore, SqliteStore};

fn stored_rows(db: &Path) -> u64 {
    SqliteStore::open(db)
        .map(|s| s.reading_counts().map(|c| c.rows).unwrap_or(0))
        .unwrap_or(0)
}

/// Starts both processes (process p on store `dbs[p]`); returns them with their health URLs.
fn start_cluster(
    dir: &Path,
    port: u16,
    dbs: &[PathBuf; 2],
    hosts: &[String],
) -> Vec<(Child, String)> {
    (0..2)
        .map(|p| {
            let mut cfg = core_config(port, &format!("core-cluster-{p}"), &dbs[p]);
            cfg.shared_store = dbs[0] == dbs[1];
            cfg.publish = false;
            cfg.processes = 2;
            cfg.process_index = p;
            cfg.hosts = hosts.to_vec();
            cfg.share_group = Some("cores".into());
            // Event time alone drives the watermark (the input is hours old).
            cfg.idle_advance_ms = 3_600_000;
            let http = format!("http://{}", cfg.http_addr);
            let conf = dir.join(format!("core{p}.toml"));
            std::fs::write(&conf, toml::to_string(&cfg).unwrap()).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_stream-core"))
                .arg("--config")
                .arg(&conf)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, http)
        })
        .collect()
}

/// SIGINT to both (each closes its input; the cluster flushes every window), then their reports.
fn stop_cluster(procs: Vec<(Child, String)>) -> Vec<CoreReport> {
    for (c, _) in &procs {
        assert!(
            Command::new("kill")
                .arg("-INT")
                .arg(c.id().to_string())
                .status()
                .unwrap()
                .success()
        );
    }
    procs
        .into_iter()
        .map(|(c, _)| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "core exited with {:?}", out.status);
            // timely prints its connection progress on stdout before the report.
            let text = String::from_utf8_lossy(&out.stdout);
            let json = text.find("\n{").map_or(&text[..], |i| &text[i + 1..]);
            serde_json::from_str(json).unwrap_or_else(|e| panic!("report: {e}: {text}"))
        })
        .collect()
}

/// The 1-minute lot counts over the distinct stores (each window is written by the process that owns
/// its lot).
fn lot_counts(dbs: &[PathBuf; 2]) -> BTreeMap<(String, i64), u64> {
    let mut m = BTreeMap::new();
    for db in distinct(dbs) {
        for (k, (count, _)) in stored_lot_minutes(db, &["L10", "L11", "L12", "L13", "L14", "L15"]) {
            assert!(m.insert(k.clone(), count).is_none(), "{k:?} stored twice");
        }
    }
    m
}

fn distinct(dbs: &[PathBuf; 2]) -> Vec<&PathBuf> {
    if dbs[0] == dbs[1] {
        vec![&dbs[0]]
    } else {
        dbs.iter().collect()
    }
}

fn total_rows(dbs: &[PathBuf; 2]) -> u64 {
    distinct(dbs).into_iter().map(|db| stored_rows(db)).sum()
}

#[test]
fn two_processes_on_one_shared_store() {
    cluster_case("two_processes_on_one_shared_store", true);
}

#[test]
fn two_processes_with_a_store_each() {
    cluster_case("two_processes_with_a_store_each", false);
}

fn cluster_case(name: &str, shared: bool) {
    let Some(broker) = testkit::Mosquitto::start(name) else {
        return;
    };
    let t0 = historical_t0();
    // 6 lots × 3 bays, one reading per bay every 20 s for 20 minutes, in event-time order.
    let mut input = Vec::new();
    for step in 0..60u32 {
        for lot in 10..16u32 {
            for bay in 0..3u32 {
                let ts = t0 + i64::from(step) * 20_000 + i64::from((lot - 10) * 3 + bay) * 100;
                input.push(parking(lot, bay, step, ts, (step / (2 + bay)) % 2 == 0));
            }
        }
    }
    let n = input.len() as u64;
    let expected = lot_minute_counts(&input);

    let dir = tempfile::tempdir().unwrap();
    let dbs = if shared {
        [
            dir.path().join("core.sqlite"),
            dir.path().join("core.sqlite"),
        ]
    } else {
        [
            dir.path().join("core0.sqlite"),
            dir.path().join("core1.sqlite"),
        ]
    };
    let hosts: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", testkit::free_port()))
        .collect();
    let procs = start_cluster(dir.path(), broker.port, &dbs, &hosts);
    for (_, http) in &procs {
        wait_ready(http);
    }
    let p = Publisher::start(
        broker.port,
        "pub-cluster",
        telemetry::topic::gateway_batch("gw-test"),
        || {},
    );
    for r in &input {
        p.send(telemetry::json::encode(std::slice::from_ref(r)));
    }
    assert!(p.finish() >= n);
    wait_until("all stored", Duration::from_secs(60), || {
        total_rows(&dbs) == n
    });
    std::thread::sleep(Duration::from_millis(500));
    let reports = stop_cluster(procs);
    assert!(
        reports.iter().all(|r| r.readings_new > 0),
        "both processes took a share of the messages: {reports:?}"
    );
    assert_eq!(reports.iter().map(|r| r.readings_new).sum::<u64>(), n);
    let dups: u64 = reports
        .iter()
        .map(|r| r.dropped.get("duplicate").copied().unwrap_or(0))
        .sum();
    assert_eq!(
        dups,
        reports.iter().map(|r| r.readings_valid).sum::<u64>() - n,
        "only redelivered copies are duplicates"
    );
    assert_eq!(lot_counts(&dbs), expected, "each reading counted once");

    // Restart: the two processes replay what is stored once between them (a shared store split by
    // site); nothing is a duplicate.
    let procs = start_cluster(dir.path(), broker.port, &dbs, &hosts);
    for (_, http) in &procs {
        wait_ready(http);
    }
    std::thread::sleep(Duration::from_millis(500));
    let reports = stop_cluster(procs);
    assert_eq!(
        reports.iter().map(|r| r.replayed_readings).sum::<u64>(),
        n,
        "every stored reading replayed once: {reports:?}"
    );
    assert!(
        reports
            .iter()
            .all(|r| r.dropped.get("duplicate").copied().unwrap_or(0) == 0)
    );
    assert_eq!(
        lot_counts(&dbs),
        expected,
        "same aggregates after the restart"
    );
}
