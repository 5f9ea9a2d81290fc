//! DestinationRule model: which rule applies to a host, how host-, subset-
//! and port-level traffic policies combine (Istio's
//! `MergeSubsetTrafficPolicy`), and the compiled per-cluster policy: load
//! balancer, circuit-breaker limits, outlier detection, connection settings.
//!
//! Merge rules: a subset's policy overrides the host-level one block by
//! block (`loadBalancer`, `connectionPool`, `outlierDetection`, `tls`, ...);
//! a matching `portLevelSettings` entry *replaces* the policy of its level —
//! blocks it omits fall back to defaults, not to the level above.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_api::istio::DestinationRule;
use skiff_api::istio::destination_rule::{
    ClientTlsSettings, H2UpgradePolicy, PortTrafficPolicy, Subset, TrafficPolicy,
};
use skiff_api::istio::duration;

use super::binding::covers;
use super::circuit_breaker::Limits;
use super::lb::LbConfig;
use super::outlier::OutlierConfig;

/// The cluster-local DNS suffix short host names are completed with.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// `reviews` in namespace `ns` → `reviews.ns.svc.cluster.local`; names
/// with dots and wildcards are kept. Short names are relative to the
/// namespace of the resource that says them (Istio).
pub fn qualify_host(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_ascii_lowercase()
    } else {
        format!("{}.{namespace}.{CLUSTER_DOMAIN}", host.to_ascii_lowercase())
    }
}

/// The namespace a `name.ns.svc.cluster.local` host lives in.
pub fn host_namespace(fqdn: &str) -> Option<&str> {
    let rest = fqdn.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    let mut parts = rest.rsplitn(2, '.');
    let ns = parts.next()?;
    parts.next().map(|_| ns)
}

/// The DestinationRules of a snapshot, for lookups by host.
#[derive(Debug, Default)]
pub struct DestinationRules {
    /// (qualified host pattern, rule), exact patterns first, then longer
    /// wildcards first.
    rules: Vec<(String, DestinationRule)>,
}

impl DestinationRules {
    pub fn new(drs: impl IntoIterator<Item = DestinationRule>) -> DestinationRules {
        let mut rules: Vec<(String, DestinationRule)> = drs
            .into_iter()
            .map(|d| (qualify_host(&d.spec.host, &d.metadata.namespace), d))
            .collect();
        rules.sort_by(|(a, da), (b, db)| {
            let wild = |h: &str| h.starts_with('*');
            (
                wild(a),
                std::cmp::Reverse(a.len()),
                &da.metadata.namespace,
                &da.metadata.name,
            )
                .cmp(&(
                    wild(b),
                    std::cmp::Reverse(b.len()),
                    &db.metadata.namespace,
                    &db.metadata.name,
                ))
        });
        DestinationRules { rules }
    }

    /// The rule for `host` (qualified), as seen from `client_ns`: the most
    /// specific host pattern wins; among equals, the client's namespace,
    /// then the host's own namespace, then the first by name. Rules with
    /// `exportTo: [.]` are seen from their namespace only.
    pub fn lookup(&self, host: &str, client_ns: &str) -> Option<&DestinationRule> {
        let visible = |d: &DestinationRule| {
            d.spec.export_to.is_empty()
                || d.spec.export_to.iter().any(|e| {
                    e == "*" || (e == "." && d.metadata.namespace == client_ns) || e == client_ns
                })
        };
        let candidates: Vec<&(String, DestinationRule)> = self
            .rules
            .iter()
            .filter(|(p, d)| covers(p, host) && visible(d))
            .collect();
        let best = &candidates.first()?.0;
        let host_ns = host_namespace(host);
        let tied = || candidates.iter().filter(|(p, _)| p == best).map(|(_, d)| d);
        tied()
            .find(|d| d.metadata.namespace == client_ns)
            .or_else(|| tied().find(|d| Some(d.metadata.namespace.as_str()) == host_ns))
            .or_else(|| tied().next())
    }
}

fn port_policy(p: &PortTrafficPolicy) -> TrafficPolicy {
    TrafficPolicy {
        load_balancer: p.load_balancer.clone(),
        connection_pool: p.connection_pool.clone(),
        outlier_detection: p.outlier_detection.clone(),
        tls: p.tls.clone(),
        ..Default::default()
    }
}

