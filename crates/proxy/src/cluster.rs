//! A DestinationRule cluster on the request path: the revisions a
//! VirtualService destination (host, subset, port) resolves to, with the
//! policy the DestinationRule gives it — load balancer, circuit breakers,
//! outlier detection, connection settings.
//!
//! A member of a cluster is a revision's activator [`Backend`], so traffic
//! through a VirtualService keeps Knative's guarantees: a revision at zero
//! queues the request and wakes the autoscaler, `containerConcurrency` is a
//! hard limit per instance, and a revision that cannot start fails fast.
//! Picking works in two steps: a member by weight (the Knative route's
//! split without a subset; equal shares among the revisions a subset
//! selects), then an instance of it with the DestinationRule's load
//! balancer over the instances that are not ejected. When every instance
//! of the chosen member is ejected, another member's instance is used;
//! only when none is left is the answer `no healthy upstream`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::activator::Backend;
use crate::endpoint::{ConnOpts, Endpoint};
use crate::istio::circuit_breaker::CircuitBreaker;
use crate::istio::cluster_state::ClusterCounters;
use crate::istio::lb::{LbHost, LbKind, LoadBalancer};
use crate::istio::outlier::OutlierDetector;
use crate::istio::policy::ClusterPolicy;
use crate::istio::time::MonoTime;
use crate::request_metrics::RequestCounters;
use crate::split::Split;

impl LbHost for Arc<Endpoint> {
    #[inline]
    fn available(&self, now: MonoTime) -> bool {
        let ejected = self.outlier.maybe_ejected() && self.outlier.is_ejected(now);
        !(self.is_retired() || self.is_draining() || ejected)
    }

    #[inline]
    fn active_requests(&self) -> usize {
        self.in_flight()
    }
}

/// A hash-based balancer, built for one set of instances (rings and
/// tables depend on the hosts; instance sets change between snapshots).
struct HashLb {
    /// The endpoint list it was built for (pointer identity).
    built_for: usize,
    lb: LoadBalancer,
}

/// One revision of a cluster.
pub struct Member {
    pub backend: Arc<Backend>,
    pub weight: u32,
    /// `istio_requests_total` and friends for this destination.
    pub counters: Arc<RequestCounters>,
    hash_lb: ArcSwapOption<HashLb>,
}

impl Member {
    pub fn new(backend: Arc<Backend>, weight: u32, counters: Arc<RequestCounters>) -> Member {
        Member {
            backend,
            weight,
            counters,
            hash_lb: ArcSwapOption::empty(),
        }
    }
}

/// Where a request goes next.
pub(crate) enum Choice {
    /// A slot taken on this instance of member `member`.
    Endpoint { member: usize, ep: Arc<Endpoint> },
    /// Queue at the member's activator: it is at zero (cold start), or
    /// every instance is at its `containerConcurrency`.
    Queue { member: usize },
    /// Every instance is ejected or leaving, or the subset selects none.
    NoHealthy,
}

