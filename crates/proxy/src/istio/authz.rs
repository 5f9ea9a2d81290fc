//! AuthorizationPolicy evaluation, as Istio programs Envoy's RBAC filter:
//! CUSTOM (no external authorizer in Skiff: skipped) → DENY (any match
//! denies) → no ALLOW policy: allow → any ALLOW match: allow → deny.
//! AUDIT only marks. Within a rule `from`, `to` and `when` are ANDed, the
//! entries of each list ORed; string fields take exact, `prefix*`,
//! `*suffix` and `*` (presence); every field has a `not` form.
//!
//! A denied request gets 403 `RBAC: access denied` with details
//! `rbac_access_denied_matched_policy[<id>]` (`[none]` when no ALLOW
//! matched).

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::header::HeaderName;
use regex::Regex;
use skiff_api::istio::AuthorizationPolicy;
use skiff_api::istio::authorization_policy::{
    Action, Condition, Operation, Rule, Source, bracketed, keys,
};

use super::matcher::Matcher;
use super::request::RequestView;

/// Body of a denial, byte for byte Envoy's.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// The request as authorization sees it.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    pub req: RequestView<'a>,
    /// The connection's peer (`source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// The original client (`remote.ip`, `remoteIpBlocks`): from
    /// X-Forwarded-For / PROXY protocol with the trusted hop count applied.
    pub remote_ip: IpAddr,
    pub destination_ip: Option<IpAddr>,
    /// The verified client certificate's identity without `spiffe://`
    /// (`cluster.local/ns/default/sa/sleep`), on MUTUAL TLS listeners.
    pub principal: Option<&'a str>,
    /// TLS SNI.
    pub sni: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied by this policy (`ns[..]-policy[..]-rule[..]`), or `none`.
    Deny(String),
}

impl Decision {
    /// `%RESPONSE_CODE_DETAILS%` of the denial.
    pub fn details(&self) -> Option<String> {
        match self {
            Decision::Allow => None,
            Decision::Deny(id) => Some(format!("rbac_access_denied_matched_policy[{id}]")),
        }
    }
}

/// `*` anywhere (namespaces, trust domains): a whole-string glob.
fn glob(pattern: &str) -> Result<Regex, String> {
    let re: Vec<String> = pattern.split('*').map(regex::escape).collect();
    regex::RegexBuilder::new(&format!("^{}$", re.join(".*")))
        .size_limit(skiff_api::istio::check::REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("pattern {pattern:?}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| format!("bad IP address {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("bad CIDR {s:?}"))?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.bits)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.bits)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Values and not-values of one field.
#[derive(Debug, Clone)]
struct Set<T> {
    values: Box<[T]>,
    not_values: Box<[T]>,
}

impl<T> Set<T> {
    fn compile(
        values: &[String],
        not_values: &[String],
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Set<T>>, String> {
        if values.is_empty() && not_values.is_empty() {
            return Ok(None);
        }
        Ok(Some(Set {
            values: values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
            not_values: not_values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
        }))
    }

    /// Any value matches (or none given) and no not-value matches.
    fn check(&self, m: impl Fn(&T) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&m)) && !self.not_values.iter().any(&m)
    }
}

/// Identity fields matched against the peer principal.
#[derive(Debug, Clone)]
enum Identity {
    Principal(Matcher),
    Namespace(Regex),
    ServiceAccount {
        ns: Box<str>,
        sa: Box<str>,
    },
    TrustDomain(Regex),
    /// `request.auth.*`: needs a JWT, which Skiff does not validate.
    RequestAuth,
}

/// `td/ns/<ns>/sa/<sa>` → (td, ns, sa).
fn split_principal(p: &str) -> Option<(&str, &str, &str)> {
    let (td, rest) = p.split_once('/')?;
    let rest = rest.strip_prefix("ns/")?;
    let (ns, rest) = rest.split_once('/')?;
    let sa = rest.strip_prefix("sa/")?;
    Some((td, ns, sa.split('/').next().unwrap_or(sa)))
}

impl Identity {
    fn matches(&self, principal: Option<&str>) -> bool {
        let Some(p) = principal else {
            return false;
        };
        match self {
            Identity::Principal(m) => m.matches(p),
            Identity::Namespace(re) => split_principal(p).is_some_and(|(_, ns, _)| re.is_match(ns)),
            Identity::ServiceAccount { ns, sa } => {
                split_principal(p).is_some_and(|(_, pns, psa)| pns == &**ns && psa == &**sa)
            }
            Identity::TrustDomain(re) => {
                split_principal(p).is_some_and(|(td, _, _)| re.is_match(td))
            }
            Identity::RequestAuth => false,
        }
    }
}