/// The policy of one level for `port`: its port-level entry (replacing it)
/// or itself. Returns whether a port-level entry was used.
fn for_port(tp: &TrafficPolicy, port: Option<u16>) -> (TrafficPolicy, bool) {
    if let Some(port) = port
        && let Some(p) = tp
            .port_level_settings
            .iter()
            .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
    {
        return (port_policy(p), true);
    }
    let mut copy = tp.clone();
    copy.port_level_settings.clear();
    (copy, false)
}

/// Istio's MergeSubsetTrafficPolicy: the effective policy for a subset of
/// a DestinationRule on `port`.
pub fn effective_policy(
    host_level: Option<&TrafficPolicy>,
    subset_level: Option<&TrafficPolicy>,
    port: Option<u16>,
) -> Option<TrafficPolicy> {
    let original = host_level.map(|t| for_port(t, port).0);
    let Some(subset) = subset_level else {
        return original;
    };
    let (subset, has_port_level) = for_port(subset, port);
    let Some(mut merged) = original else {
        return Some(subset);
    };
    if subset.connection_pool.is_some() || has_port_level {
        merged.connection_pool = subset.connection_pool;
    }
    if subset.outlier_detection.is_some() || has_port_level {
        merged.outlier_detection = subset.outlier_detection;
    }
    if subset.load_balancer.is_some() || has_port_level {
        merged.load_balancer = subset.load_balancer;
    }
    if subset.tls.is_some() || has_port_level {
        merged.tls = subset.tls;
    }
    if subset.tunnel.is_some() {
        merged.tunnel = subset.tunnel;
    }
    if subset.proxy_protocol.is_some() {
        merged.proxy_protocol = subset.proxy_protocol;
    }
    if subset.retry_budget.is_some() {
        merged.retry_budget = subset.retry_budget;
    }
    Some(merged)
}

/// The subset named `name` of `dr`.
pub fn subset<'a>(dr: &'a DestinationRule, name: &str) -> Option<&'a Subset> {
    dr.spec.subsets.iter().find(|s| s.name == name)
}

/// The members (e.g. revisions, by their labels — Knative puts
/// `serving.knative.dev/revision`, `.../configuration`, `.../service` and
/// the template's labels on them) a subset selects.
pub fn select<'a, T>(
    subset: &Subset,
    members: impl IntoIterator<Item = (&'a BTreeMap<String, String>, T)>,
) -> Vec<T> {
    members
        .into_iter()
        .filter(|(labels, _)| subset.selects(labels))
        .map(|(_, t)| t)
        .collect()
}

/// The labels a DestinationRule subset sees on a Knative revision: the
/// revision's own (template labels, `serving.knative.dev/configuration`,
/// `.../service`, ...) plus what Knative puts on its pods:
/// `serving.knative.dev/revision` (and `app` when the template sets none,
/// as Knative does).
pub fn revision_labels(rev: &skiff_api::serving::Revision) -> BTreeMap<String, String> {
    let mut l = rev.metadata.labels.clone();
    l.insert(
        skiff_api::labels::REVISION.to_string(),
        rev.metadata.name.clone(),
    );
    if !rev.metadata.uid.is_empty() {
        l.insert(
            "serving.knative.dev/revisionUID".to_string(),
            rev.metadata.uid.clone(),
        );
    }
    l.entry("app".to_string())
        .or_insert_with(|| rev.metadata.name.clone());
    l
}

/// TCP keepalive on upstream sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// Istio's mesh default `connectTimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy's default upstream idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Everything a cluster (host + subset + port) needs at run time.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    pub lb: LbConfig,
    pub limits: Limits,
    pub outlier: Option<OutlierConfig>,
    pub connect_timeout: Duration,
    pub keepalive: Option<Keepalive>,
    /// Close a connection with no active request for this long (`None`:
    /// disabled by `0s`). http.idleTimeout wins over tcp.idleTimeout.
    pub idle_timeout: Option<Duration>,
    pub max_connection_duration: Option<Duration>,
    /// `None`: unlimited; `Some(1)` disables keep-alive.
    pub max_requests_per_connection: Option<u32>,
    pub h2_upgrade: H2UpgradePolicy,
    pub use_client_protocol: bool,
    /// Client TLS toward the upstream (kept for `proxy-config`; local
    /// instances are plain HTTP).
    pub tls: Option<ClientTlsSettings>,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        ClusterPolicy {
            lb: LbConfig::default(),
            limits: Limits::default(),
            outlier: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_connection_duration: None,
            max_requests_per_connection: None,
            h2_upgrade: H2UpgradePolicy::Default,
            use_client_protocol: false,
            tls: None,
        }
    }
}

