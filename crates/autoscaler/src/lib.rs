//! The Knative Pod Autoscaler (KPA), as a pure library: nothing here reads a
//! clock, spawns a task or takes a lock. Time is passed in (see [`Time`]), so
//! every decision can be replayed (`skiff autoscaler decide`) and simulated
//! (`skiff autoscaler simulate`).
//!
//! The behaviour follows Knative Serving (docs kpa.md):
//! - [`buckets`]: 1-second metric buckets with linear or weighted averaging;
//! - [`metrics`]: the per-revision collection of stable/panic windows;
//! - [`decider`]: `Scale()`, panic mode, rate limits, scale-down delay, EBC;
//! - [`spec`]: resolving a revision's settings from config-autoscaler and
//!   its annotations;
//! - [`scaler`]: the PodAutoscaler reconciler's bounds, initial scale,
//!   scale-to-zero and Active condition.

pub mod buckets;
pub mod decider;
pub mod duration;
pub mod max_window;
pub mod metrics;
pub mod replay;
pub mod scaler;
pub mod simulate;
pub mod spec;
mod time;

pub use decider::{Autoscaler, DeciderSpec, ScaleResult};
pub use metrics::{Collection, MetricError, Stat};
pub use scaler::{Active, Mode, PodAutoscaler, Reachability};
pub use spec::{RevisionSettings, ScalingMetric};
pub use time::Time;
