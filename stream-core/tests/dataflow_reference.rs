//! The timely dataflow against a plain single-threaded reference, on seeded, shuffled input with
//! duplicates, late (corrected) and too-late readings, on 1, 2 and 4 workers, and on 2 OS processes
//! (2 workers each) forming one timely cluster over loopback TCP, where every exchanged record crosses
//! the process boundary serialized (bincode).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_core::dataflow::run_finite;
use stream_core::{CoreInput, CoreOutput, SiteInfo, WindowConfig};
use telemetry::message::WindowAggregate;
use telemetry::registry::Registry;
use telemetry::{
    DeviceId, DistrictId, GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat,
    PqEventKind, Reading, SiteId, TimeSource,
};

const T0: i64 = 1_700_000_000_000 - (1_700_000_000_000 % 900_000);
const REG: &str = r#"
[[lot]]
id = "L1"
name = "one"
district = "central"
capacity = 10
[[lot]]
id = "L2"
name = "two"
district = "central"
capacity = 5
[[feeder]]
id = "F1"
name = "f"
district = "south"
"#;

fn registry() -> Registry {
    let mut s = REG.to_string();
    for (lot, n) in [("L1", 8), ("L2", 5)] {
        for b in 0..n {
            s += &format!(
                "[[device]]\nid = \"{lot}-b{b}\"\nkind = \"parking\"\nsite = \"{lot}\"\ngateway = \"gw\"\naddress = {}\nreport_interval_s = 300\n",
                100 * (lot == "L2") as u32 + b
            );
        }
    }
    for m in 0..3 {
        s += &format!(
            "[[device]]\nid = \"F1-m{m}\"\nkind = \"grid\"\nsite = \"F1\"\ngateway = \"gw\"\naddress = {}\nreport_interval_s = 60\n",
            200 + m
        );
    }
    Registry::from_toml(&s).unwrap()
}

fn rd(dev: &str, site: &str, district: &str, seq: u32, ts: i64, data: Measurement) -> Reading {
    Reading {
        device: DeviceId::new(dev).unwrap(),
        site: SiteId::new(site).unwrap(),
        district: DistrictId::new(district).unwrap(),
        boot: 1,
        seq,
        ts_ms: ts,
        time_source: TimeSource::Device,
        replayed: false,
        data,
    }
}

