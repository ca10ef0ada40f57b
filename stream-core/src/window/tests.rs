use super::*;
use telemetry::{DeviceId, DistrictId, ParkingChange, SiteId, TimeSource};

const T0: i64 = 1_700_000_040_000; // a multiple of 60 s

fn change(dev: &str, seq: u32, ts: i64, occ: bool) -> CoreReading {
    let r = telemetry::Reading {
        device: DeviceId::new(dev).unwrap(),
        site: SiteId::new("L").unwrap(),
        district: DistrictId::new("c").unwrap(),
        boot: 1,
        seq,
        ts_ms: ts,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied: occ,
            field_ut: 1.0,
        }),
    };
    CoreReading::new(r, ts)
}

fn engine(cap: u32) -> WindowEngine {
    let mut info = SiteInfo::default();
    info.lot_capacity.insert("L".into(), cap);
    let cfg = WindowConfig {
        windows_ms: vec![60_000],
        allowed_lateness_ms: 10_000,
        lot_full_for_ms: 120_000,
        ..Default::default()
    };
    WindowEngine::new(cfg, Arc::new(info))
}

fn aggs(out: &[EngineOut]) -> Vec<&WindowAggregate> {
    out.iter()
        .filter_map(|o| {
            if let EngineOut::Aggregate(a) = o {
                Some(a)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn window_closes_at_end_plus_lateness_and_late_reading_bumps_version() {
    let mut e = engine(2);
    let mut out = Vec::new();
    let t = |ms: i64| u64::try_from(ms).unwrap();
    // bay a occupied for the second half of the window: mean 0.5 × 1/2 = 0.25
    e.ingest(
        t(T0 + 31_000),
        vec![change("a", 0, T0 + 30_000, true)],
        &mut out,
    );
    assert_eq!(e.next_close(false), Some(t(T0 + 70_000)));
    e.close_until(t(T0 + 69_999), false, &mut out);
    assert!(out.is_empty(), "not before end + lateness");
    e.close_until(t(T0 + 70_000), false, &mut out);
    let a = aggs(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].version, a[0].count, a[0].scope.as_str()),
        (1, 1, "lot")
    );
    assert_eq!(a[0].metrics["occupancy_mean_ratio"], 0.25);
    assert_eq!(a[0].metrics["occupancy_max_ratio"], 0.5);
    assert_eq!(a[0].metrics["arrivals"], 1.0);
    out.clear();
    // bay b arrived at +0 s (late): mean becomes (60 + 30) / (2 × 60) = 0.75, version 2
    e.ingest(t(T0 + 80_000), vec![change("b", 0, T0, true)], &mut out);
    let a = aggs(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].version, 2);
    assert_eq!(a[0].metrics["occupancy_mean_ratio"], 0.75);
    assert_eq!(a[0].metrics["full_minutes"], 0.5);
}

#[test]
fn dwell_and_lot_full_alert_raise_and_clear() {
    let mut e = engine(1);
    let mut out = Vec::new();
    let t = |ms: i64| u64::try_from(ms).unwrap();
    e.ingest(t(T0), vec![change("a", 0, T0, true)], &mut out);
    e.ingest(
        t(T0 + 200_000),
        vec![change("a", 1, T0 + 190_000, false)],
        &mut out,
    );
    e.close_until(t(T0 + 400_000), false, &mut out);
    let alerts: Vec<_> = out
        .iter()
        .filter_map(|o| {
            if let EngineOut::Alert(a) = o {
                Some(a)
            } else {
                None
            }
        })
        .collect();
    // Full from T0; windows [T0, T0+60) and [T0+180, T0+240) have readings. Raised when the second closes
    // (full since T0 for 240 s ≥ 120 s)? No: at its end the lot is empty → the first window only marks
    // full_since, the second clears nothing because it was never raised.
    assert!(alerts.is_empty(), "{alerts:?}");
    let a = aggs(&out);
    let last = a.last().unwrap();
    assert_eq!(last.metrics["dwell_mean_s"], 190.0);
    assert_eq!(last.metrics["departures"], 1.0);

    let mut e = engine(1);
    out.clear();
    for (i, ts) in [0, 60_000, 120_000, 180_000].iter().enumerate() {
        let occ = i < 3;
        e.ingest(
            t(T0 + ts),
            vec![change("a", i as u32, T0 + ts + 1, occ)],
            &mut out,
        );
    }
    e.close_until(t(T0 + 400_000), false, &mut out);
    let alerts: Vec<_> = out
        .iter()
        .filter_map(|o| {
            if let EngineOut::Alert(a) = o {
                Some((a.alert.as_str(), a.state, a.ts_ms))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        alerts,
        vec![
            ("lot_full", AlertState::Raised, T0 + 120_000),
            ("lot_full", AlertState::Cleared, T0 + 240_000)
        ]
    );
}

/// The per-device layout the state figures rely on (see the module notes).
#[test]
fn compact_state_sizes() {
    assert_eq!(std::mem::size_of::<Entry>(), 32);
    assert_eq!(std::mem::size_of::<Hist>(), 32);
    assert_eq!(std::mem::size_of::<Dev>(), 40);
}

/// The galloping search agrees with a plain partition point for every start, bound and length.
#[test]
fn hist_partition_point_matches_plain_search() {
    for n in 0..40i64 {
        let mut h = Hist::default();
        for i in 0..n {
            h.insert_at(h.len(), ((i * 10, 0, 0), Val::Change(true)));
        }
        let keys: Vec<Key> = (0..n).map(|i| (i * 10, 0, 0)).collect();
        for from in 0..=(n as usize + 1) {
            for b in -5..(n * 10 + 5) {
                let k = (b, 0, 0);
                let got = h.partition_point(from, |x| *x < k);
                let want = if from >= keys.len() {
                    keys.len().max(from)
                } else {
                    from + keys[from..].partition_point(|x| *x < k)
                };
                assert_eq!(got, want, "n {n} from {from} bound {b}");
            }
        }
    }
}

fn offline_alerts(out: &[EngineOut]) -> Vec<(AlertState, i64, String)> {
    out.iter()
        .filter_map(|o| match o {
            EngineOut::Alert(a) if a.alert == "device_offline" => {
                Some((a.state, a.ts_ms, a.site.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Offline deadlines follow the newest reading (entries are moved lazily): a device reporting
/// every 10 s never fires; once quiet it fires once, at its last reading + 3 × 60 s interval +
/// 10 s lateness (computed by hand), and clears when it reports again; a late reading (older than
/// the newest) does not move the deadline.
#[test]
fn offline_deadline_follows_the_newest_reading() {
    let mut info = SiteInfo::default();
    info.lot_capacity.insert("L".into(), 4);
    info.devices
        .insert("a".into(), ("L".into(), telemetry::DeviceKind::Parking, 60));
    let cfg = WindowConfig {
        windows_ms: vec![60_000],
        allowed_lateness_ms: 10_000,
        offline_after_intervals: 3,
        ..Default::default()
    };
    let mut e = WindowEngine::new(cfg, Arc::new(info));
    let mut out = Vec::new();
    let t = |ms: i64| u64::try_from(ms).unwrap();
    // 40 readings, 10 s apart: each moves the deadline past the previous one's.
    for i in 0..40u32 {
        let ts = T0 + i64::from(i) * 10_000;
        e.ingest(t(ts), vec![change("a", i, ts, i % 2 == 0)], &mut out);
        e.close_until(t(ts), false, &mut out);
    }
    // A late reading (older than the newest) does not move the deadline.
    e.ingest(
        t(T0 + 390_000),
        vec![change("a", 99, T0 + 5_000, true)],
        &mut out,
    );
    let last = T0 + 390_000;
    let due = last + 3 * 60_000 + 10_000;
    e.close_until(t(due - 1), false, &mut out);
    assert!(
        offline_alerts(&out).is_empty(),
        "{:?}",
        offline_alerts(&out)
    );
    e.close_until(t(due + 600_000), false, &mut out);
    assert_eq!(
        offline_alerts(&out),
        vec![(AlertState::Raised, due, "a".to_string())]
    );
    out.clear();
    let back = due + 700_000;
    e.ingest(t(back), vec![change("a", 40, back, true)], &mut out);
    assert_eq!(
        offline_alerts(&out),
        vec![(AlertState::Cleared, back, "a".to_string())]
    );
    // And fires again, once, from the new reading.
    out.clear();
    e.close_until(t(back + 3 * 60_000 + 10_000 + 1), false, &mut out);
    assert_eq!(
        offline_alerts(&out),
        vec![(
            AlertState::Raised,
            back + 3 * 60_000 + 10_000,
            "a".to_string()
        )]
    );
}
