//! Test harness: a real Mosquitto (from `testkit`) on a free loopback port, a persistent-session subscriber
//! that records every reading key, a frame builder and a registry for a small fleet.
#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telemetry::frame::{Frame, MAX_FRAME_LEN};
use telemetry::message::Status;
use telemetry::{Measurement, ParkingChange};

/// A Mosquitto broker as these tests need it (testkit's broker with persistence, plus unlimited in-flight
/// messages so the broker's window never throttles a replay), or `None` when the test is skipped
/// (testkit prints why; under `CITYBRAIN_REQUIRE_SERVICES=1` it panics instead).
pub fn mosquitto(test: &str) -> Option<testkit::Mosquitto> {
    testkit::Mosquitto::start_with(test, "allow_anonymous true\nmax_inflight_messages 0\n")
}

/// A free UDP port on 127.0.0.1 for the gateway's frame intake (testkit only hands out TCP ports).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reading key.
pub type Key = (String, u32, u32);

/// What the subscriber has seen.
#[derive(Default, Debug)]
pub struct Seen {
    /// Key → number of times received.
    pub keys: HashMap<Key, u32>,
    /// Keys received at least once with `replayed = true`.
    pub replayed: HashSet<Key>,
    /// Gateway status messages, in arrival order.
    pub statuses: Vec<Status>,
    /// Messages on the batch topic.
    pub batches: u64,
    pub subscribed: bool,
}

impl Seen {
    pub fn duplicates(&self) -> u64 {
        self.keys.values().map(|&n| u64::from(n - 1)).sum()
    }
}

/// A persistent-session subscriber (clean session off, re-subscribes when the broker lost the session).
pub struct Subscriber {
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(port: u16, client_id: &str, gateway: &str) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(false);
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 100);
        let mut filters = telemetry::topic::ingest_filters();
        filters.push(telemetry::topic::gateway_status(gateway));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        if !a.session_present {
                            for f in &filters {
                                let _ = client.try_subscribe(f.clone(), QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => s.lock().unwrap().subscribed = true,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut g = s.lock().unwrap();
                        if p.topic.ends_with("/status") {
                            if let Ok(st) = serde_json::from_slice::<Status>(&p.payload) {
                                g.statuses.push(st);
                            }
                            continue;
                        }
                        if p.topic.ends_with("/batch") {
                            g.batches += 1;
                        }
                        let d = telemetry::json::decode(
                            &p.payload,
                            &telemetry::Limits::default(),
                            i64::MAX / 4,
                        )
                        .expect("gateway payload decodes");
                        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
                        for r in d.readings {
                            let k = (r.device.as_str().to_string(), r.boot, r.seq);
                            if r.replayed {
                                g.replayed.insert(k.clone());
                            }
                            *g.keys.entry(k).or_insert(0) += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let sub = Subscriber { seen, task };
        sub.wait_until(Duration::from_secs(10), |s| s.subscribed)
            .await;
        sub
    }

    /// Waits until `f` holds (panics with the state after `timeout`).
    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let g = self.seen.lock().unwrap();
                if f(&g) {
                    return;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timeout; seen {} keys, {} statuses",
                        g.keys.len(),
                        g.statuses.len()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registry: `lots` lots × `per_lot` parking devices on `gateway`, addresses 1.., ids `L{lot}-b{bay:03}`,
/// plus one LoRaWAN device with DevEUI 00000000000000aa.
pub fn registry(gateway: &str, lots: usize, per_lot: usize) -> String {
    let mut s = String::new();
    for l in 0..lots {
        s += &format!(
            "[[lot]]\nid = \"L{l}\"\nname = \"Lot {l}\"\ndistrict = \"central\"\ncapacity = {per_lot}\n\n"
        );
    }
    let mut addr = 1;
    for l in 0..lots {
        for b in 0..per_lot {
            s += &format!(
                "[[device]]\nid = \"L{l}-b{b:03}\"\nkind = \"parking\"\nsite = \"L{l}\"\ngateway = \"{gateway}\"\naddress = {addr}\nreport_interval_s = 3600\n\n"
            );
            addr += 1;
        }
    }
    s.push_str(
        "[[device]]\nid = \"L0-lora\"\nkind = \"parking\"\nsite = \"L0\"\ngateway = \"lns\"\naddress = 1\ndev_eui = \"00000000000000aa\"\nreport_interval_s = 3600\n\n",
    );
    s
}

/// Encodes a parking-change frame (always `occupied = true`, so every reading has the same JSON size).
pub fn frame(addr: u16, boot: u16, seq: u32) -> Vec<u8> {
    let f = Frame {
        addr,
        boot,
        seq,
        age_ds: 10,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: true,
            field_ut: 42.5,
        }),
    };
    let mut b = [0u8; MAX_FRAME_LEN];
    let n = f.encode(&mut b).unwrap();
    b[..n].to_vec()
}

/// Sends frames over UDP, pacing a little so the loopback socket buffer never overflows.
pub async fn send_frames(port: u16, frames: &[Vec<u8>]) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, f) in frames.iter().enumerate() {
        s.send_to(f, ("127.0.0.1", port)).await.unwrap();
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Gateway config for tests: short backoff, spool in `dir`.
pub fn gateway_config(
    dir: &Path,
    broker_port: u16,
    udp_port: u16,
    registry_path: &Path,
) -> edge_agent::GatewayConfig {
    let mut cfg = edge_agent::GatewayConfig {
        gateway_id: "gw-test".into(),
        ..Default::default()
    };
    cfg.mqtt.port = broker_port;
    cfg.mqtt.client_id = format!("gw-test-{broker_port}");
    cfg.mqtt.keep_alive_s = 5;
    cfg.registry_path = registry_path.to_path_buf();
    cfg.spool.path = dir.join("spool.sqlite");
    cfg.udp_listen = Some(format!("127.0.0.1:{udp_port}"));
    cfg.delivery.backoff_initial_ms = 100;
    cfg.delivery.backoff_max_ms = 500;
    cfg.delivery.status_interval_s = 1;
    cfg
}

/// Rows in a spool file (read through SQLite, concurrently with the writer).
pub fn spool_rows(path: &Path) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return -1;
    };
    c.query_row("SELECT COUNT(*) FROM spool", [], |r| r.get(0))
        .unwrap_or(-1)
}
