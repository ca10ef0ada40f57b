//! The command line: `citybrain [--config FILE] [SUBCOMMAND]`; no subcommand runs the demo.

use crate::config::{Config, Parts};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// CityBrain: a city's streets and power grid, live.
#[derive(Debug, Parser)]
#[command(name = "citybrain", version, about)]
pub struct Cli {
    /// Config file (TOML); defaults are the embedded demo. See `citybrain.example.toml`.
    #[arg(long, short, global = true, env = "CITYBRAIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to run (default: `demo`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole city on real data: embedded broker, simulator, stream core, dashboard.
    Demo,
    /// Run a gateway: frame intake (UDP, serial, LoRaWAN) → durable spool → MQTT.
    Agent,
    /// Run the stream core: MQTT → validate → dedup → windows → storage (+ MQTT aggregates/alerts).
    Core,
    /// Run the dashboard.
    Dashboard,
    /// Run the fleet simulator against the configured broker.
    Simulate,
    /// Replay a stretch of the shipped CSV history through the pipeline as fast as the broker takes
    /// it (the simulator with `speed = 0` and a finite duration); prints its report at the end and
    /// fails when readings were left undelivered.
    Backfill {
        /// Days of history to replay.
        #[arg(long, default_value_t = 1.0)]
        days: f64,
    },
    /// API token administration for the dashboard (create, list, revoke).
    Token {
        /// What to do.
        #[command(subcommand)]
        cmd: dashboard::cli::TokenCmd,
    },
    /// Load and validate the config file, print the effective config.
    CheckConfig,
    /// Write a Mosquitto password file, ACL and config snippet from the site registry.
    BrokerConfig {
        /// Site registry (default: `registry_path` from the config).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Output folder (created): `passwd`, `acl`, `credentials.toml` (plaintext, mode 0600),
        /// `mosquitto.conf`.
        #[arg(long, default_value = "broker")]
        out: PathBuf,
    },
}

/// Runs the chosen subcommand.
///
/// # Errors
/// Config errors (naming the field) and failures of the parts run.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::CheckConfig => {
            use std::io::Write;
            let text = format!("{}\n# config OK\n", toml::to_string_pretty(&cfg)?);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(())
        }
        Command::BrokerConfig { registry, out } => {
            let path = registry.unwrap_or_else(|| cfg.registry_file());
            let reg = telemetry::registry::Registry::load(&path)?;
            write_broker_config(&reg, &out)?;
            println!(
                "wrote {}/{{passwd,acl,credentials.toml,mosquitto.conf}}",
                out.display()
            );
            Ok(())
        }
        Command::Demo => demo(&cfg),
        Command::Token { cmd } => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            dashboard::cli::run_token(&cfg.resolve().dashboard, cmd, now_ms())
        }
        Command::Core => {
            let parts = cfg.resolve();
            let token = shutdown_on_ctrl_c()?;
            let report = stream_core::run(parts.core, token)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Agent => {
            let parts = cfg.resolve();
            runtime()?.block_on(async {
                let token = ctrl_c_token();
                edge_agent::run_gateway(parts.agent, token).await
            })?;
            Ok(())
        }
        Command::Dashboard => {
            let parts = cfg.resolve();
            runtime()?.block_on(async {
                let token = ctrl_c_token();
                dashboard::serve(parts.dashboard, token).await
            })?;
            Ok(())
        }
        Command::Simulate => simulate(cfg.resolve().simulator),
        Command::Backfill { days } => {
            let mut sim = cfg.resolve().simulator;
            sim.speed = 0.0;
            sim.days = Some(days);
            // Its own session and spool, so it can run beside a live simulator.
            sim.mqtt.client_id.push_str("-backfill");
            sim.spool.path = cfg.data_dir.join("backfill-spool.sqlite");
            backfill(sim)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

/// A token cancelled on the first Ctrl-C (must be called inside a tokio runtime).
fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("citybrain: Ctrl-C, shutting down (press again to abort)");
        }
        t.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    token
}

/// A token cancelled on Ctrl-C, for blocking parts (a small runtime thread watches the signal).
fn shutdown_on_ctrl_c() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let t = token.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("citybrain: Ctrl-C, shutting down");
                t.cancel();
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(130);
            })
        })?;
    Ok(token)
}

