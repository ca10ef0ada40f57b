//! UDP intake: one datagram = one raw uplink frame (no COBS; the datagram is the delimiter).

use super::FrameDecoder;
use crate::counters::Counters;
use crate::delivery::{DeliveryHandle, now_ms};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Datagrams the kernel dropped on the UDP socket bound to local port `port`, because its receive
/// buffer was full: the `drops` column (last) of `/proc/net/udp` and `/proc/net/udp6` (Linux, see
/// `proc(5)`; the count belongs to the socket and starts at 0 when it is created). `None` when the
/// tables cannot be read (not Linux) or no socket has that port.
pub fn kernel_drops(port: u16) -> Option<u64> {
    let want = format!(":{port:04X}");
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            if local.ends_with(&want)
                && let Some(drops) = line
                    .split_whitespace()
                    .last()
                    .and_then(|d| d.parse::<u64>().ok())
            {
                found = Some(found.unwrap_or(0) + drops);
            }
        }
    }
    found
}

/// Receives frames until `shutdown`; decoded readings go to `out` one datagram at a time. Once a
/// second the kernel's drop count for the socket ([`kernel_drops`]) is copied into the
/// `udp_kernel_drops` counter, so datagrams lost before the gateway could read them are visible.
pub async fn run(
    socket: UdpSocket,
    decoder: Arc<FrameDecoder>,
    out: DeliveryHandle,
    shutdown: CancellationToken,
) {
    let counters: Arc<Counters> = out.counters().clone();
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut drops_check = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut buf = vec![0u8; 2048];
    loop {
        let got = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = drops_check.tick() => {
                if let Some(d) = kernel_drops(port) {
                    counters.udp_kernel_drops.store(d, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::kernel_drops;

    /// A real loopback socket that nobody reads: every datagram beyond what its receive buffer holds is
    /// dropped by the kernel, and `kernel_drops` reports exactly sent − received.
    #[test]
    fn kernel_drops_equal_sent_minus_received() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        if kernel_drops(port).is_none() {
            eprintln!("SKIP: /proc/net/udp is not readable here (not Linux)");
            return;
        }
        assert_eq!(kernel_drops(port), Some(0));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 20_000u64;
        for i in 0..sent {
            tx.send_to(&i.to_le_bytes(), ("127.0.0.1", port)).unwrap();
        }
        rx.set_nonblocking(true).unwrap();
        let mut received = 0u64;
        let mut buf = [0u8; 64];
        while rx.recv_from(&mut buf).is_ok() {
            received += 1;
        }
        assert!(
            received < sent,
            "the receive buffer overflowed ({received} of {sent} kept)"
        );
        assert_eq!(kernel_drops(port), Some(sent - received));
    }
}
