//! The parking-bay sensor application.

use super::outbox::{FlushError, Outbox};
use super::{CycleError, Transport};
use crate::detect::{BayState, Detector, DetectorConfig, DetectorEvent};
use crate::lis3mdl::{self, Lis3mdl, registers::I2C_ADDR_SA1_LOW};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use serde::{Deserialize, Serialize};
use telemetry::{Measurement, ParkingChange, ParkingHeartbeat};

/// Outbox capacity of the parking sensor, frames (16 × 48 B; about 10 minutes of changes at the
/// busiest bays, and hours of heartbeats).
pub const PARKING_OUTBOX_FRAMES: usize = 16;

/// Largest field value a frame carries, µT (`field_dut: u16`).
const MAX_FIELD_UT: f32 = 6553.5;

/// Parking sensor configuration. Defaults: 1 s sampling, change reported within ~3 s (debounce 3),
/// heartbeat every 4 hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParkingConfig {
    /// LIS3MDL 7-bit I2C address (default 0x1C, SDO/SA1 low).
    pub i2c_addr: u8,
    /// Magnetometer settings (default ±4 gauss, 5 Hz, low power, continuous, temperature on).
    pub sensor: lis3mdl::Config,
    /// Detection thresholds and time constants.
    pub detector: DetectorConfig,
    /// Sample period used by [`ParkingApp::cycle`] to sleep, ms (default 1000).
    pub sample_interval_ms: u32,
    /// Heartbeat period, ms (default 14 400 000 = 4 h). The first heartbeat goes out when the baseline
    /// has been learned.
    pub heartbeat_interval_ms: u64,
}

impl Default for ParkingConfig {
    fn default() -> Self {
        ParkingConfig {
            i2c_addr: I2C_ADDR_SA1_LOW,
            sensor: lis3mdl::Config::default(),
            detector: DetectorConfig::default(),
            sample_interval_ms: 1000,
            heartbeat_interval_ms: 4 * 3600 * 1000,
        }
    }
}

/// Parking sensor: LIS3MDL → [`Detector`] → frames → [`Outbox`].
///
/// Its state with a zero-sized bus handle is 968 bytes on x86-64 (`tests/budgets_and_outbox.rs` prints
/// it and asserts ≤ 2 KiB); the 16-frame outbox is most of it.
#[derive(Debug)]
pub struct ParkingApp<I2C> {
    mag: Lis3mdl<I2C>,
    detector: Detector,
    outbox: Outbox<PARKING_OUTBOX_FRAMES>,
    sample_interval_ms: u32,
    heartbeat_interval_ms: u64,
    temperature_enabled: bool,
    last_heartbeat_ms: Option<u64>,
    samples: u32,
    not_ready: u32,
}

impl<I2C: I2c> ParkingApp<I2C> {
    /// Initialises the LIS3MDL (identity check, configuration) and starts learning the baseline from
    /// the first `cfg.detector.baseline_samples` samples. `addr` is the device's short radio address,
    /// `boot` its boot counter (low 16 bits go on the air).
    ///
    /// # Errors
    /// [`lis3mdl::Error`] from the sensor (bus error, wrong identity).
    pub fn new(
        i2c: I2C,
        cfg: ParkingConfig,
        addr: u16,
        boot: u16,
    ) -> Result<Self, lis3mdl::Error<I2C::Error>> {
        let mut mag = Lis3mdl::new(i2c, cfg.i2c_addr);
        mag.init(&cfg.sensor)?;
        Ok(ParkingApp {
            mag,
            detector: Detector::new(cfg.detector),
            outbox: Outbox::new(addr, boot),
            sample_interval_ms: cfg.sample_interval_ms,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms.max(1),
            temperature_enabled: cfg.sensor.temperature_enabled,
            last_heartbeat_ms: None,
            samples: 0,
            not_ready: 0,
        })
    }

