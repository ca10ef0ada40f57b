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
//!   retention period sorted by `(ts, boot, seq)` (`Hist`: appends and front evictions are O(1),
//!   range lookups binary searches), plus the last evicted one as a base state. A window result is
//!   recomputed from that history, so arrival order within lateness never matters and a correction
//!   equals what an in-order run would have produced. Parking occupancy carries bay state across
//!   windows, so a late reading also re-checks later emitted windows up to the device's next reading
//!   (only changed results get a new version).
//! - **Windows with no reading of the site are not emitted** (the dashboard shows the latest row).
//! - **Alerts** are evaluated when a site's smallest window closes (first version only), plus
//!   `device_offline` deadlines that fire when the watermark passes `last_seen + k × interval +
//!   lateness`. Deadlines do not fire during the final flush of a finite replay.
//!
//! # State layout (bytes per device)
//! Readings arrive with their ids as process-wide symbols ([`crate::symbol::Sym`]); per-core
//! [`SlotMap`]s (4 bytes per symbol) give a site's and a device's dense index without hashing (a
//! device seen under a second site gets its own series through a small pair map). Per-device state
//! is a 40-byte `Dev` in one flat `Vec` plus its symbol index (4 bytes), and a site lists its
//! devices as indices in id order (names compared through [`Names`]); site names stay in a small
//! local [`Interner`] for the ordered sets. A history
//! entry is 32 bytes: the key and a compact value that keeps only what the windows use (bay state,
//! the heartbeat/change distinction, the power-quality event kind; a grid summary boxed). A history
//! of one entry is stored inline (no allocation), the base state is the history's first element
//! (flagged), the last-seen time is the last entry's, the offline deadline is recomputed from it,
//! and the newest heartbeat's battery level sits in a side map only for devices that sent one.
//! Iteration orders (sites, devices, closing windows, deadlines) are the id-string orders of the
//! earlier `BTreeMap<String, _>` layout, so results (including floating-point sums) are unchanged;
//! a batch is processed grouped by device symbol, which only reorders independent devices.
//!
//! # Per-reading path
//! No string is hashed or compared per reading: the batch is sorted by `(device symbol, key,
//! position)`; each known device's newest entry is read once up front (independent loads, so the
//! CPU overlaps the cache misses of long cold histories); a site remembers the newest pending
//! window of its two smallest lengths, so most readings skip the `emitted` / `pending` look-ups;
//! the device sweep that evicts old history runs only when some retained entry can be older than
//! the cut (a lower bound kept on insert).

use crate::model::{CoreReading, DevReg, Interner, SiteInfo, WindowConfig, window_start};
use crate::symbol::{Names, SlotMap};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use telemetry::message::{Alert, AlertState, WindowAggregate};
use telemetry::{DeviceKind, GridSummary, Measurement, PqEventKind};

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

/// What the windows need of a measurement.
#[derive(Debug, Clone)]
enum Val {
    Change(bool),
    Beat(bool),
    Summary(Box<GridSummary>),
    Event(PqEventKind),
}

impl Val {
    fn new(m: &Measurement) -> Val {
        match m {
            Measurement::ParkingChange(c) => Val::Change(c.occupied),
            Measurement::ParkingHeartbeat(h) => Val::Beat(h.occupied),
            Measurement::GridSummary(g) => Val::Summary(Box::new(*g)),
            Measurement::GridEvent(e) => Val::Event(e.event),
        }
    }
}

type Entry = (Key, Val);

/// Sorted entries; one entry inline, more behind one pointer (so the enum stays 32 bytes).
#[derive(Debug, Default)]
enum Hist {
    #[default]
    Empty,
    One(Entry),
    #[allow(clippy::box_collection)]
    Many(Box<VecDeque<Entry>>),
}

impl Hist {
    fn len(&self) -> usize {
        match self {
            Hist::Empty => 0,
            Hist::One(_) => 1,
            Hist::Many(v) => v.len(),
        }
    }

