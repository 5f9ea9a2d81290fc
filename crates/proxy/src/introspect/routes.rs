//! `proxy-config routes`: how each host on each listener is routed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::istio::fault::AbortKind;
use crate::istio::matcher::Matcher;
use crate::istio::retry::RetryPolicy;
use crate::istio::rewrite::UriRewrite;
use crate::istio::route::{Action, DestinationRef, HttpRule};
use crate::listeners::ListenerState;
use crate::table::RoutingTable;

use super::millis;

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

pub(super) fn string_match(m: &Matcher) -> StringMatchView {
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
