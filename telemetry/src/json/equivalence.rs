//! The fast path against the general path on generated messages: valid and broken, every
//! measurement type, optional fields present and absent, keys in any order (the `type` tag too),
//! escapes and Unicode in strings, numbers in every JSON form, unknown, repeated and missing fields,
//! wrong types, whitespace, oversize, too deep, bare `NaN`/`Infinity`, small limits. Every result
//! of [`decode`] must equal [`decode_reference`]'s, compared through `Debug` as well so float bits
//! count (`-0.0` vs `0.0`).

use super::fast::{Cursor, Num};
use super::*;

/// xorshift64: a fixed seed gives the same cases on every run. (A `Cell`, so several draws can sit
/// in one `format!`.)
struct Rng {
    state: core::cell::Cell<u64>,
    /// Generating a message without damage (it should take the fast path).
    clean: core::cell::Cell<bool>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng {
            state: core::cell::Cell::new(seed),
            clean: core::cell::Cell::new(false),
        }
    }
    fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.set(x);
        x
    }
    fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `1/n`.
    fn one_in(&self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a>(&self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// True with probability `1/n`, never while generating a clean message.
    fn dirty(&self, n: usize) -> bool {
        !self.clean.get() && self.one_in(n)
    }
    /// Uniform below `n`, but always the last (the undamaged case) in a clean message.
    fn choose(&self, n: usize) -> usize {
        if self.clean.get() {
            n - 1
        } else {
            self.below(n)
        }
    }
    /// Which form of number to write: in a clean message, only well-formed ones that fit.
    fn number_kind(&self) -> usize {
        match self.below(26) {
            12..=15 if self.clean.get() => 4,
            k => k,
        }
    }
    fn digits(&self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const NOW: i64 = 1_800_000_000_000;

/// A number in one of JSON's forms (and some that are not JSON).
fn number(g: &Rng) -> String {
    match g.number_kind() {
        0 => "0".into(),
        1 => "-0".into(),
        2 => "-0.0".into(),
        3 => g.below(2_000).to_string(),
        4 => format!("{}.{}", g.below(2_000), g.digits(1 + g.below(8))),
        5 => format!("-{}.{}", g.below(100), g.digits(1 + g.below(6))),
        6 => {
            format!(
                "{}.{}{}{}",
                g.below(1_000),
                g.digits(1 + g.below(20)),
                g.pick(&["e", "E"]),
                g.pick(&["", "+", "-"])
            ) + &g.below(40).to_string()
        }
        7 => format!("{}e{}", 1 + g.below(9), g.below(400)),
        8 => format!("{}e-{}", 1 + g.below(9), g.below(400)),
        // Long mantissas: past 2^53, past u64.
        9 => format!(
            "{}.{}",
            g.digits(1 + g.below(6)).replace('0', "7"),
            g.digits(10 + g.below(15))
        ),
        10 => format!("1{}", g.digits(15 + g.below(8))),
        11 => format!("-1{}", g.digits(15 + g.below(8))),
        12 => [
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
        ][g.below(4)]
        .into(),
        13 => [
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
        ][g.below(4)]
        .into(),
        // Subnormal and overflowing values.
        14 => g
            .pick(&[
                "2.5e-320",
                "1e-45",
                "1.4e-45",
                "3.4028235e38",
                "3.4028236e38",
                "1e39",
                "1e308",
                "1.8e308",
                "1e400",
                "-1e400",
                "1.7976931348623159e308",
                "-179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531306896e110",
                "1e2147483648",
                "1e99999999999",
                "0e999",
                "0.0000000000000000000000001",
            ])
            .into(),
        // Not JSON numbers.
        15 => g
            .pick(&[
                "01",
                "1.",
                ".5",
                "+1",
                "1.5e",
                "1e+",
                "--1",
                "1.2.3",
                "0x10",
                "1_000",
                "NaN",
                "Infinity",
                "-Infinity",
                "-",
            ])
            .into(),
        // Values as f32 and f64 write themselves (shortest round trip).
        16 => {
            let v = f32::from_bits(g.next() as u32);
            if v.is_finite() {
                serde_json::to_string(&v).unwrap()
            } else {
                "1.5".into()
            }
        }
        17 => {
            let v = f64::from_bits(g.next());
            if v.is_finite() {
                serde_json::to_string(&v).unwrap()
            } else {
                "2.5".into()
            }
        }
        18 => {
            serde_json::to_string(&((g.next() >> 11) as f64 / (1u64 << 53) as f64 * 1e6)).unwrap()
        }
        19 => serde_json::to_string(&((g.next() >> 40) as f32 / (1u32 << 24) as f32 * 1000.0))
            .unwrap(),
        20 => format!(
            "{}E{}",
            g.digits(1 + g.below(25)).trim_start_matches('0').to_owned() + "1",
            g.below(30) as i32 - 15
        ),
        21 => format!(
            "0.{}e{}",
            g.digits(1 + g.below(30)),
            g.below(60) as i32 - 30
        ),
        22 => g.below(100).to_string() + ".0",
        // Hard cases for correct rounding: boundaries, halfway points, subnormals, huge exponents.
        23 => g
            .pick(&[
                "2.2250738585072011e-308",
                "2.2250738585072012e-308",
                "2.2250738585072014e-308",
                "4.9406564584124654e-324",
                "5e-324",
                "2.4703282292062327e-324",
                "2.4703282292062328e-324",
                "-2.4703282292062327208828439643411068618252990130716238221279284125033775364e-324",
                "1.7976931348623157e308",
                "1.7976931348623158e308",
                "9007199254740993.0",
                "9007199254740993e0",
                "9007199254740993.0000000000000000000001",
                "9007199254740992.9999999999999999999999",
                "0.1",
                "0.30000000000000004",
                "123456789012345678901234567890e-10",
                "0.000000000000000000000000000012345678901234567890123",
                "0.0e-99999999999",
                "-0e99999999999",
                "1e-99999999999",
                "1.00000005960464477550",
                "1.000000059604644775390625",
                "1.0000000596046447753906250000000001",
                "3.4028235677973366e38",
                "3.4028235677973362e38",
                "1.401298464324817e-45",
                "7.006492321624085e-46",
                "7.006492321624086e-46",
                "1.1754942e-38",
                "8.98846567431158e307",
                "1e22",
                "1e23",
                "9007199254740992e22",
                "9007199254740993e-22",
            ])
            .into(),
        // Exact halfway points between adjacent f64 (2^52..2^53, ulp 1) and f32 (2^23..2^24),
        // as written or a hair above or below (an f32 field rounds the f64 again).
        24 | 25 => {
            let (base, span) = if g.one_in(2) { (1u64 << 52, 1u64 << 52) } else { (1 << 23, 1 << 23) };
            let n = base + g.next() % span;
            let sign = if g.one_in(4) { "-" } else { "" };
            let tail = g.pick(&["", "0", "00000000000000000001", "000000000000000000000000000001"]);
            match g.below(3) {
                0 => format!("{sign}{n}.5{tail}"),
                1 => format!("{sign}{}.{}4999999999999999999999", n, "9".repeat(g.below(3))),
                _ => format!("{sign}{n}5{tail}e-1"),
            }
        }
        _ => format!("{}", g.next() as i64 >> g.below(60)),
    }
}

/// A value of some other JSON type (for wrong-type cases).
fn other_value(g: &Rng) -> String {
    g.pick(&[
        "null",
        "true",
        "false",
        "\"x\"",
        "\"1\"",
        "[]",
        "{}",
        "[1]",
        "{\"a\":1}",
        "1.5",
        "-3",
        "\"\"",
    ])
    .into()
}

/// An identifier string literal: usually valid, sometimes escaped, Unicode, too long or broken.
fn id(g: &Rng, base: &str) -> String {
    match g.choose(30) {
        0 => r#""a\u0041b""#.into(),
        1 => r#""a\\b""#.into(),
        2 => r#""a\\""#.into(),
        3 => r#""a\"b""#.into(),
        4 => r#""a\/b""#.into(),
        5 => "\"停车位-12\"".into(),
        6 => "\"lot\u{3000}1\"".into(),
        7 => "\"dev\u{85}x\"".into(),
        8 => "\"é\u{301}\"".into(),
        9 => "\"\"".into(),
        10 => format!("\"{}\"", "x".repeat(64)),
        11 => format!("\"{}\"", "x".repeat(65)),
        12 => format!("\"{}\"", "é".repeat(32)),
        13 => format!("\"{}é\"", "x".repeat(63)),
        14 => g
            .pick(&[
                "\"a/b\"",
                "\"a+b\"",
                "\"a#b\"",
                "\"a b\"",
                "\"a\tb\"",
                "\"a\u{7f}\"",
            ])
            .into(),
        15 => other_value(g),
        16 => "\"a\u{1}b\"".into(),
        _ => format!("\"{base}\""),
    }
}

/// A measurement object: the members and the tag, shuffled; sometimes broken.
fn measurement(g: &Rng) -> String {
    let mut members: Vec<(String, String)> = Vec::new();
    let num = |g: &Rng, typical: String| {
        if g.one_in(4) { number(g) } else { typical }
    };
    let kind = g.below(4);
    let tag = [
        "parking_change",
        "parking_heartbeat",
        "grid_summary",
        "grid_event",
    ][kind];
    let bool_val = |g: &Rng| g.pick(&["true", "false"]).to_string();
    match kind {
        0 => {
            members.push(("occupied".into(), bool_val(g)));
            let v = num(g, format!("{}.{}", g.below(200), g.below(10)));
            members.push(("field_ut".into(), v));
        }
        1 => {
            members.push(("occupied".into(), bool_val(g)));
            let v = num(g, format!("{}", g.below(101)));
            members.push(("battery_pct".into(), v));
            let v = num(g, format!("{}.{}", g.below(200), g.below(100)));
            members.push(("field_ut".into(), v));
            let v = num(g, g.below(1_000).to_string());
            members.push(("transitions".into(), v));
            let v = num(g, g.below(10).to_string());
            members.push(("dropped".into(), v));
        }
        2 => {
            let v = num(g, "60".into());
            members.push(("interval_s".into(), v));
            let rms = 225.0 + g.below(1_000) as f32 / 100.0;
            let v = num(g, serde_json::to_string(&rms).unwrap());
            members.push(("v_rms_v".into(), v));
            let v = num(g, serde_json::to_string(&(rms - 2.5)).unwrap());
            members.push(("v_min_v".into(), v));
            let v = num(g, serde_json::to_string(&(rms + 1.0 / 3.0)).unwrap());
            members.push(("v_max_v".into(), v));
            for (k, typical) in [
                ("i_rms_a", "10.3"),
                ("p_kw", "-2.2"),
                ("q_kvar", "0.3"),
                ("pf", "0.95"),
                ("freq_hz", "50.01"),
            ] {
                let v = num(g, typical.into());
                members.push((k.into(), v));
            }
            let e = (g.next() >> 11) as f64 / (1u64 << 53) as f64 * 1e6;
            let v = num(g, serde_json::to_string(&e).unwrap());
            members.push(("energy_kwh".into(), v));
        }
        _ => {
            let ev = if g.dirty(5) {
                g.pick(&["dip", "Sag", "sag\\u0000"])
            } else {
                g.pick(&["sag", "swell", "interruption"])
            };
            members.push(("event".into(), format!("\"{ev}\"")));
            let v = num(g, (g.below(500)).to_string());
            members.push(("duration_ms".into(), v));
            let v = num(g, format!("{}.5", g.below(400)));
            members.push(("extreme_v".into(), v));
        }
    }
    mutate(g, &mut members);
    let tag_value = match g.choose(30) {
        0 => "\"unknown_kind\"".into(),
        1 => r#""parking\u005fchange""#.into(),
        2 => other_value(g),
        3 => {
            let t = [
                "parking_change",
                "parking_heartbeat",
                "grid_summary",
                "grid_event",
            ][g.below(4)];
            format!("\"{t}\"")
        }
        _ => format!("\"{tag}\""),
    };
    let at = if g.one_in(2) {
        0
    } else {
        g.below(members.len() + 1)
    };
    if !g.dirty(40) {
        members.insert(at, ("type".into(), tag_value));
    }
    if g.dirty(40) {
        members.push(("type".into(), format!("\"{tag}\"")));
    }
    object(g, &members)
}

/// Occasional damage to a member list: drop, repeat, add unknown, retype, reorder.
fn mutate(g: &Rng, members: &mut Vec<(String, String)>) {
    if g.dirty(25) && !members.is_empty() {
        let i = g.below(members.len());
        members.remove(i);
    }
    if g.dirty(25) && !members.is_empty() {
        let i = g.below(members.len());
        let m = members[i].clone();
        members.push(m);
    }
    if g.dirty(25) {
        let k = g.pick(&[
            "extra",
            "Device",
            "field_ut",
            "occupied",
            "battery_pct",
            "energy_kwh",
            "event",
            "x",
        ]);
        members.push((k.into(), number(g)));
    }
    if g.dirty(20) && !members.is_empty() {
        let i = g.below(members.len());
        members[i].1 = other_value(g);
    }
    if g.one_in(3) {
        for i in (1..members.len()).rev() {
            let j = g.below(i + 1);
            members.swap(i, j);
        }
    }
}

/// JSON whitespace (usually none), sometimes a byte that is not JSON whitespace.
fn ws(g: &Rng) -> &'static str {
    match g.below(60) {
        0 => " ",
        1 => "\n  ",
        2 => "\t",
        3 => "\r\n",
        4 if g.dirty(10) => "\u{c}",
        _ => "",
    }
}

fn object(g: &Rng, members: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            s.push_str(ws(g));
            s.push(',');
        }
        let key = if g.dirty(200) {
            format!("\"{}\\u0000\"", k)
        } else {
            format!("\"{k}\"")
        };
        s.push_str(&format!("{}{key}{}:{}{v}{}", ws(g), ws(g), ws(g), ws(g)));
    }
    s.push('}');
    s
}