    fn slices(&self) -> (&[Entry], &[Entry]) {
        match self {
            Hist::Empty => (&[], &[]),
            Hist::One(e) => (std::slice::from_ref(e), &[]),
            Hist::Many(v) => v.as_slices(),
        }
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        match self {
            Hist::Empty => None,
            Hist::One(e) => (i == 0).then_some(e),
            Hist::Many(v) => v.get(i),
        }
    }

    /// First index `>= from` whose entry fails `pred` (entries from `from` on are sorted, `pred`
    /// true on a prefix). Searches from the back, widening the step (most lookups are for recent
    /// windows, near the end of a long history), then binary search inside the last step.
    fn partition_point(&self, from: usize, pred: impl Fn(&Key) -> bool) -> usize {
        let n = self.len();
        // Probe the two slices directly (no enum match and ring-index arithmetic per probe).
        let (a, b) = self.slices();
        let at = |i: usize| match a.get(i) {
            Some(e) => pred(&e.0),
            None => b.get(i - a.len()).is_some_and(|e| pred(&e.0)),
        };
        if from >= n || at(n - 1) {
            return n.max(from);
        }
        // Invariant: entry `hi` fails; find `lo` with entry `lo` passing (or `lo` = `from`).
        let (mut hi, mut step) = (n - 1, 1usize);
        let mut lo = loop {
            match hi.checked_sub(step) {
                Some(i) if i > from => {
                    if at(i) {
                        break i + 1;
                    }
                    hi = i;
                    step *= 2;
                }
                _ => {
                    if at(from) {
                        break from + 1;
                    }
                    return from;
                }
            }
        };
        // Entries before `lo` pass; entry `hi` fails; answer in `lo..=hi`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn iter_range(&self, lo: usize, hi: usize) -> impl DoubleEndedIterator<Item = &Entry> {
        let (a, b) = self.slices();
        let (alo, ahi) = (lo.min(a.len()), hi.min(a.len()));
        let (blo, bhi) = (
            lo.saturating_sub(a.len()).min(b.len()),
            hi.saturating_sub(a.len()).min(b.len()),
        );
        a[alo..ahi.max(alo)]
            .iter()
            .chain(b[blo..bhi.max(blo)].iter())
    }

    fn insert_at(&mut self, i: usize, e: Entry) {
        match self {
            Hist::Empty => *self = Hist::One(e),
            Hist::Many(v) => {
                if v.len() == v.capacity() && v.len() < 4 {
                    // Small histories grow one slot at a time (most devices hold few readings).
                    v.reserve_exact(1);
                }
                if i == v.len() {
                    // The common case: a reading newer than everything retained.
                    v.push_back(e);
                } else {
                    v.insert(i, e);
                }
            }
            Hist::One(_) => {
                let Hist::One(first) = std::mem::take(self) else {
                    return;
                };
                let mut v = VecDeque::with_capacity(2);
                v.push_back(first);
                v.insert(i, e);
                *self = Hist::Many(Box::new(v));
            }
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        match self {
            Hist::Empty => None,
            Hist::One(e) => (i == 0).then_some(e),
            Hist::Many(v) => v.get_mut(i),
        }
    }

    fn pop_front(&mut self) {
        match self {
            Hist::Empty => {}
            Hist::One(_) => *self = Hist::Empty,
            Hist::Many(v) => {
                v.pop_front();
            }
        }
    }

    fn shrink(&mut self) {
        if let Hist::Many(v) = self {
            if v.len() <= 1 {
                *self = v.pop_front().map_or(Hist::Empty, Hist::One);
            } else if v.capacity() > 2 * v.len() + 4 {
                v.shrink_to_fit();
            }
        }
    }
}

/// Per-device state (40 bytes).
///
/// The newest event time seen (`last_seen`) is not stored: it is the last entry's time (the base's
/// when nothing newer is retained). Entries are evicted oldest first and no reading older than the
/// eviction cut reaches the engine (dedup refuses readings older than the correction horizon, which
/// is shorter than the retention), so the last entry always holds the newest time ever ingested.
#[derive(Debug, Default)]
struct Dev {
    /// Retained readings, sorted by key, no duplicate keys; entry 0 is the base state (the last
    /// evicted reading) when `BASE` is set.
    hist: Hist,
    /// Site index.
    site: u32,
    flags: u8,
}

const BASE: u8 = 1;
const OFFLINE_RAISED: u8 = 2;
const BATTERY_RAISED: u8 = 4;
/// An offline deadline is pending, at `last_seen + k × interval + lateness` ([`offline_at`]).
const OFFLINE_PENDING: u8 = 8;

/// The offline deadline of a device last seen at `last_seen` with report interval `iv` (ms).
fn offline_at(cfg: &WindowConfig, last_seen: i64, iv: i64) -> u64 {
    to_u64(last_seen + iv * i64::from(cfg.offline_after_intervals) + cfg.allowed_lateness_ms)
}

impl Dev {
    fn new(site: u32) -> Dev {
        Dev {
            hist: Hist::default(),
            site,
            flags: 0,
        }
    }

