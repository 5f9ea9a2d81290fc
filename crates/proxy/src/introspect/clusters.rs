//! `proxy-config clusters`: revisions and VirtualService destinations,
//! their policies and live counters.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::activator::{Backend, Backends};
use crate::cluster::Cluster;
use crate::endpoint::Endpoint;
use crate::istio::circuit_breaker::CircuitBreaker;
use crate::istio::lb::{HashKey, LbKind};
use crate::istio::outlier::OutlierDetector;
use crate::istio::policy::ClusterPolicy;
use crate::istio::time::MonoTime;
use crate::table::RoutingTable;

use super::{ejected_until, limit, load, millis, takes_requests};

/// `proxy-config clusters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClustersView {
    pub version: u64,
    /// Revisions first, then VirtualService destinations, by name.
    pub clusters: Vec<ClusterView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// A revision's own instances, as Knative's routes use them.
    Revision,
    /// A VirtualService destination (host, subset, port) under its
    /// DestinationRule's policy.
    Destination,
}

/// One cluster, with its policy and live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// A revision's `namespace/name`, or Envoy's
    /// `outbound|<port>|<subset>|<host>`.
    pub name: String,
    pub kind: ClusterKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Member revisions and their weights.
    pub revisions: Vec<RevisionWeight>,
    /// Ready instances.
    pub endpoints: usize,
    /// Ready instances that are neither draining nor ejected.
    pub healthy_endpoints: usize,
    /// Requests in flight at the instances.
    pub in_flight: usize,
    /// Requests waiting in the activator for a free instance.
    pub queued: usize,
    /// The load-balancing algorithm (Envoy's names).
    pub lb: String,
    /// What a consistent-hash balancer hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// DestinationRule-derived (destination clusters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakersView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetectionView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ClusterStatsView>,
    /// A revision cluster's Knative settings and activator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionWeight {
    pub revision: String,
    pub weight: u32,
}

/// A DestinationRule's connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionPoolView {
    pub connect_timeout_ms: u64,
    /// Pooled connections idle this long are not reused.
    pub idle_timeout_ms: u64,
    pub max_requests_per_connection: Option<u32>,
}

/// Limits and what holds them now (Envoy's `circuit_breakers.default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakersView {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    /// Connections in use.
    pub active_connections: u32,
    /// Requests waiting for a connection.
    pub pending_requests: u32,
    pub active_requests: u32,
    pub active_retries: u32,
    /// Times a request found every allowed connection in use.
    pub cx_overflow: u64,
    /// Requests refused (503 `UO`) at `http1MaxPendingRequests` or
    /// `http2MaxRequests`.
    pub rq_pending_overflow: u64,
    /// Retries refused at `maxRetries`.
    pub rq_retry_overflow: u64,
    /// Requests that waited for a connection.
    pub rq_pending_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierDetectionView {
    /// Errors in a row that eject (`None`: 5xx never eject).
    pub consecutive_5xx_errors: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub interval_ms: u64,
    pub base_ejection_time_ms: u64,
    pub max_ejection_percent: u32,
    /// Hosts ejected now.
    pub ejections_active: usize,
    pub ejections_enforced_total: u64,
    /// Ejections skipped because of `maxEjectionPercent`.
    pub ejections_overflow: u64,
}

/// The router's counters for the cluster (Envoy's `upstream_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatsView {
    pub upstream_rq_total: u64,
    pub upstream_rq_retry: u64,
    pub upstream_rq_retry_success: u64,
    pub upstream_rq_retry_limit_exceeded: u64,
    pub upstream_rq_timeout: u64,
    pub upstream_rq_per_try_timeout: u64,
    pub upstream_rq_rx_reset: u64,
    pub upstream_cx_connect_fail: u64,
    pub upstream_cx_none_healthy: u64,
}

/// A revision as Knative sees it, and its activator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionView {
    /// Requests per instance at once (`None`: unlimited).
    pub container_concurrency: Option<usize>,
    pub timeout_seconds: u64,
    /// Every request goes through the activator (the autoscaler's proxy
    /// mode).
    pub activator_in_path: bool,
    /// Requests that waited in the activator's queue, ever.
    pub activator_queued_total: u64,
    /// Refused with 503: the queue was full, the wait timed out, or the
    /// revision could not start.
    pub activator_overflow: u64,
    pub activator_timed_out: u64,
    pub activator_failed: u64,
}

/// Clusters: every revision's backend, then the VirtualService
/// destinations of `table`.
pub fn clusters(table: &RoutingTable, backends: &Backends, now: MonoTime) -> ClustersView {
    let mut out: Vec<ClusterView> = backends
        .all()
        .iter()
        .map(|b| revision_cluster(b, now))
        .collect();
    let mut destinations: Vec<ClusterView> = table
        .istio
        .clusters
        .iter()
        .map(|c| destination_cluster(c, now))
        .collect();
    destinations.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(destinations);
    ClustersView {
        version: table.version,
        clusters: out,
    }
}

fn revision_cluster(b: &Backend, now: MonoTime) -> ClusterView {
    let eps = b.endpoints();
    let cc = b.container_concurrency();
    ClusterView {
        name: b.revision.to_string(),
        kind: ClusterKind::Revision,
        host: None,
        subset: None,
        revisions: vec![RevisionWeight {
            revision: b.revision.to_string(),
            weight: 100,
        }],
        endpoints: eps.len(),
        healthy_endpoints: eps.iter().filter(|e| takes_requests(e, now)).count(),
        in_flight: eps.iter().map(|e| e.in_flight()).sum(),
        queued: b.queued(),
        lb: b.balancing().to_string(),
        hash_key: None,
        connection_pool: None,
        circuit_breakers: None,
        outlier_detection: None,
        stats: None,
        revision: Some(RevisionView {
            container_concurrency: (cc != 0).then_some(cc),
            timeout_seconds: b.timeout().as_secs(),
            activator_in_path: b.in_proxy_mode(),
            activator_queued_total: b.counters.queued.get(),
            activator_overflow: b.counters.overflow.get(),
            activator_timed_out: b.counters.timed_out.get(),
            activator_failed: b.counters.failed.get(),
        }),
    }
}

