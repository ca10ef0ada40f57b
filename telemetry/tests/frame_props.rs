//! Property-style tests of the uplink frame codec and COBS framing, driven by a seeded PRNG
//! (SplitMix64, fixed seeds) so every run checks the same cases.
//!
//! Expected values are computed independently of the codec: each field's wire integer is
//! `round(value × scale)` (std `round`, half away from zero) and is read back from the documented byte
//! offsets; the CRC is recomputed bit by bit from the CRC-16/IBM-3740 definition.

use telemetry::frame::{
    self, AGE_UNKNOWN, Frame, FrameError, FrameType, InvalidFrame, MAX_COBS_LEN, MAX_FRAME_LEN,
};
use telemetry::{
    GridEvent, GridSummary, Measurement, ParkingChange, ParkingHeartbeat, PqEventKind,
};

/// SplitMix64 (Steele, Lea & Flood, OOPSLA 2014).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u16(&mut self) -> u16 {
        self.next() as u16
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    /// Uniform in [-0.4, 0.4]: an offset that never moves a value across a rounding boundary.
    fn jitter(&mut self) -> f64 {
        (self.below(801) as f64 - 400.0) / 1000.0
    }
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A field value near wire integer `k` at `scale` (off the grid by less than half a step when `jitter`).
fn near(k: f64, scale: f64, rng: &mut Rng, jitter: bool) -> f32 {
    let off = if jitter { rng.jitter() } else { 0.0 };
    ((k + off) / scale) as f32
}

/// The wire integer the spec says a value becomes.
fn wire(v: f32, scale: f64) -> i64 {
    (f64::from(v) * scale).round() as i64
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn random_frame(rng: &mut Rng) -> Frame {
    let jitter = rng.below(2) == 0;
    let data = match rng.below(4) {
        0 => Measurement::ParkingChange(ParkingChange {
            occupied: rng.below(2) == 1,
            field_ut: near(f64::from(rng.u16()).min(65_535.0 - 1.0), 10.0, rng, jitter),
        }),
        1 => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: rng.below(2) == 1,
            battery_pct: near(rng.below(255) as f64, 1.0, rng, jitter),
            field_ut: near(rng.below(65_535) as f64, 10.0, rng, jitter),
            // Above 65,535 on purpose sometimes: the frame saturates.
            transitions: if rng.below(4) == 0 {
                rng.u32()
            } else {
                u32::from(rng.u16())
            },
            dropped: if rng.below(4) == 0 {
                rng.u32()
            } else {
                u32::from(rng.u16())
            },
        }),
        2 => Measurement::GridSummary(GridSummary {
            interval_s: u32::from(rng.u16()),
            v_rms_v: near(rng.below(65_535) as f64, 100.0, rng, jitter),
            v_min_v: near(rng.below(65_535) as f64, 100.0, rng, jitter),
            v_max_v: near(rng.below(65_535) as f64, 100.0, rng, jitter),
            i_rms_a: near(rng.below(65_535) as f64, 10.0, rng, jitter),
            // Realistic powers (±10 MW) keep f32 precise to the watt.
            p_kw: near(
                rng.below(20_000_001) as f64 - 10_000_000.0,
                1000.0,
                rng,
                false,
            ),
            q_kvar: near(
                rng.below(20_000_001) as f64 - 10_000_000.0,
                1000.0,
                rng,
                false,
            ),
            pf: near(rng.below(65_535) as f64 - 32_767.0, 10_000.0, rng, jitter),
            freq_hz: near(rng.below(65_535) as f64, 1000.0, rng, jitter),
            energy_kwh: (f64::from(rng.u32().min(u32::MAX - 1))
                + if jitter { rng.jitter() } else { 0.0 })
                / 1000.0,
        }),
        _ => Measurement::GridEvent(GridEvent {
            event: [
                PqEventKind::Sag,
                PqEventKind::Swell,
                PqEventKind::Interruption,
            ][rng.below(3) as usize],
            duration_ms: rng.u32(),
            extreme_v: near(rng.below(65_535) as f64, 100.0, rng, jitter),
        }),
    };
    Frame {
        addr: rng.u16(),
        boot: rng.u16(),
        seq: rng.u32(),
        age_ds: if rng.below(8) == 0 {
            AGE_UNKNOWN
        } else {
            rng.u16()
        },
        data,
    }
}

