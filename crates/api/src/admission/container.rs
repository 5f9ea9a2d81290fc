//! Containers of a revision (serving pkg/apis/serving/k8s_validation.go):
//! what a serving container, a sidecar and an init container may set. Paths
//! are relative to the container.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{fieldmask, image};
use crate::config::ClusterConfig;
use crate::config::features::{self, Flag};
use crate::field_error::{CURRENT_FIELD, FieldError};
use crate::serving::{Container, IntOrString, Probe};

/// Ports the queue-proxy and Knative's sidecars use.
const RESERVED_PORTS: [i64; 6] = [8012, 8013, 8022, 8008, 9090, 9091];
const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];
const RESERVED_PATHS: [&str; 3] = ["/", "/dev", "/dev/log"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The container with the port (or the only one).
    Serving,
    Sidecar,
    Init,
}

/// The serving port as validation sees it (name defaults to `http`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServingPort {
    pub name: String,
    pub port: i64,
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

/// Volumes of the pod by name.
pub type Volumes = BTreeMap<String, Value>;

/// Validate one container (the `validate` of upstream plus the probe checks
/// of its role).
pub fn validate(
    cfg: &ClusterConfig,
    c: &Container,
    role: Role,
    port: &ServingPort,
    volumes: &Volumes,
) -> FieldError {
    let mut errs = FieldError::default();
    match role {
        Role::Serving => {
            errs.push(probe(c.liveness_probe.as_ref(), Some(port)).via_field("livenessProbe"));
            errs.push(
                readiness_probe(c.readiness_probe.as_ref(), Some(port)).via_field("readinessProbe"),
            );
            errs.push(probe(c.startup_probe.as_ref(), Some(port)).via_field("startupProbe"));
        }
        Role::Sidecar => {
            let probing = cfg.features.enabled(features::MULTI_CONTAINER_PROBING);
            for (name, p) in [
                ("livenessProbe", &c.liveness_probe),
                ("readinessProbe", &c.readiness_probe),
                ("startupProbe", &c.startup_probe),
            ] {
                let Some(p) = p else { continue };
                let e = if !probing {
                    // The empty probe mask: every set field is disallowed.
                    let v = serde_json::to_value(p).unwrap_or(Value::Null);
                    fieldmask::check(&fieldmask::obj(&v), &[])
                } else if name == "readinessProbe" {
                    readiness_probe(Some(p), None)
                } else {
                    probe(Some(p), None)
                };
                errs.push(e.via_field(name));
            }
        }
        Role::Init => {
            for (name, set) in [
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
                (
                    "lifecycle",
                    c.extra.get("lifecycle").is_some_and(|v| !v.is_null()),
                ),
            ] {
                if set {
                    errs.push(FieldError::new(
                        "field not allowed in an init container",
                        &[name],
                    ));
                }
            }
        }
    }
    errs.push(basics(cfg, c, role, volumes));
    errs
}

fn basics(cfg: &ClusterConfig, c: &Container, role: Role, volumes: &Volumes) -> FieldError {
    if *c == Container::default() {
        return FieldError::missing_field(&[CURRENT_FIELD]);
    }
    // Every modelled field is allowed; `extra` holds lifecycle, stdin, tty,
    // volumeDevices, resizePolicy, ... and typos.
    let mut errs = fieldmask::check_extra(&c.extra, &[]);
    if c.name == "queue-proxy" {
        errs.push(FieldError::new(
            "\"queue-proxy\" is a reserved container name",
            &["name"],
        ));
    }
    errs.push(env(cfg, c, role).via_field("env"));
    errs.push(env_from(&c.env_from).via_field("envFrom"));
    if c.image.is_empty() {
        errs.push(FieldError::missing_field(&["image"]));
    } else if let Err(e) = image::parse_reference(&c.image) {
        errs.push(
            FieldError::new("Failed to parse image reference", &["image"])
                .with_details(format!("image: {}, error: {e}", crate::go::quote(&c.image))),
        );
    }
    let ports = match role {
        Role::Init => {
            let mut e = FieldError::default();
            for p in &c.ports {
                e.push(port_basic(p));
            }
            e
        }
        _ => match c.ports.first() {
            None => FieldError::default(),
            Some(p) => {
                let mut e = port_basic(p);
                if let Some(proto) = p.protocol.as_deref()
                    && !proto.is_empty()
                    && proto != "TCP"
                {
                    e.push(FieldError::invalid_value(proto, "protocol"));
                }
                let name = p.name.as_deref().unwrap_or("");
                if !matches!(name, "" | "h2c" | "http1") {
                    e.push(
                        FieldError::new(
                            format!("Port name {name} is not allowed"),
                            &[CURRENT_FIELD],
                        )
                        .with_details("Name must be empty, or one of: 'h2c', 'http1'"),
                    );
                }
                e
            }
        },
    };
    errs.push(ports.via_field("ports"));
    if let Some(r) = &c.resources {
        errs.push(
            fieldmask::check(&fieldmask::obj(r), &["limits", "requests"]).via_field("resources"),
        );
    }
    if let Some(sc) = &c.security_context {
        errs.push(security_context(cfg, sc).via_field("securityContext"));
    }
    if let Some(p) = c.termination_message_policy.as_deref()
        && !matches!(p, "" | "File" | "FallbackToLogsOnError")
    {
        errs.push(FieldError::invalid_value(p, "terminationMessagePolicy"));
    }
    errs.push(volume_mounts(cfg, &c.volume_mounts, volumes).via_field("volumeMounts"));
    errs
}

