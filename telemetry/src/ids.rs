//! Identifiers of devices, sites (car-park lots and grid feeders) and districts.
//!
//! Identifiers appear in MQTT topic levels and as InfluxDB tag values, so their alphabet is limited by
//! both: no `/`, `+`, `#` (MQTT 5.0 §4.7 wildcards and level separator), no control characters or
//! whitespace, not empty, and no trailing `\` (the line-protocol crate writes such a tag value in a form
//! its own parser rejects). Any other Unicode is allowed (`停车位-12` is a valid site id). At most
//! [`MAX_ID_BYTES`] bytes of UTF-8.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest identifier in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("identifier is empty")]
    Empty,
    /// Longer than [`MAX_ID_BYTES`].
    #[error("identifier longer than 64 bytes")]
    TooLong,
    /// Contains `/`, `+`, `#`, whitespace or a control character.
    #[error("identifier contains a character not allowed in a topic level")]
    BadChar,
    /// Ends with a backslash.
    #[error("identifier ends with a backslash")]
    TrailingBackslash,
}

/// Checks `s` against the identifier rules in the module docs.
///
/// # Errors
/// The first rule broken, as an [`IdError`].
pub fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong);
    }
    if s.chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
    {
        return Err(IdError::BadChar);
    }
    if s.ends_with('\\') {
        return Err(IdError::TrailingBackslash);
    }
    Ok(())
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(heapless::String<MAX_ID_BYTES>);

        impl $name {
            /// Validates and copies `s`.
            ///
            /// # Errors
            /// [`IdError`] when `s` breaks the identifier rules of this module.
            pub fn new(s: &str) -> Result<Self, IdError> {
                check_id(s)?;
                let mut out = heapless::String::new();
                out.push_str(s).map_err(|_| IdError::TooLong)?;
                Ok(Self(out))
            }

            /// Copies `s`, which the caller has already checked against the identifier rules
            /// ([`check_id`] returned `Ok`, or an equivalent check), so at most [`MAX_ID_BYTES`]
            /// bytes. Used by the JSON fast path, which checks while it reads.
            #[cfg(feature = "std")]
            pub(crate) fn from_checked(s: &str) -> Self {
                debug_assert!(check_id(s).is_ok());
                let mut out = heapless::String::new();
                // Cannot fail: a checked identifier fits.
                let _ = out.push_str(s);
                Self(out)
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdVisitor).and_then(|s: IdBuf| {
                    Self::new(s.0.as_str()).map_err(|e| serde::de::Error::custom(IdErrorMsg(e)))
                })
            }
        }
    };
}

/// Buffer used while deserializing an identifier (one byte longer than allowed, so "too long" is seen).
struct IdBuf(heapless::String<{ MAX_ID_BYTES + 1 }>);

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = IdBuf;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an identifier string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdBuf, E> {
        let mut s = heapless::String::new();
        if s.push_str(v).is_err() {
            return Err(E::custom(IdErrorMsg(IdError::TooLong)));
        }
        Ok(IdBuf(s))
    }
}

/// Formats an [`IdError`] with the reason prefix the JSON codec classifies by.
struct IdErrorMsg(IdError);

impl fmt::Display for IdErrorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.0 {
            IdError::Empty => crate::RejectReason::EmptyValue,
            IdError::TrailingBackslash => crate::RejectReason::TrailingBackslash,
            IdError::TooLong | IdError::BadChar => crate::RejectReason::BadIdentifier,
        };
        write!(f, "[{}] {}", reason.as_str(), self.0)
    }
}

ident_type!(
    /// A device's identifier, unique in the city (e.g. `BHMBCCMKT01-b007`, `feeder-3-m02`).
    DeviceId
);
ident_type!(
    /// A site: a car-park lot (parking devices) or a feeder / street cabinet (grid devices).
    SiteId
);
ident_type!(
    /// A district of the city (e.g. `central`), the first level below `citybrain/v1/` in topics.
    DistrictId
);

/// What a device measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A magnetometer bay sensor in a car park.
    Parking,
    /// A grid measurement device (household meter, feeder or transformer monitor).
    Grid,
}

impl DeviceKind {
    /// Stable lower-case name (`parking` / `grid`), as used in topics and tags.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Parking => "parking",
            DeviceKind::Grid => "grid",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parking" => Some(DeviceKind::Parking),
            "grid" => Some(DeviceKind::Grid),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_rules() {
        assert!(DeviceId::new("BHMBCCMKT01-b007").is_ok());
        assert!(SiteId::new("停车位-12").is_ok());
        assert_eq!(DeviceId::new(""), Err(IdError::Empty));
        assert_eq!(DeviceId::new("a/b"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("a+"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("#"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("a b"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("ab\\"), Err(IdError::TrailingBackslash));
        assert!(DeviceId::new("a\\b").is_ok());
        assert_eq!(DeviceId::new(&"x".repeat(65)), Err(IdError::TooLong));
        assert!(DeviceId::new(&"x".repeat(64)).is_ok());
    }
}
