//! Load balancing over one cluster's hosts, as Istio configures Envoy:
//! LEAST_REQUEST (the default, power of two choices on active requests),
//! ROUND_ROBIN, RANDOM, and consistent hashing (ring hash, Istio's minimum
//! ring 1024; Maglev) keyed by a header, a cookie, the source IP or a query
//! parameter.
//!
//! Hosts are the caller's (endpoints); they report availability (not
//! ejected, not retiring) and active requests through [`LbHost`]. Rings
//! and tables are built once per snapshot; picking takes no lock.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use skiff_api::istio::destination_rule::{LoadBalancerSettings, SimpleLb};
use skiff_api::istio::duration;

use super::hash::xxh64;
use super::rand;
use super::request::RequestView;
use super::time::MonoTime;

/// What the balancer needs to know about a host.
pub trait LbHost {
    /// May get new requests at `now` (not ejected by outlier detection, not
    /// leaving).
    fn available(&self, now: MonoTime) -> bool;
    /// Requests in flight to it (for LEAST_REQUEST).
    fn active_requests(&self) -> usize;
}

/// Where a consistent-hash key comes from.
#[derive(Debug, Clone)]
pub enum HashKey {
    Header(HeaderName),
    Cookie {
        name: Box<str>,
        /// Set when the proxy generates the cookie if absent (`ttl` given;
        /// `0s` = session cookie).
        generate: Option<CookieSpec>,
    },
    SourceIp,
    QueryParameter(Box<str>),
}

#[derive(Debug, Clone)]
pub struct CookieSpec {
    pub path: Box<str>,
    pub ttl: Duration,
    pub attributes: Box<str>,
}

/// The key for one request, and a cookie to set when the proxy made one up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HashOutcome {
    pub key: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashKey {
    /// The request's hash; `None` (no key) falls back to a random host, as
    /// Envoy does.
    pub fn compute(&self, req: &RequestView<'_>, source_ip: IpAddr) -> HashOutcome {
        match self {
            HashKey::Header(n) => HashOutcome {
                key: req.header(n).map(|v| xxh64(v.as_bytes(), 0)),
                set_cookie: None,
            },
            HashKey::QueryParameter(p) => HashOutcome {
                key: req.query_param(p).map(|v| xxh64(v.as_bytes(), 0)),
                set_cookie: None,
            },
            HashKey::SourceIp => {
                let key = match source_ip {
                    IpAddr::V4(a) => xxh64(&a.octets(), 0),
                    IpAddr::V6(a) => xxh64(&a.octets(), 0),
                };
                HashOutcome {
                    key: Some(key),
                    set_cookie: None,
                }
            }
            HashKey::Cookie { name, generate } => {
                if let Some(v) = req.cookie(name) {
                    return HashOutcome {
                        key: Some(xxh64(v.as_bytes(), 0)),
                        set_cookie: None,
                    };
                }
                let Some(spec) = generate else {
                    return HashOutcome::default();
                };
                let value = format!("{:016x}", rand::next_u64());
                let mut cookie = format!("{name}={value}");
                if !spec.path.is_empty() {
                    cookie.push_str(&format!("; Path={}", spec.path));
                }
                if !spec.ttl.is_zero() {
                    cookie.push_str(&format!("; Max-Age={}", spec.ttl.as_secs()));
                }
                cookie.push_str(&spec.attributes);
                cookie.push_str("; HttpOnly");
                HashOutcome {
                    key: Some(xxh64(value.as_bytes(), 0)),
                    set_cookie: HeaderValue::from_str(&cookie).ok(),
                }
            }
        }
    }
}

/// Istio's default minimum ring size for RING_HASH.
pub const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's maximum ring size.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Istio/Envoy default Maglev table size.
pub const DEFAULT_MAGLEV_SIZE: u64 = 65537;
/// Largest Maglev table Envoy accepts.
pub const MAX_MAGLEV_SIZE: u64 = 5_000_011;

/// The algorithm, as compiled from `loadBalancer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbKind {
    LeastRequest,
    RoundRobin,
    Random,
    RingHash {
        min_ring_size: u64,
    },
    Maglev {
        table_size: u64,
    },
    /// PASSTHROUGH: forward to the original destination (no endpoints).
    Passthrough,
}

