//! Shared fixtures: a real SQLite series store filled with known rows, a registry, tokens per role.
//! Outside programs (Mosquitto, chromedriver) come from `testkit`.
#![allow(dead_code)]

use dashboard::access::{AccessStore, Dataset, HashCost, NewToken, Resolution, Role};
use dashboard::{AppState, DashboardConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use stream_core::store::{DeadLetter, QualityRow, SeriesStore, SqliteStore};
use telemetry::message::{Alert, AlertState, WindowAggregate};
use telemetry::registry::Registry;
use telemetry::{DeviceKind, Reading};
use tokio_util::sync::CancellationToken;

/// Fixed "now" of the fixture: 2024-03-01T12:00:00Z.
pub const NOW: i64 = 1_709_294_400_000;
/// Start of the fixture's 15-min rows: 2024-03-01T10:00:00Z.
pub const T0: i64 = NOW - 2 * 3_600_000;

pub const REGISTRY: &str = r#"
[[lot]]
id = "L1"
name = "Lot <One>"
district = "central"
capacity = 100
x = 0.2
y = 0.3
[[lot]]
id = "L2"
name = "Lot Two"
district = "central"
capacity = 40
x = 0.6
y = 0.4
[[feeder]]
id = "F1"
name = "Feeder one"
district = "south"
x = 0.5
y = 0.8
[[device]]
id = "L1-b0"
kind = "parking"
site = "L1"
gateway = "gw"
address = 1
report_interval_s = 3600
[[device]]
id = "M1"
kind = "grid"
site = "F1"
gateway = "gw"
address = 2
report_interval_s = 60
"#;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn SeriesStore>,
    pub state: AppState,
    pub admin: String,
    pub grid: String,
    pub planner: String,
    pub public: String,
    pub expired: String,
    pub revoked: String,
    pub narrow: String,
}

