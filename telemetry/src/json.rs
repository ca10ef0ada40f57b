//! The MQTT payload codec: JSON with hard limits, classified refusals, per-reading validation.
//!
//! Wire form (one shape for one reading or many; schema in `docs/telemetry.schema.json`):
//! ```json
//! {"v":1,"readings":[{"device":"d1","site":"s1","district":"central","boot":1,"seq":0,
//!   "ts_ms":1475568000000,"data":{"type":"parking_change","occupied":true,"field_ut":48.5}}]}
//! ```
//! [`decode`] works in two stages so bad input never takes good data down with it:
//! 1. the message as a whole — size, a single pass over the bytes for nesting depth and bare
//!    `NaN`/`Infinity` tokens, JSON syntax, `v`, the batch limit. A failure here refuses the message.
//! 2. each reading on its own — fields, types, identifiers, physical ranges, timestamps. A failure here
//!    refuses that reading only; the others are returned.
//!
//! A fast path (module `fast`) reads the common case — a well-formed v1 batch of readings of the
//! right shape, as [`encode`] writes them — in one forward pass straight into the readings and
//! validates them; it declines everything else to the general path, which classifies the problem.
//! The result is the same either way ([`decode_reference`] is the general path alone).
//!
//! Floats come back bit for bit: serde_json is built with `float_roundtrip` (correctly rounded
//! parsing of the shortest texts it writes), and `f32` fields are rounded once, straight from
//! their text (serde alone would round them twice, through `f64`). [`parse_reading`] reads one
//! stored reading object the same way.

use crate::reading::{Measurement, Reading};
use crate::reject::RejectReason;
use crate::validate::{Limits, check_reading};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[cfg(test)]
mod equivalence;
mod fast;

/// A refused message or reading: the stable reason, a human-readable detail, and for a reading its
/// index in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// Stable reason name for counters.
    pub reason: RejectReason,
    /// What exactly was wrong (field name, serde message); never contains the payload itself.
    pub detail: String,
    /// Index of the refused reading in `readings`, `None` when the whole message was refused.
    pub index: Option<usize>,
}

impl Rejection {
    fn whole(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            index: None,
        }
    }
}

/// The result of decoding one message whose envelope was acceptable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// Readings that passed every check, in message order.
    pub readings: Vec<Reading>,
    /// Readings that were refused, each with its index.
    pub rejected: Vec<Rejection>,
}

/// First pass: only the version, other fields ignored, so a message of another version is refused as
/// `unsupported_version` whatever its shape (and `v: 300` is not an `out_of_range` u8).
#[derive(Deserialize)]
struct VersionOnly {
    /// `None` when absent; an explicit `null` is `Some(Value::Null)` (a wrong type, not a missing field).
    #[serde(default, deserialize_with = "present")]
    v: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Second pass: the v1 envelope, strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn<'a> {
    #[allow(dead_code)]
    v: serde::de::IgnoredAny,
    #[serde(borrow)]
    readings: Vec<&'a RawValue>,
}

#[derive(Serialize)]
struct WireOut<'a> {
    v: u8,
    readings: &'a [Reading],
}

/// Encodes readings as one message (`{"v":1,"readings":[...]}`).
///
/// Validation is the caller's job: a NaN would be written as `null` by serde_json and refused by the
/// receiver as `wrong_type`.
pub fn encode(readings: &[Reading]) -> Vec<u8> {
    // Serialising plain structs into a Vec cannot fail.
    serde_json::to_vec(&WireOut {
        v: crate::PROTOCOL_VERSION,
        readings,
    })
    .unwrap_or_default()
}

/// Decodes and validates one message received at `now_ms` (UTC epoch ms, for the future-skew check).
///
/// # Errors
/// A whole-message [`Rejection`] (`too_large`, `too_deep`, `non_finite`, `malformed_json`, `not_object`,
/// `missing_field`, `wrong_type`, `unknown_field`, `unsupported_version`, `empty_batch`,
/// `too_many_readings`). Per-reading refusals are in [`Decoded::rejected`] instead.
pub fn decode(bytes: &[u8], limits: &Limits, now_ms: i64) -> Result<Decoded, Rejection> {
    if bytes.len() > limits.max_payload_bytes {
        return Err(Rejection::whole(
            RejectReason::TooLarge,
            format!("{} bytes > limit {}", bytes.len(), limits.max_payload_bytes),
        ));
    }
    // The fast path accepts only messages that pass `scan` at this depth limit (see `fast`).
    if limits.max_depth >= fast::DEPTH
        && let Some(out) = fast::decode(bytes, limits, now_ms)
    {
        return Ok(out);
    }
    scan(bytes, limits.max_depth)?;
    decode_general(bytes, limits, now_ms)
}

