//! The decider (Knative `scaling/autoscaler.go` Scale() and
//! `scaling/multiscaler.go`): desired pod count and excess burst capacity
//! from the observed stable and panic values.

use std::time::Duration;

use crate::max_window::MaxWindow;
use crate::spec::ScalingMetric;
use crate::time::Time;

/// Decisions are made every tick.
pub const TICK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub struct DeciderSpec {
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub scaling_metric: ScalingMetric,
    pub target_value: f64,
    pub total_value: f64,
    pub target_burst_capacity: f64,
    pub activator_capacity: f64,
    /// A ratio (2.0 = 200 %).
    pub panic_threshold: f64,
    pub stable_window: Duration,
    pub scale_down_delay: Duration,
    pub initial_scale: i32,
    pub reachable: bool,
    pub activation_scale: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleResult {
    pub desired_pod_count: i32,
    pub excess_burst_capacity: i32,
    pub scale_valid: bool,
}

const INVALID: ScaleResult = ScaleResult {
    desired_pod_count: 0,
    excess_burst_capacity: 0,
    scale_valid: false,
};

/// Go's `int32(f)` for the values Scale() produces (saturating here).
fn to_i32(f: f64) -> i32 {
    f as i32
}

/// One revision's autoscaler: the spec plus panic state and the scale-down
/// delay window.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    spec: DeciderSpec,
    panic_time: Option<Time>,
    max_panic_pods: i32,
    /// Created once, from the spec at creation (a later spec update changes
    /// neither its length nor whether it exists, as in Knative).
    delay_window: Option<MaxWindow>,
}

impl Autoscaler {
    /// `ready` is the ready-pod count at creation (`None`: it could not be
    /// read, counted as 0). More than one ready pod starts in panic mode, so
    /// a restarted autoscaler holds the current scale for a stable window.
    pub fn new(spec: DeciderSpec, ready: Option<i32>, now: Time) -> Autoscaler {
        let cur = ready.unwrap_or(0);
        let delay_window =
            (!spec.scale_down_delay.is_zero()).then(|| MaxWindow::new(spec.scale_down_delay, TICK));
        Autoscaler {
            spec,
            panic_time: (cur > 1).then_some(now),
            max_panic_pods: cur,
            delay_window,
        }
    }

    /// Override the panic state (replays of a running autoscaler).
    pub fn set_panic(&mut self, panic_time: Option<Time>, max_panic_pods: i32) {
        self.panic_time = panic_time;
        self.max_panic_pods = max_panic_pods;
    }

    pub fn update(&mut self, spec: DeciderSpec) {
        self.spec = spec;
    }

    pub fn spec(&self) -> &DeciderSpec {
        &self.spec
    }

    pub fn panicking(&self) -> bool {
        self.panic_time.is_some()
    }

    /// Scale(): `ready` is the ready-pod count (`Err`: could not be read),
    /// `observed` the (stable, panic) metric values as revision totals
    /// (`Err`: no data).
    pub fn scale<E1, E2>(
        &mut self,
        ready: Result<i32, E1>,
        observed: Result<(f64, f64), E2>,
        now: Time,
    ) -> ScaleResult {
        let spec = &self.spec;
        let Ok(original_ready) = ready else {
            return INVALID;
        };
        let ready = f64::from(original_ready.max(1));
        let Ok((stable, panic)) = observed else {
            return INVALID;
        };
        let max_scale_up = (spec.max_scale_up_rate * ready).ceil();
        let max_scale_down = if spec.reachable {
            (ready / spec.max_scale_down_rate).floor()
        } else {
            0.0
        };
        let dspc = (stable / spec.target_value).ceil();
        let dppc = (panic / spec.target_value).ceil();
        let mut desired_stable = to_i32(dspc.max(max_scale_down).min(max_scale_up));
        let mut desired_panic = to_i32(dppc.max(max_scale_down).min(max_scale_up));
        if spec.activation_scale > 1 {
            if dspc > 0.0 && spec.activation_scale > desired_stable {
                desired_stable = spec.activation_scale;
            }
            if dppc > 0.0 && spec.activation_scale > desired_panic {
                desired_panic = spec.activation_scale;
            }
        }
        let over_threshold = dppc / ready >= spec.panic_threshold;
        match self.panic_time {
            None if over_threshold => self.panic_time = Some(now),
            Some(_) if over_threshold => self.panic_time = Some(now),
            Some(pt) if pt.plus(spec.stable_window) < now => {
                self.panic_time = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }
        let mut desired = desired_stable;
        if self.panic_time.is_some() {
            desired = desired.max(desired_panic);
            // Never scale down while panicking.
            if desired > self.max_panic_pods {
                self.max_panic_pods = desired;
            }
            desired = self.max_panic_pods;
        }
        if spec.reachable
            && let Some(w) = &mut self.delay_window
        {
            w.record(now, desired);
            desired = w.current();
        }
        let tbc = spec.target_burst_capacity;
        let ebc = if tbc == 0.0 {
            0.0
        } else if tbc > 0.0 {
            (f64::from(original_ready) * spec.total_value - tbc - panic).floor()
        } else {
            -1.0
        };
        ScaleResult {
            desired_pod_count: desired,
            excess_burst_capacity: to_i32(ebc),
            scale_valid: true,
        }
    }
}

/// The decider's published status (Knative `DeciderStatus`): only valid
/// results are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeciderStatus {
    /// -1 until the first valid decision.
    pub desired_scale: i32,
    pub excess_burst_capacity: i32,
}