    fn off(&self) -> usize {
        usize::from(self.flags & BASE != 0)
    }

    fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn set(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// The newest event time ingested (see the type's notes).
    fn last_seen(&self) -> Option<i64> {
        self.hist
            .len()
            .checked_sub(1)
            .and_then(|i| self.hist.get(i))
            .map(|e| e.0.0)
    }

    /// Retained readings (without the base).
    fn len(&self) -> usize {
        self.hist.len() - self.off()
    }

    fn base(&self) -> Option<&Entry> {
        if self.flag(BASE) {
            self.hist.get(0)
        } else {
            None
        }
    }

    fn lower(&self, b: Bound<&Key>) -> usize {
        let off = self.off();
        match b {
            Bound::Included(k) => self.hist.partition_point(off, |x| x < k),
            Bound::Excluded(k) => self.hist.partition_point(off, |x| x <= k),
            Bound::Unbounded => off,
        }
    }

    fn upper(&self, b: Bound<&Key>) -> usize {
        let off = self.off();
        match b {
            Bound::Included(k) => self.hist.partition_point(off, |x| x <= k),
            Bound::Excluded(k) => self.hist.partition_point(off, |x| x < k),
            Bound::Unbounded => self.hist.len(),
        }
    }

    /// Index bounds `lo..hi` of the retained entries with keys in `(s,0,0)..(e,0,0)` (event times
    /// `s..e`): one search from the back for `hi`, then a walk back over the window's entries.
    fn window(&self, s: i64, e: i64) -> (usize, usize) {
        let off = self.off();
        let hi = self.lower(Bound::Included(&(e, 0, 0)));
        let mut lo = hi;
        let (a, b) = self.hist.slices();
        let key_at = |i: usize| a.get(i).or_else(|| b.get(i - a.len())).map(|x| x.0);
        while lo > off && key_at(lo - 1).is_some_and(|k| k >= (s, 0, 0)) {
            lo -= 1;
        }
        (lo, hi)
    }

    /// Retained entries with keys in `r`, in key order.
    fn range(&self, r: impl RangeBounds<Key>) -> impl DoubleEndedIterator<Item = &Entry> {
        let lo = self.lower(r.start_bound());
        let hi = self.upper(r.end_bound()).max(lo);
        self.hist.iter_range(lo, hi)
    }

    /// Inserts or replaces the retained entry of `k`.
    fn insert(&mut self, k: Key, v: Val) {
        let n = self.hist.len();
        if n == self.off() || self.hist.get(n - 1).is_some_and(|b| b.0 < k) {
            self.hist.insert_at(n, (k, v));
            return;
        }
        let i = self.hist.partition_point(self.off(), |x| *x < k);
        match self.hist.get_mut(i) {
            Some(e) if e.0 == k => e.1 = v,
            _ => self.hist.insert_at(i, (k, v)),
        }
    }

    /// Moves retained readings older than `cut` out; the last one moved becomes the base.
    fn evict(&mut self, cut: i64) {
        while self.hist.get(self.off()).is_some_and(|e| e.0.0 < cut) {
            if self.flag(BASE) {
                self.hist.pop_front();
            }
            self.set(BASE, true);
        }
        self.hist.shrink();
    }
}

/// The newest heartbeat's battery level of a device: (key, percent).
type Battery = (Key, f32);

#[derive(Debug)]
struct Site {
    kind: DeviceKind,
    district: String,
    /// Device indices, in device-id order.
    devs: Vec<u32>,
    /// (L, start) → (version, count, metrics) of the site row and of device rows.
    emitted: BTreeMap<(i64, i64), Emitted>,
    /// Windows with a pending close in [`WindowEngine::open`].
    pending: BTreeSet<(i64, i64)>,
    /// The latest `(L, start)` found pending for the first two window lengths: a reading for one
    /// of them needs no look-up in `emitted` / `pending` (most readings fall into the newest
    /// windows). Invariant: an entry here is in `pending` (cleared when it closes).
    hot: [(i64, i64); 2],
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
    site_ids: Interner,
    sites: Vec<Site>,
    /// Site indices in site-id order.
    site_order: Vec<u32>,
    /// Site symbol → site index.
    site_slots: SlotMap,
    /// Device symbol → slot in `devs` of its first site's series.
    dev_slots: SlotMap,
    /// `(site, device symbol)` → slot, for a device seen under more than one site (rare).
    dev_pairs: HashMap<(u32, u32), u32>,
    /// The device symbol index of each slot ([`Sym::index`](crate::symbol::Sym::index)).
    dev_syms: Vec<u32>,
    devs: Vec<Dev>,
    battery: HashMap<u32, Battery>,
    /// (close time, site id, L, start).
    open: BTreeSet<(u64, String, i64, i64)>,
    /// (fire time, device index); due ones fire in (site, device) id order.
    deadlines: BTreeSet<(u64, u32)>,
    last_evict: i64,
    /// No retained (non-base) history entry is older than this, ms (a lower bound).
    oldest_retained_ms: i64,
}

fn key(r: &CoreReading) -> Key {
    (r.ts_ms, r.boot, r.seq)
}

fn occupied(m: &Val) -> Option<bool> {
    match m {
        Val::Change(o) | Val::Beat(o) => Some(*o),
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
            site_ids: Interner::default(),
            sites: Vec::new(),
            site_order: Vec::new(),
            site_slots: SlotMap::default(),
            dev_slots: SlotMap::default(),
            dev_pairs: HashMap::new(),
            dev_syms: Vec::new(),
            devs: Vec::new(),
            battery: HashMap::new(),
            open: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            last_evict: i64::MIN,
            oldest_retained_ms: i64::MAX,
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
        (self.devs.len(), self.devs.iter().map(Dev::len).sum())
    }

    /// The offline deadline of slot `d` from its current `last_seen` and registered interval.
    fn current_deadline(&self, d: u32) -> Option<u64> {
        let iv = self
            .info
            .device_at(self.dev_syms[d as usize])?
            .interval_ms();
        let seen = self.devs[d as usize].last_seen()?;
        Some(offline_at(&self.cfg, seen, iv))
    }

    /// The device id of slot `d`.
    fn dev_name(&self, d: u32) -> String {
        Names::get().at(self.dev_syms[d as usize]).to_string()
    }

    /// Adds deduplicated readings at watermark time `t`. Corrections and offline clears go to `out`.
    pub fn ingest(&mut self, t: u64, readings: Vec<CoreReading>, out: &mut Vec<EngineOut>) {
        // Process in (device, key) order; sort keys with input positions, not the records. Devices
        // group by symbol: state and outputs per device depend only on the order within a device.
        let mut order: Vec<(u32, Key, u32)> = readings
            .iter()
            .enumerate()
            .map(|(i, r)| (r.device.index(), key(r), i as u32))
            .collect();
        order.sort_unstable();
        // Read each known device's newest entry first: these loads do not depend on each other,
        // so the CPU overlaps their cache misses (long histories are cold); the loop below then
        // finds them cached instead of waiting for one miss per reading.
        let mut touch = 0i64;
        for r in &readings {
            if let Some(d) = self.dev_slots.get(r.device) {
                touch ^= self.devs[d as usize].last_seen().unwrap_or(0);
            }
        }
        std::hint::black_box(touch);
        let lat = self.cfg.allowed_lateness_ms;
        let mut oldest = self.oldest_retained_ms;
        for &(_, _, i) in &order {
            let r = &readings[i as usize];
            let site_ix = match self.site_slots.get(r.site) {
                Some(s) => s,
                None => self.new_site(r),
            };
            let site = &mut self.sites[site_ix as usize];
            if site.kind != r.kind() {
                // A site id used by both kinds: keep the first kind's series clean.
                continue;
            }
            let d = match self.dev_slots.get(r.device) {
                Some(d) if self.devs[d as usize].site == site_ix => d,
                first => match self.dev_pairs.get(&(site_ix, r.device.index())) {
                    Some(d) => *d,
                    None => {
                        let d = self.devs.len() as u32;
                        self.devs.push(Dev::new(site_ix));
                        self.dev_syms.push(r.device.index());
                        if first.is_none() {
                            self.dev_slots.set(r.device, d);
                        } else {
                            // The same device under a second site: a separate series.
                            self.dev_pairs.insert((site_ix, r.device.index()), d);
                        }
                        let names = Names::get();
                        let syms = &self.dev_syms;
                        let p = site.devs.partition_point(|x| {
                            names.at(syms[*x as usize]) < names.name(r.device)
                        });
                        site.devs.insert(p, d);
                        d
                    }
                },
            };
            let dev = &mut self.devs[d as usize];
            let k = key(r);
            // The next reading that carries state forward (bay state, energy register).
            let next_of_dev =
                if dev.len() == 0 || dev.hist.get(dev.hist.len() - 1).is_some_and(|b| b.0 < k) {
                    None
                } else {
                    dev.range((k.0, k.1, k.2.saturating_add(1))..)
                        .find(|(_, m)| occupied(m).is_some() || matches!(m, Val::Summary(_)))
                        .map(|(k, _)| k.0)
                };
            let ts_ms = r.ts_ms;
            if let Measurement::ParkingHeartbeat(h) = &r.data {
                let b = self.battery.entry(d).or_insert((k, h.battery_pct));
                if b.0 < k {
                    *b = (k, h.battery_pct);
                }
            }
            let old_seen = dev.last_seen();
            dev.insert(k, Val::new(&r.data));
            oldest = oldest.min(k.0);
            if old_seen.is_none_or(|s| s < ts_ms) {
                if dev.flag(OFFLINE_RAISED) {
                    dev.set(OFFLINE_RAISED, false);
                    let dev_id = r.device.name();
                    out.push(EngineOut::Alert(Alert {
                        alert: "device_offline".into(),
                        state: AlertState::Cleared,
                        district: site.district.clone(),
                        site: dev_id.clone(),
                        ts_ms,
                        value: 0.0,
                        message: format!("device {dev_id} reports again"),
                    }));
                }
                // Lazy deadline: a pending entry (set from an earlier `last_seen`) stays where it
                // is; when it comes due, `fire_deadlines` moves it to the device's current
                // deadline instead of firing. The deadline only moves later (`last_seen` grows,
                // the registry interval is fixed), so a device's entry is never late, and most
                // readings touch no ordered set.
                if !dev.flag(OFFLINE_PENDING)
                    && let Some(iv) = self.info.device(r.device).map(DevReg::interval_ms)
                {
                    dev.set(OFFLINE_PENDING, true);
                    self.deadlines.insert((offline_at(&self.cfg, ts_ms, iv), d));
                }
            }
            for (j, &len) in self.cfg.windows_ms.iter().enumerate() {
                let start = window_start(ts_ms, len);
                if site.hot.get(j) == Some(&(len, start)) {
                    // Pending (see `Site::hot`): nothing to do.
                    continue;
                }
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
                    if site.pending.insert((len, start)) {
                        self.open.insert((
                            to_u64(start + len + lat),
                            self.site_ids.resolve(site_ix).to_string(),
                            len,
                            start,
                        ));
                    }
                    if let Some(h) = site.hot.get_mut(j) {
                        *h = (len, start);
                    }
                }
            }
        }
        self.oldest_retained_ms = oldest;
        self.flush_dirty(out);
        self.evict(t);
    }

