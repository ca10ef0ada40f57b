//! End-to-end faults: `citybrain core` + `citybrain simulate` (5 lots × 8 bays, 3 meters, 6 historical
//! hours at 2000× real time, about 11 s of wall time) against a real Mosquitto, with one fault injected
//! mid-run. Each test asserts that nothing was lost and nothing counted twice:
//! - the store holds exactly the readings of a complete simulator run, one row per (device, boot, seq),
//!   with gap-free sequence numbers per device;
//! - the stored 15-min lot aggregates count every detected arrival and departure exactly once.
//!
//! A restarted simulator replays from the start with the same seed, so it regenerates the same keys
//! (boot 1, same sequence numbers): the union of both runs must equal the complete second run.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use stream_core::store::{AggregateQuery, SeriesStore};
use telemetry::registry::Registry;
use telemetry::{DeviceKind, Measurement};

/// The machine is small: one scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Run {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    state: PathBuf,
    core_http: String,
    t0: Instant,
}

impl Run {
    fn new(broker_port: u16, extra: &str) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let state = dir.join("state");
        let core_http = free_addr();
        let text = format!(
            r#"
data_dir = "{state}"
registry_path = "{state}/registry.toml"
[mqtt]
host = "127.0.0.1"
port = {broker_port}
[simulator]
data_dir = "{data}"
lots = 5
bays_per_lot = 8
meters = 3
days = 0.25
speed = 2000.0
start = "historical"
[simulator.delivery]
backoff_max_ms = 1000
[core]
http_addr = "{core_http}"
{extra}
"#,
            state = state.display(),
            data = repo_data().display(),
        );
        let cfg = dir.join("citybrain.toml");
        std::fs::write(&cfg, &text).unwrap();
        write_registry(&text, &state.join("registry.toml"));
        Run {
            _tmp: tmp,
            dir,
            cfg,
            state,
            core_http,
            t0: Instant::now(),
        }
    }

    fn core(&self) -> Part {
        start_core_ready(&self.dir, &self.cfg, &self.core_http)
    }

    fn sim(&self) -> Part {
        Part::start("simulate", &self.dir, &self.cfg, &["simulate"])
    }

    /// Waits for the simulator to finish, returns its report.
    fn sim_done(&self, sim: &mut Part) -> edge_agent::SimReport {
        let st = sim.wait_timeout(Duration::from_secs(120));
        assert!(
            st.is_some_and(|s| s.success()),
            "simulator: {st:?}\n{}",
            sim.logs()
        );
        let r = sim_report(sim);
        assert_eq!(r.frames_refused, 0);
        assert_eq!(r.frames_duplicated, 0);
        assert_eq!(r.spool_left, 0, "simulator left readings in its spool");
        r
    }

    /// The exact checks once the simulator is done: every key of `report` stored once, the core exits
    /// cleanly, aggregates count each change once. Returns the core's report.
    fn finish(
        &self,
        name: &str,
        core: &mut Part,
        report: &edge_agent::SimReport,
    ) -> serde_json::Value {
        let store_path = self.state.join("citybrain.sqlite");
        let store = open_store(&store_path);
        let counts = wait_rows(
            &store,
            report.readings,
            Duration::from_secs(60),
            &mut [&mut *core],
        );
        let stop = core.interrupt_and_expect_clean_exit(Duration::from_secs(20));
        let core_report: serde_json::Value = serde_json::from_str(&core.stdout())
            .unwrap_or_else(|e| panic!("CoreReport on stdout: {e}\n{}", core.logs()));
        assert_eq!(counts.rows, report.readings, "lost or doubled readings");
        assert_eq!(counts.distinct_keys, counts.rows);
        assert_eq!(sql_keys(&store_path), (report.readings, report.readings));
        let readings = all_readings(&store);
        let mut per_dev: BTreeMap<&str, Vec<(u32, u32)>> = BTreeMap::new();
        for r in &readings {
            per_dev
                .entry(r.device.as_str())
                .or_default()
                .push((r.boot, r.seq));
        }
        assert_eq!(per_dev.len(), 43, "every device reported");
        for (dev, ks) in &mut per_dev {
            ks.sort_unstable();
            let want: Vec<(u32, u32)> = (0..ks.len() as u32).map(|s| (ks[0].0, s)).collect();
            assert_eq!(*ks, want, "{dev}: sequence numbers not gap-free");
        }
        // Aggregates equal the plain reference recomputed from the stored readings, window by window.
        check_parking_aggregates(
            &store,
            &Registry::load(&self.state.join("registry.toml")).unwrap(),
            &readings,
        );
        // Aggregates: each detected change counted once (highest version of every 15-min window).
        let reg = Registry::load(&self.state.join("registry.toml")).unwrap();
        let (mut arr, mut dep) = (0u64, 0u64);
        for lot in &reg.lots {
            let rows = store
                .query_aggregates(&AggregateQuery {
                    kind: DeviceKind::Parking,
                    scope: "lot".into(),
                    id: lot.id.as_str().into(),
                    window_ms: 900_000,
                    from_ms: i64::MIN / 2,
                    to_ms: i64::MAX / 2,
                })
                .unwrap();
            let starts: BTreeSet<i64> = rows.iter().map(|a| a.start_ms).collect();
            assert_eq!(starts.len(), rows.len(), "{}: one row per window", lot.id);
            arr += rows
                .iter()
                .map(|a| a.metrics["arrivals"] as u64)
                .sum::<u64>();
            dep += rows
                .iter()
                .map(|a| a.metrics["departures"] as u64)
                .sum::<u64>();
        }
        let stored_arr = readings
            .iter()
            .filter(|r| matches!(r.data, Measurement::ParkingChange(c) if c.occupied))
            .count() as u64;
        let stored_dep = readings
            .iter()
            .filter(|r| matches!(r.data, Measurement::ParkingChange(c) if !c.occupied))
            .count() as u64;
        assert_eq!(
            (stored_arr, stored_dep),
            (report.detected_arrivals, report.detected_departures)
        );
        assert_eq!(
            (arr, dep),
            (stored_arr, stored_dep),
            "15-min lot aggregates vs stored changes"
        );
        eprintln!(
            "{name}: {} readings stored once ({} arrivals, {} departures in the aggregates); core exit \
             after SIGINT {stop:?}; total {:?}; core {core_report}",
            report.readings,
            arr,
            dep,
            self.t0.elapsed()
        );
        core_report
    }
}

