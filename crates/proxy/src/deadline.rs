//! Request deadlines on the gateway workers, without a tokio timer per
//! request.
//!
//! Every proxied request runs under a deadline (the revision's
//! `timeoutSeconds` and `responseStartTimeoutSeconds`, a route's timeout),
//! and nearly every request ends long before it. A tokio timer per request
//! costs its insertion into and removal from the runtime's timer wheel,
//! under the time driver's lock: about 800 instructions, the largest single
//! item of the gateway's own work per request
//! (bench/gateway/instructions.sh).
//!
//! Each gateway worker instead keeps its requests' deadlines in a
//! thread-local slab, and one task per worker (its watcher) waits until the
//! earliest of them, wakes the requests whose deadline passed, and waits
//! again. A request pays a slab insert and remove. The watcher plans again
//! only when a deadline comes due or an earlier one than planned arrives
//! (with Knative's fixed timeouts: about once per timeout), and is woken at
//! the planned time by the [`crate::alarm`] thread, so that no tokio timer
//! stays armed on a worker. Off the workers (tests, the main runtime) a
//! deadline is a plain tokio timer.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use slab::Slab;
use tokio::time::Instant;

use crate::alarm::Alarm;

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

/// One worker's pending deadlines.
#[derive(Default)]
struct Deadlines {
    /// Tells the workers' deadlines apart (unique in the process).
    id: u64,
    entries: Slab<Entry>,
    /// No pending deadline is earlier (a lower bound: entries removed
    /// since do not raise it).
    earliest: Option<Instant>,
    /// When the watcher task wakes next (None: when a deadline arrives).
    planned: Option<Instant>,
    /// A deadline earlier than `planned` arrived: the watcher must re-plan.
    replan: bool,
    /// The watcher task, while it waits.
    watcher: Option<Waker>,
}

impl Deadlines {
    fn insert(&mut self, at: Instant, waker: &Waker) -> usize {
        self.arriving(at);
        self.entries.insert(Entry {
            at,
            waker: Some(waker.clone()),
            expired: false,
        })
    }

    /// Deadline `key` moves to `at` (and is pending again).
    fn reset(&mut self, key: usize, at: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.at = at;
            e.expired = false;
            self.arriving(at);
        }
    }

    /// A deadline at `at` is pending: the watcher must know if it is
    /// earlier than what it planned for.
    fn arriving(&mut self, at: Instant) {
        if self.earliest.is_none_or(|e| at < e) {
            self.earliest = Some(at);
        }
        if self.planned.is_none_or(|p| at < p) {
            self.replan = true;
            if let Some(w) = self.watcher.take() {
                w.wake();
            }
        }
    }

    /// Ready once the deadline `key` has passed.
    fn poll(&mut self, key: usize, waker: &Waker) -> Poll<()> {
        let Some(e) = self.entries.get_mut(key) else {
            return Poll::Ready(());
        };
        if e.expired {
            return Poll::Ready(());
        }
        match &e.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => e.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    fn remove(&mut self, key: usize) {
        self.entries.try_remove(key);
        if self.entries.is_empty() {
            self.earliest = None;
        }
    }

    /// Wake every deadline that passed by `now`; the earliest one left.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        if self.earliest.is_none_or(|e| e > now) {
            return self.earliest;
        }
        let mut earliest: Option<Instant> = None;
        for (_, e) in self.entries.iter_mut() {
            if e.expired {
                continue;
            }
            if e.at <= now {
                e.expired = true;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            } else if earliest.is_none_or(|x| e.at < x) {
                earliest = Some(e.at);
            }
        }
        self.earliest = earliest;
        earliest
    }
}

thread_local! {
    /// Set on a gateway worker while its watcher runs.
    static WORKER: RefCell<Option<Deadlines>> = const { RefCell::new(None) };
}

fn with_worker<R>(f: impl FnOnce(&mut Deadlines) -> R) -> R {
    WORKER.with(|w| f(w.borrow_mut().as_mut().expect("the watcher installed it")))
}

