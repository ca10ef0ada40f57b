//! The core as a service: MQTT ingest (ack after durable write) → raw store → timely dataflow →
//! aggregates, alerts and quality into the store and onto MQTT; health HTTP ([`crate::health`]).
//!
//! # Flow control
//! Two tasks share the ingest connection:
//! - the **reader** polls the rumqttc event loop all the time (so keep-alive pings go out even while
//!   storage is down), decodes and validates each message (sans-IO) and puts it into the **ingest
//!   buffer**: a bounded queue of received-but-unacknowledged messages, capacity
//!   [`CoreConfig::ingest_buffer_messages`] (default 100; set it to the broker's in-flight window:
//!   `citybrain broker-config` writes `max_inflight_messages 1000`, the embedded rumqttd allows 1,000.
//!   Mosquitto's default window is 20, which caps every group commit at 20 messages). **Full policy:
//!   block** — the reader stops taking events from the event loop until the writer frees a slot;
//!   nothing is dropped.
//! - the **writer** takes messages in receive order — **group commit**: every message already in the
//!   buffer, up to 1,000 messages or 10,000 readings — and writes their valid readings in **one**
//!   storage transaction ([`SeriesStore::write_reading_groups`]) (and their dead letters), retrying a retryable failure with capped exponential backoff
//!   (50 ms … `store_retry_max_ms`) for as long as it takes, and only then acknowledges every message
//!   of the group (PUBACKs therefore leave in receive order) and feeds the dataflow one batch per group,
//!   stamped with the watermark before the group (one timely time per group, not per message). While a write fails `/readyz` says 503
//!   and the watermark does not advance with the wall clock (buffered readings would otherwise turn
//!   late). A write refused as invalid (not retryable) becomes a `store_invalid` dead letter, counted.
//!
//! Durability: the SQLite store runs WAL with `synchronous=NORMAL`: an acknowledged message survives a
//! crash of the process (or of the core's host process tree), but a power loss or OS crash may lose the
//! last commits before the WAL is checkpointed/synced. Every MQTT connection sets TCP_NODELAY.
//!
//! Aggregates and alerts are published on a second connection (`<client_id>-out`), so output traffic
//! can never fill the ingest connection's request queue and block acknowledgements. Records go to the
//! dataflow through a bounded channel (`channel_capacity`; full = the writer waits); outputs go to the
//! sink through a bounded channel (full = timely workers wait); the sink retries storage like the writer.
//!
//! # Shutdown
//! On cancel the reader stops taking messages, keeps polling so acknowledgements go out, and waits for the
//! writer to drain the buffer (deadline `drain_deadline_ms`); messages not written by then stay
//! unacknowledged and the broker redelivers them to the next session (clean session is off). Closing the
//! dataflow input flushes every window (finite flush); the sink gives up outputs it cannot store within
//! the drain deadline and counts them (`outputs_lost`).
//!
//! # Recovery after a crash
//! See [`crate::recovery`]: on start the writer replays the raw readings of the retention period from
//! the store into the dataflow before any live message, so windows that were open at the crash are
//! rebuilt from what was already acknowledged.

use crate::dataflow::{build, emit};
use crate::health::{Metrics, Readiness, label};
use crate::model::{CoreInput, CoreOutput, CoreReading, SiteInfo, WindowConfig};
use crate::store::{
    DeadLetter, SeriesSink, SeriesStore, StoreConfig, StoreError, open_sink, open_store,
};
use crate::watermark::Watermark;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telemetry::mqtt::MqttEndpoint;
use telemetry::registry::Registry;
use telemetry::{Limits, Reading};
use tokio_util::sync::CancellationToken;

/// Group commit bound: most messages written in one storage transaction.
const GROUP_MAX_MESSAGES: usize = 1_000;
/// Group commit bound: a group stops taking messages once it holds this many readings.
const GROUP_MAX_READINGS: usize = 10_000;

/// Largest payload kept in a dead letter, bytes.
pub const DEAD_LETTER_PAYLOAD_MAX: usize = 4096;

