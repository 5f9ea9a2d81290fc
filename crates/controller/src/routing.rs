//! Building the gateway's routing table from what the store says: Knative's
//! routes (Routes and their resolved traffic; each revision is its
//! long-lived backend, whose instances [`crate::endpoints`] keeps up to date
//! from the runtime) and Istio's part ([`crate::istio`]).

use std::collections::HashSet;
use std::sync::Arc;

use skiff_api::config::ClusterConfig;
use skiff_api::config::features::TAG_HEADER_BASED_ROUTING;
use skiff_api::serving::Route;
use skiff_proxy::istio::cluster_state::ClusterStates;
use skiff_proxy::request_metrics::{Destination, RequestMetrics};
use skiff_proxy::{Backends, HostRoute, RoutingTable, TableBuilder, Target};
use skiff_runtime::RevisionKey;

use crate::gateway_listeners::Layout;
use crate::istio;
use crate::network;
use crate::traffic;

/// What a rebuild produces.
pub struct Snapshot {
    pub table: RoutingTable,
    /// Revisions some route or cluster sends traffic to.
    pub routed: HashSet<RevisionKey>,
    pub problems: Vec<String>,
}

/// The table, and the revisions it routes to.
pub fn build(
    version: u64,
    inp: &istio::Inputs<'_>,
    layouts: &[Layout],
    backends: &Backends,
    states: &mut ClusterStates,
    metrics: &RequestMetrics,
) -> Snapshot {
    let mut b = TableBuilder::new(version);
    let mut routed = HashSet::new();
    knative(
        &mut b,
        &mut routed,
        inp.routes,
        backends,
        inp.config,
        metrics,
    );
    let mut built = istio::build(inp, layouts, backends, states, metrics);
    istio::authorize_revisions(inp, backends, &mut built.problems);
    routed.extend(built.routed);
    b.istio(built.istio);
    Snapshot {
        table: b.build(),
        routed,
        problems: built.problems,
    }
}

fn knative(
    b: &mut TableBuilder,
    routed: &mut HashSet<RevisionKey>,
    routes: &[Route],
    backends: &Backends,
    config: &ClusterConfig,
    metrics: &RequestMetrics,
) {
    for route in routes {
        let Some(status) = &route.status else {
            continue;
        };
        if status.traffic.is_empty() {
            continue;
        }
        let ns = &route.metadata.namespace;
        let tag_header_routing = config.features.enabled(TAG_HEADER_BASED_ROUTING);
        let mut tag_routes: Vec<(String, Arc<HostRoute>)> = Vec::new();
        // Tags first: with tag header routing the main route refers to them.
        let mut groups = traffic::groups_of(&status.traffic);
        groups.sort_by_key(|g| g.tag.is_none());
        for group in groups {
            let hosts = match network::group_hosts(config, &route.metadata, group.tag.as_deref()) {
                Ok(h) => h,
                Err(e) => {
                    // The Route's status says ErrorConfig; nothing to serve.
                    tracing::debug!(route = %route.metadata.name, "no hosts: {e}");
                    continue;
                }
            };
            let service = hosts.local.first().cloned().unwrap_or_default();
            let targets: Vec<Target> = group
                .targets
                .iter()
                .map(|(rev, pct)| {
                    routed.insert(RevisionKey::new(ns, rev));
                    Target {
                        backend: backends.get(&format!("{ns}/{rev}")),
                        percent: *pct,
                        counters: metrics.get(Destination {
                            service: service.clone(),
                            revision: rev.clone(),
                            namespace: ns.clone(),
                            canonical_service: route.metadata.name.clone(),
                        }),
                    }
                })
                .collect();
            if targets.is_empty() {
                continue;
            }
            let name = match &group.tag {
                Some(t) => format!("{ns}/{} (tag {t})", route.metadata.name),
                None => format!("{ns}/{}", route.metadata.name),
            };
            let mut host_route = HostRoute::new(&name, &targets);
            if tag_header_routing {
                host_route = match &group.tag {
                    Some(t) => host_route.marked_with_tag(t),
                    None => host_route.with_tag_routes(
                        tag_routes
                            .iter()
                            .map(|(t, r)| (t.as_str(), r.clone()))
                            .collect(),
                    ),
                };
            }
            let host_route = Arc::new(host_route);
            // External hosts only on the external listener; every route's
            // cluster-local names only on the local one.
            if let Some(ext) = &hosts.external {
                b.insert(std::slice::from_ref(ext), false, &host_route);
            }
            b.insert(&hosts.local, true, &host_route);
            if let Some(t) = group.tag {
                tag_routes.push((t, host_route));
            }
        }
    }
}
