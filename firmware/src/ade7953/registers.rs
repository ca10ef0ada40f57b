//! ADE7953 register map.
//!
//! Source: Analog Devices ADE7953 data sheet, Rev. C, section "Register List" (the 8-bit, 16-bit and
//! 24-bit/32-bit register tables) and the bit tables referenced there ("LCYCMODE Register", "CONFIG
//! Register"), plus the "SPI Interface" section (address, then read/write byte, then data, MSB first).
//!
//! The register width follows from the address: 0x000–0x0FF are 8-bit, 0x100–0x1FF 16-bit,
//! 0x200–0x2FF 24-bit and 0x300–0x3FF the same quantities as 32-bit (sign- or zero-extended), plus a
//! few 8-bit registers above 0x700. The firmware reads the 32-bit copies of measurement registers.

/// SPI command byte after the 16-bit address: read ("SPI Read Operation").
pub const CMD_READ: u8 = 0x80;
/// SPI command byte after the 16-bit address: write ("SPI Write Operation").
pub const CMD_WRITE: u8 = 0x00;

// 8-bit registers.
/// LCYCMODE (0x004): line-cycle accumulation mode; bit 6 RSTREAD = read-with-reset of the energy
/// registers (default 0x40).
pub const LCYCMODE: u16 = 0x004;
/// PGA_V (0x007): voltage channel gain, bits \[2:0\].
pub const PGA_V: u16 = 0x007;
/// PGA_IA (0x008): current channel A gain, bits \[2:0\].
pub const PGA_IA: u16 = 0x008;
/// Unlock register (0x0FE): writing 0xAD unlocks register 0x120 for the next write.
pub const UNLOCK: u16 = 0x0FE;
/// Value written to [`UNLOCK`].
pub const UNLOCK_VALUE: u8 = 0xAD;
/// VERSION (0x702): silicon version number.
pub const VERSION: u16 = 0x702;

// 16-bit registers.
/// CONFIG (0x102): configuration ("CONFIG Register" bit table); default 0x8004 (bit 2 HPFEN on,
/// bit 15 COMM_LOCK set).
pub const CONFIG: u16 = 0x102;
/// PFA (0x10A): power factor, channel A; signed, 2^-15 per LSB.
pub const PFA: u16 = 0x10A;
/// PERIOD (0x10E): line period, counts of a 223.75 kHz clock: f = 223 750 / (PERIOD + 1) Hz.
pub const PERIOD: u16 = 0x10E;
/// Reserved register 0x120: "should be set to 0x30 to meet the performance specified in Table 1"; it
/// must be unlocked ([`UNLOCK`] = 0xAD) immediately before ("ADE7953 power-up procedure").
pub const OPTIMUM: u16 = 0x120;
/// Value written to [`OPTIMUM`].
pub const OPTIMUM_VALUE: u16 = 0x0030;

// 32-bit copies of the 24-bit measurement registers (24-bit address + 0x100).
/// AWATT (0x312): instantaneous active power, channel A, signed.
pub const AWATT_32: u16 = 0x312;
/// AVAR (0x314): instantaneous reactive power, channel A, signed.
pub const AVAR_32: u16 = 0x314;
/// IRMSA (0x31A): current RMS, channel A, unsigned.
pub const IRMSA_32: u16 = 0x31A;
/// VRMS (0x31C): voltage RMS, unsigned.
pub const VRMS_32: u16 = 0x31C;
/// AENERGYA (0x31E): active energy, channel A, signed; cleared on read when LCYCMODE.RSTREAD = 1.
pub const AENERGYA_32: u16 = 0x31E;

/// LCYCMODE bit 6: read-with-reset for energy registers.
pub const LCYCMODE_RSTREAD: u8 = 1 << 6;
/// CONFIG bit 2: high-pass filter enable.
pub const CONFIG_HPFEN: u16 = 1 << 2;
/// CONFIG bit 15: communication lock (set by default).
pub const CONFIG_COMM_LOCK: u16 = 1 << 15;
/// PERIOD clock, Hz.
pub const PERIOD_CLOCK_HZ: f32 = 223_750.0;

/// Register width in bytes, from its address (see the module docs).
pub const fn width(addr: u16) -> usize {
    match addr {
        0x000..=0x0FF => 1,
        0x100..=0x1FF => 2,
        0x200..=0x2FF => 3,
        0x300..=0x3FF => 4,
        _ => 1,
    }
}
