//! `core-bench`: throughput of the in-process pipeline and window-state size. Short runs; prints
//! figures. Run with `cargo run --release -p stream-core --bin core-bench [readings] [max_devices]`.
//!
//! - **Pipeline**: pre-encoded JSON messages (50 readings each, 2,000 parking devices) →
//!   `telemetry::json::decode` (parse + validate) → the timely dataflow of [`stream_core::dataflow`]
//!   (Dedup, AssignWindow, Aggregate, RollupDistrict, Quality) → a null sink. Each worker decodes its
//!   share of the messages; readings/s = total readings / wall time, on 1 and 2 workers.
//! - **State**: resident-set (RSS, `/proc/self/statm`) delta after feeding one reading per device into a
//!   `WindowEngine` and a `DedupCore` for 10k, 50k and 200k devices (one lot per 100 devices), divided
//!   by the device count. RSS includes allocator slack, so it is an upper bound.
//!
//! # Figures (2-core machine shared with other builds, release, 400k readings; Nov 2026)
//! | measure | run A | run B | goal |
//! |---|---|---|---|
//! | 1 worker, readings/s | 190,586 | 96,419 | ≥ 1.5 M |
//! | 2 workers, readings/s | 58,741 | 29,363 | ≥ 1.7 × one |
//! | state, 10k / 50k / 200k devices, B/device (RSS, fresh process) | — | 1,116 / 1,057 / 1,047 | ≤ 150 |
//!
//! Both goals are missed. Where the time and bytes go: every 50-reading message had its own timestamp
//! (now one time per group of 20 messages, as the service stamps one group commit; `pipeline W N
//! --per-message` runs the old way); per device the engine keeps `String` ids in `BTreeMap`s (site →
//! device → history `BTreeMap`, whose first leaf node is most of the per-device bytes).
//!
//! ## After the speed-up work (Nov 2026, same machine, busy; `pipeline 1 200000` and `state N`)
//! | measure | before | after | goal |
//! |---|---|---|---|
//! | 1 worker, readings/s (grouped times) | 185k–217k | 233k–291k | ≥ 1.5 M |
//! | 1 worker, readings/s (`--per-message`) | 185k–217k | 234k–252k | - |
//! | 2 workers, readings/s | 43k | 40k | ≥ 1.7 × one |
//! | state B/device, 10k / 50k / 200k | 1,222 / 1,170 / 1,158 | 1,135 / 1,085 / 1,078 (dedup as seq runs); 429 / 368 / 359 (+ `VecDeque` history) | ≤ 150 |
//!
//! Profile (perf, 1 worker): JSON decode ~20 %, Dedup ~15 %, `WindowEngine::ingest` ~14 %, Quality ~8 %,
//! malloc/free/memmove ~15 %, the rest timely scheduling. Remaining per-device bytes: `String` ids
//! (device map keys in dedup and engine, plus heap), the engine's `Dev` struct (base state, alert
//! flags) in a `BTreeMap` node, one history slot per reading. (Note: two concurrent runs of
//! `tests/dataflow_reference.rs` on one machine interfere through the cluster case's loopback ports.)

use std::sync::Arc;
use std::time::Instant;
use stream_core::dataflow::{build, emit};
use stream_core::dedup::DedupCore;
use stream_core::window::WindowEngine;
use stream_core::{CoreInput, SiteInfo, WindowConfig};
use telemetry::{
    DeviceId, DistrictId, Limits, Measurement, ParkingChange, Reading, SiteId, TimeSource,
};
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

const T0: i64 = 1_800_000_000_000;

fn reading(dev: u32, seq: u32, ts: i64) -> Reading {
    Reading {
        device: DeviceId::new(&format!("L{}-b{}", dev / 100, dev % 100)).unwrap(),
        site: SiteId::new(&format!("L{}", dev / 100)).unwrap(),
        district: DistrictId::new(&format!("d{}", dev / 1000)).unwrap(),
        boot: 1,
        seq,
        ts_ms: ts,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: seq.is_multiple_of(2),
            field_ut: 40.0,
        }),
    }
}

/// Messages of 50 readings, in event-time order, 2,000 devices.
fn messages(total: usize) -> Vec<(i64, Vec<u8>)> {
    let devices = 2_000u32;
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(50);
    for i in 0..total {
        let dev = (i as u32) % devices;
        let seq = (i as u32) / devices;
        let ts = T0 + (i as i64) * 10;
        batch.push(reading(dev, seq, ts));
        if batch.len() == 50 {
            out.push((ts, telemetry::json::encode(&batch)));
            batch.clear();
        }
    }
    out
}