    /// Adds the site of `r` (first reading of it on this worker); returns its index.
    fn new_site(&mut self, r: &CoreReading) -> u32 {
        let (name, district) = {
            let n = Names::get();
            (n.name(r.site).to_string(), n.name(r.district).to_string())
        };
        let s = self.site_ids.intern(&[&name]);
        self.site_slots.set(r.site, s);
        self.sites.push(Site {
            kind: r.kind(),
            district,
            devs: Vec::new(),
            emitted: BTreeMap::new(),
            pending: BTreeSet::new(),
            hot: [(0, 0); 2],
            dirty: BTreeSet::new(),
            full_since: None,
            full_raised: false,
            volt_raised: false,
            intr_raised: false,
        });
        let ids = &self.site_ids;
        let p = self
            .site_order
            .partition_point(|x| ids.resolve(*x) < name.as_str());
        self.site_order.insert(p, s);
        s
    }

    /// The rows of site `s`'s window `[start, start + len)` ms, as [`compute`] gives them.
    fn window_rows(&self, s: u32, len: i64, start: i64) -> Vec<(String, u64, Metrics)> {
        compute(
            &self.cfg,
            &self.info,
            self.site_ids.resolve(s),
            &self.sites[s as usize],
            &self.devs,
            &self.dev_syms,
            len,
            start,
        )
    }

