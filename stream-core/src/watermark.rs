//! The watermark: a robust event-time clock over all sources, capped by processing time, advancing
//! with the wall clock while sources are quiet. Sans-IO.
//!
//! # Definition
//! Every source (device) has its own event clock `c_d = min(max event time seen from d, now)`. The
//! event-time candidate is an **upper quantile that ignores outliers**: with `n` sources active
//! within [`Watermark::new`]'s `source_idle_ms` of wall time, sort the clocks from newest down and
//! skip the `k = ceil(n / OUTLIER_DIVISOR)` newest (none when `n = 1`):
//!
//! ```text
//! candidate = clocks_desc[min(k, n − 1)]        W = max(W, candidate)
//! ```
//!
//! So up to 10 % of the devices (at least one, once there are two) with fast clocks cannot move the
//! watermark for everyone else — neither live (where every clock is also capped at `now`) nor in a
//! historical replay, where event times are far behind `now` and only event time drives `W`. Slow or
//! stuck clocks do not hold it back either (they sit in the lower part), and a device silent for
//! `source_idle_ms` of wall time leaves the set (Flink's "idleness" for per-partition watermarks,
//! here per device), so a dead sensor never freezes the city.
//!
//! When no observation advanced `W` for `idle_ms` of wall time, `W += wall time elapsed` (never
//! beyond `now`): a quiet city still closes its windows.
//!
//! # Cost
//! `observe` is one hash-map update. The quantile is recomputed in [`Watermark::advance`] by
//! `select_nth_unstable` (O(n)); with many sources at most once per [`REFRESH_MS`] of wall time or
//! after `n / 8` new observations, whichever comes first, so the amortised cost per reading is O(1).

use std::collections::HashMap;

/// One in this many of the newest source clocks is ignored as a possible fast clock (10 = the newest
/// 10 %, rounded up).
pub const OUTLIER_DIVISOR: usize = 10;

/// With more than this many sources the quantile is recomputed lazily (see the module notes).
const EAGER_SOURCES: usize = 512;

/// Minimum wall time between lazy recomputations, ms.
pub const REFRESH_MS: i64 = 250;

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Newest event time seen, capped by the wall time it was seen at, ms.
    event_ms: i64,
    /// Wall time of the newest observation, ms.
    wall_ms: i64,
}

/// Watermark state.
#[derive(Debug, Clone)]
pub struct Watermark {
    wm: i64,
    idle_ms: i64,
    source_idle_ms: i64,
    last_advance_wall: i64,
    sources: HashMap<String, Clock>,
    since_refresh: usize,
    last_refresh_wall: i64,
    scratch: Vec<i64>,
}

impl Watermark {
    /// Starts at 0 (no reading yet). `idle_ms`: quiet wall time before the processing-time advance;
    /// `source_idle_ms`: wall time after which a silent source no longer counts.
    pub fn new(idle_ms: i64, source_idle_ms: i64) -> Self {
        Watermark {
            wm: 0,
            idle_ms,
            source_idle_ms,
            last_advance_wall: i64::MIN,
            sources: HashMap::new(),
            since_refresh: 0,
            last_refresh_wall: i64::MIN,
            scratch: Vec::new(),
        }
    }

    /// The current watermark, ms.
    pub fn get(&self) -> i64 {
        self.wm
    }

    /// Number of sources currently tracked (active within `source_idle_ms` at the last recompute).
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Notes a reading of `source` with event time `ts_ms`, received at wall time `now_ms`. Call
    /// [`Watermark::advance`] after a batch of observations to move the watermark.
    pub fn observe(&mut self, source: &str, ts_ms: i64, now_ms: i64) {
        let event_ms = ts_ms.min(now_ms);
        match self.sources.get_mut(source) {
            Some(c) => {
                c.event_ms = c.event_ms.max(event_ms);
                c.wall_ms = c.wall_ms.max(now_ms);
            }
            None => {
                self.sources.insert(
                    source.to_owned(),
                    Clock {
                        event_ms,
                        wall_ms: now_ms,
                    },
                );
            }
        }
        self.since_refresh += 1;
    }

    /// Recomputes the event-time candidate (see the module notes) at wall time `now_ms` and moves the
    /// watermark forward to it. Returns the watermark.
    pub fn advance(&mut self, now_ms: i64) -> i64 {
        let n = self.sources.len();
        if n == 0 || self.since_refresh == 0 {
            return self.wm;
        }
        let lazy = n > EAGER_SOURCES
            && self.since_refresh < n / 8
            && now_ms.saturating_sub(self.last_refresh_wall) < REFRESH_MS;
        if lazy {
            return self.wm;
        }
        self.since_refresh = 0;
        self.last_refresh_wall = now_ms;
        let idle = self.source_idle_ms;
        self.sources
            .retain(|_, c| now_ms.saturating_sub(c.wall_ms) <= idle);
        self.scratch.clear();
        self.scratch
            .extend(self.sources.values().map(|c| c.event_ms.min(now_ms)));
        let n = self.scratch.len();
        if n == 0 {
            return self.wm;
        }
        let skip = if n == 1 {
            0
        } else {
            n.div_ceil(OUTLIER_DIVISOR).clamp(1, n - 1)
        };
        // The (skip)-th newest = the (n − 1 − skip)-th in ascending order.
        let (_, &mut candidate, _) = self.scratch.select_nth_unstable(n - 1 - skip);
        if candidate > self.wm {
            self.wm = candidate;
            self.last_advance_wall = now_ms;
        }
        self.wm
    }

