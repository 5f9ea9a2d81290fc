//! The queue-proxy layer, in process: what Knative's queue-proxy sidecar
//! does in front of each instance, without the extra hop.
//!
//! - A hard concurrency limit: a request needs a free slot at an instance
//!   (`containerConcurrency`, 0 = unlimited) before it is sent there, so the
//!   app never has more in flight than that, over any number of requests.
//! - Request statistics for the autoscaler (Knative's RequestStats):
//!   time-weighted average concurrency and request counts per reporting
//!   period, split into direct and proxied (through the activator) requests.
//!   They are sharded by gateway worker, each shard behind its own mutex
//!   that only that worker and the once-a-second report take.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::worker;

/// One reporting period of one instance (or of the activator).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    pub average_concurrency: f64,
    pub average_proxied_concurrency: f64,
    pub requests: f64,
    pub proxied_requests: f64,
}

/// A moment as the statistics keep it: nanoseconds from a process-wide
/// origin. Taken once per event and shared by the statistics that event
/// updates (the instance's and the activator's); the per-event arithmetic
/// is then integer, not a checked `Instant` subtraction each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    pub fn of(t: Instant) -> Stamp {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        // An hour before the first stamp: requests that started before it
        // still get their own time.
        let origin = *ORIGIN.get_or_init(|| t.checked_sub(Duration::from_secs(3600)).unwrap_or(t));
        Stamp(u64::try_from(t.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn now() -> Stamp {
        Stamp::of(Instant::now())
    }
}

#[derive(Default)]
struct Shard {
    concurrency: i64,
    proxied: i64,
    last_change: Option<Stamp>,
    /// Concurrency x nanoseconds since the last report.
    concurrency_ns: i128,
    proxied_ns: i128,
    requests: u64,
    proxied_requests: u64,
}

impl Shard {
    fn advance(&mut self, now: Stamp) {
        match self.last_change {
            Some(last) if now > last => {
                let dt = i128::from(now.0 - last.0);
                self.concurrency_ns += i128::from(self.concurrency) * dt;
                self.proxied_ns += i128::from(self.proxied) * dt;
                self.last_change = Some(now);
            }
            Some(_) => {}
            None => self.last_change = Some(now),
        }
    }
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

pub struct RequestStats {
    shards: Box<[Padded]>,
    last_report: Mutex<Instant>,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            shards: (0..worker::SHARDS).map(|_| Padded::default()).collect(),
            last_report: Mutex::new(Instant::now()),
        }
    }
}

impl RequestStats {
    fn shard(&self) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere: the numbers are
        // still usable.
        self.shards[worker::index()]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A request arrived (`proxied`: through the activator).
    #[inline]
    pub fn request_in(&self, now: Stamp, proxied: bool) {
        let mut s = self.shard();
        s.advance(now);
        s.concurrency += 1;
        s.requests += 1;
        if proxied {
            s.proxied += 1;
            s.proxied_requests += 1;
        }
    }

    /// A request ended.
    #[inline]
    pub fn request_out(&self, now: Stamp, proxied: bool) {
        let mut s = self.shard();
        s.advance(now);
        s.concurrency -= 1;
        if proxied {
            s.proxied -= 1;
        }
    }

    /// Averages and counts since the previous report.
    pub fn report(&self, now: Instant) -> Report {
        let mut last = self.last_report.lock().unwrap_or_else(|e| e.into_inner());
        let period = now.saturating_duration_since(*last).as_secs_f64();
        *last = now.max(*last);
        drop(last);
        let stamp = Stamp::of(now);
        let mut total = Report::default();
        let (mut c, mut p) = (0i128, 0i128);
        for shard in self.shards.iter() {
            let mut s = shard.0.lock().unwrap_or_else(|e| e.into_inner());
            s.advance(stamp);
            c += s.concurrency_ns;
            p += s.proxied_ns;
            total.requests += s.requests as f64;
            total.proxied_requests += s.proxied_requests as f64;
            s.concurrency_ns = 0;
            s.proxied_ns = 0;
            s.requests = 0;
            s.proxied_requests = 0;
        }
        if period > 0.0 {
            total.average_concurrency = (c as f64 / 1e9 / period).max(0.0);
            total.average_proxied_concurrency = (p as f64 / 1e9 / period).max(0.0);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_weighted_average() {
        let s = RequestStats::default();
        let t0 = Instant::now();
        *s.last_report.lock().unwrap() = t0;
        let ms = |n| t0 + Duration::from_millis(n);
        let at = |n| Stamp::of(ms(n));
        // Two requests of 500 ms over one second: concurrency 1 on average.
        s.request_in(at(0), false);
        s.request_in(at(250), true);
        s.request_out(at(500), false);
        s.request_out(at(750), true);
        let r = s.report(ms(1000));
        assert!((r.average_concurrency - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.average_proxied_concurrency - 0.5).abs() < 1e-9, "{r:?}");
        assert_eq!((r.requests, r.proxied_requests), (2.0, 1.0));
        // A request still in flight counts in the next period too.
        s.request_in(at(1000), false);
        let r = s.report(ms(2000));
        assert!((r.average_concurrency - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.requests, 1.0);
        let r = s.report(ms(3000));
        assert!((r.average_concurrency - 1.0).abs() < 1e-9);
        assert_eq!(r.requests, 0.0);
    }
}
