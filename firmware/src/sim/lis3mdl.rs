//! Simulated LIS3MDL on I2C.

use crate::lis3mdl::registers::{self as r, addr};
use crate::lis3mdl::types::FullScale;
use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

/// A simulated LIS3MDL (DocID024204 register map) answering at one 7-bit I2C address.
///
/// - WHO_AM_I reads 0x3D; CTRL_REG1..5 are read/write with their reset values.
/// - OUT_X/Y/Z are computed at read time from [`set_field_ut`](Self::set_field_ut) with the full scale
///   in CTRL_REG2 (saturating at ±32 767 LSB); TEMP_OUT from [`set_temperature_c`](Self::set_temperature_c)
///   (8 LSB/°C, 0 = 25 °C).
/// - STATUS_REG reports ZYXDA (new data) in continuous mode, and once after a single-conversion
///   request (MD = 01), after which MD returns to power-down as on the part; nothing in power-down.
/// - Sub-address bit 7 selects auto-increment.
/// - [`set_fail`](Self::set_fail) makes every transaction fail with [`ErrorKind::Bus`]; another
///   address gets [`ErrorKind::NoAcknowledge`].
#[derive(Debug, Clone)]
pub struct SimLis3mdl {
    address: u8,
    regs: [u8; 0x40],
    field_ut: [f32; 3],
    temp_c: f32,
    fail: bool,
    single_pending: bool,
    transactions: u32,
}

impl Default for SimLis3mdl {
    fn default() -> Self {
        Self::new()
    }
}

impl SimLis3mdl {
    /// A part at address 0x1C in its reset state, field 0, 25 °C.
    pub fn new() -> Self {
        let mut regs = [0u8; 0x40];
        regs[usize::from(addr::WHO_AM_I)] = r::WHO_AM_I_VALUE;
        regs[usize::from(addr::CTRL_REG1)] = 0x10;
        regs[usize::from(addr::CTRL_REG3)] = 0x03;
        SimLis3mdl {
            address: r::I2C_ADDR_SA1_LOW,
            regs,
            field_ut: [0.0; 3],
            temp_c: 25.0,
            fail: false,
            single_pending: false,
            transactions: 0,
        }
    }

    /// The same part at another 7-bit address (e.g. 0x1E).
    pub fn with_address(mut self, address: u8) -> Self {
        self.address = address;
        self
    }

    /// Sets the field the part measures, µT per axis.
    pub fn set_field_ut(&mut self, x_ut: f32, y_ut: f32, z_ut: f32) {
        self.field_ut = [x_ut, y_ut, z_ut];
    }

    /// Sets the die temperature, °C.
    pub fn set_temperature_c(&mut self, t_c: f32) {
        self.temp_c = t_c;
    }

    /// When true, every transaction fails with a bus error.
    pub fn set_fail(&mut self, fail: bool) {
        self.fail = fail;
    }

    /// Register contents (as last written or reset), for tests.
    pub fn register(&self, reg: u8) -> u8 {
        self.regs.get(usize::from(reg)).copied().unwrap_or(0)
    }

    /// Transactions served (including failed ones).
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    fn full_scale(&self) -> FullScale {
        FullScale::from_bits(self.regs[usize::from(addr::CTRL_REG2)] >> r::CTRL2_FS_SHIFT)
    }

    fn out_raw(&self, axis: usize) -> i16 {
        let lsb = self.field_ut[axis] / r::UT_PER_GAUSS * self.full_scale().lsb_per_gauss();
        round_sat(lsb)
    }

    fn read(&mut self, reg: u8) -> u8 {
        let md = self.regs[usize::from(addr::CTRL_REG3)] & r::CTRL3_MD_MASK;
        match reg {
            addr::STATUS_REG => {
                if md == 0b00 || self.single_pending {
                    0x0F
                } else {
                    0x00
                }
            }
            0x28..=0x2D => {
                let axis = usize::from((reg - 0x28) / 2);
                let b = self.out_raw(axis).to_le_bytes();
                if reg == 0x2D {
                    // Single conversion consumed: back to power-down.
                    self.finish_single();
                }
                b[usize::from((reg - 0x28) % 2)]
            }
            0x2E | 0x2F => {
                let raw = round_sat((self.temp_c - r::TEMP_OFFSET_C) * r::TEMP_LSB_PER_C);
                raw.to_le_bytes()[usize::from(reg - 0x2E)]
            }
            _ => self.register(reg),
        }
    }

    fn finish_single(&mut self) {
        if self.single_pending {
            self.single_pending = false;
            let i = usize::from(addr::CTRL_REG3);
            self.regs[i] |= 0b11;
        }
    }

    fn write(&mut self, reg: u8, v: u8) {
        let writable = matches!(reg, 0x05..=0x0A | 0x20..=0x24 | 0x30 | 0x32 | 0x33);
        if !writable {
            return;
        }
        if reg == addr::CTRL_REG2 && v & r::CTRL2_SOFT_RST != 0 {
            *self = SimLis3mdl {
                field_ut: self.field_ut,
                temp_c: self.temp_c,
                address: self.address,
                ..Self::new()
            };
            return;
        }
        self.regs[usize::from(reg)] = v;
        if reg == addr::CTRL_REG3 {
            self.single_pending = v & r::CTRL3_MD_MASK == 0b01;
        }
    }
}

fn round_sat(x: f32) -> i16 {
    let y = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    if !y.is_finite() {
        return 0;
    }
    y.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

impl ErrorType for SimLis3mdl {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for SimLis3mdl {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.transactions = self.transactions.wrapping_add(1);
        if self.fail {
            return Err(ErrorKind::Bus);
        }
        if address != self.address {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        let mut ptr: Option<(u8, bool)> = None;
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    let Some((&sub, data)) = bytes.split_first() else {
                        continue;
                    };
                    let inc = sub & r::AUTO_INCREMENT != 0;
                    let mut reg = sub & 0x7F;
                    for &v in data {
                        self.write(reg, v);
                        if inc {
                            reg = reg.wrapping_add(1) & 0x3F;
                        }
                    }
                    ptr = Some((reg, inc));
                }
                Operation::Read(buf) => {
                    let Some((mut reg, inc)) = ptr else {
                        return Err(ErrorKind::Other);
                    };
                    for b in buf.iter_mut() {
                        *b = self.read(reg);
                        if inc {
                            reg = reg.wrapping_add(1) & 0x3F;
                        }
                    }
                    ptr = Some((reg, inc));
                }
            }
        }
        Ok(())
    }
}
