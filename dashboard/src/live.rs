//! Live updates: an MQTT subscription to what the stream core publishes (window aggregates, alerts),
//! fanned out through a bounded `tokio::sync::broadcast` channel to server-sent-events clients.
//!
//! Full-buffer policy: the broadcast channel keeps the newest `live_channel_capacity` events; a client
//! further behind skips the oldest ones, is told with an SSE `lagged` event carrying the number missed,
//! and the number is added to `dashboard_live_lagged_total`. The bridge itself never blocks on clients.
//!
//! SSE event names: `aggregate` (data: a `WindowAggregate`), `alert` (data: an `Alert`), `lagged`
//! (data: missed count). Each client only receives what its token may read (see [`visible`]).

use crate::access::{Dataset, Resolution, TokenInfo};
use crate::metrics::Metrics;
use futures::Stream;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use telemetry::message::{Alert, WindowAggregate};
use telemetry::mqtt::MqttEndpoint;
use telemetry::registry::Registry;
use telemetry::topic::{self, Topic};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One live event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A window result.
    Aggregate(WindowAggregate),
    /// An alert transition.
    Alert(Alert),
}

/// Decodes one MQTT message from the core's output topics. `None` for anything else (off-schema
/// topic, undecodable payload) and for an empty retained payload (a cleared retained alert).
pub fn decode(topic_name: &str, payload: &[u8]) -> Option<LiveEvent> {
    match topic::parse(topic_name).ok()? {
        Topic::Aggregate { .. } => serde_json::from_slice::<WindowAggregate>(payload)
            .ok()
            .map(LiveEvent::Aggregate),
        Topic::Alert { .. } => serde_json::from_slice::<Alert>(payload)
            .ok()
            .map(LiveEvent::Alert),
        _ => None,
    }
}

/// Whether a caller's token may see an event: aggregates need the kind's aggregate dataset and a
/// window no finer than the token's finest resolution; device-scope aggregates count as raw data; alerts
/// need `alerts`, and alerts about a single grid device also `grid_raw`.
pub fn visible(ev: &LiveEvent, caller: &TokenInfo, registry: &Registry) -> bool {
    match ev {
        LiveEvent::Aggregate(a) => {
            let ds = if a.scope == "device" {
                Dataset::raw(a.kind)
            } else {
                Dataset::aggregates(a.kind)
            };
            let res_ok = Resolution::from_ms(a.window_ms).is_some_and(|r| r >= caller.finest);
            caller.can(ds) && res_ok
        }
        LiveEvent::Alert(al) => {
            let grid_device = registry
                .device(&al.site)
                .is_some_and(|d| d.kind == telemetry::DeviceKind::Grid);
            caller.can(Dataset::Alerts) && (!grid_device || caller.can(Dataset::GridRaw))
        }
    }
}

/// Subscribes to [`topic::output_filters`] and publishes every decodable message on `tx` until
/// `shutdown`. Re-subscribes on every CONNACK (a clean session does not keep subscriptions) and waits
/// 1 s between reconnect attempts. Live data needs no durability, so the session is clean and QoS 0.
/// Unusable TLS settings make the bridge log an error and return (the pages still serve stored data).
pub async fn run_mqtt_bridge(
    ep: MqttEndpoint,
    tx: broadcast::Sender<LiveEvent>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut opts = match mqtt_link::options(&ep) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "dashboard MQTT bridge: unusable broker settings; live updates disabled");
            return;
        }
    };
    // Live data needs no durability: clean session, subscriptions renewed on every CONNACK.
    opts.set_clean_session(true);
    let (client, mut el) = AsyncClient::new(opts, 16);
    el.set_network_options(mqtt_link::network_options());
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                Metrics::inc(&metrics.mqtt_connects);
                for f in topic::output_filters() {
                    if let Err(e) = client.try_subscribe(f, QoS::AtMostOnce) {
                        tracing::warn!(error = %e, "subscribe request failed");
                    }
                }
                tracing::info!(host = %ep.host, port = ep.port, "dashboard MQTT bridge connected");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                Metrics::inc(&metrics.mqtt_messages);
                if p.payload.is_empty() {
                    continue;
                }
                match decode(&p.topic, &p.payload) {
                    Some(ev) => {
                        Metrics::inc(&metrics.live_events);
                        // No receivers is fine: nobody is watching.
                        let _ = tx.send(ev);
                    }
                    None => Metrics::inc(&metrics.mqtt_bad_messages),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dashboard MQTT bridge: connection error; retrying in 1 s");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// Decrements the SSE client gauge when a stream ends.
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients_current.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The SSE event stream for one client: filtered by `caller`'s rights, ends at `shutdown`.
pub fn event_stream(
    rx: broadcast::Receiver<LiveEvent>,
    caller: TokenInfo,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<axum::response::sse::Event, Infallible>> + Send + 'static {
    use axum::response::sse::Event as SseEvent;
    metrics.sse_clients_current.fetch_add(1, Ordering::Relaxed);
    Metrics::inc(&metrics.sse_connections);
    let guard = ClientGuard(metrics.clone());
    futures::stream::unfold((rx, guard), move |(mut rx, guard)| {
        let caller = caller.clone();
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        let metrics = guard.0.clone();
        async move {
            loop {
                let got = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    r = rx.recv() => r,
                };
                match got {
                    Ok(ev) => {
                        if !visible(&ev, &caller, &registry) {
                            continue;
                        }
                        let (name, data) = match &ev {
                            LiveEvent::Aggregate(a) => ("aggregate", serde_json::to_string(a)),
                            LiveEvent::Alert(a) => ("alert", serde_json::to_string(a)),
                        };
                        let Ok(data) = data else { continue };
                        return Some((Ok(SseEvent::default().event(name).data(data)), (rx, guard)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics.live_lagged.fetch_add(n, Ordering::Relaxed);
                        return Some((
                            Ok(SseEvent::default().event("lagged").data(n.to_string())),
                            (rx, guard),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    #[test]
    fn decode_and_visibility() {
        let a = r#"{"kind":"grid","scope":"device","id":"m1","district":"south","start_ms":0,"window_ms":60000,
                    "version":1,"count":1,"metrics":{"v_rms_mean_v":231.0}}"#;
        let ev = decode("citybrain/v1/south/agg/grid/device/m1/1m", a.as_bytes()).unwrap();
        assert!(decode("citybrain/v1/south/grid/m1/telemetry", a.as_bytes()).is_none());
        assert!(decode("citybrain/v1/south/agg/grid/device/m1/1m", b"{not json").is_none());
        let mut planner = TokenInfo::anonymous();
        planner.role = Role::Planner;
        planner.datasets = vec![Dataset::GridAgg, Dataset::Alerts];
        let reg = Registry::default();
        assert!(
            !visible(&ev, &planner, &reg),
            "household-level data never reaches planners"
        );
        let mut gm = planner.clone();
        gm.role = Role::GridManager;
        gm.datasets.push(Dataset::GridRaw);
        assert!(visible(&ev, &gm, &reg));
        gm.finest = Resolution::M15;
        assert!(
            !visible(&ev, &gm, &reg),
            "finer than the token's resolution"
        );
    }
}
