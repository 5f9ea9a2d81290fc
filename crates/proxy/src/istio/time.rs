//! Monotonic time as plain nanoseconds, so stateful policies (outlier
//! detection) are pure functions of the time they are given and tests can
//! drive them without sleeping.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Nanoseconds since a process-wide epoch; 0 is reserved for "never".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(pub u64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl MonoTime {
    /// Now. Starts above zero so that 0 keeps meaning "never".
    pub fn now() -> MonoTime {
        MonoTime(epoch().elapsed().as_nanos() as u64 + 1)
    }

    pub fn from_secs(s: u64) -> MonoTime {
        MonoTime(s * 1_000_000_000 + 1)
    }

    pub fn from_millis(ms: u64) -> MonoTime {
        MonoTime(ms * 1_000_000 + 1)
    }

    pub fn plus(self, d: Duration) -> MonoTime {
        MonoTime(self.0.saturating_add(d.as_nanos() as u64))
    }

    pub fn since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}
