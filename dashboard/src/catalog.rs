//! The data catalog: every dataset with its owner, classification, retention, update frequency, schema
//! and lineage (MQTT topic → stream-core operators → storage table). Static; served by
//! `GET /api/v1/catalog` and shown on the Governance page.

use crate::access::Dataset;
use serde::Serialize;

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    /// Dataset name (as in tokens).
    pub dataset: &'static str,
    /// Title.
    pub title: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Owning department.
    pub owner: &'static str,
    /// `public`, `internal` or `sensitive`.
    pub classification: &'static str,
    /// Roles that may be granted it.
    pub roles: &'static [&'static str],
    /// How long it is kept.
    pub retention: &'static str,
    /// How often it changes.
    pub update_frequency: &'static str,
    /// Fields: (name, type and unit).
    pub schema: &'static [(&'static str, &'static str)],
    /// Source topics (MQTT filters).
    pub lineage_topics: &'static [&'static str],
    /// Stream-core operators on the path.
    pub lineage_operators: &'static [&'static str],
    /// Storage table.
    pub lineage_table: &'static str,
    /// Licence of the data.
    pub licence: &'static str,
}

const AGG_SCHEMA: &[(&str, &str)] = &[
    ("kind", "parking | grid"),
    ("scope", "device | lot | feeder | district"),
    ("id", "string"),
    ("district", "string"),
    ("start_ms", "UTC epoch ms"),
    ("window_ms", "ms (60000, 900000)"),
    ("version", "integer, late corrections +1"),
    ("count", "readings aggregated"),
    ("metrics", "name (unit in name) → number"),
];

const RAW_SCHEMA: &[(&str, &str)] = &[
    ("device", "string"),
    ("site", "string"),
    ("district", "string"),
    ("boot", "integer"),
    ("seq", "integer"),
    ("ts_ms", "UTC epoch ms (event time)"),
    ("data", "typed measurement (see docs/PROTOCOL.md)"),
];

const INGEST_OPS: &[&str] = &["Validate", "Dedup", "WriteSeries"];
const AGG_OPS: &[&str] = &[
    "Validate",
    "Dedup",
    "AssignWindow",
    "Aggregate",
    "WriteSeries",
];

/// The catalog, one entry per dataset in [`Dataset::ALL`] order.
pub fn catalog() -> Vec<CatalogEntry> {
    Dataset::ALL.iter().map(|d| entry(*d)).collect()
}

fn roles_for(d: Dataset) -> &'static [&'static str] {
    match d {
        Dataset::ParkingRaw | Dataset::GridRaw => &["admin", "grid_manager"],
        Dataset::OpenData => &["admin", "grid_manager", "planner", "public"],
        _ => &["admin", "grid_manager", "planner"],
    }
}

