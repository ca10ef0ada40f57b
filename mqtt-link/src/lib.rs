//! # mqtt-link — one way to connect to the broker
//!
//! Every CityBrain MQTT client (gateway, stream core, dashboard) builds its rumqttc connection here from
//! the contract's [`MqttEndpoint`], so credentials, TLS and socket options behave the same everywhere.
//! The caller adds what is its own: clean session, manual acks, last will, in-flight window.
//!
//! TLS uses rustls with the `ring` provider (no aws-lc, no OpenSSL): the broker's certificate is checked
//! against the CA file in [`MqttTls::ca_file`] (PEM), with an optional client certificate and key for
//! mutual TLS. TCP_NODELAY is on: without it Mosquitto's p50 latency at 10k msg/s was ~13 ms instead of
//! ~0.2 ms (measured, `PITFALLS.md`).
//!
//! # Layout
//! - [`options`]: [`MqttOptions`] from an endpoint (host, port, id, keep-alive, packet size,
//!   credentials, TLS).
//! - [`network_options`]: socket options for every event loop (TCP_NODELAY).
//! - [`tls_config`]: the rustls client config from PEM files.

use rumqttc::{MqttOptions, NetworkOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use telemetry::mqtt::{MqttEndpoint, MqttTls};

/// Why an endpoint cannot be turned into client options.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A PEM file could not be read (the config field is named).
    #[error("{field}: reading {path}: {source}")]
    Read {
        /// Config field, e.g. `mqtt.tls.ca_file`.
        field: &'static str,
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key, or rustls refused the configuration.
    #[error("{field}: {detail}")]
    Invalid {
        /// Config field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// rumqttc options for `ep`: client id, host, port, keep-alive (at least 5 s), packet size limit both
/// ways, credentials when a user name is set, and TLS when `ep.tls` is set.
///
/// # Errors
/// [`LinkError`] for unreadable or invalid TLS files.
pub fn options(ep: &MqttEndpoint) -> Result<MqttOptions, LinkError> {
    let mut o = MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(u64::from(ep.keep_alive_s.max(5))));
    o.set_max_packet_size(ep.max_packet_bytes, ep.max_packet_bytes);
    if let Some(user) = &ep.username {
        o.set_credentials(user.clone(), ep.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &ep.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(tls)?),
        )));
    }
    Ok(o)
}

/// Socket options for every event loop: TCP_NODELAY on.
pub fn network_options() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

fn read(field: &'static str, path: &str) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::Read {
        field,
        path: path.to_string(),
        source,
    })
}

/// The rustls client configuration (ring provider, TLS 1.2 and 1.3) for `tls`.
///
/// # Errors
/// [`LinkError`] naming the field whose file is unreadable or holds no certificate/key.
pub fn tls_config(tls: &MqttTls) -> Result<rustls::ClientConfig, LinkError> {
    let ca_pem = read("mqtt.tls.ca_file", &tls.ca_file)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert = cert.map_err(|e| LinkError::Invalid {
            field: "mqtt.tls.ca_file",
            detail: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| LinkError::Invalid {
            field: "mqtt.tls.ca_file",
            detail: e.to_string(),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(LinkError::Invalid {
            field: "mqtt.tls.ca_file",
            detail: "no PEM certificate found".into(),
        });
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LinkError::Invalid {
        field: "mqtt.tls",
        detail: e.to_string(),
    })?
    .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let cert_pem = read("mqtt.tls.client_cert_file", cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| LinkError::Invalid {
                    field: "mqtt.tls.client_cert_file",
                    detail: e.to_string(),
                })?;
            if chain.is_empty() {
                return Err(LinkError::Invalid {
                    field: "mqtt.tls.client_cert_file",
                    detail: "no PEM certificate found".into(),
                });
            }
            let key_pem = read("mqtt.tls.client_key_file", key)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| LinkError::Invalid {
                field: "mqtt.tls.client_key_file",
                detail: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| LinkError::Invalid {
                    field: "mqtt.tls.client_key_file",
                    detail: e.to_string(),
                })
        }
        _ => Err(LinkError::Invalid {
            field: "mqtt.tls",
            detail: "client_cert_file and client_key_file go together".into(),
        }),
    }
}