fn broker(name: &str) -> Option<(testkit::Mosquitto, std::sync::MutexGuard<'static, ()>)> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    testkit::Mosquitto::start(name).map(|m| (m, guard))
}

#[test]
fn broker_restart_mid_run() {
    let Some((mut mq, _g)) = broker("e2e_faults::broker_restart_mid_run") else {
        return;
    };
    let run = Run::new(mq.port, "");
    let mut core = run.core();
    let mut sim = run.sim();
    std::thread::sleep(Duration::from_secs(4));
    assert!(sim.try_status().is_none(), "the run ended before the fault");
    mq.restart();
    let report = run.sim_done(&mut sim);
    let core_report = run.finish("broker restart", &mut core, &report);
    assert!(
        core_report["connacks"].as_u64() >= Some(2),
        "the core reconnected: {core_report}"
    );
}

#[test]
fn core_sigkill_mid_run_then_restart() {
    let Some((mq, _g)) = broker("e2e_faults::core_sigkill_mid_run_then_restart") else {
        return;
    };
    let run = Run::new(mq.port, "");
    let mut core = run.core();
    let mut sim = run.sim();
    std::thread::sleep(Duration::from_secs(3));
    assert!(sim.try_status().is_none(), "the run ended before the fault");
    core.kill9();
    std::thread::sleep(Duration::from_secs(2));
    // Same config, same client id: the broker kept the persistent session and its queued messages.
    let mut core2 = run.core();
    let report = run.sim_done(&mut sim);
    run.finish("core kill -9", &mut core2, &report);
}

#[test]
fn simulator_sigkill_mid_run_then_restart() {
    let Some((mq, _g)) = broker("e2e_faults::simulator_sigkill_mid_run_then_restart") else {
        return;
    };
    let run = Run::new(mq.port, "");
    let mut core = run.core();
    let mut sim = run.sim();
    std::thread::sleep(Duration::from_secs(4));
    assert!(sim.try_status().is_none(), "the run ended before the fault");
    sim.kill9();
    // The restarted simulator first delivers what its spool kept, then replays from the start with
    // the same keys; the core stores each key once.
    let mut sim2 = run.sim();
    let report = run.sim_done(&mut sim2);
    run.finish("simulator kill -9", &mut core, &report);
}

#[test]
fn storage_locked_for_seconds_mid_run() {
    let Some((mq, _g)) = broker("e2e_faults::storage_locked_for_seconds_mid_run") else {
        return;
    };
    // The core gives up waiting on a lock after 200 ms and retries with backoff.
    let run = Run::new(mq.port, "[core.store]\nbusy_timeout_ms = 200\n");
    let mut core = run.core();
    let mut sim = run.sim();
    std::thread::sleep(Duration::from_secs(3));
    assert!(sim.try_status().is_none(), "the run ended before the fault");
    let path = run.state.join("citybrain.sqlite");
    let before = sql_keys(&path).0;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(4));
        c.execute_batch("COMMIT").unwrap();
    }
    let report = run.sim_done(&mut sim);
    let core_report = run.finish("storage locked 4 s", &mut core, &report);
    assert!(before < report.readings, "the lock was taken mid-run");
    assert!(
        core_report["store_retries"].as_u64() > Some(0),
        "the core saw the locked store: {core_report}"
    );
}

const AGENT_REGISTRY: &str = r#"
[[lot]]
id = "E2E-LOT"
name = "End-to-end lot"
district = "central"
capacity = 4
"#;