/// The frame as the receiver must see it: every value on its wire grid, counters saturated.
fn quantised(f: &Frame) -> Frame {
    let q = |v: f32, s: f64| (wire(v, s) as f64 / s) as f32;
    let data = match f.data {
        Measurement::ParkingChange(p) => Measurement::ParkingChange(ParkingChange {
            occupied: p.occupied,
            field_ut: q(p.field_ut, 10.0),
        }),
        Measurement::ParkingHeartbeat(h) => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: h.occupied,
            battery_pct: q(h.battery_pct, 1.0),
            field_ut: q(h.field_ut, 10.0),
            transitions: h.transitions.min(65_535),
            dropped: h.dropped.min(65_535),
        }),
        Measurement::GridSummary(s) => Measurement::GridSummary(GridSummary {
            interval_s: s.interval_s,
            v_rms_v: q(s.v_rms_v, 100.0),
            v_min_v: q(s.v_min_v, 100.0),
            v_max_v: q(s.v_max_v, 100.0),
            i_rms_a: q(s.i_rms_a, 10.0),
            p_kw: q(s.p_kw, 1000.0),
            q_kvar: q(s.q_kvar, 1000.0),
            pf: q(s.pf, 10_000.0),
            freq_hz: q(s.freq_hz, 1000.0),
            energy_kwh: (s.energy_kwh * 1000.0).round() / 1000.0,
        }),
        Measurement::GridEvent(e) => Measurement::GridEvent(GridEvent {
            event: e.event,
            duration_ms: e.duration_ms,
            extreme_v: q(e.extreme_v, 100.0),
        }),
    };
    Frame { data, ..f.clone() }
}

/// Checks the encoded bytes field by field at the documented offsets.
fn check_layout(f: &Frame, b: &[u8]) {
    let ty = b[0] & 0x0F;
    assert_eq!(b[0] >> 4, 1, "version");
    assert_eq!(le16(b, 1), f.addr);
    assert_eq!(le16(b, 3), f.boot);
    assert_eq!(le32(b, 5), f.seq);
    assert_eq!(le16(b, 9), f.age_ds);
    let body = &b[11..b.len() - 2];
    match &f.data {
        Measurement::ParkingChange(p) => {
            assert_eq!((ty, body.len()), (1, 3));
            assert_eq!(body[0], u8::from(p.occupied));
            assert_eq!(i64::from(le16(body, 1)), wire(p.field_ut, 10.0));
        }
        Measurement::ParkingHeartbeat(h) => {
            assert_eq!((ty, body.len()), (2, 8));
            assert_eq!(body[0], u8::from(h.occupied));
            assert_eq!(i64::from(body[1]), wire(h.battery_pct, 1.0));
            assert_eq!(i64::from(le16(body, 2)), wire(h.field_ut, 10.0));
            assert_eq!(u32::from(le16(body, 4)), h.transitions.min(65_535));
            assert_eq!(u32::from(le16(body, 6)), h.dropped.min(65_535));
        }
        Measurement::GridSummary(s) => {
            assert_eq!((ty, body.len()), (3, 26));
            assert_eq!(u32::from(le16(body, 0)), s.interval_s);
            assert_eq!(i64::from(le16(body, 2)), wire(s.v_rms_v, 100.0));
            assert_eq!(i64::from(le16(body, 4)), wire(s.v_min_v, 100.0));
            assert_eq!(i64::from(le16(body, 6)), wire(s.v_max_v, 100.0));
            assert_eq!(i64::from(le16(body, 8)), wire(s.i_rms_a, 10.0));
            assert_eq!(i64::from(le32(body, 10) as i32), wire(s.p_kw, 1000.0));
            assert_eq!(i64::from(le32(body, 14) as i32), wire(s.q_kvar, 1000.0));
            assert_eq!(i64::from(le16(body, 18) as i16), wire(s.pf, 10_000.0));
            assert_eq!(i64::from(le16(body, 20)), wire(s.freq_hz, 1000.0));
            assert_eq!(f64::from(le32(body, 22)), (s.energy_kwh * 1000.0).round());
        }
        Measurement::GridEvent(e) => {
            assert_eq!((ty, body.len()), (4, 7));
            let kind = match e.event {
                PqEventKind::Sag => 0,
                PqEventKind::Swell => 1,
                PqEventKind::Interruption => 2,
            };
            assert_eq!(body[0], kind);
            assert_eq!(le32(body, 1), e.duration_ms);
            assert_eq!(i64::from(le16(body, 5)), wire(e.extreme_v, 100.0));
        }
    }
    assert_eq!(le16(b, b.len() - 2), crc16(&b[..b.len() - 2]), "crc");
}

