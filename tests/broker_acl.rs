//! `citybrain broker-config` against a real Mosquitto: a gateway cannot publish on another gateway's
//! device topics, and clients without valid credentials are refused.

use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use telemetry::registry::Registry;

const REGISTRY: &str = r#"
[[lot]]
id = "L1"
name = "Lot one"
district = "central"
capacity = 10
[[lot]]
id = "L2"
name = "Lot two"
district = "north"
capacity = 10
[[device]]
id = "a1"
kind = "parking"
site = "L1"
gateway = "gw-a"
address = 1
report_interval_s = 3600
[[device]]
id = "b1"
kind = "parking"
site = "L2"
gateway = "gw-b"
address = 1
report_interval_s = 3600
"#;

/// What a connection's event loop thread reports.
#[derive(Debug, PartialEq)]
enum Seen {
    ConnAck(ConnectReturnCode),
    SubAck,
    Publish(String),
    Closed,
}

/// Connects and drives the connection on its own thread, forwarding what matters to a channel.
fn connect(port: u16, id: &str, user: &str, password: &str) -> (Client, Receiver<Seen>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(o, 10);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            let seen = match ev {
                Ok(Event::Incoming(Packet::ConnAck(c))) => Seen::ConnAck(c.code),
                Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish(p.topic),
                Ok(_) => continue,
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Seen::ConnAck(code),
                Err(_) => Seen::Closed,
            };
            let stop = !matches!(
                seen,
                Seen::ConnAck(ConnectReturnCode::Success) | Seen::SubAck | Seen::Publish(_)
            );
            if tx.send(seen).is_err() || stop {
                break;
            }
        }
    });
    (client, rx)
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or(Seen::Closed)
}

#[test]
fn gateway_is_confined_to_its_own_topics_and_strangers_are_refused() {
    let reg = Registry::from_toml(REGISTRY).unwrap();
    let out = tempfile::tempdir().unwrap();
    citybrain::cli::write_broker_config(&reg, out.path()).unwrap();
    let conf = std::fs::read_to_string(out.path().join("mosquitto.conf")).unwrap();
    let Some(broker) = testkit::Mosquitto::start_with("broker_acl", &conf) else {
        return;
    };
    let creds: BTreeMap<String, String> =
        toml::from_str(&std::fs::read_to_string(out.path().join("credentials.toml")).unwrap())
            .unwrap();

    // The core subscribes to everything.
    let (core, core_rx) = connect(
        broker.port,
        "core",
        "citybrain-core",
        &creds["citybrain-core"],
    );
    assert_eq!(next(&core_rx), Seen::ConnAck(ConnectReturnCode::Success));
    core.subscribe("citybrain/v1/#", QoS::AtLeastOnce).unwrap();
    assert_eq!(next(&core_rx), Seen::SubAck);

    // Gateway A publishes on its own device's topic, on gateway B's device topic, then a marker.
    let (gw, gw_rx) = connect(broker.port, "gw-a", "gw-a", &creds["gw-a"]);
    assert_eq!(next(&gw_rx), Seen::ConnAck(ConnectReturnCode::Success));
    let own = "citybrain/v1/central/parking/a1/telemetry";
    let foreign = "citybrain/v1/north/parking/b1/telemetry";
    let marker = "citybrain/v1/gateway/gw-a/status";
    gw.publish(own, QoS::AtLeastOnce, false, "1").unwrap();
    gw.publish(foreign, QoS::AtLeastOnce, false, "2").unwrap();
    // Mosquitto 2.0.11 answers a denied QoS 1 publish with a PUBACK carrying reason code 135 even on
    // MQTT 3.1.1, which rumqttc's 3.1.1 parser treats as malformed: the connection drops. That drop is
    // the sign the broker has processed (and refused) the foreign publish.
    let mut dropped = false;
    while let Ok(ev) = gw_rx.recv_timeout(Duration::from_secs(5)) {
        if ev == Seen::Closed {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the broker should have refused the foreign publish"
    );
    let (gw2, gw2_rx) = connect(broker.port, "gw-a-2", "gw-a", &creds["gw-a"]);
    assert_eq!(next(&gw2_rx), Seen::ConnAck(ConnectReturnCode::Success));
    gw2.publish(marker, QoS::AtLeastOnce, false, "3").unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|t| t == marker) && Instant::now() < deadline {
        if let Ok(Seen::Publish(t)) = core_rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(t);
        }
    }
    // Mosquitto delivers in order per publisher, so once the marker is in, the foreign one never comes.
    assert_eq!(seen, vec![own.to_string(), marker.to_string()]);

    // A stranger, and a known user with a wrong password, are refused.
    let (_c, stranger) = connect(broker.port, "x", "mallory", "guess");
    assert_eq!(
        next(&stranger),
        Seen::ConnAck(ConnectReturnCode::NotAuthorized)
    );
    let (_c, wrong) = connect(broker.port, "y", "gw-b", "not-the-password");
    assert_eq!(
        next(&wrong),
        Seen::ConnAck(ConnectReturnCode::NotAuthorized)
    );
}
