//! The PodAutoscaler reconciler's side of scaling (Knative
//! `kpa/scaler.go` scale() and handleScaleToZero(), `kpa/kpa.go`
//! ReconcileKind and computeActiveCondition): bounds, initial scale, the
//! three scale-to-zero waits, the Active condition, and whether the
//! activator stays in the request path.

use std::time::Duration;

use crate::decider::DeciderStatus;
use crate::spec::RevisionSettings;
use crate::time::{Time, dur_nanos, nanos_dur};

/// Whether a route sends traffic to the revision (Knative's routingState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Routed (routingState active).
    Reachable,
    /// No longer routed (routingState reserve): min-scale is ignored.
    Unreachable,
    /// Not routed yet (routingState pending).
    Unknown,
}

/// The PA's Active condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Unknown: scaling up, requests are buffered.
    Activating,
    /// True.
    Active,
    /// False: scaled (or scaling) to zero.
    Inactive,
}

/// Serverless-service mode: is the activator in the request path?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Requests go straight to the instances.
    Serve,
    /// Requests go through the activator.
    Proxy,
}

/// What one reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The scale the PA wants (-1: unknown yet).
    pub want: i32,
    /// A new instance count to apply, when it changed.
    pub apply: Option<i32>,
    pub mode: Mode,
    /// Reconcile again after this long at the latest (a scale-to-zero wait).
    pub requeue: Option<Duration>,
    /// Why the count changed (for the log), when it did.
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PodAutoscaler {
    active: Active,
    active_reason: &'static str,
    /// Last transition of the Active condition.
    active_since: Time,
    initialized: bool,
    desired_scale: Option<i32>,
    actual_scale: i32,
    /// The instance count last applied (a Deployment's spec.replicas).
    replicas: i32,
    mode: Mode,
    /// When the activator last entered the path.
    proxy_since: Option<Time>,
}

fn apply_bounds(min: i32, max: i32, x: i32) -> i32 {
    if x < min {
        min
    } else if max != 0 && x > max {
        max
    } else {
        x
    }
}

fn since(now: Time, t: Time) -> Duration {
    nanos_dur(now.since(t))
}

impl PodAutoscaler {
    /// A new PA: Activating, the activator in the path, and the initial
    /// scale applied.
    pub fn new(
        settings: &RevisionSettings,
        reachability: Reachability,
        now: Time,
    ) -> PodAutoscaler {
        // An unrouted revision starts with nothing (its instances would
        // only idle until they are scaled away).
        let replicas = if reachability == Reachability::Unreachable {
            0
        } else {
            settings.initial_scale.max(0)
        };
        PodAutoscaler {
            active: Active::Activating,
            active_reason: "",
            active_since: now,
            initialized: false,
            desired_scale: None,
            actual_scale: 0,
            replicas,
            mode: Mode::Proxy,
            proxy_since: Some(now),
        }
    }

    pub fn replicas(&self) -> i32 {
        self.replicas
    }

    pub fn active(&self) -> Active {
        self.active
    }

    /// (reason, message) of the Active condition.
    pub fn active_reason(&self) -> (&'static str, &'static str) {
        match (self.active, self.active_reason) {
            (Active::Activating, "Queued") => (
                "Queued",
                "Requests to the target are being buffered as resources are provisioned.",
            ),
            (Active::Inactive, "TimedOut") => ("TimedOut", "The target could not be activated."),
            (Active::Inactive, _) => ("NoTraffic", "The target is not receiving traffic."),
            (_, r) => (r, ""),
        }
    }

