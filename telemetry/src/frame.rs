//! Binary uplink frame, device → gateway, for constrained radios (LoRa, sub-GHz, serial).
//!
//! # Layout (all multi-byte integers little-endian)
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | high nibble: frame version ([`FRAME_VERSION`] = 1); low nibble: [`FrameType`] |
//! | 1 | 2 | short device address (`u16`), mapped to a [`DeviceId`](crate::DeviceId) by the gateway's registry |
//! | 3 | 2 | boot counter, low 16 bits |
//! | 5 | 4 | sequence number within the boot |
//! | 9 | 2 | age of the event at transmission, 100 ms units; `0xFFFF` = unknown (gateway time stands in) |
//! | 11 | n | body, by type (below) |
//! | 11+n | 2 | CRC-16/IBM-3740 (a.k.a. CCITT-FALSE: poly 0x1021, init 0xFFFF) over bytes 0..11+n |
//!
//! Bodies (scaled integers; the scale is in the name):
//! - `1` parking change, 3 bytes: flags (bit 0 occupied), `field_dut: u16` (0.1 µT). Whole frame: **16 bytes**.
//! - `2` parking heartbeat, 8 bytes: flags (bit 0 occupied), `battery_pct: u8`, `field_dut: u16`,
//!   `transitions: u16`, `dropped: u16` (both saturate at 65,535).
//! - `3` grid summary, 26 bytes: `interval_s: u16`, `v_rms_cv`, `v_min_cv`, `v_max_cv: u16` (0.01 V),
//!   `i_rms_da: u16` (0.1 A), `p_w: i32`, `q_var: i32`, `pf_e4: i16` (1e-4), `freq_mhz: u16`, `energy_wh: u32`.
//! - `4` grid event, 7 bytes: kind `u8` (0 sag, 1 swell, 2 interruption), `duration_ms: u32`, `extreme_cv: u16`.
//!
//! [`check`] tells a frame that needs more bytes ([`FrameError::Incomplete`]) from one that can never be
//! valid ([`FrameError::Invalid`]), so a stream reader knows whether to wait or resynchronise. On serial
//! links frames are COBS-encoded (Cheshire & Baker, IEEE/ACM ToN 7(2), 1999) and delimited by `0x00`
//! ([`cobs_encode`], [`cobs_decode`]).

use crate::reading::{
    GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat, PqEventKind, TimeSource,
};
use crate::reject::RejectReason;

/// Current frame version (high nibble of byte 0).
pub const FRAME_VERSION: u8 = 1;
/// Header length in bytes (before the body).
pub const HEADER_LEN: usize = 11;
/// CRC length in bytes.
pub const CRC_LEN: usize = 2;
/// Longest frame of any type, bytes.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + 26 + CRC_LEN;
/// Longest COBS-encoded frame including the trailing `0x00` delimiter, bytes.
pub const MAX_COBS_LEN: usize = cobs::max_encoding_length(MAX_FRAME_LEN) + 1;
/// `age_ds` value meaning "the device does not know when".
pub const AGE_UNKNOWN: u16 = 0xFFFF;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// Frame type (low nibble of byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Parking state change.
    ParkingChange = 1,
    /// Parking heartbeat.
    ParkingHeartbeat = 2,
    /// Grid interval summary.
    GridSummary = 3,
    /// Grid power-quality event.
    GridEvent = 4,
}

impl FrameType {
    /// Body length in bytes.
    pub const fn body_len(self) -> usize {
        match self {
            FrameType::ParkingChange => 3,
            FrameType::ParkingHeartbeat => 8,
            FrameType::GridSummary => 26,
            FrameType::GridEvent => 7,
        }
    }

    /// Whole frame length (header + body + CRC) in bytes.
    pub const fn frame_len(self) -> usize {
        HEADER_LEN + self.body_len() + CRC_LEN
    }

    fn from_nibble(n: u8) -> Option<Self> {
        match n {
            1 => Some(FrameType::ParkingChange),
            2 => Some(FrameType::ParkingHeartbeat),
            3 => Some(FrameType::GridSummary),
            4 => Some(FrameType::GridEvent),
            _ => None,
        }
    }

