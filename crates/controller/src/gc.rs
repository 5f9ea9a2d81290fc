//! Revision garbage collection per config-gc (serving pkg/reconciler/gc):
//! of a Configuration's non-active revisions (routing state `reserve`, not
//! the latest ready one, not annotated `serving.knative.dev/no-gc`), delete
//! the stale ones oldest first while more than `min` remain, then the oldest
//! beyond `max`. Pure planning; the caller deletes.

use std::time::SystemTime;

use skiff_api::config::GcConfig;
use skiff_api::labels;
use skiff_api::meta;
use skiff_api::serving::{Configuration, Revision};

use crate::labeler::RESERVE;

pub const NO_GC_ANNOTATION: &str = "serving.knative.dev/no-gc";

fn created(r: &Revision) -> SystemTime {
    r.metadata
        .creation_timestamp
        .as_deref()
        .and_then(meta::parse_timestamp)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// When the revision last changed routing state (else its creation).
fn last_active(r: &Revision) -> SystemTime {
    r.metadata
        .annotation(labels::ROUTING_STATE_MODIFIED)
        .and_then(meta::parse_timestamp)
        .unwrap_or_else(|| created(r))
}

fn is_active(r: &Revision, cfg: &Configuration) -> bool {
    let latest_ready = cfg
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision_name.as_deref());
    latest_ready == Some(r.metadata.name.as_str())
        || r.metadata
            .annotation(NO_GC_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || r.metadata.label(labels::ROUTING_STATE) != Some(RESERVE)
}

fn is_stale(gc: &GcConfig, r: &Revision, now: SystemTime) -> bool {
    let (create, active) = (
        gc.retain_since_create_time,
        gc.retain_since_last_active_time,
    );
    if create.is_none() && active.is_none() {
        return false;
    }
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    if let Some(c) = create
        && age(created(r)) < c.to_std()
    {
        return false;
    }
    if let Some(a) = active
        && age(last_active(r)) < a.to_std()
    {
        return false;
    }
    true
}

/// Names of the revisions of `cfg` (among `revisions`, which may include
/// others) to delete now.
pub fn plan(
    gc: &GcConfig,
    cfg: &Configuration,
    revisions: &[Revision],
    now: SystemTime,
) -> Vec<String> {
    if gc.all_disabled() {
        return Vec::new();
    }
    let min = gc.min_non_active_revisions.max(0) as usize;
    let mine: Vec<&Revision> = revisions
        .iter()
        .filter(|r| r.metadata.label(labels::CONFIGURATION) == Some(cfg.metadata.name.as_str()))
        .collect();
    if mine.len() <= min {
        return Vec::new();
    }
    let mut non_active: Vec<&Revision> = mine.into_iter().filter(|r| !is_active(r, cfg)).collect();
    if non_active.len() <= min {
        return Vec::new();
    }
    non_active.sort_by_key(|r| last_active(r));
    let count = non_active.len();
    let max_deletions = count - min;
    let mut out = Vec::new();
    let mut kept: Vec<&Revision> = Vec::new();
    for r in &non_active {
        if out.len() < max_deletions && is_stale(gc, r, now) {
            out.push(r.metadata.name.clone());
            if out.len() >= max_deletions {
                return out;
            }
        } else {
            kept.push(r);
        }
    }
    if let Some(max) = gc.max_non_active_revisions {
        let max = max.max(0) as usize;
        let remaining = count - out.len();
        if remaining > max {
            out.extend(
                kept.iter()
                    .take(remaining - max)
                    .map(|r| r.metadata.name.clone()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use serde_json::json;
    use skiff_api::go::GoDuration;

    fn rev(name: &str, state: &str, age_h: u64, active_h: u64, now: SystemTime) -> Revision {
        let ts = |h: u64| meta::timestamp(now - Duration::from_secs(h * 3600));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                "creationTimestamp": ts(age_h),
                "labels": {"serving.knative.dev/configuration": "c",
                    "serving.knative.dev/routingState": state},
                "annotations": {"serving.knative.dev/routingStateModified": ts(active_h)}},
            "spec": {"containers": [{"image": "x"}]}
        }))
        .unwrap()
    }

    fn cfg(latest_ready: &str) -> Configuration {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "default"},
            "status": {"latestReadyRevisionName": latest_ready}
        }))
        .unwrap()
    }

    #[test]
    fn table() {
        let now = SystemTime::now();
        let h = |n: i64| Some(GoDuration::seconds(n * 3600));
        let revs = vec![
            rev("c-1", "reserve", 100, 90, now),
            rev("c-2", "reserve", 100, 50, now),
            rev("c-3", "reserve", 10, 5, now),
            rev("c-4", "active", 100, 100, now),
            rev("c-5", "reserve", 100, 100, now),
        ];
        let c = cfg("c-5");
        let stock = GcConfig::default();
        // Stock settings: min 20 non-active keeps everything.
        assert!(plan(&stock, &c, &revs, now).is_empty());
        let gc = GcConfig {
            retain_since_create_time: h(48),
            retain_since_last_active_time: h(15),
            min_non_active_revisions: 1,
            max_non_active_revisions: Some(1000),
        };
        // c-4 is active, c-5 the latest ready; c-3 is recent.
        assert_eq!(plan(&gc, &c, &revs, now), ["c-1", "c-2"]);
        let gc2 = GcConfig {
            min_non_active_revisions: 2,
            ..gc
        };
        assert_eq!(plan(&gc2, &c, &revs, now), ["c-1"]);
        // Times disabled, max 1: the oldest non-active beyond one go.
        let max_only = GcConfig {
            retain_since_create_time: None,
            retain_since_last_active_time: None,
            min_non_active_revisions: 0,
            max_non_active_revisions: Some(1),
        };
        assert_eq!(plan(&max_only, &c, &revs, now), ["c-1", "c-2"]);
        let off = GcConfig {
            max_non_active_revisions: None,
            ..max_only
        };
        assert!(plan(&off, &c, &revs, now).is_empty());
        let mut pinned = revs.clone();
        pinned[0]
            .metadata
            .annotations
            .insert(NO_GC_ANNOTATION.into(), "true".into());
        assert_eq!(plan(&max_only, &c, &pinned, now), ["c-2"]);
    }
}
