//! Istio's ValidateVirtualService, with the path of each error.

use super::*;
use crate::field_error::FieldError;
use crate::istio::check::{self, at, err, here};
use crate::istio::duration;

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
fn gateway_name(g: &str) -> FieldError {
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

fn validate_destination(d: &Destination) -> FieldError {
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
