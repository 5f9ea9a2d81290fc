//! `networking.istio.io` VirtualService: ordered HTTP rules (first match
//! wins) with matches, weighted destinations, rewrite, redirect, direct
//! response, timeout, retries, fault injection, mirroring, CORS and header
//! operations. TLS and TCP rules are accepted and validated; Skiff's gateway
//! serves HTTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, at, err, here};
use super::duration;
use super::proto::{Percent, proto_enum};
use super::string_match::StringMatch;
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VirtualServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer form of `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stat_prefix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(default)]
    pub weight: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

proto_enum!(
    /// Which port a redirect keeps when it sets none.
    RedirectPortSelection, "redirect port selection" {
        FromProtocolDefault = 0 => "FROM_PROTOCOL_DEFAULT",
        FromRequestPort = 1 => "FROM_REQUEST_PORT",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix_rewrite: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDirectResponse {
    #[serde(default)]
    pub status: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Base64, as protobuf JSON writes `bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

impl HttpBody {
    /// The body bytes (`bytes` decoded from base64).
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        match (&self.string, &self.bytes) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| format!("bytes is not valid base64: {e}")),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    #[serde(default, rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub rewrite: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    #[serde(default)]
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

proto_enum!(
    /// What CORS does with preflights that match no allowed origin.
    UnmatchedPreflights, "unmatched preflights policy" {
        Unspecified = 0 => "UNSPECIFIED",
        Forward = 1 => "FORWARD",
        Ignore = 2 => "IGNORE",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact-match origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFaultInjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Deprecated integer percentage (used when `percentage` is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(default)]
    pub weight: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRoute {
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4MatchAttributes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_subnet: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// The reserved gateway name meaning "all sidecars".
pub const MESH_GATEWAY: &str = "mesh";

impl VirtualServiceSpec {
    /// True when the rules apply to gateways (not only to the mesh).
    pub fn binds_gateways(&self) -> bool {
        self.gateways.iter().any(|g| g != MESH_GATEWAY)
    }
}

// ---------------------------------------------------------------- validation

/// Istio's ValidateVirtualService, with paths.
pub fn validate(vs: &VirtualService) -> FieldError {
    validate_spec(&vs.spec).via_field("spec")
}

fn validate_spec(spec: &VirtualServiceSpec) -> FieldError {
    let mut errs = FieldError::default();
    let delegate = spec.hosts.is_empty();
    if delegate {
        // A VirtualService without hosts is a delegate (referenced by another).
        if !spec.gateways.is_empty() {
            errs.push(err(
                "delegate virtual service must have no gateways specified",
                "gateways",
            ));
        }
        if !spec.tls.is_empty() {
            errs.push(err(
                "delegate virtual service must have no tls route specified",
                "tls",
            ));
        }
        if !spec.tcp.is_empty() {
            errs.push(err(
                "delegate virtual service must have no tcp route specified",
                "tcp",
            ));
        }
    }
    let applies_to_gateway = spec.binds_gateways();
    let applies_to_mesh = spec.gateways.is_empty() || !applies_to_gateway;
    for (i, g) in spec.gateways.iter().enumerate() {
        errs.push(gateway_name(g).via_field_index("gateways", i));
    }
    let mut all_valid = true;
    for (i, h) in spec.hosts.iter().enumerate() {
        let path = format!("hosts[{i}]");
        match check::wildcard_domain(h) {
            Err(e) if !check::is_ip(h) => {
                errs.push(err(e, &path));
                all_valid = false;
            }
            Ok(()) if applies_to_mesh && h == "*" => {
                errs.push(err(
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                    &path,
                ));
                all_valid = false;
            }
            _ => {}
        }
    }
    if all_valid {
        for i in 0..spec.hosts.len() {
            for j in i + 1..spec.hosts.len() {
                if hosts_overlap(&spec.hosts[i], &spec.hosts[j]) {
                    errs.push(FieldError::new(
                        format!(
                            "duplicate hosts in virtual service: {} & {}",
                            spec.hosts[i], spec.hosts[j]
                        ),
                        &[&format!("hosts[{i}]"), &format!("hosts[{j}]")],
                    ));
                }
            }
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        errs.push(FieldError::new(
            "http, tcp or tls must be provided in virtual service",
            &["http", "tcp", "tls"],
        ));
    }
    for (i, r) in spec.http.iter().enumerate() {
        errs.push(validate_http_route(r, delegate).via_field_index("http", i));
    }
    for (i, r) in spec.tls.iter().enumerate() {
        errs.push(validate_tls_route(r).via_field_index("tls", i));
    }
    for (i, r) in spec.tcp.iter().enumerate() {
        errs.push(validate_route_destinations(&r.route).via_field_index("tcp", i));
    }
    for (i, e) in spec.export_to.iter().enumerate() {
        errs.push(export_to(e).via_field_index("exportTo", i));
    }
    errs
}

/// Istio's host.Name.Matches: equal, or one wildcard covers the other.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    fn covers(wild: &str, other: &str) -> bool {
        match wild.strip_prefix('*') {
            Some(suffix) => other.ends_with(suffix) || other.strip_prefix('*') == Some(suffix),
            None => false,
        }
    }
    a.eq_ignore_ascii_case(b) || covers(a, b) || covers(b, a)
}

pub(crate) fn export_to(e: &str) -> FieldError {
    if e == "." || e == "*" || check::is_dns1123_label(e) {
        FieldError::default()
    } else {
        here(format!(
            "only .  or * or a valid DNS 1123 label is allowed as exportTo entry, got {e:?}"
        ))
    }
}

/// `ns/name`, `name` or `mesh`.
pub(crate) fn gateway_name(g: &str) -> FieldError {
    match g.split_once('/') {
        Some((ns, name)) => {
            let mut e = FieldError::default();
            if ns.is_empty() || name.is_empty() {
                e.push(here("config namespace and gateway name cannot be empty"));
            }
            if !check::is_dns1123_label(ns) {
                e.push(here(format!("invalid value for namespace: {ns:?}")));
            }
            if !check::is_dns1123_label(name) {
                e.push(here(format!("invalid value for gateway name: {name:?}")));
            }
            e
        }
        None => at(check::fqdn(g), ""),
    }
}

fn validate_http_route(r: &HttpRoute, delegate: bool) -> FieldError {
    let mut errs = FieldError::default();
    // One action per rule.
    let actions: Vec<&str> = [
        ("route", !r.route.is_empty()),
        ("redirect", r.redirect.is_some()),
        ("directResponse", r.direct_response.is_some()),
        ("delegate", r.delegate.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    if actions.len() > 1 {
        errs.push(
            FieldError::multiple_one_of(&actions)
                .with_details("a rule does one of route, redirect, directResponse or delegate"),
        );
    } else if actions.is_empty() {
        errs.push(FieldError::new(
            "HTTP route, redirect or direct_response is required",
            &["route", "redirect", "directResponse"],
        ));
    }
    if delegate && r.delegate.is_some() {
        errs.push(err(
            "delegate HTTP route cannot contain delegate",
            "delegate",
        ));
    }
    if r.redirect.is_some() || r.direct_response.is_some() {
        let action = if r.redirect.is_some() {
            "redirect"
        } else {
            "directResponse"
        };
        if r.fault.is_some() {
            errs.push(err(
                format!("HTTP route cannot contain both fault and {action}"),
                "fault",
            ));
        }
        if r.rewrite.is_some() {
            errs.push(err(
                format!("HTTP route rule cannot contain both rewrite and {action}"),
                "rewrite",
            ));
        }
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        errs.push(FieldError::multiple_one_of(&["mirror", "mirrors"]));
    }
    for (i, m) in r.matches.iter().enumerate() {
        errs.push(validate_match(m, delegate).via_field_index("match", i));
    }
    if let Some(h) = &r.headers {
        errs.push(validate_headers(h).via_field("headers"));
    }
    if let Some(c) = &r.cors_policy {
        errs.push(validate_cors(c).via_field("corsPolicy"));
    }
    if let Some(f) = &r.fault {
        errs.push(validate_fault(f).via_field("fault"));
    }
    if let Some(p) = r.mirror_percent
        && p > 100
    {
        errs.push(err(
            format!("mirror_percent must have a max value of 100 (it has {p})"),
            "mirrorPercent",
        ));
    }
    if let Some(p) = &r.mirror_percentage {
        errs.push(at(check::percentage(p.value), "mirrorPercentage.value"));
    }
    if let Some(m) = &r.mirror {
        errs.push(validate_destination(m).via_field("mirror"));
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mut e = match &m.destination {
            Some(d) => validate_destination(d).via_field("destination"),
            None => FieldError::missing_field(&["destination"]),
        };
        if let Some(p) = &m.percentage {
            e.push(at(check::percentage(p.value), "percentage.value"));
        }
        errs.push(e.via_field_index("mirrors", i));
    }
    if let Some(rd) = &r.redirect {
        errs.push(validate_redirect(rd, &r.matches).via_field("redirect"));
    }
    if let Some(d) = &r.direct_response {
        errs.push(validate_direct_response(d).via_field("directResponse"));
    }
    if let Some(rt) = &r.retries {
        errs.push(validate_retry(rt).via_field("retries"));
    }
    if let Some(rw) = &r.rewrite {
        errs.push(validate_rewrite(rw).via_field("rewrite"));
    }
    errs.push(validate_authority_rewrite(r));
    errs.push(validate_http_destinations(&r.route).via_field("route"));
    if let Some(t) = &r.timeout {
        errs.push(at(duration::parse_checked(t).map(|_| ()), "timeout"));
    }
    errs
}

fn validate_match(m: &HttpMatchRequest, delegate: bool) -> FieldError {
    let mut errs = FieldError::default();
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            errs.push(sm.validate(false).via_field(field));
            if let Some(p) = &sm.prefix
                && p.is_empty()
            {
                errs.push(
                    err("prefix string match should not be empty", "prefix").via_field(field),
                );
            }
            if delegate && sm.is_regex() {
                errs.push(
                    err(
                        format!("{field} match does not support regex match for delegating"),
                        "regex",
                    )
                    .via_field(field),
                );
            }
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            errs.push(at(check::header_name(name), "").via_field_key(field, name));
            errs.push(sm.validate(false).via_field_key(field, name));
        }
    }
    for (name, sm) in &m.query_params {
        errs.push(sm.validate(false).via_field_key("queryParams", name));
    }
    if let Some(p) = m.port {
        errs.push(at(check::port(p as i64), "port"));
    }
    for (k, v) in &m.source_labels {
        errs.push(at(check::label(k, v), "").via_field_key("sourceLabels", k));
    }
    for (i, g) in m.gateways.iter().enumerate() {
        errs.push(gateway_name(g).via_field_index("gateways", i));
    }
    if !m.source_namespace.is_empty() && !check::is_dns1123_label(&m.source_namespace) {
        errs.push(err(
            format!("sourceNamespace match {} is invalid", m.source_namespace),
            "sourceNamespace",
        ));
    }
    errs
}

fn validate_header_ops(ops: &HeaderOperations, request: bool) -> FieldError {
    let mut errs = FieldError::default();
    let name_check = |n: &str| {
        if request {
            check::request_header_op_name(n)
        } else {
            check::header_op_name(n)
        }
    };
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            errs.push(at(name_check(name), "").via_field_key(field, name));
            errs.push(at(check::header_value(value), "").via_field_key(field, name));
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        errs.push(at(check::header_op_name(name), "").via_field_index("remove", i));
    }
    errs
}

fn validate_headers(h: &Headers) -> FieldError {
    let mut errs = FieldError::default();
    if let Some(r) = &h.request {
        errs.push(validate_header_ops(r, true).via_field("request"));
    }
    if let Some(r) = &h.response {
        errs.push(validate_header_ops(r, false).via_field("response"));
    }
    errs
}

/// The authority may be rewritten in one place only.
fn validate_authority_rewrite(r: &HttpRoute) -> FieldError {
    let mut current = r
        .rewrite
        .as_ref()
        .map(|rw| rw.authority.as_str())
        .filter(|a| !a.is_empty());
    let Some(req) = r.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return FieldError::default();
    };
    for (op, map) in [("set", &req.set), ("add", &req.add)] {
        for (k, v) in map {
            if !(k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host")) {
                continue;
            }
            if let Some(have) = current {
                return err(
                    format!(
                        "authority header cannot be set multiple times: have {have:?}, attempting to set {v:?}"
                    ),
                    "",
                )
                .via_field_key(op, k)
                .via_field("headers.request");
            }
            current = Some(v);
        }
    }
    FieldError::default()
}

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

