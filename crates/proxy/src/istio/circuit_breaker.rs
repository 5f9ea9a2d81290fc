//! Circuit breakers (`connectionPool` limits) as Envoy enforces them per
//! cluster: active connections (`maxConnections`), requests waiting for a
//! connection (`http1MaxPendingRequests`), active requests
//! (`http2MaxRequests`, HTTP/1.1 too) and outstanding retries
//! (`maxRetries`). Istio writes 2^32−1 for every limit not set, so "no
//! DestinationRule" means "no limits".
//!
//! Admission is a compare-and-swap on a shared counter (never over the
//! limit, no lock); each grant is an RAII guard. What the client sees on
//! overflow — 503 `UO`, `x-envoy-overloaded: true`, never retried — is the
//! caller's reply; the counters here use Envoy's stat names.
//!
//! HTTP/1.1: a request needs a connection of its own while it is in flight.
//! One that may not take one (at `maxConnections`) waits as *pending*; only
//! pending overflow is a 503. [`CircuitBreaker::connection`] implements that
//! wait. Skiff counts connections *in use* (a request holds its connection
//! from admission until its response body ends) rather than every open
//! socket: pools are per gateway worker, and an idle connection pooled on
//! one worker must not starve a request pending on another. For HTTP/1.1
//! this bounds the requests in flight at the cluster by `maxConnections`
//! exactly, where Envoy allows a connection per worker pool beyond it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use skiff_api::istio::destination_rule::ConnectionPoolSettings;
use tokio::sync::Notify;

/// Istio's "unlimited".
pub const UNLIMITED: u32 = u32::MAX;

/// The four thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: UNLIMITED,
            max_pending_requests: UNLIMITED,
            max_requests: UNLIMITED,
            max_retries: UNLIMITED,
        }
    }
}

impl Limits {
    /// Istio's translation: only values > 0 override (0 cannot be said).
    pub fn from_api(p: Option<&ConnectionPoolSettings>) -> Limits {
        let mut l = Limits::default();
        let set = |v: i32, slot: &mut u32| {
            if v > 0 {
                *slot = v as u32;
            }
        };
        if let Some(p) = p {
            if let Some(t) = &p.tcp {
                set(t.max_connections, &mut l.max_connections);
            }
            if let Some(h) = &p.http {
                set(h.http1_max_pending_requests, &mut l.max_pending_requests);
                set(h.http2_max_requests, &mut l.max_requests);
                set(h.max_retries, &mut l.max_retries);
            }
        }
        l
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `http2MaxRequests` (stat `upstream_rq_pending_overflow`, as Envoy
    /// counts it by default).
    Requests,
    /// `http1MaxPendingRequests` (stat `upstream_rq_pending_overflow`).
    Pending,
    /// `maxRetries` (stat `upstream_rq_retry_overflow`): the upstream's
    /// response goes back to the client, flagged `UO`.
    Retries,
}

/// Counters with Envoy's names, and gauges' sources.
#[derive(Debug, Default)]
pub struct BreakerStats {
    pub upstream_cx_overflow: AtomicU64,
    pub upstream_rq_pending_overflow: AtomicU64,
    pub upstream_rq_retry_overflow: AtomicU64,
    pub upstream_rq_pending_total: AtomicU64,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    pub limits: Limits,
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    pub stats: BreakerStats,
    /// Wakes pending requests when a request gives its connection back.
    released: Notify,
}

/// A snapshot for `proxy-config` and Prometheus (Envoy's
/// `circuit_breakers.default.*` gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub cx_active: u32,
    pub rq_pending_active: u32,
    pub rq_active: u32,
    pub rq_retry_active: u32,
    pub cx_open: bool,
    pub rq_pending_open: bool,
    pub rq_open: bool,
    pub rq_retry_open: bool,
    pub remaining_cx: u32,
    pub remaining_pending: u32,
    pub remaining_rq: u32,
    pub remaining_retries: u32,
}

/// The limits a guard holds a unit of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Connection,
    Request,
    Retry,
}

