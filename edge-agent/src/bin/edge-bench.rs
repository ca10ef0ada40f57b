//! `edge-bench`: short measurements, printed. Spool write rate (sync normal/full), replay rate of a
//! spooled backlog through a local Mosquitto after an "outage" (batches), peak memory.
//! Run: `cargo run --release -p edge-agent --bin edge-bench [-- N]` (default N = 50,000 readings).

use edge_agent::counters::Counters;
use edge_agent::delivery::{self, DeliveryConfig};
use edge_agent::spool::{Spool, SpoolConfig, SyncMode};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::mqtt::MqttEndpoint;
use telemetry::{Measurement, ParkingChange, Reading, TimeSource};

fn reading(i: u32) -> Reading {
    Reading {
        device: format!("L{}-b{:03}", i % 30, i % 8).parse().unwrap(),
        site: format!("L{}", i % 30).parse().unwrap(),
        district: "central".parse().unwrap(),
        boot: 1,
        seq: i,
        ts_ms: 1_700_000_000_000 + i64::from(i),
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: i.is_multiple_of(2),
            field_ut: 42.5,
        }),
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile_dir()?;
    let readings: Vec<Reading> = (0..n).map(reading).collect();
    for sync in [SyncMode::Normal, SyncMode::Full] {
        let path = dir.join(format!("w-{sync:?}.sqlite"));
        let mut s = Spool::open(&SpoolConfig {
            path,
            sync,
            ..SpoolConfig::default()
        })?;
        for batch in [1usize, 100] {
            let count = if batch == 1 {
                n.min(2_000) as usize
            } else {
                n as usize
            };
            let t = Instant::now();
            for c in readings[..count].chunks(batch) {
                s.append(c, 0)?;
            }
            let dt = t.elapsed().as_secs_f64();
            println!(
                "spool append sync={sync:?} batch={batch}: {:.0} readings/s ({count} in {dt:.2} s)",
                count as f64 / dt
            );
        }
    }

    // Replay after an outage: N readings spooled, then a broker appears.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let spool_cfg = SpoolConfig {
        path: dir.join("replay.sqlite"),
        ..SpoolConfig::default()
    };
    Spool::open(&spool_cfg)?.append(&readings, delivery::now_ms())?;
    let conf = dir.join("mosq.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nuser root\n"
        ),
    )?;
    let mut mosq = match Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("replay: skipped (mosquitto: {e})");
            return Ok(());
        }
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ep = MqttEndpoint {
        port,
        client_id: "bench".into(),
        ..MqttEndpoint::default()
    };
    let counters = Arc::new(Counters::default());
    let t = Instant::now();
    let d = delivery::start(
        "gw-bench",
        &ep,
        &spool_cfg,
        &DeliveryConfig::default(),
        Vec::new(),
        counters.clone(),
    )?;
    while Counters::get(&counters.acked) < u64::from(n) && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "replay through mosquitto: {} acked in {dt:.2} s = {:.0} readings/s ({} batch messages)",
        Counters::get(&counters.acked),
        Counters::get(&counters.acked) as f64 / dt,
        Counters::get(&counters.batches)
    );
    // Live publish rate: one message per reading (backlog below the batch threshold).
    let h = d.handle.clone();
    let live = n.min(20_000);
    let t = Instant::now();
    let base = Counters::get(&counters.acked);
    for c in (0..live)
        .map(|i| reading(n + i))
        .collect::<Vec<_>>()
        .chunks(50)
    {
        h.send(c.to_vec()).await;
        while Counters::get(&counters.readings_in)
            .saturating_sub(Counters::get(&counters.acked) - base)
            > 150
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    while Counters::get(&counters.acked) < base + u64::from(live)
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "live publish (spool + QoS 1 + PUBACK, mixed single/batch by backlog): {:.0} readings/s",
        (Counters::get(&counters.acked) - base) as f64 / dt
    );
    d.shutdown().await?;
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    let _ = mosq.kill();
    let _ = mosq.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
