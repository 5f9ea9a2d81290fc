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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::activator::{Backend, Backends};
use crate::cluster::Cluster;
use crate::endpoint::Endpoint;
use crate::istio::circuit_breaker::{CircuitBreaker, UNLIMITED};
use crate::istio::fault::AbortKind;
use crate::istio::lb::{HashKey, LbKind};
use crate::istio::matcher::Matcher;
use crate::istio::outlier::OutlierDetector;
use crate::istio::policy::ClusterPolicy;
use crate::istio::retry::RetryPolicy;
use crate::istio::rewrite::UriRewrite;
use crate::istio::route::{Action, DestinationRef, HttpRule};
use crate::istio::time::MonoTime;
use crate::listeners::ListenerState;
use crate::table::RoutingTable;

// ------------------------------------------------------------------ views

/// `proxy-config routes`: what each host on each listener is routed by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutesView {
    /// The routing table's version.
    pub version: u64,
    /// Hosts with VirtualService rules, per listener.
    pub virtual_hosts: Vec<VirtualHostView>,
    /// Knative's routes (used where no VirtualService claims the host).
    pub knative: Vec<KnativeRouteView>,
}

/// Which Knative routes a host belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    External,
    ClusterLocal,
}

/// One host of a Knative route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnativeRouteView {
    pub host: String,
    pub visibility: Visibility,
    /// `namespace/route` (and tag).
    pub route: String,
    /// Listeners serving the host with this route now: those for its
    /// visibility with no VirtualService for the host.
    pub listeners: Vec<String>,
    pub traffic: Vec<RevisionShare>,
}

/// A revision and its percent of a Knative route's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionShare {
    /// `namespace/name`.
    pub revision: String,
    pub percent: u32,
}

/// The VirtualService rules of one host on one listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualHostView {
    pub listener: String,
    /// As bound: `shop.example.com`, `*.example.com`, `*`.
    pub host: String,
    /// Plain HTTP is redirected to https (`tls.httpsRedirect`).
    pub https_redirect: bool,
    /// The gateway's AuthorizationPolicies are checked for this host.
    pub authorization: bool,
    /// In the order they are tried: the first that matches wins.
    pub rules: Vec<RuleView>,
}

/// One compiled HTTP rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// `namespace/name` of the VirtualService it comes from.
    pub virtual_service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Any one matching is enough; none means every request matches.
    pub matches: Vec<MatchView>,
    pub action: ActionView,
    /// The route timeout (`None`: off, Istio's default).
    pub timeout_ms: Option<u64>,
    pub retries: RetryView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorView>,
    /// A CORS policy answers preflights and adds headers.
    pub cors: bool,
}

/// One `match` entry: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchView {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatchView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatchView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatchView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatchView>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatchView>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatchView>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatchView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Istio's `StringMatch`: one of `exact`, `prefix`, `suffix`, `regex`, or
/// none of them for "present".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringMatchView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Matches the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
}

/// What a matched rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionView {
    /// Forward to one of the destinations by weight.
    Route {
        destinations: Vec<DestinationView>,
    },
    Redirect {
        status: u16,
        redirect: String,
    },
    DirectResponse {
        status: u16,
        body_bytes: usize,
    },
    /// A delegate VirtualService's rules, tried in order.
    Delegate {
        rules: Vec<RuleView>,
    },
}

/// A destination and the cluster it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationView {
    /// As the VirtualService names it.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its share among the rule's destinations (reduced: 80/20 is 4/1).
    pub weight: u32,
    /// `None`: no such host or subset; requests get 503 `NC`.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryView {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// `retryOn` conditions, retriable status codes last.
    pub retry_on: Vec<String>,
    pub per_try_timeout_ms: Option<u64>,
    /// Retries the app may have seen only repeat idempotent methods.
    pub idempotent_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteView {
    /// Replaces the part of the path the match consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `(pattern, substitution)`: every match of the pattern in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_percent: Option<f64>,
    /// `http 503` or `grpc 14`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorView {
    pub destination: DestinationView,
    pub percent: f64,
}

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

/// `proxy-config listeners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenersView {
    pub listeners: Vec<ListenerView>,
}

