//! Grid measurement on the device, pure (no IO): power-quality event classification, interval
//! summaries and EN 50160 compliance.
//!
//! # Events ([`EventClassifier`])
//! RMS voltage samples (per cycle, or per metering sample) are compared with the nominal voltage in
//! per-unit. Categories follow IEEE 1159-2019 Table 2 (RMS variations): **sag** below 0.9 pu,
//! **swell** above 1.1 pu, **interruption** below 0.1 pu. Start and end follow IEC 61000-4-30:2015
//! §5.4 (dips, swells, interruptions): an event starts when the voltage crosses its threshold and ends
//! when it comes back past the threshold **plus a hysteresis** (typically 2 % of the declared voltage),
//! so noise around a threshold cannot chatter. Duration = end time − start time, at the sample
//! resolution.
//!
//! A dip that goes below 0.1 pu at any time is reported as one interruption (its extreme is the lowest
//! voltage); IEC 61000-4-30 would report an interruption inside a dip. A dip that turns straight into a
//! swell (or the reverse) ends the first event at that sample and starts the second.
//!
//! # Compliance ([`Compliance`])
//! EN 50160:2010 §4.2 for LV supply: 10-minute mean RMS voltage within ±10 % of the nominal, and
//! 10-second mean frequency within ±1 % of the nominal (50 Hz ± 0.5 Hz). Blocks are aligned to the
//! sample clock; the monitor counts compliant and non-compliant blocks (EN 50160 requires 95 % of the
//! week's 10-minute means, and 99.5 % of the year's 10-second frequency means, to comply).
//!
//! # Summaries ([`SummaryAccumulator`])
//! Instead of raw samples the device reports, per interval (default 60 s), the min/mean/max RMS voltage
//! and mean current, powers, power factor and frequency ([`telemetry::GridSummary`]).

use serde::{Deserialize, Serialize};
use telemetry::{GridSummary, PqEventKind};

/// Event thresholds, per unit of the nominal voltage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Sag (dip) threshold, pu (default 0.9, IEEE 1159).
    pub sag_pu: f32,
    /// Swell threshold, pu (default 1.1).
    pub swell_pu: f32,
    /// Interruption threshold, pu (default 0.1).
    pub interruption_pu: f32,
    /// Hysteresis, pu (default 0.02, IEC 61000-4-30).
    pub hysteresis_pu: f32,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            sag_pu: 0.9,
            swell_pu: 1.1,
            interruption_pu: 0.1,
            hysteresis_pu: 0.02,
        }
    }
}

/// A finished power-quality event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinishedEvent {
    /// Category.
    pub kind: PqEventKind,
    /// First sample beyond the threshold, ms.
    pub start_ms: u64,
    /// End (first sample back past threshold + hysteresis) − start, ms.
    pub duration_ms: u64,
    /// Lowest (sag, interruption) or highest (swell) RMS voltage, V.
    pub extreme_v: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Active {
    kind: PqEventKind,
    start_ms: u64,
    extreme_v: f32,
}

/// Sag/swell/interruption classifier (see the module docs).
#[derive(Debug, Clone)]
pub struct EventClassifier {
    cfg: ClassifierConfig,
    nominal_v: f32,
    active: Option<Active>,
}

impl EventClassifier {
    /// A classifier for `nominal_v` volts.
    pub fn new(nominal_v: f32, cfg: ClassifierConfig) -> Self {
        EventClassifier {
            cfg,
            nominal_v,
            active: None,
        }
    }

    /// The event in progress: kind, start time (ms) and extreme so far (V).
    pub fn active(&self) -> Option<(PqEventKind, u64, f32)> {
        self.active.map(|a| (a.kind, a.start_ms, a.extreme_v))
    }