/// Stream-core configuration (`[core]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Broker connection (client id must be stable: clean session is off).
    pub mqtt: MqttEndpoint,
    /// Shared-subscription group: subscribe as `$share/<group>/<filter>` (several cores split the load).
    pub share_group: Option<String>,
    /// Site registry TOML file; `None` = empty registry (capacity from devices seen, no completeness).
    pub registry_path: Option<PathBuf>,
    /// Storage.
    pub store: StoreConfig,
    /// Windows, lateness, alerts.
    pub windows: WindowConfig,
    /// Payload and timestamp limits for validation.
    pub limits_max_payload_bytes: usize,
    /// Timely worker threads in this process (`-w`).
    pub workers: usize,
    /// Number of processes (`-n`); > 1 needs `hosts`.
    pub processes: usize,
    /// This process's index (`-p`).
    pub process_index: usize,
    /// `host:port` of every process (`-h` hostfile contents).
    pub hosts: Vec<String>,
    /// The processes of the cluster share one store (one SQLite file on one host, or one InfluxDB):
    /// at start each replays only the sites it owns (`route_hash(site) % processes`), so each stored
    /// reading is replayed once. Default false: every process has its own store (e.g. one SQLite file
    /// per host) and replays all of it.
    pub shared_store: bool,
    /// Health HTTP listen address (`/healthz`, `/readyz`, `/metrics`).
    pub http_addr: String,
    /// Wall time without watermark progress before it moves with the wall clock, ms.
    pub idle_advance_ms: i64,
    /// Wall time after which a silent device no longer counts for the watermark, ms (default
    /// 900,000 = 15 min; see [`crate::watermark`]).
    pub source_idle_ms: i64,
    /// Capacity of the ingest → dataflow and dataflow → sink channels, batches / records.
    pub channel_capacity: usize,
    /// Publish aggregates and alerts on MQTT.
    pub publish: bool,
    /// Received-but-unacknowledged messages held while they are written (full = stop reading from the
    /// event loop). A group commit covers at most this many messages, and the broker sends no more than
    /// its in-flight window before we acknowledge: keep the two equal (Mosquitto's
    /// `max_inflight_messages`, default 20, set to 1,000 by `citybrain broker-config`; the benchmark
    /// runs 1,000). Default 100.
    pub ingest_buffer_messages: usize,
    /// Longest wait between storage retries, ms (backoff doubles from 50 ms). Default 5,000.
    pub store_retry_max_ms: u64,
    /// At shutdown, how long to keep draining the ingest buffer and the output sink, ms. Default 5,000.
    pub drain_deadline_ms: u64,
    /// Rebuild window state at start by replaying raw readings from the store (see
    /// [`crate::recovery`]). Default true.
    pub replay_on_start: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            mqtt: MqttEndpoint {
                client_id: "citybrain-core".into(),
                ..Default::default()
            },
            share_group: None,
            registry_path: None,
            store: StoreConfig::default(),
            windows: WindowConfig::default(),
            limits_max_payload_bytes: Limits::default().max_payload_bytes,
            workers: 1,
            processes: 1,
            process_index: 0,
            hosts: Vec::new(),
            shared_store: false,
            http_addr: "127.0.0.1:9181".into(),
            idle_advance_ms: 5_000,
            source_idle_ms: 900_000,
            channel_capacity: 1024,
            publish: true,
            ingest_buffer_messages: 100,
            store_retry_max_ms: 5_000,
            drain_deadline_ms: 5_000,
            replay_on_start: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreReport {
    /// MQTT messages received (not retained).
    pub messages: u64,
    /// Readings accepted by validation and written raw.
    pub readings_valid: u64,
    /// Of those, new rows in the store (the rest were already stored).
    pub readings_new: u64,
    /// Rejections per reason (whole messages and single readings).
    pub rejected: BTreeMap<String, u64>,
    /// Retained messages skipped (not new readings).
    pub retained_skipped: u64,
    /// Readings left out of aggregates: `duplicate`, `too_late`.
    pub dropped: BTreeMap<String, u64>,
    /// Aggregate rows written.
    pub aggregates: u64,
    /// Alert transitions written.
    pub alerts: u64,
    /// Quality rows written.
    pub quality_rows: u64,
    /// Subscriptions made (one per CONNACK without session).
    pub subscribes: u64,
    /// CONNACKs received (1 + reconnects).
    pub connacks: u64,
    /// Storage calls retried after a retryable error (readings and outputs).
    pub store_retries: u64,
    /// Outputs not published on MQTT because the request queue was full (they are stored).
    pub publish_dropped: u64,
    /// Raw readings replayed from the store at start to rebuild window state.
    pub replayed_readings: u64,
    /// Outputs given up at shutdown because storage stayed unavailable past the drain deadline.
    pub outputs_lost: u64,
}

/// Why the core stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Bad configuration (the message names the field).
    #[error("config: {0}")]
    Config(String),
    /// Storage could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Registry could not be loaded.
    #[error("registry: {0}")]
    Registry(String),
    /// timely or runtime start-up failure.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Shared counters: the [`CoreReport`] returned by [`run()`] and the metric families exported on
/// `/metrics` (see [`crate::health`]).
#[derive(Debug, Default)]
pub struct Counters {
    report: Mutex<CoreReport>,
    readiness: Readiness,
    metrics: Metrics,
}

