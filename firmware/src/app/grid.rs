//! The grid measurement application (feeder, street cabinet, transformer monitor).

use super::outbox::{FlushError, Outbox};
use super::{CycleError, Transport};
use crate::ade7953::{self, Ade7953, Calibration};
use crate::grid::{
    ClassifierConfig, Compliance, EventClassifier, FinishedEvent, GridSample, SummaryAccumulator,
};
use embedded_hal::delay::DelayNs;
use embedded_hal::spi::SpiDevice;
use serde::{Deserialize, Serialize};
use telemetry::{GridEvent, GridSummary, Measurement};

/// Outbox capacity of the grid device, frames.
pub const GRID_OUTBOX_FRAMES: usize = 32;

/// Grid device configuration. Defaults: 230 V / 50 Hz, 200 ms sampling (10 cycles at 50 Hz, the
/// IEC 61000-4-30 basic interval), 1-minute summaries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridConfig {
    /// Nominal (declared) voltage, V (default 230).
    pub nominal_v: f32,
    /// Nominal frequency, Hz (default 50).
    pub nominal_hz: f32,
    /// Summary interval, ms (default 60 000; whole seconds go on the air).
    pub summary_interval_ms: u64,
    /// Sample period used by [`GridApp::cycle`] to sleep, ms (default 200).
    pub sample_interval_ms: u32,
    /// Metering calibration constants.
    pub calibration: Calibration,
    /// ADE7953 chip settings.
    pub chip: ade7953::Config,
    /// Event thresholds.
    pub events: ClassifierConfig,
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            nominal_v: 230.0,
            nominal_hz: 50.0,
            summary_interval_ms: 60_000,
            sample_interval_ms: 200,
            calibration: Calibration::default(),
            chip: ade7953::Config::default(),
            events: ClassifierConfig::default(),
        }
    }
}

/// Grid device: ADE7953 → classifier, summaries, compliance → frames → [`Outbox`].
#[derive(Debug)]
pub struct GridApp<SPI> {
    meter: Ade7953<SPI>,
    version: u8,
    classifier: EventClassifier,
    summary: SummaryAccumulator,
    compliance: Compliance,
    outbox: Outbox<GRID_OUTBOX_FRAMES>,
    sample_interval_ms: u32,
    last: Option<GridSample>,
    samples: u32,
    events: u32,
    summaries: u32,
}

impl<SPI: SpiDevice> GridApp<SPI> {
    /// Initialises the ADE7953 (unlock + 0x120 = 0x30, configuration, read-back check, version).
    /// `addr` is the short radio address, `boot` the boot counter.
    ///
    /// # Errors
    /// [`ade7953::Error`] from the chip.
    pub fn new(
        spi: SPI,
        cfg: GridConfig,
        addr: u16,
        boot: u16,
    ) -> Result<Self, ade7953::Error<SPI::Error>> {
        let mut meter = Ade7953::new(spi, cfg.calibration);
        let version = meter.init(&cfg.chip)?;
        Ok(GridApp {
            meter,
            version,
            classifier: EventClassifier::new(cfg.nominal_v, cfg.events),
            summary: SummaryAccumulator::new(cfg.summary_interval_ms.max(1000)),
            compliance: Compliance::new(cfg.nominal_v, cfg.nominal_hz),
            outbox: Outbox::new(addr, boot),
            sample_interval_ms: cfg.sample_interval_ms,
            last: None,
            samples: 0,
            events: 0,
            summaries: 0,
        })
    }

    /// One sample at `now_ms`: read the meter (RMS, powers, PF, period, energy), classify, update the
    /// summary and compliance; queue a [`GridEvent`] frame (event time = start) when an event ends and a
    /// [`GridSummary`] frame (event time = interval start) when an interval closes.
    ///
    /// # Errors
    /// [`ade7953::Error::Bus`]; nothing is updated then.
    pub fn step(&mut self, now_ms: u64) -> Result<(), ade7953::Error<SPI::Error>> {
        let m = self.meter.measure()?;
        self.meter.accumulate_energy()?;
        let s = GridSample {
            v_rms_v: m.v_rms_v,
            i_rms_a: m.i_rms_a,
            p_kw: m.p_w / 1000.0,
            q_kvar: m.q_var / 1000.0,
            pf: m.pf,
            freq_hz: m.freq_hz,
        };
        self.samples = self.samples.saturating_add(1);
        self.last = Some(s);
        if let Some(ev) = self.classifier.update(now_ms, s.v_rms_v) {
            self.queue_event(ev);
        }
        self.compliance.push(now_ms, s.v_rms_v, s.freq_hz);
        if let Some((start, summary)) = self.summary.push(now_ms, s, self.meter.import_energy_kwh())
        {
            self.queue_summary(start, summary);
        }
        Ok(())
    }

