//! The reconcilers. Each reads the object and what it depends on, converges
//! the children it owns, and writes status. They are idempotent: running one
//! twice in a row changes nothing the second time.

use std::collections::HashMap;

use skiff_api::condition::{self, ConditionStatus, Conditions};
use skiff_api::labels;
use skiff_api::names;
use skiff_api::object::Resource;
use skiff_api::serving::{
    Addressable, Configuration, ConfigurationStatus, Revision, RevisionStatus, Route, RouteStatus,
    Service, ServiceStatus, TrafficTarget, conditions,
};
use skiff_runtime::{Phase, RevisionKey, Runtime};
use skiff_store::{Store, StoreError, TypedStore, Write};

use crate::children;
use crate::network::NetworkConfig;
use crate::traffic;

/// What reconcilers share.
pub struct Ctx<'a, S, R> {
    pub store: &'a S,
    pub autoscaling: &'a crate::autoscaling::Autoscaling,
    pub runtime: &'a R,
    pub network: &'a NetworkConfig,
    pub runtime_state: &'a skiff_runtime::RuntimeState,
}

type Result<T> = std::result::Result<T, StoreError>;

fn ready_of(conds: &[skiff_api::Condition]) -> Option<&skiff_api::Condition> {
    condition::get(conds, conditions::READY)
}

async fn write_status<S: Store, T: Resource>(store: &S, obj: &T) -> Result<()> {
    store
        .commit(vec![Write::UpdateStatus(obj.to_dynamic())])
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- Service

pub async fn service<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    ns: &str,
    name: &str,
) -> Result<()> {
    let Some(mut svc) = ctx.store.get_as::<Service>(ns, name).await? else {
        // Deleted: the store removed what it owned.
        return Ok(());
    };
    let want_cfg = children::make_configuration(&svc);
    let want_route = children::make_route(&svc);
    let cfg = converge(
        ctx.store,
        ctx.store.get_as::<Configuration>(ns, name).await?,
        &want_cfg,
        &svc.metadata.uid,
    )
    .await?;
    let route = converge(
        ctx.store,
        ctx.store.get_as::<Route>(ns, name).await?,
        &want_route,
        &svc.metadata.uid,
    )
    .await?;

    let before = svc.status.clone();
    let status = svc.status.get_or_insert_with(ServiceStatus::default);
    status.observed_generation = Some(svc.metadata.generation);
    let mut conds = Conditions::new(&mut status.conditions, conditions::SERVICE);
    conds.initialize();
    match &cfg {
        Owned::NotOwned => conds.mark_false(
            conditions::CONFIGURATIONS_READY,
            "NotOwned",
            format!("There is an existing Configuration {name:?} that we do not own."),
        ),
        Owned::Ours(c) => {
            let observed = c.status.as_ref().and_then(|s| s.observed_generation);
            if observed != Some(c.metadata.generation) {
                conds.mark_unknown(
                    conditions::CONFIGURATIONS_READY,
                    "OutOfDate",
                    "The Configuration is still working to reflect the latest desired specification.",
                );
            } else {
                mirror(
                    &mut conds,
                    conditions::CONFIGURATIONS_READY,
                    c.status.as_ref().map(|s| s.conditions.as_slice()),
                );
            }
        }
    }
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
                mirror(
                    &mut conds,
                    conditions::ROUTES_READY,
                    r.status.as_ref().map(|s| s.conditions.as_slice()),
                );
                if let Owned::Ours(c) = &cfg
                    && condition::is_true(conds.list, conditions::ROUTES_READY)
                    && !traffic_migrated(r, c)
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
    if let Owned::Ours(c) = &cfg
        && let Some(cs) = &c.status
    {
        status.latest_created_revision_name = cs.latest_created_revision_name.clone();
        status.latest_ready_revision_name = cs.latest_ready_revision_name.clone();
    }
    if let Owned::Ours(r) = &route
        && let Some(rs) = &r.status
    {
        status.url = rs.url.clone();
        status.address = rs.address.clone();
        status.traffic = rs.traffic.clone();
    }
    if svc.status != before {
        write_status(ctx.store, &svc).await?;
    }
    Ok(())
}

enum Owned<T> {
    Ours(T),
    NotOwned,
}

