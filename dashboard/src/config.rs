//! The `[dashboard]` config section.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use stream_core::store::StoreConfig;
use telemetry::mqtt::MqttEndpoint;

/// Dashboard settings. Every field has a default (the embedded demo); unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Address the HTTP server binds (default `127.0.0.1:8080`).
    pub listen_addr: String,
    /// Site registry TOML file (default `data/registry.toml`).
    pub registry_path: PathBuf,
    /// The series store the stream core writes (read here).
    pub store: StoreConfig,
    /// The dashboard's own SQLite file with API tokens and the audit log (default `data/dashboard.sqlite`).
    pub access_db_path: PathBuf,
    /// Broker to subscribe to for live updates (client id default `citybrain-dashboard`).
    pub mqtt: MqttEndpoint,
    /// Whether to run the MQTT bridge for live updates (default true).
    pub mqtt_enabled: bool,
    /// Events held in the live broadcast channel; a client further behind loses the oldest (default 1,024).
    pub live_channel_capacity: usize,
    /// Window length shown on the live page, ms (default 60,000 = 1 min).
    pub live_window_ms: i64,
    /// Deadline for producing a response head, ms (default 10,000); SSE bodies are not cut.
    pub request_timeout_ms: u64,
    /// Sustained API requests per second per token (or per client IP without a token) (default 20).
    pub rate_limit_per_s: f64,
    /// Burst size of the per-key rate limit, requests (default 100).
    pub rate_limit_burst: u32,
    /// Most keys tracked by the rate limiter; when full and nothing idle can be evicted, new keys get
    /// 429 (default 10,000).
    pub rate_limit_max_keys: usize,
    /// Most points one history request may return (range / resolution) (default 200,000).
    pub max_history_points: i64,
    /// Most raw readings one request may return (default 10,000).
    pub max_raw_rows: usize,
    /// Open data is at least this old, ms (default 900,000 = 15 min).
    pub open_data_delay_ms: i64,
    /// Window length used for open data, ms (default 60,000).
    pub open_data_window_ms: i64,
    /// Set the `Secure` flag on the session cookie (enable behind HTTPS) (default false).
    pub cookie_secure: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen_addr: "127.0.0.1:8080".into(),
            registry_path: PathBuf::from("data/registry.toml"),
            store: StoreConfig::default(),
            access_db_path: PathBuf::from("data/dashboard.sqlite"),
            mqtt: MqttEndpoint {
                client_id: "citybrain-dashboard".into(),
                ..MqttEndpoint::default()
            },
            mqtt_enabled: true,
            live_channel_capacity: 1024,
            live_window_ms: 60_000,
            request_timeout_ms: 10_000,
            rate_limit_per_s: 20.0,
            rate_limit_burst: 100,
            rate_limit_max_keys: 10_000,
            max_history_points: 200_000,
            max_raw_rows: 10_000,
            open_data_delay_ms: 900_000,
            open_data_window_ms: 60_000,
            cookie_secure: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partial_toml_and_refuses_unknown() {
        let c: DashboardConfig =
            toml::from_str("listen_addr = \"0.0.0.0:9000\"\n[mqtt]\nport = 1999\n").unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:9000");
        assert_eq!(c.mqtt.port, 1999);
        assert_eq!(c.live_window_ms, 60_000);
        let e = toml::from_str::<DashboardConfig>("colour = 1").unwrap_err();
        assert!(e.to_string().contains("colour"));
    }

    #[test]
    fn example_file_is_the_default() {
        let v: toml::Value = toml::from_str(include_str!("../dashboard.example.toml")).unwrap();
        let c: DashboardConfig = v["dashboard"].clone().try_into().unwrap();
        assert_eq!(c, DashboardConfig::default());
    }
}
