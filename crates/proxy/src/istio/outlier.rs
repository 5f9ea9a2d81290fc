//! Outlier detection (passive health checking), Envoy's algorithm with
//! Istio's defaults:
//!
//! - consecutive errors eject inline: the Nth consecutive 5xx (default 5
//!   when the block exists) or gateway error (502/503/504; off unless set)
//!   ejects the host at once; a non-error response resets both counters;
//! - ejection time = baseEjectionTime × (times ejected), capped at
//!   max(300 s, base); the multiplier drops by one per healthy `interval`;
//! - an ejection that would push the ejected share above
//!   maxEjectionPercent (default 10%) is skipped (`ejections_overflow`),
//!   except that one host can always be ejected;
//! - panic mode is off (Istio sets minHealthPercent 0): with every host
//!   ejected the load balancer finds none (503 `UH`).
//!
//! Lock-free: per-host state is atomics; an ejection decision (rare) takes a
//! try-lock so two threads cannot both eject past the limit. Time is passed
//! in. Circuit-breaker overflows are local replies and must not be reported
//! here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use skiff_api::istio::destination_rule::OutlierDetection;
use skiff_api::istio::duration;

use super::time::MonoTime;

/// Envoy's defaults.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Threshold and whether reaching it ejects (Istio: enforcing 100 when
    /// > 0, else detection only).
    pub consecutive_5xx: u32,
    pub enforce_5xx: bool,
    pub consecutive_gateway: Option<u32>,
    pub split_local_origin: bool,
    pub consecutive_local_origin: Option<u32>,
    pub interval: Duration,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u32,
    /// Statuses that count as errors (`None`: every 5xx).
    pub error_codes: Option<Box<[u16]>>,
    /// Below this share of available hosts the LB ignores health (Istio
    /// writes minHealthPercent, 0 by default: never).
    pub panic_threshold_percent: u32,
}

impl OutlierConfig {
    /// Istio's translation of an `outlierDetection` block.
    pub fn from_api(o: &OutlierDetection) -> Result<OutlierConfig, String> {
        let d = |s: &Option<String>, def: Duration| -> Result<Duration, String> {
            s.as_deref().map_or(Ok(def), duration::parse)
        };
        let base = d(&o.base_ejection_time, DEFAULT_BASE_EJECTION)?;
        let five = o.consecutive_5xx_errors;
        Ok(OutlierConfig {
            consecutive_5xx: five.unwrap_or(DEFAULT_CONSECUTIVE_5XX),
            enforce_5xx: five != Some(0),
            consecutive_gateway: o.consecutive_gateway_errors.filter(|v| *v > 0),
            split_local_origin: o.split_external_local_origin_errors,
            consecutive_local_origin: if o.split_external_local_origin_errors {
                Some(
                    o.consecutive_local_origin_failures
                        .unwrap_or(DEFAULT_CONSECUTIVE_5XX),
                )
                .filter(|v| *v > 0)
            } else {
                None
            },
            interval: d(&o.interval, DEFAULT_INTERVAL)?,
            base_ejection: base,
            max_ejection: DEFAULT_MAX_EJECTION_TIME.max(base),
            max_ejection_percent: if o.max_ejection_percent > 0 {
                (o.max_ejection_percent as u32).min(100)
            } else {
                DEFAULT_MAX_EJECTION_PERCENT
            },
            error_codes: (!o.outlier_detection_http_error_codes.is_empty()).then(|| {
                o.outlier_detection_http_error_codes
                    .iter()
                    .filter_map(|c| u16::try_from(*c).ok())
                    .collect()
            }),
            panic_threshold_percent: o.min_health_percent.clamp(0, 100) as u32,
        })
    }

    fn is_error(&self, status: u16) -> bool {
        match &self.error_codes {
            Some(codes) => codes.contains(&status),
            None => (500..=599).contains(&status),
        }
    }
}

/// How one request to a host ended, as the detector counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlierResult {
    /// The upstream's response status.
    Http(u16),
    /// Connect refused / timed out (local origin; 503 when not split).
    ConnectFailed,
    /// No answer in time (local origin; 504 when not split).
    Timeout,
    /// Reset or closed after connecting, before a response (503 when not
    /// split).
    Reset,
    /// Connected (only counts in split mode).
    ConnectSuccess,
}

/// Why a host was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionKind {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocalOrigin,
}

