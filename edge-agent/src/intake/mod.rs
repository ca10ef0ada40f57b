//! Intake: uplink frames from our firmware (UDP datagrams, COBS-framed serial) and LoRaWAN uplinks from a
//! ChirpStack v4 MQTT integration, decoded into [`telemetry::Reading`]s. Every refusal is counted in
//! [`Counters`](crate::counters::Counters) and logged at debug level; none is fatal.
//!
//! - [`FrameDecoder`]: frame bytes + receive time → reading, through the registry's `(gateway, address)`
//!   index (pure).
//! - [`cobs::CobsSplitter`]: byte stream → COBS packets (pure).
//! - [`lorawan`]: ChirpStack JSON and per-device-profile payload decoders (pure).
//! - [`udp`] / [`serial`]: the IO loops.

pub mod cobs;
pub mod lorawan;
pub mod serial;
pub mod udp;

use crate::counters::Counters;
use std::collections::HashMap;
use telemetry::frame::{self, Frame, FrameError};
use telemetry::registry::Registry;
use telemetry::{DeviceId, DistrictId, Reading, RejectReason, SiteId};

/// Identity of a registered device, as stamped on its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIdentity {
    /// Device id.
    pub device: DeviceId,
    /// Its site.
    pub site: SiteId,
    /// The site's district.
    pub district: DistrictId,
}

/// Decodes frames of one gateway's devices.
#[derive(Debug, Clone, Default)]
pub struct FrameDecoder {
    by_addr: HashMap<u16, DeviceIdentity>,
    by_eui: HashMap<String, DeviceIdentity>,
}

impl FrameDecoder {
    /// Builds the address index for `gateway` (and the DevEUI index for all devices) from a registry.
    pub fn new(registry: &Registry, gateway: &str) -> Self {
        let mut d = FrameDecoder::default();
        for dev in &registry.devices {
            let Some(district) = registry.site_district(dev.site.as_str()) else {
                continue;
            };
            let id = DeviceIdentity {
                device: dev.id.clone(),
                site: dev.site.clone(),
                district: district.clone(),
            };
            if let Some(eui) = &dev.dev_eui {
                d.by_eui.insert(eui.to_ascii_lowercase(), id.clone());
            }
            if dev.gateway == gateway {
                d.by_addr.insert(dev.address, id);
            }
        }
        d
    }

    /// The device behind a LoRaWAN DevEUI (any case).
    pub fn by_eui(&self, eui: &str) -> Option<&DeviceIdentity> {
        self.by_eui.get(&eui.to_ascii_lowercase())
    }

    /// Decodes one whole frame received at `rx_ms` (UTC epoch ms).
    ///
    /// # Errors
    /// `bad_crc`, `bad_frame` (including an incomplete frame) or `unknown_device`.
    pub fn decode(&self, bytes: &[u8], rx_ms: i64) -> Result<Reading, RejectReason> {
        let f = frame::parse(bytes).map_err(|e| match e {
            FrameError::Incomplete { .. } => RejectReason::BadFrame,
            e => e.reason(),
        })?;
        let id = self
            .by_addr
            .get(&f.addr)
            .ok_or(RejectReason::UnknownDevice)?;
        Ok(to_reading(&f, id, rx_ms))
    }

    /// [`FrameDecoder::decode`] with the outcome counted (and logged at debug level).
    pub fn decode_counted(
        &self,
        bytes: &[u8],
        rx_ms: i64,
        counters: &Counters,
        source: &str,
    ) -> Option<Reading> {
        match self.decode(bytes, rx_ms) {
            Ok(r) => {
                Counters::add(&counters.frames_ok, 1);
                Some(r)
            }
            Err(reason) => {
                count_reject(counters, reason);
                tracing::debug!(
                    source,
                    reason = reason.as_str(),
                    len = bytes.len(),
                    "frame refused"
                );
                None
            }
        }
    }
}

/// Adds one to the counter of a frame refusal reason.
pub fn count_reject(counters: &Counters, reason: RejectReason) {
    let c = match reason {
        RejectReason::BadCrc => &counters.bad_crc,
        RejectReason::UnknownDevice => &counters.unknown_device,
        _ => &counters.bad_frame,
    };
    Counters::add(c, 1);
}

/// A frame as a reading of a known device: event time from the frame's age offset when it has one,
/// the receive time otherwise (`TimeSource::Gateway`).
pub fn to_reading(f: &Frame, id: &DeviceIdentity, rx_ms: i64) -> Reading {
    let (ts_ms, time_source) = f.event_time_ms(rx_ms);
    Reading {
        device: id.device.clone(),
        site: id.site.clone(),
        district: id.district.clone(),
        boot: u32::from(f.boot),
        seq: f.seq,
        ts_ms,
        time_source,
        replayed: false,
        data: f.data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::frame::{AGE_UNKNOWN, MAX_FRAME_LEN};
    use telemetry::{Measurement, ParkingChange, TimeSource};

    pub(crate) const REG: &str = r#"
[[lot]]
id = "L1"
name = "Lot one"
district = "central"
capacity = 10
[[device]]
id = "L1-b0"
kind = "parking"
site = "L1"
gateway = "gw"
address = 7
dev_eui = "0011223344556677"
report_interval_s = 3600
"#;

    fn frame(addr: u16, age_ds: u16) -> Vec<u8> {
        let f = Frame {
            addr,
            boot: 2,
            seq: 5,
            age_ds,
            data: Measurement::ParkingChange(ParkingChange {
                occupied: true,
                field_ut: 12.5,
            }),
        };
        let mut b = [0u8; MAX_FRAME_LEN];
        let n = f.encode(&mut b).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn decodes_known_and_refuses_the_rest() {
        let reg = Registry::from_toml(REG).unwrap();
        let d = FrameDecoder::new(&reg, "gw");
        let r = d.decode(&frame(7, 30), 1_000_000).unwrap();
        assert_eq!(r.device.as_str(), "L1-b0");
        assert_eq!(r.district.as_str(), "central");
        assert_eq!(
            (r.boot, r.seq, r.ts_ms, r.time_source),
            (2, 5, 1_000_000 - 3_000, TimeSource::Device)
        );
        let r = d.decode(&frame(7, AGE_UNKNOWN), 5).unwrap();
        assert_eq!((r.ts_ms, r.time_source), (5, TimeSource::Gateway));
        assert_eq!(d.decode(&frame(8, 0), 0), Err(RejectReason::UnknownDevice));
        let mut bad = frame(7, 0);
        bad[12] ^= 0xFF;
        assert_eq!(d.decode(&bad, 0), Err(RejectReason::BadCrc));
        assert_eq!(d.decode(&bad[..5], 0), Err(RejectReason::BadFrame));
        assert_eq!(d.decode(&[], 0), Err(RejectReason::BadFrame));
        // Another gateway's decoder does not know address 7.
        assert_eq!(
            FrameDecoder::new(&reg, "other").decode(&frame(7, 0), 0),
            Err(RejectReason::UnknownDevice)
        );
        let c = Counters::default();
        assert!(d.decode_counted(&bad, 0, &c, "test").is_none());
        assert!(d.decode_counted(&frame(9, 0), 0, &c, "test").is_none());
        assert!(d.decode_counted(&frame(7, 0), 0, &c, "test").is_some());
        let s = c.snapshot();
        assert_eq!(
            (s["bad_crc"], s["unknown_device"], s["frames_ok"]),
            (1, 1, 1)
        );
    }
}
