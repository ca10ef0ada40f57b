//! Shared pieces of the end-to-end tests (`tests/e2e_*.rs`): the `citybrain` binary run as separate
//! processes with a config file in a temp dir, their output captured to files (printed when a test
//! fails), a tiny HTTP/1.0 client, and readers for the store and the replay data.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use stream_core::store::{AggregateQuery, ReadingQuery, SeriesStore, SqliteStore};
use telemetry::message::WindowAggregate;
use telemetry::registry::Registry;
use telemetry::{DeviceKind, Measurement, Reading};

/// The `citybrain` binary under test (`CITYBRAIN_E2E_BIN` overrides it, e.g. to run these tests
/// against a release build).
pub fn bin() -> PathBuf {
    std::env::var_os("CITYBRAIN_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_citybrain")))
}

/// The repository's replay data (`data/`).
pub fn repo_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
}

/// One running `citybrain` process; its stdout/stderr go to `<dir>/<name>.out|.err`. On drop it is
/// killed if still running, and its output is printed when the test is failing.
pub struct Part {
    /// Name used for the log files.
    pub name: String,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

impl Part {
    /// Starts `citybrain --config <config> <args>` in `cwd`.
    pub fn start(name: &str, cwd: &Path, config: &Path, args: &[&str]) -> Part {
        Self::start_with(name, cwd, Some(config), args)
    }

    /// Starts `citybrain [--config <config>] <args>` in `cwd` (no config: the built-in defaults).
    pub fn start_with(name: &str, cwd: &Path, config: Option<&Path>, args: &[&str]) -> Part {
        // Several starts of the same part (restarts) keep every log: name.out, name-2.out, ...
        let mut n = 1;
        let mut stem = name.to_string();
        while cwd.join(format!("{stem}.out")).exists() {
            n += 1;
            stem = format!("{name}-{n}");
        }
        let out = cwd.join(format!("{stem}.out"));
        let err = cwd.join(format!("{stem}.err"));
        let mut cmd = Command::new(bin());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .args(args)
            .current_dir(cwd)
            .env_remove("CITYBRAIN_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rumqttd=warn".into()),
            )
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin().display()));
        Part {
            name: stem,
            child: Some(child),
            out,
            err,
            status: None,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGKILL and reap (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.status = c.wait().ok();
        }
    }

    /// Exit status if it has exited by now.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if let Some(c) = &mut self.child
            && let Ok(Some(s)) = c.try_wait()
        {
            self.status = Some(s);
            self.child = None;
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT and requires a clean exit (code 0) within `timeout`; otherwise kills it and panics
    /// with its logs.
    pub fn interrupt_and_expect_clean_exit(&mut self, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        self.signal("INT");
        match self.wait_timeout(timeout) {
            Some(s) if s.success() => t0.elapsed(),
            Some(s) => panic!(
                "`citybrain {}` exited with {s} after SIGINT (expected code 0)\n{}",
                self.name,
                self.logs()
            ),
            None => {
                self.kill9();
                panic!(
                    "BUG: `citybrain {}` did not exit within {timeout:?} after SIGINT (killed)\n{}",
                    self.name,
                    self.logs()
                )
            }
        }
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        fn tail(s: &str, n: usize) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}\n",
            self.name,
            self.out.display(),
            tail(&self.stdout(), 60),
            self.name,
            self.err.display(),
            tail(&self.stderr(), 60)
        )
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill9();
    }
}

