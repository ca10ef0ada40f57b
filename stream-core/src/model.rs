//! Records that flow through the dataflow, the window settings and the registry view the cores use.

use crate::store::QualityRow;
use crate::symbol::{Names, Sym, intern_many};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use telemetry::message::{Alert, WindowAggregate};
use telemetry::registry::Registry;
use telemetry::{
    DeviceId, DeviceKind, DistrictId, GridEvent, GridSummary, Measurement, ParkingChange,
    ParkingHeartbeat, Reading, SiteId, TimeSource,
};

/// A validated reading as the dataflow carries it: ids interned to [`Sym`]s (see [`crate::symbol`]),
/// the receive time alongside; about 110 bytes instead of the contract [`Reading`]'s ~280 (three
/// inline 64-byte ids), so moving it between operators is cheap and exchanges hash nothing.
///
/// Records that cross a process boundary are serialized by timely with bincode: symbols as their id
/// strings (interned again by the receiver), and the measurement with an externally tagged mirror of
/// the contract's [`Measurement`] (an internally tagged enum — its JSON shape — which bincode cannot
/// read back: `DeserializeAnyNotSupported`). Within a process records are moved, not serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreReading {
    /// Reporting device.
    pub device: Sym,
    /// The device's site (lot or feeder).
    pub site: Sym,
    /// The site's district.
    pub district: Sym,
    /// Boot counter of the device.
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u32,
    /// Event time, UTC epoch ms.
    pub ts_ms: i64,
    /// Receive time, UTC epoch ms (for timeliness).
    pub ingest_ms: i64,
    /// Where `ts_ms` came from.
    pub time_source: TimeSource,
    /// Sent from a gateway spool after an outage.
    pub replayed: bool,
    /// What was measured.
    #[serde(with = "MeasurementWire")]
    pub data: Measurement,
}

impl CoreReading {
    /// Interns the ids of `r` (one table look-up each; for many readings use
    /// [`CoreReading::extend_inputs`]).
    pub fn new(r: Reading, ingest_ms: i64) -> CoreReading {
        let mut syms = Vec::with_capacity(3);
        intern_many(
            [r.device.as_str(), r.site.as_str(), r.district.as_str()],
            &mut syms,
        );
        CoreReading::with_syms(r, ingest_ms, &syms)
    }

    fn with_syms(r: Reading, ingest_ms: i64, syms: &[Sym]) -> CoreReading {
        CoreReading {
            device: syms[0],
            site: syms[1],
            district: syms[2],
            boot: r.boot,
            seq: r.seq,
            ts_ms: r.ts_ms,
            ingest_ms,
            time_source: r.time_source,
            replayed: r.replayed,
            data: r.data,
        }
    }

    /// Converts readings received at `ingest_ms` and appends them to `out` as
    /// [`CoreInput::Reading`]s: the feeder's path (one symbol-table lock per call).
    pub fn extend_inputs(
        readings: impl IntoIterator<Item = Reading>,
        ingest_ms: i64,
        out: &mut Vec<CoreInput>,
    ) {
        let readings: Vec<Reading> = readings.into_iter().collect();
        let n = readings.len();
        // One column per id kind, so that equal neighbours (a batch's shared site and district)
        // skip the look-up.
        let mut syms = Vec::with_capacity(n * 3);
        intern_many(readings.iter().map(|r| r.device.as_str()), &mut syms);
        intern_many(readings.iter().map(|r| r.site.as_str()), &mut syms);
        intern_many(readings.iter().map(|r| r.district.as_str()), &mut syms);
        out.reserve(n);
        for (i, r) in readings.into_iter().enumerate() {
            let s = [syms[i], syms[n + i], syms[2 * n + i]];
            out.push(CoreInput::Reading(CoreReading::with_syms(r, ingest_ms, &s)));
        }
    }

    /// The contract form (resolves the ids under the symbol table's lock). `None` if an id is not a
    /// valid contract id (possible only for a record deserialized from a faulty peer).
    pub fn to_reading(&self) -> Option<Reading> {
        let n = Names::get();
        Some(Reading {
            device: DeviceId::new(n.name(self.device)).ok()?,
            site: SiteId::new(n.name(self.site)).ok()?,
            district: DistrictId::new(n.name(self.district)).ok()?,
            boot: self.boot,
            seq: self.seq,
            ts_ms: self.ts_ms,
            time_source: self.time_source,
            replayed: self.replayed,
            data: self.data.clone(),
        })
    }

    /// The device kind implied by the measurement.
    pub fn kind(&self) -> DeviceKind {
        self.data.kind()
    }
}