fn env(cfg: &ClusterConfig, c: &Container, role: Role) -> FieldError {
    let mut errs = FieldError::default();
    for (i, e) in c.env.iter().enumerate() {
        let mut ee = FieldError::default();
        if e.name.is_empty() {
            ee.push(FieldError::missing_field(&["name"]));
        } else if RESERVED_ENV.contains(&e.name.as_str())
            && !(role != Role::Serving && e.name == "PORT")
        {
            ee.push(FieldError::new(
                format!(
                    "{} is a reserved environment variable",
                    crate::go::quote(&e.name)
                ),
                &["name"],
            ));
        }
        if let Some(from) = &e.value_from {
            let mut allowed = vec!["configMapKeyRef", "secretKeyRef"];
            if cfg.features.flag(features::FIELD_REF) != Flag::Disabled {
                allowed.extend(["fieldRef", "resourceFieldRef"]);
            }
            ee.push(fieldmask::check(&fieldmask::obj(from), &allowed).via_field("valueFrom"));
        }
        errs.push(ee.via_index(i));
    }
    errs
}

fn env_from(list: &[Value]) -> FieldError {
    let mut errs = FieldError::default();
    for (i, ef) in list.iter().enumerate() {
        let o = fieldmask::obj(ef);
        errs.push(fieldmask::check(&o, &["prefix", "configMapRef", "secretRef"]).via_index(i));
        for key in ["secretRef", "configMapRef"] {
            if let Some(r) = o.get(key).filter(|v| !v.is_null()) {
                errs.push(
                    fieldmask::check(&fieldmask::obj(r), &["name", "optional"])
                        .via_index(i)
                        .via_field(key),
                );
            }
        }
        let has = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
        match (has("configMapRef"), has("secretRef")) {
            (true, true) => errs.push(FieldError::multiple_one_of(&["configMapRef", "secretRef"])),
            (false, false) => errs.push(FieldError::missing_one_of(&["configMapRef", "secretRef"])),
            _ => {}
        }
    }
    errs
}

fn port_basic(p: &crate::serving::ContainerPort) -> FieldError {
    let mut errs = fieldmask::check_extra(&p.extra, &[]);
    if RESERVED_PORTS.contains(&p.container_port) {
        errs.push(
            FieldError::invalid_value(
                format!("{} is a reserved port", p.container_port),
                "containerPort",
            )
            .with_details(format!(
                "{} is a reserved port, please use a different value",
                p.container_port
            )),
        );
    }
    if !(0..=65535).contains(&p.container_port) {
        errs.push(FieldError::out_of_bounds(
            p.container_port,
            0,
            65535,
            "containerPort",
        ));
    }
    errs
}

