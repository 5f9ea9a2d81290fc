//! `autoscaling.knative.dev/*` annotations on a revision (template): ranges
//! and combinations (docs kpa.md §2, knative-api.md §6.5; serving
//! pkg/apis/autoscaling/annotation_validation.go). Paths are the annotation
//! keys; callers prefix `metadata.annotations`.

use std::collections::BTreeMap;

use crate::config::autoscaler::annotations::{self as keys, Key};
use crate::config::autoscaler::{
    AutoscalerConfig, HPA_CLASS, KPA_CLASS, TARGET_MIN, WINDOW_MAX, WINDOW_MIN,
};
use crate::field_error::FieldError;
use crate::go::{self, GoDuration};

type Annotations = BTreeMap<String, String>;

/// All the checks, every failure reported.
pub fn validate(config: &AutoscalerConfig, m: &Annotations) -> FieldError {
    let mut errs = class(m);
    errs.push(min_max_scale(config, m));
    errs.push(floats(m));
    errs.push(window(m));
    errs.push(pod_retention(m));
    errs.push(scale_down_delay(m));
    errs.push(metric(config, m));
    errs.push(algorithm(m));
    errs.push(initial_scale(config, m));
    errs
}

fn get(m: &Annotations, key: Key) -> Option<(&'static str, &str)> {
    keys::get(m, key)
}

fn class(m: &Annotations) -> FieldError {
    match get(m, keys::CLASS) {
        Some((k, v)) if v.ends_with(".knative.dev") && v != KPA_CLASS && v != HPA_CLASS => {
            FieldError::invalid_value(v, k)
        }
        _ => FieldError::default(),
    }
}

/// An int32 >= 0 (0 when absent or bad, like upstream's getIntGE0).
fn int_ge0(m: &Annotations, key: Key) -> (i64, FieldError) {
    let Some((k, v)) = get(m, key) else {
        return (0, FieldError::default());
    };
    match go::parse_int(v, 32) {
        Ok(i) if i >= 0 => (i, FieldError::default()),
        Ok(_) => (0, FieldError::out_of_bounds(v, 0, i32::MAX, k)),
        Err(e) if e.ends_with("value out of range") => {
            (0, FieldError::out_of_bounds(v, 0, i32::MAX, k))
        }
        Err(_) => (0, FieldError::invalid_value(v, k)),
    }
}

fn min_max_scale(config: &AutoscalerConfig, m: &Annotations) -> FieldError {
    let (min, mut errs) = int_ge0(m, keys::MIN_SCALE);
    let (max, e) = int_ge0(m, keys::MAX_SCALE);
    errs.push(e);
    if max != 0 && max < min {
        errs.push(FieldError::new(
            format!("max-scale={max} is less than min-scale={min}"),
            &[keys::MAX_SCALE.0, keys::MIN_SCALE.0],
        ));
    }
    if let Some((k, _)) = get(m, keys::MAX_SCALE) {
        let limit = i64::from(config.max_scale_limit);
        if limit != 0 {
            if max > limit {
                errs.push(FieldError::out_of_bounds(max, 1, limit, k));
            }
            if max == 0 {
                errs.push(FieldError::new(
                    format!("max-scale=0 (unlimited), must be less than {limit}"),
                    &[k],
                ));
            }
        }
    }
    if let Some((k, v)) = get(m, keys::ACTIVATION_SCALE) {
        match go::parse_int(v, 32) {
            Err(_) => errs.push(FieldError::invalid_value(v, k)),
            Ok(act) if min > act => errs.push(FieldError::new(
                format!("min-scale={min} is greater than activation-scale={act}"),
                &[k],
            )),
            Ok(act) if max < act && max != 0 => errs.push(FieldError::new(
                format!("max-scale={max} is less than activation-scale={act}"),
                &[k],
            )),
            Ok(act) if act < 2 => errs.push(FieldError::new(
                format!("activation-scale={act} must be greater than 1"),
                &[k],
            )),
            Ok(_) => {}
        }
    }
    errs
}

