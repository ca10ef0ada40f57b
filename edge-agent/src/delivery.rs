//! Delivery: spool → MQTT with QoS 1, a persistent session, PUBACK → spool-id mapping, birth message,
//! last will, per-device status, reconnect with backoff, and batches when the backlog is large.
//!
//! # Shape
//! Two loops joined by one bounded channel of [`PumpEvent`]s:
//! - the *connection task* (tokio) polls rumqttc's `EventLoop` and forwards CONNACK, `Outgoing::Publish`,
//!   PUBACK and connection errors as events; it sleeps with exponential backoff + jitter + cap after an
//!   error (rumqttc would retry at once), renews subscriptions on a CONNACK without a session, and hands
//!   incoming publishes (LoRaWAN uplinks) to the intake.
//! - the *pump* (its own thread, because SQLite is blocking) owns the [`Spool`]: it appends incoming
//!   readings, publishes unsent rows oldest first, and deletes rows when their PUBACK arrives.
//!
//! # PUBACK → spool ids
//! rumqttc assigns the packet id when it takes a request off its channel and reports it as
//! `Outgoing::Publish(pkid)` in request order. The pump keeps a FIFO of requests handed over (each with
//! the spool ids it carries) and moves the head into an in-flight table keyed by pkid at each
//! `Outgoing::Publish` it has not seen yet (a pkid already in the table is a retransmission). PUBACK
//! removes the entry and acknowledges its ids in the spool.
//!
//! rumqttc drops its retransmission queue when a CONNACK says the broker has no session (broker restart
//! without persistence): the connection task keeps a copy of that queue across the reconnect and puts it
//! back, so nothing in flight is ever lost and the FIFO stays in step. QoS 1 re-publishing to a fresh
//! session is valid MQTT; consumers dedup on `(device, boot, seq)`.
//!
//! # Replayed
//! Rows whose spool id is below the first id appended after the latest CONNACK were spooled while the
//! link was down (or before a restart): they are sent with `replayed = true`. Retransmissions of
//! messages already sent keep their original payload.
//!
//! # Flow control
//! At most `max_inflight` publishes are outstanding (FIFO + in-flight); rumqttc's own inflight window
//! is the same number and its request channel is larger, so `try_publish` never blocks. The event
//! channel is bounded: intake waits when the pump is behind (backpressure to UDP/serial/LoRaWAN). When
//! the unsent backlog reaches `batch_threshold`, rows go out as multi-device batches on
//! `citybrain/v1/gateway/{gateway}/batch` (up to `batch_max_readings` / `batch_max_bytes`).

use crate::counters::Counters;
use crate::spool::{Spool, SpoolConfig, SpoolError};
use rand::Rng;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, Request,
    Subscribe, SubscribeFilter,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::message::Status;
use telemetry::mqtt::MqttEndpoint;
use telemetry::{DeviceId, Reading, topic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Most publishes awaiting PUBACK (also rumqttc's inflight window; default 100, 1..=65,535).
    pub max_inflight: u16,
    /// Capacity of the event channel into the pump, events (default 1,024; full = intake waits).
    pub event_channel_capacity: usize,
    /// Unsent backlog, readings, from which batches are used instead of one message per reading
    /// (default 200).
    pub batch_threshold: u64,
    /// Most readings in one batch message (default 500; consumers refuse more than 1,000).
    pub batch_max_readings: usize,
    /// Most payload bytes in one batch message (default 60,000; consumers refuse more than 65,536).
    pub batch_max_bytes: usize,
    /// First reconnect delay, ms (default 250).
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, ms (default 30,000).
    pub backoff_max_ms: u64,
    /// Interval of gateway and device status messages, s (default 30).
    pub status_interval_s: u64,
    /// On shutdown: how long to keep delivering the spool before stopping, ms (default 5,000). What is
    /// left stays in the spool for the next start.
    pub drain_timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_inflight: 100,
            event_channel_capacity: 1024,
            batch_threshold: 200,
            batch_max_readings: 500,
            batch_max_bytes: 60_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            status_interval_s: 30,
            drain_timeout_ms: 5_000,
        }
    }
}

