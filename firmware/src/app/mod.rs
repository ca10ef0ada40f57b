//! The device loop: sample → detect/measure → encode uplink frames → outbox → [`Transport`].
//!
//! - [`ParkingApp`]: LIS3MDL + [`Detector`](crate::detect::Detector); reports on change (arrival /
//!   departure, within seconds) plus a heartbeat every few hours.
//! - [`GridApp`]: ADE7953 + [`EventClassifier`](crate::grid::EventClassifier), interval summaries and
//!   EN 50160 counters; reports finished events and 1-minute summaries.
//!
//! Both share the [`Outbox`] (bounded, drop-oldest with a counter), assign `seq` from 0 at boot, carry
//! the boot counter given at start-up, and set each frame's `age_ds` = (transmit time − event time) in
//! 100 ms units. Times are the caller's monotonic clock in ms (`now_ms`); only differences reach the
//! air. `cycle` methods do one step, one flush and then sleep through [`DelayNs`] (duty cycling: on a
//! microcontroller the delay implementation waits in a low-power mode).
//!
//! [`DelayNs`]: embedded_hal::delay::DelayNs

mod grid;
mod outbox;
mod parking;

pub use grid::{GridApp, GridConfig};
pub use outbox::{FlushError, Outbox, age_ds};
pub use parking::{ParkingApp, ParkingConfig};

/// The radio (or serial link) that carries uplink frames.
pub trait Transport {
    /// Transport error.
    type Error: core::fmt::Debug;
    /// Sends one whole frame (already CRC'd; the transport adds its own framing, e.g. COBS on serial).
    ///
    /// # Errors
    /// Whatever the link reports; the frame stays queued and is retried at the next flush.
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error>;
}

/// Error of an app's `cycle` (step + flush + sleep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CycleError<S, T> {
    /// The sensor step failed (bus error); nothing was sent.
    #[error("sensor: {0}")]
    Sensor(S),
    /// The flush stopped at a transport error.
    #[error("transport: {0}")]
    Transport(FlushError<T>),
}
