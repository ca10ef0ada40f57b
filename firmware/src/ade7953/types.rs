//! ADE7953 configuration, calibration and measurement types.

use super::registers::{CONFIG_COMM_LOCK, CONFIG_HPFEN};
use serde::{Deserialize, Serialize};

/// Calibration constants: engineering units per register LSB. They depend on the board's voltage
/// divider and current shunt/CT, so they are configuration, found by calibrating against a reference
/// meter. Defaults are the values used by common ADE7953 boards (26 000 LSB/V, 100 000 LSB/A,
/// 154 LSB/W) and 1 mWh per energy LSB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calibration {
    /// Volts per VRMS LSB.
    pub v_per_lsb: f32,
    /// Amperes per IRMSA LSB.
    pub a_per_lsb: f32,
    /// Watts per AWATT LSB.
    pub w_per_lsb: f32,
    /// Vars per AVAR LSB.
    pub var_per_lsb: f32,
    /// Watt-hours per AENERGYA LSB.
    pub wh_per_lsb: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            v_per_lsb: 1.0 / 26_000.0,
            a_per_lsb: 1.0 / 100_000.0,
            w_per_lsb: 1.0 / 154.0,
            var_per_lsb: 1.0 / 154.0,
            wh_per_lsb: 0.001,
        }
    }
}

/// Chip configuration written by [`Ade7953::init`](super::Ade7953::init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Voltage channel PGA gain code (PGA_V bits \[2:0\]: 0 = ×1 … 5 = ×22), default 0.
    pub pga_v: u8,
    /// Current channel A PGA gain code (PGA_IA), default 0.
    pub pga_ia: u8,
    /// High-pass filter on (CONFIG.HPFEN), default on.
    pub hpf_enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pga_v: 0,
            pga_ia: 0,
            hpf_enabled: true,
        }
    }
}

impl Config {
    /// CONFIG register value (COMM_LOCK kept set as at reset).
    pub fn config_word(&self) -> u16 {
        CONFIG_COMM_LOCK | if self.hpf_enabled { CONFIG_HPFEN } else { 0 }
    }
}

/// One set of scaled readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measurement {
    /// RMS voltage, V.
    pub v_rms_v: f32,
    /// RMS current (channel A), A.
    pub i_rms_a: f32,
    /// Active power (channel A), W; negative = export.
    pub p_w: f32,
    /// Reactive power (channel A), var.
    pub q_var: f32,
    /// Power factor (channel A), -1..=1.
    pub pf: f32,
    /// Line frequency, Hz (0 when PERIOD reads 0xFFFF: no zero crossings).
    pub freq_hz: f32,
}
