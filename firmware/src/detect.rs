//! Vehicle detection for one parking bay from a 3-axis magnetometer: a pure state machine (no IO).
//!
//! # Algorithm
//! A parked vehicle's ferromagnetic mass distorts the earth's field at a sensor in the road surface by
//! tens of µT; a vehicle in the next bay changes it by a few µT (the dipole field falls off with the cube
//! of distance). The detector therefore works on the *deviation* of the field vector from a learned
//! vacant baseline, as in Cheung & Varaiya, "Traffic surveillance by wireless sensor networks: final
//! report", UC Berkeley PATH UCB-ITS-PRR-2007-4 (adaptive baseline plus threshold state machine on
//! magnetometer samples), and with the adaptive threshold idea of Zhang et al., "A Vehicle Detection
//! Algorithm Based on Wireless Magnetic Sensor Networks" (adaptive baseline/threshold with a state
//! machine, 2013–2014 line of work).
//!
//! Per sample (field `b` in µT, die temperature `t` in °C, time `t_ms`):
//! 1. **Temperature compensation**: `b' = b − k·(t − t₀)` with the per-axis offset coefficient `k`
//!    (µT/°C, [`DetectorConfig::temp_coeff_ut_per_c`]) and `t₀` the mean temperature while the baseline
//!    was learned. This keeps the baseline valid during long occupancies, when drift tracking is frozen.
//! 2. **Calibration**: the first [`DetectorConfig::baseline_samples`] samples (bay assumed vacant, e.g.
//!    at installation, or after a [`Detector::recalibrate`] command) give the baseline mean and the
//!    noise level (Welford's running variance).
//! 3. **Deviation** `d = |b' − baseline|` (Euclidean, µT).
//! 4. **Adaptive thresholds**: enter = max(`enter_ut`, `noise_k`·σ), leave = enter·`leave_ut`/`enter_ut`
//!    at least `leave_ut`, where σ is the RMS deviation while vacant and quiet (an EWMA), so a noisy
//!    site raises its thresholds instead of flapping (Zhang et al.).
//! 5. **Hysteresis and debounce**: vacant → occupied when `d > enter` for
//!    [`DetectorConfig::debounce_samples`] consecutive samples; occupied → vacant when `d < leave` for as
//!    many samples. `enter > leave`, so a deviation near one threshold cannot chatter; a disturbance
//!    shorter than the debounce (a vehicle passing in the lane, a tram, a spike) never changes the state.
//!    A departure sample may also be one that lies within the *enter* radius of the baseline while it
//!    has moved more than the enter threshold away from the **occupied level** (the field learned at
//!    arrival, EWMA-tracked while occupied). This covers a field that does not come all the way back
//!    to the frozen baseline because neighbouring bays changed or the sensor drifted during a long
//!    occupancy (the generated traces showed misses without it).
//! 6. **Drift tracking**: while vacant and `d < enter` with no pending run, the baseline follows the
//!    field with an EWMA, `baseline += α·(b' − baseline)` ([`DetectorConfig::drift_alpha`] per sample),
//!    absorbing slow drift (temperature residue, a car settling in the next bay). It is frozen while
//!    occupied.
//!
//! The reported change time is the time of the **first** sample of the debounced run (the onset), so a
//! report is late by `debounce_samples − 1` sample periods at most but its timestamp is not. A disturbance
//! that exceeds the enter threshold for the whole debounce time is indistinguishable from a vehicle.
//!
//! Evaluation: `tests/detection_accuracy.rs` runs generated traces (noise, drift, temperature cycles,
//! neighbouring vehicles, interference spikes) and prints an accuracy report (`cargo test -p firmware
//! --test detection_accuracy -- --nocapture`).

use serde::{Deserialize, Serialize};

/// Detector thresholds and time constants. Defaults suit a 1 s sample period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Samples averaged into the vacant baseline at start and after recalibration (default 16).
    pub baseline_samples: u16,
    /// Deviation above which a sample counts toward "occupied", µT (default 10).
    pub enter_ut: f32,
    /// Deviation below which a sample counts toward "vacant", µT (default 6; must be below `enter_ut`).
    pub leave_ut: f32,
    /// Consecutive samples needed to change state (default 3).
    pub debounce_samples: u8,
    /// EWMA weight per sample of the vacant drift tracking, 0..1 (default 0.01 ≈ 100-sample time
    /// constant).
    pub drift_alpha: f32,
    /// Noise multiplier of the adaptive enter threshold (default 5).
    pub noise_k: f32,
    /// Per-axis zero-field temperature coefficient, µT/°C (default 0: no compensation).
    pub temp_coeff_ut_per_c: [f32; 3],
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            baseline_samples: 16,
            enter_ut: 10.0,
            leave_ut: 6.0,
            debounce_samples: 3,
            drift_alpha: 0.01,
            noise_k: 5.0,
            temp_coeff_ut_per_c: [0.0; 3],
        }
    }
}