/// Exchange form of [`Measurement`]: externally tagged (a variant index in bincode).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Measurement")]
enum MeasurementWire {
    ParkingChange(ParkingChange),
    ParkingHeartbeat(ParkingHeartbeat),
    GridSummary(GridSummary),
    GridEvent(GridEvent),
}

/// One input record of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoreInput {
    /// A reading that passed the telemetry validation and is durably stored raw.
    Reading(CoreReading),
    /// A refused reading or message (counts against validity of its source).
    Rejected {
        /// Device id if known, else the topic's device or gateway level, else `unknown`.
        source: String,
        /// `parking`, `grid` or `unknown`.
        dataset: String,
    },
}

impl CoreInput {
    /// A reading received at `ingest_ms` (UTC epoch ms); see [`CoreReading::extend_inputs`] for
    /// batches.
    pub fn reading(r: Reading, ingest_ms: i64) -> CoreInput {
        CoreInput::Reading(CoreReading::new(r, ingest_ms))
    }
}

/// One output record of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoreOutput {
    /// A window result (first version or a correction).
    Aggregate(WindowAggregate),
    /// An alert transition.
    Alert(Alert),
    /// A data-quality row (upserted: a later row for the same key replaces the earlier one).
    Quality(QualityRow),
    /// A reading left out of the aggregates: `duplicate` or `too_late` (stable reject names).
    Dropped {
        /// `duplicate` or `too_late`.
        reason: String,
        /// Device id.
        source: String,
    },
}

/// Window, lateness and alert settings of the dataflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Tumbling window lengths, ms, smallest first (default 60,000 and 900,000). Alerts are evaluated on
    /// the smallest.
    pub windows_ms: Vec<i64>,
    /// How long after a window's end (in watermark time) readings are still folded into its first
    /// result, ms (default 60,000).
    pub allowed_lateness_ms: i64,
    /// Readings older than watermark − this are `too_late`: stored raw, counted, not aggregated; younger
    /// late readings yield corrected windows (version + 1). ms, default 86,400,000 (24 h).
    pub correction_horizon_ms: i64,
    /// Quality window length, ms (default 900,000).
    pub quality_window_ms: i64,
    /// Occupancy ratio at or above which a lot counts as full (default 0.95).
    pub full_ratio: f64,
    /// How long a lot must stay full before `lot_full` is raised, ms (default 300,000).
    pub lot_full_for_ms: i64,
    /// EN 50160 band around nominal voltage, fraction (default 0.10 = ±10 %).
    pub voltage_band_ratio: f64,
    /// A device is offline after this many missed report intervals (default 3).
    pub offline_after_intervals: u32,
    /// Battery percentage below which `battery_low` is raised (default 15).
    pub battery_low_pct: f64,
    /// Battery percentage above which `battery_low` clears (default 20).
    pub battery_clear_pct: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            windows_ms: vec![60_000, 900_000],
            allowed_lateness_ms: 60_000,
            correction_horizon_ms: 86_400_000,
            quality_window_ms: 900_000,
            full_ratio: 0.95,
            lot_full_for_ms: 300_000,
            voltage_band_ratio: 0.10,
            offline_after_intervals: 3,
            battery_low_pct: 15.0,
            battery_clear_pct: 20.0,
        }
    }
}

impl WindowConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.windows_ms.is_empty() || self.windows_ms.iter().any(|w| *w <= 0) {
            return Err("windows_ms: at least one positive window length".into());
        }
        if self.windows_ms.windows(2).any(|w| w[0] >= w[1]) {
            return Err("windows_ms: must be strictly increasing".into());
        }
        if self.allowed_lateness_ms < 0 || self.correction_horizon_ms < self.allowed_lateness_ms {
            return Err("allowed_lateness_ms must be >= 0 and <= correction_horizon_ms".into());
        }
        if self.quality_window_ms <= 0 {
            return Err("quality_window_ms must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.full_ratio) {
            return Err("full_ratio must be within 0..=1".into());
        }
        Ok(())
    }

    /// The smallest window length, ms.
    pub fn base_window_ms(&self) -> i64 {
        self.windows_ms.first().copied().unwrap_or(60_000)
    }

    /// How long history is kept behind the watermark, ms.
    pub fn retention_ms(&self) -> i64 {
        self.correction_horizon_ms
            + self
                .windows_ms
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(self.quality_window_ms)
            + self.allowed_lateness_ms
    }
}

