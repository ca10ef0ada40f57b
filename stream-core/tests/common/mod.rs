//! Helpers shared by the service tests: a core on a thread, a QoS 1 publisher with a persistent
//! session, readiness polling, reading generators.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};
use stream_core::{CoreConfig, CoreReport};
use telemetry::{DeviceId, DistrictId, Measurement, ParkingChange, Reading, SiteId, TimeSource};
use tokio_util::sync::CancellationToken;

/// Wall clock, UTC epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A parking change reading of `L<lot>-b<bay>`.
pub fn parking(lot: u32, bay: u32, seq: u32, ts_ms: i64, occupied: bool) -> Reading {
    Reading {
        device: DeviceId::new(&format!("L{lot}-b{bay}")).unwrap(),
        site: SiteId::new(&format!("L{lot}")).unwrap(),
        district: DistrictId::new("central").unwrap(),
        boot: 1,
        seq,
        ts_ms,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::ParkingChange(ParkingChange {
            occupied,
            field_ut: 40.0,
        }),
    }
}

/// A core config for tests: broker on `port`, store at `db`, health on a free port, quick retries.
pub fn core_config(port: u16, client_id: &str, db: &Path) -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.mqtt.port = port;
    cfg.mqtt.client_id = client_id.into();
    cfg.store.sqlite_path = db.to_path_buf();
    cfg.http_addr = format!("127.0.0.1:{}", testkit::free_port());
    cfg.store_retry_max_ms = 500;
    cfg
}

/// A core running [`stream_core::run`] on a thread.
pub struct Core {
    pub http: String,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<CoreReport, stream_core::CoreError>>>,
}

