//! Retry policy and route timeouts, as Istio configures Envoy's router —
//! with Skiff's safety rule on top: a retry that may run the request twice
//! (the app saw it: a response, a reset after the request was written, a
//! per-try timeout) is only done for idempotent methods unless the
//! VirtualService opts in (annotation [`NON_IDEMPOTENT_ANNOTATION`]).
//! Retries of requests that provably never reached the app (connect
//! failure, refused stream, reset before the request was written) are always
//! allowed, and on by default.

use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode};
use skiff_api::istio::duration;
use skiff_api::istio::virtual_service::HttpRetry;

use super::rand;

/// VirtualService annotation: `"true"` lets 5xx/timeout/reset retries repeat
/// non-idempotent requests (Envoy's behaviour); off by default.
pub const NON_IDEMPOTENT_ANNOTATION: &str = "retry.skiff.dev/non-idempotent";

/// Sent upstream with the attempt number (Envoy's name).
pub const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";
/// Per-request overrides (Envoy's names), in milliseconds.
pub const RQ_TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-timeout-ms";
pub const PER_TRY_TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
/// An upstream that sets this is overloaded: never retried.
pub use super::circuit_breaker::OVERLOADED_HEADER;

// Looked up on the request path: names built once (a `&str` is parsed and
// hashed again on every lookup).
static RQ_TIMEOUT: HeaderName = HeaderName::from_static(RQ_TIMEOUT_HEADER);
static PER_TRY_TIMEOUT: HeaderName = HeaderName::from_static(PER_TRY_TIMEOUT_HEADER);
static OVERLOADED: HeaderName = HeaderName::from_static(OVERLOADED_HEADER);
static RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// `retryOn` conditions (Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 3);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 4);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 6);
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 7);
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 8);
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 9);
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 10);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 11);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 12);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 13);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 14);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 15);
    /// Any of the gRPC status conditions.
    const GRPC: RetryOn = RetryOn::GRPC_CANCELLED
        .with(RetryOn::GRPC_DEADLINE_EXCEEDED)
        .with(RetryOn::GRPC_INTERNAL)
        .with(RetryOn::GRPC_RESOURCE_EXHAUSTED)
        .with(RetryOn::GRPC_UNAVAILABLE);

    const NAMES: [(&'static str, RetryOn); 16] = [
        ("5xx", RetryOn::FIVE_XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("reset", RetryOn::RESET),
        ("reset-before-request", RetryOn::RESET_BEFORE_REQUEST),
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
        ("refused-stream", RetryOn::REFUSED_STREAM),
        ("retriable-status-codes", RetryOn::RETRIABLE_STATUS_CODES),
        ("retriable-headers", RetryOn::RETRIABLE_HEADERS),
        ("envoy-ratelimited", RetryOn::ENVOY_RATELIMITED),
        (
            "http3-post-connect-failure",
            RetryOn::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", RetryOn::GRPC_CANCELLED),
        ("deadline-exceeded", RetryOn::GRPC_DEADLINE_EXCEEDED),
        ("internal", RetryOn::GRPC_INTERNAL),
        ("resource-exhausted", RetryOn::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", RetryOn::GRPC_UNAVAILABLE),
    ];

    #[inline]
    pub const fn has(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Parse a `retryOn` list: names, and status codes (which go to the
    /// retriable codes and turn `retriable-status-codes` on, as Istio does).
    pub fn parse(s: &str) -> Result<(RetryOn, Vec<u16>), String> {
        let mut on = RetryOn::default();
        let mut codes = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Ok(code) = part.parse::<u16>() {
                if !(100..=599).contains(&code) {
                    return Err(format!("{part:?} is not a valid retryOn policy"));
                }
                if !codes.contains(&code) {
                    codes.push(code);
                }
                on = on.with(RetryOn::RETRIABLE_STATUS_CODES);
                continue;
            }
            match RetryOn::NAMES.iter().find(|(n, _)| *n == part) {
                Some((_, f)) => on = on.with(*f),
                None => return Err(format!("{part:?} is not a valid retryOn policy")),
            }
        }
        Ok((on, codes))
    }

    /// Names of the conditions set (for `proxy-config` and logs).
    pub fn names(self) -> Vec<&'static str> {
        RetryOn::NAMES
            .iter()
            .filter(|(_, f)| self.has(*f))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome<'a> {
    /// TCP connect refused or timed out: nothing was sent.
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM: the app did not process it.
    RefusedStream,
    /// The connection failed before the request was fully written.
    ResetBeforeRequest,
    /// Reset or disconnect after the request was written, before the
    /// response head: the app may have processed it.
    ResetAfterRequest,
    /// The per-try timeout fired.
    PerTryTimeout,
    /// A local circuit breaker refused it (flag UO): never retried.
    Overflow,
    /// The upstream answered.
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
    },
}

impl AttemptOutcome<'_> {
    /// True when the app may have seen (and acted on) the request.
    pub fn reached_app(&self) -> bool {
        matches!(
            self,
            AttemptOutcome::ResetAfterRequest
                | AttemptOutcome::PerTryTimeout
                | AttemptOutcome::Response { .. }
        )
    }
}

/// Why a retry was not done (for logs and `proxy-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// Retries are exhausted (flag URX when the last attempt failed).
    LimitReached,
    /// The outcome is not in `retryOn`.
    NotRetriable,
    /// The request may have reached the app and is not idempotent.
    NotIdempotent,
    /// Overflow and `x-envoy-overloaded` responses are never retried.
    Overloaded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Istio's `attempts`).
    pub num_retries: u32,
    pub retry_on: RetryOn,
    pub retriable_status_codes: Box<[u16]>,
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retry on another host than the ones tried (Envoy `previous_hosts`);
    /// the wiring turns it off for consistent-hash destinations.
    pub other_host: bool,
    /// Skiff: app-reached retries only for idempotent methods.
    pub idempotent_only: bool,
}

/// Envoy's default backoff base.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

impl RetryPolicy {
    /// Istio's default (`meshConfig.defaultHttpRetryPolicy`, 1.24+: no 503)
    /// plus `reset-before-request`, which is always safe.
    pub fn istio_default() -> RetryPolicy {
        RetryPolicy {
            num_retries: 2,
            retry_on: RetryOn::CONNECT_FAILURE
                .with(RetryOn::REFUSED_STREAM)
                .with(RetryOn::RESET_BEFORE_REQUEST)
                .with(RetryOn::GRPC_UNAVAILABLE)
                .with(RetryOn::GRPC_CANCELLED)
                .with(RetryOn::RETRIABLE_STATUS_CODES),
            retriable_status_codes: Box::new([]),
            per_try_timeout: None,
            backoff_base: DEFAULT_BACKOFF,
            backoff_max: DEFAULT_BACKOFF * 10,
            other_host: true,
            idempotent_only: true,
        }
    }

    /// No retries at all (`attempts: 0`).
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            num_retries: 0,
            ..RetryPolicy::istio_default()
        }
    }

    /// The policy for a rule: the default when `retries` is absent; a given
    /// policy starts from the default (unset `retryOn` keeps the default
    /// list). `non_idempotent_ok`: the VirtualService's opt-in annotation.
    pub fn compile(r: Option<&HttpRetry>, non_idempotent_ok: bool) -> Result<RetryPolicy, String> {
        let mut p = RetryPolicy::istio_default();
        p.idempotent_only = !non_idempotent_ok;
        let Some(r) = r else {
            return Ok(p);
        };
        if r.attempts <= 0 {
            return Ok(RetryPolicy {
                idempotent_only: p.idempotent_only,
                ..RetryPolicy::disabled()
            });
        }
        p.num_retries = r.attempts as u32;
        if !r.retry_on.is_empty() {
            let (on, codes) = RetryOn::parse(&r.retry_on)?;
            p.retry_on = on;
            p.retriable_status_codes = codes.into_boxed_slice();
        }
        if let Some(t) = &r.per_try_timeout {
            p.per_try_timeout = Some(duration::parse_checked(t)?);
        }
        if let Some(b) = &r.backoff {
            p.backoff_base = duration::parse_checked(b)?;
            p.backoff_max = p.backoff_base * 10;
        }
        if let Some(ignore) = r.retry_ignore_previous_hosts {
            p.other_host = ignore;
        }
        Ok(p)
    }

    fn grpc_status(headers: &HeaderMap) -> Option<u32> {
        headers.get(&GRPC_STATUS)?.to_str().ok()?.parse().ok()
    }

    /// Should attempt `retries_done + 2` happen after `outcome`?
    pub fn should_retry(
        &self,
        outcome: &AttemptOutcome<'_>,
        method: &Method,
        retries_done: u32,
    ) -> Result<(), NoRetry> {
        if let AttemptOutcome::Overflow = outcome {
            return Err(NoRetry::Overloaded);
        }
        if let AttemptOutcome::Response { headers, .. } = outcome
            && headers.contains_key(&OVERLOADED)
        {
            return Err(NoRetry::Overloaded);
        }
        let on = self.retry_on;
        let retriable = match outcome {
            AttemptOutcome::ConnectFailure => on.has(
                RetryOn::CONNECT_FAILURE
                    .with(RetryOn::FIVE_XX)
                    .with(RetryOn::GATEWAY_ERROR)
                    .with(RetryOn::RESET)
                    .with(RetryOn::RESET_BEFORE_REQUEST),
            ),
            AttemptOutcome::RefusedStream => on.has(
                RetryOn::REFUSED_STREAM
                    .with(RetryOn::FIVE_XX)
                    .with(RetryOn::GATEWAY_ERROR)
                    .with(RetryOn::RESET)
                    .with(RetryOn::RESET_BEFORE_REQUEST),
            ),
            AttemptOutcome::ResetBeforeRequest => on.has(
                RetryOn::RESET_BEFORE_REQUEST
                    .with(RetryOn::RESET)
                    .with(RetryOn::FIVE_XX)
                    .with(RetryOn::GATEWAY_ERROR),
            ),
            AttemptOutcome::ResetAfterRequest | AttemptOutcome::PerTryTimeout => on.has(
                RetryOn::RESET
                    .with(RetryOn::FIVE_XX)
                    .with(RetryOn::GATEWAY_ERROR),
            ),
            AttemptOutcome::Overflow => false,
            AttemptOutcome::Response { status, headers } => {
                let s = status.as_u16();
                (on.has(RetryOn::FIVE_XX) && s >= 500)
                    || (on.has(RetryOn::GATEWAY_ERROR) && matches!(s, 502..=504))
                    || (on.has(RetryOn::RETRIABLE_4XX) && s == 409)
                    || (on.has(RetryOn::RETRIABLE_STATUS_CODES)
                        && self.retriable_status_codes.contains(&s))
                    || (on.has(RetryOn::ENVOY_RATELIMITED) && headers.contains_key(&RATELIMITED))
                    || (on.has(RetryOn::GRPC)
                        && match Self::grpc_status(headers) {
                            Some(1) => on.has(RetryOn::GRPC_CANCELLED),
                            Some(4) => on.has(RetryOn::GRPC_DEADLINE_EXCEEDED),
                            Some(8) => on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED),
                            Some(13) => on.has(RetryOn::GRPC_INTERNAL),
                            Some(14) => on.has(RetryOn::GRPC_UNAVAILABLE),
                            _ => false,
                        })
            }
        };
        if !retriable {
            return Err(NoRetry::NotRetriable);
        }
        if self.idempotent_only && outcome.reached_app() && !is_idempotent(method) {
            return Err(NoRetry::NotIdempotent);
        }
        if retries_done >= self.num_retries {
            return Err(NoRetry::LimitReached);
        }
        Ok(())
    }

    /// Envoy's fully jittered exponential backoff before retry `n` (1-based),
    /// for a random draw `r`: uniform in `[0, min(base × 2^(n-1), max))`.
    pub fn backoff_with(&self, n: u32, r: u64) -> Duration {
        let shift = n.saturating_sub(1).min(20);
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << shift)
            .min(self.backoff_max);
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(((u128::from(r) * u128::from(nanos)) >> 64) as u64)
    }

    pub fn backoff(&self, n: u32) -> Duration {
        self.backoff_with(n, rand::next_u64())
    }
}

