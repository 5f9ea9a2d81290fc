//! The activator, in process: one [`Backend`] per revision holds its ready
//! instances, hands out queue-proxy slots, and queues requests that find no
//! free slot (the revision is at zero, or every instance is at its
//! `containerConcurrency`).
//!
//! - The fast path (a free slot somewhere, nobody queued) is lock-free: an
//!   atomic load of the endpoint set and a compare-and-swap on an instance's
//!   in-flight count.
//! - The queue is FIFO, bounded in count ([`MAX_QUEUE`]) and in time (the
//!   revision's timeout), and holds only request heads: a body is read when
//!   the request is dispatched, so the client is back-pressured meanwhile.
//! - A slot freed by a finished request, or a newly ready instance, goes to
//!   the head of the queue at once.
//! - A revision whose instances cannot start fails its queued requests at
//!   once, with the runtime's reason, instead of letting them time out.
//! - A request at zero pokes the autoscaler so that it decides at once
//!   instead of at its next tick.
//! - Whether the activator is "in the path" (the autoscaler's SKS mode) only
//!   decides whether requests are counted as proxied and how an instance is
//!   picked; the queue is there either way, so the switch between the two
//!   modes can fail no request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use crate::endpoint::Endpoint;
use crate::istio::authz::Authorizer;
use crate::istio::time::MonoTime;
use crate::queue_proxy::{Report, RequestStats, Stamp};
use crate::worker::ShardedCounter;

/// Requests one revision may queue (Knative's activator breaker depth).
pub const MAX_QUEUE: usize = 10_000;
/// Default request timeout (Knative's `timeoutSeconds` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the activator answered a request itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The queue is full.
    Overflow { depth: usize },
    /// No slot within the request's time bound.
    TimedOut { waited: Duration, ready: usize },
    /// The revision cannot become ready (the runtime's reason).
    Failed(Arc<str>),
    /// Nothing runs this revision.
    NotRunning,
}

type Grant = Result<Arc<Endpoint>, Rejection>;

struct Waiter {
    tx: oneshot::Sender<Grant>,
}

/// A cold start in progress: the first request queued at zero, then the
/// instance's spawn and readiness, then the first response head.
#[derive(Default)]
struct Cold {
    since: Option<Instant>,
    spawned: Option<Instant>,
    ready: Option<Instant>,
}

/// Cold-start durations by phase (seconds).
pub struct ColdStartMetrics {
    pub spawn: Histogram,
    pub readiness: Histogram,
    pub first_byte: Histogram,
    pub total: Histogram,
}

impl Default for ColdStartMetrics {
    fn default() -> Self {
        let buckets = || {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        };
        ColdStartMetrics {
            spawn: buckets(),
            readiness: buckets(),
            first_byte: buckets(),
            total: buckets(),
        }
    }
}

/// Counters of the activator's own answers and work, per revision.
#[derive(Default)]
pub struct ActivatorCounters {
    pub queued: ShardedCounter,
    pub overflow: ShardedCounter,
    pub timed_out: ShardedCounter,
    pub failed: ShardedCounter,
}

/// A revision as a traffic target: its ready instances, its queue and its
/// activator statistics. Kept across routing snapshots (see [`Backends`]).
pub struct Backend {
    /// `namespace/name`.
    pub revision: Arc<str>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    next: AtomicUsize,
    capacity: AtomicUsize,
    timeout_ms: AtomicU64,
    /// `responseStartTimeoutSeconds` (0: `timeoutSeconds`).
    response_start_ms: AtomicU64,
    /// `idleTimeoutSeconds` (0: none).
    idle_ms: AtomicU64,
    /// The runtime knows this revision (else requests fail at once).
    known: AtomicBool,
    /// The activator is in the path (SKS mode Proxy).
    proxy: AtomicBool,
    waiting: AtomicUsize,
    queue: Mutex<VecDeque<Waiter>>,
    /// Checked on the slow path only.
    failure: Mutex<Option<Arc<str>>>,
    /// Requests through the activator (queue time included).
    stats: RequestStats,
    poke: Option<mpsc::UnboundedSender<Arc<str>>>,
    poke_pending: AtomicBool,
    /// The poke counted one request already; the next report subtracts it.
    poke_reported: AtomicBool,
    cold_active: AtomicBool,
    cold: Mutex<Cold>,
    cold_metrics: Arc<ColdStartMetrics>,
    pub counters: ActivatorCounters,
    /// The AuthorizationPolicies that apply to this revision's workload
    /// (Skiff has no sidecars: the gateway enforces them), set per routing
    /// snapshot; `None` when none applies.
    authz: ArcSwapOption<Authorizer>,
}

