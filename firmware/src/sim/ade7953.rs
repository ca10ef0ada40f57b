//! Simulated ADE7953 on SPI.

use crate::ade7953::registers as reg;
use crate::ade7953::types::Calibration;
use embedded_hal::spi::{ErrorKind, ErrorType, Operation, SpiDevice};

/// A simulated ADE7953 (Rev. C register map) behind an [`SpiDevice`].
///
/// Physical values are set with [`set`](Self::set) and turned into registers with the same
/// [`Calibration`] the firmware is configured with:
/// VRMS = V / (V/LSB), IRMSA = A / (A/LSB), AWATT = W / (W/LSB), AVAR = var / (var/LSB),
/// PFA = P/|S| · 2^15 (1 when S = 0), PERIOD = round(223 750 / f) − 1 (0xFFFF when f = 0).
///
/// **Energy**: [`advance_ms`](Self::advance_ms) integrates the active power set last over the elapsed
/// time into AENERGYA (in Wh/LSB units, fractions carried); reading AENERGYA returns the whole LSBs and,
/// with LCYCMODE.RSTREAD set (the reset value), clears them, as on the part. Time does not pass by
/// itself: the fleet simulator calls `advance_ms` as its clock moves.
///
/// The data sheet's start-up write (0x120 ← 0x30) is accepted only right after the unlock write
/// (0x0FE ← 0xAD); [`optimum_setting`](Self::optimum_setting) shows what 0x120 holds. Other writable
/// registers are stored and read back; unknown addresses read 0. [`set_fail`](Self::set_fail) makes
/// every transaction fail with [`ErrorKind::Other`].
#[derive(Debug, Clone)]
pub struct SimAde7953 {
    cal: Calibration,
    v_rms_v: f32,
    i_rms_a: f32,
    p_w: f32,
    q_var: f32,
    freq_hz: f32,
    energy_lsb: f64,
    regs8: [u8; 16],
    config: u16,
    optimum: u16,
    unlocked: bool,
    fail: bool,
    transactions: u32,
    rejected_writes: u32,
}

impl SimAde7953 {
    /// Silicon version the simulation reports (the real value depends on the die revision).
    pub const VERSION: u8 = 0x01;

    /// A part in its reset state with the given calibration; 0 V, 0 A, 50 Hz.
    pub fn new(cal: Calibration) -> Self {
        let mut regs8 = [0u8; 16];
        regs8[usize::from(reg::LCYCMODE)] = reg::LCYCMODE_RSTREAD;
        SimAde7953 {
            cal,
            v_rms_v: 0.0,
            i_rms_a: 0.0,
            p_w: 0.0,
            q_var: 0.0,
            freq_hz: 50.0,
            energy_lsb: 0.0,
            regs8,
            config: 0x8004,
            optimum: 0,
            unlocked: false,
            fail: false,
            transactions: 0,
            rejected_writes: 0,
        }
    }

    /// Sets the measured quantities: RMS voltage (V), RMS current (A), active power (kW), reactive
    /// power (kvar) and line frequency (Hz).
    pub fn set(&mut self, v_rms_v: f32, i_rms_a: f32, p_kw: f32, q_kvar: f32, freq_hz: f32) {
        self.v_rms_v = v_rms_v;
        self.i_rms_a = i_rms_a;
        self.p_w = p_kw * 1000.0;
        self.q_var = q_kvar * 1000.0;
        self.freq_hz = freq_hz;
    }

    /// Lets `dt_ms` pass: integrates the active power into the energy register.
    pub fn advance_ms(&mut self, dt_ms: u64) {
        let wh = f64::from(self.p_w) * dt_ms as f64 / 3_600_000.0;
        if self.cal.wh_per_lsb > 0.0 {
            self.energy_lsb += wh / self.cal.wh_per_lsb;
        }
    }

    /// When true, every transaction fails.
    pub fn set_fail(&mut self, fail: bool) {
        self.fail = fail;
    }

    /// Contents of register 0x120 (0x0030 after a correct start-up).
    pub fn optimum_setting(&self) -> u16 {
        self.optimum
    }

    /// CONFIG register contents.
    pub fn config(&self) -> u16 {
        self.config
    }

    /// Writes refused (0x120 without unlock, read-only or unknown registers).
    pub fn rejected_writes(&self) -> u32 {
        self.rejected_writes
    }

