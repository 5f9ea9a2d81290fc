//! `config-autoscaler`: the KPA's cluster-wide settings (Knative's defaults,
//! see docs kpa.md §1), and the per-revision annotation keys that override
//! them (§2).

use std::time::Duration;

/// The ConfigMap's name in namespace `knative-serving`.
pub const CONFIGMAP: &str = "config-autoscaler";

/// Settings of `config-autoscaler`. Percentages are kept as the user wrote
/// them, except `container_concurrency_target_fraction` (a fraction: the key
/// `container-concurrency-target-percentage: 70` becomes 0.7).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerConfig {
    pub pod_autoscaler_class: String,
    pub enable_scale_to_zero: bool,
    pub allow_zero_initial_scale: bool,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub container_concurrency_target_fraction: f64,
    pub container_concurrency_target_default: f64,
    pub requests_per_second_target_default: f64,
    /// `-1` = unlimited (the activator always stays in the path).
    pub target_burst_capacity: f64,
    pub panic_window_percentage: f64,
    pub activator_capacity: f64,
    pub panic_threshold_percentage: f64,
    pub initial_scale: i32,
    pub min_scale: i32,
    /// 0 = unlimited.
    pub max_scale: i32,
    /// 0 = no limit.
    pub max_scale_limit: i32,
    pub stable_window: Duration,
    pub scale_down_delay: Duration,
    pub scale_to_zero_grace_period: Duration,
    pub scale_to_zero_pod_retention_period: Duration,
}

/// The target utilization used with the `rps` metric; no key sets it, the
/// `target-utilization-percentage` annotation overrides it.
pub const RPS_TARGET_UTILIZATION: f64 = 0.7;

pub const KPA_CLASS: &str = "kpa.autoscaling.knative.dev";
pub const HPA_CLASS: &str = "hpa.autoscaling.knative.dev";

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            pod_autoscaler_class: KPA_CLASS.to_string(),
            enable_scale_to_zero: true,
            allow_zero_initial_scale: false,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            container_concurrency_target_fraction: 0.7,
            container_concurrency_target_default: 100.0,
            requests_per_second_target_default: 200.0,
            target_burst_capacity: 211.0,
            panic_window_percentage: 10.0,
            activator_capacity: 100.0,
            panic_threshold_percentage: 200.0,
            initial_scale: 1,
            min_scale: 0,
            max_scale: 0,
            max_scale_limit: 0,
            stable_window: Duration::from_secs(60),
            scale_down_delay: Duration::ZERO,
            scale_to_zero_grace_period: Duration::from_secs(30),
            scale_to_zero_pod_retention_period: Duration::ZERO,
        }
    }
}

/// `autoscaling.knative.dev/*` annotation keys, each with its legacy
/// camelCase alias (the new key wins when both are set).
pub mod annotations {
    pub const PREFIX: &str = "autoscaling.knative.dev/";

    /// (key, alias); alias is `None` where Knative has none.
    pub type Key = (&'static str, Option<&'static str>);

    pub const CLASS: Key = ("autoscaling.knative.dev/class", None);
    pub const METRIC: Key = ("autoscaling.knative.dev/metric", None);
    pub const TARGET: Key = ("autoscaling.knative.dev/target", None);
    pub const TARGET_UTILIZATION_PERCENTAGE: Key = (
        "autoscaling.knative.dev/target-utilization-percentage",
        Some("autoscaling.knative.dev/targetUtilizationPercentage"),
    );
    pub const TARGET_BURST_CAPACITY: Key = (
        "autoscaling.knative.dev/target-burst-capacity",
        Some("autoscaling.knative.dev/targetBurstCapacity"),
    );
    pub const WINDOW: Key = ("autoscaling.knative.dev/window", None);
    pub const PANIC_WINDOW_PERCENTAGE: Key = (
        "autoscaling.knative.dev/panic-window-percentage",
        Some("autoscaling.knative.dev/panicWindowPercentage"),
    );
    pub const PANIC_THRESHOLD_PERCENTAGE: Key = (
        "autoscaling.knative.dev/panic-threshold-percentage",
        Some("autoscaling.knative.dev/panicThresholdPercentage"),
    );
    pub const MIN_SCALE: Key = (
        "autoscaling.knative.dev/min-scale",
        Some("autoscaling.knative.dev/minScale"),
    );
    pub const MAX_SCALE: Key = (
        "autoscaling.knative.dev/max-scale",
        Some("autoscaling.knative.dev/maxScale"),
    );
    pub const INITIAL_SCALE: Key = (
        "autoscaling.knative.dev/initial-scale",
        Some("autoscaling.knative.dev/initialScale"),
    );
    pub const ACTIVATION_SCALE: Key = ("autoscaling.knative.dev/activation-scale", None);
    pub const SCALE_DOWN_DELAY: Key = (
        "autoscaling.knative.dev/scale-down-delay",
        Some("autoscaling.knative.dev/scaleDownDelay"),
    );
    pub const SCALE_TO_ZERO_POD_RETENTION_PERIOD: Key = (
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
        Some("autoscaling.knative.dev/scaleToZeroPodRetentionPeriod"),
    );
    pub const METRIC_AGGREGATION_ALGORITHM: Key = (
        "autoscaling.knative.dev/metric-aggregation-algorithm",
        Some("autoscaling.knative.dev/metricAggregationAlgorithm"),
    );

    /// The value of `key` in `annotations` (new key first, then the alias),
    /// with the key actually found.
    pub fn get(
        annotations: &std::collections::BTreeMap<String, String>,
        key: Key,
    ) -> Option<(&'static str, &str)> {
        if let Some(v) = annotations.get(key.0) {
            return Some((key.0, v.as_str()));
        }
        let alias = key.1?;
        annotations.get(alias).map(|v| (alias, v.as_str()))
    }
}
