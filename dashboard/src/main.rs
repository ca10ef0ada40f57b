//! `dashboard` binary: `serve` runs the web server; `token create|list|revoke` manages API tokens in
//! the dashboard's SQLite file. Config: the `[dashboard]` section of a TOML file (or defaults).

use anyhow::Context;
use clap::{Parser, Subcommand};
use dashboard::DashboardConfig;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dashboard",
    about = "CityBrain dashboard: live view, history, governance, open data"
)]
struct Cli {
    /// TOML config file; its `[dashboard]` table (or the whole file when it has none) is read.
    #[arg(long, short, env = "CITYBRAIN_DASHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the web server until Ctrl-C.
    Serve {
        /// Overrides `listen_addr`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manages API tokens.
    Token {
        #[command(subcommand)]
        cmd: dashboard::cli::TokenCmd,
    },
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<DashboardConfig> {
    let Some(p) = path else {
        return Ok(DashboardConfig::default());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    let section = v.get("dashboard").cloned().unwrap_or(v);
    section
        .try_into()
        .with_context(|| format!("[dashboard] in {}", p.display()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut cfg = load_config(cli.config.as_ref())?;
    match cli.cmd {
        Cmd::Serve { listen } => {
            if let Some(l) = listen {
                cfg.listen_addr = l;
            }
            let shutdown = CancellationToken::new();
            let sd = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                sd.cancel();
            });
            dashboard::serve(cfg, shutdown).await?;
        }
        Cmd::Token { cmd } => {
            dashboard::cli::run_token(&cfg, cmd, now_ms())?;
        }
    }
    Ok(())
}
