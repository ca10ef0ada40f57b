//! `decode` bench: CPU time per reading of `telemetry::json::decode` (fast path) against
//! `telemetry::json::decode_reference` (the general path alone), on batches of 50 readings as
//! `telemetry::json::encode` writes them. Prints figures; asserts nothing about time.
//!
//! Run: `cargo bench -p telemetry --features std --bench decode` (append `-- --only-decode` to skip
//! the reference figures, e.g. under `perf record`).
//!
//! CPU time is the thread's own (`/proc/thread-self/schedstat`, ns), so other jobs on the machine do
//! not inflate it the way they inflate wall time. Each figure: 7 repetitions, each of as many passes
//! over 4,000 messages (200,000 readings, 39–71 MB: not cache-resident, like a stream) as fill 250 ms;
//! min and median of the repetitions.
//!
//! # Figures (µs CPU per reading; each cell spans the min and median of both runs)
//! 2026-11-29 21:14 UTC, same VM (`uptime` load average 3.2–3.8 during the runs); release; before
//! and after run alternately, twice each. "before" = commit e67736d (serde_json without
//! `float_roundtrip`: about 1 in 5 of the contract test's f64 values came back 1 ULP off); "after"
//! = correctly rounded floats: `float_roundtrip`, the general path re-reading `f32` fields straight
//! as `f32` (a second serde_json pass over each reading), the fast path following it (see
//! `json/fast.rs`).
//!
//! | workload | `decode_reference` before | `decode_reference` after | `decode` before | `decode` after |
//! |---|---|---|---|---|
//! | parking_change, 195 B/reading | 1.02–1.03 | 1.34–1.37 | 0.162–0.165 | 0.162–0.164 |
//! | grid_summary, 357 B/reading | 2.11–2.16 | 2.87–2.89 | 0.340–0.350 | 0.360–0.365 |
//!
//! The fast path's cost is the grid workload's 17-digit `energy_kwh` (beyond 2^53: parsed from its
//! text by `str::parse::<f64>` instead of one division) and the halfway test on each `f32` field.
//! Tried and not kept: dividing the 64-bit significand once and checking the quotient exactly
//! with `u128` arithmetic (correcting by a step when it missed): no faster than `str::parse`.
//!
//! ## Earlier figures: the one-pass fast path
//! 2026-11-29 20:50 UTC, 2-vCPU AMD EPYC VM shared with another helper's builds and benchmarks
//! (`uptime` load average 3.4–5.0 during the runs); release; before and after run alternately,
//! twice each. "before" = commit 048464c (the serde_json fast path into `FastReading` mirrors,
//! after the depth/NaN scan); "after" = the one-pass fast path of `json/fast.rs`.
//!
//! | workload | `decode_reference` (general path) | `decode` before | `decode` after |
//! |---|---|---|---|
//! | parking_change, 195 B/reading | 0.98–1.04 | 0.670–0.680 | 0.162–0.165 |
//! | grid_summary, 357 B/reading | 2.03–2.18 | 1.21–1.23 | 0.342–0.350 |
//!
//! The parking workload is `core-bench decode`'s (stream-core), which measured 0.68–0.73 before.
//! The same 200 k readings held in cache (40 messages) instead of streamed from memory cost about
//! 5 % less, so the figures are the parser's own work, not memory bandwidth.
//!
//! ## Tried and not kept
//! - sonic-rs 0.5.10 (SIMD JSON) under the old serde mirrors: parking 0.61 vs 0.66 — and not usable
//!   then: its f64 parsing is correctly rounded, serde_json's default was not (one multiply or
//!   divide by a power of ten), so about 1 in 10 random 17-digit decimals (e.g.
//!   `958787.2702291189`) decoded to a different f64. (With `float_roundtrip` now on, both are
//!   correctly rounded; its `f32` fields would still need the general path's single rounding.)
//! - 16-byte SWAR scanning of identifiers, 8-digit SWAR integer parsing, one UTF-8 check of the
//!   whole message instead of one per identifier, building readings from borrowed parts after
//!   validation, inlining float parsing: each no faster or slower here (the byte loops are short).

use std::hint::black_box;
use telemetry::json::{decode, decode_reference, encode};
use telemetry::{
    DeviceId, DistrictId, GridSummary, Limits, Measurement, ParkingChange, Reading, SiteId,
    TimeSource,
};

const T0: i64 = 1_800_000_000_000;
const PER_MESSAGE: usize = 50;
const MESSAGES: usize = 4_000;
const REPS: usize = 7;

/// Small xorshift generator (deterministic inputs, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

fn ids(dev: u32) -> (DeviceId, SiteId, DistrictId) {
    (
        DeviceId::new(&format!("L{}-b{}", dev / 100, dev % 100)).unwrap(),
        SiteId::new(&format!("L{}", dev / 100)).unwrap(),
        DistrictId::new(&format!("d{}", dev / 1000)).unwrap(),
    )
}

