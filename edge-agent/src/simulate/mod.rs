//! Fleet simulator: the real firmware ([`firmware::app::ParkingApp`], [`firmware::app::GridApp`]) runs
//! against register-level simulated parts ([`firmware::sim::SimLis3mdl`], [`firmware::sim::SimAde7953`])
//! whose inputs replay real recorded data; the frames they send are decoded and delivered through the
//! same spool → MQTT path as the gateway's.
//!
//! # Parking (Birmingham car parks, 30 lots, occupancy every ~30 min, 08:00–16:30)
//! Each lot becomes `bays_per_lot` = N bay sensors. Every simulated minute the target number of occupied
//! bays is `round(clamp(occ/cap, 0, 1) × N)` with `occ/cap` interpolated linearly between samples
//! (held overnight between the last and the next day's first sample, also linearly). Arrivals take a
//! random vacant bay, departures the bay parked longest; on top, each car parked for more than 20 min
//! leaves with probability 1/120 per minute and another arrives elsewhere (turnover), which gives
//! plausible dwell times at a constant count. All random choices come from one seeded RNG. The field a
//! sensor sees = its baseline earth field (about 49 µT, per-bay orientation) + the parked vehicle's
//! perturbation (15–60 µT, drawn per arrival) + uniform noise (±0.5 µT per axis). Bays are vacant for a
//! short warm-up so the detectors learn their baselines. The data's faults (occupancy above capacity,
//! negative) are clamped and counted in [`SimReport`].
//!
//! **Registry capacity**: each lot's `capacity` in the written registry is N, the number of simulated
//! bays, so occupancy ratios computed downstream are meaningful (and the open-data `totalSpotNumber`
//! agrees with the sensed bays); the real capacity is named in the lot's name
//! (`"BHMBCCMKT01 (8-bay model of the 577-space car park)"`).
//!
//! # Grid (UCI household power, 1 min, Jan 2008; SimBench profiles, 15 min)
//! Meters are spread over one feeder per district. Meter m replays the household's P and Q with its
//! own day offset and scale, plus a SimBench profile (type m mod 18) × 2 kW; the voltage every meter on
//! a feeder sees is the household's recorded voltage at the feeder's own day offset, so sags and swells
//! are real. Frequency is 50 Hz ± 0.02.
//!
//! # Time
//! A sim clock (ms since the sim start) drives the devices; frames carry age offsets relative to the sim
//! receive time, so readings get exact event times: `ts = origin + sim_ms − age`. `origin` is the data's
//! own time (`start = historical`, default) or `now − duration` (`start = now`: a finite run ends at the
//! present; an endless `now` run at `speed > 1` stamps readings ahead of the wall clock, so use
//! `speed = 1` for that). `speed` = sim seconds per wall second (default 60: an hour per minute);
//! `speed = 0` runs as fast as possible (backfill).
//!
//! # Fault injection (seeded)
//! Per frame: `loss_ratio` drops it, `duplicate_ratio` delivers it twice (same key), `late_ratio` holds
//! the decoded reading back for `late_s` sim seconds (its event time stays right).

pub mod data;

use crate::counters::Counters;
use crate::delivery::{self, DeliveryConfig};
use crate::intake::FrameDecoder;
use crate::spool::SpoolConfig;
use data::{Household, Parking, Profiles};
use firmware::app::{GridApp, GridConfig, ParkingApp, ParkingConfig, Transport};
use firmware::sim::{SimAde7953, SimLis3mdl};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::mqtt::MqttEndpoint;
use telemetry::registry::{Device, Feeder, Lot, Registry};
use telemetry::{DeviceId, DeviceKind, DistrictId, Measurement, Reading, SiteId};
use tokio_util::sync::CancellationToken;

/// Where the sim clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// Readings carry the data's own (2016) times.
    #[default]
    Historical,
    /// The run is placed so that a finite run ends now (an endless one starts now).
    Now,
}

