//! # telemetry — the CityBrain contract
//!
//! The one vocabulary shared from sensor to dashboard: who a device is, what it reports (with units in
//! every name), how a reading travels (binary uplink frame on the radio, JSON over MQTT, InfluxDB line
//! protocol into storage) and which inputs are refused, each refusal with a stable reason name.
//!
//! The crate is `no_std` without a heap by default so the firmware can use the reading types and the frame
//! codec on a microcontroller. The `std` feature adds the JSON codec with hard limits and validation, MQTT
//! topics, the site registry, aggregate/alert messages and line protocol.
//!
//! The full protocol description, byte by byte and field by field, is in `docs/PROTOCOL.md`; the JSON
//! Schema for the MQTT payload is `docs/telemetry.schema.json`.
//!
//! # Layout
//! - [`ids`]: identifiers ([`DeviceId`], [`SiteId`], [`DistrictId`]) and [`DeviceKind`].
//! - [`reading`]: the reading envelope ([`Reading`]) and typed measurements ([`Measurement`]).
//! - [`reject`]: every refusal reason ([`RejectReason`]) with its stable name.
//! - [`validate`]: physical ranges and timestamp plausibility ([`Limits`]), pure and `no_std`.
//! - [`frame`]: the binary uplink frame (device → gateway) with CRC and COBS framing.
//! - `json` (std): the MQTT payload codec with size, depth and batch limits.
//! - `topic` (std): versioned MQTT topics, builders and a strict parser.
//! - `mqtt` (std): broker connection settings ([`mqtt::MqttEndpoint`]) shared by every client.
//! - `registry` (std): the site registry (lots, feeders, devices) loaded from TOML.
//! - `message` (std): what the stream core publishes: window aggregates, alerts, gateway status.
//! - `line` (std): InfluxDB line protocol through `influxdb-line-protocol`, with its gaps closed.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code, missing_docs)]

pub mod frame;
pub mod ids;
pub mod reading;
pub mod reject;
pub mod validate;

#[cfg(feature = "std")]
pub mod json;
#[cfg(feature = "std")]
pub mod line;
#[cfg(feature = "std")]
pub mod message;
#[cfg(feature = "std")]
pub mod mqtt;
#[cfg(feature = "std")]
pub mod registry;
#[cfg(feature = "std")]
pub mod topic;

pub use ids::{DeviceId, DeviceKind, DistrictId, IdError, SiteId};
pub use reading::{
    GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat, PqEventKind, Reading,
    TimeSource,
};
pub use reject::RejectReason;
pub use validate::Limits;

/// Version of the JSON payload and of the topic tree (`citybrain/v1/...`).
pub const PROTOCOL_VERSION: u8 = 1;