/// What the queue-proxies and the activator of one revision report for one
/// period.
#[derive(Debug, Clone, Default)]
pub struct RevisionReport {
    /// Summed over the ready instances.
    pub pods: Report,
    pub activator: Report,
    pub ready: usize,
    pub queued: usize,
}

impl Backend {
    fn new(
        revision: Arc<str>,
        poke: Option<mpsc::UnboundedSender<Arc<str>>>,
        cold_metrics: Arc<ColdStartMetrics>,
    ) -> Backend {
        Backend {
            revision,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            capacity: AtomicUsize::new(0),
            timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
            response_start_ms: AtomicU64::new(0),
            idle_ms: AtomicU64::new(0),
            known: AtomicBool::new(false),
            proxy: AtomicBool::new(true),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            failure: Mutex::new(None),
            stats: RequestStats::default(),
            poke,
            poke_pending: AtomicBool::new(false),
            poke_reported: AtomicBool::new(false),
            cold_active: AtomicBool::new(false),
            cold: Mutex::new(Cold::default()),
            cold_metrics,
            counters: ActivatorCounters::default(),
            authz: ArcSwapOption::empty(),
        }
    }

    /// The workload's authorization (`None`: nothing to check).
    pub fn set_authorizer(&self, a: Option<Arc<Authorizer>>) {
        self.authz.store(a);
    }

    #[inline]
    pub fn authorizer(&self) -> Guard<Option<Arc<Authorizer>>> {
        self.authz.load()
    }

    /// The ready instances without taking a reference count (hot path).
    #[inline]
    pub(crate) fn endpoints_now(&self) -> Guard<Arc<Vec<Arc<Endpoint>>>> {
        self.endpoints.load()
    }

    /// Settings from the Revision: `containerConcurrency` (0 = unlimited)
    /// and `timeoutSeconds`. Marks the revision as run by the runtime.
    pub fn configure(&self, container_concurrency: usize, timeout: Duration) {
        self.capacity
            .store(container_concurrency, Ordering::Release);
        self.timeout_ms
            .store(timeout.as_millis().max(1) as u64, Ordering::Release);
        for e in self.endpoints.load().iter() {
            e.set_capacity(container_concurrency);
        }
        self.known.store(true, Ordering::Release);
        // More capacity may let queued requests through.
        self.dispatch();
    }

