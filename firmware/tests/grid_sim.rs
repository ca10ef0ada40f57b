//! End to end on the host: a simulated ADE7953 replaying a voltage/power timeline → the real `GridApp`
//! → frames → `telemetry::frame::parse`. Expected events and summaries are computed by hand below.

use embedded_hal::spi::ErrorKind;
use firmware::ade7953::{Calibration, Error};
use firmware::app::{GridApp, GridConfig, Transport};
use firmware::sim::SimAde7953;
use telemetry::frame::parse;
use telemetry::{GridEvent, Measurement, PqEventKind};

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

/// Voltage timeline (V) at time `t_ms`: a sag to 190 V over [61.0 s, 61.4 s), an interruption to 0 V
/// over [90.0 s, 92.0 s) recovering through 150 V for 200 ms, a swell to 260 V over [100.0 s, 100.6 s);
/// 230 V otherwise.
fn volts(t_ms: u64) -> f32 {
    match t_ms {
        61_000..61_400 => 190.0,
        90_000..92_000 => 0.0,
        92_000..92_200 => 150.0,
        100_000..100_600 => 260.0,
        _ => 230.0,
    }
}

#[test]
fn sim_startup_applies_the_datasheet_unlock_sequence() {
    let app = GridApp::new(
        SimAde7953::new(Calibration::default()),
        GridConfig::default(),
        5,
        1,
    )
    .unwrap();
    assert_eq!(app.chip_version(), SimAde7953::VERSION);
    let sim = app.release();
    assert_eq!(sim.optimum_setting(), 0x0030);
    assert_eq!(sim.config(), 0x8004);
    assert_eq!(sim.rejected_writes(), 0);
}

#[test]
fn events_and_summaries_from_a_replayed_timeline() {
    let cfg = GridConfig::default();
    let mut app = GridApp::new(SimAde7953::new(cfg.calibration), cfg, 0x0100, 9).unwrap();
    let mut radio = VecTransport::default();
    // 2 kW, 0.5 kvar, 50 Hz throughout; sample and advance the part's clock every 200 ms for 180 s.
    let mut t_ms = 0u64;
    while t_ms < 180_000 {
        let sim = app.bus_mut();
        sim.set(volts(t_ms), 9.0, 2.0, 0.5, 50.0);
        app.step(t_ms).unwrap();
        radio.now_ms = t_ms;
        app.flush(&mut radio, t_ms).unwrap();
        app.bus_mut().advance_ms(200);
        t_ms += 200;
    }
    let frames: Vec<(i64, telemetry::frame::Frame)> = radio
        .frames
        .iter()
        .map(|(rx, b)| {
            let f = parse(b).unwrap();
            (f.event_time_ms(*rx as i64).0, f)
        })
        .collect();
    let events: Vec<(i64, GridEvent)> = frames
        .iter()
        .filter_map(|(t, f)| match f.data {
            Measurement::GridEvent(e) => Some((*t, e)),
            _ => None,
        })
        .collect();
    // By hand: the sag starts with the sample at 61.0 s and ends with the first sample back at
    // ≥ 0.92 pu (211.6 V), 61.4 s: 400 ms, extreme 190 V. The interruption: 90.0 s to 92.2 s (150 V is
    // still below 211.6 V), 2200 ms, extreme 0 V. The swell: 100.0 s to 100.6 s, 600 ms, 260 V.
    let want = [
        (
            61_000,
            GridEvent {
                event: PqEventKind::Sag,
                duration_ms: 400,
                extreme_v: 190.0,
            },
        ),
        (
            90_000,
            GridEvent {
                event: PqEventKind::Interruption,
                duration_ms: 2200,
                extreme_v: 0.0,
            },
        ),
        (
            100_000,
            GridEvent {
                event: PqEventKind::Swell,
                duration_ms: 600,
                extreme_v: 260.0,
            },
        ),
    ];
    assert_eq!(events.len(), 3, "{events:?}");
    for ((t, e), (wt, we)) in events.iter().zip(want) {
        assert_eq!(*t, wt);
        assert_eq!(e.event, we.event);
        assert_eq!(e.duration_ms, we.duration_ms);
        assert!((e.extreme_v - we.extreme_v).abs() < 0.011, "{e:?}");
    }
    let summaries: Vec<(i64, telemetry::GridSummary)> = frames
        .iter()
        .filter_map(|(t, f)| match f.data {
            Measurement::GridSummary(s) => Some((*t, s)),
            _ => None,
        })
        .collect();
    // Minutes [0,60) and [60,120) close at 60 s and 120 s; [120,180) is still open at 179.8 s.
    assert_eq!(summaries.len(), 2);
    let (t0, s0) = summaries[0];
    assert_eq!(t0, 0, "summary time = interval start");
    assert_eq!(s0.interval_s, 60);
    assert!((s0.v_rms_v - 230.0).abs() < 0.011 && (s0.v_min_v - 230.0).abs() < 0.011);
    assert!((s0.p_kw - 2.0).abs() < 0.002 && (s0.q_kvar - 0.5).abs() < 0.002);
    // PF = 2 / sqrt(2² + 0.5²) = 0.97014.
    assert!((s0.pf - 0.9701).abs() < 0.0002, "{s0:?}");
    assert!((s0.freq_hz - 50.0).abs() < 0.01);
    assert!((s0.i_rms_a - 9.0).abs() < 0.06);
    // Energy read at the sample at 59.8 s covers 59.8 s of 2 kW (the read at t covers up to t):
    // 2 kW × 59.8 s = 33.22 Wh; the frame carries whole Wh.
    assert!((s0.energy_kwh - 0.033).abs() <= 0.0011, "{s0:?}");
    let (t1, s1) = summaries[1];
    assert_eq!(t1, 60_000);
    // Minute 2 holds 300 samples: 2 at 190 V, 10 at 0 V, 1 at 150 V, 3 at 260 V, 284 at 230 V.
    let mean = (2.0 * 190.0 + 10.0 * 0.0 + 150.0 + 3.0 * 260.0 + 284.0 * 230.0) / 300.0;
    assert!(
        (s1.v_rms_v - mean).abs() < 0.011,
        "{} vs {mean}",
        s1.v_rms_v
    );
    assert_eq!((s1.v_min_v, s1.v_max_v), (0.0, 260.0));
    // 2 kW × 119.8 s = 66.56 Wh.
    assert!((s1.energy_kwh - 0.067).abs() <= 0.0011, "{s1:?}");
    assert_eq!((app.events(), app.summaries(), app.dropped()), (3, 2, 0));
    // seq contiguous from 0.
    for (i, (_, f)) in frames.iter().enumerate() {
        assert_eq!((f.addr, f.boot, f.seq), (0x0100, 9, i as u32));
    }
    // EN 50160 frequency blocks: 17 ten-second blocks closed, all at 50 Hz.
    assert_eq!(
        (
            app.compliance().freq_blocks,
            app.compliance().freq_blocks_ok
        ),
        (17, 17)
    );
}

#[test]
fn spi_errors_are_errors() {
    let mut sim = SimAde7953::new(Calibration::default());
    sim.set_fail(true);
    assert_eq!(
        GridApp::new(sim, GridConfig::default(), 1, 1).err(),
        Some(Error::Bus(ErrorKind::Other))
    );
    let mut app = GridApp::new(
        SimAde7953::new(Calibration::default()),
        GridConfig::default(),
        1,
        1,
    )
    .unwrap();
    app.bus_mut().set_fail(true);
    assert_eq!(app.step(0), Err(Error::Bus(ErrorKind::Other)));
    assert_eq!(app.samples(), 0);
}