/// Readings in event-time order plus their arrival watermark.
fn generate(seed: u64) -> Vec<(i64, Reading)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let span = 40 * 60_000;
    for (lot, n) in [("L1", 8), ("L2", 5)] {
        for b in 0..n {
            let dev = format!("{lot}-b{b}");
            let mut ts = T0 + rng.random_range(0..60_000);
            let mut occ = rng.random_bool(0.5);
            let mut seq = 0;
            while ts < T0 + span {
                let data = if rng.random_bool(0.3) {
                    Measurement::ParkingHeartbeat(ParkingHeartbeat {
                        occupied: occ,
                        battery_pct: rng.random_range(5.0..100.0),
                        field_ut: 1.0,
                        transitions: seq,
                        dropped: 0,
                    })
                } else {
                    occ = !occ;
                    Measurement::ParkingChange(ParkingChange {
                        occupied: occ,
                        field_ut: 50.0,
                    })
                };
                out.push(rd(&dev, lot, "central", seq, ts, data));
                seq += 1;
                ts += rng.random_range(10_000..240_000);
            }
        }
    }
    for m in 0..3 {
        let dev = format!("F1-m{m}");
        let mut e = 100.0 * f64::from(m);
        for (seq, i) in (0..40).enumerate() {
            let ts = T0 + i * 60_000 + 1_000 * i64::from(m);
            e += rng.random_range(0.0..2.0);
            let v: f32 = rng.random_range(200.0..260.0);
            out.push(rd(
                &dev,
                "F1",
                "south",
                seq as u32 * 2,
                ts,
                Measurement::GridSummary(GridSummary {
                    interval_s: 60,
                    v_rms_v: v,
                    v_min_v: v - 3.0,
                    v_max_v: v + 3.0,
                    i_rms_a: 10.0,
                    p_kw: rng.random_range(0.0..2.0),
                    q_kvar: 0.3,
                    pf: 0.95,
                    freq_hz: rng.random_range(49.9..50.1),
                    energy_kwh: e,
                }),
            ));
            if rng.random_bool(0.15) {
                let kind = [
                    PqEventKind::Sag,
                    PqEventKind::Swell,
                    PqEventKind::Interruption,
                ][rng.random_range(0..3)];
                out.push(rd(
                    &dev,
                    "F1",
                    "south",
                    seq as u32 * 2 + 1,
                    ts + 500,
                    Measurement::GridEvent(GridEvent {
                        event: kind,
                        duration_ms: 200,
                        extreme_v: 150.0,
                    }),
                ));
            }
        }
    }
    let mut timed = Vec::new();
    for r in out {
        let p: f64 = rng.random();
        let delay = if p < 0.8 {
            rng.random_range(0..20_000)
        } else if p < 0.95 {
            rng.random_range(90_000..600_000)
        } else {
            rng.random_range(20_000..70_000)
        };
        timed.push((r.ts_ms + delay, r.clone()));
        if rng.random_bool(0.1) {
            timed.push((r.ts_ms + rng.random_range(0..900_000), r));
        }
    }
    // Too late: 25 h old readings arriving during the run (the horizon is 24 h).
    for k in 0..5u32 {
        let r = rd(
            "L1-b0",
            "L1",
            "central",
            10_000 + k,
            T0 - 25 * 3_600_000,
            Measurement::ParkingChange(ParkingChange {
                occupied: true,
                field_ut: 1.0,
            }),
        );
        timed.push((T0 + 300_000 + i64::from(k) * 1000, r));
    }
    timed
}

/// Batches by 5 s of arrival watermark, shuffled inside.
fn batches(seed: u64, timed: &[(i64, Reading)]) -> Vec<(u64, Vec<CoreInput>)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut by: BTreeMap<i64, Vec<CoreInput>> = BTreeMap::new();
    for (arr, r) in timed {
        let t = arr - arr.rem_euclid(5_000) + 5_000;
        by.entry(t)
            .or_default()
            .push(CoreInput::reading(r.clone(), *arr));
    }
    by.into_iter()
        .map(|(t, mut v)| {
            v.shuffle(&mut rng);
            (t as u64, v)
        })
        .collect()
}

struct Expected {
    dup: usize,
    too_late: usize,
    accepted: Vec<Reading>,
}

fn reference_admission(b: &[(u64, Vec<CoreInput>)], horizon: i64) -> Expected {
    let mut seen = HashSet::new();
    let mut e = Expected {
        dup: 0,
        too_late: 0,
        accepted: Vec::new(),
    };
    for (t, batch) in b {
        for x in batch {
            let CoreInput::Reading(r) = x else {
                continue;
            };
            let r = &r.to_reading().expect("valid ids");
            if r.ts_ms < *t as i64 - horizon {
                e.too_late += 1;
            } else if !seen.insert((r.device.to_string(), r.boot, r.seq)) {
                e.dup += 1;
            } else {
                e.accepted.push(r.clone());
            }
        }
    }
    e
}

fn occ(m: &Measurement) -> Option<bool> {
    match m {
        Measurement::ParkingChange(c) => Some(c.occupied),
        Measurement::ParkingHeartbeat(h) => Some(h.occupied),
        _ => None,
    }
}

