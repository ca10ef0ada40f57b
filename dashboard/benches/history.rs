//! History benchmark (prints figures; not a timed test): 30 days of 1-minute rows for one lot in a
//! SQLite file, read through the store, encoded alone, and requested through the full HTTP handler
//! (`app()` + `oneshot`). Goal: ≤ 50 ms for the 30-day, 1-minute JSON request.
//! Run: `cargo bench -p dashboard --bench history`.
//!
//! Figures (medians, ms; 2-core machine shared with other builds, load average 3–5, so ±30 %):
//!
//! | 30 d, 43,200 windows             | before (2 runs) | after (3 runs, median of medians) |
//! |----------------------------------|-----------------|-----------------------------------|
//! | `store.query_aggregates`         | 77 / 81         | 49 (44–66)                        |
//! | `store.query_aggregate_columns`  | –               | 35 (23–36)                        |
//! | encode row JSON / column JSON    | –               | 10 / 7                            |
//! | GET 1 min JSON (rows, default)   | 183 / 196       | 40 (31–44), same 11,116,308 bytes |
//! | GET 1 min JSON `layout=columns`  | –               | 33 (32–44), 3,254,054 bytes       |
//! | GET 1 min CSV                    | 143 / 145       | 55 (48–74), same 3,729,089 bytes  |
//! | GET 15 min / 1 h / 1 d JSON      | 15 / 13 / 8     | 3 / 5 / 4                         |
//!
//! Before: the store picked the latest version per window with a correlated `max(version)` subquery
//! and parsed each window's metrics JSON into a `BTreeMap`; the handler then built a
//! `serde_json::Value` of the whole response. After: one primary-key range scan (versions dropped while
//! scanning), metrics decoded straight into columns (`SeriesStore::query_aggregate_columns`), and the
//! body written from the columns (`dashboard::series`). What is left is mostly SQLite stepping and
//! JSON number parsing of the stored `metrics` text.

