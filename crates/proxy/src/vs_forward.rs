//! Forwarding a request whose host has a VirtualService on its listener,
//! in the order Envoy's filter chain applies Istio's configuration (see
//! `docs/istio-wiring.md`): TLS redirect, the gateway's authorization, the
//! first matching rule, CORS, fault injection, redirect / direct response /
//! route, request rewrites and header operations, mirrors, then the
//! destination's cluster — circuit breakers, load balancing over instances
//! that outlier detection has not ejected, the workload's authorization,
//! per-try and route timeouts, and retries as the rule's policy allows.
//!
//! Retries that may repeat a request the app saw (after a response, a reset
//! after the request was written, a per-try timeout) happen only for
//! idempotent methods unless the VirtualService opts in, and only when the
//! request can be sent again (no body, or a body small enough to buffer).
//! Retries of requests that never reached the app always can.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::access::protocol;
use crate::activator::{Rejection, Slot};
use crate::body::{ProxyBody, StreamLimits, UpstreamRequestBody};
use crate::cluster::{Choice, Cluster};
use crate::endpoint::{NotSentKind, SendError};
use crate::forward::{authorize, flags_of, prepare, rejected, upgrade_of};
use crate::headers;
use crate::istio::cluster_state::ClusterCounters;
use crate::istio::cors::CorsAction;
use crate::istio::flags::ResponseFlags;
use crate::istio::header_ops::HeaderContext;
use crate::istio::local_reply::{self, LocalReply};
use crate::istio::outlier::OutlierResult;
use crate::istio::request::{RequestView, host_of, port_of};
use crate::istio::retry::{ATTEMPT_COUNT_HEADER, AttemptOutcome, NoRetry, RetryOn, Timeouts};
use crate::istio::rewrite::Redirect;
use crate::istio::route::{Action, Mirror, RouteTarget, SHADOW_SUFFIX};
use crate::istio::time::MonoTime;
use crate::istio::{rand, retry};
use crate::outline::outlined;
use crate::replay::Head;
use crate::reply::{Generated, respond};
use crate::request_metrics::RequestCounters;
use crate::server::{ConnInfo, Rq};
use crate::table::{RoutingTable, VirtualHost};
use crate::upgrade;

/// Largest request body kept in memory so that it can be sent again
/// (Envoy's default per-connection buffer limit).
pub const MAX_BUFFERED_BODY: u64 = 1 << 20;
/// A mirrored request gets this long before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

static ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
/// Request headers that steer Envoy's router; an edge proxy drops them from
/// external clients (Envoy's header sanitizing), so a client cannot, say,
/// give itself a longer timeout at the ingress gateway.
static ROUTER_CONTROL_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static(retry::RQ_TIMEOUT_HEADER),
    HeaderName::from_static(retry::PER_TRY_TIMEOUT_HEADER),
    HeaderName::from_static("x-envoy-retry-on"),
    HeaderName::from_static("x-envoy-retry-grpc-on"),
    HeaderName::from_static("x-envoy-max-retries"),
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms"),
];
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static ATTEMPT_COUNT: HeaderName = HeaderName::from_static(ATTEMPT_COUNT_HEADER);

/// How one attempt ended.
// A response is the common outcome: boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Response(Response<Incoming>, crate::endpoint::Lease),
    NotSent(NotSentKind, String),
    Reset(String),
    Timeout,
}

/// Can `policy` retry once the app may have seen the request?
fn retries_after_send(p: &retry::RetryPolicy) -> bool {
    p.num_retries > 0
        && p.retry_on.has(
            RetryOn::FIVE_XX
                .with(RetryOn::GATEWAY_ERROR)
                .with(RetryOn::RESET)
                .with(RetryOn::RETRIABLE_4XX)
                .with(RetryOn::ENVOY_RATELIMITED)
                .with(RetryOn::GRPC_CANCELLED)
                .with(RetryOn::GRPC_DEADLINE_EXCEEDED)
                .with(RetryOn::GRPC_INTERNAL)
                .with(RetryOn::GRPC_RESOURCE_EXHAUSTED)
                .with(RetryOn::GRPC_UNAVAILABLE),
        )
        || (p.num_retries > 0
            && p.retry_on.has(RetryOn::RETRIABLE_STATUS_CODES)
            && !p.retriable_status_codes.is_empty())
}

/// Must `method`'s request be kept to be sent again after it went out?
fn needs_replay(p: &retry::RetryPolicy, method: &Method) -> bool {
    retries_after_send(p) && (!p.idempotent_only || retry::is_idempotent(method))
}

