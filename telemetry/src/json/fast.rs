//! The fast path of [`super::decode`]: one forward pass over the bytes that reads a well-formed v1
//! batch straight into [`Reading`]s and validates each as it is read.
//!
//! It accepts a strict subset of what the general path accepts and declines (`None`) everything else,
//! so [`super::decode`]'s result never depends on which path answered:
//! - the message is an object with exactly `v` (the integer `1`) and `readings` (a non-empty array of
//!   at most `max_readings_per_batch` objects), keys in any order, JSON whitespace anywhere between
//!   tokens, nothing after the closing brace but whitespace;
//! - each reading and measurement is an object with exactly its fields (optional `time_source` and
//!   `replayed` may be absent), keys in any order (the measurement's `type` tag too), no key twice;
//! - every string is free of escapes and control characters (an escaped key, id or tag is declined);
//!   identifiers pass [`crate::ids::check_id`], checked while they are copied (ASCII ids byte by byte);
//! - every value has its field's JSON type and fits its Rust type as serde would convert it.
//!
//! Anything else (a syntax error, an unknown or repeated key, a wrong type, a bad identifier, an
//! escape, a number that does not fit) is declined and the general path classifies it. What it
//! accepts, the general path accepts with the same values: numbers are converted exactly as
//! serde_json (built with `float_roundtrip`, without `arbitrary_precision`, as in this workspace)
//! and serde's primitive visitors do — see [`Cursor::number`] — and the tests in
//! `json/equivalence.rs` compare both paths on generated inputs.
//!
//! Floats are correctly rounded (nearest, ties to even), so the shortest text serde_json writes
//! (ryu) reads back to the same bits (`tests/float_roundtrip.rs`): an `f64` field is the text
//! rounded to `f64` ([`Cursor::number`]), an `f32` field the text rounded to `f32` at once
//! ([`Cursor::number_f32`]), as the general path reads them (serde alone would round an `f32`
//! field twice, through `f64`: see `reround_f32_fields` in `json.rs`).
//!
//! Nesting is at most [`DEPTH`] and a bare `NaN`/`Infinity` is never a token here, so an accepted
//! message passes [`super::scan`] whenever `max_depth >= DEPTH`; [`super::decode`] skips the scan then.
//!
//! Where the time goes (see `benches/decode.rs`): no serde visitors or intermediate structs; keys are
//! expected in the encoder's order (one masked 16-byte compare each, a full read when they differ);
//! plain integers are read inline; each identifier is checked while it is scanned and copied once.
//! A declined message costs the general path plus the part of the fast pass done before declining.

use super::{Decoded, Rejection};
use crate::ids::{DeviceId, DistrictId, MAX_ID_BYTES, SiteId, check_id};
use crate::reading::{
    GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat, PqEventKind, Reading,
    TimeSource,
};
use crate::validate::{Limits, check_reading};

/// Deepest nesting of an accepted message: message object, `readings` array, reading, measurement.
pub(super) const DEPTH: usize = 4;

/// Decodes `bytes` if it is of the shape described in the module docs; `None` otherwise.
pub(super) fn decode(bytes: &[u8], limits: &Limits, now_ms: i64) -> Option<Decoded> {
    let mut c = Cursor { b: bytes, i: 0 };
    c.ws();
    c.eat(b'{')?;
    let mut version_seen = false;
    let mut out = None;
    loop {
        c.ws();
        match c.key()? {
            b"v" if !version_seen => {
                if c.integer()? != Num::U64(u64::from(crate::PROTOCOL_VERSION)) {
                    return None;
                }
                version_seen = true;
            }
            b"readings" if out.is_none() => out = Some(readings(&mut c, limits, now_ms)?),
            _ => return None,
        }
        if c.end_of_member(b'}')? {
            break;
        }
    }
    c.ws();
    if c.i != bytes.len() || !version_seen {
        return None;
    }
    out
}

