//! Table-driven admission tests, written from docs knative-api.md and the
//! behaviour of Knative's webhooks (each case: a manifest, the configuration,
//! and the exact text Knative prints, or the defaulted fields).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::parse::parse_manifest;

const SECURITY_WARNING: &str =
    "Kubernetes default value is insecure, Knative may default this to secure in a future release";

fn object(yaml: &str) -> DynamicObject {
    parse_manifest("t", yaml, "default")
        .unwrap()
        .remove(0)
        .object
}

fn config(maps: &[(&str, &[(&str, &str)])]) -> ClusterConfig {
    let m: BTreeMap<String, BTreeMap<String, String>> = maps
        .iter()
        .map(|(n, d)| {
            (
                n.to_string(),
                d.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect();
    ClusterConfig::from_configmaps(&m).unwrap()
}

/// `skiff apply` of `yaml` (over `old`, applied before, when given).
fn run(cfg: &ClusterConfig, yaml: &str, old: Option<&str>) -> Result<Admitted, Denied> {
    let old = old.map(|o| {
        let manifest = object(o);
        // What the store holds was admitted on create.
        let mut d = admit(
            &manifest,
            None,
            &Request {
                config: cfg,
                user: Some("alice"),
            },
        )
        .unwrap()
        .object;
        crate::apply::record_last_applied(&mut d, &manifest);
        d
    });
    let incoming = match &old {
        Some(live) => crate::apply::merge(&object(yaml), live),
        None => object(yaml),
    };
    admit(
        &incoming,
        old.as_ref(),
        &Request {
            config: cfg,
            user: Some("bob"),
        },
    )
}

fn err(cfg: &ClusterConfig, yaml: &str) -> String {
    match run(cfg, yaml, None) {
        Ok(a) => panic!(
            "admitted: {}",
            serde_json::to_string_pretty(&a.object).unwrap()
        ),
        Err(e) => e.to_string(),
    }
}

/// A Service with `spec` indented under `spec.template.spec`.
fn svc(pod_spec: &str) -> String {
    svc_with("", pod_spec, "")
}

fn svc_with(template_meta: &str, pod_spec: &str, traffic: &str) -> String {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let meta = if template_meta.is_empty() {
        String::new()
    } else {
        format!("    metadata:\n{}", indent(template_meta, 6))
    };
    let traffic = if traffic.is_empty() {
        String::new()
    } else {
        format!("  traffic:\n{}", indent(traffic, 2))
    };
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  template:\n{meta}    spec:\n{}{traffic}",
        indent(pod_spec, 6)
    )
}

const IMG: &str = "ghcr.io/knative/helloworld-go:latest";

#[test]
fn service_defaults_are_knatives() {
    let cfg = ClusterConfig::default();
    let a = run(&cfg, &svc(&format!("containers:\n- image: {IMG}")), None).unwrap();
    let spec = &a.object.body["spec"];
    let t = &spec["template"]["spec"];
    assert_eq!(t["timeoutSeconds"], 300);
    assert_eq!(t["containerConcurrency"], 0);
    assert_eq!(t["enableServiceLinks"], false);
    assert!(t.get("responseStartTimeoutSeconds").is_none());
    assert!(t.get("idleTimeoutSeconds").is_none());
    let c = &t["containers"][0];
    assert_eq!(c["name"], "user-container");
    assert_eq!(c["resources"], json!({}));
    assert_eq!(
        c["readinessProbe"],
        json!({"successThreshold": 1, "tcpSocket": {"port": 0}})
    );
    assert_eq!(
        spec["traffic"],
        json!([{"latestRevision": true, "percent": 100}])
    );
    let ann = &a.object.metadata.annotations;
    assert_eq!(ann["serving.knative.dev/creator"], "bob");
    assert_eq!(ann["serving.knative.dev/lastModifier"], "bob");
    // Every unset securityContext field is one warning line, not an error.
    assert_eq!(
        a.warnings,
        [format!(
            "{SECURITY_WARNING}: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation, spec.template.spec.containers[0].securityContext.capabilities, spec.template.spec.containers[0].securityContext.runAsNonRoot, spec.template.spec.containers[0].securityContext.seccompProfile"
        )]
    );
}

#[test]
fn defaults_follow_config_defaults() {
    let cfg = config(&[
        (
            "config-defaults",
            &[
                ("revision-timeout-seconds", "120"),
                ("revision-idle-timeout-seconds", "60"),
                ("revision-response-start-timeout-seconds", "30"),
                ("container-concurrency", "10"),
                ("container-name-template", "{{.Name}}-app"),
                ("enable-service-links", "true"),
                ("revision-memory-limit", "256Mi"),
            ],
        ),
        ("config-features", &[("secure-pod-defaults", "Enabled")]),
    ]);
    let a = run(
        &cfg,
        &svc(&format!(
            "containers:\n- image: {IMG}\n  ports: [{{containerPort: 80}}]"
        )),
        None,
    )
    .unwrap();
    let t = &a.object.body["spec"]["template"]["spec"];
    assert_eq!(t["timeoutSeconds"], 120);
    assert_eq!(t["idleTimeoutSeconds"], 60);
    assert_eq!(t["responseStartTimeoutSeconds"], 30);
    assert_eq!(t["containerConcurrency"], 10);
    assert_eq!(t["enableServiceLinks"], true);
    let c = &t["containers"][0];
    assert_eq!(c["name"], "hello-app");
    assert_eq!(c["resources"], json!({"limits": {"memory": "256Mi"}}));
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    // timeoutSeconds: 0 means "use the default", not "no timeout".
    let a = run(
        &cfg,
        &svc(&format!("timeoutSeconds: 0\ncontainers:\n- image: {IMG}")),
        None,
    )
    .unwrap();
    assert_eq!(
        a.object.body["spec"]["template"]["spec"]["timeoutSeconds"],
        120
    );
}

#[test]
fn multi_container_names_and_probes() {
    let cfg = ClusterConfig::default();
    let a = run(
        &cfg,
        &svc(&format!(
            "containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080}}]\n- image: {IMG}\n- image: {IMG}\n  name: user-container-1"
        )),
        None,
    )
    .unwrap();
    let cs = &a.object.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["name"], "user-container-0");
    assert_eq!(cs[1]["name"], "user-container-2");
    assert_eq!(cs[2]["name"], "user-container-1");
    // Only the serving container gets the default readiness probe.
    assert!(cs[0].get("readinessProbe").is_some());
    assert!(cs[1].get("readinessProbe").is_none());
}

#[test]
fn validation_table() {
    let d = ClusterConfig::default();
    let c = "spec.template.spec.containers[0]";
    let cases: Vec<(ClusterConfig, String, String)> = vec![
        (d.clone(), svc("{}"), "missing field(s): spec.template.spec.containers".into()),
        (d.clone(), svc("containers:\n- name: x"), format!("missing field(s): {c}.image")),
        (d.clone(), svc("containers:\n- image: docker.io/{username}/app"),
            format!("Failed to parse image reference: {c}.image\nimage: \"docker.io/{{username}}/app\", error: could not parse reference: docker.io/{{username}}/app")),
        (d.clone(), svc(&format!("timeoutSeconds: 601\ncontainers:\n- image: {IMG}")),
            "expected 0 <= 601 <= 600: spec.template.spec.timeoutSeconds".into()),
        (config(&[("config-defaults", &[("max-revision-timeout-seconds", "900")])]),
            svc(&format!("timeoutSeconds: 601\ncontainers:\n- image: {IMG}")), String::new()),
        (d.clone(), svc(&format!("containerConcurrency: 1001\ncontainers:\n- image: {IMG}")),
            "expected 0 <= 1001 <= 1000: spec.template.spec.containerConcurrency".into()),
        (config(&[("config-defaults", &[("allow-container-concurrency-zero", "false"), ("container-concurrency", "1")])]),
            svc(&format!("containerConcurrency: 0\ncontainers:\n- image: {IMG}")),
            "expected 1 <= 0 <= 1000: spec.template.spec.containerConcurrency".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8012}}]")),
            format!("invalid value: 8012 is a reserved port: {c}.ports.containerPort\n8012 is a reserved port, please use a different value")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 70000}}]")),
            format!("expected 0 <= 70000 <= 65535: {c}.ports.containerPort")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080, name: grpc, protocol: UDP}}]")),
            format!("Port name grpc is not allowed: {c}.ports\nName must be empty, or one of: 'h2c', 'http1'\ninvalid value: UDP: {c}.ports.protocol")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080, hostPort: 80}}]")),
            format!("must not set the field(s): {c}.ports.hostPort")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080}}, {{containerPort: 9000}}]")),
            "more than one container port is set: spec.template.spec.containers[*].ports\nOnly a single port is allowed across all containers".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n- image: {IMG}")),
            "missing field(s): spec.template.spec.containers[*].ports".into()),
        (config(&[("config-features", &[("multi-container", "Disabled")])]),
            svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080}}]\n- image: {IMG}")),
            "multi-container is off, but found 2 containers: ".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  env: [{{name: PORT, value: '1'}}, {{value: x}}]")),
            format!("\"PORT\" is a reserved environment variable: {c}.env[0].name\nmissing field(s): {c}.env[1].name")),
        // A sidecar may set PORT, but not K_SERVICE.
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080}}]\n- image: {IMG}\n  env: [{{name: PORT, value: '1'}}, {{name: K_SERVICE, value: x}}]")),
            "\"K_SERVICE\" is a reserved environment variable: spec.template.spec.containers[1].env[1].name".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  env: [{{name: A, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]")),
            format!("must not set the field(s): {c}.env[0].valueFrom.fieldRef")),
        (config(&[("config-features", &[("kubernetes.podspec-fieldref", "Enabled")])]),
            svc(&format!("containers:\n- image: {IMG}\n  env: [{{name: A, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]")), String::new()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  envFrom: [{{prefix: X_}}]")),
            format!("expected exactly one, got neither: {c}.envFrom.configMapRef, {c}.envFrom.secretRef")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  name: queue-proxy")),
            format!("\"queue-proxy\" is a reserved container name: {c}.name")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  stdin: true\n  lifecycle: {{preStop: {{exec: {{command: [x]}}}}}}")),
            format!("must not set the field(s): {c}.lifecycle, {c}.stdin")),
        (d.clone(), svc(&format!("terminationGracePeriodSeconds: 0\nnodeName: n1\ncontainers:\n- image: {IMG}")),
            "must not set the field(s): spec.template.spec.nodeName, spec.template.spec.terminationGracePeriodSeconds".into()),
        (d.clone(), svc(&format!("affinity: {{}}\ncontainers:\n- image: {IMG}")),
            "must not set the field(s): spec.template.spec.affinity".into()),
        (config(&[("config-features", &[("kubernetes.podspec-affinity", "Allowed")])]),
            svc(&format!("affinity: {{}}\ncontainers:\n- image: {IMG}")), String::new()),
        (d.clone(), svc(&format!("automountServiceAccountToken: true\ncontainers:\n- image: {IMG}")),
            "must not set the field(s): spec.template.spec.automountServiceAccountToken".into()),
        (d.clone(), svc(&format!("serviceAccountName: Bad_SA\ncontainers:\n- image: {IMG}")),
            "invalid value: Bad_SA: spec.template.spec.serviceAccountName\na lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  readinessProbe:\n    httpGet: {{path: /}}\n    tcpSocket: {{}}")),
            format!("expected exactly one, got both: {c}.readinessProbe.httpGet, {c}.readinessProbe.tcpSocket")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  readinessProbe:\n    httpGet: {{port: metrics}}")),
            format!("invalid value: metrics: {c}.readinessProbe.httpGet.port\nProbe port must match container port")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  readinessProbe:\n    httpGet: {{port: http}}")), String::new()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  readinessProbe:\n    tcpSocket: {{}}\n    failureThreshold: 2")),
            format!("failureThreshold is disallowed when periodSeconds is zero: {c}.readinessProbe.failureThreshold")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  livenessProbe: {{periodSeconds: 5}}")),
            format!("expected exactly one, got neither: {c}.livenessProbe.exec, {c}.livenessProbe.grpc, {c}.livenessProbe.httpGet, {c}.livenessProbe.tcpSocket")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  ports: [{{containerPort: 8080}}]\n- image: {IMG}\n  livenessProbe: {{tcpSocket: {{port: 9000}}}}")),
            "must not set the field(s): spec.template.spec.containers[1].livenessProbe.tcpSocket".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  terminationMessagePolicy: Sometimes")),
            format!("invalid value: Sometimes: {c}.terminationMessagePolicy")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  securityContext: {{privileged: true, runAsUser: -1, capabilities: {{add: [NET_ADMIN]}}}}")),
            format!("expected 0 <= -1 <= 2147483647: {c}.securityContext.runAsUser\nmust not set the field(s): {c}.securityContext.capabilities.add, {c}.securityContext.privileged")),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  volumeMounts: [{{name: data, mountPath: /data}}]\nvolumes: [{{name: data, hostPath: {{path: /tmp}}}}]")),
            // Path-less, as upstream's; the mount was defaulted to readOnly.
            "HostPath volume support is disabled, but found HostPath volume data: \nmust not set the field(s): spec.template.spec.volumes[0].hostPath".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\n  volumeMounts: [{{name: cfg, mountPath: /dev}}, {{name: nope, mountPath: rel}}]\nvolumes: [{{name: cfg, configMap: {{name: c}}}}, {{name: spare, emptyDir: {{}}}}]")),
            format!("invalid value: rel: {c}.volumeMounts[1].mountPath\nmountPath \"/dev\" is a reserved path: {c}.volumeMounts[0].mountPath\nvolume with name \"spare\" not mounted: spec.template.spec.volumes[1].name\nvolumeMount has no matching volume: {c}.volumeMounts[1].name")),
        (d.clone(), svc(&format!("initContainers: [{{image: {IMG}}}]\ncontainers:\n- image: {IMG}")),
            "must not set the field(s): spec.template.spec.initContainers\npod spec support for init-containers is off, but found 1 init containers: ".into()),
        (config(&[("config-features", &[("kubernetes.podspec-init-containers", "Enabled")])]),
            svc(&format!("initContainers: [{{image: {IMG}, readinessProbe: {{tcpSocket: {{port: 1}}}}}}]\ncontainers:\n- image: {IMG}")),
            "field not allowed in an init container: spec.template.spec.containers[0].readinessProbe".into()),
        (d.clone(), svc(&format!("containers:\n- image: {IMG}\nfoo: bar")),
            "must not set the field(s): spec.template.spec.foo".into()),
    ];
    for (cfg, yaml, want) in cases {
        let got = match run(&cfg, &yaml, None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, want, "\n{yaml}");
    }
}