#[test]
fn encode_parse_equals_quantised_input() {
    let mut rng = Rng(0x00C1_7B7A_1200_0001);
    let mut per_type = [0usize; 4];
    for i in 0..20_000 {
        let f = random_frame(&mut rng);
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = f
            .encode(&mut buf)
            .unwrap_or_else(|e| panic!("case {i}: {e} for {f:?}"));
        let b = &buf[..n];
        check_layout(&f, b);
        assert_eq!(frame::check(b), Ok(n));
        let back = frame::parse(b).unwrap();
        assert_eq!(back, quantised(&f), "case {i}");
        // Quantising is idempotent: re-encoding the parsed frame gives the same bytes.
        let mut again = [0u8; MAX_FRAME_LEN];
        let m = back.encode(&mut again).unwrap();
        assert_eq!(&again[..m], b, "case {i}");
        per_type[usize::from(b[0] & 0x0F) - 1] += 1;
    }
    assert!(per_type.iter().all(|&c| c > 4_000), "{per_type:?}");
}

#[test]
fn frame_lengths_match_the_documented_table() {
    assert_eq!(FrameType::ParkingChange.frame_len(), 16);
    assert_eq!(FrameType::ParkingHeartbeat.frame_len(), 21);
    assert_eq!(FrameType::GridSummary.frame_len(), 39);
    assert_eq!(FrameType::GridEvent.frame_len(), 20);
    assert_eq!(MAX_FRAME_LEN, 39);
    assert_eq!(MAX_COBS_LEN, 41);
}

