//! Forwarding one request on a plain Knative route (no VirtualService for
//! its host): take a slot on an instance (or queue in the activator until
//! one is free), send, and retry only when that is provably safe — the
//! request never reached the app. This is the gateway's fast path.

use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;

use crate::activator::{Backend, Rejection, Slot};
use crate::body::{ProxyBody, StreamLimits, UpstreamRequestBody};
use crate::endpoint::{ConnOpts, Endpoint, NotSentKind, SendError};
use crate::headers;
use crate::istio::authz::{AuthzRequest, Decision};
use crate::istio::flags::ResponseFlags;
use crate::istio::local_reply::{self, LocalReply};
use crate::istio::request::RequestView;
use crate::outline::outlined;
use crate::reply::{Generated, respond, retry_after};
use crate::request_metrics::RequestCounters;
use crate::server::{ConnInfo, Rq};
use crate::table::HostRoute;
use crate::upgrade;

/// Attempts per request (first try included).
const MAX_ATTEMPTS: usize = 3;

/// Turn the client's request head into the upstream one (in place):
/// per-hop headers out (but those an upgrade needs), forwarding headers
/// in, origin-form URI, HTTP/1.1. `hop_by_hop`: the head has per-hop
/// headers (see [`upgrade_of`]).
pub(crate) fn prepare(
    parts: &mut Parts,
    client_ip: &HeaderValue,
    scheme: &'static str,
    upgrade: bool,
    trusted_proxy: bool,
    hop_by_hop: bool,
) {
    if upgrade {
        upgrade::keep_upgrade_headers(&mut parts.headers);
    } else if hop_by_hop {
        headers::strip_hop_by_hop(&mut parts.headers);
    }
    headers::add_forwarded(&mut parts.headers, client_ip, scheme, trusted_proxy);
    // HTTP/2 clients send :authority instead of Host (HTTP/1.1 requests
    // in origin form have no authority: no lookup for them).
    if let Some(a) = parts.uri.authority()
        && !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
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
}

/// Whether `req` has per-hop headers, and the client's side of the upgrade
/// it asks for, if any: one pass over the header names for both (an
/// upgrade needs `Connection` and `Upgrade`, both per-hop).
pub(crate) fn upgrade_of<B>(req: &mut Request<B>) -> (bool, Option<hyper::upgrade::OnUpgrade>) {
    let hop_by_hop = headers::has_hop_by_hop(req.headers());
    let upgrade = (hop_by_hop && upgrade::wanted(req.version(), req.headers()))
        .then(|| hyper::upgrade::on(&mut *req));
    (hop_by_hop, upgrade)
}

/// The flags of a response, if the gateway generated it.
pub(crate) fn flags_of<B>(resp: &Response<B>) -> ResponseFlags {
    resp.extensions()
        .get::<Generated>()
        .map_or(ResponseFlags::NONE, |g| g.flags)
}

/// The workload's AuthorizationPolicies, evaluated on the request as the
/// workload sees it. `Some(reply)` when denied. The view is only built when
/// a policy applies.
pub(crate) fn authorize<'a>(
    backend: &Backend,
    req: impl FnOnce() -> RequestView<'a>,
    conn: &ConnInfo,
) -> Option<LocalReply> {
    let authz = backend.authorizer();
    let a = authz.as_ref().filter(|a| !a.is_empty())?;
    let decision = a.evaluate(&conn.authz_request(req()));
    match decision {
        Decision::Allow => None,
        d => local_reply::denied(
            &d,
            &format!("the workload of revision {}", backend.revision),
        ),
    }
}

impl ConnInfo {
    /// The request as authorization sees it, with this connection's facts.
    /// The original client (Envoy's downstream remote address): the
    /// connection's client, or with trusted proxies in front, the address
    /// they put in X-Forwarded-For (port 0).
    pub(crate) fn remote(&self, headers: &http::HeaderMap) -> std::net::SocketAddr {
        match headers::trusted_client(headers, self.listener.xff_trusted_hops) {
            Some(ip) => std::net::SocketAddr::new(ip, 0),
            None => self.client,
        }
    }

