//! Analog Devices ADE7953 single-phase energy metering IC over SPI (embedded-hal 1.0 [`SpiDevice`]).
//!
//! Data sheet: ADE7953, Rev. C. Registers in [`registers`] (each cites its table), configuration,
//! calibration and readings in [`types`].
//!
//! Start-up ([`Ade7953::init`]) follows the data sheet: unlock (0x0FE ← 0xAD) then write 0x120 ← 0x0030
//! for the specified performance, write LCYCMODE (energy read-with-reset), the PGA gains and CONFIG,
//! read CONFIG back to prove the link, and read the silicon VERSION. Measurements are read from the
//! 32-bit register copies; energy register AENERGYA is read-with-reset and accumulated here (import and
//! export separately) so no chip-side overflow is lost as long as it is read often enough.
//!
//! SPI framing ("SPI Interface"): 16-bit address MSB first, a command byte (0x80 read, 0x00 write), then
//! the register's 1–4 data bytes MSB first, all inside one chip-select assertion.

pub mod registers;
pub mod types;

use embedded_hal::spi::{Operation, SpiDevice};
use registers as reg;
pub use types::{Calibration, Config, Measurement};

/// ADE7953 driver error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The SPI device reported an error.
    #[error("spi error: {0:?}")]
    Bus(E),
    /// A register did not read back what was written (no chip, wrong wiring, or a locked interface).
    #[error("register {register:#05x} read back {read:#x}, wrote {wrote:#x}")]
    Verify {
        /// Register address.
        register: u16,
        /// Value written.
        wrote: u32,
        /// Value read back.
        read: u32,
    },
}

/// ADE7953 driver, owning its SPI device.
#[derive(Debug)]
pub struct Ade7953<SPI> {
    spi: SPI,
    cal: Calibration,
    import_lsb: i64,
    export_lsb: i64,
}

impl<SPI: SpiDevice> Ade7953<SPI> {
    /// Takes the SPI device; no bus traffic.
    pub fn new(spi: SPI, cal: Calibration) -> Self {
        Ade7953 {
            spi,
            cal,
            import_lsb: 0,
            export_lsb: 0,
        }
    }

    /// Gives the SPI device back.
    pub fn release(self) -> SPI {
        self.spi
    }

    /// The SPI device, borrowed (e.g. to change a simulated part's physical inputs between samples).
    pub fn bus_mut(&mut self) -> &mut SPI {
        &mut self.spi
    }

    /// The calibration in use.
    pub fn calibration(&self) -> &Calibration {
        &self.cal
    }

    /// Start-up sequence (see the module docs); returns the silicon version.
    ///
    /// # Errors
    /// [`Error::Bus`]; [`Error::Verify`] when CONFIG does not read back.
    pub fn init(&mut self, config: &Config) -> Result<u8, Error<SPI::Error>> {
        self.write8(reg::UNLOCK, reg::UNLOCK_VALUE)?;
        self.write16(reg::OPTIMUM, reg::OPTIMUM_VALUE)?;
        self.write8(reg::LCYCMODE, reg::LCYCMODE_RSTREAD)?;
        self.write8(reg::PGA_V, config.pga_v & 0b111)?;
        self.write8(reg::PGA_IA, config.pga_ia & 0b111)?;
        let word = config.config_word();
        self.write16(reg::CONFIG, word)?;
        let back = self.read16(reg::CONFIG)?;
        if back != word {
            return Err(Error::Verify {
                register: reg::CONFIG,
                wrote: word.into(),
                read: back.into(),
            });
        }
        self.version()
    }