/// [`decode`] without its fast path: the size and scan checks, then the general path that classifies
/// every refusal. Gives exactly [`decode`]'s result for every input (same readings with the same
/// field values bit for bit, same refusals with the same reasons, details and indexes), only slower.
/// It is the reference the fast path is tested against, and the "before" figure of
/// `benches/decode.rs`; production code calls [`decode`].
///
/// # Errors
/// As [`decode`].
pub fn decode_reference(bytes: &[u8], limits: &Limits, now_ms: i64) -> Result<Decoded, Rejection> {
    if bytes.len() > limits.max_payload_bytes {
        return Err(Rejection::whole(
            RejectReason::TooLarge,
            format!("{} bytes > limit {}", bytes.len(), limits.max_payload_bytes),
        ));
    }
    scan(bytes, limits.max_depth)?;
    decode_general(bytes, limits, now_ms)
}

/// [`decode`] after the size and scan checks, for any input.
fn decode_general(bytes: &[u8], limits: &Limits, now_ms: i64) -> Result<Decoded, Rejection> {
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(|e| classify(&e, None))?;
    match version.v {
        None => {
            return Err(Rejection::whole(
                RejectReason::MissingField,
                "missing field `v`",
            ));
        }
        Some(serde_json::Value::Number(v)) => {
            if v.as_u64() != Some(u64::from(crate::PROTOCOL_VERSION)) {
                return Err(Rejection::whole(
                    RejectReason::UnsupportedVersion,
                    format!("v = {v}"),
                ));
            }
        }
        Some(_) => {
            return Err(Rejection::whole(
                RejectReason::WrongType,
                "`v` is not a number",
            ));
        }
    }
    let wire: WireIn<'_> = serde_json::from_slice(bytes).map_err(|e| classify(&e, None))?;
    if wire.readings.is_empty() {
        return Err(Rejection::whole(
            RejectReason::EmptyBatch,
            "readings is empty",
        ));
    }
    if wire.readings.len() > limits.max_readings_per_batch {
        return Err(Rejection::whole(
            RejectReason::TooManyReadings,
            format!(
                "{} readings > limit {}",
                wire.readings.len(),
                limits.max_readings_per_batch
            ),
        ));
    }
    let mut out = Decoded {
        readings: Vec::with_capacity(wire.readings.len()),
        rejected: Vec::new(),
    };
    for (i, raw) in wire.readings.iter().enumerate() {
        match decode_reading(raw.get(), limits, now_ms) {
            Ok(r) => out.readings.push(r),
            Err(mut rej) => {
                rej.index = Some(i);
                out.rejected.push(rej);
            }
        }
    }
    Ok(out)
}

/// Decodes and validates a single reading object.
///
/// # Errors
/// The reading's [`Rejection`] (with `index: None`).
pub fn decode_reading(json: &str, limits: &Limits, now_ms: i64) -> Result<Reading, Rejection> {
    let r = parse_reading_str(json).map_err(|e| classify(&e, None))?;
    check_reading(&r, now_ms, limits).map_err(|e| Rejection::whole(e.reason, e.field))?;
    Ok(r)
}

/// One reading object as serde_json writes a [`Reading`] (`serde_json::to_vec(&reading)`, or an
/// element of [`encode`]'s `readings`), read back with every float bit for bit: use this, not
/// `serde_json::from_slice::<Reading>`, which rounds `f32` fields twice (see
/// [`reround_f32_fields`]) and so returns a neighbouring value for a few `f32` values (e.g. the one
/// written `7.038531e-26`). Not validated (see [`decode_reading`] for that).
///
/// # Errors
/// serde_json's error, as `serde_json::from_slice::<Reading>` gives it.
pub fn parse_reading(json: &[u8]) -> Result<Reading, serde_json::Error> {
    match core::str::from_utf8(json) {
        Ok(s) => parse_reading_str(s),
        // Invalid UTF-8 can only be inside a string: serde_json refuses it, with its own error.
        Err(_) => serde_json::from_slice(json),
    }
}

/// [`parse_reading`] on text (serde_json reads a `&str` faster than bytes: no UTF-8 checks).
fn parse_reading_str(json: &str) -> Result<Reading, serde_json::Error> {
    let mut r: Reading = serde_json::from_str(json)?;
    reround_f32_fields(json, &mut r.data);
    Ok(r)
}

