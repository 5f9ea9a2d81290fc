//! Revisions and revision templates (serving revision_defaults.go,
//! revision_validation.go; docs knative-api.md §5.2, §6).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{autoscaling, diff, metadata, names::go_list, podspec};
use crate::config::ClusterConfig;
use crate::field_error::{CURRENT_FIELD, FieldError, Level};
use crate::labels;
use crate::meta::ObjectMeta;
use crate::names::child_name;
use crate::serving::{
    Container, IntOrString, Probe, Revision, RevisionSpec, RevisionTemplateSpec, TcpSocketAction,
};

// ----------------------------------------------------------------- defaults

/// `RevisionSpec.SetDefaults`. `parent` is the Service or Configuration
/// whose template this is (container name templates see it); `create` says
/// whether the enclosing object is being created.
pub fn default_spec(
    cfg: &ClusterConfig,
    spec: &mut RevisionSpec,
    parent: &ObjectMeta,
    create: bool,
) {
    let d = &cfg.defaults;
    if spec.timeout_seconds.unwrap_or(0) == 0 {
        spec.timeout_seconds = Some(d.revision_timeout_seconds);
    }
    let timeout = spec.timeout_seconds.unwrap_or(0);
    if spec.idle_timeout_seconds.is_none()
        && d.revision_idle_timeout_seconds != 0
        && d.revision_idle_timeout_seconds < timeout
    {
        spec.idle_timeout_seconds = Some(d.revision_idle_timeout_seconds);
    }
    if spec.response_start_timeout_seconds.is_none()
        && d.revision_response_start_timeout_seconds != 0
        && d.revision_response_start_timeout_seconds < timeout
    {
        spec.response_start_timeout_seconds = Some(d.revision_response_start_timeout_seconds);
    }
    if spec.container_concurrency.is_none() {
        spec.container_concurrency = Some(d.container_concurrency);
    }
    let mut taken: Vec<String> = spec
        .pod
        .containers
        .iter()
        .chain(&spec.pod.init_containers)
        .map(|c| c.name.clone())
        .collect();
    default_names(
        &mut spec.pod.containers,
        &mut taken,
        &d.user_container_name(parent),
    );
    default_names(
        &mut spec.pod.init_containers,
        &mut taken,
        &d.init_container_name(parent),
    );

    let single = spec.pod.containers.len() == 1;
    let writable: Vec<String> = spec
        .pod
        .volumes
        .iter()
        .filter(|v| {
            ["emptyDir", "persistentVolumeClaim", "ephemeral"]
                .iter()
                .any(|k| v.get(k).is_some_and(|x| !x.is_null()))
        })
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    for c in &mut spec.pod.containers {
        default_resources(cfg, c);
        if single || !c.ports.is_empty() {
            let p = c.readiness_probe.get_or_insert_with(Probe::default);
            if p.tcp_socket.is_none()
                && p.http_get.is_none()
                && p.exec.is_none()
                && p.grpc.is_none()
            {
                p.tcp_socket = Some(TcpSocketAction {
                    port: Some(IntOrString::Int(0)),
                    ..Default::default()
                });
            }
        }
        if let Some(p) = &mut c.readiness_probe {
            if p.success_threshold.unwrap_or(0) == 0 {
                p.success_threshold = Some(1);
            }
            if p.period_seconds.unwrap_or(0) != 0 {
                if p.failure_threshold.unwrap_or(0) == 0 {
                    p.failure_threshold = Some(3);
                }
                if p.timeout_seconds.unwrap_or(0) == 0 {
                    p.timeout_seconds = Some(1);
                }
            }
        }
        for p in [
            &mut c.readiness_probe,
            &mut c.liveness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(Value::Object(g)) = &mut p.grpc {
                g.entry("service").or_insert(Value::String(String::new()));
            }
        }
        for vm in &mut c.volume_mounts {
            let name = vm
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !writable.contains(&name)
                && let Some(o) = vm.as_object_mut()
            {
                o.insert("readOnly".into(), Value::Bool(true));
            }
        }
    }
    if create && spec.pod.enable_service_links.is_none() && !spec.pod.containers.is_empty() {
        spec.pod.enable_service_links = d.enable_service_links;
    }
    if cfg.features.secure_pod_defaults() {
        let pod_sc = spec
            .pod
            .extra
            .get("securityContext")
            .cloned()
            .unwrap_or(Value::Null);
        let enabled = cfg
            .features
            .enabled(crate::config::features::SECURE_POD_DEFAULTS);
        for c in spec
            .pod
            .containers
            .iter_mut()
            .chain(spec.pod.init_containers.iter_mut())
        {
            secure_defaults(c, &pod_sc, enabled);
        }
    }
}

fn default_names(containers: &mut [Container], taken: &mut Vec<String>, default: &str) {
    let many = containers.len() > 1;
    let mut next = 0;
    for c in containers.iter_mut() {
        if !c.name.is_empty() {
            continue;
        }
        let mut name = default.to_string();
        if many || taken.contains(&name) {
            loop {
                name = child_name(default, &format!("-{next}"));
                next += 1;
                if !taken.contains(&name) {
                    break;
                }
            }
        }
        taken.push(name.clone());
        c.name = name;
    }
}