    /// Feeds one RMS sample; returns the event that this sample finished, if any. Non-finite samples
    /// are ignored.
    pub fn update(&mut self, t_ms: u64, v_rms_v: f32) -> Option<FinishedEvent> {
        if !v_rms_v.is_finite() || self.nominal_v.is_nan() || self.nominal_v <= 0.0 {
            return None;
        }
        let u = v_rms_v / self.nominal_v;
        let c = self.cfg;
        match self.active {
            None => {
                self.active = self.start(t_ms, u, v_rms_v);
                None
            }
            Some(mut a) => {
                let dip = a.kind != PqEventKind::Swell;
                let back_to_normal = if dip {
                    u >= c.sag_pu + c.hysteresis_pu
                } else {
                    u <= c.swell_pu - c.hysteresis_pu
                };
                let crossed = if dip { u > c.swell_pu } else { u < c.sag_pu };
                if back_to_normal || crossed {
                    let done = FinishedEvent {
                        kind: a.kind,
                        start_ms: a.start_ms,
                        duration_ms: t_ms.saturating_sub(a.start_ms),
                        extreme_v: a.extreme_v,
                    };
                    self.active = if crossed {
                        self.start(t_ms, u, v_rms_v)
                    } else {
                        None
                    };
                    return Some(done);
                }
                if dip {
                    a.extreme_v = a.extreme_v.min(v_rms_v);
                    if u < c.interruption_pu {
                        a.kind = PqEventKind::Interruption;
                    }
                } else {
                    a.extreme_v = a.extreme_v.max(v_rms_v);
                }
                self.active = Some(a);
                None
            }
        }
    }

    fn start(&self, t_ms: u64, u: f32, v: f32) -> Option<Active> {
        let c = self.cfg;
        let kind = if u < c.interruption_pu {
            PqEventKind::Interruption
        } else if u < c.sag_pu {
            PqEventKind::Sag
        } else if u > c.swell_pu {
            PqEventKind::Swell
        } else {
            return None;
        };
        Some(Active {
            kind,
            start_ms: t_ms,
            extreme_v: v,
        })
    }
}

/// One metering sample for the summaries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GridSample {
    /// RMS voltage, V.
    pub v_rms_v: f32,
    /// RMS current, A.
    pub i_rms_a: f32,
    /// Active power, kW.
    pub p_kw: f32,
    /// Reactive power, kvar.
    pub q_kvar: f32,
    /// Power factor.
    pub pf: f32,
    /// Line frequency, Hz.
    pub freq_hz: f32,
}

/// Min/mean/max accumulator over aligned intervals of `interval_ms`.
#[derive(Debug, Clone)]
pub struct SummaryAccumulator {
    interval_ms: u64,
    start_ms: u64,
    n: u32,
    sum_v: f64,
    min_v: f32,
    max_v: f32,
    sum_i: f64,
    sum_p: f64,
    sum_q: f64,
    sum_pf: f64,
    sum_f: f64,
    energy_kwh: f64,
}

impl SummaryAccumulator {
    /// Intervals of `interval_ms` (at least 1 ms), aligned to multiples of it.
    pub fn new(interval_ms: u64) -> Self {
        SummaryAccumulator {
            interval_ms: interval_ms.max(1),
            start_ms: 0,
            n: 0,
            sum_v: 0.0,
            min_v: f32::INFINITY,
            max_v: f32::NEG_INFINITY,
            sum_i: 0.0,
            sum_p: 0.0,
            sum_q: 0.0,
            sum_pf: 0.0,
            sum_f: 0.0,
            energy_kwh: 0.0,
        }
    }

    /// Samples in the open interval.
    pub fn samples(&self) -> u32 {
        self.n
    }

    /// Adds a sample taken at `t_ms` with the energy register reading `energy_kwh`. When the sample
    /// belongs to a later interval, the open interval is closed first and returned as
    /// `(interval start ms, summary)`; the summary's energy is the last reading inside it. Samples
    /// with a non-finite voltage are ignored; samples earlier than the open interval count into it.
    pub fn push(
        &mut self,
        t_ms: u64,
        s: GridSample,
        energy_kwh: f64,
    ) -> Option<(u64, GridSummary)> {
        if !s.v_rms_v.is_finite() {
            return None;
        }
        let slot = t_ms - t_ms % self.interval_ms;
        let mut closed = None;
        if self.n > 0 && slot > self.start_ms {
            closed = self.close();
        }
        if self.n == 0 {
            self.start_ms = slot;
        }
        self.n += 1;
        self.sum_v += f64::from(s.v_rms_v);
        self.min_v = self.min_v.min(s.v_rms_v);
        self.max_v = self.max_v.max(s.v_rms_v);
        self.sum_i += f64::from(fin(s.i_rms_a));
        self.sum_p += f64::from(fin(s.p_kw));
        self.sum_q += f64::from(fin(s.q_kvar));
        self.sum_pf += f64::from(fin(s.pf));
        self.sum_f += f64::from(fin(s.freq_hz));
        self.energy_kwh = energy_kwh;
        closed
    }

