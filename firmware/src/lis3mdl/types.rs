//! LIS3MDL configuration and measurement types.

use super::registers::*;
use serde::{Deserialize, Serialize};

/// Full-scale range, CTRL_REG2 FS\[1:0\]; sensitivities from the "Magnetic characteristics" table (GN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullScale {
    /// ±4 gauss (±400 µT), 6842 LSB/gauss.
    #[default]
    G4,
    /// ±8 gauss, 3421 LSB/gauss.
    G8,
    /// ±12 gauss, 2281 LSB/gauss.
    G12,
    /// ±16 gauss, 1711 LSB/gauss.
    G16,
}

impl FullScale {
    /// FS\[1:0\] field value.
    pub const fn bits(self) -> u8 {
        self as u8
    }
    /// From FS\[1:0\].
    pub const fn from_bits(b: u8) -> Self {
        match b & 0b11 {
            0 => FullScale::G4,
            1 => FullScale::G8,
            2 => FullScale::G12,
            _ => FullScale::G16,
        }
    }
    /// Sensitivity, LSB per gauss.
    pub const fn lsb_per_gauss(self) -> f32 {
        match self {
            FullScale::G4 => 6842.0,
            FullScale::G8 => 3421.0,
            FullScale::G12 => 2281.0,
            FullScale::G16 => 1711.0,
        }
    }
    /// µT per LSB.
    pub fn ut_per_lsb(self) -> f32 {
        UT_PER_GAUSS / self.lsb_per_gauss()
    }
}

/// Output data rate, CTRL_REG1 DO\[2:0\] (with FAST_ODR = 0), "CTRL_REG1 (20h)" ODR table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataRate {
    /// 0.625 Hz.
    Hz0_625,
    /// 1.25 Hz.
    Hz1_25,
    /// 2.5 Hz.
    Hz2_5,
    /// 5 Hz.
    #[default]
    Hz5,
    /// 10 Hz.
    Hz10,
    /// 20 Hz.
    Hz20,
    /// 40 Hz.
    Hz40,
    /// 80 Hz.
    Hz80,
}

impl DataRate {
    /// DO\[2:0\] field value.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// X/Y (OM) and Z (OMZ) operating mode: noise versus current ("CTRL_REG1 (20h)", "CTRL_REG4 (23h)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Performance {
    /// Low-power mode (lowest current).
    #[default]
    LowPower,
    /// Medium-performance mode.
    Medium,
    /// High-performance mode.
    High,
    /// Ultra-high-performance mode (lowest noise).
    UltraHigh,
}

impl Performance {
    /// OM\[1:0\] / OMZ\[1:0\] field value.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// System operating mode, CTRL_REG3 MD\[1:0\] ("CTRL_REG3 (22h)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatingMode {
    /// Continuous conversion at the output data rate.
    #[default]
    Continuous,
    /// One conversion, then power-down.
    Single,
    /// Power-down.
    PowerDown,
}

impl OperatingMode {
    /// MD\[1:0\] field value.
    pub const fn bits(self) -> u8 {
        match self {
            OperatingMode::Continuous => 0b00,
            OperatingMode::Single => 0b01,
            OperatingMode::PowerDown => 0b11,
        }
    }
}

/// Sensor configuration written by [`Lis3mdl::init`](super::Lis3mdl::init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Full-scale range (default ±4 gauss: the earth field is about 0.5 gauss).
    pub full_scale: FullScale,
    /// Output data rate (default 5 Hz: faster than the 1 s sampling of the parking app).
    pub data_rate: DataRate,
    /// Noise/current trade-off for all axes (default low power: battery device).
    pub performance: Performance,
    /// Operating mode (default continuous).
    pub mode: OperatingMode,
    /// Enable the temperature sensor (default on: used for drift compensation).
    pub temperature_enabled: bool,
    /// Block data update (default on: no torn high/low bytes).
    pub block_data_update: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            full_scale: FullScale::G4,
            data_rate: DataRate::Hz5,
            performance: Performance::LowPower,
            mode: OperatingMode::Continuous,
            temperature_enabled: true,
            block_data_update: true,
        }
    }
}

impl Config {
    /// CTRL_REG1..CTRL_REG5 values, in address order.
    pub fn ctrl_regs(&self) -> [u8; 5] {
        let temp = if self.temperature_enabled {
            CTRL1_TEMP_EN
        } else {
            0
        };
        let ctrl1 = temp
            | (self.performance.bits() << CTRL1_OM_SHIFT)
            | (self.data_rate.bits() << CTRL1_DO_SHIFT);
        let ctrl2 = self.full_scale.bits() << CTRL2_FS_SHIFT;
        let ctrl3 = self.mode.bits();
        let ctrl4 = self.performance.bits() << CTRL4_OMZ_SHIFT;
        let ctrl5 = if self.block_data_update { CTRL5_BDU } else { 0 };
        [ctrl1, ctrl2, ctrl3, ctrl4, ctrl5]
    }
}

/// STATUS_REG contents ("STATUS_REG (27h)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    /// ZYXDA: a new X, Y, Z sample is available.
    pub const fn xyz_ready(self) -> bool {
        self.0 & STATUS_ZYXDA != 0
    }
    /// ZYXOR: a sample was overwritten before it was read.
    pub const fn xyz_overrun(self) -> bool {
        self.0 & STATUS_ZYXOR != 0
    }
}

/// Raw field output, LSB (two's complement, as read from OUT_X/Y/Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawField {
    /// X axis, LSB.
    pub x: i16,
    /// Y axis, LSB.
    pub y: i16,
    /// Z axis, LSB.
    pub z: i16,
}

/// Field in µT.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FieldUt {
    /// X axis, µT.
    pub x_ut: f32,
    /// Y axis, µT.
    pub y_ut: f32,
    /// Z axis, µT.
    pub z_ut: f32,
}

impl FieldUt {
    /// Scales a raw sample with the full scale's sensitivity.
    pub fn from_raw(raw: RawField, fs: FullScale) -> Self {
        let k = fs.ut_per_lsb();
        FieldUt {
            x_ut: f32::from(raw.x) * k,
            y_ut: f32::from(raw.y) * k,
            z_ut: f32::from(raw.z) * k,
        }
    }
    /// As an array `[x, y, z]`, µT.
    pub const fn as_array(self) -> [f32; 3] {
        [self.x_ut, self.y_ut, self.z_ut]
    }
    /// Euclidean magnitude, µT.
    pub fn magnitude_ut(self) -> f32 {
        libm::sqrtf(self.x_ut * self.x_ut + self.y_ut * self.y_ut + self.z_ut * self.z_ut)
    }
}
