//! Istio's part of the routing snapshot, built from what the store holds:
//! per listener the virtual hosts of the VirtualServices bound to it (their
//! rules compiled), the clusters their destinations resolve to (revisions,
//! DestinationRule policy, long-lived breakers and outlier state), and the
//! AuthorizationPolicies of the gateways and of every revision.
//!
//! A destination host is a Knative route's host (`hello.default.svc.cluster.local`,
//! its shorter forms, or its external name; a tag's host for that tag).
//! Without a subset the cluster is the route's own traffic split; a subset
//! selects revisions by their labels (Knative's `serving.knative.dev/*` and
//! the template's) among every revision of the route's configurations,
//! ignoring Knative's percentages as a Kubernetes subset would.
//!
//! PeerAuthentication: Skiff has no sidecars. Every hop from a client to an
//! instance goes through the gateway and the in-process queue-proxy layer,
//! which is the mesh's authenticated hop, so STRICT, PERMISSIVE and DISABLE
//! all accept what reaches the workload; client TLS at a gateway listener
//! is governed by the Gateway server's `tls.mode` (SIMPLE, MUTUAL,
//! OPTIONAL_MUTUAL), as at an Istio ingress gateway. Policies are accepted,
//! validated and analyzed (`skiff analyze`), and do not change routing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use skiff_api::config::ClusterConfig;
use skiff_api::istio::virtual_service::{Destination, MESH_GATEWAY};
use skiff_api::istio::{AuthorizationPolicy, DestinationRule, Gateway, VirtualService};
use skiff_api::labels;
use skiff_api::serving::{Revision, Route};
use skiff_proxy::cluster::{Cluster, Member};
use skiff_proxy::istio::authz::{Authorizer, applicable};
use skiff_proxy::istio::binding::{HostIndex, bound_hosts, vs_gateways};
use skiff_proxy::istio::cluster_state::ClusterStates;
use skiff_proxy::istio::outlier::OutlierDetector;
use skiff_proxy::istio::policy::{
    CLUSTER_DOMAIN, ClusterPolicy, DestinationRules, qualify_host, revision_labels, select, subset,
};
use skiff_proxy::istio::route::{HttpRoutes, Resolver, Scope};
use skiff_proxy::request_metrics::{Destination as StatDestination, RequestMetrics};
use skiff_proxy::{Backends, IstioRoutes, ListenerRoutes, VirtualHost};
use skiff_runtime::RevisionKey;

use crate::gateway_listeners::{KNATIVE_INGRESS_GATEWAY, Layout, MESH};
use crate::network;
use crate::traffic;

/// Istio's root namespace: its policies apply mesh-wide, and the gateway
/// workloads run there.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// What the builder reads.
pub struct Inputs<'a> {
    pub routes: &'a [Route],
    pub revisions: &'a [Revision],
    pub gateways: &'a [Gateway],
    pub virtual_services: &'a [VirtualService],
    pub destination_rules: &'a [DestinationRule],
    pub authorization_policies: &'a [AuthorizationPolicy],
    pub config: &'a ClusterConfig,
}

/// What it builds.
pub struct Built {
    pub istio: IstioRoutes,
    /// Revisions the clusters send traffic to (they must be kept
    /// reachable by the autoscaler).
    pub routed: HashSet<RevisionKey>,
    /// Configuration that could not be applied, for the log.
    pub problems: Vec<String>,
}

/// The traffic a Knative host serves.
#[derive(Debug, Clone)]
struct HostTarget {
    namespace: String,
    /// The route's name (the Knative service's, for a service).
    route: String,
    /// (revision, percent) of the host's traffic group.
    split: Vec<(String, u32)>,
    /// Every revision a subset may select.
    candidates: Vec<usize>,
}

/// Knative hosts → their traffic.
struct KnativeHosts {
    hosts: HashMap<String, HostTarget>,
}

