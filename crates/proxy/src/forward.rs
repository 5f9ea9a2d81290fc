//! Forwarding one request to a revision: pick an instance, send, and retry
//! only when that is provably safe.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, UpstreamRequestBody};
use crate::endpoint::SendError;
use crate::headers;
use crate::metrics::GatewayStats;
use crate::reply::{flags, local_reply};
use crate::table::{Backend, HostRoute};

/// Attempts per request (first try included).
const MAX_ATTEMPTS: usize = 3;

/// What a retry of a request that already went out needs: the request head.
/// Only kept for idempotent requests without a body.
struct Replay {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<UpstreamRequestBody> {
        let mut r = Request::new(UpstreamRequestBody::Empty);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Turn the client's request into the upstream request (in place).
pub(crate) fn prepare(
    req: Request<Incoming>,
    authority: &str,
    client: SocketAddr,
) -> Request<UpstreamRequestBody> {
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, client.ip(), "http");
    if !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority)
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
    backend: &Arc<Backend>,
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
    backend: &Arc<Backend>,
    mut req: Request<UpstreamRequestBody>,
    stats: &GatewayStats,
) -> Response<ProxyBody> {
    let replay = if is_idempotent(req.method()) && http_body::Body::is_end_stream(req.body()) {
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    } else {
        None
    };
    let mut tried = [0usize; MAX_ATTEMPTS];
    let mut last_error = String::new();
    let mut last_flag = flags::UPSTREAM_CONNECTION_FAILURE;
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
                last_flag = flags::UPSTREAM_CONNECTION_FAILURE;
                req = *request;
            }
            Err(SendError::Failed { reason, reused }) => {
                last_flag = flags::UPSTREAM_CONNECTION_TERMINATION;
                match &replay {
                    // A pooled connection closed by the app as we reused it:
                    // an idempotent, bodiless request is safe to send again.
                    Some(r) if reused => {
                        tracing::debug!(endpoint = %ep.addr, "pooled connection failed, replaying: {reason}");
                        last_error = reason;
                        req = r.request();
                    }
                    _ => {
                        return local_reply(
                            StatusCode::BAD_GATEWAY,
                            last_flag,
                            format!(
                                "skiff gateway: instance {} of revision {} ({}) closed the connection before responding: {reason}; \
                                 the request may have been processed, so it was not retried",
                                ep.instance, backend.revision, ep.addr
                            ),
                        );
                    }
                }
            }
        }
    }
    local_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        last_flag,
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