/// Run on each gateway worker, for its lifetime: wakes the worker's
/// requests whose deadline passed. `alarm` wakes it when it planned to.
pub(crate) async fn watcher(alarm: Arc<Alarm>) {
    static IDS: AtomicU64 = AtomicU64::new(1);
    let deadlines = Deadlines {
        id: IDS.fetch_add(1, Ordering::Relaxed),
        ..Default::default()
    };
    WORKER.with(|w| *w.borrow_mut() = Some(deadlines));
    let id = alarm.register();
    // The deadlines go when the worker stops: a timer dropped after that
    // has nothing to remove. The alarm no longer has anything to wake.
    struct Uninstall<'a>(&'a Alarm, usize);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = WORKER.try_with(|w| w.borrow_mut().take());
            self.0.set(self.1, None, Waker::noop());
        }
    }
    let _uninstall = Uninstall(&alarm, id);
    loop {
        let now = Instant::now();
        let next = with_worker(|d| {
            let next = d.expire(now);
            d.planned = next;
            d.replan = false;
            next
        });
        let mut told = false;
        std::future::poll_fn(|cx| {
            let replan = with_worker(|d| {
                if d.replan {
                    return true;
                }
                d.watcher = Some(cx.waker().clone());
                false
            });
            if replan || next.is_some_and(|at| Instant::now() >= at) {
                return Poll::Ready(());
            }
            if !told {
                alarm.set(id, next.map(Instant::into_std), cx.waker());
                told = true;
            }
            Poll::Pending
        })
        .await;
    }
}

/// A deadline for one request: [`Timer::poll_expired`] is ready once
/// it has passed. Registered at its first poll; deregistered when dropped.
/// Polled, reset and dropped on the worker it was first polled on (a
/// request's futures and its response body stay on its worker).
pub(crate) struct Timer {
    at: Instant,
    state: State,
}