fn simulate(sim: edge_agent::SimConfig) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let token = ctrl_c_token();
        let report = edge_agent::run_simulator(sim, token).await?;
        finish_simulation(&report)
    })
}

/// `backfill`: the unpaced simulator with a progress bar on stderr (simulated time covered, readings
/// sent and acknowledged; drawn only on a terminal), then the report as for `simulate`.
fn backfill(sim: edge_agent::SimConfig) -> anyhow::Result<()> {
    let days = sim.days.unwrap_or(1.0);
    let bar = indicatif::ProgressBar::new((days * 1440.0).round().max(1.0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "backfill {bar:40} {pos}/{len} sim min ({percent}%) {msg} [{elapsed_precise}, eta {eta}]",
        )
        .context("progress bar template")?,
    );
    runtime()?.block_on(async {
        let token = ctrl_c_token();
        let b = bar.clone();
        let report = edge_agent::run_simulator_with_progress(sim, token, move |p| {
            b.set_position(p.sim_ms / 60_000);
            b.set_message(format!(
                "{} readings sent, {} acknowledged",
                p.readings, p.acked
            ));
        })
        .await?;
        bar.finish_and_clear();
        finish_simulation(&report)
    })
}

/// Prints a simulator report and fails when readings were left in the spool.
fn finish_simulation(report: &edge_agent::SimReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    anyhow::ensure!(
        report.spool_left == 0,
        "{} readings are still in the spool, not acknowledged by the broker (is it reachable at the \
         [mqtt] host and port?); they are sent on the next run",
        report.spool_left
    );
    Ok(())
}

/// Points every part at the embedded broker.
fn use_embedded_broker(parts: &mut Parts, listen: std::net::SocketAddr) {
    for m in [
        &mut parts.agent.mqtt,
        &mut parts.simulator.mqtt,
        &mut parts.core.mqtt,
        &mut parts.dashboard.mqtt,
    ] {
        m.host = listen.ip().to_string();
        m.port = listen.port();
    }
}

/// The demo: embedded broker, stream core, dashboard and simulator in one process until Ctrl-C.
fn demo(cfg: &Config) -> anyhow::Result<()> {
    let mut parts = cfg.resolve();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    // Fail at once, naming the setting, when a port is taken: later the parts would start half-way.
    for (name, addr) in [
        ("core.http_addr", parts.core.http_addr.as_str()),
        (
            "dashboard.listen_addr",
            parts.dashboard.listen_addr.as_str(),
        ),
    ] {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            anyhow::bail!(
                "{name}: cannot listen on {addr}: {e} (another program has it? move it in the config)"
            );
        }
    }
    if cfg.broker.embedded {
        crate::broker::start_embedded(&cfg.broker)?;
        use_embedded_broker(&mut parts, cfg.broker.listen);
    }
    // The registry must exist before the core subscribes, and the core must subscribe before the
    // simulator publishes: readings sent before the core's session exists would never reach it.
    let fleet = edge_agent::simulate::Fleet::new(&parts.simulator, now_ms())?;
    let registry_file = cfg.registry_file();
    if let Some(dir) = registry_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&registry_file, fleet.registry().to_toml())
        .with_context(|| format!("writing {}", registry_file.display()))?;
    drop(fleet);

    let signin = demo_token(&parts.dashboard)?;

    let rt = runtime()?;
    let token = CancellationToken::new();
    let core_cfg = parts.core.clone();
    let core_token = token.clone();
    let core = std::thread::Builder::new()
        .name("stream-core".into())
        .spawn(move || stream_core::run(core_cfg, core_token))?;
    if let Err(e) = wait_ready(&parts.core.http_addr, Duration::from_secs(30), &core) {
        if core.is_finished() {
            let why = match core.join() {
                Ok(Err(err)) => err.to_string(),
                Ok(Ok(_)) => "it stopped".to_string(),
                Err(_) => "it panicked".to_string(),
            };
            anyhow::bail!("stream core did not start: {why}");
        }
        return Err(e);
    }

    let dash_token = token.clone();
    let dash = rt.spawn(dashboard::serve(parts.dashboard.clone(), dash_token));
    let sim_token = token.clone();
    let sim = rt.spawn(edge_agent::run_simulator(
        parts.simulator.clone(),
        sim_token,
    ));

    println!("CityBrain demo is running:");
    if cfg.broker.embedded {
        println!(
            "  MQTT broker (embedded, loopback only)  mqtt://{}",
            cfg.broker.listen
        );
    }
    println!(
        "  fleet simulator   {} lots × {} bays, {} grid meters, {}× real time, data in {}",
        parts.simulator.lots,
        parts.simulator.bays_per_lot,
        parts.simulator.meters,
        parts.simulator.speed,
        parts.simulator.data_dir.display()
    );
    println!(
        "  stream core       store {}, health http://{}/readyz",
        parts.core.store.sqlite_path.display(),
        parts.core.http_addr
    );
    println!(
        "  dashboard         http://{}/",
        parts.dashboard.listen_addr
    );
    println!();
    println!("Open the dashboard signed in as the demo's administrator (link valid 24 h):");
    println!("  http://{}/#token={signin}", parts.dashboard.listen_addr);
    println!("Press Ctrl-C to stop.");

    rt.block_on(async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("citybrain: Ctrl-C, shutting down cleanly"),
            _ = token.cancelled() => {}
        }
    });
    // Stop the producer first, then the core (it drains and flushes), then the dashboard.
    token.cancel();
    let sim_report = rt.block_on(sim).context("simulator task")?;
    match sim_report {
        Ok(r) => eprintln!("simulator: {} readings sent", r.readings),
        Err(e) => eprintln!("simulator: {e}"),
    }
    let core_report = core
        .join()
        .map_err(|_| anyhow::anyhow!("stream core panicked"))??;
    eprintln!(
        "stream core: {} readings stored, {} aggregates written",
        core_report.readings_new, core_report.aggregates
    );
    rt.block_on(dash).context("dashboard task")??;
    Ok(())
}