impl KnativeHosts {
    fn new(inp: &Inputs<'_>) -> KnativeHosts {
        let mut hosts = HashMap::new();
        for route in inp.routes {
            let Some(status) = &route.status else {
                continue;
            };
            let ns = &route.metadata.namespace;
            let named: HashSet<&str> = status
                .traffic
                .iter()
                .filter_map(|t| t.revision_name.as_deref())
                .collect();
            let configs: HashSet<&str> = inp
                .revisions
                .iter()
                .filter(|r| r.metadata.namespace == *ns && named.contains(r.metadata.name.as_str()))
                .filter_map(|r| r.metadata.label(labels::CONFIGURATION))
                .chain(
                    route
                        .spec
                        .traffic
                        .iter()
                        .filter_map(|t| t.configuration_name.as_deref()),
                )
                .collect();
            let candidates: Vec<usize> = inp
                .revisions
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.metadata.namespace == *ns
                        && (named.contains(r.metadata.name.as_str())
                            || r.metadata
                                .label(labels::CONFIGURATION)
                                .is_some_and(|c| configs.contains(c)))
                })
                .map(|(i, _)| i)
                .collect();
            for group in traffic::groups_of(&status.traffic) {
                let Ok(h) = network::group_hosts(inp.config, &route.metadata, group.tag.as_deref())
                else {
                    continue;
                };
                let target = HostTarget {
                    namespace: ns.clone(),
                    route: route.metadata.name.clone(),
                    split: group.targets.clone(),
                    candidates: candidates.clone(),
                };
                for host in h.external.iter().chain(h.local.iter()) {
                    hosts
                        .entry(host.to_ascii_lowercase())
                        .or_insert_with(|| target.clone());
                }
            }
        }
        KnativeHosts { hosts }
    }

    fn get(&self, host: &str) -> Option<&HostTarget> {
        self.hosts.get(host)
    }
}

/// The clusters of one snapshot, created as destinations ask for them.
struct Clusters<'a> {
    inp: &'a Inputs<'a>,
    kn: &'a KnativeHosts,
    drs: &'a DestinationRules,
    backends: &'a Backends,
    states: &'a mut ClusterStates,
    metrics: &'a RequestMetrics,
    by_name: HashMap<String, u32>,
    clusters: Vec<Arc<Cluster>>,
    routed: HashSet<RevisionKey>,
    problems: Vec<String>,
}

impl Clusters<'_> {
    fn build(&mut self, d: &Destination, vs_ns: &str) -> Option<Cluster> {
        let host = qualify_host(&d.host, vs_ns);
        let port = d.port.and_then(|p| u16::try_from(p.number).ok());
        let subset_name = (!d.subset.is_empty()).then_some(d.subset.as_str());
        let name = format!(
            "outbound|{}|{}|{host}",
            port.map(|p| p.to_string()).unwrap_or_default(),
            subset_name.unwrap_or("")
        );
        let target = self.kn.get(&host)?;
        let dr = self.drs.lookup(&host, vs_ns);
        let revisions: Vec<(&Revision, u32)> = match subset_name {
            None => target
                .split
                .iter()
                .filter_map(|(rev, pct)| {
                    self.inp
                        .revisions
                        .iter()
                        .find(|r| {
                            r.metadata.namespace == target.namespace && r.metadata.name == *rev
                        })
                        .map(|r| (r, *pct))
                })
                .collect(),
            Some(s) => {
                // An undefined subset is no cluster at all (503 NC).
                let s = dr.and_then(|dr| subset(dr, s))?;
                let labelled: Vec<(BTreeMap<String, String>, usize)> = target
                    .candidates
                    .iter()
                    .map(|i| (revision_labels(&self.inp.revisions[*i]), *i))
                    .collect();
                select(s, labelled.iter().map(|(l, i)| (l, *i)))
                    .into_iter()
                    .map(|i| (&self.inp.revisions[i], 1))
                    .collect()
            }
        };
        let policy = match ClusterPolicy::for_destination(dr, subset_name, port) {
            Ok(p) => p,
            Err(e) => {
                if let Some(dr) = dr {
                    self.problems.push(format!(
                        "DestinationRule {}/{}: policy not applied to cluster {name}: {e}",
                        dr.metadata.namespace, dr.metadata.name
                    ));
                }
                ClusterPolicy::default()
            }
        };
        let mut members = Vec::with_capacity(revisions.len());
        let mut hosts = Vec::new();
        for (rev, weight) in revisions {
            let ns = &rev.metadata.namespace;
            let backend = self.backends.get(&format!("{ns}/{}", rev.metadata.name));
            self.routed.insert(RevisionKey::new(ns, &rev.metadata.name));
            hosts.extend(backend.endpoints().iter().map(|e| e.outlier.clone()));
            let counters = self.metrics.get(StatDestination {
                service: host.clone(),
                revision: rev.metadata.name.clone(),
                namespace: ns.clone(),
                canonical_service: rev
                    .metadata
                    .label(labels::SERVICE)
                    .unwrap_or(&target.route)
                    .to_string(),
            });
            members.push(Member::new(backend, weight, counters));
        }
        let breaker = self.states.breaker(&name, policy.limits);
        let outlier = policy
            .outlier
            .clone()
            .map(|cfg| OutlierDetector::new(cfg, hosts, self.states.outlier_stats(&name)));
        let counters = self.states.counters(&name);
        Some(Cluster::new(
            &name,
            &host,
            subset_name,
            policy,
            members,
            breaker,
            outlier,
            counters,
        ))
    }
}

