//! LoRaWAN intake through a ChirpStack v4 MQTT integration (`application/+/device/+/event/up`).
//!
//! The uplink JSON carries `deviceInfo.devEui` (and `deviceProfileName`), `fCnt`, an optional `time`
//! (RFC 3339, the network's receive time), base64 `data` and `rxInfo[].rssi/snr`. The payload decoder is
//! chosen per device profile ([`LorawanConfig::profiles`], default [`LorawanConfig::default_decoder`]):
//!
//! - [`PayloadDecoder::Citybrain`]: our own uplink frame (`telemetry::frame`); `boot`/`seq` and the age
//!   offset come from the frame, the event time is `time` (or the gateway clock) minus the age.
//! - [`PayloadDecoder::LibeliumParkingV2`]: Libelium Smart Parking v2, 11 bytes. Byte 0: bit 7 occupied,
//!   bit 6 battery low, bits 0–2 frame type; byte 1: sequence. Frame type 0 (info, sent on a state change)
//!   becomes a `parking_change`, type 1 (keep-alive) a `parking_heartbeat`; other types (daily updates,
//!   start-up, errors) carry no reading and are counted as `uplink_ignored`. The node gives no time:
//!   readings are stamped with `time` or the gateway clock (`TimeSource::Gateway`). `fCnt` maps to `seq`
//!   and `boot` is 0 (a rejoin resets `fCnt`; the stream core's dedup window handles the overlap). It
//!   reports no field strength (`field_ut = 0`) and only a low-battery flag, mapped to
//!   `battery_pct` = 10 (low) or 100 (not low) — a flag, not a measurement.

use super::{DeviceIdentity, FrameDecoder};
use crate::counters::Counters;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use telemetry::frame;
use telemetry::{Measurement, ParkingChange, ParkingHeartbeat, Reading, RejectReason, TimeSource};

/// Payload formats the gateway can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadDecoder {
    /// Our own uplink frame.
    #[default]
    Citybrain,
    /// Libelium Smart Parking v2 (11 bytes).
    LibeliumParkingV2,
}

/// ChirpStack integration settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LorawanConfig {
    /// Subscribe to the integration at all (default false).
    pub enabled: bool,
    /// MQTT topic filter of uplink events (default `application/+/device/+/event/up`).
    pub topic_filter: String,
    /// Device-profile name → decoder.
    pub profiles: BTreeMap<String, PayloadDecoder>,
    /// Decoder for profiles not listed (default `citybrain`).
    pub default_decoder: PayloadDecoder,
}

