//! `stream-core` binary: loads a TOML `CoreConfig`, applies timely-style flags, runs until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use stream_core::CoreConfig;
use tokio_util::sync::CancellationToken;

/// CityBrain stream core.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML file with a `CoreConfig` (all fields optional).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Worker threads per process (timely `-w`).
    #[arg(short = 'w', long)]
    workers: Option<usize>,
    /// Number of processes (timely `-n`).
    #[arg(short = 'n', long)]
    processes: Option<usize>,
    /// This process's index (timely `-p`).
    #[arg(short = 'p', long)]
    process: Option<usize>,
    /// Hostfile: one `host:port` per line (timely `-h`).
    #[arg(long = "hostfile")]
    hostfile: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut cfg: CoreConfig = match &cli.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => CoreConfig::default(),
    };
    if let Some(w) = cli.workers {
        cfg.workers = w;
    }
    if let Some(n) = cli.processes {
        cfg.processes = n;
    }
    if let Some(p) = cli.process {
        cfg.process_index = p;
    }
    if let Some(h) = &cli.hostfile {
        cfg.hosts = std::fs::read_to_string(h)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    let shutdown = CancellationToken::new();
    let s2 = shutdown.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
        s2.cancel();
    });
    let report = stream_core::run(cfg, shutdown)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
