//! End-to-end tests of Knative API fidelity: the real `skiff` binary, real
//! instances, real clients. Admission with Knative's text, the ConfigMaps
//! live, Knative's getting-started and blue/green samples (copied in
//! tests/samples), tags and domains, cluster-local routes, revision GC,
//! owner restores with events, and the kn-style verbs.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use support::{HELLO_HOST, Skiff, condition, curl, get, manifests, text};

const HELLO: &str = include_str!("samples/getting-started/hello.yaml");
const HELLO_V2: &str = include_str!("samples/getting-started/hello-v2.yaml");
const HELLO_SPLIT: &str = include_str!("samples/getting-started/hello-split.yaml");
const BG_1: &str = include_str!("samples/blue-green/01-route-first-revision.yaml");
const BG_2: &str = include_str!("samples/blue-green/02-route-stage-v2.yaml");
const BG_3: &str = include_str!("samples/blue-green/03-route-50-50.yaml");
const BG_4: &str = include_str!("samples/blue-green/04-route-all-v2.yaml");

const WAIT: Duration = Duration::from_secs(60);

fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: knative-serving\ndata:\n"
    );
    if data.is_empty() {
        s = s.replace("data:\n", "data: {}\n");
    }
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// `skiff apply -f -` that must fail; its stderr.
fn apply_err(skiff: &Skiff, yaml: &str) -> String {
    let out = skiff.cli_stdin(&["apply", "-f", "-"], Some(yaml));
    assert!(!out.status.success(), "apply succeeded: {}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Response bodies of `n` GETs with `host` on `url`, counted.
async fn bodies(url: &str, host: &str, n: usize, parallel: usize) -> HashMap<String, usize> {
    let client = support::client();
    let mut tasks = Vec::new();
    for i in 0..parallel {
        let (client, url, host) = (client.clone(), url.to_string(), host.to_string());
        let count = n / parallel + usize::from(i < n % parallel);
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..count {
                let r = support::request_with(&client, "GET", &url, &host, "")
                    .await
                    .expect("an HTTP response");
                assert_eq!(r.status, 200, "{r:?}");
                *seen.entry(r.body).or_default() += 1;
            }
            seen
        }));
    }
    let mut all: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// Wait until GETs with `host` answer `body`.
