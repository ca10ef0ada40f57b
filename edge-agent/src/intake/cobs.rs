//! Splits a serial byte stream into COBS packets at `0x00` delimiters (pure, no IO).
//!
//! A packet longer than [`telemetry::frame::MAX_COBS_LEN`] cannot be one of our frames: the splitter
//! discards bytes up to the next delimiter and counts one oversize packet, so line noise costs at most
//! one frame and memory stays bounded.

use telemetry::frame::MAX_COBS_LEN;

/// Accumulates bytes and yields whole packets (without the delimiter).
#[derive(Debug, Default)]
pub struct CobsSplitter {
    buf: Vec<u8>,
    discarding: bool,
    /// Packets discarded for exceeding the longest possible encoded frame.
    pub oversize: u64,
}

impl CobsSplitter {
    /// A splitter with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; complete packets are appended to `out`. Empty packets (`00 00`) are skipped.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        for &b in data {
            if b == 0 {
                if self.discarding {
                    self.discarding = false;
                } else if !self.buf.is_empty() {
                    out.push(std::mem::take(&mut self.buf));
                }
                self.buf.clear();
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.buf.len() >= MAX_COBS_LEN {
                self.buf.clear();
                self.discarding = true;
                self.oversize += 1;
                continue;
            }
            self.buf.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_survives_noise() {
        let mut s = CobsSplitter::new();
        let mut out = Vec::new();
        s.push(&[1, 2, 3], &mut out);
        assert!(out.is_empty());
        s.push(&[4, 0, 0, 5, 0], &mut out);
        assert_eq!(out, vec![vec![1, 2, 3, 4], vec![5]]);
        out.clear();
        let noise = vec![7u8; MAX_COBS_LEN + 10];
        s.push(&noise, &mut out);
        s.push(&[0, 9, 0], &mut out);
        assert_eq!(out, vec![vec![9]]);
        assert_eq!(s.oversize, 1);
    }
}
