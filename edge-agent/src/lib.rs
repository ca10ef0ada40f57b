//! # edge-agent — the CityBrain gateway
//!
//! Receives uplink frames from our firmware (UDP, COBS over serial) and LoRaWAN uplinks (ChirpStack v4
//! MQTT integration), turns them into [`telemetry::Reading`]s through the site registry, writes every
//! reading to a durable SQLite spool *before* offering it to MQTT, and deletes it only after the broker's
//! PUBACK. Survives broker outages and `kill -9`; replays oldest first (marked `replayed = true`), in
//! multi-device batches when the backlog is large. The fleet simulator ([`simulate`]) runs the real
//! firmware against simulated sensors driven by real recorded data and delivers through the same path.
//!
//! Entry points: [`run_gateway`] with a [`GatewayConfig`]; [`simulate::run_simulator`] with a
//! [`simulate::SimConfig`]. The `edge-agent` binary (`run`, `simulate`) is a thin shell around them.
//!
//! # Layout
//! - [`spool`]: the durable spool (SQLite, WAL): format, ledger, crash recovery, fsync policy, bounds.
//! - [`delivery`]: spool → MQTT (rumqttc): QoS 1, persistent session, PUBACK mapping, birth/last will,
//!   status, backoff, batches.
//! - [`intake`]: frame decoding (registry address index), UDP, serial (COBS), LoRaWAN (ChirpStack JSON,
//!   our frame and Libelium Smart Parking v2).
//! - [`counters`]: every drop and refusal, published in the gateway status.
//! - [`simulate`]: the fleet simulator (Birmingham car parks, UCI household power, SimBench profiles).

pub mod counters;
pub mod delivery;
pub mod intake;
pub mod simulate;
pub mod spool;

use counters::Counters;
use delivery::DeliveryConfig;
use intake::lorawan::LorawanConfig;
use intake::serial::SerialConfig;
use serde::{Deserialize, Serialize};
use spool::SpoolConfig;
use std::path::PathBuf;
use std::sync::Arc;
use telemetry::mqtt::MqttEndpoint;
use telemetry::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use simulate::{SimConfig, SimProgress, SimReport, run_simulator, run_simulator_with_progress};

/// Gateway configuration (`[agent]` in the CityBrain config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway id: topic level of its status/batch topics and the `gateway` of its devices in the
    /// registry (default `gw-central`).
    pub gateway_id: String,
    /// Broker connection (client id must be stable: the session is persistent).
    pub mqtt: MqttEndpoint,
    /// Site registry TOML file (default `registry.toml`).
    pub registry_path: PathBuf,
    /// Durable spool.
    pub spool: SpoolConfig,
    /// Delivery to MQTT.
    pub delivery: DeliveryConfig,
    /// UDP listen address for raw frames, e.g. `0.0.0.0:1700` (default none).
    pub udp_listen: Option<String>,
    /// Serial port with COBS frames (default none).
    pub serial: Option<SerialConfig>,
    /// ChirpStack v4 MQTT integration (same broker).
    pub lorawan: LorawanConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            gateway_id: "gw-central".into(),
            mqtt: MqttEndpoint {
                client_id: "citybrain-gw-central".into(),
                ..MqttEndpoint::default()
            },
            registry_path: PathBuf::from("registry.toml"),
            spool: SpoolConfig::default(),
            delivery: DeliveryConfig::default(),
            udp_listen: None,
            serial: None,
            lorawan: LorawanConfig::default(),
        }
    }
}

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The registry file could not be loaded.
    #[error(transparent)]
    Registry(#[from] telemetry::registry::RegistryError),
    /// Spool or delivery start-up failure.
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
    /// A listener (UDP, serial) could not be opened.
    #[error("{what}: {detail}")]
    Listen {
        /// Which listener.
        what: String,
        /// OS error text.
        detail: String,
    },
    /// The gateway id is not a valid identifier.
    #[error("gateway_id: {0}")]
    GatewayId(#[from] telemetry::IdError),
}

/// Runs the gateway until `shutdown` is cancelled, then drains (bounded by
/// `delivery.drain_timeout_ms`), publishes `offline` and disconnects.
///
/// # Errors
/// [`GatewayError`] at start-up (registry, spool, listeners); a running gateway never fails on bad
/// input or a broker outage.
pub async fn run_gateway(
    cfg: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    run_gateway_with(cfg, shutdown, Arc::new(Counters::default())).await
}

/// [`run_gateway`] with counters supplied by the caller (tests and the front door read them live).
///
/// # Errors
/// As [`run_gateway`].
pub async fn run_gateway_with(
    cfg: GatewayConfig,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
) -> Result<(), GatewayError> {
    telemetry::ids::check_id(&cfg.gateway_id)?;
    let registry = Registry::load(&cfg.registry_path)?;
    let decoder = Arc::new(intake::FrameDecoder::new(&registry, &cfg.gateway_id));
    let udp = match &cfg.udp_listen {
        Some(addr) => {
            Some(
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|e| GatewayError::Listen {
                        what: format!("udp_listen {addr}"),
                        detail: e.to_string(),
                    })?,
            )
        }
        None => None,
    };
    let serial = match &cfg.serial {
        Some(s) => Some(intake::serial::open(s).map_err(|e| GatewayError::Listen {
            what: format!("serial {}", s.path),
            detail: e.to_string(),
        })?),
        None => None,
    };
    let subs = if cfg.lorawan.enabled {
        vec![cfg.lorawan.topic_filter.clone()]
    } else {
        Vec::new()
    };
    let mut d = delivery::start(
        &cfg.gateway_id,
        &cfg.mqtt,
        &cfg.spool,
        &cfg.delivery,
        subs,
        counters.clone(),
    )?;
    tracing::info!(gateway = %cfg.gateway_id, devices = registry.devices.len(), "gateway started");
    let stop_intake = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(sock) = udp {
        tasks.spawn(intake::udp::run(
            sock,
            decoder.clone(),
            d.handle.clone(),
            stop_intake.clone(),
        ));
    }
    if let Some(port) = serial {
        tasks.spawn(intake::serial::run(
            port,
            decoder.clone(),
            d.handle.clone(),
            stop_intake.clone(),
        ));
    }
    if let Some(mut inbox) = d.inbox.take() {
        let out = d.handle.clone();
        let lcfg = cfg.lorawan.clone();
        let dec = decoder.clone();
        let stop = stop_intake.clone();
        tasks.spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = inbox.recv() => m,
                };
                let Some((_topic, payload)) = msg else { break };
                let c = out.counters().clone();
                if let Some(r) =
                    intake::lorawan::decode_counted(&payload, &lcfg, &dec, delivery::now_ms(), &c)
                    && !out.send(vec![r]).await
                {
                    break;
                }
            }
        });
    }
    shutdown.cancelled().await;
    stop_intake.cancel();
    while tasks.join_next().await.is_some() {}
    d.shutdown().await?;
    tracing::info!(gateway = %cfg.gateway_id, "gateway stopped");
    Ok(())
}
