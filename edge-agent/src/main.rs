//! `edge-agent`: the CityBrain gateway and fleet simulator (thin shell over the library).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "edge-agent",
    about = "CityBrain gateway: frame intake, durable spool, MQTT delivery, fleet simulator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (config: TOML of `GatewayConfig`; defaults when omitted).
    Run {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the fleet simulator (config: TOML of `SimConfig`; defaults when omitted).
    Simulate {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load<T: serde::de::DeserializeOwned + Default>(path: Option<&PathBuf>) -> anyhow::Result<T> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        }
        None => Ok(T::default()),
    }
}

async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
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
    let token = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(token.clone()));
    match cli.cmd {
        Cmd::Run { config } => {
            let cfg: edge_agent::GatewayConfig = load(config.as_ref())?;
            edge_agent::run_gateway(cfg, token).await?;
        }
        Cmd::Simulate { config } => {
            let cfg: edge_agent::SimConfig = load(config.as_ref())?;
            let report = edge_agent::run_simulator(cfg, token).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
