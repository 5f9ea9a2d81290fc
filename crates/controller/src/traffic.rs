//! Traffic resolution (Knative's BuildTrafficConfiguration): turn a Route's
//! spec targets into concrete revisions, the status traffic list, and the
//! per-host routing groups. Pure: lookups are passed in.

use std::collections::HashMap;

use skiff_api::condition::{self, ConditionStatus};
use skiff_api::labels;
use skiff_api::serving::{Configuration, Revision, TrafficTarget, conditions};

/// Why traffic could not be assigned; maps to AllTrafficAssigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficError {
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl TrafficError {
    fn failure(reason: &'static str, message: String) -> TrafficError {
        TrafficError {
            status: ConditionStatus::False,
            reason,
            message,
        }
    }

    fn unknown(reason: &'static str, message: String) -> TrafficError {
        TrafficError {
            status: ConditionStatus::Unknown,
            reason,
            message,
        }
    }

    fn is_failure(&self) -> bool {
        self.status == ConditionStatus::False
    }
}

/// One routing group: the main host (`tag` None) or a tag's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tag: Option<String>,
    /// Revisions and their percents, first-seen order, each revision once.
    pub targets: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `status.traffic` without URLs.
    pub status: Vec<TrafficTarget>,
    pub groups: Vec<Group>,
    /// Each spec target resolved, in order, keeping the configuration a
    /// configuration target named (for gradual rollouts).
    pub targets: Vec<TrafficTarget>,
}

/// Objects of the Route's namespace, by name.
pub struct Lookup<'a> {
    pub revisions: &'a HashMap<String, Revision>,
    pub configurations: &'a HashMap<String, Configuration>,
}

fn ready_status(conds: Option<&[skiff_api::Condition]>) -> ConditionStatus {
    conds
        .and_then(|c| condition::get(c, conditions::READY))
        .map_or(ConditionStatus::Unknown, |c| c.status)
}