fn security_context(cfg: &ClusterConfig, sc: &Value) -> FieldError {
    let o = fieldmask::obj(sc);
    let mut allowed = vec![
        "capabilities",
        "readOnlyRootFilesystem",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "seccompProfile",
    ];
    if o.get("privileged") == Some(&Value::Bool(false)) {
        allowed.push("privileged");
    }
    let mut errs = fieldmask::check(&o, &allowed);
    if let Some(caps) = o.get("capabilities").filter(|v| !v.is_null()) {
        let caps = fieldmask::obj(caps);
        let mut allowed = vec!["drop"];
        let add_is_bind_only = caps.get("add")
            == Some(&Value::Array(vec![Value::String(
                "NET_BIND_SERVICE".into(),
            )]));
        if cfg.features.enabled(features::ADD_CAPABILITIES)
            || (cfg.features.secure_pod_defaults() && add_is_bind_only)
        {
            allowed.push("add");
        }
        errs.push(fieldmask::check(&caps, &allowed).via_field("capabilities"));
    }
    for key in ["runAsUser", "runAsGroup"] {
        if let Some(id) = o.get(key).and_then(Value::as_i64)
            && !(0..=i64::from(i32::MAX)).contains(&id)
        {
            errs.push(FieldError::out_of_bounds(id, 0, i32::MAX, key));
        }
    }
    errs
}