#[test]
fn a_byte_stream_of_frames_splits_back_exactly() {
    let mut rng = Rng(7);
    let frames: Vec<Frame> = (0..500).map(|_| random_frame(&mut rng)).collect();
    let mut stream = Vec::new();
    for f in &frames {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = f.encode(&mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
    }
    let mut at = 0;
    let mut back = Vec::new();
    while at < stream.len() {
        let (f, used) = frame::parse_prefix(&stream[at..]).unwrap();
        back.push(f);
        at += used;
    }
    let want: Vec<Frame> = frames.iter().map(quantised).collect();
    assert_eq!(back, want);
    // Every strict prefix of a frame asks for more bytes (the exact total), never errors.
    let first_len = frame::check(&stream).unwrap();
    for cut in 1..first_len {
        assert_eq!(
            frame::check(&stream[..cut]),
            Err(FrameError::Incomplete { needed: first_len })
        );
    }
}

#[test]
fn cobs_framed_serial_stream_round_trips() {
    let mut rng = Rng(11);
    let frames: Vec<Frame> = (0..500).map(|_| random_frame(&mut rng)).collect();
    let mut wire_bytes = Vec::new();
    for f in &frames {
        let mut raw = [0u8; MAX_FRAME_LEN];
        let n = f.encode(&mut raw).unwrap();
        let mut enc = [0u8; MAX_COBS_LEN];
        let m = frame::cobs_encode(&raw[..n], &mut enc).unwrap();
        assert!(m <= MAX_COBS_LEN);
        assert_eq!(enc[m - 1], 0);
        assert!(!enc[..m - 1].contains(&0));
        wire_bytes.extend_from_slice(&enc[..m]);
    }
    let packets: Vec<&[u8]> = wire_bytes
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(packets.len(), frames.len());
    for (p, f) in packets.iter().zip(&frames) {
        let mut raw = [0u8; MAX_FRAME_LEN];
        let n = frame::cobs_decode(p, &mut raw).unwrap();
        assert_eq!(frame::parse(&raw[..n]).unwrap(), quantised(f));
    }
}

#[test]
fn cobs_known_vectors() {
    // Hand-encoded per Cheshire & Baker: each code byte is 1 + the number of non-zero bytes that follow
    // before the next zero (or 0xFF for a full 254-byte block with no zero).
    let enc = |src: &[u8]| {
        let mut out = vec![0u8; src.len() + src.len() / 254 + 2];
        let n = frame::cobs_encode(src, &mut out).unwrap();
        out.truncate(n);
        out
    };
    assert_eq!(enc(&[]), [0x01, 0x00]);
    assert_eq!(enc(&[0x00]), [0x01, 0x01, 0x00]);
    assert_eq!(enc(&[0x00, 0x00]), [0x01, 0x01, 0x01, 0x00]);
    assert_eq!(
        enc(&[0x11, 0x22, 0x00, 0x33]),
        [0x03, 0x11, 0x22, 0x02, 0x33, 0x00]
    );
    assert_eq!(
        enc(&[0x11, 0x22, 0x33, 0x44]),
        [0x05, 0x11, 0x22, 0x33, 0x44, 0x00]
    );
    assert_eq!(
        enc(&[0x11, 0x00, 0x00, 0x00]),
        [0x02, 0x11, 0x01, 0x01, 0x01, 0x00]
    );
    let run: Vec<u8> = (1..=254).collect();
    let mut want = vec![0xFF];
    want.extend_from_slice(&run);
    want.push(0x00);
    assert_eq!(enc(&run), want);
    let run: Vec<u8> = (0..=254).collect();
    let mut want = vec![0x01, 0xFF];
    want.extend(1..=254u8);
    want.push(0x00);
    assert_eq!(enc(&run), want);
    // The worked example of docs/PROTOCOL.md.
    let f = [
        0x11, 0x02, 0x01, 0x03, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x3d, 0x02, 0x3d,
        0xea,
    ];
    assert_eq!(crc16(&f[..14]), 0xea3d);
    assert_eq!(
        enc(&f),
        [
            0x05, 0x11, 0x02, 0x01, 0x03, 0x02, 0x2a, 0x01, 0x01, 0x02, 0x05, 0x06, 0x01, 0x3d,
            0x02, 0x3d, 0xea, 0x00
        ]
    );
}

#[test]
fn cobs_round_trips_arbitrary_bytes() {
    let mut rng = Rng(0xC0B5);
    for i in 0..3_000 {
        let len = rng.below(700) as usize;
        let zero_share = rng.below(4); // 0: no zeros at all, up to ~3/4 zeros
        let src: Vec<u8> = (0..len)
            .map(|_| {
                if zero_share > 0 && rng.below(4) < zero_share {
                    0
                } else {
                    (rng.below(255) + 1) as u8
                }
            })
            .collect();
        let mut enc = vec![0u8; len + len / 254 + 2];
        let m = frame::cobs_encode(&src, &mut enc).unwrap();
        assert!(
            m <= len + len.div_ceil(254).max(1) + 1,
            "case {i}: {m} for {len}"
        );
        assert_eq!(enc[m - 1], 0, "case {i}");
        assert!(!enc[..m - 1].contains(&0), "case {i}");
        let mut dec = vec![0u8; len.max(1)];
        let k = frame::cobs_decode(&enc[..m - 1], &mut dec).unwrap();
        assert_eq!(&dec[..k], &src[..], "case {i}");
        // A too-small output buffer is an error, not a panic.
        if len > 1 {
            assert_eq!(
                frame::cobs_encode(&src, &mut [0u8; 1]),
                Err(FrameError::BufferTooSmall)
            );
        }
    }
}

#[test]
fn garbage_never_panics_and_accepted_frames_are_consistent() {
    let mut rng = Rng(0xBAD);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = rng.below(48) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time make version/type and CRC plausible so the body decoder runs on random bytes.
        if len >= 16 && rng.below(2) == 0 {
            b[0] = 0x10 | (1 + rng.below(4) as u8);
            let flen = [16usize, 21, 39, 20][usize::from(b[0] & 0x0F) - 1];
            if len >= flen {
                b.truncate(flen);
                let c = crc16(&b[..flen - 2]);
                b[flen - 2..].copy_from_slice(&c.to_le_bytes());
            }
        }
        let _ = frame::check(&b);
        let _ = frame::parse_prefix(&b);
        let mut out = [0u8; 64];
        let _ = frame::cobs_decode(&b, &mut out);
        if let Ok(f) = frame::parse(&b) {
            accepted += 1;
            // f32 holds integers exactly only up to 2^24: p_w / q_var beyond ±16,777,216 W (far outside
            // the validated ±10 MW) do not survive frame → reading → frame bit for bit.
            if let Measurement::GridSummary(s) = &f.data
                && (s.p_kw.abs() > 16_777.216 || s.q_kvar.abs() > 16_777.216)
            {
                continue;
            }
            // Re-encoding an accepted frame gives a frame that parses to the same thing.
            let mut again = [0u8; MAX_FRAME_LEN];
            let n = f.encode(&mut again).unwrap();
            assert_eq!(frame::parse(&again[..n]).unwrap(), f);
        } else if let Err(FrameError::Invalid(InvalidFrame::BadValue)) = frame::parse(&b) {
            assert_eq!(b[0], 0x14, "only grid events have a value domain");
        }
    }
    assert!(accepted > 1_000, "{accepted}");
}