    /// The revision is gone: queued and new requests fail at once.
    pub fn forget(&self) {
        self.known.store(false, Ordering::Release);
        self.reject_all(Rejection::NotRunning);
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Acquire))
    }

    /// The Revision's `responseStartTimeoutSeconds` and
    /// `idleTimeoutSeconds` (`None`: not set).
    pub fn set_stream_timeouts(&self, response_start: Option<Duration>, idle: Option<Duration>) {
        let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis().max(1) as u64);
        self.response_start_ms
            .store(ms(response_start), Ordering::Release);
        self.idle_ms.store(ms(idle), Ordering::Release);
    }

    /// How long the app has to start its response: `responseStartTimeoutSeconds`,
    /// bounded by `timeoutSeconds`.
    pub fn response_start_timeout(&self) -> Duration {
        match self.response_start_ms.load(Ordering::Acquire) {
            0 => self.timeout(),
            ms => Duration::from_millis(ms).min(self.timeout()),
        }
    }

    /// The longest gap allowed between response body chunks.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn container_concurrency(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn in_proxy_mode(&self) -> bool {
        self.proxy.load(Ordering::Relaxed)
    }

    /// The autoscaler's decision: is the activator in the path?
    pub fn set_proxy_mode(&self, proxy: bool) {
        self.proxy.store(proxy, Ordering::Relaxed);
    }

    pub fn failure(&self) -> Option<Arc<str>> {
        lock(&self.failure).clone()
    }

    /// Replace the ready instances. New instances take queued requests at
    /// once; instances no longer listed get no new slots (those in flight
    /// finish).
    pub fn set_endpoints(&self, endpoints: Vec<Arc<Endpoint>>) {
        let cc = self.container_concurrency();
        for e in &endpoints {
            e.set_capacity(cc);
        }
        let had = !self.endpoints.load().is_empty();
        let has = !endpoints.is_empty();
        self.endpoints.store(Arc::new(endpoints));
        if has {
            self.poke_pending.store(false, Ordering::Relaxed);
            if !had && self.cold_active.load(Ordering::Acquire) {
                let mut c = lock(&self.cold);
                if c.since.is_some() && c.ready.is_none() {
                    c.ready = Some(Instant::now());
                }
            }
        }
        self.dispatch();
    }

    /// The runtime cannot start this revision's instances (`Some(reason)`),
    /// or can again (`None`).
    pub fn set_failure(&self, failure: Option<String>) {
        let mut cur = lock(&self.failure);
        match failure {
            Some(f) => {
                if cur.as_deref() != Some(f.as_str()) {
                    let f: Arc<str> = f.into();
                    *cur = Some(f.clone());
                    drop(cur);
                    // This cold start is over: it failed.
                    if self.cold_active.swap(false, Ordering::AcqRel) {
                        *lock(&self.cold) = Cold::default();
                    }
                    self.reject_all(Rejection::Failed(f));
                }
            }
            None => *cur = None,
        }
    }

    /// An instance was spawned for a cold start (its process runs).
    pub fn note_spawned(&self) {
        if self.cold_active.load(Ordering::Acquire) {
            let mut c = lock(&self.cold);
            if c.since.is_some() && c.spawned.is_none() {
                c.spawned = Some(Instant::now());
            }
        }
    }

    pub(crate) fn note_first_byte(&self) {
        if !self.cold_active.swap(false, Ordering::AcqRel) {
            return;
        }
        let now = Instant::now();
        let mut c = lock(&self.cold);
        let cold = std::mem::take(&mut *c);
        drop(c);
        let (Some(since), Some(ready)) = (cold.since, cold.ready) else {
            return;
        };
        let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
        let m = &self.cold_metrics;
        if let Some(spawned) = cold.spawned {
            m.spawn.observe(secs(since, spawned));
            m.readiness.observe(secs(spawned, ready));
        }
        m.first_byte.observe(secs(ready, now));
        m.total.observe(secs(since, now));
        tracing::info!(
            revision = %self.revision,
            total_ms = secs(since, now) * 1e3,
            spawn_ms = cold.spawned.map(|s| secs(since, s) * 1e3),
            readiness_ms = cold.spawned.map(|s| secs(s, ready) * 1e3),
            first_byte_ms = secs(ready, now) * 1e3,
            "cold start served"
        );
    }

    /// Knative's throttler: with a small containerConcurrency the activator
    /// fills the first instances (so the others can scale away); otherwise
    /// instances take turns.
    fn fills_first(&self) -> bool {
        self.in_proxy_mode() && (1..=3).contains(&self.container_concurrency())
    }

    /// How an instance is picked now, in Envoy's words (`proxy-config`).
    pub fn balancing(&self) -> &'static str {
        if self.fills_first() {
            "FIRST_AVAILABLE"
        } else {
            "ROUND_ROBIN"
        }
    }

    fn pick(&self, tried: &[usize]) -> Option<Arc<Endpoint>> {
        let eps = self.endpoints.load();
        let n = eps.len();
        if n == 0 {
            return None;
        }
        let start = if n == 1 || self.fills_first() {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        // Pass 0 prefers instances not tried yet by this request and not
        // ejected by outlier detection; pass 1 takes any (a plain route
        // never answers "no healthy upstream" because of an ejection).
        let mut now = None;
        let mut skipped = false;
        for pass in 0..2 {
            for i in 0..n {
                let e = &eps[(start + i) % n];
                if e.is_retired() {
                    continue;
                }
                if pass == 0 {
                    let ejected = e.outlier.maybe_ejected()
                        && e.outlier.is_ejected(*now.get_or_insert_with(MonoTime::now));
                    if ejected || tried.contains(&(Arc::as_ptr(e) as usize)) {
                        skipped = true;
                        continue;
                    }
                }
                if e.try_acquire() {
                    return Some(e.clone());
                }
            }
            if !skipped {
                break;
            }
        }
        None
    }

    /// A free slot, unless requests are queued (they go first). A retry
    /// (`tried` non-empty) keeps its place and prefers untried instances.
    #[inline]
    pub(crate) fn try_acquire(&self, tried: &[usize]) -> Option<Arc<Endpoint>> {
        if tried.is_empty() && self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.pick(tried)
    }

    /// The fast path's bookkeeping on its own: a free slot if one is, as a
    /// request would take it (`through_activator`: counted at the activator
    /// too). Dropping the slot releases it. For benchmarks and tools.
    pub fn try_slot(self: &Arc<Self>, through_activator: bool) -> Option<Slot> {
        let ep = self.try_acquire(&[])?;
        Some(if through_activator {
            let now = Instant::now();
            self.enter(now).into_slot(ep, now)
        } else {
            Slot::new(ep, self.clone())
        })
    }

    /// Count a request at the activator from `now` until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>, now: Instant) -> Entered {
        self.stats.request_in(Stamp::of(now), false);
        Entered {
            backend: Some(self.clone()),
        }
    }

    /// Queue until a slot is free (or the deadline, or a failure).
    pub(crate) async fn wait(self: &Arc<Self>, deadline: tokio::time::Instant) -> Grant {
        if !self.known.load(Ordering::Acquire) {
            return Err(Rejection::NotRunning);
        }
        let at_zero = self.endpoints.load().is_empty();
        if at_zero && let Some(f) = self.failure() {
            self.counters.failed.inc();
            return Err(Rejection::Failed(f));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.queue);
            if q.len() >= MAX_QUEUE {
                self.counters.overflow.inc();
                return Err(Rejection::Overflow { depth: q.len() });
            }
            q.push_back(Waiter { tx });
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
        self.counters.queued.inc();
        let started = Instant::now();
        if at_zero {
            if !self.cold_active.swap(true, Ordering::AcqRel) {
                *lock(&self.cold) = Cold {
                    since: Some(started),
                    ..Default::default()
                };
            }
            if !self.poke_pending.swap(true, Ordering::AcqRel)
                && let Some(p) = &self.poke
            {
                self.poke_reported.store(true, Ordering::Release);
                let _ = p.send(self.revision.clone());
            }
        }
        // A slot may have been freed between the fast path and the push.
        self.dispatch();
        let mut ticket = Ticket {
            rx: Some(rx),
            backend: self,
        };
        let rx = ticket.rx.as_mut().expect("set above");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(grant)) => {
                ticket.rx = None;
                grant
            }
            Ok(Err(_)) => {
                ticket.rx = None;
                Err(Rejection::NotRunning)
            }
            Err(_) => {
                // Granted just as time ran out: take it.
                if let Some(ep) = ticket.take_late_grant() {
                    return Ok(ep);
                }
                self.counters.timed_out.inc();
                self.purge();
                Err(Rejection::TimedOut {
                    waited: started.elapsed(),
                    ready: self.endpoints.load().len(),
                })
            }
        }
    }

    /// Hand free slots to queued requests, oldest first.
    pub(crate) fn dispatch(&self) {
        let mut q = lock(&self.queue);
        loop {
            while q.front().is_some_and(|w| w.tx.is_closed()) {
                q.pop_front();
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            if q.is_empty() {
                break;
            }
            let Some(ep) = self.pick(&[]) else { break };
            let w = q.pop_front().expect("not empty");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Err(Ok(ep)) = w.tx.send(Ok(ep)) {
                // The request went away meanwhile: the slot is free again.
                ep.release();
            }
        }
    }

    /// Forget queued requests that went away.
    fn purge(&self) {
        let mut q = lock(&self.queue);
        q.retain(|w| !w.tx.is_closed());
        self.waiting.store(q.len(), Ordering::SeqCst);
    }

    fn reject_all(&self, why: Rejection) {
        let waiters: Vec<Waiter> = {
            let mut q = lock(&self.queue);
            self.waiting.store(0, Ordering::SeqCst);
            q.drain(..).collect()
        };
        for w in waiters {
            if matches!(why, Rejection::Failed(_)) {
                self.counters.failed.inc();
            }
            let _ = w.tx.send(Err(why.clone()));
        }
    }

    /// Cut this period's report (every second, for the autoscaler).
    pub fn report(&self, now: Instant) -> RevisionReport {
        let eps = self.endpoints.load();
        let mut pods = Report::default();
        for e in eps.iter() {
            let r = e.stats.report(now);
            pods.average_concurrency += r.average_concurrency;
            pods.average_proxied_concurrency += r.average_proxied_concurrency;
            pods.requests += r.requests;
            pods.proxied_requests += r.proxied_requests;
        }
        let mut activator = self.stats.report(now);
        if self.poke_reported.swap(false, Ordering::AcqRel) {
            // The poke already told the autoscaler about one request.
            activator.average_concurrency = (activator.average_concurrency - 1.0).max(0.0);
            activator.requests -= 1.0;
        }
        self.poke_pending.store(false, Ordering::Relaxed);
        RevisionReport {
            pods,
            activator,
            ready: eps.len(),
            queued: self.queued(),
        }
    }

    /// Requests in flight at the instances.
    pub fn in_flight(&self) -> usize {
        self.endpoints.load().iter().map(|e| e.in_flight()).sum()
    }
}