/// Simulator configuration (`[simulator]` in the CityBrain config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Directory with the replay data sets (default `data`).
    pub data_dir: PathBuf,
    /// Gateway id the simulated devices report through (default `gw-sim`).
    pub gateway_id: String,
    /// Broker connection (client id default `citybrain-gw-sim`).
    pub mqtt: MqttEndpoint,
    /// The simulator's own spool (default `sim-spool.sqlite`).
    pub spool: SpoolConfig,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Where to write the fleet's registry TOML (default `sim-registry.toml`); `None` = do not write.
    pub registry_out: Option<PathBuf>,
    /// Car parks to simulate, the first n of the data set (default 30 = all).
    pub lots: usize,
    /// Bay sensors per car park (default 8).
    pub bays_per_lot: usize,
    /// Grid meters (default 8).
    pub meters: usize,
    /// Districts (lots and feeders spread round-robin; default 4).
    pub districts: usize,
    /// Sim seconds per wall second (default 60); 0 = as fast as possible.
    pub speed: f64,
    /// Clock placement (default `historical`).
    pub start: StartMode,
    /// Sim duration in days (e.g. 1 for a backfill); `None` = until shutdown (data wraps around).
    pub days: Option<f64>,
    /// Parking sensor sample period, s (default 5).
    pub parking_sample_s: u32,
    /// Parking heartbeat period, s (default 3,600).
    pub heartbeat_s: u64,
    /// Grid sample period, ms (default 1,000).
    pub grid_sample_ms: u32,
    /// Grid summary interval, s (default 60).
    pub grid_summary_s: u32,
    /// RNG seed (default 42).
    pub seed: u64,
    /// Ratio of frames lost on the radio, 0..1 (default 0).
    pub loss_ratio: f64,
    /// Ratio of frames delivered twice (default 0).
    pub duplicate_ratio: f64,
    /// Ratio of readings delivered late (default 0).
    pub late_ratio: f64,
    /// Delay of late readings, sim s (default 600).
    pub late_s: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            data_dir: PathBuf::from("data"),
            gateway_id: "gw-sim".into(),
            mqtt: MqttEndpoint {
                client_id: "citybrain-gw-sim".into(),
                ..MqttEndpoint::default()
            },
            spool: SpoolConfig {
                path: PathBuf::from("sim-spool.sqlite"),
                ..SpoolConfig::default()
            },
            delivery: DeliveryConfig::default(),
            registry_out: Some(PathBuf::from("sim-registry.toml")),
            lots: 30,
            bays_per_lot: 8,
            meters: 8,
            districts: 4,
            speed: 60.0,
            start: StartMode::Historical,
            days: None,
            parking_sample_s: 5,
            heartbeat_s: 3600,
            grid_sample_ms: 1000,
            grid_summary_s: 60,
            seed: 42,
            loss_ratio: 0.0,
            duplicate_ratio: 0.0,
            late_ratio: 0.0,
            late_s: 600,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Reading time of the sim start, UTC epoch ms.
    pub start_ms: i64,
    /// Reading time reached, UTC epoch ms.
    pub end_ms: i64,
    /// Parking sensors.
    pub parking_devices: u64,
    /// Grid meters.
    pub grid_devices: u64,
    /// Frames the firmware sent.
    pub frames_sent: u64,
    /// Frames dropped by loss injection.
    pub frames_lost: u64,
    /// Frames delivered twice by duplicate injection.
    pub frames_duplicated: u64,
    /// Readings held back by late injection.
    pub readings_late: u64,
    /// Frames the gateway decoder refused (should be 0).
    pub frames_refused: u64,
    /// Readings handed to delivery (duplicates included).
    pub readings: u64,
    /// Simulated vehicle arrivals (ground truth).
    pub arrivals: u64,
    /// Simulated departures (ground truth).
    pub departures: u64,
    /// Parking changes the firmware detected and reported (occupied = true).
    pub detected_arrivals: u64,
    /// Parking changes reported with occupied = false.
    pub detected_departures: u64,
    /// Power-quality events reported.
    pub pq_events: u64,
    /// Data rows of the car-park file.
    pub data_rows: u64,
    /// Data faults: rows with occupancy above capacity.
    pub data_over_capacity: u64,
    /// Data faults: rows with negative occupancy.
    pub data_negative: u64,
    /// Readings acknowledged by the broker.
    pub acked: u64,
    /// Readings left in the spool at the end (delivered on the next start).
    pub spool_left: u64,
}