fn validate_cors(c: &CorsPolicy) -> FieldError {
    let mut errs = FieldError::default();
    for (i, o) in c.allow_origins.iter().enumerate() {
        let value = o
            .exact
            .as_deref()
            .or(o.prefix.as_deref())
            .or(o.regex.as_deref());
        let mut e = o.validate(true);
        if value == Some("") {
            e.push(here("'' is not a valid match type for CORS allow origins"));
        }
        errs.push(e.via_field_index("allowOrigins", i));
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            errs.push(
                err(format!("{m:?} is not a supported HTTP method"), "")
                    .via_field_index("allowMethods", i),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" {
                errs.push(at(check::header_name(h), "").via_field_index(field, i));
            }
        }
    }
    if let Some(m) = &c.max_age {
        match duration::parse_checked(m) {
            Ok(d) if d.subsec_nanos() != 0 => errs.push(err(
                "max_age duration is accurate only to seconds precision",
                "maxAge",
            )),
            Ok(_) => {}
            Err(e) => errs.push(err(e, "maxAge")),
        }
    }
    errs
}

/// gRPC status names Envoy's fault filter accepts.
pub const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn http_status(status: i64) -> Result<(), String> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status} is not in range 200-599"))
    }
}

fn validate_fault(f: &HttpFaultInjection) -> FieldError {
    let mut errs = FieldError::default();
    if f.abort.is_none() && f.delay.is_none() {
        errs.push(
            FieldError::missing_one_of(&["abort", "delay"])
                .with_details("HTTP fault injection must have an abort and/or a delay"),
        );
    }
    if let Some(a) = &f.abort {
        let mut e = FieldError::default();
        if let Some(p) = &a.percentage {
            e.push(at(check::percentage(p.value), "percentage.value"));
        }
        let kinds: Vec<&str> = [
            ("httpStatus", a.http_status.is_some()),
            ("grpcStatus", a.grpc_status.is_some()),
            ("http2Error", a.http2_error.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if kinds.len() > 1 {
            e.push(FieldError::multiple_one_of(&kinds));
        } else if kinds.is_empty() {
            e.push(FieldError::missing_one_of(&["httpStatus", "grpcStatus"]));
        }
        if let Some(s) = a.http_status {
            e.push(at(http_status(s as i64), "httpStatus"));
        }
        if let Some(g) = &a.grpc_status
            && !GRPC_STATUSES.contains(&g.as_str())
        {
            e.push(err(
                format!("gRPC status {g:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
                "grpcStatus",
            ));
        }
        if a.http2_error.is_some() {
            e.push(err(
                "HTTP/2 abort fault injection not supported yet",
                "http2Error",
            ));
        }
        errs.push(e.via_field("abort"));
    }
    if let Some(d) = &f.delay {
        let mut e = FieldError::default();
        if let Some(p) = &d.percentage {
            e.push(at(check::percentage(p.value), "percentage.value"));
        }
        if let Some(p) = d.percent {
            e.push(at(check::percent(p as i64), "percent"));
        }
        match (&d.fixed_delay, &d.exponential_delay) {
            (Some(_), Some(_)) => e.push(FieldError::multiple_one_of(&[
                "fixedDelay",
                "exponentialDelay",
            ])),
            (None, None) => e.push(FieldError::missing_one_of(&[
                "fixedDelay",
                "exponentialDelay",
            ])),
            (Some(fd), None) => e.push(at(duration::parse_checked(fd).map(|_| ()), "fixedDelay")),
            (None, Some(_)) => e.push(err(
                "exponentialDelay not supported yet",
                "exponentialDelay",
            )),
        }
        errs.push(e.via_field("delay"));
    }
    errs
}

pub(crate) fn validate_destination(d: &Destination) -> FieldError {
    let mut errs = FieldError::default();
    if d.host == "*" {
        errs.push(err(format!("invalid destination host {}", d.host), "host"));
    } else {
        errs.push(at(check::wildcard_domain(&d.host), "host"));
    }
    if !d.subset.is_empty() && !check::is_dns1123_label(&d.subset) {
        errs.push(err(
            format!("subset name is invalid: {}", d.subset),
            "subset",
        ));
    }
    if let Some(p) = &d.port {
        errs.push(at(check::port(p.number as i64), "port.number"));
    }
    errs
}

fn validate_redirect(r: &HttpRedirect, matches: &[HttpMatchRequest]) -> FieldError {
    let mut errs = FieldError::default();
    if !r.uri.is_empty() && !r.prefix_rewrite.is_empty() {
        errs.push(FieldError::multiple_one_of(&["uri", "prefixRewrite"]));
    }
    if r.port.is_some() && r.derive_port.is_some() {
        errs.push(FieldError::multiple_one_of(&["port", "derivePort"]));
    }
    if !r.prefix_rewrite.is_empty()
        && matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        errs.push(err(
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
            "prefixRewrite",
        ));
    }
    if r.uri.is_empty()
        && r.prefix_rewrite.is_empty()
        && r.authority.is_empty()
        && r.port.is_none()
        && r.derive_port.is_none()
        && r.scheme.is_empty()
    {
        errs.push(here(
            "redirect must specify URI, authority, scheme, or port",
        ));
    }
    if let Some(code) = r.redirect_code
        && code != 0
        && !(300..=399).contains(&code)
    {
        errs.push(err(
            format!("{code} is not a valid redirect code, must be 3xx"),
            "redirectCode",
        ));
    }
    if !r.scheme.is_empty() && r.scheme != "http" && r.scheme != "https" {
        errs.push(err(
            "invalid redirect scheme, must be \"http\" or \"https\"",
            "scheme",
        ));
    }
    if let Some(p) = r.port
        && p > 0
    {
        errs.push(at(check::port(p as i64), "port"));
    }
    errs
}

fn validate_direct_response(d: &HttpDirectResponse) -> FieldError {
    let mut errs = at(http_status(d.status as i64), "status");
    if let Some(b) = &d.body {
        if b.string.is_some() && b.bytes.is_some() {
            errs.push(FieldError::multiple_one_of(&["string", "bytes"]).via_field("body"));
        }
        match b.decode() {
            Ok(bytes) if bytes.len() > 1024 * 1024 => errs.push(err(
                "large direct_responses may impact control plane performance, must be less than 1MB",
                "body",
            )),
            Ok(_) => {}
            Err(e) => errs.push(err(e, "body.bytes")),
        }
    }
    errs
}

/// retryOn policies Envoy knows (x-envoy-retry-on and x-envoy-retry-grpc-on).
pub const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn validate_retry(r: &HttpRetry) -> FieldError {
    let mut errs = FieldError::default();
    if r.attempts < 0 {
        errs.push(err("attempts cannot be negative", "attempts"));
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || !r.retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        errs.push(err(
            "http retry policy configured when attempts are set to 0 (disabled)",
            "attempts",
        ));
    }
    if let Some(t) = &r.per_try_timeout {
        errs.push(at(duration::parse_checked(t).map(|_| ()), "perTryTimeout"));
    }
    if !r.retry_on.is_empty() {
        for policy in r.retry_on.split(',') {
            let p = policy.trim();
            let is_status = p.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
            if !is_status && !RETRY_ON_POLICIES.contains(&p) {
                errs.push(err(
                    format!("{p:?} is not a valid retryOn policy"),
                    "retryOn",
                ));
            }
        }
    }
    if let Some(b) = &r.backoff {
        errs.push(at(duration::parse_checked(b).map(|_| ()), "backoff"));
    }
    errs
}

fn validate_rewrite(r: &HttpRewrite) -> FieldError {
    let mut errs = FieldError::default();
    if !r.uri.is_empty() && r.uri_regex_rewrite.is_some() {
        errs.push(FieldError::multiple_one_of(&["uri", "uriRegexRewrite"]));
    }
    if r.uri.is_empty() && r.uri_regex_rewrite.is_none() && r.authority.is_empty() {
        errs.push(here(
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
        ));
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let mut e = FieldError::default();
        if rr.pattern.is_empty() || rr.rewrite.is_empty() {
            e.push(here(
                "UriRegexRewrite requires both Rewrite and Match fields to be specified",
            ));
        }
        if !rr.pattern.is_empty() {
            e.push(at(check::search_regex(&rr.pattern).map(|_| ()), "match"));
        }
        errs.push(e.via_field("uriRegexRewrite"));
    }
    errs
}

fn validate_http_destinations(ds: &[HttpRouteDestination]) -> FieldError {
    let mut errs = FieldError::default();
    let mut total: i64 = 0;
    for (i, d) in ds.iter().enumerate() {
        let mut e = match &d.destination {
            Some(dest) => validate_destination(dest).via_field("destination"),
            None => FieldError::missing_field(&["destination"]),
        };
        if let Some(h) = &d.headers {
            e.push(validate_headers(h).via_field("headers"));
        }
        if d.weight < 0 {
            e.push(
                FieldError::out_of_bounds(d.weight, 0, i32::MAX, "weight")
                    .with_details(format!("weight {} < 0", d.weight)),
            );
        }
        total += d.weight.max(0) as i64;
        errs.push(e.via_index(i));
    }
    if ds.len() > 1 && total == 0 {
        errs.push(here("total destination weight = 0"));
    }
    errs
}

fn validate_route_destinations(ds: &[RouteDestination]) -> FieldError {
    let mut errs = FieldError::default();
    let mut total: i64 = 0;
    for (i, d) in ds.iter().enumerate() {
        let mut e = match &d.destination {
            Some(dest) => validate_destination(dest).via_field("destination"),
            None => FieldError::missing_field(&["destination"]),
        };
        if d.weight < 0 {
            e.push(FieldError::out_of_bounds(d.weight, 0, i32::MAX, "weight"));
        }
        total += d.weight.max(0) as i64;
        errs.push(e.via_index(i));
    }
    if ds.len() > 1 && total == 0 {
        errs.push(here("total destination weight = 0"));
    }
    errs.via_field("route")
}

fn validate_tls_route(r: &TlsRoute) -> FieldError {
    let mut errs = FieldError::default();
    if r.matches.is_empty() {
        errs.push(FieldError::missing_field(&["match"]));
    }
    for (i, m) in r.matches.iter().enumerate() {
        let mut e = FieldError::default();
        if m.sni_hosts.is_empty() {
            e.push(FieldError::missing_field(&["sniHosts"]));
        }
        for (j, h) in m.sni_hosts.iter().enumerate() {
            e.push(at(check::wildcard_domain(h), "").via_field_index("sniHosts", j));
        }
        errs.push(e.via_field_index("match", i));
    }
    errs.push(validate_route_destinations(&r.route));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> VirtualService {
        crate::istio::testing::yaml(yaml)
    }

    fn errors(yaml: &str) -> String {
        validate(&vs(yaml)).to_string()
    }

    const AB: &str = "
metadata: {name: hello}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match:
    - headers:
        user-type: {exact: premium}
    route:
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
  - route:
    - destination: {host: hello.default.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
      weight: 20
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,connect-failure,503'}
";

    #[test]
    fn ab_example_is_valid() {
        assert_eq!(errors(AB), "");
        let v = vs(AB);
        assert_eq!(
            v.spec.http[0].matches[0].headers["user-type"],
            StringMatch::exact("premium")
        );
        assert_eq!(v.spec.http[1].route[1].weight, 20);
    }

    #[test]
    fn table_of_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b}, weight: -1}]}]}",
                "expected 0 <= -1 <= 2147483647: spec.http[0].route[0].weight",
            ),
            (
                "spec: {hosts: [a.b], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a.b}}]}]}",
                "expected exactly one, got both: spec.http[0].match[0].uri.exact, spec.http[0].match[0].uri.prefix",
            ),
            (
                "spec: {hosts: [a.b], http: [{match: [{uri: {regex: '(a'}}], route: [{destination: {host: a.b}}]}]}",
                "spec.http[0].match[0].uri.regex",
            ),
            (
                "spec: {hosts: [a.b], http: [{timeout: ten, route: [{destination: {host: a.b}}]}]}",
                "time: invalid duration \"ten\": spec.http[0].timeout",
            ),
            (
                "spec: {hosts: [a.b], http: [{redirect: {uri: /x}, route: [{destination: {host: a.b}}]}]}",
                "expected exactly one, got both: spec.http[0].redirect, spec.http[0].route",
            ),
            (
                "spec: {hosts: [a.b], http: [{}]}",
                "HTTP route, redirect or direct_response is required: spec.http[0].directResponse, spec.http[0].redirect, spec.http[0].route",
            ),
            (
                "spec: {hosts: [a.b], http: [{fault: {}, route: [{destination: {host: a.b}}]}]}",
                "expected exactly one, got neither: spec.http[0].fault.abort, spec.http[0].fault.delay",
            ),
            (
                "spec: {hosts: [a.b], http: [{fault: {abort: {httpStatus: 700, percentage: {value: 101}}}, route: [{destination: {host: a.b}}]}]}",
                "HTTP status 700 is not in range 200-599: spec.http[0].fault.abort.httpStatus",
            ),
            (
                "spec: {hosts: [a.b], http: [{fault: {abort: {httpStatus: 500, percentage: {value: 101}}}, route: [{destination: {host: a.b}}]}]}",
                "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]: spec.http[0].fault.abort.percentage.value",
            ),
            (
                "spec: {hosts: [a.b], http: [{retries: {attempts: 2, retryOn: 'bogus'}, route: [{destination: {host: a.b}}]}]}",
                "\"bogus\" is not a valid retryOn policy: spec.http[0].retries.retryOn",
            ),
            (
                "spec: {hosts: [a.b], http: [{rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}, route: [{destination: {host: a.b}}]}]}",
                "expected exactly one, got both: spec.http[0].rewrite.uri, spec.http[0].rewrite.uriRegexRewrite",
            ),
            (
                "spec: {hosts: [a.b], http: [{redirect: {uri: /a, prefixRewrite: /b}}]}",
                "expected exactly one, got both: spec.http[0].redirect.prefixRewrite, spec.http[0].redirect.uri",
            ),
            (
                "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b}, weight: 0}, {destination: {host: c.d}, weight: 0}]}]}",
                "total destination weight = 0: spec.http[0].route",
            ),
            (
                "spec: {hosts: ['*'], http: [{route: [{destination: {host: a.b}}]}]}",
                "wildcard host * is not allowed for virtual services bound to the mesh gateway: spec.hosts[0]",
            ),
            (
                "spec: {hosts: ['*.a.com', 'b.a.com'], gateways: [gw], http: [{route: [{destination: {host: a.b}}]}]}",
                "duplicate hosts in virtual service: *.a.com & b.a.com: spec.hosts[0], spec.hosts[1]",
            ),
            (
                "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b, subset: V_1}}]}]}",
                "subset name is invalid: V_1: spec.http[0].route[0].destination.subset",
            ),
            (
                "spec: {hosts: [a.b], http: [{corsPolicy: {allowMethods: [FETCH], maxAge: 1.5s}, route: [{destination: {host: a.b}}]}]}",
                "\"FETCH\" is not a supported HTTP method: spec.http[0].corsPolicy.allowMethods[0]",
            ),
            (
                "spec: {hosts: [a.b], http: [{headers: {request: {set: {':path': /x}}}, route: [{destination: {host: a.b}}]}]}",
                "invalid header \":path\": header cannot have \":\" prefix: spec.http[0].headers.request.set[:path]",
            ),
            (
                "spec: {hosts: [a.b], http: [{redirect: {prefixRewrite: /b}, match: [{uri: {exact: /a}}]}]}",
                "redirect prefix_rewrite requires all URI matches to use prefix match type: spec.http[0].redirect.prefixRewrite",
            ),
            (
                "spec: {hosts: [a.b], http: [{retries: {attempts: 0, perTryTimeout: 1s}, route: [{destination: {host: a.b}}]}]}",
                "http retry policy configured when attempts are set to 0 (disabled): spec.http[0].retries.attempts",
            ),
            (
                "spec: {hosts: [a.b], gateways: ['bad/Gw_x'], http: [{route: [{destination: {host: a.b}}]}]}",
                "invalid value for gateway name: \"Gw_x\": spec.gateways[0]",
            ),
            (
                "spec: {hosts: [a.b]}",
                "http, tcp or tls must be provided in virtual service",
            ),
        ];
        crate::istio::testing::each_error_contains(cases, errors);
    }

    #[test]
    fn cors_max_age_precision() {
        let got = errors(
            "spec: {hosts: [a.b], http: [{corsPolicy: {maxAge: 1.5s}, route: [{destination: {host: a.b}}]}]}",
        );
        assert_eq!(
            got,
            "max_age duration is accurate only to seconds precision: spec.http[0].corsPolicy.maxAge"
        );
    }

    #[test]
    fn unknown_fields_and_enum_values_are_rejected() {
        let v: serde_json::Value = serde_saphyr::from_str(
            "spec: {hosts: [a], http: [{route: [{destination: {host: a}}], retry: {attempts: 1}}]}",
        )
        .unwrap();
        let e = serde_json::from_value::<VirtualService>(v).unwrap_err();
        assert!(e.to_string().contains("unknown field `retry`"), "{e}");
        let v: serde_json::Value = serde_saphyr::from_str(
            "spec: {hosts: [a], http: [{redirect: {uri: /a, derivePort: SOMETIMES}}]}",
        )
        .unwrap();
        let e = serde_json::from_value::<VirtualService>(v).unwrap_err();
        assert!(
            e.to_string().contains("unknown redirect port selection"),
            "{e}"
        );
    }

    #[test]
    fn direct_response_body() {
        let v = vs(
            "spec: {hosts: [a.b], http: [{directResponse: {status: 503, body: {bytes: aGVsbG8=}}}]}",
        );
        assert_eq!(validate(&v).to_string(), "");
        let body = v.spec.http[0]
            .direct_response
            .as_ref()
            .unwrap()
            .body
            .as_ref()
            .unwrap();
        assert_eq!(body.decode().unwrap(), b"hello");
        assert!(
            errors(
                "spec: {hosts: [a.b], http: [{directResponse: {status: 503, body: {bytes: '!!'}}}]}"
            )
            .contains("bytes is not valid base64")
        );
    }

    #[test]
    fn overlapping_hosts() {
        assert!(hosts_overlap("*.a.com", "x.a.com"));
        assert!(hosts_overlap("*.com", "*.a.com"));
        assert!(!hosts_overlap("*.a.com", "a.com"));
        assert!(!hosts_overlap("a.com", "b.com"));
    }
}
