//! The newcomer path: `citybrain` with no subcommand (the demo: embedded broker, stream core,
//! dashboard and simulator in one process) in a fresh working folder with the repo's `data/` linked in.
//! It must serve live open data, print the dashboard URL, and stop cleanly (exit code 0) on Ctrl-C.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn demo_serves_live_data_and_stops_cleanly_on_ctrl_c() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::os::unix::fs::symlink(repo_data(), dir.join("data")).unwrap();
    let (broker, core_http, dash) = (free_addr(), free_addr(), free_addr());
    let cfg = dir.join("citybrain.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
data_dir = "state"
registry_path = "state/registry.toml"
[broker]
listen = "{broker}"
[core]
http_addr = "{core_http}"
[dashboard]
listen_addr = "{dash}"
"#
        ),
    )
    .unwrap();
    let mut demo = Part::start("demo", dir, &cfg, &[]);
    wait_http_ok(&dash, "/healthz", Duration::from_secs(90), &mut [&mut demo]);
    let t_up = t0.elapsed();

    // Live data: open data (no token needed) lists lots once the first windows are stored.
    let deadline = Instant::now() + Duration::from_secs(120);
    let lots = loop {
        let (status, body) = http_get(&dash, "/api/v1/open/parking", None).unwrap();
        assert_eq!(status, 200, "{body}\n{}", demo.logs());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let n = v.as_array().map(|a| a.len()).unwrap_or(0);
        if n > 0 {
            break v;
        }
        if let Some(s) = demo.try_status() {
            panic!("demo exited early with {s}\n{}", demo.logs());
        }
        assert!(
            Instant::now() < deadline,
            "no open parking data after 120 s: {body}\n{}",
            demo.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let t_data = t0.elapsed();
    let first = &lots[0];
    assert_eq!(first["type"], "OffStreetParking", "{first}");

    let stop = demo.interrupt_and_expect_clean_exit(Duration::from_secs(20));
    let all = format!("{}\n{}", demo.stdout(), demo.stderr());
    assert!(
        all.contains(&format!("http://{dash}")),
        "the demo does not print its dashboard URL http://{dash}\n{}",
        demo.logs()
    );
    // Whatever was stored, each reading once.
    let store_path = dir.join("state/citybrain.sqlite");
    let (rows, distinct) = sql_keys(&store_path);
    assert!(rows > 0);
    assert_eq!(rows, distinct);
    eprintln!(
        "demo: dashboard up {t_up:?}, open data {t_data:?} ({} lots), exit after SIGINT {stop:?}, \
         {rows} readings stored",
        lots.as_array().unwrap().len()
    );
}
