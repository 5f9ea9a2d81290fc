//! The pod spec of a revision (serving `ValidatePodSpec`): the allowed subset,
//! volumes, the containers and their roles, and the securityContext warnings.
//! Paths are relative to the pod spec (the revision spec).

use serde_json::Value;

use super::container::{self, Role, ServingPort, Volumes};
use super::{fieldmask, names};
use crate::config::ClusterConfig;
use crate::config::features::{self, Flag};
use crate::field_error::{FieldError, Level};
use crate::serving::{Container, PodSpec};

/// Fields of a PodSpec a revision may always set (the typed ones).
const ALWAYS_ALLOWED: &[&str] = &[
    "containers",
    "volumes",
    "serviceAccountName",
    "imagePullSecrets",
    "enableServiceLinks",
];

pub fn validate(cfg: &ClusterConfig, ps: &PodSpec) -> FieldError {
    let f = &cfg.features;
    // The mask: gated fields unless their flag is Disabled.
    let mut allowed: Vec<&str> = ALWAYS_ALLOWED.to_vec();
    for (field, flag) in features::GATED_POD_FIELDS {
        if f.flag(flag) != Flag::Disabled {
            allowed.push(field);
        }
    }
    if f.flag(features::SECURITY_CONTEXT) != Flag::Disabled || f.secure_pod_defaults() {
        allowed.push("securityContext");
    }
    let mut errs = fieldmask::check_extra(&ps.extra, &allowed);
    if ps.automount_service_account_token == Some(true) {
        errs.push(FieldError::disallowed_fields(&[
            "automountServiceAccountToken",
        ]));
    }
    if !ps.init_containers.is_empty() && f.flag(features::INIT_CONTAINERS) == Flag::Disabled {
        errs.push(FieldError::disallowed_fields(&["initContainers"]));
    }
    let pod_sc = ps.extra.get("securityContext").filter(|v| !v.is_null());
    if let Some(sc) = pod_sc
        && allowed.contains(&"securityContext")
    {
        errs.push(pod_security_context(cfg, sc).via_field("securityContext"));
    }
    for (i, c) in ps.containers.iter().enumerate() {
        errs.push(
            security_warnings(cfg, pod_sc, c.security_context.as_ref())
                .via_field("securityContext")
                .via_field_index("containers", i),
        );
    }
    for (i, c) in ps.init_containers.iter().enumerate() {
        errs.push(
            security_warnings(cfg, pod_sc, c.security_context.as_ref())
                .via_field("securityContext")
                .via_field_index("initContainers", i),
        );
    }
    let all: Vec<&Container> = ps.init_containers.iter().chain(&ps.containers).collect();
    let (volumes, verrs) = validate_volumes(cfg, &ps.volumes, &all);
    errs.push(verrs.via_field("volumes"));
    errs.push(init_containers(
        cfg,
        &ps.init_containers,
        &ps.containers,
        &volumes,
    ));
    let (port, perrs) = containers_ports(&ps.containers);
    errs.push(perrs.via_field("containers[*]"));
    match ps.containers.len() {
        0 => errs.push(FieldError::missing_field(&["containers"])),
        1 => errs.push(
            container::validate(cfg, &ps.containers[0], Role::Serving, &port, &volumes)
                .via_field_index("containers", 0),
        ),
        n => {
            if !f.enabled(features::MULTI_CONTAINER) {
                errs.push(FieldError::new(
                    format!("multi-container is off, but found {n} containers"),
                    &[],
                ));
            } else {
                let mut seen: Vec<&str> = Vec::new();
                for (i, c) in ps.containers.iter().enumerate() {
                    if seen.contains(&c.name.as_str()) {
                        errs.push(
                            FieldError::new(
                                format!("duplicate container name {}", crate::go::quote(&c.name)),
                                &["name"],
                            )
                            .via_field_index("containers", i),
                        );
                    } else {
                        seen.push(&c.name);
                    }
                    let role = if c.ports.is_empty() {
                        Role::Sidecar
                    } else {
                        Role::Serving
                    };
                    errs.push(
                        container::validate(cfg, c, role, &port, &volumes)
                            .via_field_index("containers", i),
                    );
                }
            }
        }
    }
    if let Some(sa) = ps.service_account_name.as_deref().filter(|s| !s.is_empty()) {
        for msg in names::dns1123_subdomain(sa) {
            errs.push(FieldError::invalid_value(sa, "serviceAccountName").with_details(msg));
        }
    }
    errs
}

