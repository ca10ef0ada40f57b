//! The uplink outbox: encoded frames waiting for the radio.
//!
//! Bounded ([`heapless::Deque`] of `N` frames); **full-buffer policy: drop the oldest** and count it
//! ([`Outbox::dropped`], sent in the next parking heartbeat). Each frame gets the next sequence number
//! of this boot when it is queued (`seq` from 0 at boot), so a dropped frame leaves a visible gap.
//!
//! The age field (`age_ds`, 100 ms units) is only known at transmission, so frames are stored encoded
//! with their event time beside them and re-encoded with the real age by [`Outbox::flush`]. Ages beyond
//! the field's range (over 6553.4 s) are sent as [`AGE_UNKNOWN`] (the gateway's receive time stands in).

use super::Transport;
use heapless::{Deque, Vec};
use telemetry::Measurement;
use telemetry::frame::{AGE_UNKNOWN, Frame, FrameError, MAX_FRAME_LEN, parse};

/// One queued frame: event time and encoded bytes (age field to be patched).
#[derive(Debug, Clone)]
struct Pending {
    event_ms: u64,
    bytes: Vec<u8, MAX_FRAME_LEN, u8>,
}

/// Why [`Outbox::flush`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transport failed after {sent} frames: {error:?}")]
pub struct FlushError<E> {
    /// Frames sent (and removed) before the failure.
    pub sent: usize,
    /// The transport's error; the failed frame is still queued at the front.
    pub error: E,
}

/// Bounded outbox of `N` encoded frames for device `addr` in boot `boot`.
#[derive(Debug, Clone)]
pub struct Outbox<const N: usize> {
    queue: Deque<Pending, N>,
    addr: u16,
    boot: u16,
    next_seq: u32,
    dropped: u32,
    encode_errors: u32,
    sent: u32,
}

/// Age in 100 ms units of an event at `event_ms` sent at `now_ms` ([`AGE_UNKNOWN`] beyond range; 0
/// when the event is in the future).
pub fn age_ds(now_ms: u64, event_ms: u64) -> u16 {
    let ds = now_ms.saturating_sub(event_ms) / 100;
    if ds >= u64::from(AGE_UNKNOWN) {
        AGE_UNKNOWN
    } else {
        ds as u16
    }
}

impl<const N: usize> Outbox<N> {
    /// An empty outbox; sequence numbers start at 0.
    pub fn new(addr: u16, boot: u16) -> Self {
        Outbox {
            queue: Deque::new(),
            addr,
            boot,
            next_seq: 0,
            dropped: 0,
            encode_errors: 0,
            sent: 0,
        }
    }

    /// Encodes `data` as the next frame (next `seq`) with event time `event_ms` and queues it, dropping
    /// the oldest frame when full.
    ///
    /// # Errors
    /// [`FrameError`] when a value does not fit the frame (counted in
    /// [`encode_errors`](Self::encode_errors); no sequence number is used).
    pub fn push(&mut self, event_ms: u64, data: Measurement) -> Result<u32, FrameError> {
        let frame = Frame {
            addr: self.addr,
            boot: self.boot,
            seq: self.next_seq,
            age_ds: 0,
            data,
        };
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = match frame.encode(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                self.encode_errors = self.encode_errors.saturating_add(1);
                return Err(e);
            }
        };
        let bytes = Vec::from_slice(&buf[..n]).map_err(|_| FrameError::BufferTooSmall)?;
        if self.queue.is_full() {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        // Cannot fail: a slot was freed above.
        let _ = self.queue.push_back(Pending { event_ms, bytes });
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(seq)
    }

    /// Sends queued frames oldest first, each with its age at `now_ms`, until the queue is empty or the
    /// transport fails; returns the number sent. A frame that fails stays at the front.
    ///
    /// # Errors
    /// [`FlushError`] with the count sent before the failure.
    pub fn flush<T: Transport>(
        &mut self,
        t: &mut T,
        now_ms: u64,
    ) -> Result<usize, FlushError<T::Error>> {
        let mut sent = 0;
        while let Some(p) = self.queue.front() {
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = match parse(&p.bytes) {
                Ok(mut f) => {
                    f.age_ds = age_ds(now_ms, p.event_ms);
                    f.encode(&mut buf).ok()
                }
                Err(_) => None,
            };
            let Some(n) = n else {
                // Cannot happen for frames this outbox encoded; drop and count rather than stall.
                self.queue.pop_front();
                self.encode_errors = self.encode_errors.saturating_add(1);
                continue;
            };
            match t.send(&buf[..n]) {
                Ok(()) => {
                    self.queue.pop_front();
                    sent += 1;
                    self.sent = self.sent.saturating_add(1);
                }
                Err(error) => return Err(FlushError { sent, error }),
            }
        }
        Ok(sent)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Capacity, frames.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Frames dropped (oldest first) because the outbox was full, since boot.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Measurements that could not be encoded (value out of frame range), since boot.
    pub fn encode_errors(&self) -> u32 {
        self.encode_errors
    }

    /// Frames handed to the transport successfully, since boot.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// Sequence number the next frame will get (= frames queued this boot).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }
}
