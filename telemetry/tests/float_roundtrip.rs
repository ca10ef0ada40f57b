//! The wire keeps every float bit for bit: readings of all four measurement types, with random
//! finite f32/f64 bit patterns in each field's valid range (subnormals, `-0.0`, long 17-digit
//! mantissas, large and small exponents), go through `json::encode` → `json::decode` (and
//! `json::decode_reference`, the general path alone) and come back with exactly the same bits.
//!
//! serde_json writes the shortest text that reads back to the same value (ryu); reading it back to
//! the same bits needs a correctly rounded parser (serde_json's `float_roundtrip` feature, and the
//! fast path in `json/fast.rs` following it). Without it about 1 in 10 random f64 values came back
//! 1 ULP off.
#![cfg(feature = "std")]

use telemetry::json::{decode, decode_reference, encode, parse_reading};
use telemetry::{
    DeviceId, DistrictId, GridEvent, GridSummary, Limits, Measurement, ParkingChange,
    ParkingHeartbeat, PqEventKind, Reading, SiteId, TimeSource,
};

const NOW: i64 = 1_800_000_000_000;

/// xorshift64 (fixed seed: the same cases on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A finite f32 in `[lo, hi]` (`0 <= lo < hi`), `-0.0` now and then when `lo` is 0: half the
    /// time a uniformly random bit pattern between the two (mostly tiny values and subnormals, every
    /// exponent), half the time uniform in value (full-precision measured-looking values).
    fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        if lo == 0.0 && self.below(50) == 0 {
            return -0.0;
        }
        let v = if self.below(2) == 0 {
            let (a, b) = (lo.to_bits(), hi.to_bits());
            f32::from_bits(a + self.below(u64::from(b - a) + 1) as u32)
        } else {
            let u = (self.next() >> 40) as f32 / (1u32 << 24) as f32;
            lo + u * (hi - lo)
        };
        v.clamp(lo, hi)
    }

    /// A finite f32 in `[-m, m]`, either sign.
    fn f32_signed(&mut self, m: f32) -> f32 {
        let v = self.f32_in(0.0, m);
        if self.below(2) == 0 { -v } else { v }
    }

    /// A finite f64 in `[0, hi]`, as [`Self::f32_in`] (bit patterns, or uniform values with 15–17
    /// significant digits).
    fn f64_in(&mut self, hi: f64) -> f64 {
        if self.below(50) == 0 {
            return -0.0;
        }
        let v = if self.below(2) == 0 {
            f64::from_bits(self.below(hi.to_bits() + 1))
        } else {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64 * hi
        };
        v.min(hi)
    }
}

fn measurement(g: &mut Rng, kind: u64) -> Measurement {
    match kind {
        0 => Measurement::ParkingChange(ParkingChange {
            occupied: g.below(2) == 0,
            field_ut: g.f32_in(0.0, 1600.0),
        }),
        1 => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: g.below(2) == 0,
            battery_pct: g.f32_in(0.0, 100.0),
            field_ut: g.f32_in(0.0, 1600.0),
            transitions: g.next() as u32,
            dropped: g.next() as u32,
        }),
        2 => {
            let mut v = [
                g.f32_in(0.0, 1000.0),
                g.f32_in(0.0, 1000.0),
                g.f32_in(0.0, 1000.0),
            ];
            // Total order: -0.0 sorts before 0.0, so min <= rms <= max holds.
            v.sort_by(f32::total_cmp);
            Measurement::GridSummary(GridSummary {
                interval_s: 1 + g.below(86_400) as u32,
                v_min_v: v[0],
                v_rms_v: v[1],
                v_max_v: v[2],
                i_rms_a: g.f32_in(0.0, 10_000.0),
                p_kw: g.f32_signed(10_000.0),
                q_kvar: g.f32_signed(10_000.0),
                pf: g.f32_signed(1.0),
                freq_hz: g.f32_in(40.0, 70.0),
                energy_kwh: g.f64_in(1.0e12),
            })
        }
        _ => Measurement::GridEvent(GridEvent {
            event: [
                PqEventKind::Sag,
                PqEventKind::Swell,
                PqEventKind::Interruption,
            ][g.below(3) as usize],
            duration_ms: 1 + g.below(100_000) as u32,
            extreme_v: g.f32_in(0.0, 1000.0),
        }),
    }
}

/// Hand-picked values: the `f32` whose shortest text (`7.038531e-26`) rounds to the wrong `f32`
/// through `f64` (found by scanning the f32 values; none in 0.001–1600 do), the smallest
/// subnormals, `-0.0`, the range ends; the `f64` extremes.
fn edge_measurement(kind: u64, pick: u64) -> Measurement {
    let x = [
        f32::from_bits(0x15ae_43fd),
        f32::from_bits(1),
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(0x007f_ffff),
        1.0,
    ][(pick % 6) as usize];
    match kind {
        0 => Measurement::ParkingChange(ParkingChange {
            occupied: true,
            field_ut: x,
        }),
        1 => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: false,
            battery_pct: x,
            field_ut: 1600.0,
            transitions: u32::MAX,
            dropped: 0,
        }),
        2 => Measurement::GridSummary(GridSummary {
            interval_s: 86_400,
            v_rms_v: x,
            v_min_v: x,
            v_max_v: 1000.0,
            i_rms_a: x,
            p_kw: -x,
            q_kvar: -10_000.0,
            pf: -x,
            freq_hz: 70.0,
            energy_kwh: [f64::from_bits(1), 1.0e12, -0.0, f64::MIN_POSITIVE, 0.1, 1.0]
                [(pick % 6) as usize],
        }),
        _ => Measurement::GridEvent(GridEvent {
            event: PqEventKind::Sag,
            duration_ms: u32::MAX,
            extreme_v: x,
        }),
    }
}

