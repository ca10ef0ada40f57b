//! The core as a service: MQTT ingest (ack after durable write) → raw store → timely dataflow →
//! aggregates, alerts and quality into the store and onto MQTT; health HTTP.
//!
//! Flow control: one MQTT message is decoded, its valid readings written in one SQLite transaction and
//! only then acknowledged (acks are therefore in receive order). When storage fails the message is retried
//! with capped exponential backoff and nothing further is acknowledged — the broker keeps the rest (the
//! persistent session holds them). Records go to the dataflow through a bounded channel
//! (`channel_capacity`; full = the ingest waits); outputs go to the sink through a bounded channel (full
//! = timely workers wait).

use crate::dataflow::{build, emit};
use crate::health::{Metrics, Readiness, label};
use crate::model::{CoreInput, CoreOutput, SiteInfo, WindowConfig};
use crate::store::{DeadLetter, SeriesStore, StoreConfig, StoreError, open_store};
use crate::watermark::Watermark;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telemetry::Limits;
use telemetry::mqtt::MqttEndpoint;
use telemetry::registry::Registry;
use tokio_util::sync::CancellationToken;

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
    /// Health HTTP listen address (`/healthz`, `/readyz`, `/metrics`).
    pub http_addr: String,
    /// Wall time without watermark progress before it moves with the wall clock, ms.
    pub idle_advance_ms: i64,
    /// Capacity of the ingest → dataflow and dataflow → sink channels, batches / records.
    pub channel_capacity: usize,
    /// Publish aggregates and alerts on MQTT.
    pub publish: bool,
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
            http_addr: "127.0.0.1:9181".into(),
            idle_advance_ms: 5_000,
            channel_capacity: 1024,
            publish: true,
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
/// [`CoreError::Config`] for TLS (not supported by this core yet).
pub fn mqtt_options(ep: &MqttEndpoint) -> Result<MqttOptions, CoreError> {
    if ep.tls.is_some() {
        return Err(CoreError::Config(
            "mqtt.tls: TLS is not supported by stream-core yet".into(),
        ));
    }
    let mut o = MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(u64::from(ep.keep_alive_s.max(5))));
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_max_packet_size(ep.max_packet_bytes, ep.max_packet_bytes);
    if let (Some(u), Some(p)) = (&ep.username, &ep.password) {
        o.set_credentials(u.clone(), p.clone());
    }
    Ok(o)
}