/// Resolve `spec` for a Route owned by `service` (the Route's
/// `serving.knative.dev/service` label, if any).
pub fn resolve(
    spec: &[TrafficTarget],
    service: Option<&str>,
    lookup: &Lookup<'_>,
) -> Result<Resolved, TrafficError> {
    let mut error: Option<TrafficError> = None;
    let mut defer = |e: TrafficError| {
        // A failure overwrites an earlier error; a non-failure never does.
        if error.is_none() || e.is_failure() {
            error = Some(e);
        }
    };
    let mut flat: Vec<TrafficTarget> = Vec::new();
    for t in spec {
        let mut configuration = None;
        let revision_name = if let Some(rev) = t.revision_name.as_deref().filter(|r| !r.is_empty())
        {
            match check_revision(rev, service, lookup) {
                Ok(()) => rev.to_string(),
                Err(e) => {
                    defer(e);
                    continue;
                }
            }
        } else if let Some(cfg) = t.configuration_name.as_deref().filter(|c| !c.is_empty()) {
            let Some(c) = lookup.configurations.get(cfg) else {
                defer(TrafficError::failure(
                    "ConfigurationMissing",
                    format!("Configuration {cfg:?} referenced in traffic not found."),
                ));
                continue;
            };
            let status = c.status.as_ref();
            let Some(latest) = status.and_then(|s| s.latest_ready_revision_name.as_deref()) else {
                let failed =
                    ready_status(status.map(|s| s.conditions.as_slice())) == ConditionStatus::False;
                defer(if failed {
                    TrafficError::failure(
                        "RevisionMissing",
                        format!("Configuration {cfg:?} does not have any ready Revision."),
                    )
                } else {
                    TrafficError::unknown(
                        "RevisionMissing",
                        format!("Configuration {cfg:?} is waiting for a Revision to become ready."),
                    )
                });
                continue;
            };
            configuration = Some(cfg.to_string());
            match check_revision(latest, service, lookup) {
                Ok(()) => latest.to_string(),
                Err(e) => {
                    defer(e);
                    continue;
                }
            }
        } else {
            defer(TrafficError::failure(
                "ConfigurationMissing",
                "a traffic target names neither a revision nor a configuration".to_string(),
            ));
            continue;
        };
        flat.push(TrafficTarget {
            tag: t.tag.clone().filter(|t| !t.is_empty()),
            revision_name: Some(revision_name),
            configuration_name: configuration,
            latest_revision: t.latest_revision,
            percent: t.percent,
            url: None,
            extra: Default::default(),
        });
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(Resolved {
        status: merge_status(&flat),
        groups: groups(&flat),
        targets: flat,
    })
}

fn check_revision(
    name: &str,
    service: Option<&str>,
    lookup: &Lookup<'_>,
) -> Result<(), TrafficError> {
    let Some(rev) = lookup.revisions.get(name) else {
        return Err(TrafficError::failure(
            "RevisionMissing",
            format!("Revision {name:?} referenced in traffic not found."),
        ));
    };
    if let Some(svc) = service {
        match rev.metadata.label(labels::SERVICE) {
            Some(owner) if owner == svc => {}
            Some(owner) => {
                return Err(TrafficError::failure(
                    "RevisionNotOwned",
                    format!("Revision {name:?} belongs to Service {owner:?}, not Service {svc:?}."),
                ));
            }
            None => {
                return Err(TrafficError::failure(
                    "RevisionNotOwned",
                    format!("Revision {name:?} does not belong to Service {svc:?}."),
                ));
            }
        }
    }
    match ready_status(rev.status.as_ref().map(|s| s.conditions.as_slice())) {
        ConditionStatus::True => Ok(()),
        ConditionStatus::False => Err(TrafficError::failure(
            "RevisionMissing",
            format!("Revision {name:?} failed to become ready."),
        )),
        ConditionStatus::Unknown => Err(TrafficError::unknown(
            "RevisionMissing",
            format!("Revision {name:?} is not yet ready."),
        )),
    }
}

/// Status entries with equal (tag, revision, latestRevision) are merged by
/// summing their percents; spec order is kept.
fn merge_status(flat: &[TrafficTarget]) -> Vec<TrafficTarget> {
    let mut out: Vec<TrafficTarget> = Vec::new();
    for t in flat {
        match out.iter_mut().find(|o| {
            o.tag == t.tag
                && o.revision_name == t.revision_name
                && o.latest_revision == t.latest_revision
        }) {
            Some(o) => o.percent = Some(o.percent.unwrap_or(0) + t.percent.unwrap_or(0)),
            // Status traffic names revisions only.
            None => out.push(TrafficTarget {
                configuration_name: None,
                ..t.clone()
            }),
        }
    }
    out
}

/// Routing groups of resolved targets (e.g. a Route's `status.traffic`).
pub fn groups_of(resolved: &[TrafficTarget]) -> Vec<Group> {
    groups(resolved)
}

/// The main group gets every target; each tag gets its own. Within a group a
/// revision appears once (percents summed); a group of one revision gets
/// 100 %, so a tag at 0 % still serves its own host fully.
fn groups(flat: &[TrafficTarget]) -> Vec<Group> {
    let mut groups: Vec<Group> = vec![Group {
        tag: None,
        targets: Vec::new(),
    }];
    for t in flat {
        let Some(rev) = t.revision_name.clone() else {
            continue;
        };
        let pct = t.percent.unwrap_or(0).clamp(0, 100) as u32;
        add(&mut groups[0].targets, &rev, pct);
        if let Some(tag) = &t.tag {
            match groups.iter_mut().find(|g| g.tag.as_deref() == Some(tag)) {
                Some(g) => add(&mut g.targets, &rev, pct),
                None => groups.push(Group {
                    tag: Some(tag.clone()),
                    targets: vec![(rev, pct)],
                }),
            }
        }
    }
    for g in &mut groups {
        if g.targets.len() == 1 {
            g.targets[0].1 = 100;
        }
    }
    groups
}

fn add(targets: &mut Vec<(String, u32)>, rev: &str, pct: u32) {
    match targets.iter_mut().find(|(r, _)| r == rev) {
        Some((_, p)) => *p += pct,
        None => targets.push((rev.to_string(), pct)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rev(name: &str, service: &str, ready: &str) -> (String, Revision) {
        let r: Revision = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                "labels": {"serving.knative.dev/service": service}},
            "spec": {"containers": [{"image": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap();
        (name.to_string(), r)
    }

    fn cfg(name: &str, latest_ready: Option<&str>, ready: &str) -> (String, Configuration) {
        let c: Configuration = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "status": {"latestReadyRevisionName": latest_ready,
                "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap();
        (name.to_string(), c)
    }

    fn target(rev: Option<&str>, cfg: Option<&str>, pct: i64, tag: Option<&str>) -> TrafficTarget {
        TrafficTarget {
            revision_name: rev.map(Into::into),
            configuration_name: cfg.map(Into::into),
            percent: Some(pct),
            tag: tag.map(Into::into),
            latest_revision: Some(rev.is_none()),
            ..Default::default()
        }
    }

    #[test]
    fn blue_green_stage_tag_gets_full_host() {
        let revisions = HashMap::from([
            rev("hello-00001", "hello", "True"),
            rev("hello-00002", "hello", "True"),
        ]);
        let configurations = HashMap::new();
        let lookup = Lookup {
            revisions: &revisions,
            configurations: &configurations,
        };
        let spec = [
            target(Some("hello-00001"), None, 100, None),
            target(Some("hello-00002"), None, 0, Some("v2")),
        ];
        let r = resolve(&spec, None, &lookup).unwrap();
        assert_eq!(
            r.groups[0].targets,
            [("hello-00001".into(), 100), ("hello-00002".into(), 0)]
        );
        assert_eq!(
            r.groups[1],
            Group {
                tag: Some("v2".into()),
                targets: vec![("hello-00002".into(), 100)]
            }
        );
        assert_eq!(r.status.len(), 2);
    }

    #[test]
    fn configuration_target_follows_latest_ready() {
        let revisions = HashMap::from([rev("hello-00001", "hello", "True")]);
        let configurations = HashMap::from([cfg("hello", Some("hello-00001"), "Unknown")]);
        let lookup = Lookup {
            revisions: &revisions,
            configurations: &configurations,
        };
        let r = resolve(
            &[target(None, Some("hello"), 100, None)],
            Some("hello"),
            &lookup,
        )
        .unwrap();
        assert_eq!(r.status[0].revision_name.as_deref(), Some("hello-00001"));
        assert_eq!(r.status[0].latest_revision, Some(true));
    }

    #[test]
    fn errors_are_knatives() {
        let revisions =
            HashMap::from([rev("a-00001", "a", "Unknown"), rev("b-00001", "b", "True")]);
        let configurations = HashMap::from([
            cfg("waiting", None, "Unknown"),
            cfg("failed", None, "False"),
        ]);
        let lookup = Lookup {
            revisions: &revisions,
            configurations: &configurations,
        };
        let e = |spec: &[TrafficTarget], svc| resolve(spec, svc, &lookup).unwrap_err();
        let missing = e(&[target(Some("nope"), None, 100, None)], None);
        assert_eq!(
            (missing.status, missing.reason),
            (ConditionStatus::False, "RevisionMissing")
        );
        assert_eq!(
            missing.message,
            "Revision \"nope\" referenced in traffic not found."
        );
        let not_ready = e(&[target(Some("a-00001"), None, 100, None)], None);
        assert_eq!(not_ready.status, ConditionStatus::Unknown);
        assert_eq!(not_ready.message, "Revision \"a-00001\" is not yet ready.");
        let waiting = e(&[target(None, Some("waiting"), 100, None)], None);
        assert_eq!(
            waiting.message,
            "Configuration \"waiting\" is waiting for a Revision to become ready."
        );
        let failed = e(&[target(None, Some("failed"), 100, None)], None);
        assert_eq!(
            failed.message,
            "Configuration \"failed\" does not have any ready Revision."
        );
        let cfg_missing = e(&[target(None, Some("x"), 100, None)], None);
        assert_eq!(cfg_missing.reason, "ConfigurationMissing");
        let not_owned = e(&[target(Some("b-00001"), None, 100, None)], Some("a"));
        assert_eq!(
            not_owned.message,
            "Revision \"b-00001\" belongs to Service \"b\", not Service \"a\"."
        );
        // A failure overrides an earlier unknown, not the other way round.
        let both = e(
            &[
                target(Some("a-00001"), None, 50, None),
                target(Some("nope"), None, 50, None),
            ],
            None,
        );
        assert_eq!(both.status, ConditionStatus::False);
    }

    #[test]
    fn same_revision_merges() {
        let revisions = HashMap::from([rev("r-1", "s", "True")]);
        let configurations = HashMap::new();
        let lookup = Lookup {
            revisions: &revisions,
            configurations: &configurations,
        };
        let spec = [
            target(Some("r-1"), None, 40, None),
            target(Some("r-1"), None, 60, None),
        ];
        let r = resolve(&spec, None, &lookup).unwrap();
        assert_eq!(r.status.len(), 1);
        assert_eq!(r.status[0].percent, Some(100));
        assert_eq!(r.groups[0].targets, [("r-1".into(), 100)]);
    }

    mod property {
        use std::collections::{BTreeMap, BTreeSet};

        use proptest::prelude::*;
        use skiff_proxy::Split;

        use super::*;

        /// Percents from raw weights, summing to exactly 100 (largest
        /// remainder), as admission guarantees for a spec.
        fn percents(weights: &[u32]) -> Vec<i64> {
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            if total == 0 {
                let mut p = vec![0; weights.len()];
                p[0] = 100;
                return p;
            }
            let exact: Vec<(u64, u64)> = weights
                .iter()
                .map(|w| (u64::from(*w) * 100 / total, u64::from(*w) * 100 % total))
                .collect();
            let mut p: Vec<i64> = exact.iter().map(|(q, _)| *q as i64).collect();
            let mut rest = 100 - p.iter().sum::<i64>();
            let mut order: Vec<usize> = (0..weights.len()).collect();
            order.sort_by_key(|i| std::cmp::Reverse(exact[*i].1));
            for i in order {
                if rest == 0 {
                    break;
                }
                p[i] += 1;
                rest -= 1;
            }
            p
        }

        proptest! {
            /// Whatever the spec, resolution plus the weighted split only
            /// ever route to revisions the route names (per host: the main
            /// host to all of them, a tag's host to its own), and over 10,000
            /// requests each revision gets its configured share within 1 %.
            #[test]
            fn resolution_and_split_stay_in_the_route_and_keep_percentages(
                n_revs in 1usize..5,
                raw in proptest::collection::vec((0usize..5, 0u32..50, any::<bool>(), any::<bool>()), 1..7),
                offset in 0usize..1000,
            ) {
                let revisions: HashMap<String, Revision> =
                    (0..n_revs).map(|i| rev(&format!("s-{i:05}"), "s", "True")).collect();
                let configurations = HashMap::from([cfg("s", Some("s-00000"), "True")]);
                let lookup = Lookup { revisions: &revisions, configurations: &configurations };
                let pct = percents(&raw.iter().map(|r| r.1).collect::<Vec<_>>());
                let spec: Vec<TrafficTarget> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, (rev_i, _, by_config, tagged))| {
                        let tag = tagged.then(|| format!("t{i}"));
                        if *by_config {
                            target(None, Some("s"), pct[i], tag.as_deref())
                        } else {
                            let name = format!("s-{:05}", rev_i % n_revs);
                            target(Some(&name), None, pct[i], tag.as_deref())
                        }
                    })
                    .collect();
                let resolved = resolve(&spec, Some("s"), &lookup).unwrap();
                // What each target means: its revision.
                let meant: Vec<String> = raw
                    .iter()
                    .map(|(rev_i, _, by_config, _)| {
                        if *by_config { "s-00000".to_string() } else { format!("s-{:05}", rev_i % n_revs) }
                    })
                    .collect();
                let mut configured: BTreeMap<String, i64> = BTreeMap::new();
                for (m, p) in meant.iter().zip(&pct) {
                    *configured.entry(m.clone()).or_default() += p;
                }
                let status_sum: i64 = resolved.status.iter().map(|t| t.percent.unwrap_or(0)).sum();
                prop_assert_eq!(status_sum, 100);
                for group in &resolved.groups {
                    let allowed: BTreeSet<&String> = match &group.tag {
                        None => meant.iter().collect(),
                        Some(tag) => spec
                            .iter()
                            .zip(&meant)
                            .filter(|(t, _)| t.tag.as_deref() == Some(tag.as_str()))
                            .map(|(_, m)| m)
                            .collect(),
                    };
                    let weights: Vec<u32> = group.targets.iter().map(|(_, w)| *w).collect();
                    let split = Split::new(&weights);
                    for _ in 0..offset {
                        split.pick();
                    }
                    let mut counts: BTreeMap<&String, u32> = BTreeMap::new();
                    for _ in 0..10_000 {
                        let i = split.pick();
                        prop_assert!(i < group.targets.len());
                        let rev = &group.targets[i].0;
                        prop_assert!(allowed.contains(rev), "{rev} is not in the route");
                        *counts.entry(rev).or_default() += 1;
                    }
                    if group.tag.is_none() {
                        for (rev, want) in &configured {
                            let got = i64::from(counts.get(rev).copied().unwrap_or(0));
                            prop_assert!(
                                (got - want * 100).abs() <= 100,
                                "{rev}: {got} of 10000, configured {want}%"
                            );
                        }
                    } else if allowed.len() == 1 {
                        // A tag's own host serves its revision fully, even at 0 %.
                        prop_assert_eq!(counts.values().sum::<u32>(), 10_000);
                    }
                }
            }
        }
    }
}
