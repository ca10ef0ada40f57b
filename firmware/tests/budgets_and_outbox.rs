//! Budgets (RAM of the parking application state, bytes on the air of a state change) and the outbox's
//! exact drop / retry / age behaviour.

use firmware::app::{FlushError, Outbox, ParkingApp, Transport, age_ds};
use telemetry::frame::{AGE_UNKNOWN, parse};
use telemetry::{Measurement, ParkingChange, ParkingHeartbeat};

/// Collects frames; fails while `fail_after` frames have been accepted.
#[derive(Default)]
struct VecTransport {
    frames: Vec<Vec<u8>>,
    fail_after: Option<usize>,
}
impl Transport for VecTransport {
    type Error = &'static str;
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        if self.fail_after.is_some_and(|n| self.frames.len() >= n) {
            return Err("radio busy");
        }
        self.frames.push(frame.to_vec());
        Ok(())
    }
}

fn change(occupied: bool) -> Measurement {
    Measurement::ParkingChange(ParkingChange {
        occupied,
        field_ut: 42.5,
    })
}

#[test]
fn parking_app_state_fits_2_kib() {
    // The bus type is the caller's; a unit stands in for a zero-sized bus handle.
    let size = core::mem::size_of::<ParkingApp<()>>();
    println!("ParkingApp<ZST bus> state: {size} bytes (budget 2048)");
    assert!(size <= 2048, "{size} bytes");
}

#[test]
fn parking_change_is_16_bytes_on_the_air() {
    let mut ob: Outbox<4> = Outbox::new(0x0102, 7);
    ob.push(1_000, change(true)).unwrap();
    let mut t = VecTransport::default();
    assert_eq!(ob.flush(&mut t, 1_000).unwrap(), 1);
    println!(
        "parking change frame: {} bytes (budget 16)",
        t.frames[0].len()
    );
    assert!(t.frames[0].len() <= 16);
}

#[test]
fn drop_oldest_counts_exactly_and_seq_shows_the_gap() {
    let mut ob: Outbox<4> = Outbox::new(1, 2);
    for i in 0..10u64 {
        assert_eq!(ob.push(i * 1000, change(i % 2 == 0)).unwrap(), i as u32);
    }
    // 10 pushed into 4 slots: 6 dropped, the last 4 (seq 6..=9) remain.
    assert_eq!(ob.dropped(), 6);
    assert_eq!(ob.len(), 4);
    let mut t = VecTransport::default();
    assert_eq!(ob.flush(&mut t, 10_000).unwrap(), 4);
    let seqs: Vec<u32> = t.frames.iter().map(|f| parse(f).unwrap().seq).collect();
    assert_eq!(seqs, vec![6, 7, 8, 9]);
    assert_eq!(ob.sent(), 4);
    assert!(ob.is_empty());
}

#[test]
fn failed_send_keeps_the_frame_queued_and_retries_in_order() {
    let mut ob: Outbox<8> = Outbox::new(1, 0);
    for i in 0..5u64 {
        ob.push(i, change(true)).unwrap();
    }
    let mut t = VecTransport {
        fail_after: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ob.flush(&mut t, 100),
        Err(FlushError {
            sent: 2,
            error: "radio busy"
        })
    );
    assert_eq!(ob.len(), 3);
    t.fail_after = None;
    assert_eq!(ob.flush(&mut t, 200).unwrap(), 3);
    let seqs: Vec<u32> = t.frames.iter().map(|f| parse(f).unwrap().seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4], "no frame lost or repeated");
    assert_eq!(ob.dropped(), 0);
}

#[test]
fn age_is_transmit_minus_event_in_100ms_units() {
    assert_eq!(age_ds(10_000, 7_450), 25);
    assert_eq!(age_ds(10_000, 10_000), 0);
    assert_eq!(age_ds(10_000, 20_000), 0, "event in the future: 0");
    assert_eq!(age_ds(6_553_405, 0), 65_534, "largest known age");
    assert_eq!(age_ds(7_000_000, 0), AGE_UNKNOWN, "beyond range: unknown");
    let mut ob: Outbox<2> = Outbox::new(9, 1);
    ob.push(5_000, change(false)).unwrap();
    let mut t = VecTransport::default();
    ob.flush(&mut t, 17_349).unwrap();
    let f = parse(&t.frames[0]).unwrap();
    assert_eq!(f.age_ds, 123);
    assert_eq!((f.addr, f.boot, f.seq), (9, 1, 0));
}

#[test]
fn unencodable_value_is_counted_not_queued() {
    let mut ob: Outbox<2> = Outbox::new(9, 1);
    let bad = Measurement::ParkingHeartbeat(ParkingHeartbeat {
        occupied: false,
        battery_pct: 50.0,
        field_ut: f32::NAN,
        transitions: 0,
        dropped: 0,
    });
    assert!(ob.push(0, bad).is_err());
    assert_eq!((ob.encode_errors(), ob.len(), ob.next_seq()), (1, 0, 0));
}

#[test]
fn config_defaults_are_the_field_values() {
    let p = firmware::app::ParkingConfig::default();
    assert_eq!(
        (p.i2c_addr, p.sample_interval_ms, p.heartbeat_interval_ms),
        (0x1C, 1000, 4 * 3600 * 1000)
    );
    assert_eq!(
        (
            p.detector.enter_ut,
            p.detector.leave_ut,
            p.detector.debounce_samples
        ),
        (10.0, 6.0, 3)
    );
    let g = firmware::app::GridConfig::default();
    assert_eq!(
        (g.nominal_v, g.nominal_hz, g.summary_interval_ms),
        (230.0, 50.0, 60_000)
    );
    assert_eq!(
        (
            g.events.sag_pu,
            g.events.swell_pu,
            g.events.interruption_pu,
            g.events.hysteresis_pu
        ),
        (0.9, 1.1, 0.1, 0.02)
    );
}
