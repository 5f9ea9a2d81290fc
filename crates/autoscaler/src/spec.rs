//! A revision's autoscaling settings, resolved from config-autoscaler and the
//! revision's `autoscaling.knative.dev/*` annotations (Knative
//! `kpa/resources/decider.go` MakeDecider, `resources/target.go`,
//! `resources/metric.go`, `pa_lifecycle.go` accessors).
//!
//! Annotations are read leniently, like Knative's accessors: a value that
//! does not parse counts as absent and the cluster setting applies
//! (admission rejects such values before they get here).

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_api::config::autoscaler::{self as cfg, AutoscalerConfig, annotations as ann};

use crate::buckets::Algorithm;
use crate::decider::DeciderSpec;
use crate::duration::parse_go_duration;
use crate::metrics::BUCKET;

/// Lowest target (Knative `TargetMin`).
pub const TARGET_MIN: f64 = 0.01;
/// Added to the progress deadline before a revision that never activates is
/// scaled to zero.
pub const ACTIVATION_TIMEOUT_BUFFER: Duration = Duration::from_secs(30);
/// config-deployment's default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
const PROGRESS_DEADLINE: &str = "serving.knative.dev/progress-deadline";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingMetric {
    Concurrency,
    Rps,
}

impl ScalingMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingMetric::Concurrency => "concurrency",
            ScalingMetric::Rps => "rps",
        }
    }
}

/// Everything the autoscaler needs to know about one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSettings {
    /// The autoscaler class; only the KPA class is scaled on requests.
    pub class: String,
    pub metric: ScalingMetric,
    /// Per-instance target: what Scale() divides by.
    pub target: f64,
    /// Per-instance capacity at 100 % (EBC, activator count).
    pub total: f64,
    pub target_burst_capacity: f64,
    /// A ratio (2.0 = 200 %).
    pub panic_threshold: f64,
    pub stable_window: Duration,
    pub panic_window: Duration,
    pub scale_down_delay: Duration,
    pub initial_scale: i32,
    pub activation_scale: i32,
    /// Before reachability is taken into account.
    pub min_scale: i32,
    /// 0 = unlimited.
    pub max_scale: i32,
    pub enable_scale_to_zero: bool,
    pub scale_to_zero_grace_period: Duration,
    pub scale_to_zero_pod_retention: Duration,
    pub activation_timeout: Duration,
    pub algorithm: Algorithm,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub activator_capacity: f64,
    /// `spec.containerConcurrency` (0 = unlimited).
    pub container_concurrency: i64,
}

fn get(a: &BTreeMap<String, String>, key: ann::Key) -> Option<&str> {
    ann::get(a, key).map(|(_, v)| v)
}

/// Go `strconv.ParseInt(s, 10, 32)`.
pub fn annotation_i32(a: &BTreeMap<String, String>, key: ann::Key) -> Option<i32> {
    get(a, key)?.parse::<i32>().ok()
}

