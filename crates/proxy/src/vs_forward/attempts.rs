//! The attempt loop of a request routed by a VirtualService: the cluster's
//! circuit breakers, load balancing, per-try and route timeouts, and
//! retries as the rule's policy allows.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::activator::{Rejection, Slot};
use crate::body::{ProxyBody, StreamLimits, UpstreamRequestBody};
use crate::cluster::{Choice, Cluster};
use crate::endpoint::{NotSentKind, SendError};
use crate::forward::{authorize, rejected};
use crate::headers;
use crate::istio::cluster_state::ClusterCounters;
use crate::istio::flags::ResponseFlags;
use crate::istio::local_reply::{self, LocalReply};
use crate::istio::outlier::OutlierResult;
use crate::istio::request::RequestView;
use crate::istio::retry::{self, ATTEMPT_COUNT_HEADER, AttemptOutcome, NoRetry, Timeouts};
use crate::istio::time::MonoTime;
use crate::outline::outlined;
use crate::replay::Head;
use crate::request_metrics::RequestCounters;
use crate::server::{ConnInfo, Rq};
use crate::upgrade;

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

/// The `x-envoy-attempt-count` value: attempts are few, so the common
/// ones are static values (no allocation).
pub(super) fn attempt_count(n: u32) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(n as usize) {
        Some(d) => HeaderValue::from_static(d),
        None => HeaderValue::from(n),
    }
}

fn earliest(a: Option<tokio::time::Instant>, b: tokio::time::Instant) -> tokio::time::Instant {
    a.map_or(b, |a| a.min(b))
}

/// The attempt loop of one request to one cluster.
pub(super) struct Attempts<'a> {
    pub(super) cluster: &'a Arc<Cluster>,
    pub(super) conn: &'a ConnInfo,
    pub(super) rule_source: &'a str,
    pub(super) retry: &'a retry::RetryPolicy,
    pub(super) timeouts: Timeouts,
    pub(super) other_host: bool,
    pub(super) hash_key: Option<u64>,
    pub(super) method: Method,
    /// For error bodies (a clone shares the bytes).
    pub(super) uri: Uri,
    /// To send the request again after it went out.
    pub(super) head: Option<Head>,
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
    pub(super) fn run<'s>(
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
