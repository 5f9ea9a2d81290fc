//! The objects a Service owns (Configuration and Route) and a Configuration
//! owns (its Revisions), derived exactly as Knative derives them.

use std::collections::BTreeMap;

use skiff_api::labels;
use skiff_api::meta::{ObjectMeta, OwnerReference};
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

pub fn make_configuration(svc: &Service) -> Configuration {
    let m = &svc.metadata;
    let mut labels = m.labels.clone();
    labels.insert(labels::SERVICE.into(), m.name.clone());
    labels.insert(labels::SERVICE_UID.into(), m.uid.clone());
    let mut annotations = m.annotations.clone();
    annotations.remove(labels::LAST_APPLIED);
    for k in ROLLOUT_DURATION_KEYS {
        annotations.remove(k);
    }
    annotations.insert(labels::ROUTES_ANNOTATION.into(), m.name.clone());
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
        spec: RouteSpec { traffic },
        ..Default::default()
    }
}

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
    if let Some(routes) = m.annotation(labels::ROUTES_ANNOTATION) {
        annotations.insert(labels::ROUTES_ANNOTATION.into(), routes.to_string());
    }
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

/// True when `actual` (as stored) differs from `desired` in what the owner
/// controls: labels, annotations, owner references and spec.
pub fn drifted<T: Resource>(actual: &T, desired: &T) -> bool {
    let (a, d) = (actual.to_dynamic(), desired.to_dynamic());
    a.metadata.labels != d.metadata.labels
        || a.metadata.annotations != d.metadata.annotations
        || a.metadata.owner_references != d.metadata.owner_references
        || a.body.get("spec") != d.body.get("spec")
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