/// Runs the core until `shutdown` is cancelled; blocking (call from a thread / `spawn_blocking`).
///
/// # Errors
/// [`CoreError`] on bad config, storage or registry that cannot be opened, or a runtime failure.
pub fn run(cfg: CoreConfig, shutdown: CancellationToken) -> Result<CoreReport, CoreError> {
    cfg.windows.validate().map_err(CoreError::Config)?;
    let registry = match &cfg.registry_path {
        Some(p) => Registry::load(p).map_err(|e| CoreError::Registry(e.to_string()))?,
        None => Registry::default(),
    };
    let info = Arc::new(SiteInfo::from_registry(&registry));
    let store = open_store(&cfg.store)?;
    let opts = mqtt_options(&cfg.mqtt)?;
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
    let (client, eventloop) = AsyncClient::new(opts, 64);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&cfg.http_addr))
        .map_err(|e| CoreError::Config(format!("http_addr {}: {e}", cfg.http_addr)))?;
    rt.spawn(health(listener, counters.clone(), shutdown.clone()));
    let ingest = rt.spawn(ingest(
        client.clone(),
        eventloop,
        cfg.clone(),
        store.clone(),
        counters.clone(),
        wm.clone(),
        tx,
        shutdown.clone(),
    ));
    let sink = {
        let (store, counters, client, publish) =
            (store.clone(), counters.clone(), client.clone(), cfg.publish);
        std::thread::spawn(move || sink_loop(out_rx, store, counters, client, publish))
    };

    let timely_cfg = timely_config(&cfg)?;
    let rx = Arc::new(Mutex::new(Some(rx)));
    let wcfg = cfg.windows.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done_w = done.clone();
    let guards = timely::execute(timely_cfg, move |worker| {
        let mut rx = if worker.index() == 0 {
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
                        Ok((t, batch)) => {
                            if t > *input.time() {
                                input.advance_to(t);
                            }
                            for x in batch {
                                input.send(x);
                            }
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
    // Worker 0 leaves when the ingest dropped its sender; tell the other local workers too.
    let _ = rt.block_on(ingest);
    done.store(true, Ordering::Release);
    drop(guards);
    let _ = sink.join();
    rt.shutdown_timeout(Duration::from_secs(2));
    let report = counters.report();
    Ok(report)
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

/// Retries a storage call with capped exponential backoff until it succeeds, fails permanently or
/// shutdown is requested.
async fn with_retry<T: Send + 'static>(
    shutdown: &CancellationToken,
    counters: &Counters,
    f: impl Fn() -> Result<T, StoreError> + Send + Sync + Clone + 'static,
) -> Option<T> {
    let mut delay = Duration::from_millis(50);
    loop {
        let g = f.clone();
        match tokio::task::spawn_blocking(g).await {
            Ok(Ok(v)) => {
                counters.set_storage_ok(true);
                return Some(v);
            }
            Ok(Err(e)) if e.is_retryable() => {
                counters.set_storage_ok(false);
                counters.store_retry("readings");
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "storage unavailable, retrying");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storage write failed permanently");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "storage task failed");
                return None;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[allow(clippy::too_many_arguments)]
async fn ingest(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    cfg: CoreConfig,
    store: Arc<dyn SeriesStore>,
    counters: Arc<Counters>,
    wm_shared: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::Sender<(u64, Vec<CoreInput>)>,
    shutdown: CancellationToken,
) {
    let limits = Limits {
        max_payload_bytes: cfg.limits_max_payload_bytes,
        ..Limits::default()
    };
    let mut wm = Watermark::new(cfg.idle_advance_ms);
    let mut backoff = Duration::from_millis(100);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let filters: Vec<String> = telemetry::topic::ingest_filters()
        .into_iter()
        .map(|f| match &cfg.share_group {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        })
        .collect();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let w = wm.tick(now_ms());
                publish_wm(&wm_shared, w);
                continue;
            }
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
                let now = now_ms();
                let topic = p.topic.clone();
                let mut dead = Vec::new();
                let mut good = Vec::new();
                let parsed = telemetry::topic::parse(&topic);
                let topic_source = match &parsed {
                    Ok(telemetry::topic::Topic::Device { device, .. }) => (*device).to_string(),
                    Ok(telemetry::topic::Topic::GatewayBatch { gateway }) => (*gateway).to_string(),
                    _ => "unknown".to_string(),
                };
                let topic_kind = match &parsed {
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
                    Ok(t) => match telemetry::json::decode(&p.payload, &limits, now) {
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
                // Durable first, then acknowledge.
                let n_good = good.len() as u64;
                let good = Arc::new(good);
                let dead = Arc::new(dead);
                let (s1, g1) = (store.clone(), good.clone());
                let new = if good.is_empty() {
                    Some(0)
                } else {
                    with_retry(&shutdown, &counters, move || s1.write_readings(&g1, now)).await
                };
                let Some(new) = new else { break };
                if !dead.is_empty() {
                    let (s2, d2) = (store.clone(), dead.clone());
                    if with_retry(&shutdown, &counters, move || s2.write_dead_letters(&d2))
                        .await
                        .is_none()
                    {
                        break;
                    }
                }
                if let Err(e) = client.ack(&p).await {
                    tracing::warn!(error = %e, "ack failed");
                }
                counters.with(|r| {
                    r.messages += 1;
                    r.readings_valid += n_good;
                    r.readings_new += new as u64;
                });
                counters.metrics.messages.inc();
                counters.metrics.readings_valid.inc_by(n_good);
                counters.metrics.readings_stored.inc_by(new as u64);
                for d in dead.iter() {
                    counters.reject(d);
                }
                for r in good.iter() {
                    let lag = now - r.ts_ms;
                    counters.metrics.ingest_lag_ms.observe(lag as f64);
                    counters.metrics.ingest_lag_last_ms.set(lag);
                }
                let mut batch: Vec<CoreInput> = Vec::with_capacity(good.len() + dead.len());
                for r in good.iter() {
                    wm.observe(r.ts_ms, now);
                    batch.push(CoreInput::Reading {
                        reading: r.clone(),
                        ingest_ms: now,
                    });
                }
                for d in dead.iter() {
                    batch.push(CoreInput::Rejected {
                        source: d.source.clone(),
                        dataset: topic_kind.into(),
                    });
                }
                let t = u64::try_from(wm.get().max(0)).unwrap_or(0);
                if tx.send((t, batch)).await.is_err() {
                    break;
                }
                publish_wm(&wm_shared, wm.get());
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
    let _ = client.disconnect().await;
    // Let the disconnect go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
}

fn publish_wm(shared: &AtomicU64, w: i64) {
    shared.fetch_max(u64::try_from(w.max(0)).unwrap_or(0), Ordering::AcqRel);
}

fn sink_loop(
    rx: std::sync::mpsc::Receiver<CoreOutput>,
    store: Arc<dyn SeriesStore>,
    counters: Arc<Counters>,
    client: AsyncClient,
    publish: bool,
) {
    let retry = |f: &dyn Fn() -> Result<(), StoreError>| {
        let mut delay = Duration::from_millis(50);
        for _ in 0..20 {
            match f() {
                Ok(()) => return,
                Err(e) if e.is_retryable() => std::thread::sleep(delay),
                Err(e) => {
                    tracing::error!(error = %e, "output write failed");
                    return;
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
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
        retry(&|| store.upsert_aggregates(&aggs));
        retry(&|| store.write_alerts(&alerts));
        retry(&|| store.write_quality(&quality));
        counters
            .metrics
            .aggregates_written
            .inc_by(aggs.len() as u64);
        counters.metrics.alerts_written.inc_by(alerts.len() as u64);
        counters
            .metrics
            .quality_rows_written
            .inc_by(quality.len() as u64);
        counters.with(|r| {
            r.aggregates += aggs.len() as u64;
            r.alerts += alerts.len() as u64;
            r.quality_rows += quality.len() as u64;
        });
        if publish {
            for a in &aggs {
                let topic = telemetry::topic::aggregate(
                    &a.district,
                    a.kind,
                    &a.scope,
                    &a.id,
                    &a.window_label(),
                );
                if let Ok(body) = serde_json::to_vec(a) {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, false, body);
                }
            }
            for a in &alerts {
                let topic = telemetry::topic::alert(&a.district, &a.site, &a.alert);
                if let Ok(body) = serde_json::to_vec(a) {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, true, body);
                }
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
