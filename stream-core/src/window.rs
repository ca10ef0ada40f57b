//! The window engine: a sans-IO struct that assigns readings to event-time tumbling windows, computes
//! window results per site (lot, feeder), per grid device, raises and clears alerts, and issues corrected
//! versions for late readings. The timely operator `"Aggregate"` wraps it (see [`crate::dataflow`]).
//!
//! # Design notes
//! - **Time.** The engine is driven by watermark times `t` (ms): `ingest(t, readings)` and
//!   `close_until(t)`. A window `[s, s+L)` closes (first result, version 1) at `s + L + lateness`.
//!   A reading ingested at `t` for a window already closed makes a correction (version + 1) if the
//!   recomputed result differs. Readings older than `t − correction_horizon` never get here (the
//!   `"Dedup"` operator counts them as `too_late`).
//! - **Results are pure functions of the retained history.** Each device keeps its readings of the
//!   retention period in a sorted `VecDeque` keyed by `(ts, boot, seq)` (`Hist`: appends and
//!   front evictions are O(1), range lookups binary searches; sized exactly while small, so a device
//!   with one reading costs one 64-byte slot instead of a B-tree node), plus the last evicted one as a
//!   base state. A window result is recomputed from that history, so arrival order within lateness never
//!   matters and a correction equals what an in-order run would have produced. Parking occupancy carries
//!   bay state across windows, so a late reading also re-checks later emitted windows up to the device's
//!   next reading (only changed results get a new version).
//! - **Windows with no reading of the site are not emitted** (the dashboard shows the latest row).
//! - **Alerts** are evaluated when a site's smallest window closes (first version only), plus
//!   `device_offline` deadlines that fire when the watermark passes `last_seen + k × interval +
//!   lateness`. Deadlines do not fire during the final flush of a finite replay.

use crate::model::{SiteInfo, WindowConfig, window_start};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use telemetry::message::{Alert, AlertState, WindowAggregate};
use telemetry::{DeviceKind, Measurement, PqEventKind, Reading};

/// An output of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineOut {
    /// Window result.
    Aggregate(WindowAggregate),
    /// Alert transition.
    Alert(Alert),
}

type Key = (i64, u32, u32);
type Metrics = BTreeMap<String, f64>;
/// Row id (`""` = site row) → (version, count, metrics).
type Emitted = BTreeMap<String, (u32, u64, Metrics)>;

/// A device's retained readings, sorted by key, no duplicate keys.
#[derive(Debug, Default)]
struct Hist(VecDeque<(Key, Measurement)>);

impl Hist {
    fn lower(&self, b: Bound<&Key>) -> usize {
        match b {
            Bound::Included(k) => self.0.partition_point(|(x, _)| x < k),
            Bound::Excluded(k) => self.0.partition_point(|(x, _)| x <= k),
            Bound::Unbounded => 0,
        }
    }

    fn upper(&self, b: Bound<&Key>) -> usize {
        match b {
            Bound::Included(k) => self.0.partition_point(|(x, _)| x <= k),
            Bound::Excluded(k) => self.0.partition_point(|(x, _)| x < k),
            Bound::Unbounded => self.0.len(),
        }
    }

    /// Entries with keys in `r`, in key order.
    fn range(
        &self,
        r: impl RangeBounds<Key>,
    ) -> impl DoubleEndedIterator<Item = (&Key, &Measurement)> {
        let lo = self.lower(r.start_bound());
        let hi = self.upper(r.end_bound()).max(lo);
        self.0.range(lo..hi).map(|(k, m)| (k, m))
    }