/// Does the request carry an `x-envoy-*` header, the prefix of every
/// header that steers the router? A scan of the names, no hashing: nearly
/// no request has one, and then it needs no lookups for them.
fn has_envoy_headers(h: &HeaderMap) -> bool {
    h.keys().any(|n| n.as_str().starts_with("x-envoy-"))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A random id in UUID form (Envoy mints one when the client sent none).
fn request_id() -> HeaderValue {
    let id = uuid(rand::next_u64(), rand::next_u64());
    HeaderValue::from_bytes(&id).expect("hex digits and dashes")
}

/// A version 4 UUID from 128 random bits, as text: written in place, as
/// this runs for nearly every request.
fn uuid(a: u64, b: u64) -> [u8; 36] {
    fn hex(out: &mut [u8], mut v: u64) {
        for c in out.iter_mut().rev() {
            *c = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
        }
    }
    let mut id = *b"00000000-0000-0000-0000-000000000000";
    hex(&mut id[..8], a >> 32);
    hex(&mut id[9..13], a >> 16);
    hex(&mut id[14..18], 0x4000 | (a & 0x0fff));
    hex(&mut id[19..23], 0x8000 | ((b >> 48) & 0x3fff));
    hex(&mut id[24..], b);
    id
}

/// The `x-envoy-attempt-count` value: attempts are few, so the common
/// ones are static values (no allocation).
fn attempt_count(n: u32) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(n as usize) {
        Some(d) => HeaderValue::from_static(d),
        None => HeaderValue::from(n),
    }
}

fn earliest(a: Option<tokio::time::Instant>, b: tokio::time::Instant) -> tokio::time::Instant {
    a.map_or(b, |a| a.min(b))
}

/// The shadow host of a mirrored request (`host-shadow[:port]`).
fn shadow_host(authority: &str) -> Option<HeaderValue> {
    let host = host_of(authority);
    let s = match port_of(authority) {
        Some(p) => format!("{host}{SHADOW_SUFFIX}:{p}"),
        None => format!("{host}{SHADOW_SUFFIX}"),
    };
    HeaderValue::from_str(&s).ok()
}

/// Send a copy of the request to `cluster` and forget it: no queueing, no
/// retries; the response is read and dropped.
fn mirror(cluster: Arc<Cluster>, head: &Head) {
    let mut req = head.request();
    if let Some(h) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow_host)
    {
        req.headers_mut().insert(header::HOST, h);
    }
    tokio::spawn(async move {
        let Choice::Endpoint { member, ep } = cluster.choose(None, &[], MonoTime::now()) else {
            return;
        };
        let slot = Slot::new(ep.clone(), cluster.members[member].backend.clone());
        let guard = if ep.is_h2c() {
            None
        } else {
            match cluster.breaker.try_connection() {
                Some(g) => Some(g),
                None => return,
            }
        };
        let sent = tokio::time::timeout(MIRROR_TIMEOUT, async {
            let mut req = Some(req);
            if let Ok((resp, lease)) = ep.send(&mut req, slot, &cluster.opts, Instant::now()).await
            {
                // The body drives the connection and ends the lease.
                let body = ProxyBody::Upstream {
                    body: resp.into_body(),
                    lease: Some(lease),
                };
                let _ = body.collect().await;
            }
        });
        let _ = sent.await;
        drop(guard);
    });
}

/// Apply a rule's and its destination's response header operations.
fn response_headers(
    rule_ops: &crate::istio::header_ops::HeaderRules,
    target: Option<&RouteTarget>,
    h: &mut HeaderMap,
    ctx: &HeaderContext<'_>,
) {
    rule_ops.response.apply(h, ctx);
    if let Some(t) = target {
        t.headers.response.apply(h, ctx);
    }
}

