//! The one TOML config file for every part of CityBrain. Every section and field has a default (the
//! embedded demo), unknown fields are refused, and errors name the offending field. The example file
//! `citybrain.example.toml` documents every option and is parsed by a test.

use crate::broker::BrokerConfig;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder for the embedded store, spool and generated registry (default `citybrain-data`).
    pub data_dir: PathBuf,
    /// Site registry file; the demo's simulator writes it for its fleet (default
    /// `citybrain-data/registry.toml`).
    pub registry_path: PathBuf,
    /// The demo's embedded MQTT broker.
    pub broker: BrokerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("citybrain-data"),
            registry_path: PathBuf::from("citybrain-data/registry.toml"),
            broker: BrokerConfig::default(),
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
        Ok(())
    }
}