/// A queued request's claim; releases a slot granted after it was given up.
struct Ticket<'a> {
    rx: Option<oneshot::Receiver<Grant>>,
    backend: &'a Arc<Backend>,
}

impl Ticket<'_> {
    fn take_late_grant(&mut self) -> Option<Arc<Endpoint>> {
        let mut rx = self.rx.take()?;
        rx.close();
        match rx.try_recv() {
            Ok(Ok(ep)) => Some(ep),
            _ => None,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // The client went away while queued: a slot granted in the meantime
        // goes to the next request.
        if let Some(ep) = self.take_late_grant() {
            ep.release();
            self.backend.dispatch();
        }
    }
}

/// A request counted at the activator (until dropped, or until it becomes
/// part of its [`Slot`]).
pub struct Entered {
    /// None once handed to a slot.
    backend: Option<Arc<Backend>>,
}

impl Entered {
    /// The request got `endpoint`'s slot (at `now`): the slot ends both
    /// counts.
    pub(crate) fn into_slot(mut self, endpoint: Arc<Endpoint>, now: Instant) -> Slot {
        let backend = self
            .backend
            .take()
            .expect("an entered request has its backend");
        Slot::with(endpoint, backend, true, now)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(b) = &self.backend {
            b.stats.request_out(Stamp::now(), false);
        }
    }
}