/// `validateContainersPorts`: at most one port across all containers, and
/// one when there are several containers. Returns the serving port.
fn containers_ports(containers: &[Container]) -> (ServingPort, FieldError) {
    let mut count = 0;
    let mut port = ServingPort {
        name: String::new(),
        port: 0,
    };
    for c in containers {
        if let Some(p) = c.ports.first() {
            count += c.ports.len();
            port = ServingPort {
                name: p.name.clone().unwrap_or_default(),
                port: p.container_port,
            };
        }
    }
    if port.name.is_empty() {
        port.name = "http".into();
    }
    if port.port == 0 {
        port.port = 8080;
    }
    let errs = if count == 0 && containers.len() > 1 {
        FieldError::missing_field(&["ports"])
    } else if count > 1 {
        FieldError::new("more than one container port is set", &["ports"])
            .with_details("Only a single port is allowed across all containers")
    } else {
        FieldError::default()
    };
    (port, errs)
}

fn init_containers(
    cfg: &ClusterConfig,
    inits: &[Container],
    others: &[Container],
    volumes: &Volumes,
) -> FieldError {
    if inits.is_empty() {
        return FieldError::default();
    }
    if !cfg.features.enabled(features::INIT_CONTAINERS) {
        return FieldError::new(
            format!(
                "pod spec support for init-containers is off, but found {} init containers",
                inits.len()
            ),
            &[],
        );
    }
    let port = ServingPort {
        name: "http".into(),
        port: 8080,
    };
    let mut errs = FieldError::default();
    for (i, c) in inits.iter().enumerate() {
        // Upstream reports init containers under `containers[i]`.
        if others.iter().any(|o| o.name == c.name) {
            errs.push(
                FieldError::new(
                    format!("duplicate container name {}", crate::go::quote(&c.name)),
                    &["name"],
                )
                .via_field_index("containers", i),
            );
        }
        errs.push(
            container::validate(cfg, c, Role::Init, &port, volumes)
                .via_field_index("containers", i),
        );
    }
    errs
}

const VOLUME_SOURCES: &[(&str, Option<&str>)] = &[
    ("secret", None),
    ("configMap", None),
    ("projected", None),
    ("emptyDir", Some(features::EMPTY_DIR)),
    ("persistentVolumeClaim", Some(features::PVC)),
    ("hostPath", Some(features::HOST_PATH)),
    ("csi", Some(features::CSI)),
    ("ephemeral", Some(features::EPHEMERAL)),
    ("image", Some(features::IMAGE_VOLUMES)),
];

fn validate_volumes(
    cfg: &ClusterConfig,
    vs: &[Value],
    containers: &[&Container],
) -> (Volumes, FieldError) {
    let mounted: Vec<&str> = containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter())
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .collect();
    let mut volumes = Volumes::new();
    let mut errs = FieldError::default();
    for (i, v) in vs.iter().enumerate() {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if volumes.contains_key(&name) {
            errs.push(
                FieldError::new(
                    format!("duplicate volume name {}", crate::go::quote(&name)),
                    &["name"],
                )
                .via_index(i),
            );
        }
        if !mounted.contains(&name.as_str()) {
            errs.push(
                FieldError::new(
                    format!("volume with name {} not mounted", crate::go::quote(&name)),
                    &["name"],
                )
                .via_index(i),
            );
        }
        errs.push(validate_volume(cfg, v, &name).via_index(i));
        volumes.insert(name, v.clone());
    }
    (volumes, errs)
}

fn validate_volume(cfg: &ClusterConfig, v: &Value, name: &str) -> FieldError {
    let f = &cfg.features;
    let o = fieldmask::obj(v);
    let has = |k: &str| o.get(k).is_some_and(|x| !x.is_null());
    let mut errs = FieldError::default();
    if let Some(pvc) = o.get("persistentVolumeClaim").filter(|x| !x.is_null()) {
        let claim = pvc.get("claimName").and_then(Value::as_str).unwrap_or("");
        if !f.enabled(features::PVC) {
            errs.push(FieldError::new(
                format!("Persistent volume claim support is disabled, but found persistent volume claim {claim}"),
                &[],
            ));
        }
        let ro = pvc
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !ro && !f.enabled(features::PV_WRITE) {
            errs.push(FieldError::new(
                format!("Persistent volume write support is disabled, but found persistent volume claim {claim} that is not read-only"),
                &[],
            ));
        }
    }
    for (key, flag, what) in [
        ("image", features::IMAGE_VOLUMES, "Image"),
        ("emptyDir", features::EMPTY_DIR, "EmptyDir"),
        ("hostPath", features::HOST_PATH, "HostPath"),
        ("csi", features::CSI, "CSI"),
        ("ephemeral", features::EPHEMERAL, "Ephemeral"),
    ] {
        if has(key) && !f.enabled(flag) {
            errs.push(FieldError::new(
                format!("{what} volume support is disabled, but found {what} volume {name}"),
                &[],
            ));
        }
    }
    let allowed: Vec<&str> = std::iter::once("name")
        .chain(
            VOLUME_SOURCES
                .iter()
                .filter(|(_, flag)| flag.is_none_or(|fl| f.flag(fl) != Flag::Disabled))
                .map(|(k, _)| *k),
        )
        .collect();
    errs.push(fieldmask::check(&o, &allowed));
    // Upstream replaces the errors so far with the name error.
    if name.is_empty() {
        errs = FieldError::missing_field(&["name"]);
    } else if !names::dns1123_label(name).is_empty() {
        errs = FieldError::invalid_value(name, "name");
    }
    let mut specified: Vec<&str> = Vec::new();
    for (key, _) in VOLUME_SOURCES {
        if !has(key) {
            continue;
        }
        specified.push(key);
        let src = &o[*key];
        match *key {
            "secret" | "configMap" => {
                for (j, item) in src
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    errs.push(key_to_path(item).via_field_index("items", j));
                }
            }
            "emptyDir" => {
                if let Some(m) = src.get("medium").and_then(Value::as_str)
                    && !m.is_empty()
                    && m != "Memory"
                {
                    errs.push(FieldError::invalid_value(m, "medium").via_field("emptyDir"));
                }
            }
            _ => {}
        }
    }
    match specified.len() {
        0 => {
            let candidates: Vec<&str> = VOLUME_SOURCES
                .iter()
                .filter(|(_, flag)| flag.is_none_or(|fl| f.enabled(fl)))
                .map(|(k, _)| *k)
                .collect();
            errs.push(FieldError::missing_one_of(&candidates));
        }
        1 => {}
        _ => errs.push(FieldError::multiple_one_of(&specified)),
    }
    errs
}

