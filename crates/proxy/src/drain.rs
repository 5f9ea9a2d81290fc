//! Shutdown behind a load balancer, in two steps. First the gateway
//! *drains*: its health check fails so the load balancer deregisters it,
//! while it keeps serving every request — HTTP/1.1 responses carry
//! `Connection: close` and HTTP/2 connections get a graceful GOAWAY, so
//! clients move to other targets between requests, never in the middle of
//! one. Only after the deregistration window do the listeners close (see
//! [`crate::listeners::ListenerManager::drain`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The gateway's drain state: read on every response, set once.
#[derive(Debug)]
pub struct Drain {
    /// Mirrors `tx` for the hot path: a relaxed load, no lock.
    draining: AtomicBool,
    /// Wakes each connection so HTTP/2 ones can send GOAWAY.
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: AtomicBool::new(false),
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    /// Start draining (idempotent).
    pub fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.tx.send_replace(true);
    }

    #[inline]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves when draining starts (at once if it has).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_learn_of_the_drain() {
        let d = Drain::default();
        let mut early = d.subscribe();
        assert!(!d.is_draining());
        d.start();
        d.start();
        assert!(d.is_draining());
        early.wait_for(|v| *v).await.unwrap();
        // A connection accepted during the drain sees it at once.
        d.subscribe().wait_for(|v| *v).await.unwrap();
    }
}