use axum::body::Body;
use axum::http::{Request, header};
use dashboard::access::{AccessStore, Dataset, HashCost, NewToken, Resolution, Role};
use dashboard::{AppState, DashboardConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use stream_core::store::{AggregateQuery, SeriesStore, SqliteStore};
use telemetry::DeviceKind;
use telemetry::message::WindowAggregate;
use tower::ServiceExt;

const DAY: i64 = 86_400_000;
const START: i64 = 1_709_251_200_000; // 2024-03-01T00:00:00Z

fn row(start_ms: i64, window_ms: i64, i: i64) -> WindowAggregate {
    let occ = 0.5 + 0.4 * ((i as f64) / 97.0).sin();
    let mut m = BTreeMap::new();
    m.insert("occupancy_mean_ratio".to_string(), occ);
    m.insert("occupancy_max_ratio".to_string(), (occ + 0.05).min(1.0));
    m.insert("arrivals".to_string(), (i % 7) as f64);
    m.insert("departures".to_string(), (i % 5) as f64);
    WindowAggregate {
        kind: DeviceKind::Parking,
        scope: "lot".into(),
        id: "L1".into(),
        district: "central".into(),
        start_ms,
        window_ms,
        version: 1,
        count: 10,
        metrics: m,
    }
}

fn median_ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() - 1])
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("series.sqlite")).unwrap());
    let t = Instant::now();
    let minutes: Vec<_> = (0..30 * 1440)
        .map(|i| row(START + i * 60_000, 60_000, i))
        .collect();
    let quarters: Vec<_> = (0..30 * 96)
        .map(|i| row(START + i * 900_000, 900_000, i))
        .collect();
    for chunk in minutes.chunks(5000) {
        store.upsert_aggregates(chunk).unwrap();
    }
    store.upsert_aggregates(&quarters).unwrap();
    println!(
        "filled {} 1-min + {} 15-min rows in {:.0} ms",
        minutes.len(),
        quarters.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let q = AggregateQuery {
        kind: DeviceKind::Parking,
        scope: "lot".into(),
        id: "L1".into(),
        window_ms: 60_000,
        from_ms: START,
        to_ms: START + 30 * DAY,
    };
    let mut v = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let rows = store.query_aggregates(&q).unwrap();
        assert_eq!(rows.len(), 43_200);
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (med, max) = median_ms(v);
    println!(
        "store.query_aggregates 30 d × 1 min (43,200 rows): median {med:.1} ms, max {max:.1} ms"
    );
    let mut v = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let cols = store.query_aggregate_columns(&q).unwrap();
        assert_eq!(cols.len(), 43_200);
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (med, max) = median_ms(v);
    println!(
        "store.query_aggregate_columns 30 d × 1 min (43,200 rows): median {med:.1} ms, max {max:.1} ms"
    );

    let cols = store.query_aggregate_columns(&q).unwrap();
    let echo = dashboard::series::Echo {
        resolution: "1m",
        from_ms: q.from_ms,
        to_ms: q.to_ms,
    };
    for (label, layout) in [
        ("rows", dashboard::series::Layout::Rows),
        ("columns", dashboard::series::Layout::Columns),
    ] {
        let mut v = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let body = dashboard::series::json_body(&cols, echo, layout).unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(body.len() > 1_000_000);
        }
        let (med, max) = median_ms(v);
        println!("encode JSON {label} (43,200 windows): median {med:.1} ms, max {max:.1} ms");
    }
    let mut v = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let body = dashboard::series::csv_body(&cols).unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(body.len() > 1_000_000);
    }
    let (med, max) = median_ms(v);
    println!("encode CSV (43,200 windows): median {med:.1} ms, max {max:.1} ms");

    let access = AccessStore::open(&dir.path().join("dashboard.sqlite")).unwrap();
    let (_, token) = access
        .create_token(
            &NewToken {
                application: "bench".into(),
                purpose: "benchmark".into(),
                role: Role::Planner,
                datasets: vec![Dataset::ParkingAgg],
                finest: Resolution::M1,
                expires_ms: i64::MAX,
            },
            HashCost::default(),
        )
        .unwrap();
    let registry = telemetry::registry::Registry::from_toml(
        "[[lot]]\nid = \"L1\"\nname = \"Lot\"\ndistrict = \"central\"\ncapacity = 100\n",
    )
    .unwrap();
    let cfg = DashboardConfig {
        mqtt_enabled: false,
        rate_limit_burst: 10_000,
        ..DashboardConfig::default()
    };
    let state = AppState::new(
        cfg,
        store.clone() as Arc<dyn SeriesStore>,
        registry,
        access,
        Default::default(),
    );
    let app = dashboard::app(state);
    for (label, res, fmt) in [
        ("1 min JSON", "1m", "json"),
        ("1 min JSON columns", "1m", "json&layout=columns"),
        ("1 min CSV", "1m", "csv"),
        ("15 min JSON", "15m", "json"),
        ("1 h JSON (rolled up)", "1h", "json"),
        ("1 d JSON (rolled up)", "1d", "json"),
    ] {
        let uri = format!(
            "/api/v1/history?scope=lot&id=L1&from_ms={START}&to_ms={}&resolution={res}&format={fmt}",
            START + 30 * DAY
        );
        let mut v = Vec::new();
        let mut bytes = 0;
        for i in 0..8 {
            let req = Request::builder()
                .uri(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let t = Instant::now();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
                .await
                .unwrap();
            if i > 0 {
                // The first request pays for argon2 verification of the token; later ones hit the cache.
                v.push(t.elapsed().as_secs_f64() * 1e3);
            }
            bytes = body.len();
        }
        let (med, max) = median_ms(v);
        println!(
            "GET /api/v1/history 30 d, {label}: median {med:.1} ms, max {max:.1} ms, {bytes} bytes"
        );
    }
}