/// Create `want` if missing; restore it if someone changed it; report an
/// object of that name that `owner_uid` does not control.
async fn converge<S: Store, T: Resource + Clone + Send>(
    store: &S,
    actual: Option<T>,
    want: &T,
    owner_uid: &str,
) -> Result<Owned<T>> {
    match actual {
        None => {
            let c = store.commit(vec![Write::Create(want.to_dynamic())]).await?;
            Ok(Owned::Ours(typed(&c[0].object)?))
        }
        Some(a) if !a.metadata().is_controlled_by(owner_uid) => Ok(Owned::NotOwned),
        Some(a) if children::drifted(&a, want) => {
            tracing::info!(object = %a.key(), "restoring the object its owner derives");
            let next = children::restore(&a, want);
            let c = store.commit(vec![Write::Update(next.to_dynamic())]).await?;
            Ok(Owned::Ours(typed(&c[0].object)?))
        }
        Some(a) => Ok(Owned::Ours(a)),
    }
}

fn typed<T: Resource>(obj: &skiff_api::DynamicObject) -> Result<T> {
    obj.to_typed()
        .map_err(|e| StoreError::Backend(format!("stored object does not decode: {e}")))
}

/// Copy a dependent object's Ready condition into `type_`.
fn mirror(conds: &mut Conditions<'_>, type_: &str, from: Option<&[skiff_api::Condition]>) {
    match from.and_then(ready_of) {
        Some(c) => match c.status {
            ConditionStatus::True => conds.mark_true(type_),
            ConditionStatus::False => conds.mark_false(
                type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.clone().unwrap_or_default(),
            ),
            ConditionStatus::Unknown => conds.mark_unknown(
                type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.clone().unwrap_or_default(),
            ),
        },
        None => conds.mark_unknown(type_, "", ""),
    }
}

/// The Route serves what the Service asks for, with the Configuration's
/// latest ready revision in place of latestRevision targets.
fn traffic_migrated(route: &Route, cfg: &Configuration) -> bool {
    let latest = cfg
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision_name.clone());
    let key = |t: &TrafficTarget| {
        (
            t.tag.clone(),
            t.revision_name.clone(),
            t.percent.unwrap_or(0),
        )
    };
    let want: Vec<_> = route
        .spec
        .traffic
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.configuration_name.as_deref() == Some(cfg.metadata.name.as_str()) {
                t.revision_name = latest.clone();
            }
            key(&t)
        })
        .collect();
    let have: Vec<_> = route
        .status
        .as_ref()
        .map(|s| s.traffic.iter().map(key).collect())
        .unwrap_or_default();
    // Status merges equal targets; compare per (tag, revision) totals.
    totals(&want) == totals(&have)
}

fn totals(
    v: &[(Option<String>, Option<String>, i64)],
) -> Vec<(Option<String>, Option<String>, i64)> {
    let mut m: Vec<(Option<String>, Option<String>, i64)> = Vec::new();
    for (t, r, p) in v {
        match m.iter_mut().find(|(a, b, _)| a == t && b == r) {
            Some(e) => e.2 += p,
            None => m.push((t.clone(), r.clone(), *p)),
        }
    }
    m.sort();
    m
}

// ---------------------------------------------------------- Configuration

