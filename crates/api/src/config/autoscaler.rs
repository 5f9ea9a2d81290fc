//! `config-autoscaler`: the KPA's cluster-wide settings (Knative's defaults,
//! see docs kpa.md §1), and the per-revision annotation keys that override
//! them (§2).

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse_with;
use crate::go::{self, GoDuration};

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

impl AutoscalerConfig {
    /// Parse `config-autoscaler`'s data as Knative does (docs kpa.md §1):
    /// keys in a fixed order, the first that fails to parse is the error;
    /// then the checks in order, the first failing one is the error. Unknown
    /// keys are ignored.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<AutoscalerConfig, String> {
        let mut c = AutoscalerConfig::default();
        let parsed = (|| -> Result<Durations, String> {
            let trimmed = |s: &str| Ok::<_, String>(s.trim().to_string());
            parse_with(
                data,
                "pod-autoscaler-class",
                trimmed,
                &mut c.pod_autoscaler_class,
            )?;
            parse_with(
                data,
                "enable-scale-to-zero",
                go::parse_bool,
                &mut c.enable_scale_to_zero,
            )?;
            parse_with(
                data,
                "allow-zero-initial-scale",
                go::parse_bool,
                &mut c.allow_zero_initial_scale,
            )?;
            let float = go::parse_float;
            parse_with(data, "max-scale-up-rate", float, &mut c.max_scale_up_rate)?;
            parse_with(
                data,
                "max-scale-down-rate",
                float,
                &mut c.max_scale_down_rate,
            )?;
            parse_with(
                data,
                "container-concurrency-target-percentage",
                float,
                &mut c.container_concurrency_target_fraction,
            )?;
            parse_with(
                data,
                "container-concurrency-target-default",
                float,
                &mut c.container_concurrency_target_default,
            )?;
            parse_with(
                data,
                "requests-per-second-target-default",
                float,
                &mut c.requests_per_second_target_default,
            )?;
            parse_with(
                data,
                "target-burst-capacity",
                float,
                &mut c.target_burst_capacity,
            )?;
            parse_with(
                data,
                "panic-window-percentage",
                float,
                &mut c.panic_window_percentage,
            )?;
            parse_with(data, "activator-capacity", float, &mut c.activator_capacity)?;
            parse_with(
                data,
                "panic-threshold-percentage",
                float,
                &mut c.panic_threshold_percentage,
            )?;
            let int32 = |s: &str| go::parse_int(s, 32).map(|v| v as i32);
            parse_with(data, "initial-scale", int32, &mut c.initial_scale)?;
            parse_with(data, "min-scale", int32, &mut c.min_scale)?;
            parse_with(data, "max-scale", int32, &mut c.max_scale)?;
            parse_with(data, "max-scale-limit", int32, &mut c.max_scale_limit)?;
            let mut d = Durations::default();
            parse_with(
                data,
                "stable-window",
                go::parse_duration,
                &mut d.stable_window,
            )?;
            parse_with(
                data,
                "scale-down-delay",
                go::parse_duration,
                &mut d.scale_down_delay,
            )?;
            parse_with(
                data,
                "scale-to-zero-grace-period",
                go::parse_duration,
                &mut d.grace,
            )?;
            parse_with(
                data,
                "scale-to-zero-pod-retention-period",
                go::parse_duration,
                &mut d.retention,
            )?;
            Ok(d)
        })()
        .map_err(|e| format!("failed to parse data: {e}"))?;
        if c.container_concurrency_target_fraction > 1.0 {
            c.container_concurrency_target_fraction /= 100.0;
        }
        let Durations {
            stable_window,
            scale_down_delay,
            grace,
            retention,
        } = parsed;
        let f = go::format_float;
        if grace.0 <= 0 {
            return Err(format!(
                "scale-to-zero-grace-period must be positive, was: {grace}"
            ));
        }
        if scale_down_delay.0 < 0 {
            return Err(format!(
                "scale-down-delay cannot be negative, was: {scale_down_delay}"
            ));
        }
        if !scale_down_delay.is_whole_seconds() {
            return Err(format!(
                "scale-down-delay = {scale_down_delay}, must be specified with at most second precision"
            ));
        }
        if retention.0 < 0 {
            return Err(format!(
                "scale-to-zero-pod-retention-period cannot be negative, was: {retention}"
            ));
        }
        if c.target_burst_capacity < 0.0 && c.target_burst_capacity != -1.0 {
            return Err(format!(
                "target-burst-capacity must be either non-negative or -1 (for unlimited), was: {}",
                go::format_float_f(c.target_burst_capacity)
            ));
        }
        if c.container_concurrency_target_fraction <= 0.0
            || c.container_concurrency_target_fraction > 1.0
        {
            return Err(format!(
                "container-concurrency-target-percentage = {} is outside of valid range of (0, 100]",
                go::format_float_f(c.container_concurrency_target_fraction)
            ));
        }
        let target =
            c.container_concurrency_target_fraction * c.container_concurrency_target_default;
        if target < TARGET_MIN {
            return Err(format!(
                "container-concurrency-target-percentage and container-concurrency-target-default yield target concurrency of {}, can't be less than {}",
                f(target),
                f(TARGET_MIN)
            ));
        }
        if c.requests_per_second_target_default < TARGET_MIN {
            return Err(format!(
                "requests-per-second-target-default must be at least {}, was: {}",
                f(TARGET_MIN),
                f(c.requests_per_second_target_default)
            ));
        }
        if c.activator_capacity < 1.0 {
            return Err(format!(
                "activator-capacity = {}, must be at least 1",
                f(c.activator_capacity)
            ));
        }
        if c.max_scale_up_rate <= 1.0 {
            return Err(format!(
                "max-scale-up-rate = {}, must be greater than 1.0",
                f(c.max_scale_up_rate)
            ));
        }
        if c.max_scale_down_rate <= 1.0 {
            return Err(format!(
                "max-scale-down-rate = {}, must be greater than 1.0",
                f(c.max_scale_down_rate)
            ));
        }
        if stable_window < WINDOW_MIN || stable_window > WINDOW_MAX {
            return Err(format!(
                "stable-window = {stable_window}, must be in [{WINDOW_MIN}; {WINDOW_MAX}] range"
            ));
        }
        if !stable_window.is_whole_seconds() {
            return Err(format!(
                "stable-window = {stable_window}, must be specified with at most second precision"
            ));
        }
        if c.panic_window_percentage < 1.0 || c.panic_window_percentage > 100.0 {
            return Err(format!(
                "panic-window-percentage = {}, must be in [1, 100] interval",
                f(c.panic_window_percentage)
            ));
        }
        if c.initial_scale < 0 || (c.initial_scale == 0 && !c.allow_zero_initial_scale) {
            return Err(format!(
                "initial-scale = {}, must be at least 0 (or at least 1 when allow-zero-initial-scale is false)",
                c.initial_scale
            ));
        }
        if c.min_scale < 0 {
            return Err(format!("min-scale = {}, must be at least 0", c.min_scale));
        }
        let min_max_scale = if c.max_scale_limit > 0 { 1 } else { 0 };
        if c.max_scale < min_max_scale || (c.max_scale_limit > 0 && c.max_scale > c.max_scale_limit)
        {
            return Err(format!(
                "max-scale = {}, must be in [{min_max_scale}, max-scale-limit({})] range",
                c.max_scale, c.max_scale_limit
            ));
        }
        if c.max_scale_limit < 0 {
            return Err(format!(
                "max-scale-limit = {}, must be at least 0",
                c.max_scale_limit
            ));
        }
        if c.min_scale > c.max_scale && c.max_scale > 0 {
            return Err(format!(
                "min-scale ({}) must be less than max-scale ({})",
                c.min_scale, c.max_scale
            ));
        }
        c.stable_window = stable_window.to_std();
        c.scale_down_delay = scale_down_delay.to_std();
        c.scale_to_zero_grace_period = grace.to_std();
        c.scale_to_zero_pod_retention_period = retention.to_std();
        Ok(c)
    }
}

