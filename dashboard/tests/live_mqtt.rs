//! Live updates end to end: a real Mosquitto broker, the dashboard on port 0 with its MQTT bridge, two
//! SSE clients (planner, grid manager) reading `/api/v1/live/stream` over HTTP.

mod common;

use common::*;
use dashboard::DashboardConfig;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::{Duration, Instant};
use telemetry::DeviceKind;
use telemetry::message::{Alert, AlertState};
use telemetry::mqtt::MqttEndpoint;
use telemetry::topic;
use tokio_util::sync::CancellationToken;

/// Reads SSE events (name, data) from a streaming response.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn next(&mut self, deadline: Duration) -> Option<(String, String)> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((name, data));
            }
            let left = until.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }
}

async fn open_stream(base: &str, token: &str) -> SseReader {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/live/stream"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseReader {
        resp,
        buf: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_mqtt_results_filtered_by_role() {
    let Some(broker) = testkit::Mosquitto::start("sse_delivers_mqtt_results_filtered_by_role")
    else {
        return;
    };
    let cfg = DashboardConfig {
        mqtt: MqttEndpoint {
            port: broker.port,
            client_id: "dash-test".into(),
            ..MqttEndpoint::default()
        },
        mqtt_enabled: true,
        ..DashboardConfig::default()
    };
    let f = fixture_with(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(dashboard::serve_with(
        listener,
        f.state.clone(),
        shutdown.clone(),
    ));

    let mut grid = open_stream(&base, &f.grid).await;
    let mut planner = open_stream(&base, &f.planner).await;

    let mut o = MqttOptions::new("publisher", "127.0.0.1", broker.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });

    // Probe until the bridge is subscribed: 15-min lot windows (visible to both) with distinct starts.
    let lot_topic = topic::aggregate("central", DeviceKind::Parking, "lot", "L1", "15m");
    let mut probe_start = 0;
    let mut seen = false;
    for i in 0..50 {
        probe_start = i * 900_000;
        let a = agg(
            DeviceKind::Parking,
            "lot",
            "L1",
            probe_start,
            900_000,
            1,
            &[("occupancy_mean_ratio", 0.1)],
        );
        client
            .publish(
                &lot_topic,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&a).unwrap(),
            )
            .await
            .unwrap();
        if let Some((name, _)) = grid.next(Duration::from_millis(200)).await {
            assert_eq!(name, "aggregate");
            seen = true;
            break;
        }
    }
    assert!(seen, "the bridge never delivered a probe");
    // Drain probes from both streams until the last one sent.
    for s in [&mut grid, &mut planner] {
        while let Some((_, d)) = s.next(Duration::from_millis(500)).await {
            let v: serde_json::Value = serde_json::from_str(&d).unwrap();
            if v["start_ms"] == probe_start {
                break;
            }
        }
    }

    // Now the real messages: a lot window, a household (device-scope grid) window, an alert, junk.
    let t_pub = Instant::now();
    let lot = agg(
        DeviceKind::Parking,
        "lot",
        "L1",
        NOW,
        900_000,
        7,
        &[("occupancy_mean_ratio", 0.42)],
    );
    client
        .publish(
            &lot_topic,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&lot).unwrap(),
        )
        .await
        .unwrap();
    let dev = agg(
        DeviceKind::Grid,
        "device",
        "M1",
        NOW,
        60_000,
        1,
        &[("v_rms_mean_v", 229.5)],
    );
    let dev_topic = topic::aggregate("south", DeviceKind::Grid, "device", "M1", "1m");
    client
        .publish(
            &dev_topic,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&dev).unwrap(),
        )
        .await
        .unwrap();
    client
        .publish(&dev_topic, QoS::AtLeastOnce, false, b"{broken".to_vec())
        .await
        .unwrap();
    let alert = Alert {
        alert: "lot_full".into(),
        state: AlertState::Cleared,
        district: "central".into(),
        site: "L1".into(),
        ts_ms: NOW,
        value: 0.42,
        message: "<b>cleared</b>".into(),
    };
    client
        .publish(
            topic::alert("central", "L1", "lot_full"),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&alert).unwrap(),
        )
        .await
        .unwrap();

    // Grid manager: lot window, device window, alert — exactly these, in order.
    let (n1, d1) = grid.next(Duration::from_secs(5)).await.expect("lot window");
    let latency = t_pub.elapsed();
    assert_eq!(n1, "aggregate");
    let got: telemetry::message::WindowAggregate = serde_json::from_str(&d1).unwrap();
    assert_eq!(got, lot);
    let (n2, d2) = grid
        .next(Duration::from_secs(5))
        .await
        .expect("device window");
    assert_eq!(n2, "aggregate");
    assert_eq!(
        serde_json::from_str::<telemetry::message::WindowAggregate>(&d2).unwrap(),
        dev
    );
    let (n3, d3) = grid.next(Duration::from_secs(5)).await.expect("alert");
    assert_eq!(n3, "alert");
    assert_eq!(serde_json::from_str::<Alert>(&d3).unwrap(), alert);
    assert!(
        grid.next(Duration::from_millis(300)).await.is_none(),
        "nothing else"
    );

    // Planner: the lot window and the alert, never the household window.
    let (p1, pd1) = planner.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (
            p1.as_str(),
            serde_json::from_str::<telemetry::message::WindowAggregate>(&pd1).unwrap()
        ),
        ("aggregate", lot)
    );
    let (p2, _) = planner.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(p2, "alert");
    assert!(
        planner.next(Duration::from_millis(300)).await.is_none(),
        "household data leaked to a planner"
    );
    println!(
        "publish → SSE latency: {:.1} ms",
        latency.as_secs_f64() * 1000.0
    );

    let m = f.state.metrics.render();
    assert!(m.contains("dashboard_sse_clients 2"), "{m}");
    assert!(m.contains("dashboard_mqtt_bad_messages_total 1"), "{m}");
    // Two stream connections were audited.
    let streams = f
        .state
        .access
        .audit_rows(0, 100)
        .unwrap()
        .iter()
        .filter(|r| r.action == "stream")
        .count();
    assert_eq!(streams, 2);

    // Shutdown ends the open streams and the server returns.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server drained")
        .unwrap()
        .unwrap();
    assert!(grid.next(Duration::from_secs(2)).await.is_none());
    assert!(f.state.metrics.render().contains("dashboard_sse_clients 0"));
}