fn key_to_path(item: &Value) -> FieldError {
    let o = fieldmask::obj(item);
    let mut errs = fieldmask::check(&o, &["key", "path", "mode"]);
    for k in ["key", "path"] {
        if o.get(k).and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::missing_field(&[k]));
        }
    }
    errs
}

fn pod_security_context(cfg: &ClusterConfig, sc: &Value) -> FieldError {
    let o = fieldmask::obj(sc);
    let f = &cfg.features;
    let mut allowed: Vec<&str> = Vec::new();
    if f.flag(features::SECURITY_CONTEXT) != Flag::Disabled {
        allowed.extend([
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "fsGroup",
            "supplementalGroups",
            "seccompProfile",
        ]);
    } else if f.secure_pod_defaults() {
        let t = o
            .get("seccompProfile")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str);
        if matches!(t, Some("RuntimeDefault" | "Unconfined")) {
            allowed.push("seccompProfile");
        }
    }
    let mut errs = fieldmask::check(&o, &allowed);
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(id) = o.get(key).and_then(Value::as_i64)
            && !(0..=i64::from(i32::MAX)).contains(&id)
        {
            errs.push(FieldError::out_of_bounds(id, 0, i32::MAX, key));
        }
    }
    for (i, g) in o
        .get("supplementalGroups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(id) = g.as_i64()
            && !(0..=i64::from(i32::MAX)).contains(&id)
        {
            errs.push(
                FieldError::out_of_bounds(id, 0, i32::MAX, "")
                    .via_field_index("supplementalGroups", i),
            );
        }
    }
    errs
}

/// `warnDefaultContainerSecurityContext`: warnings (not errors) for the
/// insecure Kubernetes defaults a container leaves unset.
fn security_warnings(cfg: &ClusterConfig, pod: Option<&Value>, sc: Option<&Value>) -> FieldError {
    if cfg.features.secure_pod_defaults() {
        return FieldError::default();
    }
    let null = Value::Null;
    let pod = pod.unwrap_or(&null);
    let sc = sc.unwrap_or(&null);
    let unset = |v: &Value, k: &str| v.get(k).is_none_or(Value::is_null);
    let insecure = |path: &str| {
        FieldError::new(
            "Kubernetes default value is insecure, Knative may default this to secure in a future release",
            &[path],
        )
        .at_level(Level::Warning)
    };
    let mut errs = FieldError::default();
    if unset(pod, "runAsNonRoot") && unset(sc, "runAsNonRoot") {
        errs.push(insecure("runAsNonRoot"));
    }
    if unset(sc, "allowPrivilegeEscalation") {
        errs.push(insecure("allowPrivilegeEscalation"));
    }
    if unset(sc, "seccompProfile") && unset(pod, "seccompProfile") {
        errs.push(insecure("seccompProfile"));
    } else {
        let default_type = |v: &Value| {
            v.get("seccompProfile")
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        };
        if default_type(pod) && default_type(sc) {
            errs.push(insecure("seccompProfile.type"));
        }
    }
    match sc.get("capabilities").filter(|c| !c.is_null()) {
        None => errs.push(insecure("capabilities")),
        Some(caps) => match caps.get("drop").filter(|d| !d.is_null()) {
            None => errs.push(insecure("capabilities.drop")),
            Some(drop) => {
                if drop.get(0).and_then(Value::as_str) == Some("all") {
                    errs.push(
                        FieldError::invalid_value("all", "capabilities.drop")
                            .with_details("Must be spelled as 'ALL'")
                            .at_level(Level::Warning),
                    );
                }
            }
        },
    }
    errs
}
