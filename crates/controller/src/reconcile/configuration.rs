//! Configuration -> one Revision per generation (serving
//! pkg/reconciler/configuration), the latest created / latest ready
//! revisions, and garbage collection of old revisions per config-gc.

use std::time::SystemTime;

use skiff_api::condition::{self, ConditionStatus, Conditions};
use skiff_api::labels;
use skiff_api::names;
use skiff_api::object::{ObjectKey, REVISION, Resource};
use skiff_api::serving::{Configuration, ConfigurationStatus, Revision, conditions};
use skiff_runtime::Runtime;
use skiff_store::{Store, StoreError, TypedStore, Write};

use super::service::conflicts;
use super::{Ctx, Result, ready_of, write_status};
use crate::{children, events, gc};

fn gen_of(r: &Revision) -> i64 {
    r.metadata
        .label(labels::CONFIGURATION_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

fn is_ready(r: &Revision) -> bool {
    r.status
        .as_ref()
        .is_some_and(|s| condition::is_true(&s.conditions, conditions::READY))
}

pub async fn configuration<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    ns: &str,
    name: &str,
) -> Result<()> {
    let Some(mut cfg) = ctx.store.get_as::<Configuration>(ns, name).await? else {
        return Ok(());
    };
    let generation = cfg.metadata.generation;
    let uid = cfg.metadata.uid.clone();
    let revisions: Vec<Revision> = ctx
        .store
        .list_as::<Revision>(Some(ns))
        .await?
        .into_iter()
        .filter(|r| r.metadata.label(labels::CONFIGURATION) == Some(name))
        .collect();
    let byo = cfg.spec.template.metadata.name.clone();

    // The latest created revision: by name when the template names it, else
    // the one labelled with this generation.
    let mut creation_error = None;
    let mut latest_created: Option<Revision> = if byo.is_empty() {
        revisions
            .iter()
            .find(|r| r.metadata.is_controlled_by(&uid) && gen_of(r) == generation)
            .cloned()
    } else {
        match ctx.store.get_as::<Revision>(ns, &byo).await? {
            Some(r) if conflicts(&cfg, &r) => {
                creation_error = Some(format!(
                    "revisions.serving.knative.dev {byo:?} already exists"
                ));
                None
            }
            other => other,
        }
    };
    if latest_created.is_none() && creation_error.is_none() {
        let rev_name = if byo.is_empty() {
            names::revision_name(name, generation)
        } else {
            byo.clone()
        };
        let rev = children::make_revision(&cfg, &rev_name);
        tracing::info!(revision = %rev.key(), "creating revision");
        match ctx
            .store
            .commit(vec![Write::Create(rev.to_dynamic())])
            .await
        {
            Ok(c) => {
                latest_created = Some(super::typed(&c[0].object)?);
                record(
                    ctx,
                    &cfg,
                    events::NORMAL,
                    "Created",
                    format!("Created Revision {rev_name:?}"),
                )
                .await;
            }
            Err(StoreError::AlreadyExists(_)) => {
                creation_error = Some(format!(
                    "revisions.serving.knative.dev {rev_name:?} already exists"
                ));
            }
            Err(e) => return Err(e),
        }
    }

    let before = cfg.status.clone();
    let status = cfg.status.get_or_insert_with(ConfigurationStatus::default);
    status.observed_generation = Some(generation);
    let mut conds = Conditions::new(&mut status.conditions, conditions::CONFIGURATION);
    conds.initialize();
    let set_ready =
        |list: &mut Vec<skiff_api::Condition>, s: ConditionStatus, reason: &str, msg: String| {
            condition::set(list, conditions::READY, s, Some(reason), Some(msg));
        };
    let Some(lcr) = latest_created else {
        let err = creation_error.unwrap_or_default();
        set_ready(
            &mut status.conditions,
            ConditionStatus::False,
            "RevisionFailed",
            format!("Revision creation failed with message: {err}."),
        );
        if cfg.status != before {
            write_status(ctx.store, &cfg).await?;
        }
        return Ok(());
    };
    let lcr_name = lcr.metadata.name.clone();
    status.latest_created_revision_name = Some(lcr_name.clone());

    // The newest ready revision, from the previous latest ready on (never
    // moving backwards); a BYO name may point at an older generation.
    let prev_ready_gen = status
        .latest_ready_revision_name
        .as_deref()
        .and_then(|n| revisions.iter().find(|r| r.metadata.name == n))
        .map(gen_of);
    let lcr_gen = gen_of(&lcr);
    let candidates = revisions.iter().filter(|r| {
        r.metadata.is_controlled_by(&uid)
            && is_ready(r)
            && match prev_ready_gen {
                Some(p) => {
                    (gen_of(r) >= p && gen_of(r) <= generation)
                        || (!byo.is_empty() && gen_of(r) == lcr_gen)
                }
                None => gen_of(r) <= generation,
            }
    });
    let newest = candidates
        .max_by_key(|r| gen_of(r))
        .map(|r| r.metadata.name.clone());
    let old_ready = status.latest_ready_revision_name.clone();
    if let Some(n) = &newest {
        status.latest_ready_revision_name = Some(n.clone());
    } else if let Some(n) = &old_ready
        && !revisions.iter().any(|r| &r.metadata.name == n)
    {
        // The latest ready revision was deleted.
        set_ready(
            &mut status.conditions,
            ConditionStatus::False,
            "RevisionDeleted",
            format!("Revision {n:?} was deleted."),
        );
    }
    let lcr_ready = lcr
        .status
        .as_ref()
        .and_then(|s| ready_of(&s.conditions))
        .cloned();
    match lcr_ready.as_ref().map(|c| c.status) {
        Some(ConditionStatus::False) => set_ready(
            &mut status.conditions,
            ConditionStatus::False,
            "RevisionFailed",
            format!(
                "Revision {lcr_name:?} failed with message: {}.",
                lcr_ready
                    .as_ref()
                    .and_then(|c| c.message.as_deref())
                    .unwrap_or("")
            ),
        ),
        _ if status.latest_ready_revision_name.as_deref() == Some(lcr_name.as_str()) => set_ready(
            &mut status.conditions,
            ConditionStatus::True,
            "",
            String::new(),
        ),
        _ => {
            let deleted = condition::get(&status.conditions, conditions::READY)
                .is_some_and(|c| c.reason.as_deref() == Some("RevisionDeleted"));
            if !deleted {
                set_ready(
                    &mut status.conditions,
                    ConditionStatus::Unknown,
                    "",
                    String::new(),
                );
            }
        }
    }
    let new_ready = status.latest_ready_revision_name.clone();
    let failed_now = condition::is_false(&status.conditions, conditions::READY);
    let was_failed = before
        .as_ref()
        .is_some_and(|b| condition::is_false(&b.conditions, conditions::READY));
    if cfg.status != before {
        write_status(ctx.store, &cfg).await?;
    }
    if new_ready != old_ready
        && let Some(n) = &new_ready
    {
        if old_ready.is_none() {
            record(
                ctx,
                &cfg,
                events::NORMAL,
                "ConfigurationReady",
                "Configuration becomes ready".into(),
            )
            .await;
        }
        record(
            ctx,
            &cfg,
            events::NORMAL,
            "LatestReadyUpdate",
            format!("LatestReadyRevisionName updated to {n:?}"),
        )
        .await;
    }
    if failed_now && !was_failed && lcr_ready.is_some_and(|c| c.status == ConditionStatus::False) {
        let (reason, what) = if new_ready.as_deref() == Some(lcr_name.as_str()) {
            ("LatestReadyFailed", "Latest ready")
        } else {
            ("LatestCreatedFailed", "Latest created")
        };
        record(
            ctx,
            &cfg,
            events::WARNING,
            reason,
            format!("{what} revision {lcr_name:?} has failed"),
        )
        .await;
    }

    // Garbage collection per config-gc.
    let doomed = gc::plan(&ctx.config.gc, &cfg, &revisions, SystemTime::now());
    for rev in doomed {
        tracing::info!(revision = %rev, configuration = %name, "collecting a non-active revision (config-gc)");
        match ctx
            .store
            .commit(vec![Write::Delete(ObjectKey::new(&REVISION, ns, &rev))])
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn record<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    cfg: &Configuration,
    type_: &str,
    reason: &str,
    message: String,
) {
    if let Err(e) = events::record(ctx.store, cfg, type_, reason, message).await {
        tracing::warn!(configuration = %cfg.key(), "cannot record an event: {e}");
    }
}
