//! One consumer run: start the consumer as a child process, publish a workload at a paced rate, count
//! what arrives at the consumer's sink, check its windows, read its CPU time and peak memory.

use crate::child::options;
use crate::workload::{WINDOW_MS, WindowCheck, Workload, check_windows};
use anyhow::Context;
use rumqttc::{Event, Packet, QoS};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Null subscriber (the broker's ceiling).
    Null,
    /// CityBrain's stream core.
    Core,
    /// The Bytewax dataflow.
    Peer,
}

impl System {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Null => "null subscriber",
            System::Core => "CityBrain",
            System::Peer => "Bytewax",
        }
    }
}

/// Settings shared by all runs.
#[derive(Debug, Clone)]
pub struct Env {
    /// Broker port.
    pub port: u16,
    /// Folder for databases and configs.
    pub dir: PathBuf,
    /// Allowed lateness, ms (both systems).
    pub lateness_ms: i64,
    /// Timely workers of the core.
    pub core_workers: usize,
    /// Python of the venv.
    pub python: PathBuf,
    /// The Bytewax dataflow file.
    pub peer_script: PathBuf,
    /// How long to wait for the sink after publishing ends, s.
    pub drain_s: f64,
}

/// Percentiles of a latency histogram, ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lat {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Samples.
    pub n: u64,
}

/// Figures of one run.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Readings per second asked for (0 = as fast as the publisher goes).
    pub offered_rps: f64,
    /// Readings per second the publisher actually handed to the client.
    pub published_rps: f64,
    /// Workload readings.
    pub expected: u64,
    /// Readings counted at the sink.
    pub delivered: u64,
    /// First publish → last reading at the sink, s.
    pub elapsed_s: f64,
    /// delivered / elapsed, readings/s.
    pub rate_rps: f64,
    /// Window comparison (None for the null subscriber).
    pub windows: Option<WindowCheck>,
    /// Consumer CPU (user + system) from subscribed to done, s.
    pub cpu_s: f64,
    /// Consumer peak resident memory (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Publish → stored (CityBrain), when measured.
    pub stored_lat: Option<Lat>,
    /// Window end + lateness → row stored (CityBrain), when measured.
    pub window_lat: Option<Lat>,
    /// Whether everything arrived before the deadline.
    pub complete: bool,
}

impl RunResult {
    /// Consumer CPU per delivered reading, µs.
    pub fn cpu_us_per_reading(&self) -> f64 {
        if self.delivered == 0 {
            f64::NAN
        } else {
            self.cpu_s * 1e6 / self.delivered as f64
        }
    }

    /// True when every reading arrived and (where there are windows) every window is exact.
    pub fn correct(&self) -> bool {
        self.complete
            && self.delivered == self.expected
            && self.windows.as_ref().is_none_or(|w| w.correct())
    }
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, s.
fn cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (t(11) + t(12)) / clk_tck()
}

/// VmHWM of a process, KiB.
fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the child's stdout reader saw.
#[derive(Default)]
struct Seen {
    ready: AtomicBool,
    count: AtomicU64,
    last_change: Mutex<Option<Instant>>,
    windows: Mutex<BTreeMap<(String, i64), (u64, f64)>>,
}

fn read_stdout(out: impl Read + Send + 'static, seen: Arc<Seen>) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let mut it = line.split_whitespace();
            match it.next() {
                Some("READY") => seen.ready.store(true, Ordering::Release),
                Some("C") => {
                    if let Some(n) = it.next().and_then(|v| v.parse().ok()) {
                        seen.count.store(n, Ordering::Release);
                        *seen.last_change.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                    }
                }
                Some("W") => {
                    let dev = it.next().unwrap_or("").to_string();
                    let start: i64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    let n: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mean: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                    seen.windows
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((dev, start), (n, mean));
                    *seen.last_change.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                }
                _ => {}
            }
        }
    });
}