/// Forward `req` by the rules of `vh` (a virtual host of `table`).
///
/// An `async` block, not an `async fn`, which would copy the request into a
/// local of its own first (see [`crate::forward::forwarding`]).
#[expect(clippy::manual_async_fn, reason = "an async fn copies its arguments")]
pub(crate) fn forward<'a>(
    table: Arc<RoutingTable>,
    vh: &'a VirtualHost,
    mut req: Request<Incoming>,
    conn: &'a ConnInfo,
    rq: &'a mut Rq,
) -> impl Future<Output = Response<ProxyBody>> + 'a {
    async move {
        let (hop_by_hop, on_upgrade) = upgrade_of(&mut req);
        let (mut parts, body) = req.into_parts();
        // Only the mesh (the cluster-local listener, internal callers) may steer
        // the router with x-envoy-* headers; gateways sanitize them.
        let steered = has_envoy_headers(&parts.headers);
        if steered && !conn.listener.scope.local {
            for h in &ROUTER_CONTROL_HEADERS {
                parts.headers.remove(h);
            }
        }
        let hctx = HeaderContext {
            downstream_remote: Some(conn.remote(&parts.headers)),
            downstream_local: Some(conn.local),
            protocol: protocol(parts.version),
            request_headers: None,
        };
        let view = RequestView::new(&parts, conn.scheme, conn.port);
        if vh.require_tls && conn.scheme == "http" {
            let to = Redirect::https().location(&view, 0);
            return respond(
                local_reply::redirect(http::StatusCode::MOVED_PERMANENTLY, &to)
                    .unwrap_or_else(|| local_reply::bad_request("cannot redirect to https")),
            );
        }
        if let Some(a) = vh.authz.as_ref().filter(|a| !a.is_empty())
            && let Some(r) = local_reply::denied(
                &a.evaluate(&conn.authz_request(view)),
                "the ingress gateway",
            )
        {
            return respond(r);
        }
        let Some(m) = vh.routes.find(&view) else {
            return respond(local_reply::no_route(&format!(
                "no rule of the VirtualServices for host {:?} matched {} {}",
                &*vh.host, view.method, view.path
            )));
        };
        let rule = m.rule;
        if let Some(p) = rq.log.as_mut() {
            p.route_name = Some(m.route_name.into());
        }
        let mut cors_origin = None;
        if let Some(c) = &rule.cors {
            match c.on_request(&view) {
                CorsAction::Reply(h) => return respond(local_reply::cors_preflight(&h)),
                CorsAction::ForwardAllowed(o) => cors_origin = Some(o),
                CorsAction::Forward => {}
            }
        }
        let fault = rule.fault.as_ref().map(|f| f.decide()).unwrap_or_default();
        let target = match &rule.action {
            Action::Route(t) => t.pick(),
            Action::Redirect(r) => {
                let to = r.location(&view, m.matched_len);
                return respond(local_reply::redirect(r.status, &to).unwrap_or_else(|| {
                    local_reply::bad_request("the redirect location is not a valid header")
                }));
            }
            Action::Direct(d) => {
                let mut resp = Response::new(ProxyBody::full(d.body.clone()));
                *resp.status_mut() = d.status;
                response_headers(&rule.headers, None, resp.headers_mut(), &hctx);
                resp.extensions_mut().insert(Generated {
                    flags: ResponseFlags::NONE,
                    details: "direct_response".into(),
                });
                return resp;
            }
            // `find` flattens delegates; nothing to forward to.
            Action::Delegate(_) => {
                return respond(local_reply::no_route(
                    "the delegate VirtualService has no matching rule",
                ));
            }
        };
        let dest = &target.destination;
        // Borrowed from the table this request holds: no reference count
        // shared by every worker to bump.
        let Some(cluster) = dest
            .cluster
            .and_then(|i| table.istio.clusters.get(i as usize))
        else {
            return respond(local_reply::no_cluster(&format!(
                "destination {}{} of {} resolves to no cluster: no Knative Service answers on that host{}",
                dest.host,
                dest.subset
                    .as_deref()
                    .map(|s| format!(" subset {s}"))
                    .unwrap_or_default(),
                rule.source,
                if dest.subset.is_some() {
                    ", or no DestinationRule defines the subset"
                } else {
                    ""
                }
            )));
        };
        let hash = cluster
            .policy
            .lb
            .hash_key
            .as_ref()
            .map(|k| k.compute(&view, conn.remote(view.headers).ip()));
        let new_path = rule
            .rewrite
            .as_ref()
            .and_then(|r| r.path(view.path, view.query, m.matched_len));
        let authority = rule
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.clone())
            .or_else(|| rule.headers.authority.clone())
            .or_else(|| target.headers.authority.clone());
        let timeouts = if steered {
            Timeouts::effective(rule.timeout, rule.retry.per_try_timeout, &parts.headers)
        } else {
            Timeouts::configured(rule.timeout, rule.retry.per_try_timeout)
        };
        let mirrors: Vec<&Mirror> = rule.mirrors.iter().filter(|m| m.sample()).collect();

        let mut flags = ResponseFlags::NONE;
        if let Some(d) = fault.delay {
            flags.set(ResponseFlags::DELAY_INJECTED);
            tokio::time::sleep(d).await;
        }
        if let Some(k) = fault.abort {
            let mut r = local_reply::fault_abort(k);
            r.flags.set(flags);
            return respond(r);
        }

        // The request as the destination sees it.
        if let Some(p) = new_path {
            if let Some(orig) = parts
                .uri
                .path_and_query()
                .and_then(|pq| HeaderValue::from_str(pq.as_str()).ok())
            {
                parts.headers.insert(ORIGINAL_PATH.clone(), orig);
            }
            match p.parse::<Uri>() {
                Ok(u) => parts.uri = u,
                Err(_) => {
                    return respond(local_reply::bad_request(&format!(
                        "the rewritten path {p:?} is not a valid URI"
                    )));
                }
            }
        }
        prepare(
            &mut parts,
            &conn.client_ip,
            conn.scheme,
            on_upgrade.is_some(),
            conn.listener.xff_trusted_hops > 0,
            hop_by_hop,
        );
        if let Some(a) = authority {
            parts.headers.insert(header::HOST, a);
        }
        rule.headers.request.apply(&mut parts.headers, &hctx);
        target.headers.request.apply(&mut parts.headers, &hctx);
        parts.headers.entry(&REQUEST_ID).or_insert_with(request_id);
        if let Some(p) = rq.log.as_mut()
            && let Some(id) = parts.headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
        {
            p.set_request_id(id);
        }

        // A body that may have to go out again is read first (small ones).
        let method = parts.method.clone();
        let replay_wanted = needs_replay(&rule.retry, &method) || !mirrors.is_empty();
        let body = if body.is_end_stream() {
            UpstreamRequestBody::Empty
        } else if replay_wanted
            && content_length(&parts.headers).is_some_and(|n| n <= MAX_BUFFERED_BODY)
        {
            match body.collect().await {
                Ok(c) => UpstreamRequestBody::Buffered(Some(c.to_bytes())),
                Err(e) => {
                    return respond(local_reply::bad_request(&format!(
                        "reading the request body failed: {e}"
                    )));
                }
            }
        } else {
            UpstreamRequestBody::Client(body)
        };
        // A copy of the head only when the request may go out again after the
        // app saw it (a retry on a response, a reset, a per-try timeout) or to
        // a mirror: an attempt that sent nothing hands its request back.
        let head = match &body {
            _ if !replay_wanted => None,
            UpstreamRequestBody::Empty => Some(None),
            UpstreamRequestBody::Buffered(b) => Some(b.clone()),
            UpstreamRequestBody::Client(_) => None,
        }
        .map(|body| Head::new(&parts.method, &parts.uri, &parts.headers, body));
        if let Some(h) = &head {
            for m in &mirrors {
                if let Some(c) = m
                    .destination
                    .cluster
                    .and_then(|i| table.istio.clusters.get(i as usize))
                {
                    mirror(c.clone(), h);
                }
            }
        }
        let hash_key = hash.as_ref().and_then(|h| h.key);
        let set_cookie = hash.and_then(|h| h.set_cookie);

        let ctx = Attempts {
            cluster,
            conn,
            rule_source: &rule.source,
            retry: &rule.retry,
            timeouts,
            other_host: rule.retry.other_host && hash_key.is_none(),
            hash_key,
            method,
            uri: parts.uri.clone(),
            head,
        };
        let mut counters = None;
        let result = ctx
            .run(
                Some(Request::from_parts(parts, body)),
                on_upgrade,
                rq,
                &mut flags,
                &mut counters,
            )
            .await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(mut r) => {
                r.flags.set(flags);
                respond(r)
            }
        };
        if flags_of(&resp).is_empty() && !flags.is_empty() {
            // Flags on a response passed through (URX, UO, DI): logs and
            // metrics only, the client sees the app's response.
            if let Some(p) = rq.log.as_mut() {
                p.flags.set(flags);
            }
        }
        if resp.extensions().get::<Generated>().is_none() {
            let h = resp.headers_mut();
            response_headers(&rule.headers, Some(target), h, &hctx);
            if let (Some(c), Some(o)) = (&rule.cors, &cors_origin) {
                c.add_response_headers(o, h);
            }
            if let Some(c) = set_cookie {
                h.append(header::SET_COOKIE, c);
            }
        }
        if let Some(c) = counters {
            c.record(
                resp.status().as_u16(),
                flags_of(&resp) | flags,
                rq.start.elapsed(),
            );
            rq.recorded = true;
        }
        resp
    }
}