impl Slot {
    const ALL: [Slot; 3] = [Slot::Connection, Slot::Request, Slot::Retry];

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Holds units of the limits until dropped. A request keeps what it holds
/// on one cluster (its request, its connection, a retry) in one guard: one
/// reference to the breaker, whatever it holds.
#[derive(Debug)]
pub struct Guard {
    breaker: Arc<CircuitBreaker>,
    /// [`Slot::bit`]s of the units held.
    held: u8,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for s in Slot::ALL {
            if self.held & s.bit() != 0 {
                self.breaker.release(s);
            }
        }
    }
}

impl Guard {
    /// Also hold a connection (`maxConnections`) if one is free; else
    /// count the overflow (then [`Guard::wait_connection`]).
    pub fn try_add_connection(&mut self) -> bool {
        let ok = self.breaker.take(Slot::Connection);
        if ok {
            self.held |= Slot::Connection.bit();
        }
        ok
    }

    /// After [`Guard::try_add_connection`] failed: wait as pending
    /// (`http1MaxPendingRequests`) until a connection is given back, then
    /// hold it — or overflow when the pending queue is full. Bound it with
    /// the route timeout (dropping the wait leaves the queue).
    pub async fn wait_connection(&mut self) -> Result<(), Overflow> {
        self.breaker.wait_connection().await?;
        self.held |= Slot::Connection.bit();
        Ok(())
    }

    /// Give the connection back (a retry takes one again).
    pub fn release_connection(&mut self) {
        if self.held & Slot::Connection.bit() != 0 {
            self.held &= !Slot::Connection.bit();
            self.breaker.release(Slot::Connection);
        }
    }

    /// Hold a retry (`maxRetries`) for the next attempt. A retry held for
    /// an earlier attempt is given back once the new one is taken.
    pub fn add_retry(&mut self) -> Result<(), Overflow> {
        if !self.breaker.take(Slot::Retry) {
            return Err(Overflow::Retries);
        }
        if self.held & Slot::Retry.bit() != 0 {
            self.breaker.release(Slot::Retry);
        }
        self.held |= Slot::Retry.bit();
        Ok(())
    }
}

/// A request waiting for a connection: counted in `pending` until dropped.
struct Pending<'a>(&'a CircuitBreaker);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// SeqCst: see [`CircuitBreaker::release`].
fn try_take(counter: &AtomicU32, limit: u32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
            (c < limit).then_some(c + 1)
        })
        .is_ok()
}