struct Consumer {
    child: Child,
    seen: Arc<Seen>,
    db: Option<PathBuf>,
    http_port: u16,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_ready(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.1 200")
}

fn start_consumer(
    env: &Env,
    system: System,
    client_id: &str,
    tag: &str,
) -> anyhow::Result<Consumer> {
    let exe = std::env::current_exe()?;
    let mut db = None;
    let mut http_port = 0;
    let mut cmd = match system {
        System::Null => {
            let mut c = Command::new(exe);
            c.args([
                "null-sub",
                "--port",
                &env.port.to_string(),
                "--client-id",
                client_id,
            ]);
            c
        }
        System::Core => {
            let path = env.dir.join(format!("{tag}.sqlite"));
            http_port = testkit::free_port();
            let mut cfg = stream_core::CoreConfig::default();
            cfg.mqtt.port = env.port;
            cfg.mqtt.client_id = client_id.to_string();
            cfg.store.sqlite_path = path.clone();
            cfg.windows.windows_ms = vec![WINDOW_MS];
            cfg.windows.allowed_lateness_ms = env.lateness_ms;
            cfg.limits_max_payload_bytes = 1 << 20;
            cfg.workers = env.core_workers;
            // Hold the broker's whole in-flight window (a group commit covers what is held).
            cfg.ingest_buffer_messages = crate::MAX_INFLIGHT;
            cfg.http_addr = format!("127.0.0.1:{http_port}");
            let cfg_path = env.dir.join(format!("{tag}.json"));
            std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
            db = Some(path);
            let mut c = Command::new(exe);
            c.arg("core").arg("--config").arg(cfg_path);
            c
        }
        System::Peer => {
            let mut c = Command::new(&env.python);
            c.arg(&env.peer_script)
                .env("BENCH_PORT", env.port.to_string())
                .env("BENCH_CLIENT_ID", client_id)
                .env("BENCH_LATENESS_MS", env.lateness_ms.to_string())
                .env("BENCH_WINDOW_MS", WINDOW_MS.to_string());
            c
        }
    };
    let log = std::fs::File::create(env.dir.join(format!("{tag}.log")))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", system.name()))?;
    let seen = Arc::new(Seen::default());
    if let Some(out) = child.stdout.take() {
        read_stdout(out, seen.clone());
    }
    let c = Consumer {
        child,
        seen,
        db,
        http_port,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = match system {
            System::Core => http_ready(c.http_port),
            _ => c.seen.ready.load(Ordering::Acquire),
        };
        if ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not become ready",
            system.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the subscription settle at the broker.
    std::thread::sleep(Duration::from_millis(200));
    Ok(c)
}

/// Removes a consumer's persistent session from the broker (clean-session connect), so the broker does
/// not keep queueing messages for it during later runs.
async fn drop_session(port: u16, client_id: &str) {
    let (c, mut el) = options(client_id, port, true);
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c.disconnect().await;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Publishes the workload (then the flush message) at `rate_mps` messages/s (0 = unpaced). Returns the
/// publish instant of every workload message and the instant publishing ended.
async fn publish(
    port: u16,
    w: &Workload,
    rate_mps: f64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<Instant>, Instant)> {
    // The flush goes out right after the last workload message; its instant is `end`.
    let (client, mut el) = options(&format!("bench-pub-{}", std::process::id()), port, true);
    let el_task = tokio::spawn(async move {
        while !stop.load(Ordering::Acquire) {
            if let Ok(Ok(Event::Incoming(Packet::Disconnect))) | Ok(Err(_)) =
                tokio::time::timeout(Duration::from_millis(100), el.poll()).await
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut times = Vec::with_capacity(w.messages.len());
    let start = Instant::now();
    for (i, m) in w.messages.iter().enumerate() {
        if rate_mps > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate_mps);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        times.push(Instant::now());
        client
            .publish(m.topic.clone(), QoS::AtLeastOnce, false, m.payload.clone())
            .await?;
    }
    let end = Instant::now();
    for f in &w.flush {
        client
            .publish(f.topic.clone(), QoS::AtLeastOnce, false, f.payload.clone())
            .await?;
    }
    // The event loop keeps running (acks from the broker) until the caller sets `stop`.
    drop(el_task);
    Ok((times, end))
}

fn open_ro(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let c =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

fn key_stored(c: &rusqlite::Connection, (device, seq, ts_ms): &(String, u32, i64)) -> bool {
    c.query_row(
        "SELECT 1 FROM readings WHERE ts_ms = ?1 AND device = ?2 AND boot = 1 AND seq = ?3",
        rusqlite::params![ts_ms, device, seq],
        |_| Ok(()),
    )
    .is_ok()
}

fn core_windows(c: &rusqlite::Connection) -> anyhow::Result<BTreeMap<(String, i64), (u64, f64)>> {
    let mut st = c.prepare(
        "SELECT id, start_ms, version, count, metrics FROM aggregates \
         WHERE kind = 'grid' AND scope = 'device' AND window_ms = ?1 ORDER BY version",
    )?;
    let rows = st.query_map([WINDOW_MS], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, start, n, metrics) = row?;
        let m: BTreeMap<String, f64> = serde_json::from_str(&metrics).unwrap_or_default();
        let mean = m.get("v_rms_mean_v").copied().unwrap_or(f64::NAN);
        // Ordered by version: the highest version wins.
        out.insert((id, start), (u64::try_from(n).unwrap_or(0), mean));
    }
    Ok(out)
}

/// Latency probe for the core: watches sampled keys (in publish order) and the device-window rows of
/// each window start; records when each became visible in the database.
struct Probe {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<ProbeSeen>,
}

/// What the probe saw: (message index, visible at) of sampled keys; window start → all rows visible at.
type ProbeSeen = (Vec<(usize, Instant)>, BTreeMap<i64, Instant>);

fn start_probe(db: PathBuf, w: &Workload, sample_every: usize, fast: bool) -> Probe {
    let keys: Vec<(usize, (String, u32, i64))> = w
        .messages
        .iter()
        .enumerate()
        .filter(|(i, _)| fast && i % sample_every.max(1) == 0)
        .map(|(i, m)| (i, m.last_key.clone()))
        .collect();
    let starts: Vec<i64> = {
        let mut s: Vec<i64> = w.reference.keys().map(|k| k.1).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let devices = w.devices as i64;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut seen_keys = Vec::new();
        let mut seen_windows = BTreeMap::new();
        let Ok(c) = open_ro(&db) else {
            return (seen_keys, seen_windows);
        };
        let mut next = 0;
        let mut last_win = Instant::now() - Duration::from_secs(1);
        while !stop2.load(Ordering::Acquire) {
            while next < keys.len() && key_stored(&c, &keys[next].1) {
                seen_keys.push((keys[next].0, Instant::now()));
                next += 1;
            }
            if fast && last_win.elapsed() >= Duration::from_millis(10) {
                last_win = Instant::now();
                for s in &starts {
                    if seen_windows.contains_key(s) {
                        continue;
                    }
                    let n: i64 = c
                        .query_row(
                            "SELECT count(*) FROM aggregates WHERE kind = 'grid' AND scope = 'device' AND window_ms = ?1 AND start_ms = ?2",
                            rusqlite::params![WINDOW_MS, s],
                            |r| r.get(0),
                        )
                        .unwrap_or(0);
                    if n >= devices {
                        seen_windows.insert(*s, Instant::now());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(if fast { 1 } else { 20 }));
        }
        (seen_keys, seen_windows)
    });
    Probe { stop, handle }
}

fn lat_of(samples: impl Iterator<Item = f64>) -> Option<Lat> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok()?;
    for ms in samples {
        let _ = h.record((ms * 1000.0).max(1.0) as u64);
    }
    if h.is_empty() {
        return None;
    }
    Some(Lat {
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
        n: h.len(),
    })
}

/// Runs one consumer over one workload at `rate_rps` readings/s (0 = unpaced). With `latency`, the core
/// run also measures publish → stored and window-close latencies.
pub async fn run_one(
    env: &Env,
    system: System,
    w: &Workload,
    rate_rps: f64,
    tag: &str,
    latency: bool,
) -> anyhow::Result<RunResult> {
    let client_id = format!("bench-{tag}");
    let consumer = start_consumer(env, system, &client_id, tag)?;
    let pid = consumer.child.id();
    let cpu0 = cpu_s(pid);
    let probe = consumer
        .db
        .clone()
        .filter(|_| system == System::Core)
        .map(|db| start_probe(db, w, (w.messages.len() / 3000).max(1), latency));
    let stop_pub = Arc::new(AtomicBool::new(false));
    let rate_mps = rate_rps / w.batch as f64;
    let (times, pub_end) = publish(env.port, w, rate_mps, stop_pub.clone()).await?;
    let t_start = times.first().copied().unwrap_or_else(Instant::now);
    let published_rps = w.readings as f64 / (pub_end - t_start).as_secs_f64().max(1e-9);
    let deadline = pub_end + Duration::from_secs_f64(env.drain_s);
    let expected_msgs = w.messages.len() as u64;
    let all_msgs = expected_msgs + w.flush.len() as u64;
    let mut done_at: Option<Instant> = None;
    let ro = match &consumer.db {
        Some(p) => Some(open_ro(p)?),
        None => None,
    };
    let last = w
        .messages
        .last()
        .map(|m| m.last_key.clone())
        .unwrap_or_default();
    let mut last_progress = (0u64, Instant::now());
    // Wait for the sink.
    while Instant::now() < deadline {
        match system {
            System::Null => {
                if consumer.seen.count.load(Ordering::Acquire) >= all_msgs {
                    done_at = *consumer
                        .seen
                        .last_change
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    break;
                }
            }
            System::Peer => {
                let n = consumer
                    .seen
                    .windows
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .filter(|k| w.reference.contains_key(*k))
                    .count();
                consumer.seen.count.store(n as u64, Ordering::Release);
                if n >= w.reference.len() {
                    done_at = *consumer
                        .seen
                        .last_change
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    break;
                }
            }
            System::Core => {
                if let Some(c) = &ro
                    && key_stored(c, &last)
                {
                    done_at = Some(Instant::now());
                    break;
                }
            }
        }
        // Stall: nothing new for 10 s after publishing ended.
        let now_count = consumer.seen.count.load(Ordering::Acquire);
        if now_count != last_progress.0 {
            last_progress = (now_count, Instant::now());
        }
        if system == System::Null
            && Instant::now() > pub_end + Duration::from_secs(10)
            && last_progress.1.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(if system == System::Core {
            5
        } else {
            10
        }))
        .await;
    }
    let t_end = done_at.unwrap_or_else(Instant::now);
    // For an incomplete core run, count what was stored by the deadline (before waiting for windows).
    let core_rows_at_end: Option<u64> = match (&ro, done_at) {
        (Some(c), None) => c
            .query_row(
                "SELECT count(*) FROM readings WHERE ts_ms < ?1",
                [w.flush_ts],
                |r| r.get::<_, i64>(0),
            )
            .ok()
            .and_then(|v| u64::try_from(v).ok()),
        _ => None,
    };
    // Core: wait for its windows (closed by the flush reading).
    let mut windows = None;
    let mut delivered;
    match system {
        System::Null => {
            delivered = consumer
                .seen
                .count
                .load(Ordering::Acquire)
                .min(expected_msgs)
                * w.batch as u64;
            delivered = delivered.min(w.readings);
        }
        System::Peer => {
            let got = consumer
                .seen
                .windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let chk = check_windows(&w.reference, &got, w.flush_ts);
            delivered = chk.readings;
            windows = Some(chk);
        }
        System::Core => {
            let c = ro.as_ref().context("core database")?;
            // Windows close on the flush right after the last reading; an incomplete run is not waited for.
            let wait_until =
                Instant::now() + Duration::from_secs(if done_at.is_some() { 15 } else { 1 });
            let mut got = core_windows(c)?;
            while Instant::now() < wait_until {
                let n = got.keys().filter(|k| w.reference.contains_key(*k)).count();
                if n >= w.reference.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                got = core_windows(c)?;
            }
            let chk = check_windows(&w.reference, &got, w.flush_ts);
            let store = stream_core::store::SqliteStore::open(consumer.db.as_ref().context("db")?)?;
            let counts = stream_core::store::SeriesStore::reading_counts(&store)?;
            let flush_stored: i64 = c.query_row(
                "SELECT count(*) FROM readings WHERE ts_ms >= ?1",
                [w.flush_ts],
                |r| r.get(0),
            )?;
            let flush_stored = u64::try_from(flush_stored).unwrap_or(0);
            delivered = core_rows_at_end.unwrap_or(counts.rows.saturating_sub(flush_stored));
            windows = Some(chk);
        }
    }
    let cpu = cpu_s(pid) - cpu0;
    let hwm = hwm_kib(pid);
    stop_pub.store(true, Ordering::Release);
    let (stored_lat, window_lat) = match probe {
        Some(p) => {
            p.stop.store(true, Ordering::Release);
            let (keys, wins) = p.handle.join().unwrap_or_default();
            let stored = if latency {
                lat_of(
                    keys.iter()
                        .map(|(i, t)| (*t - times[*i]).as_secs_f64() * 1000.0),
                )
            } else {
                None
            };
            let per_msg = w.batch as u64;
            let window = if latency {
                lat_of(wins.iter().filter_map(|(start, t)| {
                    let s = w.second_at_or_after(start + WINDOW_MS + env.lateness_ms);
                    let m = usize::try_from(s * w.devices as u64 / per_msg).ok()?;
                    let p = times.get(m).unwrap_or(&pub_end);
                    Some(t.saturating_duration_since(*p).as_secs_f64() * 1000.0)
                }))
            } else {
                None
            };
            (stored, window)
        }
        None => (None, None),
    };
    drop(consumer);
    drop_session(env.port, &client_id).await;
    let elapsed_s = (t_end - t_start).as_secs_f64();
    Ok(RunResult {
        offered_rps: rate_rps,
        published_rps,
        expected: w.readings,
        delivered,
        elapsed_s,
        rate_rps: delivered as f64 / elapsed_s.max(1e-9),
        windows,
        cpu_s: cpu,
        hwm_kib: hwm,
        stored_lat,
        window_lat,
        complete: done_at.is_some(),
    })
}