/// One running listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerView {
    /// The address asked for (its bound address when port 0 was asked).
    pub address: String,
    pub bound: String,
    /// Terminates TLS.
    pub tls: bool,
    /// Host names TLS servers answer for (SNI).
    pub sni_hosts: Vec<String>,
    /// `namespace/name` of the Secrets holding its certificates.
    pub credentials: Vec<String>,
    pub proxy_protocol: bool,
    /// Proxies in front whose X-Forwarded-For entries are trusted.
    pub xff_trusted_hops: u32,
    /// The port VirtualService `port` matches see.
    pub gateway_port: Option<u16>,
    /// Which Knative routes it serves.
    pub knative_routes: Vec<Visibility>,
    /// Every server redirects plain HTTP to https.
    pub https_redirect: bool,
    pub keepalive_idle_ms: Option<u64>,
    pub servers: Vec<ServerView>,
    /// Hosts with VirtualService rules here.
    pub virtual_hosts: usize,
    /// Connections open now.
    pub connections: usize,
}

/// A Gateway server bound to a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    pub port: u32,
    pub protocol: String,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_mode: Option<String>,
}

// --------------------------------------------------------------- building

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn limit(v: u32) -> Option<u32> {
    (v != UNLIMITED).then_some(v)
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::Relaxed)
}

/// Routes of `table`; `listeners` (the running ones) tell where Knative's
/// routes are served.
pub fn routes(table: &RoutingTable, listeners: &[ListenerState]) -> RoutesView {
    let clusters = &table.istio.clusters;
    let mut virtual_hosts: Vec<VirtualHostView> = table
        .istio
        .listeners()
        .flat_map(|(addr, lr)| {
            lr.hosts.iter().map(move |(host, vh)| VirtualHostView {
                listener: addr.to_string(),
                host,
                https_redirect: vh.require_tls,
                authorization: vh.authz.as_ref().is_some_and(|a| !a.is_empty()),
                rules: vh
                    .routes
                    .rules()
                    .iter()
                    .map(|r| rule_view(r, clusters))
                    .collect(),
            })
        })
        .collect();
    virtual_hosts.sort_by(|a, b| (&a.listener, &a.host).cmp(&(&b.listener, &b.host)));
    let mut knative: Vec<KnativeRouteView> = table
        .hosts()
        .map(|(host, local, route)| {
            let visibility = if local {
                Visibility::ClusterLocal
            } else {
                Visibility::External
            };
            let serving = listeners
                .iter()
                .filter(|l| {
                    let in_scope = if local {
                        l.info.scope.local
                    } else {
                        l.info.scope.external
                    };
                    // A VirtualService bound to the host there takes it.
                    let claimed = table
                        .istio
                        .listener(l.info.addr)
                        .is_some_and(|lr| lr.hosts.lookup(host).is_some());
                    in_scope && !claimed
                })
                .map(|l| l.info.addr.to_string())
                .collect();
            KnativeRouteView {
                host: host.to_string(),
                visibility,
                route: route.name.to_string(),
                listeners: serving,
                traffic: route
                    .traffic()
                    .map(|(b, percent)| RevisionShare {
                        revision: b.revision.to_string(),
                        percent,
                    })
                    .collect(),
            }
        })
        .collect();
    knative.sort_by(|a, b| (a.visibility, &a.host).cmp(&(b.visibility, &b.host)));
    RoutesView {
        version: table.version,
        virtual_hosts,
        knative,
    }
}

