//! # citybrain-bench — CityBrain against the broker's ceiling and a peer stream processor
//!
//! Same machine, same run, same workload, one consumer at a time: a null subscriber on Mosquitto (the
//! ceiling), CityBrain's stream core end to end (QoS 1, ack after the durable SQLite write, windows in
//! the store), CityBrain with batched messages, and a Bytewax dataflow computing the same per-device
//! one-minute windows. Delivery is counted at each sink; windows are compared with a plain reference
//! computed from the published workload. Prints a table and writes `bench/RESULTS.md`.
//!
//! # Layout
//! - [`workload`]: the published readings and the reference windows.
//! - [`child`]: the child processes (null subscriber, stream core).
//! - [`run`](mod@run): one consumer run (publish, count, check, CPU and memory).
//! - this file: CLI, steps, tables.

mod child;
mod run;
mod workload;

use anyhow::Context;
use clap::{Parser, Subcommand};
use run::{Env, RunResult, System};
use std::fmt::Write as _;
use std::path::PathBuf;
use workload::Workload;

/// Mosquitto's `max_inflight_messages` in the benchmark broker (all consumers): the value
/// `citybrain broker-config` writes and the core's default `ingest_buffer_messages`.
const MAX_INFLIGHT: usize = 1000;

#[derive(Parser, Debug)]
#[command(about = "CityBrain benchmark: broker ceiling vs CityBrain vs Bytewax (prints a table)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (internal) null subscriber child.
    NullSub {
        /// Broker port.
        #[arg(long)]
        port: u16,
        /// Client id.
        #[arg(long)]
        client_id: String,
    },
    /// (internal) stream-core child.
    Core {
        /// CoreConfig as JSON.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct BenchArgs {
    /// Offered rates of the single-reading steps, messages/s (= readings/s); 0 = unthrottled.
    #[arg(long, value_delimiter = ',', default_values_t = vec![5_000.0, 10_000.0, 20_000.0, 40_000.0, 0.0])]
    rates: Vec<f64>,
    /// Length of each paced step, s.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Messages of the unthrottled single-reading step.
    #[arg(long, default_value_t = 200_000)]
    unthrottled_messages: u64,
    /// Simulated devices (1 reading per device per second of event time).
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Readings per message in the batched step.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Readings in the batched step (published unthrottled).
    #[arg(long, default_value_t = 600_000)]
    batch_readings: u64,
    /// Allowed lateness of both systems, ms of event time.
    #[arg(long, default_value_t = 10_000)]
    lateness_ms: i64,
    /// Devices of the latency step (fewer devices = event time runs faster, so windows close during it).
    #[arg(long, default_value_t = 100)]
    latency_devices: usize,
    /// Devices of the memory step (compared with `--devices` at the lowest rate).
    #[arg(long, default_value_t = 10_000)]
    mem_devices: usize,
    /// Timely workers of the core.
    #[arg(long, default_value_t = 1)]
    core_workers: usize,
    /// Wait for the sink after publishing ends, s.
    #[arg(long, default_value_t = 15.0)]
    drain_s: f64,
    /// Python of the Bytewax virtualenv.
    #[arg(long, default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    /// The Bytewax dataflow.
    #[arg(long, default_value = "bench/peer/bytewax_flow.py")]
    peer: PathBuf,
    /// Skip the Bytewax peer.
    #[arg(long)]
    no_peer: bool,
    /// A shorter run (about 2–3 minutes here): rates 5k, 20k, unthrottled; 4 s steps; smaller batched step.
    #[arg(long)]
    quick: bool,
    /// Keep databases, configs and consumer logs in this folder (default: a temporary folder, removed).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Where to write the results (Markdown); empty = do not write.
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::NullSub { port, client_id }) => child::null_sub(port, &client_id),
        Some(Cmd::Core { config }) => child::core(&config),
        None => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(bench(cli.bench))
        }
    }
}