/// Reference parking metrics for one lot window: plain loops over all accepted readings.
fn ref_parking(
    acc: &[Reading],
    lot: &str,
    cap: f64,
    s: i64,
    e: i64,
) -> Option<(u64, f64, f64, f64)> {
    let mine: Vec<&Reading> = acc.iter().filter(|r| r.site.as_str() == lot).collect();
    let inwin: Vec<&Reading> = mine
        .iter()
        .copied()
        .filter(|r| r.ts_ms >= s && r.ts_ms < e)
        .collect();
    if inwin.is_empty() {
        return None;
    }
    let devs: HashSet<&str> = mine.iter().map(|r| r.device.as_str()).collect();
    let state_at = |tau: i64| -> f64 {
        devs.iter()
            .filter(|d| {
                mine.iter()
                    .filter(|r| r.device.as_str() == **d && r.ts_ms <= tau)
                    .max_by_key(|r| (r.ts_ms, r.boot, r.seq))
                    .and_then(|r| occ(&r.data))
                    .unwrap_or(false)
            })
            .count() as f64
    };
    let mut bounds: Vec<i64> = inwin.iter().map(|r| r.ts_ms).collect();
    bounds.push(s);
    bounds.sort();
    bounds.dedup();
    let mut area = 0.0;
    for (i, b) in bounds.iter().enumerate() {
        let next = bounds.get(i + 1).copied().unwrap_or(e);
        // state just before s counts at s: readings at exactly s are applied at s.
        area += state_at(*b) * (next - b) as f64;
    }
    let arrivals = inwin
        .iter()
        .filter(|r| {
            matches!(
                r.data,
                Measurement::ParkingChange(ParkingChange { occupied: true, .. })
            )
        })
        .count() as f64;
    let departures = inwin
        .iter()
        .filter(|r| {
            matches!(
                r.data,
                Measurement::ParkingChange(ParkingChange {
                    occupied: false,
                    ..
                })
            )
        })
        .count() as f64;
    Some((
        inwin.len() as u64,
        area / (cap * (e - s) as f64),
        arrivals,
        departures,
    ))
}