    /// Sends queued frames oldest first; returns how many were sent.
    ///
    /// # Errors
    /// [`FlushError`]: the failed frame and the rest stay queued.
    pub fn flush<T: Transport>(
        &mut self,
        t: &mut T,
        now_ms: u64,
    ) -> Result<usize, FlushError<T::Error>> {
        self.outbox.flush(t, now_ms)
    }

    /// One duty cycle: step, flush, sleep `sample_interval_ms`. Returns the frames sent.
    ///
    /// # Errors
    /// [`CycleError`]; the sleep happens in every case.
    pub fn cycle<T: Transport, D: DelayNs>(
        &mut self,
        t: &mut T,
        delay: &mut D,
        now_ms: u64,
    ) -> Result<usize, CycleError<ade7953::Error<SPI::Error>, T::Error>> {
        let r = match self.step(now_ms) {
            Err(e) => Err(CycleError::Sensor(e)),
            Ok(()) => self.flush(t, now_ms).map_err(CycleError::Transport),
        };
        delay.delay_ms(self.sample_interval_ms);
        r
    }

    /// ADE7953 silicon version read at start-up.
    pub fn chip_version(&self) -> u8 {
        self.version
    }

    /// The last sample, if any.
    pub fn last_sample(&self) -> Option<GridSample> {
        self.last
    }

    /// Imported active energy since start-up, kWh.
    pub fn energy_kwh(&self) -> f64 {
        self.meter.import_energy_kwh()
    }

    /// The event in progress: kind, start (ms), extreme so far (V).
    pub fn active_event(&self) -> Option<(telemetry::PqEventKind, u64, f32)> {
        self.classifier.active()
    }

    /// EN 50160 compliance counters.
    pub fn compliance(&self) -> &Compliance {
        &self.compliance
    }

    /// Samples processed since boot.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Power-quality events finished since boot.
    pub fn events(&self) -> u32 {
        self.events
    }

    /// Summaries produced since boot.
    pub fn summaries(&self) -> u32 {
        self.summaries
    }

    /// Frames dropped from the full outbox since boot.
    pub fn dropped(&self) -> u32 {
        self.outbox.dropped()
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// The outbox (counters).
    pub fn outbox(&self) -> &Outbox<GRID_OUTBOX_FRAMES> {
        &self.outbox
    }

    /// Gives the SPI device back.
    pub fn release(self) -> SPI {
        self.meter.release()
    }

    /// The SPI device, borrowed: the fleet simulator sets a `SimAde7953`'s values and advances its
    /// energy through it between steps.
    pub fn bus_mut(&mut self) -> &mut SPI {
        self.meter.bus_mut()
    }

    fn queue_event(&mut self, ev: FinishedEvent) {
        self.events = self.events.saturating_add(1);
        let data = Measurement::GridEvent(GridEvent {
            event: ev.kind,
            duration_ms: u32::try_from(ev.duration_ms).unwrap_or(u32::MAX),
            extreme_v: clamp(ev.extreme_v, 0.0, 655.35),
        });
        let _ = self.outbox.push(ev.start_ms, data);
    }

    fn queue_summary(&mut self, start_ms: u64, s: GridSummary) {
        self.summaries = self.summaries.saturating_add(1);
        // Clamp into the frame's ranges so an extreme reading degrades to a saturated value, not a
        // lost summary.
        let s = GridSummary {
            interval_s: s.interval_s.min(u32::from(u16::MAX)),
            v_rms_v: clamp(s.v_rms_v, 0.0, 655.35),
            v_min_v: clamp(s.v_min_v, 0.0, 655.35),
            v_max_v: clamp(s.v_max_v, 0.0, 655.35),
            i_rms_a: clamp(s.i_rms_a, 0.0, 6553.5),
            p_kw: clamp(s.p_kw, -2_000_000.0, 2_000_000.0),
            q_kvar: clamp(s.q_kvar, -2_000_000.0, 2_000_000.0),
            pf: clamp(s.pf, -1.0, 1.0),
            freq_hz: clamp(s.freq_hz, 0.0, 65.535),
            energy_kwh: s.energy_kwh.clamp(0.0, 4_294_967.0),
        };
        let _ = self.outbox.push(start_ms, Measurement::GridSummary(s));
    }
}

fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_finite() { x.clamp(lo, hi) } else { lo }
}
