//! `dashboard` binary: `serve` runs the web server; `token create|list|revoke` manages API tokens in
//! the dashboard's SQLite file. Config: the `[dashboard]` section of a TOML file (or defaults).

use anyhow::Context;
use clap::{Parser, Subcommand};
use dashboard::DashboardConfig;
use dashboard::access::{AccessStore, Dataset, HashCost, NewToken, Resolution, Role};
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
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issues a token and prints it once (it is stored only as an argon2 hash).
    Create {
        /// Application the token is for.
        #[arg(long)]
        application: String,
        /// Purpose of use (recorded in every audit row).
        #[arg(long)]
        purpose: String,
        /// admin, grid_manager, planner or public.
        #[arg(long)]
        role: String,
        /// Comma-separated datasets (default: every dataset the role may hold).
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        /// Finest resolution: raw, 1m, 15m, 1h or 1d (default 1m; raw for admin/grid_manager).
        #[arg(long)]
        finest: Option<String>,
        /// Lifetime in days (default 90).
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
    /// Lists tokens (never secrets).
    List,
    /// Revokes a token by id.
    Revoke {
        /// Token id (the 16 hex digits after `cb_`).
        id: String,
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
            let store = AccessStore::open(&cfg.access_db_path)?;
            match cmd {
                TokenCmd::Create {
                    application,
                    purpose,
                    role,
                    datasets,
                    finest,
                    days,
                } => {
                    let role = Role::parse(&role)
                        .context("role must be admin, grid_manager, planner or public")?;
                    let datasets: Vec<Dataset> = if datasets.is_empty() {
                        Dataset::ALL
                            .into_iter()
                            .filter(|d| role.may_hold(*d))
                            .collect()
                    } else {
                        datasets
                            .iter()
                            .map(|d| {
                                Dataset::parse(d.trim())
                                    .with_context(|| format!("unknown dataset {d}"))
                            })
                            .collect::<anyhow::Result<_>>()?
                    };
                    let finest = match finest {
                        Some(f) => Resolution::parse(&f)
                            .context("finest must be raw, 1m, 15m, 1h or 1d")?,
                        None if matches!(role, Role::Admin | Role::GridManager) => Resolution::Raw,
                        None => Resolution::M1,
                    };
                    let req = NewToken {
                        application,
                        purpose,
                        role,
                        datasets,
                        finest,
                        expires_ms: now_ms() + days.max(1) * 86_400_000,
                    };
                    let (info, token) = store.create_token(&req, HashCost::default())?;
                    println!("id:       {}", info.id);
                    println!("role:     {}", info.role.as_str());
                    println!(
                        "datasets: {}",
                        info.datasets
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    println!("finest:   {}", info.finest.as_str());
                    println!(
                        "expires:  {}",
                        dashboard::timefmt::rfc3339_ms(info.expires_ms)
                    );
                    println!("token:    {token}");
                    println!("(shown once; store it safely)");
                }
                TokenCmd::List => {
                    for t in store.list_tokens()? {
                        let state = match t.revoked_ms {
                            Some(_) => "revoked",
                            None if t.expires_ms <= now_ms() => "expired",
                            None => "active",
                        };
                        println!(
                            "{}  {:<12} {:<8} app={} purpose={:?} finest={} expires={} datasets={}",
                            t.id,
                            t.role.as_str(),
                            state,
                            t.application,
                            t.purpose,
                            t.finest.as_str(),
                            dashboard::timefmt::rfc3339_ms(t.expires_ms),
                            t.datasets
                                .iter()
                                .map(|d| d.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                    }
                }
                TokenCmd::Revoke { id } => {
                    if store.revoke_token(&id, now_ms())? {
                        println!("revoked {id}");
                    } else {
                        anyhow::bail!("no active token with id {id}");
                    }
                }
            }
        }
    }
    Ok(())
}