/// What the cores need from the registry, indexed.
///
/// The maps are the source of truth; on first use by symbol ([`SiteInfo::device`]) the devices are
/// also indexed by [`Sym`] (a `Vec` of 16-byte entries indexed by the device's symbol; registered
/// ids are interned into the process-wide table then). Fill the maps before sharing the value: the
/// index is built once and a clone starts without it.
#[derive(Debug, Default)]
pub struct SiteInfo {
    /// Lot id → capacity (bays).
    pub lot_capacity: HashMap<String, u32>,
    /// Feeder id → nominal voltage, V.
    pub feeder_nominal_v: HashMap<String, f64>,
    /// Device id → (site, kind, report interval s).
    pub devices: HashMap<String, (String, DeviceKind, u32)>,
    /// `devices` by device symbol, built on first use.
    by_sym: OnceLock<Vec<Option<DevReg>>>,
}

/// A registered device, by symbol: its site, kind and report interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevReg {
    /// Registered site.
    pub site: Sym,
    /// Registered kind.
    pub kind: DeviceKind,
    /// Report interval, s.
    pub interval_s: u32,
}

impl DevReg {
    /// Report interval, ms.
    pub fn interval_ms(&self) -> i64 {
        i64::from(self.interval_s) * 1000
    }
}

impl Clone for SiteInfo {
    fn clone(&self) -> Self {
        SiteInfo {
            lot_capacity: self.lot_capacity.clone(),
            feeder_nominal_v: self.feeder_nominal_v.clone(),
            devices: self.devices.clone(),
            by_sym: OnceLock::new(),
        }
    }
}

impl SiteInfo {
    /// Indexes a registry.
    pub fn from_registry(r: &Registry) -> Self {
        SiteInfo {
            lot_capacity: r
                .lots
                .iter()
                .map(|l| (l.id.to_string(), l.capacity))
                .collect(),
            feeder_nominal_v: r
                .feeders
                .iter()
                .map(|f| (f.id.to_string(), f64::from(f.nominal_v)))
                .collect(),
            devices: r
                .devices
                .iter()
                .map(|d| {
                    (
                        d.id.to_string(),
                        (d.site.to_string(), d.kind, d.report_interval_s),
                    )
                })
                .collect(),
            by_sym: OnceLock::new(),
        }
    }

    /// The registration of device `d`, if registered (no hashing: an index by symbol).
    #[inline]
    pub fn device(&self, d: Sym) -> Option<&DevReg> {
        self.device_at(d.index())
    }

    /// The registration of the device with symbol index `i` ([`Sym::index`]), if registered.
    #[inline]
    pub fn device_at(&self, i: u32) -> Option<&DevReg> {
        let v = self.by_sym.get_or_init(|| {
            let mut v: Vec<Option<DevReg>> = Vec::new();
            for (id, (site, kind, iv)) in &self.devices {
                let (d, site) = (Sym::intern(id), Sym::intern(site));
                let i = d.index() as usize;
                if i >= v.len() {
                    v.resize(i + 1, None);
                }
                v[i] = Some(DevReg {
                    site,
                    kind: *kind,
                    interval_s: *iv,
                });
            }
            v.shrink_to_fit();
            v
        });
        v.get(i as usize)?.as_ref()
    }

    /// Consistency of an in-flight reading with the registry and with physics: the device's
    /// registered site and kind (if registered) equal the reading's; a grid summary's |P| is at most
    /// 1.1 × V × I (single phase).
    pub fn consistent_rec(&self, r: &CoreReading) -> bool {
        if let Some(reg) = self.device(r.device)
            && (reg.site != r.site || reg.kind != r.kind())
        {
            return false;
        }
        if let Measurement::GridSummary(s) = &r.data {
            let s_kva = f64::from(s.v_rms_v) * f64::from(s.i_rms_a) / 1000.0;
            return f64::from(s.p_kw).abs() <= 1.1 * s_kva + 0.05;
        }
        true
    }

    /// The report interval of a device, ms, if registered.
    pub fn interval_ms(&self, device: &str) -> Option<i64> {
        self.devices.get(device).map(|d| i64::from(d.2) * 1000)
    }
}

/// Where each registered site's records go: a worker index per site, balanced by registered devices.
///
/// Records are exchanged by site (a lot's or feeder's window state must sit on one worker). Hashing a
/// few dozen sites onto a few workers leaves them unbalanced (20 equal lots hash 13 : 7 onto two
/// workers), so registered sites are placed instead: sorted by registered device count (largest first,
/// then by id) and each put on the least-loaded worker so far (ties: the lowest index) — Graham's
/// longest-processing-time rule, within 4/3 of the best possible balance (R. L. Graham, "Bounds on
/// multiprocessing timing anomalies", SIAM J. Appl. Math. 17(2), 1969). The placement depends only on
/// the registry and the worker count, so every process of a cluster computes the same one. Sites not
/// in the registry are routed by [`route_hash`] of their id, as before.
#[derive(Debug, Clone, Default)]
pub struct SitePlacement {
    /// Worker by site symbol index; `u32::MAX` for a site that is not placed.
    by_sym: Vec<u32>,
}

