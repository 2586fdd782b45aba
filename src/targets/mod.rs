//! Targets as values: each watched container is a [`TargetKey`] and a unit
//! of its own (collector, analyzer, alert plan, Go scrape schedule) running
//! on its own thread ([`runner`]) and publishing into its [`slot::Slot`].
//! Discovery fills the daemon's map of them: one fixed target in the
//! sidecar, every container of the node in node mode ([`node`]).

pub mod names;
pub mod node;
pub mod registry;
pub mod runner;
pub mod slot;

pub use crate::key::TargetKey;
