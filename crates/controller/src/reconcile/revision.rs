//! Revision -> instances on the runtime, and the Revision's conditions from
//! what the runtime reports.

use skiff_api::condition::{self, Conditions};
use skiff_api::serving::{Revision, RevisionStatus, conditions};
use skiff_runtime::{Phase, RevisionKey, Runtime};
use skiff_store::{Store, TypedStore};

use super::{Ctx, Result, write_status};

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