impl SitePlacement {
    /// Places the registered sites of `info` (lots, feeders and every registered device's site) on
    /// `peers` workers. `peers` = 0 is treated as 1.
    pub fn new(info: &SiteInfo, peers: usize) -> Self {
        let mut weight: HashMap<&str, u64> = HashMap::new();
        for lot in info.lot_capacity.keys() {
            weight.entry(lot).or_default();
        }
        for feeder in info.feeder_nominal_v.keys() {
            weight.entry(feeder).or_default();
        }
        for (site, _, _) in info.devices.values() {
            *weight.entry(site).or_default() += 1;
        }
        let mut sites: Vec<(&str, u64)> = weight.into_iter().collect();
        sites.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut load = vec![0u64; peers.max(1)];
        let mut by_sym: Vec<u32> = Vec::new();
        for (site, w) in sites {
            // Least-loaded worker, lowest index on ties.
            let (worker, _) = load
                .iter()
                .enumerate()
                .min_by_key(|&(i, l)| (*l, i))
                .unwrap_or((0, &0));
            // A site with no registered device still costs something (its windows).
            load[worker] += w.max(1);
            let i = Sym::intern(site).index() as usize;
            if i >= by_sym.len() {
                by_sym.resize(i + 1, u32::MAX);
            }
            by_sym[i] = u32::try_from(worker).unwrap_or(0);
        }
        SitePlacement { by_sym }
    }

    /// The exchange key of a record of `site`: its worker index if placed (timely sends key `k` to
    /// worker `k mod peers`, so an index below `peers` is that worker), else the site's routing hash.
    #[inline]
    pub fn route(&self, site: Sym) -> u64 {
        match self.by_sym.get(site.index() as usize) {
            Some(&w) if w != u32::MAX => u64::from(w),
            _ => site.route(),
        }
    }

    /// The worker of a placed site, if placed.
    pub fn worker(&self, site: &str) -> Option<usize> {
        let w = *self.by_sym.get(Sym::lookup(site)?.index() as usize)?;
        (w != u32::MAX).then_some(w as usize)
    }
}

/// Deterministic 64-bit hash for routing records between workers and processes (never `RandomState`).
pub fn route_hash(s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Floor of `ts` to a multiple of `len` (also for negative times).
pub fn window_start(ts: i64, len: i64) -> i64 {
    ts.div_euclid(len) * len
}

/// Whether a measurement is periodic (heartbeat, summary) and so counts towards completeness.
pub fn is_periodic(m: &Measurement) -> bool {
    matches!(
        m,
        Measurement::ParkingHeartbeat(_) | Measurement::GridSummary(_)
    )
}

/// Interned identifiers: each distinct key (one or more id parts) gets a dense `u32` index, so
/// per-device state can live in flat `Vec`s instead of maps keyed by `String`.
///
/// Memory: the keys' text in one arena `String` (parts joined by `\0`, which identifiers cannot
/// contain, so a joined key sorts exactly like the tuple of its parts), one `u32` end offset per key,
/// and an open-addressing index of `u32` slots (linear probing, at most 3/4 full): about
/// `text + 4 + 4..10` bytes per key and no allocation per key. Keys are never removed (devices and
/// sites come from a fixed registry; an unregistered id costs its text once).
#[derive(Debug, Default, Clone)]
pub struct Interner {
    text: String,
    ends: Vec<u32>,
    /// Index + 1 of the key in each slot; 0 = empty.
    slots: Vec<u32>,
}

fn parts_hash(parts: &[&str]) -> u64 {
    // FNV-1a over the joined bytes: deterministic, and fast enough for short ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ (h >> 29)
}

impl Interner {
    /// The text of key `id` (parts joined by `\0`). Panics on an index not handed out by this interner.
    pub fn resolve(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Heap bytes held (capacities of the text arena, offsets and slots).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4 + self.slots.capacity() * 4
    }

    /// True when no key is interned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn matches(&self, id: u32, parts: &[&str]) -> bool {
        let mut s = self.resolve(id);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                match s.strip_prefix('\0') {
                    Some(r) => s = r,
                    None => return false,
                }
            }
            match s.strip_prefix(p) {
                Some(r) => s = r,
                None => return false,
            }
        }
        s.is_empty()
    }

    /// The index of the key made of `parts`, if interned.
    pub fn get(&self, parts: &[&str]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = parts_hash(parts) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return None,
                s if self.matches(s - 1, parts) => return Some(s - 1),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The index of the key made of `parts`, interning it if new.
    pub fn intern(&mut self, parts: &[&str]) -> u32 {
        if let Some(id) = self.get(parts) {
            return id;
        }
        if (self.ends.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.text.push('\0');
            }
            self.text.push_str(p);
        }
        let id = self.ends.len() as u32;
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.place(parts_hash(parts), id);
        id
    }

    fn place(&mut self, h: u64, id: u32) {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = id + 1;
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        self.slots = vec![0; n];
        for id in 0..self.ends.len() as u32 {
            let parts: Vec<&str> = self.resolve(id).split('\0').collect();
            let h = parts_hash(&parts);
            let mask = self.slots.len() - 1;
            let mut i = h as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = id + 1;
        }
    }
}