/// Sets each `f32` field of `m` (just deserialized from the reading object `json`) to its number
/// text correctly rounded to `f32` (`str::parse::<f32>`).
///
/// Why: `Measurement` is an internally tagged enum, so serde buffers its fields and serde_json
/// parses every float there as `f64`, which serde then casts to `f32`. Rounding twice is wrong when
/// the `f64` lands exactly halfway between two `f32` values: e.g. `7.038531e-26`, the shortest text
/// of the `f32` with bits `0x15ae43fd`, would read back as `0x15ae43fe`. Reading the text straight
/// to `f32` gives every `f32` the encoder writes back bit for bit (`tests/float_roundtrip.rs`), and
/// is what any other JSON reader's `float32` parse gives. Integers, `-0`, and values beyond
/// `f32::MAX` (infinity either way) read the same as before.
///
/// Only an object `data` with plain keys is looked at (other forms keep the values serde gave; the
/// fast path declines them, so `decode` and `decode_reference` still agree). Called after a
/// successful deserialization, so every field it finds is a JSON number.
fn reround_f32_fields(json: &str, m: &mut Measurement) {
    let Ok(ReadingF32Texts {
        data: Some(MeasurementF32Texts(t)),
    }) = serde_json::from_str(json)
    else {
        return;
    };
    let set = |slot: &mut f32, raw: Option<&RawValue>| {
        if let Some(v) = raw.and_then(|r| r.get().parse::<f32>().ok()) {
            *slot = v;
        }
    };
    match m {
        Measurement::ParkingChange(p) => set(&mut p.field_ut, t[F32_FIELD_UT]),
        Measurement::ParkingHeartbeat(p) => {
            set(&mut p.battery_pct, t[F32_BATTERY_PCT]);
            set(&mut p.field_ut, t[F32_FIELD_UT]);
        }
        Measurement::GridSummary(s) => {
            for (slot, i) in [
                (&mut s.v_rms_v, F32_V_RMS_V),
                (&mut s.v_min_v, F32_V_MIN_V),
                (&mut s.v_max_v, F32_V_MAX_V),
                (&mut s.i_rms_a, F32_I_RMS_A),
                (&mut s.p_kw, F32_P_KW),
                (&mut s.q_kvar, F32_Q_KVAR),
                (&mut s.pf, F32_PF),
                (&mut s.freq_hz, F32_FREQ_HZ),
            ] {
                set(slot, t[i]);
            }
        }
        Measurement::GridEvent(e) => set(&mut e.extreme_v, t[F32_EXTREME_V]),
    }
}

/// The `f32` field names of every measurement type, indexed by the `F32_*` constants.
const F32_FIELDS: [&str; 11] = [
    "field_ut",
    "battery_pct",
    "v_rms_v",
    "v_min_v",
    "v_max_v",
    "i_rms_a",
    "p_kw",
    "q_kvar",
    "pf",
    "freq_hz",
    "extreme_v",
];
const F32_FIELD_UT: usize = 0;
const F32_BATTERY_PCT: usize = 1;
const F32_V_RMS_V: usize = 2;
const F32_V_MIN_V: usize = 3;
const F32_V_MAX_V: usize = 4;
const F32_I_RMS_A: usize = 5;
const F32_P_KW: usize = 6;
const F32_Q_KVAR: usize = 7;
const F32_PF: usize = 8;
const F32_FREQ_HZ: usize = 9;
const F32_EXTREME_V: usize = 10;

/// A reading object's `data`, other members ignored (see [`reround_f32_fields`]).
#[derive(Deserialize)]
struct ReadingF32Texts<'a> {
    #[serde(borrow, default)]
    data: Option<MeasurementF32Texts<'a>>,
}

/// The raw number texts of a measurement object's `f32` fields (by [`F32_FIELDS`] index); other
/// members skipped. Accepts only an object with unescaped keys.
struct MeasurementF32Texts<'a>([Option<&'a RawValue>; F32_FIELDS.len()]);

impl<'de: 'a, 'a> Deserialize<'de> for MeasurementF32Texts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = MeasurementF32Texts<'a>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a measurement object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut t = [None; F32_FIELDS.len()];
                while let Some(key) = map.next_key::<&'de str>()? {
                    match F32_FIELDS.iter().position(|f| *f == key) {
                        Some(i) => t[i] = Some(map.next_value::<&'de RawValue>()?),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(MeasurementF32Texts(t))
            }
        }
        d.deserialize_map(Visit(core::marker::PhantomData))
    }
}