    fn of(m: &Measurement) -> Self {
        match m {
            Measurement::ParkingChange(_) => FrameType::ParkingChange,
            Measurement::ParkingHeartbeat(_) => FrameType::ParkingHeartbeat,
            Measurement::GridSummary(_) => FrameType::GridSummary,
            Measurement::GridEvent(_) => FrameType::GridEvent,
        }
    }
}

/// Why a frame cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed: at least `needed` in total.
    #[error("incomplete frame: {needed} bytes needed")]
    Incomplete {
        /// Total bytes the frame needs.
        needed: usize,
    },
    /// The bytes can never form a valid frame.
    #[error("invalid frame: {0:?}")]
    Invalid(InvalidFrame),
    /// Encoding: the output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// Encoding: a value does not fit its scaled integer field (the field is named).
    #[error("value out of frame range: {0}")]
    OutOfRange(&'static str),
}

impl FrameError {
    /// The rejection reason for counters: `bad_crc` for CRC mismatches, `bad_frame` otherwise.
    pub fn reason(&self) -> RejectReason {
        match self {
            FrameError::Invalid(InvalidFrame::BadCrc) => RejectReason::BadCrc,
            _ => RejectReason::BadFrame,
        }
    }
}

/// What is wrong with an invalid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFrame {
    /// Unknown version nibble.
    BadVersion,
    /// Unknown type nibble.
    BadType,
    /// CRC does not match.
    BadCrc,
    /// More bytes than the type allows.
    TooLong,
    /// A field value outside its domain (e.g. unknown event kind).
    BadValue,
    /// COBS decoding failed.
    BadCobs,
}

/// A decoded uplink frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Short device address.
    pub addr: u16,
    /// Boot counter, low 16 bits.
    pub boot: u16,
    /// Sequence number within the boot.
    pub seq: u32,
    /// Age of the event at transmission, 100 ms units ([`AGE_UNKNOWN`] if unknown).
    pub age_ds: u16,
    /// The measurement (values quantised to the frame's scales).
    pub data: Measurement,
}

impl Frame {
    /// Event time in UTC epoch ms, given the gateway's receive time `rx_ms`, and where it came from.
    pub fn event_time_ms(&self, rx_ms: i64) -> (i64, TimeSource) {
        if self.age_ds == AGE_UNKNOWN {
            (rx_ms, TimeSource::Gateway)
        } else {
            (rx_ms - i64::from(self.age_ds) * 100, TimeSource::Device)
        }
    }

    /// Encodes the frame into `out`, returning the number of bytes written.
    ///
    /// # Errors
    /// [`FrameError::BufferTooSmall`]; [`FrameError::OutOfRange`] naming the field whose value does not fit.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, FrameError> {
        let ty = FrameType::of(&self.data);
        let len = ty.frame_len();
        if out.len() < len {
            return Err(FrameError::BufferTooSmall);
        }
        let mut w = Writer { buf: out, pos: 0 };
        w.u8((FRAME_VERSION << 4) | ty as u8);
        w.u16(self.addr);
        w.u16(self.boot);
        w.u32(self.seq);
        w.u16(self.age_ds);
        match &self.data {
            Measurement::ParkingChange(p) => {
                w.u8(u8::from(p.occupied));
                w.u16(scale_u16(p.field_ut, 10.0, "field_ut")?);
            }
            Measurement::ParkingHeartbeat(h) => {
                w.u8(u8::from(h.occupied));
                w.u8(scale_u16(h.battery_pct, 1.0, "battery_pct")?.min(255) as u8);
                w.u16(scale_u16(h.field_ut, 10.0, "field_ut")?);
                w.u16(h.transitions.min(u32::from(u16::MAX)) as u16);
                w.u16(h.dropped.min(u32::from(u16::MAX)) as u16);
            }
            Measurement::GridSummary(s) => {
                w.u16(
                    u16::try_from(s.interval_s)
                        .map_err(|_| FrameError::OutOfRange("interval_s"))?,
                );
                w.u16(scale_u16(s.v_rms_v, 100.0, "v_rms_v")?);
                w.u16(scale_u16(s.v_min_v, 100.0, "v_min_v")?);
                w.u16(scale_u16(s.v_max_v, 100.0, "v_max_v")?);
                w.u16(scale_u16(s.i_rms_a, 10.0, "i_rms_a")?);
                w.i32(scale_i32(s.p_kw, 1000.0, "p_kw")?);
                w.i32(scale_i32(s.q_kvar, 1000.0, "q_kvar")?);
                let pf = scale_i32(s.pf, 10_000.0, "pf")?;
                w.i16(i16::try_from(pf).map_err(|_| FrameError::OutOfRange("pf"))?);
                w.u16(scale_u16(s.freq_hz, 1000.0, "freq_hz")?);
                let wh = round_f64(s.energy_kwh * 1000.0);
                if !s.energy_kwh.is_finite() || !(0.0..=f64::from(u32::MAX)).contains(&wh) {
                    return Err(FrameError::OutOfRange("energy_kwh"));
                }
                w.u32(wh as u32);
            }
            Measurement::GridEvent(e) => {
                w.u8(match e.event {
                    PqEventKind::Sag => 0,
                    PqEventKind::Swell => 1,
                    PqEventKind::Interruption => 2,
                });
                w.u32(e.duration_ms);
                w.u16(scale_u16(e.extreme_v, 100.0, "extreme_v")?);
            }
        }
        let crc = CRC.checksum(&w.buf[..w.pos]);
        w.u16(crc);
        debug_assert_eq!(w.pos, len);
        Ok(len)
    }
}

