//! A future that is polled only after it was woken.
//!
//! A connection's task waits on its connection and on two shutdown signals
//! (its listener closing, the gateway draining). `select!` polls every
//! branch on every wake-up of the task — that is, on every request — and a
//! watch channel's future re-registers its waker each time it is polled:
//! about 900 instructions per request (3% of the gateway's work, measured
//! with bench/gateway/instructions.sh), for signals that fire once in the
//! connection's life. Behind a gate an idle signal costs an atomic swap.
//! (`FuturesUnordered` does the same per child: each gets a waker of its
//! own that marks it ready.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

pub(crate) struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
}

struct Gate {
    /// The inner future was woken since it was last polled (and it has
    /// never been polled yet).
    woken: AtomicBool,
    /// The task that polls the gated future.
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Gated<F> {
    pub(crate) fn new(inner: F) -> Gated<F> {
        Gated {
            inner: Box::pin(inner),
            gate: Arc::new(Gate {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake-up in between is seen
        // now or wakes the task again.
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.gate.clone());
        this.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::watch;

    #[tokio::test]
    async fn polls_the_inner_future_only_after_its_wake_up() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = watch::channel(false);
        let counted = polls.clone();
        let mut changed = Box::pin(async move {
            let _ = rx.wait_for(|v| *v).await;
        });
        let mut gated = Gated::new(std::future::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            changed.as_mut().poll(cx)
        }));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // First poll registers; polls without a wake-up skip the inner future.
        assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        tx.send_replace(true);
        // The signal wakes the task, and the gated future completes.
        tokio::time::timeout(Duration::from_secs(5), gated)
            .await
            .expect("the gated future saw its signal");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
