//! The one TOML config file for every part of CityBrain. Every section and field has a default (the
//! embedded demo), unknown fields are refused, and errors name the offending field. The example file
//! `citybrain.example.toml` documents every option and is parsed by a test.
//!
//! Shared settings are written once at the top and applied to every part by [`Config::resolve`]:
//! `data_dir` (where the store, spools and access database live), `registry_path`, and `[mqtt]` (broker
//! host, port, credentials, TLS — each part keeps its own `client_id`). They override the same fields in
//! the part sections, so the parts cannot disagree about where the broker or the data are.

use crate::broker::BrokerConfig;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use telemetry::mqtt::MqttEndpoint;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder for the embedded store, spools, access database and the demo's registry (default
    /// `citybrain-data`).
    pub data_dir: PathBuf,
    /// Site registry file (default `registry.toml` inside `data_dir`; the demo's simulator writes it for
    /// its fleet).
    pub registry_path: Option<PathBuf>,
    /// Broker connection for every part (host, port, credentials, TLS; `client_id` is per part).
    pub mqtt: MqttEndpoint,
    /// The demo's embedded MQTT broker.
    pub broker: BrokerConfig,
    /// The gateway (`citybrain agent`).
    pub agent: edge_agent::GatewayConfig,
    /// The fleet simulator (`citybrain simulate`, and part of `demo`).
    pub simulator: edge_agent::SimConfig,
    /// The stream core (`citybrain core`).
    pub core: stream_core::CoreConfig,
    /// The dashboard (`citybrain dashboard`).
    pub dashboard: dashboard::DashboardConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("citybrain-data"),
            registry_path: None,
            mqtt: MqttEndpoint::default(),
            broker: BrokerConfig::default(),
            agent: edge_agent::GatewayConfig::default(),
            simulator: edge_agent::SimConfig::default(),
            core: stream_core::CoreConfig::default(),
            dashboard: dashboard::DashboardConfig::default(),
        }
    }
}

impl Config {
    /// Parses TOML text and validates it.
    ///
    /// # Errors
    /// Syntax errors and unknown or ill-typed fields (the message names the field and line), and
    /// validation failures of any section.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads `path`, or the defaults when `path` is `None`.
    ///
    /// # Errors
    /// As [`Config::from_toml`], plus the file not being readable.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Self::from_toml(&text).with_context(|| format!("in {}", p.display()))
            }
        }
    }

    /// Validates every section.
    ///
    /// # Errors
    /// The first invalid field, named.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.broker.validate()?;
        if self.mqtt.port == 0 {
            bail!("mqtt.port: must be > 0");
        }
        if self.mqtt.host.is_empty() {
            bail!("mqtt.host: must not be empty");
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir: must not be empty");
        }
        for (name, addr) in [
            ("core.http_addr", &self.core.http_addr),
            ("dashboard.listen_addr", &self.dashboard.listen_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                bail!("{name}: {addr:?} is not an address of the form 127.0.0.1:8080");
            }
        }
        if !(1..=30).contains(&self.simulator.lots) {
            bail!(
                "simulator.lots: {} is outside 1..=30 (the Birmingham data has 30 car parks)",
                self.simulator.lots
            );
        }
        if !(self.simulator.speed >= 0.0 && self.simulator.speed.is_finite()) {
            bail!("simulator.speed: must be a finite number >= 0 (0 = as fast as possible)");
        }
        for (name, id) in [
            ("agent.mqtt.client_id", &self.agent.mqtt.client_id),
            ("simulator.mqtt.client_id", &self.simulator.mqtt.client_id),
            ("core.mqtt.client_id", &self.core.mqtt.client_id),
            ("dashboard.mqtt.client_id", &self.dashboard.mqtt.client_id),
        ] {
            if id.is_empty() {
                bail!("{name}: must not be empty (a persistent session needs a stable id)");
            }
        }
        Ok(())
    }

    /// The registry file: `registry_path`, or `registry.toml` inside `data_dir`.
    pub fn registry_file(&self) -> PathBuf {
        self.registry_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("registry.toml"))
    }

    /// The part configs with the shared settings applied (see the module docs).
    pub fn resolve(&self) -> Parts {
        let registry = self.registry_file();
        let d = &self.data_dir;
        let shared = |mut m: MqttEndpoint| {
            let client_id = std::mem::take(&mut m.client_id);
            MqttEndpoint {
                client_id,
                ..self.mqtt.clone()
            }
        };
        let mut agent = self.agent.clone();
        agent.mqtt = shared(agent.mqtt);
        agent.registry_path = registry.clone();
        agent.spool.path = d.join("agent-spool.sqlite");

        let mut simulator = self.simulator.clone();
        simulator.mqtt = shared(simulator.mqtt);
        simulator.registry_out = Some(registry.clone());
        simulator.spool.path = d.join("sim-spool.sqlite");

        let mut core = self.core.clone();
        core.mqtt = shared(core.mqtt);
        core.registry_path = Some(registry.clone());
        core.store.sqlite_path = d.join("citybrain.sqlite");

        let mut dashboard = self.dashboard.clone();
        dashboard.mqtt = shared(dashboard.mqtt);
        dashboard.registry_path = registry;
        dashboard.store = core.store.clone();
        dashboard.access_db_path = d.join("dashboard.sqlite");
        Parts {
            agent,
            simulator,
            core,
            dashboard,
        }
    }
}

/// Per-part configs after [`Config::resolve`].
#[derive(Debug, Clone)]
pub struct Parts {
    /// Gateway.
    pub agent: edge_agent::GatewayConfig,
    /// Simulator.
    pub simulator: edge_agent::SimConfig,
    /// Stream core.
    pub core: stream_core::CoreConfig,
    /// Dashboard.
    pub dashboard: dashboard::DashboardConfig,
}
