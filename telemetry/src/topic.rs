//! Versioned MQTT topics: builders and a strict parser (anything off-schema is refused).
//!
//! | topic | published by | QoS / retained | payload |
//! |---|---|---|---|
//! | `citybrain/v1/{district}/{kind}/{device}/telemetry` | gateway | 1 / no | readings (`json`) |
//! | `citybrain/v1/{district}/{kind}/{device}/events` | gateway | 1 / no | readings (`json`) |
//! | `citybrain/v1/{district}/{kind}/{device}/status` | gateway | 1 / retained | device status |
//! | `citybrain/v1/{district}/{kind}/{device}/cmd` | operators | 1 / no | downlink command |
//! | `citybrain/v1/gateway/{gateway}/status` | gateway (birth, last will) | 1 / retained | gateway status |
//! | `citybrain/v1/gateway/{gateway}/batch` | gateway | 1 / no | readings of many devices |
//! | `citybrain/v1/{district}/agg/{kind}/{scope}/{id}/{window}` | stream core | 1 / no | window aggregate |
//! | `citybrain/v1/{district}/alert/{site}/{alert}` | stream core | 1 / retained | alert state |
//!
//! `kind` is `parking` or `grid`; `district` may not be `gateway` (reserved). Every variable level is an
//! identifier under [`crate::ids::check_id`] rules, so no level can hold a wildcard or separator.

use crate::ids::{DeviceKind, check_id};
use crate::reading::Reading;
use crate::reject::RejectReason;

/// First two levels of every topic.
pub const ROOT: &str = "citybrain/v1";

/// Channel of a device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Periodic readings.
    Telemetry,
    /// Event readings (state changes, power-quality events).
    Events,
    /// Device status (retained).
    Status,
    /// Downlink commands to the device.
    Cmd,
}

impl Channel {
    /// Stable name of the channel level.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Telemetry => "telemetry",
            Channel::Events => "events",
            Channel::Status => "status",
            Channel::Cmd => "cmd",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "telemetry" => Channel::Telemetry,
            "events" => Channel::Events,
            "status" => Channel::Status,
            "cmd" => Channel::Cmd,
            _ => return None,
        })
    }
}

/// A parsed topic; string parts borrow from the topic text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// A device's topic.
    Device {
        /// District level.
        district: &'a str,
        /// Device kind level.
        kind: DeviceKind,
        /// Device id level.
        device: &'a str,
        /// Channel level.
        channel: Channel,
    },
    /// A gateway's status (birth / last will).
    GatewayStatus {
        /// Gateway id.
        gateway: &'a str,
    },
    /// A gateway's multi-device batch.
    GatewayBatch {
        /// Gateway id.
        gateway: &'a str,
    },
    /// A window aggregate published by the core.
    Aggregate {
        /// District level.
        district: &'a str,
        /// Device kind the aggregate is over.
        kind: DeviceKind,
        /// `device`, `lot`, `feeder` or `district`.
        scope: &'a str,
        /// Id within the scope.
        id: &'a str,
        /// Window length label (`1m`, `15m`, ...).
        window: &'a str,
    },
    /// Current state of one alert at one site (retained).
    Alert {
        /// District level.
        district: &'a str,
        /// Site (lot, feeder) or device id.
        site: &'a str,
        /// Alert kind name.
        alert: &'a str,
    },
}

/// Builds a device topic.
pub fn device(district: &str, kind: DeviceKind, device: &str, channel: Channel) -> String {
    format!(
        "{ROOT}/{district}/{}/{device}/{}",
        kind.as_str(),
        channel.as_str()
    )
}

/// The topic a reading is published on by its gateway (`telemetry` or `events` by measurement type).
pub fn for_reading(r: &Reading) -> String {
    let ch = if r.data.is_event() {
        Channel::Events
    } else {
        Channel::Telemetry
    };
    device(r.district.as_str(), r.kind(), r.device.as_str(), ch)
}

/// Builds a gateway status topic.
pub fn gateway_status(gateway: &str) -> String {
    format!("{ROOT}/gateway/{gateway}/status")
}

/// Builds a gateway batch topic.
pub fn gateway_batch(gateway: &str) -> String {
    format!("{ROOT}/gateway/{gateway}/batch")
}

/// Builds an aggregate topic.
pub fn aggregate(district: &str, kind: DeviceKind, scope: &str, id: &str, window: &str) -> String {
    format!(
        "{ROOT}/{district}/agg/{}/{scope}/{id}/{window}",
        kind.as_str()
    )
}

/// Builds an alert topic.
pub fn alert(district: &str, site: &str, alert: &str) -> String {
    format!("{ROOT}/{district}/alert/{site}/{alert}")
}

