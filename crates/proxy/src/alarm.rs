//! The gateway workers' alarm clock: one plain thread that wakes a worker's
//! deadline watcher (see [`crate::deadline`]) at the time it planned.
//!
//! Why not a tokio timer on each worker: while any tokio timer is armed on
//! a runtime, every park of that runtime reads the clock twice and walks the
//! timer wheel under the time driver's lock, a few hundred instructions per
//! park — and a busy worker parks about once per request. A watcher plans
//! rarely (about once per request timeout), so its wake-up can come from
//! another thread for the price of one cross-thread wake when it is due.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

/// The plans of every watcher of one set of gateway workers.
pub(crate) struct Alarm {
    plans: Mutex<Plans>,
    changed: Condvar,
}

#[derive(Default)]
struct Plans {
    /// One per watcher: when to wake it, and how.
    by_watcher: Vec<Option<(Instant, Waker)>>,
    stopped: bool,
}

impl Alarm {
    /// A slot for one more watcher.
    pub(crate) fn register(&self) -> usize {
        let mut plans = self.lock();
        plans.by_watcher.push(None);
        plans.by_watcher.len() - 1
    }

    /// Wake `waker` at `at` (instead of what watcher `id` planned before);
    /// `None`: not at all.
    pub(crate) fn set(&self, id: usize, at: Option<Instant>, waker: &Waker) {
        let mut plans = self.lock();
        if let Some(slot) = plans.by_watcher.get_mut(id) {
            *slot = at.map(|at| (at, waker.clone()));
        }
        drop(plans);
        self.changed.notify_one();
    }

    /// The alarm thread: sleep until the earliest plan, wake what is due.
    fn run(&self) {
        let mut due = Vec::new();
        let mut plans = self.lock();
        while !plans.stopped {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for slot in plans.by_watcher.iter_mut() {
                match slot {
                    Some((at, _)) if *at <= now => {
                        if let Some((_, waker)) = slot.take() {
                            due.push(waker);
                        }
                    }
                    Some((at, _)) => next = Some(next.map_or(*at, |n| n.min(*at))),
                    None => {}
                }
            }
            if !due.is_empty() {
                // Woken without the lock: a watcher may plan again at once.
                drop(plans);
                due.drain(..).for_each(Waker::wake);
                plans = self.lock();
                continue;
            }
            plans = match next {
                Some(at) => {
                    self.changed
                        .wait_timeout(plans, at - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(plans).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// A poisoned lock only means a panic elsewhere: the plans are usable.
    fn lock(&self) -> MutexGuard<'_, Plans> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running alarm thread; stopped and joined when dropped.
pub(crate) struct AlarmThread {
    alarm: Arc<Alarm>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AlarmThread {
    pub(crate) fn start() -> std::io::Result<AlarmThread> {
        let alarm = Arc::new(Alarm {
            plans: Mutex::new(Plans::default()),
            changed: Condvar::new(),
        });
        let a = alarm.clone();
        let thread = std::thread::Builder::new()
            .name("skiff-gateway-alarm".into())
            .spawn(move || a.run())?;
        Ok(AlarmThread {
            alarm,
            thread: Some(thread),
        })
    }

    pub(crate) fn alarm(&self) -> &Arc<Alarm> {
        &self.alarm
    }
}

impl Drop for AlarmThread {
    fn drop(&mut self) {
        self.alarm.lock().stopped = true;
        self.alarm.changed.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::tests::Count;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn wait_for(count: &Count, n: usize) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if count.0.load(Ordering::SeqCst) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn wakes_each_plan_once_when_due_and_not_a_replaced_one() {
        let thread = AlarmThread::start().unwrap();
        let alarm = thread.alarm();
        let (a, b) = (alarm.register(), alarm.register());
        let (ca, cb) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(ca.clone()), Waker::from(cb.clone()));
        let start = Instant::now();
        // b plans far away first, then earlier: the new plan counts.
        alarm.set(b, Some(start + Duration::from_secs(3600)), &wb);
        alarm.set(a, Some(start + Duration::from_millis(40)), &wa);
        alarm.set(b, Some(start + Duration::from_millis(20)), &wb);
        assert!(wait_for(&cb, 1) && wait_for(&ca, 1));
        assert!(start.elapsed() >= Duration::from_millis(40));
        // Cancelled: never woken.
        alarm.set(a, Some(Instant::now() + Duration::from_millis(20)), &wa);
        alarm.set(a, None, &wa);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(ca.0.load(Ordering::SeqCst), 1);
        assert_eq!(cb.0.load(Ordering::SeqCst), 1);
        // Dropping the thread stops it (the test would hang otherwise).
        drop(thread);
    }
}