/// The bay state as the detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BayState {
    /// Learning the vacant baseline (bay assumed vacant).
    Calibrating,
    /// No vehicle over the sensor.
    Vacant,
    /// A vehicle over the sensor.
    Occupied,
}

impl BayState {
    /// True for [`BayState::Occupied`].
    pub const fn is_occupied(self) -> bool {
        matches!(self, BayState::Occupied)
    }
}

/// What an [`Detector::update`] produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DetectorEvent {
    /// The bay became occupied; `at_ms` is the first sample of the debounced run.
    Arrival {
        /// Onset time, ms (the caller's clock).
        at_ms: u64,
        /// Deviation at confirmation, µT.
        field_ut: f32,
    },
    /// The bay became vacant; `at_ms` is the first sample of the debounced run.
    Departure {
        /// Onset time, ms.
        at_ms: u64,
        /// Deviation at confirmation, µT.
        field_ut: f32,
    },
    /// The baseline was (re)learned. `was_occupied` is true when the bay had been occupied before a
    /// recalibration (the bay is vacant now by assumption, so callers report a departure).
    Calibrated {
        /// Time of the last calibration sample, ms.
        at_ms: u64,
        /// The bay was occupied when recalibration was commanded.
        was_occupied: bool,
    },
}

/// The detector state machine: fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    state: BayState,
    baseline_ut: [f32; 3],
    occupied_level_ut: [f32; 3],
    ref_temp_c: f32,
    // Welford accumulators for calibration.
    cal_n: u16,
    cal_mean: [f32; 3],
    cal_m2: f32,
    cal_temp_sum: f32,
    was_occupied: bool,
    /// Mean squared deviation while vacant and quiet, µT².
    noise_ms_ut2: f32,
    run_len: u8,
    run_start_ms: u64,
    deviation_ut: f32,
    transitions: u32,
}

impl Detector {
    /// A detector that starts by learning its baseline. Out-of-domain settings are repaired:
    /// `leave_ut` is clamped below `enter_ut`, `debounce_samples` and `baseline_samples` to at least 1,
    /// `drift_alpha` into 0..=1.
    pub fn new(cfg: DetectorConfig) -> Self {
        let mut cfg = cfg;
        if cfg.enter_ut.is_nan() || cfg.enter_ut <= 0.0 {
            cfg.enter_ut = DetectorConfig::default().enter_ut;
        }
        if cfg.leave_ut.is_nan() || cfg.leave_ut <= 0.0 || cfg.leave_ut >= cfg.enter_ut {
            cfg.leave_ut = cfg.enter_ut * 0.6;
        }
        cfg.debounce_samples = cfg.debounce_samples.max(1);
        cfg.baseline_samples = cfg.baseline_samples.max(1);
        if !(0.0..=1.0).contains(&cfg.drift_alpha) {
            cfg.drift_alpha = DetectorConfig::default().drift_alpha;
        }
        if !cfg.noise_k.is_finite() || cfg.noise_k < 0.0 {
            cfg.noise_k = 0.0;
        }
        Detector {
            cfg,
            state: BayState::Calibrating,
            baseline_ut: [0.0; 3],
            occupied_level_ut: [0.0; 3],
            ref_temp_c: 0.0,
            cal_n: 0,
            cal_mean: [0.0; 3],
            cal_m2: 0.0,
            cal_temp_sum: 0.0,
            was_occupied: false,
            noise_ms_ut2: 0.0,
            run_len: 0,
            run_start_ms: 0,
            deviation_ut: 0.0,
            transitions: 0,
        }
    }

