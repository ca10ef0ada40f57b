//! The published workload and its plain reference windows.
//!
//! Reading `k` belongs to device `k % devices` at event second `k / devices`: every device reports once
//! per second of event time, `ts_ms = t0_ms + second * 1000`, `seq = second`, `boot = 1`. Values of
//! `v_rms_v` are multiples of 0.25 V, exact in `f32` and `f64`, so a correct mean is bit-exact.
//! Event time lies in the past (a replay), so both systems close windows by event time alone.

use std::collections::BTreeMap;
use telemetry::{DeviceId, DistrictId, GridSummary, Measurement, Reading, SiteId, TimeSource};

/// Window length used by the benchmark, ms.
pub const WINDOW_MS: i64 = 60_000;

/// One MQTT message of the workload.
pub struct Message {
    /// Topic.
    pub topic: String,
    /// JSON payload from `telemetry::json::encode`.
    pub payload: Vec<u8>,
    /// Key `(device, seq, ts_ms)` of its last reading (the store's raw table is keyed by event time
    /// first, so a lookup needs `ts_ms` to be an index search).
    pub last_key: (String, u32, i64),
}

/// A whole workload: messages in publish order, plus the flush message.
pub struct Workload {
    /// Simulated devices.
    pub devices: usize,
    /// Readings per message (1 = one reading per message on the device topic).
    pub batch: usize,
    /// Workload readings (flush excluded).
    pub readings: u64,
    /// Event time of second 0, UTC epoch ms (a minute boundary).
    pub t0_ms: i64,
    /// Messages in publish order.
    pub messages: Vec<Message>,
    /// The flush messages (one reading per device past every window), published last.
    pub flush: Vec<Message>,
    /// Event time of the flush readings, ms; windows from here on are left out of comparisons.
    pub flush_ts: i64,
    /// Reference windows: (device, start_ms) → (count, sum of v_rms_v).
    pub reference: BTreeMap<(String, i64), (u64, f64)>,
}

/// Device id of device index `d`.
pub fn device_id(d: usize) -> String {
    format!("g{d:05}")
}

fn v_rms(d: usize, second: u64) -> f32 {
    // 220.0 ..= 239.75 V in steps of 0.25 V.
    let step = (d as u64 * 7 + second * 13) % 80;
    220.0 + step as f32 * 0.25
}

