//! `proxy-config endpoints`: every instance in every cluster it is in.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::activator::Backends;
use crate::cluster::Cluster;
use crate::endpoint::Endpoint;
use crate::istio::time::MonoTime;
use crate::table::RoutingTable;

use super::{ejected_until, millis};

/// `proxy-config endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointsView {
    pub version: u64,
    /// One entry per instance and cluster it is in, by cluster.
    pub endpoints: Vec<EndpointView>,
}

/// Whether an instance takes new requests (istioctl's STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndpointStatus {
    Healthy,
    /// Leaving: finishes what it has, gets nothing new.
    Draining,
    /// Gone: its process stopped.
    Unhealthy,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Healthy => "HEALTHY",
            EndpointStatus::Draining => "DRAINING",
            EndpointStatus::Unhealthy => "UNHEALTHY",
        }
    }
}

/// One instance in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub address: String,
    pub cluster: String,
    /// `namespace/name`.
    pub revision: String,
    pub instance: u64,
    pub status: EndpointStatus,
    /// Ejected by outlier detection now (ejections apply in every cluster
    /// the instance is in).
    pub ejected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection_remaining_ms: Option<u64>,
    /// Times ejected so far.
    pub ejections: u64,
    /// Errors in a row counted toward a 5xx / gateway-error ejection.
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    pub in_flight: usize,
    /// `containerConcurrency` (`None`: unlimited).
    pub capacity: Option<usize>,
    /// Requests sent to it, ever.
    pub requests: u64,
    /// Requests that failed there: a 5xx from the app, a failed connect, a
    /// reset or a timeout.
    pub errors: u64,
    pub h2c: bool,
}

/// Endpoints: every revision's instances under the revision, then under
/// each VirtualService destination they are in. `wall` is the wall-clock
/// time at `now` (for `ejected_until`).
pub fn endpoints(
    table: &RoutingTable,
    backends: &Backends,
    now: MonoTime,
    wall: SystemTime,
) -> EndpointsView {
    let mut out = Vec::new();
    for b in backends.all() {
        for e in b.endpoints().iter() {
            out.push(endpoint_view(e, &b.revision, now, wall));
        }
    }
    let mut clusters: Vec<&Arc<Cluster>> = table.istio.clusters.iter().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    for c in clusters {
        for m in c.members.iter() {
            for e in m.backend.endpoints().iter() {
                out.push(endpoint_view(e, &c.name, now, wall));
            }
        }
    }
    EndpointsView {
        version: table.version,
        endpoints: out,
    }
}

fn endpoint_view(e: &Endpoint, cluster: &str, now: MonoTime, wall: SystemTime) -> EndpointView {
    let status = if e.is_retired() {
        EndpointStatus::Unhealthy
    } else if e.is_draining() {
        EndpointStatus::Draining
    } else {
        EndpointStatus::Healthy
    };
    let remaining = ejected_until(e, now).map(|until| until.since(now));
    let (consecutive_5xx, consecutive_gateway_errors) = e.outlier.consecutive_errors();
    let capacity = e.capacity();
    EndpointView {
        address: e.addr.to_string(),
        cluster: cluster.to_string(),
        revision: e.revision.to_string(),
        instance: e.instance,
        status,
        ejected: remaining.is_some(),
        ejected_until: remaining.map(|r| skiff_api::meta::timestamp(wall + r)),
        ejection_remaining_ms: remaining.map(millis),
        ejections: e.outlier.ejections(),
        consecutive_5xx,
        consecutive_gateway_errors,
        in_flight: e.in_flight(),
        capacity: (capacity != 0).then_some(capacity),
        requests: e.requests(),
        errors: e.errors(),
        h2c: e.is_h2c(),
    }
}