/// Raw uplink frames of 4 parking sensors (addresses 1..=4, boot 1), sent to `citybrain agent` over UDP.
struct Radio {
    sock: std::net::UdpSocket,
    to: String,
    next_seq: [u32; 4],
    sent: BTreeSet<(String, u32, u32)>,
}

impl Radio {
    /// Sends `n` parking-change frames round-robin over the 4 sensors, about 500 per second.
    fn send(&mut self, n: usize) {
        for i in 0..n {
            let d = i % 4;
            let seq = self.next_seq[d];
            self.next_seq[d] += 1;
            let f = telemetry::frame::Frame {
                addr: d as u16 + 1,
                boot: 1,
                seq,
                age_ds: 0,
                data: Measurement::ParkingChange(telemetry::ParkingChange {
                    occupied: seq.is_multiple_of(2),
                    field_ut: 30.0,
                }),
            };
            let mut buf = [0u8; telemetry::frame::MAX_FRAME_LEN];
            let len = f.encode(&mut buf).unwrap();
            self.sock.send_to(&buf[..len], &self.to).unwrap();
            self.sent.insert((format!("e2e-b{d}"), 1, seq));
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Rows in the agent's durable spool (undelivered readings).
fn spool_depth(path: &std::path::Path) -> u64 {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM spool", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// `citybrain agent` fed with frames over UDP: broker down while a backlog builds up in the agent's
/// spool, agent SIGKILLed with that backlog, broker and agent restarted, more frames: every frame the
/// agent took is stored exactly once (the set of keys equals the set sent).
#[test]
fn agent_sigkill_with_spooled_backlog_during_broker_outage() {
    let Some((mut mq, _g)) = broker("e2e_faults::agent_sigkill_with_spooled_backlog") else {
        return;
    };
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut reg = AGENT_REGISTRY.to_string();
    for d in 0..4 {
        reg.push_str(&format!(
            "[[device]]\nid = \"e2e-b{d}\"\nkind = \"parking\"\nsite = \"E2E-LOT\"\ngateway = \"gw-e2e\"\n\
             address = {}\nreport_interval_s = 3600\n",
            d + 1
        ));
    }
    std::fs::write(state.join("registry.toml"), reg).unwrap();
    let core_http = free_addr();
    let udp = format!("127.0.0.1:{}", {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    });
    let cfg = dir.join("citybrain.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
data_dir = "{state}"
registry_path = "{state}/registry.toml"
[mqtt]
host = "127.0.0.1"
port = {port}
[agent]
gateway_id = "gw-e2e"
udp_listen = "{udp}"
[agent.delivery]
backoff_max_ms = 500
[core]
http_addr = "{core_http}"
"#,
            state = state.display(),
            port = mq.port,
        ),
    )
    .unwrap();
    let mut core = start_core_ready(dir, &cfg, &core_http);
    let mut agent = Part::start("agent", dir, &cfg, &["agent"]);
    let mut radio = Radio {
        sock: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        to: udp.clone(),
        next_seq: [0; 4],
        sent: BTreeSet::new(),
    };
    // Warm-up: the agent is up and delivering (its UDP socket opens once it has started).
    std::thread::sleep(Duration::from_secs(1));
    radio.send(100);
    let store_path = state.join("citybrain.sqlite");
    let store = open_store(&store_path);
    wait_rows(
        &store,
        100,
        Duration::from_secs(30),
        &mut [&mut core, &mut agent],
    );

    // Broker down: the next frames pile up in the agent's spool.
    mq.stop();
    radio.send(1000);
    let spool = state.join("agent-spool.sqlite");
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool_depth(&spool) < 1000 {
        assert!(
            Instant::now() < deadline,
            "agent spool holds {} of the 1000 frames sent while the broker was down\n{}",
            spool_depth(&spool),
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(spool_depth(&spool), 1000);
    agent.kill9();
    mq.restart();
    let mut agent2 = Part::start("agent", dir, &cfg, &["agent"]);
    std::thread::sleep(Duration::from_secs(1));
    radio.send(500);
    let want = radio.sent.len() as u64;
    assert_eq!(want, 1600);
    let counts = wait_rows(
        &store,
        want,
        Duration::from_secs(40),
        &mut [&mut core, &mut agent2],
    );
    assert_eq!(counts.distinct_keys, want);
    let got: BTreeSet<(String, u32, u32)> = all_readings(&store).iter().map(key).collect();
    assert_eq!(got, radio.sent, "stored keys differ from the frames sent");
    assert_eq!(
        spool_depth(&spool),
        0,
        "the restarted agent emptied its spool"
    );
    let a = agent2.interrupt_and_expect_clean_exit(Duration::from_secs(20));
    let c = core.interrupt_and_expect_clean_exit(Duration::from_secs(20));
    assert_eq!(sql_keys(&store_path), (want, want));
    eprintln!(
        "agent kill -9 with 1000 spooled during a broker outage: {want} frames stored once; exits after \
         SIGINT agent {a:?} core {c:?}; total {:?}",
        t0.elapsed()
    );
}