/// The smallest target an annotation or the config may give (autoscaling
/// TargetMin).
pub const TARGET_MIN: f64 = 0.01;
/// Bounds of the stable window (autoscaling WindowMin / WindowMax).
pub const WINDOW_MIN: GoDuration = GoDuration::seconds(6);
pub const WINDOW_MAX: GoDuration = GoDuration::seconds(3600);

/// The duration keys, parsed before their checks.
struct Durations {
    stable_window: GoDuration,
    scale_down_delay: GoDuration,
    grace: GoDuration,
    retention: GoDuration,
}

impl Default for Durations {
    fn default() -> Self {
        let d = AutoscalerConfig::default();
        Durations {
            stable_window: GoDuration::from_std(d.stable_window),
            scale_down_delay: GoDuration::from_std(d.scale_down_delay),
            grace: GoDuration::from_std(d.scale_to_zero_grace_period),
            retention: GoDuration::from_std(d.scale_to_zero_pod_retention_period),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<AutoscalerConfig, String> {
        AutoscalerConfig::from_configmap(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_percentages() {
        assert_eq!(parse(&[]).unwrap(), AutoscalerConfig::default());
        let c = parse(&[
            ("container-concurrency-target-percentage", "80"),
            ("stable-window", "2m"),
            ("tick-interval", "anything"),
            ("pod-autoscaler-class", " hpa.autoscaling.knative.dev "),
        ])
        .unwrap();
        assert_eq!(c.container_concurrency_target_fraction, 0.8);
        assert_eq!(c.stable_window, Duration::from_secs(120));
        assert_eq!(c.pod_autoscaler_class, HPA_CLASS);
        // A value <= 1 is already a fraction.
        let c = parse(&[("container-concurrency-target-percentage", "0.5")]).unwrap();
        assert_eq!(c.container_concurrency_target_fraction, 0.5);
    }

    /// kpa.md §1: one message per check, in order, the first failure only.
    #[test]
    fn first_failure_in_knatives_words() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("enable-scale-to-zero", "yes")],
                "failed to parse data: failed to parse \"enable-scale-to-zero\": strconv.ParseBool: parsing \"yes\": invalid syntax",
            ),
            (
                &[("max-scale-up-rate", "fast")],
                "failed to parse data: failed to parse \"max-scale-up-rate\": strconv.ParseFloat: parsing \"fast\": invalid syntax",
            ),
            (
                &[("max-scale", "3000000000")],
                "failed to parse data: failed to parse \"max-scale\": strconv.ParseInt: parsing \"3000000000\": value out of range",
            ),
            (
                &[("stable-window", "1 minute")],
                "failed to parse data: failed to parse \"stable-window\": time: unknown unit \" minute\" in duration \"1 minute\"",
            ),
            // Parsing stops at the first bad key, in the table's order.
            (
                &[("stable-window", "x"), ("max-scale-down-rate", "y")],
                "failed to parse data: failed to parse \"max-scale-down-rate\": strconv.ParseFloat: parsing \"y\": invalid syntax",
            ),
            (
                &[("scale-to-zero-grace-period", "0s")],
                "scale-to-zero-grace-period must be positive, was: 0s",
            ),
            (
                &[("scale-down-delay", "-1s")],
                "scale-down-delay cannot be negative, was: -1s",
            ),
            (
                &[("scale-down-delay", "1.5s")],
                "scale-down-delay = 1.5s, must be specified with at most second precision",
            ),
            (
                &[("scale-to-zero-pod-retention-period", "-1m")],
                "scale-to-zero-pod-retention-period cannot be negative, was: -1m0s",
            ),
            (
                &[("target-burst-capacity", "-11")],
                "target-burst-capacity must be either non-negative or -1 (for unlimited), was: -11.000000",
            ),
            (
                &[("container-concurrency-target-percentage", "0")],
                "container-concurrency-target-percentage = 0.000000 is outside of valid range of (0, 100]",
            ),
            (
                &[("container-concurrency-target-percentage", "200")],
                "container-concurrency-target-percentage = 2.000000 is outside of valid range of (0, 100]",
            ),
            (
                &[("container-concurrency-target-default", "0.001")],
                "container-concurrency-target-percentage and container-concurrency-target-default yield target concurrency of 0.0007, can't be less than 0.01",
            ),
            (
                &[("requests-per-second-target-default", "0.001")],
                "requests-per-second-target-default must be at least 0.01, was: 0.001",
            ),
            (
                &[("activator-capacity", "0.95")],
                "activator-capacity = 0.95, must be at least 1",
            ),
            (
                &[("max-scale-up-rate", "1")],
                "max-scale-up-rate = 1, must be greater than 1.0",
            ),
            (
                &[("max-scale-down-rate", "-55")],
                "max-scale-down-rate = -55, must be greater than 1.0",
            ),
            (
                &[("stable-window", "5s")],
                "stable-window = 5s, must be in [6s; 1h0m0s] range",
            ),
            (
                &[("stable-window", "1h0m1s")],
                "stable-window = 1h0m1s, must be in [6s; 1h0m0s] range",
            ),
            (
                &[("stable-window", "61984ms")],
                "stable-window = 1m1.984s, must be specified with at most second precision",
            ),
            (
                &[("panic-window-percentage", "0.5")],
                "panic-window-percentage = 0.5, must be in [1, 100] interval",
            ),
            (
                &[("initial-scale", "0")],
                "initial-scale = 0, must be at least 0 (or at least 1 when allow-zero-initial-scale is false)",
            ),
            (&[("min-scale", "-1")], "min-scale = -1, must be at least 0"),
            (
                &[("max-scale", "-1")],
                "max-scale = -1, must be in [0, max-scale-limit(0)] range",
            ),
            (
                &[("max-scale-limit", "10"), ("max-scale", "11")],
                "max-scale = 11, must be in [1, max-scale-limit(10)] range",
            ),
            (
                &[("max-scale-limit", "10")],
                "max-scale = 0, must be in [1, max-scale-limit(10)] range",
            ),
            (
                &[("max-scale-limit", "-1")],
                "max-scale-limit = -1, must be at least 0",
            ),
            (
                &[("min-scale", "5"), ("max-scale", "3")],
                "min-scale (5) must be less than max-scale (3)",
            ),
            // Two failing checks: only the first is reported.
            (
                &[("max-scale-up-rate", "1"), ("stable-window", "5s")],
                "max-scale-up-rate = 1, must be greater than 1.0",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap_err(), *want, "{input:?}");
        }
        assert!(parse(&[("initial-scale", "0"), ("allow-zero-initial-scale", "true")]).is_ok());
        assert!(parse(&[("target-burst-capacity", "-1")]).is_ok());
    }
}
