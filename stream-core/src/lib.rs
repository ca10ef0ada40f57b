//! # stream-core — CityBrain's stream processor
//!
//! MQTT ingest with acknowledge-after-write, deduplication, event-time windows on timely dataflow,
//! alerts, data quality and storage.
//!
//! # Layout
//! - [`store`]: the storage trait ([`store::SeriesStore`]) and the embedded SQLite implementation.
#![forbid(unsafe_code)]

pub mod store;
