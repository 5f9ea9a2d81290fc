//! `skiff autoscaler simulate`: what the KPA would do with a revision's
//! settings, given per-second load samples (concurrency or requests per
//! second, as revision totals). The same code as the live autoscaler runs on
//! a simulated clock: 1-second metric buckets, a decision every 2 seconds
//! (and at once when load arrives at zero, as the activator's poke does),
//! the PodAutoscaler's bounds and scale-to-zero waits, and instances that
//! become ready a fixed time after they are started.

use std::time::Duration;

use crate::decider::{Autoscaler, DeciderStatus, TICK};
use crate::metrics::{Collection, Stat};
use crate::scaler::{Mode, PodAutoscaler, Reachability};
use crate::spec::{RevisionSettings, ScalingMetric};
use crate::time::Time;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub t_s: f64,
    /// The load sample of this second.
    pub load: f64,
    /// Window averages the decision saw (None: no data yet).
    pub stable: Option<f64>,
    pub panic: Option<f64>,
    /// The decider's desired pod count (-1: no decision yet).
    pub decided: i32,
    /// Instances asked of the runtime after bounds and scale-to-zero.
    pub instances: i32,
    pub ready: i32,
    pub panicking: bool,
    pub excess_burst_capacity: i32,
    pub activator_in_path: bool,
    /// Why the instance count changed at this tick.
    pub reason: Option<String>,
}

pub struct Simulation {
    pub settings: RevisionSettings,
    /// How long a started instance takes to become ready.
    pub startup: Duration,
    /// Seconds of zero load simulated after the samples end.
    pub tail: Duration,
}

impl Simulation {
    pub fn run(&self, samples: &[f64]) -> Vec<Row> {
        let s = &self.settings;
        let start = Time::from_secs(0);
        let reach = Reachability::Reachable;
        let mut collection =
            Collection::new(s.stable_window, s.panic_window, s.algorithm, s.scraped());
        let spec = s.decider_spec(true);
        let mut status = DeciderStatus::initial(&spec);
        let mut decider = Autoscaler::new(spec, Some(0), start);
        let mut pa = PodAutoscaler::new(s, reach, start);
        // Ready time of each running instance.
        let mut pods: Vec<Time> = (0..pa.replicas())
            .map(|_| start.plus(self.startup))
            .collect();
        let total = samples.len() as i64 + self.tail.as_secs() as i64;
        let tick = TICK.as_secs() as i64;
        let mut rows = Vec::new();
        for sec in 0..total {
            let now = Time::from_secs(sec);
            let load = samples.get(sec as usize).copied().unwrap_or(0.0);
            let ready = pods.iter().filter(|r| **r <= now).count() as i32;
            let stat = match s.metric {
                ScalingMetric::Concurrency => Stat {
                    average_concurrent_requests: load,
                    request_count: load,
                    ..Default::default()
                },
                ScalingMetric::Rps => Stat {
                    request_count: load,
                    average_concurrent_requests: load,
                    ..Default::default()
                },
            };
            // The queue-proxies report only while instances run; requests
            // at zero reach the activator, which reports too.
            if ready > 0 || load > 0.0 {
                collection.record(now, &stat);
            }
            let poke = load > 0.0 && status.desired_scale <= 0 && ready == 0;
            if sec % tick != 0 && !poke {
                continue;
            }
            let observed = match s.metric {
                ScalingMetric::Concurrency => collection.stable_and_panic_concurrency(now),
                ScalingMetric::Rps => collection.stable_and_panic_rps(now),
            };
            let r = decider.scale::<(), _>(Ok(ready), observed, now);
            status.update(&r);
            let d = pa.reconcile(s, reach, &status, ready, now);
            if let Some(n) = d.apply {
                let n = n.max(0) as usize;
                if n > pods.len() {
                    pods.extend((pods.len()..n).map(|_| now.plus(self.startup)));
                } else {
                    // Instances not ready yet go first.
                    pods.sort();
                    pods.truncate(n);
                }
            }
            rows.push(Row {
                t_s: now.as_secs_f64(),
                load,
                stable: observed.ok().map(|o| o.0),
                panic: observed.ok().map(|o| o.1),
                decided: status.desired_scale,
                instances: pods.len() as i32,
                ready,
                panicking: decider.panicking(),
                excess_burst_capacity: status.excess_burst_capacity,
                activator_in_path: d.mode == Mode::Proxy,
                reason: d.reason,
            });
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::config::AutoscalerConfig;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)], cc: Option<i64>) -> RevisionSettings {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("autoscaling.knative.dev/{k}"), v.to_string()))
            .collect();
        RevisionSettings::resolve(&AutoscalerConfig::default(), &a, cc)
    }

    #[test]
    fn a_burst_scales_up_in_panic_then_back_to_zero() {
        let sim = Simulation {
            settings: settings(&[("window", "6s")], Some(1)),
            startup: Duration::from_secs(1),
            tail: Duration::from_secs(60),
        };
        // 10 s idle, 10 s at 10 concurrent requests, then nothing.
        let mut samples = vec![0.0; 10];
        samples.extend(std::iter::repeat_n(10.0, 10));
        let rows = sim.run(&samples);
        let at = |t: f64| rows.iter().find(|r| r.t_s == t).unwrap();
        // CC 1 at 70 %: 10 / 0.7 -> 15 instances, in panic.
        let peak = rows.iter().map(|r| r.instances).max().unwrap();
        assert_eq!(peak, 15);
        assert!(rows.iter().any(|r| r.panicking));
        assert!(at(12.0).activator_in_path);
        // Back to zero well after the load stopped.
        let last = rows.last().unwrap();
        assert_eq!(last.instances, 0);
        assert!(rows.iter().any(|r| {
            r.reason
                .as_deref()
                .is_some_and(|x| x.contains("no traffic"))
        }));
    }

    #[test]
    fn max_scale_caps_and_min_scale_holds() {
        let sim = Simulation {
            settings: settings(
                &[("min-scale", "2"), ("max-scale", "3"), ("window", "6s")],
                Some(1),
            ),
            startup: Duration::ZERO,
            tail: Duration::from_secs(120),
        };
        let rows = sim.run(&[50.0; 20]);
        assert!(rows.iter().all(|r| r.instances <= 3));
        assert!(rows.iter().skip(1).all(|r| r.instances >= 2), "{rows:?}");
        assert_eq!(rows.last().unwrap().instances, 2);
    }
}