impl Counters {
    fn with<R>(&self, f: impl FnOnce(&mut CoreReport) -> R) -> R {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A snapshot of the report so far.
    pub fn report(&self) -> CoreReport {
        self.with(|r| r.clone())
    }

    /// The metric families.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Readiness inputs (subscribed, storage writable).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Text exposition of every metric (OpenMetrics 1.0 text, which Prometheus scrapes).
    pub fn prometheus(&self) -> String {
        self.metrics.encode()
    }

    fn reject(&self, d: &DeadLetter) {
        self.with(|r| *r.rejected.entry(d.reason.clone()).or_default() += 1);
        self.metrics
            .rejected
            .get_or_create(&label("reason", &d.reason))
            .inc();
        self.metrics
            .rejected_by_source
            .get_or_create(&vec![
                ("source".to_string(), d.source.clone()),
                ("reason".to_string(), d.reason.clone()),
            ])
            .inc();
    }

    fn set_storage_ok(&self, ok: bool) {
        self.readiness.storage_ok.store(ok, Ordering::Release);
        self.metrics.storage_ok.set(i64::from(ok));
    }

    fn store_retry(&self, op: &str) {
        self.with(|r| r.store_retries += 1);
        self.metrics
            .store_retries
            .get_or_create(&label("op", op))
            .inc();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Turns the shared endpoint into rumqttc options: clean session off, manual acks.
///
/// # Errors
/// [`CoreError::Config`] when the TLS files are unreadable or invalid (the field is named).
pub fn mqtt_options(ep: &MqttEndpoint) -> Result<MqttOptions, CoreError> {
    let mut o = mqtt_link::options(ep).map_err(|e| CoreError::Config(e.to_string()))?;
    o.set_clean_session(false);
    o.set_manual_acks(true);
    Ok(o)
}

/// Socket options of every MQTT connection of the core: TCP_NODELAY on ([`mqtt_link::network_options`]).
pub fn network_options() -> rumqttc::NetworkOptions {
    mqtt_link::network_options()
}

/// Runs the core until `shutdown` is cancelled; blocking (call from a thread / `spawn_blocking`).
///
/// # Errors
/// [`CoreError`] on bad config, storage or registry that cannot be opened, or a runtime failure.
pub fn run(cfg: CoreConfig, shutdown: CancellationToken) -> Result<CoreReport, CoreError> {
    cfg.windows.validate().map_err(CoreError::Config)?;
    if cfg.ingest_buffer_messages == 0 {
        return Err(CoreError::Config(
            "ingest_buffer_messages must be > 0".into(),
        ));
    }
    if cfg.source_idle_ms <= 0 || cfg.idle_advance_ms <= 0 {
        return Err(CoreError::Config(
            "source_idle_ms and idle_advance_ms must be > 0".into(),
        ));
    }
    let registry = match &cfg.registry_path {
        Some(p) => Registry::load(p).map_err(|e| CoreError::Registry(e.to_string()))?,
        None => Registry::default(),
    };
    let info = Arc::new(SiteInfo::from_registry(&registry));
    let store = open_store(&cfg.store)?;
    let series_sink = open_sink(&cfg.store)?;
    let opts = mqtt_options(&cfg.mqtt)?;
    let mut out_opts = mqtt_options(&cfg.mqtt)?;
    out_opts.set_client_id(format!("{}-out", cfg.mqtt.client_id));
    out_opts.set_manual_acks(false);
    let counters = Arc::new(Counters::default());
    let wm = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Vec<CoreInput>)>(cfg.channel_capacity.max(1));
    let (out_tx, out_rx) =
        std::sync::mpsc::sync_channel::<CoreOutput>(cfg.channel_capacity.max(1) * 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CoreError::Runtime(e.to_string()))?;
    // Request queue: subscribes and one ack per buffered message (see the module notes).
    let (client, mut eventloop) = AsyncClient::new(opts, 2 * cfg.ingest_buffer_messages + 16);
    let (out_client, mut out_eventloop) = AsyncClient::new(out_opts, 1024);
    // TCP_NODELAY: without it acks and small publishes wait for Nagle (~ms each; see PITFALLS).
    eventloop.set_network_options(network_options());
    out_eventloop.set_network_options(network_options());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&cfg.http_addr))
        .map_err(|e| CoreError::Config(format!("http_addr {}: {e}", cfg.http_addr)))?;
    rt.spawn(health(listener, counters.clone(), shutdown.clone()));
    let (buf_tx, buf_rx) = tokio::sync::mpsc::channel::<Received>(cfg.ingest_buffer_messages);
    let writer = rt.spawn(writer(
        buf_rx,
        client.clone(),
        cfg.clone(),
        store.clone(),
        series_sink.clone(),
        counters.clone(),
        wm.clone(),
        tx,
        shutdown.clone(),
    ));
    let ingest = rt.spawn(reader(
        client,
        eventloop,
        cfg.clone(),
        counters.clone(),
        buf_tx,
        writer,
        shutdown.clone(),
    ));
    let out_stop = CancellationToken::new();
    if cfg.publish {
        rt.spawn(output_connection(out_eventloop, out_stop.clone()));
    }
    let sink = {
        let (store, counters, publish) = (store.clone(), counters.clone(), cfg.publish);
        let series_sink = series_sink.clone();
        let (shutdown, retry_max, drain) = (
            shutdown.clone(),
            Duration::from_millis(cfg.store_retry_max_ms.max(50)),
            Duration::from_millis(cfg.drain_deadline_ms),
        );
        let out_client = out_client.clone();
        std::thread::spawn(move || {
            sink_loop(
                out_rx,
                store,
                series_sink,
                counters,
                out_client,
                publish,
                shutdown,
                retry_max,
                drain,
            )
        })
    };

