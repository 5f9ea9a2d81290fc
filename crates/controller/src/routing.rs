//! Building the gateway's routing table from what the store says (Routes and
//! their resolved traffic). Each revision is its long-lived backend, whose
//! instances [`crate::endpoints`] keeps up to date from the runtime.

use std::collections::HashSet;

use skiff_api::serving::Route;
use skiff_proxy::{Backends, RoutingTable, TableBuilder};
use skiff_runtime::RevisionKey;

use skiff_api::config::ClusterConfig;

use crate::network;
use crate::traffic;

/// The table, and the revisions it routes to.
pub fn build(
    version: u64,
    routes: &[Route],
    backends: &Backends,
    config: &ClusterConfig,
) -> (RoutingTable, HashSet<RevisionKey>) {
    let mut b = TableBuilder::new(version);
    let mut routed = HashSet::new();
    for route in routes {
        let Some(status) = &route.status else {
            continue;
        };
        if status.traffic.is_empty() {
            continue;
        }
        let ns = &route.metadata.namespace;
        for group in traffic::groups_of(&status.traffic) {
            let hosts = match network::group_hosts(config, &route.metadata, group.tag.as_deref()) {
                Ok(h) => h,
                Err(e) => {
                    // The Route's status says ErrorConfig; nothing to serve.
                    tracing::debug!(route = %route.metadata.name, "no hosts: {e}");
                    continue;
                }
            };
            let targets: Vec<_> = group
                .targets
                .iter()
                .map(|(rev, pct)| {
                    routed.insert(RevisionKey::new(ns, rev));
                    (backends.get(&format!("{ns}/{rev}")), *pct)
                })
                .collect();
            let name = match &group.tag {
                Some(t) => format!("{ns}/{} (tag {t})", route.metadata.name),
                None => format!("{ns}/{}", route.metadata.name),
            };
            // External hosts only on the external listener; every route's
            // cluster-local names only on the local one.
            if let Some(ext) = &hosts.external {
                b.route(&name, std::slice::from_ref(ext), false, &targets);
            }
            b.route(&name, &hosts.local, true, &targets);
        }
    }
    (b.build(), routed)
}
