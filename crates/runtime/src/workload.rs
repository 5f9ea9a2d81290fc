//! From a Revision to what the process runtime runs: the resolved command
//! line, environment, readiness probe and timeouts. Everything the process
//! runtime cannot honour is reported here, with the field's path, so that
//! admission refuses it instead of a revision failing later.

use std::path::PathBuf;
use std::time::Duration;

use skiff_api::FieldError;
use skiff_api::labels;
use skiff_api::serving::{Container, IntOrString, Probe, Revision, RevisionSpec};

use crate::image_map::ImageMap;

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeAction {
    /// Connect to the instance's port.
    Tcp,
    /// GET `path` on the instance's port; 200..=399 passes.
    Http {
        path: String,
        headers: Vec<(String, String)>,
    },
    /// Run a command beside the instance (with its environment); exit 0 passes.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    /// Probe period once ready (before that, probes run every few tens of ms).
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub program: String,
    pub args: Vec<String>,
    /// Container env, in order (PORT and K_* are added per instance).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub readiness: Readiness,
    pub h2c: bool,
    /// SIGTERM to SIGKILL.
    pub termination_grace: Duration,
    /// How long a new instance may take to become ready.
    pub progress_deadline: Duration,
    pub service: String,
    pub configuration: String,
    pub revision: String,
}

/// Knative's default progress deadline (config-deployment).
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// Check that the process runtime can run `spec` (paths relative to it).
pub fn check(spec: &RevisionSpec, images: &ImageMap) -> FieldError {
    match resolve_spec(spec, images) {
        Ok(_) => FieldError::default(),
        Err(e) => e,
    }
}

/// What to run for `revision`.
pub fn resolve(revision: &Revision, images: &ImageMap) -> Result<Workload, FieldError> {
    let mut w = resolve_spec(&revision.spec, images).map_err(|e| e.via_field("spec"))?;
    let m = &revision.metadata;
    w.revision = m.name.clone();
    w.configuration = m.label(labels::CONFIGURATION).unwrap_or("").to_string();
    w.service = m.label(labels::SERVICE).unwrap_or("").to_string();
    if let Some(d) = m.annotation(labels::PROGRESS_DEADLINE) {
        w.progress_deadline = humantime::parse_duration(d).map_err(|_| {
            FieldError::invalid_value(d, "metadata.annotations").via_key(labels::PROGRESS_DEADLINE)
        })?;
    }
    Ok(w)
}

fn resolve_spec(spec: &RevisionSpec, images: &ImageMap) -> Result<Workload, FieldError> {
    let mut errs = FieldError::default();
    if spec.pod.containers.len() > 1 {
        errs.push(FieldError::new(
            format!(
                "the process runtime runs one container per revision, found {}",
                spec.pod.containers.len()
            ),
            &["containers"],
        ));
    }
    if !spec.pod.init_containers.is_empty() {
        errs.push(FieldError::new(
            "the process runtime does not run init containers",
            &["initContainers"],
        ));
    }
    if !spec.pod.volumes.is_empty() {
        errs.push(FieldError::new(
            "the process runtime does not mount volumes",
            &["volumes"],
        ));
    }
    let Some(c) = spec.pod.containers.first() else {
        errs.push(FieldError::missing_field(&["containers"]));
        return Err(errs);
    };
    let (workload, container_errs) = resolve_container(c, images);
    errs.push(container_errs.via_field_index("containers", 0));
    if errs.has_errors() {
        return Err(errs);
    }
    let mut w = workload.expect("no errors means a workload");
    let timeout = spec.timeout_seconds.filter(|t| *t > 0).unwrap_or(300);
    w.termination_grace = Duration::from_secs(timeout as u64);
    Ok(w)
}

fn resolve_container(c: &Container, images: &ImageMap) -> (Option<Workload>, FieldError) {
    let mut errs = FieldError::default();
    if !c.volume_mounts.is_empty() {
        errs.push(FieldError::new(
            "the process runtime does not mount volumes",
            &["volumeMounts"],
        ));
    }
    if !c.env_from.is_empty() {
        errs.push(FieldError::new(
            "the process runtime cannot read ConfigMaps or Secrets",
            &["envFrom"],
        ));
    }
    let mut env = Vec::new();
    for (i, e) in c.env.iter().enumerate() {
        if e.value_from.is_some() {
            errs.push(
                FieldError::new(
                    "the process runtime cannot resolve valueFrom",
                    &["valueFrom"],
                )
                .via_field_index("env", i),
            );
        }
        env.push((e.name.clone(), e.value.clone().unwrap_or_default()));
    }
    let readiness = match probe(c.readiness_probe.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            errs.push(e.via_field("readinessProbe"));
            default_readiness()
        }
    };
    let command_line = match &c.command {
        Some(cmd) if !cmd.is_empty() => {
            let mut line = cmd.clone();
            line.extend(c.args.iter().flatten().cloned());
            Some(line)
        }
        _ => match images.lookup(&c.image) {
            Some(ep) => {
                let mut line = ep.command.clone();
                match &c.args {
                    Some(args) => line.extend(args.iter().cloned()),
                    None => line.extend(ep.args.iter().cloned()),
                }
                Some(line)
            }
            None => {
                errs.push(FieldError::new(
                    format!(
                        "image {:?} is not in the image map and the container has no command: \
                         set command, or map the image to a command line with --image-map",
                        c.image
                    ),
                    &["image"],
                ));
                None
            }
        },
    };
    if errs.has_errors() {
        return (None, errs);
    }
    let line: Vec<String> = command_line
        .expect("resolved")
        .iter()
        .map(|s| expand_vars(s, &env))
        .collect();
    let workload = Workload {
        program: line[0].clone(),
        args: line[1..].to_vec(),
        env,
        working_dir: c.working_dir.as_ref().map(PathBuf::from),
        readiness,
        h2c: c.is_h2c(),
        termination_grace: Duration::from_secs(300),
        progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        service: String::new(),
        configuration: String::new(),
        revision: String::new(),
    };
    (Some(workload), errs)
}