pub struct Cluster {
    /// Envoy's name: `outbound|<port>|<subset>|<host>`.
    pub name: Arc<str>,
    pub host: Box<str>,
    pub subset: Option<Box<str>>,
    pub policy: ClusterPolicy,
    pub opts: ConnOpts,
    pub members: Box<[Member]>,
    split: Split,
    /// Shared by the snapshots while the limits stay the same.
    pub breaker: Arc<CircuitBreaker>,
    pub outlier: Option<OutlierDetector>,
    pub counters: Arc<ClusterCounters>,
    /// For the non-hash algorithms (no per-host state).
    lb: LoadBalancer,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field(
                "members",
                &self
                    .members
                    .iter()
                    .map(|m| (&*m.backend.revision, m.weight))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn is_hash(kind: &LbKind) -> bool {
    matches!(kind, LbKind::RingHash { .. } | LbKind::Maglev { .. })
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        host: &str,
        subset: Option<&str>,
        policy: ClusterPolicy,
        members: Vec<Member>,
        breaker: Arc<CircuitBreaker>,
        outlier: Option<OutlierDetector>,
        counters: Arc<ClusterCounters>,
    ) -> Cluster {
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        let opts = ConnOpts {
            connect_timeout: policy.connect_timeout,
            // Never keep a pooled connection longer than an app would keep
            // it open: the client side gives up first.
            idle_timeout: policy
                .idle_timeout
                .map_or(crate::endpoint::POOL_IDLE_TIMEOUT, |t| {
                    t.min(crate::endpoint::POOL_IDLE_TIMEOUT)
                }),
            max_requests: policy.max_requests_per_connection,
            keepalive: policy.keepalive,
        };
        let panic = policy
            .outlier
            .as_ref()
            .map_or(0, |o| o.panic_threshold_percent);
        let lb = LoadBalancer::new(&policy.lb.kind, &[], panic);
        Cluster {
            name: name.into(),
            host: host.into(),
            subset: subset.map(Into::into),
            opts,
            split: Split::new(if weights.is_empty() { &[1] } else { &weights }),
            members: members.into_boxed_slice(),
            policy,
            breaker,
            outlier,
            counters,
            lb,
        }
    }

    fn panic_threshold(&self) -> u32 {
        self.policy
            .outlier
            .as_ref()
            .map_or(0, |o| o.panic_threshold_percent)
    }

    /// Pick in `eps` (member `m`'s instances) with the cluster's algorithm,
    /// avoiding the instances in `tried` (pointers) when others are there.
    fn pick_in(
        &self,
        m: &Member,
        eps: &Arc<Vec<Arc<Endpoint>>>,
        hash: Option<u64>,
        tried: &[usize],
        now: MonoTime,
    ) -> Option<usize> {
        let mut exclude = [0usize; 8];
        let mut n = 0;
        if !tried.is_empty() {
            for (i, e) in eps.iter().enumerate() {
                if n < exclude.len() && tried.contains(&(Arc::as_ptr(e) as usize)) {
                    exclude[n] = i;
                    n += 1;
                }
            }
        }
        if !is_hash(&self.policy.lb.kind) {
            return self.lb.pick(&eps[..], hash, &exclude[..n], now);
        }
        let key = Arc::as_ptr(eps) as usize;
        let current = m.hash_lb.load_full();
        let lb = match current {
            Some(h) if h.built_for == key => h,
            _ => {
                // The instances changed: rebuild the ring for them.
                let keys: Vec<String> = eps.iter().map(|e| e.addr.to_string()).collect();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let h = Arc::new(HashLb {
                    built_for: key,
                    lb: LoadBalancer::new(&self.policy.lb.kind, &refs, self.panic_threshold()),
                });
                m.hash_lb.store(Some(h.clone()));
                h
            }
        };
        lb.lb.pick(&eps[..], hash, &exclude[..n], now)
    }

    /// Where the next attempt goes. `tried`: instances (pointers) this
    /// request already tried, to be avoided.
    pub(crate) fn choose(&self, hash: Option<u64>, tried: &[usize], now: MonoTime) -> Choice {
        let n = self.members.len();
        if n == 0 {
            return Choice::NoHealthy;
        }
        let first = self.split.pick().min(n - 1);
        for k in 0..n {
            let mi = if k == 0 {
                first
            } else if k <= first {
                k - 1
            } else {
                k
            };
            let m = &self.members[mi];
            let eps = m.backend.endpoints_now();
            if eps.is_empty() {
                if k == 0 {
                    // The revision the split chose is at zero: cold start.
                    return Choice::Queue { member: mi };
                }
                continue;
            }
            let Some(i) = self.pick_in(m, &eps, hash, tried, now) else {
                continue;
            };
            let ep = &eps[i];
            // Queued requests go first; then the balancer's choice, or any
            // free slot of the revision, or the queue.
            if m.backend.queued() == 0 && ep.try_acquire() {
                return Choice::Endpoint {
                    member: mi,
                    ep: ep.clone(),
                };
            }
            return match m.backend.try_acquire(tried) {
                Some(ep) => Choice::Endpoint { member: mi, ep },
                None => Choice::Queue { member: mi },
            };
        }
        Choice::NoHealthy
    }

    /// Revisions of the cluster, for error messages.
    pub fn revisions(&self) -> String {
        let names: Vec<&str> = self.members.iter().map(|m| &*m.backend.revision).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backends;
    use crate::istio::outlier::{OutlierConfig, OutlierResult};
    use std::time::Duration;

    fn endpoint(rev: &str, i: u64) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(
            format!("127.0.0.1:{}", 2000 + i).parse().unwrap(),
            rev.into(),
            i,
            false,
        ))
    }