/// A free loopback address `127.0.0.1:<port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// Minimal HTTP/1.0 GET (no chunking with 1.0): returns (status, body).
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Accept: application/json\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Waits until `GET path` answers 200 (panics with `what` after `timeout`).
pub fn wait_http_ok(addr: &str, path: &str, timeout: Duration, parts: &mut [&mut Part]) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http_get(addr, path, None) {
            return;
        }
        for p in parts.iter_mut() {
            if let Some(s) = p.try_status() {
                panic!("`citybrain {}` exited early with {s}\n{}", p.name, p.logs());
            }
        }
        assert!(
            Instant::now() < deadline,
            "http://{addr}{path} not 200 after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `citybrain core` with config `cfg` in `dir` and waits (≤ 60 s) until its health server at
/// `core_http` says ready (subscribed).
///
/// # Panics
/// When it is not ready in time or exits.
pub fn start_core_ready(dir: &Path, cfg: &Path, core_http: &str) -> Part {
    let mut core = Part::start("core", dir, cfg, &["core"]);
    wait_http_ok(
        core_http,
        "/readyz",
        Duration::from_secs(60),
        &mut [&mut core],
    );
    core
}

/// Writes the registry of the simulated fleet (what `citybrain simulate` writes at its start and the
/// demo writes before starting the core), so the core can load it before any reading is published.
pub fn write_registry(config_text: &str, registry_path: &Path) {
    let cfg = citybrain::config::Config::from_toml(config_text).expect("test config parses");
    let fleet = edge_agent::simulate::Fleet::new(&cfg.simulator, 0).expect("fleet");
    std::fs::create_dir_all(registry_path.parent().unwrap()).unwrap();
    std::fs::write(registry_path, fleet.registry().to_toml()).unwrap();
}

/// Opens the store file read-side (waits for the core to create it).
pub fn open_store(path: &Path) -> SqliteStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if path.exists()
            && let Ok(s) = SqliteStore::open(path)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every raw reading in the store, ordered by (ts, device, boot, seq).
pub fn all_readings(store: &SqliteStore) -> Vec<Reading> {
    store
        .query_readings(&ReadingQuery {
            device: None,
            site: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            limit: usize::MAX >> 1,
        })
        .expect("reading the store")
}

/// Polls `reading_counts()` until `rows == want` and it has stopped growing for `settle`; returns the
/// last counts. Panics (with the parts' logs) after `timeout`.
pub fn wait_rows(
    store: &SqliteStore,
    want: u64,
    timeout: Duration,
    parts: &mut [&mut Part],
) -> stream_core::store::ReadingCounts {
    let deadline = Instant::now() + timeout;
    let settle = Duration::from_millis(1500);
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let c = store.reading_counts().expect("reading_counts");
        if last.as_ref() != Some(&c) {
            last = Some(c.clone());
            since = Instant::now();
        }
        if c.rows == want && since.elapsed() >= settle {
            return c;
        }
        if c.rows > want && since.elapsed() >= settle {
            panic!(
                "store holds {} readings, more than the {want} delivered",
                c.rows
            );
        }
        if Instant::now() >= deadline {
            let logs: String = parts.iter().map(|p| p.logs()).collect();
            panic!(
                "store holds {} readings (distinct keys {}) after {timeout:?}; expected {want}\n{logs}",
                c.rows, c.distinct_keys
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Parses the simulator's stdout (its `SimReport` as JSON).
pub fn sim_report(part: &Part) -> edge_agent::SimReport {
    let out = part.stdout();
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no SimReport JSON on stdout\n{}", part.logs()));
    serde_json::from_str(&out[start..])
        .unwrap_or_else(|e| panic!("SimReport JSON: {e}\n{}", part.logs()))
}

/// (device, boot, seq) of a reading.
pub fn key(r: &Reading) -> (String, u32, u32) {
    (r.device.as_str().to_string(), r.boot, r.seq)
}

/// The raw keys in the store read directly with SQL (independent of the store's own counting).
pub fn sql_keys(path: &Path) -> (u64, u64) {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open read-only");
    let rows: u64 = c
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    let distinct: u64 = c
        .query_row(
            "SELECT COUNT(*) FROM (SELECT DISTINCT device, boot, seq FROM readings)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (rows, distinct)
}

/// One row of the Birmingham car-park CSV.
#[derive(Debug, Clone)]
pub struct CsvSample {
    /// Time, UTC epoch ms (the file's local time taken as UTC, as the simulator documents).
    pub t_ms: i64,
    /// occupancy / capacity clamped to 0..=1.
    pub ratio: f64,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), for parsing the CSV times.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` as UTC epoch ms.
pub fn parse_time_ms(s: &str) -> i64 {
    let b = s.trim().as_bytes();
    assert!(b.len() == 19, "time {s:?}");
    let n = |a: usize, z: usize| -> i64 { s.trim()[a..z].parse().expect("digits") };
    let days = days_from_civil(n(0, 4), n(5, 7), n(8, 10));
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000
}

/// The car-park CSV read with plain code: lot codes in order of first appearance, each with its
/// samples sorted by time (stable: rows with the same time keep file order).
pub fn read_parking_csv() -> Vec<(String, Vec<CsvSample>)> {
    let text = std::fs::read_to_string(repo_data().join("birmingham_carparks_occupancy_2016.csv"))
        .expect("parking CSV");
    let mut lots: Vec<(String, Vec<CsvSample>)> = Vec::new();
    let mut index = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (code, cap, occ) = (f[0], f[1].trim(), f[2].trim());
        let (cap, occ): (f64, f64) = (cap.parse().unwrap(), occ.parse().unwrap());
        let i = *index.entry(code.to_string()).or_insert_with(|| {
            lots.push((code.to_string(), Vec::new()));
            lots.len() - 1
        });
        lots[i].1.push(CsvSample {
            t_ms: parse_time_ms(f[3]),
            ratio: (occ / cap).clamp(0.0, 1.0),
        });
    }
    for l in &mut lots {
        l.1.sort_by_key(|s| s.t_ms);
    }
    lots
}

/// The UCI household minutes: (epoch ms, voltage V).
pub fn read_uci_voltage() -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(repo_data().join("uci_household_power_2008-01_1min.csv"))
        .expect("UCI CSV");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (parse_time_ms(f[0]), f[3].trim().parse().unwrap())
        })
        .collect()
}

/// Readings of one site sorted by (ts, boot, seq), the order the core's windows use.
pub fn site_readings<'a>(readings: &'a [Reading], site: &str) -> Vec<&'a Reading> {
    let mut v: Vec<&Reading> = readings
        .iter()
        .filter(|r| r.site.as_str() == site)
        .collect();
    v.sort_by_key(|r| (r.ts_ms, r.boot, r.seq));
    v
}

pub fn occupancy(m: &Measurement) -> Option<bool> {
    match m {
        Measurement::ParkingChange(c) => Some(c.occupied),
        Measurement::ParkingHeartbeat(h) => Some(h.occupied),
        _ => None,
    }
}

pub fn stored(
    store: &dyn SeriesStore,
    kind: DeviceKind,
    scope: &str,
    id: &str,
    len: i64,
) -> Vec<WindowAggregate> {
    store
        .query_aggregates(&AggregateQuery {
            kind,
            scope: scope.into(),
            id: id.into(),
            window_ms: len,
            from_ms: i64::MIN / 2,
            to_ms: i64::MAX / 2,
        })
        .unwrap()
}

pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Parking: per lot and window (1 min and 15 min), readings with a bay state, arrivals, departures,
/// occupancy at the window end and time-weighted mean occupancy, recomputed with plain code.
pub fn check_parking_aggregates(store: &dyn SeriesStore, reg: &Registry, readings: &[Reading]) {
    let mut checked = 0;
    for lot in &reg.lots {
        let rs = site_readings(readings, lot.id.as_str());
        let cap = f64::from(lot.capacity);
        for len in [60_000i64, 900_000] {
            // Reference.
            #[derive(Default, Debug)]
            struct W {
                count: u64,
                arrivals: u64,
                departures: u64,
            }
            let mut want: BTreeMap<i64, W> = BTreeMap::new();
            for r in &rs {
                if occupancy(&r.data).is_none() {
                    continue;
                }
                let w = want.entry(r.ts_ms.div_euclid(len) * len).or_default();
                w.count += 1;
                if let Measurement::ParkingChange(c) = r.data {
                    if c.occupied {
                        w.arrivals += 1;
                    } else {
                        w.departures += 1;
                    }
                }
            }
            let got = stored(store, DeviceKind::Parking, "lot", lot.id.as_str(), len);
            let got_starts: Vec<i64> = got.iter().map(|a| a.start_ms).collect();
            let want_starts: Vec<i64> = want.keys().copied().collect();
            assert_eq!(
                got_starts, want_starts,
                "lot {} {len} ms: windows stored vs windows with readings",
                lot.id
            );
            for a in &got {
                let w = &want[&a.start_ms];
                let m = |k: &str| a.metrics.get(k).copied().unwrap_or(f64::NAN);
                let ctx = format!(
                    "lot {} window {} len {len}: {a:?} vs {w:?}",
                    lot.id, a.start_ms
                );
                assert_eq!(a.count, w.count, "{ctx}");
                assert_eq!(m("arrivals"), w.arrivals as f64, "{ctx}");
                assert_eq!(m("departures"), w.departures as f64, "{ctx}");
                // Occupancy: each bay's state is its last reported state (change or heartbeat).
                let (s, e) = (a.start_ms, a.start_ms + len);
                let mut end_occ = 0usize;
                let mut area = 0f64;
                for bay in rs
                    .iter()
                    .map(|r| r.device.as_str())
                    .collect::<BTreeSet<_>>()
                {
                    let bay_rs: Vec<(i64, bool)> = rs
                        .iter()
                        .filter(|r| r.device.as_str() == bay)
                        .filter_map(|r| occupancy(&r.data).map(|o| (r.ts_ms, o)))
                        .collect();
                    let mut st = bay_rs
                        .iter()
                        .rev()
                        .find(|(t, _)| *t < s)
                        .map(|x| x.1)
                        .unwrap_or(false);
                    let mut t_prev = s;
                    for &(t, o) in bay_rs.iter().filter(|(t, _)| *t >= s && *t < e) {
                        if st {
                            area += (t - t_prev) as f64;
                        }
                        st = o;
                        t_prev = t;
                    }
                    if st {
                        area += (e - t_prev) as f64;
                        end_occ += 1;
                    }
                }
                assert_eq!(m("occupancy_end_ratio"), end_occ as f64 / cap, "{ctx}");
                let mean = area / (cap * len as f64);
                // Same sums in a different order: f64 rounding only.
                assert!(
                    close(m("occupancy_mean_ratio"), mean, 1e-9),
                    "{ctx}: mean {mean}"
                );
                checked += 1;
            }
        }
    }
    eprintln!("parking aggregates: {checked} lot windows equal the reference");
}