fn volume_mounts(cfg: &ClusterConfig, mounts: &[Value], volumes: &Volumes) -> FieldError {
    let mut errs = FieldError::default();
    let mut seen_paths: Vec<String> = Vec::new();
    let propagation = cfg.features.flag(features::MOUNT_PROPAGATION);
    for (i, vm) in mounts.iter().enumerate() {
        let o = fieldmask::obj(vm);
        let mut allowed = vec!["name", "readOnly", "mountPath", "subPath"];
        if propagation != Flag::Disabled {
            allowed.push("mountPropagation");
        }
        let mut e = fieldmask::check(&o, &allowed);
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        let volume = volumes.get(name);
        if volume.is_none() {
            e.push(FieldError::new(
                "volumeMount has no matching volume",
                &["name"],
            ));
        }
        let path = o.get("mountPath").and_then(Value::as_str).unwrap_or("");
        let clean = clean_path(path);
        if path.is_empty() {
            e.push(FieldError::missing_field(&["mountPath"]));
        } else if RESERVED_PATHS.contains(&clean.as_str()) {
            e.push(FieldError::new(
                format!("mountPath {} is a reserved path", crate::go::quote(&clean)),
                &["mountPath"],
            ));
        } else if !path.starts_with('/') {
            e.push(FieldError::invalid_value(path, "mountPath"));
        } else if seen_paths.contains(&clean) {
            e.push(FieldError::invalid_value(
                format!("{} must be unique", crate::go::quote(path)),
                "mountPath",
            ));
        }
        seen_paths.push(clean);
        let source = |k: &str| volume.and_then(|v| v.get(k)).is_some_and(|v| !v.is_null());
        let read_only = o.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
        let writable_kind =
            source("emptyDir") || source("persistentVolumeClaim") || source("ephemeral");
        if !writable_kind && !read_only {
            e.push(FieldError::new(
                "volume mount should be readOnly for this type of volume",
                &["readOnly"],
            ));
        }
        if let Some(mp) = o.get("mountPropagation").and_then(Value::as_str) {
            if propagation != Flag::Enabled {
                e.push(FieldError::new(
                    format!("Volume Mount Propagation support is disabled, but found volume mount {name} with mount propagation"),
                    &[],
                ));
            }
            if mp != "None" && mp != "HostToContainer" {
                e.push(FieldError::new(
                    "mount propagation should be set to None or HostToContainer",
                    &["mountPropagation"],
                ));
            }
        }
        let pvc_read_only = volume
            .and_then(|v| v.get("persistentVolumeClaim"))
            .and_then(|p| p.get("readOnly"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if pvc_read_only && !read_only {
            e.push(FieldError::new(
                "volume is readOnly but volume mount is not",
                &["readOnly"],
            ));
        }
        errs.push(e.via_index(i));
    }
    errs
}

/// Go's `path.Clean` for absolute and relative paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `validateProbe`: handlers and their fields. `port` is the serving port
/// for the serving container (named probe ports must match it); None for a
/// sidecar (a port must be given).
pub fn probe(p: Option<&Probe>, port: Option<&ServingPort>) -> FieldError {
    let Some(p) = p else {
        return FieldError::default();
    };
    let mut errs = fieldmask::check_extra(&p.extra, &["terminationGracePeriodSeconds"]);
    let mut handlers = Vec::new();
    let port_check = |given: Option<&IntOrString>, path: &str| -> FieldError {
        match port {
            Some(sp) => match given {
                Some(IntOrString::String(s)) if !s.is_empty() && *s != sp.name => {
                    FieldError::invalid_value(s, path)
                        .with_details("Probe port must match container port")
                }
                _ => FieldError::default(),
            },
            None => match given {
                None | Some(IntOrString::Int(0)) => FieldError::invalid_value(
                    given.map_or("0".to_string(), |g| g.to_string()),
                    path,
                )
                .with_details("Probe port must be specified"),
                Some(IntOrString::String(s)) if s.is_empty() => {
                    FieldError::invalid_value("", path).with_details("Probe port must be specified")
                }
                _ => FieldError::default(),
            },
        }
    };
    if let Some(h) = &p.http_get {
        handlers.push("httpGet");
        // Upstream prefixes everything found so far with httpGet here.
        errs = errs
            .also(fieldmask::check_extra(&h.extra, &[]))
            .via_field("httpGet");
        errs.push(port_check(h.port.as_ref(), "httpGet.port"));
    }
    if let Some(t) = &p.tcp_socket {
        handlers.push("tcpSocket");
        errs = errs
            .also(fieldmask::check_extra(&t.extra, &[]))
            .via_field("tcpSocket");
        errs.push(port_check(t.port.as_ref(), "tcpSocket.port"));
    }
    if let Some(x) = &p.exec {
        handlers.push("exec");
        errs = errs
            .also(fieldmask::check(&fieldmask::obj(x), &["command"]))
            .via_field("exec");
    }
    if let Some(g) = &p.grpc {
        handlers.push("gRPC");
        errs = errs
            .also(fieldmask::check(&fieldmask::obj(g), &["port", "service"]))
            .via_field("grpc");
    }
    match handlers.len() {
        0 => errs.push(FieldError::missing_one_of(&[
            "httpGet",
            "tcpSocket",
            "exec",
            "grpc",
        ])),
        1 => {}
        _ => errs.push(FieldError::multiple_one_of(&handlers)),
    }
    errs
}

/// `validateReadinessProbe`: the probe checks plus Knative's timing rules.
pub fn readiness_probe(p: Option<&Probe>, port: Option<&ServingPort>) -> FieldError {
    let Some(pr) = p else {
        return FieldError::default();
    };
    let mut errs = probe(p, port);
    let max = i32::MAX;
    let period = pr.period_seconds.unwrap_or(0);
    let initial = pr.initial_delay_seconds.unwrap_or(0);
    let success = pr.success_threshold.unwrap_or(0);
    let failure = pr.failure_threshold.unwrap_or(0);
    let timeout = pr.timeout_seconds.unwrap_or(0);
    if period < 0 {
        errs.push(FieldError::out_of_bounds(period, 0, max, "periodSeconds"));
    }
    if initial < 0 {
        errs.push(FieldError::out_of_bounds(
            initial,
            0,
            max,
            "initialDelaySeconds",
        ));
    }
    if success < 1 {
        errs.push(FieldError::out_of_bounds(
            success,
            1,
            max,
            "successThreshold",
        ));
    }
    if period == 0 {
        if failure != 0 {
            errs.push(FieldError::new(
                "failureThreshold is disallowed when periodSeconds is zero",
                &["failureThreshold"],
            ));
        }
        if timeout != 0 {
            errs.push(FieldError::new(
                "timeoutSeconds is disallowed when periodSeconds is zero",
                &["timeoutSeconds"],
            ));
        }
    } else {
        if timeout < 1 {
            errs.push(FieldError::out_of_bounds(timeout, 1, max, "timeoutSeconds"));
        }
        if failure < 1 {
            errs.push(FieldError::out_of_bounds(
                failure,
                1,
                max,
                "failureThreshold",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        assert_eq!(clean_path("/dev/"), "/dev");
        assert_eq!(clean_path("/a/../dev/./log"), "/dev/log");
        assert_eq!(clean_path("a/b/.."), "a");
        assert_eq!(clean_path("//"), "/");
    }
}