impl Default for LorawanConfig {
    fn default() -> Self {
        LorawanConfig {
            enabled: false,
            topic_filter: "application/+/device/+/event/up".into(),
            profiles: BTreeMap::new(),
            default_decoder: PayloadDecoder::Citybrain,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Uplink {
    device_info: DeviceInfo,
    #[serde(default)]
    f_cnt: Option<u32>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    rx_info: Vec<RxInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceInfo {
    dev_eui: String,
    #[serde(default)]
    device_profile_name: Option<String>,
}

#[derive(Deserialize)]
struct RxInfo {
    #[serde(default)]
    rssi: Option<i32>,
    #[serde(default)]
    snr: Option<f32>,
}

/// Outcome of one uplink.
#[derive(Debug, Clone, PartialEq)]
pub enum UplinkOutcome {
    /// A reading.
    Reading(Box<Reading>),
    /// A valid uplink that carries no reading (counted as `uplink_ignored`).
    Ignored,
}

/// Decodes one ChirpStack uplink event received at `rx_ms`.
///
/// # Errors
/// `malformed_json` / `missing_field` / `wrong_type` for bad JSON, `unknown_device` for an unregistered
/// DevEUI, `bad_frame` / `bad_crc` for a payload its decoder refuses.
pub fn decode_uplink(
    json: &[u8],
    cfg: &LorawanConfig,
    devices: &FrameDecoder,
    rx_ms: i64,
) -> Result<UplinkOutcome, RejectReason> {
    let up: Uplink = serde_json::from_slice(json).map_err(|e| {
        if e.is_data() {
            RejectReason::MissingField
        } else {
            RejectReason::MalformedJson
        }
    })?;
    let id = devices
        .by_eui(&up.device_info.dev_eui)
        .ok_or(RejectReason::UnknownDevice)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(up.data.as_deref().unwrap_or(""))
        .map_err(|_| RejectReason::WrongType)?;
    let rx = match up.time.as_deref() {
        Some(t) => parse_rfc3339_ms(t).ok_or(RejectReason::WrongType)?,
        None => rx_ms,
    };
    let best = up
        .rx_info
        .iter()
        .filter_map(|r| r.rssi.map(|rssi| (rssi, r.snr)))
        .max_by_key(|x| x.0);
    if let Some((rssi, snr)) = best {
        tracing::trace!(device = %id.device, rssi_dbm = rssi, snr_db = snr.unwrap_or(f32::NAN), "lorawan uplink");
    }
    let decoder = up
        .device_info
        .device_profile_name
        .as_ref()
        .and_then(|p| cfg.profiles.get(p))
        .copied()
        .unwrap_or(cfg.default_decoder);
    match decoder {
        PayloadDecoder::Citybrain => {
            let f = frame::parse(&data).map_err(|e| match e {
                frame::FrameError::Incomplete { .. } => RejectReason::BadFrame,
                e => e.reason(),
            })?;
            Ok(UplinkOutcome::Reading(Box::new(super::to_reading(
                &f, id, rx,
            ))))
        }
        PayloadDecoder::LibeliumParkingV2 => {
            libelium_v2(&data, up.f_cnt.ok_or(RejectReason::MissingField)?, id, rx)
        }
    }
}

/// Decodes a Libelium Smart Parking v2 payload (see the module docs for the mapping).
///
/// # Errors
/// `bad_frame` when the payload is not 11 bytes.
pub fn libelium_v2(
    data: &[u8],
    f_cnt: u32,
    id: &DeviceIdentity,
    rx_ms: i64,
) -> Result<UplinkOutcome, RejectReason> {
    if data.len() != 11 {
        return Err(RejectReason::BadFrame);
    }
    let occupied = data[0] & 0x80 != 0;
    let battery_low = data[0] & 0x40 != 0;
    let measurement = match data[0] & 0x07 {
        0 => Measurement::ParkingChange(ParkingChange {
            occupied,
            field_ut: 0.0,
        }),
        1 => Measurement::ParkingHeartbeat(ParkingHeartbeat {
            occupied,
            battery_pct: if battery_low { 10.0 } else { 100.0 },
            field_ut: 0.0,
            transitions: 0,
            dropped: 0,
        }),
        _ => return Ok(UplinkOutcome::Ignored),
    };
    Ok(UplinkOutcome::Reading(Box::new(Reading {
        device: id.device.clone(),
        site: id.site.clone(),
        district: id.district.clone(),
        boot: 0,
        seq: f_cnt,
        ts_ms: rx_ms,
        time_source: TimeSource::Gateway,
        replayed: false,
        data: measurement,
    })))
}

/// Decodes and counts; returns the reading if there is one.
pub fn decode_counted(
    json: &[u8],
    cfg: &LorawanConfig,
    devices: &FrameDecoder,
    rx_ms: i64,
    c: &Counters,
) -> Option<Reading> {
    match decode_uplink(json, cfg, devices, rx_ms) {
        Ok(UplinkOutcome::Reading(r)) => {
            Counters::add(&c.frames_ok, 1);
            Some(*r)
        }
        Ok(UplinkOutcome::Ignored) => {
            Counters::add(&c.uplink_ignored, 1);
            None
        }
        Err(reason) => {
            let counter = match reason {
                RejectReason::UnknownDevice => &c.unknown_device,
                _ => &c.bad_uplink,
            };
            Counters::add(counter, 1);
            tracing::debug!(reason = reason.as_str(), "lorawan uplink refused");
            None
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into UTC epoch ms (fraction truncated to ms).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *c == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) - offset_min * 60) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::frame::{Frame, MAX_FRAME_LEN};
    use telemetry::registry::Registry;

    fn devices() -> FrameDecoder {
        FrameDecoder::new(
            &Registry::from_toml(crate::intake::tests::REG).unwrap(),
            "gw",
        )
    }

    fn uplink(data: &[u8], profile: &str, time: Option<&str>) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let time = time
            .map(|t| format!(r#""time":"{t}","#))
            .unwrap_or_default();
        format!(
            r#"{{"deduplicationId":"x",{time}"deviceInfo":{{"tenantId":"t","devEui":"0011223344556677","deviceProfileName":"{profile}"}},"fCnt":42,"fPort":1,"data":"{b64}","rxInfo":[{{"rssi":-97,"snr":7.5}},{{"rssi":-80,"snr":2.0}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn rfc3339() {
        // 2016-10-04T08:25:42Z = 1475569542 s (date -u -d 2016-10-04T08:25:42Z +%s).
        assert_eq!(
            parse_rfc3339_ms("2016-10-04T08:25:42Z"),
            Some(1_475_569_542_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2016-10-04T09:25:42.123456+01:00"),
            Some(1_475_569_542_123)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "2016-10-04",
            "2016-13-04T08:25:42Z",
            "2016-10-04T08:25:42",
            "x016-10-04T08:25:42Z",
            "",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn libelium_frames() {
        let mut cfg = LorawanConfig::default();
        cfg.profiles
            .insert("libelium".into(), PayloadDecoder::LibeliumParkingV2);
        let d = devices();
        let mut p = [0u8; 11];
        p[0] = 0x80 | 0x40; // occupied, battery low, type 0 (info)
        p[1] = 9;
        let out = decode_uplink(
            &uplink(&p, "libelium", Some("2016-10-04T08:25:42Z")),
            &cfg,
            &d,
            5,
        )
        .unwrap();
        let UplinkOutcome::Reading(r) = out else {
            panic!("expected a reading")
        };
        assert_eq!(
            (r.seq, r.boot, r.ts_ms, r.time_source),
            (42, 0, 1_475_569_542_000, TimeSource::Gateway)
        );
        assert_eq!(
            r.data,
            Measurement::ParkingChange(ParkingChange {
                occupied: true,
                field_ut: 0.0
            })
        );
        p[0] = 0x01; // vacant, battery ok, keep-alive
        let UplinkOutcome::Reading(r) =
            decode_uplink(&uplink(&p, "libelium", None), &cfg, &d, 5).unwrap()
        else {
            panic!("expected a reading")
        };
        assert_eq!(r.ts_ms, 5);
        assert!(
            matches!(r.data, Measurement::ParkingHeartbeat(h) if !h.occupied && h.battery_pct == 100.0)
        );
        p[0] = 0x02; // daily update: no reading
        assert_eq!(
            decode_uplink(&uplink(&p, "libelium", None), &cfg, &d, 5),
            Ok(UplinkOutcome::Ignored)
        );
        assert_eq!(
            decode_uplink(&uplink(&p[..10], "libelium", None), &cfg, &d, 5),
            Err(RejectReason::BadFrame)
        );
    }

    #[test]
    fn own_frame_and_bad_uplinks() {
        let cfg = LorawanConfig::default();
        let d = devices();
        let f = Frame {
            addr: 1234, // the DevEUI names the device, not the address
            boot: 3,
            seq: 77,
            age_ds: 20,
            data: Measurement::ParkingChange(ParkingChange {
                occupied: false,
                field_ut: 1.5,
            }),
        };
        let mut b = [0u8; MAX_FRAME_LEN];
        let n = f.encode(&mut b).unwrap();
        let UplinkOutcome::Reading(r) = decode_uplink(
            &uplink(&b[..n], "any", Some("2016-10-04T08:25:42Z")),
            &cfg,
            &d,
            5,
        )
        .unwrap() else {
            panic!("expected a reading")
        };
        assert_eq!(
            (r.boot, r.seq, r.ts_ms, r.time_source),
            (3, 77, 1_475_569_542_000 - 2_000, TimeSource::Device)
        );
        b[3] ^= 1;
        assert_eq!(
            decode_uplink(&uplink(&b[..n], "any", None), &cfg, &d, 5),
            Err(RejectReason::BadCrc)
        );
        assert_eq!(
            decode_uplink(b"{not json", &cfg, &d, 5),
            Err(RejectReason::MalformedJson)
        );
        assert_eq!(
            decode_uplink(b"{}", &cfg, &d, 5),
            Err(RejectReason::MissingField)
        );
        let unknown = String::from_utf8(uplink(&b[..n], "any", None))
            .unwrap()
            .replace("0011223344556677", "ffffffffffffffff");
        assert_eq!(
            decode_uplink(unknown.as_bytes(), &cfg, &d, 5),
            Err(RejectReason::UnknownDevice)
        );
        let c = Counters::default();
        assert!(decode_counted(b"[]", &cfg, &d, 0, &c).is_none());
        assert!(decode_counted(unknown.as_bytes(), &cfg, &d, 0, &c).is_none());
        let s = c.snapshot();
        assert_eq!((s["bad_uplink"], s["unknown_device"]), (1, 1));
    }
}
