//! Real-browser test: Debian's headless Chromium through chromedriver (fantoccini, plain HTTP).
//! Signs in, sees a value published on MQTT appear on the live page, runs a history query and fetches
//! its CSV link, and saves a screenshot of each page under `target/test-output/dashboard/`.

mod common;

use common::*;
use dashboard::DashboardConfig;
use fantoccini::{ClientBuilder, Locator};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use telemetry::DeviceKind;
use telemetry::mqtt::MqttEndpoint;
use telemetry::topic;
use tokio_util::sync::CancellationToken;

const TEST: &str = "pages_in_headless_chromium";

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/dashboard");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn wait_text(
    c: &fantoccini::Client,
    css: &str,
    want: impl Fn(&str) -> bool,
    secs: u64,
) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < until {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if want(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting on {css}; last text {last:?}");
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(out_dir().join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_headless_chromium() {
    let Some(driver) = testkit::Chromedriver::start(TEST) else {
        return;
    };
    let Some(broker) = testkit::Mosquitto::start(TEST) else {
        return;
    };
    let cfg = DashboardConfig {
        mqtt: MqttEndpoint {
            port: broker.port,
            client_id: "dash-browser".into(),
            ..MqttEndpoint::default()
        },
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

    let profile = tempfile::tempdir().unwrap();
    // testkit's headless arguments, with this test's taller window (the screenshots show whole pages).
    let args: Vec<String> = testkit::Chromedriver::chromium_args(profile.path())
        .into_iter()
        .map(|a| {
            if a.starts_with("--window-size=") {
                "--window-size=1280,1400".to_string()
            } else {
                a
            }
        })
        .collect();
    let chromium = testkit::find_program("chromium").expect("checked by Chromedriver::start");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .expect("chromedriver session");

    // Live page: sign in with the admin token.
    c.goto(&format!("{base}/")).await.unwrap();
    let input = c.wait().for_element(Locator::Css("#token")).await.unwrap();
    input.send_keys(&f.admin).await.unwrap();
    c.find(Locator::Css("#signin button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#whoami", |t| t.contains("admin"), 10).await;
    // The snapshot shows L1's newest 1-min window (0.75).
    wait_text(&c, "#occ-L1", |t| t == "75%", 10).await;
    wait_text(&c, "#stream-state", |t| t.starts_with("connected"), 10).await;
    // The lot name with markup is shown as text, not parsed.
    let bars = c
        .find(Locator::Css("#bars"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(bars.contains("Lot <One>"), "{bars}");

    // Publish a new window on MQTT; the page shows it.
    let mut o = MqttOptions::new("browser-publisher", "127.0.0.1", broker.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let a = agg(
        DeviceKind::Parking,
        "lot",
        "L1",
        NOW,
        60_000,
        5,
        &[("occupancy_mean_ratio", 0.42)],
    );
    let t = topic::aggregate("central", DeviceKind::Parking, "lot", "L1", "1m");
    let payload = serde_json::to_vec(&a).unwrap();
    let t0 = Instant::now();
    let mut shown = false;
    // Re-publish (same value) until the bridge's subscription is active.
    for _ in 0..40 {
        client
            .publish(&t, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        if c.find(Locator::Css("#occ-L1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            == "42%"
        {
            shown = true;
            break;
        }
    }
    assert!(shown, "published value never appeared");
    println!(
        "MQTT publish → visible on the live page: {:.0} ms (incl. subscription start-up)",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    shot(&c, "live.png").await;

    // History page: 15-min rows of L1, then the CSV link.
    let url =
        format!("{base}/history?series=parking%7Clot%7CL1&from_ms={T0}&to_ms={NOW}&resolution=15m");
    c.goto(&url).await.unwrap();
    wait_text(&c, "#query-msg", |t| t == "5 rows", 15).await;
    let table = c
        .find(Locator::Css("#history-table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(table.contains("2024-03-01 10:00:00Z"), "{table}");
    assert!(table.contains("0.200"), "{table}");
    // The chart is drawn from the `layout=columns` arrays the page fetched.
    c.find(Locator::Css("#chart canvas"))
        .await
        .expect("history chart drawn");
    let href = c
        .find(Locator::Css("#csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.contains("format=csv"));
    let csv = c
        .execute(
            "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text());",
            vec![serde_json::json!(href)],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap().to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert_eq!(
        lines[1],
        format!("2024-03-01T10:00:00Z,{T0},900000,1,1,0.3,0.2")
    );
    std::fs::write(out_dir().join("history.csv"), &csv).unwrap();
    shot(&c, "history.png").await;

    // Governance: catalog, scorecard, dead letters (the <script> payload stays text), access log.
    c.goto(&format!("{base}/governance")).await.unwrap();
    wait_text(&c, "#catalog-table", |t| t.contains("grid_raw"), 10).await;
    wait_text(
        &c,
        "#dead-letter-table",
        |t| t.contains("<script>alert(1)</script>"),
        10,
    )
    .await;
    wait_text(&c, "#access-table", |t| t.contains("export_csv"), 10).await;
    wait_text(&c, "#scorecard-table", |t| t.contains("L1-b0"), 10).await;
    shot(&c, "governance.png").await;

    // Open data page.
    c.goto(&format!("{base}/open-data")).await.unwrap();
    wait_text(
        &c,
        "#sample-live",
        |t| t.contains("urn:ngsi-ld:OffStreetParking:L1"),
        10,
    )
    .await;
    shot(&c, "open-data.png").await;

    // No script was blocked by the CSP and nothing failed in the console on these pages.
    let errs = c
        .execute("return (window.__cspViolations || []).length;", vec![])
        .await
        .unwrap();
    assert_eq!(errs, serde_json::json!(0));

    c.close().await.unwrap();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    println!("screenshots in {}", out_dir().display());
}
