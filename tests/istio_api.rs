//! End-to-end tests of Istio's API on Skiff: the real binary accepts
//! networking.istio.io / security.istio.io YAML and TLS Secrets unchanged,
//! rejects invalid objects with the field and the rule (all or nothing), and
//! `skiff analyze` finds the misconfigurations behind 503s, against the
//! server and offline.

mod support;

use support::{Skiff, text};

const AB: &str = "
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: hello
spec:
  host: hello.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
  subsets:
  - name: v1
    labels: {serving.knative.dev/revision: hello-00001}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: hello
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match:
    - headers:
        user-type: {exact: premium}
    route:
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
  - route:
    - destination: {host: hello.default.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
      weight: 20
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ['/admin*']}}]
---
apiVersion: v1
kind: Secret
metadata:
  name: not-a-cert
stringData:
  password: hunter2
";

#[test]
fn istio_yaml_is_accepted_stored_and_analyzed() {
    let skiff = Skiff::start();
    let out = skiff.apply(AB);
    for line in [
        "service.serving.knative.dev/hello created",
        "destinationrule.networking.istio.io/hello created",
        "virtualservice.networking.istio.io/hello created",
        "authorizationpolicy.security.istio.io/deny-admin created",
        "secret/not-a-cert created",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    // Stored in the served version; readable under its short name.
    let vs = skiff.get("vs", "hello").expect("vs");
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1");
    assert_eq!(vs["spec"]["http"][1]["route"][0]["weight"], 80);
    let list = text(&skiff.cli(&["get", "virtualservices"]));
    assert!(
        list.contains("[\"hello.default.svc.cluster.local\"]"),
        "{list}"
    );
    // stringData became base64 data.
    let secret = skiff.get("secrets", "not-a-cert").expect("secret");
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert!(secret.get("stringData").is_none());

    // The analyzer sees the undefined subset and the tiny connection pool.
    skiff.wait_ready("ksvc", "hello");
    let out = skiff.cli(&["analyze"]);
    assert_eq!(out.status.code(), Some(79), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("Error [SK1002] (VirtualService default/hello)"),
        "{report}"
    );
    assert!(report.contains("subset \"v2\""), "{report}");
    assert!(
        report.contains("Warning [SK2001] (DestinationRule default/hello)"),
        "{report}"
    );
    // -n filters by namespace.
    let out = skiff.cli(&["analyze", "-n", "other"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn invalid_istio_objects_are_refused_whole_with_field_errors() {
    let skiff = Skiff::start();
    let bad = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [a.example.com]
  http:
  - match: [{uri: {regex: '/api/(v1'}}]
    timeout: 5 seconds
    redirect: {uri: /moved}
    route: [{destination: {host: a.example.com}, weight: -5}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: a.example.com
  trafficPolicy: {tls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE}
---
apiVersion: v1
kind: Secret
metadata: {name: cert}
type: kubernetes.io/tls
stringData: {tls.crt: not a certificate}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: fine}
spec:
  template:
    spec:
      containers: [{image: ghcr.io/knative/helloworld-go:latest}]
";
    let out = skiff.cli_stdin(&["apply", "-f", "-"], Some(bad));
    assert!(!out.status.success());
    let err = text(&out);
    for want in [
        "spec.http[0].match[0].uri.regex",
        "time: unknown unit \" seconds\" in duration \"5 seconds\": spec.http[0].timeout",
        "expected exactly one, got both: spec.http[0].redirect, spec.http[0].route",
        "spec.http[0].route[0].weight",
        "unknown client TLS mode \"STRICT\"",
        "SIMPLE TLS requires a server certificate (or credentialName): spec.servers[0].tls.serverCertificate",
        "missing field(s): data[tls.key]",
        "no PEM CERTIFICATE block found: data[tls.crt]",
        "4 of the objects are invalid; nothing was applied",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // All or nothing: the valid Service was not stored either.
    assert!(skiff.get("ksvc", "fine").is_none());
}

#[test]
fn analyze_works_offline_on_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ab.yaml");
    std::fs::write(&f, AB).unwrap();
    let out = std::process::Command::new(support::skiff_bin())
        .args(["analyze", "-f", f.to_str().unwrap(), "-o", "json"])
        .env("SKIFF_SERVER", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(79), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"SK1002"), "{codes:?}");
    assert!(codes.contains(&"SK2001"), "{codes:?}");
    assert!(v[0]["fix"].as_str().is_some_and(|f| !f.is_empty()));
}