/// Checks whether `buf` starts with one whole valid frame and returns its length.
///
/// # Errors
/// [`FrameError::Incomplete`] when more bytes could still make a valid frame;
/// [`FrameError::Invalid`] when no continuation can (bad version or type, or CRC mismatch).
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let Some(&b0) = buf.first() else {
        return Err(FrameError::Incomplete {
            needed: HEADER_LEN + CRC_LEN,
        });
    };
    if b0 >> 4 != FRAME_VERSION {
        return Err(FrameError::Invalid(InvalidFrame::BadVersion));
    }
    let ty = FrameType::from_nibble(b0 & 0x0F).ok_or(FrameError::Invalid(InvalidFrame::BadType))?;
    let len = ty.frame_len();
    if buf.len() < len {
        return Err(FrameError::Incomplete { needed: len });
    }
    let crc = u16::from_le_bytes([buf[len - 2], buf[len - 1]]);
    if CRC.checksum(&buf[..len - 2]) != crc {
        return Err(FrameError::Invalid(InvalidFrame::BadCrc));
    }
    Ok(len)
}

/// Parses exactly one frame: `buf` must hold the whole frame and nothing more (a radio packet).
///
/// # Errors
/// As [`check`]; [`InvalidFrame::TooLong`] for trailing bytes; [`InvalidFrame::BadValue`] for a field
/// outside its domain.
pub fn parse(buf: &[u8]) -> Result<Frame, FrameError> {
    let (frame, used) = parse_prefix(buf)?;
    if used != buf.len() {
        return Err(FrameError::Invalid(InvalidFrame::TooLong));
    }
    Ok(frame)
}