    /// The (repaired) configuration in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> BayState {
        self.state
    }

    /// Learned vacant baseline, µT (temperature-compensated frame).
    pub fn baseline_ut(&self) -> [f32; 3] {
        self.baseline_ut
    }

    /// Deviation magnitude of the last sample from the baseline, µT (0 while calibrating).
    pub fn deviation_ut(&self) -> f32 {
        self.deviation_ut
    }

    /// Arrivals plus departures since creation.
    pub fn transitions(&self) -> u32 {
        self.transitions
    }

    /// Current adaptive `(enter, leave)` thresholds, µT.
    pub fn thresholds_ut(&self) -> (f32, f32) {
        let sigma = libm::sqrtf(self.noise_ms_ut2);
        let enter = self.cfg.enter_ut.max(self.cfg.noise_k * sigma);
        let leave = (enter * self.cfg.leave_ut / self.cfg.enter_ut).max(self.cfg.leave_ut);
        (enter, leave)
    }

    /// Command: relearn the baseline from the next samples (the bay must be vacant). If the bay was
    /// occupied, the [`DetectorEvent::Calibrated`] event says so.
    pub fn recalibrate(&mut self) {
        self.was_occupied = self.state == BayState::Occupied || self.was_occupied;
        self.state = BayState::Calibrating;
        self.cal_n = 0;
        self.cal_mean = [0.0; 3];
        self.cal_m2 = 0.0;
        self.cal_temp_sum = 0.0;
        self.run_len = 0;
        self.deviation_ut = 0.0;
    }

    /// Feeds one sample: field `field_ut` (`[x, y, z]`, µT), die temperature `temp_c` (°C; pass a
    /// constant when unknown) at `t_ms`. Non-finite samples are ignored (no state change).
    pub fn update(&mut self, t_ms: u64, field_ut: [f32; 3], temp_c: f32) -> Option<DetectorEvent> {
        if !field_ut.iter().all(|v| v.is_finite()) {
            return None;
        }
        let temp_c = if temp_c.is_finite() {
            temp_c
        } else {
            self.ref_temp_c
        };
        if self.state == BayState::Calibrating {
            return self.calibrate(t_ms, field_ut, temp_c);
        }
        let b = self.compensate(field_ut, temp_c);
        let diff = [
            b[0] - self.baseline_ut[0],
            b[1] - self.baseline_ut[1],
            b[2] - self.baseline_ut[2],
        ];
        let d = libm::sqrtf(diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]);
        self.deviation_ut = d;
        let (enter, leave) = self.thresholds_ut();
        let n = self.cfg.debounce_samples;
        match self.state {
            BayState::Vacant => {
                if d > enter {
                    if self.run_len == 0 {
                        self.run_start_ms = t_ms;
                    }
                    self.run_len = self.run_len.saturating_add(1);
                    if self.run_len >= n {
                        self.run_len = 0;
                        self.occupied_level_ut = b;
                        self.state = BayState::Occupied;
                        self.transitions = self.transitions.saturating_add(1);
                        return Some(DetectorEvent::Arrival {
                            at_ms: self.run_start_ms,
                            field_ut: d,
                        });
                    }
                } else {
                    self.run_len = 0;
                    let a = self.cfg.drift_alpha;
                    for (base, x) in self.baseline_ut.iter_mut().zip(diff) {
                        *base += a * x;
                    }
                    if d < leave {
                        self.noise_ms_ut2 += a * (d * d - self.noise_ms_ut2);
                    }
                }
            }
            BayState::Occupied => {
                let o = self.occupied_level_ut;
                let moved = dist(b, o);
                if d < leave || (d < enter && moved > enter) {
                    if self.run_len == 0 {
                        self.run_start_ms = t_ms;
                    }
                    self.run_len = self.run_len.saturating_add(1);
                    if self.run_len >= n {
                        self.run_len = 0;
                        self.state = BayState::Vacant;
                        self.transitions = self.transitions.saturating_add(1);
                        return Some(DetectorEvent::Departure {
                            at_ms: self.run_start_ms,
                            field_ut: d,
                        });
                    }
                } else {
                    self.run_len = 0;
                    let a = self.cfg.drift_alpha;
                    for (level, (x, l0)) in
                        self.occupied_level_ut.iter_mut().zip(b.into_iter().zip(o))
                    {
                        *level += a * (x - l0);
                    }
                }
            }
            BayState::Calibrating => {}
        }
        None
    }

    /// Field learned at arrival and tracked while occupied, µT (temperature-compensated frame).
    pub fn occupied_level_ut(&self) -> [f32; 3] {
        self.occupied_level_ut
    }

    fn compensate(&self, b: [f32; 3], temp_c: f32) -> [f32; 3] {
        let dt = temp_c - self.ref_temp_c;
        let k = self.cfg.temp_coeff_ut_per_c;
        [b[0] - k[0] * dt, b[1] - k[1] * dt, b[2] - k[2] * dt]
    }

    fn calibrate(&mut self, t_ms: u64, b: [f32; 3], temp_c: f32) -> Option<DetectorEvent> {
        // Welford on the vector: mean per axis, summed squared distance for the noise level.
        self.cal_n += 1;
        let n = f32::from(self.cal_n);
        let mut delta_sq = 0.0;
        for (mean, x) in self.cal_mean.iter_mut().zip(b) {
            let delta = x - *mean;
            *mean += delta / n;
            delta_sq += delta * (x - *mean);
        }
        self.cal_m2 += delta_sq;
        self.cal_temp_sum += temp_c;
        if self.cal_n < self.cfg.baseline_samples {
            return None;
        }
        // The mean was taken at the mean temperature; that becomes the compensation reference.
        self.ref_temp_c = self.cal_temp_sum / n;
        self.baseline_ut = self.cal_mean;
        self.noise_ms_ut2 = if self.cal_n > 1 {
            self.cal_m2 / (n - 1.0)
        } else {
            0.0
        };
        self.state = BayState::Vacant;
        self.run_len = 0;
        let was_occupied = core::mem::take(&mut self.was_occupied);
        if was_occupied {
            self.transitions = self.transitions.saturating_add(1);
        }
        Some(DetectorEvent::Calibrated {
            at_ms: t_ms,
            was_occupied,
        })
    }
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    libm::sqrtf(x * x + y * y + z * z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibrated(cfg: DetectorConfig) -> Detector {
        let mut d = Detector::new(cfg);
        for i in 0..cfg.baseline_samples {
            let ev = d.update(u64::from(i) * 1000, [10.0, 0.0, 40.0], 20.0);
            if i + 1 == cfg.baseline_samples {
                assert_eq!(
                    ev,
                    Some(DetectorEvent::Calibrated {
                        at_ms: u64::from(i) * 1000,
                        was_occupied: false
                    })
                );
            } else {
                assert_eq!(ev, None);
            }
        }
        d
    }

    #[test]
    fn baseline_is_the_mean_and_state_is_vacant() {
        let d = calibrated(DetectorConfig::default());
        assert_eq!(d.state(), BayState::Vacant);
        assert_eq!(d.baseline_ut(), [10.0, 0.0, 40.0]);
        // Constant input: zero noise, thresholds are the configured ones.
        assert_eq!(d.thresholds_ut(), (10.0, 6.0));
    }

    #[test]
    fn arrival_needs_n_consecutive_and_reports_onset() {
        // No drift tracking, so the baseline stays exactly [10, 0, 40].
        let mut d = calibrated(DetectorConfig {
            drift_alpha: 0.0,
            ..DetectorConfig::default()
        });
        // Deviation 15 µT on z (|[0,0,15]| = 15 > 10).
        assert_eq!(d.update(100_000, [10.0, 0.0, 55.0], 20.0), None);
        assert_eq!(d.update(101_000, [10.0, 0.0, 55.0], 20.0), None);
        // A dip below enter resets the run.
        assert_eq!(d.update(102_000, [10.0, 0.0, 45.0], 20.0), None);
        assert_eq!(d.update(103_000, [10.0, 0.0, 55.0], 20.0), None);
        assert_eq!(d.update(104_000, [10.0, 0.0, 55.0], 20.0), None);
        assert_eq!(
            d.update(105_000, [10.0, 0.0, 55.0], 20.0),
            Some(DetectorEvent::Arrival {
                at_ms: 103_000,
                field_ut: 15.0
            })
        );
        assert_eq!(d.state(), BayState::Occupied);
        // Between leave (6) and enter (10), and only 7 µT from the occupied level: stays occupied
        // (hysteresis), however long.
        for i in 0..50 {
            assert_eq!(d.update(106_000 + i * 1000, [10.0, 0.0, 48.0], 20.0), None);
        }
        // 3 µT deviation < 6: departure after 3 samples, onset at the first.
        assert_eq!(d.update(200_000, [13.0, 0.0, 40.0], 20.0), None);
        assert_eq!(d.update(201_000, [13.0, 0.0, 40.0], 20.0), None);
        assert_eq!(
            d.update(202_000, [13.0, 0.0, 40.0], 20.0),
            Some(DetectorEvent::Departure {
                at_ms: 200_000,
                field_ut: 3.0
            })
        );
        assert_eq!(d.transitions(), 2);
    }

    #[test]
    fn departure_when_field_leaves_the_occupied_level_without_reaching_baseline() {
        let mut d = calibrated(DetectorConfig {
            drift_alpha: 0.0,
            ..DetectorConfig::default()
        });
        for t in 0..3 {
            d.update(t, [10.0, 0.0, 70.0], 20.0); // 30 µT vehicle
        }
        assert_eq!(d.state(), BayState::Occupied);
        assert_eq!(d.occupied_level_ut(), [10.0, 0.0, 70.0]);
        // Vehicle gone but a neighbour shifted the field by 8 µT on x: d = 8 (between leave 6 and
        // enter 10), 30.1 µT from the occupied level (> 10): departure after 3 samples.
        assert_eq!(d.update(10, [18.0, 0.0, 40.0], 20.0), None);
        assert_eq!(d.update(11, [18.0, 0.0, 40.0], 20.0), None);
        assert_eq!(
            d.update(12, [18.0, 0.0, 40.0], 20.0),
            Some(DetectorEvent::Departure {
                at_ms: 10,
                field_ut: 8.0
            })
        );
    }

    #[test]
    fn drift_tracking_follows_ewma_by_hand() {
        let cfg = DetectorConfig {
            drift_alpha: 0.5,
            ..DetectorConfig::default()
        };
        let mut d = calibrated(cfg);
        // Baseline z 40, sample z 44: baseline 42, then 43, then 43.5.
        d.update(0, [10.0, 0.0, 44.0], 20.0);
        assert_eq!(d.baseline_ut()[2], 42.0);
        d.update(0, [10.0, 0.0, 44.0], 20.0);
        assert_eq!(d.baseline_ut()[2], 43.0);
        d.update(0, [10.0, 0.0, 44.0], 20.0);
        assert_eq!(d.baseline_ut()[2], 43.5);
    }

    #[test]
    fn temperature_compensation_removes_known_drift() {
        let cfg = DetectorConfig {
            temp_coeff_ut_per_c: [0.0, 0.0, 1.0],
            drift_alpha: 0.0,
            ..Default::default()
        };
        let mut d = calibrated(cfg);
        // +15 °C moves z by +15 µT: compensated, the deviation is 0.
        assert_eq!(d.update(0, [10.0, 0.0, 55.0], 35.0), None);
        assert_eq!(d.deviation_ut(), 0.0);
    }

    #[test]
    fn recalibration_while_occupied_reports_it() {
        let mut d = calibrated(DetectorConfig {
            baseline_samples: 2,
            ..Default::default()
        });
        for t in 0..3 {
            d.update(t, [10.0, 0.0, 80.0], 20.0);
        }
        assert_eq!(d.state(), BayState::Occupied);
        d.recalibrate();
        assert_eq!(d.state(), BayState::Calibrating);
        assert_eq!(d.update(10, [10.0, 0.0, 41.0], 20.0), None);
        assert_eq!(
            d.update(11, [10.0, 0.0, 41.0], 20.0),
            Some(DetectorEvent::Calibrated {
                at_ms: 11,
                was_occupied: true
            })
        );
        assert_eq!(d.state(), BayState::Vacant);
        assert_eq!(d.baseline_ut(), [10.0, 0.0, 41.0]);
    }

    #[test]
    fn non_finite_input_is_ignored() {
        let mut d = calibrated(DetectorConfig::default());
        assert_eq!(d.update(0, [f32::NAN, 0.0, 0.0], 20.0), None);
        assert_eq!(d.state(), BayState::Vacant);
        assert_eq!(d.baseline_ut(), [10.0, 0.0, 40.0]);
    }

    #[test]
    fn bad_config_is_repaired() {
        let d = Detector::new(DetectorConfig {
            enter_ut: 5.0,
            leave_ut: 9.0,
            debounce_samples: 0,
            ..Default::default()
        });
        assert_eq!(d.config().leave_ut, 3.0);
        assert_eq!(d.config().debounce_samples, 1);
    }
}
