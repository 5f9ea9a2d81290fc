//! Service -> its Configuration and Route (serving pkg/reconciler/service).
//! The children are kept exactly as derived: a hand edit is reverted and a
//! deleted child recreated, each with an Event on the Service.

use skiff_api::condition::{self, Conditions};
use skiff_api::labels;
use skiff_api::object::Resource;
use skiff_api::serving::{
    Configuration, Revision, Route, Service, ServiceStatus, TrafficTarget, conditions,
};
use skiff_runtime::Runtime;
use skiff_store::{Store, TypedStore, Write};

use super::{Ctx, Result, mirror, typed, write_status};
use crate::children;
use crate::events;

enum Owned<T> {
    Ours(T),
    NotOwned,
}

pub async fn service<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    ns: &str,
    name: &str,
) -> Result<()> {
    let Some(mut svc) = ctx.store.get_as::<Service>(ns, name).await? else {
        // Deleted: the store removed what it owned.
        return Ok(());
    };
    let before = svc.status.clone();
    let reconciled_before = before
        .as_ref()
        .is_some_and(|s| s.observed_generation.is_some());
    let existing_cfg = ctx.store.get_as::<Configuration>(ns, name).await?;
    let want_cfg = children::make_configuration(&svc, existing_cfg.as_ref());
    let cfg = converge(ctx, &svc, existing_cfg, &want_cfg, reconciled_before).await?;

    let status = svc.status.get_or_insert_with(ServiceStatus::default);
    status.observed_generation = Some(svc.metadata.generation);
    let mut conds = Conditions::new(&mut status.conditions, conditions::SERVICE);
    conds.initialize();
    let c = match cfg {
        Owned::NotOwned => {
            conds.mark_false(
                conditions::CONFIGURATIONS_READY,
                "NotOwned",
                format!("There is an existing Configuration {name:?} that we do not own."),
            );
            return finish(ctx, &svc, &before).await;
        }
        Owned::Ours(c) => c,
    };
    let byo = &c.spec.template.metadata.name;
    let cfg_observed = c.status.as_ref().and_then(|s| s.observed_generation);
    if cfg_observed != Some(c.metadata.generation) {
        conds.mark_unknown(
            conditions::CONFIGURATIONS_READY,
            "OutOfDate",
            "The Configuration is still working to reflect the latest desired specification.",
        );
        // With a BYO name, traffic moves only once the name is known to be
        // free (the Configuration has seen its generation).
        if !byo.is_empty() {
            return finish(ctx, &svc, &before).await;
        }
    } else {
        mirror(
            &mut conds,
            conditions::CONFIGURATIONS_READY,
            c.status.as_ref().map(|s| s.conditions.as_slice()),
        );
        if let Some(cs) = &c.status {
            status.latest_created_revision_name = cs.latest_created_revision_name.clone();
            status.latest_ready_revision_name = cs.latest_ready_revision_name.clone();
        }
    }
    if !byo.is_empty() && name_taken(ctx, &c).await? {
        conds.mark_false(
            conditions::ROUTES_READY,
            "RevisionNameTaken",
            format!(
                "The revision name {byo:?} is taken by a conflicting Revision, so traffic will not be migrated"
            ),
        );
        return finish(ctx, &svc, &before).await;
    }

    let want_route = children::make_route(&svc);
    let existing_route = ctx.store.get_as::<Route>(ns, name).await?;
    let route = converge(ctx, &svc, existing_route, &want_route, reconciled_before).await?;
    let status = svc.status.get_or_insert_with(ServiceStatus::default);
    let mut conds = Conditions::new(&mut status.conditions, conditions::SERVICE);
    match &route {
        Owned::NotOwned => conds.mark_false(
            conditions::ROUTES_READY,
            "NotOwned",
            format!("There is an existing Route {name:?} that we do not own."),
        ),
        Owned::Ours(r) => {
            let observed = r.status.as_ref().and_then(|s| s.observed_generation);
            if observed != Some(r.metadata.generation) {
                conds.mark_unknown(
                    conditions::ROUTES_READY,
                    "OutOfDate",
                    "The Route is still working to reflect the latest desired specification.",
                );
            } else {
                if let Some(rs) = &r.status {
                    status.url = rs.url.clone();
                    status.address = rs.address.clone();
                    status.traffic = rs.traffic.clone();
                }
                let mut conds = Conditions::new(&mut status.conditions, conditions::SERVICE);
                mirror(
                    &mut conds,
                    conditions::ROUTES_READY,
                    r.status.as_ref().map(|s| s.conditions.as_slice()),
                );
                if condition::is_true(conds.list, conditions::ROUTES_READY)
                    && !traffic_migrated(r, &c)
                {
                    conds.mark_unknown(
                        conditions::ROUTES_READY,
                        "TrafficNotMigrated",
                        "Traffic is not yet migrated to the latest revision.",
                    );
                }
            }
        }
    }
    finish(ctx, &svc, &before).await
}

async fn finish<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    svc: &Service,
    before: &Option<ServiceStatus>,
) -> Result<()> {
    if svc.status != *before {
        write_status(ctx.store, svc).await?;
    }
    Ok(())
}

/// The parts of a child its Service controls, as one comparable string.
fn derivation<T: Resource>(obj: &T) -> String {
    let d = obj.to_dynamic();
    serde_json::json!({
        "spec": d.body.get("spec"),
        "labels": d.metadata.labels,
        "annotations": d.metadata.annotations,
        "ownerReferences": d.metadata.owner_references,
    })
    .to_string()
}