/// The attempt loop of one request to one cluster.
struct Attempts<'a> {
    cluster: &'a Arc<Cluster>,
    conn: &'a ConnInfo,
    rule_source: &'a str,
    retry: &'a retry::RetryPolicy,
    timeouts: Timeouts,
    other_host: bool,
    hash_key: Option<u64>,
    method: Method,
    /// For error bodies (a clone shares the bytes).
    uri: Uri,
    /// To send the request again after it went out.
    head: Option<Head>,
}

impl Attempts<'_> {
    /// `METHOD /path of <rule> to revision R (addr)` for error bodies:
    /// built only when one is written.
    fn who(&self, backend: &crate::activator::Backend, ep: &crate::Endpoint) -> String {
        format!(
            "{} {} of {} to revision {} ({})",
            self.method,
            self.uri.path(),
            self.rule_source,
            backend.revision,
            ep.addr
        )
    }

    /// How an attempt at `ep` ended: its error count, and the cluster's
    /// outlier detection.
    fn report(&self, ep: &crate::Endpoint, r: OutlierResult) {
        let failed = match r {
            OutlierResult::Http(status) => status >= 500,
            OutlierResult::ConnectSuccess => false,
            OutlierResult::ConnectFailed | OutlierResult::Timeout | OutlierResult::Reset => true,
        };
        if failed {
            ep.note_error();
        }
        if let Some(d) = &self.cluster.outlier {
            d.report(&ep.outlier, r, MonoTime::now());
        }
    }

    /// `req` is the request to send first (`None`: it is sent from `head`).
    /// An `async` block, not an `async fn`, which would copy the request
    /// into a local of its own first; `req` is the loop's own variable.
    #[expect(clippy::manual_async_fn, reason = "an async fn copies its arguments")]
    fn run<'s>(
        &'s self,
        mut req: Option<Request<UpstreamRequestBody>>,
        mut on_upgrade: Option<hyper::upgrade::OnUpgrade>,
        rq: &'s mut Rq,
        flags: &'s mut ResponseFlags,
        counters_out: &'s mut Option<Arc<RequestCounters>>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, LocalReply>> + 's {
        async move {
            let cluster = self.cluster;
            let cc = &cluster.counters;
            if let Some(p) = rq.log.as_mut() {
                p.cluster = Some(cluster.name.clone());
            }
            cc.upstream_rq_total.inc();
            // What the request holds on the cluster's breaker: the request, its
            // connection, a retry. Given back when its response body ends.
            let mut admission = cluster.breaker.try_request().map_err(|_| {
                local_reply::overflow(&format!(
                    "cluster {}: {} requests already active (http2MaxRequests {})",
                    cluster.name,
                    cluster.breaker.snapshot().rq_active,
                    cluster.breaker.limits.max_requests
                ))
            })?;
            let total_deadline = self
                .timeouts
                .total
                .map(|t| tokio::time::Instant::from_std(rq.start) + t);
            let mut tried: Vec<usize> = Vec::new();
            let mut retries_done = 0u32;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                if let Some(p) = rq.log.as_mut() {
                    p.attempts = attempt;
                }
                // Retries only happen when the request can be sent again.
                let Some(mut r) = req.take().or_else(|| self.head.as_ref().map(Head::request))
                else {
                    return Err(local_reply::upstream_reset(
                        false,
                        "the request could not be sent again",
                    ));
                };
                r.headers_mut()
                    .insert(ATTEMPT_COUNT.clone(), attempt_count(attempt));
                let tried_now: &[usize] = if self.other_host { &tried } else { &[] };
                let (mi, slot, waited) = match cluster.choose(
                    self.hash_key,
                    tried_now,
                    MonoTime::now(),
                ) {
                    Choice::Endpoint { member, ep } => {
                        let backend = &cluster.members[member].backend;
                        // Counted at the activator from arrival when it is in
                        // the path (the autoscaler's proxy mode).
                        let slot = if backend.in_proxy_mode() {
                            backend.enter(rq.start).into_slot(ep, Instant::now())
                        } else {
                            Slot::new(ep, backend.clone())
                        };
                        (member, slot, false)
                    }
                    Choice::Queue { member } => {
                        let backend = &cluster.members[member].backend;
                        *counters_out = Some(cluster.members[member].counters.clone());
                        let rev_deadline =
                            tokio::time::Instant::from_std(rq.start) + backend.timeout();
                        let deadline = earliest(total_deadline, rev_deadline);
                        let entered = backend.enter(Instant::now());
                        // Boxed, as the other rare waits below: a request's
                        // future is copied whole, so its size is paid on
                        // every request.
                        match outlined(backend.wait(deadline)).await {
                            Ok(ep) => (member, entered.into_slot(ep, Instant::now()), true),
                            Err(Rejection::TimedOut { .. })
                                if total_deadline.is_some_and(|t| t <= rev_deadline) =>
                            {
                                ClusterCounters::bump(&cc.upstream_rq_timeout);
                                return Err(local_reply::upstream_timeout(&format!(
                                    "route timeout {:?} of {} expired while revision {} had no free instance",
                                    self.timeouts.total.unwrap_or_default(),
                                    self.rule_source,
                                    backend.revision
                                )));
                            }
                            Err(why) => return Err(rejected(self.rule_source, backend, why)),
                        }
                    }
                    Choice::NoHealthy => {
                        ClusterCounters::bump(&cc.upstream_cx_none_healthy);
                        return Err(local_reply::no_healthy_upstream(&format!(
                            "cluster {} has no healthy instance (revisions: {}; ejected by outlier detection, leaving, or none selected)",
                            cluster.name,
                            cluster.revisions()
                        )));
                    }
                };
                let member = &cluster.members[mi];
                let backend = &member.backend;
                *counters_out = Some(member.counters.clone());
                let ep = slot.endpoint().clone();
                if let Some(denied) = authorize(
                    backend,
                    || RequestView::of_request(&r, self.conn.scheme, self.conn.port),
                    self.conn,
                ) {
                    return Err(denied);
                }
                if let Some(p) = rq.log.as_mut() {
                    p.upstream_host = Some(ep.addr);
                }
                let rev_deadline = tokio::time::Instant::from_std(rq.start) + backend.timeout();
                let deadline = earliest(total_deadline, rev_deadline);
                let try_deadline = match self.timeouts.per_try {
                    Some(t) => (tokio::time::Instant::now() + t).min(deadline),
                    None => deadline,
                };
                let whole = try_deadline == deadline;
                let timed_out = |what: &str| {
                    local_reply::upstream_timeout(&format!(
                        "{} got no response within {what}",
                        self.who(backend, &ep)
                    ))
                };
                let route_timeout = || match self.timeouts.total {
                    Some(t) if total_deadline.is_some_and(|d| d <= rev_deadline) => {
                        format!("the route timeout {t:?}")
                    }
                    _ => format!(
                        "the revision's timeoutSeconds {}s",
                        backend.timeout().as_secs()
                    ),
                };
                // HTTP/1.1: the request needs a connection of its own. Only
                // waiting for one needs the timer.
                if !ep.is_h2c() && !admission.try_add_connection() {
                    match outlined(tokio::time::timeout_at(
                        deadline,
                        admission.wait_connection(),
                    ))
                    .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            let s = cluster.breaker.snapshot();
                            return Err(local_reply::overflow(&format!(
                                "cluster {}: {} connection(s) in use (maxConnections {}) and {} request(s) pending (http1MaxPendingRequests {})",
                                cluster.name,
                                s.cx_active,
                                cluster.breaker.limits.max_connections,
                                s.rq_pending_active,
                                cluster.breaker.limits.max_pending_requests
                            )));
                        }
                        Err(_) => {
                            ClusterCounters::bump(&cc.upstream_rq_timeout);
                            return Err(timed_out(&route_timeout()));
                        }
                    }
                }
                if let Some(down) = on_upgrade.take() {
                    let sent = upgrade::forward(&ep, r, down, slot, &cluster.opts, admission);
                    return match outlined(tokio::time::timeout_at(deadline, sent)).await {
                        Ok(Ok(resp)) => Ok(resp),
                        Ok(Err(SendError::NotSent { reason, .. })) => {
                            self.report(&ep, OutlierResult::ConnectFailed);
                            Err(local_reply::connection_failure(false, &reason))
                        }
                        Ok(Err(SendError::Failed { reason, .. })) => {
                            self.report(&ep, OutlierResult::Reset);
                            Err(local_reply::upstream_reset(false, &reason))
                        }
                        Err(_) => Err(timed_out(&route_timeout())),
                    };
                }
                let sent_at = Instant::now();
                // The revision's responseStartTimeoutSeconds, as its
                // queue-proxy would enforce it.
                let start_by =
                    tokio::time::Instant::from_std(sent_at) + backend.response_start_timeout();
                // Handed back into `req` if it is not sent.
                req = Some(r);
                // Scoped: the send borrows `req` until it is dropped.
                let outcome = {
                    let send = std::pin::pin!(ep.send(&mut req, slot, &cluster.opts, sent_at));
                    match crate::deadline::timeout_at(try_deadline.min(start_by), send).await {
                        Err(_) => {
                            self.report(&ep, OutlierResult::Timeout);
                            if start_by < try_deadline {
                                ClusterCounters::bump(&cc.upstream_rq_timeout);
                                return Err(local_reply::upstream_timeout(&format!(
                                    "{} did not start its response within {}s (its responseStartTimeoutSeconds)",
                                    self.who(backend, &ep),
                                    backend.response_start_timeout().as_secs()
                                )));
                            }
                            if whole {
                                ClusterCounters::bump(&cc.upstream_rq_timeout);
                                return Err(timed_out(&route_timeout()));
                            }
                            ClusterCounters::bump(&cc.upstream_rq_per_try_timeout);
                            Attempt::Timeout
                        }
                        Ok(Ok((resp, lease))) => {
                            self.report(&ep, OutlierResult::Http(resp.status().as_u16()));
                            if waited {
                                backend.note_first_byte();
                            }
                            if let Some(p) = rq.log.as_mut() {
                                p.upstream_service_time = Some(sent_at.elapsed());
                            }
                            Attempt::Response(resp, lease)
                        }
                        Ok(Err(SendError::NotSent { reason, kind })) => {
                            if kind == NotSentKind::Connect {
                                ClusterCounters::bump(&cc.upstream_cx_connect_fail);
                                self.report(&ep, OutlierResult::ConnectFailed);
                            }
                            Attempt::NotSent(kind, reason)
                        }
                        Ok(Err(SendError::Failed { reason, .. })) => {
                            ClusterCounters::bump(&cc.upstream_rq_rx_reset);
                            self.report(&ep, OutlierResult::Reset);
                            Attempt::Reset(reason)
                        }
                    }
                };
                let decision = {
                    let ao = match &outcome {
                        Attempt::Response(resp, _) => AttemptOutcome::Response {
                            status: resp.status(),
                            headers: resp.headers(),
                        },
                        Attempt::NotSent(NotSentKind::Connect, _) => AttemptOutcome::ConnectFailure,
                        Attempt::NotSent(NotSentKind::Closed, _) => {
                            AttemptOutcome::ResetBeforeRequest
                        }
                        Attempt::NotSent(NotSentKind::Refused, _) => AttemptOutcome::RefusedStream,
                        Attempt::Reset(_) => AttemptOutcome::ResetAfterRequest,
                        Attempt::Timeout => AttemptOutcome::PerTryTimeout,
                    };
                    self.retry.should_retry(&ao, &self.method, retries_done)
                };
                let can_resend = req.is_some() || self.head.is_some();
                let mut exhausted = false;
                match decision {
                    Ok(()) if can_resend => match admission.add_retry() {
                        Ok(()) => {
                            drop(outcome);
                            admission.release_connection();
                            retries_done += 1;
                            ClusterCounters::bump(&cc.upstream_rq_retry);
                            self.conn.gateway.stats().retry();
                            if self.other_host {
                                tried.push(Arc::as_ptr(&ep) as usize);
                            }
                            let pause = self.retry.backoff(retries_done);
                            let until = tokio::time::Instant::now() + pause;
                            if total_deadline.is_some_and(|d| d <= until) {
                                if let Some(d) = total_deadline {
                                    tokio::time::sleep_until(d).await;
                                }
                                ClusterCounters::bump(&cc.upstream_rq_timeout);
                                return Err(timed_out(&route_timeout()));
                            }
                            tokio::time::sleep_until(until).await;
                            continue;
                        }
                        Err(_) => flags.set(ResponseFlags::UPSTREAM_OVERFLOW),
                    },
                    Err(NoRetry::LimitReached) => {
                        ClusterCounters::bump(&cc.upstream_rq_retry_limit_exceeded);
                        flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                        exhausted = true;
                    }
                    _ => {}
                }
                let not_retried = match decision {
                    Err(NoRetry::NotIdempotent) => {
                        "; it may have been processed and is not idempotent, so it was not retried"
                    }
                    Ok(()) => {
                        "; it could not be sent again (its body was streamed), so it was not retried"
                    }
                    _ => "",
                };
                let who = || self.who(backend, &ep);
                return match outcome {
                    Attempt::Response(resp, mut lease) => {
                        if retries_done > 0 && !resp.status().is_server_error() {
                            ClusterCounters::bump(&cc.upstream_rq_retry_success);
                        }
                        let (mut parts, body) = resp.into_parts();
                        headers::strip_hop_by_hop(&mut parts.headers);
                        lease.admission = Some(admission);
                        // The route timeout and the revision's timeoutSeconds
                        // cover the body too (as Envoy's and queue-proxy's do).
                        lease.limits = Some(StreamLimits::new(deadline, backend.idle_timeout()));
                        Ok(Response::from_parts(
                            parts,
                            ProxyBody::Upstream {
                                body,
                                lease: Some(lease),
                            },
                        ))
                    }
                    Attempt::Timeout => Err(timed_out("its perTryTimeout")),
                    Attempt::NotSent(NotSentKind::Connect, reason) => Err(
                        local_reply::connection_failure(exhausted, &format!("{}: {reason}", who())),
                    ),
                    Attempt::NotSent(NotSentKind::Closed | NotSentKind::Refused, reason) => {
                        let mut r =
                            local_reply::upstream_reset(false, &format!("{}: {reason}", who()));
                        if exhausted {
                            r.flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                        }
                        Err(r)
                    }
                    Attempt::Reset(reason) => Err(local_reply::upstream_reset(
                        false,
                        &format!(
                            "{}: the instance closed the connection before responding: {reason}{not_retried}",
                            who()
                        ),
                    )),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            shadow_host("a.example.com").unwrap(),
            "a.example.com-shadow"
        );
        assert_eq!(
            shadow_host("a.example.com:8080").unwrap(),
            "a.example.com-shadow:8080"
        );
        assert_eq!(attempt_count(1), "1");
        assert_eq!(attempt_count(12), "12");
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36, "{s}");
        assert_eq!(s.as_bytes()[14], b'4');
        assert_ne!(request_id(), id);
        for (a, b) in [
            (0, 0),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
        ] {
            let want = format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0x0fff,
                (b >> 48) & 0x3fff | 0x8000,
                b & 0xffff_ffff_ffff
            );
            assert_eq!(std::str::from_utf8(&uuid(a, b)).unwrap(), want);
        }
        let p = retry::RetryPolicy::istio_default();
        assert!(
            !needs_replay(&p, &Method::POST),
            "the default never repeats a POST the app saw"
        );
        let five: skiff_api::istio::virtual_service::HttpRetry =
            crate::istio::testing::yaml("{attempts: 2, retryOn: 5xx}");
        let p = retry::RetryPolicy::compile(Some(&five), false).unwrap();
        assert!(needs_replay(&p, &Method::PUT) && !needs_replay(&p, &Method::POST));
        let opted_in = retry::RetryPolicy::compile(Some(&five), true).unwrap();
        assert!(needs_replay(&opted_in, &Method::POST));
    }

    /// The head is kept only when `needs_replay`: every retry of a request
    /// the app may have seen must be one it allows.
    #[test]
    fn every_retry_after_the_app_saw_the_request_has_its_head() {
        let mut policies = vec![
            retry::RetryPolicy::istio_default(),
            retry::RetryPolicy::disabled(),
        ];
        for on in [
            "5xx",
            "gateway-error",
            "reset",
            "retriable-4xx",
            "503",
            "envoy-ratelimited",
            "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
            "connect-failure,refused-stream,reset-before-request",
            "retriable-status-codes",
        ] {
            for opt_in in [false, true] {
                let r: skiff_api::istio::virtual_service::HttpRetry =
                    crate::istio::testing::yaml(&format!("{{attempts: 2, retryOn: '{on}'}}"));
                policies.push(retry::RetryPolicy::compile(Some(&r), opt_in).unwrap());
            }
        }
        let mut responses = Vec::new();
        for status in [200, 409, 500, 502, 503] {
            responses.push((status, HeaderMap::new()));
            for (name, value) in [
                ("grpc-status", "1"),
                ("grpc-status", "4"),
                ("grpc-status", "8"),
                ("grpc-status", "13"),
                ("grpc-status", "14"),
                ("x-envoy-ratelimited", "true"),
            ] {
                let mut h = HeaderMap::new();
                h.insert(name, HeaderValue::from_static(value));
                responses.push((status, h));
            }
        }
        let mut retried = 0;
        for p in &policies {
            for method in [Method::GET, Method::POST] {
                let mut outcomes = vec![
                    AttemptOutcome::ResetAfterRequest,
                    AttemptOutcome::PerTryTimeout,
                ];
                outcomes.extend(responses.iter().map(|(s, h)| AttemptOutcome::Response {
                    status: http::StatusCode::from_u16(*s).unwrap(),
                    headers: h,
                }));
                for o in &outcomes {
                    if p.should_retry(o, &method, 0).is_ok() {
                        assert!(needs_replay(p, &method), "{p:?} {method} {o:?}");
                        retried += 1;
                    }
                }
            }
        }
        assert!(retried > 100, "{retried}");
    }
}