/// The `readings` array: each reading read, validated and kept or refused with its index.
fn readings(c: &mut Cursor<'_>, limits: &Limits, now_ms: i64) -> Option<Decoded> {
    c.eat(b'[')?;
    // A reading as `encode` writes it takes 190–360 bytes: room for the whole batch, rarely more.
    let room = (c.b.len() / 180 + 1).min(limits.max_readings_per_batch);
    let mut out = Decoded {
        readings: Vec::with_capacity(room),
        rejected: Vec::new(),
    };
    let mut index = 0;
    loop {
        c.ws();
        // An empty batch, or one over the limit: the general path refuses it.
        if index == limits.max_readings_per_batch {
            return None;
        }
        let r = reading(c)?;
        match check_reading(&r, now_ms, limits) {
            Ok(()) => out.readings.push(r),
            Err(e) => out.rejected.push(Rejection {
                reason: e.reason,
                detail: e.field.into(),
                index: Some(index),
            }),
        }
        index += 1;
        if c.end_of_member(b']')? {
            return Some(out);
        }
    }
}

// Field bits of a reading.
const DEVICE: u16 = 1 << 0;
const SITE: u16 = 1 << 1;
const DISTRICT: u16 = 1 << 2;
const BOOT: u16 = 1 << 3;
const SEQ: u16 = 1 << 4;
const TS_MS: u16 = 1 << 5;
const TIME_SOURCE: u16 = 1 << 6;
const REPLAYED: u16 = 1 << 7;
const DATA: u16 = 1 << 8;
const READING_REQUIRED: u16 = DEVICE | SITE | DISTRICT | BOOT | SEQ | TS_MS | DATA;

/// Expected bytes as the encoder writes them (a key: quote, name, quote, colon; or a quoted string
/// value), at most 16, packed little-endian into a `u128` with the mask of those bytes, and what
/// they stand for (a field's bit, an enum value).
struct Key<B> {
    bytes: u128,
    mask: u128,
    len: usize,
    bit: B,
}

impl<B> Key<B> {
    const fn new(text: &[u8], bit: B) -> Self {
        assert!(text.len() <= 16);
        let mut bytes = 0u128;
        let mut i = 0;
        while i < text.len() {
            bytes |= (text[i] as u128) << (8 * i);
            i += 1;
        }
        let mask = if text.len() == 16 {
            u128::MAX
        } else {
            (1u128 << (8 * text.len())) - 1
        };
        Key {
            bytes,
            mask,
            len: text.len(),
            bit,
        }
    }
}

/// `time_source` values as written (with their quotes).
const TIME_SOURCES: [Key<TimeSource>; 2] = [
    Key::new(b"\"device\"", TimeSource::Device),
    Key::new(b"\"gateway\"", TimeSource::Gateway),
];

/// Measurement `type` tags that fit a [`Key`] with their quotes (the heartbeat's does not: read in
/// full), each with its name.
const TAGS: [Key<&[u8]>; 3] = [
    Key::new(b"\"parking_change\"", b"parking_change"),
    Key::new(b"\"grid_summary\"", b"grid_summary"),
    Key::new(b"\"grid_event\"", b"grid_event"),
];

/// Power-quality event kinds as written.
const EVENTS: [Key<PqEventKind>; 3] = [
    Key::new(b"\"sag\"", PqEventKind::Sag),
    Key::new(b"\"swell\"", PqEventKind::Swell),
    Key::new(b"\"interruption\"", PqEventKind::Interruption),
];

/// A reading's keys as [`super::encode`] writes them (quoted, with the colon), in bit order.
const READING_KEYS: [Key<u16>; 9] = [
    Key::new(b"\"device\":", DEVICE),
    Key::new(b"\"site\":", SITE),
    Key::new(b"\"district\":", DISTRICT),
    Key::new(b"\"boot\":", BOOT),
    Key::new(b"\"seq\":", SEQ),
    Key::new(b"\"ts_ms\":", TS_MS),
    Key::new(b"\"time_source\":", TIME_SOURCE),
    Key::new(b"\"replayed\":", REPLAYED),
    Key::new(b"\"data\":", DATA),
];

