//! Gateway worker threads and per-worker shards.
//!
//! The gateway runs one single-threaded runtime per core, each accepting on
//! its own `SO_REUSEPORT` listener. A request, its upstream connection and
//! that connection's driver task then live on one thread: no cross-thread
//! wakeups on the hot path (the main cost of a proxy on a multi-threaded
//! runtime). Upstream pools and hot counters are sharded by worker so that
//! workers do not share cache lines either.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shards per counter and pool; worker indexes wrap around beyond it.
pub const SHARDS: usize = 16;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Mark the current thread as gateway worker `i` (0 is everything else).
pub fn set_index(i: usize) {
    INDEX.with(|c| c.set(i % SHARDS));
}

/// This thread's shard.
#[inline]
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter incremented on the hot path: one cache line per worker, summed
/// when read.
pub struct ShardedCounter(Box<[Padded]>);

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter((0..SHARDS).map(|_| Padded::default()).collect())
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl ShardedCounter {
    #[inline]
    pub fn inc(&self) {
        self.0[index()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}