#[test]
fn values_that_do_not_fit_are_refused_not_wrapped() {
    let base = |data| Frame {
        addr: 1,
        boot: 1,
        seq: 1,
        age_ds: 0,
        data,
    };
    let mut buf = [0u8; MAX_FRAME_LEN];
    for (field_ut, ok) in [
        (6553.5f32, true),
        (6553.6, false),
        (-0.04, true),
        (-0.06, false),
        (f32::NAN, false),
        (f32::INFINITY, false),
    ] {
        let f = base(Measurement::ParkingChange(ParkingChange {
            occupied: false,
            field_ut,
        }));
        assert_eq!(f.encode(&mut buf).is_ok(), ok, "{field_ut}");
        if !ok {
            assert_eq!(f.encode(&mut buf), Err(FrameError::OutOfRange("field_ut")));
        }
    }
    let s = GridSummary {
        interval_s: 60,
        v_rms_v: 230.0,
        v_min_v: 229.0,
        v_max_v: 231.0,
        i_rms_a: 5.0,
        p_kw: 1.0,
        q_kvar: 0.1,
        pf: 0.99,
        freq_hz: 50.0,
        energy_kwh: 1.0,
    };
    let cases: [(GridSummary, &str); 6] = [
        (
            GridSummary {
                interval_s: 65_536,
                ..s
            },
            "interval_s",
        ),
        (GridSummary { p_kw: 3.0e6, ..s }, "p_kw"),
        (
            GridSummary {
                q_kvar: -3.0e6,
                ..s
            },
            "q_kvar",
        ),
        (GridSummary { pf: 3.3, ..s }, "pf"),
        (
            GridSummary {
                energy_kwh: 4_294_967.3,
                ..s
            },
            "energy_kwh",
        ),
        (
            GridSummary {
                energy_kwh: f64::NAN,
                ..s
            },
            "energy_kwh",
        ),
    ];
    for (g, field) in cases {
        assert_eq!(
            base(Measurement::GridSummary(g)).encode(&mut buf),
            Err(FrameError::OutOfRange(field))
        );
    }
    // energy at the top of the u32 Wh register still fits.
    let top = GridSummary {
        energy_kwh: 4_294_967.295,
        ..s
    };
    assert!(base(Measurement::GridSummary(top)).encode(&mut buf).is_ok());
}
