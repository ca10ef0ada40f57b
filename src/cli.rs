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
            println!("{}", toml::to_string_pretty(&cfg)?);
            println!("# config OK");
            Ok(())
        }
        Command::BrokerConfig { registry, out } => {
            let path = registry.unwrap_or_else(|| cfg.registry_path.clone());
            let reg = telemetry::registry::Registry::load(&path)?;
            write_broker_config(&reg, &out)?;
            println!(
                "wrote {}/{{passwd,acl,credentials.toml,mosquitto.conf}}",
                out.display()
            );
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
        format!(
            "allow_anonymous false\npassword_file {}/passwd\nacl_file {}/acl\nset_tcp_nodelay true\n",
            abs.display(),
            abs.display()
        ),
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