/// One step's results per system.
struct Step {
    label: String,
    null: RunResult,
    core: RunResult,
    peer: Option<RunResult>,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{} cores (nproc), {cpu}, {:.1} GiB RAM",
        sh("nproc", &[]),
        mem_kib as f64 / 1048576.0
    )
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn win(r: &RunResult) -> String {
    match &r.windows {
        None => "-".into(),
        Some(w) if w.correct() => format!("exact {}/{}", w.exact, w.expected),
        Some(w) if !r.complete && w.wrong == 0 && w.extra == 0 => format!(
            "{} exact, 0 wrong, {} not closed by the deadline (of {})",
            w.exact, w.missing, w.expected
        ),
        Some(w) => format!(
            "WRONG: {} exact, {} wrong, {} missing, {} extra of {}",
            w.exact, w.wrong, w.missing, w.extra, w.expected
        ),
    }
}

fn cell(r: &RunResult) -> String {
    let mut s = fmt_rate(r.rate_rps);
    if r.delivered != r.expected {
        let _ = write!(s, " ({} of {})", r.delivered, r.expected);
    }
    if !r.complete {
        s.push_str(" incomplete");
    }
    s
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn sustained(r: &RunResult) -> bool {
    r.correct() && r.rate_rps >= 0.9 * r.published_rps
}

async fn bench(mut a: BenchArgs) -> anyhow::Result<()> {
    if a.quick {
        a.rates = vec![5_000.0, 20_000.0, 0.0];
        a.duration_s = 4.0;
        a.unthrottled_messages = 120_000;
        a.batch_readings = 300_000;
        a.drain_s = 10.0;
        a.mem_devices = 10_000;
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // Every consumer alike: an in-flight window of 1,000 QoS 1 messages per client (Mosquitto's default
    // is 20), the setting `citybrain broker-config` writes for a consumer that acknowledges after a
    // durable write.
    let broker = testkit::Mosquitto::start_with(
        "citybrain-bench",
        &format!("allow_anonymous true\nmax_inflight_messages {MAX_INFLIGHT}\n"),
    )
    .context("mosquitto is required: apt-get install mosquitto")?;
    let tmp = tempfile::tempdir()?;
    let dir_path = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let peer_ok = !a.no_peer && a.python.is_file() && a.peer.is_file();
    if !a.no_peer && !peer_ok {
        eprintln!(
            "Bytewax peer skipped: {} or {} missing (run bench/run.sh to create the venv)",
            a.python.display(),
            a.peer.display()
        );
    }
    let env = Env {
        port: broker.port,
        dir: dir_path,
        lateness_ms: a.lateness_ms,
        core_workers: a.core_workers,
        python: a.python.clone(),
        peer_script: a.peer.clone(),
        drain_s: a.drain_s,
    };
    let bytewax_version = if peer_ok {
        sh(
            a.python.to_str().unwrap_or("python3"),
            &[
                "-c",
                "import importlib.metadata as m; print('bytewax', m.version('bytewax'), '/ paho-mqtt', m.version('paho-mqtt'))",
            ],
        )
    } else {
        "not run".into()
    };
    let r = steps_and_report(&a, &env, peer_ok, &command, &bytewax_version).await;
    if r.is_err() {
        let log = std::fs::read_to_string(broker.dir().join("mosquitto.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "mosquitto.log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    drop(broker);
    r
}

async fn steps_and_report(
    a: &BenchArgs,
    env: &Env,
    peer_ok: bool,
    command: &str,
    bytewax_version: &str,
) -> anyhow::Result<()> {
    let env = env.clone();
    let started = std::time::Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut n = 0;
    for &rate in &a.rates {
        let readings = if rate > 0.0 {
            (rate * a.duration_s) as u64
        } else {
            a.unthrottled_messages
        };
        let w = Workload::build(a.devices, 1, readings, a.lateness_ms)?;
        let label = if rate > 0.0 {
            format!("{} msg/s", fmt_rate(rate))
        } else {
            "unthrottled".into()
        };
        eprintln!("step {label}: {readings} readings, {} devices", a.devices);
        n += 1;
        let null = run::run_one(&env, System::Null, &w, rate, &format!("null-{n}"), false).await?;
        eprintln!("  null      {} ({:.1} s)", cell(&null), null.elapsed_s);
        let core = run::run_one(&env, System::Core, &w, rate, &format!("core-{n}"), false).await?;
        eprintln!("  citybrain {} windows {}", cell(&core), win(&core));
        let peer = if peer_ok {
            let p = run::run_one(&env, System::Peer, &w, rate, &format!("peer-{n}"), false).await?;
            eprintln!("  bytewax   {} windows {}", cell(&p), win(&p));
            Some(p)
        } else {
            None
        };
        steps.push(Step {
            label,
            null,
            core,
            peer,
        });
    }
    // Batched.
    let wb = Workload::build(a.devices, a.batch, a.batch_readings, a.lateness_ms)?;
    eprintln!(
        "step batched: {} readings, {} per message",
        a.batch_readings, a.batch
    );
    let b_null = run::run_one(&env, System::Null, &wb, 0.0, "null-batch", false).await?;
    eprintln!("  null      {}", cell(&b_null));
    let b_core = run::run_one(&env, System::Core, &wb, 0.0, "core-batch", false).await?;
    eprintln!("  citybrain {} windows {}", cell(&b_core), win(&b_core));
    let b_peer = if peer_ok {
        let p = run::run_one(&env, System::Peer, &wb, 0.0, "peer-batch", false).await?;
        eprintln!("  bytewax   {} windows {}", cell(&p), win(&p));
        Some(p)
    } else {
        None
    };
    drop(wb);
    // Latency at half the highest sustained CityBrain rate (single-reading messages).
    let max_core = steps
        .iter()
        .filter(|s| sustained(&s.core))
        .map(|s| s.core.rate_rps)
        .fold(0.0, f64::max);
    let lat_rate = if max_core > 0.0 {
        (max_core / 2.0).max(1000.0)
    } else {
        1000.0
    };
    let lat_readings = ((lat_rate * a.duration_s * 1.5) as u64).max(lat_rate as u64 * 4);
    let wl = Workload::build(a.latency_devices, 1, lat_readings, a.lateness_ms)?;
    eprintln!("step latency: {} msg/s", fmt_rate(lat_rate));
    let lat = run::run_one(&env, System::Core, &wl, lat_rate, "core-latency", true).await?;
    drop(wl);
    // Memory: more devices at the lowest paced rate.
    let mem_rate = a
        .rates
        .iter()
        .copied()
        .filter(|r| *r > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mem_rate = if mem_rate.is_finite() {
        mem_rate
    } else {
        5_000.0
    };
    let wm = Workload::build(
        a.mem_devices,
        1,
        (mem_rate * a.duration_s) as u64,
        a.lateness_ms,
    )?;
    eprintln!(
        "step memory: {} devices at {} msg/s",
        a.mem_devices,
        fmt_rate(mem_rate)
    );
    let mem = run::run_one(&env, System::Core, &wm, mem_rate, "core-mem", false).await?;
    drop(wm);
    let mem_base = steps
        .iter()
        .find(|s| s.null.offered_rps == mem_rate)
        .map(|s| s.core.hwm_kib);
    let total_s = started.elapsed().as_secs_f64();

    // ---------- report ----------
    let mut md = String::new();
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(md, "# CityBrain benchmark results\n");
    let _ = writeln!(md, "- Date: {date}");
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(
        md,
        "- Versions: {}; {}; {}",
        sh("/usr/sbin/mosquitto", &["-h"]),
        sh("rustc", &["--version"]),
        bytewax_version
    );
    let _ = writeln!(
        md,
        "- Command: `{command}` (via `bench/run.sh`), total {total_s:.0} s"
    );
    let _ = writeln!(
        md,
        "- Workload: grid_summary readings of {} devices, 1 reading/device/s of event time (a replay: event time in the past, advancing offered-rate ÷ devices event-seconds per wall second), JSON from `telemetry::json::encode`; QoS 1 end to end; \
         one consumer at a time on the same Mosquitto (persistence on, `set_tcp_nodelay true`, `max_inflight_messages` {MAX_INFLIGHT} for every consumer, default 20); \
         1-minute tumbling event-time windows, allowed lateness {} ms in both systems; per device and minute: count and mean v_rms_v. \
         Delivered = counted at the sink (null: messages received; CityBrain: `reading_counts()` of its SQLite store; Bytewax: \
         sum of window counts). Rate = delivered / (first publish → last reading at the sink). Windows are compared with a \
         reference computed from the published workload (count equal, mean within 1e-9). CPU = utime+stime of the consumer \
         process from subscribed to done (/proc/<pid>/stat); memory = VmHWM.",
        a.devices, a.lateness_ms
    );
    let _ = writeln!(md, "\n## Throughput, one reading per message\n");
    let _ = writeln!(
        md,
        "| offered | published | null subscriber (ceiling) | CityBrain | CB / ceiling (goal ≥ 0.9) | CityBrain windows | Bytewax | BW / ceiling | Bytewax windows |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for s in &steps {
        let (pc, pr, pw) = match &s.peer {
            Some(p) => (cell(p), ratio(p.rate_rps, s.null.rate_rps), win(p)),
            None => ("not run".into(), "-".into(), "-".into()),
        };
        let cb_ratio = ratio(s.core.rate_rps, s.null.rate_rps);
        let met = if s.core.correct() && s.core.rate_rps >= 0.9 * s.null.rate_rps {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {cb_ratio} {met} | {} | {pc} | {pr} | {pw} |",
            s.label,
            fmt_rate(s.core.published_rps),
            cell(&s.null),
            cell(&s.core),
            win(&s.core)
        );
    }
    let best = |f: &dyn Fn(&Step) -> Option<&RunResult>| {
        steps
            .iter()
            .filter_map(f)
            .filter(|r| sustained(r))
            .map(|r| r.rate_rps)
            .fold(0.0, f64::max)
    };
    let best_null = best(&|s| Some(&s.null));
    let best_core = best(&|s| Some(&s.core));
    let best_peer = best(&|s| s.peer.as_ref());
    let _ = writeln!(
        md,
        "\nHighest rate sustained (all delivered, windows exact, delivered ≥ 0.9 × published): null {} · CityBrain {} · Bytewax {} readings/s.",
        fmt_rate(best_null),
        fmt_rate(best_core),
        if peer_ok {
            fmt_rate(best_peer)
        } else {
            "not run".into()
        }
    );
    let _ = writeln!(md, "\n## Consumer CPU and memory\n");
    let _ = writeln!(
        md,
        "| step | null µs/reading | CityBrain µs/reading | Bytewax µs/reading | CB / Bytewax (goal ≤ 0.2) | CB / null (goal ≤ 2) | null VmHWM | CityBrain VmHWM | Bytewax VmHWM | CB / Bytewax memory |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    let mut cpu_rows: Vec<(&str, &RunResult, &RunResult, Option<&RunResult>)> = steps
        .iter()
        .map(|s| (s.label.as_str(), &s.null, &s.core, s.peer.as_ref()))
        .collect();
    let batched_label = format!("batched ({} / message)", a.batch);
    cpu_rows.push((&batched_label, &b_null, &b_core, b_peer.as_ref()));
    for (label, nl, cb, pe) in cpu_rows {
        let (pcpu, r_peer, phwm, r_mem) = match pe {
            Some(p) => {
                let r = cb.cpu_us_per_reading() / p.cpu_us_per_reading();
                (
                    format!("{:.1}", p.cpu_us_per_reading()),
                    format!("{:.2} {}", r, if r <= 0.2 { "met" } else { "**missed**" }),
                    format!("{:.0} MiB", p.hwm_kib as f64 / 1024.0),
                    ratio(cb.hwm_kib as f64, p.hwm_kib as f64),
                )
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let rn = cb.cpu_us_per_reading() / nl.cpu_us_per_reading();
        let _ = writeln!(
            md,
            "| {label} | {:.1} | {:.1} | {pcpu} | {r_peer} | {:.2} {} | {:.0} MiB | {:.0} MiB | {phwm} | {r_mem} |",
            nl.cpu_us_per_reading(),
            cb.cpu_us_per_reading(),
            rn,
            if rn <= 2.0 { "met" } else { "**missed**" },
            nl.hwm_kib as f64 / 1024.0,
            cb.hwm_kib as f64 / 1024.0
        );
    }
    let _ = writeln!(
        md,
        "\n## Batched messages ({} readings per message, unthrottled, {} readings)\n",
        a.batch, a.batch_readings
    );
    let _ = writeln!(md, "| system | readings/s | windows | goal |");
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(md, "| null subscriber | {} | - | ceiling |", cell(&b_null));
    let _ = writeln!(
        md,
        "| CityBrain | {} | {} | ≥ 1M readings/s on 2 cores: {} |",
        cell(&b_core),
        win(&b_core),
        if b_core.correct() && b_core.rate_rps >= 1e6 {
            "met"
        } else {
            "**missed**"
        }
    );
    if let Some(p) = &b_peer {
        let _ = writeln!(md, "| Bytewax | {} | {} | - |", cell(p), win(p));
    }
    let _ = writeln!(md, "\n## Latency and memory (CityBrain)\n");
    let _ = writeln!(md, "| figure | value | goal |");
    let _ = writeln!(md, "|---|---|---|");
    match lat.stored_lat {
        Some(l) => {
            let _ = writeln!(
                md,
                "| publish → stored (visible to a reader), at {} msg/s ({} samples; run {}) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | p99 ≤ 100 ms: {} |",
                fmt_rate(lat_rate),
                l.n,
                if lat.correct() {
                    "complete, windows exact"
                } else {
                    "INCOMPLETE or wrong windows"
                },
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                if l.p99_ms <= 100.0 {
                    "met"
                } else {
                    "**missed**"
                }
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| publish → stored | no samples | p99 ≤ 100 ms: **not measured** |"
            );
        }
    }
    match lat.window_lat {
        Some(l) => {
            let _ = writeln!(
                md,
                "| window end + lateness → all device rows of the window stored ({} windows) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms | p99 ≤ 1 s: {} |",
                l.n,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                if l.p99_ms <= 1000.0 {
                    "met"
                } else {
                    "**missed**"
                }
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| window end + lateness → row stored | no samples | p99 ≤ 1 s: **not measured** |"
            );
        }
    }
    let per10k = mem_base.map(|b| {
        (mem.hwm_kib as f64 - b as f64) / (a.mem_devices as f64 - a.devices as f64) * 10_000.0
            / 1024.0
    });
    let _ = writeln!(
        md,
        "| memory per 10k devices (VmHWM {} devices − {} devices at {} msg/s, scaled) | {} (VmHWM {:.0} MiB vs {}) | - |",
        a.mem_devices,
        a.devices,
        fmt_rate(mem_rate),
        per10k.map_or("-".into(), |v| format!("{v:.1} MiB")),
        mem.hwm_kib as f64 / 1024.0,
        mem_base.map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / 1024.0))
    );
    println!("{md}");
    if !a.out.as_os_str().is_empty() {
        std::fs::write(&a.out, &md).with_context(|| format!("writing {}", a.out.display()))?;
        eprintln!("wrote {}", a.out.display());
    }
    Ok(())
}