/// Simulator failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Data files.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// A setting is out of range (named).
    #[error("invalid simulator config: {0}")]
    Config(String),
    /// Registry output could not be written or is invalid.
    #[error("registry: {0}")]
    Registry(String),
    /// Delivery start-up or shutdown.
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
}

/// Collects frames the firmware sends, stamped with the sim time.
#[derive(Debug, Default)]
struct Radio {
    now_ms: u64,
    frames: Vec<(u64, Vec<u8>)>,
}

impl Transport for Radio {
    type Error = core::convert::Infallible;
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        self.frames.push((self.now_ms, frame.to_vec()));
        Ok(())
    }
}

struct Bay {
    app: ParkingApp<SimLis3mdl>,
    baseline: [f32; 3],
    car: Option<([f32; 3], u64)>, // perturbation, arrival sim ms
    battery: f32,
}

struct Meter {
    app: GridApp<SimAde7953>,
    feeder: usize,
    day_offset_ms: i64,
    scale: f32,
    profile: usize,
}

/// The simulated fleet, advanced in sim time; pure apart from CPU (unit-testable without a broker).
pub struct Fleet {
    cfg: SimConfig,
    rng: StdRng,
    parking: Parking,
    household: Household,
    profiles: Profiles,
    lots: Vec<Vec<Bay>>,
    meters: Vec<Meter>,
    feeder_offsets_ms: Vec<i64>,
    decoder: FrameDecoder,
    registry: Registry,
    radio: Radio,
    /// Reading time of sim 0, ms.
    origin_ms: i64,
    /// Data time of sim 0, ms (parking timeline).
    data_start_ms: i64,
    sim_ms: u64,
    warmup_ms: u64,
    late: VecDeque<(u64, Reading)>,
    report: SimReport,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("sim_ms", &self.sim_ms)
            .field("report", &self.report)
            .finish()
    }
}

const DISTRICTS: [&str; 8] = [
    "central",
    "north",
    "south",
    "east",
    "west",
    "jewellery",
    "digbeth",
    "aston",
];