impl ClusterPolicy {
    /// Compile an effective traffic policy (`None`: Istio's defaults —
    /// unlimited breakers, LEAST_REQUEST, no outlier detection).
    pub fn compile(tp: Option<&TrafficPolicy>) -> Result<ClusterPolicy, String> {
        let mut c = ClusterPolicy::default();
        let Some(tp) = tp else {
            return Ok(c);
        };
        c.lb = LbConfig::from_api(tp.load_balancer.as_ref())?;
        c.limits = Limits::from_api(tp.connection_pool.as_ref());
        c.outlier = tp
            .outlier_detection
            .as_ref()
            .map(OutlierConfig::from_api)
            .transpose()?;
        c.tls = tp.tls.clone();
        let dur = |s: &Option<String>| s.as_deref().map(duration::parse).transpose();
        if let Some(pool) = &tp.connection_pool {
            if let Some(t) = &pool.tcp {
                if let Some(ct) = dur(&t.connect_timeout)? {
                    c.connect_timeout = ct;
                }
                if let Some(k) = &t.tcp_keepalive {
                    c.keepalive = Some(Keepalive {
                        probes: k.probes,
                        time: dur(&k.time)?,
                        interval: dur(&k.interval)?,
                    });
                }
                c.max_connection_duration = dur(&t.max_connection_duration)?;
                if let Some(it) = dur(&t.idle_timeout)? {
                    c.idle_timeout = (!it.is_zero()).then_some(it);
                }
            }
            if let Some(h) = &pool.http {
                if let Some(it) = dur(&h.idle_timeout)? {
                    c.idle_timeout = (!it.is_zero()).then_some(it);
                }
                if h.max_requests_per_connection > 0 {
                    c.max_requests_per_connection = Some(h.max_requests_per_connection as u32);
                }
                c.h2_upgrade = h.h2_upgrade_policy.unwrap_or_default();
                c.use_client_protocol = h.use_client_protocol;
            }
        }
        Ok(c)
    }

    /// The policy for (`dr`, `subset`, `port`), merged and compiled.
    pub fn for_destination(
        dr: Option<&DestinationRule>,
        subset_name: Option<&str>,
        port: Option<u16>,
    ) -> Result<ClusterPolicy, String> {
        let host_level = dr.and_then(|d| d.spec.traffic_policy.as_ref());
        let subset_level = match (dr, subset_name) {
            (Some(d), Some(s)) => subset(d, s).and_then(|s| s.traffic_policy.as_ref()),
            _ => None,
        };
        ClusterPolicy::compile(effective_policy(host_level, subset_level, port).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio::lb::LbKind;

    fn dr(yaml: &str) -> DestinationRule {
        let mut d: DestinationRule = crate::istio::testing::yaml(yaml);
        if d.metadata.namespace.is_empty() {
            d.metadata.namespace = "default".into();
        }
        d
    }

    const RULE: &str = "
metadata: {name: hello}
spec:
  host: hello
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 100}, http: {http1MaxPendingRequests: 10}}
    outlierDetection: {consecutive5xxErrors: 2}
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {serving.knative.dev/revision: hello-00001}
  - name: v2
    labels: {serving.knative.dev/revision: hello-00002}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 1}}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: LEAST_REQUEST}