    pub(crate) fn authz_request<'a>(&'a self, req: RequestView<'a>) -> AuthzRequest<'a> {
        AuthzRequest {
            req,
            source_ip: self.peer.ip(),
            remote_ip: self.remote(req.headers).ip(),
            destination_ip: Some(self.local.ip()),
            principal: self.tls.as_ref().and_then(|t| t.principal.as_deref()),
            sni: self.tls.as_ref().and_then(|t| t.sni.as_deref()),
        }
    }
}

/// Forward on `route`: pick a revision by weight, then an instance, and
/// send within the revision's timeout (queue time included). Always yields
/// a response, counted and handed to the gateway's bookkeeping
/// ([`crate::server::Gateway::complete`]): from the future, or right away
/// (boxed, it is rare) when the request is denied.
///
/// The head is rewritten (or the request denied) here, before any await,
/// and the forward is one future of its own that owns what it uses: every
/// level of `.await` nesting, and every argument kept next to a rewritten
/// copy of it, is paid for in bytes copied on every request.
pub(crate) fn forward(
    route: Arc<HostRoute>,
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    rq: Rq,
    http1: bool,
) -> Result<impl Future<Output = Response<ProxyBody>> + Send + 'static, Box<Response<ProxyBody>>> {
    let target = route.pick();
    let (backend, counters) = route.target(target);
    let (hop_by_hop, upgrade) = upgrade_of(&mut req);
    // Rewritten in place: passing the request by value in and out of a
    // function copies it each way.
    let (mut parts, body) = req.into_parts();
    if let Some(denied) = upstream_head(
        &route,
        backend,
        &mut parts,
        hop_by_hop,
        upgrade.is_some(),
        &conn,
    ) {
        let mut resp = Box::new(respond(denied));
        answered(counters, &mut resp, rq, &conn, http1);
        return Err(resp);
    }
    let req = Request::from_parts(parts, UpstreamRequestBody::Client(body));
    Ok(forwarding(
        route,
        target,
        Some(req),
        upgrade,
        conn,
        rq,
        http1,
    ))
}