    /// One sample at `now_ms`: read the sensor (skipped, and counted, when STATUS_REG says no new
    /// data), run the detector, queue a change frame on arrival/departure and a heartbeat when due.
    ///
    /// # Errors
    /// [`lis3mdl::Error::Bus`]; the detector state is unchanged then.
    pub fn step(&mut self, now_ms: u64, battery_pct: u8) -> Result<(), lis3mdl::Error<I2C::Error>> {
        if !self.mag.data_ready()? {
            self.not_ready = self.not_ready.saturating_add(1);
            return Ok(());
        }
        let field = self.mag.read_field_ut()?;
        let temp_c = if self.temperature_enabled {
            self.mag.read_temperature_c()?
        } else {
            25.0
        };
        self.samples = self.samples.saturating_add(1);
        match self.detector.update(now_ms, field.as_array(), temp_c) {
            Some(DetectorEvent::Arrival { at_ms, field_ut }) => {
                self.queue_change(at_ms, true, field_ut)
            }
            Some(DetectorEvent::Departure { at_ms, field_ut }) => {
                self.queue_change(at_ms, false, field_ut)
            }
            Some(DetectorEvent::Calibrated {
                at_ms,
                was_occupied,
            }) => {
                if was_occupied {
                    self.queue_change(at_ms, false, 0.0);
                }
                self.queue_heartbeat(now_ms, battery_pct);
            }
            None => {}
        }
        if let Some(last) = self.last_heartbeat_ms
            && now_ms.saturating_sub(last) >= self.heartbeat_interval_ms
        {
            self.queue_heartbeat(now_ms, battery_pct);
        }
        Ok(())
    }

    /// Sends queued frames oldest first with their age at `now_ms`; returns how many were sent.
    ///
    /// # Errors
    /// [`FlushError`]: the transport failed; the failed frame and the rest stay queued.
    pub fn flush<T: Transport>(
        &mut self,
        t: &mut T,
        now_ms: u64,
    ) -> Result<usize, FlushError<T::Error>> {
        self.outbox.flush(t, now_ms)
    }

    /// One duty cycle: [`step`](Self::step), [`flush`](Self::flush), then sleep
    /// `sample_interval_ms` through `delay`. Returns the frames sent.
    ///
    /// # Errors
    /// [`CycleError`]; the sleep happens in every case so a failing link does not spin.
    pub fn cycle<T: Transport, D: DelayNs>(
        &mut self,
        t: &mut T,
        delay: &mut D,
        now_ms: u64,
        battery_pct: u8,
    ) -> Result<usize, CycleError<lis3mdl::Error<I2C::Error>, T::Error>> {
        let r = match self.step(now_ms, battery_pct) {
            Err(e) => Err(CycleError::Sensor(e)),
            Ok(()) => self.flush(t, now_ms).map_err(CycleError::Transport),
        };
        delay.delay_ms(self.sample_interval_ms);
        r
    }

    /// Command: relearn the vacant baseline from the next samples (the bay must be empty).
    pub fn recalibrate(&mut self) {
        self.detector.recalibrate();
    }

    /// Current bay state.
    pub fn state(&self) -> BayState {
        self.detector.state()
    }

    /// The detector (baseline, thresholds, deviation).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// State transitions since boot.
    pub fn transitions(&self) -> u32 {
        self.detector.transitions()
    }

    /// Frames dropped from the full outbox since boot.
    pub fn dropped(&self) -> u32 {
        self.outbox.dropped()
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// The outbox (counters: sent, dropped, encode errors, next seq).
    pub fn outbox(&self) -> &Outbox<PARKING_OUTBOX_FRAMES> {
        &self.outbox
    }

    /// Samples processed since boot.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Steps skipped because the sensor had no new data.
    pub fn not_ready(&self) -> u32 {
        self.not_ready
    }

    /// Gives the I2C bus back.
    pub fn release(self) -> I2C {
        self.mag.release()
    }

    /// The I2C bus, borrowed: the fleet simulator sets a `SimLis3mdl`'s field through it
    /// between steps.
    pub fn bus_mut(&mut self) -> &mut I2C {
        self.mag.bus_mut()
    }

    fn queue_change(&mut self, at_ms: u64, occupied: bool, field_ut: f32) {
        let data = Measurement::ParkingChange(ParkingChange {
            occupied,
            field_ut: clamp_field(field_ut),
        });
        // Encoding cannot fail for clamped values; a failure is counted by the outbox.
        let _ = self.outbox.push(at_ms, data);
    }

    fn queue_heartbeat(&mut self, now_ms: u64, battery_pct: u8) {
        let data = Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: self.detector.state().is_occupied(),
            battery_pct: f32::from(battery_pct.min(100)),
            field_ut: clamp_field(self.detector.deviation_ut()),
            transitions: self.detector.transitions(),
            // Counted before this push: a drop caused by this heartbeat shows in the next one.
            dropped: self.outbox.dropped(),
        });
        let _ = self.outbox.push(now_ms, data);
        self.last_heartbeat_ms = Some(now_ms);
    }
}

fn clamp_field(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, MAX_FIELD_UT)
    } else {
        0.0
    }
}