impl DeciderStatus {
    /// The status of a new decider, before any tick.
    pub fn initial(spec: &DeciderSpec) -> DeciderStatus {
        let tbc = spec.target_burst_capacity;
        let ebc = if tbc == -1.0 || tbc == 0.0 {
            tbc as i32
        } else {
            // Truncates toward zero (Go int32 conversion), unlike Scale().
            (f64::from(spec.initial_scale) * spec.total_value - tbc) as i32
        };
        DeciderStatus {
            desired_scale: -1,
            excess_burst_capacity: ebc,
        }
    }

    /// Store a result; true when the reconciler should hear about it (the
    /// desired scale changed, or the EBC changed sign).
    pub fn update(&mut self, r: &ScaleResult) -> bool {
        if !r.scale_valid {
            return false;
        }
        let mut changed = self.desired_scale != r.desired_pod_count;
        self.desired_scale = r.desired_pod_count;
        changed |= (self.excess_burst_capacity < 0) != (r.excess_burst_capacity < 0);
        self.excess_burst_capacity = r.excess_burst_capacity;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeciderSpec {
        DeciderSpec {
            max_scale_up_rate: 10.0,
            max_scale_down_rate: 2.0,
            scaling_metric: ScalingMetric::Concurrency,
            target_value: 10.0,
            total_value: 10.0,
            target_burst_capacity: 0.0,
            activator_capacity: 100.0,
            panic_threshold: 2.0,
            stable_window: Duration::from_secs(60),
            scale_down_delay: Duration::ZERO,
            initial_scale: 1,
            reachable: true,
            activation_scale: 0,
        }
    }

    fn t(s: i64) -> Time {
        Time::from_secs(s)
    }

    fn scale(a: &mut Autoscaler, ready: i32, stable: f64, panic: f64, at: i64) -> ScaleResult {
        a.scale::<(), ()>(Ok(ready), Ok((stable, panic)), t(at))
    }

    #[test]
    fn stable_scaling_and_rate_limits() {
        let mut a = Autoscaler::new(spec(), Some(1), t(0));
        // 50 / 10 = 5 pods.
        assert_eq!(scale(&mut a, 1, 50.0, 50.0, 2).desired_pod_count, 5);
        // Up rate: at most ceil(10 x 1) from one pod.
        assert_eq!(scale(&mut a, 1, 500.0, 50.0, 4).desired_pod_count, 10);
        // While panicking it never goes down; a calm autoscaler does, by at
        // most the down rate: floor(10 / 2) from ten pods.
        assert_eq!(scale(&mut a, 10, 0.0, 0.0, 6).desired_pod_count, 10);
        let mut calm = Autoscaler::new(spec(), Some(1), t(0));
        assert_eq!(scale(&mut calm, 10, 0.0, 0.0, 6).desired_pod_count, 5);
        // Growth of at least one pod: 1.1 x 2 = 2.2 -> ceil 3.
        let mut s = spec();
        s.max_scale_up_rate = 1.1;
        let mut a = Autoscaler::new(s, Some(2), t(0));
        a.set_panic(None, 0);
        assert_eq!(scale(&mut a, 2, 100.0, 0.0, 2).desired_pod_count, 3);
    }

    #[test]
    fn unreachable_has_no_downward_limit() {
        let mut s = spec();
        s.reachable = false;
        let mut a = Autoscaler::new(s, Some(1), t(0));
        assert_eq!(scale(&mut a, 10, 0.0, 0.0, 2).desired_pod_count, 0);
    }

    #[test]
    fn panic_enters_holds_and_exits_after_a_stable_window() {
        let mut a = Autoscaler::new(spec(), Some(1), t(0));
        // Panic: 40 / 10 = 4 pods over 1 ready = 4 >= 2.
        let r = scale(&mut a, 1, 10.0, 40.0, 2);
        assert!(a.panicking());
        assert_eq!(r.desired_pod_count, 4);
        // Still panicking, load dropped: never scale down.
        let r = scale(&mut a, 4, 10.0, 10.0, 4);
        assert_eq!(r.desired_pod_count, 4);
        // panic_time + 60 s = 62: not yet strictly before 62.
        assert!(scale(&mut a, 4, 10.0, 10.0, 62).desired_pod_count == 4 && a.panicking());
        let r = scale(&mut a, 4, 10.0, 10.0, 63);
        assert!(!a.panicking());
        assert_eq!(r.desired_pod_count, 2); // stable 1, down-limited to 4/2
    }

    #[test]
    fn a_new_autoscaler_with_pods_starts_in_panic() {
        let a = Autoscaler::new(spec(), Some(3), t(0));
        assert!(a.panicking());
        let a = Autoscaler::new(spec(), None, t(0));
        assert!(!a.panicking());
    }

    #[test]
    fn activation_scale_lifts_non_zero_counts() {
        let mut s = spec();
        s.activation_scale = 3;
        s.max_scale_up_rate = 1.0;
        let mut a = Autoscaler::new(s, Some(0), t(0));
        // 5 / 10 -> 1 pod, lifted to 3 (beyond the up rate of 1).
        assert_eq!(scale(&mut a, 0, 5.0, 5.0, 2).desired_pod_count, 3);
        assert_eq!(scale(&mut a, 0, 0.0, 0.0, 4).desired_pod_count, 0);
    }

    #[test]
    fn scale_down_delay_keeps_the_max() {
        let mut s = spec();
        s.scale_down_delay = Duration::from_secs(4);
        let mut a = Autoscaler::new(s, Some(1), t(0));
        a.set_panic(None, 0);
        assert_eq!(scale(&mut a, 1, 30.0, 10.0, 100).desired_pod_count, 3);
        assert_eq!(scale(&mut a, 3, 10.0, 10.0, 102).desired_pod_count, 3);
        assert_eq!(scale(&mut a, 3, 10.0, 10.0, 104).desired_pod_count, 1); // the 3 left the window
    }

    #[test]
    fn excess_burst_capacity() {
        let mut s = spec();
        s.target_burst_capacity = 15.0;
        let mut a = Autoscaler::new(s.clone(), Some(1), t(0));
        // 2 pods x 10 - 15 - 3.5 = 1.5 -> 1.
        assert_eq!(scale(&mut a, 2, 3.5, 3.5, 2).excess_burst_capacity, 1);
        // 0 pods: -15 - 1 = -16.
        assert_eq!(scale(&mut a, 0, 1.0, 1.0, 4).excess_burst_capacity, -16);
        s.target_burst_capacity = -1.0;
        let mut a = Autoscaler::new(s.clone(), Some(1), t(0));
        assert_eq!(scale(&mut a, 2, 0.0, 0.0, 2).excess_burst_capacity, -1);
        // Creation truncates toward zero: 1 x 10 - 15.5 = -5.5 -> -5.
        s.target_burst_capacity = 15.5;
        assert_eq!(DeciderStatus::initial(&s).excess_burst_capacity, -5);
    }

    #[test]
    fn errors_are_invalid_results() {
        let mut a = Autoscaler::new(spec(), Some(1), t(0));
        assert!(!a.scale::<(), ()>(Err(()), Ok((1.0, 1.0)), t(2)).scale_valid);
        assert!(!a.scale::<(), ()>(Ok(1), Err(()), t(2)).scale_valid);
        let mut st = DeciderStatus::initial(&spec());
        assert!(!st.update(&INVALID));
        assert_eq!(st.desired_scale, -1);
        let r = ScaleResult {
            desired_pod_count: 2,
            excess_burst_capacity: 5,
            scale_valid: true,
        };
        assert!(st.update(&r));
        assert!(!st.update(&r));
        // Sign flip of the EBC alone notifies.
        assert!(st.update(&ScaleResult {
            excess_burst_capacity: -1,
            ..r
        }));
    }
}