/// One reading object.
fn reading(c: &mut Cursor<'_>) -> Option<Reading> {
    c.eat(b'{')?;
    let mut seen = 0u16;
    let (mut device, mut site, mut district) = ("", "", "");
    let (mut boot, mut seq, mut ts_ms) = (0, 0, 0);
    let mut time_source = TimeSource::default();
    let mut replayed = false;
    let mut data = None;
    loop {
        c.ws();
        // The bits run in the encoder's key order: expect the key after the last one read.
        let hint = READING_KEYS.get(seen.checked_ilog2().map_or(0, |b| b as usize + 1));
        let bit = match c.hinted_key(hint) {
            Some(bit) => bit,
            None => match c.key()? {
                b"device" => DEVICE,
                b"site" => SITE,
                b"district" => DISTRICT,
                b"boot" => BOOT,
                b"seq" => SEQ,
                b"ts_ms" => TS_MS,
                b"time_source" => TIME_SOURCE,
                b"replayed" => REPLAYED,
                b"data" => DATA,
                _ => return None,
            },
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match bit {
            DEVICE => device = c.id()?,
            SITE => site = c.id()?,
            DISTRICT => district = c.id()?,
            BOOT => boot = c.integer()?.to_u32()?,
            SEQ => seq = c.integer()?.to_u32()?,
            TS_MS => ts_ms = c.integer()?.to_i64()?,
            TIME_SOURCE => {
                time_source = match c.word(&TIME_SOURCES) {
                    Some(t) => t,
                    None => match c.string()? {
                        b"device" => TimeSource::Device,
                        b"gateway" => TimeSource::Gateway,
                        _ => return None,
                    },
                }
            }
            REPLAYED => replayed = c.boolean()?,
            _ => data = Some(measurement(c)?),
        }
        if c.end_of_member(b'}')? {
            break;
        }
    }
    if seen & READING_REQUIRED != READING_REQUIRED {
        return None;
    }
    Some(Reading {
        device: DeviceId::from_checked(device),
        site: SiteId::from_checked(site),
        district: DistrictId::from_checked(district),
        boot,
        seq,
        ts_ms,
        time_source,
        replayed,
        data: data?,
    })
}

// Field bits of a measurement (every field name has one type across the variants).
const TYPE: u32 = 1 << 0;
const OCCUPIED: u32 = 1 << 1;
const FIELD_UT: u32 = 1 << 2;
const BATTERY_PCT: u32 = 1 << 3;
const TRANSITIONS: u32 = 1 << 4;
const DROPPED: u32 = 1 << 5;
const INTERVAL_S: u32 = 1 << 6;
const V_RMS_V: u32 = 1 << 7;
const V_MIN_V: u32 = 1 << 8;
const V_MAX_V: u32 = 1 << 9;
const I_RMS_A: u32 = 1 << 10;
const P_KW: u32 = 1 << 11;
const Q_KVAR: u32 = 1 << 12;
const PF: u32 = 1 << 13;
const FREQ_HZ: u32 = 1 << 14;
const ENERGY_KWH: u32 = 1 << 15;
const EVENT: u32 = 1 << 16;
const DURATION_MS: u32 = 1 << 17;
const EXTREME_V: u32 = 1 << 18;

/// Exactly the fields of each variant (all required), with the tag.
const PARKING_CHANGE: u32 = TYPE | OCCUPIED | FIELD_UT;
const PARKING_HEARTBEAT: u32 = TYPE | OCCUPIED | BATTERY_PCT | FIELD_UT | TRANSITIONS | DROPPED;
const GRID_SUMMARY: u32 = TYPE
    | INTERVAL_S
    | V_RMS_V
    | V_MIN_V
    | V_MAX_V
    | I_RMS_A
    | P_KW
    | Q_KVAR
    | PF
    | FREQ_HZ
    | ENERGY_KWH;
const GRID_EVENT: u32 = TYPE | EVENT | DURATION_MS | EXTREME_V;

/// Each variant's keys as [`super::encode`] writes them, the tag first.
const PARKING_CHANGE_KEYS: [Key<u32>; 3] = [
    Key::new(b"\"type\":", TYPE),
    Key::new(b"\"occupied\":", OCCUPIED),
    Key::new(b"\"field_ut\":", FIELD_UT),
];
const PARKING_HEARTBEAT_KEYS: [Key<u32>; 6] = [
    Key::new(b"\"type\":", TYPE),
    Key::new(b"\"occupied\":", OCCUPIED),
    Key::new(b"\"battery_pct\":", BATTERY_PCT),
    Key::new(b"\"field_ut\":", FIELD_UT),
    Key::new(b"\"transitions\":", TRANSITIONS),
    Key::new(b"\"dropped\":", DROPPED),
];
const GRID_SUMMARY_KEYS: [Key<u32>; 11] = [
    Key::new(b"\"type\":", TYPE),
    Key::new(b"\"interval_s\":", INTERVAL_S),
    Key::new(b"\"v_rms_v\":", V_RMS_V),
    Key::new(b"\"v_min_v\":", V_MIN_V),
    Key::new(b"\"v_max_v\":", V_MAX_V),
    Key::new(b"\"i_rms_a\":", I_RMS_A),
    Key::new(b"\"p_kw\":", P_KW),
    Key::new(b"\"q_kvar\":", Q_KVAR),
    Key::new(b"\"pf\":", PF),
    Key::new(b"\"freq_hz\":", FREQ_HZ),
    Key::new(b"\"energy_kwh\":", ENERGY_KWH),
];
const GRID_EVENT_KEYS: [Key<u32>; 4] = [
    Key::new(b"\"type\":", TYPE),
    Key::new(b"\"event\":", EVENT),
    Key::new(b"\"duration_ms\":", DURATION_MS),
    Key::new(b"\"extreme_v\":", EXTREME_V),
];

/// The values of a measurement object as read, before its tag picks the variant.
#[derive(Default)]
struct Fields {
    occupied: bool,
    field_ut: f32,
    battery_pct: f32,
    transitions: u32,
    dropped: u32,
    interval_s: u32,
    v_rms_v: f32,
    v_min_v: f32,
    v_max_v: f32,
    i_rms_a: f32,
    p_kw: f32,
    q_kvar: f32,
    pf: f32,
    freq_hz: f32,
    energy_kwh: f64,
    event: Option<PqEventKind>,
    duration_ms: u32,
    extreme_v: f32,
}

/// One measurement object, its `type` tag anywhere in it.
fn measurement(c: &mut Cursor<'_>) -> Option<Measurement> {
    c.eat(b'{')?;
    let mut seen = 0u32;
    let mut tag = 0u32;
    let mut f = Fields::default();
    let mut order: &[Key<u32>] = &[Key::new(b"\"type\":", TYPE)];
    loop {
        c.ws();
        // Expect the variant's keys in the encoder's order, the tag first.
        let hint = order.get(seen.count_ones() as usize);
        let bit = match c.hinted_key(hint) {
            Some(bit) => bit,
            None => match c.key()? {
                b"type" => TYPE,
                b"occupied" => OCCUPIED,
                b"field_ut" => FIELD_UT,
                b"battery_pct" => BATTERY_PCT,
                b"transitions" => TRANSITIONS,
                b"dropped" => DROPPED,
                b"interval_s" => INTERVAL_S,
                b"v_rms_v" => V_RMS_V,
                b"v_min_v" => V_MIN_V,
                b"v_max_v" => V_MAX_V,
                b"i_rms_a" => I_RMS_A,
                b"p_kw" => P_KW,
                b"q_kvar" => Q_KVAR,
                b"pf" => PF,
                b"freq_hz" => FREQ_HZ,
                b"energy_kwh" => ENERGY_KWH,
                b"event" => EVENT,
                b"duration_ms" => DURATION_MS,
                b"extreme_v" => EXTREME_V,
                _ => return None,
            },
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match bit {
            TYPE => {
                let kind = match c.word(&TAGS) {
                    Some(kind) => kind,
                    None => c.string()?,
                };
                (tag, order) = match kind {
                    b"parking_change" => (PARKING_CHANGE, &PARKING_CHANGE_KEYS[..]),
                    b"parking_heartbeat" => (PARKING_HEARTBEAT, &PARKING_HEARTBEAT_KEYS[..]),
                    b"grid_summary" => (GRID_SUMMARY, &GRID_SUMMARY_KEYS[..]),
                    b"grid_event" => (GRID_EVENT, &GRID_EVENT_KEYS[..]),
                    _ => return None,
                }
            }
            OCCUPIED => f.occupied = c.boolean()?,
            FIELD_UT => f.field_ut = c.number_f32()?,
            BATTERY_PCT => f.battery_pct = c.number_f32()?,
            TRANSITIONS => f.transitions = c.integer()?.to_u32()?,
            DROPPED => f.dropped = c.integer()?.to_u32()?,
            INTERVAL_S => f.interval_s = c.integer()?.to_u32()?,
            V_RMS_V => f.v_rms_v = c.number_f32()?,
            V_MIN_V => f.v_min_v = c.number_f32()?,
            V_MAX_V => f.v_max_v = c.number_f32()?,
            I_RMS_A => f.i_rms_a = c.number_f32()?,
            P_KW => f.p_kw = c.number_f32()?,
            Q_KVAR => f.q_kvar = c.number_f32()?,
            PF => f.pf = c.number_f32()?,
            FREQ_HZ => f.freq_hz = c.number_f32()?,
            ENERGY_KWH => f.energy_kwh = c.number()?.to_f64(),
            EVENT => {
                f.event = Some(match c.word(&EVENTS) {
                    Some(e) => e,
                    None => match c.string()? {
                        b"sag" => PqEventKind::Sag,
                        b"swell" => PqEventKind::Swell,
                        b"interruption" => PqEventKind::Interruption,
                        _ => return None,
                    },
                })
            }
            DURATION_MS => f.duration_ms = c.integer()?.to_u32()?,
            _ => f.extreme_v = c.number_f32()?,
        }
        if c.end_of_member(b'}')? {
            break;
        }
    }
    if seen != tag {
        return None;
    }
    Some(match tag {
        PARKING_CHANGE => Measurement::ParkingChange(ParkingChange {
            occupied: f.occupied,
            field_ut: f.field_ut,
        }),
        PARKING_HEARTBEAT => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: f.occupied,
            battery_pct: f.battery_pct,
            field_ut: f.field_ut,
            transitions: f.transitions,
            dropped: f.dropped,
        }),
        GRID_SUMMARY => Measurement::GridSummary(GridSummary {
            interval_s: f.interval_s,
            v_rms_v: f.v_rms_v,
            v_min_v: f.v_min_v,
            v_max_v: f.v_max_v,
            i_rms_a: f.i_rms_a,
            p_kw: f.p_kw,
            q_kvar: f.q_kvar,
            pf: f.pf,
            freq_hz: f.freq_hz,
            energy_kwh: f.energy_kwh,
        }),
        _ => Measurement::GridEvent(GridEvent {
            event: f.event?,
            duration_ms: f.duration_ms,
            extreme_v: f.extreme_v,
        }),
    })
}