    /// Closes the open interval now (e.g. before a shutdown); `None` when it is empty.
    pub fn close(&mut self) -> Option<(u64, GridSummary)> {
        if self.n == 0 {
            return None;
        }
        let n = f64::from(self.n);
        let s = GridSummary {
            interval_s: u32::try_from(self.interval_ms / 1000).unwrap_or(u32::MAX),
            v_rms_v: (self.sum_v / n) as f32,
            v_min_v: self.min_v,
            v_max_v: self.max_v,
            i_rms_a: (self.sum_i / n) as f32,
            p_kw: (self.sum_p / n) as f32,
            q_kvar: (self.sum_q / n) as f32,
            pf: (self.sum_pf / n) as f32,
            freq_hz: (self.sum_f / n) as f32,
            energy_kwh: self.energy_kwh,
        };
        let start = self.start_ms;
        *self = SummaryAccumulator {
            energy_kwh: self.energy_kwh,
            ..SummaryAccumulator::new(self.interval_ms)
        };
        Some((start, s))
    }
}

fn fin(x: f32) -> f32 {
    if x.is_finite() { x } else { 0.0 }
}

/// EN 50160 voltage and frequency compliance counters (see the module docs).
#[derive(Debug, Clone)]
pub struct Compliance {
    nominal_v: f32,
    nominal_hz: f32,
    v_block: Block,
    f_block: Block,
    /// 10-minute voltage blocks closed.
    pub voltage_blocks: u32,
    /// Of those, blocks whose mean was within ±10 % of nominal.
    pub voltage_blocks_ok: u32,
    /// 10-second frequency blocks closed.
    pub freq_blocks: u32,
    /// Of those, blocks whose mean was within ±1 % of nominal.
    pub freq_blocks_ok: u32,
    /// Mean of the last closed 10-minute voltage block, V.
    pub last_voltage_mean_v: Option<f32>,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    len_ms: u64,
    start_ms: u64,
    n: u32,
    sum: f64,
}

impl Block {
    fn push(&mut self, t_ms: u64, x: f32) -> Option<f32> {
        let slot = t_ms - t_ms % self.len_ms;
        let mut closed = None;
        if self.n > 0 && slot > self.start_ms {
            closed = Some((self.sum / f64::from(self.n)) as f32);
            self.n = 0;
            self.sum = 0.0;
        }
        if self.n == 0 {
            self.start_ms = slot;
        }
        self.n += 1;
        self.sum += f64::from(x);
        closed
    }
}

/// EN 50160 voltage aggregation block, ms (10 minutes).
pub const VOLTAGE_BLOCK_MS: u64 = 600_000;
/// EN 50160 frequency aggregation block, ms (10 seconds).
pub const FREQ_BLOCK_MS: u64 = 10_000;

impl Compliance {
    /// Monitor for the given nominal voltage (V) and frequency (Hz).
    pub fn new(nominal_v: f32, nominal_hz: f32) -> Self {
        let b = |len_ms| Block {
            len_ms,
            start_ms: 0,
            n: 0,
            sum: 0.0,
        };
        Compliance {
            nominal_v,
            nominal_hz,
            v_block: b(VOLTAGE_BLOCK_MS),
            f_block: b(FREQ_BLOCK_MS),
            voltage_blocks: 0,
            voltage_blocks_ok: 0,
            freq_blocks: 0,
            freq_blocks_ok: 0,
            last_voltage_mean_v: None,
        }
    }

