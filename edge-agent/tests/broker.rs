//! Delivery against a real Mosquitto: outage, kill -9, spool overflow, malformed input.
//!
//! Outages are short (3 s) to keep wall time modest; the code paths are the same for long ones (the
//! backoff cap only changes how long the reconnect waits). Skips with a printed reason when Mosquitto is
//! missing, unless `CITYBRAIN_REQUIRE_SERVICES=1`.

mod common;

use common::*;
use edge_agent::counters::Counters;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-test";

fn keys(range: std::ops::Range<u32>, devices: usize) -> Vec<Key> {
    range
        .map(|i| {
            (
                format!(
                    "L{}-b{:03}",
                    (i as usize % devices) / 5,
                    (i as usize % devices) % 5
                ),
                1,
                i,
            )
        })
        .collect()
}

fn frames(range: std::ops::Range<u32>, devices: usize) -> Vec<Vec<u8>> {
    range
        .map(|i| frame((i as usize % devices) as u16 + 1, 1, i))
        .collect()
}

async fn wait_counter(c: &Counters, f: impl Fn(&Counters) -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f(c) {
        assert!(
            std::time::Instant::now() < deadline,
            "timeout waiting for {what}: {:?}",
            c.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_delivers_every_reading_once_per_key() {
    let Some(mut broker) = mosquitto("broker_outage") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, registry(GW, 2, 5)).unwrap();
    let sub = Subscriber::start(broker.port, "sub-outage", GW).await;
    let udp = free_udp_port();
    let cfg = gateway_config(dir.path(), broker.port, udp, &reg);
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let gw = tokio::spawn(edge_agent::run_gateway_with(
        cfg,
        stop.clone(),
        counters.clone(),
    ));
    wait_counter(&counters, |c| Counters::get(&c.connects) >= 1, "connect").await;

    // 300 readings with the broker up.
    send_frames(udp, &frames(0..300, 10)).await;
    wait_counter(&counters, |c| Counters::get(&c.acked) >= 300, "300 acked").await;
    // Broker down: the gateway notices, then 400 more readings go to the spool only.
    broker.stop();
    wait_counter(
        &counters,
        |c| Counters::get(&c.reconnects) >= 1,
        "disconnect noticed",
    )
    .await;
    send_frames(udp, &frames(300..700, 10)).await;
    wait_counter(
        &counters,
        |c| Counters::get(&c.readings_in) >= 700,
        "700 spooled",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    wait_counter(&counters, |c| Counters::get(&c.connects) >= 2, "reconnect").await;
    send_frames(udp, &frames(700..1000, 10)).await;

    let want: HashSet<Key> = keys(0..1000, 10).into_iter().collect();
    sub.wait_until(Duration::from_secs(30), |s| {
        want.iter().all(|k| s.keys.contains_key(k))
    })
    .await;
    wait_counter(
        &counters,
        |c| Counters::get(&c.spool_depth) == 0,
        "spool empty",
    )
    .await;
    {
        let seen = sub.seen.lock().unwrap();
        let extra: Vec<&Key> = seen.keys.keys().filter(|k| !want.contains(*k)).collect();
        assert!(extra.is_empty(), "unexpected keys {extra:?}");
        // Exactly the readings produced during the outage came from the spool marked replayed.
        let outage: HashSet<Key> = keys(300..700, 10).into_iter().collect();
        assert_eq!(seen.replayed, outage);
        eprintln!(
            "outage: 1000 keys delivered, {} duplicates, {} batch messages, counters {:?}",
            seen.duplicates(),
            seen.batches,
            counters.snapshot()
        );
    }
    stop.cancel();
    gw.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_full_drops_oldest_with_exact_count_in_status() {
    let Some(mut broker) = mosquitto("spool_full") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, registry(GW, 2, 5)).unwrap();
    // The subscriber's persistent session exists before the outage, so it gets what the gateway sends
    // as soon as the broker is back.
    let sub = Subscriber::start(broker.port, "sub-full", GW).await;
    broker.stop();

    // Seq 1000..1200 all encode to the same length, so every spooled reading has the same size. The
    // size is computed here from serde, independently of the spool's accounting.
    let sample = telemetry::Reading {
        device: "L0-b000".parse().unwrap(),
        site: "L0".parse().unwrap(),
        district: "central".parse().unwrap(),
        boot: 1,
        seq: 1000,
        ts_ms: 1_700_000_000_000,
        time_source: telemetry::TimeSource::Device,
        replayed: false,
        data: telemetry::Measurement::ParkingChange(telemetry::ParkingChange {
            occupied: true,
            field_ut: 42.5,
        }),
    };
    let one = serde_json::to_vec(&sample).unwrap().len() as u64;
    let keep = 50u64;
    let udp = free_udp_port();
    let mut cfg = gateway_config(dir.path(), broker.port, udp, &reg);
    cfg.spool.max_bytes = one * keep;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let spool_path = cfg.spool.path.clone();
    let gw = tokio::spawn(edge_agent::run_gateway_with(
        cfg,
        stop.clone(),
        counters.clone(),
    ));
    // The UDP socket is bound before the spool file is created.
    while !spool_path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Devices with 7-character ids only (L0-b000..L1-b004 are all 7).
    send_frames(udp, &frames(1000..1200, 10)).await;
    wait_counter(
        &counters,
        |c| Counters::get(&c.readings_in) >= 200,
        "200 spooled",
    )
    .await;
    assert_eq!(Counters::get(&counters.spool_dropped_overflow), 200 - keep);
    assert_eq!(Counters::get(&counters.spool_depth), keep);

    broker.restart();
    let newest: HashSet<Key> = keys(1150..1200, 10).into_iter().collect();
    sub.wait_until(Duration::from_secs(30), |s| {
        newest.iter().all(|k| s.keys.contains_key(k))
            && s.statuses.iter().any(|st| {
                st.state == "online" && st.counters.get("spool_dropped_overflow") == Some(&150)
            })
    })
    .await;
    let got: HashSet<Key> = sub.seen.lock().unwrap().keys.keys().cloned().collect();
    assert_eq!(got, newest, "exactly the newest 50 survive");
    stop.cancel();
    gw.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_and_bad_uplinks_are_counted_and_survived() {
    let Some(broker) = mosquitto("malformed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, registry(GW, 2, 5)).unwrap();
    let sub = Subscriber::start(broker.port, "sub-bad", GW).await;
    let udp = free_udp_port();
    let mut cfg = gateway_config(dir.path(), broker.port, udp, &reg);
    cfg.lorawan.enabled = true;
    cfg.lorawan.profiles.insert(
        "libelium".into(),
        edge_agent::intake::lorawan::PayloadDecoder::LibeliumParkingV2,
    );
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let gw = tokio::spawn(edge_agent::run_gateway_with(
        cfg,
        stop.clone(),
        counters.clone(),
    ));
    wait_counter(&counters, |c| Counters::get(&c.connects) >= 1, "connect").await;

    let good = frame(1, 1, 5);
    let mut bad_crc = frame(2, 1, 6);
    bad_crc[12] ^= 0x40;
    let mut too_long = frame(3, 1, 7);
    too_long.push(0);
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],                 // empty: bad_frame
        vec![0xFF, 0xFF, 0xFF], // version 15: bad_frame
        vec![0x11],             // incomplete: bad_frame
        vec![0x1F; 20],         // type 15: bad_frame
        too_long,               // trailing byte: bad_frame
    ];
    bad.push(bad_crc.clone());
    bad.push(bad_crc.clone());
    bad.push(bad_crc); // 3 × bad_crc
    bad.push(frame(999, 1, 1)); // unknown address
    bad.push(frame(1000, 1, 1)); // unknown address
    send_frames(udp, &bad).await;
    send_frames(udp, &[good]).await;

    // LoRaWAN uplinks, published by a ChirpStack stand-in on the integration topic.
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let up = |eui: &str, profile: &str, data: &str, fcnt: u32| {
        format!(
            r#"{{"deviceInfo":{{"devEui":"{eui}","deviceProfileName":"{profile}"}},"fCnt":{fcnt},"data":"{data}","rxInfo":[{{"rssi":-90,"snr":5.0}}]}}"#
        )
    };
    let mut lib = [0u8; 11];
    lib[0] = 0x80; // occupied, info frame
    let uplinks = vec![
        up("00000000000000aa", "libelium", &b64(&lib), 11), // ok
        up("00000000000000AA", "citybrain", &b64(&frame(77, 2, 12)), 12), // ok: own frame, boot 2 seq 12
        "not json".to_string(),                                           // bad_uplink
        up("00000000000000ab", "libelium", &b64(&lib), 13),               // unknown_device
        up("00000000000000aa", "libelium", "@@@", 14),                    // bad_uplink (base64)
        up("00000000000000aa", "libelium", &b64(&lib[..5]), 15),          // bad_uplink (length)
    ];
    let mut o = rumqttc::MqttOptions::new("chirpstack", "127.0.0.1", broker.port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 16);
    let pubs = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                break;
            }
        }
    });
    for u in &uplinks {
        client
            .publish(
                "application/1/device/x/event/up",
                rumqttc::QoS::AtLeastOnce,
                false,
                u.clone(),
            )
            .await
            .unwrap();
    }

    let want: HashSet<Key> = [
        ("L0-b000".to_string(), 1, 5),
        ("L0-lora".to_string(), 0, 11),
        ("L0-lora".to_string(), 2, 12),
    ]
    .into_iter()
    .collect();
    sub.wait_until(Duration::from_secs(20), |s| {
        want.iter().all(|k| s.keys.contains_key(k))
    })
    .await;
    wait_counter(
        &counters,
        |c| Counters::get(&c.bad_uplink) + Counters::get(&c.unknown_device) >= 6,
        "uplinks counted",
    )
    .await;
    let s = counters.snapshot();
    assert_eq!(s["bad_frame"], 5);
    assert_eq!(s["bad_crc"], 3);
    assert_eq!(s["unknown_device"], 2 + 1);
    assert_eq!(s["bad_uplink"], 3);
    assert_eq!(s["frames_ok"], 3);
    let got: HashSet<Key> = sub.seen.lock().unwrap().keys.keys().cloned().collect();
    assert_eq!(got, want);
    pubs.abort();
    stop.cancel();
    gw.await.unwrap().unwrap();
}
