//! VirtualService HTTP rules, compiled for the hot path: an ordered list
//! where the first rule whose match succeeds wins (a rule without `match`
//! matches everything; the `match` list is OR, the fields of one match are
//! AND). A matched rule forwards to weighted destinations, redirects,
//! replies directly, or hands over to a delegate VirtualService.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderName;
use skiff_api::istio::VirtualService;
use skiff_api::istio::duration;
use skiff_api::istio::virtual_service::{Destination, HttpMatchRequest, HttpRoute};

use super::binding::qualify_gateway;
use super::cors::Cors;
use super::fault::Fault;
use super::header_ops::HeaderRules;
use super::matcher::Matcher;
use super::rand;
use super::request::RequestView;
use super::retry::{NON_IDEMPOTENT_ANNOTATION, RetryPolicy};
use super::rewrite::{Redirect, Rewrite};
use crate::split::Split;

/// Where a destination goes: what the VirtualService named, and the cluster
/// the table resolved it to (`None`: no such host or subset — 503 `NC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRef {
    pub host: Box<str>,
    pub subset: Option<Box<str>>,
    pub port: Option<u16>,
    pub cluster: Option<u32>,
}

impl DestinationRef {
    /// Envoy's cluster name: `outbound|<port>|<subset>|<host>`.
    pub fn cluster_name(&self) -> String {
        format!(
            "outbound|{}|{}|{}",
            self.port.map_or(String::new(), |p| p.to_string()),
            self.subset.as_deref().unwrap_or(""),
            self.host
        )
    }
}

/// One weighted destination of a rule.
#[derive(Debug)]
pub struct RouteTarget {
    pub destination: DestinationRef,
    pub weight: u32,
    /// Applied after the rule's own header operations.
    pub headers: HeaderRules,
}

/// The destinations of a `route` rule and the weighted split over them.
pub struct RouteTargets {
    targets: Box<[RouteTarget]>,
    split: Split,
}

impl std::fmt::Debug for RouteTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.targets.iter()).finish()
    }
}

impl RouteTargets {
    /// The destination for the next request (deterministic smooth weighted
    /// round robin: exact shares over every window of sum(weights)).
    #[inline]
    pub fn pick(&self) -> &RouteTarget {
        &self.targets[self.split.pick()]
    }

    pub fn targets(&self) -> &[RouteTarget] {
        &self.targets
    }
}

/// Largest total weight a split schedule gets (weights are reduced by
/// their gcd, then scaled down if still above).
const MAX_SPLIT_TOTAL: u64 = 10_000;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Weights for the split: Istio drops zero weights when others are set, a
/// lone destination gets everything, and big weights keep their ratios
/// without an unbounded schedule.
fn normalize(weights: &[u32]) -> Vec<u32> {
    if weights.len() == 1 || weights.iter().all(|w| *w == 0) {
        let mut w = vec![0; weights.len()];
        w[0] = 1;
        return w;
    }
    let g = weights
        .iter()
        .filter(|w| **w > 0)
        .fold(0u64, |g, w| gcd(g, u64::from(*w)));
    let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x) / g.max(1)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SPLIT_TOTAL {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * MAX_SPLIT_TOTAL / total).max(1);
        }
    }
    w.into_iter().map(|x| x as u32).collect()
}

/// A mirror (fire-and-forget copy) of a rule's traffic.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub destination: DestinationRef,
    ppm: u32,
}

impl Mirror {
    /// Decide for one request (`percentage` absent = 100%).
    #[inline]
    pub fn sample(&self) -> bool {
        self.ppm >= 1_000_000 || rand::ppm_roll() < self.ppm
    }

    pub fn sample_with(&self, roll: u32) -> bool {
        roll < self.ppm
    }

    /// The share of requests mirrored, in parts per million.
    pub fn ppm(&self) -> u32 {
        self.ppm
    }
}

/// Envoy appends this to the Host/authority of mirrored requests.
pub const SHADOW_SUFFIX: &str = "-shadow";

#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum Action {
    Route(RouteTargets),
    Redirect(Redirect),
    Direct(DirectResponse),
    /// The delegate VirtualService's rules, tried in order once this rule's
    /// match succeeded; if none matches, matching goes on after this rule.
    Delegate(Box<[HttpRule]>),
}

