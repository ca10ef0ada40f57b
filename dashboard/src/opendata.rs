//! The open-data product: public parking availability per lot, shaped like the FIWARE Smart Data Model
//! `OffStreetParking` (normalised keys only: `id`, `type`, `name`, `totalSpotNumber`,
//! `availableSpotNumber`, `occupancy`, `dateModified`). Built from lot-scope aggregates whose window
//! ended at least `delay_ms` ago; no device ids ever appear.

use serde::{Deserialize, Serialize};
use telemetry::message::WindowAggregate;
use telemetry::registry::Registry;

/// Metric read for the occupancy ratio.
pub const OCCUPANCY_METRIC: &str = "occupancy_mean_ratio";

/// One lot in FIWARE `OffStreetParking` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffStreetParking {
    /// `urn:ngsi-ld:OffStreetParking:<lot id>`.
    pub id: String,
    /// Always `OffStreetParking`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Lot name from the registry.
    pub name: String,
    /// Capacity, spaces.
    #[serde(rename = "totalSpotNumber")]
    pub total_spot_number: u32,
    /// Free spaces: `round(capacity × (1 − occupancy))`, clamped to 0..=capacity.
    #[serde(rename = "availableSpotNumber")]
    pub available_spot_number: u32,
    /// Occupancy ratio 0..=1 (mean over the window).
    pub occupancy: f64,
    /// End of the window the values describe, RFC 3339 UTC.
    #[serde(rename = "dateModified")]
    pub date_modified: String,
}

/// The `before_ms` to pass to `latest_aggregates` so every window ended at least `delay_ms` before
/// `now_ms`: windows must start before `now − delay − window`.
pub fn cutoff_ms(now_ms: i64, delay_ms: i64, window_ms: i64) -> i64 {
    now_ms - delay_ms - window_ms + 1
}

/// Shapes lot aggregates into the open product (lots unknown to the registry, rows without the
/// occupancy metric and non-finite values are left out), ordered by lot id.
pub fn shape(rows: &[WindowAggregate], registry: &Registry) -> Vec<OffStreetParking> {
    let mut out: Vec<OffStreetParking> = rows
        .iter()
        .filter(|r| r.scope == "lot")
        .filter_map(|r| {
            let lot = registry.lot(&r.id)?;
            let occ = *r.metrics.get(OCCUPANCY_METRIC)?;
            if !occ.is_finite() {
                return None;
            }
            let occ = occ.clamp(0.0, 1.0);
            let cap = lot.capacity;
            let avail = ((cap as f64) * (1.0 - occ)).round().clamp(0.0, cap as f64) as u32;
            Some(OffStreetParking {
                id: format!("urn:ngsi-ld:OffStreetParking:{}", lot.id),
                kind: "OffStreetParking".into(),
                name: lot.name.clone(),
                total_spot_number: cap,
                available_spot_number: avail,
                occupancy: occ,
                date_modified: crate::timefmt::rfc3339_ms(r.start_ms + r.window_ms),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
