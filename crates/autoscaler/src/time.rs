use std::time::Duration;

/// A point in time: nanoseconds since the Unix epoch (or any fixed epoch:
/// only differences and whole-second indexes matter). Callers pass it in;
/// the library never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub i64);

const NANOS: i64 = 1_000_000_000;

impl Time {
    pub fn from_secs_f64(s: f64) -> Time {
        Time((s * NANOS as f64).round() as i64)
    }

    pub fn from_secs(s: i64) -> Time {
        Time(s.saturating_mul(NANOS))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS as f64
    }

    /// Whole seconds (floor), like Go's `Time.Unix()`.
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(NANOS)
    }

    /// Rounded down to a multiple of `g` (Go's `Time.Truncate`).
    pub fn truncate(self, g: Duration) -> Time {
        let g = dur_nanos(g).max(1);
        Time(self.0 - self.0.rem_euclid(g))
    }

    pub fn plus(self, d: Duration) -> Time {
        Time(self.0.saturating_add(dur_nanos(d)))
    }

    pub fn sub_dur(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(dur_nanos(d)))
    }

    /// `self - earlier` in nanoseconds (negative when `earlier` is later).
    pub fn since(self, earlier: Time) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

pub(crate) fn dur_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A signed nanosecond count as a Duration (negative counts as zero).
pub(crate) fn nanos_dur(n: i64) -> Duration {
    Duration::from_nanos(n.max(0) as u64)
}