/// Delivery failures at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A setting is out of range (the field is named).
    #[error("invalid delivery config: {0}")]
    Config(String),
    /// The pump thread could not be started or died.
    #[error("delivery pump: {0}")]
    Pump(String),
}

/// What the pump reacts to.
#[derive(Debug)]
pub enum PumpEvent {
    /// New readings to spool and deliver.
    Readings(Vec<Reading>),
    /// CONNACK received.
    Connected {
        /// Whether the broker kept our session.
        session_present: bool,
    },
    /// The connection failed.
    Disconnected,
    /// rumqttc sent a publish with this packet id.
    Outgoing(u16),
    /// The broker acknowledged this packet id.
    PubAck(u16),
    /// Periodic wake-up (age bound, status).
    Tick,
    /// Stop: drain (bounded by `drain_timeout_ms`), publish `offline`, disconnect.
    Shutdown,
}

/// A cloneable handle to hand readings to the delivery pump.
#[derive(Debug, Clone)]
pub struct DeliveryHandle {
    tx: mpsc::Sender<PumpEvent>,
    counters: Arc<Counters>,
}

impl DeliveryHandle {
    /// Sends readings to the spool (waits while the pump's channel is full). Returns false when the
    /// pump has stopped (the readings are then counted as `spool_errors`).
    pub async fn send(&self, readings: Vec<Reading>) -> bool {
        if readings.is_empty() {
            return true;
        }
        let n = readings.len() as u64;
        if self.tx.send(PumpEvent::Readings(readings)).await.is_err() {
            Counters::add(&self.counters.spool_errors, n);
            return false;
        }
        true
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// A running delivery: the handle, the LoRaWAN/other subscription inbox, and the tasks to join.
#[derive(Debug)]
pub struct Delivery {
    /// Hand readings in here.
    pub handle: DeliveryHandle,
    /// Incoming publishes on the subscriptions given to [`start`]: `(topic, payload)`.
    pub inbox: Option<mpsc::Receiver<(String, Vec<u8>)>>,
    pump: std::thread::JoinHandle<()>,
    conn: tokio::task::JoinHandle<()>,
    tx: mpsc::Sender<PumpEvent>,
}

impl Delivery {
    /// Asks the pump to drain and stop, then waits for both loops to end.
    ///
    /// # Errors
    /// [`DeliveryError::Pump`] when the pump thread panicked.
    pub async fn shutdown(self) -> Result<(), DeliveryError> {
        let _ = self.tx.send(PumpEvent::Shutdown).await;
        let pump = self.pump;
        tokio::task::spawn_blocking(move || pump.join())
            .await
            .map_err(|e| DeliveryError::Pump(e.to_string()))?
            .map_err(|_| DeliveryError::Pump("pump thread panicked".into()))?;
        let _ = self.conn.await;
        Ok(())
    }
}

/// Builds rumqttc options from the shared endpoint (credentials, TLS, keep-alive, packet size through
/// [`mqtt_link::options`]) plus what is the gateway's own: persistent session, in-flight window, last will.
///
/// # Errors
/// [`DeliveryError::Config`] when the TLS files are unreadable or invalid (the field is named).
pub fn mqtt_options(
    ep: &MqttEndpoint,
    will_topic: &str,
    inflight: u16,
) -> Result<MqttOptions, DeliveryError> {
    let mut o = mqtt_link::options(ep).map_err(|e| DeliveryError::Config(e.to_string()))?;
    o.set_clean_session(false);
    o.set_inflight(inflight.max(1));
    let will = Status {
        state: "offline".into(),
        ts_ms: 0,
        counters: BTreeMap::new(),
    };
    o.set_last_will(LastWill::new(
        will_topic,
        serde_json::to_vec(&will).unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    ));
    Ok(o)
}

/// Starts the connection task and the pump. `subscriptions` are (re)subscribed on every CONNACK without
/// a session; their messages arrive in [`Delivery::inbox`].
///
/// # Errors
/// [`DeliveryError::Spool`] when the spool cannot be opened; [`DeliveryError::Config`].
pub fn start(
    gateway: &str,
    endpoint: &MqttEndpoint,
    spool_cfg: &SpoolConfig,
    cfg: &DeliveryConfig,
    subscriptions: Vec<String>,
    counters: Arc<Counters>,
) -> Result<Delivery, DeliveryError> {
    if cfg.max_inflight == 0 {
        return Err(DeliveryError::Config(
            "delivery.max_inflight must be > 0".into(),
        ));
    }
    if cfg.batch_max_readings == 0 || cfg.batch_max_bytes < 1024 {
        return Err(DeliveryError::Config(
            "delivery.batch_max_readings > 0 and batch_max_bytes >= 1024".into(),
        ));
    }
    let spool = Spool::open(spool_cfg)?;
    let status_topic = topic::gateway_status(gateway);
    let mut opts = mqtt_options(endpoint, &status_topic, cfg.max_inflight)?;
    let mut net = mqtt_link::network_options();
    net.set_connection_timeout(5);
    opts.set_pending_throttle(Duration::ZERO);
    let (client, mut eventloop) = AsyncClient::new(opts, usize::from(cfg.max_inflight) * 2 + 16);
    eventloop.set_network_options(net);

    let (tx, rx) = mpsc::channel(cfg.event_channel_capacity.max(16));
    let (inbox_tx, inbox_rx) = if subscriptions.is_empty() {
        (None, None)
    } else {
        let (a, b) = mpsc::channel(1024);
        (Some(a), Some(b))
    };
    let conn_stop = CancellationToken::new();
    let conn = tokio::spawn(connection_task(
        eventloop,
        tx.clone(),
        subscriptions,
        inbox_tx,
        Backoff::new(cfg.backoff_initial_ms, cfg.backoff_max_ms),
        counters.clone(),
        conn_stop.clone(),
    ));
    let ticker_tx = tx.clone();
    let ticker_stop = conn_stop.clone();
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticker_stop.cancelled() => break,
                _ = iv.tick() => { let _ = ticker_tx.try_send(PumpEvent::Tick); }
            }
        }
    });
    let pump = Pump::new(
        gateway.to_string(),
        spool,
        client,
        cfg.clone(),
        counters.clone(),
    );
    let pump = std::thread::Builder::new()
        .name("edge-spool-pump".into())
        .spawn(move || {
            pump.run(rx);
            // Give the DISCONNECT (or the last publishes) a moment to leave before stopping the loop.
            std::thread::sleep(Duration::from_millis(100));
            conn_stop.cancel();
        })
        .map_err(|e| DeliveryError::Pump(e.to_string()))?;
    Ok(Delivery {
        handle: DeliveryHandle {
            tx: tx.clone(),
            counters,
        },
        inbox: inbox_rx,
        pump,
        conn,
        tx,
    })
}

