//! The watermark: event time capped by processing time, advancing with the wall clock while sources are
//! quiet. Sans-IO.
//!
//! Choice (documented in `dataflow`): `W = max over time of min(max event time seen, now)`, plus, when no
//! reading advanced it for `idle_ms` of wall time, `W += wall time elapsed` (never beyond `now`). A
//! device with a fast clock cannot push W past real time; a quiet city still closes its windows; a
//! historical replay (event times far behind `now`) is driven by event time alone.

/// Watermark state.
#[derive(Debug, Clone)]
pub struct Watermark {
    wm: i64,
    idle_ms: i64,
    last_advance_wall: i64,
}

impl Watermark {
    /// Starts at 0 (no reading yet); `idle_ms` of quiet wall time before the processing-time advance.
    pub fn new(idle_ms: i64) -> Self {
        Watermark {
            wm: 0,
            idle_ms,
            last_advance_wall: i64::MIN,
        }
    }

    /// The current watermark, ms.
    pub fn get(&self) -> i64 {
        self.wm
    }

    /// Notes a reading's event time at wall time `now_ms`.
    pub fn observe(&mut self, ts_ms: i64, now_ms: i64) {
        let c = ts_ms.min(now_ms);
        if c > self.wm {
            self.wm = c;
            self.last_advance_wall = now_ms;
        }
    }

    /// Processing-time progress at wall time `now_ms`: after `idle_ms` without advance, moves with the
    /// wall clock. Returns the watermark.
    pub fn tick(&mut self, now_ms: i64) -> i64 {
        if self.wm > 0
            && self.last_advance_wall != i64::MIN
            && now_ms - self.last_advance_wall >= self.idle_ms
        {
            let next = (self.wm + (now_ms - self.last_advance_wall)).min(now_ms);
            if next > self.wm {
                self.wm = next;
            }
            self.last_advance_wall = now_ms;
        }
        self.wm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_clock_capped_and_quiet_advance() {
        let mut w = Watermark::new(5_000);
        let now = 1_700_000_000_000;
        w.observe(now - 10_000, now);
        assert_eq!(w.get(), now - 10_000);
        w.observe(now + 200_000, now); // fast clock: capped at now
        assert_eq!(w.get(), now);
        w.observe(now - 50_000, now + 1_000); // older: no regress
        assert_eq!(w.get(), now);
        assert_eq!(w.tick(now + 4_000), now, "not idle yet");
        assert_eq!(
            w.tick(now + 6_000),
            now + 6_000,
            "moves with the wall clock, capped at now"
        );
        // replay: event time far behind now advances by event time
        let mut r = Watermark::new(5_000);
        r.observe(1_500_000_000_000, now);
        r.observe(1_500_000_060_000, now + 1);
        assert_eq!(r.get(), 1_500_000_060_000);
    }
}
