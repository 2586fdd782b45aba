//! The one trait every alert output implements; [`super::deliver`] runs a
//! plan through all of them.

use super::plan::{AlertEvent, Plan};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An alert output. Each sink picks from the plan what concerns it (an
/// Alertmanager action, a risk change, a rise) and does nothing otherwise.
/// Errors are the sink's to log: one failing output never stops another.
pub trait Sink: Send + Sync {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()>;
}