/// Every float of a measurement as raw bits (f32 widened), with its name.
fn float_bits(m: &Measurement) -> Vec<(&'static str, u64)> {
    let b = |v: f32| u64::from(v.to_bits());
    match m {
        Measurement::ParkingChange(p) => vec![("field_ut", b(p.field_ut))],
        Measurement::ParkingHeartbeat(p) => vec![
            ("battery_pct", b(p.battery_pct)),
            ("field_ut", b(p.field_ut)),
        ],
        Measurement::GridSummary(s) => vec![
            ("v_rms_v", b(s.v_rms_v)),
            ("v_min_v", b(s.v_min_v)),
            ("v_max_v", b(s.v_max_v)),
            ("i_rms_a", b(s.i_rms_a)),
            ("p_kw", b(s.p_kw)),
            ("q_kvar", b(s.q_kvar)),
            ("pf", b(s.pf)),
            ("freq_hz", b(s.freq_hz)),
            ("energy_kwh", s.energy_kwh.to_bits()),
        ],
        Measurement::GridEvent(e) => vec![("extreme_v", b(e.extreme_v))],
    }
}

/// Thousands of readings, every type, random float bits: all accepted, every float bit for bit.
#[test]
fn floats_cross_the_wire_bit_for_bit() {
    let mut g = Rng(0x5DEE_CE66_D1CE_F00D);
    let limits = Limits::default();
    let (mut readings, mut floats, mut mismatches) = (0usize, 0usize, Vec::new());
    let mut changed_by_field = std::collections::BTreeMap::<&str, usize>::new();
    for batch_no in 0..400 {
        let batch: Vec<Reading> = (0..25)
            .map(|k| Reading {
                device: DeviceId::new(&format!("dev-{batch_no}-{k}")).unwrap(),
                site: SiteId::new("L1").unwrap(),
                district: DistrictId::new("central").unwrap(),
                boot: g.next() as u32,
                seq: g.next() as u32,
                ts_ms: NOW - g.below(1_000_000_000) as i64,
                time_source: TimeSource::Device,
                replayed: false,
                data: if batch_no == 0 {
                    edge_measurement(k % 4, k / 4)
                } else {
                    measurement(&mut g, k % 4)
                },
            })
            .collect();
        let bytes = encode(&batch);
        // Each reading also as serde_json writes it alone (as stores and spools keep them), read
        // back by `parse_reading`.
        let alone = batch
            .iter()
            .map(|r| parse_reading(&serde_json::to_vec(r).unwrap()))
            .collect::<Result<Vec<_>, _>>()
            .map(|readings| telemetry::json::Decoded {
                readings,
                rejected: Vec::new(),
            })
            .map_err(|e| panic!("parse_reading: {e}"));
        for (path, decoded) in [
            ("decode", decode(&bytes, &limits, NOW)),
            ("decode_reference", decode_reference(&bytes, &limits, NOW)),
            ("parse_reading", alone),
        ] {
            let decoded = decoded.unwrap_or_else(|e| panic!("{path}: message refused: {e}"));
            assert!(
                decoded.rejected.is_empty(),
                "{path}: {:?}",
                decoded.rejected
            );
            assert_eq!(decoded.readings.len(), batch.len(), "{path}: reading count");
            for (sent, got) in batch.iter().zip(&decoded.readings) {
                // Everything but the floats, compared as values; the floats as bits below.
                assert_eq!(
                    (sent.device.as_str(), sent.boot, sent.seq, sent.ts_ms),
                    (got.device.as_str(), got.boot, got.seq, got.ts_ms),
                    "{path}"
                );
                let (want, have) = (float_bits(&sent.data), float_bits(&got.data));
                assert_eq!(want.len(), have.len(), "{path}: measurement type changed");
                for ((name, w), (_, h)) in want.iter().zip(&have) {
                    floats += 1;
                    if w != h {
                        *changed_by_field.entry(name).or_default() += 1;
                        mismatches.push(format!("{path} {name}: sent {w:#x}, got {h:#x}"));
                    }
                }
                readings += 1;
            }
        }
    }
    // 400 batches × 25 readings, through the three paths.
    assert_eq!(readings, 3 * 400 * 25);
    assert!(
        mismatches.is_empty(),
        "{} of {floats} floats changed across the wire ({changed_by_field:?}), e.g. {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(8)]
    );
}