impl CircuitBreaker {
    pub fn new(limits: Limits) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker {
            limits,
            connections: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            stats: BreakerStats::default(),
            released: Notify::new(),
        })
    }

    fn counter(&self, s: Slot) -> (&AtomicU32, u32) {
        match s {
            Slot::Connection => (&self.connections, self.limits.max_connections),
            Slot::Request => (&self.requests, self.limits.max_requests),
            Slot::Retry => (&self.retries, self.limits.max_retries),
        }
    }

    /// Take a unit of `s` if under its limit; else count the overflow.
    fn take(&self, s: Slot) -> bool {
        let (counter, limit) = self.counter(s);
        if try_take(counter, limit) {
            return true;
        }
        let overflow = match s {
            Slot::Connection => &self.stats.upstream_cx_overflow,
            // Envoy counts http2MaxRequests overflow as pending overflow.
            Slot::Request => &self.stats.upstream_rq_pending_overflow,
            Slot::Retry => &self.stats.upstream_rq_retry_overflow,
        };
        overflow.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Give a unit of `s` back. A connection given back wakes a pending
    /// request, if there is one: a releaser that sees no pending request
    /// skips the wake-up, and a waiter counted in `pending` before it
    /// tries to take a connection cannot miss this release (SeqCst on
    /// both sides: one of them sees the other).
    fn release(&self, s: Slot) {
        self.counter(s).0.fetch_sub(1, Ordering::SeqCst);
        if s == Slot::Connection && self.pending.load(Ordering::SeqCst) > 0 {
            self.released.notify_one();
        }
    }

    fn guard(self: &Arc<Self>, s: Slot) -> Guard {
        Guard {
            breaker: self.clone(),
            held: s.bit(),
        }
    }

    /// Admit an active request (`http2MaxRequests`). Hold the guard until
    /// the response body ends.
    #[inline]
    pub fn try_request(self: &Arc<Self>) -> Result<Guard, Overflow> {
        if self.take(Slot::Request) {
            Ok(self.guard(Slot::Request))
        } else {
            Err(Overflow::Requests)
        }
    }

    /// Admit a retry (`maxRetries`). Hold the guard for the retried attempt.
    pub fn try_retry(self: &Arc<Self>) -> Result<Guard, Overflow> {
        if self.take(Slot::Retry) {
            Ok(self.guard(Slot::Retry))
        } else {
            Err(Overflow::Retries)
        }
    }

    /// The right to open a connection (`maxConnections`), without waiting.
    pub fn try_connection(self: &Arc<Self>) -> Option<Guard> {
        self.take(Slot::Connection)
            .then(|| self.guard(Slot::Connection))
    }

    /// A connection for one request: within `maxConnections` at once,
    /// else wait as pending — or overflow when the pending queue is full.
    /// Waiting ends when a request gives its connection back (its guard
    /// drops); bound it with the route timeout. The guard is the right to
    /// use one connection (pooled or new) until the response body ends.
    pub async fn connection(self: &Arc<Self>) -> Result<Guard, Overflow> {
        if let Some(g) = self.try_connection() {
            return Ok(g);
        }
        self.wait_connection().await?;
        Ok(self.guard(Slot::Connection))
    }

    /// Wait as pending until a connection unit can be taken (the caller
    /// then holds it), or overflow.
    async fn wait_connection(&self) -> Result<(), Overflow> {
        if !try_take(&self.pending, self.limits.max_pending_requests) {
            self.stats
                .upstream_rq_pending_overflow
                .fetch_add(1, Ordering::Relaxed);
            return Err(Overflow::Pending);
        }
        self.stats
            .upstream_rq_pending_total
            .fetch_add(1, Ordering::Relaxed);
        let _pending = Pending(self);
        loop {
            // Register before checking, so a release in between is not lost.
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (connections, limit) = self.counter(Slot::Connection);
            if try_take(connections, limit) {
                return Ok(());
            }
            notified.await;
        }
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let l = self.limits;
        let cx = self.connections.load(Ordering::Relaxed);
        let pending = self.pending.load(Ordering::Relaxed);
        let rq = self.requests.load(Ordering::Relaxed);
        let retries = self.retries.load(Ordering::Relaxed);
        BreakerSnapshot {
            cx_active: cx,
            rq_pending_active: pending,
            rq_active: rq,
            rq_retry_active: retries,
            cx_open: cx >= l.max_connections,
            rq_pending_open: pending >= l.max_pending_requests,
            rq_open: rq >= l.max_requests,
            rq_retry_open: retries >= l.max_retries,
            remaining_cx: l.max_connections.saturating_sub(cx),
            remaining_pending: l.max_pending_requests.saturating_sub(pending),
            remaining_rq: l.max_requests.saturating_sub(rq),
            remaining_retries: l.max_retries.saturating_sub(retries),
        }
    }
}