pub async fn configuration<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    ns: &str,
    name: &str,
) -> Result<()> {
    let Some(mut cfg) = ctx.store.get_as::<Configuration>(ns, name).await? else {
        return Ok(());
    };
    let generation = cfg.metadata.generation;
    let byo = &cfg.spec.template.metadata.name;
    let rev_name = if byo.is_empty() {
        names::revision_name(name, generation)
    } else {
        byo.clone()
    };
    let existing = ctx.store.get_as::<Revision>(ns, &rev_name).await?;
    let mut creation_error = None;
    match existing {
        None => {
            let rev = children::make_revision(&cfg, &rev_name);
            tracing::info!(revision = %rev.key(), "creating revision");
            ctx.store
                .commit(vec![Write::Create(rev.to_dynamic())])
                .await?;
        }
        Some(r) if !r.metadata.is_controlled_by(&cfg.metadata.uid) => {
            creation_error = Some(format!(
                "revisions.serving.knative.dev {rev_name:?} already exists"
            ));
        }
        Some(_) => {}
    }
    let revisions: Vec<Revision> = ctx
        .store
        .list_as::<Revision>(Some(ns))
        .await?
        .into_iter()
        .filter(|r| r.metadata.is_controlled_by(&cfg.metadata.uid))
        .collect();
    let gen_of = |r: &Revision| -> i64 {
        r.metadata
            .label(labels::CONFIGURATION_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    };
    let is_ready = |r: &Revision| {
        r.status
            .as_ref()
            .is_some_and(|s| condition::is_true(&s.conditions, conditions::READY))
    };

    let before = cfg.status.clone();
    let status = cfg.status.get_or_insert_with(ConfigurationStatus::default);
    status.observed_generation = Some(generation);
    if creation_error.is_none() {
        status.latest_created_revision_name = Some(rev_name.clone());
    }
    // The newest ready revision, never moving backwards.
    let prev_gen = status
        .latest_ready_revision_name
        .as_deref()
        .and_then(|n| revisions.iter().find(|r| r.metadata.name == n))
        .map(gen_of)
        .unwrap_or(0);
    if let Some(newest) = revisions
        .iter()
        .filter(|r| is_ready(r) && gen_of(r) <= generation)
        .max_by_key(|r| gen_of(r))
        && (gen_of(newest) > prev_gen || status.latest_ready_revision_name.is_none())
    {
        status.latest_ready_revision_name = Some(newest.metadata.name.clone());
    }
    let latest_created = revisions.iter().find(|r| r.metadata.name == rev_name);
    // Ready when the latest created revision is also the latest ready one.
    let caught_up = status.latest_created_revision_name.is_some()
        && status.latest_created_revision_name == status.latest_ready_revision_name;
    let mut conds = Conditions::new(&mut status.conditions, conditions::CONFIGURATION);
    conds.initialize();
    let set_ready = |conds: &mut Conditions<'_>, s: ConditionStatus, reason: &str, msg: String| {
        condition::set(conds.list, conditions::READY, s, Some(reason), Some(msg));
    };
    if let Some(err) = creation_error {
        set_ready(
            &mut conds,
            ConditionStatus::False,
            "RevisionFailed",
            format!("Revision creation failed with message: {err}."),
        );
    } else if let Some(failed) = latest_created
        .and_then(|r| r.status.as_ref())
        .and_then(|s| ready_of(&s.conditions))
        .filter(|c| c.status == ConditionStatus::False)
    {
        set_ready(
            &mut conds,
            ConditionStatus::False,
            "RevisionFailed",
            format!(
                "Revision {rev_name:?} failed with message: {}.",
                failed.message.as_deref().unwrap_or("")
            ),
        );
    } else if caught_up {
        set_ready(&mut conds, ConditionStatus::True, "", String::new());
    } else {
        set_ready(&mut conds, ConditionStatus::Unknown, "", String::new());
    }
    if cfg.status != before {
        write_status(ctx.store, &cfg).await?;
    }
    Ok(())
}

// --------------------------------------------------------------- Revision

