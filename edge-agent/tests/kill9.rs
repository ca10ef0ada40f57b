//! The agent binary is SIGKILLed with 500 readings in its spool (broker down); after a restart with the
//! broker up, all 500 are delivered, marked `replayed`.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_nothing() {
    let Some(mut broker) = mosquitto("kill9") else {
        return;
    };
    // Broker down from the start (same port and persistence folder when it comes back).
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, registry("gw-test", 2, 5)).unwrap();
    let udp = free_udp_port();
    let cfg = gateway_config(dir.path(), broker.port, udp, &reg);
    let spool = cfg.spool.path.clone();
    let conf = dir.path().join("agent.toml");
    std::fs::write(&conf, toml::to_string(&cfg).unwrap()).unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["run", "--config"])
            .arg(&conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // Broker down: everything stays in the spool.
    let mut agent = start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !spool.exists() {
        assert!(Instant::now() < deadline, "agent did not create its spool");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames: Vec<Vec<u8>> = (0..500u32)
        .map(|i| frame((i % 10) as u16 + 1, 3, i))
        .collect();
    send_frames(udp, &frames).await;
    while spool_rows(&spool) != 500 {
        assert!(
            Instant::now() < deadline,
            "spool has {} rows",
            spool_rows(&spool)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();
    assert_eq!(spool_rows(&spool), 500, "all 500 survive the kill");

    broker.restart();
    let sub = Subscriber::start(broker.port, "sub-kill", "gw-test").await;
    let mut agent = start();
    let want: HashSet<Key> = (0..500u32)
        .map(|i| (format!("L{}-b{:03}", (i % 10) / 5, (i % 10) % 5), 3, i))
        .collect();
    sub.wait_until(Duration::from_secs(30), |s| {
        want.iter().all(|k| s.keys.contains_key(k))
    })
    .await;
    {
        let seen = sub.seen.lock().unwrap();
        assert_eq!(seen.keys.len(), 500);
        assert_eq!(
            seen.replayed, want,
            "every reading from before the restart is marked replayed"
        );
        eprintln!(
            "kill9: 500 delivered after restart, {} duplicates, {} batches",
            seen.duplicates(),
            seen.batches
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool_rows(&spool) != 0 {
        assert!(
            Instant::now() < deadline,
            "spool not emptied: {}",
            spool_rows(&spool)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let status = agent.wait().unwrap();
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");
}