fn principal_matcher(v: &str) -> Result<Identity, String> {
    Ok(Identity::Principal(Matcher::from_glob(
        v.strip_prefix("spiffe://").unwrap_or(v),
        false,
    )))
}

fn namespace_matcher(v: &str) -> Result<Identity, String> {
    glob(v).map(Identity::Namespace)
}

fn trust_domain_matcher(v: &str) -> Result<Identity, String> {
    glob(v).map(Identity::TrustDomain)
}

fn request_auth(_: &str) -> Result<Identity, String> {
    Ok(Identity::RequestAuth)
}

#[derive(Debug, Clone)]
struct SourceM {
    identities: Vec<Set<Identity>>,
    ip_blocks: Option<Set<Cidr>>,
    remote_ip_blocks: Option<Set<Cidr>>,
}

impl SourceM {
    fn compile(s: &Source, policy_ns: &str) -> Result<SourceM, String> {
        let sa = |v: &str| -> Result<Identity, String> {
            let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
            Ok(Identity::ServiceAccount {
                ns: ns.into(),
                sa: sa.into(),
            })
        };
        let identities = [
            Set::compile(&s.principals, &s.not_principals, principal_matcher)?,
            Set::compile(&s.namespaces, &s.not_namespaces, namespace_matcher)?,
            Set::compile(&s.service_accounts, &s.not_service_accounts, sa)?,
            Set::compile(&s.trust_domains, &s.not_trust_domains, trust_domain_matcher)?,
            Set::compile(
                &s.request_principals,
                &s.not_request_principals,
                request_auth,
            )?,
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(SourceM {
            identities,
            ip_blocks: Set::compile(&s.ip_blocks, &s.not_ip_blocks, Cidr::parse)?,
            remote_ip_blocks: Set::compile(
                &s.remote_ip_blocks,
                &s.not_remote_ip_blocks,
                Cidr::parse,
            )?,
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        self.identities
            .iter()
            .all(|s| s.check(|i| i.matches(r.principal)))
            && self
                .ip_blocks
                .as_ref()
                .is_none_or(|s| s.check(|c| c.contains(r.source_ip)))
            && self
                .remote_ip_blocks
                .as_ref()
                .is_none_or(|s| s.check(|c| c.contains(r.remote_ip)))
    }
}

/// A path: glob, or a template (`{*}` one segment, `{**}` the rest).
#[derive(Debug, Clone)]
enum PathM {
    Glob(Matcher),
    Template(Regex),
}

fn path_matcher(v: &str) -> Result<PathM, String> {
    if !v.contains('{') {
        return Ok(PathM::Glob(Matcher::from_glob(v, false)));
    }
    skiff_api::istio::authorization_policy::path_template(v)?;
    let segs: Vec<String> = v[1..]
        .split('/')
        .map(|s| match s {
            "{*}" => "[^/]+".to_string(),
            "{**}" => ".+".to_string(),
            lit => regex::escape(lit),
        })
        .collect();
    regex::RegexBuilder::new(&format!("^/{}$", segs.join("/")))
        .size_limit(skiff_api::istio::check::REGEX_SIZE_LIMIT)
        .build()
        .map(PathM::Template)
        .map_err(|e| e.to_string())
}

impl PathM {
    fn matches(&self, p: &str) -> bool {
        match self {
            PathM::Glob(m) => m.matches(p),
            PathM::Template(re) => re.is_match(p),
        }
    }
}

fn port(v: &str) -> Result<u16, String> {
    v.parse().map_err(|_| format!("invalid port: {v}"))
}

#[derive(Debug, Clone)]
struct OperationM {
    hosts: Option<Set<Matcher>>,
    ports: Option<Set<u16>>,
    methods: Option<Set<Matcher>>,
    paths: Option<Set<PathM>>,
}

impl OperationM {
    fn compile(o: &Operation) -> Result<OperationM, String> {
        Ok(OperationM {
            hosts: Set::compile(&o.hosts, &o.not_hosts, |v| Ok(Matcher::from_glob(v, true)))?,
            ports: Set::compile(&o.ports, &o.not_ports, port)?,
            methods: Set::compile(&o.methods, &o.not_methods, |v| {
                Ok(Matcher::from_glob(v, false))
            })?,
            paths: Set::compile(&o.paths, &o.not_paths, path_matcher)?,
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        let q = &r.req;
        self.hosts
            .as_ref()
            .is_none_or(|s| s.check(|m| m.matches(q.authority)))
            && self
                .ports
                .as_ref()
                .is_none_or(|s| s.check(|p| *p == q.port))
            && self
                .methods
                .as_ref()
                .is_none_or(|s| s.check(|m| m.matches(q.method)))
            && self
                .paths
                .as_ref()
                .is_none_or(|s| s.check(|m| m.matches(q.path)))
    }
}

#[derive(Debug, Clone)]
enum ConditionM {
    Header(HeaderName, Set<Matcher>),
    SourceIp(Set<Cidr>),
    RemoteIp(Set<Cidr>),
    DestinationIp(Set<Cidr>),
    DestinationPort(Set<u16>),
    Sni(Set<Matcher>),
    Identity(Set<Identity>),
    /// Attributes Skiff never has (JWT claims, Envoy filter metadata).
    Absent(Set<()>),
}

impl ConditionM {
    fn compile(c: &Condition, policy_ns: &str) -> Result<ConditionM, String> {
        let (v, nv) = (&c.values, &c.not_values);
        let set = |f: &dyn Fn(&str) -> Result<Matcher, String>| {
            Set::compile(v, nv, f).map(|s| s.expect("validated: values or notValues"))
        };
        let glob_m = |x: &str| Ok(Matcher::from_glob(x, false));
        let k = c.key.as_str();
        Ok(match k {
            _ if k.starts_with(keys::REQUEST_HEADERS) => {
                let name = bracketed(k, keys::REQUEST_HEADERS)
                    .ok_or_else(|| format!("invalid key {k}"))?;
                let h = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("invalid header name in {k}"))?;
                ConditionM::Header(h, set(&glob_m)?)
            }
            keys::SOURCE_IP => {
                ConditionM::SourceIp(Set::compile(v, nv, Cidr::parse)?.ok_or("no values")?)
            }
            keys::REMOTE_IP => {
                ConditionM::RemoteIp(Set::compile(v, nv, Cidr::parse)?.ok_or("no values")?)
            }
            keys::DESTINATION_IP => {
                ConditionM::DestinationIp(Set::compile(v, nv, Cidr::parse)?.ok_or("no values")?)
            }
            keys::DESTINATION_PORT => {
                ConditionM::DestinationPort(Set::compile(v, nv, port)?.ok_or("no values")?)
            }
            keys::CONNECTION_SNI => ConditionM::Sni(set(&glob_m)?),
            keys::SOURCE_PRINCIPAL => {
                ConditionM::Identity(Set::compile(v, nv, principal_matcher)?.ok_or("no values")?)
            }
            keys::SOURCE_NAMESPACE => {
                ConditionM::Identity(Set::compile(v, nv, namespace_matcher)?.ok_or("no values")?)
            }
            keys::SOURCE_TRUST_DOMAIN => {
                ConditionM::Identity(Set::compile(v, nv, trust_domain_matcher)?.ok_or("no values")?)
            }
            keys::SOURCE_SERVICE_ACCOUNT => ConditionM::Identity(
                Set::compile(v, nv, |x| {
                    let (ns, sa) = x.split_once('/').unwrap_or((policy_ns, x));
                    Ok(Identity::ServiceAccount {
                        ns: ns.into(),
                        sa: sa.into(),
                    })
                })?
                .ok_or("no values")?,
            ),
            _ if k.starts_with("request.auth.") || k.starts_with(keys::EXPERIMENTAL) => {
                ConditionM::Absent(Set::compile(v, nv, |_| Ok(()))?.ok_or("no values")?)
            }
            _ => return Err(format!("unknown attribute: {k}")),
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        match self {
            ConditionM::Header(h, s) => match r.req.header(h) {
                Some(v) => s.check(|m| m.matches(&v)),
                None => s.values.is_empty(),
            },
            ConditionM::SourceIp(s) => s.check(|c| c.contains(r.source_ip)),
            ConditionM::RemoteIp(s) => s.check(|c| c.contains(r.remote_ip)),
            ConditionM::DestinationIp(s) => {
                s.check(|c| r.destination_ip.is_some_and(|ip| c.contains(ip)))
            }
            ConditionM::DestinationPort(s) => s.check(|p| *p == r.req.port),
            ConditionM::Sni(s) => s.check(|m| r.sni.is_some_and(|x| m.matches(x))),
            ConditionM::Identity(s) => s.check(|i| i.matches(r.principal)),
            ConditionM::Absent(s) => s.values.is_empty(),
        }
    }
}

#[derive(Debug, Clone)]
struct RuleM {
    from: Option<Vec<SourceM>>,
    to: Option<Vec<OperationM>>,
    when: Vec<ConditionM>,
}

impl RuleM {
    fn compile(r: &Rule, ns: &str) -> Result<RuleM, String> {
        Ok(RuleM {
            from: r
                .from
                .as_ref()
                .map(|f| {
                    f.iter()
                        .filter_map(|f| f.source.as_ref())
                        .map(|s| SourceM::compile(s, ns))
                        .collect()
                })
                .transpose()?,
            to: r
                .to
                .as_ref()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.operation.as_ref())
                        .map(OperationM::compile)
                        .collect()
                })
                .transpose()?,
            when: r
                .when
                .iter()
                .map(|c| ConditionM::compile(c, ns))
                .collect::<Result<_, _>>()?,
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        self.from
            .as_ref()
            .is_none_or(|f| f.iter().any(|s| s.matches(r)))
            && self
                .to
                .as_ref()
                .is_none_or(|t| t.iter().any(|o| o.matches(r)))
            && self.when.iter().all(|c| c.matches(r))
    }
}

#[derive(Debug, Clone)]
struct PolicyM {
    /// `ns[<ns>]-policy[<name>]`.
    id: String,
    rules: Vec<RuleM>,
}

impl PolicyM {
    /// The index of the first matching rule (no allocation: allowed
    /// requests never build an id).
    fn matching_rule(&self, r: &AuthzRequest<'_>) -> Option<usize> {
        self.rules.iter().position(|rule| rule.matches(r))
    }
}

/// The policies that apply to one workload (or the gateway), compiled.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    deny: Vec<PolicyM>,
    allow: Vec<PolicyM>,
}

impl Authorizer {
    /// Compile `policies`. Policies that cannot be compiled (or CUSTOM ones:
    /// no external authorizer) are skipped and reported; a DENY policy that
    /// fails to compile makes the authorizer deny everything, as Envoy
    /// rejects the whole config rather than fail open.
    pub fn compile<'a>(
        policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    ) -> (Authorizer, Vec<String>) {
        let mut a = Authorizer::default();
        let mut problems = Vec::new();
        for p in policies {
            let ns = &p.metadata.namespace;
            let id = format!("ns[{ns}]-policy[{}]", p.metadata.name);
            let compiled = p
                .spec
                .rules
                .iter()
                .flatten()
                .map(|r| RuleM::compile(r, ns))
                .collect::<Result<Vec<_>, _>>();
            match (p.spec.action, compiled) {
                (Action::Custom, _) => problems.push(format!(
                    "{id}: CUSTOM authorization needs an external authorizer, which Skiff does not have: policy ignored"
                )),
                (Action::Audit, _) => {}
                (Action::Allow, Ok(rules)) => a.allow.push(PolicyM { id, rules }),
                (Action::Deny, Ok(rules)) => a.deny.push(PolicyM { id, rules }),
                (Action::Allow, Err(e)) => {
                    problems.push(format!("{id}: {e}: policy ignored (it allows nothing)"));
                    a.allow.push(PolicyM { id, rules: vec![] });
                }
                (Action::Deny, Err(e)) => {
                    problems.push(format!("{id}: {e}: denying every request (fail closed)"));
                    a.deny.push(PolicyM {
                        id,
                        rules: vec![RuleM { from: None, to: None, when: vec![] }],
                    });
                }
            }
        }
        (a, problems)
    }

    /// True when no policy applies (the check can be skipped).
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    pub fn evaluate(&self, r: &AuthzRequest<'_>) -> Decision {
        for p in &self.deny {
            if let Some(i) = p.matching_rule(r) {
                return Decision::Deny(format!("{}-rule[{i}]", p.id));
            }
        }
        if self.allow.is_empty() {
            return Decision::Allow;
        }
        if self.allow.iter().any(|p| p.matching_rule(r).is_some()) {
            Decision::Allow
        } else {
            Decision::Deny("none".to_string())
        }
    }
}

/// The policies that apply to a workload in `namespace` with `labels`:
/// those of its namespace and of the root namespace (mesh-wide) whose
/// selector matches (no selector: all). `targetRef` policies are for
/// Gateway API waypoints and do not apply.
pub fn applicable<'a>(
    all: &'a [AuthorizationPolicy],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
) -> Vec<&'a AuthorizationPolicy> {
    all.iter()
        .filter(|p| p.metadata.namespace == namespace || p.metadata.namespace == root_namespace)
        .filter(|p| p.spec.target_ref.is_none() && p.spec.target_refs.is_empty())
        .filter(|p| {
            p.spec
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> AuthorizationPolicy {
        let mut p: AuthorizationPolicy = crate::istio::testing::yaml(yaml);
        if p.metadata.namespace.is_empty() {
            p.metadata.namespace = "foo".into();
        }
        p
    }

    fn authorizer(yamls: &[&str]) -> Authorizer {
        let ps: Vec<_> = yamls.iter().map(|y| policy(y)).collect();
        let (a, problems) = Authorizer::compile(&ps);
        assert!(problems.is_empty(), "{problems:?}");
        a
    }

    struct Req {
        parts: http::request::Parts,
        source: IpAddr,
        remote: IpAddr,
        principal: Option<&'static str>,
        port: u16,
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Req {
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "api.example.com");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        Req {
            parts: b.body(()).unwrap().into_parts().0,
            source: "10.0.0.5".parse().unwrap(),
            remote: "203.0.113.7".parse().unwrap(),
            principal: None,
            port: 80,
        }
    }

    fn eval(a: &Authorizer, r: &Req) -> Decision {
        a.evaluate(&AuthzRequest {
            req: RequestView::new(&r.parts, "http", r.port),
            source_ip: r.source,
            remote_ip: r.remote,
            destination_ip: None,
            principal: r.principal,
            sni: None,
        })
    }

    fn allowed(a: &Authorizer, r: &Req) -> bool {
        eval(a, r) == Decision::Allow
    }

    #[test]
    fn allow_deny_matrix() {
        let a = authorizer(&[
            "metadata: {name: deny-admin}\nspec: {action: DENY, rules: [{to: [{operation: {paths: ['/admin*']}}]}]}",
            "metadata: {name: allow-get}\nspec: {action: ALLOW, rules: [{to: [{operation: {methods: [GET, HEAD]}}]}, {from: [{source: {ipBlocks: [10.0.0.0/8]}}], to: [{operation: {methods: [POST], paths: ['/data']}}]}]}",
        ]);
        let cases: &[(&str, &str, Decision)] = &[
            ("GET", "/items", Decision::Allow),
            (
                "GET",
                "/admin/users",
                Decision::Deny("ns[foo]-policy[deny-admin]-rule[0]".into()),
            ),
            ("POST", "/data", Decision::Allow),
            ("POST", "/other", Decision::Deny("none".into())),
            ("DELETE", "/items", Decision::Deny("none".into())),
        ];
        for (m, p, want) in cases {
            assert_eq!(eval(&a, &req(m, p, &[])), *want, "{m} {p}");
        }
        // The second ALLOW rule needs the 10/8 source.
        let mut r = req("POST", "/data?x=1", &[]);
        r.source = "192.168.1.1".parse().unwrap();
        assert!(!allowed(&a, &r));
        assert_eq!(
            Decision::Deny("none".into()).details().unwrap(),
            "rbac_access_denied_matched_policy[none]"
        );
    }

    #[test]
    fn no_rules_and_empty_rule() {
        // ALLOW without rules: allow-nothing.
        let nothing = authorizer(&["metadata: {name: allow-nothing}\nspec: {}"]);
        assert!(!allowed(&nothing, &req("GET", "/", &[])));
        // rules: [{}] allows everything.
        let all = authorizer(&["metadata: {name: allow-all}\nspec: {rules: [{}]}"]);
        assert!(allowed(&all, &req("GET", "/", &[])));
        // No policies at all: allow.
        assert!(allowed(&Authorizer::default(), &req("GET", "/", &[])));
        // DENY with an empty rule denies everything, before any ALLOW.
        let deny_all = authorizer(&[
            "metadata: {name: allow-all}\nspec: {rules: [{}]}",
            "metadata: {name: deny-all}\nspec: {action: DENY, rules: [{}]}",
        ]);
        assert!(!allowed(&deny_all, &req("GET", "/", &[])));
    }

    #[test]
    fn fields_and_not_fields() {
        let a = authorizer(&[
            "metadata: {name: p}\nspec: {rules: [{to: [{operation: {hosts: ['*.EXAMPLE.com'], notPaths: ['/private*'], ports: ['80']}}], when: [{key: 'request.headers[x-team]', values: ['pay*']}, {key: remote.ip, notValues: ['198.51.100.0/24']}]}]}",
        ]);
        assert!(allowed(&a, &req("GET", "/x", &[("x-team", "payments")])));
        assert!(!allowed(
            &a,
            &req("GET", "/private/x", &[("x-team", "payments")])
        ));
        assert!(!allowed(&a, &req("GET", "/x", &[("x-team", "search")])));
        assert!(
            !allowed(&a, &req("GET", "/x", &[])),
            "absent header fails values"
        );
        let mut r = req("GET", "/x", &[("x-team", "payments")]);
        r.remote = "198.51.100.9".parse().unwrap();
        assert!(!allowed(&a, &r));
        let mut r = req("GET", "/x", &[("x-team", "payments")]);
        r.port = 443;
        assert!(!allowed(&a, &r));
    }

    #[test]
    fn identities_from_client_certificates() {
        let a = authorizer(&[
            "metadata: {name: p}\nspec: {rules: [{from: [{source: {principals: ['cluster.local/ns/default/sa/sleep']}}, {source: {namespaces: ['team-*']}}]}]}",
        ]);
        let mut r = req("GET", "/", &[]);
        assert!(!allowed(&a, &r), "no peer identity");
        r.principal = Some("cluster.local/ns/default/sa/sleep");
        assert!(allowed(&a, &r));
        r.principal = Some("cluster.local/ns/team-a/sa/anything");
        assert!(allowed(&a, &r));
        r.principal = Some("cluster.local/ns/other/sa/sleep");
        assert!(!allowed(&a, &r));
        let sa = authorizer(&[
            "metadata: {name: p, namespace: default}\nspec: {rules: [{from: [{source: {serviceAccounts: [sleep], trustDomains: ['cluster.*']}}]}]}",
        ]);
        r.principal = Some("cluster.local/ns/default/sa/sleep");
        assert!(allowed(&sa, &r));
        r.principal = Some("example.org/ns/default/sa/sleep");
        assert!(!allowed(&sa, &r));
        // Presence: any authenticated peer.
        let any = authorizer(&[
            "metadata: {name: p}\nspec: {rules: [{from: [{source: {principals: ['*']}}]}]}",
        ]);
        assert!(allowed(&any, &r));
        r.principal = None;
        assert!(!allowed(&any, &r));
        // JWT principals never match without RequestAuthentication.
        let jwt = authorizer(&[
            "metadata: {name: p}\nspec: {action: DENY, rules: [{from: [{source: {notRequestPrincipals: ['*']}}]}]}",
        ]);
        assert!(
            !allowed(&jwt, &req("GET", "/", &[])),
            "deny requests without a JWT"
        );
    }

    #[test]
    fn path_templates() {
        let a = authorizer(&[
            "metadata: {name: p}\nspec: {rules: [{to: [{operation: {paths: ['/api/{*}/items/{**}']}}]}]}",
        ]);
        assert!(allowed(&a, &req("GET", "/api/v1/items/1/2", &[])));
        assert!(!allowed(&a, &req("GET", "/api/v1/x/items/1", &[])));
        assert!(!allowed(&a, &req("GET", "/api/v1/items/", &[])));
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("1.2.3.4")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn custom_is_reported_and_scoping() {
        let ps = vec![
            policy(
                "metadata: {name: ext, namespace: foo}\nspec: {action: CUSTOM, provider: {name: x}, rules: [{}]}",
            ),
            policy(
                "metadata: {name: gw, namespace: istio-system}\nspec: {selector: {matchLabels: {istio: ingressgateway}}, rules: [{}]}",
            ),
            policy(
                "metadata: {name: app, namespace: foo}\nspec: {selector: {matchLabels: {app: hello}}, rules: [{}]}",
            ),
            policy("metadata: {name: other, namespace: bar}\nspec: {rules: [{}]}"),
        ];
        let (a, problems) = Authorizer::compile(&ps[..1]);
        assert!(a.is_empty());
        assert!(problems[0].contains("CUSTOM"));
        let gw_labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        let names = |v: Vec<&AuthorizationPolicy>| {
            v.iter()
                .map(|p| p.metadata.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(applicable(&ps, "istio-system", &gw_labels, "istio-system")),
            ["gw"]
        );
        let app_labels = [("app".to_string(), "hello".to_string())].into();
        assert_eq!(
            names(applicable(&ps, "foo", &app_labels, "istio-system")),
            ["ext", "app"]
        );
    }
}