#[test]
fn metadata_and_annotations() {
    let d = ClusterConfig::default();
    let base = format!("containers:\n- image: {IMG}");
    let with_meta = |meta: &str| {
        svc(&base).replace(
            "metadata:\n  name: hello\n",
            &format!("metadata:\n  name: hello\n{meta}"),
        )
    };
    assert_eq!(
        err(
            &d,
            &with_meta("  annotations: {autoscaling.knative.dev/min-scale: '1'}\n")
        ),
        "invalid key name \"autoscaling.knative.dev/min-scale\": metadata.annotations\nautoscaling annotations must be put under \"spec.template.metadata.annotations\" to work"
    );
    assert_eq!(
        err(
            &d,
            &with_meta("  annotations: {serving.knative.dev/rollout-duration: 2.5s}\n")
        ),
        "rollout-duration=2.5s is not at second precision: metadata.annotations.serving.knative.dev/rollout-duration"
    );
    // Labels of a Service are not validated; the old visibility label is fine.
    assert!(run(&d, &with_meta("  labels: {serving.knative.dev/visibility: cluster-local, serving.knative.dev/whatever: x}\n"), None).is_ok());
    let tmpl = |meta: &str| svc_with(meta, &base, "");
    assert_eq!(
        err(
            &d,
            &tmpl(
                "annotations:\n  autoscaling.knative.dev/min-scale: '5'\n  autoscaling.knative.dev/max-scale: '2'"
            )
        ),
        "max-scale=2 is less than min-scale=5: spec.template.metadata.annotations.autoscaling.knative.dev/max-scale, spec.template.metadata.annotations.autoscaling.knative.dev/min-scale"
    );
    assert_eq!(
        err(
            &d,
            &tmpl("annotations:\n  networking.knative.dev/visibility: cluster-local")
        ),
        "invalid key name \"networking.knative.dev/visibility\": spec.template.metadata.annotations"
    );
    assert!(
        run(
            &d,
            &tmpl("annotations:\n  networking.knative.dev/ingress.class: x"),
            None
        )
        .is_ok()
    );
    assert_eq!(
        err(
            &d,
            &tmpl("annotations:\n  serving.knative.dev/progress-deadline: 10.5s")
        ),
        "progress-deadline=10.5s is not at second precision: spec.template.metadata.annotations.serving.knative.dev/progress-deadline"
    );
    assert_eq!(
        err(
            &d,
            &tmpl("annotations:\n  queue.sidecar.serving.knative.dev/cpu-resource-request: lots")
        ),
        "invalid value: lots: spec.template.metadata.annotations.[queue.sidecar.serving.knative.dev/cpu-resource-request]"
    );
    let warned = run(
        &d,
        &tmpl("annotations:\n  queue.sidecar.serving.knative.dev/resource-percentage: '10'"),
        None,
    )
    .unwrap();
    assert!(
        warned
            .warnings
            .iter()
            .any(|w| w.starts_with("Queue proxy resource percentage annotation is deprecated")),
        "{:?}",
        warned.warnings
    );
    // Errors of several kinds are all reported, merged and sorted.
    let e = err(
        &d,
        &svc_with("name: other-v1", "containers:\n- {}", "- percent: 50"),
    );
    assert_eq!(
        e,
        "Traffic targets sum to 50, want 100: spec.traffic\ninvalid value: \"other-v1\" must have prefix \"hello-\": spec.template.metadata.name\nmissing field(s): spec.template.spec.containers[0].image"
    );
}