    /// Reads the silicon VERSION register (0x702).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn version(&mut self) -> Result<u8, Error<SPI::Error>> {
        Ok(self.read_reg(reg::VERSION)? as u8)
    }

    /// RMS voltage, V (VRMS × V/LSB).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn v_rms_v(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(self.read_reg(reg::VRMS_32)? as f32 * self.cal.v_per_lsb)
    }

    /// RMS current, channel A, A (IRMSA × A/LSB).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn i_rms_a(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(self.read_reg(reg::IRMSA_32)? as f32 * self.cal.a_per_lsb)
    }

    /// Active power, channel A, W (AWATT × W/LSB; negative = export).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn active_power_w(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(self.read_reg(reg::AWATT_32)? as i32 as f32 * self.cal.w_per_lsb)
    }

    /// Reactive power, channel A, var (AVAR × var/LSB).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn reactive_power_var(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(self.read_reg(reg::AVAR_32)? as i32 as f32 * self.cal.var_per_lsb)
    }

    /// Power factor, channel A (PFA × 2^-15).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn power_factor(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(f32::from(self.read_reg(reg::PFA)? as u16 as i16) / 32_768.0)
    }

    /// Raw PERIOD register (counts of the 223.75 kHz clock, minus one).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn period_raw(&mut self) -> Result<u16, Error<SPI::Error>> {
        Ok(self.read_reg(reg::PERIOD)? as u16)
    }

    /// Line frequency, Hz: 223 750 / (PERIOD + 1); 0 when PERIOD is 0xFFFF (no zero crossings).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn line_frequency_hz(&mut self) -> Result<f32, Error<SPI::Error>> {
        Ok(period_to_hz(self.period_raw()?))
    }

    /// Reads AENERGYA (read-with-reset) and adds it to the import (positive) or export (negative)
    /// total. Returns the energy read, Wh (signed).
    ///
    /// # Errors
    /// [`Error::Bus`] (the totals are unchanged then).
    pub fn accumulate_energy(&mut self) -> Result<f64, Error<SPI::Error>> {
        let lsb = i64::from(self.read_reg(reg::AENERGYA_32)? as i32);
        if lsb >= 0 {
            self.import_lsb = self.import_lsb.saturating_add(lsb);
        } else {
            self.export_lsb = self.export_lsb.saturating_sub(lsb);
        }
        Ok(lsb as f64 * self.cal.wh_per_lsb)
    }

    /// Imported active energy accumulated since start-up, kWh (monotonic).
    pub fn import_energy_kwh(&self) -> f64 {
        self.import_lsb as f64 * self.cal.wh_per_lsb / 1000.0
    }

    /// Exported active energy accumulated since start-up, kWh (monotonic).
    pub fn export_energy_kwh(&self) -> f64 {
        self.export_lsb as f64 * self.cal.wh_per_lsb / 1000.0
    }

    /// Reads VRMS, IRMSA, AWATT, AVAR, PFA and PERIOD, scaled.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn measure(&mut self) -> Result<Measurement, Error<SPI::Error>> {
        Ok(Measurement {
            v_rms_v: self.v_rms_v()?,
            i_rms_a: self.i_rms_a()?,
            p_w: self.active_power_w()?,
            q_var: self.reactive_power_var()?,
            pf: self.power_factor()?,
            freq_hz: self.line_frequency_hz()?,
        })
    }

    /// Reads a register of any width (from its address), zero-extended.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_reg(&mut self, addr: u16) -> Result<u32, Error<SPI::Error>> {
        let n = reg::width(addr);
        let [hi, lo] = addr.to_be_bytes();
        let mut buf = [0u8; 4];
        self.spi
            .transaction(&mut [
                Operation::Write(&[hi, lo, reg::CMD_READ]),
                Operation::Read(&mut buf[..n]),
            ])
            .map_err(Error::Bus)?;
        Ok(buf[..n]
            .iter()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    }

    /// Writes a register of any width (from its address); `value` is truncated to the width.
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn write_reg(&mut self, addr: u16, value: u32) -> Result<(), Error<SPI::Error>> {
        let n = reg::width(addr);
        let [hi, lo] = addr.to_be_bytes();
        let v = value.to_be_bytes();
        let mut buf = [hi, lo, reg::CMD_WRITE, 0, 0, 0, 0];
        buf[3..3 + n].copy_from_slice(&v[4 - n..]);
        self.spi.write(&buf[..3 + n]).map_err(Error::Bus)
    }

    fn write8(&mut self, addr: u16, v: u8) -> Result<(), Error<SPI::Error>> {
        self.write_reg(addr, v.into())
    }

    fn write16(&mut self, addr: u16, v: u16) -> Result<(), Error<SPI::Error>> {
        self.write_reg(addr, v.into())
    }

    fn read16(&mut self, addr: u16) -> Result<u16, Error<SPI::Error>> {
        Ok(self.read_reg(addr)? as u16)
    }
}

/// Line frequency from PERIOD: 223 750 / (PERIOD + 1) Hz; 0 for 0xFFFF (no zero crossings).
pub fn period_to_hz(period: u16) -> f32 {
    if period == u16::MAX {
        0.0
    } else {
        reg::PERIOD_CLOCK_HZ / (f32::from(period) + 1.0)
    }
}