/// Exponential backoff with full jitter: delay = random in [d/2, d], d doubling from `initial` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    current_ms: u64,
}

impl Backoff {
    /// A backoff starting at `initial_ms`, capped at `max_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        let initial_ms = initial_ms.max(1);
        Backoff {
            initial_ms,
            max_ms: max_ms.max(initial_ms),
            current_ms: initial_ms,
        }
    }

    /// Next delay (and doubles the base for the one after).
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let d = self.current_ms;
        self.current_ms = (self.current_ms.saturating_mul(2)).min(self.max_ms);
        Duration::from_millis(rng.random_range(d / 2..=d))
    }

    /// Back to the initial delay (after a successful CONNACK).
    pub fn reset(&mut self) {
        self.current_ms = self.initial_ms;
    }
}

async fn connection_task(
    mut el: EventLoop,
    tx: mpsc::Sender<PumpEvent>,
    subscriptions: Vec<String>,
    inbox: Option<mpsc::Sender<(String, Vec<u8>)>>,
    mut backoff: Backoff,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    // rumqttc's retransmission queue, kept across a reconnect (see module docs).
    let mut saved: VecDeque<Request> = VecDeque::new();
    let mut disconnecting = false;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => break,
            ev = el.poll() => ev,
        };
        let pe = match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                Counters::add(&counters.connects, 1);
                let mut restore: VecDeque<Request> = saved
                    .drain(..)
                    .filter(|r| !matches!(r, Request::PubRel(_)))
                    .collect();
                restore.extend(el.pending.drain(..));
                el.pending = restore;
                if !ack.session_present {
                    Counters::add(&counters.sessions_lost, 1);
                    if !subscriptions.is_empty() {
                        let filters = subscriptions
                            .iter()
                            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
                            .collect::<Vec<_>>();
                        el.pending
                            .push_front(Request::Subscribe(Subscribe::new_many(filters)));
                    }
                }
                tracing::info!(session_present = ack.session_present, "mqtt connected");
                PumpEvent::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PumpEvent::Outgoing(pkid),
            Ok(Event::Incoming(Packet::PubAck(a))) => PumpEvent::PubAck(a.pkid),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(inbox) = &inbox {
                    let _ = inbox.send((p.topic.clone(), p.payload.to_vec())).await;
                }
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("mqtt disconnect sent");
                // Let the loop flush the packet; the pump stops us shortly.
                disconnecting = true;
                continue;
            }
            Ok(_) => continue,
            // The broker closing the link after our own DISCONNECT: the end, not an error.
            Err(_) if disconnecting => break,
            Err(e) => {
                Counters::add(&counters.reconnects, 1);
                saved.extend(el.pending.drain(..));
                let delay = backoff.next_delay(&mut rand::rng());
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "mqtt connection error");
                if tx.send(PumpEvent::Disconnected).await.is_err() {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        if tx.send(pe).await.is_err() {
            break;
        }
    }
}