pub fn agg(
    kind: DeviceKind,
    scope: &str,
    id: &str,
    start_ms: i64,
    window_ms: i64,
    count: u64,
    m: &[(&str, f64)],
) -> WindowAggregate {
    WindowAggregate {
        kind,
        scope: scope.into(),
        id: id.into(),
        district: if kind == DeviceKind::Parking {
            "central".into()
        } else {
            "south".into()
        },
        start_ms,
        window_ms,
        version: 1,
        count,
        metrics: m
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn reading(json: &str) -> Reading {
    serde_json::from_str(json).unwrap()
}

/// Known rows:
/// - L1 15-min rows at T0, T0+15m, T0+30m, T0+45m: counts 1,1,2,4; occupancy_mean 0.2,0.4,0.5,0.8;
///   occupancy_max 0.3,0.5,0.6,0.9; arrivals 1,2,3,4. Plus one at T0+1h: count 2, mean 0.1, max 0.2, arrivals 5.
/// - L1 1-min rows at NOW-20m (occ 0.55) and NOW-10m (occ 0.75); L2 1-min row at NOW-30m (occ 0.5).
/// - M1 (grid device) 1-min row at NOW-5m; F1 1-min row at NOW-5m (v 231, p 12).
/// - Readings: 3 for L1-b0, 2 for M1.
/// - Alerts: lot_full raised on L1, device_offline on M1.
/// - Quality: parking/L1-b0 three rows, grid/M1 one row.
/// - Dead letter with an HTML payload.
pub fn fill(store: &dyn SeriesStore) {
    let p = DeviceKind::Parking;
    let m = 900_000;
    let rows = vec![
        agg(
            p,
            "lot",
            "L1",
            T0,
            m,
            1,
            &[
                ("occupancy_mean_ratio", 0.2),
                ("occupancy_max_ratio", 0.3),
                ("arrivals", 1.0),
            ],
        ),
        agg(
            p,
            "lot",
            "L1",
            T0 + m,
            m,
            1,
            &[
                ("occupancy_mean_ratio", 0.4),
                ("occupancy_max_ratio", 0.5),
                ("arrivals", 2.0),
            ],
        ),
        agg(
            p,
            "lot",
            "L1",
            T0 + 2 * m,
            m,
            2,
            &[
                ("occupancy_mean_ratio", 0.5),
                ("occupancy_max_ratio", 0.6),
                ("arrivals", 3.0),
            ],
        ),
        agg(
            p,
            "lot",
            "L1",
            T0 + 3 * m,
            m,
            4,
            &[
                ("occupancy_mean_ratio", 0.8),
                ("occupancy_max_ratio", 0.9),
                ("arrivals", 4.0),
            ],
        ),
        agg(
            p,
            "lot",
            "L1",
            T0 + 4 * m,
            m,
            2,
            &[
                ("occupancy_mean_ratio", 0.1),
                ("occupancy_max_ratio", 0.2),
                ("arrivals", 5.0),
            ],
        ),
        agg(
            p,
            "lot",
            "L1",
            NOW - 20 * 60_000,
            60_000,
            3,
            &[("occupancy_mean_ratio", 0.55)],
        ),
        agg(
            p,
            "lot",
            "L1",
            NOW - 10 * 60_000,
            60_000,
            3,
            &[("occupancy_mean_ratio", 0.75)],
        ),
        agg(
            p,
            "lot",
            "L2",
            NOW - 30 * 60_000,
            60_000,
            3,
            &[("occupancy_mean_ratio", 0.5)],
        ),
        agg(
            DeviceKind::Grid,
            "device",
            "M1",
            NOW - 5 * 60_000,
            60_000,
            1,
            &[("v_rms_mean_v", 229.0)],
        ),
        agg(
            DeviceKind::Grid,
            "feeder",
            "F1",
            NOW - 5 * 60_000,
            60_000,
            4,
            &[("v_rms_mean_v", 231.0), ("p_mean_kw", 12.0)],
        ),
    ];
    store.upsert_aggregates(&rows).unwrap();
    let mut rs = Vec::new();
    for (seq, occ) in [(0, true), (1, false), (2, true)] {
        rs.push(reading(&format!(
            r#"{{"device":"L1-b0","site":"L1","district":"central","boot":1,"seq":{seq},"ts_ms":{},"data":{{"type":"parking_change","occupied":{occ},"field_ut":48.5}}}}"#,
            NOW - 3_000_000 + seq * 60_000
        )));
    }
    for seq in 0..2 {
        rs.push(reading(&format!(
            r#"{{"device":"M1","site":"F1","district":"south","boot":1,"seq":{seq},"ts_ms":{},"data":{{"type":"grid_summary","interval_s":60,"v_rms_v":230.0,"v_min_v":228.0,"v_max_v":232.0,"i_rms_a":5.0,"p_kw":1.1,"q_kvar":0.1,"pf":0.98,"freq_hz":50.0,"energy_kwh":0.02}}}}"#,
            NOW - 600_000 + seq * 60_000
        )));
    }
    assert_eq!(store.write_readings(&rs, NOW).unwrap(), 5);
    store
        .write_alerts(&[
            Alert {
                alert: "lot_full".into(),
                state: AlertState::Raised,
                district: "central".into(),
                site: "L1".into(),
                ts_ms: NOW - 60_000,
                value: 0.97,
                message: "Lot <One> is full".into(),
            },
            Alert {
                alert: "device_offline".into(),
                state: AlertState::Raised,
                district: "south".into(),
                site: "M1".into(),
                ts_ms: NOW - 30_000,
                value: 12.0,
                message: "meter silent".into(),
            },
        ])
        .unwrap();
    let q = |ds: &str, src: &str, start: i64, c: f64, rec: u64| QualityRow {
        dataset: ds.into(),
        source: src.into(),
        start_ms: start,
        window_ms: 900_000,
        completeness: c,
        timeliness_p50_ms: 100.0,
        timeliness_p95_ms: 400.0,
        validity: 1.0,
        uniqueness: 0.9,
        consistency: 1.0,
        received: rec,
        expected: 4,
        rejected: 0,
        duplicates: 1,
    };
    store
        .write_quality(&[
            q("parking", "L1-b0", T0, 0.5, 2),
            q("parking", "L1-b0", T0 + 900_000, 0.75, 3),
            q("parking", "L1-b0", T0 + 1_800_000, 1.0, 4),
            q("grid", "M1", T0, 1.0, 4),
        ])
        .unwrap();
    store
        .write_dead_letters(&[DeadLetter {
            ts_ms: NOW - 1000,
            topic: "citybrain/v1/central/parking/x/telemetry".into(),
            source: "x".into(),
            reason: "bad_json".into(),
            detail: "expected value".into(),
            payload: b"<script>alert(1)</script>".to_vec(),
        }])
        .unwrap();
}

pub fn cheap() -> HashCost {
    HashCost {
        m_kib: 256,
        t: 1,
        p: 1,
    }
}

pub fn token(
    access: &AccessStore,
    role: Role,
    datasets: &[Dataset],
    finest: Resolution,
    expires_ms: i64,
) -> String {
    let req = NewToken {
        application: format!("{}-app", role.as_str()),
        purpose: "testing".into(),
        role,
        datasets: datasets.to_vec(),
        finest,
        expires_ms,
    };
    access.create_token(&req, cheap()).unwrap().1
}

pub fn fixture_with(cfg: DashboardConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SeriesStore> =
        Arc::new(SqliteStore::open(&dir.path().join("series.sqlite")).unwrap());
    fill(store.as_ref());
    let access = AccessStore::open(&dir.path().join("dashboard.sqlite")).unwrap();
    let far = NOW + 86_400_000;
    let all: Vec<Dataset> = Dataset::ALL.to_vec();
    let admin = token(&access, Role::Admin, &all, Resolution::Raw, far);
    let grid = token(&access, Role::GridManager, &all, Resolution::Raw, far);
    let planner_ds = [
        Dataset::ParkingAgg,
        Dataset::GridAgg,
        Dataset::Alerts,
        Dataset::Quality,
        Dataset::OpenData,
    ];
    let planner = token(&access, Role::Planner, &planner_ds, Resolution::M15, far);
    let public = token(
        &access,
        Role::Public,
        &[Dataset::OpenData],
        Resolution::M15,
        far,
    );
    let expired = token(&access, Role::Admin, &all, Resolution::Raw, NOW - 1);
    let revoked = token(&access, Role::Admin, &all, Resolution::Raw, far);
    let rid = revoked[3..19].to_string();
    assert!(access.revoke_token(&rid, NOW - 10).unwrap());
    let narrow = token(
        &access,
        Role::Planner,
        &[Dataset::ParkingAgg],
        Resolution::M1,
        far,
    );
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let state = AppState::new(
        cfg,
        store.clone(),
        registry,
        access,
        CancellationToken::new(),
    )
    .with_clock(Arc::new(|| NOW));
    Fixture {
        dir,
        store,
        state,
        admin,
        grid,
        planner,
        public,
        expired,
        revoked,
        narrow,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(DashboardConfig {
        mqtt_enabled: false,
        ..DashboardConfig::default()
    })
}