#[test]
fn byo_revision_names() {
    let d = ClusterConfig::default();
    let v1 = svc_with(
        "name: hello-v1",
        &format!("containers:\n- image: {IMG}"),
        "",
    );
    assert!(run(&d, &v1, None).is_ok());
    assert_eq!(
        err(
            &d,
            &svc_with(
                "name: Hello-V1",
                &format!("containers:\n- image: {IMG}"),
                ""
            )
        ),
        "invalid value: not a DNS 1035 label: [a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]: spec.template.metadata.name"
    );
    let generated = v1.replace("  name: hello\nspec", "  generateName: hello-\nspec");
    assert_eq!(
        err(&d, &generated),
        "must not set the field(s): spec.template.metadata.name"
    );
    // Changing the template without a new name is refused; with one it is not.
    let changed = v1.replace(IMG, "gcr.io/knative-samples/autoscale-go");
    let e = run(&d, &changed, Some(&v1)).unwrap_err().to_string();
    assert!(
        e.starts_with("Saw the following changes without a name change (-old +new): spec.template.metadata.name\n{v1.RevisionTemplateSpec}.Spec.PodSpec.Containers[0].Image:\n\t-: \"ghcr.io/knative/helloworld-go:latest\"\n\t+: \"gcr.io/knative-samples/autoscale-go\""),
        "{e}"
    );
    assert!(run(&d, &changed.replace("hello-v1", "hello-v2"), Some(&v1)).is_ok());
    // Unchanged BYO template: defaulting is skipped and nothing differs.
    assert!(run(&d, &v1, Some(&v1)).is_ok());
}