/// A compiled `loadBalancer`.
#[derive(Debug, Clone)]
pub struct LbConfig {
    pub kind: LbKind,
    pub hash_key: Option<HashKey>,
    /// Slow start (`warmup`): accepted; one-machine instances start ready.
    pub warmup: Option<Duration>,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            kind: LbKind::LeastRequest,
            hash_key: None,
            warmup: None,
        }
    }
}

impl LbConfig {
    pub fn from_api(lb: Option<&LoadBalancerSettings>) -> Result<LbConfig, String> {
        let Some(lb) = lb else {
            return Ok(LbConfig::default());
        };
        let warmup = match (&lb.warmup, &lb.warmup_duration_secs) {
            (Some(w), _) => w.duration.as_deref().map(duration::parse).transpose()?,
            (None, Some(d)) => Some(duration::parse(d)?),
            (None, None) => None,
        };
        if let Some(ch) = &lb.consistent_hash {
            let kind = match (&ch.maglev, &ch.ring_hash) {
                (Some(m), _) => LbKind::Maglev {
                    // Envoy's bound; validation already refuses more.
                    table_size: m
                        .table_size
                        .unwrap_or(DEFAULT_MAGLEV_SIZE)
                        .clamp(1, MAX_MAGLEV_SIZE),
                },
                (None, Some(r)) => LbKind::RingHash {
                    min_ring_size: r.minimum_ring_size.unwrap_or(DEFAULT_RING_SIZE),
                },
                (None, None) => LbKind::RingHash {
                    min_ring_size: ch
                        .minimum_ring_size
                        .filter(|s| *s > 0)
                        .unwrap_or(DEFAULT_RING_SIZE),
                },
            };
            let hash_key = if let Some(h) = &ch.http_header_name {
                HashKey::Header(
                    HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("invalid header name {h:?}"))?,
                )
            } else if let Some(c) = &ch.http_cookie {
                let generate = match &c.ttl {
                    Some(ttl) => Some(CookieSpec {
                        path: c.path.as_str().into(),
                        ttl: duration::parse(ttl)?,
                        attributes: c
                            .attributes
                            .iter()
                            .map(|a| {
                                if a.value.is_empty() {
                                    format!("; {}", a.name)
                                } else {
                                    format!("; {}={}", a.name, a.value)
                                }
                            })
                            .collect::<String>()
                            .into(),
                    }),
                    None => None,
                };
                HashKey::Cookie {
                    name: c.name.as_str().into(),
                    generate,
                }
            } else if ch.use_source_ip == Some(true) {
                HashKey::SourceIp
            } else if let Some(q) = &ch.http_query_parameter_name {
                HashKey::QueryParameter(q.as_str().into())
            } else {
                return Err("consistentHash needs a hash key".into());
            };
            return Ok(LbConfig {
                kind,
                hash_key: Some(hash_key),
                warmup,
            });
        }
        let kind = match lb.simple.unwrap_or_default() {
            // Istio maps UNSPECIFIED and the deprecated LEAST_CONN here.
            SimpleLb::Unspecified | SimpleLb::LeastConn | SimpleLb::LeastRequest => {
                LbKind::LeastRequest
            }
            SimpleLb::RoundRobin => LbKind::RoundRobin,
            SimpleLb::Random => LbKind::Random,
            SimpleLb::Passthrough => LbKind::Passthrough,
        };
        Ok(LbConfig {
            kind,
            hash_key: None,
            warmup,
        })
    }
}

/// A consistent-hash ring: sorted (hash, host) points.
#[derive(Debug)]
struct Ring {
    points: Box<[(u64, u32)]>,
}