    let timely_cfg = timely_config(&cfg)?;
    let rx = Arc::new(Mutex::new(Some(rx)));
    let wcfg = cfg.windows.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done_w = done.clone();
    // The first worker of this process feeds its input (worker indices are global in a cluster:
    // process p's workers are p × w … p × w + w − 1).
    let feeder_index = if cfg.processes > 1 {
        cfg.process_index * cfg.workers.max(1)
    } else {
        0
    };
    let guards = timely::execute(timely_cfg, move |worker| {
        let mut rx = if worker.index() == feeder_index {
            rx.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        let mut input = timely::dataflow::InputHandleVec::<u64, CoreInput>::new();
        let probe = timely::dataflow::ProbeHandle::new();
        let out_tx = out_tx.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let out = build(input.to_stream(scope), &wcfg, &info);
            timely::dataflow::operators::Probe::probe_with(
                emit(out, "WriteSeries", move |_, x| {
                    // Blocks while the sink is behind (backpressure); fails only after the sink ended.
                    let _ = out_tx.send(x);
                }),
                &probe,
            );
        });
        loop {
            let mut closed = false;
            let w = wm.load(Ordering::Acquire);
            if let Some(r) = rx.as_mut() {
                loop {
                    match r.try_recv() {
                        Ok((t, mut batch)) => {
                            if t > *input.time() {
                                input.advance_to(t);
                            }
                            // The whole batch as one container (no per-record copy).
                            input.send_batch(&mut batch);
                        }
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            } else if done_w.load(Ordering::Acquire) {
                closed = true;
            }
            if w > *input.time() {
                input.advance_to(w);
            }
            if closed {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(20)));
        }
        input.close();
        while worker.step() {}
    })
    .map_err(CoreError::Runtime)?;
    // Worker 0 leaves when the writer dropped its sender; tell the other local workers too.
    let _ = rt.block_on(ingest);
    done.store(true, Ordering::Release);
    drop(guards);
    let _ = sink.join();
    if cfg.publish {
        // Let the last publications go out.
        rt.block_on(async {
            let _ = out_client.disconnect().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
    }
    out_stop.cancel();
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(counters.report())
}

/// Which stored readings this process replays at start: all of its store; in a cluster whose
/// processes share one store (`shared_store`) the sites with `route_hash(site) % processes ==
/// process_index`, so each stored reading is replayed exactly once across the cluster.
fn replay_shard(cfg: &CoreConfig) -> (usize, usize) {
    if cfg.processes > 1 && cfg.shared_store {
        (cfg.process_index, cfg.processes)
    } else {
        (0, 1)
    }
}

fn timely_config(cfg: &CoreConfig) -> Result<timely::Config, CoreError> {
    let workers = cfg.workers.max(1);
    let communication = if cfg.processes > 1 {
        if cfg.hosts.len() != cfg.processes {
            return Err(CoreError::Config("hosts: one address per process".into()));
        }
        timely::CommunicationConfig::Cluster {
            threads: workers,
            process: cfg.process_index,
            addresses: cfg.hosts.clone(),
            report: false,
            zerocopy: false,
        }
    } else if workers > 1 {
        timely::CommunicationConfig::Process(workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok(timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    })
}

fn dead_letter(
    topic: &str,
    source: &str,
    reason: &str,
    detail: &str,
    payload: &[u8],
) -> DeadLetter {
    DeadLetter {
        ts_ms: now_ms(),
        topic: topic.into(),
        source: source.into(),
        reason: reason.into(),
        detail: detail.into(),
        payload: payload[..payload.len().min(DEAD_LETTER_PAYLOAD_MAX)].to_vec(),
    }
}

/// Retries a storage call with capped exponential backoff until it succeeds or fails permanently; after
/// shutdown it gives up once `drain` has passed. `Ok(None)` = gave up (shutdown), `Err` = permanent.
async fn with_retry<T: Send + 'static>(
    shutdown: &CancellationToken,
    counters: &Counters,
    retry_max: Duration,
    drain: Duration,
    f: impl Fn() -> Result<T, StoreError> + Send + Sync + Clone + 'static,
) -> Result<Option<T>, StoreError> {
    let mut delay = Duration::from_millis(50);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let g = f.clone();
        match tokio::task::spawn_blocking(g).await {
            Ok(Ok(v)) => {
                counters.set_storage_ok(true);
                return Ok(Some(v));
            }
            Ok(Err(e)) if e.is_retryable() => {
                counters.set_storage_ok(false);
                counters.store_retry("readings");
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "storage unavailable, retrying");
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(StoreError::Other(format!("storage task failed: {e}"))),
        }
        if shutdown.is_cancelled() {
            let d = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
            if tokio::time::Instant::now() >= d {
                return Ok(None);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled(), if deadline.is_none() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(retry_max);
    }
}

/// A received message, decoded and validated, waiting in the ingest buffer for its durable write.
struct Received {
    publish: rumqttc::Publish,
    /// `parking`, `grid` or `unknown` (from the topic).
    dataset: &'static str,
    good: Vec<Reading>,
    dead: Vec<DeadLetter>,
    /// Receive time, UTC epoch ms.
    now_ms: i64,
}

/// Topic check, JSON decoding and validation of one message (sans-IO).
fn decode(p: &rumqttc::Publish, limits: &Limits, now: i64) -> Received {
    let topic = p.topic.clone();
    let mut dead = Vec::new();
    let mut good = Vec::new();
    let parsed = telemetry::topic::parse(&topic);
    let topic_source = match &parsed {
        Ok(telemetry::topic::Topic::Device { device, .. }) => (*device).to_string(),
        Ok(telemetry::topic::Topic::GatewayBatch { gateway }) => (*gateway).to_string(),
        _ => "unknown".to_string(),
    };
    let dataset = match &parsed {
        Ok(telemetry::topic::Topic::Device { kind, .. }) => kind.as_str(),
        _ => "unknown",
    };
    match parsed {
        Err(reason) => dead.push(dead_letter(
            &topic,
            &topic_source,
            reason.as_str(),
            "topic off schema",
            &p.payload,
        )),
        Ok(t) => match telemetry::json::decode(&p.payload, limits, now) {
            Err(rej) => dead.push(dead_letter(
                &topic,
                &topic_source,
                rej.reason.as_str(),
                &rej.detail,
                &p.payload,
            )),
            Ok(d) => {
                for rej in d.rejected {
                    dead.push(dead_letter(
                        &topic,
                        &topic_source,
                        rej.reason.as_str(),
                        &rej.detail,
                        &p.payload,
                    ));
                }
                for r in d.readings {
                    match telemetry::topic::check_reading_topic(&r, &t) {
                        Ok(()) => good.push(r),
                        Err(reason) => dead.push(dead_letter(
                            &topic,
                            r.device.as_str(),
                            reason.as_str(),
                            "reading disagrees with topic",
                            &p.payload,
                        )),
                    }
                }
            }
        },
    }
    Received {
        publish: p.clone(),
        dataset,
        good,
        dead,
        now_ms: now,
    }
}

/// The reader: polls the event loop, (re)subscribes, decodes, fills the ingest buffer. See the module
/// notes for the full-buffer policy and the shutdown drain.
async fn reader(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    cfg: CoreConfig,
    counters: Arc<Counters>,
    buf_tx: tokio::sync::mpsc::Sender<Received>,
    writer: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
) {
    let limits = Limits {
        max_payload_bytes: cfg.limits_max_payload_bytes,
        ..Limits::default()
    };
    let mut backoff = Duration::from_millis(100);
    let filters: Vec<String> = telemetry::topic::ingest_filters()
        .into_iter()
        .map(|f| match &cfg.share_group {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        })
        .collect();
    loop {
        // Full buffer: wait for a slot before taking the next event (backpressure, never drop).
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = buf_tx.reserve() => match p { Ok(p) => p, Err(_) => break },
        };
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                counters.with(|r| r.connacks += 1);
                counters.metrics.connacks.inc();
                if ack.session_present {
                    // The broker kept our subscription.
                    counters.readiness.subscribed.store(true, Ordering::Release);
                } else {
                    // rumqttc does not re-subscribe by itself (see PITFALLS).
                    for f in &filters {
                        if let Err(e) = client.subscribe(f.clone(), QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, filter = %f, "subscribe request failed");
                        }
                    }
                    counters.with(|r| r.subscribes += 1);
                    counters.metrics.subscribes.inc();
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                counters.readiness.subscribed.store(true, Ordering::Release)
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.retain {
                    counters.with(|r| r.retained_skipped += 1);
                    let _ = client.ack(&p).await;
                    continue;
                }
                permit.send(decode(&p, &limits, now_ms()));
                let held = buf_tx.max_capacity() - buf_tx.capacity();
                counters.metrics.buffer_messages.set(held as i64);
            }
            Ok(_) => {}
            Err(e) => {
                counters
                    .readiness
                    .subscribed
                    .store(false, Ordering::Release);
                let jitter =
                    Duration::from_millis(u64::try_from(now_ms().rem_euclid(100)).unwrap_or(0));
                tracing::warn!(error = %e, delay_ms = (backoff + jitter).as_millis() as u64, "mqtt connection error, reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    // Drain: no new messages; keep polling so the writer's acknowledgements go out.
    drop(buf_tx);
    let deadline = tokio::time::sleep(Duration::from_millis(cfg.drain_deadline_ms + 1_000));
    tokio::pin!(writer, deadline);
    loop {
        tokio::select! {
            _ = &mut writer => break,
            _ = &mut deadline => {
                tracing::warn!("ingest writer did not drain in time; unacknowledged messages will be redelivered");
                writer.abort();
                break;
            }
            ev = eventloop.poll() => {
                // Messages arriving now are not acknowledged: the broker redelivers them later.
                if ev.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = client.disconnect().await;
    // Let the disconnect go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
}

/// The writer: durable write (with retry), then acknowledge, then feed the dataflow. Replays the raw
/// store first (see [`crate::recovery`]).
#[allow(clippy::too_many_arguments)]
async fn writer(
    mut rx: tokio::sync::mpsc::Receiver<Received>,
    client: AsyncClient,
    cfg: CoreConfig,
    store: Arc<dyn SeriesStore>,
    series_sink: Option<Arc<dyn SeriesSink>>,
    counters: Arc<Counters>,
    wm_shared: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::Sender<(u64, Vec<CoreInput>)>,
    shutdown: CancellationToken,
) {
    let mut wm = Watermark::new(cfg.idle_advance_ms, cfg.source_idle_ms);
    if cfg.replay_on_start {
        match crate::recovery::replay(
            store.clone(),
            &cfg.windows,
            &tx,
            &mut wm,
            replay_shard(&cfg),
        )
        .await
        {
            Ok(n) => {
                counters.with(|r| r.replayed_readings += n);
                counters.metrics.replayed_readings.inc_by(n);
                publish_wm(&wm_shared, wm.get());
            }
            Err(e) => {
                tracing::error!(error = %e, "replay of stored readings failed; windows start empty")
            }
        }
    }
    let retry_max = Duration::from_millis(cfg.store_retry_max_ms.max(50));
    let drain = Duration::from_millis(cfg.drain_deadline_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut acks: std::collections::VecDeque<rumqttc::Publish> = std::collections::VecDeque::new();
    loop {
        let item = tokio::select! {
            x = rx.recv() => match x { Some(x) => x, None => break },
            _ = tokio::time::sleep(Duration::from_millis(5)), if !acks.is_empty() => {
                flush_acks(&client, &mut acks);
                continue;
            }
            _ = tick.tick() => {
                // Quiet sources: move with the wall clock, but not while messages wait to be written.
                if rx.is_empty() && counters.readiness.storage_ok.load(Ordering::Acquire) {
                    publish_wm(&wm_shared, wm.tick(now_ms()));
                }
                continue;
            }
        };
        // Group commit: everything already buffered (bounded) goes into one transaction.
        let mut group = vec![item];
        let mut group_readings = group[0].good.len();
        while group.len() < GROUP_MAX_MESSAGES && group_readings < GROUP_MAX_READINGS {
            match rx.try_recv() {
                Ok(x) => {
                    group_readings += x.good.len();
                    group.push(x);
                }
                Err(_) => break,
            }
        }
        counters.metrics.buffer_messages.set(rx.len() as i64);
        // The group's dataflow time: the watermark before it (never later than per-message stamping
        // would give, so no reading turns late or lands after its window's close because of grouping).
        let t = u64::try_from(wm.get().max(0)).unwrap_or(0);
        let mut publishes = Vec::with_capacity(group.len());
        let mut goods: Vec<(Vec<Reading>, i64)> = Vec::with_capacity(group.len());
        let mut deads: Vec<(Vec<DeadLetter>, &'static str)> = Vec::with_capacity(group.len());
        for r in group {
            publishes.push(r.publish);
            goods.push((r.good, r.now_ms));
            deads.push((r.dead, r.dataset));
        }
        let n_good = group_readings as u64;
        let goods = Arc::new(goods);
        let (s1, g1) = (store.clone(), goods.clone());
        let written = if n_good == 0 {
            Ok(Some(0))
        } else {
            with_retry(&shutdown, &counters, retry_max, drain, move || {
                s1.write_reading_groups(&g1)
            })
            .await
        };
        // Mirror to the time-series backend before acknowledging (same retry rules).
        let written = match (written, &series_sink) {
            (Ok(Some(n)), Some(sink)) if n_good > 0 => {
                let k = sink.clone();
                let flat: Arc<Vec<Reading>> =
                    Arc::new(goods.iter().flat_map(|g| g.0.iter().cloned()).collect());
                with_retry(&shutdown, &counters, retry_max, drain, move || {
                    k.write_readings(&flat)
                })
                .await
                .map(|o| o.map(|_| n))
            }
            (w, _) => w,
        };
        let (new, stored) = match written {
            Ok(Some(n)) => (n as u64, true),
            // Shutdown with storage still down: leave it unacknowledged (redelivered next session).
            Ok(None) => break,
            Err(e) => {
                // Retrying cannot help: keep the payloads as dead letters rather than block forever.
                tracing::error!(error = %e, messages = publishes.len(), "readings refused by storage");
                for ((p, (good, _)), (dead, _)) in
                    publishes.iter().zip(goods.iter()).zip(deads.iter_mut())
                {
                    if !good.is_empty() {
                        dead.push(dead_letter(
                            &p.topic,
                            good.first().map_or("unknown", |r| r.device.as_str()),
                            "store_invalid",
                            &e.to_string(),
                            &p.payload,
                        ));
                    }
                }
                (0, false)
            }
        };
        let all_dead: Vec<DeadLetter> = deads.iter().flat_map(|d| d.0.iter().cloned()).collect();
        if !all_dead.is_empty() {
            let (s2, d2) = (store.clone(), Arc::new(all_dead.clone()));
            match with_retry(&shutdown, &counters, retry_max, drain, move || {
                s2.write_dead_letters(&d2)
            })
            .await
            {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "dead letters refused by storage (counted only)")
                }
            }
        }
        // Never wait on the request queue here: the reader may be blocked on a full buffer with the
        // event loop's buffered incoming events still to hand out, and only its polling drains the
        // queue. Acks that do not fit wait in `acks` (receive order kept) and go out on the next slot.
        let n_msgs = publishes.len() as u64;
        acks.extend(publishes);
        flush_acks(&client, &mut acks);
        counters.with(|r| {
            r.messages += n_msgs;
            r.readings_valid += n_good;
            r.readings_new += new;
        });
        counters.metrics.messages.inc_by(n_msgs);
        counters.metrics.readings_valid.inc_by(n_good);
        counters.metrics.readings_stored.inc_by(new);
        for d in &all_dead {
            counters.reject(d);
        }
        let goods = Arc::try_unwrap(goods).unwrap_or_else(|a| (*a).clone());
        let mut batch: Vec<CoreInput> = Vec::with_capacity(group_readings + all_dead.len());
        if stored {
            let mut last_lag = None;
            for (good, now) in goods {
                for r in &good {
                    let lag = now - r.ts_ms;
                    counters.metrics.ingest_lag_ms.observe(lag as f64);
                    last_lag = Some(lag);
                    wm.observe(r.device.as_str(), r.ts_ms, now);
                }
                CoreReading::extend_inputs(good, now, &mut batch);
            }
            if let Some(lag) = last_lag {
                counters.metrics.ingest_lag_last_ms.set(lag);
            }
        }
        for (dead, dataset) in deads {
            for d in dead {
                batch.push(CoreInput::Rejected {
                    source: d.source,
                    dataset: dataset.into(),
                });
            }
        }
        if tx.send((t, batch)).await.is_err() {
            break;
        }
        publish_wm(&wm_shared, wm.advance(now_ms()));
    }
    // The reader keeps polling until we return, so waiting on the queue is fine now.
    for p in acks {
        if let Err(e) = client.ack(&p).await {
            tracing::warn!(error = %e, "ack failed");
        }
    }
}

/// Hands queued acknowledgements to the client in order until its request queue is full.
fn flush_acks(client: &AsyncClient, acks: &mut std::collections::VecDeque<rumqttc::Publish>) {
    while let Some(p) = acks.front() {
        match client.try_ack(p) {
            Ok(()) => {
                acks.pop_front();
            }
            Err(rumqttc::ClientError::TryRequest(_)) => return,
            Err(e) => {
                // The event loop is gone (shutdown): the broker redelivers unacknowledged messages.
                tracing::warn!(error = %e, "ack failed");
                acks.pop_front();
            }
        }
    }
}

fn publish_wm(shared: &AtomicU64, w: i64) {
    shared.fetch_max(u64::try_from(w.max(0)).unwrap_or(0), Ordering::AcqRel);
}

/// Keeps the output connection (aggregates and alerts) polled, reconnecting with backoff.
async fn output_connection(mut eventloop: rumqttc::EventLoop, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut disconnecting = false;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => backoff = Duration::from_millis(100),
            // Our own DISCONNECT at shutdown: the broker closing the link next is expected.
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => disconnecting = true,
            Ok(_) => {}
            Err(_) if disconnecting => return,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt output connection error, reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Writes outputs to the store (retrying like the writer; after shutdown, up to `drain`) and publishes
/// them on MQTT (best effort: the store is the record; a full request queue is counted).
#[allow(clippy::too_many_arguments)]
fn sink_loop(
    rx: std::sync::mpsc::Receiver<CoreOutput>,
    store: Arc<dyn SeriesStore>,
    series_sink: Option<Arc<dyn SeriesSink>>,
    counters: Arc<Counters>,
    client: AsyncClient,
    publish: bool,
    shutdown: CancellationToken,
    retry_max: Duration,
    drain: Duration,
) {
    let retry = |n: usize, f: &dyn Fn() -> Result<(), StoreError>| -> bool {
        if n == 0 {
            return true;
        }
        let mut delay = Duration::from_millis(50);
        let mut deadline: Option<std::time::Instant> = None;
        loop {
            match f() {
                Ok(()) => {
                    counters.set_storage_ok(true);
                    return true;
                }
                Err(e) if e.is_retryable() => {
                    counters.set_storage_ok(false);
                    counters.store_retry("outputs");
                    tracing::warn!(error = %e, "storage unavailable for outputs, retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = n, "outputs refused by storage");
                    counters.with(|r| r.outputs_lost += n as u64);
                    counters.metrics.outputs_lost.inc_by(n as u64);
                    return false;
                }
            }
            if shutdown.is_cancelled() {
                let d = *deadline.get_or_insert_with(|| std::time::Instant::now() + drain);
                if std::time::Instant::now() >= d {
                    tracing::error!(
                        rows = n,
                        "storage still down at the drain deadline, outputs lost"
                    );
                    counters.with(|r| r.outputs_lost += n as u64);
                    counters.metrics.outputs_lost.inc_by(n as u64);
                    return false;
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(retry_max);
        }
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(x) = rx.try_recv() {
            batch.push(x);
            if batch.len() >= 1000 {
                break;
            }
        }
        let (mut aggs, mut alerts, mut quality) = (Vec::new(), Vec::new(), Vec::new());
        for o in batch {
            match o {
                CoreOutput::Aggregate(a) => aggs.push(a),
                CoreOutput::Alert(a) => alerts.push(a),
                CoreOutput::Quality(q) => quality.push(q),
                CoreOutput::Dropped { reason, .. } => {
                    counters.with(|r| *r.dropped.entry(reason.clone()).or_default() += 1);
                    counters
                        .metrics
                        .dropped
                        .get_or_create(&label("reason", &reason))
                        .inc();
                }
            }
        }
        if retry(aggs.len(), &|| {
            store.upsert_aggregates(&aggs)?;
            if let Some(k) = &series_sink {
                k.write_aggregates(&aggs)?;
            }
            Ok(())
        }) {
            counters.with(|r| r.aggregates += aggs.len() as u64);
            counters
                .metrics
                .aggregates_written
                .inc_by(aggs.len() as u64);
        }
        if retry(alerts.len(), &|| store.write_alerts(&alerts)) {
            counters.with(|r| r.alerts += alerts.len() as u64);
            counters.metrics.alerts_written.inc_by(alerts.len() as u64);
        }
        if retry(quality.len(), &|| store.write_quality(&quality)) {
            counters.with(|r| r.quality_rows += quality.len() as u64);
            counters
                .metrics
                .quality_rows_written
                .inc_by(quality.len() as u64);
        }
        if publish {
            let mut dropped = 0u64;
            for a in &aggs {
                let topic = telemetry::topic::aggregate(
                    &a.district,
                    a.kind,
                    &a.scope,
                    &a.id,
                    &a.window_label(),
                );
                if let Ok(body) = serde_json::to_vec(a)
                    && client
                        .try_publish(topic, QoS::AtLeastOnce, false, body)
                        .is_err()
                {
                    dropped += 1;
                }
            }
            for a in &alerts {
                let topic = telemetry::topic::alert(&a.district, &a.site, &a.alert);
                if let Ok(body) = serde_json::to_vec(a)
                    && client
                        .try_publish(topic, QoS::AtLeastOnce, true, body)
                        .is_err()
                {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                counters.with(|r| r.publish_dropped += dropped);
                counters.metrics.publish_dropped.inc_by(dropped);
            }
        }
    }
}

async fn health(
    listener: tokio::net::TcpListener,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let app = crate::health::router(counters);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "health server failed");
    }
}