/// Messages per ingest group (Mosquitto's default in-flight window of 20 QoS 1 messages).
const GROUP: usize = 20;

fn pipeline(workers: usize, msgs: Arc<Vec<(i64, Vec<u8>)>>, group: usize) -> f64 {
    let cfg = WindowConfig::default();
    let info = Arc::new(SiteInfo::default());
    let start = Instant::now();
    let config = if workers > 1 {
        timely::Config::process(workers)
    } else {
        timely::Config::thread()
    };
    timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input = InputHandleVec::<u64, CoreInput>::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let out = build(input.to_stream(scope), &cfg, &info);
            emit(out, "NullSink", |_, x| {
                std::hint::black_box(x);
            })
            .probe_with(&probe);
        });
        let limits = Limits::default();
        for (j, (ts, body)) in msgs.iter().enumerate() {
            // One timely time per ingest group of GROUP messages, as the service's writer stamps one
            // group commit (`--per-message`: one time per message, the old behaviour).
            let t = u64::try_from(*ts).unwrap_or(0);
            if j % group == 0 && t > *input.time() {
                input.advance_to(t);
            }
            if j % peers == index
                && let Ok(d) = telemetry::json::decode(body, &limits, *ts + 1_000)
            {
                for r in d.readings {
                    input.send(CoreInput::Reading {
                        reading: r,
                        ingest_ms: *ts,
                    });
                }
            }
            if j % GROUP == 0 {
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
        }
        input.close();
        while worker.step() {}
    })
    .expect("timely");
    start.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn state_per_device(devices: u32) -> (f64, usize) {
    let cfg = WindowConfig::default();
    let info = Arc::new(SiteInfo::default());
    let readings: Vec<Reading> = (0..devices)
        .map(|d| reading(d, 0, T0 + i64::from(d % 60_000)))
        .collect();
    let before = rss_bytes();
    let mut engine = WindowEngine::new(cfg.clone(), info.clone());
    let mut dedup = DedupCore::new(cfg.correction_horizon_ms, cfg.retention_ms(), info);
    let t = u64::try_from(T0).unwrap_or(0);
    let (acc, seen) = dedup.ingest(t, readings.into_iter().map(|r| (r, T0)).collect());
    drop(seen);
    let mut out = Vec::new();
    engine.ingest(t, acc, &mut out);
    drop(out);
    let after = rss_bytes();
    let (devs, _rows) = engine.state_size();
    let per = after.saturating_sub(before) as f64 / f64::from(devices);
    std::hint::black_box((&engine, &dedup));
    (per, devs)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `core-bench state N`: one state measurement in a fresh process (no allocator reuse).
    if args.get(1).map(String::as_str) == Some("state") {
        let d: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let (per, devs) = state_per_device(d);
        println!("{per:.0} {devs}");
        return;
    }
    // `core-bench pipeline W N`: one pipeline run on W workers over N readings (for profiling).
    if args.get(1).map(String::as_str) == Some("pipeline") {
        let w: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
        let total: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(400_000);
        let msgs = Arc::new(messages(total));
        let n = msgs.len() * 50;
        let group = if args.iter().any(|a| a == "--per-message") {
            1
        } else {
            GROUP
        };
        let secs = pipeline(w, msgs, group);
        println!(
            "{w} worker(s): {:.0} readings/s ({secs:.2} s)",
            n as f64 / secs
        );
        return;
    }
    let total: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let max_devices: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let msgs = Arc::new(messages(total));
    let n = msgs.len() * 50;
    let one = pipeline(1, msgs.clone(), GROUP);
    let two = pipeline(2, msgs.clone(), GROUP);
    let (r1, r2) = (n as f64 / one, n as f64 / two);
    println!("pipeline (decode+validate → dedup → windows → null sink), {n} readings:");
    println!("  1 worker : {r1:>12.0} readings/s ({one:.2} s)");
    println!(
        "  2 workers: {r2:>12.0} readings/s ({two:.2} s), {:.0}/s per worker, speed-up {:.2}x",
        r2 / 2.0,
        r2 / r1
    );
    println!("window + dedup state per active device (RSS delta, one reading each):");
    for d in [10_000u32, 50_000, 200_000] {
        if d > max_devices {
            break;
        }
        let out = std::process::Command::new(&args[0])
            .arg("state")
            .arg(d.to_string())
            .output()
            .expect("re-running core-bench");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let (per, devs) = (it.next().unwrap_or("?"), it.next().unwrap_or("?"));
        println!("  {d:>7} devices: {per:>8} B/device ({devs} devices held)");
    }
}
