//! ST LIS3MDL 3-axis magnetometer over I2C (embedded-hal 1.0 [`I2c`]).
//!
//! Datasheet: ST LIS3MDL, DocID024204. Registers in [`registers`] (each cites its "Register
//! description" subsection), configuration and sample types in [`types`].
//!
//! The driver owns the bus: [`Lis3mdl::new`] takes it by value without touching it, [`Lis3mdl::init`]
//! checks the identity (WHO_AM_I = 0x3D) and writes the configuration, [`Lis3mdl::release`] gives the
//! bus back. Every bus error comes back as [`Error::Bus`]; nothing panics.

pub mod registers;
pub mod types;

use embedded_hal::i2c::I2c;
use registers::{AUTO_INCREMENT, TEMP_LSB_PER_C, TEMP_OFFSET_C, WHO_AM_I_VALUE, addr};
pub use types::{
    Config, DataRate, FieldUt, FullScale, OperatingMode, Performance, RawField, Status,
};

/// LIS3MDL driver error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The I2C bus reported an error.
    #[error("i2c bus error: {0:?}")]
    Bus(E),
    /// WHO_AM_I did not read 0x3D: another part, or no part, at this address.
    #[error("wrong WHO_AM_I: {0:#04x} (expected 0x3d)")]
    WrongIdentity(u8),
}

/// LIS3MDL driver, owning its I2C bus.
#[derive(Debug)]
pub struct Lis3mdl<I2C> {
    i2c: I2C,
    address: u8,
    full_scale: FullScale,
}

impl<I2C: I2c> Lis3mdl<I2C> {
    /// Takes the bus; no bus traffic. `address` is the 7-bit I2C address
    /// ([`registers::I2C_ADDR_SA1_LOW`] = 0x1C or [`registers::I2C_ADDR_SA1_HIGH`] = 0x1E).
    pub fn new(i2c: I2C, address: u8) -> Self {
        Lis3mdl {
            i2c,
            address,
            full_scale: FullScale::G4,
        }
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }

    /// The bus, borrowed (e.g. to change a simulated part's physical inputs between samples). Bus
    /// transactions are whole, so using the bus between driver calls cannot corrupt the driver's state.
    pub fn bus_mut(&mut self) -> &mut I2C {
        &mut self.i2c
    }

    /// Checks WHO_AM_I and writes CTRL_REG1..CTRL_REG5 in one auto-increment burst.
    ///
    /// # Errors
    /// [`Error::WrongIdentity`] when WHO_AM_I is not 0x3D (nothing is written then); [`Error::Bus`].
    pub fn init(&mut self, config: &Config) -> Result<(), Error<I2C::Error>> {
        let id = self.who_am_i()?;
        if id != WHO_AM_I_VALUE {
            return Err(Error::WrongIdentity(id));
        }
        self.configure(config)
    }

    /// Reads WHO_AM_I ("WHO_AM_I (0Fh)").
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn who_am_i(&mut self) -> Result<u8, Error<I2C::Error>> {
        self.read_reg(addr::WHO_AM_I)
    }

    /// Writes CTRL_REG1..CTRL_REG5 from `config` (one burst starting at 20h).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn configure(&mut self, config: &Config) -> Result<(), Error<I2C::Error>> {
        let r = config.ctrl_regs();
        let buf = [
            addr::CTRL_REG1 | AUTO_INCREMENT,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
        ];
        self.i2c.write(self.address, &buf).map_err(Error::Bus)?;
        self.full_scale = config.full_scale;
        Ok(())
    }

    /// Sets the operating mode (CTRL_REG3 MD\[1:0\]); [`OperatingMode::Single`] starts one conversion.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn set_mode(&mut self, mode: OperatingMode) -> Result<(), Error<I2C::Error>> {
        let v = self.read_reg(addr::CTRL_REG3)?;
        let v = (v & !registers::CTRL3_MD_MASK) | mode.bits();
        self.i2c
            .write(self.address, &[addr::CTRL_REG3, v])
            .map_err(Error::Bus)
    }

    /// The full scale last written by [`configure`](Self::configure) (±4 gauss before).
    pub fn full_scale(&self) -> FullScale {
        self.full_scale
    }

    /// Reads STATUS_REG.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn status(&mut self) -> Result<Status, Error<I2C::Error>> {
        self.read_reg(addr::STATUS_REG).map(Status)
    }

    /// True when a new X/Y/Z sample is ready (STATUS_REG ZYXDA).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn data_ready(&mut self) -> Result<bool, Error<I2C::Error>> {
        Ok(self.status()?.xyz_ready())
    }

    /// Reads OUT_X_L..OUT_Z_H in one 6-byte burst.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_raw(&mut self) -> Result<RawField, Error<I2C::Error>> {
        let mut b = [0u8; 6];
        self.i2c
            .write_read(self.address, &[addr::OUT_X_L | AUTO_INCREMENT], &mut b)
            .map_err(Error::Bus)?;
        Ok(RawField {
            x: i16::from_le_bytes([b[0], b[1]]),
            y: i16::from_le_bytes([b[2], b[3]]),
            z: i16::from_le_bytes([b[4], b[5]]),
        })
    }

    /// Reads the field scaled to µT with the configured full scale.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_field_ut(&mut self) -> Result<FieldUt, Error<I2C::Error>> {
        Ok(FieldUt::from_raw(self.read_raw()?, self.full_scale))
    }

    /// Reads TEMP_OUT (raw, LSB; 8 LSB/°C, 0 = 25 °C).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_temperature_raw(&mut self) -> Result<i16, Error<I2C::Error>> {
        let mut b = [0u8; 2];
        self.i2c
            .write_read(self.address, &[addr::TEMP_OUT_L | AUTO_INCREMENT], &mut b)
            .map_err(Error::Bus)?;
        Ok(i16::from_le_bytes(b))
    }

    /// Reads the die temperature, °C (relative accuracy only; good for drift compensation).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_temperature_c(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(TEMP_OFFSET_C + f32::from(self.read_temperature_raw()?) / TEMP_LSB_PER_C)
    }

    fn read_reg(&mut self, reg: u8) -> Result<u8, Error<I2C::Error>> {
        let mut b = [0u8; 1];
        self.i2c
            .write_read(self.address, &[reg], &mut b)
            .map_err(Error::Bus)?;
        Ok(b[0])
    }
}