fn reading(g: &Rng, n: usize) -> String {
    let mut members: Vec<(String, String)> = vec![
        ("device".into(), id(g, &format!("L{}-b{n}", g.below(5)))),
        ("site".into(), id(g, &format!("L{}", g.below(5)))),
        ("district".into(), id(g, "central")),
        (
            "boot".into(),
            if g.dirty(8) {
                number(g)
            } else {
                g.below(5).to_string()
            },
        ),
        (
            "seq".into(),
            if g.dirty(8) { number(g) } else { n.to_string() },
        ),
    ];
    let ts = match g.choose(12) {
        0 => (NOW / 1000).to_string(),
        1 => (NOW * 1000).to_string(),
        2 => (NOW + 10_000_000).to_string(),
        3 => "-5".into(),
        4 => number(g),
        5 => format!("{NOW}.0"),
        _ => (NOW - g.below(100_000) as i64).to_string(),
    };
    members.push(("ts_ms".into(), ts));
    if g.one_in(2) {
        let v = if g.dirty(4) {
            g.pick(&["\"other\"", "null", "\"Device\"", "\"gate\\u0077ay\""])
        } else {
            g.pick(&["\"device\"", "\"gateway\""])
        };
        members.push(("time_source".into(), v.into()));
    }
    if g.one_in(2) {
        let v = if g.dirty(4) {
            g.pick(&["0", "null", "\"true\"", "True"])
        } else {
            g.pick(&["true", "false"])
        };
        members.push(("replayed".into(), v.into()));
    }
    let data = if g.dirty(50) {
        format!("[{}]", measurement(g))
    } else if g.dirty(60) {
        other_value(g)
    } else {
        measurement(g)
    };
    members.push(("data".into(), data));
    mutate(g, &mut members);
    if g.dirty(80) {
        // A reading as an array of values: serde accepts a struct in sequence form.
        return format!(
            "[{}]",
            members
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    object(g, &members)
}

fn message(g: &Rng) -> Vec<u8> {
    g.clean.set(g.one_in(2));
    let n = match g.choose(20) {
        0 => 0,
        1 => 7 + g.below(5),
        _ => 1 + g.below(4),
    };
    let readings: Vec<String> = (0..n).map(|i| reading(g, i)).collect();
    let mut list = readings.join(&format!("{},{}", ws(g), ws(g)));
    if g.dirty(60) {
        list.push(',');
    }
    let mut members: Vec<(String, String)> = vec![
        (
            "v".into(),
            if g.dirty(3) {
                g.pick(&["2", "1.0", "\"1\"", "01", "null", "1e0", "-1", "0", "256"])
            } else {
                "1"
            }
            .into(),
        ),
        ("readings".into(), format!("[{}{list}{}]", ws(g), ws(g))),
    ];
    mutate(g, &mut members);
    let mut s = format!("{}{}{}", ws(g), object(g, &members), ws(g));
    match g.choose(60) {
        0 => s.push('x'),
        1 => s.push_str("{}"),
        2 => s = s.replacen("1", "NaN", 1),
        3 => s = s.replacen("true", "Infinity", 1),
        4 => s = format!("[{s}]"),
        6 => s = s.replacen('"', "'", 1),
        7 => s = format!("-Infinity{s}"),
        _ => {}
    }
    let mut bytes = s.into_bytes();
    match g.choose(40) {
        // Cut anywhere, even inside a UTF-8 sequence.
        0 => bytes.truncate(g.below(bytes.len() + 1)),
        // A stray byte that is not UTF-8.
        1 => {
            let at = g.below(bytes.len() + 1);
            bytes.insert(at, 0xff);
        }
        _ => {}
    }
    bytes
}

fn limits(g: &Rng) -> Limits {
    let mut l = Limits::default();
    match g.choose(12) {
        0 => l.max_depth = 3 + g.below(3),
        1 => l.max_readings_per_batch = g.below(6),
        2 => l.max_payload_bytes = 200 + g.below(800),
        3 => l.max_future_skew_ms = 0,
        _ => {}
    }
    l
}

/// Thousands of generated messages: [`decode`] gives exactly [`decode_reference`]'s result, and the
/// fast path, wherever it answers, gives exactly the general path's.
#[test]
fn fast_path_equals_general_path_on_generated_messages() {
    let g = &Rng::new(0x0DDB_1A5E_5BAD_5EED);
    let (mut fast_taken, mut accepted, mut rejected_readings, mut refused) = (0, 0, 0, 0);
    let cases = 30_000;
    for _ in 0..cases {
        let bytes = &message(g)[..];
        let msg = String::from_utf8_lossy(bytes);
        let limits = limits(g);
        let reference = decode_reference(bytes, &limits, NOW);
        let got = decode(bytes, &limits, NOW);
        assert_eq!(got, reference, "{msg}\n{limits:?}");
        assert_eq!(format!("{got:?}"), format!("{reference:?}"), "{msg}");
        if let Some(f) = fast::decode(bytes, &limits, NOW) {
            fast_taken += 1;
            let general = decode_general(bytes, &limits, NOW);
            assert_eq!(
                format!("{:?}", Ok::<_, Rejection>(f)),
                format!("{general:?}"),
                "{msg}"
            );
        }
        match reference {
            Ok(d) => {
                accepted += d.readings.len();
                rejected_readings += d.rejected.len();
            }
            Err(_) => refused += 1,
        }
    }
    // The generator reaches both paths and every outcome often.
    assert!(
        fast_taken > cases / 10,
        "fast path taken {fast_taken} times"
    );
    assert!(refused > cases / 10, "refused {refused}");
    assert!(accepted > cases / 5, "accepted readings {accepted}");
    assert!(
        rejected_readings > cases / 10,
        "rejected readings {rejected_readings}"
    );
}

/// Messages as [`encode`] writes them, from random readings of every type with random field
/// values (any finite f32/f64 bits): always the fast path, always the general path's result.
#[test]
fn encoder_output_takes_the_fast_path() {
    let g = &Rng::new(0x1234_5678_9ABC_DEF1);
    let limits = Limits::default();
    let f32v = |g: &Rng| loop {
        let v = if g.one_in(2) {
            f32::from_bits(g.next() as u32)
        } else {
            (g.next() >> 40) as f32 / 1_000.0
        };
        if v.is_finite() {
            return v;
        }
    };
    for i in 0..3_000 {
        let batch: Vec<Reading> = (0..1 + g.below(20))
            .map(|k| {
                let data = match g.below(4) {
                    0 => crate::Measurement::ParkingChange(crate::ParkingChange {
                        occupied: g.one_in(2),
                        field_ut: f32v(g),
                    }),
                    1 => crate::Measurement::ParkingHeartbeat(crate::ParkingHeartbeat {
                        occupied: g.one_in(2),
                        battery_pct: f32v(g),
                        field_ut: f32v(g),
                        transitions: g.next() as u32,
                        dropped: g.next() as u32,
                    }),
                    2 => crate::Measurement::GridSummary(crate::GridSummary {
                        interval_s: g.next() as u32 % 100_000,
                        v_rms_v: f32v(g),
                        v_min_v: f32v(g),
                        v_max_v: f32v(g),
                        i_rms_a: f32v(g),
                        p_kw: -f32v(g),
                        q_kvar: f32v(g),
                        pf: f32v(g) / 1e6,
                        freq_hz: 40.0 + f32v(g) / 1e6,
                        energy_kwh: loop {
                            let v = f64::from_bits(g.next());
                            if v.is_finite() {
                                break v.abs() % 1e13;
                            }
                        },
                    }),
                    _ => crate::Measurement::GridEvent(crate::GridEvent {
                        event: [
                            crate::PqEventKind::Sag,
                            crate::PqEventKind::Swell,
                            crate::PqEventKind::Interruption,
                        ][g.below(3)],
                        duration_ms: g.next() as u32 % 5,
                        extreme_v: f32v(g),
                    }),
                };
                Reading {
                    device: crate::DeviceId::new(&format!("dev-{i}-{k}")).unwrap(),
                    site: crate::SiteId::new("停车位-12").unwrap(),
                    district: crate::DistrictId::new("central").unwrap(),
                    boot: g.next() as u32,
                    seq: g.next() as u32,
                    ts_ms: NOW - (g.next() % 1_000_000_000_000) as i64,
                    time_source: if g.one_in(2) {
                        crate::TimeSource::Device
                    } else {
                        crate::TimeSource::Gateway
                    },
                    replayed: g.one_in(2),
                    data,
                }
            })
            .collect();
        let bytes = encode(&batch);
        let f =
            fast::decode(&bytes, &limits, NOW).expect("the encoder's output takes the fast path");
        let general = decode_general(&bytes, &limits, NOW);
        assert_eq!(
            format!("{:?}", Ok::<_, Rejection>(f)),
            format!("{general:?}")
        );
    }
}

/// The fast number reader against serde_json on single number texts, for every target type: where
/// it answers, it gives serde_json's value bit for bit; it answers for every plain form.
#[test]
fn numbers_convert_as_serde_json_does() {
    let g = &Rng::new(0xFEED_FACE_CAFE_BEEF);
    let mut declined = 0;
    let cases = 200_000;
    for _ in 0..cases {
        let text = number(g);
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let n = c.number().filter(|_| c.i == text.len());
        // The inline integer reader answers as the general number reader does, and stops there.
        let mut ci = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let int = ci.integer().filter(|_| ci.i == text.len());
        assert_eq!(format!("{int:?}"), format!("{n:?}"), "integer {text}");
        let Some(n) = n else {
            declined += 1;
            // Declined: the general path decides (no check needed), but a plain number must not be.
            continue;
        };
        let mut c32 = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let n32 = c32.number_f32().filter(|_| c32.i == text.len());
        assert_eq!(
            f32_field(&text).map(f32::to_bits),
            n32.map(f32::to_bits),
            "f32 {text}"
        );
        assert_eq!(
            f64_field(&text).map(f64::to_bits),
            Some(n.to_f64().to_bits()),
            "f64 {text}"
        );
        let u32s: Option<u32> = serde_json::from_str(&text).ok();
        let i64s: Option<i64> = serde_json::from_str(&text).ok();
        let (u, i) = match n {
            Num::U64(v) => (u32::try_from(v).ok(), i64::try_from(v).ok()),
            Num::I64(v) => (None, Some(v)),
            Num::F64(_) => (None, None),
        };
        assert_eq!(u, u32s, "u32 {text}");
        assert_eq!(i, i64s, "i64 {text}");
    }
    // Only the non-JSON forms (and out-of-range floats) are declined: about 1 in 26 plus a few.
    assert!(declined < cases / 12, "declined {declined}");
    // Every finite f64 and f32 as serde_json writes it reads back to its own bits, as the general
    // path reads it.
    for _ in 0..100_000 {
        let v = f64::from_bits(g.next());
        if !v.is_finite() {
            continue;
        }
        let text = serde_json::to_string(&v).unwrap();
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let n = c.number().expect(&text);
        assert_eq!(n.to_f64().to_bits(), v.to_bits(), "{text}");
        assert_eq!(
            Some(n.to_f64().to_bits()),
            f64_field(&text).map(f64::to_bits)
        );
        let mut c32 = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let n32 = c32.number_f32().expect(&text);
        assert_eq!(Some(n32.to_bits()), f32_field(&text).map(f32::to_bits));
        let v = f32::from_bits(g.next() as u32);
        if !v.is_finite() {
            continue;
        }
        let text = serde_json::to_string(&v).unwrap();
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let n = c.number_f32().expect(&text);
        assert_eq!(n.to_bits(), v.to_bits(), "{text}");
        assert_eq!(Some(v.to_bits()), f32_field(&text).map(f32::to_bits));
    }
}

/// An f32 field's value read from `text` as the general path reads it: a `parking_change`
/// measurement through serde, then [`reround_f32_fields`]; `None` where serde refuses it.
fn f32_field(text: &str) -> Option<f32> {
    let json = format!(r#"{{"type":"parking_change","occupied":true,"field_ut":{text}}}"#);
    let mut m: crate::Measurement = serde_json::from_str(&json).ok()?;
    reround_f32_fields(&format!(r#"{{"data":{json}}}"#), &mut m);
    match m {
        crate::Measurement::ParkingChange(p) => Some(p.field_ut),
        _ => None,
    }
}

/// An f64 field's value read from `text` as the general path reads it (`energy_kwh` of a
/// `grid_summary`), `None` where serde refuses it.
fn f64_field(text: &str) -> Option<f64> {
    let json = format!(
        r#"{{"type":"grid_summary","interval_s":60,"v_rms_v":1,"v_min_v":1,"v_max_v":1,"i_rms_a":1,"p_kw":1,"q_kvar":1,"pf":1,"freq_hz":50,"energy_kwh":{text}}}"#
    );
    match serde_json::from_str(&json).ok()? {
        crate::Measurement::GridSummary(s) => Some(s.energy_kwh),
        _ => None,
    }
}

/// serde alone reads an `f32` field of `Measurement` (internally tagged: buffered, parsed as
/// `f64`, then cast) rounding twice, which is wrong when the `f64` is exactly halfway between two
/// `f32` values; the general path re-reads such fields straight as `f32`, and the fast path gives
/// the same. Cases: a shortest `f32` text the encoder writes (`7.038531e-26` for bits
/// `0x15ae43fd`) and a long decimal a hair above a halfway point (1 + 2^-24 + 2^-66).
#[test]
fn f32_fields_are_rounded_once() {
    let fast = |text: &str| {
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        c.number_f32().filter(|_| c.i == text.len())
    };
    let serde_alone = |text: &str| {
        let json = format!(r#"{{"type":"parking_change","occupied":true,"field_ut":{text}}}"#);
        match serde_json::from_str(&json).unwrap() {
            crate::Measurement::ParkingChange(p) => p.field_ut,
            _ => unreachable!(),
        }
    };
    for (text, want, twice) in [
        ("7.038531e-26", 0x15ae_43fd, 0x15ae_43fe),
        ("1.00000005960464477550", 0x3f80_0001, 0x3f80_0000),
    ] {
        // Rounded once, by hand: the bits above; through f64 they come out one step off.
        assert_eq!(text.parse::<f32>().unwrap().to_bits(), want, "{text}");
        assert_eq!(
            (text.parse::<f64>().unwrap() as f32).to_bits(),
            twice,
            "{text}"
        );
        assert_eq!(serde_alone(text).to_bits(), twice, "{text}");
        assert_eq!(f32_field(text).map(f32::to_bits), Some(want), "{text}");
        assert_eq!(fast(text).map(f32::to_bits), Some(want), "{text}");
    }
    // Beyond f32::MAX: infinity either way (refused later by validation as `non_finite`).
    assert_eq!(f32_field("1e39"), Some(f32::INFINITY));
    assert_eq!(fast("1e39"), Some(f32::INFINITY));
    // Past f64: refused by serde_json, declined by the fast path.
    assert_eq!(f32_field("1e309"), None);
    assert_eq!(fast("1e309"), None);
}