fn floats(m: &Annotations) -> FieldError {
    let mut errs = FieldError::default();
    let f = go::format_float;
    let ranged = |key: Key, lo: f64, hi: f64, errs: &mut FieldError| {
        if let Some((k, v)) = get(m, key) {
            match go::parse_float(v) {
                Err(_) => errs.push(FieldError::invalid_value(v, k)),
                Ok(x) if x < lo || x > hi => {
                    errs.push(FieldError::out_of_bounds(v, f(lo), f(hi), k))
                }
                Ok(_) => {}
            }
        }
    };
    ranged(keys::PANIC_WINDOW_PERCENTAGE, 1.0, 100.0, &mut errs);
    ranged(keys::PANIC_THRESHOLD_PERCENTAGE, 110.0, 1000.0, &mut errs);
    if let Some((k, v)) = get(m, keys::TARGET) {
        match go::parse_float(v) {
            Err(_) => errs.push(FieldError::invalid_value(v, k)),
            Ok(x) if x < TARGET_MIN => errs.push(FieldError::new(
                format!("target {v} should be at least {}", f(TARGET_MIN)),
                &[k],
            )),
            Ok(_) => {}
        }
    }
    ranged(keys::TARGET_UTILIZATION_PERCENTAGE, 1.0, 100.0, &mut errs);
    if let Some((k, v)) = get(m, keys::TARGET_BURST_CAPACITY) {
        match go::parse_float(v) {
            Ok(x) if x >= 0.0 || x == -1.0 => {}
            _ => errs.push(FieldError::invalid_value(v, k)),
        }
    }
    errs
}

fn duration_in(
    m: &Annotations,
    key: Key,
    path: Option<&str>,
    lo: GoDuration,
    whole_seconds: bool,
) -> FieldError {
    let Some((k, v)) = get(m, key) else {
        return FieldError::default();
    };
    let k = path.unwrap_or(k);
    match go::parse_duration(v) {
        Err(_) => FieldError::invalid_value(v, k),
        Ok(d) if d < lo || d > WINDOW_MAX => FieldError::out_of_bounds(v, lo, WINDOW_MAX, k),
        Ok(d) if whole_seconds && !d.is_whole_seconds() => {
            FieldError::new("must be specified with at most second precision", &[k])
        }
        Ok(_) => FieldError::default(),
    }
}

fn window(m: &Annotations) -> FieldError {
    duration_in(m, keys::WINDOW, Some(keys::WINDOW.0), WINDOW_MIN, true)
}

fn pod_retention(m: &Annotations) -> FieldError {
    duration_in(
        m,
        keys::SCALE_TO_ZERO_POD_RETENTION_PERIOD,
        None,
        GoDuration(0),
        false,
    )
}

fn scale_down_delay(m: &Annotations) -> FieldError {
    duration_in(m, keys::SCALE_DOWN_DELAY, None, GoDuration(0), true)
}

fn metric(config: &AutoscalerConfig, m: &Annotations) -> FieldError {
    let Some((_, metric)) = get(m, keys::METRIC) else {
        return FieldError::default();
    };
    let class = get(m, keys::CLASS)
        .map(|(_, c)| c)
        .unwrap_or(&config.pod_autoscaler_class);
    let ok = match class {
        KPA_CLASS => matches!(metric, "concurrency" | "rps"),
        HPA_CLASS => !metric.is_empty(),
        _ => true,
    };
    if ok {
        FieldError::default()
    } else {
        FieldError::invalid_value(metric, keys::METRIC.0)
    }
}

fn algorithm(m: &Annotations) -> FieldError {
    if get(m, keys::CLASS).map(|(_, v)| v) != Some(KPA_CLASS) {
        return FieldError::default();
    }
    match get(m, keys::METRIC_AGGREGATION_ALGORITHM) {
        Some((k, v))
            if !v.is_empty()
                && !matches!(v, "linear" | "weighted-exponential" | "weightedExponential") =>
        {
            FieldError::invalid_value(v, k)
        }
        _ => FieldError::default(),
    }
}