enum State {
    New,
    /// Entry `key` in the deadlines of worker `worker` (their id).
    Worker {
        key: usize,
        worker: u64,
    },
    /// Not on a gateway worker: a tokio timer.
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Timer {
    pub(crate) fn new(at: Instant) -> Timer {
        Timer {
            at,
            state: State::New,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.at
    }

    /// Move the deadline to `at`.
    pub(crate) fn reset(&mut self, at: Instant) {
        self.at = at;
        match &mut self.state {
            State::New => {}
            State::Worker { key, worker } => {
                let (key, worker) = (*key, *worker);
                let _ = WORKER.try_with(|w| {
                    if let Some(d) = w.borrow_mut().as_mut().filter(|d| d.id == worker) {
                        d.reset(key, at);
                    }
                });
            }
            State::Tokio(s) => s.as_mut().reset(at),
        }
    }

    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.state {
            State::New => {
                let key = WORKER.with(|w| {
                    w.borrow_mut()
                        .as_mut()
                        .map(|d| (d.insert(self.at, cx.waker()), d.id))
                });
                match key {
                    Some((key, worker)) => {
                        // Even if already due: the watcher, told of an
                        // earlier deadline than it planned for, wakes it.
                        self.state = State::Worker { key, worker };
                        Poll::Pending
                    }
                    None => self.poll_tokio(cx),
                }
            }
            State::Worker { key, worker } => {
                let (key, worker) = (*key, *worker);
                let here = WORKER.with(|w| match w.borrow_mut().as_mut() {
                    Some(d) if d.id == worker => Some(d.poll(key, cx.waker())),
                    Some(_) => None,
                    // The worker is stopping: nothing will fire any more.
                    None => Some(Poll::Ready(())),
                });
                // On another worker than its own (not expected): a tokio
                // timer from now on.
                here.unwrap_or_else(|| self.poll_tokio(cx))
            }
            State::Tokio(s) => s.as_mut().poll(cx),
        }
    }

    /// Become a tokio timer, and poll it.
    fn poll_tokio(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = Box::pin(tokio::time::sleep_until(self.at));
        let r = sleep.as_mut().poll(cx);
        self.state = State::Tokio(sleep);
        r
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Only from the worker's own deadlines: the same key on another
        // worker is another request's.
        if let State::Worker { key, worker } = self.state {
            let _ = WORKER.try_with(|w| {
                if let Some(d) = w.borrow_mut().as_mut().filter(|d| d.id == worker) {
                    d.remove(key);
                }
            });
        }
    }
}

/// `fut`, or `Err(())` once `at` has passed (as `tokio::time::timeout_at`).
/// Takes the future pinned where the caller keeps it: a request's future is
/// large, and each level that owns it copies it whole.
pub(crate) async fn timeout_at<F: Future>(
    at: Instant,
    mut fut: Pin<&mut F>,
) -> Result<F::Output, ()> {
    let mut timer = Timer::new(at);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        timer.poll_expired(cx).map(Err)
    })
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    /// A waker that counts its wakes.
    pub(crate) struct Count(pub(crate) AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn expire_wakes_only_what_passed() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let a = d.insert(t0 + Duration::from_secs(1), &waker);
        assert!(d.replan, "a first deadline makes the watcher plan");
        d.planned = Some(t0 + Duration::from_secs(1));
        d.replan = false;
        let b = d.insert(t0 + Duration::from_secs(3), &waker);
        assert!(!d.replan, "a later deadline changes no plan");
        assert_eq!(d.earliest, Some(t0 + Duration::from_secs(1)));
        assert_eq!(d.expire(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        assert!(d.poll(a, &waker).is_pending());
        assert_eq!(
            d.expire(t0 + Duration::from_secs(2)),
            Some(t0 + Duration::from_secs(3))
        );
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(d.poll(a, &waker).is_ready());
        assert!(d.poll(b, &waker).is_pending());
        d.remove(a);
        d.remove(b);
        assert!(d.entries.is_empty());
        assert_eq!(d.earliest, None);
        // A removed entry wakes nothing.
        assert_eq!(d.expire(t0 + Duration::from_secs(10)), None);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        // An earlier deadline than planned makes the watcher re-plan.
        d.planned = Some(t0 + Duration::from_secs(300));
        d.insert(t0 + Duration::from_secs(1), &waker);
        assert!(d.replan);
    }

    #[tokio::test]
    async fn off_a_worker_it_is_a_tokio_timer() {
        let at = Instant::now() + Duration::from_millis(20);
        let r = timeout_at(at, std::pin::pin!(std::future::pending::<()>())).await;
        assert_eq!(r, Err(()));
        assert!(Instant::now() >= at);
        let pending = WORKER.with(|w| w.borrow().is_some());
        assert!(!pending, "no worker deadlines on this thread");
        let r = timeout_at(
            Instant::now() + Duration::from_secs(60),
            std::pin::pin!(async { 7 }),
        )
        .await;
        assert_eq!(r, Ok(7));
    }

    #[tokio::test]
    async fn on_a_worker_the_watcher_fires_it_and_drop_deregisters() {
        let alarm = crate::alarm::AlarmThread::start().unwrap();
        let watcher = tokio::spawn(watcher(alarm.alarm().clone()));
        tokio::task::yield_now().await;
        let start = Instant::now();
        // A long deadline first, then a shorter one: the watcher re-plans.
        let long = tokio::spawn(async move {
            let _ = timeout_at(
                start + Duration::from_secs(60),
                std::pin::pin!(std::future::pending::<()>()),
            )
            .await;
        });
        tokio::task::yield_now().await;
        let r = timeout_at(
            start + Duration::from_millis(30),
            std::pin::pin!(std::future::pending::<()>()),
        )
        .await;
        assert_eq!(r, Err(()));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(start.elapsed() < Duration::from_secs(30));
        long.abort();
        let _ = long.await;
        // A request that finishes first leaves nothing behind.
        let r = timeout_at(
            start + Duration::from_secs(60),
            std::pin::pin!(async { "done" }),
        )
        .await;
        assert_eq!(r, Ok("done"));
        let pending = WORKER.with(|w| w.borrow().as_ref().map(|d| d.entries.len()));
        assert_eq!(pending, Some(0));
        watcher.abort();
    }
}
