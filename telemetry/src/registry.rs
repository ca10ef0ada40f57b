//! The site registry: car-park lots (capacity, position), grid feeders (nominal voltage), devices (kind,
//! site, radio address, gateway, expected report interval). Loaded from TOML and validated at load.
//!
//! ```toml
//! [[lot]]
//! id = "BHMBCCMKT01"
//! name = "Bull Ring"
//! district = "central"
//! capacity = 577
//! x = 0.42   # schematic position, 0..1 from the left
//! y = 0.55   # schematic position, 0..1 from the top
//!
//! [[feeder]]
//! id = "sceaux-f1"
//! name = "Sceaux feeder 1"
//! district = "south"
//! nominal_v = 230.0
//! nominal_hz = 50.0
//! x = 0.2
//! y = 0.8
//!
//! [[device]]
//! id = "BHMBCCMKT01-b000"
//! kind = "parking"
//! site = "BHMBCCMKT01"
//! gateway = "gw-central"
//! address = 1
//! report_interval_s = 3600
//! ```

use crate::ids::{DeviceId, DeviceKind, DistrictId, SiteId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A car park.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lot {
    /// Lot id (a [`SiteId`]).
    pub id: SiteId,
    /// Display name.
    pub name: String,
    /// District.
    pub district: DistrictId,
    /// Number of spaces.
    pub capacity: u32,
    /// Schematic map position, 0..=1 from the left.
    #[serde(default)]
    pub x: f32,
    /// Schematic map position, 0..=1 from the top.
    #[serde(default)]
    pub y: f32,
}

/// A grid feeder, street cabinet or transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feeder {
    /// Feeder id (a [`SiteId`]).
    pub id: SiteId,
    /// Display name.
    pub name: String,
    /// District.
    pub district: DistrictId,
    /// Nominal phase-to-neutral voltage, V (EN 50160: 230 V).
    #[serde(default = "default_nominal_v")]
    pub nominal_v: f32,
    /// Nominal frequency, Hz.
    #[serde(default = "default_nominal_hz")]
    pub nominal_hz: f32,
    /// Schematic map position, 0..=1 from the left.
    #[serde(default)]
    pub x: f32,
    /// Schematic map position, 0..=1 from the top.
    #[serde(default)]
    pub y: f32,
}

fn default_nominal_v() -> f32 {
    230.0
}
fn default_nominal_hz() -> f32 {
    50.0
}

/// A device in the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Device id.
    pub id: DeviceId,
    /// What it measures; must match its site (lot → parking, feeder → grid).
    pub kind: DeviceKind,
    /// Its lot or feeder.
    pub site: SiteId,
    /// Gateway it reports through.
    pub gateway: String,
    /// Short radio address in uplink frames, unique per gateway.
    pub address: u16,
    /// LoRaWAN DevEUI (16 hex digits) when it reports through a LoRaWAN network server.
    #[serde(default)]
    pub dev_eui: Option<String>,
    /// Expected interval between periodic reports, s (heartbeat or summary); drives completeness.
    pub report_interval_s: u32,
}

/// The whole registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Car parks.
    #[serde(default, rename = "lot")]
    pub lots: Vec<Lot>,
    /// Feeders.
    #[serde(default, rename = "feeder")]
    pub feeders: Vec<Feeder>,
    /// Devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
}

/// Why a registry does not load.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (the message names the field).
    #[error("parsing registry: {0}")]
    Parse(#[from] toml::de::Error),
    /// A consistency rule is broken (the message names the entry).
    #[error("invalid registry: {0}")]
    Invalid(String),
}