fn default_resources(cfg: &ClusterConfig, c: &mut Container) {
    let r = c.resources.get_or_insert_with(|| json!({}));
    if !r.is_object() {
        return;
    }
    for ((resource, kind), value) in &cfg.defaults.resources {
        let list = r
            .as_object_mut()
            .expect("an object")
            .entry(*kind)
            .or_insert_with(|| json!({}));
        if let Some(list) = list.as_object_mut() {
            list.entry(*resource)
                .or_insert_with(|| Value::String(value.clone()));
        }
    }
}

fn secure_defaults(c: &mut Container, pod_sc: &Value, run_as_non_root: bool) {
    let mut sc = c.security_context.clone().unwrap_or_else(|| json!({}));
    let Some(o) = sc.as_object_mut() else { return };
    o.entry("allowPrivilegeEscalation")
        .or_insert(Value::Bool(false));
    let pod_seccomp_type = pod_sc
        .get("seccompProfile")
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if pod_seccomp_type.is_empty() {
        let prof = o.entry("seccompProfile").or_insert_with(|| json!({}));
        if let Some(p) = prof.as_object_mut()
            && p.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            p.insert("type".into(), Value::String("RuntimeDefault".into()));
        }
    }
    if o.get("capabilities").is_none_or(Value::is_null) {
        let mut caps = json!({"drop": ["ALL"]});
        if c.ports.iter().any(|p| p.container_port < 1024) {
            caps["add"] = json!(["NET_BIND_SERVICE"]);
        }
        o.insert("capabilities".into(), caps);
    }
    if run_as_non_root
        && pod_sc.get("runAsNonRoot").is_none_or(Value::is_null)
        && o.get("runAsNonRoot").is_none_or(Value::is_null)
    {
        o.insert("runAsNonRoot".into(), Value::Bool(true));
    }
    if !o.is_empty() {
        c.security_context = Some(sc);
    }
}

// --------------------------------------------------------------- validation

/// `RevisionSpec.Validate` (paths relative to the spec).
pub fn validate_spec(cfg: &ClusterConfig, spec: &RevisionSpec) -> FieldError {
    let mut errs = podspec::validate(cfg, &spec.pod);
    let d = &cfg.defaults;
    if let Some(t) = spec.timeout_seconds
        && t != 0
        && (t > d.max_revision_timeout_seconds || t < 0)
    {
        errs.push(FieldError::out_of_bounds(
            t,
            0,
            d.max_revision_timeout_seconds,
            "timeoutSeconds",
        ));
    }
    if let Some(cc) = spec.container_concurrency {
        let min = if d.allow_container_concurrency_zero {
            0
        } else {
            1
        };
        if cc < min || cc > d.container_concurrency_max_limit {
            errs.push(FieldError::out_of_bounds(
                cc,
                min,
                d.container_concurrency_max_limit,
                "containerConcurrency",
            ));
        }
    }
    errs
}

/// `networking.knative.dev*` annotations Knative allows on a template.
const NETWORKING_ALLOWED: &[&str] = &[
    "networking.knative.dev/ingress.class",
    "networking.knative.dev/certificate.class",
    "networking.knative.dev/disableAutoTLS",
    "networking.knative.dev/disable-external-domain-tls",
    "networking.knative.dev/httpOption",
    "networking.knative.dev/ingress-class",
    "networking.knative.dev/certificate-class",
    "networking.knative.dev/disable-auto-tls",
    "networking.knative.dev/http-protocol",
];

const QUEUE_RESOURCE_ANNOTATIONS: &[&str] = &[
    "queue.sidecar.serving.knative.dev/cpu-resource-request",
    "queue.sidecar.serving.knative.dev/cpu-resource-limit",
    "queue.sidecar.serving.knative.dev/memory-resource-request",
    "queue.sidecar.serving.knative.dev/memory-resource-limit",
    "queue.sidecar.serving.knative.dev/ephemeral-storage-resource-request",
    "queue.sidecar.serving.knative.dev/ephemeral-storage-resource-limit",
];

/// `RevisionTemplateSpec.Validate` (paths relative to the template).
pub fn validate_template(
    cfg: &ClusterConfig,
    t: &RevisionTemplateSpec,
    parent: &ObjectMeta,
) -> FieldError {
    let mut errs = validate_spec(cfg, &t.spec).via_field("spec");
    let ann = &t.metadata.annotations;
    errs.push(autoscaling::validate(&cfg.autoscaler, ann).via_field("metadata.annotations"));
    let mut net = FieldError::default();
    for key in ann.keys() {
        if key.starts_with("networking.knative.dev") && !NETWORKING_ALLOWED.contains(&key.as_str())
        {
            net.push(FieldError::invalid_key_name(key, CURRENT_FIELD));
        }
    }
    errs.push(net.via_field("metadata.annotations"));
    errs.push(revision_name(&t.metadata, parent));
    errs.push(queue_sidecar_annotations(ann).via_field("metadata.annotations"));
    if let Some(v) = ann.get(labels::PROGRESS_DEADLINE).filter(|v| !v.is_empty()) {
        errs.push(
            metadata::whole_seconds_annotation(labels::PROGRESS_DEADLINE, v, "progress-deadline")
                .via_field("metadata.annotations"),
        );
    }
    errs
}

