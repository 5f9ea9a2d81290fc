//! Forwarding one request to a revision: take a slot on an instance (or
//! queue in the activator until one is free), send, and retry only when that
//! is provably safe.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;

use crate::activator::{Backend, Rejection, Slot};
use crate::body::{ProxyBody, UpstreamRequestBody};
use crate::endpoint::SendError;
use crate::headers;
use crate::metrics::GatewayStats;
use crate::reply::{flags, local_reply, local_reply_retry};
use crate::table::HostRoute;

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

/// Forward to `backend` within its timeout (queue time included). Always
/// yields a response.
pub(crate) async fn forward(
    route: &HostRoute,
    backend: &Arc<Backend>,
    mut req: Request<UpstreamRequestBody>,
    stats: &GatewayStats,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let timeout = backend.timeout();
    let deadline = tokio::time::Instant::from_std(start) + timeout;
    // Counted at the activator from arrival when it is in the path, else
    // only if the request has to queue.
    let mut entered = backend.in_proxy_mode().then(|| backend.enter(start));
    let mut tried = [0usize; MAX_ATTEMPTS];
    let mut last_error = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            stats.retry();
        }
        let (ep, waited) = match backend.try_acquire(&tried[..attempt]) {
            Some(ep) => (ep, false),
            None => {
                if entered.is_none() {
                    entered = Some(backend.enter(Instant::now()));
                }
                match backend.wait(deadline).await {
                    Ok(ep) => (ep, true),
                    Err(why) => return rejected(route, backend, why),
                }
            }
        };
        tried[attempt] = Arc::as_ptr(&ep) as usize;
        let (instance, addr) = (ep.instance, ep.addr);
        let slot = match entered.take() {
            Some(e) => e.into_slot(ep),
            None => Slot::new(ep, backend.clone()),
        };
        let ep = slot.endpoint().clone();
        let sent = tokio::time::timeout_at(deadline, ep.send(req, slot)).await;
        let Ok(sent) = sent else {
            return timed_out(backend);
        };
        match sent {
            Ok((resp, lease)) => {
                if waited {
                    backend.note_first_byte();
                }
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
                tracing::debug!(endpoint = %addr, "not sent, retrying: {reason}");
                last_error = reason;
                req = *request;
                // Counted at the activator again if it retries through it.
                if backend.in_proxy_mode() {
                    entered = Some(backend.enter(Instant::now()));
                }
            }
            Err(SendError::Failed { reason, .. }) => {
                return local_reply(
                    StatusCode::BAD_GATEWAY,
                    flags::UPSTREAM_CONNECTION_TERMINATION,
                    format!(
                        "skiff gateway: instance {} of revision {} ({}) closed the connection before responding: {reason}; \
                         the request may have been processed, so it was not retried",
                        instance, backend.revision, addr
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

fn timed_out(backend: &Backend) -> Response<ProxyBody> {
    local_reply(
        StatusCode::GATEWAY_TIMEOUT,
        flags::UPSTREAM_REQUEST_TIMEOUT,
        format!(
            "skiff gateway: upstream request timeout: revision {} did not answer within {}s (its timeoutSeconds)",
            backend.revision,
            backend.timeout().as_secs()
        ),
    )
}

/// The activator's own answers: every one says why, and when to retry.
fn rejected(route: &HostRoute, backend: &Backend, why: Rejection) -> Response<ProxyBody> {
    let rev = &backend.revision;
    match why {
        Rejection::Overflow { depth } => local_reply_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            flags::UPSTREAM_OVERFLOW,
            format!(
                "skiff activator: overloaded: revision {rev} already has {depth} requests queued for a free instance \
                 (the queue holds at most {}); retry later",
                crate::activator::MAX_QUEUE
            ),
            1,
        ),
        Rejection::TimedOut { waited, ready } => local_reply_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            flags::UPSTREAM_OVERFLOW,
            format!(
                "skiff activator: no instance of revision {rev} could take the request within {:.1}s \
                 (its timeoutSeconds is {}s; {ready} instance(s) ready, all busy at their containerConcurrency {})",
                waited.as_secs_f64(),
                backend.timeout().as_secs(),
                backend.container_concurrency()
            ),
            1,
        ),
        Rejection::Failed(reason) => local_reply_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            flags::NO_HEALTHY_UPSTREAM,
            format!(
                "skiff activator: revision {rev} of route {} cannot become ready: {reason}",
                route.name
            ),
            5,
        ),
        Rejection::NotRunning => local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            flags::NO_HEALTHY_UPSTREAM,
            format!(
                "skiff gateway: no healthy upstream: revision {rev} of route {} is not running",
                route.name
            ),
        ),
    }
}