/// RFC 9110 idempotent methods.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A route's timeouts after per-request header overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// The whole request, all attempts and backoffs included; `None` = off
    /// (Istio writes 0: disabled).
    pub total: Option<Duration>,
    pub per_try: Option<Duration>,
}

impl Timeouts {
    /// `route` (the rule's `timeout`) and `per_try` (the policy's), as
    /// configured: for a request without override headers.
    pub fn configured(route: Option<Duration>, per_try: Option<Duration>) -> Timeouts {
        Timeouts {
            total: route.filter(|d| !d.is_zero()),
            per_try,
        }
    }

    /// [`Timeouts::configured`] with `x-envoy-upstream-rq-timeout-ms` /
    /// `-per-try-timeout-ms` applied. A 0 override disables, as in Envoy.
    pub fn effective(
        route: Option<Duration>,
        per_try: Option<Duration>,
        headers: &HeaderMap,
    ) -> Timeouts {
        let ms = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|n| (n > 0).then(|| Duration::from_millis(n)))
        };
        let t = Timeouts::configured(route, per_try);
        Timeouts {
            total: ms(&RQ_TIMEOUT).unwrap_or(t.total),
            per_try: ms(&PER_TRY_TIMEOUT).unwrap_or(t.per_try),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str, opt_in: bool) -> RetryPolicy {
        RetryPolicy::compile(Some(&crate::istio::testing::yaml(yaml)), opt_in).unwrap()
    }

    fn resp(status: u16) -> (StatusCode, HeaderMap) {
        (StatusCode::from_u16(status).unwrap(), HeaderMap::new())
    }

    #[test]
    fn parse_retry_on() {
        let (on, codes) = RetryOn::parse("gateway-error,connect-failure,503, 409").unwrap();
        assert!(on.has(RetryOn::GATEWAY_ERROR) && on.has(RetryOn::RETRIABLE_STATUS_CODES));
        assert_eq!(codes, [503, 409]);
        assert!(RetryOn::parse("sometimes").is_err());
        assert!(RetryOn::parse("700").is_err());
        assert_eq!(
            on.names(),
            ["gateway-error", "connect-failure", "retriable-status-codes"]
        );
    }

    #[test]
    fn default_policy_retries_only_what_never_reached_the_app() {
        let p = RetryPolicy::compile(None, false).unwrap();
        assert_eq!(p.num_retries, 2);
        let post = Method::POST;
        let (s503, h) = resp(503);
        let table: &[(AttemptOutcome, Result<(), NoRetry>)] = &[
            (AttemptOutcome::ConnectFailure, Ok(())),
            (AttemptOutcome::RefusedStream, Ok(())),
            (AttemptOutcome::ResetBeforeRequest, Ok(())),
            (
                AttemptOutcome::ResetAfterRequest,
                Err(NoRetry::NotRetriable),
            ),
            (AttemptOutcome::PerTryTimeout, Err(NoRetry::NotRetriable)),
            (AttemptOutcome::Overflow, Err(NoRetry::Overloaded)),
            (
                AttemptOutcome::Response {
                    status: s503,
                    headers: &h,
                },
                Err(NoRetry::NotRetriable),
            ),
        ];
        for (o, want) in table {
            assert_eq!(p.should_retry(o, &post, 0), *want, "{o:?}");
        }
        assert_eq!(
            p.should_retry(&AttemptOutcome::ConnectFailure, &post, 2),
            Err(NoRetry::LimitReached)
        );
    }

    #[test]
    fn five_xx_retries_are_idempotent_only_unless_opted_in() {
        let p = policy("{attempts: 3, retryOn: 5xx}", false);
        let (s500, h) = resp(500);
        let r = AttemptOutcome::Response {
            status: s500,
            headers: &h,
        };
        assert_eq!(p.should_retry(&r, &Method::GET, 0), Ok(()));
        assert_eq!(
            p.should_retry(&r, &Method::POST, 0),
            Err(NoRetry::NotIdempotent)
        );
        assert_eq!(
            p.should_retry(&AttemptOutcome::ResetAfterRequest, &Method::POST, 0),
            Err(NoRetry::NotIdempotent)
        );
        // A POST that never reached the app is still retried.
        assert_eq!(
            p.should_retry(&AttemptOutcome::ConnectFailure, &Method::POST, 0),
            Ok(())
        );
        let p = policy("{attempts: 3, retryOn: 5xx}", true);
        assert_eq!(p.should_retry(&r, &Method::POST, 0), Ok(()));
    }

    #[test]
    fn conditions_table() {
        let p = policy(
            "{attempts: 5, retryOn: 'gateway-error,retriable-4xx,503,unavailable'}",
            false,
        );
        let get = Method::GET;
        for (status, grpc, want) in [
            (502, None, true),
            (500, None, false),
            (409, None, true),
            (503, None, true),
            (200, Some("14"), true),
            (200, Some("13"), false),
        ] {
            let (s, mut h) = resp(status);
            if let Some(g) = grpc {
                h.insert("grpc-status", g.parse().unwrap());
            }
            let got = p.should_retry(
                &AttemptOutcome::Response {
                    status: s,
                    headers: &h,
                },
                &get,
                0,
            );
            assert_eq!(got.is_ok(), want, "{status} {grpc:?}");
        }
        let (s, mut h) = resp(503);
        h.insert(OVERLOADED_HEADER, "true".parse().unwrap());
        assert_eq!(
            p.should_retry(
                &AttemptOutcome::Response {
                    status: s,
                    headers: &h
                },
                &get,
                0
            ),
            Err(NoRetry::Overloaded)
        );
        // gateway-error covers a per-try timeout.
        assert!(
            p.should_retry(&AttemptOutcome::PerTryTimeout, &get, 0)
                .is_ok()
        );
    }

    #[test]
    fn attempts_zero_disables_and_fields_compile() {
        let p = policy("{attempts: 0}", false);
        assert_eq!(p.num_retries, 0);
        assert_eq!(
            p.should_retry(&AttemptOutcome::ConnectFailure, &Method::GET, 0),
            Err(NoRetry::LimitReached)
        );
        let p = policy(
            "{attempts: 2, perTryTimeout: 2s, backoff: 100ms, retryIgnorePreviousHosts: false}",
            false,
        );
        assert_eq!(p.per_try_timeout, Some(Duration::from_secs(2)));
        assert_eq!(p.backoff_base, Duration::from_millis(100));
        assert!(!p.other_host);
        // Unset retryOn keeps the default list.
        assert!(p.retry_on.has(RetryOn::CONNECT_FAILURE));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy::istio_default();
        assert_eq!(
            p.backoff_with(1, u64::MAX),
            Duration::from_nanos(24_999_999)
        );
        assert_eq!(p.backoff_with(1, 0), Duration::ZERO);
        assert!(p.backoff_with(3, u64::MAX) < Duration::from_millis(100));
        assert!(p.backoff_with(30, u64::MAX) < Duration::from_millis(250));
        assert!(p.backoff(2) < Duration::from_millis(50));
    }

    #[test]
    fn timeouts_with_overrides() {
        let mut h = HeaderMap::new();
        let t = Timeouts::effective(Some(Duration::from_secs(10)), None, &h);
        assert_eq!(t.total, Some(Duration::from_secs(10)));
        h.insert(RQ_TIMEOUT_HEADER, "500".parse().unwrap());
        h.insert(PER_TRY_TIMEOUT_HEADER, "100".parse().unwrap());
        let t = Timeouts::effective(Some(Duration::from_secs(10)), None, &h);
        assert_eq!(
            t,
            Timeouts {
                total: Some(Duration::from_millis(500)),
                per_try: Some(Duration::from_millis(100))
            }
        );
        h.insert(RQ_TIMEOUT_HEADER, "0".parse().unwrap());
        assert_eq!(
            Timeouts::effective(Some(Duration::from_secs(1)), None, &h).total,
            None
        );
        assert_eq!(
            Timeouts::effective(Some(Duration::ZERO), None, &HeaderMap::new()).total,
            None
        );
        let per_try = Some(Duration::from_secs(2));
        assert_eq!(
            Timeouts::configured(Some(Duration::ZERO), per_try),
            Timeouts::effective(Some(Duration::ZERO), per_try, &HeaderMap::new())
        );
    }
}
