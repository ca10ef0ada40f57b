//! The consumer processes the orchestrator starts as children (so their CPU and memory can be read from
//! `/proc/<pid>`): the null subscriber and CityBrain's stream core.

use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// MQTT options shared by the benchmark's own clients: TCP_NODELAY, 1 MiB packets.
pub fn options(client_id: &str, port: u16, clean: bool) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    let (c, mut el) = AsyncClient::new(o, 1000);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    (c, el)
}

/// Null subscriber: QoS 1, clean session off, acknowledges on receipt (rumqttc's automatic acks),
/// counts messages and prints `READY` once subscribed, then `C <messages>` every 10 ms when it changed.
///
/// # Errors
/// When the runtime cannot start.
pub fn null_sub(port: u16, client_id: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (client, mut el) = options(client_id, port, false);
        let mut count: u64 = 0;
        let mut printed: u64 = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let out = std::io::stdout();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if count != printed {
                        printed = count;
                        let _ = writeln!(out.lock(), "C {count}");
                    }
                }
                ev = el.poll() => match ev {
                    Ok(Event::Incoming(Packet::Publish(_))) => count += 1,
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Subscribe on every CONNACK (harmless with a session; needed without one).
                        {
                            let filters = telemetry::topic::ingest_filters()
                                .into_iter()
                                .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
                            client.subscribe_many(filters).await?;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = writeln!(out.lock(), "READY");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "null subscriber connection error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    })
}

/// Runs `stream_core::run` with the JSON `CoreConfig` in `config` until the process is killed.
///
/// # Errors
/// When the config cannot be read or the core fails.
pub fn core(config: &Path) -> anyhow::Result<()> {
    let cfg: stream_core::CoreConfig = serde_json::from_slice(&std::fs::read(config)?)?;
    let report = stream_core::run(cfg, CancellationToken::new())?;
    tracing::info!(?report, "core stopped");
    Ok(())
}
