//! Gradual rollout (Knative's `rollout-duration`): when a configuration
//! target moves to a new revision, traffic moves over in steps instead of at
//! once. The state travels from one reconcile to the next in the Route's
//! status (`status.rollout`, the shape of Knative's Ingress annotation
//! `serving.knative.dev/rollout`), so a rollout survives a restart.
//!
//! The stepping follows knative/serving pkg/reconciler/route/traffic
//! rollout.go: a new revision starts at 1 %, the time that first step took
//! (at least 1 s) sets the number of steps within the duration, and each
//! step moves an equal share from the newest older revision to the new one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_api::serving::TrafficTarget;

const NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Sorted by tag, then configuration name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configurations: Vec<ConfigRollout>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRollout {
    pub configuration_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The configuration's share of the route; the revisions' percents sum
    /// to it.
    pub percent: i64,
    /// Oldest first; the last is the one being rolled out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionRollout>,
    #[serde(default)]
    pub step_params: StepParams,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRollout {
    pub revision_name: String,
    pub percent: i64,
}

/// Times are Unix nanoseconds, as upstream stores them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepParams {
    #[serde(default, rename = "starttime", skip_serializing_if = "is_zero")]
    pub start_time: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_step_time: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step_duration: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step_size: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Rollout {
    /// What traffic asks for now, without any rollout: each untagged
    /// `latestRevision` configuration target with a share, on its latest
    /// ready revision. `resolved` carries configuration names.
    pub fn baseline(resolved: &[TrafficTarget]) -> Rollout {
        let mut configs: Vec<ConfigRollout> = Vec::new();
        for t in resolved {
            let (Some(cfg), Some(rev)) = (&t.configuration_name, &t.revision_name) else {
                continue;
            };
            let pct = t.percent.unwrap_or(0);
            if t.tag.is_some() || t.latest_revision != Some(true) || pct == 0 {
                continue;
            }
            match configs.iter_mut().find(|c| &c.configuration_name == cfg) {
                Some(c) => {
                    c.percent += pct;
                    c.revisions[0].percent += pct;
                }
                None => configs.push(ConfigRollout {
                    configuration_name: cfg.clone(),
                    tag: String::new(),
                    percent: pct,
                    revisions: vec![RevisionRollout {
                        revision_name: rev.clone(),
                        percent: pct,
                    }],
                    step_params: StepParams::default(),
                }),
            }
        }
        configs
            .sort_by(|a, b| (&a.tag, &a.configuration_name).cmp(&(&b.tag, &b.configuration_name)));
        Rollout {
            configurations: configs,
        }
    }

    /// Consistent with itself (a corrupted state is discarded).
    pub fn is_valid(&self) -> bool {
        self.configurations.iter().all(|c| {
            c.percent <= 100
                && c.step_params.step_size >= 0
                && c.step_params.step_size <= c.percent
                && c.revisions.iter().map(|r| r.percent).sum::<i64>() == c.percent
        })
    }

    /// No configuration is between revisions.
    pub fn done(&self) -> bool {
        self.configurations.iter().all(|c| c.revisions.len() <= 1)
    }

    /// Merge the desired shape (`self`) with the previous state: continue or
    /// start rollouts. Returns the effective state and when the next step is
    /// due (Unix ns), if one is.
    pub fn step(self, prev: Option<&Rollout>, now: i64) -> (Rollout, Option<i64>) {
        let Some(prev) = prev.filter(|p| !p.configurations.is_empty()) else {
            return (self, None);
        };
        let mut next: Option<i64> = None;
        let mut out = Vec::with_capacity(self.configurations.len());
        for goal in self.configurations {
            let old = prev
                .configurations
                .iter()
                .find(|p| p.tag == goal.tag && p.configuration_name == goal.configuration_name);
            match old {
                Some(old) if goal.percent > 1 => {
                    let c = step_config(goal, old.clone(), now);
                    if c.step_params.next_step_time > 0 {
                        next = Some(next.map_or(c.step_params.next_step_time, |n: i64| {
                            n.min(c.step_params.next_step_time)
                        }));
                    }
                    out.push(c);
                }
                // New configuration, or a 1 % share: nothing to roll out.
                _ => out.push(goal),
            }
        }
        (
            Rollout {
                configurations: out,
            },
            next,
        )
    }

    /// Compute step sizes for rollouts that just started: the first 1 %
    /// took `now - start` (at least 1 s); the rest shares the duration.
    pub fn observe_ready(&mut self, now: i64, duration: Duration) -> Option<i64> {
        let secs = duration.as_secs_f64();
        for c in &mut self.configurations {
            let p = &mut c.step_params;
            if p.step_duration == 0 && p.start_time > 0 {
                let first = ((now - p.start_time) as f64 / NANOS as f64).ceil().max(1.0);
                let remaining_secs = (secs - first).max(1.0);
                let rem_percent = (c.percent - 1) as f64;
                let steps = (remaining_secs / first).max(1.0).min(rem_percent.max(1.0));
                p.step_size = (rem_percent / steps).round() as i64;
                p.step_duration = (remaining_secs / steps * NANOS as f64) as i64;
                p.next_step_time = now + p.step_duration;
            }
        }
        self.configurations
            .iter()
            .filter(|c| c.revisions.len() > 1)
            .map(|c| c.step_params.next_step_time)
            .filter(|t| *t > 0)
            .min()
    }

    /// The traffic list with each rolling configuration target expanded
    /// into its revisions and their current shares. `status` is resolved
    /// traffic; a `latestRevision` untagged entry whose revision is the one
    /// being rolled out becomes several entries.
    pub fn apply(&self, status: Vec<TrafficTarget>) -> Vec<TrafficTarget> {
        let mut out = Vec::with_capacity(status.len() + 1);
        for t in status {
            let rolling = (t.tag.is_none() && t.latest_revision == Some(true))
                .then(|| {
                    self.configurations.iter().find(|c| {
                        c.revisions.len() > 1
                            && c.revisions.last().map(|r| &r.revision_name)
                                == t.revision_name.as_ref()
                    })
                })
                .flatten();
            match rolling {
                Some(c) => {
                    for r in &c.revisions {
                        let mut e = t.clone();
                        e.revision_name = Some(r.revision_name.clone());
                        e.percent = Some(r.percent);
                        out.push(e);
                    }
                }
                None => out.push(t),
            }
        }
        out
    }
}

/// Take traffic off the oldest revisions (or add it to the newest) when the
/// configuration's share changed.
fn adjust_percentage(goal: i64, c: &mut ConfigRollout) {
    let diff = goal - c.percent;
    if goal == 0 {
        c.revisions.clear();
    } else if diff > 0 {
        if let Some(last) = c.revisions.last_mut() {
            last.percent += diff;
        }
    } else if diff < 0 {
        let mut rest = -diff;
        let mut cut = 0;
        for r in c.revisions.iter_mut() {
            if r.percent > rest {
                r.percent -= rest;
                break;
            }
            rest -= r.percent;
            cut += 1;
        }
        c.revisions.drain(..cut.min(c.revisions.len()));
    }
    c.percent = goal;
}

fn step_config(goal: ConfigRollout, mut prev: ConfigRollout, now: i64) -> ConfigRollout {
    if !prev.revisions.is_empty() {
        adjust_percentage(goal.percent, &mut prev);
    }
    let mut ret = ConfigRollout {
        step_params: StepParams::default(),
        ..goal.clone()
    };
    let same_target = prev
        .revisions
        .last()
        .is_none_or(|r| r.revision_name == goal.revisions[0].revision_name);
    if same_target {
        if prev.revisions.len() > 1 {
            ret.revisions = prev.revisions;
            ret.step_params = prev.step_params;
            if ret.step_params.step_size > 0 {
                step_revisions(&mut ret, now);
            }
        }
        return ret;
    }
    // A new revision: it gets 1 %, taken from the newest revision with any.
    ret.step_params.start_time = now;
    if let Some(r) = prev.revisions.iter_mut().rev().find(|r| r.percent > 0) {
        r.percent -= 1;
    }
    let mut revisions: Vec<RevisionRollout> = prev
        .revisions
        .into_iter()
        .filter(|r| r.percent > 0)
        .collect();
    revisions.push(RevisionRollout {
        revision_name: goal.revisions[0].revision_name.clone(),
        percent: 1,
    });
    ret.revisions = revisions;
    ret
}

/// Move one step of traffic to the newest revision when it is due.
fn step_revisions(c: &mut ConfigRollout, now: i64) {
    if now < c.step_params.next_step_time || c.revisions.len() < 2 {
        return;
    }
    let n = c.revisions.len();
    let mut remaining = c.step_params.step_size;
    let mut write = n - 1;
    let mut read = n as i64 - 2;
    while remaining > 0 && read >= 0 {
        let r = &mut c.revisions[read as usize];
        if r.percent > remaining {
            r.percent -= remaining;
            break;
        }
        remaining -= r.percent;
        write -= 1;
        read -= 1;
    }
    c.revisions[write] = c.revisions[n - 1].clone();
    c.revisions[write].percent =
        (c.revisions[write].percent + c.step_params.step_size).min(c.percent);
    c.revisions.truncate(write + 1);
    if c.revisions.len() > 1 {
        c.step_params.next_step_time = now + c.step_params.step_duration;
    } else {
        c.step_params = StepParams::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(cfg: &str, rev: &str, pct: i64) -> TrafficTarget {
        TrafficTarget {
            configuration_name: Some(cfg.into()),
            revision_name: Some(rev.into()),
            latest_revision: Some(true),
            percent: Some(pct),
            ..Default::default()
        }
    }

    fn shares(r: &Rollout) -> Vec<(String, i64)> {
        r.configurations[0]
            .revisions
            .iter()
            .map(|r| (r.revision_name.clone(), r.percent))
            .collect()
    }

    #[test]
    fn a_new_revision_starts_at_one_percent_and_steps_to_all() {
        let s = 1_000 * NANOS;
        let first = Rollout::baseline(&[target("c", "c-1", 100)]);
        assert!(first.done());
        // c-2 becomes ready: 1 % moves at once.
        let (mut r, _) = Rollout::baseline(&[target("c", "c-2", 100)]).step(Some(&first), s);
        assert_eq!(shares(&r), [("c-1".into(), 99), ("c-2".into(), 1)]);
        // 100 s rollout: first step took 1 s, 99 s left in 99 steps of 1 %.
        let next = r.observe_ready(s, Duration::from_secs(100)).unwrap();
        assert_eq!(r.configurations[0].step_params.step_size, 1);
        assert_eq!(next, s + 99 * NANOS / 99);
        // Not due yet: nothing moves.
        let (r2, _) = Rollout::baseline(&[target("c", "c-2", 100)]).step(Some(&r), s + 1);
        assert_eq!(shares(&r2), [("c-1".into(), 99), ("c-2".into(), 1)]);
        // Due: one step.
        let (r3, due) = Rollout::baseline(&[target("c", "c-2", 100)]).step(Some(&r2), next);
        assert_eq!(shares(&r3), [("c-1".into(), 98), ("c-2".into(), 2)]);
        assert_eq!(
            due,
            Some(next + r2.configurations[0].step_params.step_duration)
        );
        // Play it out: it ends with everything on c-2 and no params.
        let mut state = r3;
        let mut t = next;
        for _ in 0..200 {
            t += state.configurations[0].step_params.step_duration.max(1);
            state = Rollout::baseline(&[target("c", "c-2", 100)])
                .step(Some(&state), t)
                .0;
            if state.done() {
                break;
            }
            assert_eq!(
                state.configurations[0]
                    .revisions
                    .iter()
                    .map(|r| r.percent)
                    .sum::<i64>(),
                100
            );
        }
        assert!(state.done());
        assert_eq!(shares(&state), [("c-2".into(), 100)]);
        assert_eq!(state.configurations[0].step_params, StepParams::default());
    }

    #[test]
    fn short_durations_use_big_steps() {
        let s = 50 * NANOS;
        let first = Rollout::baseline(&[target("c", "c-1", 100)]);
        let (mut r, _) = Rollout::baseline(&[target("c", "c-2", 100)]).step(Some(&first), s);
        r.observe_ready(s, Duration::from_secs(5));
        // 4 s left after the first second: 4 steps of round(99/4) = 25 %.
        assert_eq!(r.configurations[0].step_params.step_size, 25);
        assert_eq!(r.configurations[0].step_params.step_duration, NANOS);
    }

    #[test]
    fn stacked_revisions_drain_the_newest_older_first() {
        let s = NANOS;
        let first = Rollout::baseline(&[target("c", "c-1", 100)]);
        let (mut r, _) = Rollout::baseline(&[target("c", "c-2", 100)]).step(Some(&first), s);
        r.observe_ready(s, Duration::from_secs(100));
        // c-3 arrives mid-rollout: its 1 % comes from c-2.
        let (r2, _) = Rollout::baseline(&[target("c", "c-3", 100)]).step(Some(&r), s + 1);
        assert_eq!(shares(&r2), [("c-1".into(), 99), ("c-3".into(), 1)]);
    }

    #[test]
    fn expanded_status_keeps_the_other_targets() {
        let s = NANOS;
        let first = Rollout::baseline(&[target("c", "c-1", 80)]);
        let (r, _) = Rollout::baseline(&[target("c", "c-2", 80)]).step(Some(&first), s);
        let pinned = TrafficTarget {
            revision_name: Some("other-1".into()),
            latest_revision: Some(false),
            percent: Some(20),
            ..Default::default()
        };
        let status = vec![
            TrafficTarget {
                configuration_name: None,
                ..target("c", "c-2", 80)
            },
            pinned.clone(),
        ];
        let out = r.apply(status);
        let got: Vec<_> = out
            .iter()
            .map(|t| (t.revision_name.clone().unwrap(), t.percent.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("c-1".into(), 79),
                ("c-2".into(), 1),
                ("other-1".into(), 20)
            ]
        );
    }

    #[test]
    fn a_corrupted_state_is_invalid() {
        let mut r = Rollout::baseline(&[target("c", "c-1", 100)]);
        assert!(r.is_valid());
        r.configurations[0].revisions[0].percent = 50;
        assert!(!r.is_valid());
    }
}