/// Issues a 24-hour admin token for the local demo viewer (role admin: every page, including
/// governance) and returns its secret, shown once on the console.
fn demo_token(cfg: &dashboard::DashboardConfig) -> anyhow::Result<String> {
    use dashboard::access::{AccessStore, Dataset, HashCost, NewToken, Resolution, Role};
    let store = AccessStore::open(&cfg.access_db_path)?;
    let req = NewToken {
        application: "citybrain-demo".into(),
        purpose: "local demo viewer".into(),
        role: Role::Admin,
        datasets: Dataset::ALL.to_vec(),
        finest: Resolution::Raw,
        expires_ms: now_ms() + 86_400_000,
    };
    let (_, secret) = store.create_token(&req, HashCost::default())?;
    Ok(secret)
}

/// Waits until `GET /readyz` on `addr` answers 200.
fn wait_ready<T>(
    addr: &str,
    timeout: Duration,
    core: &std::thread::JoinHandle<T>,
) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut buf = [0u8; 32];
            if s.read(&mut buf).is_ok_and(|n| {
                buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200")
            }) {
                return Ok(());
            }
        }
        anyhow::ensure!(!core.is_finished(), "stream core stopped while starting");
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "stream core not ready at http://{addr}/readyz after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes `passwd`, `acl`, `credentials.toml` and `mosquitto.conf` for `reg` into `out`, with a fresh
/// random password per user.
///
/// # Errors
/// File system errors.
pub fn write_broker_config(
    reg: &telemetry::registry::Registry,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use rand::Rng;
    std::fs::create_dir_all(out)?;
    let mut rng = rand::rng();
    let mut passwd = String::new();
    let mut creds = String::from(
        "# Plaintext MQTT credentials: hand each to its client, then delete this file.\n",
    );
    for user in crate::broker_config::users(reg) {
        let password: String = (0..24)
            .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
            .collect();
        let salt: [u8; 12] = rng.random();
        passwd.push_str(&crate::broker_config::password_line(
            &user, &password, &salt,
        ));
        passwd.push('\n');
        creds.push_str(&format!("{} = {:?}\n", toml_key(&user), password));
    }
    std::fs::write(out.join("passwd"), passwd)?;
    std::fs::write(out.join("acl"), crate::broker_config::acl(reg))?;
    let creds_path = out.join("credentials.toml");
    std::fs::write(&creds_path, creds)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let abs = std::fs::canonicalize(out)?;
    std::fs::write(
        out.join("mosquitto.conf"),
        crate::broker_config::mosquitto_conf(&abs),
    )?;
    Ok(())
}

fn toml_key(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}
