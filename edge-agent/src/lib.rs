//! edge-agent (placeholder; see the crate description).