/// Envoy's overflow reply body (81 bytes), for the 503 `UO` local reply.
pub const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
/// Response header Envoy sets on circuit-breaker 503s.
pub const OVERLOADED_HEADER: &str = "x-envoy-overloaded";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(yaml: &str) -> Limits {
        Limits::from_api(Some(&crate::istio::testing::yaml(yaml)))
    }

    #[test]
    fn istio_translation() {
        assert_eq!(Limits::from_api(None), Limits::default());
        let l = limits(
            "{tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1, http2MaxRequests: 0}}",
        );
        assert_eq!(l.max_connections, 1);
        assert_eq!(l.max_pending_requests, 1);
        assert_eq!(
            l.max_requests, UNLIMITED,
            "0 cannot be expressed: unlimited"
        );
        assert_eq!(OVERFLOW_BODY.len(), 81);
    }

    #[test]
    fn request_and_retry_limits() {
        let b = CircuitBreaker::new(Limits {
            max_requests: 2,
            max_retries: 1,
            ..Limits::default()
        });
        let a = b.try_request().unwrap();
        let _c = b.try_request().unwrap();
        assert_eq!(b.try_request().unwrap_err(), Overflow::Requests);
        assert!(b.snapshot().rq_open);
        drop(a);
        let _d = b.try_request().unwrap();
        let r = b.try_retry().unwrap();
        assert_eq!(b.try_retry().unwrap_err(), Overflow::Retries);
        drop(r);
        assert!(b.try_retry().is_ok());
        assert_eq!(
            b.stats.upstream_rq_pending_overflow.load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            b.stats.upstream_rq_retry_overflow.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn concurrent_admission_never_exceeds_the_limit() {
        let b = CircuitBreaker::new(Limits {
            max_requests: 3,
            ..Limits::default()
        });
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, peak) = (b.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Ok(g) = b.try_request() {
                            peak.fetch_max(b.snapshot().rq_active, Ordering::Relaxed);
                            drop(g);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(b.snapshot().rq_active, 0);
    }

    /// The circuit-breaking task's shape: 1 connection, 1 pending.
    #[tokio::test]
    async fn one_connection_one_pending_then_overflow() {
        let b = CircuitBreaker::new(Limits {
            max_connections: 1,
            max_pending_requests: 1,
            ..Limits::default()
        });
        let conn = b.connection().await.unwrap();
        // Second request waits as pending.
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.connection().await.is_ok() });
        while b.snapshot().rq_pending_active == 0 {
            tokio::task::yield_now().await;
        }
        // Third overflows: the only 503.
        assert_eq!(b.connection().await.unwrap_err(), Overflow::Pending);
        assert_eq!(
            b.stats.upstream_rq_pending_overflow.load(Ordering::Relaxed),
            1
        );
        let s = b.snapshot();
        assert!(s.cx_open && s.rq_pending_open);
        // Giving the connection back lets the pending one through.
        drop(conn);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap()
        );
        assert_eq!(b.snapshot().rq_pending_active, 0);
        assert_eq!(b.snapshot().cx_active, 0, "the waiter's guard dropped too");
    }

    /// A request's units on one breaker, in one guard.
    #[tokio::test]
    async fn one_guard_holds_what_a_request_holds() {
        let b = CircuitBreaker::new(Limits {
            max_connections: 1,
            max_retries: 2,
            ..Limits::default()
        });
        let mut g = b.try_request().unwrap();
        assert!(g.try_add_connection());
        // A retry replaces the one held for the previous attempt.
        g.add_retry().unwrap();
        g.add_retry().unwrap();
        assert_eq!(b.snapshot().rq_retry_active, 1);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut other = b2.try_request().unwrap();
            assert!(!other.try_add_connection());
            other.wait_connection().await.unwrap();
            other
        });
        while b.snapshot().rq_pending_active == 0 {
            tokio::task::yield_now().await;
        }
        // Giving the connection back (a retry's next attempt) wakes it.
        g.release_connection();
        let other = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        let s = b.snapshot();
        assert_eq!((s.cx_active, s.rq_active, s.rq_pending_active), (1, 2, 0));
        drop((g, other));
        let s = b.snapshot();
        assert_eq!((s.cx_active, s.rq_active, s.rq_retry_active), (0, 0, 0));
        assert_eq!(b.stats.upstream_cx_overflow.load(Ordering::Relaxed), 1);
    }
}
