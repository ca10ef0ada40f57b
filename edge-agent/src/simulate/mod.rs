//! Fleet simulator (work in progress).
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Simulator configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {}

/// What a simulator run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {}

/// Simulator failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {}

/// Runs the simulator.
///
/// # Errors
/// None yet.
pub async fn run_simulator(
    _cfg: SimConfig,
    _shutdown: CancellationToken,
) -> Result<SimReport, SimError> {
    Ok(SimReport {})
}
