//! # citybrain — the front door
//!
//! One command runs the whole city: `cargo run --release` starts the demo (embedded MQTT broker, fleet
//! simulator on the real data in `data/`, stream core with the embedded SQLite store, dashboard on
//! `http://127.0.0.1:8080`). Subcommands run each part on its own with the same code the crates' own
//! binaries run, so production can put them on separate hosts.
//!
//! # Layout
//! - [`cli`]: the command line (clap) and what each subcommand does.
//! - [`config`]: the one TOML config file for all parts, validated at load with the field named.
//! - [`broker`]: the demo's embedded MQTT broker (rumqttd, loopback only).
//! - [`broker_config`]: Mosquitto password file and ACL generated from the site registry.
#![deny(unsafe_code, missing_docs)]

pub mod broker;
pub mod broker_config;
pub mod cli;
pub mod config;
