//! Real Mosquitto: good traffic mixed with bad messages → each refusal counted under its reason, the
//! good readings stored exactly once; aggregates come out after shutdown (finite flush).

use std::time::Duration;
use stream_core::store::{SeriesStore, SqliteStore};
use stream_core::{CoreConfig, run};
use telemetry::{DeviceId, DistrictId, Measurement, ParkingChange, Reading, SiteId, TimeSource};
use tokio_util::sync::CancellationToken;

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

fn reading(seq: u32, ts: i64) -> Reading {
    Reading {
        device: DeviceId::new("L1-b0").unwrap(),
        site: SiteId::new("L1").unwrap(),
        district: DistrictId::new("central").unwrap(),
        boot: 1,
        seq,
        ts_ms: ts,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: seq.is_multiple_of(2),
            field_ut: 40.0,
        }),
    }
}

#[test]
fn bad_messages_counted_good_ones_stored() {
    let Some(broker) = testkit::Mosquitto::start("bad_messages_counted_good_ones_stored") else {
        return;
    };
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_port();
    let db = dir.path().join("core.sqlite");
    let mut cfg = CoreConfig::default();
    cfg.mqtt.port = port;
    cfg.mqtt.client_id = "core-test".into();
    cfg.store.sqlite_path = db.clone();
    cfg.http_addr = format!("127.0.0.1:{http}");
    let shutdown = CancellationToken::new();
    let s2 = shutdown.clone();
    let core = std::thread::spawn(move || run(cfg, s2));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // wait until ready (subscribed)
        let base = format!("http://127.0.0.1:{http}");
        let mut ready = false;
        for _ in 0..100 {
            if let Some((200, _)) = get(&format!("{base}/readyz")).await {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "/readyz never returned 200");
        assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);
        let mut o = rumqttc::MqttOptions::new("pub-test", "127.0.0.1", port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (c, mut el) = rumqttc::AsyncClient::new(o, 100);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        let topic = telemetry::topic::for_reading(&reading(0, 0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut good = 0;
        let q = rumqttc::QoS::AtLeastOnce;
        for i in 0..20u32 {
            let r = reading(i, now - 120_000 + i64::from(i) * 1000);
            c.publish(topic.clone(), q, false, telemetry::json::encode(&[r]))
                .await
                .unwrap();
            good += 1;
        }
        // duplicate of seq 0 (stored once)
        c.publish(
            topic.clone(),
            q,
            false,
            telemetry::json::encode(&[reading(0, now - 120_000)]),
        )
        .await
        .unwrap();
        c.publish(topic.clone(), q, false, b"{\"v\":1,".to_vec())
            .await
            .unwrap(); // malformed
        c.publish(
            topic.clone(),
            q,
            false,
            format!("{}{}", "[".repeat(50), "]".repeat(50)).into_bytes(),
        )
        .await
        .unwrap(); // not_object
        c.publish(
            topic.clone(),
            q,
            false,
            format!(
                "{{\"v\":1,\"readings\":[{{\"a\":{}}}]}}",
                "[".repeat(20) + &"]".repeat(20)
            )
            .into_bytes(),
        )
        .await
        .unwrap(); // too_deep
        c.publish(topic.clone(), q, false, vec![b' '; 70_000])
            .await
            .unwrap(); // too_large
        c.publish(
            topic.clone(),
            q,
            false,
            b"{\"v\":1,\"readings\":[{\"x\":NaN}]}".to_vec(),
        )
        .await
        .unwrap(); // non_finite
        let mut secs = reading(100, now / 1000);
        secs.ts_ms = now / 1000;
        c.publish(topic.clone(), q, false, telemetry::json::encode(&[secs]))
            .await
            .unwrap(); // ts_seconds
        c.publish(
            topic.clone(),
            q,
            false,
            telemetry::json::encode(&[reading(101, now + 3_600_000)]),
        )
        .await
        .unwrap(); // ts_future
        assert_eq!(good, 20);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (status, text) = get(&format!("{base}/metrics")).await.unwrap();
        assert_eq!(status, 200);
        for line in [
            "citybrain_core_readings_stored_total 20",
            "citybrain_core_readings_valid_total 21",
            "citybrain_core_messages_total 28",
            "citybrain_core_rejected_total{reason=\"malformed_json\"} 1",
            "citybrain_core_rejected_total{reason=\"ts_future\"} 1",
            "citybrain_core_rejected_by_source_total{source=\"L1-b0\",reason=\"ts_seconds\"} 1",
            "citybrain_core_storage_ok 1",
            "citybrain_core_subscribes_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    });
    shutdown.cancel();
    let report = core.join().unwrap().unwrap();
    let store = SqliteStore::open(&db).unwrap();
    let counts = store.reading_counts().unwrap();
    assert_eq!(counts.rows, 20, "good readings stored once");
    assert_eq!(report.readings_valid, 21);
    assert_eq!(report.readings_new, 20);
    for reason in [
        "malformed_json",
        "not_object",
        "too_deep",
        "too_large",
        "non_finite",
        "ts_seconds",
        "ts_future",
    ] {
        assert_eq!(
            report.rejected.get(reason),
            Some(&1),
            "{reason}: {:?}",
            report.rejected
        );
    }
    assert_eq!(report.rejected.values().sum::<u64>(), 7);
    assert_eq!(report.dropped.get("duplicate"), Some(&1));
    assert_eq!(store.recent_dead_letters(0, 100).unwrap().len(), 7);
    // The finite flush at shutdown closed the windows: lot rows exist and count 20 readings in total.
    let rows = store
        .latest_aggregates(telemetry::DeviceKind::Parking, "lot", 900_000, None)
        .unwrap();
    assert!(!rows.is_empty(), "aggregates written");
    assert!(report.aggregates > 0);
}
