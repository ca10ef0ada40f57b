//! The fleet simulator end to end: firmware sims on real data → spool → Mosquitto → a subscriber; and the
//! gateway delivering through the embedded rumqttd broker.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_delivers_every_reading_through_the_broker() {
    let Some(broker) = mosquitto("simulator") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::start(broker.port, "sub-sim", "gw-sim").await;
    let reg_out = dir.path().join("sim-registry.toml");
    let mut cfg = edge_agent::SimConfig {
        data_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"),
        registry_out: Some(reg_out.clone()),
        lots: 2,
        bays_per_lot: 4,
        meters: 2,
        districts: 2,
        speed: 0.0,
        days: Some(0.05), // 72 sim minutes
        duplicate_ratio: 0.05,
        loss_ratio: 0.05,
        ..edge_agent::SimConfig::default()
    };
    cfg.mqtt.port = broker.port;
    cfg.spool.path = dir.path().join("sim-spool.sqlite");
    cfg.delivery.drain_timeout_ms = 20_000;
    let report = edge_agent::run_simulator(cfg, CancellationToken::new())
        .await
        .unwrap();
    eprintln!("simulator report: {report:?}");
    assert_eq!(report.spool_left, 0);
    assert_eq!(report.frames_refused, 0);
    let distinct = report.readings - report.frames_duplicated;
    assert!(distinct > 100, "{report:?}");
    sub.wait_until(Duration::from_secs(20), |s| s.keys.len() as u64 >= distinct)
        .await;
    let seen = sub.seen.lock().unwrap();
    assert_eq!(
        seen.keys.len() as u64,
        distinct,
        "every distinct reading arrives"
    );
    // Every device in the written registry is a parking bay or a meter of the fleet.
    let reg = telemetry::registry::Registry::load(&reg_out).unwrap();
    assert_eq!(reg.devices.len(), 2 * 4 + 2);
    assert!(reg.lots.iter().all(|l| l.capacity == 4));
    let ids: HashSet<&str> = reg.devices.iter().map(|d| d.id.as_str()).collect();
    assert!(seen.keys.keys().all(|k| ids.contains(k.0.as_str())));
    let per_device: HashMap<&str, usize> = seen.keys.keys().fold(HashMap::new(), |mut m, k| {
        *m.entry(k.0.as_str()).or_default() += 1;
        m
    });
    // Meters send a summary a minute: 2 × ~72 minus 5 % loss.
    assert!(
        per_device
            .iter()
            .filter(|(d, _)| d.contains("-m"))
            .all(|(_, n)| *n > 50),
        "{per_device:?}"
    );
}

/// The embedded rumqttd broker (limits set explicitly; PITFALLS.md: defaults are all zero).
fn rumqttd_config(port: u16) -> rumqttd::Config {
    let conn = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: 1 << 20,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        tls: None,
        next_connection_delay_ms: 1,
        connections: conn,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some([("v4".to_string(), server)].into_iter().collect()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_delivers_through_embedded_rumqttd() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let cfg = rumqttd_config(port);
    std::thread::spawn(move || {
        let mut b = rumqttd::Broker::new(cfg);
        let _ = b.start();
    });
    testkit::wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    let sub = Subscriber::start(port, "sub-rumqttd", "gw-test").await;
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, registry("gw-test", 2, 5)).unwrap();
    let udp = free_udp_port();
    let cfg = gateway_config(dir.path(), port, udp, &reg);
    let counters = std::sync::Arc::new(edge_agent::counters::Counters::default());
    let stop = CancellationToken::new();
    let gw = tokio::spawn(edge_agent::run_gateway_with(
        cfg,
        stop.clone(),
        counters.clone(),
    ));
    while edge_agent::counters::Counters::get(&counters.connects) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames: Vec<Vec<u8>> = (0..300u32)
        .map(|i| frame((i % 10) as u16 + 1, 1, i))
        .collect();
    send_frames(udp, &frames).await;
    let want: HashSet<Key> = (0..300u32)
        .map(|i| (format!("L{}-b{:03}", (i % 10) / 5, (i % 10) % 5), 1, i))
        .collect();
    sub.wait_until(Duration::from_secs(20), |s| {
        want.iter().all(|k| s.keys.contains_key(k))
    })
    .await;
    assert_eq!(sub.seen.lock().unwrap().keys.len(), 300);
    stop.cancel();
    gw.await.unwrap().unwrap();
}