impl Registry {
    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// [`RegistryError::Parse`] or [`RegistryError::Invalid`].
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let r: Registry = toml::from_str(text)?;
        r.validate()?;
        Ok(r)
    }

    /// Reads, parses and validates a TOML file.
    ///
    /// # Errors
    /// As [`Registry::from_toml`], plus [`RegistryError::Io`].
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Serialises to TOML (the simulator writes its fleet this way).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks unique ids, unique `(gateway, address)`, devices on existing sites of their kind,
    /// capacities above zero and positive nominal values.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] naming the first offending entry.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |m: String| Err(RegistryError::Invalid(m));
        let mut sites = HashSet::new();
        for district in self
            .lots
            .iter()
            .map(|l| &l.district)
            .chain(self.feeders.iter().map(|f| &f.district))
        {
            if district.as_str() == "gateway" {
                return bad("district `gateway` is reserved for gateway topics".into());
            }
        }
        for l in &self.lots {
            if !sites.insert(l.id.as_str()) {
                return bad(format!("lot {}: duplicate site id", l.id));
            }
            if l.capacity == 0 {
                return bad(format!("lot {}: capacity must be > 0", l.id));
            }
        }
        for f in &self.feeders {
            if !sites.insert(f.id.as_str()) {
                return bad(format!("feeder {}: duplicate site id", f.id));
            }
            if !(f.nominal_v > 0.0 && f.nominal_hz > 0.0) {
                return bad(format!(
                    "feeder {}: nominal_v and nominal_hz must be > 0",
                    f.id
                ));
            }
        }
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for d in &self.devices {
            if crate::ids::check_id(&d.gateway).is_err() {
                return bad(format!(
                    "device {}: gateway {:?} is not a valid identifier",
                    d.id, d.gateway
                ));
            }
            if !ids.insert(d.id.as_str()) {
                return bad(format!("device {}: duplicate id", d.id));
            }
            if !addrs.insert((d.gateway.as_str(), d.address)) {
                return bad(format!(
                    "device {}: address {} already used on gateway {}",
                    d.id, d.address, d.gateway
                ));
            }
            let ok = match d.kind {
                DeviceKind::Parking => self.lot(d.site.as_str()).is_some(),
                DeviceKind::Grid => self.feeder(d.site.as_str()).is_some(),
            };
            if !ok {
                return bad(format!("device {}: no {} site {}", d.id, d.kind, d.site));
            }
            if d.report_interval_s == 0 {
                return bad(format!("device {}: report_interval_s must be > 0", d.id));
            }
        }
        Ok(())
    }

    /// The lot with this id.
    pub fn lot(&self, id: &str) -> Option<&Lot> {
        self.lots.iter().find(|l| l.id.as_str() == id)
    }

    /// The feeder with this id.
    pub fn feeder(&self, id: &str) -> Option<&Feeder> {
        self.feeders.iter().find(|f| f.id.as_str() == id)
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id.as_str() == id)
    }

    /// District of a site (lot or feeder).
    pub fn site_district(&self, site: &str) -> Option<&DistrictId> {
        self.lot(site)
            .map(|l| &l.district)
            .or_else(|| self.feeder(site).map(|f| &f.district))
    }

    /// An index from `(gateway, address)` to device, for gateways decoding frames.
    pub fn address_index(&self) -> HashMap<(String, u16), &Device> {
        self.devices
            .iter()
            .map(|d| ((d.gateway.clone(), d.address), d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
[[lot]]
id = "L1"
name = "Lot one"
district = "central"
capacity = 10
[[feeder]]
id = "F1"
name = "Feeder one"
district = "south"
[[device]]
id = "L1-b0"
kind = "parking"
site = "L1"
gateway = "gw"
address = 1
report_interval_s = 3600
"#;

    #[test]
    fn loads_and_validates() {
        let r = Registry::from_toml(DOC).unwrap();
        assert_eq!(r.feeder("F1").unwrap().nominal_v, 230.0);
        assert_eq!(r.site_district("L1").unwrap().as_str(), "central");
        assert_eq!(Registry::from_toml(&r.to_toml()).unwrap(), r);
        let wrong_kind = DOC.replace("kind = \"parking\"", "kind = \"grid\"");
        assert!(
            matches!(Registry::from_toml(&wrong_kind), Err(RegistryError::Invalid(m)) if m.contains("no grid site L1"))
        );
        let bad_gw = DOC.replace("gateway = \"gw\"", "gateway = \"g/w\"");
        assert!(
            matches!(Registry::from_toml(&bad_gw), Err(RegistryError::Invalid(m)) if m.contains("not a valid identifier"))
        );
        let reserved = DOC.replace("district = \"central\"", "district = \"gateway\"");
        assert!(
            matches!(Registry::from_toml(&reserved), Err(RegistryError::Invalid(m)) if m.contains("reserved"))
        );
        let unknown = DOC.replace("capacity = 10", "capacity = 10\ncolour = 1");
        assert!(
            matches!(Registry::from_toml(&unknown), Err(RegistryError::Parse(e)) if e.to_string().contains("colour"))
        );
    }
}
