//! # firmware — CityBrain device firmware
//!
//! Code that runs on the devices: a magnetometer parking-bay sensor and a grid measurement device
//! (feeder, street cabinet or transformer monitor). `#![no_std]`, no heap (every buffer is `heapless`
//! or a fixed array), drivers generic over embedded-hal 1.0 traits; tested on the host and built for
//! `thumbv7em-none-eabihf` (`cargo build -p firmware --target thumbv7em-none-eabihf`).
//!
//! Uplink frames are encoded with the shared contract, [`telemetry::frame::Frame::encode`]; the
//! `telemetry` crate is used with its default (no_std) features.
//!
//! # Layout
//! - [`lis3mdl`]: ST LIS3MDL magnetometer driver over I2C (DocID024204): registers, types, device.
//! - [`ade7953`]: Analog Devices ADE7953 metering driver over SPI (Rev. C): registers, types, device.
//! - [`detect`]: vehicle detection state machine (baseline, drift EWMA, hysteresis, debounce,
//!   temperature compensation), pure.
//! - [`grid`]: sag/swell/interruption classification (IEEE 1159, IEC 61000-4-30 hysteresis), interval
//!   summaries and EN 50160 compliance, pure.
//! - [`app`]: the device loop: [`app::ParkingApp`], [`app::GridApp`], the bounded [`app::Outbox`] and the
//!   [`app::Transport`] trait.
//! - `sim` (feature `sim`): register-level simulations [`SimLis3mdl`](sim::SimLis3mdl) (an `I2c`) and
//!   [`SimAde7953`](sim::SimAde7953) (an `SpiDevice`) for host tests and the fleet simulator.
//!
//! # Tests
//! `cargo test -p firmware` and `cargo test -p firmware --features sim`. The detection accuracy report
//! is printed by `cargo test -p firmware --test detection_accuracy -- --nocapture`.
#![no_std]
#![deny(unsafe_code, missing_docs)]

pub mod ade7953;
pub mod app;
pub mod detect;
pub mod grid;
pub mod lis3mdl;
#[cfg(feature = "sim")]
pub mod sim;