impl Core {
    pub fn start(cfg: CoreConfig) -> Core {
        let http = format!("http://{}", cfg.http_addr);
        let shutdown = CancellationToken::new();
        let s2 = shutdown.clone();
        let thread = std::thread::spawn(move || stream_core::run(cfg, s2));
        Core {
            http,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Cancels and waits (graceful drain and finite flush).
    pub fn stop(mut self) -> CoreReport {
        self.shutdown.cancel();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

/// GET `url` → (status, body).
pub fn get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?
            .get(url)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

/// Waits until `cond` holds (polling every 50 ms).
///
/// # Panics
/// After `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/readyz` says 200.
pub fn wait_ready(http: &str) {
    wait_until("/readyz 200", Duration::from_secs(20), || {
        matches!(get(&format!("{http}/readyz")), Some((200, _)))
    });
}

/// A QoS 1 publisher with a persistent session (clean session off) on its own thread; rumqttc
/// retransmits unacknowledged publishes after a reconnect. `pause_while_down` is called after a
/// connection error before reconnecting.
pub struct Publisher {
    tx: std::sync::mpsc::Sender<Option<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Publisher {
    /// Connects as `client_id`; every message goes to `topic`.
    pub fn start(
        port: u16,
        client_id: &str,
        topic: String,
        pause_while_down: impl Fn() + Send + Sync + 'static,
    ) -> Publisher {
        let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let client_id = client_id.to_string();
        let pause = std::sync::Arc::new(pause_while_down);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
                o.set_clean_session(false);
                o.set_keep_alive(Duration::from_secs(5));
                let (c, mut el) = rumqttc::AsyncClient::new(o, 10_000);
                let (qtx, mut qrx) = tokio::sync::mpsc::unbounded_channel();
                std::thread::spawn(move || {
                    while let Ok(m) = rx.recv() {
                        if qtx.send(m).is_err() {
                            break;
                        }
                    }
                });
                // Delivery accounting by packet id, not by counting PUBACKs (counting let a body
                // published twice be "acknowledged" twice, so the publisher stopped with its last
                // messages still unsent). `unsent`: bodies handed to rumqttc, in request order, not
                // yet written; `inflight`: written, waiting for the broker's PUBACK, by packet id.
                // rumqttc drops its retransmission queue when the broker comes back without our
                // session (PITFALLS.md), so the publisher then requests those bodies again; copies
                // that reach the core twice are its dedup's job.
                let mut unsent: std::collections::VecDeque<Vec<u8>> = Default::default();
                let mut inflight: std::collections::HashMap<u16, Vec<u8>> = Default::default();
                let mut acked = 0u64;
                let mut closed = false;
                // A connection error happened (rumqttc then holds its queue for the next session).
                let mut dropped = false;
                loop {
                    if closed && unsent.is_empty() && inflight.is_empty() {
                        break;
                    }
                    tokio::select! {
                        m = qrx.recv(), if !closed => match m {
                            Some(Some(body)) => {
                                c.publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, body.clone()).await.unwrap();
                                unsent.push_back(body);
                            }
                            _ => closed = true,
                        },
                        ev = el.poll() => match ev {
                            // A resend of a written publish (session resumed) keeps its packet id.
                            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                                if !inflight.contains_key(&pkid)
                                    && let Some(body) = unsent.pop_front()
                                {
                                    inflight.insert(pkid, body);
                                }
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => {
                                if inflight.remove(&a.pkid).is_some() {
                                    acked += 1;
                                }
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ca))) if !ca.session_present && dropped => {
                                // After a connection error rumqttc moved its in-flight publishes and
                                // its queued requests into a list it clears on a CONNACK without
                                // session: request every unacknowledged body again, oldest first.
                                let mut lost: Vec<(u16, Vec<u8>)> = inflight.drain().collect();
                                lost.sort_by_key(|x| x.0);
                                let again: Vec<Vec<u8>> =
                                    lost.into_iter().map(|x| x.1).chain(unsent.drain(..)).collect();
                                for body in again {
                                    c.publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, body.clone()).await.unwrap();
                                    unsent.push_back(body);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => {
                                dropped = true;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                let p = pause.clone();
                                tokio::task::spawn_blocking(move || p()).await.unwrap();
                            }
                        },
                    }
                }
                let _ = c.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
                acked
            })
        });
        Publisher {
            tx,
            thread: Some(thread),
        }
    }

    /// Queues one message.
    pub fn send(&self, body: Vec<u8>) {
        self.tx.send(Some(body)).unwrap();
    }

    /// Waits until every message is acknowledged by the broker; returns how many publishes the broker
    /// acknowledged (at least the number of messages; more when some had to be sent again).
    ///
    /// # Panics
    /// When the broker has not acknowledged everything within 90 s (a test must fail, not hang).
    pub fn finish(mut self) -> u64 {
        self.tx.send(None).unwrap();
        let thread = self.thread.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "publisher: broker did not acknowledge every message within 90 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        thread.join().unwrap()
    }
}

/// A window start four hours before now, on a 15-minute boundary: input at this time is a historical
/// replay (event time far behind the wall clock).
pub fn historical_t0() -> i64 {
    let t = now_ms() - 4 * 3_600_000;
    t - t.rem_euclid(900_000)
}

/// Readings per (lot, 1-minute window start), counted by hand from the input.
pub fn lot_minute_counts(input: &[Reading]) -> std::collections::BTreeMap<(String, i64), u64> {
    let mut m = std::collections::BTreeMap::new();
    for r in input {
        *m.entry((r.site.to_string(), r.ts_ms - r.ts_ms.rem_euclid(60_000)))
            .or_default() += 1;
    }
    m
}

/// The stored 1-minute lot aggregates (latest version) of `lots` as (lot, window start) → (count,
/// version).
pub fn stored_lot_minutes(
    db: &Path,
    lots: &[&str],
) -> std::collections::BTreeMap<(String, i64), (u64, u32)> {
    use stream_core::store::{AggregateQuery, SeriesStore, SqliteStore};
    let store = SqliteStore::open(db).unwrap();
    let mut m = std::collections::BTreeMap::new();
    for lot in lots {
        let rows = store
            .query_aggregates(&AggregateQuery {
                kind: telemetry::DeviceKind::Parking,
                scope: "lot".into(),
                id: (*lot).into(),
                window_ms: 60_000,
                from_ms: 0,
                to_ms: i64::MAX,
            })
            .unwrap();
        for a in rows {
            m.insert(((*lot).to_string(), a.start_ms), (a.count, a.version));
        }
    }
    m
}