#[test]
fn creator_and_last_modifier() {
    let d = ClusterConfig::default();
    let v1 = svc(&format!("containers:\n- image: {IMG}"));
    // The update keeps the creator (as kubectl apply does) and records bob.
    let stored = run(&d, &v1, None).unwrap().object;
    let mut next = object(&v1.replace(IMG, "gcr.io/knative-samples/autoscale-go"));
    next.metadata
        .annotations
        .insert("serving.knative.dev/creator".into(), "mallory".into());
    let e = admit(
        &next,
        Some(&stored),
        &Request {
            config: &d,
            user: Some("bob"),
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "annotation value is immutable: metadata.annotations.serving.knative.dev/creator"
    );
    // Re-applied (kubectl apply keeps what the server set) with a forged
    // lastModifier and no spec change.
    let mut manifest = object(&v1);
    manifest
        .metadata
        .annotations
        .insert("serving.knative.dev/lastModifier".into(), "mallory".into());
    let forged = crate::apply::merge(&manifest, &stored);
    assert_eq!(
        admit(
            &forged,
            Some(&stored),
            &Request {
                config: &d,
                user: Some("bob")
            }
        )
        .unwrap_err()
        .to_string(),
        "invalid value: mallory: metadata.annotations.serving.knative.dev/lastModifier"
    );
    let mut update = object(&v1.replace(IMG, "gcr.io/knative-samples/autoscale-go"));
    update.metadata.annotations = stored.metadata.annotations.clone();
    let a = admit(
        &update,
        Some(&stored),
        &Request {
            config: &d,
            user: Some("carol"),
        },
    )
    .unwrap();
    assert_eq!(
        a.object.metadata.annotations["serving.knative.dev/creator"],
        "bob"
    );
    assert_eq!(
        a.object.metadata.annotations["serving.knative.dev/lastModifier"],
        "carol"
    );
}

#[test]
fn routes_and_configurations() {
    let d = ClusterConfig::default();
    let route = |traffic: &str, meta: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: r\n{meta}spec:\n  traffic:\n{traffic}"
        )
    };
    assert!(
        run(
            &d,
            &route("  - {revisionName: hello-00001, percent: 100}\n", ""),
            None
        )
        .is_ok()
    );
    assert_eq!(
        err(&d, &route("  - {configurationName: hello}\n", "")),
        "Traffic targets sum to 0, want 100: spec.traffic"
    );
    assert_eq!(
        err(
            &d,
            &route(
                "  - {configurationName: hello, percent: 100}\n",
                "  labels: {serving.knative.dev/service: hello}\n"
            )
        ),
        "missing field(s): metadata.labels.serving.knative.dev/service"
    );
    let cfg_yaml = |meta: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Configuration\nmetadata:\n  name: c\n{meta}spec:\n  template:\n    spec:\n      containers: [{{image: {IMG}}}]\n"
        )
    };
    assert!(run(&d, &cfg_yaml(""), None).is_ok());
    assert_eq!(
        err(
            &d,
            &cfg_yaml("  annotations: {autoscaling.knative.dev/window: 60s}\n")
        ),
        "invalid key name \"autoscaling.knative.dev/window\": metadata.annotations\nautoscaling annotations must be put under \"spec.template.metadata.annotations\" to work"
    );
    assert_eq!(
        err(&d, &cfg_yaml("").replace("name: c\n", "name: 9c\n")),
        "not a DNS 1035 label: [a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]: metadata.name"
    );
    let a = run(&d, &cfg_yaml(""), None).unwrap();
    assert_eq!(
        a.object.body["spec"]["template"]["spec"]["containers"][0]["name"],
        "user-container"
    );
}