/// Create `want` if missing; bring it back to `want` when it differs (a new
/// Service spec, or a hand edit); report an object of that name the Service
/// does not control. Events record creations and reverted hand edits.
async fn converge<S: Store, R: Runtime, T: Resource + Clone + Send>(
    ctx: &Ctx<'_, S, R>,
    svc: &Service,
    actual: Option<T>,
    want: &T,
    reconciled_before: bool,
) -> Result<Owned<T>> {
    let store = ctx.store;
    let kind = T::kind().kind;
    let name = &want.metadata().name;
    let key = want.key();
    let desired = derivation(want);
    let previous = ctx
        .derived
        .lock()
        .expect("derived lock")
        .insert(key, desired.clone());
    match actual {
        None => {
            let c = store.commit(vec![Write::Create(want.to_dynamic())]).await?;
            let (type_, reason, message) = if reconciled_before {
                (
                    events::WARNING,
                    "Recreated",
                    format!("Recreated {kind} {name:?}, which was deleted by hand"),
                )
            } else {
                (
                    events::NORMAL,
                    "Created",
                    format!("Created {kind} {name:?}"),
                )
            };
            record(store, svc, type_, reason, message).await;
            Ok(Owned::Ours(typed(&c[0].object)?))
        }
        Some(a) if !a.metadata().is_controlled_by(&svc.metadata.uid) => Ok(Owned::NotOwned),
        Some(a) => {
            let drift = children::drift(&a, want);
            if drift.is_empty() {
                return Ok(Owned::Ours(a));
            }
            let next = children::restore(&a, want);
            let c = store.commit(vec![Write::Update(next.to_dynamic())]).await?;
            // What we derive did not change, yet the child differs: someone
            // edited it by hand.
            if previous.as_deref() == Some(desired.as_str()) {
                tracing::info!(object = %a.key(), ?drift, "reverted a hand edit of an owned object");
                record(
                    store,
                    svc,
                    events::WARNING,
                    "Reverted",
                    format!(
                        "Reverted changes to the {} of {kind} {name:?}: the Service owns it",
                        drift.join(", ")
                    ),
                )
                .await;
            }
            Ok(Owned::Ours(typed(&c[0].object)?))
        }
    }
}

/// Events are best effort: a failure to record one never fails a reconcile.
async fn record<S: Store>(store: &S, svc: &Service, type_: &str, reason: &str, message: String) {
    if let Err(e) = events::record(store, svc, type_, reason, message).await {
        tracing::warn!(service = %svc.key(), "cannot record an event: {e}");
    }
}

/// CheckNameAvailability: a BYO revision name is taken when a Revision of
/// that name exists that this Configuration does not control, or that it
/// controls for another generation with a different spec.
async fn name_taken<S: Store, R: Runtime>(ctx: &Ctx<'_, S, R>, c: &Configuration) -> Result<bool> {
    let name = &c.spec.template.metadata.name;
    let Some(rev) = ctx
        .store
        .get_as::<Revision>(&c.metadata.namespace, name)
        .await?
    else {
        return Ok(false);
    };
    Ok(conflicts(c, &rev))
}

pub(crate) fn conflicts(c: &Configuration, rev: &Revision) -> bool {
    if !rev.metadata.is_controlled_by(&c.metadata.uid) {
        return true;
    }
    let generation = c.metadata.generation.to_string();
    if rev.metadata.label(labels::CONFIGURATION_GENERATION) == Some(generation.as_str()) {
        return false;
    }
    rev.spec != c.spec.template.spec
}

/// checkRoutesNotReady: the Route serves what the Service asks for, with the
/// Configuration's latest ready revision in place of its targets (URL and
/// latestRevision ignored).
fn traffic_migrated(route: &Route, cfg: &Configuration) -> bool {
    let latest = cfg
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision_name.clone());
    let status: &[TrafficTarget] = route
        .status
        .as_ref()
        .map(|s| s.traffic.as_slice())
        .unwrap_or(&[]);
    if route.spec.traffic.len() != status.len() {
        return false;
    }
    let key = |t: &TrafficTarget| {
        (
            t.tag.clone().filter(|t| !t.is_empty()),
            t.revision_name.clone().filter(|r| !r.is_empty()),
            t.configuration_name.clone().filter(|c| !c.is_empty()),
            t.percent,
        )
    };
    route.spec.traffic.iter().zip(status).all(|(want, got)| {
        let mut want = want.clone();
        if want.configuration_name.as_deref() == Some(cfg.metadata.name.as_str()) {
            want.revision_name = latest.clone();
            want.configuration_name = None;
        }
        key(&want) == key(got)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(generation: i64) -> Configuration {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "default", "uid": "cfg-uid", "generation": generation},
            "spec": {"template": {"metadata": {"name": "c-v1"},
                "spec": {"containers": [{"image": "a"}]}}}
        }))
        .unwrap()
    }

    fn rev(owner: &str, generation: &str, image: &str) -> Revision {
        serde_json::from_value(json!({
            "metadata": {"name": "c-v1", "namespace": "default",
                "labels": {"serving.knative.dev/configurationGeneration": generation},
                "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
                    "name": "c", "uid": owner, "controller": true}]},
            "spec": {"containers": [{"image": image}]}
        }))
        .unwrap()
    }

    /// CheckNameAvailability: the cases behind RevisionNameTaken.
    #[test]
    fn byo_name_conflicts() {
        // Someone else's revision.
        assert!(conflicts(&cfg(1), &rev("other-uid", "1", "a")));
        // Ours, for this generation.
        assert!(!conflicts(&cfg(1), &rev("cfg-uid", "1", "a")));
        // Ours, an older generation with the same spec: reused.
        assert!(!conflicts(&cfg(2), &rev("cfg-uid", "1", "a")));
        // Ours, an older generation with another spec: taken.
        assert!(conflicts(&cfg(2), &rev("cfg-uid", "1", "b")));
    }
}
