//! The replies the gateway generates itself under Istio semantics, as data:
//! status, response flags, `%RESPONSE_CODE_DETAILS%`, headers and body. The
//! body is Envoy's text byte for byte (what users grep for) and, when the
//! caller says why, a second line naming the hop and the reason (Skiff's
//! promise). The forwarding path turns these into responses with
//! `x-skiff-flags`.

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::authz::{DENIED_BODY, Decision};
use super::circuit_breaker::{OVERFLOW_BODY, OVERLOADED_HEADER};
use super::fault::{ABORT_BODY, AbortKind};
use super::flags::ResponseFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: StatusCode,
    pub flags: ResponseFlags,
    pub details: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: String,
}

impl LocalReply {
    /// A reply with Envoy's body line `envoy` (may be empty) and, when
    /// `why` is given, Skiff's line naming the hop and the reason.
    pub fn new(
        status: StatusCode,
        flags: ResponseFlags,
        details: &str,
        envoy: &str,
        why: &str,
    ) -> LocalReply {
        let body = match (envoy.is_empty(), why.is_empty()) {
            (true, true) => String::new(),
            // Exactly Envoy's bytes (access logs and clients compare sizes).
            (false, true) => envoy.to_string(),
            (true, false) => format!("skiff gateway: {why}\n"),
            (false, false) => format!("{envoy}\nskiff gateway: {why}\n"),
        };
        LocalReply {
            status,
            flags,
            details: details.to_string(),
            headers: Vec::new(),
            body,
        }
    }

    /// Add a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> LocalReply {
        self.headers.push((name, value));
        self
    }
}

const RESET_PREFIX: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

/// A circuit breaker refused (pending queue or max requests): 503 UO with
/// `x-envoy-overloaded: true`. Never retried.
pub fn overflow(why: &str) -> LocalReply {
    let mut r = LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ResponseFlags::UPSTREAM_OVERFLOW,
        "upstream_reset_before_response_started{overflow}",
        OVERFLOW_BODY,
        why,
    );
    r.headers.push((
        HeaderName::from_static(OVERLOADED_HEADER),
        HeaderValue::from_static("true"),
    ));
    r
}

/// Every host is ejected or none exists: 503 UH.
pub fn no_healthy_upstream(why: &str) -> LocalReply {
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ResponseFlags::NO_HEALTHY_UPSTREAM,
        "no_healthy_upstream",
        "no healthy upstream",
        why,
    )
}

/// The route timeout fired: 504 UT.
pub fn upstream_timeout(why: &str) -> LocalReply {
    LocalReply::new(
        StatusCode::GATEWAY_TIMEOUT,
        ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
        "upstream_response_timeout",
        "upstream request timeout",
        why,
    )
}

/// No rule matched: 404 NR (Envoy's body is empty).
pub fn no_route(why: &str) -> LocalReply {
    LocalReply::new(
        StatusCode::NOT_FOUND,
        ResponseFlags::NO_ROUTE_FOUND,
        "route_not_found",
        "",
        why,
    )
}

/// The destination names no cluster (unknown host, undefined subset): 503
/// NC.
pub fn no_cluster(why: &str) -> LocalReply {
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ResponseFlags::NO_CLUSTER_FOUND,
        "cluster_not_found",
        "",
        why,
    )
}

/// Connect failure after retries: 503 UF (plus URX when retries ran out).
pub fn connection_failure(retries_exhausted: bool, why: &str) -> LocalReply {
    let mut flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
    if retries_exhausted {
        flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
    }
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        flags,
        "upstream_reset_before_response_started{connection_failure}",
        &format!("{RESET_PREFIX}connection failure"),
        why,
    )
}

/// The upstream closed or reset before responding: 503 UC / UR.
pub fn upstream_reset(remote_reset: bool, why: &str) -> LocalReply {
    let (flag, reason, detail) = if remote_reset {
        (
            ResponseFlags::UPSTREAM_REMOTE_RESET,
            "remote reset",
            "remote_reset",
        )
    } else {
        (
            ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
            "connection termination",
            "connection_termination",
        )
    };
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        flag,
        &format!("upstream_reset_before_response_started{{{detail}}}"),
        &format!("{RESET_PREFIX}{reason}"),
        why,
    )
}