/// A JSON number as serde_json's parser hands it to a visitor: a non-negative integer that fits
/// `u64`, a negative one that fits `i64`, or else a float (`-0` is the float `-0.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    /// `visit_u64`.
    U64(u64),
    /// `visit_i64` (always negative).
    I64(i64),
    /// `visit_f64`.
    F64(f64),
}

impl Num {
    /// As serde's `f64` visitor converts it.
    pub(super) fn to_f64(self) -> f64 {
        match self {
            Num::U64(v) => v as f64,
            Num::I64(v) => v as f64,
            Num::F64(v) => v,
        }
    }

    /// As serde's `u32` visitor: an integer in range, else `None` (an error there).
    fn to_u32(self) -> Option<u32> {
        match self {
            Num::U64(v) => u32::try_from(v).ok(),
            _ => None,
        }
    }

    /// As serde's `i64` visitor: an integer in range, else `None` (an error there).
    fn to_i64(self) -> Option<i64> {
        match self {
            Num::U64(v) => i64::try_from(v).ok(),
            Num::I64(v) => Some(v),
            Num::F64(_) => None,
        }
    }
}

/// `10^n` for the `n` whose power is exact in `f64` (Clinger's fast path).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A read position in the message.
pub(super) struct Cursor<'a> {
    /// The whole message.
    pub(super) b: &'a [u8],
    /// Next byte to read.
    pub(super) i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace (space, tab, line feed, carriage return; nothing else).
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Consumes `byte` or declines.
    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek()? == byte {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// After a member or element: `,` (false, more follow) or `close` (true); else declines.
    #[inline]
    fn end_of_member(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let b = self.peek()?;
        self.i += 1;
        if b == b',' {
            Some(false)
        } else if b == close {
            Some(true)
        } else {
            None
        }
    }

    /// A string without escapes or control characters, as raw bytes (not checked as UTF-8: callers
    /// compare it with ASCII names, or check it with [`Self::id`]).
    #[inline]
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            let b = *self.b.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// An object key and its `:`.
    #[inline]
    fn key(&mut self) -> Option<&'a [u8]> {
        let k = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(k)
    }

    /// The key `hint` expects (as [`super::encode`] writes it) if the input has exactly its bytes
    /// next: its bit, the cursor past the colon and whitespace. `None` (cursor unmoved) otherwise:
    /// the caller reads the key in full with [`Self::key`].
    #[inline]
    fn hinted_key<B: Copy>(&mut self, hint: Option<&Key<B>>) -> Option<B> {
        let hint = hint?;
        let rest = &self.b[self.i..];
        let matched = match rest.first_chunk::<16>() {
            // One 16-byte compare under the key's mask (no call into memcmp).
            Some(chunk) => (u128::from_le_bytes(*chunk) ^ hint.bytes) & hint.mask == 0,
            None => rest.starts_with(&hint.bytes.to_le_bytes()[..hint.len]),
        };
        if matched {
            self.i += hint.len;
            self.ws();
            Some(hint.bit)
        } else {
            None
        }
    }

    /// One of `words` (quoted strings, see [`Key`]) if the input has exactly its bytes next: its
    /// value, the cursor past the closing quote. `None` (cursor unmoved) otherwise, or when fewer
    /// than 16 bytes are left: the caller reads the string in full with [`Self::string`].
    #[inline]
    fn word<B: Copy>(&mut self, words: &[Key<B>]) -> Option<B> {
        let chunk = u128::from_le_bytes(*self.b[self.i..].first_chunk::<16>()?);
        let w = words.iter().find(|w| (chunk ^ w.bytes) & w.mask == 0)?;
        self.i += w.len;
        Some(w.bit)
    }

    /// An identifier string that passes [`check_id`]: ASCII checked while it is read, anything else
    /// by [`check_id`] itself. Declines an escape or a broken rule (the general path classifies it).
    #[inline]
    fn id(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let mut plain = true;
        loop {
            let b = *self.b.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                b'/' | b'+' | b'#' => plain = false,
                0x21..=0x7e => {}
                _ => plain = false,
            }
        }
        let raw = &self.b[start..self.i - 1];
        let s = core::str::from_utf8(raw).ok()?;
        if plain && !s.is_empty() && s.len() <= MAX_ID_BYTES {
            return Some(s);
        }
        check_id(s).ok()?;
        Some(s)
    }

    /// `true` or `false`.
    #[inline]
    fn boolean(&mut self) -> Option<bool> {
        let rest = &self.b[self.i..];
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// A JSON number where an integer is expected: a plain run of at most 19 digits (what the
    /// encoder writes) read inline, anything else by [`Self::number`]. The same result as
    /// [`Self::number`] for every input.
    #[inline]
    pub(super) fn integer(&mut self) -> Option<Num> {
        let start = self.i;
        let mut v = 0;
        let count = match self.peek()? {
            b'0' => {
                self.i += 1;
                1
            }
            b'1'..=b'9' => self.digits(&mut v),
            _ => 0,
        };
        if (1..=19).contains(&count)
            && !matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
        {
            return Some(Num::U64(v));
        }
        self.i = start;
        self.number()
    }

    /// A JSON number, as serde_json's parser reads it (`parse_integer`, `parse_number`,
    /// `parse_decimal`, `parse_exponent`, with `float_roundtrip`): an integer of at most 19 digits
    /// stays an integer (`-0` is the float `-0.0`); a float is the decimal value correctly rounded
    /// to `f64` (nearest, ties to even), which is unique, so any correct method gives serde_json's
    /// bits. When the significand fits 53 bits and the power of ten is exact (at most 10^22), one
    /// multiply or divide rounds once and is exact (Clinger's fast path, which serde_json's
    /// `lexical` takes too); any other float is parsed from its text by `str::parse::<f64>` (also
    /// correctly rounded: Eisel–Lemire, then a big-number fallback). Integers of more than 19
    /// digits are handed to serde_json itself. Declines a malformed number, and an overflow to
    /// infinity (serde_json's `number out of range` error).
    pub(super) fn number(&mut self) -> Option<Num> {
        let start = self.i;
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let mut significand: u64 = 0;
        let mut count = match self.peek()? {
            b'0' => {
                self.i += 1;
                // There can be only one leading '0'.
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
                0
            }
            b'1'..=b'9' => self.digits(&mut significand),
            _ => return None,
        };
        let mut exponent: i32 = 0;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            let after_point = self.digits(&mut significand);
            // At least one digit after the point.
            if after_point == 0 {
                return None;
            }
            count += after_point;
            exponent = i32::try_from(after_point).ok()?.wrapping_neg();
        }
        // Up to 19 digits cannot overflow the u64 significand; past that it has wrapped (unused).
        let long = count > 19;
        if !float && long {
            // An integer of 20 digits or more: `u64` or a float, as serde_json decides.
            return self.number_by_serde_json(start);
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            let exp_negative = match self.peek()? {
                b'+' => {
                    self.i += 1;
                    false
                }
                b'-' => {
                    self.i += 1;
                    true
                }
                _ => false,
            };
            let mut exp: i32 = match self.peek()? {
                d @ b'0'..=b'9' => i32::from(d - b'0'),
                _ => return None,
            };
            self.i += 1;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                // Saturates far past any finite or non-zero f64 (only the fast-path test below
                // reads it; the text is parsed otherwise).
                exp = (exp * 10 + i32::from(d - b'0')).min(1_000_000);
            }
            exponent = exponent.saturating_add(if exp_negative { -exp } else { exp });
        }
        if !float {
            return Some(if !negative {
                Num::U64(significand)
            } else {
                let v = (significand as i64).wrapping_neg();
                // A float when it does not fit, or for `-0`.
                if v >= 0 {
                    Num::F64(-(significand as f64))
                } else {
                    Num::I64(v)
                }
            });
        }
        if !long
            && significand <= 1 << 53
            && let Some(&pow) = POW10.get(exponent.unsigned_abs() as usize)
        {
            // Both operands exact: one rounding, the correctly rounded value.
            let mut f = significand as i64 as f64;
            if exponent >= 0 {
                f *= pow;
            } else {
                f /= pow;
            }
            return Some(Num::F64(if negative { -f } else { f }));
        }
        self.float_from_text(start)
    }

    /// A JSON number for an `f32` field, as the general path reads it: the text correctly rounded
    /// to `f32` (`str::parse::<f32>`, see `reround_f32_fields` in `json.rs`); declines what
    /// [`Self::number`] declines. An integer converts with one rounding (`as`, nearest, ties to
    /// even: the same). A float is first correctly rounded to `f64` by [`Self::number`]; rounding
    /// that again to `f32` gives the same as rounding the text at once unless the `f64` lies
    /// exactly halfway between two `f32` values (rounding is monotonic and every such halfway point
    /// is an `f64`), where the text's side of it is lost: then, and below the `f32` normal range
    /// (where the halfway test below does not apply), the text is parsed again as `f32`. Zero
    /// (either sign) is never ambiguous.
    #[inline]
    pub(super) fn number_f32(&mut self) -> Option<f32> {
        let start = self.i;
        Some(match self.number()? {
            Num::U64(v) => v as f32,
            Num::I64(v) => v as f32,
            Num::F64(d) => {
                let bits = d.to_bits();
                // Binary exponent of `d` within the f32 normal binades (2^-126 up to below 2^128,
                // past f32::MAX too: the overflow threshold is a halfway point like the others),
                // where an f32 step is bit 29 of the f64 significand and a halfway point has
                // exactly bit 28 set below it.
                let binade = ((bits >> 52) & 0x7ff).wrapping_sub(1023 - 126);
                if (binade < 254 && bits & 0x1FFF_FFFF != 0x1000_0000) || bits << 1 == 0 {
                    d as f32
                } else {
                    self.f32_from_text(start)?
                }
            }
        })
    }

    /// The number token from `start` to the cursor, correctly rounded to `f32` (infinity past
    /// `f32::MAX`, as the general path gives).
    #[cold]
    fn f32_from_text(&self, start: usize) -> Option<f32> {
        core::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    /// The float token from `start` to the cursor (already checked as a JSON number), correctly
    /// rounded by `str::parse::<f64>`; `None` when it overflows to infinity.
    #[inline(never)]
    fn float_from_text(&self, start: usize) -> Option<Num> {
        let text = core::str::from_utf8(&self.b[start..self.i]).ok()?;
        let f: f64 = text.parse().ok()?;
        f.is_finite().then_some(Num::F64(f))
    }

    /// Decimal digits, gathered into `acc` (which may wrap: the caller checks the count); returns
    /// how many.
    #[inline]
    fn digits(&mut self, acc: &mut u64) -> usize {
        let start = self.i;
        while let Some(&b) = self.b.get(self.i) {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            *acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
            self.i += 1;
        }
        self.i - start
    }

    /// The number token starting at `start`, parsed by serde_json (integers of 20 digits or more).
    #[cold]
    fn number_by_serde_json(&mut self, start: usize) -> Option<Num> {
        let len = self.b[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(self.b.len() - start);
        let n: serde_json::Number = serde_json::from_slice(&self.b[start..start + len]).ok()?;
        self.i = start + len;
        if let Some(v) = n.as_u64() {
            Some(Num::U64(v))
        } else if let Some(v) = n.as_i64() {
            Some(Num::I64(v))
        } else {
            n.as_f64().map(Num::F64)
        }
    }
}