/// The awaited part of [`forward`]: the request's head is the upstream's.
/// `req` is always there to send: [`Endpoint::send`] takes it by
/// reference, and puts it back when nothing was sent.
///
/// An `async` block rather than an `async fn`, whose arguments are each
/// moved into a local first (one more copy of the request, kept in the
/// future next to the first).
#[expect(clippy::manual_async_fn, reason = "an async fn copies its arguments")]
fn forwarding(
    route: Arc<HostRoute>,
    target: usize,
    mut req: Option<Request<UpstreamRequestBody>>,
    mut upgrade: Option<hyper::upgrade::OnUpgrade>,
    conn: Arc<ConnInfo>,
    mut rq: Rq,
    http1: bool,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    async move {
        let (backend, counters) = route.target(target);
        let conn = &*conn;
        let mut resp = 'done: {
            let start = rq.start;
            let deadline = tokio::time::Instant::from_std(start) + backend.timeout();
            // Counted at the activator from arrival when it is in the path, else
            // only if the request has to queue.
            let mut entered = backend.in_proxy_mode().then(|| backend.enter(start));
            let mut tried = [0usize; MAX_ATTEMPTS];
            let mut last_error = String::new();
            let mut last_kind = NotSentKind::Connect;
            for attempt in 0..MAX_ATTEMPTS {
                if attempt > 0 {
                    if req.is_none() {
                        break 'done refused_with_streamed_body(backend, &last_error);
                    }
                    conn.gateway.stats().retry();
                }
                if let Some(p) = rq.log.as_mut() {
                    p.attempts = attempt as u32 + 1;
                }
                let (ep, waited) = match backend.try_acquire(&tried[..attempt]) {
                    Some(ep) => (ep, false),
                    None => {
                        if entered.is_none() {
                            entered = Some(backend.enter(Instant::now()));
                        }
                        // Outlined: rare, and kept out of the common
                        // request's future and its poll (crate::outline).
                        match outlined(backend.wait(deadline)).await {
                            Ok(ep) => (ep, true),
                            Err(why) => break 'done respond(rejected(&route.name, backend, why)),
                        }
                    }
                };
                tried[attempt] = Arc::as_ptr(&ep) as usize;
                let (instance, addr) = (ep.instance, ep.addr);
                if let Some(p) = rq.log.as_mut() {
                    p.upstream_host = Some(addr);
                }
                // The first try of a request that did not queue goes out as it
                // arrived (microseconds apart): no second clock read.
                let sent_at = if attempt == 0 && !waited {
                    start
                } else {
                    Instant::now()
                };
                let slot = match entered.take() {
                    Some(e) => e.into_slot(ep, sent_at),
                    None => Slot::new_at(ep, backend.clone(), sent_at),
                };
                let ep = slot.endpoint().clone();
                if let Some(down) = upgrade.take()
                    && let Some(req) = req.take()
                {
                    break 'done outlined(forward_upgrade(backend, &ep, req, down, slot, deadline))
                        .await;
                }
                // The app must start its response within
                // responseStartTimeoutSeconds of getting the request, and the
                // whole request stays within timeoutSeconds.
                let start_by =
                    tokio::time::Instant::from_std(sent_at) + backend.response_start_timeout();
                let send = std::pin::pin!(ep.send(&mut req, slot, &ConnOpts::DEFAULT, sent_at));
                // One match on the outcome: matching the timeout first and
                // then the send's result copies that result once more.
                match crate::deadline::timeout_at(start_by.min(deadline), send).await {
                    Err(()) => {
                        ep.note_error();
                        break 'done if start_by < deadline {
                            response_start_timed_out(backend)
                        } else {
                            timed_out(backend)
                        };
                    }
                    Ok(Ok((resp, mut lease))) => {
                        if resp.status().is_server_error() {
                            ep.note_error();
                        }
                        lease.limits = Some(StreamLimits::new(deadline, backend.idle_timeout()));
                        if waited {
                            backend.note_first_byte();
                        }
                        if let Some(p) = rq.log.as_mut() {
                            p.upstream_service_time = Some(sent_at.elapsed());
                        }
                        let (mut parts, body) = resp.into_parts();
                        headers::strip_hop_by_hop(&mut parts.headers);
                        break 'done Response::from_parts(
                            parts,
                            ProxyBody::Upstream {
                                body,
                                lease: Some(lease),
                            },
                        );
                    }
                    Ok(Err(SendError::NotSent { reason, kind })) => {
                        if kind == NotSentKind::Connect {
                            ep.note_error();
                        }
                        tracing::debug!(endpoint = %addr, "not sent, retrying: {reason}");
                        last_error = reason;
                        last_kind = kind;
                        // Counted at the activator again if it retries through it.
                        if backend.in_proxy_mode() {
                            entered = Some(backend.enter(Instant::now()));
                        }
                    }
                    Ok(Err(SendError::Failed { reason, .. })) => {
                        ep.note_error();
                        break 'done respond(local_reply::upstream_reset(
                            false,
                            &format!(
                                "instance {} of revision {} ({}) closed the connection before responding: {reason}; \
                             the request may have been processed, so it was not retried",
                                instance, backend.revision, addr
                            ),
                        ));
                    }
                }
            }
            let why = format!(
                "revision {} of route {} did not accept the request after {MAX_ATTEMPTS} attempts: {last_error}",
                backend.revision, route.name
            );
            respond(match last_kind {
                NotSentKind::Connect => local_reply::connection_failure(true, &why),
                NotSentKind::Closed | NotSentKind::Refused => {
                    let mut r = local_reply::upstream_reset(false, &why);
                    r.flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                    r
                }
            })
        };
        answered(counters, &mut resp, rq, conn, http1);
        resp
    }
}

/// Count `resp` on its target's metrics, then hand it to the gateway's
/// bookkeeping.
fn answered(
    counters: &RequestCounters,
    resp: &mut Response<ProxyBody>,
    mut rq: Rq,
    conn: &ConnInfo,
    http1: bool,
) {
    counters.record(resp.status().as_u16(), flags_of(resp), rq.start.elapsed());
    rq.recorded = true;
    conn.gateway.complete(resp, rq, http1);
}

