//! API tests through `app()` (tower `oneshot`), against a real SQLite store filled with known rows.
//! Expected values are computed by hand in the comments.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use dashboard::DashboardConfig;
use serde_json::Value;
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(s) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(s.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = dashboard::app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(f: &Fixture, uri: &str, token: Option<&str>) -> Resp {
    call(f, "GET", uri, token, None).await
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn audit_count(f: &Fixture) -> i64 {
    f.state.access.audit_count().unwrap()
}

#[tokio::test]
async fn history_hourly_rollup_by_hand_and_audited() {
    let f = fixture();
    let uri = format!(
        "/api/v1/history?kind=parking&scope=lot&id=L1&from_ms={T0}&to_ms={}&resolution=1h",
        T0 + 7_200_000
    );
    let before = audit_count(&f);
    let r = get(&f, &uri, Some(&f.planner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    // Hour 1: counts 1,1,2,4 → 8; mean (0.2·1 + 0.4·1 + 0.5·2 + 0.8·4) / 8 = 4.8 / 8 = 0.6; max 0.9; arrivals 1+2+3+4 = 10.
    assert_eq!(rows[0]["start_ms"], T0);
    assert_eq!(rows[0]["window_ms"], 3_600_000);
    assert_eq!(rows[0]["count"], 8);
    assert!(close(
        rows[0]["metrics"]["occupancy_mean_ratio"].as_f64().unwrap(),
        0.6
    ));
    assert_eq!(rows[0]["metrics"]["occupancy_max_ratio"], 0.9);
    assert_eq!(rows[0]["metrics"]["arrivals"], 10.0);
    // Hour 2: the single row at T0+1h.
    assert_eq!(rows[1]["count"], 2);
    assert_eq!(rows[1]["metrics"]["occupancy_mean_ratio"], 0.1);
    assert_eq!(audit_count(&f), before + 1);
    let log = f.state.access.audit_rows(0, 1).unwrap();
    assert_eq!(log[0].dataset, "parking_aggregates");
    assert_eq!(log[0].action, "history");
    assert_eq!(log[0].rows, 2);
    assert_eq!(log[0].role, "planner");
    assert_eq!(log[0].purpose, "testing");
    assert_eq!((log[0].from_ms, log[0].to_ms), (T0, T0 + 7_200_000));
}

#[tokio::test]
async fn history_daily_and_15m_and_csv() {
    let f = fixture();
    // 1 d: all five 15-min rows fall on 2024-03-01: count 10, mean (4.8 + 0.1·2) / 10 = 0.5, arrivals 15.
    let uri = format!(
        "/api/v1/history?kind=parking&scope=lot&id=L1&from_ms={T0}&to_ms={NOW}&resolution=1d"
    );
    let r = get(&f, &uri, Some(&f.planner)).await;
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["start_ms"], 1_709_251_200_000i64); // 2024-03-01T00:00:00Z
    assert_eq!(rows[0]["count"], 10);
    assert!(close(
        rows[0]["metrics"]["occupancy_mean_ratio"].as_f64().unwrap(),
        0.5
    ));
    assert_eq!(rows[0]["metrics"]["arrivals"], 15.0);
    // 15 m: the five rows as stored.
    let uri = format!(
        "/api/v1/history?scope=lot&id=L1&from_ms={T0}&to_ms={NOW}&resolution=15m&format=csv"
    );
    let r = get(&f, &uri, Some(&f.planner)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "start_utc,start_ms,window_ms,count,arrivals,occupancy_max_ratio,occupancy_mean_ratio"
    );
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[1],
        format!("2024-03-01T10:00:00Z,{T0},900000,1,1,0.3,0.2")
    );
    let log = f.state.access.audit_rows(0, 1).unwrap();
    assert_eq!((log[0].action.as_str(), log[0].rows), ("export_csv", 5));
}

/// `layout=columns` carries the same windows as the default rows, at every resolution: rebuilt here
/// into rows by hand (a `null` entry is a metric the window lacks) and compared with the row body.
#[tokio::test]
async fn history_columns_layout_equals_rows() {
    let f = fixture();
    for res in ["15m", "1h", "1d"] {
        let base =
            format!("/api/v1/history?scope=lot&id=L1&from_ms={T0}&to_ms={NOW}&resolution={res}");
        let rows = get(&f, &base, Some(&f.planner)).await.json();
        let cols = get(&f, &format!("{base}&layout=columns"), Some(&f.planner))
            .await
            .json();
        let want = rows["rows"].as_array().unwrap();
        assert!(!want.is_empty(), "{res}");
        for k in ["kind", "scope", "id", "resolution", "from_ms", "to_ms"] {
            assert_eq!(cols[k], rows[k], "{res} {k}");
        }
        let n = cols["start_ms"].as_array().unwrap().len();
        assert_eq!(n, want.len(), "{res}");
        let mut rebuilt = Vec::new();
        for i in 0..n {
            let mut metrics = serde_json::Map::new();
            for (name, col) in cols["metrics"].as_object().unwrap() {
                assert_eq!(col.as_array().unwrap().len(), n, "{res} {name}");
                if !col[i].is_null() {
                    metrics.insert(name.clone(), col[i].clone());
                }
            }
            rebuilt.push(serde_json::json!({
                "kind": cols["kind"], "scope": cols["scope"], "id": cols["id"],
                "district": cols["district"][i], "start_ms": cols["start_ms"][i],
                "window_ms": cols["window_ms"], "version": cols["version"][i],
                "count": cols["count"][i], "metrics": metrics,
            }));
        }
        assert_eq!(&rebuilt, want, "{res}");
    }
    // Both reads were audited with their window counts.
    let log = f.state.access.audit_rows(0, 10).unwrap();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|r| r.action == "history" && r.rows > 0));
    // A layout only applies to JSON, and only `rows` / `columns` exist.
    for (q, msg) in [
        ("layout=columns&format=csv", "format=json only"),
        ("layout=table", "expected rows or columns"),
    ] {
        let r = get(
            &f,
            &format!("/api/v1/history?scope=lot&id=L1&from_ms={T0}&to_ms={NOW}&{q}"),
            Some(&f.planner),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json()["param"], "layout", "{q}");
        assert!(r.text().contains(msg), "{q}: {}", r.text());
    }
}

