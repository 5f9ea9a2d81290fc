//! Forwarding one request to a revision: pick an instance, send, and retry
//! only when that is provably safe.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, UpstreamRequestBody};
use crate::endpoint::SendError;
use crate::headers;
use crate::metrics::GatewayStats;
use crate::reply::{flags, local_reply};
use crate::table::{Backend, HostRoute};

/// Attempts per request (first try included).
const MAX_ATTEMPTS: usize = 3;

/// Turn the client's request into the upstream request (in place).
pub(crate) fn prepare(
    req: Request<Incoming>,
    client_ip: &HeaderValue,
) -> Request<UpstreamRequestBody> {
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, client_ip, "http");
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        // HTTP/2 clients send :authority instead of Host.
        parts.headers.insert(header::HOST, v);
    }
    // Origin form for HTTP/1.1 upstreams.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts.uri.path_and_query().cloned();
        let mut up = http::uri::Parts::default();
        up.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        if let Ok(u) = Uri::from_parts(up) {
            parts.uri = u;
        }
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, UpstreamRequestBody::Client(body))
}

/// Forward to `backend`, within its timeout. Always yields a response.
pub(crate) async fn forward(
    route: &HostRoute,
    backend: &Backend,
    req: Request<UpstreamRequestBody>,
    stats: &GatewayStats,
) -> Response<ProxyBody> {
    match tokio::time::timeout(backend.timeout, attempts(route, backend, req, stats)).await {
        Ok(resp) => resp,
        Err(_) => local_reply(
            StatusCode::GATEWAY_TIMEOUT,
            flags::UPSTREAM_REQUEST_TIMEOUT,
            format!(
                "skiff gateway: upstream request timeout: revision {} did not answer within {}s (its timeoutSeconds)",
                backend.revision,
                backend.timeout.as_secs()
            ),
        ),
    }
}

async fn attempts(
    route: &HostRoute,
    backend: &Backend,
    mut req: Request<UpstreamRequestBody>,
    stats: &GatewayStats,
) -> Response<ProxyBody> {
    let mut tried = [0usize; MAX_ATTEMPTS];
    let mut last_error = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            stats.retry();
        }
        let Some(ep) = backend.pick(&tried[..attempt]) else {
            return no_instance(route, backend);
        };
        tried[attempt] = Arc::as_ptr(ep) as usize;
        match ep.send(req).await {
            Ok((resp, lease)) => {
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(
                    parts,
                    ProxyBody::Upstream {
                        body,
                        lease: Some(lease),
                    },
                );
            }
            Err(SendError::NotSent { request, reason }) => {
                tracing::debug!(endpoint = %ep.addr, "not sent, retrying: {reason}");
                last_error = reason;
                req = *request;
            }
            Err(SendError::Failed { reason, .. }) => {
                return local_reply(
                    StatusCode::BAD_GATEWAY,
                    flags::UPSTREAM_CONNECTION_TERMINATION,
                    format!(
                        "skiff gateway: instance {} of revision {} ({}) closed the connection before responding: {reason}; \
                         the request may have been processed, so it was not retried",
                        ep.instance, backend.revision, ep.addr
                    ),
                );
            }
        }
    }
    local_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        flags::UPSTREAM_CONNECTION_FAILURE,
        format!(
            "skiff gateway: revision {} of route {} did not accept the request after {MAX_ATTEMPTS} attempts: {last_error}",
            backend.revision, route.name
        ),
    )
}

fn no_instance(route: &HostRoute, backend: &Backend) -> Response<ProxyBody> {
    let why = backend
        .unavailable
        .as_deref()
        .unwrap_or("no instance is ready yet");
    local_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        flags::NO_HEALTHY_UPSTREAM,
        format!(
            "skiff gateway: no healthy upstream: revision {} of route {} has no ready instance: {why}",
            backend.revision, route.name
        ),
    )
}
