//! End to end on the host: a simulated LIS3MDL whose field follows an occupancy timeline → the real
//! `ParkingApp` (driver, detector, outbox) → a Vec-backed transport → `telemetry::frame::parse`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::ErrorKind;
use firmware::app::{CycleError, ParkingApp, ParkingConfig, Transport};
use firmware::detect::BayState;
use firmware::lis3mdl::Error;
use firmware::sim::SimLis3mdl;
use telemetry::frame::{Frame, parse};
use telemetry::{Measurement, ParkingChange, ParkingHeartbeat};

/// Collects frames with their receive time (the flush time).
#[derive(Default)]
struct VecTransport {
    frames: Vec<(u64, Vec<u8>)>,
    now_ms: u64,
}
impl Transport for VecTransport {
    type Error = core::convert::Infallible;
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        self.frames.push((self.now_ms, frame.to_vec()));
        Ok(())
    }
}

/// Counts the time the device asked to sleep.
#[derive(Default)]
struct SleepCounter {
    slept_ns: u64,
}
impl DelayNs for SleepCounter {
    fn delay_ns(&mut self, ns: u32) {
        self.slept_ns += u64::from(ns);
    }
}

const VACANT: [f32; 3] = [20.0, -5.0, 42.0];
/// Vehicle signature: |(0, 10, -35)| = sqrt(100 + 1225) = 36.40 µT.
const CAR: [f32; 3] = [0.0, 10.0, -35.0];

fn occupied_at(t_s: u64) -> bool {
    (300..900).contains(&t_s) || (1200..1500).contains(&t_s)
}

fn field_at(t_s: u64) -> [f32; 3] {
    if occupied_at(t_s) {
        [VACANT[0] + CAR[0], VACANT[1] + CAR[1], VACANT[2] + CAR[2]]
    } else {
        VACANT
    }
}

/// Parsed frames with the event time the gateway reconstructs from `age_ds`.
fn decoded(t: &VecTransport) -> Vec<(i64, Frame)> {
    t.frames
        .iter()
        .map(|(rx, b)| {
            let f = parse(b).expect("valid frame");
            (f.event_time_ms(*rx as i64).0, f)
        })
        .collect()
}

fn run(
    app: &mut ParkingApp<SimLis3mdl>,
    radio: &mut VecTransport,
    delay: &mut SleepCounter,
    span: std::ops::Range<u64>,
) {
    for t_s in span {
        let f = field_at(t_s);
        app.bus_mut().set_field_ut(f[0], f[1], f[2]);
        let now_ms = t_s * 1000;
        radio.now_ms = now_ms;
        app.cycle(radio, delay, now_ms, 87).unwrap();
    }
}

#[test]
fn occupancy_timeline_to_parking_change_frames() {
    let mut sim = SimLis3mdl::new();
    sim.set_field_ut(VACANT[0], VACANT[1], VACANT[2]);
    sim.set_temperature_c(21.0);
    let mut app = ParkingApp::new(sim, ParkingConfig::default(), 0x0042, 3).unwrap();
    let mut radio = VecTransport::default();
    let mut delay = SleepCounter::default();
    run(&mut app, &mut radio, &mut delay, 0..1800);

    // Duty cycling: one 1000 ms sleep per cycle.
    assert_eq!(delay.slept_ns, 1800 * 1_000_000_000);
    let frames = decoded(&radio);
    // seq 0.. contiguous, addr and boot as given.
    for (i, (_, f)) in frames.iter().enumerate() {
        assert_eq!((f.addr, f.boot, f.seq), (0x0042, 3, i as u32));
    }
    // First frame: heartbeat when the 16-sample baseline is learned (sample at t = 15 s).
    let (t0, hb) = &frames[0];
    assert_eq!(*t0, 15_000);
    assert_eq!(
        hb.data,
        Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied: false,
            battery_pct: 87.0,
            field_ut: 0.0,
            transitions: 0,
            dropped: 0
        })
    );
    // Then exactly the four changes, at the onset sample of each (the timeline's step times), with the
    // vehicle's deviation (36.4 µT, to the sensor's quantisation and the frame's 0.1 µT) on arrival.
    let changes: Vec<(i64, ParkingChange)> = frames
        .iter()
        .filter_map(|(t, f)| match f.data {
            Measurement::ParkingChange(c) => Some((*t, c)),
            _ => None,
        })
        .collect();
    let expected_times = [300_000, 900_000, 1_200_000, 1_500_000];
    let expected_occ = [true, false, true, false];
    assert_eq!(changes.len(), 4, "{changes:?}");
    for (k, (t, c)) in changes.iter().enumerate() {
        assert_eq!(*t, expected_times[k]);
        assert_eq!(c.occupied, expected_occ[k]);
        if c.occupied {
            assert!((c.field_ut - 36.4).abs() <= 0.15, "{c:?}");
        } else {
            assert!(c.field_ut < 0.5, "{c:?}");
        }
    }
    // Reported within the debounce: each change frame left the device 2 s after its onset.
    for (rx, b) in &radio.frames {
        let f = parse(b).unwrap();
        if matches!(f.data, Measurement::ParkingChange(_)) {
            assert_eq!(f.age_ds, 20, "sent at {rx}");
        }
    }
    assert_eq!(frames.len(), 5, "no heartbeat due within 30 min");
    assert_eq!(app.transitions(), 4);
    assert_eq!(app.state(), BayState::Vacant);
    assert_eq!((app.dropped(), app.queued()), (0, 0));
}

