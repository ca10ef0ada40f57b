//! Command-line pieces shared by the `dashboard` binary and the `citybrain` front door, so both run the
//! same code: API token administration (`token create|list|revoke`).

use crate::DashboardConfig;
use crate::access::{AccessStore, Dataset, HashCost, NewToken, Resolution, Role};
use anyhow::Context;
use clap::Subcommand;

/// Token administration subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
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
        /// Lifetime in days, 1–3650 (default 90).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=3650))]
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

/// Runs a token subcommand against the access database named in `cfg`, printing to stdout (a token's
/// secret is printed once, on creation, and never stored or logged).
///
/// # Errors
/// Unknown role, dataset or resolution (named), and access-database failures.
pub fn run_token(cfg: &DashboardConfig, cmd: TokenCmd, now_ms: i64) -> anyhow::Result<()> {
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
                        Dataset::parse(d.trim()).with_context(|| format!("unknown dataset {d}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let finest = match finest {
                Some(f) => {
                    Resolution::parse(&f).context("finest must be raw, 1m, 15m, 1h or 1d")?
                }
                None if matches!(role, Role::Admin | Role::GridManager) => Resolution::Raw,
                None => Resolution::M1,
            };
            let req = NewToken {
                application,
                purpose,
                role,
                datasets,
                finest,
                expires_ms: now_ms + days * 86_400_000,
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
            println!("expires:  {}", crate::timefmt::rfc3339_ms(info.expires_ms));
            println!("token:    {token}");
            println!("(shown once; store it safely)");
        }
        TokenCmd::List => {
            for t in store.list_tokens()? {
                let state = match t.revoked_ms {
                    Some(_) => "revoked",
                    None if t.expires_ms <= now_ms => "expired",
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
                    crate::timefmt::rfc3339_ms(t.expires_ms),
                    t.datasets
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        TokenCmd::Revoke { id } => {
            if store.revoke_token(&id, now_ms)? {
                println!("revoked {id}");
            } else {
                anyhow::bail!("no active token with id {id}");
            }
        }
    }
    Ok(())
}