pub async fn revision<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    ns: &str,
    name: &str,
) -> Result<()> {
    let key = RevisionKey::new(ns, name);
    let Some(mut rev) = ctx.store.get_as::<Revision>(ns, name).await? else {
        ctx.runtime.remove(&key);
        ctx.autoscaling.remove(&key);
        return Ok(());
    };
    // The autoscaler decides how many instances run, and runs them.
    ctx.autoscaling.apply(&rev);
    let scale = ctx.autoscaling.status(&key);
    let state = ctx
        .runtime_state
        .revisions
        .get(&key)
        .cloned()
        .unwrap_or_default();

    let before = rev.status.clone();
    let status = rev.status.get_or_insert_with(RevisionStatus::default);
    status.observed_generation = Some(rev.metadata.generation);
    status.actual_replicas = Some(state.ready_count() as i32);
    status.desired_replicas = scale
        .as_ref()
        .map_or(Some(state.desired as i32), |s| Some(s.desired));
    // Active is not part of Ready: a revision at zero is still Ready.
    if let Some(s) = &scale {
        condition::set(
            &mut status.conditions,
            conditions::ACTIVE,
            s.active,
            Some(s.active_reason),
            Some(s.active_message.to_string()),
        );
    }
    let mut conds = Conditions::new(&mut status.conditions, conditions::REVISION);
    conds.initialize();
    let ready = state.ready_count();
    match &state.failure {
        None if ready > 0 || state.ever_ready => {
            conds.mark_true(conditions::RESOURCES_AVAILABLE);
            conds.mark_true(conditions::CONTAINER_HEALTHY);
        }
        None => {
            conds.mark_unknown(conditions::RESOURCES_AVAILABLE, "Deploying", "");
            conds.mark_unknown(conditions::CONTAINER_HEALTHY, "Deploying", "");
        }
        Some(f) => {
            let restarting = state
                .instances
                .iter()
                .filter(|i| i.phase == Phase::Starting)
                .map(|i| i.restarts)
                .max()
                .unwrap_or(0);
            let message = if restarting > 0 {
                format!("{} (restarted {restarting} times)", f.message)
            } else {
                f.message.clone()
            };
            if f.reason == "ProgressDeadlineExceeded" {
                conds.mark_false(conditions::RESOURCES_AVAILABLE, &f.reason, message);
                conds.mark_unknown(conditions::CONTAINER_HEALTHY, "Deploying", "");
            } else {
                if state.ever_ready {
                    conds.mark_true(conditions::RESOURCES_AVAILABLE);
                } else {
                    conds.mark_unknown(conditions::RESOURCES_AVAILABLE, "Deploying", "");
                }
                conds.mark_false(conditions::CONTAINER_HEALTHY, &f.reason, message);
            }
        }
    }
    if rev.status != before {
        write_status(ctx.store, &rev).await?;
    }
    Ok(())
}

// ------------------------------------------------------------------ Route

pub async fn route<S: Store, R: Runtime>(ctx: &Ctx<'_, S, R>, ns: &str, name: &str) -> Result<()> {
    let Some(mut route) = ctx.store.get_as::<Route>(ns, name).await? else {
        return Ok(());
    };
    let revisions: HashMap<String, Revision> = ctx
        .store
        .list_as::<Revision>(Some(ns))
        .await?
        .into_iter()
        .map(|r| (r.metadata.name.clone(), r))
        .collect();
    let configurations: HashMap<String, Configuration> = ctx
        .store
        .list_as::<Configuration>(Some(ns))
        .await?
        .into_iter()
        .map(|c| (c.metadata.name.clone(), c))
        .collect();
    let lookup = traffic::Lookup {
        revisions: &revisions,
        configurations: &configurations,
    };
    let service = route.metadata.label(labels::SERVICE).map(str::to_string);
    let resolved = traffic::resolve(&route.spec.traffic, service.as_deref(), &lookup);

    let before = route.status.clone();
    let net = ctx.network;
    let meta = route.metadata.clone();
    let status = route.status.get_or_insert_with(RouteStatus::default);
    status.observed_generation = Some(meta.generation);
    status.url = Some(net.url(&meta, None));
    status.address = Some(Addressable {
        url: Some(net.address(&meta)),
    });
    let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
    conds.initialize();
    conds.mark_true(conditions::CERTIFICATE_PROVISIONED);
    condition::set(
        conds.list,
        conditions::CERTIFICATE_PROVISIONED,
        ConditionStatus::True,
        Some("TLSNotEnabled"),
        Some("external-domain-tls is not enabled".into()),
    );
    match resolved {
        Ok(r) => {
            status.traffic = r
                .status
                .into_iter()
                .map(|mut t| {
                    if let Some(tag) = t.tag.clone() {
                        t.url = Some(net.url(&meta, Some(&tag)));
                    }
                    t
                })
                .collect();
            let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
            conds.mark_true(conditions::ALL_TRAFFIC_ASSIGNED);
            // The routing table is rebuilt right after this reconcile.
            conds.mark_true(conditions::INGRESS_READY);
        }
        Err(e) => {
            match e.status {
                ConditionStatus::False => {
                    conds.mark_false(conditions::ALL_TRAFFIC_ASSIGNED, e.reason, e.message)
                }
                _ => conds.mark_unknown(conditions::ALL_TRAFFIC_ASSIGNED, e.reason, e.message),
            }
            if status.traffic.is_empty() {
                let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
                conds.mark_unknown(
                    conditions::INGRESS_READY,
                    "IngressNotConfigured",
                    "Ingress has not yet been reconciled.",
                );
            }
        }
    }
    if route.status != before {
        write_status(ctx.store, &route).await?;
    }
    Ok(())
}