/// Per-host state; lives as long as the host (across routing snapshots).
#[derive(Debug, Default)]
pub struct HostOutlier {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// When the current ejection started (0: not ejected).
    ejected_at: AtomicU64,
    /// Length of the current ejection, nanoseconds.
    eject_for: AtomicU64,
    /// Ejection-time multiplier.
    backoff: AtomicU32,
    num_ejections: AtomicU64,
    last_unejected: AtomicU64,
}

impl HostOutlier {
    /// True while ejected at `now`; clears an ejection whose time is up
    /// (exactly once, whoever sees it first).
    #[inline]
    pub fn is_ejected(&self, now: MonoTime) -> bool {
        let at = self.ejected_at.load(Ordering::Acquire);
        if at == 0 {
            return false;
        }
        let len = self.eject_for.load(Ordering::Relaxed);
        if now.0 < at.saturating_add(len) {
            return true;
        }
        if self
            .ejected_at
            .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // As Envoy: counters start over so a few new errors don't
            // re-eject at once.
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            self.consecutive_local.store(0, Ordering::Relaxed);
            self.last_unejected.store(now.0, Ordering::Relaxed);
        }
        false
    }

    /// Possibly ejected (no clock read): the cheap check before
    /// [`HostOutlier::is_ejected`].
    #[inline]
    pub fn maybe_ejected(&self) -> bool {
        self.ejected_at.load(Ordering::Relaxed) != 0
    }

    /// Errors in a row now counted toward a `consecutive5xxErrors` and a
    /// `consecutiveGatewayErrors` ejection.
    pub fn consecutive_errors(&self) -> (u32, u32) {
        (
            self.consecutive_5xx.load(Ordering::Relaxed),
            self.consecutive_gateway.load(Ordering::Relaxed),
        )
    }

    /// Times ejected so far.
    pub fn ejections(&self) -> u64 {
        self.num_ejections.load(Ordering::Relaxed)
    }

    /// When the current ejection ends, if ejected.
    pub fn ejected_until(&self) -> Option<MonoTime> {
        let at = self.ejected_at.load(Ordering::Acquire);
        (at != 0).then(|| MonoTime(at.saturating_add(self.eject_for.load(Ordering::Relaxed))))
    }
}

/// Counters with Envoy's names (`outlier_detection.*`), shared by the
/// snapshots of one cluster.
#[derive(Debug, Default)]
pub struct OutlierStats {
    pub ejections_enforced_total: AtomicU64,
    pub ejections_overflow: AtomicU64,
    pub ejections_enforced_consecutive_5xx: AtomicU64,
    pub ejections_detected_consecutive_5xx: AtomicU64,
    pub ejections_enforced_consecutive_gateway_failure: AtomicU64,
    pub ejections_detected_consecutive_gateway_failure: AtomicU64,
    pub ejections_enforced_consecutive_local_origin_failure: AtomicU64,
    pub ejections_detected_consecutive_local_origin_failure: AtomicU64,
}