#[derive(Debug)]
pub(crate) enum HeaderKey {
    Name(HeaderName),
    Pseudo(&'static str),
}

impl HeaderKey {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            HeaderKey::Name(n) => n.as_str(),
            HeaderKey::Pseudo(p) => p,
        }
    }
}

/// One compiled `match` entry (its fields are ANDed).
#[derive(Debug)]
pub(crate) struct CompiledMatch {
    /// `rule.match` name for `%ROUTE_NAME%`.
    pub(crate) route_name: Box<str>,
    pub(crate) uri: Option<Matcher>,
    pub(crate) scheme: Option<Matcher>,
    pub(crate) method: Option<Matcher>,
    pub(crate) authority: Option<Matcher>,
    pub(crate) headers: Box<[(HeaderKey, Matcher)]>,
    pub(crate) without_headers: Box<[(HeaderKey, Matcher)]>,
    pub(crate) query: Box<[(Box<str>, Matcher)]>,
    pub(crate) port: Option<u16>,
}

impl CompiledMatch {
    fn header_matches(req: &RequestView<'_>, key: &HeaderKey, m: &Matcher) -> Option<bool> {
        match key {
            HeaderKey::Pseudo(p) => req.pseudo(p).map(|v| m.matches(v)),
            HeaderKey::Name(n) => req.header(n).map(|v| m.matches(&v)),
        }
    }

    /// How much of the path this match consumed, if it matches.
    fn check(&self, req: &RequestView<'_>) -> Option<usize> {
        if let Some(p) = self.port
            && p != req.port
        {
            return None;
        }
        let mut matched_len = 1.min(req.path.len());
        if let Some(u) = &self.uri {
            if !u.matches(req.path) {
                return None;
            }
            matched_len = u.prefix_len().unwrap_or(req.path.len());
        }
        for (m, v) in [
            (&self.method, req.method),
            (&self.scheme, req.scheme),
            (&self.authority, req.authority),
        ] {
            if let Some(m) = m
                && !m.matches(v)
            {
                return None;
            }
        }
        for (k, m) in self.headers.iter() {
            if Self::header_matches(req, k, m) != Some(true) {
                return None;
            }
        }
        for (k, m) in self.without_headers.iter() {
            if Self::header_matches(req, k, m) == Some(true) {
                return None;
            }
        }
        for (name, m) in self.query.iter() {
            match req.query_param(name) {
                Some(v) if m.matches(v) => {}
                _ => return None,
            }
        }
        Some(matched_len)
    }
}

/// One compiled HTTP rule.
#[derive(Debug)]
pub struct HttpRule {
    /// `namespace/virtualservice` the rule comes from.
    pub source: Box<str>,
    /// The rule's `name` (may be empty).
    pub name: Box<str>,
    matches: Box<[CompiledMatch]>,
    pub action: Action,
    pub rewrite: Option<Rewrite>,
    /// `timeout` (`None`: disabled, Istio's default).
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fault: Option<Fault>,
    pub mirrors: Box<[Mirror]>,
    pub cors: Option<Cors>,
    pub headers: HeaderRules,
}

impl HttpRule {
    /// The rule's `match` entries (ORed; empty: matches everything).
    pub(crate) fn matches(&self) -> &[CompiledMatch] {
        &self.matches
    }
}

/// The outcome of matching: the rule, and what the request's path matched.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'r> {
    pub rule: &'r HttpRule,
    /// Bytes of the path the match consumed (for prefix rewrites).
    pub matched_len: usize,
    /// `%ROUTE_NAME%`.
    pub route_name: &'r str,
}

/// Ordered HTTP rules of the VirtualServices bound to one host.
#[derive(Debug, Default)]
pub struct HttpRoutes {
    rules: Vec<HttpRule>,
}

