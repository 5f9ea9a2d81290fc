//! Route -> resolved traffic, URLs and conditions (serving
//! pkg/reconciler/route), then the labeler's routing metadata. The gateway
//! table is built from the Route's status (see routing.rs), so a Route whose
//! targets stop resolving keeps serving what it served, as Knative's ingress
//! does.

use std::collections::HashMap;

use skiff_api::condition::{self, ConditionStatus, Conditions};
use skiff_api::labels;
use skiff_api::serving::{
    Addressable, Configuration, Revision, Route, RouteStatus, TrafficTarget, conditions,
};
use skiff_runtime::Runtime;
use skiff_store::{Store, TypedStore};

use super::{Ctx, Result, write_status};
use crate::rollout::Rollout;
use crate::{labeler, network, traffic};

/// The Route's `rollout-duration` annotation, else config-network's.
fn rollout_duration(
    meta: &skiff_api::ObjectMeta,
    cfg: &skiff_api::config::ClusterConfig,
) -> std::time::Duration {
    let annotated = [
        "serving.knative.dev/rollout-duration",
        "serving.knative.dev/rolloutDuration",
    ]
    .iter()
    .find_map(|k| meta.annotation(k))
    .and_then(|v| skiff_api::go::parse_duration(v).ok())
    .map(|d| d.to_std())
    .filter(|d| !d.is_zero());
    annotated.unwrap_or_else(|| {
        std::time::Duration::from_secs(cfg.network.rollout_duration_secs.max(0) as u64)
    })
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub async fn route<S: Store, R: Runtime>(ctx: &Ctx<'_, S, R>, ns: &str, name: &str) -> Result<()> {
    let Some(mut route) = ctx.store.get_as::<Route>(ns, name).await? else {
        // Gone: nothing references it any more.
        return labeler::clear(ctx.store, ns, name).await;
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
    let cfg = ctx.config;
    let meta = route.metadata.clone();
    let status = route.status.get_or_insert_with(RouteStatus::default);
    let new_generation = status.observed_generation != Some(meta.generation);
    status.observed_generation = Some(meta.generation);
    let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
    conds.initialize();
    if new_generation {
        conds.mark_unknown(
            conditions::INGRESS_READY,
            "IngressNotConfigured",
            "Ingress has not yet been reconciled.",
        );
    }
    // Skiff terminates no TLS for routes: external-domain-tls is off.
    conds.mark_true(conditions::CERTIFICATE_PROVISIONED);
    condition::set(
        conds.list,
        conditions::CERTIFICATE_PROVISIONED,
        ConditionStatus::True,
        Some("TLSNotEnabled"),
        Some("external-domain-tls is not enabled".into()),
    );
    // The URL comes first: a domain or template error is ErrorConfig.
    let main = match network::group_hosts(cfg, &meta, None) {
        Ok(h) => h,
        Err(e) => {
            conds.mark_false(conditions::ALL_TRAFFIC_ASSIGNED, "ErrorConfig", e);
            return finish(ctx, &route, &before).await;
        }
    };
    status.url = Some(main.url.clone());
    match resolved {
        Ok(r) => {
            // Gradual rollout: the configuration targets' shares move to a
            // new latest revision in steps; status shows the current split.
            let duration = rollout_duration(&meta, cfg);
            let prev: Option<Rollout> = status
                .rollout
                .as_ref()
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .filter(Rollout::is_valid);
            let baseline = Rollout::baseline(&r.targets);
            let (effective, next_step) = if duration.is_zero() {
                (baseline, None)
            } else {
                let now = unix_nanos();
                let (mut effective, next) = baseline.step(prev.as_ref(), now);
                let observed = effective.observe_ready(now, duration);
                let next = [next, observed].into_iter().flatten().min();
                (effective, next.map(|t| (t - now).max(0)))
            };
            let rolling = !effective.done();
            if let Some(wait) = next_step {
                ctx.requeue_after(
                    skiff_api::ObjectKey::new(
                        &skiff_api::object::ROUTE,
                        &meta.namespace,
                        &meta.name,
                    ),
                    std::time::Duration::from_nanos(wait as u64),
                );
            }
            let resolved_status = effective.apply(r.status);
            status.rollout = (!effective.configurations.is_empty())
                .then(|| serde_json::to_value(&effective).expect("rollout state serializes"));
            let mut targets: Vec<TrafficTarget> = Vec::with_capacity(resolved_status.len());
            for mut t in resolved_status {
                if let Some(tag) = t.tag.clone() {
                    match network::group_hosts(cfg, &meta, Some(&tag)) {
                        Ok(h) => t.url = Some(h.url),
                        Err(e) => {
                            let mut conds =
                                Conditions::new(&mut status.conditions, conditions::ROUTE);
                            conds.mark_false(conditions::ALL_TRAFFIC_ASSIGNED, "ErrorConfig", e);
                            return finish(ctx, &route, &before).await;
                        }
                    }
                }
                targets.push(t);
            }
            status.traffic = targets;
            status.address = Some(Addressable {
                url: Some(network::address(&meta)),
            });
            let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
            conds.mark_true(conditions::ALL_TRAFFIC_ASSIGNED);
            if rolling {
                conds.mark_unknown(
                    conditions::INGRESS_READY,
                    "RolloutInProgress",
                    "A gradual rollout of the latest revision(s) is in progress.",
                );
            } else {
                // The gateway's table is rebuilt right after this reconcile.
                conds.mark_true(conditions::INGRESS_READY);
            }
        }
        Err(e) => {
            let mut conds = Conditions::new(&mut status.conditions, conditions::ROUTE);
            match e.status {
                ConditionStatus::False => {
                    conds.mark_false(conditions::ALL_TRAFFIC_ASSIGNED, e.reason, e.message)
                }
                _ => conds.mark_unknown(conditions::ALL_TRAFFIC_ASSIGNED, e.reason, e.message),
            }
        }
    }
    finish(ctx, &route, &before).await
}

async fn finish<S: Store, R: Runtime>(
    ctx: &Ctx<'_, S, R>,
    route: &Route,
    before: &Option<RouteStatus>,
) -> Result<()> {
    if route.status != *before {
        write_status(ctx.store, route).await?;
    }
    labeler::sync(ctx.store, route).await
}