#[tokio::test]
async fn resolution_and_scope_rules() {
    let f = fixture();
    // Planner token's finest is 15m: 1m is refused with the reason.
    let uri = format!("/api/v1/history?scope=lot&id=L1&from_ms={T0}&to_ms={NOW}&resolution=1m");
    let r = get(&f, &uri, Some(&f.planner)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("resolution 15m or coarser"),
        "{}",
        r.text()
    );
    // 1m allowed for the narrow token (finest 1m): rows NOW-20m and NOW-10m.
    let r = get(&f, &uri, Some(&f.narrow)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["rows"].as_array().unwrap().len(), 2);
    // Narrow token has no grid aggregates.
    let g = format!("/api/v1/history?scope=feeder&id=F1&from_ms={T0}&to_ms={NOW}&resolution=1m");
    let r = get(&f, &g, Some(&f.narrow)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("not granted dataset `grid_aggregates`"));
    // Household-level (grid device scope) never reaches a planner, even at 15m.
    let d = format!("/api/v1/history?scope=device&id=M1&from_ms={T0}&to_ms={NOW}&resolution=15m");
    let r = get(&f, &d, Some(&f.planner)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("household-level"), "{}", r.text());
    // ... but does reach the grid manager: one 1-min row.
    let d1 = format!("/api/v1/history?scope=device&id=M1&from_ms={T0}&to_ms={NOW}&resolution=1m");
    let r = get(&f, &d1, Some(&f.grid)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["rows"][0]["metrics"]["v_rms_mean_v"], 229.0);
    // Public: aggregates refused.
    let r = get(&f, &uri.replace("1m", "1h"), Some(&f.public)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("open-data product only"));
}