fn rule_view(r: &HttpRule, clusters: &[Arc<Cluster>]) -> RuleView {
    let action = match &r.action {
        Action::Route(t) => ActionView::Route {
            destinations: t
                .targets()
                .iter()
                .map(|t| destination_view(&t.destination, t.weight, clusters))
                .collect(),
        },
        Action::Redirect(rd) => ActionView::Redirect {
            status: rd.status.as_u16(),
            redirect: rd.describe(),
        },
        Action::Direct(d) => ActionView::DirectResponse {
            status: d.status.as_u16(),
            body_bytes: d.body.len(),
        },
        Action::Delegate(rules) => ActionView::Delegate {
            rules: rules.iter().map(|r| rule_view(r, clusters)).collect(),
        },
    };
    RuleView {
        virtual_service: r.source.to_string(),
        name: r.name.to_string(),
        matches: r
            .matches()
            .iter()
            .map(|m| MatchView {
                name: m.route_name.to_string(),
                uri: m.uri.as_ref().map(string_match),
                scheme: m.scheme.as_ref().map(string_match),
                method: m.method.as_ref().map(string_match),
                authority: m.authority.as_ref().map(string_match),
                headers: string_matches(m.headers.iter().map(|(k, m)| (k.as_str(), m))),
                without_headers: string_matches(
                    m.without_headers.iter().map(|(k, m)| (k.as_str(), m)),
                ),
                query_params: string_matches(m.query.iter().map(|(k, m)| (&**k, m))),
                port: m.port,
            })
            .collect(),
        action,
        timeout_ms: r.timeout.map(millis),
        retries: retry_view(&r.retry),
        rewrite: r.rewrite.as_ref().map(|rw| {
            let (uri, uri_regex) = match &rw.uri {
                Some(UriRewrite::Prefix(p)) => (Some(p.to_string()), None),
                Some(UriRewrite::Regex { re, replacement }) => (
                    None,
                    Some((re.as_str().to_string(), replacement.to_string())),
                ),
                None => (None, None),
            };
            RewriteView {
                uri,
                uri_regex,
                authority: rw
                    .authority
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()),
            }
        }),
        fault: r.fault.as_ref().map(|f| FaultView {
            delay_ms: f.delay().map(|(d, _)| millis(d)),
            delay_percent: f.delay().map(|(_, ppm)| percent_of_ppm(ppm)),
            abort: f.abort().map(|(k, _)| match k {
                AbortKind::Http(s) => format!("http {}", s.as_u16()),
                AbortKind::Grpc(c) => format!("grpc {c}"),
            }),
            abort_percent: f.abort().map(|(_, ppm)| percent_of_ppm(ppm)),
        }),
        mirrors: r
            .mirrors
            .iter()
            .map(|m| MirrorView {
                destination: destination_view(&m.destination, 1, clusters),
                percent: percent_of_ppm(m.ppm()),
            })
            .collect(),
        cors: r.cors.is_some(),
    }
}

fn percent_of_ppm(ppm: u32) -> f64 {
    f64::from(ppm) / 10_000.0
}

fn destination_view(d: &DestinationRef, weight: u32, clusters: &[Arc<Cluster>]) -> DestinationView {
    DestinationView {
        host: d.host.to_string(),
        subset: d.subset.as_deref().map(str::to_string),
        port: d.port,
        weight,
        cluster: d
            .cluster
            .and_then(|i| clusters.get(i as usize))
            .map(|c| c.name.to_string()),
    }
}

/// A regex as the resource wrote it (compiled regexes are anchored).
fn regex_source(re: &regex::Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|r| r.strip_suffix(")$"))
        .unwrap_or(s)
}

fn string_match(m: &Matcher) -> StringMatchView {
    let mut v = StringMatchView::default();
    match m {
        Matcher::Exact { value, ignore_case } => {
            v.exact = Some(value.to_string());
            v.ignore_case = *ignore_case;
        }
        Matcher::Prefix { value, ignore_case } => {
            v.prefix = Some(value.to_string());
            v.ignore_case = *ignore_case;
        }
        Matcher::Suffix { value, ignore_case } => {
            v.suffix = Some(value.to_string());
            v.ignore_case = *ignore_case;
        }
        Matcher::Regex(re) => v.regex = Some(regex_source(re).to_string()),
        Matcher::Present => {}
    }
    v
}

fn string_matches<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a Matcher)>,
) -> BTreeMap<String, StringMatchView> {
    pairs
        .map(|(k, m)| (k.to_string(), string_match(m)))
        .collect()
}

