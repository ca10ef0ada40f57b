//! Every reason an input is refused, each with a stable name for counters, dead letters and dashboards.

use core::fmt;

/// Why a payload, reading, frame or line was refused. The [`as_str`](RejectReason::as_str) names are
/// stable: counters, dead-letter rows and dashboards group by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Payload larger than the byte limit (`too_large`).
    TooLarge,
    /// Not valid JSON (`malformed_json`).
    MalformedJson,
    /// The top level is not a JSON object (`not_object`).
    NotObject,
    /// Nesting deeper than the depth limit (`too_deep`).
    TooDeep,
    /// More readings in one message than the batch limit (`too_many_readings`).
    TooManyReadings,
    /// A message with no readings (`empty_batch`).
    EmptyBatch,
    /// A required field is absent (`missing_field`).
    MissingField,
    /// A field has the wrong JSON type (`wrong_type`).
    WrongType,
    /// A field the schema does not know (`unknown_field`).
    UnknownField,
    /// A measurement `type` the schema does not know (`unknown_type`).
    UnknownType,
    /// Payload version `v` not supported (`unsupported_version`).
    UnsupportedVersion,
    /// NaN or ±Infinity (as a bare token, or a number that overflows its type) (`non_finite`).
    NonFinite,
    /// A value outside its physical range (`out_of_range`).
    OutOfRange,
    /// An empty identifier or string (`empty_value`).
    EmptyValue,
    /// An identifier with a forbidden character or too long (`bad_identifier`).
    BadIdentifier,
    /// An identifier or tag value ending in a backslash (`trailing_backslash`).
    TrailingBackslash,
    /// Timestamp looks like seconds where milliseconds are required (`ts_seconds`).
    TsSeconds,
    /// Timestamp looks like microseconds (`ts_microseconds`).
    TsMicroseconds,
    /// Timestamp looks like nanoseconds (`ts_nanoseconds`).
    TsNanoseconds,
    /// Timestamp before 2000-01-01T00:00:00Z (`ts_before_2000`).
    TsBefore2000,
    /// Timestamp further in the future than the allowed clock skew (`ts_future`).
    TsFuture,
    /// The payload's device, kind or district disagrees with its topic (`topic_mismatch`).
    TopicMismatch,
    /// A topic outside the schema (`bad_topic`).
    BadTopic,
    /// A reading whose `(device, boot, seq)` was already accepted (`duplicate`).
    Duplicate,
    /// A reading later than the correction horizon (`too_late`).
    TooLate,
    /// Frame CRC mismatch (`bad_crc`).
    BadCrc,
    /// Frame malformed: bad version, type, length or COBS (`bad_frame`).
    BadFrame,
    /// Device address or EUI not in the registry (`unknown_device`).
    UnknownDevice,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 28] = [
        RejectReason::TooLarge,
        RejectReason::MalformedJson,
        RejectReason::NotObject,
        RejectReason::TooDeep,
        RejectReason::TooManyReadings,
        RejectReason::EmptyBatch,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::UnknownField,
        RejectReason::UnknownType,
        RejectReason::UnsupportedVersion,
        RejectReason::NonFinite,
        RejectReason::OutOfRange,
        RejectReason::EmptyValue,
        RejectReason::BadIdentifier,
        RejectReason::TrailingBackslash,
        RejectReason::TsSeconds,
        RejectReason::TsMicroseconds,
        RejectReason::TsNanoseconds,
        RejectReason::TsBefore2000,
        RejectReason::TsFuture,
        RejectReason::TopicMismatch,
        RejectReason::BadTopic,
        RejectReason::Duplicate,
        RejectReason::TooLate,
        RejectReason::BadCrc,
        RejectReason::BadFrame,
        RejectReason::UnknownDevice,
    ];

    /// The stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotObject => "not_object",
            RejectReason::TooDeep => "too_deep",
            RejectReason::TooManyReadings => "too_many_readings",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::NonFinite => "non_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::EmptyValue => "empty_value",
            RejectReason::BadIdentifier => "bad_identifier",
            RejectReason::TrailingBackslash => "trailing_backslash",
            RejectReason::TsSeconds => "ts_seconds",
            RejectReason::TsMicroseconds => "ts_microseconds",
            RejectReason::TsNanoseconds => "ts_nanoseconds",
            RejectReason::TsBefore2000 => "ts_before_2000",
            RejectReason::TsFuture => "ts_future",
            RejectReason::TopicMismatch => "topic_mismatch",
            RejectReason::BadTopic => "bad_topic",
            RejectReason::Duplicate => "duplicate",
            RejectReason::TooLate => "too_late",
            RejectReason::BadCrc => "bad_crc",
            RejectReason::BadFrame => "bad_frame",
            RejectReason::UnknownDevice => "unknown_device",
        }
    }

    /// Parses a stable name back.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, a) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(RejectReason::from_name(a.as_str()), Some(*a));
            for b in &RejectReason::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }
}