/// The detector of one cluster: its config and its hosts' states.
#[derive(Debug)]
pub struct OutlierDetector {
    pub config: OutlierConfig,
    hosts: Box<[Arc<HostOutlier>]>,
    pub stats: Arc<OutlierStats>,
    ejecting: AtomicBool,
    last_sweep: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Zero an error streak. Nearly always it is zero already: reading first
/// spares a write to a cache line every worker reads (the host's ejection
/// state is checked on every pick).
#[inline]
fn reset(c: &AtomicU32) {
    if c.load(Ordering::Relaxed) != 0 {
        c.store(0, Ordering::Relaxed);
    }
}

impl OutlierDetector {
    /// `hosts`: the cluster's hosts' states (kept by the hosts themselves so
    /// they survive snapshots); `stats` likewise per cluster.
    pub fn new(
        config: OutlierConfig,
        hosts: Vec<Arc<HostOutlier>>,
        stats: Arc<OutlierStats>,
    ) -> OutlierDetector {
        OutlierDetector {
            config,
            hosts: hosts.into_boxed_slice(),
            stats,
            ejecting: AtomicBool::new(false),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Hosts currently ejected.
    pub fn ejections_active(&self, now: MonoTime) -> usize {
        self.hosts.iter().filter(|h| h.is_ejected(now)).count()
    }

    /// Share of hosts available, in percent (for the panic threshold).
    pub fn in_panic(&self, now: MonoTime) -> bool {
        let t = self.config.panic_threshold_percent;
        if t == 0 || self.hosts.is_empty() {
            return false;
        }
        let healthy = self.hosts.len() - self.ejections_active(now);
        (healthy as u64) * 100 < u64::from(t) * self.hosts.len() as u64
    }

    /// Record how a request to `host` ended. Returns the ejection it caused.
    pub fn report(
        &self,
        host: &HostOutlier,
        result: OutlierResult,
        now: MonoTime,
    ) -> Option<EjectionKind> {
        self.maybe_sweep(now);
        let cfg = &self.config;
        let status = match (result, cfg.split_local_origin) {
            (OutlierResult::Http(s), _) => Some(s),
            (OutlierResult::ConnectSuccess, false) => None,
            (OutlierResult::ConnectFailed | OutlierResult::Reset, false) => Some(503),
            (OutlierResult::Timeout, false) => Some(504),
            (OutlierResult::ConnectSuccess, true) => {
                reset(&host.consecutive_local);
                None
            }
            (OutlierResult::ConnectFailed | OutlierResult::Timeout, true) => {
                let n = host.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(t) = cfg.consecutive_local_origin
                    && n >= t
                {
                    bump(
                        &self
                            .stats
                            .ejections_detected_consecutive_local_origin_failure,
                    );
                    if self.eject(host, EjectionKind::ConsecutiveLocalOrigin, now) {
                        return Some(EjectionKind::ConsecutiveLocalOrigin);
                    }
                }
                None
            }
            // In split mode a reset after connecting is the upstream's fault.
            (OutlierResult::Reset, true) => Some(503),
        };
        let s = status?;
        if !cfg.is_error(s) {
            reset(&host.consecutive_5xx);
            reset(&host.consecutive_gateway);
            return None;
        }
        if matches!(s, 502..=504) {
            let n = host.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(t) = cfg.consecutive_gateway
                && n >= t
            {
                bump(&self.stats.ejections_detected_consecutive_gateway_failure);
                if self.eject(host, EjectionKind::ConsecutiveGateway, now) {
                    return Some(EjectionKind::ConsecutiveGateway);
                }
            }
        } else {
            host.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        let n = host.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if cfg.consecutive_5xx > 0 && n >= cfg.consecutive_5xx {
            bump(&self.stats.ejections_detected_consecutive_5xx);
            if !cfg.enforce_5xx {
                host.consecutive_5xx.store(0, Ordering::Relaxed);
                return None;
            }
            if self.eject(host, EjectionKind::Consecutive5xx, now) {
                return Some(EjectionKind::Consecutive5xx);
            }
        }
        None
    }

    /// Try to eject `host`; false when it already is, when the ejection
    /// budget is spent, or when another thread is deciding right now (the
    /// next error tries again: counters stay at the threshold).
    fn eject(&self, host: &HostOutlier, kind: EjectionKind, now: MonoTime) -> bool {
        if host.is_ejected(now) {
            return false;
        }
        if self
            .ejecting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let active = self.ejections_active(now);
        let total = self.hosts.len().max(1);
        let percent_after = 100 * (active + 1) / total;
        let allowed =
            active == 0 || percent_after as u64 <= u64::from(self.config.max_ejection_percent);
        let done = if allowed {
            let base = self.config.base_ejection;
            let backoff = host.backoff.load(Ordering::Relaxed);
            // Grow the multiplier until the ejection time reaches the cap.
            let backoff = if base.saturating_mul(backoff) < self.config.max_ejection + base {
                backoff + 1
            } else {
                backoff
            };
            host.backoff.store(backoff, Ordering::Relaxed);
            let len = base.saturating_mul(backoff).min(self.config.max_ejection);
            host.eject_for
                .store(len.as_nanos() as u64, Ordering::Relaxed);
            host.ejected_at.store(now.0.max(1), Ordering::Release);
            host.num_ejections.fetch_add(1, Ordering::Relaxed);
            host.consecutive_5xx.store(0, Ordering::Relaxed);
            host.consecutive_gateway.store(0, Ordering::Relaxed);
            host.consecutive_local.store(0, Ordering::Relaxed);
            bump(&self.stats.ejections_enforced_total);
            bump(match kind {
                EjectionKind::Consecutive5xx => &self.stats.ejections_enforced_consecutive_5xx,
                EjectionKind::ConsecutiveGateway => {
                    &self.stats.ejections_enforced_consecutive_gateway_failure
                }
                EjectionKind::ConsecutiveLocalOrigin => {
                    &self
                        .stats
                        .ejections_enforced_consecutive_local_origin_failure
                }
            });
            true
        } else {
            bump(&self.stats.ejections_overflow);
            false
        };
        self.ejecting.store(false, Ordering::Release);
        done
    }

    /// The periodic part, run at most once per `interval` by whoever calls
    /// first: expired ejections end, and hosts that stayed healthy for an
    /// interval since their last ejection lose one step of multiplier.
    pub fn maybe_sweep(&self, now: MonoTime) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if last != 0 && now.since(MonoTime(last)) < self.config.interval {
            return;
        }
        if self
            .last_sweep
            .compare_exchange(last, now.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if last == 0 {
            return;
        }
        let interval = self.config.interval.as_nanos() as u64;
        for h in self.hosts.iter() {
            if h.is_ejected(now) {
                continue;
            }
            let un = h.last_unejected.load(Ordering::Relaxed);
            if un != 0 && now.0.saturating_sub(un) >= interval {
                let _ = h
                    .backoff
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> OutlierConfig {
        OutlierConfig::from_api(&crate::istio::testing::yaml(yaml)).unwrap()
    }

    fn detector(yaml: &str, n: usize) -> (OutlierDetector, Vec<Arc<HostOutlier>>) {
        let hosts: Vec<_> = (0..n).map(|_| Arc::new(HostOutlier::default())).collect();
        (
            OutlierDetector::new(config(yaml), hosts.clone(), Arc::default()),
            hosts,
        )
    }

    #[test]
    fn istio_defaults() {
        let c = config("{}");
        assert_eq!(c.consecutive_5xx, 5);
        assert!(c.enforce_5xx);
        assert_eq!(c.consecutive_gateway, None);
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.base_ejection, Duration::from_secs(30));
        assert_eq!(c.max_ejection_percent, 10);
        assert_eq!(c.panic_threshold_percent, 0);
        let c = config("{consecutive5xxErrors: 0}");
        assert!(!c.enforce_5xx);
        let c = config("{baseEjectionTime: 10m}");
        assert_eq!(c.max_ejection, Duration::from_secs(600));
    }

    #[test]
    fn consecutive_5xx_ejects_and_success_resets() {
        let (d, h) = detector("{consecutive5xxErrors: 3, maxEjectionPercent: 100}", 2);
        let t = MonoTime::from_secs(1);
        assert_eq!(d.report(&h[0], OutlierResult::Http(500), t), None);
        assert_eq!(d.report(&h[0], OutlierResult::Http(503), t), None);
        assert_eq!(
            d.report(&h[0], OutlierResult::Http(200), t),
            None,
            "success resets"
        );
        assert_eq!(d.report(&h[0], OutlierResult::Http(500), t), None);
        assert_eq!(d.report(&h[0], OutlierResult::Http(500), t), None);
        assert_eq!(
            d.report(&h[0], OutlierResult::Http(500), t),
            Some(EjectionKind::Consecutive5xx)
        );
        assert!(h[0].is_ejected(t));
        assert!(!h[1].is_ejected(t));
        assert_eq!(
            d.stats
                .ejections_enforced_consecutive_5xx
                .load(Ordering::Relaxed),
            1
        );
        // 4xx are not errors.
        for _ in 0..10 {
            d.report(&h[1], OutlierResult::Http(404), t);
        }
        assert!(!h[1].is_ejected(t));
    }

    #[test]
    fn ejection_time_grows_and_host_comes_back() {
        let (d, h) = detector(
            "{consecutive5xxErrors: 1, baseEjectionTime: 30s, interval: 10s, maxEjectionPercent: 100}",
            1,
        );
        let mut t = MonoTime::from_secs(100);
        for n in 1..=3u64 {
            assert_eq!(
                d.report(&h[0], OutlierResult::Http(500), t),
                Some(EjectionKind::Consecutive5xx)
            );
            let len = Duration::from_secs(30 * n);
            assert!(
                h[0].is_ejected(t.plus(len - Duration::from_millis(1))),
                "ejection {n}"
            );
            t = t.plus(len);
            assert!(!h[0].is_ejected(t), "back after {n} x base");
        }
        assert_eq!(h[0].ejections(), 3);
        // Cap: 300 s.
        for _ in 0..20 {
            d.report(&h[0], OutlierResult::Http(500), t);
            t = t.plus(Duration::from_secs(300));
            assert!(!h[0].is_ejected(t));
        }
        d.report(&h[0], OutlierResult::Http(500), t);
        assert!(h[0].is_ejected(t.plus(Duration::from_secs(299))));
        assert!(!h[0].is_ejected(t.plus(Duration::from_secs(300))));
    }

    #[test]
    fn multiplier_decays_while_healthy() {
        let (d, h) = detector(
            "{consecutive5xxErrors: 1, baseEjectionTime: 30s, interval: 10s, maxEjectionPercent: 100}",
            1,
        );
        let t0 = MonoTime::from_secs(100);
        d.maybe_sweep(t0);
        d.report(&h[0], OutlierResult::Http(500), t0);
        let t1 = t0.plus(Duration::from_secs(30));
        assert!(!h[0].is_ejected(t1));
        d.report(&h[0], OutlierResult::Http(500), t1);
        // Second ejection: 60 s.
        let t2 = t1.plus(Duration::from_secs(60));
        assert!(!h[0].is_ejected(t2));
        // Healthy for a few intervals: the multiplier goes back down.
        let mut t = t2;
        for _ in 0..4 {
            t = t.plus(Duration::from_secs(10));
            d.maybe_sweep(t);
        }
        d.report(&h[0], OutlierResult::Http(500), t);
        assert!(
            !h[0].is_ejected(t.plus(Duration::from_secs(30))),
            "back to base"
        );
    }

    #[test]
    fn max_ejection_percent_with_at_least_one() {
        // 10% of 3 hosts is 0.3: only the "at least one" rule ejects.
        let (d, h) = detector("{consecutive5xxErrors: 1}", 3);
        let t = MonoTime::from_secs(1);
        assert!(d.report(&h[0], OutlierResult::Http(500), t).is_some());
        assert!(d.report(&h[1], OutlierResult::Http(500), t).is_none());
        assert_eq!(d.stats.ejections_overflow.load(Ordering::Relaxed), 1);
        assert_eq!(d.ejections_active(t), 1);
        // 100%: every host can go, and then there is none (no panic).
        let (d, h) = detector("{consecutive5xxErrors: 1, maxEjectionPercent: 100}", 2);
        assert!(d.report(&h[0], OutlierResult::Http(500), t).is_some());
        assert!(d.report(&h[1], OutlierResult::Http(500), t).is_some());
        assert_eq!(d.ejections_active(t), 2);
        assert!(!d.in_panic(t), "Istio disables panic mode");
        // The only host of a cluster can be ejected.
        let (d, h) = detector("{consecutive5xxErrors: 1, maxEjectionPercent: 1}", 1);
        assert!(d.report(&h[0], OutlierResult::Http(500), t).is_some());
    }

    #[test]
    fn gateway_errors_and_local_origin() {
        let (d, h) = detector(
            "{consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, maxEjectionPercent: 100}",
            1,
        );
        let t = MonoTime::from_secs(1);
        assert_eq!(d.report(&h[0], OutlierResult::Http(500), t), None);
        assert_eq!(d.report(&h[0], OutlierResult::ConnectFailed, t), None);
        assert_eq!(
            d.report(&h[0], OutlierResult::Timeout, t),
            Some(EjectionKind::ConsecutiveGateway),
            "connect failure and timeout are gateway errors when not split"
        );
        let (d, h) = detector(
            "{splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, consecutive5xxErrors: 0, maxEjectionPercent: 100}",
            1,
        );
        assert_eq!(d.report(&h[0], OutlierResult::ConnectFailed, t), None);
        assert_eq!(d.report(&h[0], OutlierResult::ConnectSuccess, t), None);
        assert_eq!(d.report(&h[0], OutlierResult::ConnectFailed, t), None);
        assert_eq!(
            d.report(&h[0], OutlierResult::Timeout, t),
            Some(EjectionKind::ConsecutiveLocalOrigin)
        );
    }

    #[test]
    fn custom_error_codes_and_panic_threshold() {
        let (d, h) = detector(
            "{consecutive5xxErrors: 1, outlierDetectionHttpErrorCodes: [429], maxEjectionPercent: 100, minHealthPercent: 60}",
            2,
        );
        let t = MonoTime::from_secs(1);
        assert_eq!(d.report(&h[0], OutlierResult::Http(500), t), None);
        assert!(d.report(&h[0], OutlierResult::Http(429), t).is_some());
        assert!(d.in_panic(t), "1 of 2 healthy is below 60%");
    }
}