async fn wait_body(url: &str, host: &str, body: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = get(url, host).await;
        if r.status == 200 && r.body == body {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host} never answered {body:?}; last: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(url: &str, host: &str, status: u16) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = get(url, host).await;
        if r.status == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host} never answered {status}; last: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn traffic_of(o: &Value) -> Vec<(String, i64, String, String)> {
    o["status"]["traffic"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["revisionName"].as_str().unwrap_or("").to_string(),
                t["percent"].as_i64().unwrap_or(-1),
                t["tag"].as_str().unwrap_or("").to_string(),
                t["url"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_are_refused_with_knatives_text_and_nothing_is_stored() {
    let skiff = Skiff::start();
    // Two errors in the second document: both reported, sorted, and the
    // first document is not stored either.
    let broken = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: broken
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports: [{containerPort: 8012}]
  traffic:
  - percent: 50
";
    let err = apply_err(&skiff, &format!("{HELLO}---\n{broken}"));
    assert!(
        err.contains(
            "<stdin>: document 2 (Service default/broken): validation failed: Traffic targets sum to 50, want 100: spec.traffic\n\
             invalid value: 8012 is a reserved port: spec.template.spec.containers[0].ports.containerPort\n\
             8012 is a reserved port, please use a different value"
        ),
        "{err}"
    );
    assert!(skiff.get("ksvc", "hello").is_none());

    // A file's own config-defaults applies to its other documents, and a
    // refused file stores neither.
    let tight = configmap(
        "config-defaults",
        &[
            ("revision-timeout-seconds", "60"),
            ("max-revision-timeout-seconds", "100"),
        ],
    );
    let slow = HELLO.replace(
        "      containers:",
        "      timeoutSeconds: 200\n      containers:",
    );
    let err = apply_err(&skiff, &format!("{tight}---\n{slow}"));
    assert!(
        err.contains(
            "validation failed: expected 0 <= 200 <= 100: spec.template.spec.timeoutSeconds"
        ),
        "{err}"
    );
    assert!(skiff.get("cm", "config-defaults").is_none());

    // Knative's ConfigMap webhook text.
    let err = apply_err(
        &skiff,
        &configmap("config-autoscaler", &[("stable-window", "2s")]),
    );
    assert!(
        err.contains("validation failed: stable-window = 2s, must be in [6s; 1h0m0s] range"),
        "{err}"
    );
    let err = apply_err(
        &skiff,
        &HELLO.replace(
            "  name: hello\n",
            "  name: hello\n  annotations:\n    autoscaling.knative.dev/min-scale: \"1\"\n",
        ),
    );
    assert!(
        err.contains("validation failed: invalid key name \"autoscaling.knative.dev/min-scale\": metadata.annotations\nautoscaling annotations must be put under \"spec.template.metadata.annotations\" to work"),
        "{err}"
    );

    // Server dry run prints the defaulted object and stores nothing; the
    // securityContext warnings do not reject.
    let out = skiff.cli_stdin(
        &["apply", "--dry-run", "-o", "yaml", "-f", "-"],
        Some(HELLO),
    );
    assert!(out.status.success(), "{}", text(&out));
    let yaml = stdout(&out);
    for want in [
        "timeoutSeconds: 300",
        "containerConcurrency: 0",
        "name: user-container",
        "successThreshold: 1",
        "latestRevision: true",
    ] {
        assert!(yaml.contains(want), "{want}\n{yaml}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Warning: Kubernetes default value is insecure, Knative may default this to secure in a future release: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"),
        "{}",
        text(&out)
    );
    assert!(
        skiff.get("ksvc", "hello").is_none(),
        "a dry run stores nothing"
    );

    // Offline validation: no server needed.
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples");
    let offline = std::process::Command::new(support::skiff_bin())
        .args(["validate", "-R", "-f", samples])
        .env("SKIFF_DATA_DIR", "/nonexistent")
        .env("SKIFF_SERVER", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", text(&offline));
    assert!(stdout(&offline).contains("service.serving.knative.dev/hello is valid"));
    assert!(stdout(&offline).contains("route.serving.knative.dev/blue-green is valid"));
    let bad = skiff.cli_stdin(
        &["validate", "-f", "-"],
        Some(&format!("{tight}---\n{slow}---\n{broken}")),
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("document 2 (Service default/hello): validation failed: expected 0 <= 200 <= 100: spec.template.spec.timeoutSeconds"), "{err}");
    assert!(err.contains("document 3 (Service default/broken): validation failed: Traffic targets sum to 50, want 100: spec.traffic"), "{err}");
    assert!(err.contains("2 invalid documents"), "{err}");
    let defaulted = skiff.cli_stdin(&["validate", "-f", "-", "-o", "json"], Some(HELLO));
    let objs: Value = serde_json::from_slice(&defaulted.stdout).unwrap();
    assert_eq!(objs[0]["spec"]["template"]["spec"]["timeoutSeconds"], 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn getting_started_samples_split_traffic_deterministically() {
    let skiff = Skiff::start();
    skiff.apply(HELLO);
    skiff.wait_ready("ksvc", "hello");
    wait_body(&skiff.url("/"), HELLO_HOST, "Hello World!\n").await;
    skiff.apply(HELLO_V2);
    skiff.wait_for("ksvc", "hello", WAIT, |o| {
        o["status"]["latestReadyRevisionName"] == "hello-00002" && condition(o, "Ready").0 == "True"
    });
    wait_body(&skiff.url("/"), HELLO_HOST, "Hello Knative!\n").await;

    skiff.apply(HELLO_SPLIT);
    let svc = skiff.wait_for("ksvc", "hello", WAIT, |o| {
        traffic_of(o).len() == 2 && condition(o, "Ready").0 == "True"
    });
    assert_eq!(
        traffic_of(&svc),
        [
            ("hello-00002".into(), 50, String::new(), String::new()),
            ("hello-00001".into(), 50, String::new(), String::new())
        ]
    );
    assert_eq!(svc["status"]["traffic"][0]["latestRevision"], true);
    assert_eq!(svc["status"]["traffic"][1]["latestRevision"], false);
    // A third revision would be made by a template change; this split is a
    // traffic change only.
    assert_eq!(svc["status"]["latestCreatedRevisionName"], "hello-00002");

    // 10,000 requests through the gateway: each revision within 1 % of 50 %.
    let seen = bodies(&skiff.url("/"), HELLO_HOST, 10_000, 8).await;
    let world = seen.get("Hello World!\n").copied().unwrap_or(0);
    let knative = seen.get("Hello Knative!\n").copied().unwrap_or(0);
    assert_eq!(world + knative, 10_000, "{seen:?}");
    assert!((4_900..=5_100).contains(&world), "{seen:?}");

    let revs = stdout(&skiff.cli(&["revision", "list"]));
    let lines: Vec<Vec<&str>> = revs
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "SERVICE",
            "TRAFFIC",
            "TAGS",
            "GENERATION",
            "AGE",
            "CONDITIONS",
            "READY",
            "REASON"
        ]
    );
    assert_eq!(&lines[1][..3], ["hello-00002", "hello", "50%"]);
    assert_eq!(&lines[2][..3], ["hello-00001", "hello", "50%"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_with_a_standalone_route_tags_and_config_domain() {
    let skiff = Skiff::start();
    skiff.apply(&configmap("config-domain", &[("example.com", "")]));
    skiff.apply(HELLO);
    skiff.wait_ready("ksvc", "hello");
    skiff.apply(HELLO_V2);
    let svc = skiff.wait_for("ksvc", "hello", WAIT, |o| {
        o["status"]["latestReadyRevisionName"] == "hello-00002" && condition(o, "Ready").0 == "True"
    });
    assert_eq!(svc["status"]["url"], "http://hello.default.example.com");

    // Step 1: everything to the first revision.
    skiff.apply(BG_1);
    let r = skiff.wait_ready("route", "blue-green");
    assert_eq!(r["status"]["url"], "http://blue-green.default.example.com");
    assert_eq!(
        r["status"]["address"]["url"],
        "http://blue-green.default.svc.cluster.local"
    );
    let main = "blue-green.default.example.com";
    wait_body(&skiff.url("/"), main, "Hello World!\n").await;

    // Step 2: v2 staged at 0 % with its own host, which serves it fully.
    skiff.apply(BG_2);
    let r = skiff.wait_for("route", "blue-green", WAIT, |o| {
        traffic_of(o).len() == 2 && condition(o, "Ready").0 == "True"
    });
    assert_eq!(
        traffic_of(&r),
        [
            ("hello-00001".into(), 100, String::new(), String::new()),
            (
                "hello-00002".into(),
                0,
                "v2".into(),
                "http://v2-blue-green.default.example.com".into()
            )
        ]
    );
    let tag = "v2-blue-green.default.example.com";
    wait_body(&skiff.url("/"), tag, "Hello Knative!\n").await;
    let seen = bodies(&skiff.url("/"), main, 50, 2).await;
    assert_eq!(seen.get("Hello World!\n"), Some(&50), "{seen:?}");
    let seen = bodies(&skiff.url("/"), tag, 50, 2).await;
    assert_eq!(seen.get("Hello Knative!\n"), Some(&50), "{seen:?}");
    // The tag's cluster-local name, on the cluster-local listener.
    let local = get(
        &skiff.local_url("/"),
        "v2-blue-green.default.svc.cluster.local",
    )
    .await;
    assert_eq!(local.body, "Hello Knative!\n");

    // Tag header routing (config-features): on the main host, a request
    // asking for tag v2 gets it; an unknown tag gets the main split.
    skiff.apply(&configmap(
        "config-features",
        &[("tag-header-based-routing", "Enabled")],
    ));
    let with_tag = |tag: &str| {
        support::curl(
            &skiff.url("/"),
            main,
            &["-H", &format!("Knative-Serving-Tag: {tag}")],
        )
        .2
    };
    let deadline = std::time::Instant::now() + WAIT;
    while with_tag("v2") != "Hello Knative!\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "tag header routing never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(with_tag("v2"), "Hello Knative!\n");
        assert_eq!(with_tag("nope"), "Hello World!\n");
    }
    let seen = bodies(&skiff.url("/"), main, 50, 2).await;
    assert_eq!(seen.get("Hello World!\n"), Some(&50), "{seen:?}");

    // Step 3: 50/50; step 4: all to v2.
    skiff.apply(BG_3);
    skiff.wait_for("route", "blue-green", WAIT, |o| {
        traffic_of(o).first().is_some_and(|t| t.1 == 50)
    });
    let seen = bodies(&skiff.url("/"), main, 200, 2).await;
    let world = seen.get("Hello World!\n").copied().unwrap_or(0);
    assert!((90..=110).contains(&world), "{seen:?}");
    skiff.apply(BG_4);
    skiff.wait_for("route", "blue-green", WAIT, |o| {
        traffic_of(o).first().is_some_and(|t| t.1 == 0)
    });
    wait_body(&skiff.url("/"), main, "Hello Knative!\n").await;
    let seen = bodies(&skiff.url("/"), main, 50, 2).await;
    assert_eq!(seen.get("Hello Knative!\n"), Some(&50), "{seen:?}");

    // Knative's reasons for targets that do not resolve.
    skiff.apply(
        "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: missing-rev}\nspec:\n  traffic: [{revisionName: nope-00001, percent: 100}]\n",
    );
    let r = skiff.wait_for("route", "missing-rev", WAIT, |o| {
        condition(o, "AllTrafficAssigned").0 == "False"
    });
    assert_eq!(
        condition(&r, "AllTrafficAssigned"),
        (
            "False".into(),
            "RevisionMissing".into(),
            "Revision \"nope-00001\" referenced in traffic not found.".into()
        )
    );
    assert_eq!(condition(&r, "Ready").1, "RevisionMissing");
    skiff.apply(
        "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: missing-cfg}\nspec:\n  traffic: [{configurationName: nope, percent: 100}]\n",
    );
    let r = skiff.wait_for("route", "missing-cfg", WAIT, |o| {
        condition(o, "AllTrafficAssigned").0 == "False"
    });
    assert_eq!(
        condition(&r, "AllTrafficAssigned"),
        (
            "False".into(),
            "ConfigurationMissing".into(),
            "Configuration \"nope\" referenced in traffic not found.".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_local_routes_are_served_only_on_the_local_listener_and_instances_reach_them() {
    let skiff = Skiff::start();
    let callee = HELLO
        .replace(
            "  name: hello\n",
            "  name: callee\n  labels:\n    networking.knative.dev/visibility: cluster-local\n",
        )
        .replace("\"World\"", "\"Local\"");
    skiff.apply(&callee);
    let svc = skiff.wait_ready("ksvc", "callee");
    assert_eq!(
        svc["status"]["url"],
        "http://callee.default.svc.cluster.local"
    );
    let host = "callee.default.svc.cluster.local";
    wait_body(&skiff.local_url("/"), host, "Hello Local!\n").await;
    assert_eq!(
        get(&skiff.local_url("/"), "callee.default").await.body,
        "Hello Local!\n"
    );
    // Never on the external listener, under any name.
    assert_eq!(get(&skiff.url("/"), host).await.status, 404);
    assert_eq!(
        get(&skiff.url("/"), "callee.default.127.0.0.1.sslip.io")
            .await
            .status,
        404
    );
    // A client using the local listener as its HTTP proxy (absolute-form).
    let (code, status, body) = curl(
        &format!("http://{host}/"),
        host,
        &["--proxy", &format!("http://{}", skiff.local_gateway)],
    );
    assert_eq!(
        (code, status.as_str(), body.as_str()),
        (0, "200", "Hello Local!\n")
    );

    // An instance calls it by its cluster-local name through HTTP_PROXY.
    let out = skiff.data_dir().join("caller.out");
    let caller = format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: caller
spec:
  template:
    spec:
      containers:
        - image: example.com/caller
          command: [sh, -c, 'curl -s http://callee.default.svc.cluster.local/ > \"$OUT\"; echo \"$HTTP_PROXY\" >> \"$OUT\"; exec \"$BIN\" example hello']
          env:
            - {{name: OUT, value: {out:?}}}
            - {{name: BIN, value: {bin:?}}}
",
        out = out.display().to_string(),
        bin = support::skiff_bin().display().to_string()
    );
    skiff.apply(&caller);
    skiff.wait_ready("ksvc", "caller");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        format!("Hello Local!\nhttp://{}\n", skiff.local_gateway)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configmaps_take_effect_without_a_restart() {
    let skiff = Skiff::start();
    skiff.apply(HELLO);
    let svc = skiff.wait_ready("ksvc", "hello");
    assert_eq!(
        svc["status"]["url"],
        "http://hello.default.127.0.0.1.sslip.io"
    );

    // config-domain: a default and a label-selected domain.
    let domain = "apiVersion: v1
kind: ConfigMap
metadata:
  name: config-domain
  namespace: knative-serving
data:
  example.com: \"\"
  internal.example.com: |
    selector:
      team: internal
";
    skiff.apply(domain);
    skiff.wait_for("ksvc", "hello", WAIT, |o| {
        o["status"]["url"] == "http://hello.default.example.com"
    });
    wait_body(
        &skiff.url("/"),
        "hello.default.example.com",
        "Hello World!\n",
    )
    .await;
    wait_status(&skiff.url("/"), HELLO_HOST, 404).await;
    let team = HELLO.replace(
        "  name: hello\n",
        "  name: team\n  labels:\n    team: internal\n",
    );
    skiff.apply(&team);
    let t = skiff.wait_ready("ksvc", "team");
    assert_eq!(
        t["status"]["url"],
        "http://team.default.internal.example.com"
    );

    // config-network templates, for the main host and for tags.
    skiff.apply(&configmap(
        "config-network",
        &[
            ("domain-template", "{{.Name}}-{{.Namespace}}.{{.Domain}}"),
            ("tag-template", "{{.Name}}-{{.Tag}}"),
        ],
    ));
    skiff.wait_for("ksvc", "hello", WAIT, |o| {
        o["status"]["url"] == "http://hello-default.example.com"
    });
    wait_body(
        &skiff.url("/"),
        "hello-default.example.com",
        "Hello World!\n",
    )
    .await;
    let tagged = HELLO.replace(
        "\"World\"",
        "\"World\"\n  traffic:\n  - {latestRevision: true, percent: 100, tag: current}",
    );
    skiff.apply(&tagged);
    let svc = skiff.wait_for("ksvc", "hello", WAIT, |o| {
        traffic_of(o).first().is_some_and(|t| t.2 == "current")
    });
    assert_eq!(
        svc["status"]["traffic"][0]["url"],
        "http://hello-current-default.example.com"
    );
    wait_body(
        &skiff.url("/"),
        "hello-current-default.example.com",
        "Hello World!\n",
    )
    .await;
    let err = apply_err(
        &skiff,
        &configmap(
            "config-network",
            &[("domain-template", "{{.Name}}.{{.Domain}}/x")],
        ),
    );
    assert!(
        err.contains("validation failed: domain template has url path: /x"),
        "{err}"
    );

    // config-defaults: the next admission uses the new defaults.
    skiff.apply(&configmap(
        "config-defaults",
        &[("revision-timeout-seconds", "42")],
    ));
    let out = skiff.cli_stdin(
        &["apply", "--dry-run", "-o", "json", "-f", "-"],
        Some(&HELLO.replace("name: hello", "name: later")),
    );
    let objs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(objs[0]["spec"]["template"]["spec"]["timeoutSeconds"], 42);
    // config-features: multi-container switched off.
    skiff.apply(&configmap(
        "config-features",
        &[("multi-container", "Disabled")],
    ));
    let two = "apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: two}
spec:
  template:
    spec:
      containers:
        - {image: ghcr.io/knative/helloworld-go:latest, ports: [{containerPort: 8080}]}
        - {image: ghcr.io/knative/helloworld-go:latest}
";
    let err = apply_err(&skiff, two);
    assert!(
        err.contains("validation failed: multi-container is off, but found 2 containers: "),
        "{err}"
    );
    // config-autoscaler is validated and stored for the autoscaler.
    // With a limit, max-scale itself must be within [1, limit] (Knative).
    let err = apply_err(
        &skiff,
        &configmap("config-autoscaler", &[("max-scale-limit", "10")]),
    );
    assert!(
        err.contains("validation failed: max-scale = 0, must be in [1, max-scale-limit(10)] range"),
        "{err}"
    );
    skiff.apply(&configmap(
        "config-autoscaler",
        &[
            ("stable-window", "90s"),
            ("max-scale-limit", "10"),
            ("max-scale", "5"),
        ],
    ));
    let cm = skiff.get("configmap", "config-autoscaler");
    assert!(cm.is_none(), "ConfigMaps live in knative-serving");
    let out = skiff.cli(&[
        "get",
        "cm",
        "config-autoscaler",
        "-n",
        "knative-serving",
        "-o",
        "json",
    ]);
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cm["data"]["stable-window"], "90s");
    // max-scale-limit now bounds the max-scale annotation.
    let err = apply_err(
        &skiff,
        &HELLO.replace(
            "  template:\n",
            "  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/max-scale: \"20\"\n",
        ),
    );
    assert!(
        err.contains("expected 1 <= 20 <= 10: spec.template.metadata.annotations.autoscaling.knative.dev/max-scale"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn old_revisions_are_collected_per_config_gc() {
    let skiff = Skiff::start();
    skiff.apply(&configmap(
        "config-gc",
        &[
            ("retain-since-create-time", "disabled"),
            ("retain-since-last-active-time", "disabled"),
            ("min-non-active-revisions", "0"),
            ("max-non-active-revisions", "1"),
        ],
    ));
    for (i, target) in ["One", "Two", "Three"].iter().enumerate() {
        skiff.apply(&HELLO.replace("\"World\"", &format!("{target:?}")));
        let want = format!("hello-{:05}", i + 1);
        skiff.wait_for("ksvc", "hello", WAIT, |o| {
            o["status"]["latestReadyRevisionName"] == want.as_str()
                && condition(o, "Ready").0 == "True"
        });
    }
    // hello-00003 serves; hello-00002 is the one non-active revision kept.
    let deadline = std::time::Instant::now() + WAIT;
    while skiff.get("revision", "hello-00001").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "hello-00001 was not collected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = skiff.wait_for("revision", "hello-00002", WAIT, |o| {
        o["metadata"]["labels"]["serving.knative.dev/routingState"] == "reserve"
    });
    assert!(
        kept["metadata"]["annotations"]["serving.knative.dev/routingStateModified"].is_string()
    );
    let current = skiff.get("revision", "hello-00003").unwrap();
    assert_eq!(
        current["metadata"]["labels"]["serving.knative.dev/routingState"],
        "active"
    );
    assert_eq!(
        current["metadata"]["annotations"]["serving.knative.dev/routes"],
        "hello"
    );
    assert_eq!(
        get(&skiff.url("/"), HELLO_HOST).await.body,
        "Hello Three!\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_of_owned_objects_are_reverted_and_recorded() {
    let skiff = Skiff::start();
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    let mut route = skiff.get("route", "hello").unwrap();
    route["spec"]["traffic"] =
        serde_json::json!([{"revisionName": "hello-00001", "percent": 100, "tag": "hacked"}]);
    route.as_object_mut().unwrap().remove("status");
    skiff.apply(&route.to_string());
    skiff.wait_for("route", "hello", WAIT, |r| {
        r["spec"]["traffic"][0]["configurationName"] == "hello"
    });
    let out = skiff.cli(&["delete", "configuration", "hello"]);
    assert!(out.status.success(), "{}", text(&out));
    skiff.wait_ready("ksvc", "hello");

    let deadline = std::time::Instant::now() + WAIT;
    let events = loop {
        let events = stdout(&skiff.cli(&["get", "events"]));
        if events.contains("Recreated") {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows: Vec<Vec<&str>> = events
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(events.contains("Warning   Reverted"), "{events}");
    assert!(
        events.contains("service/hello         Reverted changes to the spec of Route \"hello\": the Service owns it")
            || events.contains("Reverted changes to the spec, annotations of Route \"hello\": the Service owns it"),
        "{events}"
    );
    assert!(
        events.contains("Recreated Configuration \"hello\", which was deleted by hand"),
        "{events}"
    );
    // Once the Service has caught up again.
    let wants = [
        "Name:         hello",
        "URL:          http://hello.default.127.0.0.1.sslip.io",
        "100%  @latest (hello-00001) [1]",
        "++ Ready",
        "++ ConfigurationsReady",
        "++ RoutesReady",
        "Warning   Recreated",
        "Created Revision \"hello-00001\"",
    ];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let d = stdout(&skiff.cli(&["describe", "ksvc", "hello"]));
        if wants.iter().all(|w| d.contains(w)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn byo_revision_names_and_immutable_revisions() {
    let skiff = Skiff::start();
    let named = |name: &str, target: &str| {
        HELLO
            .replace(
                "  template:\n",
                &format!("  template:\n    metadata:\n      name: {name}\n"),
            )
            .replace("\"World\"", &format!("{target:?}"))
    };
    skiff.apply(&named("hello-v1", "One"));
    skiff.wait_ready("ksvc", "hello");
    let rev = skiff.wait_ready("revision", "hello-v1");
    assert_eq!(
        rev["metadata"]["labels"]["serving.knative.dev/configurationGeneration"],
        "1"
    );
    // Same name, changed template: refused with Knative's words.
    let err = apply_err(&skiff, &named("hello-v1", "Two"));
    assert!(
        err.contains("validation failed: Saw the following changes without a name change (-old +new): spec.template.metadata.name"),
        "{err}"
    );
    // Applying the unchanged manifest again is fine (kubectl apply keeps the
    // server's defaults).
    assert_eq!(
        skiff.apply(&named("hello-v1", "One")).trim(),
        "service.serving.knative.dev/hello unchanged"
    );
    skiff.apply(&named("hello-v2", "Two"));
    skiff.wait_for("ksvc", "hello", WAIT, |o| {
        o["status"]["latestReadyRevisionName"] == "hello-v2" && condition(o, "Ready").0 == "True"
    });
    wait_body(&skiff.url("/"), HELLO_HOST, "Hello Two!\n").await;
    let err = apply_err(&skiff, &named("other-v3", "Three"));
    assert!(
        err.contains("validation failed: invalid value: \"other-v3\" must have prefix \"hello-\": spec.template.metadata.name"),
        "{err}"
    );

    // A Revision's spec cannot change.
    let mut rev = skiff.get("revision", "hello-v1").unwrap();
    rev["spec"]["containers"][0]["env"][0]["value"] = "Changed".into();
    rev.as_object_mut().unwrap().remove("status");
    let err = apply_err(&skiff, &rev.to_string());
    assert!(
        err.contains("validation failed: Immutable fields changed (-old +new): spec\n{v1.RevisionSpec}.PodSpec.Containers[0].Env[0].Value:\n\t-: \"One\"\n\t+: \"Changed\""),
        "{err}"
    );

    // A name held by a Revision the Configuration does not own.
    skiff.apply(
        "apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: c-v1}
spec:
  containers: [{image: ghcr.io/knative/helloworld-go:latest}]
",
    );
    skiff.apply(
        "apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: c}
spec:
  template:
    metadata: {name: c-v1}
    spec:
      containers: [{image: ghcr.io/knative/helloworld-go:latest}]
",
    );
    let c = skiff.wait_for("configuration", "c", WAIT, |o| {
        condition(o, "Ready").0 == "False"
    });
    assert_eq!(
        condition(&c, "Ready"),
        (
            "False".into(),
            "RevisionFailed".into(),
            "Revision creation failed with message: revisions.serving.knative.dev \"c-v1\" already exists.".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kn_style_verbs_create_update_split_tag_and_delete() {
    let skiff = Skiff::start();
    let image = "ghcr.io/knative/helloworld-go:latest";
    let out = skiff.cli(&[
        "service",
        "create",
        "hello",
        "--image",
        image,
        "--env",
        "TARGET=Kn",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.starts_with("Creating service 'hello' in namespace 'default':\n\n"),
        "{o}"
    );
    assert!(o.contains("s Revision \"hello-00001\" created."), "{o}");
    assert!(o.contains("s Ready to serve.\n"), "{o}");
    assert!(
        o.ends_with("\nService 'hello' created to latest revision 'hello-00001' is available at URL:\nhttp://hello.default.127.0.0.1.sslip.io\n"),
        "{o}"
    );
    assert_eq!(get(&skiff.url("/"), HELLO_HOST).await.body, "Hello Kn!\n");

    let out = skiff.cli(&["service", "update", "hello", "--env", "TARGET=Two"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(
            "Service 'hello' updated to latest revision 'hello-00002' is available at URL:"
        ),
        "{}",
        text(&out)
    );
    let out = skiff.cli(&[
        "service",
        "update",
        "hello",
        "--traffic",
        "hello-00001=30",
        "--traffic",
        "@latest=70",
        "--tag",
        "hello-00001=old",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let svc = skiff.wait_for("ksvc", "hello", WAIT, |o| traffic_of(o).len() == 2);
    assert_eq!(
        traffic_of(&svc),
        [
            ("hello-00002".into(), 70, String::new(), String::new()),
            (
                "hello-00001".into(),
                30,
                "old".into(),
                "http://old-hello.default.127.0.0.1.sslip.io".into()
            )
        ]
    );
    wait_body(
        &skiff.url("/"),
        "old-hello.default.127.0.0.1.sslip.io",
        "Hello Kn!\n",
    )
    .await;
    let revs = stdout(&skiff.cli(&["revision", "list", "-s", "hello"]));
    let rows: Vec<Vec<&str>> = revs
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        &rows[1][..5],
        ["hello-00002", "hello", "70%", "2", rows[1][4]]
    );
    assert_eq!(&rows[2][..5], ["hello-00001", "hello", "30%", "old", "1"]);
    let routes = stdout(&skiff.cli(&["route", "list"]));
    assert!(
        routes.contains("hello   http://hello.default.127.0.0.1.sslip.io   True"),
        "{routes}"
    );
    let list = stdout(&skiff.cli(&["service", "list"]));
    assert!(list.starts_with("NAME    URL"), "{list}");

    // A failure prints Knative's reason and exits 1.
    let out = skiff.cli(&[
        "service",
        "create",
        "broken",
        "--image",
        "example.com/broken",
        "--cmd",
        "sh",
        "--arg",
        "-c",
        "--arg",
        "echo bad config >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: RevisionFailed: Revision \"broken-00001\" failed with message: "),
        "{err}"
    );
    let out = skiff.cli(&["service", "create", "later", "--image", image, "--no-wait"]);
    assert_eq!(
        stdout(&out),
        "Service 'later' created in namespace 'default'.\n"
    );
    let out = skiff.cli(&["service", "create", "later", "--image", image, "--no-wait"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("because the service already exists"));

    let out = skiff.cli(&["service", "delete", "hello"]);
    assert_eq!(
        stdout(&out),
        "Service 'hello' successfully deleted in namespace 'default'.\n"
    );
    wait_status(&skiff.url("/"), HELLO_HOST, 404).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_duration_moves_traffic_to_a_new_revision_in_steps() {
    let skiff = Skiff::start();
    let with_rollout = |target: &str| {
        HELLO
            .replace(
                "  name: hello\n",
                "  name: hello\n  annotations:\n    serving.knative.dev/rollout-duration: \"8s\"\n",
            )
            .replace("value: \"World\"", &format!("value: \"{target}\""))
    };
    skiff.apply(&with_rollout("One"));
    skiff.wait_ready("ksvc", "hello");
    wait_body(&skiff.url("/"), HELLO_HOST, "Hello One!\n").await;

    skiff.apply(&with_rollout("Two"));
    // Mid-rollout the Route shows both revisions, the new one below 100 %,
    // with IngressReady Unknown/RolloutInProgress, and the gateway serves
    // both.
    let (mut saw_split, mut old_seen, mut new_seen) = (false, false, false);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let route = skiff.get("route", "hello").unwrap();
        let traffic = traffic_of(&route);
        let rolling = condition(&route, "IngressReady").1 == "RolloutInProgress";
        if rolling && traffic.len() == 2 {
            assert_eq!(traffic[0].0, "hello-00001");
            assert_eq!(traffic[1].0, "hello-00002");
            assert_eq!(traffic[0].1 + traffic[1].1, 100, "{traffic:?}");
            assert!(traffic[1].1 > 0 && traffic[1].1 < 100, "{traffic:?}");
            saw_split = true;
            let seen = bodies(&skiff.url("/"), HELLO_HOST, 40, 4).await;
            old_seen |= seen.contains_key("Hello One!\n");
            new_seen |= seen.contains_key("Hello Two!\n");
        }
        if !rolling && traffic.len() == 1 && traffic[0].0 == "hello-00002" {
            assert_eq!(traffic[0].1, 100);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not finish: {route}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_split, "the route showed an intermediate split");
    assert!(
        old_seen && new_seen,
        "both revisions served during the rollout"
    );
    let seen = bodies(&skiff.url("/"), HELLO_HOST, 50, 5).await;
    assert_eq!(seen.get("Hello Two!\n"), Some(&50), "{seen:?}");
    skiff.wait_ready("ksvc", "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn revision_timeouts_bound_the_response_start_the_gaps_and_the_whole() {
    let skiff = Skiff::start();
    skiff.apply(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: slowpoke}
spec:
  template:
    spec:
      timeoutSeconds: 3
      responseStartTimeoutSeconds: 1
      idleTimeoutSeconds: 2
      containers:
        - image: gcr.io/knative-samples/autoscale-go
",
    );
    skiff.wait_ready("ksvc", "slowpoke");
    let host = "slowpoke.default.127.0.0.1.sslip.io";
    let url = |q: &str| skiff.url(&format!("/?{q}"));

    // No response within responseStartTimeoutSeconds: a 504 that says so.
    let (exit, code, body) = curl(&url("sleep=2s"), host, &[]);
    assert_eq!((exit, code.as_str()), (0, "504"), "{body}");
    assert!(body.contains("responseStartTimeoutSeconds"), "{body}");

    // Started at once, short gaps, done in time: the whole body.
    let (exit, code, body) = curl(&url("bytes=2&drip=800ms"), host, &[]);
    assert_eq!((exit, code.as_str()), (0, "200"), "{body}");
    assert!(body.ends_with("xx"), "{body}");

    // A gap longer than idleTimeoutSeconds, or a body still streaming at
    // timeoutSeconds: the response is cut, and the client can tell (curl:
    // 18, transfer closed with outstanding data), never a short 200 that
    // looks complete.
    for q in ["bytes=1&drip=2500ms", "bytes=4&drip=1200ms"] {
        let (exit, code, body) = curl(&url(q), host, &[]);
        assert_eq!(code, "200", "{q}: {body}");
        assert_eq!(exit, 18, "{q}: {body}");
    }
    // The cut requests did not leave the revision stuck.
    let (exit, code, _) = curl(&url(""), host, &[]);
    assert_eq!((exit, code.as_str()), (0, "200"));

    // The same limits hold when a VirtualService fronts the revision.
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slowpoke}
spec:
  hosts: [slowpoke.default.svc.cluster.local]
  http: [{route: [{destination: {host: slowpoke}}], headers: {response: {set: {x-via: vs}}}}]
",
    );
    let local = "slowpoke.default.svc.cluster.local";
    let lurl = |q: &str| skiff.local_url(&format!("/?{q}"));
    let deadline = std::time::Instant::now() + WAIT;
    while !curl(&lurl(""), local, &["-i"]).2.contains("x-via: vs") {
        assert!(
            std::time::Instant::now() < deadline,
            "the VirtualService never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (exit, code, body) = curl(&lurl("sleep=2s"), local, &[]);
    assert_eq!((exit, code.as_str()), (0, "504"), "{body}");
    assert!(body.contains("responseStartTimeoutSeconds"), "{body}");
    let (exit, code, body) = curl(&lurl("bytes=1&drip=2500ms"), local, &[]);
    assert_eq!((code.as_str(), exit), ("200", 18), "{body}");
}
