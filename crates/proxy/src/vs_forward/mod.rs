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

mod attempts;
mod mirror;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::access::protocol;
use crate::body::{ProxyBody, UpstreamRequestBody};
use crate::forward::{flags_of, prepare, upgrade_of};
use crate::istio::cors::CorsAction;
use crate::istio::flags::ResponseFlags;
use crate::istio::header_ops::HeaderContext;
use crate::istio::local_reply;
use crate::istio::request::RequestView;
use crate::istio::retry::{RetryOn, Timeouts};
use crate::istio::rewrite::Redirect;
use crate::istio::route::{Action, Mirror, RouteTarget};
use crate::istio::{rand, retry};
use crate::replay::Head;
use crate::reply::{Generated, respond};
use crate::server::{ConnInfo, Rq};
use crate::table::{RoutingTable, VirtualHost};
use attempts::Attempts;
use mirror::mirror;

/// Largest request body kept in memory so that it can be sent again
/// (Envoy's default per-connection buffer limit).
pub const MAX_BUFFERED_BODY: u64 = 1 << 20;
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