/// Parses the frame at the start of `buf`, returning it and the bytes it used.
///
/// # Errors
/// As [`check`], and [`InvalidFrame::BadValue`].
pub fn parse_prefix(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    let len = check(buf)?;
    let mut r = Reader {
        buf: &buf[..len - CRC_LEN],
        pos: 0,
    };
    let ty =
        FrameType::from_nibble(r.u8() & 0x0F).ok_or(FrameError::Invalid(InvalidFrame::BadType))?;
    let addr = r.u16();
    let boot = r.u16();
    let seq = r.u32();
    let age_ds = r.u16();
    let data = match ty {
        FrameType::ParkingChange => {
            let flags = r.u8();
            Measurement::ParkingChange(ParkingChange {
                occupied: flags & 1 == 1,
                field_ut: f32::from(r.u16()) / 10.0,
            })
        }
        FrameType::ParkingHeartbeat => {
            let flags = r.u8();
            Measurement::ParkingHeartbeat(ParkingHeartbeat {
                occupied: flags & 1 == 1,
                battery_pct: f32::from(r.u8()),
                field_ut: f32::from(r.u16()) / 10.0,
                transitions: u32::from(r.u16()),
                dropped: u32::from(r.u16()),
            })
        }
        FrameType::GridSummary => Measurement::GridSummary(GridSummary {
            interval_s: u32::from(r.u16()),
            v_rms_v: f32::from(r.u16()) / 100.0,
            v_min_v: f32::from(r.u16()) / 100.0,
            v_max_v: f32::from(r.u16()) / 100.0,
            i_rms_a: f32::from(r.u16()) / 10.0,
            p_kw: r.i32() as f32 / 1000.0,
            q_kvar: r.i32() as f32 / 1000.0,
            pf: f32::from(r.i16()) / 10_000.0,
            freq_hz: f32::from(r.u16()) / 1000.0,
            energy_kwh: f64::from(r.u32()) / 1000.0,
        }),
        FrameType::GridEvent => {
            let event = match r.u8() {
                0 => PqEventKind::Sag,
                1 => PqEventKind::Swell,
                2 => PqEventKind::Interruption,
                _ => return Err(FrameError::Invalid(InvalidFrame::BadValue)),
            };
            Measurement::GridEvent(GridEvent {
                event,
                duration_ms: r.u32(),
                extreme_v: f32::from(r.u16()) / 100.0,
            })
        }
    };
    Ok((
        Frame {
            addr,
            boot,
            seq,
            age_ds,
            data,
        },
        len,
    ))
}

/// COBS-encodes `frame` into `out` and appends the `0x00` delimiter; returns the bytes written.
///
/// # Errors
/// [`FrameError::BufferTooSmall`] when `out` is shorter than `cobs::max_encoding_length(frame.len()) + 1`.
pub fn cobs_encode(frame: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let n = cobs::try_encode(frame, out).map_err(|_| FrameError::BufferTooSmall)?;
    let slot = out.get_mut(n).ok_or(FrameError::BufferTooSmall)?;
    *slot = 0;
    Ok(n + 1)
}

/// Decodes one COBS packet (without its `0x00` delimiter) into `out`; returns the decoded length.
///
/// # Errors
/// [`InvalidFrame::BadCobs`] for malformed COBS; [`FrameError::BufferTooSmall`] when `out` is too short.
pub fn cobs_decode(packet: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    match cobs::decode(packet, out) {
        Ok(report) => Ok(report.frame_size()),
        Err(cobs::DecodeError::TargetBufTooSmall) => Err(FrameError::BufferTooSmall),
        Err(_) => Err(FrameError::Invalid(InvalidFrame::BadCobs)),
    }
}

fn round_f32(x: f32) -> f32 {
    // `f32::round` is not in `core` for every supported toolchain; half away from zero by hand.
    if x >= 0.0 {
        ((x + 0.5) as i64) as f32
    } else {
        ((x - 0.5) as i64) as f32
    }
}

fn round_f64(x: f64) -> f64 {
    if x >= 0.0 {
        ((x + 0.5) as i64) as f64
    } else {
        ((x - 0.5) as i64) as f64
    }
}

fn scale_u16(v: f32, scale: f32, field: &'static str) -> Result<u16, FrameError> {
    if !v.is_finite() {
        return Err(FrameError::OutOfRange(field));
    }
    let x = round_f32(v * scale);
    if !(0.0..=f32::from(u16::MAX)).contains(&x) {
        return Err(FrameError::OutOfRange(field));
    }
    Ok(x as u16)
}

fn scale_i32(v: f32, scale: f32, field: &'static str) -> Result<i32, FrameError> {
    if !v.is_finite() {
        return Err(FrameError::OutOfRange(field));
    }
    let x = round_f64(f64::from(v) * f64::from(scale));
    if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&x) {
        return Err(FrameError::OutOfRange(field));
    }
    Ok(x as i32)
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.put(&v.to_le_bytes());
    }
}