/// Subscription filters for everything devices and gateways send (what the stream core consumes).
pub fn ingest_filters() -> Vec<String> {
    let mut v = Vec::new();
    for kind in ["parking", "grid"] {
        for ch in ["telemetry", "events"] {
            v.push(format!("{ROOT}/+/{kind}/+/{ch}"));
        }
    }
    v.push(format!("{ROOT}/gateway/+/batch"));
    v
}

/// Subscription filters for what the core publishes (what the dashboard consumes).
pub fn output_filters() -> Vec<String> {
    vec![format!("{ROOT}/+/agg/#"), format!("{ROOT}/+/alert/+/+")]
}

/// Parses a topic.
///
/// # Errors
/// `bad_topic` for anything off the schema above (wrong root or version, unknown kind or channel,
/// wrong number of levels, empty or invalid identifier levels).
pub fn parse(topic: &str) -> Result<Topic<'_>, RejectReason> {
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(RejectReason::BadTopic)?;
    let parts: Vec<&str> = rest.split('/').collect();
    for p in &parts {
        check_id(p).map_err(|_| RejectReason::BadTopic)?;
    }
    let t = match parts.as_slice() {
        ["gateway", gw, "status"] => Topic::GatewayStatus { gateway: gw },
        ["gateway", gw, "batch"] => Topic::GatewayBatch { gateway: gw },
        ["gateway", ..] => return Err(RejectReason::BadTopic),
        [district, "agg", kind, scope, id, window] => Topic::Aggregate {
            district,
            kind: DeviceKind::parse(kind).ok_or(RejectReason::BadTopic)?,
            scope: match *scope {
                "device" | "lot" | "feeder" | "district" => scope,
                _ => return Err(RejectReason::BadTopic),
            },
            id,
            window,
        },
        [district, "alert", site, alert] => Topic::Alert {
            district,
            site,
            alert,
        },
        [district, kind, device, channel] => Topic::Device {
            district,
            kind: DeviceKind::parse(kind).ok_or(RejectReason::BadTopic)?,
            device,
            channel: Channel::parse(channel).ok_or(RejectReason::BadTopic)?,
        },
        _ => return Err(RejectReason::BadTopic),
    };
    Ok(t)
}

/// Checks that a reading agrees with the topic it arrived on: on a device topic, the same district,
/// kind and device; on a gateway batch topic anything goes (the gateway's ACL scope is the broker's job).
///
/// # Errors
/// `topic_mismatch` when they disagree; `bad_topic` when the topic carries no readings.
pub fn check_reading_topic(r: &Reading, topic: &Topic<'_>) -> Result<(), RejectReason> {
    match topic {
        Topic::Device {
            district,
            kind,
            device,
            channel: Channel::Telemetry | Channel::Events,
        } => {
            if *district == r.district.as_str() && *kind == r.kind() && *device == r.device.as_str()
            {
                Ok(())
            } else {
                Err(RejectReason::TopicMismatch)
            }
        }
        Topic::GatewayBatch { .. } => Ok(()),
        _ => Err(RejectReason::BadTopic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse() {
        let t = device("central", DeviceKind::Parking, "b1", Channel::Telemetry);
        assert_eq!(t, "citybrain/v1/central/parking/b1/telemetry");
        assert_eq!(
            parse(&t),
            Ok(Topic::Device {
                district: "central",
                kind: DeviceKind::Parking,
                device: "b1",
                channel: Channel::Telemetry
            })
        );
        let a = aggregate("central", DeviceKind::Grid, "feeder", "f1", "15m");
        assert_eq!(a, "citybrain/v1/central/agg/grid/feeder/f1/15m");
        assert!(matches!(
            parse(&a),
            Ok(Topic::Aggregate {
                scope: "feeder",
                window: "15m",
                ..
            })
        ));
        assert_eq!(
            parse(&alert("c", "lot1", "lot_full")),
            Ok(Topic::Alert {
                district: "c",
                site: "lot1",
                alert: "lot_full"
            })
        );
        assert_eq!(
            parse(&gateway_status("gw1")),
            Ok(Topic::GatewayStatus { gateway: "gw1" })
        );
        assert_eq!(
            parse(&gateway_batch("gw1")),
            Ok(Topic::GatewayBatch { gateway: "gw1" })
        );
    }

    #[test]
    fn off_schema_is_refused() {
        for bad in [
            "citybrain/v2/central/parking/b1/telemetry",
            "citybrain/v1/central/water/b1/telemetry",
            "citybrain/v1/central/parking/b1/other",
            "citybrain/v1/central/parking/b1",
            "citybrain/v1/central/parking//telemetry",
            "citybrain/v1/central/parking/+/telemetry",
            "citybrain/v1/central/parking/#",
            "citybrain/v1/gateway/gw1/other",
            "citybrain/v1/central/agg/grid/house/f1/1m",
            "other/v1/central/parking/b1/telemetry",
            "",
        ] {
            assert_eq!(parse(bad), Err(RejectReason::BadTopic), "{bad}");
        }
    }
}