impl Resolver for Clusters<'_> {
    fn cluster(&mut self, d: &Destination, namespace: &str) -> Option<u32> {
        let host = qualify_host(&d.host, namespace);
        let key = format!(
            "{}|{}|{}",
            d.port.map(|p| p.number.to_string()).unwrap_or_default(),
            d.subset,
            host
        );
        if let Some(i) = self.by_name.get(&key) {
            return Some(*i);
        }
        let c = self.build(d, namespace)?;
        let i = self.clusters.len() as u32;
        self.clusters.push(Arc::new(c));
        self.by_name.insert(key, i);
        Some(i)
    }

    fn delegate(&mut self, namespace: &str, name: &str) -> Option<&VirtualService> {
        self.inp
            .virtual_services
            .iter()
            .find(|v| v.metadata.namespace == namespace && v.metadata.name == name)
    }

    fn split_counter(&mut self, key: &str) -> Option<Arc<std::sync::atomic::AtomicUsize>> {
        Some(self.states.split_counter(key))
    }
}

/// A VirtualService with its short hosts qualified (`reviews` →
/// `reviews.<ns>.svc.cluster.local`), as Istio reads them.
fn qualified(vs: &VirtualService) -> VirtualService {
    let mut v = vs.clone();
    for h in &mut v.spec.hosts {
        *h = qualify_host(h, &vs.metadata.namespace);
    }
    v
}

/// A mesh host's other names on the cluster-local listener
/// (`name.ns.svc.cluster.local` also answers as `name.ns.svc`, `name.ns`).
fn mesh_aliases(host: &str) -> Vec<String> {
    let mut out = vec![host.to_string()];
    if let Some(rest) = host.strip_suffix(&format!(".{CLUSTER_DOMAIN}")) {
        out.push(format!("{rest}.svc"));
        out.push(rest.to_string());
    }
    out
}

/// The labels a gateway workload has: its Gateway's selector (Istio's
/// default ingress gateway for Knative's own).
fn gateway_labels(name: &str, gateways: &[Gateway]) -> BTreeMap<String, String> {
    gateways
        .iter()
        .find(|g| format!("{}/{}", g.metadata.namespace, g.metadata.name) == name)
        .map(|g| g.spec.selector.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]))
}

/// Compile the AuthorizationPolicies that apply to a workload.
fn authorizer(
    aps: &[AuthorizationPolicy],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Option<Arc<Authorizer>> {
    let applying = applicable(aps, namespace, labels, ROOT_NAMESPACE);
    if applying.is_empty() {
        return None;
    }
    let (a, p) = Authorizer::compile(applying);
    problems.extend(p);
    Some(Arc::new(a))
}

/// Set every revision's workload authorization on its backend.
pub fn authorize_revisions(inp: &Inputs<'_>, backends: &Backends, problems: &mut Vec<String>) {
    for rev in inp.revisions {
        let ns = &rev.metadata.namespace;
        let a = authorizer(
            inp.authorization_policies,
            ns,
            &revision_labels(rev),
            problems,
        );
        if let Some(b) = backends.find(&format!("{ns}/{}", rev.metadata.name)) {
            b.set_authorizer(a);
        } else if a.is_some() {
            backends
                .get(&format!("{ns}/{}", rev.metadata.name))
                .set_authorizer(a);
        }
    }
}

/// The VirtualServices one host of a listener gets.
struct HostBinding {
    /// (VirtualService index, the gateway it bound through).
    vss: Vec<(usize, String)>,
    /// Plain HTTP is redirected to https (the server's `httpsRedirect`).
    require_tls: bool,
    /// The gateway whose policies apply (the first server that bound it).
    gateway: String,
}

/// VirtualServices in the order Istio merges those of one host: oldest
/// first.
fn creation_order(vss: &[VirtualService]) -> Vec<&VirtualService> {
    let mut v: Vec<&VirtualService> = vss.iter().collect();
    v.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_deref().unwrap_or(""),
            &a.metadata.namespace,
            &a.metadata.name,
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_deref().unwrap_or(""),
                &b.metadata.namespace,
                &b.metadata.name,
            ))
    });
    v
}