/// Reads from a slice whose length [`check`] has already proven sufficient for the type.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn i16(&mut self) -> i16 {
        i16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Frame {
        Frame {
            addr: 0x1234,
            boot: 3,
            seq: 42,
            age_ds: 5,
            data: Measurement::ParkingChange(ParkingChange {
                occupied: true,
                field_ut: 57.3,
            }),
        }
    }

    #[test]
    fn parking_change_is_16_bytes_and_exact() {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = change().encode(&mut buf).unwrap();
        assert_eq!(n, 16);
        // Hand-built: 0x11, addr 34 12, boot 03 00, seq 2a 00 00 00, age 05 00, flags 01, 573 = 0x023d.
        assert_eq!(
            &buf[..14],
            &[
                0x11, 0x34, 0x12, 0x03, 0x00, 0x2a, 0, 0, 0, 0x05, 0x00, 0x01, 0x3d, 0x02
            ]
        );
        let crc = CRC.checksum(&buf[..14]).to_le_bytes();
        assert_eq!(&buf[14..16], &crc);
        assert_eq!(parse(&buf[..n]).unwrap(), change());
    }

    #[test]
    fn crc_check_value() {
        // CRC-16/IBM-3740 catalogue check value for "123456789".
        assert_eq!(CRC.checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn incomplete_vs_invalid() {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = change().encode(&mut buf).unwrap();
        for cut in 0..n {
            let want = if cut == 0 { HEADER_LEN + CRC_LEN } else { 16 };
            assert_eq!(
                check(&buf[..cut]),
                Err(FrameError::Incomplete { needed: want }),
                "cut {cut}"
            );
        }
        let mut bad = buf;
        bad[12] ^= 0x01;
        assert_eq!(
            check(&bad[..n]),
            Err(FrameError::Invalid(InvalidFrame::BadCrc))
        );
        assert_eq!(
            FrameError::Invalid(InvalidFrame::BadCrc).reason(),
            RejectReason::BadCrc
        );
        bad = buf;
        bad[0] = 0x21;
        assert_eq!(
            check(&bad[..n]),
            Err(FrameError::Invalid(InvalidFrame::BadVersion))
        );
        bad[0] = 0x1F;
        assert_eq!(
            check(&bad[..n]),
            Err(FrameError::Invalid(InvalidFrame::BadType))
        );
        assert_eq!(
            parse(&buf[..n + 1]),
            Err(FrameError::Invalid(InvalidFrame::TooLong))
        );
    }

    #[test]
    fn grid_summary_round_trip_quantised() {
        let f = Frame {
            addr: 7,
            boot: 1,
            seq: 9,
            age_ds: AGE_UNKNOWN,
            data: Measurement::GridSummary(GridSummary {
                interval_s: 60,
                v_rms_v: 241.25,
                v_min_v: 240.5,
                v_max_v: 242.0,
                i_rms_a: 6.6,
                p_kw: 1.62,
                q_kvar: -0.07,
                pf: 0.9991,
                freq_hz: 50.012,
                energy_kwh: 12_345.678,
            }),
        };
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = f.encode(&mut buf).unwrap();
        assert_eq!(n, 39);
        let back = parse(&buf[..n]).unwrap();
        assert_eq!(back, f);
        assert_eq!(
            back.event_time_ms(1_000_000),
            (1_000_000, TimeSource::Gateway)
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let mut f = change();
        f.data = Measurement::ParkingChange(ParkingChange {
            occupied: false,
            field_ut: f32::NAN,
        });
        assert_eq!(
            f.encode(&mut [0u8; 64]),
            Err(FrameError::OutOfRange("field_ut"))
        );
        assert_eq!(
            change().encode(&mut [0u8; 15]),
            Err(FrameError::BufferTooSmall)
        );
    }

    #[test]
    fn cobs_round_trip_has_no_zero_inside() {
        let mut raw = [0u8; MAX_FRAME_LEN];
        let n = change().encode(&mut raw).unwrap();
        let mut enc = [0u8; MAX_COBS_LEN];
        let m = cobs_encode(&raw[..n], &mut enc).unwrap();
        assert_eq!(enc[m - 1], 0);
        assert!(!enc[..m - 1].contains(&0));
        let mut dec = [0u8; MAX_FRAME_LEN];
        let k = cobs_decode(&enc[..m - 1], &mut dec).unwrap();
        assert_eq!(&dec[..k], &raw[..n]);
        assert_eq!(
            cobs_decode(&[0x05, 1, 2], &mut dec),
            Err(FrameError::Invalid(InvalidFrame::BadCobs))
        );
    }
}