#[tokio::test]
async fn raw_readings_by_role() {
    let f = fixture();
    let from = NOW - 3_600_000;
    let uri = format!("/api/v1/readings?device=M1&from_ms={from}&to_ms={NOW}");
    let r = get(&f, &uri, Some(&f.grid)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["readings"].as_array().unwrap().len(), 2);
    for t in [&f.planner, &f.public] {
        let r = get(&f, &uri, Some(t)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(
            r.text()
                .contains("household-level grid readings are restricted"),
            "{}",
            r.text()
        );
    }
    // Parking site, CSV, admin: three readings.
    let r = get(
        &f,
        &format!("/api/v1/readings?site=L1&from_ms={from}&to_ms={NOW}&format=csv"),
        Some(&f.admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text().lines().count(), 4);
    let log = f.state.access.audit_rows(0, 1).unwrap();
    assert_eq!((log[0].dataset.as_str(), log[0].rows), ("parking_raw", 3));
    // Unknown device: 404; both device and site: 400 naming `device`.
    assert_eq!(
        get(&f, "/api/v1/readings?device=nope", Some(&f.grid))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = get(&f, "/api/v1/readings?device=M1&site=F1", Some(&f.grid)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["param"], "device");
}

#[tokio::test]
async fn authentication_failures() {
    let f = fixture();
    let uri = "/api/v1/me";
    assert_eq!(get(&f, uri, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&f, uri, Some("garbage")).await.json()["message"],
        "malformed token (expected cb_<id>_<secret>)"
    );
    assert_eq!(
        get(&f, uri, Some(&f.expired)).await.json()["message"],
        "token expired"
    );
    assert_eq!(
        get(&f, uri, Some(&f.revoked)).await.json()["message"],
        "token revoked"
    );
    let mut wrong = f.admin.clone();
    wrong.truncate(wrong.len() - 2);
    wrong.push_str("zz");
    let r = get(&f, uri, Some(&wrong)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.text().contains(&wrong), "the token is never echoed");
    let me = get(&f, uri, Some(&f.planner)).await.json();
    assert_eq!(me["role"], "planner");
    assert_eq!(me["finest"], "15m");
    assert!(
        !me.to_string().contains(&f.planner[20..]),
        "no secret in /me"
    );
    // An invalid token on open data is still a 401 (no silent downgrade).
    assert_eq!(
        get(&f, "/api/v1/open/parking", Some("cb_0000000000000000_x"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let f = fixture();
    for (uri, param) in [
        (
            "/api/v1/history?scope=lot&id=L1&resolution=5m".to_string(),
            "resolution",
        ),
        (
            "/api/v1/history?scope=lot&id=L1&from_ms=abc".to_string(),
            "from_ms",
        ),
        (
            "/api/v1/history?scope=lot&id=L1&from_ms=10&to_ms=5".to_string(),
            "from_ms",
        ),
        (
            "/api/v1/history?scope=lot&id=L1&colour=red".to_string(),
            "colour",
        ),
        ("/api/v1/history?scope=house&id=L1".to_string(), "scope"),
        ("/api/v1/history?scope=lot".to_string(), "id"),
        (
            "/api/v1/history?scope=lot&id=L1&kind=grid".to_string(),
            "kind",
        ),
        (
            "/api/v1/history?scope=lot&id=L1&format=xml".to_string(),
            "format",
        ),
        ("/api/v1/history?scope=lot&id=a%2Fb".to_string(), "id"),
        (
            format!("/api/v1/history?scope=lot&id=L1&resolution=1m&from_ms=0&to_ms={NOW}"),
            "from_ms",
        ),
        ("/api/v1/alerts?limit=0".to_string(), "limit"),
        ("/api/v1/quality?dataset=water".to_string(), "dataset"),
    ] {
        let r = get(&f, &uri, Some(&f.admin)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
        assert_eq!(r.json()["param"], param, "{uri}");
    }
    assert_eq!(
        get(&f, "/api/v1/history?scope=lot&id=L9", Some(&f.admin))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = call(&f, "POST", "/api/v1/session", None, Some("{\"tok\":1}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn open_data_is_delayed_aggregated_and_shaped() {
    let f = fixture();
    let before = audit_count(&f);
    let r = get(&f, "/api/v1/open/parking", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let lots = v.as_array().unwrap();
    // Cut-off: windows ending by NOW − 15 min. L1's NOW−10m row is too fresh; its NOW−20m row (0.55) is used.
    assert_eq!(lots.len(), 2);
    assert_eq!(lots[0]["id"], "urn:ngsi-ld:OffStreetParking:L1");
    assert_eq!(lots[0]["type"], "OffStreetParking");
    assert_eq!(lots[0]["name"], "Lot <One>");
    assert_eq!(lots[0]["totalSpotNumber"], 100);
    assert_eq!(lots[0]["availableSpotNumber"], 45); // round(100 × 0.45)
    assert_eq!(lots[0]["occupancy"], 0.55);
    assert_eq!(lots[0]["dateModified"], "2024-03-01T11:41:00Z"); // NOW − 20 min + 1 min
    assert_eq!(lots[1]["availableSpotNumber"], 20); // round(40 × 0.5)
    assert_eq!(lots[1]["dateModified"], "2024-03-01T11:31:00Z");
    assert!(
        !r.text().contains("L1-b0") && !r.text().contains("M1"),
        "no device ids"
    );
    assert_eq!(audit_count(&f), before + 1);
    assert_eq!(
        f.state.access.audit_rows(0, 1).unwrap()[0].token_id,
        "anonymous"
    );
    // Public token works too.
    assert_eq!(
        get(&f, "/api/v1/open/parking", Some(&f.public))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn live_snapshot_alerts_and_device_health() {
    let f = fixture();
    let r = get(&f, "/api/v1/live", Some(&f.planner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    // Planner's finest is 15m, so the live view shows 15-min windows: L1's newest is T0+1h.
    assert_eq!(v["window_ms"], 900_000);
    assert_eq!(v["lots"][0]["start_ms"], T0 + 3_600_000);
    // The grid device's offline alert is household-level: planners see only the lot alert.
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["site"], "L1");
    let r = get(&f, "/api/v1/live", Some(&f.grid)).await.json();
    assert_eq!(r["window_ms"], 60_000);
    assert_eq!(r["lots"][0]["metrics"]["occupancy_mean_ratio"], 0.75);
    assert_eq!(r["feeders"][0]["metrics"]["v_rms_mean_v"], 231.0);
    assert_eq!(r["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(&f, "/api/v1/live", Some(&f.public)).await.status,
        StatusCode::FORBIDDEN
    );
    // Alerts endpoint agrees.
    let a = get(&f, "/api/v1/alerts", Some(&f.planner)).await.json();
    assert_eq!(a["alerts"].as_array().unwrap().len(), 1);
    // Device health: operators only. M1 (60 s interval) last seen NOW−9 min > 3 min → offline;
    // L1-b0 (3600 s) last seen NOW−48 min < 3 h → online.
    assert_eq!(
        get(&f, "/api/v1/devices/health", Some(&f.planner))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let h = get(&f, "/api/v1/devices/health", Some(&f.grid))
        .await
        .json();
    let devs = h["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    let by = |id: &str| devs.iter().find(|d| d["device"] == id).unwrap().clone();
    assert_eq!(by("M1")["offline"], true);
    assert_eq!(by("L1-b0")["offline"], false);
    assert_eq!(by("L1-b0")["last_seen_ms"], NOW - 3_000_000 + 120_000);
    assert_eq!(h["clock"], "wall");
    assert_eq!(h["clock_ms"], NOW);
    // A day on with nothing new stored (the newest reading 24 h 8 min old: a replay of history, as in
    // the demo; the tokens are still valid): silence is counted to the newest reading, M1's at
    // NOW−9 min. M1 is then silent 0 s; L1-b0 48 − 9 = 39 min < 3 h.
    let mut f = f;
    f.state = f
        .state
        .clone()
        .with_clock(std::sync::Arc::new(|| NOW + 86_400_000 - 60_000));
    let h = get(&f, "/api/v1/devices/health", Some(&f.grid))
        .await
        .json();
    assert_eq!(h["clock"], "data");
    assert_eq!(h["clock_ms"], NOW - 540_000);
    let devs = h["devices"].as_array().unwrap();
    assert!(devs.iter().all(|d| d["offline"] == false), "{devs:?}");
}

#[tokio::test]
async fn governance_endpoints() {
    let f = fixture();
    // Catalog is public.
    let c = get(&f, "/api/v1/catalog", None).await.json();
    let ds: Vec<&str> = c["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(
        ds,
        [
            "parking_raw",
            "parking_aggregates",
            "grid_raw",
            "grid_aggregates",
            "alerts",
            "quality",
            "open_data"
        ]
    );
    assert_eq!(c["datasets"][2]["classification"], "sensitive");
    // Scorecard for the planner: grid/M1 is a household source → hidden. parking/L1-b0: windows 3,
    // completeness mean (0.5+0.75+1)/3 = 0.75; trend = mean(0.75, 1) − mean(0.5) = 0.375;
    // received 2+3+4 = 9, expected 12; score (0.75 + 1 + 0.9 + 1)/4 = 0.9125.
    let s = get(
        &f,
        &format!("/api/v1/quality/scorecard?from_ms={T0}&to_ms={NOW}"),
        Some(&f.planner),
    )
    .await
    .json();
    let lines = s["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{s}");
    assert!(close(lines[0]["completeness"].as_f64().unwrap(), 0.75));
    assert!(close(
        lines[0]["completeness_trend"].as_f64().unwrap(),
        0.375
    ));
    assert!(close(lines[0]["score"].as_f64().unwrap(), 0.9125));
    assert_eq!(lines[0]["received"], 9);
    assert_eq!(lines[0]["expected"], 12);
    let s = get(
        &f,
        &format!("/api/v1/quality/scorecard?from_ms={T0}&to_ms={NOW}"),
        Some(&f.grid),
    )
    .await
    .json();
    assert_eq!(s["lines"].as_array().unwrap().len(), 2);
    let q = get(
        &f,
        &format!("/api/v1/quality?dataset=parking&from_ms={T0}&to_ms={NOW}"),
        Some(&f.planner),
    )
    .await
    .json();
    assert_eq!(q["rows"].as_array().unwrap().len(), 3);
    // Dead letters: admin only; the payload preview is a JSON string (escaped by construction).
    let r = get(&f, "/api/v1/dead-letters", Some(&f.grid)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("admin role"));
    let r = get(&f, "/api/v1/dead-letters", Some(&f.admin)).await;
    let d = r.json();
    assert_eq!(
        d["dead_letters"][0]["payload_preview"],
        "<script>alert(1)</script>"
    );
    assert_eq!(d["dead_letters"][0]["reason"], "bad_json");
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Access log: admin only; it lists the reads made so far (scorecard ×2, quality, dead letters).
    assert_eq!(
        get(&f, "/api/v1/access-log", Some(&f.planner)).await.status,
        StatusCode::FORBIDDEN
    );
    let log = get(&f, "/api/v1/access-log", Some(&f.admin)).await.json();
    let actions: Vec<&str> = log["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["dead_letters", "quality", "scorecard", "scorecard"]
    );
}

#[tokio::test]
async fn pages_assets_headers_health_metrics() {
    let f = fixture();
    for (path, needle) in [
        ("/", "live.js"),
        ("/history", "history.js"),
        ("/governance", "governance.js"),
        ("/open-data", "Open Government Licence"),
    ] {
        let r = get(&f, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.text().contains(needle), "{path}");
        assert!(!r.text().contains("<script>"), "{path}: no inline script");
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let r = get(&f, "/assets/vendor/uPlot.iife.min.js", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.len() > 40_000);
    assert_eq!(
        get(&f, "/assets/vendor/uPlot.LICENSE", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&f, "/assets/../Cargo.toml", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&f, "/nope", None).await.status, StatusCode::NOT_FOUND);
    let r = get(&f, "/api/v1/me", None).await;
    for resp in [&r, &get(&f, "/", None).await] {
        let csp = resp.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline")
                && csp.contains("frame-ancestors 'none'")
        );
        assert_eq!(resp.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(resp.headers[header::X_FRAME_OPTIONS], "DENY");
    }
    assert_eq!(get(&f, "/healthz", None).await.text(), "ok");
    assert_eq!(get(&f, "/readyz", None).await.status, StatusCode::OK);
    // The icon browsers request on their own (it used to be a 404 in every console).
    let icon = get(&f, "/favicon.ico", None).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(icon.text().starts_with("<svg"));
    let _ = get(&f, "/api/v1/dead-letters", Some(&f.planner)).await; // a 403
    let m = get(&f, "/metrics", None).await.text();
    assert!(m.contains("dashboard_forbidden_total 1"), "{m}");
    assert!(m.contains("dashboard_unauthorized_total 1"), "{m}");
    assert!(m.contains("dashboard_sse_clients 0"));
    assert!(m.contains("# TYPE dashboard_http_requests_total counter"));
}

#[tokio::test]
async fn session_cookie_signs_in() {
    let f = fixture();
    let r = call(
        &f,
        "POST",
        "/api/v1/session",
        None,
        Some(&format!("{{\"token\":\"{}\"}}", f.planner)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let req = Request::builder()
        .uri("/api/v1/me")
        .header(header::COOKIE, pair)
        .body(Body::empty())
        .unwrap();
    let resp = dashboard::app(f.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let r = call(
        &f,
        "POST",
        "/api/v1/session",
        None,
        Some("{\"token\":\"cb_0123456789abcdef_nope\"}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A form post (text/plain) is refused: login CSRF.
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/session")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(format!("{{\"token\":\"{}\"}}", f.planner)))
        .unwrap();
    let resp = dashboard::app(f.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let r = call(&f, "DELETE", "/api/v1/session", None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn registry_hides_devices_without_raw_rights() {
    let f = fixture();
    let r = get(&f, "/api/v1/registry", Some(&f.planner)).await.json();
    assert_eq!(r["lots"].as_array().unwrap().len(), 2);
    assert_eq!(r["devices"].as_array().unwrap().len(), 0);
    let r = get(&f, "/api/v1/registry", Some(&f.grid)).await.json();
    assert_eq!(r["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(&f, "/api/v1/registry", Some(&f.public)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn rate_limit_per_token() {
    let f = fixture_with(DashboardConfig {
        mqtt_enabled: false,
        rate_limit_burst: 3,
        rate_limit_per_s: 0.01,
        ..DashboardConfig::default()
    });
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            get(&f, "/api/v1/catalog", Some(&f.planner))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    // Another token has its own bucket.
    assert_eq!(
        get(&f, "/api/v1/catalog", Some(&f.admin)).await.status,
        StatusCode::OK
    );
    assert!(
        get(&f, "/metrics", None)
            .await
            .text()
            .contains("dashboard_rate_limited_total 2")
    );
}

/// Every documented path exists in the router and every API route is documented.
#[tokio::test]
async fn openapi_matches_routes() {
    let spec: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    // Routes as registered in src/api.rs (`.route("/api/v1/...", get(..).post(..))`).
    let src = include_str!("../src/api.rs");
    let mut routed = std::collections::BTreeSet::new();
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join("");
    for line in flat
        .split(".route(")
        .skip(1)
        .filter(|l| l.starts_with("\"/api/"))
    {
        let line = line.split(')').take(3).collect::<Vec<_>>().join(")");
        let path = line.split('"').nth(1).unwrap().to_string();
        for m in ["get", "post", "delete", "put", "patch"] {
            if line.contains(&format!("{m}(")) {
                routed.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(!routed.is_empty());
    assert_eq!(documented, routed, "openapi.json and src/api.rs disagree");
    // And each one answers something other than 404/405 through the real router.
    let f = fixture();
    for (m, p) in &documented {
        if p.ends_with("/stream") {
            continue; // an endless body; covered by the SSE test
        }
        let body = if m == "POST" { Some("{}") } else { None };
        let r = call(&f, m, p, Some(&f.admin), body).await;
        assert!(
            r.status != StatusCode::NOT_FOUND && r.status != StatusCode::METHOD_NOT_ALLOWED,
            "{m} {p}: {}",
            r.status
        );
    }
}