fn reading(device: &str, d: usize, second: u64, ts_ms: i64) -> anyhow::Result<Reading> {
    let v = v_rms(d, second);
    Ok(Reading {
        device: DeviceId::new(device).map_err(|e| anyhow::anyhow!("device id: {e:?}"))?,
        site: SiteId::new(&format!("f{:03}", d / 50))
            .map_err(|e| anyhow::anyhow!("site: {e:?}"))?,
        district: DistrictId::new("central").map_err(|e| anyhow::anyhow!("district: {e:?}"))?,
        boot: 1,
        seq: u32::try_from(second)?,
        ts_ms,
        time_source: TimeSource::Device,
        replayed: false,
        data: Measurement::GridSummary(GridSummary {
            interval_s: 1,
            v_rms_v: v,
            v_min_v: v - 1.0,
            v_max_v: v + 1.0,
            i_rms_a: 10.0,
            p_kw: 2.0,
            q_kvar: 0.5,
            pf: 0.97,
            freq_hz: 50.0,
            energy_kwh: second as f64 * 0.001,
        }),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Workload {
    /// Builds `readings` readings of `devices` devices, `batch` readings per message (batches go to a
    /// gateway batch topic), ending at least 10 minutes before now.
    ///
    /// # Errors
    /// Only on an impossible id (device count beyond five digits).
    pub fn build(
        devices: usize,
        batch: usize,
        readings: u64,
        lateness_ms: i64,
    ) -> anyhow::Result<Workload> {
        let devices = devices.max(1);
        let batch = batch.max(1);
        let seconds = readings.div_ceil(devices as u64);
        let span_ms = seconds as i64 * 1000 + 2 * WINDOW_MS + lateness_ms;
        let t0_ms = (now_ms() - span_ms - 600_000).div_euclid(WINDOW_MS) * WINDOW_MS;
        let mut messages = Vec::with_capacity((readings as usize).div_ceil(batch));
        let mut reference: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
        let ids: Vec<String> = (0..devices).map(device_id).collect();
        let mut pending: Vec<Reading> = Vec::with_capacity(batch);
        let gateway_topic = telemetry::topic::gateway_batch("gw1");
        for k in 0..readings {
            let d = (k % devices as u64) as usize;
            let s = k / devices as u64;
            let ts = t0_ms + s as i64 * 1000;
            let r = reading(&ids[d], d, s, ts)?;
            let e = reference
                .entry((ids[d].clone(), ts.div_euclid(WINDOW_MS) * WINDOW_MS))
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 += f64::from(v_rms(d, s));
            pending.push(r);
            if pending.len() == batch || k + 1 == readings {
                let topic = if batch == 1 {
                    telemetry::topic::for_reading(&pending[0])
                } else {
                    gateway_topic.clone()
                };
                let last = pending
                    .last()
                    .map(|r| (r.device.as_str().to_string(), r.seq, r.ts_ms));
                messages.push(Message {
                    topic,
                    payload: telemetry::json::encode(&pending),
                    last_key: last.unwrap_or_default(),
                });
                pending.clear();
            }
        }
        // One flush reading per device: Bytewax keeps a clock per key, so each device needs its own
        // reading past its last window's end + lateness.
        let flush_ts = t0_ms + seconds as i64 * 1000 + 2 * WINDOW_MS + lateness_ms;
        let mut flush_readings = Vec::with_capacity(devices);
        for (d, id) in ids.iter().enumerate() {
            flush_readings.push(reading(id, d, seconds + 1000, flush_ts)?);
        }
        let flush = flush_readings
            .chunks(500)
            .map(|c| Message {
                topic: gateway_topic.clone(),
                payload: telemetry::json::encode(c),
                last_key: c
                    .last()
                    .map(|r| (r.device.as_str().to_string(), r.seq, r.ts_ms))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Workload {
            devices,
            batch,
            readings,
            t0_ms,
            messages,
            flush,
            flush_ts,
            reference,
        })
    }

    /// Event second whose first reading has `ts_ms >= t`: the first reading that lets a watermark of
    /// "max event time seen" pass `t`.
    pub fn second_at_or_after(&self, t: i64) -> u64 {
        u64::try_from((t - self.t0_ms + 999).div_euclid(1000)).unwrap_or(0)
    }
}

/// Result of comparing window outputs with the reference.
#[derive(Debug, Clone, Default)]
pub struct WindowCheck {
    /// Windows expected.
    pub expected: usize,
    /// Windows output with the exact count and mean.
    pub exact: usize,
    /// Windows output with a wrong count or mean.
    pub wrong: usize,
    /// Expected windows never output.
    pub missing: usize,
    /// Windows output that the reference does not have.
    pub extra: usize,
    /// Readings counted in output windows (sum of counts).
    pub readings: u64,
}

impl WindowCheck {
    /// True when every window is there, exactly, and nothing else.
    pub fn correct(&self) -> bool {
        self.exact == self.expected && self.wrong == 0 && self.missing == 0 && self.extra == 0
    }
}

/// Compares outputs `(device, start_ms) → (count, mean)` with the reference (mean within 1e-9 relative).
/// Windows starting at or after `ignore_from_ms` (the flush readings' windows) are left out.
pub fn check_windows(
    reference: &BTreeMap<(String, i64), (u64, f64)>,
    got: &BTreeMap<(String, i64), (u64, f64)>,
    ignore_from_ms: i64,
) -> WindowCheck {
    let mut c = WindowCheck {
        expected: reference.len(),
        ..Default::default()
    };
    for (k, (n, sum)) in reference {
        match got.get(k) {
            None => c.missing += 1,
            Some((gn, gmean)) => {
                let mean = sum / *n as f64;
                if gn == n && (gmean - mean).abs() <= 1e-9 * mean.abs() {
                    c.exact += 1;
                } else {
                    c.wrong += 1;
                }
            }
        }
    }
    for (k, (n, _)) in got {
        if k.1 >= ignore_from_ms {
            continue;
        }
        c.readings += n;
        if !reference.contains_key(k) {
            c.extra += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_counts_and_reference_by_hand() {
        // 3 devices, 130 readings: seconds 0..=43 (the last second has 1 reading).
        let w = Workload::build(3, 1, 130, 10_000).unwrap();
        assert_eq!(w.messages.len(), 130);
        let total: u64 = w.reference.values().map(|v| v.0).sum();
        assert_eq!(total, 130);
        // Device g00000 reports at seconds 0, 1, ..., 43: 44 readings, all in minute 0.
        assert_eq!(w.reference[&("g00000".to_string(), w.t0_ms)].0, 44);
        assert_eq!(w.reference[&("g00001".to_string(), w.t0_ms)].0, 43);
        assert_eq!(w.flush.len(), 1);
        let f = telemetry::json::decode(
            &w.flush[0].payload,
            &telemetry::Limits::default(),
            w.t0_ms + 3_600_000,
        )
        .unwrap();
        assert_eq!(f.readings.len(), 3);
        assert!(
            f.readings
                .iter()
                .all(|r| r.ts_ms >= w.t0_ms + 44_000 + 60_000 + 10_000)
        );
        let batched = Workload::build(3, 50, 130, 10_000).unwrap();
        assert_eq!(batched.messages.len(), 3);
        let d = telemetry::json::decode(
            &batched.messages[2].payload,
            &telemetry::Limits::default(),
            w.t0_ms + 3_600_000,
        )
        .unwrap();
        assert_eq!(d.readings.len(), 30);
        assert!(d.rejected.is_empty());
    }

    #[test]
    fn check_windows_counts_each_kind_of_error() {
        let mut r = BTreeMap::new();
        r.insert(("a".to_string(), 0), (2, 460.0));
        r.insert(("b".to_string(), 0), (1, 230.0));
        r.insert(("c".to_string(), 0), (1, 230.0));
        let mut g = BTreeMap::new();
        g.insert(("a".to_string(), 0), (2, 230.0));
        g.insert(("b".to_string(), 0), (1, 231.0));
        g.insert(("d".to_string(), 0), (1, 230.0));
        g.insert(("a".to_string(), 60_000), (1, 230.0));
        let c = check_windows(&r, &g, 60_000);
        assert_eq!(
            (c.exact, c.wrong, c.missing, c.extra, c.readings),
            (1, 1, 1, 1, 4)
        );
        assert!(!c.correct());
    }
}
