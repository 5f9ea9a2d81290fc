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

use http::{HeaderMap, HeaderName, HeaderValue};

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
    /// Knative's tag header routing (config-features
    /// `tag-header-based-routing`): on the route's main hosts, a request
    /// with `Knative-Serving-Tag: T` goes to tag T's revision. Empty when
    /// the feature is off or the route has no tags.
    by_tag: Box<[(HeaderValue, Arc<HostRoute>)]>,
    /// Headers set on every request forwarded on this route (with tag
    /// header routing: `Knative-Serving-Default-Route: true` on the main
    /// hosts, `Knative-Serving-Tag: T` on tag T's hosts).
    set_headers: Box<[(HeaderName, HeaderValue)]>,
}

/// `Knative-Serving-Tag`: the tag a request asks for, and the tag a
/// tag-host request is marked with.
pub static SERVING_TAG: HeaderName = HeaderName::from_static("knative-serving-tag");
/// `Knative-Serving-Default-Route: true` marks a request routed by the
/// main split.
pub static SERVING_DEFAULT_ROUTE: HeaderName =
    HeaderName::from_static("knative-serving-default-route");

/// One revision a route sends traffic to.
pub struct Target {
    pub backend: Arc<Backend>,
    pub percent: u32,
    /// Its request metrics under this route's service.
    pub counters: Arc<RequestCounters>,
}

impl HostRoute {
    /// Route `targets` by their percents.
    pub fn new(name: &str, targets: &[Target]) -> HostRoute {
        let weights: Vec<u32> = targets.iter().map(|t| t.percent).collect();
        HostRoute {
            name: name.into(),
            split: Split::new(&weights),
            targets: targets.iter().map(|t| t.backend.clone()).collect(),
            percents: weights.into_boxed_slice(),
            counters: targets.iter().map(|t| t.counters.clone()).collect(),
            by_tag: Box::default(),
            set_headers: Box::default(),
        }
    }

    /// The main route of a route with tag header routing on.
    pub fn with_tag_routes(mut self, tags: Vec<(&str, Arc<HostRoute>)>) -> HostRoute {
        self.by_tag = tags
            .into_iter()
            .filter_map(|(t, r)| Some((HeaderValue::from_str(t).ok()?, r)))
            .collect();
        self.set_headers = Box::new([(
            SERVING_DEFAULT_ROUTE.clone(),
            HeaderValue::from_static("true"),
        )]);
        self
    }

    /// A tag's route with tag header routing on: its requests say which
    /// tag they came by.
    pub fn marked_with_tag(mut self, tag: &str) -> HostRoute {
        if let Ok(v) = HeaderValue::from_str(tag) {
            self.set_headers = Box::new([(SERVING_TAG.clone(), v)]);
        }
        self
    }

    /// The route a request takes: a tag's, when it asks for a known tag
    /// with `Knative-Serving-Tag`, else this one. An unknown tag gets the
    /// main split, as in Knative.
    #[inline]
    pub fn for_request<'a>(self: &'a Arc<Self>, headers: &HeaderMap) -> &'a Arc<HostRoute> {
        if self.by_tag.is_empty() {
            return self;
        }
        match headers.get(&SERVING_TAG) {
            Some(tag) => self
                .by_tag
                .iter()
                .find(|(t, _)| t == tag)
                .map_or(self, |(_, r)| r),
            None => self,
        }
    }

    /// Headers to set on every request forwarded on this route.
    #[inline]
    pub fn set_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.set_headers
    }

    /// The next request's target, by weight: an index for [`Self::target`]
    /// (which a future that owns the route can keep).
    #[inline]
    pub fn pick(&self) -> usize {
        self.split.pick()
    }

    /// Target `i` (from [`Self::pick`]): its backend and its metrics.
    #[inline]
    pub fn target(&self, i: usize) -> (&Arc<Backend>, &RequestCounters) {
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

/// Routes by host. Looked up on every request with the client's Host: a
/// fast seeded hash (the keys are the operator's, so hash flooding cannot
/// grow the buckets).
type HostMap = HashMap<Box<str>, Arc<HostRoute>, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct RoutingTable {
    pub version: u64,
    external: HostMap,
    local: HostMap,
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
    external: HostMap,
    local: HostMap,
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
        self.insert(hosts, local, &Arc::new(HostRoute::new(name, targets)));
    }

    /// Serve `route` on `hosts`.
    pub fn insert(&mut self, hosts: &[String], local: bool, route: &Arc<HostRoute>) {
        if route.targets.is_empty() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activator::Backends;
    use crate::request_metrics::{Destination, RequestMetrics};

    fn target(backends: &Backends, metrics: &RequestMetrics, rev: &str, percent: u32) -> Target {
        Target {
            backend: backends.get(&format!("default/{rev}")),
            percent,
            counters: metrics.get(Destination {
                service: "hello.default.svc.cluster.local".into(),
                revision: rev.into(),
                namespace: "default".into(),
                canonical_service: "hello".into(),
            }),
        }
    }

    #[test]
    fn tag_header_routing_picks_the_tags_route() {
        let (backends, metrics) = (Backends::default(), RequestMetrics::default());
        let v2 = Arc::new(
            HostRoute::new(
                "default/hello (tag v2)",
                &[target(&backends, &metrics, "hello-00002", 100)],
            )
            .marked_with_tag("v2"),
        );
        let main = Arc::new(
            HostRoute::new(
                "default/hello",
                &[target(&backends, &metrics, "hello-00001", 100)],
            )
            .with_tag_routes(vec![("v2", v2.clone())]),
        );
        let mut h = HeaderMap::new();
        assert!(Arc::ptr_eq(main.for_request(&h), &main));
        h.insert(&SERVING_TAG, HeaderValue::from_static("v2"));
        assert!(Arc::ptr_eq(main.for_request(&h), &v2));
        h.insert(&SERVING_TAG, HeaderValue::from_static("v3"));
        assert!(
            Arc::ptr_eq(main.for_request(&h), &main),
            "unknown tag: main split"
        );
        assert_eq!(main.set_headers()[0].0, SERVING_DEFAULT_ROUTE);
        assert_eq!(
            v2.set_headers()[0],
            (SERVING_TAG.clone(), HeaderValue::from_static("v2"))
        );
        // Without the feature a route has neither.
        let plain = Arc::new(HostRoute::new(
            "default/hello",
            &[target(&backends, &metrics, "hello-00001", 100)],
        ));
        h.insert(&SERVING_TAG, HeaderValue::from_static("v2"));
        assert!(Arc::ptr_eq(plain.for_request(&h), &plain));
        assert!(plain.set_headers().is_empty());
    }
}