    pub fn active_since(&self) -> Time {
        self.active_since
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The status' desired scale (None until known).
    pub fn desired_scale(&self) -> Option<i32> {
        self.desired_scale.filter(|d| *d >= 0)
    }

    pub fn actual_scale(&self) -> i32 {
        self.actual_scale
    }

    pub fn initialized(&self) -> bool {
        self.initialized
    }

    fn bounds(&self, s: &RevisionSettings, r: Reachability) -> (i32, i32) {
        let min = if r == Reachability::Unreachable {
            0
        } else {
            s.min_scale.max(0)
        };
        (min, s.max_scale.max(0))
    }

    fn mark(&mut self, active: Active, reason: &'static str, now: Time) {
        if self.active != active || self.active_reason != reason {
            self.active = active;
            self.active_reason = reason;
            self.active_since = now;
        }
    }

    /// One reconcile: the decider's status, the ready count and the time.
    pub fn reconcile(
        &mut self,
        s: &RevisionSettings,
        reach: Reachability,
        decider: &DeciderStatus,
        ready: i32,
        now: Time,
    ) -> Decision {
        let mut requeue: Option<Duration> = None;
        let mut hint = |d: Duration| {
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        };
        let before = self.replicas;
        let (want, reason) = self.scale(s, reach, decider.desired_scale, now, &mut hint);
        let apply = (self.replicas != before).then_some(self.replicas);

        let mode = if want == -1 && self.active == Active::Inactive {
            Mode::Proxy
        } else if want > 0 && decider.excess_burst_capacity >= 0 {
            Mode::Serve
        } else {
            Mode::Proxy
        };
        match (self.mode, mode) {
            (Mode::Serve, Mode::Proxy) => self.proxy_since = Some(now),
            (_, Mode::Serve) => self.proxy_since = None,
            _ => {}
        }
        self.mode = mode;

        self.actual_scale = ready;
        if !(want == -1 && self.desired_scale.is_some_and(|d| d >= 0)) {
            self.desired_scale = Some(want);
        }
        self.compute_active(s, reach, want, ready, now);
        Decision {
            want,
            apply,
            mode,
            requeue,
            reason: apply.map(|_| reason),
        }
    }

    fn scale(
        &mut self,
        s: &RevisionSettings,
        reach: Reachability,
        desired: i32,
        now: Time,
        hint: &mut impl FnMut(Duration),
    ) -> (i32, String) {
        if desired < 0 && self.active != Active::Activating {
            return (desired, String::new());
        }
        let (mut min, max) = self.bounds(s, reach);
        if s.initial_scale > 1 && !self.initialized && reach != Reachability::Unreachable {
            min = min.max(s.initial_scale);
        }
        let bounded = apply_bounds(min, max, desired);
        let mut reason = if bounded != desired && desired >= 0 {
            format!(
                "the autoscaler wants {desired}, bounded to [{min}, {}]",
                if max == 0 {
                    "unlimited".to_string()
                } else {
                    max.to_string()
                }
            )
        } else if desired >= 0 {
            format!("the autoscaler wants {desired}")
        } else {
            format!("initial scale bounds [{min}, {max}]")
        };
        let (scaled, apply) = self.handle_scale_to_zero(s, reach, bounded, now, hint, &mut reason);
        if apply && scaled != self.replicas {
            self.replicas = scaled;
        }
        (scaled, reason)
    }

    fn handle_scale_to_zero(
        &self,
        s: &RevisionSettings,
        reach: Reachability,
        desired: i32,
        now: Time,
        hint: &mut impl FnMut(Duration),
        reason: &mut String,
    ) -> (i32, bool) {
        if desired != 0 {
            return (desired, true);
        }
        if !s.enable_scale_to_zero {
            *reason = "scale to zero is disabled (enable-scale-to-zero: false)".into();
            return (1, true);
        }
        match self.active {
            Active::Activating => {
                if now.since(self.active_since) > dur_nanos(s.activation_timeout) {
                    *reason = format!(
                        "the revision did not activate within {}s (progress deadline + 30s)",
                        s.activation_timeout.as_secs()
                    );
                    return (0, true);
                }
                hint(s.activation_timeout);
                (-1, false)
            }
            Active::Active => {
                let af = since(now, self.active_since);
                if af >= s.stable_window {
                    if self.mode == Mode::Proxy {
                        hint(Duration::from_secs(3));
                    }
                    return (0, false);
                }
                hint(s.stable_window - af);
                *reason = format!(
                    "no traffic, but active for only {}s of the {}s stable window: keeping one instance",
                    af.as_secs(),
                    s.stable_window.as_secs()
                );
                (1, true)
            }
            Active::Inactive => {
                // In-process the activator is in the path as soon as the
                // mode says so: that is the probe.
                let backed = s.target_burst_capacity == -1.0 || self.mode == Mode::Proxy;
                if !backed {
                    hint(Duration::from_secs(1));
                    return (0, false);
                }
                let last_pod = if reach == Reachability::Unreachable {
                    Duration::ZERO
                } else {
                    s.scale_to_zero_pod_retention
                };
                let inactive_for = since(now, self.active_since);
                if inactive_for >= s.scale_to_zero_grace_period.max(last_pod) {
                    *reason = format!(
                        "no traffic: inactive for {}s (grace period {}s, retention {}s)",
                        inactive_for.as_secs(),
                        s.scale_to_zero_grace_period.as_secs(),
                        last_pod.as_secs()
                    );
                    return (0, true);
                }
                if !last_pod.is_zero() && inactive_for < last_pod {
                    hint(last_pod - inactive_for);
                    return (0, false);
                }
                let proxy_for = self.proxy_since.map_or(Duration::ZERO, |t| since(now, t));
                if proxy_for >= s.scale_to_zero_grace_period {
                    *reason = format!(
                        "no traffic: the activator has been in the path for {}s (grace period {}s)",
                        proxy_for.as_secs(),
                        s.scale_to_zero_grace_period.as_secs()
                    );
                    return (0, true);
                }
                hint(s.scale_to_zero_grace_period - proxy_for);
                (0, false)
            }
        }
    }

    fn compute_active(
        &mut self,
        s: &RevisionSettings,
        reach: Reachability,
        want: i32,
        ready: i32,
        now: Time,
    ) {
        let (min, _) = self.bounds(s, reach);
        let min_ready = if self.initialized {
            min.max(1)
        } else {
            min.max(s.initial_scale)
        };
        if ready >= min_ready {
            self.initialized = true;
        }
        if want == 0 || min_ready == 0 {
            if self.active == Active::Activating && min_ready > 0 {
                self.mark(Active::Inactive, "TimedOut", now);
            } else {
                self.mark(Active::Inactive, "NoTraffic", now);
            }
        } else if ready < min_ready {
            if want > 0 || self.active != Active::Inactive {
                self.mark(Active::Activating, "Queued", now);
            } else {
                self.mark(Active::Inactive, "NoTraffic", now);
            }
        } else if want > 0 || self.active != Active::Inactive {
            self.mark(Active::Active, "", now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::config::AutoscalerConfig;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> RevisionSettings {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("autoscaling.knative.dev/{k}"), v.to_string()))
            .collect();
        RevisionSettings::resolve(&AutoscalerConfig::default(), &a, None)
    }

    fn t(s: i64) -> Time {
        Time::from_secs(s)
    }

    fn status(desired: i32, ebc: i32) -> DeciderStatus {
        DeciderStatus {
            desired_scale: desired,
            excess_burst_capacity: ebc,
        }
    }

    const R: Reachability = Reachability::Reachable;

    /// The life of a revision with the defaults: start at one instance,
    /// active; no traffic for a stable window; inactive; after the grace
    /// period at zero; a request brings it back.
    #[test]
    fn scale_to_zero_and_back() {
        let s = settings(&[]);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        assert_eq!(pa.replicas(), 1);
        // No metrics yet, instance not ready: activating, nothing applied.
        let d = pa.reconcile(&s, R, &status(-1, -211), 0, t(1));
        assert_eq!((d.want, d.apply, d.mode), (-1, None, Mode::Proxy));
        assert_eq!(pa.active(), Active::Activating);
        // Ready: active.
        pa.reconcile(&s, R, &status(-1, -211), 1, t(2));
        assert_eq!(pa.active(), Active::Active);
        assert!(pa.initialized());
        // Decider says 0 at t=10: keep one for the rest of the stable window.
        let d = pa.reconcile(&s, R, &status(0, -211), 1, t(10));
        assert_eq!((d.want, d.apply), (1, None));
        assert_eq!(d.requeue, Some(Duration::from_secs(52)));
        // Active for the stable window: mark inactive, apply nothing.
        let d = pa.reconcile(&s, R, &status(0, -211), 1, t(62));
        assert_eq!((d.want, d.apply), (0, None));
        assert_eq!(pa.active(), Active::Inactive);
        assert_eq!(pa.active_reason().0, "NoTraffic");
        // Inactive, and the activator has been in the path since t=0 (62 s
        // >= 30 s grace): scale to zero at once.
        let d = pa.reconcile(&s, R, &status(0, -211), 1, t(64));
        assert_eq!(d.apply, Some(0));
        assert!(d.reason.unwrap().contains("activator has been in the path"));
        // A request: the decider wants 1.
        let d = pa.reconcile(&s, R, &status(1, -211), 0, t(100));
        assert_eq!((d.want, d.apply, d.mode), (1, Some(1), Mode::Proxy));
        assert_eq!(pa.active(), Active::Activating);
        pa.reconcile(&s, R, &status(1, -211), 1, t(101));
        assert_eq!(pa.active(), Active::Active);
    }

    #[test]
    fn retention_and_grace_are_counted_from_inactive() {
        let s = settings(&[("scale-to-zero-pod-retention-period", "90s")]);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        pa.reconcile(&s, R, &status(-1, -211), 1, t(1));
        pa.reconcile(&s, R, &status(0, -211), 1, t(61));
        assert_eq!(pa.active(), Active::Inactive);
        let d = pa.reconcile(&s, R, &status(0, -211), 1, t(100));
        assert_eq!((d.apply, d.requeue), (None, Some(Duration::from_secs(51))));
        let d = pa.reconcile(&s, R, &status(0, -211), 1, t(151));
        assert_eq!(d.apply, Some(0));
        // Unreachable revisions have no retention.
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        pa.reconcile(&s, R, &status(-1, -211), 1, t(1));
        pa.reconcile(&s, Reachability::Unreachable, &status(0, -211), 1, t(61));
        let d = pa.reconcile(&s, Reachability::Unreachable, &status(0, -211), 1, t(63));
        assert_eq!(d.apply, Some(0));
    }

    #[test]
    fn grace_period_counts_the_time_in_proxy_mode() {
        let s = settings(&[("target-burst-capacity", "0")]);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        // Serving with spare capacity: the activator leaves the path.
        let d = pa.reconcile(&s, R, &status(1, 0), 1, t(1));
        assert_eq!(d.mode, Mode::Serve);
        let d = pa.reconcile(&s, R, &status(0, 0), 1, t(70));
        assert_eq!((d.want, d.mode), (0, Mode::Proxy));
        // Inactive since 70, in proxy since 70: wait out the grace period.
        let d = pa.reconcile(&s, R, &status(0, 0), 1, t(80));
        assert_eq!((d.apply, d.requeue), (None, Some(Duration::from_secs(20))));
        let d = pa.reconcile(&s, R, &status(0, 0), 1, t(100));
        assert_eq!(d.apply, Some(0));
    }

    #[test]
    fn bounds_and_initial_scale() {
        let s = settings(&[
            ("min-scale", "2"),
            ("max-scale", "4"),
            ("initial-scale", "3"),
        ]);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        assert_eq!(pa.replicas(), 3);
        // Until initialized, initial scale raises min.
        let d = pa.reconcile(&s, R, &status(1, -1), 0, t(1));
        assert_eq!((d.want, d.apply), (3, None));
        pa.reconcile(&s, R, &status(1, -1), 3, t(2));
        assert!(pa.initialized());
        let d = pa.reconcile(&s, R, &status(1, -1), 3, t(3));
        assert_eq!((d.want, d.apply), (2, Some(2)));
        let d = pa.reconcile(&s, R, &status(9, -1), 2, t(5));
        assert_eq!((d.want, d.apply), (4, Some(4)));
        // Unreachable: min-scale no longer holds.
        let d = pa.reconcile(&s, Reachability::Unreachable, &status(0, -1), 4, t(7));
        assert_eq!(d.want, 1); // active for less than the stable window
    }

    #[test]
    fn scale_to_zero_disabled_keeps_one() {
        let cfg = AutoscalerConfig {
            enable_scale_to_zero: false,
            ..Default::default()
        };
        let s = RevisionSettings::resolve(&cfg, &BTreeMap::new(), None);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        pa.reconcile(&s, R, &status(-1, -1), 1, t(1));
        let d = pa.reconcile(&s, R, &status(0, -1), 1, t(500));
        assert_eq!(d.want, 1);
        assert_eq!(pa.active(), Active::Active);
    }

    #[test]
    fn a_revision_that_never_activates_times_out_to_zero() {
        let mut s = settings(&[]);
        s.activation_timeout = Duration::from_secs(40);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        let d = pa.reconcile(&s, R, &status(-1, -1), 0, t(10));
        assert_eq!((d.want, d.apply), (-1, None));
        assert_eq!(d.requeue, Some(Duration::from_secs(40)));
        // The Active condition moved to Queued at t=10.
        let d = pa.reconcile(&s, R, &status(-1, -1), 0, t(51));
        assert_eq!((d.want, d.apply), (0, Some(0)));
        assert_eq!(pa.active_reason().0, "TimedOut");
    }

    #[test]
    fn activator_leaves_the_path_only_with_spare_capacity() {
        let s = settings(&[]);
        let mut pa = PodAutoscaler::new(&s, R, t(0));
        assert_eq!(
            pa.reconcile(&s, R, &status(3, -5), 3, t(1)).mode,
            Mode::Proxy
        );
        assert_eq!(
            pa.reconcile(&s, R, &status(3, 0), 3, t(3)).mode,
            Mode::Serve
        );
        assert_eq!(
            pa.reconcile(&s, R, &status(3, 12), 3, t(5)).mode,
            Mode::Serve
        );
        assert_eq!(
            pa.reconcile(&s, R, &status(3, -1), 3, t(7)).mode,
            Mode::Proxy
        );
    }

    proptest::proptest! {
        /// Whatever the decider says and however time passes, a reachable
        /// revision's instance count stays within [min-scale, max-scale].
        #[test]
        fn applied_counts_stay_within_bounds(
            min in 0i32..5,
            extra in 0i32..5,
            unlimited in proptest::bool::ANY,
            steps in proptest::collection::vec((-1i32..50, 0i32..60, 1i64..40), 1..60),
        ) {
            let max = if unlimited { 0 } else { min.max(1) + extra };
            let mut s = settings(&[]);
            s.min_scale = min;
            s.max_scale = max;
            let mut pa = PodAutoscaler::new(&s, R, t(0));
            let mut now = 0;
            for (desired, ready, dt) in steps {
                now += dt;
                let d = pa.reconcile(&s, R, &status(desired, -1), ready, t(now));
                if let Some(n) = d.apply {
                    proptest::prop_assert!(n >= 0);
                    proptest::prop_assert!(max == 0 || n <= max, "{n} > max {max}");
                    proptest::prop_assert!(n >= min, "{n} < min {min}");
                }
            }
        }
    }
}