#[test]
fn heartbeat_interval_and_recalibration() {
    let mut sim = SimLis3mdl::new();
    sim.set_field_ut(VACANT[0], VACANT[1], VACANT[2]);
    let cfg = ParkingConfig {
        heartbeat_interval_ms: 600_000,
        ..ParkingConfig::default()
    };
    let mut app = ParkingApp::new(sim, cfg, 7, 1).unwrap();
    let mut radio = VecTransport::default();
    let mut delay = SleepCounter::default();
    run(&mut app, &mut radio, &mut delay, 0..1300);
    let hb_times: Vec<i64> = decoded(&radio)
        .iter()
        .filter(|(_, f)| matches!(f.data, Measurement::ParkingHeartbeat(_)))
        .map(|(t, _)| *t)
        .collect();
    // First at calibration (15 s), then every 600 s.
    assert_eq!(hb_times, vec![15_000, 615_000, 1_215_000]);
    // The bay is occupied at 1299 s. A recalibration command with the bay (really) vacant again:
    // 16 samples later a departure is reported, then a heartbeat.
    assert_eq!(app.state(), BayState::Occupied);
    app.recalibrate();
    let before = radio.frames.len();
    for t_s in 1300..1316u64 {
        app.bus_mut().set_field_ut(VACANT[0], VACANT[1], VACANT[2]);
        radio.now_ms = t_s * 1000;
        app.cycle(&mut radio, &mut delay, t_s * 1000, 80).unwrap();
    }
    let new: Vec<Measurement> = radio.frames[before..]
        .iter()
        .map(|(_, b)| parse(b).unwrap().data)
        .collect();
    assert_eq!(new.len(), 2);
    assert_eq!(
        new[0],
        Measurement::ParkingChange(ParkingChange {
            occupied: false,
            field_ut: 0.0
        })
    );
    assert!(
        matches!(new[1], Measurement::ParkingHeartbeat(h) if !h.occupied && h.transitions == 4)
    );
    assert_eq!(app.state(), BayState::Vacant);
}

#[test]
fn bus_errors_are_errors_and_the_app_recovers() {
    let mut sim = SimLis3mdl::new();
    sim.set_fail(true);
    assert_eq!(
        ParkingApp::new(sim.clone(), ParkingConfig::default(), 1, 1).err(),
        Some(Error::Bus(ErrorKind::Bus))
    );
    // Wrong address: no acknowledge, an error too.
    let other = SimLis3mdl::new().with_address(0x1E);
    assert!(matches!(
        ParkingApp::new(other, ParkingConfig::default(), 1, 1),
        Err(Error::Bus(ErrorKind::NoAcknowledge(_)))
    ));

    let mut app = ParkingApp::new(SimLis3mdl::new(), ParkingConfig::default(), 1, 1).unwrap();
    let mut radio = VecTransport::default();
    let mut delay = SleepCounter::default();
    app.bus_mut().set_fail(true);
    let r = app.cycle(&mut radio, &mut delay, 0, 50);
    assert_eq!(r, Err(CycleError::Sensor(Error::Bus(ErrorKind::Bus))));
    assert_eq!(delay.slept_ns, 1_000_000_000, "sleeps even after an error");
    assert_eq!(app.samples(), 0);
    app.bus_mut().set_fail(false);
    app.step(1000, 50).unwrap();
    assert_eq!(app.samples(), 1);
}

#[test]
fn outbox_overflow_is_counted_in_the_next_heartbeat() {
    let mut sim = SimLis3mdl::new();
    sim.set_field_ut(VACANT[0], VACANT[1], VACANT[2]);
    let cfg = ParkingConfig {
        heartbeat_interval_ms: 60_000,
        ..ParkingConfig::default()
    };
    let mut app = ParkingApp::new(sim, cfg, 1, 1).unwrap();
    // No flushing for 40 minutes: heartbeats at 15 s then every 60 s = 40 frames into 16 slots.
    for t_s in 0..2400u64 {
        app.step(t_s * 1000, 90).unwrap();
    }
    let queued_total = app.outbox().next_seq();
    assert_eq!(queued_total, 40);
    assert_eq!(app.dropped(), 40 - 16);
    let mut radio = VecTransport::default();
    assert_eq!(app.flush(&mut radio, 2_400_000).unwrap(), 16);
    // The last heartbeat (seq 39) reports the drops counted before it was queued: 23.
    let last = parse(&radio.frames[15].1).unwrap();
    assert_eq!(last.seq, 39);
    assert!(matches!(last.data, Measurement::ParkingHeartbeat(h) if h.dropped == 23));
}
