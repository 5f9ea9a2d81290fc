//! `skiff autoscaler decide`: replay the decider on recorded inputs. The
//! input gives the DeciderSpec, the state at creation and a list of steps
//! (observed revision totals at a time since creation); the output is one
//! Scale() result per step. Time 0 is the autoscaler's creation, counted as
//! Unix second 0 (so the scale-down-delay slots are `floor(t_s / 2)`).

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::decider::{Autoscaler, DeciderSpec};
use crate::spec::ScalingMetric;
use crate::time::Time;

#[derive(Debug, Clone, Deserialize)]
pub struct SpecInput {
    #[serde(default = "concurrency")]
    pub scaling_metric: String,
    pub target_value: f64,
    pub total_value: f64,
    pub target_burst_capacity: f64,
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    #[serde(default = "activator_capacity")]
    pub activator_capacity: f64,
    pub stable_window_s: f64,
    #[serde(default)]
    pub scale_down_delay_s: f64,
    #[serde(default = "yes")]
    pub reachable: bool,
    #[serde(default)]
    pub activation_scale: i32,
}

fn concurrency() -> String {
    "concurrency".into()
}
fn activator_capacity() -> f64 {
    100.0
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InitInput {
    #[serde(default)]
    pub ready_pods_at_creation: i32,
    pub panic_start_t_s: Option<f64>,
    pub max_panic_pods: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StepInput {
    pub t_s: f64,
    pub ready_pods: i32,
    pub observed_stable: f64,
    pub observed_panic: f64,
    pub spec_update: Option<SpecInput>,
    #[serde(default)]
    pub ready_count_error: bool,
    #[serde(default)]
    pub metric_error: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Input {
    pub spec: SpecInput,
    #[serde(default)]
    pub init: InitInput,
    pub steps: Vec<StepInput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutput {
    pub scale_valid: bool,
    pub desired_pod_count: i32,
    pub excess_burst_capacity: i32,
    pub panicking: bool,
}

fn secs(what: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && s >= 0.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))
    }
}

impl SpecInput {
    pub fn to_spec(&self) -> Result<DeciderSpec, String> {
        let metric = match self.scaling_metric.as_str() {
            "rps" => ScalingMetric::Rps,
            // Anything else scales on concurrency, as in Knative.
            _ => ScalingMetric::Concurrency,
        };
        Ok(DeciderSpec {
            max_scale_up_rate: self.max_scale_up_rate,
            max_scale_down_rate: self.max_scale_down_rate,
            scaling_metric: metric,
            target_value: self.target_value,
            total_value: self.total_value,
            target_burst_capacity: self.target_burst_capacity,
            activator_capacity: self.activator_capacity,
            panic_threshold: self.panic_threshold,
            stable_window: secs("stable_window_s", self.stable_window_s)?,
            scale_down_delay: secs("scale_down_delay_s", self.scale_down_delay_s)?,
            initial_scale: 1,
            reachable: self.reachable,
            activation_scale: self.activation_scale,
        })
    }
}

/// Run the steps in order on one autoscaler.
pub fn run(input: &Input) -> Result<Vec<StepOutput>, String> {
    let spec = input.spec.to_spec()?;
    let created = Time::from_secs(0);
    let mut a = Autoscaler::new(spec, Some(input.init.ready_pods_at_creation), created);
    if input.init.panic_start_t_s.is_some() || input.init.max_panic_pods.is_some() {
        let panic_time = match input.init.panic_start_t_s {
            Some(t) => Some(Time::from_secs_f64(t)),
            None => a.panicking().then_some(created),
        };
        let max = input
            .init
            .max_panic_pods
            .unwrap_or(input.init.ready_pods_at_creation);
        a.set_panic(panic_time, max);
    }
    let mut out = Vec::with_capacity(input.steps.len());
    for (i, step) in input.steps.iter().enumerate() {
        if !step.t_s.is_finite() {
            return Err(format!("steps[{i}].t_s is not a number"));
        }
        if let Some(update) = &step.spec_update {
            a.update(
                update
                    .to_spec()
                    .map_err(|e| format!("steps[{i}].spec_update: {e}"))?,
            );
        }
        let ready = if step.ready_count_error {
            Err(())
        } else {
            Ok(step.ready_pods)
        };
        let observed = if step.metric_error {
            Err(())
        } else {
            Ok((step.observed_stable, step.observed_panic))
        };
        let r = a.scale(ready, observed, Time::from_secs_f64(step.t_s));
        out.push(StepOutput {
            scale_valid: r.scale_valid,
            desired_pod_count: r.desired_pod_count,
            excess_burst_capacity: r.excess_burst_capacity,
            panicking: a.panicking(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(json: &str) -> Vec<StepOutput> {
        let input: Input = serde_json::from_str(json).unwrap();
        run(&input).unwrap()
    }

    const SPEC: &str = r#""spec": {"scaling_metric": "concurrency", "target_value": 10, "total_value": 10,
        "target_burst_capacity": 20, "panic_threshold": 2.0, "max_scale_up_rate": 1000,
        "max_scale_down_rate": 2, "activator_capacity": 100, "stable_window_s": 60,
        "scale_down_delay_s": 0, "reachable": true, "activation_scale": 0}"#;

    #[test]
    fn replays_a_burst_and_its_panic() {
        let out = decide(&format!(
            r#"{{{SPEC}, "init": {{"ready_pods_at_creation": 1}}, "steps": [
            {{"t_s": 2, "ready_pods": 1, "observed_stable": 5, "observed_panic": 5}},
            {{"t_s": 4, "ready_pods": 1, "observed_stable": 8, "observed_panic": 95}},
            {{"t_s": 6, "ready_pods": 10, "observed_stable": 20, "observed_panic": 20}},
            {{"t_s": 8, "ready_pods": 10, "observed_stable": 20, "observed_panic": 20, "metric_error": true}},
            {{"t_s": 70, "ready_pods": 10, "observed_stable": 20, "observed_panic": 20}}
        ]}}"#
        ));
        let got: Vec<(bool, i32, i32, bool)> = out
            .iter()
            .map(|o| {
                (
                    o.scale_valid,
                    o.desired_pod_count,
                    o.excess_burst_capacity,
                    o.panicking,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (true, 1, -15, false),  // 10 - 20 - 5
                (true, 10, -105, true), // 95/10 -> 10 pods, 10/1 >= 2: panic
                (true, 10, 60, true),   // holds 10 while panicking
                (false, 0, 0, true),
                (true, 5, 60, false), // panic over; stable 2, down rate 10/2
            ]
        );
    }

    #[test]
    fn init_can_start_in_panic_and_specs_update() {
        let out = decide(&format!(
            r#"{{{SPEC}, "init": {{"ready_pods_at_creation": 1, "panic_start_t_s": 0, "max_panic_pods": 7}},
            "steps": [
              {{"t_s": 2, "ready_pods": 7, "observed_stable": 0, "observed_panic": 0}},
              {{"t_s": 4, "ready_pods": 7, "observed_stable": 0, "observed_panic": 0, "ready_count_error": true}},
              {{"t_s": 61, "ready_pods": 7, "observed_stable": 0, "observed_panic": 0,
                "spec_update": {{"target_value": 1, "total_value": 1, "target_burst_capacity": 0,
                  "panic_threshold": 2, "max_scale_up_rate": 1000, "max_scale_down_rate": 2,
                  "stable_window_s": 60, "reachable": false}}}}
            ]}}"#
        ));
        assert_eq!(out[0].desired_pod_count, 7);
        assert!(out[0].panicking);
        assert!(!out[1].scale_valid);
        // Panic over (0 + 60 < 61), unreachable: straight to 0; TBC 0 -> EBC 0.
        assert_eq!(
            (
                out[2].desired_pod_count,
                out[2].excess_burst_capacity,
                out[2].panicking
            ),
            (0, 0, false)
        );
    }
}