#[test]
fn revisions_are_immutable() {
    let d = ClusterConfig::default();
    let rev = |image: &str, meta: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: r-1\n{meta}spec:\n  containers: [{{image: {image}}}]\n"
        )
    };
    let a = run(&d, &rev(IMG, ""), None).unwrap();
    // Revision defaults: the container name template sees no parent.
    assert_eq!(a.object.body["spec"]["timeoutSeconds"], 300);
    let e = run(
        &d,
        &rev("gcr.io/knative-samples/autoscale-go", ""),
        Some(&rev(IMG, "")),
    )
    .unwrap_err()
    .to_string();
    // The containers list is replaced whole (JSON merge patch): the server's
    // defaults inside it show up as removed.
    assert_eq!(
        e,
        r#"Immutable fields changed (-old +new): spec
{v1.RevisionSpec}.PodSpec.Containers[0].Image:
	-: "ghcr.io/knative/helloworld-go:latest"
	+: "gcr.io/knative-samples/autoscale-go"
{v1.RevisionSpec}.PodSpec.Containers[0].Name:
	-: "user-container"
{v1.RevisionSpec}.PodSpec.Containers[0].ReadinessProbe:
	-: "{"successThreshold":1,"tcpSocket":{"port":0}}"
{v1.RevisionSpec}.PodSpec.Containers[0].Resources:
	-: "{}"
"#
    );
    // Re-applying the same manifest changes nothing.
    assert!(run(&d, &rev(IMG, ""), Some(&rev(IMG, ""))).is_ok());
    // Autoscaling annotations are allowed (and validated) on a Revision.
    assert!(
        run(
            &d,
            &rev(
                IMG,
                "  annotations: {autoscaling.knative.dev/min-scale: '1'}\n"
            ),
            None
        )
        .is_ok()
    );
    assert_eq!(
        err(
            &d,
            &rev(
                IMG,
                "  annotations: {autoscaling.knative.dev/min-scale: x}\n"
            )
        ),
        "invalid value: x: metadata.annotations.autoscaling.knative.dev/min-scale"
    );
    assert_eq!(
        err(
            &d,
            &rev(IMG, "  labels: {serving.knative.dev/configuration: c}\n")
        ),
        "missing field(s): metadata.labels.serving.knative.dev/configuration"
    );
}