fn queue_sidecar_annotations(m: &BTreeMap<String, String>) -> FieldError {
    let mut errs = FieldError::default();
    let pct = metadata::get_alias(
        m,
        (
            "queue.sidecar.serving.knative.dev/resource-percentage",
            "queue.sidecar.serving.knative.dev/resourcePercentage",
        ),
    );
    if let Some((k, v)) = pct {
        errs.push(
            FieldError::new(
                "Queue proxy resource percentage annotation is deprecated. Please use the available annotations to explicitly set resource values per service",
                &[CURRENT_FIELD],
            )
            .via_key(k)
            .at_level(Level::Warning),
        );
        match crate::go::parse_float(v) {
            Err(_) => errs.push(FieldError::invalid_value(v, CURRENT_FIELD).via_key(k)),
            Ok(x) if !(0.1..=100.0).contains(&x) => errs.push(
                FieldError::out_of_bounds(crate::go::format_float(x), 0.1, 100, CURRENT_FIELD)
                    .via_key(k),
            ),
            Ok(_) => {}
        }
    }
    for key in QUEUE_RESOURCE_ANNOTATIONS {
        if let Some(v) = m.get(*key)
            && crate::quantity::parse(v).is_err()
        {
            errs.push(FieldError::invalid_value(v, CURRENT_FIELD).via_key(key));
        }
    }
    errs
}

/// `validateRevisionName`: BYO names (paths relative to the template).
fn revision_name(meta: &ObjectMeta, parent: &ObjectMeta) -> FieldError {
    if let Some(g) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        let msgs = super::names::name_is_dns1035(g, true);
        if !msgs.is_empty() {
            return FieldError::invalid_value(
                format!("not a DNS 1035 label prefix: {}", go_list(&msgs)),
                "metadata.generateName",
            );
        }
    }
    let name = &meta.name;
    if name.is_empty() {
        return FieldError::default();
    }
    let msgs = super::names::name_is_dns1035(name, false);
    if !msgs.is_empty() {
        return FieldError::invalid_value(
            format!("not a DNS 1035 label: {}", go_list(&msgs)),
            "metadata.name",
        );
    }
    if parent.name.is_empty()
        && parent
            .generate_name
            .as_deref()
            .is_some_and(|g| !g.is_empty())
    {
        return FieldError::disallowed_fields(&["metadata.name"]);
    }
    let prefix = format!("{}-", parent.name);
    if !name.starts_with(&prefix) {
        return FieldError::invalid_value(
            format!(
                "{} must have prefix {}",
                crate::go::quote(name),
                crate::go::quote(&prefix)
            ),
            "metadata.name",
        );
    }
    FieldError::default()
}

/// `VerifyNameChange`: a BYO-named template may not change without a new
/// name (paths relative to the template).
pub fn verify_name_change(new: &RevisionTemplateSpec, old: &RevisionTemplateSpec) -> FieldError {
    if new.metadata.name.is_empty() || new.metadata.name != old.metadata.name {
        return FieldError::default();
    }
    let (a, b) = (
        serde_json::to_value(old).unwrap_or(Value::Null),
        serde_json::to_value(new).unwrap_or(Value::Null),
    );
    let d = diff::short_diff("v1.RevisionTemplateSpec", &a, &b);
    if d.is_empty() {
        return FieldError::default();
    }
    FieldError::new(
        "Saw the following changes without a name change (-old +new)",
        &["metadata.name"],
    )
    .with_details(d)
}

/// Admission of a Revision object (a user-created one; the controller writes
/// its own directly). Paths are absolute.
pub fn admit(cfg: &ClusterConfig, rev: &mut Revision, old: Option<&Revision>) -> FieldError {
    if old.is_none() {
        default_spec(cfg, &mut rev.spec, &ObjectMeta::default(), true);
    }
    let m = &rev.metadata;
    let mut errs = metadata::object_name(m);
    errs.push(autoscaling::validate(&cfg.autoscaler, &m.annotations).via_field("annotations"));
    errs.push(metadata::label_owner(m, labels::CONFIGURATION, "Configuration").via_field("labels"));
    let mut errs = errs.via_field("metadata");
    match old {
        Some(old) => {
            let (a, b) = (
                serde_json::to_value(&old.spec).unwrap_or(Value::Null),
                serde_json::to_value(&rev.spec).unwrap_or(Value::Null),
            );
            let d = diff::short_diff("v1.RevisionSpec", &a, &b);
            if !d.is_empty() {
                return FieldError::new("Immutable fields changed (-old +new)", &["spec"])
                    .with_details(d);
            }
        }
        None => errs.push(validate_spec(cfg, &rev.spec).via_field("spec")),
    }
    errs
}