impl Fleet {
    /// Loads the data and builds the fleet, its registry and its devices.
    ///
    /// # Errors
    /// [`SimError::Data`], [`SimError::Config`].
    pub fn new(cfg: &SimConfig, now_ms: i64) -> Result<Self, SimError> {
        let bad = |m: &str| Err(SimError::Config(m.to_string()));
        if cfg.bays_per_lot == 0
            || cfg.districts == 0
            || cfg.parking_sample_s == 0
            || cfg.grid_sample_ms == 0
        {
            return bad("bays_per_lot, districts, parking_sample_s and grid_sample_ms must be > 0");
        }
        for (name, r) in [
            ("loss_ratio", cfg.loss_ratio),
            ("duplicate_ratio", cfg.duplicate_ratio),
            ("late_ratio", cfg.late_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(SimError::Config(format!("{name} must be within 0..=1")));
            }
        }
        if !(cfg.speed >= 0.0 && cfg.speed.is_finite()) {
            return bad("speed must be >= 0");
        }
        let parking = data::load_parking(&cfg.data_dir)?;
        let household = data::load_household(&cfg.data_dir)?;
        let profiles = data::load_profiles(&cfg.data_dir)?;
        let n_lots = cfg.lots.min(parking.lots.len());
        if n_lots * cfg.bays_per_lot + cfg.meters > usize::from(u16::MAX) {
            return bad("lots × bays_per_lot + meters must fit 16-bit radio addresses");
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let districts: Vec<DistrictId> = (0..cfg.districts)
            .map(|i| {
                let base = DISTRICTS[i % DISTRICTS.len()];
                let name = if i < DISTRICTS.len() {
                    base.to_string()
                } else {
                    format!("{base}{}", i / DISTRICTS.len())
                };
                name.parse()
                    .map_err(|_| SimError::Config("district name".into()))
            })
            .collect::<Result<_, _>>()?;
        let mut reg = Registry::default();
        let mut addr: u16 = 1;
        let pcfg = ParkingConfig {
            sample_interval_ms: cfg.parking_sample_s * 1000,
            heartbeat_interval_ms: cfg.heartbeat_s.max(1) * 1000,
            ..ParkingConfig::default()
        };
        let mut lots = Vec::new();
        for (li, lot) in parking.lots.iter().take(n_lots).enumerate() {
            // Some Birmingham codes are names with spaces ("Broad Street"): the site id replaces
            // whitespace with '-' (ids are topic levels); the name keeps the code as published.
            let slug: String = lot
                .code
                .chars()
                .map(|c| if c.is_whitespace() { '-' } else { c })
                .collect();
            let site: SiteId = slug
                .parse()
                .map_err(|_| SimError::Config(format!("lot code {}", lot.code)))?;
            reg.lots.push(Lot {
                id: site.clone(),
                name: format!(
                    "{} ({}-bay model of the {}-space car park)",
                    lot.code, cfg.bays_per_lot, lot.capacity
                ),
                district: districts[li % districts.len()].clone(),
                capacity: cfg.bays_per_lot as u32,
                x: ((li % 6) as f32 + 0.5) / 6.0,
                y: ((li / 6) as f32 + 0.5) / 5.0,
            });
            let mut bays = Vec::new();
            for b in 0..cfg.bays_per_lot {
                let id: DeviceId = format!("{}-b{b:03}", site)
                    .parse()
                    .map_err(|_| SimError::Config("device id".into()))?;
                reg.devices.push(Device {
                    id,
                    kind: DeviceKind::Parking,
                    site: site.clone(),
                    gateway: cfg.gateway_id.clone(),
                    address: addr,
                    dev_eui: None,
                    report_interval_s: cfg.heartbeat_s.max(1) as u32,
                });
                let sim = SimLis3mdl::new();
                let app = ParkingApp::new(sim, pcfg, addr, 1)
                    .map_err(|e| SimError::Config(format!("parking sim: {e:?}")))?;
                let theta: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let baseline = [
                    18.0 * theta.cos(),
                    18.0 * theta.sin(),
                    -45.0 + rng.random_range(-3.0..3.0),
                ];
                bays.push(Bay {
                    app,
                    baseline,
                    car: None,
                    battery: rng.random_range(70.0..100.0),
                });
                addr += 1;
            }
            lots.push(bays);
        }
        let gcfg = GridConfig {
            sample_interval_ms: cfg.grid_sample_ms,
            summary_interval_ms: u64::from(cfg.grid_summary_s.max(1)) * 1000,
            ..GridConfig::default()
        };
        let n_feeders = cfg.districts.min(cfg.meters.max(1));
        let mut feeder_offsets_ms = Vec::new();
        #[allow(clippy::needless_range_loop)] // f is also the feeder's index in its position
        for f in 0..n_feeders {
            let id: SiteId = format!("feeder-{}", districts[f].as_str())
                .parse()
                .map_err(|_| SimError::Config("feeder id".into()))?;
            if cfg.meters > 0 {
                reg.feeders.push(Feeder {
                    id,
                    name: format!(
                        "{} feeder (UCI Sceaux voltage, day offset)",
                        districts[f].as_str()
                    ),
                    district: districts[f].clone(),
                    nominal_v: 230.0,
                    nominal_hz: 50.0,
                    x: (f as f32 + 0.5) / n_feeders as f32,
                    y: 0.9,
                });
            }
            feeder_offsets_ms.push(rng.random_range(0..31i64) * 86_400_000);
        }
        let mut meters = Vec::new();
        for m in 0..cfg.meters {
            let feeder = m % n_feeders;
            let id: DeviceId = format!("feeder-{}-m{m:02}", districts[feeder].as_str())
                .parse()
                .map_err(|_| SimError::Config("meter id".into()))?;
            reg.devices.push(Device {
                id,
                kind: DeviceKind::Grid,
                site: reg.feeders[feeder].id.clone(),
                gateway: cfg.gateway_id.clone(),
                address: addr,
                dev_eui: None,
                report_interval_s: cfg.grid_summary_s.max(1),
            });
            let app = GridApp::new(SimAde7953::new(gcfg.calibration), gcfg, addr, 1)
                .map_err(|e| SimError::Config(format!("grid sim: {e:?}")))?;
            meters.push(Meter {
                app,
                feeder,
                day_offset_ms: rng.random_range(0..31i64) * 86_400_000,
                scale: rng.random_range(0.5..1.5),
                profile: m % profiles.names.len().max(1),
            });
            addr += 1;
        }
        reg.validate()
            .map_err(|e| SimError::Registry(e.to_string()))?;
        let decoder = FrameDecoder::new(&reg, &cfg.gateway_id);
        let warmup_ms =
            u64::from(pcfg.detector.baseline_samples + 4) * u64::from(cfg.parking_sample_s) * 1000;
        let data_start_ms = parking.start_ms() - warmup_ms as i64;
        let span_ms = cfg.days.map(|d| (d * 86_400_000.0) as i64).unwrap_or(0);
        let origin_ms = match cfg.start {
            StartMode::Historical => data_start_ms,
            StartMode::Now => now_ms - span_ms,
        };
        let report = SimReport {
            start_ms: origin_ms,
            end_ms: origin_ms,
            parking_devices: (n_lots * cfg.bays_per_lot) as u64,
            grid_devices: cfg.meters as u64,
            data_rows: parking.rows,
            data_over_capacity: parking.over_capacity,
            data_negative: parking.negative,
            ..SimReport::default()
        };
        Ok(Fleet {
            cfg: cfg.clone(),
            rng,
            parking,
            household,
            profiles,
            lots,
            meters,
            feeder_offsets_ms,
            decoder,
            registry: reg,
            radio: Radio::default(),
            origin_ms,
            data_start_ms,
            sim_ms: 0,
            warmup_ms,
            late: VecDeque::new(),
            report,
        })
    }

    /// The registry of the simulated fleet.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sim time reached, ms since the sim start.
    pub fn sim_ms(&self) -> u64 {
        self.sim_ms
    }

    /// Counters so far.
    pub fn report(&self) -> &SimReport {
        &self.report
    }

    /// Advances the fleet to `to_sim_ms`, returning the readings the gateway decoded on the way.
    pub fn advance(&mut self, to_sim_ms: u64) -> Vec<Reading> {
        let mut out = Vec::new();
        let tick = u64::from(
            self.cfg
                .grid_sample_ms
                .min(self.cfg.parking_sample_s * 1000),
        )
        .max(1);
        let park_every = u64::from(self.cfg.parking_sample_s) * 1000;
        while self.sim_ms + tick <= to_sim_ms {
            self.sim_ms += tick;
            let t = self.sim_ms;
            if t % 60_000 < tick {
                self.update_bays(t);
            }
            if t % park_every < tick {
                for li in 0..self.lots.len() {
                    for bi in 0..self.lots[li].len() {
                        self.step_bay(li, bi, t);
                    }
                }
            }
            if self.meters.is_empty() {
                // nothing
            } else if t % u64::from(self.cfg.grid_sample_ms) < tick {
                for m in 0..self.meters.len() {
                    self.step_meter(m, t);
                }
            }
            self.collect(t, &mut out);
        }
        self.report.end_ms = self.origin_ms + self.sim_ms as i64;
        out
    }

    fn data_ms(&self, t: u64) -> i64 {
        let span = (self.parking.end_ms() - self.data_start_ms).max(1);
        self.data_start_ms + (t as i64).rem_euclid(span)
    }

    /// Once a sim minute: move each lot towards its recorded occupancy, with turnover.
    fn update_bays(&mut self, t: u64) {
        let data_t = self.data_ms(t);
        for li in 0..self.lots.len() {
            let n = self.lots[li].len();
            let target = if t < self.warmup_ms {
                0
            } else {
                (self.parking.lots[li].ratio_at(data_t) * n as f64).round() as usize
            };
            // Turnover at constant count.
            if t >= self.warmup_ms {
                for bi in 0..n {
                    let leave = matches!(self.lots[li][bi].car, Some((_, at)) if t - at > 20 * 60_000)
                        && self.rng.random_bool(1.0 / 120.0);
                    if leave && self.lots[li].iter().any(|b| b.car.is_none()) {
                        self.lots[li][bi].car = None;
                        self.report.departures += 1;
                        self.arrive(li, t, Some(bi));
                    }
                }
            }
            let mut occupied = self.lots[li].iter().filter(|b| b.car.is_some()).count();
            while occupied < target {
                self.arrive(li, t, None);
                occupied += 1;
            }
            while occupied > target {
                // The car parked longest leaves.
                let Some(bi) = (0..n)
                    .filter(|&b| self.lots[li][b].car.is_some())
                    .min_by_key(|&b| self.lots[li][b].car.map(|c| c.1))
                else {
                    break;
                };
                self.lots[li][bi].car = None;
                self.report.departures += 1;
                occupied -= 1;
            }
        }
    }

    fn arrive(&mut self, li: usize, t: u64, not: Option<usize>) {
        let vacant: Vec<usize> = (0..self.lots[li].len())
            .filter(|&b| self.lots[li][b].car.is_none() && Some(b) != not)
            .collect();
        if vacant.is_empty() {
            return;
        }
        let bi = vacant[self.rng.random_range(0..vacant.len())];
        let z = self.rng.random_range(15.0..60.0f32);
        let pert = [
            self.rng.random_range(-10.0..10.0),
            self.rng.random_range(-10.0..10.0),
            z,
        ];
        self.lots[li][bi].car = Some((pert, t));
        self.report.arrivals += 1;
    }

    fn step_bay(&mut self, li: usize, bi: usize, t: u64) {
        let noise: [f32; 3] = [
            self.rng.random_range(-0.5..0.5),
            self.rng.random_range(-0.5..0.5),
            self.rng.random_range(-0.5..0.5),
        ];
        let bay = &mut self.lots[li][bi];
        let p = bay.car.map(|c| c.0).unwrap_or([0.0; 3]);
        let f = [
            bay.baseline[0] + p[0] + noise[0],
            bay.baseline[1] + p[1] + noise[1],
            bay.baseline[2] + p[2] + noise[2],
        ];
        bay.app.bus_mut().set_field_ut(f[0], f[1], f[2]);
        bay.battery = (bay.battery - 0.5 / 86_400.0 * self.cfg.parking_sample_s as f32).max(0.0);
        if bay.app.step(t, bay.battery as u8).is_ok() {
            self.radio.now_ms = t;
            let _ = bay.app.flush(&mut self.radio, t);
        }
    }

    fn step_meter(&mut self, m: usize, t: u64) {
        let hh = &self.household;
        let tod = self.data_ms(0).rem_euclid(86_400_000);
        let base = tod + t as i64;
        let meter = &self.meters[m];
        let own = hh.at(base + meter.day_offset_ms);
        let v = hh.at(base + self.feeder_offsets_ms[meter.feeder]).v_rms_v;
        let (pp, qp) = self.profiles.at(meter.profile, base);
        let p = own.p_kw * meter.scale + pp * 2.0;
        let q = own.q_kvar * meter.scale + qp * 2.0;
        let i = if v > 1.0 {
            (p * p + q * q).sqrt() * 1000.0 / v
        } else {
            0.0
        };
        let freq = 50.0 + self.rng.random_range(-0.02..0.02f32);
        let dt = u64::from(self.cfg.grid_sample_ms);
        let meter = &mut self.meters[m];
        meter.app.bus_mut().set(v, i, p, q, freq);
        if meter.app.step(t).is_ok() {
            self.radio.now_ms = t;
            let _ = meter.app.flush(&mut self.radio, t);
        }
        meter.app.bus_mut().advance_ms(dt);
    }

    /// Decodes the frames sent this tick, applies fault injection, and releases due late readings.
    fn collect(&mut self, t: u64, out: &mut Vec<Reading>) {
        let frames = std::mem::take(&mut self.radio.frames);
        let before = out.len();
        let rx_ms = self.origin_ms + t as i64;
        for (_, f) in frames {
            self.report.frames_sent += 1;
            if self.cfg.loss_ratio > 0.0 && self.rng.random_bool(self.cfg.loss_ratio) {
                self.report.frames_lost += 1;
                continue;
            }
            let r = match self.decoder.decode(&f, rx_ms) {
                Ok(r) => r,
                Err(reason) => {
                    self.report.frames_refused += 1;
                    tracing::warn!(reason = reason.as_str(), "simulated frame refused");
                    continue;
                }
            };
            match r.data {
                Measurement::ParkingChange(c) if c.occupied => self.report.detected_arrivals += 1,
                Measurement::ParkingChange(_) => self.report.detected_departures += 1,
                Measurement::GridEvent(_) => self.report.pq_events += 1,
                _ => {}
            }
            let dup =
                self.cfg.duplicate_ratio > 0.0 && self.rng.random_bool(self.cfg.duplicate_ratio);
            if dup {
                self.report.frames_duplicated += 1;
                out.push(r.clone());
            }
            if self.cfg.late_ratio > 0.0 && self.rng.random_bool(self.cfg.late_ratio) {
                self.report.readings_late += 1;
                self.late.push_back((t + self.cfg.late_s * 1000, r));
            } else {
                out.push(r);
            }
        }
        while self.late.front().is_some_and(|(due, _)| *due <= t) {
            if let Some((_, r)) = self.late.pop_front() {
                out.push(r);
            }
        }
        self.report.readings += (out.len() - before) as u64;
    }

    /// Releases every held-back late reading (end of a finite run).
    pub fn flush_late(&mut self) -> Vec<Reading> {
        let out: Vec<Reading> = self.late.drain(..).map(|(_, r)| r).collect();
        self.report.readings += out.len() as u64;
        out
    }
}

/// Progress of a simulator run, reported after every simulated chunk (see
/// [`run_simulator_with_progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimProgress {
    /// Simulated time covered since the start, ms.
    pub sim_ms: u64,
    /// Length of a finite run (`days`), simulated ms; `None` when the run is open-ended.
    pub end_ms: Option<u64>,
    /// Readings handed to delivery so far (duplicates included).
    pub readings: u64,
    /// Readings the broker has acknowledged so far.
    pub acked: u64,
}

