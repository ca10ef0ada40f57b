//! `store_write`: readings/s of the SQLite raw-reading write alone ([`SeriesStore::write_reading_groups`],
//! the call the ingest writer makes once per group commit), on a real file in WAL mode. Short runs;
//! prints figures. Run with `cargo bench -p stream-core --bench store_write [-- readings]`.
//!
//! Workload: grid_summary readings of 1,000 devices (the benchmark's shape: one reading per device and
//! event second), written as groups of N messages × R readings (the ingest writer's group commit):
//! 20 × 1 (Mosquitto's default in-flight window), 100 × 1, 1,000 × 1 and 50 × 200 (batched messages).
//! Each case starts from an empty file. Also times the JSON body encoding alone.
//!
//! # Figures (2-core machine shared with another helper's builds, Nov 2026)
//! | group | before: readings/s (CPU µs/reading) | after | change |
//! |---|---|---|---|
//! | 20 × 1 | 8,984 (42.4) | 25,771 (25.7) | ×2.9 |
//! | 100 × 1 | 12,454 (41.5) | 22,514 (24.4) | ×1.8 |
//! | 1,000 × 1 | 13,193 (48.5) | 22,135 (25.5) | ×1.7 |
//! | 50 × 200 | 29,886 (25.2) | 70,568 (9.5) | ×2.4 |
//!
//! Before: schema v2, SQLite defaults (2 MiB cache, auto-checkpoint every 1,000 WAL pages on the
//! writer), 200k readings. After: migration 3 (two unused `readings` indexes dropped), 32 MiB writer
//! cache, checkpoints on a background thread, 150k readings. JSON body encoding alone: ~0.55 µs/reading
//! (314 bytes), so a cheaper body encoding would gain little. Where the rest goes (perf): writing WAL
//! frames (~35 %: `pwrite`, `walChecksumBytes`) and checkpoints (~15–20 %). The primary key
//! `(device, boot, seq)` puts each device's newest rows on its own leaf page, so a commit holding one
//! reading per device writes about one 4 KiB WAL frame per reading; only commits holding several
//! readings of each device (the batched case) amortise that.
//!
//! ## Migration 4: `readings` keyed by `(ts_ms, device, boot, seq)`
//! A commit's readings (event times close together) now fill a few adjacent pages at the right edge
//! of the tree instead of one page per device; the primary key also replaces the `readings_ts` index.
//! Same machine, 200k readings, before and after binaries interleaved (load average 3.5–4.4 from other
//! builds), two runs each:
//!
//! | group | before: readings/s (CPU µs/reading) | after | change (CPU) |
//! |---|---|---|---|
//! | 20 × 1 | 18,593–23,725 (26.0–26.8) | 80,513–126,297 (6.65) | ×3.9 |
//! | 100 × 1 | 22,496–24,617 (23.9–24.5) | 119,445–177,185 (4.95–5.05) | ×4.8 |
//! | 1,000 × 1 | 18,522–21,431 (26.4–26.9) | 145,287–212,450 (4.25–4.45) | ×6.1 |
//! | 50 × 200 | 58,442–90,433 (8.85–10.3) | 182,097–255,786 (3.40–3.45) | ×2.8 |

use std::time::Instant;
use stream_core::store::{SeriesStore, SqliteStore};
use telemetry::{DeviceId, DistrictId, GridSummary, Measurement, Reading, SiteId, TimeSource};

const T0: i64 = 1_800_000_000_000;
const DEVICES: u64 = 1_000;

fn reading(k: u64) -> Reading {
    let d = k % DEVICES;
    let second = k / DEVICES;
    let v = 220.0 + ((d * 7 + second * 13) % 80) as f32 * 0.25;
    Reading {
        device: DeviceId::new(&format!("g{d:05}")).expect("device id"),
        site: SiteId::new(&format!("f{:03}", d / 50)).expect("site id"),
        district: DistrictId::new("central").expect("district id"),
        boot: 1,
        seq: u32::try_from(second).expect("seq"),
        ts_ms: T0 + i64::try_from(second).expect("second") * 1000,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::GridSummary(GridSummary {
            interval_s: 1,
            v_rms_v: v,
            v_min_v: v - 1.0,
            v_max_v: v + 1.0,
            i_rms_a: 10.0,
            p_kw: 2.0,
            q_kvar: 0.5,
            pf: 0.97,
            freq_hz: 50.0,
            energy_kwh: second as f64 * 0.001,
        }),
    }
}

/// CPU time of this process (user + system), seconds.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn case(total: u64, messages: usize, per_message: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.sqlite")).expect("open store");
    let readings: Vec<Reading> = (0..total).map(reading).collect();
    let mut groups: Vec<Vec<(Vec<Reading>, i64)>> = Vec::new();
    for chunk in readings.chunks(messages * per_message) {
        groups.push(
            chunk
                .chunks(per_message)
                .map(|m| (m.to_vec(), T0))
                .collect(),
        );
    }
    let (t, c) = (Instant::now(), cpu_s());
    let mut new = 0;
    for g in &groups {
        new += store.write_reading_groups(g).expect("write");
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
    assert_eq!(new as u64, total, "every reading is new");
    println!(
        "| {messages} × {per_message} | {} | {:.0} | {:.2} | {:.2} |",
        groups.len(),
        total as f64 / wall,
        wall * 1e6 / total as f64,
        cpu * 1e6 / total as f64
    );
}

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let sample: Vec<Reading> = (0..20_000).map(reading).collect();
    let t = Instant::now();
    let mut bytes = 0;
    for r in &sample {
        bytes += serde_json::to_string(r).expect("json").len();
    }
    println!(
        "JSON body alone: {:.2} µs/reading, {} bytes/reading",
        t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64,
        bytes / sample.len()
    );
    println!("\n{total} readings per case, WAL + synchronous NORMAL, fresh file each\n");
    println!(
        "| group (messages × readings) | commits | readings/s | wall µs/reading | CPU µs/reading |"
    );
    println!("|---|---|---|---|---|");
    case(total, 20, 1);
    case(total, 100, 1);
    case(total, 1000, 1);
    case(total, 50, 200);
}