    /// Processing-time progress at wall time `now_ms`: after `idle_ms` without advance, moves with the
    /// wall clock (never beyond `now_ms`). Returns the watermark.
    pub fn tick(&mut self, now_ms: i64) -> i64 {
        self.advance(now_ms);
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

    const NOW: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn live_clock_is_capped_by_now_and_moves_when_quiet() {
        let mut w = Watermark::new(5_000, HOUR);
        w.observe("a", NOW - 10_000, NOW);
        assert_eq!(w.advance(NOW), NOW - 10_000, "one source: its own clock");
        w.observe("a", NOW + 200_000, NOW); // fast clock: capped at now
        assert_eq!(w.advance(NOW), NOW);
        w.observe("a", NOW - 50_000, NOW + 1_000); // older: no regress
        assert_eq!(w.advance(NOW + 1_000), NOW);
        assert_eq!(w.tick(NOW + 4_000), NOW, "not idle yet");
        assert_eq!(
            w.tick(NOW + 6_000),
            NOW + 6_000,
            "moves with the wall clock, capped at now"
        );
    }

    #[test]
    fn historical_replay_ignores_a_fast_device() {
        // 20 devices replay 2016 in lockstep; d0's clock is an hour fast. Wall time is "now".
        let t0 = 1_460_000_000_000;
        let mut w = Watermark::new(5_000, HOUR);
        for step in 0..10i64 {
            let t = t0 + step * 60_000;
            for d in 0..20 {
                let fast = if d == 0 { HOUR } else { 0 };
                w.observe(&format!("d{d}"), t + fast, NOW + step);
            }
            // 20 sources: skip the 2 newest; 19 honest clocks all at t.
            assert_eq!(w.advance(NOW + step), t, "step {step}");
        }
    }

    #[test]
    fn two_sources_take_the_older_and_a_silent_one_leaves() {
        let mut w = Watermark::new(5_000, 60_000);
        w.observe("fast", NOW - 1_000, NOW);
        w.observe("slow", NOW - 30_000, NOW);
        assert_eq!(w.advance(NOW), NOW - 30_000, "two sources: the older one");
        // "slow" goes silent; after source_idle_ms of wall time it no longer counts.
        w.observe("fast", NOW + 50_000, NOW + 50_000);
        assert_eq!(
            w.advance(NOW + 50_000),
            NOW - 30_000,
            "still within idleness"
        );
        w.observe("fast", NOW + 61_000, NOW + 61_000);
        assert_eq!(
            w.advance(NOW + 61_000),
            NOW + 61_000,
            "the silent source left"
        );
        assert_eq!(w.sources(), 1);
    }

    #[test]
    fn a_stuck_clock_does_not_hold_the_city_back() {
        let mut w = Watermark::new(5_000, HOUR);
        for d in 0..9 {
            w.observe(&format!("d{d}"), NOW - 60_000, NOW);
        }
        w.observe("stuck", NOW - 10 * HOUR, NOW);
        // 10 sources: skip the newest one (ceil(10 / 10)); the 2nd newest is an honest clock.
        assert_eq!(w.advance(NOW), NOW - 60_000);
    }

    #[test]
    fn many_sources_recompute_lazily_but_exactly() {
        let mut w = Watermark::new(5_000, HOUR);
        let n = 2_000;
        for d in 0..n {
            w.observe(&format!("d{d}"), NOW - HOUR + d, NOW);
        }
        // First recompute (since_refresh ≥ n/8). Ascending clocks NOW−HOUR+0..n−1; skip 200 newest.
        let expect = NOW - HOUR + (n - 1 - 200);
        assert_eq!(w.advance(NOW), expect);
        // A few observations within REFRESH_MS: not yet recomputed...
        for d in 0..10 {
            w.observe(&format!("d{d}"), NOW - HOUR + 10 * n, NOW + 1);
        }
        assert_eq!(w.advance(NOW + 1), expect);
        // ...but after REFRESH_MS of wall time it is: 10 clocks moved to the top; skip 200 newest:
        // the 10 moved ones and the 190 newest of the rest.
        let e2 = NOW - HOUR + (n - 1 - 190);
        assert_eq!(w.advance(NOW + 1 + REFRESH_MS), e2);
    }
}