/// Build Istio's part of the snapshot for `layouts`.
pub fn build(
    inp: &Inputs<'_>,
    layouts: &[Layout],
    backends: &Backends,
    states: &mut ClusterStates,
    metrics: &RequestMetrics,
) -> Built {
    let kn = KnativeHosts::new(inp);
    let drs = DestinationRules::new(inp.destination_rules.iter().cloned());
    let mut clusters = Clusters {
        inp,
        kn: &kn,
        drs: &drs,
        backends,
        states,
        metrics,
        by_name: HashMap::new(),
        clusters: Vec::new(),
        routed: HashSet::new(),
        problems: Vec::new(),
    };
    let vss: Vec<VirtualService> = creation_order(inp.virtual_services)
        .into_iter()
        .map(qualified)
        .collect();
    let vs_gws: Vec<Vec<String>> = vss.iter().map(vs_gateways).collect();
    let mut gateway_authz: HashMap<String, Option<Arc<Authorizer>>> = HashMap::new();
    let mut problems = Vec::new();
    let mut listeners = Vec::new();
    if !vss.is_empty() || !inp.authorization_policies.is_empty() {
        for l in layouts {
            let mut hosts: BTreeMap<String, HostBinding> = BTreeMap::new();
            let mut order: Vec<String> = Vec::new();
            for s in &l.servers {
                let gw_ns = s.gateway.split('/').next().unwrap_or("");
                let as_ref = if s.gateway == MESH {
                    MESH_GATEWAY.to_string()
                } else {
                    s.gateway.clone()
                };
                for (i, vs) in vss.iter().enumerate() {
                    if !vs_gws[i].contains(&as_ref) {
                        continue;
                    }
                    let bound = bound_hosts(&s.server, gw_ns, vs);
                    for h in bound {
                        let names = if s.gateway == MESH {
                            mesh_aliases(&h)
                        } else {
                            vec![h]
                        };
                        for name in names {
                            let e = hosts.entry(name.clone()).or_insert_with(|| {
                                order.push(name.clone());
                                HostBinding {
                                    vss: Vec::new(),
                                    require_tls: s.https_redirect(),
                                    gateway: s.gateway.clone(),
                                }
                            });
                            if !e.vss.iter().any(|(j, _)| *j == i) {
                                e.vss.push((i, s.gateway.clone()));
                            }
                        }
                    }
                }
            }
            let mut index = HostIndex::default();
            for host in order {
                let Some(HostBinding {
                    vss: mut entries,
                    require_tls,
                    gateway: gw,
                }) = hosts.remove(&host)
                else {
                    continue;
                };
                entries.sort_by_key(|(i, _)| *i);
                let mut routes = HttpRoutes::default();
                for (i, gateway) in &entries {
                    let scope = Scope {
                        gateway: (gateway != MESH).then_some(gateway.as_str()),
                    };
                    if let Err(e) = routes.add(&vss[*i], scope, &mut clusters) {
                        problems.push(format!("VirtualService {e}: rules not served"));
                    }
                }
                let authz = if gw == MESH {
                    None
                } else {
                    gateway_authz
                        .entry(gw.clone())
                        .or_insert_with(|| {
                            authorizer(
                                inp.authorization_policies,
                                ROOT_NAMESPACE,
                                &gateway_labels(&gw, inp.gateways),
                                &mut problems,
                            )
                        })
                        .clone()
                };
                index.insert(
                    &host,
                    Arc::new(VirtualHost {
                        host: host.as_str().into(),
                        routes,
                        authz,
                        require_tls,
                    }),
                );
            }
            // Knative's own routes on the external listener pass the
            // ingress gateway's policies too (the cluster-local listener
            // stands for the callers' sidecars: no gateway workload).
            let authz = l
                .servers
                .iter()
                .any(|s| s.gateway == KNATIVE_INGRESS_GATEWAY)
                .then(|| {
                    gateway_authz
                        .entry(KNATIVE_INGRESS_GATEWAY.to_string())
                        .or_insert_with(|| {
                            authorizer(
                                inp.authorization_policies,
                                ROOT_NAMESPACE,
                                &gateway_labels(KNATIVE_INGRESS_GATEWAY, inp.gateways),
                                &mut problems,
                            )
                        })
                        .clone()
                })
                .flatten();
            if !index.is_empty() || authz.is_some() {
                listeners.push((
                    l.addr,
                    ListenerRoutes {
                        hosts: index,
                        authz,
                    },
                ));
            }
        }
    }
    problems.append(&mut clusters.problems);
    Built {
        istio: IstioRoutes::new(listeners, clusters.clusters),
        routed: clusters.routed,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_listeners::{ListenerPlan, layout};
    use skiff_proxy::istio::request::RequestView;
    use skiff_proxy::istio::route::Action;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        let v: serde_json::Value = serde_saphyr::from_str(s).unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn revision(name: &str, version: &str) -> Revision {
        yaml(&format!(
            "metadata: {{name: {name}, namespace: default, labels: {{serving.knative.dev/configuration: ab, serving.knative.dev/service: ab, version: {version}}}}}"
        ))
    }

    struct Fixture {
        routes: Vec<Route>,
        revisions: Vec<Revision>,
        vss: Vec<VirtualService>,
        drs: Vec<DestinationRule>,
        aps: Vec<AuthorizationPolicy>,
        config: ClusterConfig,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                routes: vec![yaml(
                    "metadata: {name: ab, namespace: default}
spec: {traffic: [{configurationName: ab, percent: 100}]}
status: {traffic: [{revisionName: ab-00001, percent: 100}]}",
                )],
                revisions: vec![revision("ab-00001", "v1"), revision("ab-00002", "v2")],
                vss: vec![yaml(
                    "metadata: {name: ab, namespace: default}
spec:
  hosts: [ab]
  http:
  - match: [{headers: {user-type: {exact: premium}}}]
    route: [{destination: {host: ab, subset: v2}}]
  - match: [{uri: {prefix: /nowhere}}]
    route: [{destination: {host: ab, subset: v9}}]
  - route: [{destination: {host: ab}}]",
                )],
                drs: vec![yaml(
                    "metadata: {name: ab, namespace: default}
spec:
  host: ab.default.svc.cluster.local
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 3}}}
  subsets:
  - {name: v2, labels: {version: v2}}",
                )],
                aps: vec![yaml(
                    "metadata: {name: deny, namespace: default}
spec:
  selector: {matchLabels: {version: v2}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]",
                )],
                config: ClusterConfig::default(),
            }
        }

        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                routes: &self.routes,
                revisions: &self.revisions,
                gateways: &[],
                virtual_services: &self.vss,
                destination_rules: &self.drs,
                authorization_policies: &self.aps,
                config: &self.config,
            }
        }
    }

    #[test]
    fn mesh_virtual_services_resolve_to_knative_revisions() {
        let f = Fixture::new();
        let plan = ListenerPlan::defaults(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        );
        let (layouts, _) = layout(&plan, &[]);
        let backends = Backends::default();
        let mut states = ClusterStates::default();
        let metrics = RequestMetrics::default();
        let built = build(&f.inputs(), &layouts, &backends, &mut states, &metrics);
        assert!(built.problems.is_empty(), "{:?}", built.problems);
        // Only the cluster-local listener (the mesh) has the host, under its
        // short names too.
        assert!(built.istio.listener(plan.external).is_none());
        let local = built.istio.listener(plan.local).expect("mesh routes");
        for h in [
            "ab.default.svc.cluster.local",
            "ab.default.svc",
            "ab.default",
        ] {
            assert!(local.hosts.lookup(h).is_some(), "{h}");
        }
        // Subset v2 selects the revision Knative gives 0 %; the plain
        // destination is Knative's split; an undefined subset is no cluster.
        let names: Vec<&str> = built.istio.clusters.iter().map(|c| &*c.name).collect();
        assert_eq!(
            names,
            [
                "outbound||v2|ab.default.svc.cluster.local",
                "outbound|||ab.default.svc.cluster.local"
            ]
        );
        let v2 = &built.istio.clusters[0];
        assert_eq!(v2.revisions(), "default/ab-00002");
        assert_eq!(v2.breaker.limits.max_connections, 3);
        assert_eq!(built.istio.clusters[1].revisions(), "default/ab-00001");
        assert!(
            built
                .routed
                .contains(&RevisionKey::new("default", "ab-00002"))
        );
        let vh = local.hosts.lookup("ab.default").unwrap();
        let parts = http::Request::get("/nowhere")
            .header("host", "ab.default")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let m = vh
            .routes
            .find(&RequestView::new(&parts, "http", 80))
            .unwrap();
        let Action::Route(t) = &m.rule.action else {
            panic!("a route")
        };
        assert_eq!(t.pick().destination.cluster, None, "503 NC");
        // The workload's policies land on its backend.
        authorize_revisions(&f.inputs(), &backends, &mut Vec::new());
        assert!(backends.get("default/ab-00002").authorizer().is_some());
        assert!(backends.get("default/ab-00001").authorizer().is_none());
        // A rebuild keeps the cluster's breaker (same limits).
        let again = build(&f.inputs(), &layouts, &backends, &mut states, &metrics);
        assert!(Arc::ptr_eq(&again.istio.clusters[0].breaker, &v2.breaker));
    }
}