    /// Transactions served.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    fn read(&mut self, addr: u16) -> u32 {
        let base = if (0x300..=0x3FF).contains(&addr) {
            addr - 0x100
        } else {
            addr
        };
        let width_mask = |x: i64| -> u32 {
            if reg::width(addr) == 3 {
                (x as u32) & 0x00FF_FFFF
            } else {
                x as u32
            }
        };
        match base {
            0x000..=0x00F => u32::from(self.regs8[usize::from(base)]),
            reg::VERSION => u32::from(Self::VERSION),
            reg::CONFIG => u32::from(self.config),
            reg::OPTIMUM => u32::from(self.optimum),
            reg::PFA => {
                let s = libm::sqrtf(self.p_w * self.p_w + self.q_var * self.q_var);
                let pf = if s > 0.0 { self.p_w / s } else { 1.0 };
                u32::from(round_i(pf * 32_768.0).clamp(-32_768, 32_767) as i16 as u16)
            }
            reg::PERIOD => {
                if self.freq_hz > 0.0 {
                    (round_i(reg::PERIOD_CLOCK_HZ / self.freq_hz) - 1).clamp(0, 0xFFFF) as u32
                } else {
                    0xFFFF
                }
            }
            0x21C => width_mask(round_i(self.v_rms_v / self.cal.v_per_lsb).clamp(0, 0xFF_FFFF)),
            0x21A => width_mask(round_i(self.i_rms_a / self.cal.a_per_lsb).clamp(0, 0xFF_FFFF)),
            0x212 => {
                width_mask(round_i(self.p_w / self.cal.w_per_lsb).clamp(-0x80_0000, 0x7F_FFFF))
            }
            0x214 => {
                width_mask(round_i(self.q_var / self.cal.var_per_lsb).clamp(-0x80_0000, 0x7F_FFFF))
            }
            0x21E => {
                let whole = libm::trunc(self.energy_lsb);
                if self.regs8[usize::from(reg::LCYCMODE)] & reg::LCYCMODE_RSTREAD != 0 {
                    self.energy_lsb -= whole;
                }
                width_mask((whole as i64).clamp(-0x80_0000, 0x7F_FFFF))
            }
            _ => 0,
        }
    }

    fn write(&mut self, addr: u16, value: u32) {
        let was_unlocked = core::mem::replace(&mut self.unlocked, false);
        match addr {
            reg::UNLOCK => self.unlocked = value as u8 == reg::UNLOCK_VALUE,
            0x000..=0x00F => self.regs8[usize::from(addr)] = value as u8,
            reg::CONFIG => self.config = value as u16,
            reg::OPTIMUM if was_unlocked => self.optimum = value as u16,
            _ => self.rejected_writes = self.rejected_writes.saturating_add(1),
        }
    }
}

fn round_i(x: f32) -> i64 {
    if !x.is_finite() {
        return 0;
    }
    if x >= 0.0 {
        (x + 0.5) as i64
    } else {
        (x - 0.5) as i64
    }
}

impl ErrorType for SimAde7953 {
    type Error = ErrorKind;
}

impl SpiDevice<u8> for SimAde7953 {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        self.transactions = self.transactions.wrapping_add(1);
        if self.fail {
            return Err(ErrorKind::Other);
        }
        // Bytes clocked in so far (address, command, data): at most 3 + 4 are meaningful.
        let mut cmd = [0u8; 7];
        let mut n_in = 0usize;
        let mut read_pos = 0usize;
        let mut read_val: Option<(u32, usize)> = None;
        for op in operations.iter_mut() {
            match op {
                Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        if n_in < cmd.len() {
                            cmd[n_in] = b;
                        }
                        n_in += 1;
                    }
                }
                Operation::Transfer(rd, wr) => {
                    for &b in wr.iter() {
                        if n_in < cmd.len() {
                            cmd[n_in] = b;
                        }
                        n_in += 1;
                    }
                    rd.fill(0);
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        if n_in < cmd.len() {
                            cmd[n_in] = *b;
                        }
                        n_in += 1;
                        *b = 0;
                    }
                }
                Operation::Read(buf) => {
                    if n_in < 3 || cmd[2] != reg::CMD_READ {
                        buf.fill(0);
                        continue;
                    }
                    let addr = u16::from_be_bytes([cmd[0], cmd[1]]);
                    let (val, width) =
                        *read_val.get_or_insert_with(|| (self.read(addr), reg::width(addr)));
                    let bytes = val.to_be_bytes();
                    for b in buf.iter_mut() {
                        // MSB first; bytes past the register width read 0.
                        *b = if read_pos < width {
                            bytes[4 - width + read_pos]
                        } else {
                            0
                        };
                        read_pos += 1;
                    }
                }
                Operation::DelayNs(_) => {}
            }
        }
        if n_in >= 3 && cmd[2] == reg::CMD_WRITE {
            let addr = u16::from_be_bytes([cmd[0], cmd[1]]);
            let width = reg::width(addr);
            if n_in == 3 + width {
                let v = cmd[3..3 + width]
                    .iter()
                    .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                self.write(addr, v);
            } else {
                self.rejected_writes = self.rejected_writes.saturating_add(1);
            }
        }
        Ok(())
    }
}