/// One pass over the bytes: nesting depth, first significant byte, and bare non-finite tokens.
fn scan(bytes: &[u8], max_depth: usize) -> Result<(), Rejection> {
    let mut depth = 0usize;
    let mut first = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b == b'"' && first.is_some() {
            // Skip the string: jump to its closing quote; an escape hides the byte after it.
            loop {
                match bytes[i.min(bytes.len())..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\')
                {
                    None => i = bytes.len(),
                    Some(p) if bytes[i + p] == b'\\' => {
                        i += p + 2;
                        continue;
                    }
                    Some(p) => i += p + 1,
                }
                break;
            }
            continue;
        }
        if first.is_none() && !b.is_ascii_whitespace() {
            first = Some(b);
            if b != b'{' {
                // Tell `NaN`/`Infinity` (and `-Infinity`, seen at the next byte) apart from other
                // non-objects.
                if b == b'N' || b == b'I' {
                    return Err(Rejection::whole(
                        RejectReason::NonFinite,
                        "bare NaN/Infinity token",
                    ));
                }
                if b == b'-' {
                    continue;
                }
                return Err(Rejection::whole(
                    RejectReason::NotObject,
                    "top level is not an object",
                ));
            }
        }
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Rejection::whole(
                        RejectReason::TooDeep,
                        format!("nesting deeper than {max_depth}"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            // JSON has no bare token starting with a capital letter: `NaN`, `Infinity`, `-Infinity`.
            b'N' | b'I' => {
                return Err(Rejection::whole(
                    RejectReason::NonFinite,
                    "bare NaN/Infinity token",
                ));
            }
            _ => {}
        }
    }
    if first != Some(b'{') {
        return Err(Rejection::whole(
            RejectReason::NotObject,
            "top level is not an object",
        ));
    }
    Ok(())
}

/// Maps a serde_json error to a stable reason. Identifier checks in [`crate::ids`] prefix their
/// messages with `[reason]`.
fn classify(e: &serde_json::Error, index: Option<usize>) -> Rejection {
    let msg = e.to_string();
    let reason = if let Some(rest) = msg.strip_prefix('[') {
        rest.split(']')
            .next()
            .and_then(RejectReason::from_name)
            .unwrap_or(RejectReason::WrongType)
    } else if msg.starts_with("missing field") {
        RejectReason::MissingField
    } else if msg.starts_with("unknown field") {
        RejectReason::UnknownField
    } else if msg.starts_with("unknown variant") {
        // Only the measurement's `type` tag is a type; an unknown value of another enum field (event
        // kind, time source) is a value outside its domain.
        if msg.contains("`parking_change`") {
            RejectReason::UnknownType
        } else {
            RejectReason::OutOfRange
        }
    } else if msg.starts_with("duplicate field") {
        // RFC 8259 §4: names SHOULD be unique; parsers differ on which copy wins, so refuse.
        RejectReason::MalformedJson
    } else if msg.starts_with("invalid value") {
        RejectReason::OutOfRange
    } else if msg.starts_with("number out of range") {
        RejectReason::NonFinite
    } else if e.is_data() {
        RejectReason::WrongType
    } else {
        RejectReason::MalformedJson
    };
    Rejection {
        reason,
        detail: msg,
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scanner [`scan`] replaced (kept as its reference).
    fn scan_ref(bytes: &[u8], max_depth: usize) -> Result<(), RejectReason> {
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escaped = false;
        let mut first = None;
        for &b in bytes {
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
                continue;
            }
            if first.is_none() && !b.is_ascii_whitespace() {
                first = Some(b);
                if b != b'{' {
                    if b == b'N' || b == b'I' {
                        return Err(RejectReason::NonFinite);
                    }
                    if b == b'-' {
                        continue;
                    }
                    return Err(RejectReason::NotObject);
                }
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(RejectReason::TooDeep);
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'N' | b'I' => return Err(RejectReason::NonFinite),
                _ => {}
            }
        }
        if first != Some(b'{') {
            return Err(RejectReason::NotObject);
        }
        Ok(())
    }

    /// [`scan`] gives the reference's answer on random inputs over the bytes that matter.
    #[test]
    fn scan_matches_reference() {
        let alphabet = b"{}[]\"\\NI- a1:,";
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let mut x = state;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.rotate_left(5).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    alphabet[(x >> 59) as usize % alphabet.len()]
                })
                .collect();
            let got = scan(&bytes, 3).map_err(|r| r.reason);
            assert_eq!(
                got,
                scan_ref(&bytes, 3),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// The fast path, where it answers, gives exactly the general path's result; and it declines
    /// every shape it does not handle.
    #[test]
    fn fast_path_equals_general_path() {
        let now = 1_800_000_000_000i64;
        let limits = Limits::default();
        let r = |data: &str, extra: &str| {
            format!(
                r#"{{"device":"d1","site":"s1","district":"c","boot":1,"seq":7,"ts_ms":{}{extra},"data":{data}}}"#,
                now - 5_000
            )
        };
        let pc = r#"{"type":"parking_change","occupied":true,"field_ut":48.5}"#;
        let hb = r#"{"type":"parking_heartbeat","occupied":false,"battery_pct":88,"field_ut":1.25,"transitions":3,"dropped":0}"#;
        let gs = r#"{"type":"grid_summary","interval_s":60,"v_rms_v":230.1,"v_min_v":228,"v_max_v":232.7,"i_rms_a":10.3,"p_kw":2.2,"q_kvar":0.3,"pf":0.95,"freq_hz":50.01,"energy_kwh":1234.5678901}"#;
        let ge = r#"{"type":"grid_event","event":"sag","duration_ms":120,"extreme_v":180.5}"#;
        let bad_range = r#"{"type":"grid_event","event":"sag","duration_ms":120,"extreme_v":-5}"#;
        let cases: Vec<(String, bool)> = vec![
            (format!(r#"{{"v":1,"readings":[{}]}}"#, r(pc, "")), true),
            (
                format!(
                    r#"{{"readings":[{},{},{}],"v":1}}"#,
                    r(hb, r#","time_source":"gateway""#),
                    r(gs, r#","replayed":true"#),
                    r(ge, "")
                ),
                true,
            ),
            // A reading refused by validation next to good ones.
            (
                format!(
                    r#"{{"v":1,"readings":[{},{}]}}"#,
                    r(pc, ""),
                    r(bad_range, "")
                ),
                true,
            ),
            // Future timestamp.
            (
                format!(
                    r#"{{"v":1,"readings":[{}]}}"#,
                    r(pc, "").replace(
                        &format!("{}", now - 5_000),
                        &format!("{}", now + 9e9 as i64)
                    )
                ),
                true,
            ),
            // Tag not first: the fast path reads it too.
            (
                format!(
                    r#"{{"v":1,"readings":[{}]}}"#,
                    r(
                        r#"{"occupied":true,"type":"parking_change","field_ut":1}"#,
                        ""
                    )
                ),
                true,
            ),
            // Unknown type, unknown field, duplicate tag, bad id: general path only.
            (
                format!(
                    r#"{{"v":1,"readings":[{}]}}"#,
                    r(r#"{"type":"x","a":1}"#, "")
                ),
                false,
            ),
            (
                format!(
                    r#"{{"v":1,"readings":[{}]}}"#,
                    r(
                        r#"{"type":"parking_change","occupied":true,"field_ut":1,"type":"parking_change"}"#,
                        ""
                    )
                ),
                false,
            ),
            (
                format!(r#"{{"v":1,"readings":[{}]}}"#, r(pc, r#","x":1"#)),
                false,
            ),
            (
                format!(
                    r#"{{"v":1,"readings":[{}]}}"#,
                    r(pc, "").replace("\"d1\"", "\"a/b\"")
                ),
                false,
            ),
            (format!(r#"{{"v":2,"readings":[{}]}}"#, r(pc, "")), false),
            (format!(r#"{{"v":1.0,"readings":[{}]}}"#, r(pc, "")), false),
            (r#"{"v":1,"readings":[]}"#.to_string(), false),
            (
                format!(r#"{{"v":1,"readings":[{}],"w":0}}"#, r(pc, "")),
                false,
            ),
            (
                format!(r#"{{"v":1,"v":1,"readings":[{}]}}"#, r(pc, "")),
                false,
            ),
        ];
        for (msg, fast) in cases {
            let general = decode_general(msg.as_bytes(), &limits, now);
            let f = fast::decode(msg.as_bytes(), &limits, now);
            assert_eq!(f.is_some(), fast, "{msg}");
            if let Some(f) = f {
                assert_eq!(Ok(f), general, "{msg}");
            }
            assert_eq!(decode(msg.as_bytes(), &limits, now), general, "{msg}");
        }
        // And on the encoder's own output.
        let msg = r#"{"v":1,"readings":[READ]}"#.replace("READ", &r(gs, ""));
        let readings = decode(msg.as_bytes(), &limits, now).unwrap().readings;
        let again = encode(&readings);
        assert_eq!(
            fast::decode(&again, &limits, now),
            decode_general(&again, &limits, now).ok()
        );
    }
}