";

    #[test]
    fn merge_table() {
        let d = dr(RULE);
        // (subset, port) -> (lb, maxConnections, outlier present)
        type Case<'a> = (Option<&'a str>, Option<u16>, LbKind, u32, bool);
        let cases: &[Case] = &[
            (None, None, LbKind::RoundRobin, 100, true),
            (Some("v1"), None, LbKind::RoundRobin, 100, true),
            // Subset overrides its connectionPool block only.
            (Some("v2"), None, LbKind::RoundRobin, 1, true),
            // Host port-level entry replaces: only its LB, defaults elsewhere.
            (None, Some(8080), LbKind::Random, u32::MAX, false),
            (Some("v2"), Some(8080), LbKind::Random, 1, false),
            // Subset port-level entry replaces every block of the merge.
            (Some("v3"), Some(80), LbKind::LeastRequest, u32::MAX, false),
            (Some("v3"), Some(81), LbKind::RoundRobin, 100, true),
        ];
        for (s, port, lb, max_cx, outlier) in cases {
            let c = ClusterPolicy::for_destination(Some(&d), *s, *port).unwrap();
            assert_eq!(c.lb.kind, *lb, "{s:?} {port:?}");
            assert_eq!(c.limits.max_connections, *max_cx, "{s:?} {port:?}");
            assert_eq!(c.outlier.is_some(), *outlier, "{s:?} {port:?}");
        }
    }

    #[test]
    fn no_rule_means_istio_defaults() {
        let c = ClusterPolicy::for_destination(None, None, None).unwrap();
        assert_eq!(c.lb.kind, LbKind::LeastRequest);
        assert_eq!(c.limits, Limits::default());
        assert!(c.outlier.is_none());
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn connection_settings() {
        let d = dr(
            "spec: {host: a.b, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 30ms, idleTimeout: 0s, tcpKeepalive: {time: 60s}}, http: {maxRequestsPerConnection: 1}}}}",
        );
        let c = ClusterPolicy::for_destination(Some(&d), None, None).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(30));
        assert_eq!(c.idle_timeout, None, "0s disables");
        assert_eq!(c.max_requests_per_connection, Some(1));
        assert_eq!(c.keepalive.unwrap().time, Some(Duration::from_secs(60)));
        let d = dr(
            "spec: {host: a.b, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 10s}, http: {idleTimeout: 5s}}}}",
        );
        let c = ClusterPolicy::for_destination(Some(&d), None, None).unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(5)), "http wins");
    }

    #[test]
    fn subsets_select_revisions_by_label() {
        let d = dr(RULE);
        let l = |rev: &str| -> BTreeMap<String, String> {
            [
                ("serving.knative.dev/revision".to_string(), rev.to_string()),
                (
                    "serving.knative.dev/service".to_string(),
                    "hello".to_string(),
                ),
            ]
            .into()
        };
        let (a, b) = (l("hello-00001"), l("hello-00002"));
        let members = [(&a, "hello-00001"), (&b, "hello-00002")];
        assert_eq!(select(subset(&d, "v2").unwrap(), members), ["hello-00002"]);
        assert!(select(subset(&d, "v3").unwrap(), members).is_empty());
    }

    #[test]
    fn lookup_by_host() {
        let rules = DestinationRules::new([
            dr("metadata: {name: wild, namespace: default}\nspec: {host: '*.example.com'}"),
            dr("metadata: {name: wider, namespace: default}\nspec: {host: '*.com'}"),
            dr("metadata: {name: exact, namespace: default}\nspec: {host: api.example.com}"),
            dr("metadata: {name: short, namespace: shop}\nspec: {host: cart}"),
            dr(
                "metadata: {name: mine, namespace: team}\nspec: {host: cart.shop.svc.cluster.local, exportTo: ['.']}",
            ),
        ]);
        let name = |h: &str, ns: &str| rules.lookup(h, ns).map(|d| d.metadata.name.clone());
        assert_eq!(name("api.example.com", "x").as_deref(), Some("exact"));
        assert_eq!(name("web.example.com", "x").as_deref(), Some("wild"));
        assert_eq!(name("other.com", "x").as_deref(), Some("wider"));
        assert_eq!(
            name("cart.shop.svc.cluster.local", "x").as_deref(),
            Some("short")
        );
        assert_eq!(
            name("cart.shop.svc.cluster.local", "team").as_deref(),
            Some("mine")
        );
        assert_eq!(name("nothing.org", "x"), None);
        assert_eq!(
            qualify_host("Reviews", "bookinfo"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(host_namespace("cart.shop.svc.cluster.local"), Some("shop"));
        assert_eq!(host_namespace("example.com"), None);
    }
}
