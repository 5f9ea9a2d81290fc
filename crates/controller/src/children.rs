//! The objects a Service owns (Configuration and Route) and a Configuration
//! owns (its Revisions), derived exactly as Knative derives them.

use std::collections::BTreeMap;

use skiff_api::labels;
use skiff_api::meta::{self, ObjectMeta, OwnerReference};
use skiff_api::object::Resource;
use skiff_api::serving::{
    Configuration, ConfigurationSpec, Revision, Route, RouteSpec, Service, TrafficTarget,
};

pub fn owner_ref<T: Resource>(owner: &T) -> OwnerReference {
    OwnerReference {
        api_version: T::kind().api_version(),
        kind: T::kind().kind.to_string(),
        name: owner.metadata().name.clone(),
        uid: owner.metadata().uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

const ROLLOUT_DURATION_KEYS: [&str; 2] = [
    "serving.knative.dev/rollout-duration",
    "serving.knative.dev/rolloutDuration",
];

/// The Configuration of `svc`; the routes annotation keeps the routes the
/// labeler added to `existing` (MakeConfigurationFromExisting).
pub fn make_configuration(svc: &Service, existing: Option<&Configuration>) -> Configuration {
    let m = &svc.metadata;
    let mut labels = m.labels.clone();
    labels.insert(labels::SERVICE.into(), m.name.clone());
    labels.insert(labels::SERVICE_UID.into(), m.uid.clone());
    let mut annotations = m.annotations.clone();
    annotations.remove(labels::LAST_APPLIED);
    for k in ROLLOUT_DURATION_KEYS {
        annotations.remove(k);
    }
    let mut routes = existing
        .map(|c| crate::labeler::routes_of(&c.metadata))
        .unwrap_or_default();
    routes.insert(m.name.clone());
    let routes: Vec<String> = routes.into_iter().collect();
    annotations.insert(labels::ROUTES_ANNOTATION.into(), routes.join(","));
    Configuration {
        metadata: ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            labels,
            annotations,
            owner_references: vec![owner_ref(svc)],
            ..Default::default()
        },
        spec: ConfigurationSpec {
            template: svc.spec.template.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn make_route(svc: &Service) -> Route {
    let m = &svc.metadata;
    let mut labels = m.labels.clone();
    labels.insert(labels::SERVICE.into(), m.name.clone());
    let mut annotations = m.annotations.clone();
    annotations.remove(labels::LAST_APPLIED);
    let traffic = svc
        .spec
        .traffic
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|mut t: TrafficTarget| {
            if t.revision_name.as_deref().unwrap_or("").is_empty() {
                t.configuration_name = Some(m.name.clone());
            }
            t
        })
        .collect();
    Route {
        metadata: ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            labels,
            annotations,
            owner_references: vec![owner_ref(svc)],
            ..Default::default()
        },
        spec: RouteSpec {
            traffic,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Revision of `cfg`'s current generation (MakeRevision): the template's
/// metadata and spec, Knative's labels, the creator from the
/// Configuration's last modifier, and the routing state (`active` when the
/// Configuration is already routed, else `pending`).
pub fn make_revision(cfg: &Configuration, name: &str) -> Revision {
    let m = &cfg.metadata;
    let template = &cfg.spec.template;
    let mut labels: BTreeMap<String, String> = template.metadata.labels.clone();
    labels.insert(labels::CONFIGURATION.into(), m.name.clone());
    labels.insert(
        labels::CONFIGURATION_GENERATION.into(),
        m.generation.to_string(),
    );
    labels.insert(labels::CONFIGURATION_UID.into(), m.uid.clone());
    for key in [labels::SERVICE, labels::SERVICE_UID] {
        if let Some(v) = m.label(key) {
            labels.insert(key.into(), v.to_string());
        }
    }
    let mut annotations = template.metadata.annotations.clone();
    if let Some(modifier) = m.annotation(labels::LAST_MODIFIER) {
        annotations.insert(labels::CREATOR.into(), modifier.to_string());
    }
    let now = meta::now();
    let state = match m.annotation(labels::ROUTES_ANNOTATION) {
        Some(routes) => {
            annotations.insert(labels::ROUTES_ANNOTATION.into(), routes.to_string());
            crate::labeler::ACTIVE
        }
        None => crate::labeler::PENDING,
    };
    labels.insert(labels::ROUTING_STATE.into(), state.into());
    annotations.insert(labels::ROUTING_STATE_MODIFIED.into(), now);
    Revision {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: m.namespace.clone(),
            labels,
            annotations,
            owner_references: vec![owner_ref(cfg)],
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    }
}

/// What differs between `actual` (as stored) and `desired` in what the owner
/// controls: spec, labels, annotations, owner references (empty when equal).
pub fn drift<T: Resource>(actual: &T, desired: &T) -> Vec<&'static str> {
    let (a, d) = (actual.to_dynamic(), desired.to_dynamic());
    let mut out = Vec::new();
    if a.body.get("spec") != d.body.get("spec") {
        out.push("spec");
    }
    if a.metadata.labels != d.metadata.labels {
        out.push("labels");
    }
    if a.metadata.annotations != d.metadata.annotations {
        out.push("annotations");
    }
    if a.metadata.owner_references != d.metadata.owner_references {
        out.push("ownerReferences");
    }
    out
}

/// `desired`, carrying `actual`'s identity (for an update of `actual`).
pub fn restore<T: Resource + Clone>(actual: &T, desired: &T) -> T {
    let mut next = desired.clone();
    let m = next.metadata_mut();
    let am = actual.metadata();
    m.uid = am.uid.clone();
    m.resource_version = am.resource_version.clone();
    m.extra = am.extra.clone();
    next
}