/// Reference grid metrics for the feeder: (count, mean V, energy, interruptions).
fn ref_grid(acc: &[Reading], s: i64, e: i64) -> Option<(u64, f64, f64, f64)> {
    let inwin: Vec<&Reading> = acc
        .iter()
        .filter(|r| r.site.as_str() == "F1" && r.ts_ms >= s && r.ts_ms < e)
        .collect();
    if inwin.is_empty() {
        return None;
    }
    let sums: Vec<&GridSummary> = inwin
        .iter()
        .filter_map(|r| {
            if let Measurement::GridSummary(g) = &r.data {
                Some(g)
            } else {
                None
            }
        })
        .collect();
    let mean_v = sums.iter().map(|g| f64::from(g.v_rms_v)).sum::<f64>() / sums.len().max(1) as f64;
    let mut energy = 0.0;
    for m in 0..3 {
        let dev = format!("F1-m{m}");
        let mut ser: Vec<(i64, f64)> = acc
            .iter()
            .filter(|r| r.device.as_str() == dev)
            .filter_map(|r| {
                if let Measurement::GridSummary(g) = &r.data {
                    Some((r.ts_ms, g.energy_kwh))
                } else {
                    None
                }
            })
            .collect();
        ser.sort_by_key(|x| x.0);
        let w: Vec<_> = ser.iter().filter(|x| x.0 >= s && x.0 < e).collect();
        if let (Some(first), Some(last)) = (w.first(), w.last()) {
            let prev = ser.iter().rev().find(|x| x.0 < s).map_or(first.1, |x| x.1);
            energy += (last.1 - prev).max(0.0);
        }
    }
    let intr = inwin
        .iter()
        .filter(|r| {
            matches!(
                r.data,
                Measurement::GridEvent(GridEvent {
                    event: PqEventKind::Interruption,
                    ..
                })
            )
        })
        .count() as f64;
    Some((inwin.len() as u64, mean_v, energy, intr))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn finals(out: &[(u64, CoreOutput)]) -> BTreeMap<(String, String, i64, i64), WindowAggregate> {
    let mut m: BTreeMap<(String, String, i64, i64), WindowAggregate> = BTreeMap::new();
    let mut versions: HashMap<(String, String, i64, i64), Vec<u32>> = HashMap::new();
    for (_, o) in out {
        if let CoreOutput::Aggregate(a) = o {
            let k = (a.scope.clone(), a.id.clone(), a.window_ms, a.start_ms);
            versions.entry(k.clone()).or_default().push(a.version);
            if m.get(&k).is_none_or(|x| x.version < a.version) {
                m.insert(k, a.clone());
            }
        }
    }
    for (k, mut v) in versions {
        v.sort();
        assert_eq!(
            v,
            (1..=v.len() as u32).collect::<Vec<_>>(),
            "versions of {k:?} are 1..n, each once"
        );
    }
    m
}

#[test]
fn dataflow_matches_reference_on_1_2_4_workers() {
    let reg = registry();
    let info = Arc::new(SiteInfo::from_registry(&reg));
    let cfg = WindowConfig::default();
    let timed = generate(7);
    let b = Arc::new(batches(7, &timed));
    let exp = reference_admission(&b, cfg.correction_horizon_ms);
    assert!(
        exp.dup > 10 && exp.too_late == 5,
        "input has duplicates ({}) and too-late readings ({})",
        exp.dup,
        exp.too_late
    );

    let one = run_finite(
        timely::Config::thread(),
        b.clone(),
        cfg.clone(),
        info.clone(),
    )
    .unwrap();
    for w in [2, 4] {
        let many = run_finite(
            timely::Config::process(w),
            b.clone(),
            cfg.clone(),
            info.clone(),
        )
        .unwrap();
        assert_eq!(one.len(), many.len(), "{w} workers: same number of outputs");
        assert!(one == many, "{w} workers: identical outputs");
    }

    let count = |reason: &str| {
        one.iter()
            .filter(|(_, o)| matches!(o, CoreOutput::Dropped { reason: r, .. } if r == reason))
            .count()
    };
    assert_eq!(count("duplicate"), exp.dup);
    assert_eq!(count("too_late"), exp.too_late);

    let f = finals(&one);
    let corrected = f.values().filter(|a| a.version > 1).count();
    assert!(corrected > 0, "late readings produced corrections");
    let mut checked = 0;
    for &len in &cfg.windows_ms {
        for start in (T0 - 3 * 900_000..T0 + 45 * 60_000).step_by(len as usize) {
            for (lot, cap) in [("L1", 10.0), ("L2", 5.0)] {
                let got = f.get(&("lot".into(), lot.into(), len, start));
                match ref_parking(&exp.accepted, lot, cap, start, start + len) {
                    None => assert!(got.is_none(), "no row for an empty window"),
                    Some((n, mean, arr, dep)) => {
                        let g = got.unwrap_or_else(|| panic!("row for {lot} {len} {start}"));
                        assert_eq!(g.count, n);
                        assert!(
                            close(g.metrics["occupancy_mean_ratio"], mean),
                            "{lot} {start}: {} vs {mean}",
                            g.metrics["occupancy_mean_ratio"]
                        );
                        assert_eq!(g.metrics["arrivals"], arr);
                        assert_eq!(g.metrics["departures"], dep);
                        checked += 1;
                    }
                }
            }
            let d = f.get(&("district".into(), "central".into(), len, start));
            let arr: f64 = ["L1", "L2"]
                .iter()
                .filter_map(|l| ref_parking(&exp.accepted, l, 1.0, start, start + len))
                .map(|x| x.2)
                .sum();
            if let Some(d) = d {
                assert_eq!(d.metrics["arrivals"], arr, "district arrivals");
            }
            let got = f.get(&("feeder".into(), "F1".into(), len, start));
            match ref_grid(&exp.accepted, start, start + len) {
                None => assert!(got.is_none()),
                Some((n, v, e, intr)) => {
                    let g = got.unwrap();
                    assert_eq!(g.count, n);
                    assert!(close(g.metrics["v_rms_mean_v"], v));
                    assert!(
                        close(g.metrics["energy_kwh"], e),
                        "energy {start}: {} vs {e}",
                        g.metrics["energy_kwh"]
                    );
                    assert_eq!(g.metrics["interruptions"], intr);
                    let dist = &f[&("district".to_string(), "south".to_string(), len, start)];
                    assert!(close(dist.metrics["energy_kwh"], e));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "checked {checked} windows");

    // Quality: the last row per (source, window) counts exactly the accepted and duplicate readings.
    let mut last_q = BTreeMap::new();
    let mut by_time = one.clone();
    by_time.sort_by_key(|x| x.0);
    for (_, o) in &by_time {
        if let CoreOutput::Quality(q) = o {
            last_q.insert((q.source.clone(), q.start_ms), q.clone());
        }
    }
    let qw = cfg.quality_window_ms;
    for ((src, start), q) in &last_q {
        let n = exp
            .accepted
            .iter()
            .filter(|r| r.device.as_str() == src && r.ts_ms >= *start && r.ts_ms < start + qw)
            .count() as u64;
        assert_eq!(q.received, n, "quality received {src} {start}");
    }
    let total_dups: u64 = last_q.values().map(|q| q.duplicates).sum();
    assert_eq!(total_dups as usize, exp.dup);
}

/// Environment of a child process of [`dataflow_matches_on_2_processes_over_loopback`].
const CHILD_ENV: &str = "CITYBRAIN_TEST_CLUSTER_CHILD";

/// The outputs as sorted `Debug` lines (exact: `Debug` prints f64 in shortest round-trip form).
fn debug_lines(out: &[(u64, CoreOutput)]) -> Vec<String> {
    let mut v: Vec<String> = out.iter().map(|x| format!("{x:?}")).collect();
    v.sort();
    v
}

/// Two OS processes × 2 workers, one timely cluster over loopback: the union of their outputs equals
/// the single-worker run line for line. The test re-runs its own binary as the two processes.
#[test]
fn dataflow_matches_on_2_processes_over_loopback() {
    let reg = registry();
    let info = Arc::new(SiteInfo::from_registry(&reg));
    let cfg = WindowConfig::default();
    let b = Arc::new(batches(7, &generate(7)));

    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // Child: "<process index>;<host:port>,<host:port>;<output file>".
        let mut parts = spec.split(';');
        let process: usize = parts.next().unwrap().parse().unwrap();
        let addresses: Vec<String> = parts.next().unwrap().split(',').map(String::from).collect();
        let path = parts.next().unwrap().to_string();
        let config = timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: 2,
                process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        };
        let out = run_finite(config, b, cfg, info).expect("cluster run");
        std::fs::write(&path, debug_lines(&out).join("\n")).unwrap();
        return;
    }

    let one = debug_lines(&run_finite(timely::Config::thread(), b, cfg, info).unwrap());
    let dir = tempfile::tempdir().unwrap();
    // Two free loopback ports (bound, read, released).
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let hosts = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for process in 0..2 {
        let out = dir.path().join(format!("out{process}.txt"));
        let child = std::process::Command::new(&exe)
            .args([
                "dataflow_matches_on_2_processes_over_loopback",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{process};{hosts};{}", out.display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push((child, out));
    }
    // A worker that panics leaves its peers waiting forever: bound the wait and report the children.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|(c, _)| c.try_wait().unwrap().is_none())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut report = String::new();
    let mut ok = true;
    let mut many = Vec::new();
    for (process, (mut child, out)) in children.into_iter().enumerate() {
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        ok &= o.status.success();
        report += &format!(
            "process {process}: {:?}\n{}\n{}\n",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if let Ok(text) = std::fs::read_to_string(&out) {
            many.extend(text.lines().filter(|l| !l.is_empty()).map(String::from));
        }
    }
    assert!(ok, "a cluster process failed or hung:\n{report}");
    many.sort();
    assert_eq!(one.len(), many.len(), "2 processes: same number of outputs");
    assert!(one == many, "2 processes: identical outputs");
}