#[cfg(test)]
mod interner_tests {
    use super::Interner;
    use std::collections::HashMap;

    #[test]
    fn interner_matches_a_map() {
        let mut i = Interner::default();
        let mut m: HashMap<(String, String), u32> = HashMap::new();
        for k in 0..5_000u32 {
            let a = format!("s{}", k % 37);
            let b = format!("d{}", (k * 7919) % 1_013);
            let id = i.intern(&[&a, &b]);
            let want = *m.entry((a.clone(), b.clone())).or_insert(id);
            assert_eq!(id, want);
            assert_eq!(i.resolve(id), format!("{a}\0{b}"));
            assert_eq!(i.get(&[&a, &b]), Some(id));
        }
        assert_eq!(i.len(), m.len());
        // Part boundaries matter: ("s1", "0d1") is not ("s10", "d1").
        assert_eq!(i.get(&["s1", "0d1"]), None);
        assert_eq!(i.get(&["s10"]), None);
    }
}

#[cfg(test)]
mod placement_tests {
    use super::{SiteInfo, SitePlacement};
    use crate::symbol::Sym;
    use telemetry::DeviceKind;

    fn info(sites: &[(&str, u32)]) -> SiteInfo {
        let mut i = SiteInfo::default();
        for (site, devices) in sites {
            i.lot_capacity.insert(site.to_string(), *devices);
            for d in 0..*devices {
                i.devices.insert(
                    format!("{site}-b{d}"),
                    (site.to_string(), DeviceKind::Parking, 60),
                );
            }
        }
        i
    }

    /// Longest processing time first, worked by hand: weights 5, 4, 3, 3, 1 on two workers go
    /// P5 → w0 (5 : 0), P4 → w1 (5 : 4), P3a → w1 (5 : 7), P3b → w0 (8 : 7), P1 → w1 (8 : 8).
    #[test]
    fn placement_follows_the_lpt_rule() {
        let i = info(&[("P1", 1), ("P3b", 3), ("P4", 4), ("P5", 5), ("P3a", 3)]);
        let p = SitePlacement::new(&i, 2);
        let got: Vec<Option<usize>> = ["P5", "P4", "P3a", "P3b", "P1"]
            .iter()
            .map(|s| p.worker(s))
            .collect();
        assert_eq!(got, vec![Some(0), Some(1), Some(1), Some(0), Some(1)]);
        // Routing keys are the worker indexes; an unregistered site keeps its hash.
        assert_eq!(p.route(Sym::intern("P3a")), 1);
        let other = Sym::intern("not-registered-site");
        assert_eq!(p.route(other), other.route());
        assert_eq!(p.worker("not-registered-site"), None);
    }

    /// 20 equal lots (the benchmark's shape) split 10 : 10 on two workers and 5 each on four; the
    /// placement does not depend on the order the registry lists them in.
    #[test]
    fn equal_sites_split_evenly_and_deterministically() {
        let names: Vec<String> = (0..20).map(|k| format!("L{k}")).collect();
        let sites: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 100)).collect();
        let mut reversed = sites.clone();
        reversed.reverse();
        for peers in [2usize, 4] {
            let a = SitePlacement::new(&info(&sites), peers);
            let b = SitePlacement::new(&info(&reversed), peers);
            let mut per = vec![0; peers];
            for n in &names {
                let w = a.worker(n).unwrap();
                assert_eq!(Some(w), b.worker(n));
                per[w] += 1;
            }
            assert_eq!(per, vec![20 / peers; peers]);
        }
    }
}