/// A request's slot at an instance, held until its response body ends:
/// the queue-proxy's concurrency accounting (and the activator's, for a
/// request that went through it). Releasing it hands the slot to the oldest
/// queued request, if any.
pub struct Slot {
    endpoint: Arc<Endpoint>,
    backend: Arc<Backend>,
    proxied: bool,
    /// Already ended by [`Slot::end_at`].
    ended: bool,
}

impl Slot {
    /// Wrap a slot already taken on `endpoint` by a request that did not go
    /// through the activator.
    pub(crate) fn new(endpoint: Arc<Endpoint>, backend: Arc<Backend>) -> Slot {
        Slot::with(endpoint, backend, false, Instant::now())
    }

    /// [`Slot::new`], taken at `now` (a clock read the caller already made).
    pub(crate) fn new_at(endpoint: Arc<Endpoint>, backend: Arc<Backend>, now: Instant) -> Slot {
        Slot::with(endpoint, backend, false, now)
    }

    fn with(endpoint: Arc<Endpoint>, backend: Arc<Backend>, proxied: bool, now: Instant) -> Slot {
        endpoint.stats.request_in(Stamp::of(now), proxied);
        Slot {
            endpoint,
            backend,
            proxied,
            ended: false,
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// End the request's counts at `now` (a clock read the caller already
    /// made) and hand the slot on; dropping a slot does this at its own
    /// clock read.
    pub(crate) fn end_at(mut self, now: Instant) {
        self.end(now);
    }

    fn end(&mut self, now: Instant) {
        self.ended = true;
        let now = Stamp::of(now);
        self.endpoint.stats.request_out(now, self.proxied);
        self.endpoint.release();
        if self.proxied {
            self.backend.stats.request_out(now, false);
        }
        if self.backend.waiting.load(Ordering::SeqCst) > 0 {
            self.backend.dispatch();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.ended {
            self.end(Instant::now());
        }
    }
}

/// Every revision's backend, by `namespace/name`. Backends outlive routing
/// snapshots so that queues, counters and pooled connections carry over.
#[derive(Default)]
pub struct Backends {
    map: Mutex<HashMap<Arc<str>, Arc<Backend>>>,
    poke: Mutex<Option<mpsc::UnboundedSender<Arc<str>>>>,
    pub cold_starts: Arc<ColdStartMetrics>,
}

impl Backends {
    /// Where requests at zero send their revision's name (the autoscaler).
    pub fn set_poke(&self, tx: mpsc::UnboundedSender<Arc<str>>) {
        *lock(&self.poke) = Some(tx);
    }

    /// The backend of `revision`, created if new.
    pub fn get(&self, revision: &str) -> Arc<Backend> {
        let mut map = lock(&self.map);
        if let Some(b) = map.get(revision) {
            return b.clone();
        }
        let name: Arc<str> = revision.into();
        let b = Arc::new(Backend::new(
            name.clone(),
            lock(&self.poke).clone(),
            self.cold_starts.clone(),
        ));
        map.insert(name, b.clone());
        b
    }

    pub fn find(&self, revision: &str) -> Option<Arc<Backend>> {
        lock(&self.map).get(revision).cloned()
    }

    /// Every backend, sorted by revision.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let mut v: Vec<Arc<Backend>> = lock(&self.map).values().cloned().collect();
        v.sort_by(|a, b| a.revision.cmp(&b.revision));
        v
    }

    /// Drop backends for which `keep` is false (their requests fail fast).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut gone = Vec::new();
        lock(&self.map).retain(|k, b| {
            let kept = keep(k);
            if !kept {
                gone.push(b.clone());
            }
            kept
        });
        for b in gone {
            b.forget();
        }
    }

    /// True while some backend can still hand out slots on `endpoint`.
    pub fn references(&self, endpoint: &Arc<Endpoint>) -> bool {
        lock(&self.map)
            .values()
            .any(|b| b.endpoints.load().iter().any(|e| Arc::ptr_eq(e, endpoint)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(i: u64) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(
            format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
            "ns/rev".into(),
            i,
            false,
        ))
    }

    async fn until(f: impl Fn() -> bool) {
        while !f() {
            tokio::task::yield_now().await;
        }
    }

    fn later() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn freed_slots_go_to_queued_requests_in_order_within_the_limit() {
        let backends = Backends::default();
        let b = backends.get("ns/rev");
        b.configure(1, Duration::from_secs(30));
        let e = endpoint(1);
        b.set_endpoints(vec![e.clone()]);
        let first = Slot::new(b.try_acquire(&[]).unwrap(), b.clone());
        assert!(
            b.try_acquire(&[]).is_none(),
            "containerConcurrency 1 is full"
        );
        let w1 = tokio::spawn({
            let b = b.clone();
            async move { b.wait(later()).await }
        });
        until(|| b.queued() == 1).await;
        let w2 = tokio::spawn({
            let b = b.clone();
            async move { b.wait(later()).await }
        });
        until(|| b.queued() == 2).await;
        // Nobody may jump the queue while requests wait.
        assert!(b.try_acquire(&[]).is_none());
        drop(first);
        let g1 = w1.await.unwrap().unwrap();
        assert_eq!(e.in_flight(), 1);
        assert_eq!(b.queued(), 1);
        drop(Slot::new(g1, b.clone()));
        let g2 = w2.await.unwrap().unwrap();
        assert_eq!((e.in_flight(), b.queued()), (1, 0));
        drop(Slot::new(g2, b.clone()));
        assert_eq!(e.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_new_instance_takes_queued_requests_at_once() {
        let backends = Backends::default();
        let b = backends.get("ns/rev");
        b.configure(2, Duration::from_secs(30));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.wait(later()).await })
            })
            .collect();
        until(|| b.queued() == 3).await;
        let e = endpoint(1);
        b.set_endpoints(vec![e.clone()]);
        // Two slots: two requests dispatched, one still queued.
        until(|| b.queued() == 1).await;
        assert_eq!(e.in_flight(), 2);
        let e2 = endpoint(2);
        b.set_endpoints(vec![e.clone(), e2.clone()]);
        for w in waiters {
            let ep = w.await.unwrap().unwrap();
            ep.release();
        }
        assert_eq!((e.in_flight(), e2.in_flight()), (0, 0));
    }