#[test]
fn configmaps() {
    let d = ClusterConfig::default();
    let cm = |name: &str, ns: &str, data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n{data}"
        )
    };
    assert!(
        run(
            &d,
            &cm(
                "config-autoscaler",
                "knative-serving",
                "  stable-window: 2m\n"
            ),
            None
        )
        .is_ok()
    );
    assert_eq!(
        err(
            &d,
            &cm(
                "config-autoscaler",
                "knative-serving",
                "  stable-window: 2s\n"
            )
        ),
        "stable-window = 2s, must be in [6s; 1h0m0s] range"
    );
    assert_eq!(
        err(
            &d,
            &cm(
                "config-defaults",
                "knative-serving",
                "  revision-timeout-seconds: '9000'\n"
            )
        ),
        "revision-timeout-seconds (9000) cannot be greater than max-revision-timeout-seconds (600)"
    );
    // Outside knative-serving, or unknown names: stored as they are.
    assert!(
        run(
            &d,
            &cm("config-autoscaler", "default", "  stable-window: 2s\n"),
            None
        )
        .is_ok()
    );
    assert!(
        run(
            &d,
            &cm("my-settings", "knative-serving", "  x: value\n"),
            None
        )
        .is_ok()
    );
    assert!(
        err(&d, &cm("config-gc", "knative-serving", "  n: 1\n")).contains("data.n"),
        "data values are strings"
    );
    let _: Value = json!(null);
}
