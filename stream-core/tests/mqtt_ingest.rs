//! Real Mosquitto: good traffic mixed with bad messages → each refusal counted under its reason, the
//! good readings stored exactly once; aggregates come out after shutdown (finite flush).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;
use stream_core::store::{SeriesStore, SqliteStore};
use stream_core::{CoreConfig, run};
use telemetry::{DeviceId, DistrictId, Measurement, ParkingChange, Reading, SiteId, TimeSource};
use tokio_util::sync::CancellationToken;

struct Broker(Child);
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_mosquitto(dir: &std::path::Path, port: u16) -> Option<Broker> {
    let bin = "/usr/sbin/mosquitto";
    if !std::path::Path::new(bin).exists() {
        if std::env::var("CITYBRAIN_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("mosquitto missing and CITYBRAIN_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIP: {bin} not installed");
        return None;
    }
    let conf = dir.join("m.conf");
    let mut f = std::fs::File::create(&conf).unwrap();
    writeln!(f, "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nset_tcp_nodelay true\nuser root", dir.display()).unwrap();
    let broker = Broker(Command::new(bin).arg("-c").arg(&conf).spawn().unwrap());
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(broker);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not start");
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
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(_broker) = start_mosquitto(dir.path(), port) else {
        return;
    };
    let http = free_port();
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
        for _ in 0..100 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").await.unwrap();
                let mut b = String::new();
                let _ = s.read_to_string(&mut b).await;
                if b.contains("200 OK") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