fn retry_view(p: &RetryPolicy) -> RetryView {
    let mut retry_on: Vec<String> = p.retry_on.names().iter().map(|n| n.to_string()).collect();
    retry_on.extend(p.retriable_status_codes.iter().map(u16::to_string));
    RetryView {
        attempts: p.num_retries,
        retry_on,
        per_try_timeout_ms: p.per_try_timeout.map(millis),
        idempotent_only: p.idempotent_only,
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

fn hash_key(k: &HashKey) -> String {
    match k {
        HashKey::Header(h) => format!("header {h}"),
        HashKey::Cookie { name, .. } => format!("cookie {name}"),
        HashKey::SourceIp => "source ip".to_string(),
        HashKey::QueryParameter(p) => format!("query parameter {p}"),
    }
}

/// Available to new requests at `now`: not leaving, not ejected. Reads the
/// ejection without ending an expired one (that is the balancer's job).
fn takes_requests(e: &Endpoint, now: MonoTime) -> bool {
    !(e.is_retired() || e.is_draining() || ejected_until(e, now).is_some())
}

fn ejected_until(e: &Endpoint, now: MonoTime) -> Option<MonoTime> {
    e.outlier.ejected_until().filter(|until| *until > now)
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

/// The running listeners and what `table` binds to them.
pub fn listeners(table: &RoutingTable, running: &[ListenerState]) -> ListenersView {
    let listeners = running
        .iter()
        .map(|l| {
            let i = &l.info;
            let mut sni_hosts = Vec::new();
            let mut credentials = Vec::new();
            for s in i.servers.iter().filter(|s| s.terminates_tls()) {
                let ns = s.gateway.split('/').next().unwrap_or("");
                for h in &s.server.hosts {
                    // `ns/host` binds a host to VirtualServices of `ns`.
                    let host = h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h);
                    if !sni_hosts.iter().any(|x| x == host) {
                        sni_hosts.push(host.to_string());
                    }
                }
                if let Some(t) = s.tls() {
                    for c in t.credential_names() {
                        let c = format!("{ns}/{c}");
                        if !credentials.contains(&c) {
                            credentials.push(c);
                        }
                    }
                }
            }
            let mut knative_routes = Vec::new();
            if i.scope.external {
                knative_routes.push(Visibility::External);
            }
            if i.scope.local {
                knative_routes.push(Visibility::ClusterLocal);
            }
            ListenerView {
                address: i.addr.to_string(),
                bound: i.bound.to_string(),
                tls: i.tls,
                sni_hosts,
                credentials,
                proxy_protocol: i.proxy_protocol,
                xff_trusted_hops: i.xff_trusted_hops,
                gateway_port: i.gateway_port,
                knative_routes,
                https_redirect: i.https_redirect(),
                keepalive_idle_ms: i.keepalive_idle.map(millis),
                servers: i
                    .servers
                    .iter()
                    .map(|s| ServerView {
                        gateway: s.gateway.clone(),
                        port: s.server.port.as_ref().map_or(0, |p| p.number),
                        protocol: s
                            .server
                            .port
                            .as_ref()
                            .map_or(String::new(), |p| p.protocol.clone()),
                        hosts: s.server.hosts.clone(),
                        tls_mode: s.tls().map(|t| t.mode().to_string()),
                    })
                    .collect(),
                virtual_hosts: table
                    .istio
                    .listener(i.addr)
                    .map_or(0, |lr| lr.hosts.iter().count()),
                connections: l.connections,
            }
        })
        .collect();
    ListenersView { listeners }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::istio::binding::HostIndex;
    use crate::istio::outlier::OutlierResult;
    use crate::istio::route::{HttpRoutes, Resolver, Scope};
    use crate::listeners::{
        BoxFuture, Connection, ConnectionHandler, ListenerManager, ListenerSpec,
    };
    use crate::server::ListenerScope;
    use crate::table::{IstioRoutes, ListenerRoutes, TableBuilder, Target, VirtualHost};
    use skiff_api::istio::VirtualService;
    use skiff_api::istio::virtual_service::Destination;
    use std::net::SocketAddr;

    const LOCAL: &str = "127.0.0.1:8081";
    const CLUSTER: &str = "outbound||v2|hello.default.svc.cluster.local";

    /// `hello` resolves to the one cluster; any other host to none.
    struct OneCluster;

    impl Resolver for OneCluster {
        fn cluster(&mut self, d: &Destination, _ns: &str) -> Option<u32> {
            (d.host == "hello").then_some(0)
        }
        fn delegate(&mut self, _ns: &str, _name: &str) -> Option<&VirtualService> {
            None
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn endpoint(rev: &str, port: u16, instance: u64) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(
            addr(&format!("127.0.0.1:{port}")),
            rev.into(),
            instance,
            false,
        ))
    }

    /// Two revisions of `hello` (one instance each), Knative's route 90/10
    /// on the external and cluster-local hosts, and on the listener at
    /// `local` a VirtualService for the cluster-local host sending to subset
    /// v2 (the cluster: one connection, one pending request, ejection after
    /// one 5xx).
    struct Fixture {
        backends: Backends,
        v1: Arc<Endpoint>,
        v2: Arc<Endpoint>,
        cluster: Arc<Cluster>,
        table: RoutingTable,
    }

    fn fixture(local: SocketAddr) -> Fixture {
        let backends = Backends::default();
        let (b1, b2) = (
            backends.get("default/hello-00001"),
            backends.get("default/hello-00002"),
        );
        b1.configure(1, Duration::from_secs(300));
        b2.configure(0, Duration::from_secs(60));
        let (v1, v2) = (
            endpoint("default/hello-00001", 2001, 1),
            endpoint("default/hello-00002", 2002, 1),
        );
        b1.set_endpoints(vec![v1.clone()]);
        b2.set_endpoints(vec![v2.clone()]);

        let mut policy = ClusterPolicy::compile(Some(&crate::istio::testing::yaml(
            "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}, \
              outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 30s, maxEjectionPercent: 100}}",
        )))
        .unwrap();
        policy.lb = crate::istio::lb::LbConfig::from_api(Some(&crate::istio::testing::yaml(
            "{simple: ROUND_ROBIN}",
        )))
        .unwrap();
        let outlier = OutlierDetector::new(
            policy.outlier.clone().unwrap(),
            vec![v2.outlier.clone()],
            Arc::default(),
        );
        let cluster = Arc::new(Cluster::new(
            CLUSTER,
            "hello.default.svc.cluster.local",
            Some("v2"),
            policy.clone(),
            vec![Member::new(b2.clone(), 1, Arc::default())],
            CircuitBreaker::new(policy.limits),
            Some(outlier),
            Arc::default(),
        ));

        let vs: VirtualService = crate::istio::testing::yaml(
            "metadata: {name: hello, namespace: default}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-user: {regex: 'a.*'}}
    - uri: {exact: /v2}
    route: [{destination: {host: hello, subset: v2}}]
    timeout: 2s
    retries: {attempts: 3, retryOn: '5xx,503'}
  - route:
    - {destination: {host: hello, subset: v2}, weight: 80}
    - {destination: {host: nowhere}, weight: 20}
    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
",
        );
        let mut routes = HttpRoutes::default();
        routes
            .add(&vs, Scope::default(), &mut OneCluster)
            .expect("the VirtualService compiles");
        let mut hosts = HostIndex::default();
        hosts.insert(
            "hello.default.svc.cluster.local",
            Arc::new(VirtualHost {
                host: "hello.default.svc.cluster.local".into(),
                routes,
                authz: None,
                require_tls: false,
            }),
        );
        let mut b = TableBuilder::new(7);
        let targets = [
            Target {
                backend: b1,
                percent: 90,
                counters: Arc::default(),
            },
            Target {
                backend: b2,
                percent: 10,
                counters: Arc::default(),
            },
        ];
        b.route(
            "default/hello",
            &["hello.default.127.0.0.1.sslip.io".to_string()],
            false,
            &targets,
        );
        b.route(
            "default/hello",
            &["hello.default.svc.cluster.local".to_string()],
            true,
            &targets,
        );
        b.istio(IstioRoutes::new(
            vec![(local, ListenerRoutes { hosts, authz: None })],
            vec![cluster.clone()],
        ));
        Fixture {
            backends,
            v1,
            v2,
            cluster,
            table: b.build(),
        }
    }

    /// Serves no connection: the listener tests only look at listeners.
    struct Ignore;

    impl ConnectionHandler for Ignore {
        fn serve(&self, _conn: Connection) -> BoxFuture {
            Box::pin(async {})
        }
    }

    fn spec(scope: ListenerScope) -> ListenerSpec {
        let mut s = ListenerSpec::plain(addr("127.0.0.1:0"), Vec::new());
        s.scope = scope;
        s
    }

    #[test]
    fn routes_show_rules_in_order_with_their_clusters_and_knative_splits() {
        let f = fixture(addr(LOCAL));
        let v = routes(&f.table, &[]);
        assert_eq!(v.version, 7);
        assert_eq!(v.virtual_hosts.len(), 1);
        let vh = &v.virtual_hosts[0];
        assert_eq!(
            (vh.listener.as_str(), vh.host.as_str()),
            (LOCAL, "hello.default.svc.cluster.local")
        );
        let [api, rest] = &vh.rules[..] else {
            panic!("two rules: {:?}", vh.rules);
        };
        assert_eq!(api.virtual_service, "default/hello");
        assert_eq!(api.name, "api");
        assert_eq!(api.matches.len(), 2);
        assert_eq!(
            api.matches[0].uri.as_ref().unwrap().prefix.as_deref(),
            Some("/api")
        );
        assert_eq!(
            api.matches[0].headers["x-user"].regex.as_deref(),
            Some("a.*"),
            "the regex as written, not as anchored"
        );
        assert_eq!(
            api.matches[1].uri.as_ref().unwrap().exact.as_deref(),
            Some("/v2")
        );
        assert_eq!(api.timeout_ms, Some(2000));
        assert_eq!(api.retries.attempts, 3);
        assert_eq!(
            api.retries.retry_on,
            ["5xx", "retriable-status-codes", "503"]
        );
        let ActionView::Route { destinations } = &rest.action else {
            panic!("a route: {:?}", rest.action);
        };
        assert_eq!(destinations[0].cluster.as_deref(), Some(CLUSTER));
        assert_eq!((destinations[0].weight, destinations[1].weight), (4, 1));
        assert_eq!(
            destinations[1].cluster, None,
            "an unknown host has no cluster"
        );
        assert!(rest.matches.is_empty());
        let fault = rest.fault.as_ref().unwrap();
        assert_eq!(
            (fault.abort.as_deref(), fault.abort_percent),
            (Some("http 503"), Some(10.0))
        );
        assert_eq!(rest.timeout_ms, None, "no route timeout unless set");

        assert_eq!(v.knative.len(), 2);
        let ext = &v.knative[0];
        assert_eq!(
            (ext.host.as_str(), ext.visibility, ext.route.as_str()),
            (
                "hello.default.127.0.0.1.sslip.io",
                Visibility::External,
                "default/hello"
            )
        );
        assert_eq!(
            ext.traffic,
            [
                RevisionShare {
                    revision: "default/hello-00001".into(),
                    percent: 90
                },
                RevisionShare {
                    revision: "default/hello-00002".into(),
                    percent: 10
                }
            ]
        );
        assert_eq!(v.knative[1].visibility, Visibility::ClusterLocal);
        // The JSON the admin API sends reads back as the same view.
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<RoutesView>(&json).unwrap(), v);
        assert!(json.contains(r#""visibility":"cluster-local""#), "{json}");
    }

    #[test]
    fn clusters_show_policy_and_live_breaker_and_outlier_state() {
        let f = fixture(addr(LOCAL));
        let now = MonoTime::now();
        // One request holds the only connection; the next waits; a third
        // overflows. Then the v2 instance answers a 500 and is ejected.
        let breaker = &f.cluster.breaker;
        let _request = breaker.try_request().unwrap();
        let _connection = breaker.try_connection().unwrap();
        assert!(breaker.try_connection().is_none());
        let detector = f.cluster.outlier.as_ref().unwrap();
        detector.report(&f.v2.outlier, OutlierResult::Http(500), now);

        let v = clusters(&f.table, &f.backends, now);
        let names: Vec<&str> = v.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["default/hello-00001", "default/hello-00002", CLUSTER],
            "revisions first, then destinations"
        );
        let rev = &v.clusters[0];
        assert_eq!(rev.kind, ClusterKind::Revision);
        assert_eq!((rev.endpoints, rev.healthy_endpoints), (1, 1));
        let r = rev.revision.as_ref().unwrap();
        assert_eq!((r.container_concurrency, r.timeout_seconds), (Some(1), 300));
        assert_eq!(rev.lb, "FIRST_AVAILABLE", "the activator fills instances");
        assert!(rev.circuit_breakers.is_none());
        assert_eq!(
            v.clusters[1].healthy_endpoints, 0,
            "v2's instance is ejected"
        );

        let c = &v.clusters[2];
        assert_eq!(c.kind, ClusterKind::Destination);
        assert_eq!(c.subset.as_deref(), Some("v2"));
        assert_eq!(c.lb, "ROUND_ROBIN");
        assert_eq!(
            c.revisions,
            [RevisionWeight {
                revision: "default/hello-00002".into(),
                weight: 1
            }]
        );
        let cb = c.circuit_breakers.as_ref().unwrap();
        assert_eq!(
            (cb.max_connections, cb.max_pending_requests, cb.max_requests),
            (Some(1), Some(1), None)
        );
        assert_eq!((cb.active_requests, cb.active_connections), (1, 1));
        assert_eq!(cb.cx_overflow, 1);
        let od = c.outlier_detection.as_ref().unwrap();
        assert_eq!(od.consecutive_5xx_errors, Some(1));
        assert_eq!(od.base_ejection_time_ms, 30_000);
        assert_eq!((od.ejections_active, od.ejections_enforced_total), (1, 1));
        assert_eq!((c.endpoints, c.healthy_endpoints), (1, 0));
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<ClustersView>(&json).unwrap(), v);
    }

    #[test]
    fn endpoints_show_health_ejection_and_counts_per_cluster() {
        let f = fixture(addr(LOCAL));
        let now = MonoTime::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        f.cluster
            .outlier
            .as_ref()
            .unwrap()
            .report(&f.v2.outlier, OutlierResult::Http(503), now);
        assert!(f.v1.try_acquire());
        f.v1.drain();

        let v = endpoints(&f.table, &f.backends, now, wall);
        let rows: Vec<(&str, &str)> = v
            .endpoints
            .iter()
            .map(|e| (e.cluster.as_str(), e.address.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("default/hello-00001", "127.0.0.1:2001"),
                ("default/hello-00002", "127.0.0.1:2002"),
                (CLUSTER, "127.0.0.1:2002"),
            ]
        );
        let v1 = &v.endpoints[0];
        assert_eq!(v1.status, EndpointStatus::Draining);
        assert_eq!((v1.in_flight, v1.capacity), (1, Some(1)));
        assert!(!v1.ejected);
        for e in &v.endpoints[1..] {
            assert_eq!(e.status, EndpointStatus::Healthy);
            assert!(e.ejected, "{e:?}");
            assert_eq!(e.ejections, 1);
            assert_eq!(e.ejection_remaining_ms, Some(30_000));
            assert_eq!(e.ejected_until.as_deref(), Some("2023-11-14T22:13:50Z"));
            assert_eq!(e.capacity, None, "containerConcurrency 0 is unlimited");
        }
        // Once the ejection is over the endpoint is back, its count kept.
        let later = endpoints(
            &f.table,
            &f.backends,
            now.plus(Duration::from_secs(31)),
            wall,
        );
        assert!(!later.endpoints[2].ejected);
        assert_eq!(later.endpoints[2].ejections, 1);
        f.v1.release();
    }

    #[tokio::test]
    async fn listeners_show_scope_servers_and_connections() {
        let mut m = ListenerManager::new(vec![], Arc::new(Ignore));
        let r = m
            .apply(vec![
                spec(ListenerScope {
                    external: true,
                    local: false,
                }),
                spec(ListenerScope {
                    external: false,
                    local: true,
                }),
            ])
            .await;
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let running = m.live().snapshot();
        let (external, local) = match (
            running.iter().find(|l| l.info.scope.external),
            running.iter().find(|l| l.info.scope.local),
        ) {
            (Some(e), Some(l)) => (e.info.addr, l.info.addr),
            _ => panic!("both listeners run: {running:?}"),
        };
        let f = fixture(local);
        let v = listeners(&f.table, &running);
        assert_eq!(v.listeners.len(), 2);
        let scopes: Vec<&[Visibility]> = v
            .listeners
            .iter()
            .map(|l| l.knative_routes.as_slice())
            .collect();
        assert!(scopes.contains(&&[Visibility::External][..]));
        assert!(scopes.contains(&&[Visibility::ClusterLocal][..]));
        for l in &v.listeners {
            assert!(!l.tls && !l.proxy_protocol);
            assert_eq!(l.address, l.bound);
            assert_eq!(l.connections, 0);
            let hosts = usize::from(l.address == local.to_string());
            assert_eq!(l.virtual_hosts, hosts, "{l:?}");
        }
        // Knative's routes are served where their visibility is, unless
        // a VirtualService claims the host on that listener.
        let routes = routes(&f.table, &running);
        assert_eq!(routes.knative[0].visibility, Visibility::External);
        assert_eq!(routes.knative[0].listeners, [external.to_string()]);
        assert_eq!(routes.knative[1].visibility, Visibility::ClusterLocal);
        assert!(
            routes.knative[1].listeners.is_empty(),
            "the VirtualService takes the cluster-local host"
        );
        m.close_all().await;
        assert!(m.live().snapshot().is_empty());
    }

    #[test]
    fn matches_keep_istio_s_shape_in_json() {
        let m = string_match(&Matcher::Present);
        assert_eq!(serde_json::to_string(&m).unwrap(), "{}");
        let m = string_match(&Matcher::Prefix {
            value: "/a".into(),
            ignore_case: true,
        });
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"prefix":"/a","ignore_case":true}"#
        );
        assert_eq!(
            hash_key(&HashKey::Header(http::HeaderName::from_static("x-user"))),
            "header x-user"
        );
    }
}