/// The stream-core bench's parking workload: 2,000 devices, a change each, in event-time order.
fn parking(i: usize, _rng: &mut Rng) -> Reading {
    let dev = (i as u32) % 2_000;
    let seq = (i as u32) / 2_000;
    let (device, site, district) = ids(dev);
    Reading {
        device,
        site,
        district,
        boot: 1,
        seq,
        ts_ms: T0 + i as i64 * 10,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: seq.is_multiple_of(2),
            field_ut: 40.0,
        }),
    }
}

/// Grid summaries with measured-looking values (full-precision f32s, a long f64 energy register).
fn grid(i: usize, rng: &mut Rng) -> Reading {
    let dev = (i as u32) % 500;
    let (device, site, district) = ids(dev);
    let v_rms = rng.range(225.0, 235.0) as f32;
    Reading {
        device,
        site,
        district,
        boot: 3,
        seq: (i as u32) / 500,
        ts_ms: T0 + i as i64 * 10,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::GridSummary(GridSummary {
            interval_s: 60,
            v_rms_v: v_rms,
            v_min_v: v_rms - rng.range(0.0, 5.0) as f32,
            v_max_v: v_rms + rng.range(0.0, 5.0) as f32,
            i_rms_a: rng.range(0.0, 100.0) as f32,
            p_kw: rng.range(-20.0, 50.0) as f32,
            q_kvar: rng.range(-5.0, 5.0) as f32,
            pf: rng.range(0.8, 1.0) as f32,
            freq_hz: rng.range(49.9, 50.1) as f32,
            energy_kwh: rng.range(0.0, 1.0e6),
        }),
    }
}

fn messages(make: fn(usize, &mut Rng) -> Reading) -> Vec<(i64, Vec<u8>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..MESSAGES)
        .map(|m| {
            let batch: Vec<Reading> = (0..PER_MESSAGE)
                .map(|k| make(m * PER_MESSAGE + k, &mut rng))
                .collect();
            (batch[PER_MESSAGE - 1].ts_ms, encode(&batch))
        })
        .collect()
}

/// This thread's CPU time so far, ns (first field of `/proc/thread-self/schedstat`).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

type DecodeFn =
    fn(&[u8], &Limits, i64) -> Result<telemetry::json::Decoded, telemetry::json::Rejection>;

/// One pass over `msgs`: readings decoded.
fn pass(msgs: &[(i64, Vec<u8>)], f: DecodeFn, limits: &Limits) -> usize {
    let mut n = 0usize;
    for (ts, body) in msgs {
        let d = f(black_box(body), limits, *ts + 1_000).expect("bench input is valid");
        n += d.readings.len();
        black_box(d);
    }
    n
}

/// Min and median CPU µs per reading over [`REPS`] repetitions. The thread's CPU clock advances in
/// scheduler ticks (4 ms here), so each repetition runs enough passes over `msgs` for ≥ 250 ms.
fn measure(msgs: &[(i64, Vec<u8>)], f: DecodeFn) -> (f64, f64) {
    let limits = Limits::default();
    let t = std::time::Instant::now();
    let n = pass(msgs, f, &limits);
    assert_eq!(n, msgs.len() * PER_MESSAGE, "every reading accepted");
    let passes = (0.25 / t.elapsed().as_secs_f64()).ceil().max(1.0) as usize;
    let mut per = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t0 = cpu_ns();
        let n: usize = (0..passes).map(|_| pass(msgs, f, &limits)).sum();
        per.push((cpu_ns() - t0) as f64 / 1e3 / n as f64);
    }
    per.sort_by(f64::total_cmp);
    (per[0], per[REPS / 2])
}

fn main() {
    // `-- --only-decode`: skip the reference figures (for profiling the fast path).
    let only_decode = std::env::args().any(|a| a == "--only-decode");
    println!(
        "decode bench: {MESSAGES} messages x {PER_MESSAGE} readings, {REPS} reps; CPU µs/reading (min / median)"
    );
    for (name, make) in [
        ("parking_change", parking as fn(usize, &mut Rng) -> Reading),
        ("grid_summary", grid),
    ] {
        let msgs = messages(make);
        let limits = Limits::default();
        for (ts, body) in &msgs {
            assert_eq!(
                decode(body, &limits, *ts + 1_000),
                decode_reference(body, &limits, *ts + 1_000),
                "decode and decode_reference disagree on the bench input"
            );
        }
        let bytes: usize = msgs.iter().map(|(_, b)| b.len()).sum();
        let (gmin, gmed) = if only_decode {
            (f64::NAN, f64::NAN)
        } else {
            measure(&msgs, decode_reference)
        };
        let (fmin, fmed) = measure(&msgs, decode);
        println!(
            "{name:15} ({:.0} B/reading): decode_reference {gmin:.3} / {gmed:.3}   decode {fmin:.3} / {fmed:.3}",
            bytes as f64 / (MESSAGES * PER_MESSAGE) as f64
        );
    }
}