    fn flush_dirty(&mut self, out: &mut Vec<EngineOut>) {
        for &s in &self.site_order {
            let site_id = self.site_ids.resolve(s);
            let site = &mut self.sites[s as usize];
            if site.dirty.is_empty() {
                continue;
            }
            let dirty = std::mem::take(&mut site.dirty);
            for (len, start) in dirty {
                let rows = self.window_rows(s, len, start);
                let site = &mut self.sites[s as usize];
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
                self.deadlines.first().filter(|d| d.0 <= t).copied()
            };
            match (w, d) {
                (Some(w), Some(d)) if d.0 < w.0 => self.fire_deadlines(d.0, out),
                (Some(w), _) => {
                    self.open.remove(&w);
                    self.close_window(&w.1, w.2, w.3, out);
                }
                (None, Some(d)) => self.fire_deadlines(d.0, out),
                (None, None) => break,
            }
        }
    }

    /// Fires every deadline due at `at`, in (site, device) id order.
    fn fire_deadlines(&mut self, at: u64, out: &mut Vec<EngineOut>) {
        let mut due: Vec<u32> = Vec::new();
        let mut moved: Vec<(u64, u32)> = Vec::new();
        while let Some(&(a, d)) = self.deadlines.first() {
            if a != at {
                break;
            }
            self.deadlines.pop_first();
            // Entries are lazy (see `ingest`): one set from an older `last_seen` moves to the
            // device's current deadline (always later) instead of firing.
            let now = self.current_deadline(d);
            if now.is_some_and(|n| n > a) {
                moved.extend(now.map(|n| (n, d)));
            } else {
                due.push(d);
            }
        }
        self.deadlines.extend(moved);
        {
            // (site id, device id) order, as the earlier `site\0device` keys sorted.
            let names = Names::get();
            let name = |d: &u32| {
                let d = *d as usize;
                (
                    self.site_ids.resolve(self.devs[d].site),
                    names.at(self.dev_syms[d]),
                )
            };
            due.sort_by(|a, b| name(a).cmp(&name(b)));
        }
        for d in due {
            self.fire_deadline(at, d, out);
        }
    }

