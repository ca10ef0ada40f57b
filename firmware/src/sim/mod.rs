//! Register-level simulations of the sensor parts (feature `sim`), `no_std` like the rest.
//!
//! They implement the embedded-hal traits the drivers use, so the fleet simulator runs this exact
//! firmware against replayed physical values: set the physical quantity (field in µT, voltage in V, …),
//! the simulation turns it into register contents with the part's data-sheet scaling.

mod ade7953;
mod lis3mdl;

pub use ade7953::SimAde7953;
pub use lis3mdl::SimLis3mdl;