fn initial_scale(config: &AutoscalerConfig, m: &Annotations) -> FieldError {
    let Some((k, v)) = get(m, keys::INITIAL_SCALE) else {
        return FieldError::default();
    };
    match go::atoi(v) {
        Err(_) => FieldError::invalid_value(v, k),
        Ok(i) if i < 0 => FieldError::invalid_value(v, &format!("{k} must be greater than 0")),
        Ok(0) if !config.allow_zero_initial_scale => {
            FieldError::invalid_value(v, &format!("{k}=0 not allowed by cluster"))
        }
        Ok(_) => FieldError::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: &AutoscalerConfig, pairs: &[(&str, &str)]) -> String {
        let m: Annotations = pairs
            .iter()
            .map(|(k, v)| (format!("autoscaling.knative.dev/{k}"), v.to_string()))
            .collect();
        validate(config, &m)
            .via_field("metadata.annotations")
            .to_string()
    }

    /// Written from kpa.md §2 and upstream's annotation_validation tests.
    #[test]
    fn table() {
        let d = AutoscalerConfig::default();
        let limited = AutoscalerConfig {
            max_scale_limit: 10,
            ..Default::default()
        };
        let zero_ok = AutoscalerConfig {
            allow_zero_initial_scale: true,
            ..Default::default()
        };
        let p = "metadata.annotations.autoscaling.knative.dev";
        type Case<'a> = (&'a AutoscalerConfig, Vec<(&'a str, &'a str)>, String);
        let cases: Vec<Case> = vec![
            (&d, vec![], String::new()),
            (
                &d,
                vec![("min-scale", "2"), ("max-scale", "5")],
                String::new(),
            ),
            (
                &d,
                vec![("minScale", "3"), ("maxScale", "0")],
                String::new(),
            ),
            (
                &d,
                vec![("min-scale", "x")],
                format!("invalid value: x: {p}/min-scale"),
            ),
            (
                &d,
                vec![("min-scale", "-1")],
                format!("expected 0 <= -1 <= 2147483647: {p}/min-scale"),
            ),
            (
                &d,
                vec![("max-scale", "3000000000")],
                format!("expected 0 <= 3000000000 <= 2147483647: {p}/max-scale"),
            ),
            (
                &d,
                vec![("min-scale", "5"), ("max-scale", "2")],
                format!("max-scale=2 is less than min-scale=5: {p}/max-scale, {p}/min-scale"),
            ),
            (
                &d,
                vec![("minScale", "5"), ("maxScale", "2")],
                format!("max-scale=2 is less than min-scale=5: {p}/max-scale, {p}/min-scale"),
            ),
            (
                &limited,
                vec![("max-scale", "11")],
                format!("expected 1 <= 11 <= 10: {p}/max-scale"),
            ),
            (
                &limited,
                vec![("max-scale", "0")],
                format!("max-scale=0 (unlimited), must be less than 10: {p}/max-scale"),
            ),
            (&limited, vec![("max-scale", "10")], String::new()),
            (
                &d,
                vec![("activation-scale", "1")],
                format!("activation-scale=1 must be greater than 1: {p}/activation-scale"),
            ),
            (
                &d,
                vec![("min-scale", "3"), ("activation-scale", "2")],
                format!("min-scale=3 is greater than activation-scale=2: {p}/activation-scale"),
            ),
            (
                &d,
                vec![("max-scale", "3"), ("activation-scale", "4")],
                format!("max-scale=3 is less than activation-scale=4: {p}/activation-scale"),
            ),
            (
                &d,
                vec![("activation-scale", "x")],
                format!("invalid value: x: {p}/activation-scale"),
            ),
            (
                &d,
                vec![("initial-scale", "0")],
                format!("invalid value: 0: {p}/initial-scale=0 not allowed by cluster"),
            ),
            (&zero_ok, vec![("initial-scale", "0")], String::new()),
            (
                &d,
                vec![("initial-scale", "-1")],
                format!("invalid value: -1: {p}/initial-scale must be greater than 0"),
            ),
            (
                &d,
                vec![("initialScale", "two")],
                format!("invalid value: two: {p}/initialScale"),
            ),
            (
                &d,
                vec![("target", "0.001")],
                format!("target 0.001 should be at least 0.01: {p}/target"),
            ),
            (
                &d,
                vec![("target", "x")],
                format!("invalid value: x: {p}/target"),
            ),
            (
                &d,
                vec![("target-utilization-percentage", "101")],
                format!("expected 1 <= 101 <= 100: {p}/target-utilization-percentage"),
            ),
            (
                &d,
                vec![("panic-window-percentage", "0.5")],
                format!("expected 1 <= 0.5 <= 100: {p}/panic-window-percentage"),
            ),
            (
                &d,
                vec![("panic-threshold-percentage", "105")],
                format!("expected 110 <= 105 <= 1000: {p}/panic-threshold-percentage"),
            ),
            (
                &d,
                vec![("target-burst-capacity", "-2")],
                format!("invalid value: -2: {p}/target-burst-capacity"),
            ),
            (&d, vec![("target-burst-capacity", "-1")], String::new()),
            (
                &d,
                vec![("window", "5s")],
                format!("expected 6s <= 5s <= 1h0m0s: {p}/window"),
            ),
            (
                &d,
                vec![("window", "2h")],
                format!("expected 6s <= 2h <= 1h0m0s: {p}/window"),
            ),
            (
                &d,
                vec![("window", "10.5s")],
                format!("must be specified with at most second precision: {p}/window"),
            ),
            (
                &d,
                vec![("window", "x")],
                format!("invalid value: x: {p}/window"),
            ),
            (
                &d,
                vec![("scale-down-delay", "-1s")],
                format!("expected 0s <= -1s <= 1h0m0s: {p}/scale-down-delay"),
            ),
            (
                &d,
                vec![("scale-down-delay", "1.5s")],
                format!("must be specified with at most second precision: {p}/scale-down-delay"),
            ),
            (
                &d,
                vec![("scale-to-zero-pod-retention-period", "2h")],
                format!("expected 0s <= 2h <= 1h0m0s: {p}/scale-to-zero-pod-retention-period"),
            ),
            (
                &d,
                vec![("scale-to-zero-pod-retention-period", "1.5s")],
                String::new(),
            ),
            (
                &d,
                vec![("class", "foo.knative.dev")],
                format!("invalid value: foo.knative.dev: {p}/class"),
            ),
            (&d, vec![("class", "custom.example.com")], String::new()),
            (
                &d,
                vec![("metric", "cpu")],
                format!("invalid value: cpu: {p}/metric"),
            ),
            (&d, vec![("metric", "rps")], String::new()),
            (
                &d,
                vec![
                    ("class", "hpa.autoscaling.knative.dev"),
                    ("metric", "memory"),
                ],
                String::new(),
            ),
            (
                &d,
                vec![
                    ("class", "kpa.autoscaling.knative.dev"),
                    ("metric-aggregation-algorithm", "median"),
                ],
                format!("invalid value: median: {p}/metric-aggregation-algorithm"),
            ),
            // Without an explicit KPA class the algorithm is not checked.
            (
                &d,
                vec![("metric-aggregation-algorithm", "median")],
                String::new(),
            ),
            // Several errors: all of them, sorted by message.
            (
                &d,
                vec![("min-scale", "x"), ("window", "1s")],
                format!("expected 6s <= 1s <= 1h0m0s: {p}/window\ninvalid value: x: {p}/min-scale"),
            ),
        ];
        for (config, input, want) in cases {
            assert_eq!(check(config, &input), want, "{input:?}");
        }
    }
}