/// Per-device activity for the retained device status.
#[derive(Debug, Clone)]
struct DeviceSeen {
    district: String,
    kind: telemetry::DeviceKind,
    last_seen_ms: i64,
    readings: u64,
    boot: u32,
    last_seq: u32,
    dirty: bool,
}

/// The pump: owns the spool; plain blocking code driven by events.
struct Pump {
    gateway: String,
    spool: Spool,
    client: AsyncClient,
    cfg: DeliveryConfig,
    counters: Arc<Counters>,
    connected: bool,
    /// Highest spool id handed to rumqttc in this process.
    cursor: i64,
    /// Ids below this were spooled before the latest CONNACK: sent with `replayed = true`.
    live_from: i64,
    /// Requests handed to rumqttc, not yet seen as `Outgoing::Publish`: their spool ids.
    queued: VecDeque<Vec<i64>>,
    /// Published, awaiting PUBACK: pkid → spool ids.
    inflight: HashMap<u16, Vec<i64>>,
    acks: Vec<i64>,
    /// Readings received in this round of events, appended in one transaction.
    incoming: Vec<Reading>,
    devices: HashMap<DeviceId, DeviceSeen>,
    last_status: Instant,
}

impl Pump {
    fn new(
        gateway: String,
        spool: Spool,
        client: AsyncClient,
        cfg: DeliveryConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Pump {
            gateway,
            spool,
            client,
            cfg,
            counters,
            connected: false,
            cursor: 0,
            live_from: 0,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            acks: Vec::new(),
            incoming: Vec::new(),
            devices: HashMap::new(),
            last_status: Instant::now(),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<PumpEvent>) {
        self.publish_spool_stats();
        let mut deadline: Option<Instant> = None;
        loop {
            let first = match deadline {
                None => rx.blocking_recv(),
                // While draining, ticks keep arriving, so blocking is bounded.
                Some(_) => rx.blocking_recv(),
            };
            let Some(first) = first else { break };
            let mut stop = self.handle(first, &mut deadline);
            // Group everything already queued into one spool transaction per kind.
            for _ in 0..4096 {
                match rx.try_recv() {
                    Ok(ev) => stop |= self.handle(ev, &mut deadline),
                    Err(_) => break,
                }
            }
            if !self.incoming.is_empty() {
                let rs = std::mem::take(&mut self.incoming);
                self.append(rs);
            }
            self.flush_acks();
            self.send_more();
            self.publish_spool_stats();
            if let Some(d) = deadline {
                let drained = self.spool.stats().depth == 0
                    && self.queued.is_empty()
                    && self.inflight.is_empty();
                if drained || Instant::now() >= d || !self.connected {
                    break;
                }
            }
            let _ = stop;
        }
        let left = self.spool.stats().depth;
        if left > 0 {
            tracing::info!(
                spool_depth = left,
                "delivery stopped; readings stay in the spool for the next start"
            );
        }
        if self.connected {
            self.publish_status("offline");
            let _ = self.client.try_disconnect();
        }
    }

    /// Handles one event; returns true on shutdown.
    fn handle(&mut self, ev: PumpEvent, deadline: &mut Option<Instant>) -> bool {
        match ev {
            PumpEvent::Readings(rs) => self.incoming.extend(rs),
            PumpEvent::Connected { .. } => {
                self.connected = true;
                self.live_from = self.spool.next_id().unwrap_or(i64::MAX);
                self.publish_status("online");
                self.publish_device_status(true);
                self.last_status = Instant::now();
            }
            PumpEvent::Disconnected => self.connected = false,
            PumpEvent::Outgoing(pkid) => {
                if !self.inflight.contains_key(&pkid) {
                    match self.queued.pop_front() {
                        Some(ids) => {
                            self.inflight.insert(pkid, ids);
                        }
                        None => tracing::warn!(pkid, "outgoing publish with no queued request"),
                    }
                }
            }
            PumpEvent::PubAck(pkid) => {
                if let Some(ids) = self.inflight.remove(&pkid) {
                    Counters::add(&self.counters.acked, ids.len() as u64);
                    self.acks.extend(ids);
                }
            }
            PumpEvent::Tick => {
                if let Err(e) = self.spool.expire(now_ms()) {
                    tracing::error!(error = %e, "spool expiry failed");
                }
                if self.connected
                    && self.last_status.elapsed()
                        >= Duration::from_secs(self.cfg.status_interval_s.max(1))
                {
                    self.last_status = Instant::now();
                    self.publish_status("online");
                    self.publish_device_status(false);
                }
            }
            PumpEvent::Shutdown => {
                if deadline.is_none() {
                    *deadline =
                        Some(Instant::now() + Duration::from_millis(self.cfg.drain_timeout_ms));
                }
                return true;
            }
        }
        false
    }

    fn append(&mut self, rs: Vec<Reading>) {
        let now = now_ms();
        for r in &rs {
            let e = self
                .devices
                .entry(r.device.clone())
                .or_insert_with(|| DeviceSeen {
                    district: r.district.as_str().to_string(),
                    kind: r.kind(),
                    last_seen_ms: 0,
                    readings: 0,
                    boot: r.boot,
                    last_seq: r.seq,
                    dirty: true,
                });
            e.last_seen_ms = e.last_seen_ms.max(r.ts_ms);
            e.readings += 1;
            e.boot = r.boot;
            e.last_seq = r.seq;
            e.dirty = true;
        }
        Counters::add(&self.counters.readings_in, rs.len() as u64);
        if let Err(e) = self.spool.append(&rs, now) {
            Counters::add(&self.counters.spool_errors, rs.len() as u64);
            tracing::error!(error = %e, readings = rs.len(), "spool append failed; readings lost");
        }
    }

    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.acks);
        if let Err(e) = self.spool.ack(&ids) {
            // Rows stay and are re-sent after a restart (duplicates, never loss).
            tracing::error!(error = %e, "spool ack failed");
        }
    }

    fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }

    fn send_more(&mut self) {
        let max = usize::from(self.cfg.max_inflight);
        while self.connected && self.outstanding() < max {
            let next = self.spool.next_id().unwrap_or(0);
            let backlog = (next - 1 - self.cursor).max(0) as u64;
            if backlog == 0 {
                break;
            }
            if backlog >= self.cfg.batch_threshold {
                let budget = (self.cfg.batch_max_bytes as u64).saturating_sub(64);
                // Each reading in a batch costs its bytes plus a comma and maybe `"replayed":true`.
                let rows =
                    match self
                        .spool
                        .peek(self.cursor, self.cfg.batch_max_readings, budget * 9 / 10)
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "spool read failed");
                            break;
                        }
                    };
                let Some(last) = rows.last().map(|r| r.id) else {
                    self.cursor = next - 1;
                    break;
                };
                let (ids, readings) = self.mark(rows);
                let payload = telemetry::json::encode(&readings);
                if self
                    .client
                    .try_publish(
                        topic::gateway_batch(&self.gateway),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .is_err()
                {
                    break;
                }
                Counters::add(&self.counters.batches, 1);
                self.sent(ids, &readings, last);
            } else {
                let room = max - self.outstanding();
                let rows = match self.spool.peek(self.cursor, room, u64::MAX) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "spool read failed");
                        break;
                    }
                };
                if rows.is_empty() {
                    self.cursor = next - 1;
                    break;
                }
                for row in rows {
                    let id = row.id;
                    let (ids, readings) = self.mark(vec![row]);
                    let payload = telemetry::json::encode(&readings);
                    if self
                        .client
                        .try_publish(
                            topic::for_reading(&readings[0]),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .is_err()
                    {
                        return;
                    }
                    self.sent(ids, &readings, id);
                }
            }
        }
    }

    fn mark(&self, rows: Vec<crate::spool::Spooled>) -> (Vec<i64>, Vec<Reading>) {
        let mut ids = Vec::with_capacity(rows.len());
        let mut readings = Vec::with_capacity(rows.len());
        for mut r in rows {
            if r.id < self.live_from {
                r.reading.replayed = true;
            }
            ids.push(r.id);
            readings.push(r.reading);
        }
        (ids, readings)
    }

    fn sent(&mut self, ids: Vec<i64>, readings: &[Reading], last_id: i64) {
        Counters::add(&self.counters.published, readings.len() as u64);
        Counters::add(
            &self.counters.replayed,
            readings.iter().filter(|r| r.replayed).count() as u64,
        );
        self.queued.push_back(ids);
        self.cursor = last_id;
    }

    fn publish_spool_stats(&self) {
        let s = self.spool.stats();
        let c = &self.counters;
        use std::sync::atomic::Ordering::Relaxed;
        c.spool_depth.store(s.depth, Relaxed);
        c.spool_bytes.store(s.bytes, Relaxed);
        c.spool_dropped_overflow.store(s.dropped_overflow, Relaxed);
        c.spool_dropped_age.store(s.dropped_age, Relaxed);
        c.spool_dropped_newest.store(s.dropped_newest, Relaxed);
        c.spool_corrupt.store(s.corrupt, Relaxed);
    }

    /// Publishes the retained gateway status; it occupies an in-flight slot with no spool ids.
    fn publish_status(&mut self, state: &str) {
        self.publish_spool_stats();
        let st = Status {
            state: state.into(),
            ts_ms: now_ms(),
            counters: self.counters.snapshot(),
        };
        let payload = serde_json::to_vec(&st).unwrap_or_default();
        if self
            .client
            .try_publish(
                topic::gateway_status(&self.gateway),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .is_ok()
        {
            self.queued.push_back(Vec::new());
        }
    }

    /// Publishes the retained status of devices seen since the last time (all known ones if `all`).
    fn publish_device_status(&mut self, all: bool) {
        let max = usize::from(self.cfg.max_inflight);
        let mut published = Vec::new();
        for (id, d) in &self.devices {
            if !(all || d.dirty) {
                continue;
            }
            if self.queued.len() + self.inflight.len() + published.len() >= max / 2 {
                break; // the rest goes out at the next status interval
            }
            let mut counters = BTreeMap::new();
            counters.insert("readings".to_string(), d.readings);
            counters.insert("boot".to_string(), u64::from(d.boot));
            counters.insert("last_seq".to_string(), u64::from(d.last_seq));
            let st = Status {
                state: "online".into(),
                ts_ms: d.last_seen_ms,
                counters,
            };
            let t = topic::device(&d.district, d.kind, id.as_str(), topic::Channel::Status);
            let payload = serde_json::to_vec(&st).unwrap_or_default();
            if self
                .client
                .try_publish(t, QoS::AtLeastOnce, true, payload)
                .is_err()
            {
                break;
            }
            published.push(id.clone());
        }
        for id in published {
            self.queued.push_back(Vec::new());
            if let Some(d) = self.devices.get_mut(&id) {
                d.dirty = false;
            }
        }
    }
}

/// Wall clock, UTC epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(100, 1000);
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay(&mut rng).as_millis() as u64;
            assert!(
                (base / 2..=base).contains(&d),
                "{d} not in [{}, {base}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay(&mut rng).as_millis() as u64 <= 100);
    }
}