    fn fire_deadline(&mut self, at: u64, d: u32, out: &mut Vec<EngineOut>) {
        let dev = &mut self.devs[d as usize];
        dev.set(OFFLINE_PENDING, false);
        if dev.flag(OFFLINE_RAISED) {
            return;
        }
        dev.set(OFFLINE_RAISED, true);
        let last = dev.last_seen().unwrap_or(0);
        let site = &self.sites[dev.site as usize];
        let dev_id = self.dev_name(d);
        out.push(EngineOut::Alert(Alert {
            alert: "device_offline".into(),
            state: AlertState::Raised,
            district: site.district.clone(),
            site: dev_id.to_string(),
            ts_ms: i64::try_from(at).unwrap_or(i64::MAX),
            value: (i64::try_from(at).unwrap_or(i64::MAX) - last) as f64 / 60_000.0,
            message: format!(
                "device {dev_id} missed {} report intervals",
                self.cfg.offline_after_intervals
            ),
        }));
    }

    fn close_window(&mut self, site_id: &str, len: i64, start: i64, out: &mut Vec<EngineOut>) {
        let Some(s) = self.site_ids.get(&[site_id]) else {
            return;
        };
        let site = &mut self.sites[s as usize];
        site.pending.remove(&(len, start));
        for h in &mut site.hot {
            if *h == (len, start) {
                *h = (0, 0);
            }
        }
        let rows = self.window_rows(s, len, start);
        let site = &mut self.sites[s as usize];
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
                &mut self.devs,
                &self.dev_syms,
                &self.battery,
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
        // Sweep the devices (one cold history access each) only when some retained reading may
        // be older than the cut.
        if cut > self.oldest_retained_ms {
            let mut oldest = i64::MAX;
            for dev in &mut self.devs {
                dev.evict(cut);
                if let Some(e) = dev.hist.get(dev.off()) {
                    oldest = oldest.min(e.0.0);
                }
            }
            self.oldest_retained_ms = oldest;
        }
        for site in &mut self.sites {
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
#[allow(clippy::too_many_arguments)]
fn compute(
    cfg: &WindowConfig,
    info: &SiteInfo,
    site_id: &str,
    site: &Site,
    devs: &[Dev],
    ids: &[u32],
    len: i64,
    s: i64,
) -> Vec<(String, u64, Metrics)> {
    let e = s + len;
    let site_devs = || site.devs.iter().map(|d| &devs[*d as usize]);
    match site.kind {
        DeviceKind::Parking => {
            let cap = info
                .lot_capacity
                .get(site_id)
                .map(|c| f64::from(*c))
                .unwrap_or_else(|| site.devs.len().max(1) as f64);
            let (count, m) = parking_metrics(site_devs(), cap, s, e, cfg.full_ratio);
            vec![(SITE_ROW.to_string(), count, m)]
        }
        DeviceKind::Grid => {
            let nominal = info.feeder_nominal_v.get(site_id).copied().unwrap_or(230.0);
            let band = cfg.voltage_band_ratio;
            let mut rows = Vec::new();
            let (count, m) = grid_metrics(site_devs(), nominal, band, s, e);
            rows.push((SITE_ROW.to_string(), count, m));
            for &di in &site.devs {
                let d = &devs[di as usize];
                if d.range((s, 0, 0)..(e, 0, 0)).next().is_some() {
                    let (c, m) = grid_metrics(std::iter::once(d), nominal, band, s, e);
                    rows.push((Names::get().at(ids[di as usize]).to_string(), c, m));
                }
            }
            rows
        }
    }
}

/// Parking window metrics over bays; see the module notes. Returns (readings in window, metrics).
fn parking_metrics<'a>(
    devs: impl Iterator<Item = &'a Dev>,
    cap: f64,
    s: i64,
    e: i64,
    full_ratio: f64,
) -> (u64, Metrics) {
    let mut cur = 0i64;
    let mut points: Vec<(Key, usize, bool)> = Vec::new();
    let mut state: Vec<bool> = Vec::new();
    let (mut arrivals, mut departures, mut dwell_sum, mut dwell_n) = (0u64, 0u64, 0f64, 0u64);
    for (i, d) in devs.enumerate() {
        // One search for the window's end; its start and the state before it are found walking
        // back over the window's entries, which are visited anyway.
        let (lo, hi) = d.window(s, e);
        let prior = if lo > d.off() {
            d.hist.get(lo - 1)
        } else {
            d.base()
        };
        let st = prior.and_then(|(_, m)| occupied(m)).unwrap_or(false);
        state.push(st);
        cur += i64::from(st);
        // The newest change seen so far inside the window (the predecessor of a departure).
        let mut last_change: Option<&Entry> = None;
        for entry in d.hist.iter_range(lo, hi) {
            let (k, m) = entry;
            if let Some(o) = occupied(m) {
                points.push((*k, i, o));
            }
            if let Val::Change(c) = m {
                if *c {
                    arrivals += 1;
                } else {
                    departures += 1;
                    let prev_change = last_change.or_else(|| {
                        d.range(..*k)
                            .rev()
                            .find(|(_, m)| matches!(m, Val::Change(_)))
                    });
                    if let Some((pk, Val::Change(true))) = prev_change {
                        dwell_sum += (k.0 - pk.0) as f64 / 1000.0;
                        dwell_n += 1;
                    }
                }
                last_change = Some(entry);
            }
        }
    }
    let count = points.len() as u64;
    // Each device's points are already in key order: the stable sort merges those runs.
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
        for (_, m) in d.range((s, 0, 0)..(e, 0, 0)) {
            count += 1;
            match m {
                Val::Summary(g) => {
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
                Val::Event(ev) => match ev {
                    PqEventKind::Sag => sags += 1,
                    PqEventKind::Swell => swells += 1,
                    PqEventKind::Interruption => intr += 1,
                },
                _ => {}
            }
        }
        if let (Some(f), Some(l)) = (first, last) {
            let prev = d
                .range(..(s, 0, 0))
                .rev()
                .chain(d.base())
                .find_map(|(_, m)| match m {
                    Val::Summary(g) => Some(g.energy_kwh),
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

#[allow(clippy::too_many_arguments)]
fn site_alerts(
    cfg: &WindowConfig,
    site_id: &str,
    site: &mut Site,
    devs: &mut [Dev],
    ids: &[u32],
    battery: &HashMap<u32, Battery>,
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
            for &di in &site.devs {
                let Some((_, pct)) = battery.get(&di) else {
                    continue;
                };
                let d = &mut devs[di as usize];
                let pct = f64::from(*pct);
                let id = || Names::get().at(ids[di as usize]).to_string();
                if !d.flag(BATTERY_RAISED) && pct < cfg.battery_low_pct {
                    d.set(BATTERY_RAISED, true);
                    batt.push((id(), AlertState::Raised, pct));
                } else if d.flag(BATTERY_RAISED) && pct > cfg.battery_clear_pct {
                    d.set(BATTERY_RAISED, false);
                    batt.push((id(), AlertState::Cleared, pct));
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