/// What the compiler needs from the routing table.
pub trait Resolver {
    /// The cluster a destination resolves to (`None`: unknown host or
    /// undefined subset). `namespace` is the VirtualService's.
    fn cluster(&mut self, destination: &Destination, namespace: &str) -> Option<u32>;
    /// A delegate VirtualService (`namespace/name`).
    fn delegate(&mut self, namespace: &str, name: &str) -> Option<&VirtualService>;
    /// Where a weighted split identified by `key` continues from, so that a
    /// rebuilt snapshot keeps the exact shares of the one before (`None`:
    /// start afresh).
    fn split_counter(&mut self, _key: &str) -> Option<Arc<AtomicUsize>> {
        None
    }
}

/// Compile context: which gateway the rules are compiled for (matches that
/// list other gateways are dropped, as Istio filters them per proxy).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// `namespace/name` of the gateway, `None` for the mesh.
    pub gateway: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: http[{rule}]: {message}")]
pub struct CompileError {
    pub source_name: String,
    pub rule: usize,
    pub message: String,
}

fn header_key(name: &str) -> Result<Option<HeaderKey>, String> {
    let lower = name.to_ascii_lowercase();
    Ok(match lower.as_str() {
        // Istio ignores these keys in header matches.
        "uri" | "scheme" | "method" | "authority" => None,
        ":method" => Some(HeaderKey::Pseudo(":method")),
        ":authority" | ":host" => Some(HeaderKey::Pseudo(":authority")),
        ":scheme" => Some(HeaderKey::Pseudo(":scheme")),
        ":path" => Some(HeaderKey::Pseudo(":path")),
        n => Some(HeaderKey::Name(
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?,
        )),
    })
}

fn compile_headers(
    map: &BTreeMap<String, skiff_api::istio::StringMatch>,
) -> Result<Box<[(HeaderKey, Matcher)]>, String> {
    let mut out = Vec::new();
    for (k, v) in map {
        if let Some(key) = header_key(k)? {
            out.push((key, Matcher::from_api(v, false)?));
        }
    }
    Ok(out.into_boxed_slice())
}

fn route_name(rule: &str, m: &str) -> Box<str> {
    match (rule.is_empty(), m.is_empty()) {
        (false, false) => format!("{rule}.{m}").into(),
        (false, true) => rule.into(),
        (true, false) => m.into(),
        (true, true) => "".into(),
    }
}

fn compile_match(m: &HttpMatchRequest, rule_name: &str) -> Result<CompiledMatch, String> {
    let opt = |s: &Option<skiff_api::istio::StringMatch>, ic: bool| {
        s.as_ref().map(|s| Matcher::from_api(s, ic)).transpose()
    };
    let mut query = Vec::new();
    for (k, v) in &m.query_params {
        // `{}` is presence; `exact: ""` matches `?key` (an empty value).
        query.push((k.as_str().into(), Matcher::from_api(v, false)?));
    }
    Ok(CompiledMatch {
        route_name: route_name(rule_name, &m.name),
        uri: opt(&m.uri, m.ignore_uri_case)?,
        scheme: opt(&m.scheme, false)?,
        method: opt(&m.method, false)?,
        authority: opt(&m.authority, false)?,
        headers: compile_headers(&m.headers)?,
        without_headers: compile_headers(&m.without_headers)?,
        query: query.into_boxed_slice(),
        port: m
            .port
            .map(|p| u16::try_from(p).map_err(|_| format!("port {p} out of range")))
            .transpose()?,
    })
}

fn destination_ref(d: &Destination, ns: &str, resolver: &mut dyn Resolver) -> DestinationRef {
    DestinationRef {
        host: d.host.as_str().into(),
        subset: (!d.subset.is_empty()).then(|| d.subset.as_str().into()),
        port: d.port.and_then(|p| u16::try_from(p.number).ok()),
        cluster: resolver.cluster(d, ns),
    }
}

fn percent_ppm(p: Option<f64>) -> u32 {
    p.map_or(1_000_000, |v| (v * 10_000.0).clamp(0.0, 1_000_000.0) as u32)
}

