//! LIS3MDL register map.
//!
//! Source: ST LIS3MDL datasheet, DocID024204 (Rev 4, May 2015 and later revisions), sections
//! "Register mapping" (address table) and "Register description" (one subsection per register, named
//! below exactly as the datasheet heads them, e.g. "CTRL_REG1 (20h)"). Sensitivities are from the
//! "Magnetic characteristics" table; the temperature scale (8 LSB/°C, 0 = 25 °C) is from the
//! temperature-sensor row of the electrical characteristics and ST application note AN4602 §"Temperature
//! sensor".

/// Register addresses ("Register mapping").
pub mod addr {
    /// "WHO_AM_I (0Fh)": device identification, reads [`WHO_AM_I_VALUE`](super::WHO_AM_I_VALUE).
    pub const WHO_AM_I: u8 = 0x0F;
    /// "CTRL_REG1 (20h)": TEMP_EN, OM\[1:0\] (X/Y operating mode), DO\[2:0\] (output data rate),
    /// FAST_ODR, ST (self-test).
    pub const CTRL_REG1: u8 = 0x20;
    /// "CTRL_REG2 (21h)": FS\[1:0\] (full scale), REBOOT, SOFT_RST.
    pub const CTRL_REG2: u8 = 0x21;
    /// "CTRL_REG3 (22h)": LP (low power), SIM (SPI mode), MD\[1:0\] (operating mode).
    pub const CTRL_REG3: u8 = 0x22;
    /// "CTRL_REG4 (23h)": OMZ\[1:0\] (Z-axis operating mode), BLE (endianness).
    pub const CTRL_REG4: u8 = 0x23;
    /// "CTRL_REG5 (24h)": FAST_READ, BDU (block data update).
    pub const CTRL_REG5: u8 = 0x24;
    /// "STATUS_REG (27h)": ZYXOR, ZOR, YOR, XOR, ZYXDA, ZDA, YDA, XDA.
    pub const STATUS_REG: u8 = 0x27;
    /// "OUT_X_L (28h), OUT_X_H (29h)": X-axis output, 16-bit two's complement, little-endian.
    pub const OUT_X_L: u8 = 0x28;
    /// "OUT_Y_L (2Ah), OUT_Y_H (2Bh)".
    pub const OUT_Y_L: u8 = 0x2A;
    /// "OUT_Z_L (2Ch), OUT_Z_H (2Dh)".
    pub const OUT_Z_L: u8 = 0x2C;
    /// "TEMP_OUT_L (2Eh), TEMP_OUT_H (2Fh)": temperature, 16-bit two's complement, 8 LSB/°C, 0 = 25 °C.
    /// Read separately from the field outputs: a burst from 28h wraps around the output block.
    pub const TEMP_OUT_L: u8 = 0x2E;
    /// "INT_CFG (30h)": interrupt configuration (not used by the firmware).
    pub const INT_CFG: u8 = 0x30;
}

/// Value of WHO_AM_I ("WHO_AM_I (0Fh)": `0011 1101`).
pub const WHO_AM_I_VALUE: u8 = 0x3D;

/// I2C sub-address bit 7: auto-increment the register address on multi-byte access ("I2C operation":
/// "to read/write multiple bytes, the MSB of the SUB field must be 1").
pub const AUTO_INCREMENT: u8 = 0x80;

/// I2C 7-bit address with SDO/SA1 tied low ("I2C operation", slave address table).
pub const I2C_ADDR_SA1_LOW: u8 = 0x1C;
/// I2C 7-bit address with SDO/SA1 tied high.
pub const I2C_ADDR_SA1_HIGH: u8 = 0x1E;

/// CTRL_REG1 bit 7: enable the temperature sensor.
pub const CTRL1_TEMP_EN: u8 = 1 << 7;
/// CTRL_REG1 OM\[1:0\] shift (bits 6:5).
pub const CTRL1_OM_SHIFT: u8 = 5;
/// CTRL_REG1 DO\[2:0\] shift (bits 4:2).
pub const CTRL1_DO_SHIFT: u8 = 2;
/// CTRL_REG2 FS\[1:0\] shift (bits 6:5).
pub const CTRL2_FS_SHIFT: u8 = 5;
/// CTRL_REG2 bit 2: soft reset of configuration and user registers.
pub const CTRL2_SOFT_RST: u8 = 1 << 2;
/// CTRL_REG3 MD\[1:0\] mask (bits 1:0).
pub const CTRL3_MD_MASK: u8 = 0b11;
/// CTRL_REG4 OMZ\[1:0\] shift (bits 3:2).
pub const CTRL4_OMZ_SHIFT: u8 = 2;
/// CTRL_REG5 bit 6: block data update (outputs not updated until both bytes were read).
pub const CTRL5_BDU: u8 = 1 << 6;
/// STATUS_REG bit 3: new X, Y and Z data available.
pub const STATUS_ZYXDA: u8 = 1 << 3;
/// STATUS_REG bit 7: X, Y and Z data overrun.
pub const STATUS_ZYXOR: u8 = 1 << 7;

/// Temperature sensitivity, LSB per °C.
pub const TEMP_LSB_PER_C: f32 = 8.0;
/// Temperature at output 0, °C.
pub const TEMP_OFFSET_C: f32 = 25.0;
/// µT per gauss.
pub const UT_PER_GAUSS: f32 = 100.0;
