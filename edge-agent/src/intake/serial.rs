//! Serial intake: COBS-framed uplink frames delimited by `0x00` (`tokio-serial`, or any byte stream).

use super::FrameDecoder;
use super::cobs::CobsSplitter;
use crate::counters::Counters;
use crate::delivery::{DeliveryHandle, now_ms};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use telemetry::frame::{MAX_FRAME_LEN, cobs_decode};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// A serial port carrying COBS frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SerialConfig {
    /// Device path (default `/dev/ttyUSB0`).
    pub path: String,
    /// Baud rate (default 115,200).
    pub baud: u32,
}

impl Default for SerialConfig {
    fn default() -> Self {
        SerialConfig {
            path: "/dev/ttyUSB0".into(),
            baud: 115_200,
        }
    }
}

/// Opens the port.
///
/// # Errors
/// The port cannot be opened.
pub fn open(cfg: &SerialConfig) -> Result<tokio_serial::SerialStream, tokio_serial::Error> {
    tokio_serial::SerialStream::open(&tokio_serial::new(&cfg.path, cfg.baud))
}

/// Reads COBS frames from any byte stream until EOF or `shutdown`.
pub async fn run<R: AsyncRead + Unpin>(
    mut reader: R,
    decoder: Arc<FrameDecoder>,
    out: DeliveryHandle,
    shutdown: CancellationToken,
) {
    let counters: Arc<Counters> = out.counters().clone();
    let mut splitter = CobsSplitter::new();
    let mut buf = vec![0u8; 4096];
    let mut packets = Vec::new();
    let mut decoded = [0u8; MAX_FRAME_LEN + 8];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reader.read(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "serial read error; stopping serial intake");
                    break;
                }
            },
        };
        let before = splitter.oversize;
        splitter.push(&buf[..n], &mut packets);
        Counters::add(&counters.bad_frame, splitter.oversize - before);
        let now = now_ms();
        let mut readings = Vec::new();
        for p in packets.drain(..) {
            match cobs_decode(&p, &mut decoded) {
                Ok(len) => {
                    if let Some(r) =
                        decoder.decode_counted(&decoded[..len], now, &counters, "serial")
                    {
                        readings.push(r);
                    }
                }
                Err(e) => {
                    super::count_reject(&counters, e.reason());
                    tracing::debug!(reason = e.reason().as_str(), "serial packet refused");
                }
            }
        }
        if !out.send(readings).await {
            break;
        }
    }
}