/// Go `strconv.ParseFloat(s, 64)`; non-finite values count as absent.
pub fn annotation_f64(a: &BTreeMap<String, String>, key: ann::Key) -> Option<f64> {
    get(a, key)?.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go `time.ParseDuration`; negative durations count as absent.
pub fn annotation_duration(a: &BTreeMap<String, String>, key: ann::Key) -> Option<Duration> {
    parse_go_duration(get(a, key)?).ok()
}

/// `metric-aggregation-algorithm`.
fn algorithm(a: &BTreeMap<String, String>) -> Algorithm {
    match get(a, ann::METRIC_AGGREGATION_ALGORITHM) {
        Some("weighted-exponential") | Some("weightedExponential") => {
            Algorithm::WeightedExponential
        }
        _ => Algorithm::Linear,
    }
}

/// Go's `Duration.Round(time.Second)`: half away from zero.
fn round_to_second(d: Duration) -> Duration {
    Duration::from_secs((d.as_secs_f64()).round() as u64)
}

impl RevisionSettings {
    pub fn resolve(
        config: &AutoscalerConfig,
        annotations: &BTreeMap<String, String>,
        container_concurrency: Option<i64>,
    ) -> RevisionSettings {
        let a = annotations;
        let class = get(a, ann::CLASS)
            .unwrap_or(&config.pod_autoscaler_class)
            .to_string();
        let metric = match get(a, ann::METRIC) {
            Some("rps") => ScalingMetric::Rps,
            _ => ScalingMetric::Concurrency,
        };
        let cc = container_concurrency.unwrap_or(0).max(0);
        // ResolveMetricTarget.
        let (mut total, mut tu) = match metric {
            ScalingMetric::Rps => (
                config.requests_per_second_target_default,
                cfg::RPS_TARGET_UTILIZATION,
            ),
            ScalingMetric::Concurrency => (
                if cc == 0 {
                    config.container_concurrency_target_default
                } else {
                    cc as f64
                },
                config.container_concurrency_target_fraction,
            ),
        };
        if let Some(t) = annotation_f64(a, ann::TARGET) {
            total = t;
            if metric == ScalingMetric::Concurrency && cc != 0 {
                total = t.min(cc as f64);
            }
        }
        if let Some(p) = annotation_f64(a, ann::TARGET_UTILIZATION_PERCENTAGE) {
            tu = p / 100.0;
        }
        let target = (total * tu).max(TARGET_MIN);

        let stable_window = annotation_duration(a, ann::WINDOW).unwrap_or(config.stable_window);
        let panic_pct = annotation_f64(a, ann::PANIC_WINDOW_PERCENTAGE)
            .unwrap_or(config.panic_window_percentage);
        let panic_window = round_to_second(Duration::from_secs_f64(
            (stable_window.as_secs_f64() * panic_pct / 100.0).max(0.0),
        ))
        .max(BUCKET);
        let initial_scale = match annotation_i32(a, ann::INITIAL_SCALE) {
            Some(0) if !config.allow_zero_initial_scale => config.initial_scale,
            Some(v) => v,
            None => config.initial_scale,
        };
        let progress_deadline = a
            .get(PROGRESS_DEADLINE)
            .and_then(|v| parse_go_duration(v).ok())
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        RevisionSettings {
            class,
            metric,
            target,
            total,
            target_burst_capacity: annotation_f64(a, ann::TARGET_BURST_CAPACITY)
                .unwrap_or(config.target_burst_capacity),
            panic_threshold: annotation_f64(a, ann::PANIC_THRESHOLD_PERCENTAGE)
                .unwrap_or(config.panic_threshold_percentage)
                / 100.0,
            stable_window,
            panic_window,
            scale_down_delay: annotation_duration(a, ann::SCALE_DOWN_DELAY)
                .unwrap_or(config.scale_down_delay),
            initial_scale,
            activation_scale: annotation_i32(a, ann::ACTIVATION_SCALE).unwrap_or(0),
            min_scale: annotation_i32(a, ann::MIN_SCALE).unwrap_or(config.min_scale),
            max_scale: annotation_i32(a, ann::MAX_SCALE).unwrap_or(config.max_scale),
            enable_scale_to_zero: config.enable_scale_to_zero,
            scale_to_zero_grace_period: config.scale_to_zero_grace_period,
            scale_to_zero_pod_retention: annotation_duration(
                a,
                ann::SCALE_TO_ZERO_POD_RETENTION_PERIOD,
            )
            .unwrap_or(config.scale_to_zero_pod_retention_period),
            activation_timeout: progress_deadline + ACTIVATION_TIMEOUT_BUFFER,
            algorithm: algorithm(a),
            max_scale_up_rate: config.max_scale_up_rate,
            max_scale_down_rate: config.max_scale_down_rate,
            activator_capacity: config.activator_capacity,
            container_concurrency: cc,
        }
    }

    /// Whether the KPA scales this revision (HPA-class revisions are not
    /// scaled on requests).
    pub fn is_kpa(&self) -> bool {
        self.class == cfg::KPA_CLASS
    }

    /// Pods are scraped unless TBC is -1 (the activator sees everything).
    pub fn scraped(&self) -> bool {
        self.target_burst_capacity != -1.0
    }

    pub fn decider_spec(&self, reachable: bool) -> DeciderSpec {
        DeciderSpec {
            max_scale_up_rate: self.max_scale_up_rate,
            max_scale_down_rate: self.max_scale_down_rate,
            scaling_metric: self.metric,
            target_value: self.target,
            total_value: self.total,
            target_burst_capacity: self.target_burst_capacity,
            activator_capacity: self.activator_capacity,
            panic_threshold: self.panic_threshold,
            stable_window: self.stable_window,
            scale_down_delay: self.scale_down_delay,
            initial_scale: self.initial_scale,
            reachable,
            activation_scale: self.activation_scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("autoscaling.knative.dev/{k}"), v.to_string()))
            .collect()
    }

    fn resolve(pairs: &[(&str, &str)], cc: Option<i64>) -> RevisionSettings {
        RevisionSettings::resolve(&AutoscalerConfig::default(), &ann(pairs), cc)
    }

    #[test]
    fn defaults() {
        let s = resolve(&[], None);
        assert_eq!(s.metric, ScalingMetric::Concurrency);
        assert_eq!(s.total, 100.0);
        assert!((s.target - 70.0).abs() < 1e-9);
        assert_eq!(s.target_burst_capacity, 211.0);
        assert_eq!(s.panic_threshold, 2.0);
        assert_eq!(s.stable_window, Duration::from_secs(60));
        assert_eq!(s.panic_window, Duration::from_secs(6));
        assert_eq!(s.initial_scale, 1);
        assert_eq!(s.activation_timeout, Duration::from_secs(630));
        assert!(s.is_kpa() && s.scraped());
    }

    /// The target table of ResolveMetricTarget (§3).
    #[test]
    fn targets() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<i64>, f64, f64);
        let cases: &[Case] = &[
            (&[], Some(10), 7.0, 10.0),
            (&[("target", "5")], Some(10), 3.5, 5.0),
            (&[("target", "50")], Some(10), 7.0, 10.0), // min(target, CC)
            (&[("target", "50")], None, 35.0, 50.0),
            (
                &[("target-utilization-percentage", "50")],
                Some(10),
                5.0,
                10.0,
            ),
            (&[("targetUtilizationPercentage", "100")], Some(1), 1.0, 1.0),
            (&[("metric", "rps")], Some(1), 140.0, 200.0), // rps ignores CC
            (&[("metric", "rps"), ("target", "10")], Some(1), 7.0, 10.0),
            (&[("target", "0.001")], None, 0.01, 0.001), // TargetMin floor
            (&[("target", "abc")], Some(4), 2.8, 4.0),   // unparseable = absent
        ];
        for (a, cc, target, total) in cases {
            let s = resolve(a, *cc);
            assert!(
                (s.target - target).abs() < 1e-9,
                "{a:?} {cc:?}: target {}",
                s.target
            );
            assert!(
                (s.total - total).abs() < 1e-9,
                "{a:?} {cc:?}: total {}",
                s.total
            );
        }
    }

    #[test]
    fn windows_and_precedence() {
        let s = resolve(
            &[("window", "60s"), ("panic-window-percentage", "51")],
            None,
        );
        assert_eq!(s.panic_window, Duration::from_secs(31)); // 30.6 s rounds up
        let s = resolve(&[("window", "6s"), ("panicWindowPercentage", "1")], None);
        assert_eq!(s.panic_window, Duration::from_secs(1)); // at least a bucket
        let s = resolve(&[("window", "bogus")], None);
        assert_eq!(s.stable_window, Duration::from_secs(60));
        let mut a = ann(&[("min-scale", "2"), ("minScale", "5")]);
        a.insert("autoscaling.knative.dev/maxScale".into(), "7".into());
        let s = RevisionSettings::resolve(&AutoscalerConfig::default(), &a, None);
        assert_eq!((s.min_scale, s.max_scale), (2, 7)); // new key first, alias second
        let s = resolve(
            &[
                ("panic-threshold-percentage", "150"),
                ("target-burst-capacity", "-1"),
            ],
            None,
        );
        assert_eq!(s.panic_threshold, 1.5);
        assert!(!s.scraped());
        let s = resolve(
            &[
                ("scale-down-delay", "10s"),
                ("scale-to-zero-pod-retention-period", "1m"),
            ],
            None,
        );
        assert_eq!(s.scale_down_delay, Duration::from_secs(10));
        assert_eq!(s.scale_to_zero_pod_retention, Duration::from_secs(60));
    }

    #[test]
    fn initial_scale_zero_needs_the_cluster_to_allow_it() {
        assert_eq!(resolve(&[("initial-scale", "0")], None).initial_scale, 1);
        let cfg = AutoscalerConfig {
            allow_zero_initial_scale: true,
            ..Default::default()
        };
        let s = RevisionSettings::resolve(&cfg, &ann(&[("initialScale", "0")]), None);
        assert_eq!(s.initial_scale, 0);
        assert_eq!(resolve(&[("initial-scale", "3")], None).initial_scale, 3);
    }

    #[test]
    fn progress_deadline_sets_the_activation_timeout() {
        let mut a = BTreeMap::new();
        a.insert(PROGRESS_DEADLINE.to_string(), "10s".to_string());
        let s = RevisionSettings::resolve(&AutoscalerConfig::default(), &a, None);
        assert_eq!(s.activation_timeout, Duration::from_secs(40));
    }
}