    /// Adds a sample; closes blocks as the time passes their end. Non-finite values are skipped.
    pub fn push(&mut self, t_ms: u64, v_rms_v: f32, freq_hz: f32) {
        if v_rms_v.is_finite()
            && let Some(mean) = self.v_block.push(t_ms, v_rms_v)
        {
            self.voltage_blocks += 1;
            self.last_voltage_mean_v = Some(mean);
            if libm::fabsf(mean - self.nominal_v) <= 0.10 * self.nominal_v {
                self.voltage_blocks_ok += 1;
            }
        }
        if freq_hz.is_finite()
            && let Some(mean) = self.f_block.push(t_ms, freq_hz)
        {
            self.freq_blocks += 1;
            if libm::fabsf(mean - self.nominal_hz) <= 0.01 * self.nominal_hz {
                self.freq_blocks_ok += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(samples: &[(u64, f32)]) -> ([Option<FinishedEvent>; 16], usize) {
        let mut c = EventClassifier::new(230.0, ClassifierConfig::default());
        let mut out = [None; 16];
        let mut k = 0;
        for &(t, v) in samples {
            if let Some(e) = c.update(t, v) {
                out[k] = Some(e);
                k += 1;
            }
        }
        (out, k)
    }

    #[test]
    fn sag_with_start_duration_and_extreme() {
        // 0.9 pu = 207 V; end needs ≥ 0.92 pu = 211.6 V.
        let (ev, n) = run(&[
            (0, 230.0),
            (20, 200.0),
            (40, 180.0),
            (60, 209.0),
            (80, 212.0),
            (100, 230.0),
        ]);
        assert_eq!(n, 1);
        assert_eq!(
            ev[0],
            Some(FinishedEvent {
                kind: PqEventKind::Sag,
                start_ms: 20,
                duration_ms: 60,
                extreme_v: 180.0
            })
        );
    }

    #[test]
    fn hysteresis_prevents_chatter_at_threshold() {
        // Noise around 207 V (0.9 pu) between 206 and 208: one event, not many.
        let mut s = [(0u64, 0f32); 22];
        for (i, x) in s.iter_mut().enumerate() {
            *x = (i as u64 * 20, if i % 2 == 0 { 206.0 } else { 208.0 });
        }
        s[21] = (420, 230.0);
        let (ev, n) = run(&s);
        assert_eq!(n, 1);
        assert_eq!(ev[0].unwrap().duration_ms, 420);
    }

    #[test]
    fn interruption_and_swell() {
        let (ev, n) = run(&[
            (0, 10.0),
            (20, 5.0),
            (40, 150.0),
            (60, 230.0),
            (80, 260.0),
            (100, 255.0),
            (120, 248.0),
        ]);
        assert_eq!(n, 2);
        assert_eq!(
            ev[0],
            Some(FinishedEvent {
                kind: PqEventKind::Interruption,
                start_ms: 0,
                duration_ms: 60,
                extreme_v: 5.0
            })
        );
        // Swell ends at ≤ 1.08 pu = 248.4 V.
        assert_eq!(
            ev[1],
            Some(FinishedEvent {
                kind: PqEventKind::Swell,
                start_ms: 80,
                duration_ms: 40,
                extreme_v: 260.0
            })
        );
    }

    #[test]
    fn summary_min_mean_max_by_hand() {
        let mut a = SummaryAccumulator::new(60_000);
        let s = |v| GridSample {
            v_rms_v: v,
            i_rms_a: 2.0,
            p_kw: 0.4,
            q_kvar: 0.1,
            pf: 0.97,
            freq_hz: 50.0,
        };
        assert_eq!(a.push(120_000, s(228.0), 1.0), None);
        assert_eq!(a.push(150_000, s(232.0), 1.5), None);
        assert_eq!(a.push(179_999, s(233.0), 2.0), None);
        let (start, sum) = a.push(180_000, s(230.0), 2.5).unwrap();
        assert_eq!(start, 120_000);
        assert_eq!(sum.interval_s, 60);
        assert_eq!(sum.v_rms_v, 231.0);
        assert_eq!((sum.v_min_v, sum.v_max_v), (228.0, 233.0));
        assert_eq!(sum.energy_kwh, 2.0);
        assert_eq!(a.samples(), 1);
    }

    #[test]
    fn compliance_counts_blocks() {
        let mut c = Compliance::new(230.0, 50.0);
        // Block 0: mean 250 V, within 207..=253 V; block 1: 255 V, outside. One sample of block 2
        // closes block 1.
        for t in (0..600_000).step_by(1000) {
            c.push(t, 250.0, 50.2);
        }
        for t in (600_000..1_200_000).step_by(1000) {
            c.push(t, 255.0, 50.6);
        }
        c.push(1_200_000, 230.0, 50.0);
        assert_eq!((c.voltage_blocks, c.voltage_blocks_ok), (2, 1));
        assert_eq!(c.last_voltage_mean_v, Some(255.0));
        // 120 ten-second blocks closed: 60 at 50.2 Hz (ok), 60 at 50.6 Hz (out of 49.5..50.5).
        assert_eq!((c.freq_blocks, c.freq_blocks_ok), (120, 60));
    }
}