/// Runs the simulator until `shutdown` or the end of `days`, delivering through spool → MQTT, then
/// drains the spool (bounded by `delivery.drain_timeout_ms`).
///
/// # Errors
/// [`SimError`] at start-up (data, config, registry output, spool).
pub async fn run_simulator(
    cfg: SimConfig,
    shutdown: CancellationToken,
) -> Result<SimReport, SimError> {
    run_simulator_with_progress(cfg, shutdown, |_| {}).await
}

/// [`run_simulator`], calling `progress` after every simulated chunk (10 simulated minutes when
/// unpaced, 100 ms of wall time when paced) — e.g. to draw a progress bar for a backfill.
///
/// # Errors
/// As [`run_simulator`].
pub async fn run_simulator_with_progress(
    cfg: SimConfig,
    shutdown: CancellationToken,
    mut progress: impl FnMut(SimProgress) + Send,
) -> Result<SimReport, SimError> {
    let mut fleet = Fleet::new(&cfg, delivery::now_ms())?;
    if let Some(path) = &cfg.registry_out {
        std::fs::write(path, fleet.registry().to_toml())
            .map_err(|e| SimError::Registry(format!("{}: {e}", path.display())))?;
    }
    let counters = Arc::new(Counters::default());
    let d = delivery::start(
        &cfg.gateway_id,
        &cfg.mqtt,
        &cfg.spool,
        &cfg.delivery,
        Vec::new(),
        counters.clone(),
    )?;
    tracing::info!(
        parking = fleet.report().parking_devices,
        grid = fleet.report().grid_devices,
        speed = cfg.speed,
        "simulator started"
    );
    let end_ms = cfg.days.map(|d| (d * 86_400_000.0) as u64);
    let t0 = Instant::now();
    let step = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let target = if cfg.speed > 0.0 {
            (t0.elapsed().as_secs_f64() * cfg.speed * 1000.0) as u64
        } else {
            fleet.sim_ms() + 600_000 // 10 sim minutes per chunk when unpaced
        };
        let target = end_ms.map_or(target, |e| target.min(e));
        // CPU-bound stepping runs off the async threads.
        let (f, readings) = tokio::task::spawn_blocking(move || {
            let r = fleet.advance(target);
            (fleet, r)
        })
        .await
        .map_err(|e| SimError::Config(format!("simulation task: {e}")))?;
        fleet = f;
        if !d.handle.send(readings).await {
            break;
        }
        progress(SimProgress {
            sim_ms: fleet.sim_ms(),
            end_ms,
            readings: fleet.report().readings,
            acked: Counters::get(&counters.acked),
        });
        if end_ms.is_some_and(|e| {
            fleet.sim_ms() + u64::from(cfg.grid_sample_ms.min(cfg.parking_sample_s * 1000)) > e
        }) {
            let late = fleet.flush_late();
            d.handle.send(late).await;
            break;
        }
        if cfg.speed > 0.0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(step) => {}
            }
        }
    }
    let mut report = fleet.report().clone();
    d.shutdown().await?;
    report.acked = Counters::get(&counters.acked);
    report.spool_left = Counters::get(&counters.spool_depth);
    tracing::info!(?report, "simulator stopped");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig {
            data_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"),
            lots: 3,
            bays_per_lot: 6,
            meters: 2,
            districts: 2,
            registry_out: None,
            ..SimConfig::default()
        }
    }

    #[test]
    fn fleet_reproduces_recorded_occupancy_and_is_deterministic() {
        let c = cfg();
        let mut f = Fleet::new(&c, 0).unwrap();
        let two_h = 2 * 3600 * 1000;
        let rs = f.advance(two_h);
        let rep = f.report().clone();
        assert!(rep.arrivals > 0 && rep.frames_refused == 0);
        // Occupied bays at the end match round(ratio × N) from the data, lot by lot.
        for li in 0..3 {
            let want = (f.parking.lots[li].ratio_at(f.data_ms(f.sim_ms() - (f.sim_ms() % 60_000)))
                * 6.0)
                .round() as usize;
            let got = f.lots[li].iter().filter(|b| b.car.is_some()).count();
            assert_eq!(got, want, "lot {li}");
        }
        // The firmware saw the changes: every detected change is a reading with an exact event time.
        assert!(rep.detected_arrivals > 0);
        assert!(
            rs.iter()
                .all(|r| r.ts_ms >= f.origin_ms && r.ts_ms <= f.origin_ms + two_h as i64)
        );
        let summaries = rs
            .iter()
            .filter(|r| matches!(r.data, Measurement::GridSummary(_)))
            .count();
        // 2 meters × one summary per minute over 2 h (the first interval may be partial).
        assert!((2 * 119..=2 * 120).contains(&summaries), "{summaries}");
        // Same seed → same readings.
        let mut g = Fleet::new(&c, 0).unwrap();
        assert_eq!(g.advance(two_h), rs);
        // The registry uses N as the capacity and names the real one (577 in the CSV's first row).
        assert_eq!(f.registry().lots[0].capacity, 6);
        assert_eq!(
            f.registry().lots[0].name,
            "BHMBCCMKT01 (6-bay model of the 577-space car park)"
        );
        assert_eq!(rep.data_rows, 35_717);
    }

    #[test]
    fn every_lot_of_the_data_gets_a_valid_site_id() {
        let c = SimConfig {
            lots: 30,
            bays_per_lot: 1,
            ..cfg()
        };
        let f = Fleet::new(&c, 0).unwrap();
        let ids: Vec<&str> = f.registry().lots.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids.len(), 30);
        assert!(ids.contains(&"Broad-Street") && ids.contains(&"NIA-Car-Parks"));
        assert!(
            f.registry()
                .lots
                .iter()
                .any(|l| l.name.starts_with("Broad Street ("))
        );
    }

    #[test]
    fn fault_injection_counts() {
        let c = SimConfig {
            loss_ratio: 0.2,
            duplicate_ratio: 0.1,
            late_ratio: 0.1,
            late_s: 60,
            ..cfg()
        };
        let mut f = Fleet::new(&c, 0).unwrap();
        let mut rs = f.advance(3600 * 1000);
        rs.extend(f.flush_late());
        let rep = f.report();
        assert!(rep.frames_lost > 0 && rep.frames_duplicated > 0 && rep.readings_late > 0);
        // Every sent frame is lost, or delivered once, or twice when duplicated.
        assert_eq!(
            rs.len() as u64,
            rep.frames_sent - rep.frames_lost + rep.frames_duplicated
        );
        assert_eq!(rep.readings, rs.len() as u64);
    }
}