/// Turn the head of a client request into the upstream request's head for
/// `backend` (`upgrade`: the client asks for one), or the reply denying it.
fn upstream_head(
    route: &HostRoute,
    backend: &Backend,
    parts: &mut Parts,
    hop_by_hop: bool,
    upgrade: bool,
    conn: &ConnInfo,
) -> Option<LocalReply> {
    if let Some(denied) = authorize(
        backend,
        || RequestView::new(parts, conn.scheme, conn.port),
        conn,
    ) {
        return Some(denied);
    }
    prepare(
        parts,
        &conn.client_ip,
        conn.scheme,
        upgrade,
        conn.listener.xff_trusted_hops > 0,
        hop_by_hop,
    );
    for (name, value) in route.set_headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    None
}

/// One attempt at a protocol upgrade (websockets): the client's side of
/// the upgrade is spent on it.
async fn forward_upgrade(
    backend: &Backend,
    ep: &Arc<Endpoint>,
    req: Request<UpstreamRequestBody>,
    down: hyper::upgrade::OnUpgrade,
    slot: Slot,
    deadline: tokio::time::Instant,
) -> Response<ProxyBody> {
    let addr = ep.addr;
    let r = upgrade::forward(ep, req, down, slot, &ConnOpts::DEFAULT, ());
    let result = tokio::time::timeout_at(deadline, r).await;
    if !matches!(result, Ok(Ok(_))) {
        ep.note_error();
    }
    let why = |reason: &str| {
        format!(
            "upgrade to revision {} ({addr}): {reason}",
            backend.revision
        )
    };
    match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(SendError::NotSent { reason, .. })) => {
            respond(local_reply::connection_failure(false, &why(&reason)))
        }
        Ok(Err(SendError::Failed { reason, .. })) => {
            respond(local_reply::upstream_reset(false, &why(&reason)))
        }
        Err(_) => timed_out(backend),
    }
}

fn response_start_timed_out(backend: &Backend) -> Response<ProxyBody> {
    respond(local_reply::upstream_timeout(&format!(
        "revision {} did not start its response within {}s (its responseStartTimeoutSeconds)",
        backend.revision,
        backend.response_start_timeout().as_secs()
    )))
}

fn timed_out(backend: &Backend) -> Response<ProxyBody> {
    respond(local_reply::upstream_timeout(&format!(
        "revision {} did not answer within {}s (its timeoutSeconds)",
        backend.revision,
        backend.timeout().as_secs()
    )))
}

/// An h2c instance refused the request unprocessed, but its streamed body
/// went with it: it cannot be sent again. Cold, out of the request's poll.
#[cold]
#[inline(never)]
fn refused_with_streamed_body(backend: &Backend, reason: &str) -> Response<ProxyBody> {
    let why = format!("revision {}: {reason}", backend.revision);
    respond(local_reply::upstream_reset(false, &why))
}

/// The activator's own answers: every one says why, and when to retry.
pub(crate) fn rejected(route: &str, backend: &Backend, why: Rejection) -> LocalReply {
    let rev = &backend.revision;
    match why {
        Rejection::Overflow { depth } => retry_after(
            local_reply::overflow(&format!(
                "activator: revision {rev} already has {depth} requests queued for a free instance \
                 (the queue holds at most {}); retry later",
                crate::activator::MAX_QUEUE
            )),
            1,
        ),
        Rejection::TimedOut { waited, ready } => retry_after(
            local_reply::overflow(&format!(
                "activator: no instance of revision {rev} could take the request within {:.1}s \
                 (its timeoutSeconds is {}s; {ready} instance(s) ready, all busy at their containerConcurrency {})",
                waited.as_secs_f64(),
                backend.timeout().as_secs(),
                backend.container_concurrency()
            )),
            1,
        ),
        Rejection::Failed(reason) => retry_after(
            local_reply::no_healthy_upstream(&format!(
                "activator: revision {rev} of {route} cannot become ready: {reason}"
            )),
            5,
        ),
        Rejection::NotRunning => {
            local_reply::no_healthy_upstream(&format!("revision {rev} of {route} is not running"))
        }
    }
}
