//! The demo's embedded MQTT broker (rumqttd), on loopback only.
//!
//! rumqttd keeps sessions in memory only and panics when the last member of a `$share` group with a
//! persistent session leaves (see `PITFALLS.md`): production uses Mosquitto or EMQX; the demo does not
//! use shared subscriptions. Router limits are set explicitly because `RouterConfig::default()` is all
//! zeros and the sample settings let memory grow to ~1 GB under load.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Embedded broker settings (`[broker]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Start the embedded broker in `demo` (default true). False: use the external broker in `mqtt`.
    pub embedded: bool,
    /// Listen address, MQTT 3.1.1; must be a loopback address (default `127.0.0.1:1883`).
    pub listen: SocketAddr,
    /// Largest payload the broker accepts, bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// In-flight QoS 1 messages per connection (default 1000).
    pub max_inflight: usize,
    /// Most client connections (default 1000).
    pub max_connections: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_payload_bytes: 1 << 20,
            max_inflight: 1000,
            max_connections: 1000,
        }
    }
}

impl BrokerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A non-loopback listen address (the demo broker has no authentication), or zero limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "broker.listen: {} is not a loopback address; the embedded broker is for the demo only",
                self.listen
            );
        }
        if self.max_payload_bytes == 0 || self.max_inflight == 0 || self.max_connections == 0 {
            bail!("broker: max_payload_bytes, max_inflight and max_connections must be > 0");
        }
        Ok(())
    }
}

/// Starts rumqttd on its own thread (its `start` blocks) and returns once the port accepts connections.
///
/// # Errors
/// Invalid config, or the port did not open within 5 s (e.g. already in use).
pub fn start_embedded(cfg: &BrokerConfig) -> anyhow::Result<std::thread::JoinHandle<()>> {
    cfg.validate()?;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: cfg.max_payload_bytes,
        max_inflight_count: cfg.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "citybrain-demo".into(),
        listen: cfg.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: cfg.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    let handle = std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .context("spawning the broker thread")?;
    // Probe by binding, not connecting: a probe connection that closes at once makes rumqttd log an
    // error. `AddrInUse` means the broker holds the port (or another program does, and then the broker
    // thread ends with an error, which is checked too).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if handle.is_finished() {
            bail!(
                "embedded broker stopped at start (is {} in use?)",
                cfg.listen
            );
        }
        match std::net::TcpListener::bind(cfg.listen) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => break,
            _ if std::time::Instant::now() > deadline => {
                bail!("embedded broker did not open {} within 5 s", cfg.listen)
            }
            _ => {}
        }
    }
    Ok(handle)
}