    /// Inserts or replaces the entry of `k`.
    fn insert(&mut self, k: Key, m: Measurement) {
        if self.0.back().is_none_or(|(b, _)| *b < k) {
            if self.0.len() == self.0.capacity() && self.0.len() < 4 {
                // Small histories grow one slot at a time (most devices hold few readings).
                self.0.reserve_exact(1);
            }
            self.0.push_back((k, m));
            return;
        }
        let i = self.0.partition_point(|(x, _)| *x < k);
        match self.0.get_mut(i) {
            Some(e) if e.0 == k => e.1 = m,
            _ => self.0.insert(i, (k, m)),
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug, Default)]
struct Dev {
    hist: Hist,
    base: Option<(Key, Measurement)>,
    last_seen: Option<i64>,
    offline_at: Option<u64>,
    offline_raised: bool,
    battery: Option<(Key, f32)>,
    battery_raised: bool,
}

#[derive(Debug)]
struct Site {
    kind: DeviceKind,
    district: String,
    devs: BTreeMap<String, Dev>,
    /// (L, start) → (version, count, metrics) of the site row and of device rows.
    emitted: BTreeMap<(i64, i64), Emitted>,
    dirty: BTreeSet<(i64, i64)>,
    full_since: Option<i64>,
    full_raised: bool,
    volt_raised: bool,
    intr_raised: bool,
}

/// The engine state of one worker (all sites routed to it).
#[derive(Debug)]
pub struct WindowEngine {
    cfg: WindowConfig,
    info: Arc<SiteInfo>,
    sites: BTreeMap<String, Site>,
    /// (close time, site, L, start).
    open: BTreeSet<(u64, String, i64, i64)>,
    /// (fire time, site, device).
    deadlines: BTreeSet<(u64, String, String)>,
    last_evict: i64,
}

fn key(r: &Reading) -> Key {
    (r.ts_ms, r.boot, r.seq)
}

fn occupied(m: &Measurement) -> Option<bool> {
    match m {
        Measurement::ParkingChange(c) => Some(c.occupied),
        Measurement::ParkingHeartbeat(h) => Some(h.occupied),
        _ => None,
    }
}

fn to_u64(t: i64) -> u64 {
    u64::try_from(t.max(0)).unwrap_or(0)
}

const SITE_ROW: &str = "";

impl WindowEngine {
    /// A new engine.
    pub fn new(cfg: WindowConfig, info: Arc<SiteInfo>) -> Self {
        WindowEngine {
            cfg,
            info,
            sites: BTreeMap::new(),
            open: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            last_evict: i64::MIN,
        }
    }