    fn cluster(backends: &Backends, revs: &[(&str, u32)], outlier: bool) -> Cluster {
        let mut policy = ClusterPolicy::default();
        if outlier {
            let cfg: skiff_api::istio::destination_rule::OutlierDetection =
                crate::istio::testing::yaml("{consecutive5xxErrors: 1, maxEjectionPercent: 100}");
            policy.outlier = Some(OutlierConfig::from_api(&cfg).unwrap());
        }
        let members: Vec<Member> = revs
            .iter()
            .map(|(r, w)| Member::new(backends.get(r), *w, Arc::default()))
            .collect();
        let hosts = members
            .iter()
            .flat_map(|m| {
                m.backend
                    .endpoints()
                    .iter()
                    .map(|e| e.outlier.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let detector = policy
            .outlier
            .clone()
            .map(|c| OutlierDetector::new(c, hosts, Arc::default()));
        Cluster::new(
            "outbound||v1|hello",
            "hello",
            Some("v1"),
            policy,
            members,
            CircuitBreaker::new(Default::default()),
            detector,
            Arc::default(),
        )
    }

    #[test]
    fn ejected_hosts_fail_over_then_no_healthy_upstream() {
        let backends = Backends::default();
        let (a, b) = (backends.get("ns/a"), backends.get("ns/b"));
        a.configure(0, Duration::from_secs(30));
        b.configure(0, Duration::from_secs(30));
        let (ea, eb) = (endpoint("ns/a", 1), endpoint("ns/b", 2));
        a.set_endpoints(vec![ea.clone()]);
        b.set_endpoints(vec![eb.clone()]);
        let c = cluster(&backends, &[("ns/a", 1), ("ns/b", 1)], true);
        let now = MonoTime::now();
        let d = c.outlier.as_ref().unwrap();
        d.report(&ea.outlier, OutlierResult::Http(500), now);
        for _ in 0..10 {
            match c.choose(None, &[], now) {
                Choice::Endpoint { ep, .. } => {
                    assert!(Arc::ptr_eq(&ep, &eb), "never the ejected host");
                    ep.release();
                }
                _ => panic!("the other revision's host serves"),
            }
        }
        d.report(&eb.outlier, OutlierResult::Http(503), now);
        assert!(matches!(c.choose(None, &[], now), Choice::NoHealthy));
        // After the ejection time both are back.
        let later = now.plus(Duration::from_secs(31));
        assert!(matches!(
            c.choose(None, &[], later),
            Choice::Endpoint { .. }
        ));
    }

    #[test]
    fn a_member_at_zero_queues_and_an_empty_subset_has_no_host() {
        let backends = Backends::default();
        let c = cluster(&backends, &[("ns/cold", 1)], false);
        assert!(matches!(
            c.choose(None, &[], MonoTime::now()),
            Choice::Queue { member: 0 }
        ));
        let empty = cluster(&backends, &[], false);
        assert!(matches!(
            empty.choose(None, &[], MonoTime::now()),
            Choice::NoHealthy
        ));
    }

    #[test]
    fn full_instances_queue_behind_their_activator() {
        let backends = Backends::default();
        let a = backends.get("ns/a");
        a.configure(1, Duration::from_secs(30));
        let e = endpoint("ns/a", 1);
        a.set_endpoints(vec![e.clone()]);
        let c = cluster(&backends, &[("ns/a", 1)], false);
        let Choice::Endpoint { ep, .. } = c.choose(None, &[], MonoTime::now()) else {
            panic!("a free slot");
        };
        assert!(matches!(
            c.choose(None, &[], MonoTime::now()),
            Choice::Queue { member: 0 }
        ));
        ep.release();
    }
}