fn compile_rule(
    r: &HttpRoute,
    vs: &VirtualService,
    scope: Scope<'_>,
    resolver: &mut dyn Resolver,
    depth: u8,
) -> Result<Option<HttpRule>, String> {
    let ns = vs.metadata.namespace.as_str();
    let mut matches = Vec::with_capacity(r.matches.len());
    for m in &r.matches {
        // Per-proxy selectors: a match naming gateways applies only there.
        if !m.gateways.is_empty() {
            let here = scope
                .gateway
                .unwrap_or(skiff_api::istio::virtual_service::MESH_GATEWAY);
            if !m.gateways.iter().any(|g| qualify_gateway(g, ns) == here) {
                continue;
            }
        }
        matches.push(compile_match(m, &r.name)?);
    }
    if !r.matches.is_empty() && matches.is_empty() {
        // Every match was for other gateways: the rule is not here at all.
        return Ok(None);
    }
    let action = if let Some(rd) = &r.redirect {
        Action::Redirect(Redirect::compile(rd)?)
    } else if let Some(d) = &r.direct_response {
        let body = match &d.body {
            Some(b) => Bytes::from(b.decode()?),
            None => Bytes::new(),
        };
        Action::Direct(DirectResponse {
            status: u16::try_from(d.status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| format!("invalid directResponse status {}", d.status))?,
            body,
        })
    } else if let Some(del) = &r.delegate {
        if depth > 0 {
            return Err("a delegate VirtualService cannot delegate again".into());
        }
        let del_ns = if del.namespace.is_empty() {
            ns
        } else {
            &del.namespace
        };
        let (del_ns, del_name) = (del_ns.to_string(), del.name.clone());
        let delegate = resolver
            .delegate(&del_ns, &del_name)
            .cloned()
            .ok_or_else(|| format!("delegate VirtualService {del_ns}/{del_name} not found"))?;
        let mut rules = Vec::new();
        for dr in &delegate.spec.http {
            if let Some(rule) = compile_rule(dr, &delegate, scope, resolver, depth + 1)? {
                rules.push(rule);
            }
        }
        Action::Delegate(rules.into_boxed_slice())
    } else {
        if r.route.is_empty() {
            return Err("rule has no route, redirect, directResponse or delegate".into());
        }
        let weights: Vec<u32> = r.route.iter().map(|d| d.weight.max(0) as u32).collect();
        let normalized = normalize(&weights);
        let mut targets = Vec::with_capacity(r.route.len());
        for (d, w) in r.route.iter().zip(&normalized) {
            let dest = d
                .destination
                .as_ref()
                .ok_or("route destination is missing")?;
            targets.push(RouteTarget {
                destination: destination_ref(dest, ns, resolver),
                weight: *w,
                headers: HeaderRules::compile(d.headers.as_ref())?,
            });
        }
        let key = format!(
            "{ns}/{}|{}",
            vs.metadata.name,
            targets
                .iter()
                .map(|t| format!(
                    "{}/{}:{}",
                    t.destination.host,
                    t.destination.subset.as_deref().unwrap_or(""),
                    t.weight
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let split = match resolver.split_counter(&key) {
            Some(c) => Split::with_counter(&normalized, c),
            None => Split::new(&normalized),
        };
        Action::Route(RouteTargets {
            split,
            targets: targets.into_boxed_slice(),
        })
    };
    let non_idempotent_ok = vs
        .metadata
        .annotation(NON_IDEMPOTENT_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut mirrors = Vec::new();
    if let Some(m) = &r.mirror {
        let pct = r
            .mirror_percentage
            .map(|p| p.value)
            .or(r.mirror_percent.map(f64::from));
        mirrors.push(Mirror {
            destination: destination_ref(m, ns, resolver),
            ppm: percent_ppm(pct),
        });
    }
    for m in &r.mirrors {
        if let Some(d) = &m.destination {
            mirrors.push(Mirror {
                destination: destination_ref(d, ns, resolver),
                ppm: percent_ppm(m.percentage.map(|p| p.value)),
            });
        }
    }
    Ok(Some(HttpRule {
        source: format!("{ns}/{}", vs.metadata.name).into(),
        name: r.name.as_str().into(),
        matches: matches.into_boxed_slice(),
        action,
        rewrite: r.rewrite.as_ref().map(Rewrite::compile).transpose()?,
        timeout: r
            .timeout
            .as_deref()
            .map(duration::parse)
            .transpose()?
            .filter(|d| !d.is_zero()),
        retry: RetryPolicy::compile(r.retries.as_ref(), non_idempotent_ok)?,
        fault: r.fault.as_ref().map(Fault::compile).transpose()?,
        mirrors: mirrors.into_boxed_slice(),
        cors: r.cors_policy.as_ref().map(Cors::compile).transpose()?,
        headers: HeaderRules::compile(r.headers.as_ref())?,
    }))
}

impl HttpRoutes {
    /// Append the HTTP rules of `vs` (call in the order VirtualServices
    /// should be tried: Istio merges those of one host by creation time).
    pub fn add(
        &mut self,
        vs: &VirtualService,
        scope: Scope<'_>,
        resolver: &mut dyn Resolver,
    ) -> Result<(), CompileError> {
        let source_name = format!("{}/{}", vs.metadata.namespace, vs.metadata.name);
        let mut rules = Vec::with_capacity(vs.spec.http.len());
        for (i, r) in vs.spec.http.iter().enumerate() {
            match compile_rule(r, vs, scope, resolver, 0) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                Err(message) => {
                    return Err(CompileError {
                        source_name,
                        rule: i,
                        message,
                    });
                }
            }
        }
        self.rules.extend(rules);
        Ok(())
    }

    pub fn rules(&self) -> &[HttpRule] {
        &self.rules
    }

    /// The first rule that matches `req`; `None` is Envoy's 404 `NR`.
    pub fn find<'r>(&'r self, req: &RequestView<'_>) -> Option<RouteMatch<'r>> {
        find_in(&self.rules, req)
    }
}

fn find_in<'r>(rules: &'r [HttpRule], req: &RequestView<'_>) -> Option<RouteMatch<'r>> {
    for rule in rules {
        let matched = if rule.matches.is_empty() {
            Some((1.min(req.path.len()), &*rule.name))
        } else {
            rule.matches
                .iter()
                .find_map(|m| m.check(req).map(|len| (len, &*m.route_name)))
        };
        let Some((matched_len, route_name)) = matched else {
            continue;
        };
        if let Action::Delegate(inner) = &rule.action {
            // Flattened like Istio: the delegate's rules sit at this
            // position; if none matches, the root's next rule is tried.
            if let Some(m) = find_in(inner, req) {
                return Some(m);
            }
            continue;
        }
        return Some(RouteMatch {
            rule,
            matched_len,
            route_name,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `host/subset` to an index in a fixed list.
    struct Table {
        clusters: Vec<(&'static str, &'static str)>,
        delegates: Vec<VirtualService>,
    }

    impl Resolver for Table {
        fn cluster(&mut self, d: &Destination, _ns: &str) -> Option<u32> {
            self.clusters
                .iter()
                .position(|(h, s)| *h == d.host && *s == d.subset)
                .map(|i| i as u32)
        }
        fn delegate(&mut self, ns: &str, name: &str) -> Option<&VirtualService> {
            self.delegates
                .iter()
                .find(|v| v.metadata.namespace == ns && v.metadata.name == name)
        }
    }

    fn vs(yaml: &str) -> VirtualService {
        let mut vs: VirtualService = crate::istio::testing::yaml(yaml);
        if vs.metadata.namespace.is_empty() {
            vs.metadata.namespace = "default".into();
        }
        vs
    }

    fn table() -> Table {
        Table {
            clusters: vec![("hello", "v1"), ("hello", "v2"), ("hello", ""), ("api", "")],
            delegates: vec![],
        }
    }

    fn routes(yaml: &str) -> HttpRoutes {
        let mut r = HttpRoutes::default();
        r.add(&vs(yaml), Scope::default(), &mut table()).unwrap();
        r
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "hello.example.com");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// (rule name, matched_len) for a request, or None.
    fn hit(
        r: &HttpRoutes,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Option<(String, usize)> {
        let p = parts(method, uri, headers);
        r.find(&RequestView::new(&p, "http", 80))
            .map(|m| (m.rule.name.to_string(), m.matched_len))
    }

    const ORDERED: &str = "
metadata: {name: ordered}
spec:
  hosts: [hello.example.com]
  http:
  - name: exact-login
    match: [{uri: {exact: /login}}]
    route: [{destination: {host: hello, subset: v1}}]
  - name: api-regex
    match: [{uri: {regex: '/api/v[0-9]+/.*'}}]
    route: [{destination: {host: api}}]
  - name: post-only
    match: [{uri: {prefix: /orders}, method: {exact: POST}}]
    route: [{destination: {host: hello, subset: v2}}]
  - name: premium
    match:
    - headers: {user-type: {exact: premium}}
    - queryParams: {beta: {exact: ''}}
    route: [{destination: {host: hello, subset: v2}}]
  - name: no-debug
    match: [{uri: {prefix: /Static}, ignoreUriCase: true, withoutHeaders: {x-debug: {}}}]
    route: [{destination: {host: hello, subset: v1}}]
  - name: catch-all
    route: [{destination: {host: hello, subset: v1}, weight: 80}, {destination: {host: hello, subset: v2}, weight: 20}]
";

    #[test]
    fn first_match_wins_table() {
        let r = routes(ORDERED);
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(&'a str, usize)>,
        );
        let cases: &[Case] = &[
            ("GET", "/login", &[], Some(("exact-login", 6))),
            ("GET", "/login/x", &[], Some(("catch-all", 1))),
            ("GET", "/api/v2/items?x=1", &[], Some(("api-regex", 13))),
            ("GET", "/x/api/v2/items", &[], Some(("catch-all", 1))),
            ("POST", "/orders/1", &[], Some(("post-only", 7))),
            ("GET", "/orders/1", &[], Some(("catch-all", 1))),
            (
                "GET",
                "/",
                &[("user-type", "premium")],
                Some(("premium", 1)),
            ),
            (
                "GET",
                "/",
                &[("user-type", "basic")],
                Some(("catch-all", 1)),
            ),
            ("GET", "/p?beta", &[], Some(("premium", 1))),
            ("GET", "/p?beta=1", &[], Some(("catch-all", 1))),
            ("GET", "/p?a=1&beta=", &[], Some(("premium", 1))),
            ("GET", "/static/app.js", &[], Some(("no-debug", 7))),
            ("GET", "/STATIC/app.js", &[], Some(("no-debug", 7))),
            (
                "GET",
                "/static/app.js",
                &[("x-debug", "1")],
                Some(("catch-all", 1)),
            ),
        ];
        for (method, uri, headers, want) in cases {
            let got = hit(&r, method, uri, headers);
            assert_eq!(
                got.as_ref().map(|(n, l)| (n.as_str(), *l)),
                *want,
                "{method} {uri} {headers:?}"
            );
        }
    }

    #[test]
    fn no_match_is_none() {
        let r = routes(
            "spec: {hosts: [h], http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: hello}}]}]}",
        );
        assert!(hit(&r, "GET", "/b", &[]).is_none());
    }

    #[test]
    fn weighted_split_and_resolution() {
        let r = routes(ORDERED);
        let p = parts("GET", "/anything", &[]);
        let m = r.find(&RequestView::new(&p, "http", 80)).unwrap();
        let Action::Route(t) = &m.rule.action else {
            panic!("route")
        };
        let mut v2 = 0;
        for _ in 0..100 {
            let target = t.pick();
            if target.destination.subset.as_deref() == Some("v2") {
                assert_eq!(target.destination.cluster, Some(1));
                v2 += 1;
            }
        }
        assert_eq!(v2, 20, "exactly 20 of every 100");
        assert_eq!(
            t.targets()[0].destination.cluster_name(),
            "outbound||v1|hello"
        );
    }

    #[test]
    fn weights_normalize() {
        assert_eq!(normalize(&[80, 20]), [4, 1]);
        assert_eq!(normalize(&[0, 100]), [0, 1]);
        assert_eq!(normalize(&[0]), [1]);
        assert_eq!(normalize(&[0, 0]), [1, 0]);
        let big = normalize(&[2_000_000_000, 1_000_000_001]);
        assert!(big.iter().map(|w| *w as u64).sum::<u64>() <= MAX_SPLIT_TOTAL + 2);
        assert!(big[0] > big[1]);
    }

    #[test]
    fn unknown_destination_has_no_cluster() {
        let r = routes(
            "spec: {hosts: [h], http: [{route: [{destination: {host: hello, subset: v9}}]}]}",
        );
        let Action::Route(t) = &r.rules()[0].action else {
            panic!()
        };
        assert_eq!(t.pick().destination.cluster, None);
    }

    #[test]
    fn rule_features_compile() {
        let r = routes(
            "
metadata: {name: f, annotations: {retry.skiff.dev/non-idempotent: 'true'}}
spec:
  hosts: [h]
  http:
  - name: r
    match: [{uri: {prefix: /old}, name: m}]
    rewrite: {uri: /new, authority: new.example.com}
    timeout: 3s
    retries: {attempts: 4, retryOn: 5xx}
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    mirror: {host: api}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{exact: 'https://x'}]}
    headers: {response: {set: {x-a: b}}}
    route: [{destination: {host: hello}}]
  - redirect: {uri: /moved}
  - directResponse: {status: 503, body: {string: maintenance}}
",
        );
        let rule = &r.rules()[0];
        assert_eq!(rule.timeout, Some(Duration::from_secs(3)));
        assert_eq!(rule.retry.num_retries, 4);
        assert!(!rule.retry.idempotent_only);
        assert!(rule.fault.is_some() && rule.cors.is_some() && rule.rewrite.is_some());
        assert_eq!(rule.mirrors.len(), 1);
        assert!(rule.mirrors[0].sample_with(499_999) && !rule.mirrors[0].sample_with(500_000));
        assert!(!rule.headers.is_empty());
        let p = parts("GET", "/old/x", &[]);
        let m = r.find(&RequestView::new(&p, "http", 80)).unwrap();
        assert_eq!(m.route_name, "r.m");
        assert_eq!(
            rule.rewrite
                .as_ref()
                .unwrap()
                .path("/old/x", None, m.matched_len)
                .unwrap(),
            "/new/x"
        );
        assert!(matches!(r.rules()[1].action, Action::Redirect(_)));
        let Action::Direct(d) = &r.rules()[2].action else {
            panic!()
        };
        assert_eq!((d.status.as_u16(), &d.body[..]), (503, &b"maintenance"[..]));
    }

    #[test]
    fn gateway_scoped_matches() {
        let v = vs("
metadata: {name: g, namespace: web}
spec:
  hosts: [h]
  gateways: [public, mesh]
  http:
  - name: public-only
    match: [{gateways: [public], uri: {prefix: /}}]
    route: [{destination: {host: hello}}]
  - name: any
    route: [{destination: {host: api}}]
");
        let mut public = HttpRoutes::default();
        public
            .add(
                &v,
                Scope {
                    gateway: Some("web/public"),
                },
                &mut table(),
            )
            .unwrap();
        assert_eq!(public.rules().len(), 2);
        let mut other = HttpRoutes::default();
        other
            .add(
                &v,
                Scope {
                    gateway: Some("web/internal"),
                },
                &mut table(),
            )
            .unwrap();
        assert_eq!(other.rules().len(), 1);
        assert_eq!(&*other.rules()[0].name, "any");
    }

    #[test]
    fn delegates_are_flattened_in_place() {
        let mut t = table();
        t.delegates.push(vs("
metadata: {name: reviews, namespace: default}
spec:
  http:
  - name: v2-users
    match: [{uri: {prefix: /reviews}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: hello, subset: v2}}]
"));
        let root = vs("
metadata: {name: root}
spec:
  hosts: [h]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews}
  - name: fallback
    route: [{destination: {host: hello, subset: v1}}]
");
        let mut r = HttpRoutes::default();
        r.add(&root, Scope::default(), &mut t).unwrap();
        assert_eq!(
            hit(&r, "GET", "/reviews/1", &[("end-user", "jason")])
                .unwrap()
                .0,
            "v2-users"
        );
        assert_eq!(hit(&r, "GET", "/reviews/1", &[]).unwrap().0, "fallback");
        // A missing delegate is a compile error naming the rule.
        let mut r = HttpRoutes::default();
        let e = r.add(&root, Scope::default(), &mut table()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "default/root: http[0]: delegate VirtualService default/reviews not found"
        );
    }
}
