//! Broker connection settings shared by every MQTT client (gateway, stream core, dashboard), as plain
//! config without a dependency on an MQTT library; each crate turns them into its client's options.

use serde::{Deserialize, Serialize};

/// Where and how to connect to the MQTT broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttEndpoint {
    /// Broker host name or IP (default `127.0.0.1`).
    pub host: String,
    /// Broker TCP port (default 1883; 8883 is usual for TLS).
    pub port: u16,
    /// Client id; must be stable across restarts for a persistent session (clean session off).
    pub client_id: String,
    /// User name, if the broker requires credentials.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// TLS settings; `None` = plain TCP (loopback or a trusted network only).
    pub tls: Option<MqttTls>,
    /// Keep-alive interval, s (default 30).
    pub keep_alive_s: u16,
    /// Largest MQTT packet accepted or sent, bytes (default 1 MiB; rumqttc's own default is 10 KiB).
    pub max_packet_bytes: usize,
}

impl Default for MqttEndpoint {
    fn default() -> Self {
        MqttEndpoint {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "citybrain".into(),
            username: None,
            password: None,
            tls: None,
            keep_alive_s: 30,
            max_packet_bytes: 1 << 20,
        }
    }
}

/// TLS (rustls) settings for an MQTT connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file with the CA certificate(s) that sign the broker's certificate.
    pub ca_file: String,
    /// PEM client certificate for mutual TLS, if the broker requires it.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// PEM private key for `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<String>,
}
