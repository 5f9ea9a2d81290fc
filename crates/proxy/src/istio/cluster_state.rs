//! Per-cluster state that must outlive routing snapshots: circuit breakers
//! (in-flight requests hold guards on them, and their counters are what
//! `proxy-config` and Prometheus show), outlier-detection stats and the
//! router's per-cluster counters (Envoy's `cluster.<name>.upstream_*`). The
//! table builder asks for them by cluster name on every snapshot; the same
//! objects come back while the limits stay the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::circuit_breaker::{CircuitBreaker, Limits};
use super::outlier::OutlierStats;
use crate::worker::ShardedCounter;

/// Router counters of one cluster, with Envoy's names. `upstream_rq_total`
/// is bumped per request (sharded); the others on rare events.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub upstream_rq_total: ShardedCounter,
    pub upstream_rq_retry: AtomicU64,
    pub upstream_rq_retry_success: AtomicU64,
    pub upstream_rq_retry_limit_exceeded: AtomicU64,
    pub upstream_rq_timeout: AtomicU64,
    pub upstream_rq_per_try_timeout: AtomicU64,
    pub upstream_rq_rx_reset: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    pub upstream_cx_none_healthy: AtomicU64,
}

impl ClusterCounters {
    #[inline]
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry {
    breaker: Arc<CircuitBreaker>,
    outlier: Arc<OutlierStats>,
    counters: Arc<ClusterCounters>,
}

/// Cluster name (`outbound|port|subset|host`) → long-lived state.
#[derive(Debug, Default)]
pub struct ClusterStates {
    map: HashMap<String, Entry>,
    /// Weighted splits' positions by rule, so a rebuilt snapshot keeps
    /// exact shares; (counter, used by the snapshot being built).
    splits: HashMap<String, (Arc<std::sync::atomic::AtomicUsize>, bool)>,
}

impl ClusterStates {
    /// The breaker for `cluster` with `limits`. Changed limits get a fresh
    /// breaker (requests in flight finish on the old one, as in Envoy
    /// after a cluster update).
    pub fn breaker(&mut self, cluster: &str, limits: Limits) -> Arc<CircuitBreaker> {
        let e = self.entry(cluster, limits);
        if e.breaker.limits != limits {
            e.breaker = CircuitBreaker::new(limits);
        }
        e.breaker.clone()
    }

    pub fn outlier_stats(&mut self, cluster: &str) -> Arc<OutlierStats> {
        self.entry(cluster, Limits::default()).outlier.clone()
    }

    pub fn counters(&mut self, cluster: &str) -> Arc<ClusterCounters> {
        self.entry(cluster, Limits::default()).counters.clone()
    }

    fn entry(&mut self, cluster: &str, limits: Limits) -> &mut Entry {
        self.map
            .entry(cluster.to_string())
            .or_insert_with(|| Entry {
                breaker: CircuitBreaker::new(limits),
                outlier: Arc::default(),
                counters: Arc::default(),
            })
    }

    /// Where the split `key` continues from.
    pub fn split_counter(&mut self, key: &str) -> Arc<std::sync::atomic::AtomicUsize> {
        let e = self
            .splits
            .entry(key.to_string())
            .or_insert_with(|| (Arc::default(), true));
        e.1 = true;
        e.0.clone()
    }

    /// Forget clusters the new snapshot no longer has (and splits it did
    /// not ask for).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.map.retain(|k, _| keep(k));
        self.splits.retain(|_, (_, used)| std::mem::take(used));
    }

    /// Every cluster's breaker (for metrics and `proxy-config clusters`).
    pub fn breakers(&self) -> impl Iterator<Item = (&str, &Arc<CircuitBreaker>)> {
        self.map.iter().map(|(k, e)| (k.as_str(), &e.breaker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_snapshots_until_limits_change() {
        let mut s = ClusterStates::default();
        let l = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let a = s.breaker("outbound|80|v1|hello", l);
        let _held = a.try_connection().unwrap();
        let counters = s.counters("outbound|80|v1|hello");
        counters.upstream_rq_total.inc();
        let b = s.breaker("outbound|80|v1|hello", l);
        assert!(Arc::ptr_eq(&a, &b), "same limits: same counters");
        assert!(
            b.try_connection().is_none(),
            "the held connection still counts"
        );
        let c = s.breaker("outbound|80|v1|hello", Limits::default());
        assert!(!Arc::ptr_eq(&a, &c));
        let stats = s.outlier_stats("outbound|80|v1|hello");
        assert!(Arc::ptr_eq(
            &stats,
            &s.outlier_stats("outbound|80|v1|hello")
        ));
        assert_eq!(
            s.counters("outbound|80|v1|hello").upstream_rq_total.get(),
            1
        );
        s.retain(|k| k != "outbound|80|v1|hello");
        assert_eq!(s.breakers().count(), 0);
    }
}