/// Fault injection abort: FI.
pub fn fault_abort(kind: AbortKind) -> LocalReply {
    match kind {
        AbortKind::Http(status) => LocalReply::new(
            status,
            ResponseFlags::FAULT_INJECTED,
            "fault_filter_abort",
            ABORT_BODY,
            "",
        ),
        AbortKind::Grpc(code) => {
            let mut r = LocalReply::new(
                StatusCode::OK,
                ResponseFlags::FAULT_INJECTED,
                "fault_filter_abort",
                "",
                "",
            );
            r.headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            ));
            r.headers.push((
                HeaderName::from_static("grpc-status"),
                HeaderValue::from(code),
            ));
            r.headers.push((
                HeaderName::from_static("grpc-message"),
                HeaderValue::from_static(ABORT_BODY),
            ));
            r
        }
    }
}

/// A request the gateway cannot route or read (no Host, bad URI): 400
/// DPE.
pub fn bad_request(why: &str) -> LocalReply {
    LocalReply::new(
        StatusCode::BAD_REQUEST,
        ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
        "downstream_protocol_error",
        "",
        why,
    )
}

/// A CORS preflight answered by the policy: 200 with its headers.
pub fn cors_preflight(headers: &http::HeaderMap) -> LocalReply {
    let mut r = LocalReply::new(StatusCode::OK, ResponseFlags::NONE, "cors_response", "", "");
    r.headers
        .extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    r
}

/// Authorization denied: 403, no flag, Envoy's body; `hop` (the gateway,
/// or the workload) is named on Skiff's line with the policy that denied.
pub fn denied(decision: &Decision, hop: &str) -> Option<LocalReply> {
    let details = decision.details()?;
    let why = match decision {
        Decision::Deny(id) if id == "none" => {
            format!("{hop}: no ALLOW AuthorizationPolicy matched the request")
        }
        Decision::Deny(id) => format!("{hop}: denied by AuthorizationPolicy {id}"),
        Decision::Allow => String::new(),
    };
    Some(LocalReply::new(
        StatusCode::FORBIDDEN,
        ResponseFlags::NONE,
        &details,
        DENIED_BODY,
        &why,
    ))
}

/// A redirect (`redirect` rule or `httpsRedirect`).
pub fn redirect(status: StatusCode, location: &str) -> Option<LocalReply> {
    let mut r = LocalReply::new(status, ResponseFlags::NONE, "direct_response", "", "");
    r.headers.push((
        http::header::LOCATION,
        HeaderValue::from_str(location).ok()?,
    ));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_first_lines() {
        let r = overflow(
            "cluster outbound||v1|hello.default.svc.cluster.local: 1 connection and 1 pending request in use",
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.flags.to_string(), "UO");
        assert_eq!(r.body.lines().next().unwrap().len(), 81);
        assert_eq!(
            overflow("").body.len(),
            81,
            "Envoy's exact body without an explanation"
        );
        assert_eq!(r.headers[0].1, "true");
        assert!(r.body.contains("\nskiff gateway: cluster outbound"));
        assert_eq!(no_healthy_upstream("").body, "no healthy upstream");
        assert_eq!(upstream_timeout("").status, 504);
        assert_eq!(no_route("").body, "", "Envoy's NR reply is empty");
        assert_eq!(
            no_route("no VirtualService rule matched").body,
            "skiff gateway: no VirtualService rule matched\n"
        );
        assert_eq!(connection_failure(true, "").flags.to_string(), "UF,URX");
        assert_eq!(
            upstream_reset(false, "").body,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        );
        assert_eq!(
            fault_abort(AbortKind::Http(StatusCode::IM_A_TEAPOT)).body,
            "fault filter abort"
        );
        let g = fault_abort(AbortKind::Grpc(14));
        assert_eq!(
            (g.status.as_u16(), g.headers[1].1.to_str().unwrap()),
            (200, "14")
        );
        let d = denied(&Decision::Deny("none".into()), "revision default/a-00001").unwrap();
        assert_eq!(d.status.as_u16(), 403);
        assert_eq!(
            d.body,
            "RBAC: access denied\nskiff gateway: revision default/a-00001: no ALLOW AuthorizationPolicy matched the request\n"
        );
        assert_eq!(d.details, "rbac_access_denied_matched_policy[none]");
        assert!(denied(&Decision::Allow, "x").is_none());
        assert_eq!(
            redirect(StatusCode::MOVED_PERMANENTLY, "https://a/")
                .unwrap()
                .headers[0]
                .1,
            "https://a/"
        );
    }
}