fn entry(d: Dataset) -> CatalogEntry {
    let roles = roles_for(d);
    match d {
        Dataset::ParkingRaw => CatalogEntry {
            dataset: d.as_str(),
            title: "Parking bay readings",
            description: "Every bay-sensor event and heartbeat (occupied, magnetic field, battery).",
            owner: "Transport & Highways",
            classification: "internal",
            roles,
            retention: "90 days",
            update_frequency: "event-driven (seconds)",
            schema: RAW_SCHEMA,
            lineage_topics: &[
                "citybrain/v1/+/parking/+/telemetry",
                "citybrain/v1/+/parking/+/events",
                "citybrain/v1/gateway/+/batch",
            ],
            lineage_operators: INGEST_OPS,
            lineage_table: "readings",
            licence: "UK OGL v3 (Birmingham replay data: contains public sector information)",
        },
        Dataset::ParkingAgg => CatalogEntry {
            dataset: d.as_str(),
            title: "Parking occupancy aggregates",
            description: "Per lot and district: occupancy mean/max, arrivals, departures, dwell, full minutes.",
            owner: "Transport & Highways",
            classification: "internal",
            roles,
            retention: "1-min rows 30 days; 15-min rows 5 years",
            update_frequency: "every 1 min and 15 min",
            schema: AGG_SCHEMA,
            lineage_topics: &[
                "citybrain/v1/+/parking/+/events",
                "citybrain/v1/+/agg/parking/#",
            ],
            lineage_operators: AGG_OPS,
            lineage_table: "aggregates",
            licence: "UK OGL v3",
        },
        Dataset::GridRaw => CatalogEntry {
            dataset: d.as_str(),
            title: "Grid meter readings",
            description: "Household-meter and feeder-monitor summaries and power-quality events (personal data: household level).",
            owner: "Energy Networks",
            classification: "sensitive",
            roles,
            retention: "13 months",
            update_frequency: "every 1 min (summaries) + events",
            schema: RAW_SCHEMA,
            lineage_topics: &[
                "citybrain/v1/+/grid/+/telemetry",
                "citybrain/v1/+/grid/+/events",
                "citybrain/v1/gateway/+/batch",
            ],
            lineage_operators: INGEST_OPS,
            lineage_table: "readings",
            licence: "restricted",
        },
        Dataset::GridAgg => CatalogEntry {
            dataset: d.as_str(),
            title: "Grid aggregates",
            description: "Per feeder and district: voltage min/mean/max, power, energy, PQ events, EN 50160 ratio.",
            owner: "Energy Networks",
            classification: "internal",
            roles,
            retention: "1-min rows 30 days; 15-min rows 5 years",
            update_frequency: "every 1 min and 15 min",
            schema: AGG_SCHEMA,
            lineage_topics: &[
                "citybrain/v1/+/grid/+/telemetry",
                "citybrain/v1/+/agg/grid/#",
            ],
            lineage_operators: AGG_OPS,
            lineage_table: "aggregates",
            licence: "internal",
        },
        Dataset::Alerts => CatalogEntry {
            dataset: d.as_str(),
            title: "Alerts",
            description: "Raise/clear transitions: lot_full, voltage_out_of_band, interruption, device_offline, battery_low.",
            owner: "City Operations Centre",
            classification: "internal",
            roles,
            retention: "2 years",
            update_frequency: "event-driven",
            schema: &[
                ("alert", "kind"),
                ("state", "raised | cleared"),
                ("district", "string"),
                ("site", "lot, feeder or device id"),
                ("ts_ms", "UTC epoch ms"),
                ("value", "triggering value (unit by kind)"),
                ("message", "text"),
            ],
            lineage_topics: &["citybrain/v1/+/alert/+/+"],
            lineage_operators: &["Validate", "Dedup", "AssignWindow", "Aggregate", "Detect"],
            lineage_table: "alerts",
            licence: "internal",
        },
        Dataset::Quality => CatalogEntry {
            dataset: d.as_str(),
            title: "Data quality",
            description: "Per dataset, source and window: completeness, timeliness, validity, uniqueness, consistency; plus refused inputs (dead letters, admin only).",
            owner: "Data Governance Office",
            classification: "internal",
            roles,
            retention: "2 years (dead letters 30 days)",
            update_frequency: "every 15 min",
            schema: &[
                ("dataset", "parking | grid"),
                ("source", "device, gateway or site"),
                ("start_ms", "UTC epoch ms"),
                ("window_ms", "ms"),
                ("completeness", "0..1"),
                ("timeliness_p50_ms", "ms"),
                ("timeliness_p95_ms", "ms"),
                ("validity", "0..1"),
                ("uniqueness", "0..1"),
                ("consistency", "0..1"),
                ("received/expected/rejected/duplicates", "counts"),
            ],
            lineage_topics: &["citybrain/v1/#"],
            lineage_operators: &["Validate", "Dedup", "Quality"],
            lineage_table: "quality, dead_letters",
            licence: "internal",
        },
        Dataset::OpenData => CatalogEntry {
            dataset: d.as_str(),
            title: "Open parking availability",
            description: "Per lot, at least 15 minutes delayed, no device ids: FIWARE OffStreetParking.",
            owner: "Transport & Highways",
            classification: "public",
            roles,
            retention: "not stored (derived on request)",
            update_frequency: "every 1 min, 15 min delayed",
            schema: &[
                ("id", "urn:ngsi-ld:OffStreetParking:<lot>"),
                ("type", "OffStreetParking"),
                ("name", "text"),
                ("totalSpotNumber", "spaces"),
                ("availableSpotNumber", "spaces"),
                ("occupancy", "0..1"),
                ("dateModified", "RFC 3339 UTC"),
            ],
            lineage_topics: &["citybrain/v1/+/agg/parking/lot/+/1m"],
            lineage_operators: &["Aggregate", "WriteSeries", "dashboard: delay + shape"],
            lineage_table: "aggregates",
            licence: "UK Open Government Licence v3.0 (attribution: Birmingham City Council)",
        },
    }
}
