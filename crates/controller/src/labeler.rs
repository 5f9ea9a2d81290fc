//! The labeler (serving pkg/reconciler/labeler): Revisions and Configurations
//! a Route references get the Route's name in their
//! `serving.knative.dev/routes` annotation; a Revision with a route is
//! `routingState: active`, one without is `reserve` (with the time of the
//! change in `routingStateModified`). Revision GC collects only `reserve`
//! revisions.

use std::collections::BTreeSet;

use skiff_api::condition::{self, ConditionStatus};
use skiff_api::labels;
use skiff_api::meta::{self, ObjectMeta};
use skiff_api::object::Resource;
use skiff_api::serving::{Configuration, Revision, Route, conditions};
use skiff_store::{Store, StoreError, TypedStore, Write};

pub const ACTIVE: &str = "active";
pub const RESERVE: &str = "reserve";
pub const PENDING: &str = "pending";

/// The route names in an object's routes annotation.
pub fn routes_of(meta: &ObjectMeta) -> BTreeSet<String> {
    meta.annotation(labels::ROUTES_ANNOTATION)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Set or remove `route` in `meta`'s routes annotation; for revisions also
/// keep the routing state in line. True when something changed.
fn update_meta(meta: &mut ObjectMeta, route: &str, remove: bool, routing_state: bool) -> bool {
    let mut set = routes_of(meta);
    let changed_routes = if remove {
        set.remove(route)
    } else {
        set.insert(route.to_string())
    };
    if changed_routes {
        if set.is_empty() {
            meta.annotations.remove(labels::ROUTES_ANNOTATION);
        } else {
            let v: Vec<String> = set.iter().cloned().collect();
            meta.annotations
                .insert(labels::ROUTES_ANNOTATION.into(), v.join(","));
        }
    }
    let mut changed_state = false;
    if routing_state {
        let want = if set.is_empty() { RESERVE } else { ACTIVE };
        if meta.label(labels::ROUTING_STATE) != Some(want) {
            meta.labels
                .insert(labels::ROUTING_STATE.into(), want.into());
            meta.annotations
                .insert(labels::ROUTING_STATE_MODIFIED.into(), meta::now());
            changed_state = true;
        }
    }
    changed_routes || changed_state
}

async fn patch<S: Store, T: Resource>(
    store: &S,
    mut obj: T,
    route: &str,
    remove: bool,
    routing_state: bool,
) -> Result<(), StoreError> {
    if update_meta(obj.metadata_mut(), route, remove, routing_state) {
        store.commit(vec![Write::Update(obj.to_dynamic())]).await?;
    }
    Ok(())
}

/// Bring the routing metadata of everything `route` references up to date.
pub async fn sync<S: Store>(store: &S, route: &Route) -> Result<(), StoreError> {
    let ns = &route.metadata.namespace;
    let name = &route.metadata.name;
    let revisions = store.list_as::<Revision>(Some(ns)).await?;
    let configurations = store.list_as::<Configuration>(Some(ns)).await?;
    let mut rev_set: BTreeSet<String> = BTreeSet::new();
    let mut cfg_set: BTreeSet<String> = BTreeSet::new();
    let status_traffic = route.status.iter().flat_map(|s| s.traffic.iter());
    for tt in status_traffic.chain(route.spec.traffic.iter()) {
        let mut cfg_name = tt.configuration_name.clone().filter(|c| !c.is_empty());
        if let Some(rev) = tt.revision_name.as_deref().filter(|r| !r.is_empty()) {
            let Some(r) = revisions.iter().find(|r| r.metadata.name == rev) else {
                continue;
            };
            rev_set.insert(rev.to_string());
            if let Some(owner) = r.metadata.controller()
                && owner.kind == "Configuration"
            {
                cfg_name = Some(owner.name.clone());
            }
        }
        if let Some(cfg) = cfg_name {
            let Some(c) = configurations.iter().find(|c| c.metadata.name == cfg) else {
                continue;
            };
            cfg_set.insert(cfg);
            if tt.latest_revision == Some(true)
                && let Some(lcr) = c
                    .status
                    .as_ref()
                    .and_then(|s| s.latest_created_revision_name.clone())
                    .filter(|n| !n.is_empty())
            {
                rev_set.insert(lcr);
            }
        }
    }
    let conds = route
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let settled = match condition::get(conds, conditions::READY).map(|c| c.status) {
        Some(ConditionStatus::True) => {
            route.status.as_ref().and_then(|s| s.observed_generation)
                == Some(route.metadata.generation)
        }
        Some(ConditionStatus::False) => true,
        _ => false,
    };
    if settled {
        for r in &revisions {
            if r.metadata.label(labels::ROUTING_STATE) == Some(ACTIVE)
                && routes_of(&r.metadata).contains(name)
                && !rev_set.contains(&r.metadata.name)
            {
                patch(store, r.clone(), name, true, true).await?;
            }
        }
        for c in &configurations {
            if routes_of(&c.metadata).contains(name) && !cfg_set.contains(&c.metadata.name) {
                patch(store, c.clone(), name, true, false).await?;
            }
        }
    }
    for r in revisions
        .into_iter()
        .filter(|r| rev_set.contains(&r.metadata.name))
    {
        patch(store, r, name, false, true).await?;
    }
    for c in configurations
        .into_iter()
        .filter(|c| cfg_set.contains(&c.metadata.name))
    {
        patch(store, c, name, false, false).await?;
    }
    Ok(())
}

/// The route is gone: take it out of every annotation (the finalizer of
/// upstream's labeler).
pub async fn clear<S: Store>(store: &S, ns: &str, route: &str) -> Result<(), StoreError> {
    for r in store.list_as::<Revision>(Some(ns)).await? {
        if routes_of(&r.metadata).contains(route) {
            patch(store, r, route, true, true).await?;
        }
    }
    for c in store.list_as::<Configuration>(Some(ns)).await? {
        if routes_of(&c.metadata).contains(route) {
            patch(store, c, route, true, false).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_annotation_and_state() {
        let mut m = ObjectMeta::default();
        assert!(update_meta(&mut m, "b", false, true));
        assert!(update_meta(&mut m, "a", false, true));
        assert_eq!(m.annotation(labels::ROUTES_ANNOTATION), Some("a,b"));
        assert_eq!(m.label(labels::ROUTING_STATE), Some(ACTIVE));
        assert!(!update_meta(&mut m, "a", false, true));
        assert!(update_meta(&mut m, "a", true, true));
        assert!(update_meta(&mut m, "b", true, true));
        assert_eq!(m.annotation(labels::ROUTES_ANNOTATION), None);
        assert_eq!(m.label(labels::ROUTING_STATE), Some(RESERVE));
        assert!(m.annotation(labels::ROUTING_STATE_MODIFIED).is_some());
    }
}
