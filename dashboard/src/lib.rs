//! dashboard (placeholder; see the crate description).