    #[tokio::test]
    async fn start_failures_fail_queued_and_new_requests_at_once() {
        let backends = Backends::default();
        let b = backends.get("ns/rev");
        b.configure(0, Duration::from_secs(30));
        let w = tokio::spawn({
            let b = b.clone();
            async move { b.wait(later()).await }
        });
        until(|| b.queued() == 1).await;
        b.set_failure(Some("exited with code 3".into()));
        assert_eq!(
            w.await.unwrap().unwrap_err(),
            Rejection::Failed("exited with code 3".into())
        );
        assert!(matches!(b.wait(later()).await, Err(Rejection::Failed(_))));
        b.set_failure(None);
        // Unknown revisions fail at once too.
        let other = backends.get("ns/unknown");
        assert_eq!(
            other.wait(later()).await.unwrap_err(),
            Rejection::NotRunning
        );
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_time() {
        let backends = Backends::default();
        let b = backends.get("ns/rev");
        b.configure(1, Duration::from_secs(30));
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        match b.wait(soon).await {
            Err(Rejection::TimedOut { ready: 0, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test]
    async fn draining_instances_get_no_new_slots() {
        let backends = Backends::default();
        let b = backends.get("ns/rev");
        b.configure(0, Duration::from_secs(30));
        let e = endpoint(1);
        b.set_endpoints(vec![e.clone()]);
        e.drain();
        assert!(b.try_acquire(&[]).is_none());
        assert_eq!(e.in_flight(), 0);
        assert!(backends.references(&e));
        b.set_endpoints(Vec::new());
        assert!(!backends.references(&e));
    }
}