    /// The next time at which `close_until` has work (window close or offline deadline), if any.
    /// `finishing`: offline deadlines are left out (end of a finite replay).
    pub fn next_close(&self, finishing: bool) -> Option<u64> {
        let w = self.open.first().map(|o| o.0);
        if finishing {
            return w;
        }
        let d = self.deadlines.first().map(|d| d.0);
        match (w, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Number of devices with retained history and of retained readings (for state-size figures).
    pub fn state_size(&self) -> (usize, usize) {
        let devs = self.sites.values().map(|s| s.devs.len()).sum();
        let rows = self
            .sites
            .values()
            .flat_map(|s| s.devs.values())
            .map(|d| d.hist.len())
            .sum();
        (devs, rows)
    }

    /// Adds deduplicated readings at watermark time `t`. Corrections and offline clears go to `out`.
    pub fn ingest(&mut self, t: u64, mut readings: Vec<Reading>, out: &mut Vec<EngineOut>) {
        readings.sort_by(|a, b| (a.device.as_str(), key(a)).cmp(&(b.device.as_str(), key(b))));
        let lat = self.cfg.allowed_lateness_ms;
        for r in readings {
            let site_id = r.site.to_string();
            let dev_id = r.device.to_string();
            let site = self.sites.entry(site_id.clone()).or_insert_with(|| Site {
                kind: r.kind(),
                district: r.district.to_string(),
                devs: BTreeMap::new(),
                emitted: BTreeMap::new(),
                dirty: BTreeSet::new(),
                full_since: None,
                full_raised: false,
                volt_raised: false,
                intr_raised: false,
            });
            if site.kind != r.kind() {
                // A site id used by both kinds: keep the first kind's series clean.
                continue;
            }
            let dev = site.devs.entry(dev_id.clone()).or_default();
            let k = key(&r);
            // The next reading that carries state forward (bay state, energy register).
            let next_of_dev = dev
                .hist
                .range((k.0, k.1, k.2.saturating_add(1))..)
                .find(|(_, m)| occupied(m).is_some() || matches!(m, Measurement::GridSummary(_)))
                .map(|(k, _)| k.0);
            dev.hist.insert(k, r.data.clone());
            if let Measurement::ParkingHeartbeat(h) = &r.data
                && dev.battery.is_none_or(|b| b.0 < k)
            {
                dev.battery = Some((k, h.battery_pct));
            }
            if dev.last_seen.is_none_or(|s| s < r.ts_ms) {
                dev.last_seen = Some(r.ts_ms);
                if dev.offline_raised {
                    dev.offline_raised = false;
                    out.push(EngineOut::Alert(Alert {
                        alert: "device_offline".into(),
                        state: AlertState::Cleared,
                        district: site.district.clone(),
                        site: dev_id.clone(),
                        ts_ms: r.ts_ms,
                        value: 0.0,
                        message: format!("device {dev_id} reports again"),
                    }));
                }
                if let Some(old) = dev.offline_at.take() {
                    self.deadlines
                        .remove(&(old, site_id.clone(), dev_id.clone()));
                }
                if let Some(iv) = self.info.interval_ms(&dev_id) {
                    let at =
                        to_u64(r.ts_ms + iv * i64::from(self.cfg.offline_after_intervals) + lat);
                    dev.offline_at = Some(at);
                    self.deadlines.insert((at, site_id.clone(), dev_id.clone()));
                }
            }
            for &len in &self.cfg.windows_ms {
                let start = window_start(r.ts_ms, len);
                if site.emitted.contains_key(&(len, start)) {
                    site.dirty.insert((len, start));
                    // Bay state / energy predecessor carry forward until the device's next reading.
                    let until = next_of_dev.map_or(i64::MAX, |n| window_start(n, len));
                    if until > start {
                        let later: Vec<_> = site
                            .emitted
                            .range((len, start + 1)..=(len, until))
                            .map(|(k, _)| *k)
                            .collect();
                        site.dirty.extend(later);
                    }
                } else {
                    self.open
                        .insert((to_u64(start + len + lat), site_id.clone(), len, start));
                }
            }
        }
        self.flush_dirty(out);
        self.evict(t);
    }

    fn flush_dirty(&mut self, out: &mut Vec<EngineOut>) {
        for (site_id, site) in &mut self.sites {
            let dirty = std::mem::take(&mut site.dirty);
            for (len, start) in dirty {
                let rows = compute(&self.cfg, &self.info, site_id, site, len, start);
                let prev = site.emitted.entry((len, start)).or_default();
                let mut changed = Vec::new();
                for (id, count, metrics) in rows {
                    let entry = prev.entry(id.clone()).or_insert((0, 0, Metrics::new()));
                    if entry.0 > 0 && entry.1 == count && entry.2 == metrics {
                        continue;
                    }
                    entry.0 += 1;
                    entry.1 = count;
                    entry.2 = metrics.clone();
                    changed.push((id, entry.0, count, metrics));
                }
                for (id, version, count, metrics) in changed {
                    out.push(EngineOut::Aggregate(row(
                        site_id, site, &id, len, start, version, count, metrics,
                    )));
                }
            }
        }
    }

    /// Closes every window and fires every deadline due at or before `t`, in time order.
    pub fn close_until(&mut self, t: u64, finishing: bool, out: &mut Vec<EngineOut>) {
        loop {
            let w = self.open.first().filter(|o| o.0 <= t).cloned();
            let d = if finishing {
                None
            } else {
                self.deadlines.first().filter(|d| d.0 <= t).cloned()
            };
            match (w, d) {
                (Some(w), Some(d)) if d.0 < w.0 => self.fire_deadline(d, out),
                (Some(w), _) => {
                    self.open.remove(&w);
                    self.close_window(&w.1, w.2, w.3, out);
                }
                (None, Some(d)) => self.fire_deadline(d, out),
                (None, None) => break,
            }
        }
    }

    fn fire_deadline(&mut self, d: (u64, String, String), out: &mut Vec<EngineOut>) {
        self.deadlines.remove(&d);
        let (at, site_id, dev_id) = d;
        let Some(site) = self.sites.get_mut(&site_id) else {
            return;
        };
        let Some(dev) = site.devs.get_mut(&dev_id) else {
            return;
        };
        dev.offline_at = None;
        if dev.offline_raised {
            return;
        }
        dev.offline_raised = true;
        let last = dev.last_seen.unwrap_or(0);
        out.push(EngineOut::Alert(Alert {
            alert: "device_offline".into(),
            state: AlertState::Raised,
            district: site.district.clone(),
            site: dev_id.clone(),
            ts_ms: i64::try_from(at).unwrap_or(i64::MAX),
            value: (i64::try_from(at).unwrap_or(i64::MAX) - last) as f64 / 60_000.0,
            message: format!(
                "device {dev_id} missed {} report intervals",
                self.cfg.offline_after_intervals
            ),
        }));
    }

    fn close_window(&mut self, site_id: &str, len: i64, start: i64, out: &mut Vec<EngineOut>) {
        let Some(site) = self.sites.get_mut(site_id) else {
            return;
        };
        let rows = compute(&self.cfg, &self.info, site_id, site, len, start);
        let mut emitted = BTreeMap::new();
        let mut site_metrics = Metrics::new();
        for (id, count, metrics) in rows {
            if id == SITE_ROW {
                site_metrics = metrics.clone();
            }
            emitted.insert(id.clone(), (1, count, metrics.clone()));
            out.push(EngineOut::Aggregate(row(
                site_id, site, &id, len, start, 1, count, metrics,
            )));
        }
        site.emitted.insert((len, start), emitted);
        if len == self.cfg.base_window_ms() {
            site_alerts(
                &self.cfg,
                site_id,
                site,
                start,
                start + len,
                &site_metrics,
                out,
            );
        }
    }

    fn evict(&mut self, t: u64) {
        let t = i64::try_from(t).unwrap_or(i64::MAX);
        let base = self.cfg.base_window_ms();
        if self.last_evict != i64::MIN && t - self.last_evict < base {
            return;
        }
        self.last_evict = t;
        let cut = t.saturating_sub(self.cfg.retention_ms());
        for site in self.sites.values_mut() {
            for dev in site.devs.values_mut() {
                while dev.hist.0.front().is_some_and(|e| e.0.0 < cut) {
                    dev.base = dev.hist.0.pop_front();
                }
                if dev.hist.0.capacity() > 2 * dev.hist.0.len() + 4 {
                    dev.hist.0.shrink_to_fit();
                }
            }
            site.emitted.retain(|(_, s), _| *s >= cut);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    site_id: &str,
    site: &Site,
    id: &str,
    len: i64,
    start: i64,
    version: u32,
    count: u64,
    metrics: Metrics,
) -> WindowAggregate {
    let (scope, id) = if id == SITE_ROW {
        (
            if site.kind == DeviceKind::Parking {
                "lot"
            } else {
                "feeder"
            },
            site_id,
        )
    } else {
        ("device", id)
    };
    WindowAggregate {
        kind: site.kind,
        scope: scope.into(),
        id: id.into(),
        district: site.district.clone(),
        start_ms: start,
        window_ms: len,
        version,
        count,
        metrics,
    }
}

/// Rows of one window: the site row (id `""`) and, for grid, one row per device with readings in it.
fn compute(
    cfg: &WindowConfig,
    info: &SiteInfo,
    site_id: &str,
    site: &Site,
    len: i64,
    s: i64,
) -> Vec<(String, u64, Metrics)> {
    let e = s + len;
    match site.kind {
        DeviceKind::Parking => {
            let cap = info
                .lot_capacity
                .get(site_id)
                .map(|c| f64::from(*c))
                .unwrap_or_else(|| site.devs.len().max(1) as f64);
            let (count, m) = parking_metrics(site.devs.iter(), cap, s, e, cfg.full_ratio);
            vec![(SITE_ROW.to_string(), count, m)]
        }
        DeviceKind::Grid => {
            let nominal = info.feeder_nominal_v.get(site_id).copied().unwrap_or(230.0);
            let band = cfg.voltage_band_ratio;
            let mut rows = Vec::new();
            let (count, m) = grid_metrics(site.devs.values(), nominal, band, s, e);
            rows.push((SITE_ROW.to_string(), count, m));
            for (id, d) in &site.devs {
                if d.hist.range((s, 0, 0)..(e, 0, 0)).next().is_some() {
                    let (c, m) = grid_metrics(std::iter::once(d), nominal, band, s, e);
                    rows.push((id.clone(), c, m));
                }
            }
            rows
        }
    }
}

fn before(d: &Dev, k: Key) -> Option<(&Key, &Measurement)> {
    d.hist
        .range(..k)
        .next_back()
        .or(d.base.as_ref().map(|(k, m)| (k, m)))
}

/// Parking window metrics over bays; see the module notes. Returns (readings in window, metrics).
fn parking_metrics<'a>(
    devs: impl Iterator<Item = (&'a String, &'a Dev)>,
    cap: f64,
    s: i64,
    e: i64,
    full_ratio: f64,
) -> (u64, Metrics) {
    let mut cur = 0i64;
    let mut points: Vec<(Key, usize, bool)> = Vec::new();
    let mut state: Vec<bool> = Vec::new();
    let (mut arrivals, mut departures, mut dwell_sum, mut dwell_n) = (0u64, 0u64, 0f64, 0u64);
    for (i, (_, d)) in devs.enumerate() {
        let st = before(d, (s, 0, 0))
            .and_then(|(_, m)| occupied(m))
            .unwrap_or(false);
        state.push(st);
        cur += i64::from(st);
        for (k, m) in d.hist.range((s, 0, 0)..(e, 0, 0)) {
            if let Some(o) = occupied(m) {
                points.push((*k, i, o));
            }
            if let Measurement::ParkingChange(c) = m {
                if c.occupied {
                    arrivals += 1;
                } else {
                    departures += 1;
                    let prev_change = d
                        .hist
                        .range(..*k)
                        .rev()
                        .find(|(_, m)| matches!(m, Measurement::ParkingChange(_)));
                    if let Some((pk, Measurement::ParkingChange(p))) = prev_change
                        && p.occupied
                    {
                        dwell_sum += (k.0 - pk.0) as f64 / 1000.0;
                        dwell_n += 1;
                    }
                }
            }
        }
    }
    let count = points.len() as u64;
    points.sort_by_key(|p| (p.0, p.1));
    let (mut area, mut full_ms, mut max, mut t_prev) = (0f64, 0i64, cur, s);
    let full = |c: i64| c as f64 / cap >= full_ratio;
    for (k, i, o) in points {
        let dt = k.0 - t_prev;
        area += cur as f64 * dt as f64;
        if full(cur) {
            full_ms += dt;
        }
        cur += i64::from(o) - i64::from(state[i]);
        state[i] = o;
        max = max.max(cur);
        t_prev = k.0;
    }
    let dt = e - t_prev;
    area += cur as f64 * dt as f64;
    if full(cur) {
        full_ms += dt;
    }
    let mut m = Metrics::new();
    m.insert("occupancy_mean_ratio".into(), area / (cap * (e - s) as f64));
    m.insert("occupancy_max_ratio".into(), max as f64 / cap);
    m.insert("occupancy_end_ratio".into(), cur as f64 / cap);
    m.insert("arrivals".into(), arrivals as f64);
    m.insert("departures".into(), departures as f64);
    m.insert("full_minutes".into(), full_ms as f64 / 60_000.0);
    m.insert("capacity_bays".into(), cap);
    m.insert("dwell_samples".into(), dwell_n as f64);
    if dwell_n > 0 {
        m.insert("dwell_mean_s".into(), dwell_sum / dwell_n as f64);
    }
    (count, m)
}

/// Grid window metrics over devices. Returns (readings in window, metrics).
fn grid_metrics<'a>(
    devs: impl Iterator<Item = &'a Dev>,
    nominal: f64,
    band: f64,
    s: i64,
    e: i64,
) -> (u64, Metrics) {
    let mut n = 0u64;
    let mut count = 0u64;
    let (mut vmin, mut vmax, mut vsum) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    let (mut psum, mut pmax, mut qsum, mut qmax, mut pfsum) =
        (0f64, f64::NEG_INFINITY, 0f64, f64::NEG_INFINITY, 0f64);
    let (mut fmin, mut fmax, mut ok, mut energy) = (f64::INFINITY, f64::NEG_INFINITY, 0u64, 0f64);
    let (mut sags, mut swells, mut intr) = (0u64, 0u64, 0u64);
    for d in devs {
        let mut first: Option<f64> = None;
        let mut last: Option<f64> = None;
        for (_, m) in d.hist.range((s, 0, 0)..(e, 0, 0)) {
            count += 1;
            match m {
                Measurement::GridSummary(g) => {
                    n += 1;
                    vmin = vmin.min(f64::from(g.v_min_v));
                    vmax = vmax.max(f64::from(g.v_max_v));
                    vsum += f64::from(g.v_rms_v);
                    psum += f64::from(g.p_kw);
                    pmax = pmax.max(f64::from(g.p_kw));
                    qsum += f64::from(g.q_kvar);
                    qmax = qmax.max(f64::from(g.q_kvar));
                    pfsum += f64::from(g.pf);
                    fmin = fmin.min(f64::from(g.freq_hz));
                    fmax = fmax.max(f64::from(g.freq_hz));
                    let v = f64::from(g.v_rms_v);
                    if (v - nominal).abs() <= band * nominal {
                        ok += 1;
                    }
                    first.get_or_insert(g.energy_kwh);
                    last = Some(g.energy_kwh);
                }
                Measurement::GridEvent(ev) => match ev.event {
                    PqEventKind::Sag => sags += 1,
                    PqEventKind::Swell => swells += 1,
                    PqEventKind::Interruption => intr += 1,
                },
                _ => {}
            }
        }
        if let (Some(f), Some(l)) = (first, last) {
            let prev = d
                .hist
                .range(..(s, 0, 0))
                .rev()
                .chain(d.base.iter().map(|(k, m)| (k, m)))
                .find_map(|(_, m)| match m {
                    Measurement::GridSummary(g) => Some(g.energy_kwh),
                    _ => None,
                })
                .unwrap_or(f);
            energy += (l - prev).max(0.0);
        }
    }
    let mut m = Metrics::new();
    if n > 0 {
        let nf = n as f64;
        m.insert("summaries".into(), nf);
        m.insert("v_rms_min_v".into(), vmin);
        m.insert("v_rms_mean_v".into(), vsum / nf);
        m.insert("v_rms_max_v".into(), vmax);
        m.insert("p_mean_kw".into(), psum / nf);
        m.insert("p_max_kw".into(), pmax);
        m.insert("q_mean_kvar".into(), qsum / nf);
        m.insert("q_max_kvar".into(), qmax);
        m.insert("pf_mean".into(), pfsum / nf);
        m.insert("freq_min_hz".into(), fmin);
        m.insert("freq_max_hz".into(), fmax);
        m.insert("energy_kwh".into(), energy);
        m.insert("en50160_ok_ratio".into(), ok as f64 / nf);
    }
    m.insert("sags".into(), sags as f64);
    m.insert("swells".into(), swells as f64);
    m.insert("interruptions".into(), intr as f64);
    (count, m)
}

fn alert(
    name: &str,
    state: AlertState,
    site_id: &str,
    site: &Site,
    ts_ms: i64,
    value: f64,
    message: String,
) -> EngineOut {
    EngineOut::Alert(Alert {
        alert: name.into(),
        state,
        district: site.district.clone(),
        site: site_id.into(),
        ts_ms,
        value,
        message,
    })
}

fn site_alerts(
    cfg: &WindowConfig,
    site_id: &str,
    site: &mut Site,
    s: i64,
    e: i64,
    m: &Metrics,
    out: &mut Vec<EngineOut>,
) {
    match site.kind {
        DeviceKind::Parking => {
            let end = m.get("occupancy_end_ratio").copied().unwrap_or(0.0);
            if end >= cfg.full_ratio {
                let since = *site.full_since.get_or_insert(s);
                if !site.full_raised && e - since >= cfg.lot_full_for_ms {
                    site.full_raised = true;
                    out.push(alert(
                        "lot_full",
                        AlertState::Raised,
                        site_id,
                        site,
                        e,
                        end,
                        format!("lot {site_id} full ({:.0} %)", end * 100.0),
                    ));
                }
            } else {
                site.full_since = None;
                if site.full_raised {
                    site.full_raised = false;
                    out.push(alert(
                        "lot_full",
                        AlertState::Cleared,
                        site_id,
                        site,
                        e,
                        end,
                        format!("lot {site_id} has space again"),
                    ));
                }
            }
            // Battery per device, from its newest heartbeat.
            let mut batt = Vec::new();
            for (id, d) in &mut site.devs {
                let Some((_, pct)) = d.battery else { continue };
                let pct = f64::from(pct);
                if !d.battery_raised && pct < cfg.battery_low_pct {
                    d.battery_raised = true;
                    batt.push((id.clone(), AlertState::Raised, pct));
                } else if d.battery_raised && pct > cfg.battery_clear_pct {
                    d.battery_raised = false;
                    batt.push((id.clone(), AlertState::Cleared, pct));
                }
            }
            for (id, st, pct) in batt {
                out.push(alert(
                    "battery_low",
                    st,
                    &id,
                    site,
                    e,
                    pct,
                    format!("device {id} battery {pct:.0} %"),
                ));
            }
        }
        DeviceKind::Grid => {
            if let Some(v) = m.get("v_rms_mean_v").copied() {
                let bad = m.get("en50160_ok_ratio").is_some_and(|r| *r < 1.0);
                if bad && !site.volt_raised {
                    site.volt_raised = true;
                    out.push(alert(
                        "voltage_out_of_band",
                        AlertState::Raised,
                        site_id,
                        site,
                        e,
                        v,
                        format!("feeder {site_id} voltage outside EN 50160 band"),
                    ));
                } else if !bad && site.volt_raised {
                    site.volt_raised = false;
                    out.push(alert(
                        "voltage_out_of_band",
                        AlertState::Cleared,
                        site_id,
                        site,
                        e,
                        v,
                        format!("feeder {site_id} voltage back in band"),
                    ));
                }
            }
            let intr = m.get("interruptions").copied().unwrap_or(0.0);
            if intr > 0.0 && !site.intr_raised {
                site.intr_raised = true;
                out.push(alert(
                    "interruption",
                    AlertState::Raised,
                    site_id,
                    site,
                    s,
                    intr,
                    format!("interruption on feeder {site_id}"),
                ));
            } else if intr == 0.0 && site.intr_raised {
                site.intr_raised = false;
                out.push(alert(
                    "interruption",
                    AlertState::Cleared,
                    site_id,
                    site,
                    e,
                    0.0,
                    format!("feeder {site_id} supplied again"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
