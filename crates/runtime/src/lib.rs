//! Runtimes run revision instances. The controller says how many instances of
//! which revision it wants ([`Runtime::apply`]); the runtime starts, probes,
//! restarts and stops them, and publishes what is running ([`RuntimeState`])
//! for the controller (status) and the gateway (endpoints).
//!
//! [`process::ProcessRuntime`] is the one-machine default: each instance is a
//! local process with its own port.

pub mod image_map;
pub mod probe;
pub mod process;
mod state;
pub mod workload;

pub use state::{
    Failure, InstanceId, InstanceState, Phase, RevisionKey, RevisionState, RuntimeState,
};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use skiff_api::FieldError;
use skiff_api::serving::{Revision, RevisionSpec};
use tokio::sync::watch;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Called before an instance is stopped: resolves once the instance has left
/// every endpoint set and has nothing in flight, so stopping it loses no
/// request. The default drains nothing.
pub trait Drainer: Send + Sync + 'static {
    fn drain(&self, revision: &RevisionKey, instance: InstanceId) -> BoxFuture<()>;
}

/// A drainer for runtimes whose instances get no traffic (tests, tools).
pub struct NoDrain;

impl Drainer for NoDrain {
    fn drain(&self, _: &RevisionKey, _: InstanceId) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

pub trait Runtime: Send + Sync + 'static {
    /// Problems that would stop this runtime from running `spec` (checked at
    /// admission so that `apply` refuses what cannot run). Paths are relative
    /// to the revision spec.
    fn check(&self, spec: &RevisionSpec) -> FieldError;

    /// Run `scale` instances of `revision`. Idempotent; a changed scale starts
    /// or drains instances.
    fn apply(&self, revision: &Revision, scale: u32);

    /// Stop every instance of the revision (draining first) and forget it.
    fn remove(&self, revision: &RevisionKey);

    /// What is running now; changes whenever an instance changes phase.
    fn subscribe(&self) -> watch::Receiver<Arc<RuntimeState>>;

    /// Stop every instance (SIGTERM, then SIGKILL after its grace period) and
    /// resolve when none is left.
    fn shutdown(&self) -> BoxFuture<()>;
}
