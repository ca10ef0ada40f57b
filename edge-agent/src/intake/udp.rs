//! UDP intake: one datagram = one raw uplink frame (no COBS; the datagram is the delimiter).

use super::FrameDecoder;
use crate::counters::Counters;
use crate::delivery::{DeliveryHandle, now_ms};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Receives frames until `shutdown`; decoded readings go to `out` one datagram at a time.
pub async fn run(
    socket: UdpSocket,
    decoder: Arc<FrameDecoder>,
    out: DeliveryHandle,
    shutdown: CancellationToken,
) {
    let counters: Arc<Counters> = out.counters().clone();
    let mut buf = vec![0u8; 2048];
    loop {
        let got = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        match got {
            Ok((n, peer)) => {
                // Take whatever else is already queued too, so a burst becomes one spool transaction.
                let now = now_ms();
                let mut readings = Vec::new();
                let mut next = Some((n, peer));
                while let Some((n, peer)) = next {
                    match decoder.decode_counted(&buf[..n], now, &counters, "udp") {
                        Some(r) => readings.push(r),
                        None => tracing::debug!(%peer, "udp frame refused"),
                    }
                    if readings.len() >= 1024 {
                        break;
                    }
                    next = socket.try_recv_from(&mut buf).ok();
                }
                if !out.send(readings).await {
                    break;
                }
            }
            Err(e) => {
                // ICMP errors and the like: never fatal.
                tracing::debug!(error = %e, "udp receive error");
            }
        }
    }
}
