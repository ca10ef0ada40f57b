//! # stream-core — CityBrain's stream processor
//!
//! MQTT ingest with acknowledge-after-write, deduplication, event-time windows on timely dataflow,
//! alerts, data quality and storage.
//!
//! # Layout
//! - [`store`]: the storage trait ([`store::SeriesStore`]) and the embedded SQLite implementation.
//! - [`model`]: dataflow records ([`CoreInput`], [`CoreOutput`], [`model::CoreReading`]), window
//!   settings, registry view.
//! - [`symbol`]: process-wide interned ids ([`symbol::Sym`]) that records carry instead of strings.
//! - [`dedup`], [`window`], [`quality`], [`rollup`]: sans-IO cores (dedup, windows and alerts, data
//!   quality, district roll-up), each unit-tested directly.
//! - [`dataflow`]: the timely dataflow wrapping the cores, and a finite runner.
//! - [`watermark`]: event time capped by processing time.
//! - [`recovery`]: rebuilds window state after a crash by replaying the raw store.
//! - [`run`](mod@run): the service — MQTT ingest, dataflow, sink ([`CoreConfig`], [`run()`]).
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` (axum, prometheus-client).
#![forbid(unsafe_code)]

pub mod dataflow;
pub mod dedup;
pub mod health;
pub mod model;
pub mod quality;
pub mod recovery;
pub mod rollup;
pub mod run;
pub mod store;
pub mod symbol;
pub mod watermark;
pub mod window;

pub use model::{CoreInput, CoreOutput, SiteInfo, WindowConfig};
pub use run::{CoreConfig, CoreError, CoreReport, run};