fn default_readiness() -> Readiness {
    Readiness {
        action: ProbeAction::Tcp,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        failure_threshold: 3,
    }
}

fn probe(p: Option<&Probe>) -> Result<Readiness, FieldError> {
    let mut r = default_readiness();
    let Some(p) = p else { return Ok(r) };
    let secs = |v: Option<i64>| v.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
    r.initial_delay = secs(p.initial_delay_seconds).unwrap_or(Duration::ZERO);
    r.period = secs(p.period_seconds).unwrap_or(r.period);
    r.timeout = secs(p.timeout_seconds).unwrap_or(r.timeout);
    r.failure_threshold = p
        .failure_threshold
        .filter(|f| *f > 0)
        .map_or(r.failure_threshold, |f| f as u32);
    if let Some(h) = &p.http_get {
        if h.scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
        {
            return Err(FieldError::new(
                "the process runtime probes over plain HTTP only",
                &["httpGet.scheme"],
            ));
        }
        if let Some(IntOrString::String(name)) = &h.port
            && name != "http"
            && name != "h2c"
            && name != "http1"
        {
            return Err(FieldError::invalid_value(name, "httpGet.port"));
        }
        let path = h.path.clone().unwrap_or_else(|| "/".to_string());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        r.action = ProbeAction::Http {
            path,
            headers: h
                .http_headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    } else if let Some(exec) = &p.exec {
        let command: Vec<String> = exec
            .get("command")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        if command.is_empty() {
            return Err(FieldError::missing_field(&["exec.command"]));
        }
        r.action = ProbeAction::Exec { command };
    } else if p.grpc.is_some() {
        return Err(FieldError::new(
            "the process runtime does not run gRPC probes",
            &["grpc"],
        ));
    }
    Ok(r)
}

/// Kubernetes' `$(VAR)` expansion in command and args: `$(NAME)` becomes the
/// container env value when defined (left as is otherwise), `$$` becomes `$`.
fn expand_vars(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(yaml: &str) -> RevisionSpec {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn images() -> ImageMap {
        ImageMap::builtin(Path::new("/bin/skiff"))
    }

    #[test]
    fn image_without_command_uses_the_map() {
        let s = spec(
            "containers:\n- image: ghcr.io/knative/helloworld-go:latest\n  env: [{name: TARGET, value: World}]\n",
        );
        let w = resolve_spec(&s, &images()).unwrap();
        assert_eq!(w.program, "/bin/skiff");
        assert_eq!(w.args, ["example", "hello"]);
        assert_eq!(w.env, [("TARGET".to_string(), "World".to_string())]);
        assert_eq!(w.readiness.action, ProbeAction::Tcp);
    }

    #[test]
    fn command_args_and_var_expansion() {
        let s = spec(
            "containers:\n- image: x\n  command: [sh, -c]\n  args: ['echo $(GREETING) $$(HOME) $(NOPE)']\n  env: [{name: GREETING, value: hi}]\n",
        );
        let w = resolve_spec(&s, &images()).unwrap();
        assert_eq!(w.program, "sh");
        assert_eq!(w.args, ["-c", "echo hi $(HOME) $(NOPE)"]);
    }

    #[test]
    fn what_cannot_run_is_named() {
        let s = spec(
            "containers:\n- image: unknown/app\n  env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n- image: x\n  command: [run]\n",
        );
        let e = check(&s, &images()).to_string();
        assert!(
            e.contains("the process runtime runs one container per revision, found 2: containers"),
            "{e}"
        );
        assert!(
            e.contains("cannot resolve valueFrom: containers[0].env[0].valueFrom"),
            "{e}"
        );
        assert!(
            e.contains("image \"unknown/app\" is not in the image map"),
            "{e}"
        );
        assert!(e.contains(": containers[0].image"), "{e}");
    }

    #[test]
    fn http_probe() {
        let s = spec(
            "containers:\n- image: x\n  command: [run]\n  readinessProbe:\n    httpGet: {path: healthz}\n    periodSeconds: 2\n",
        );
        let w = resolve_spec(&s, &images()).unwrap();
        assert_eq!(
            w.readiness.action,
            ProbeAction::Http {
                path: "/healthz".into(),
                headers: vec![]
            }
        );
        assert_eq!(w.readiness.period, Duration::from_secs(2));
    }
}
