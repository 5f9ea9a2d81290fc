//! Building the gateway's routing table from what the store says (Routes and
//! their resolved traffic, Revisions' timeouts) and what the runtime runs
//! (ready instances).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use skiff_api::serving::{Revision, Route};
use skiff_proxy::{EndpointKey, EndpointRegistry, RoutingTable, TableBuilder};
use skiff_runtime::{Phase, RuntimeState};

use skiff_api::config::ClusterConfig;

use crate::network;
use crate::traffic;

pub fn build(
    version: u64,
    routes: &[Route],
    revisions: &[Revision],
    runtime: &RuntimeState,
    registry: &mut EndpointRegistry,
    config: &ClusterConfig,
) -> RoutingTable {
    let mut b = TableBuilder::new(version);
    let timeouts: HashMap<String, Duration> = revisions
        .iter()
        .map(|r| {
            let secs = r.spec.timeout_seconds.filter(|t| *t > 0).unwrap_or(300);
            (
                format!("{}/{}", r.metadata.namespace, r.metadata.name),
                Duration::from_secs(secs as u64),
            )
        })
        .collect();
    let mut live: HashSet<EndpointKey> = HashSet::new();
    for (key, state) in &runtime.revisions {
        let rev = format!("{}/{}", key.namespace, key.name);
        let mut endpoints = Vec::new();
        for inst in state.instances.iter().filter(|i| i.phase == Phase::Ready) {
            let ek = EndpointKey {
                revision: rev.clone(),
                instance: inst.id.0,
                addr: inst.addr,
            };
            endpoints.push(registry.get(&ek, inst.h2c));
            live.insert(ek);
        }
        // Draining instances keep their endpoint object (in-flight requests
        // finish on it) but get no new requests.
        for inst in state
            .instances
            .iter()
            .filter(|i| i.phase == Phase::Draining)
        {
            live.insert(EndpointKey {
                revision: rev.clone(),
                instance: inst.id.0,
                addr: inst.addr,
            });
        }
        let unavailable = state.failure.as_ref().map(|f| f.message.clone());
        let timeout = timeouts
            .get(&rev)
            .copied()
            .unwrap_or(Duration::from_secs(300));
        b.backend(&rev, endpoints, timeout, unavailable);
    }
    registry.retain(|k| live.contains(k));

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
            let targets: Vec<(String, u32)> = group
                .targets
                .iter()
                .map(|(rev, pct)| (format!("{ns}/{rev}"), *pct))
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
    b.build()
}