fn breaker_view(b: &CircuitBreaker) -> CircuitBreakersView {
    let s = b.snapshot();
    let l = b.limits;
    CircuitBreakersView {
        max_connections: limit(l.max_connections),
        max_pending_requests: limit(l.max_pending_requests),
        max_requests: limit(l.max_requests),
        max_retries: limit(l.max_retries),
        active_connections: s.cx_active,
        pending_requests: s.rq_pending_active,
        active_requests: s.rq_active,
        active_retries: s.rq_retry_active,
        cx_overflow: load(&b.stats.upstream_cx_overflow),
        rq_pending_overflow: load(&b.stats.upstream_rq_pending_overflow),
        rq_retry_overflow: load(&b.stats.upstream_rq_retry_overflow),
        rq_pending_total: load(&b.stats.upstream_rq_pending_total),
    }
}

fn outlier_view(d: &OutlierDetector, eps: &[Arc<Endpoint>], now: MonoTime) -> OutlierDetectionView {
    let c = &d.config;
    OutlierDetectionView {
        consecutive_5xx_errors: (c.enforce_5xx && c.consecutive_5xx > 0)
            .then_some(c.consecutive_5xx),
        consecutive_gateway_errors: c.consecutive_gateway,
        interval_ms: millis(c.interval),
        base_ejection_time_ms: millis(c.base_ejection),
        max_ejection_percent: c.max_ejection_percent,
        // The cluster's instances now (the detector's list is the
        // snapshot's), read without ending expired ejections.
        ejections_active: eps
            .iter()
            .filter(|e| ejected_until(e, now).is_some())
            .count(),
        ejections_enforced_total: load(&d.stats.ejections_enforced_total),
        ejections_overflow: load(&d.stats.ejections_overflow),
    }
}

fn pool_view(p: &ClusterPolicy, c: &Cluster) -> ConnectionPoolView {
    ConnectionPoolView {
        connect_timeout_ms: millis(p.connect_timeout),
        idle_timeout_ms: millis(c.opts.idle_timeout),
        max_requests_per_connection: p.max_requests_per_connection,
    }
}

fn destination_cluster(c: &Cluster, now: MonoTime) -> ClusterView {
    let eps: Vec<Arc<Endpoint>> = c
        .members
        .iter()
        .flat_map(|m| m.backend.endpoints().to_vec())
        .collect();
    let k = &c.counters;
    ClusterView {
        name: c.name.to_string(),
        kind: ClusterKind::Destination,
        host: Some(c.host.to_string()),
        subset: c.subset.as_deref().map(str::to_string),
        revisions: c
            .members
            .iter()
            .map(|m| RevisionWeight {
                revision: m.backend.revision.to_string(),
                weight: m.weight,
            })
            .collect(),
        endpoints: eps.len(),
        healthy_endpoints: eps.iter().filter(|e| takes_requests(e, now)).count(),
        in_flight: eps.iter().map(|e| e.in_flight()).sum(),
        queued: c.members.iter().map(|m| m.backend.queued()).sum(),
        lb: lb_name(&c.policy.lb.kind).to_string(),
        hash_key: c.policy.lb.hash_key.as_ref().map(hash_key),
        connection_pool: Some(pool_view(&c.policy, c)),
        circuit_breakers: Some(breaker_view(&c.breaker)),
        outlier_detection: c.outlier.as_ref().map(|d| outlier_view(d, &eps, now)),
        stats: Some(ClusterStatsView {
            upstream_rq_total: k.upstream_rq_total.get(),
            upstream_rq_retry: load(&k.upstream_rq_retry),
            upstream_rq_retry_success: load(&k.upstream_rq_retry_success),
            upstream_rq_retry_limit_exceeded: load(&k.upstream_rq_retry_limit_exceeded),
            upstream_rq_timeout: load(&k.upstream_rq_timeout),
            upstream_rq_per_try_timeout: load(&k.upstream_rq_per_try_timeout),
            upstream_rq_rx_reset: load(&k.upstream_rq_rx_reset),
            upstream_cx_connect_fail: load(&k.upstream_cx_connect_fail),
            upstream_cx_none_healthy: load(&k.upstream_cx_none_healthy),
        }),
        revision: None,
    }
}

fn lb_name(kind: &LbKind) -> &'static str {
    match kind {
        LbKind::LeastRequest => "LEAST_REQUEST",
        LbKind::RoundRobin => "ROUND_ROBIN",
        LbKind::Random => "RANDOM",
        LbKind::RingHash { .. } => "RING_HASH",
        LbKind::Maglev { .. } => "MAGLEV",
        LbKind::Passthrough => "PASSTHROUGH",
    }
}

pub(super) fn hash_key(k: &HashKey) -> String {
    match k {
        HashKey::Header(h) => format!("header {h}"),
        HashKey::Cookie { name, .. } => format!("cookie {name}"),
        HashKey::SourceIp => "source ip".to_string(),
        HashKey::QueryParameter(p) => format!("query parameter {p}"),
    }
}
