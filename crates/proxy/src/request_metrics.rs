//! Istio's standard request metrics, `istio_requests_total` and
//! `istio_request_duration_milliseconds`, per destination service and
//! revision, recorded on the hot path without a lock or a map lookup: each
//! destination's counters live on objects the routing snapshot already
//! holds, sharded by gateway worker. A shard keeps a small open-addressed
//! table of (response code, flags) pairs — claimed with one compare-and-swap
//! the first time a pair shows up — and a fixed-bucket histogram.
//!
//! Durations run from the request's arrival to its response head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::istio::flags::ResponseFlags;
use crate::worker;

/// Istio's default buckets for `istio_request_duration_milliseconds`.
pub const BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Distinct (code, flags) pairs a shard tracks; more are counted as
/// `response_code="other"`.
const SLOTS: usize = 16;

#[repr(align(128))]
struct Shard {
    /// `code << 32 | flags`, 0 = free.
    keys: [AtomicU64; SLOTS],
    counts: [AtomicU64; SLOTS],
    other: AtomicU64,
    /// Per bucket, then +Inf.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            keys: std::array::from_fn(|_| AtomicU64::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            other: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Who a request went to, as Istio labels it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// `hello.default.svc.cluster.local` (`unknown` before routing).
    pub service: String,
    /// The revision (`hello-00001`), or `unknown`.
    pub revision: String,
    pub namespace: String,
    /// The Knative service (canonical service), or the route's name.
    pub canonical_service: String,
}

impl Destination {
    pub fn unknown() -> Destination {
        Destination {
            service: "unknown".into(),
            revision: "unknown".into(),
            namespace: "unknown".into(),
            canonical_service: "unknown".into(),
        }
    }
}

/// The request metrics of one destination.
pub struct RequestCounters {
    pub destination: Destination,
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounters")
            .field("destination", &self.destination)
            .finish()
    }
}

/// One (code, flags) row of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeCount {
    /// 0 stands for "other" (the table was full).
    pub code: u16,
    pub flags: ResponseFlags,
    pub count: u64,
}

/// Summed over the shards, for Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountersSnapshot {
    pub codes: Vec<CodeCount>,
    /// Non-cumulative counts per bucket of [`BUCKETS_MS`], then +Inf.
    pub buckets: Vec<u64>,
    pub sum_ms: f64,
    pub count: u64,
}

impl RequestCounters {
    pub fn new(destination: Destination) -> RequestCounters {
        RequestCounters {
            destination,
            shards: (0..worker::SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// Count one request answered with `code` (and `flags`) after `took`.
    #[inline]
    pub fn record(&self, code: u16, flags: ResponseFlags, took: Duration) {
        let s = &self.shards[worker::index()];
        let key = (u64::from(code) << 32) | u64::from(flags.bits());
        let mut counted = false;
        for i in 0..SLOTS {
            let k = s.keys[i].load(Ordering::Acquire);
            let hit = k == key
                || (k == 0
                    && match s.keys[i].compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => true,
                        Err(x) => x == key,
                    });
            if hit {
                s.counts[i].fetch_add(1, Ordering::Relaxed);
                counted = true;
                break;
            }
        }
        if !counted {
            s.other.fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_secs_f64() * 1e3;
        let b = BUCKETS_MS.partition_point(|le| *le < ms);
        s.buckets[b].fetch_add(1, Ordering::Relaxed);
        s.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let mut codes: HashMap<u64, u64> = HashMap::new();
        let mut other = 0;
        let mut buckets = vec![0u64; BUCKETS_MS.len() + 1];
        let mut sum_us = 0u64;
        for s in self.shards.iter() {
            for i in 0..SLOTS {
                let k = s.keys[i].load(Ordering::Acquire);
                if k != 0 {
                    *codes.entry(k).or_default() += s.counts[i].load(Ordering::Relaxed);
                }
            }
            other += s.other.load(Ordering::Relaxed);
            for (b, v) in buckets.iter_mut().zip(s.buckets.iter()) {
                *b += v.load(Ordering::Relaxed);
            }
            sum_us += s.sum_us.load(Ordering::Relaxed);
        }
        let mut rows: Vec<CodeCount> = codes
            .into_iter()
            .map(|(k, count)| CodeCount {
                code: (k >> 32) as u16,
                flags: ResponseFlags::from_bits(k as u32),
                count,
            })
            .collect();
        if other > 0 {
            rows.push(CodeCount {
                code: 0,
                flags: ResponseFlags::NONE,
                count: other,
            });
        }
        rows.sort_by_key(|r| (r.code, r.flags.bits()));
        CountersSnapshot {
            count: buckets.iter().sum(),
            codes: rows,
            buckets,
            sum_ms: sum_us as f64 / 1e3,
        }
    }
}

/// The counters of every destination, kept across routing snapshots so
/// that totals only grow.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    map: Mutex<HashMap<Destination, Arc<RequestCounters>>>,
    /// Destinations asked for since the last [`RequestMetrics::sweep`].
    marked: Mutex<std::collections::HashSet<Destination>>,
    /// Local replies given before a destination was known (no route, bad
    /// request, denied at the gateway).
    pub unrouted: Arc<RequestCounters>,
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters::new(Destination::unknown())
    }
}

impl RequestMetrics {
    /// The counters for `d`, created if new (snapshot building only).
    pub fn get(&self, d: Destination) -> Arc<RequestCounters> {
        self.marked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.clone());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(d.clone())
            .or_insert_with(|| Arc::new(RequestCounters::new(d)))
            .clone()
    }

    /// Forget destinations no snapshot asked for since the last sweep
    /// (deleted revisions and routes).
    pub fn sweep(&self) {
        let mut marked = self.marked.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|d, _| marked.contains(d));
        marked.clear();
    }

    /// Every destination's counters, sorted.
    pub fn all(&self) -> Vec<Arc<RequestCounters>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.destination.cmp(&b.destination));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_flags_with_a_histogram() {
        let c = RequestCounters::default();
        c.record(200, ResponseFlags::NONE, Duration::from_micros(700));
        c.record(200, ResponseFlags::NONE, Duration::from_millis(3));
        c.record(
            503,
            ResponseFlags::UPSTREAM_OVERFLOW,
            Duration::from_millis(1),
        );
        let s = c.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(
            s.codes,
            [
                CodeCount {
                    code: 200,
                    flags: ResponseFlags::NONE,
                    count: 2
                },
                CodeCount {
                    code: 503,
                    flags: ResponseFlags::UPSTREAM_OVERFLOW,
                    count: 1
                },
            ]
        );
        // 0.7 ms and 1 ms fall in le=1, 3 ms in le=5.
        assert_eq!(&s.buckets[..3], &[0, 2, 1]);
        assert!((s.sum_ms - 4.7).abs() < 1e-9);
    }

    #[test]
    fn a_full_table_counts_the_rest_as_other() {
        let c = RequestCounters::default();
        for code in 200..(200 + SLOTS as u16 + 3) {
            c.record(code, ResponseFlags::NONE, Duration::ZERO);
        }
        let s = c.snapshot();
        assert_eq!(s.codes.len(), SLOTS + 1);
        assert_eq!(
            s.codes[0],
            CodeCount {
                code: 0,
                flags: ResponseFlags::NONE,
                count: 3
            }
        );
        assert_eq!(s.count, SLOTS as u64 + 3);
    }
}