impl Ring {
    fn build(host_keys: &[&str], min_size: u64) -> Ring {
        if host_keys.is_empty() {
            return Ring {
                points: Box::new([]),
            };
        }
        let n = host_keys.len() as u64;
        let size = min_size.clamp(n, MAX_RING_SIZE);
        let per_host = size.div_ceil(n);
        let mut points = Vec::with_capacity((per_host * n) as usize);
        for (i, k) in host_keys.iter().enumerate() {
            for j in 0..per_host {
                points.push((xxh64(format!("{k}_{j}").as_bytes(), 0), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Host candidates clockwise from `key`.
    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < key);
        let n = self.points.len();
        (0..n).map(move |i| self.points[(start + i) % n].1 as usize)
    }
}

/// A Maglev lookup table (Eisenbud et al.; Envoy's MAGLEV).
#[derive(Debug)]
struct Maglev {
    table: Box<[u32]>,
}

impl Maglev {
    fn build(host_keys: &[&str], size: u64) -> Maglev {
        let m = size as usize;
        if host_keys.is_empty() || m == 0 {
            return Maglev {
                table: Box::new([]),
            };
        }
        let perms: Vec<(usize, usize)> = host_keys
            .iter()
            .map(|k| {
                let offset = (xxh64(k.as_bytes(), 0) % m as u64) as usize;
                let skip = (xxh64(k.as_bytes(), 1) % (m as u64 - 1).max(1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; host_keys.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let n = self.table.len();
        let start = if n == 0 { 0 } else { (key % n as u64) as usize };
        (0..n).map(move |i| self.table[(start + i) % n] as usize)
    }
}

#[derive(Debug)]
enum State {
    RoundRobin(AtomicUsize),
    LeastRequest,
    Random,
    Ring(Ring),
    Maglev(Maglev),
    Passthrough,
}

/// A balancer for one host set (built per snapshot).
#[derive(Debug)]
pub struct LoadBalancer {
    state: State,
    /// Ignore availability below this share of available hosts (Envoy's
    /// panic mode; 0 = never, Istio's default).
    panic_threshold_percent: u32,
}

impl LoadBalancer {
    /// `host_keys`: a stable identity per host (its address), in the order
    /// hosts will be passed to [`LoadBalancer::pick`].
    pub fn new(kind: &LbKind, host_keys: &[&str], panic_threshold_percent: u32) -> LoadBalancer {
        let state = match kind {
            LbKind::LeastRequest => State::LeastRequest,
            LbKind::RoundRobin => State::RoundRobin(AtomicUsize::new(0)),
            LbKind::Random => State::Random,
            LbKind::RingHash { min_ring_size } => {
                State::Ring(Ring::build(host_keys, *min_ring_size))
            }
            LbKind::Maglev { table_size } => State::Maglev(Maglev::build(host_keys, *table_size)),
            LbKind::Passthrough => State::Passthrough,
        };
        LoadBalancer {
            state,
            panic_threshold_percent,
        }
    }

    /// Pick a host: prefer available hosts not in `exclude` (hosts already
    /// tried by this request's retries), then any available host. `None`:
    /// no available host (503 `UH`), or PASSTHROUGH.
    pub fn pick<H: LbHost>(
        &self,
        hosts: &[H],
        hash: Option<u64>,
        exclude: &[usize],
        now: MonoTime,
    ) -> Option<usize> {
        let n = hosts.len();
        if n == 0 {
            return None;
        }
        let panic = self.panic_threshold_percent > 0 && {
            let up = hosts.iter().filter(|h| h.available(now)).count();
            (up as u64) * 100 < u64::from(self.panic_threshold_percent) * n as u64
        };
        let usable = |i: usize| panic || hosts[i].available(now);
        let fresh = |i: usize| usable(i) && !exclude.contains(&i);
        let pick = |ok: &dyn Fn(usize) -> bool| -> Option<usize> {
            match &self.state {
                State::Passthrough => None,
                State::RoundRobin(next) => {
                    // The k-th usable host, so hosts after an unavailable one
                    // don't get its share too.
                    let usable = (0..n).filter(|i| ok(*i)).count();
                    if usable == 0 {
                        return None;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed) % usable;
                    (0..n).filter(|i| ok(*i)).nth(k)
                }
                State::Random => random_pick(n, ok),
                State::LeastRequest => {
                    let a = random_pick(n, ok)?;
                    let b = random_pick(n, &|i| i != a && ok(i));
                    Some(match b {
                        Some(b) if hosts[b].active_requests() < hosts[a].active_requests() => b,
                        _ => a,
                    })
                }
                State::Ring(r) => match hash {
                    Some(k) => r.walk(k).find(|i| ok(*i)),
                    None => random_pick(n, ok),
                },
                State::Maglev(m) => match hash {
                    Some(k) => m.walk(k).find(|i| ok(*i)),
                    None => random_pick(n, ok),
                },
            }
        };
        pick(&fresh).or_else(|| pick(&usable))
    }
}

/// A uniformly random index satisfying `ok`: a few random probes, then a
/// scan from a random start (so skipping unavailable hosts stays fair).
fn random_pick(n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    for _ in 0..3 {
        let i = rand::below(n as u64) as usize;
        if ok(i) {
            return Some(i);
        }
    }
    let start = rand::below(n as u64) as usize;
    (0..n).map(|i| (start + i) % n).find(|i| ok(*i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Default)]
    struct H {
        down: Cell<bool>,
        active: Cell<usize>,
    }

    impl LbHost for H {
        fn available(&self, _now: MonoTime) -> bool {
            !self.down.get()
        }
        fn active_requests(&self) -> usize {
            self.active.get()
        }
    }

    const T: MonoTime = MonoTime(1);

    fn hosts(n: usize) -> Vec<H> {
        (0..n).map(|_| H::default()).collect()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect()
    }

    fn lb(kind: LbKind, n: usize) -> LoadBalancer {
        let k = keys(n);
        let refs: Vec<&str> = k.iter().map(String::as_str).collect();
        LoadBalancer::new(&kind, &refs, 0)
    }

    fn config(yaml: &str) -> LbConfig {
        LbConfig::from_api(Some(&crate::istio::testing::yaml(yaml))).unwrap()
    }

    #[test]
    fn istio_mapping() {
        assert_eq!(LbConfig::from_api(None).unwrap().kind, LbKind::LeastRequest);
        for (y, k) in [
            ("{simple: UNSPECIFIED}", LbKind::LeastRequest),
            ("{simple: LEAST_CONN}", LbKind::LeastRequest),
            ("{simple: ROUND_ROBIN}", LbKind::RoundRobin),
            ("{simple: RANDOM}", LbKind::Random),
            (
                "{consistentHash: {useSourceIp: true}}",
                LbKind::RingHash {
                    min_ring_size: 1024,
                },
            ),
            (
                "{consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 4096}}}",
                LbKind::RingHash {
                    min_ring_size: 4096,
                },
            ),
            (
                "{consistentHash: {httpHeaderName: x, maglev: {tableSize: 65537}}}",
                LbKind::Maglev { table_size: 65537 },
            ),
        ] {
            assert_eq!(config(y).kind, k, "{y}");
        }
    }

    #[test]
    fn round_robin_skips_unavailable() {
        let h = hosts(3);
        h[1].down.set(true);
        let b = lb(LbKind::RoundRobin, 3);
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&h, None, &[], T).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
        h[1].down.set(false);
        let picks: Vec<usize> = (0..3).map(|_| b.pick(&h, None, &[], T).unwrap()).collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
    }

    #[test]
    fn least_request_prefers_idle_hosts() {
        let h = hosts(2);
        h[0].active.set(10);
        let b = lb(LbKind::LeastRequest, 2);
        // Power of two choices over two hosts always compares both.
        assert!((0..100).all(|_| b.pick(&h, None, &[], T) == Some(1)));
        h[1].down.set(true);
        assert_eq!(b.pick(&h, None, &[], T), Some(0));
    }

    #[test]
    fn exclusion_then_fallback_then_none() {
        let h = hosts(2);
        let b = lb(LbKind::Random, 2);
        assert!((0..50).all(|_| b.pick(&h, None, &[0], T) == Some(1)));
        // Everything tried: any available host.
        assert!(b.pick(&h, None, &[0, 1], T).is_some());
        h[0].down.set(true);
        h[1].down.set(true);
        assert_eq!(
            b.pick(&h, None, &[], T),
            None,
            "all ejected: no healthy upstream"
        );
        // Panic mode (minHealthPercent) ignores health.
        let k = keys(2);
        let refs: Vec<&str> = k.iter().map(String::as_str).collect();
        let panicky = LoadBalancer::new(&LbKind::Random, &refs, 50);
        assert!(panicky.pick(&h, None, &[], T).is_some());
    }

    #[test]
    fn ring_hash_is_consistent_and_spreads() {
        for kind in [
            LbKind::RingHash {
                min_ring_size: 1024,
            },
            LbKind::Maglev { table_size: 65537 },
        ] {
            let h = hosts(4);
            let b = lb(kind.clone(), 4);
            let mut counts = [0usize; 4];
            for user in 0..2000u64 {
                let key = xxh64(&user.to_le_bytes(), 0);
                let first = b.pick(&h, Some(key), &[], T).unwrap();
                assert_eq!(
                    b.pick(&h, Some(key), &[], T),
                    Some(first),
                    "{kind:?}: same key, same host"
                );
                counts[first] += 1;
            }
            assert!(counts.iter().all(|c| *c > 250), "{kind:?}: {counts:?}");
            // Ejecting one host moves only its keys.
            let before: Vec<usize> = (0..500u64)
                .map(|u| {
                    b.pick(&h, Some(xxh64(&u.to_le_bytes(), 0)), &[], T)
                        .unwrap()
                })
                .collect();
            h[2].down.set(true);
            for (u, was) in before.iter().enumerate() {
                let now = b
                    .pick(&h, Some(xxh64(&(u as u64).to_le_bytes(), 0)), &[], T)
                    .unwrap();
                assert_ne!(now, 2);
                if *was != 2 {
                    assert_eq!(now, *was, "{kind:?}: keys of healthy hosts stay");
                }
            }
        }
    }

    /// Hosts whose availability is their outlier state: an ejected host
    /// gets nothing until its ejection time is over.
    #[test]
    fn ejected_hosts_are_skipped_until_they_return() {
        use crate::istio::outlier::{HostOutlier, OutlierConfig, OutlierDetector, OutlierResult};
        use std::sync::Arc;
        use std::time::Duration;

        struct Ep(Arc<HostOutlier>);
        impl LbHost for Ep {
            fn available(&self, now: MonoTime) -> bool {
                !self.0.is_ejected(now)
            }
            fn active_requests(&self) -> usize {
                0
            }
        }
        let states: Vec<Arc<HostOutlier>> = (0..2).map(|_| Arc::default()).collect();
        let cfg = OutlierConfig {
            consecutive_5xx: 2,
            max_ejection_percent: 100,
            ..OutlierConfig::from_api(&Default::default()).unwrap()
        };
        let d = OutlierDetector::new(cfg, states.clone(), Arc::default());
        let eps: Vec<Ep> = states.iter().cloned().map(Ep).collect();
        let b = lb(LbKind::RoundRobin, 2);
        let t0 = MonoTime::from_secs(10);
        d.report(&states[0], OutlierResult::Http(500), t0);
        d.report(&states[0], OutlierResult::Http(500), t0);
        assert!((0..10).all(|_| b.pick(&eps, None, &[], t0) == Some(1)));
        let back = t0.plus(Duration::from_secs(30));
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(&eps, None, &[], back).unwrap())
            .collect();
        assert!(picks.contains(&0), "back after baseEjectionTime: {picks:?}");
    }

    fn parts(headers: &[(&str, &str)], uri: &str) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri).header("host", "h");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hash_keys() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let header = config("{consistentHash: {httpHeaderName: X-User}}")
            .hash_key
            .unwrap();
        let p = parts(&[("x-user", "alice")], "/");
        let a = header.compute(&RequestView::new(&p, "http", 80), ip);
        assert_eq!(a.key, Some(xxh64(b"alice", 0)));
        let p = parts(&[], "/");
        assert_eq!(
            header.compute(&RequestView::new(&p, "http", 80), ip).key,
            None
        );
        let q = config("{consistentHash: {httpQueryParameterName: user}}")
            .hash_key
            .unwrap();
        let p = parts(&[], "/?user=bob");
        assert_eq!(
            q.compute(&RequestView::new(&p, "http", 80), ip).key,
            Some(xxh64(b"bob", 0))
        );
        let src = config("{consistentHash: {useSourceIp: true}}")
            .hash_key
            .unwrap();
        assert!(
            src.compute(&RequestView::new(&p, "http", 80), ip)
                .key
                .is_some()
        );
    }

    #[test]
    fn cookie_is_generated_only_with_ttl() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let with_ttl = config("{consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s, attributes: [{name: SameSite, value: Strict}]}}}")
            .hash_key
            .unwrap();
        let p = parts(&[], "/");
        let out = with_ttl.compute(&RequestView::new(&p, "http", 80), ip);
        let cookie = out.set_cookie.unwrap();
        let c = cookie.to_str().unwrap();
        assert!(
            c.starts_with("sticky=")
                && c.contains("; Path=/; Max-Age=60; SameSite=Strict; HttpOnly"),
            "{c}"
        );
        assert!(out.key.is_some());
        let p = parts(&[("cookie", "sticky=abc")], "/");
        let out = with_ttl.compute(&RequestView::new(&p, "http", 80), ip);
        assert_eq!((out.key, out.set_cookie), (Some(xxh64(b"abc", 0)), None));
        let no_ttl = config("{consistentHash: {httpCookie: {name: sticky}}}")
            .hash_key
            .unwrap();
        let p = parts(&[], "/");
        assert_eq!(
            no_ttl.compute(&RequestView::new(&p, "http", 80), ip),
            HashOutcome::default()
        );
    }
}
