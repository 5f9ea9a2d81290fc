//! The routing table: an immutable snapshot built by the controller and
//! swapped in atomically. It has two parts:
//!
//! - Knative's: hosts to weighted revisions. A revision is its long-lived
//!   [`Backend`] (instances, queue, counters), shared by every snapshot
//!   that routes to it.
//! - Istio's: per listener, the virtual hosts of the VirtualServices bound
//!   to it (compiled rules), and the clusters their destinations resolve
//!   to. A host with a VirtualService on a listener is served by its rules;
//!   other hosts fall back to Knative's routes.
//!
//! Everything here is read without a lock; `skiff proxy-config` and the
//! metrics collector read the same structures (clusters with their live
//! members, breakers and outlier state).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::activator::Backend;
use crate::cluster::Cluster;
use crate::istio::authz::Authorizer;
use crate::istio::binding::HostIndex;
use crate::istio::route::HttpRoutes;
use crate::request_metrics::RequestCounters;
use crate::split::Split;

/// What a host routes to: revisions and their weights.
pub struct HostRoute {
    /// `namespace/route` (and tag), for error bodies and logs.
    pub name: Box<str>,
    split: Split,
    targets: Box<[Arc<Backend>]>,
    /// Each target's percent, as the route's traffic says (`proxy-config`).
    percents: Box<[u32]>,
    counters: Box<[Arc<RequestCounters>]>,
}

/// One revision a route sends traffic to.
pub struct Target {
    pub backend: Arc<Backend>,
    pub percent: u32,
    /// Its request metrics under this route's service.
    pub counters: Arc<RequestCounters>,
}

impl HostRoute {
    /// The next request's target: its backend and its metrics.
    #[inline]
    pub fn pick(&self) -> (&Arc<Backend>, &RequestCounters) {
        let i = self.split.pick();
        (&self.targets[i], &self.counters[i])
    }

    pub fn targets(&self) -> &[Arc<Backend>] {
        &self.targets
    }

    /// Every target with its percent of the traffic.
    pub fn traffic(&self) -> impl Iterator<Item = (&Arc<Backend>, u32)> {
        self.targets.iter().zip(self.percents.iter().copied())
    }
}

/// The virtual host of one VirtualService host on one listener.
pub struct VirtualHost {
    /// The host as bound (`shop.example.com`, `*.example.com`).
    pub host: Box<str>,
    /// The VirtualServices' HTTP rules, in creation order.
    pub routes: HttpRoutes,
    /// The gateway's own AuthorizationPolicies (`None` on the mesh
    /// listener, or when none applies).
    pub authz: Option<Arc<Authorizer>>,
    /// Plain HTTP is redirected to https (`tls.httpsRedirect`).
    pub require_tls: bool,
}

/// What one listener serves under Istio's rules.
#[derive(Default)]
pub struct ListenerRoutes {
    pub hosts: HostIndex<Arc<VirtualHost>>,
    /// The gateway's AuthorizationPolicies for requests that use Knative's
    /// routes on this listener.
    pub authz: Option<Arc<Authorizer>>,
}

/// Istio's part of a snapshot.
#[derive(Default)]
pub struct IstioRoutes {
    /// By listener address (as the listener manager keys them).
    listeners: Vec<(SocketAddr, ListenerRoutes)>,
    /// Indexed by `DestinationRef::cluster`.
    pub clusters: Vec<Arc<Cluster>>,
}

impl IstioRoutes {
    pub fn new(listeners: Vec<(SocketAddr, ListenerRoutes)>, clusters: Vec<Arc<Cluster>>) -> Self {
        IstioRoutes {
            listeners,
            clusters,
        }
    }

    /// The routes of the listener at `addr` (a handful of listeners: a
    /// scan beats hashing).
    #[inline]
    pub fn listener(&self, addr: SocketAddr) -> Option<&ListenerRoutes> {
        self.listeners
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, r)| r)
    }

    pub fn listeners(&self) -> impl Iterator<Item = (SocketAddr, &ListenerRoutes)> {
        self.listeners.iter().map(|(a, r)| (*a, r))
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

#[derive(Default)]
pub struct RoutingTable {
    pub version: u64,
    external: HashMap<Box<str>, Arc<HostRoute>>,
    local: HashMap<Box<str>, Arc<HostRoute>>,
    pub istio: IstioRoutes,
}

impl RoutingTable {
    /// The route for `host` (lowercase, without port).
    #[inline]
    pub fn lookup(&self, host: &str, external: bool, local: bool) -> Option<&Arc<HostRoute>> {
        let found = if external {
            self.external.get(host)
        } else {
            None
        };
        found.or_else(|| if local { self.local.get(host) } else { None })
    }

    pub fn hosts(&self) -> impl Iterator<Item = (&str, bool, &Arc<HostRoute>)> {
        self.external
            .iter()
            .map(|(h, r)| (&**h, false, r))
            .chain(self.local.iter().map(|(h, r)| (&**h, true, r)))
    }
}

/// Builds a [`RoutingTable`].
#[derive(Default)]
pub struct TableBuilder {
    version: u64,
    external: HashMap<Box<str>, Arc<HostRoute>>,
    local: HashMap<Box<str>, Arc<HostRoute>>,
    istio: IstioRoutes,
}

impl TableBuilder {
    pub fn new(version: u64) -> TableBuilder {
        TableBuilder {
            version,
            ..Default::default()
        }
    }

    /// Route `hosts` to revisions by weight. `local`: served only on
    /// listeners for cluster-local traffic.
    pub fn route(&mut self, name: &str, hosts: &[String], local: bool, targets: &[Target]) {
        if targets.is_empty() {
            return;
        }
        let weights: Vec<u32> = targets.iter().map(|t| t.percent).collect();
        let route = Arc::new(HostRoute {
            name: name.into(),
            split: Split::new(&weights),
            targets: targets.iter().map(|t| t.backend.clone()).collect(),
            percents: weights.into_boxed_slice(),
            counters: targets.iter().map(|t| t.counters.clone()).collect(),
        });
        let map = if local {
            &mut self.local
        } else {
            &mut self.external
        };
        for h in hosts {
            map.insert(h.to_ascii_lowercase().into_boxed_str(), route.clone());
        }
    }

    /// Istio's part.
    pub fn istio(&mut self, istio: IstioRoutes) {
        self.istio = istio;
    }

    pub fn build(self) -> RoutingTable {
        RoutingTable {
            version: self.version,
            external: self.external,
            local: self.local,
            istio: self.istio,
        }
    }
}
