//! What the gateway is doing now, for `skiff proxy-config` (Skiff's
//! `istioctl proxy-config`): its routes, clusters, endpoints and listeners
//! as serializable views of the current routing table, the revisions'
//! backends and the running listeners, with live counters — endpoint
//! health and outlier ejections, circuit-breaker occupancy and overflows,
//! requests in flight and queued.
//!
//! Building a view only loads atomics and `ArcSwap` pointers (and lists
//! the backends, which the request path never does), so it never slows a
//! request. Each counter is read on its own: a view is current, not one
//! atomic snapshot of everything.
//!
//! In the views a limit of `None` means unlimited, durations are in
//! milliseconds and times are RFC 3339.

mod clusters;
mod endpoints;
mod listeners;
mod routes;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::istio::circuit_breaker::UNLIMITED;
use crate::istio::time::MonoTime;

pub use clusters::{
    CircuitBreakersView, ClusterKind, ClusterStatsView, ClusterView, ClustersView,
    ConnectionPoolView, OutlierDetectionView, RevisionView, RevisionWeight, clusters,
};
pub use endpoints::{EndpointStatus, EndpointView, EndpointsView, endpoints};
pub use listeners::{ListenerView, ListenersView, ServerView, listeners};
pub use routes::{
    ActionView, DestinationView, FaultView, KnativeRouteView, MatchView, MirrorView, RetryView,
    RevisionShare, RewriteView, RoutesView, RuleView, StringMatchView, VirtualHostView, Visibility,
    routes,
};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn limit(v: u32) -> Option<u32> {
    (v != UNLIMITED).then_some(v)
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::Relaxed)
}

/// Available to new requests at `now`: not leaving, not ejected. Reads the
/// ejection without ending an expired one (that is the balancer's job).
fn takes_requests(e: &Endpoint, now: MonoTime) -> bool {
    !(e.is_retired() || e.is_draining() || ejected_until(e, now).is_some())
}

fn ejected_until(e: &Endpoint, now: MonoTime) -> Option<MonoTime> {
    e.outlier.ejected_until().filter(|until| *until > now)
}
