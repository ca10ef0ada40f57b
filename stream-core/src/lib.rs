//! stream-core (placeholder; see the crate description).
