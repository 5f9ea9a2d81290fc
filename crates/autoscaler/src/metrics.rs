//! A revision's metric collection (Knative `metrics/collector.go`): every
//! stat goes into the stable and panic windows of both metrics.

use std::time::Duration;

use crate::buckets::{Algorithm, Buckets};
use crate::time::Time;

/// Bucket width (Knative `BucketSize`).
pub const BUCKET: Duration = Duration::from_secs(1);

/// What a queue-proxy (or the activator) reports for one period: revision
/// totals, see [`Collection::record`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub average_concurrent_requests: f64,
    pub average_proxied_concurrent_requests: f64,
    pub request_count: f64,
    pub proxied_request_count: f64,
}

impl Stat {
    pub fn add(&mut self, o: &Stat) {
        self.average_concurrent_requests += o.average_concurrent_requests;
        self.average_proxied_concurrent_requests += o.average_proxied_concurrent_requests;
        self.request_count += o.request_count;
        self.proxied_request_count += o.proxied_request_count;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricError {
    /// The stable window holds no data (and the pods are scraped).
    NoData,
}

#[derive(Debug, Clone)]
pub struct Collection {
    concurrency: Buckets,
    concurrency_panic: Buckets,
    rps: Buckets,
    rps_panic: Buckets,
    /// False when TBC is -1: pods are not scraped and an empty window means 0.
    scraped: bool,
}

impl Collection {
    pub fn new(
        stable: Duration,
        panic: Duration,
        algorithm: Algorithm,
        scraped: bool,
    ) -> Collection {
        Collection {
            concurrency: Buckets::new(stable, BUCKET, algorithm),
            concurrency_panic: Buckets::new(panic, BUCKET, algorithm),
            rps: Buckets::new(stable, BUCKET, algorithm),
            rps_panic: Buckets::new(panic, BUCKET, algorithm),
            scraped,
        }
    }

    /// New windows or scrape target (the revision's settings changed).
    pub fn update(&mut self, stable: Duration, panic: Duration, scraped: bool, now: Time) {
        self.concurrency.resize(stable, now);
        self.concurrency_panic.resize(panic, now);
        self.rps.resize(stable, now);
        self.rps_panic.resize(panic, now);
        self.scraped = scraped;
    }

    /// Record a stat. Requests the activator proxied were counted by the
    /// activator's own stat: they are subtracted here.
    pub fn record(&mut self, now: Time, stat: &Stat) {
        let c = stat.average_concurrent_requests - stat.average_proxied_concurrent_requests;
        self.concurrency.record(now, c);
        self.concurrency_panic.record(now, c);
        let r = stat.request_count - stat.proxied_request_count;
        self.rps.record(now, r);
        self.rps_panic.record(now, r);
    }

    fn pair(
        &self,
        stable: &Buckets,
        panic: &Buckets,
        now: Time,
    ) -> Result<(f64, f64), MetricError> {
        if stable.is_empty(now) && self.scraped {
            return Err(MetricError::NoData);
        }
        Ok((stable.window_average(now), panic.window_average(now)))
    }

    pub fn stable_and_panic_concurrency(&self, now: Time) -> Result<(f64, f64), MetricError> {
        self.pair(&self.concurrency, &self.concurrency_panic, now)
    }

    pub fn stable_and_panic_rps(&self, now: Time) -> Result<(f64, f64), MetricError> {
        self.pair(&self.rps, &self.rps_panic, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_requests_are_not_counted_twice() {
        let mut c = Collection::new(
            Duration::from_secs(6),
            Duration::from_secs(1),
            Algorithm::Linear,
            true,
        );
        assert_eq!(
            c.stable_and_panic_concurrency(Time::from_secs(10)),
            Err(MetricError::NoData)
        );
        let pod = Stat {
            average_concurrent_requests: 5.0,
            average_proxied_concurrent_requests: 2.0,
            request_count: 10.0,
            proxied_request_count: 4.0,
        };
        let activator = Stat {
            average_concurrent_requests: 3.0,
            request_count: 4.0,
            ..Default::default()
        };
        c.record(Time::from_secs(10), &pod);
        c.record(Time::from_secs(10), &activator);
        assert_eq!(
            c.stable_and_panic_concurrency(Time::from_secs(10)),
            Ok((6.0, 6.0))
        );
        assert_eq!(
            c.stable_and_panic_rps(Time::from_secs(10)),
            Ok((10.0, 10.0))
        );
    }

    #[test]
    fn unscraped_revisions_read_zero_without_data() {
        let c = Collection::new(
            Duration::from_secs(6),
            Duration::from_secs(1),
            Algorithm::Linear,
            false,
        );
        assert_eq!(
            c.stable_and_panic_concurrency(Time::from_secs(10)),
            Ok((0.0, 0.0))
        );
    }
}
