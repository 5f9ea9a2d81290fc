//! End-to-end tests of Istio traffic management through Skiff's gateway:
//! the real binary, real example apps (hello, autoscale), real clients
//! (hyper, curl, raw TCP, rustls). Every test asserts behaviour and counts,
//! never timings.

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use support::{Resp, Skiff, manifests, request_with_headers as send, wait_for_zero};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ----------------------------------------------------------------- helpers

/// `N` distinct ports nobody listens on now (for Gateway servers). The
/// listeners stay bound until all are picked: bound and dropped one at a time,
/// the kernel may hand the same port out twice.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|l| l.local_addr().unwrap().port())
}

/// A Knative Service running the hello app answering `Hello {target}!`,
/// with template `labels`, and optionally all traffic pinned to `pin`.
fn hello(name: &str, target: &str, labels: &[(&str, &str)], pin: Option<&str>) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let traffic = pin.map_or(String::new(), |rev| {
        format!("  traffic:\n  - revisionName: {rev}\n    percent: 100\n")
    });
    format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
      labels: {{{}}}
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          env: [{{name: TARGET, value: {target}}}]
{traffic}",
        labels.join(", ")
    )
}

async fn must(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Resp {
    send(client, method, url, host, headers, "")
        .await
        .unwrap_or_else(|e| panic!("{method} {url} (Host {host}) failed: {e}"))
}

/// Poll until `check` holds for a GET (the controller applies objects
/// asynchronously); panics with the last response after a minute.
async fn eventually(
    skiff: &Skiff,
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
    check: impl Fn(&Resp) -> bool,
) -> Resp {
    let client = support::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = send(&client, "GET", url, host, headers, "").await;
        if let Ok(r) = &r
            && check(r)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{url} (Host {host}) never answered as expected: {r:?}\n--- server output ---\n{}",
            skiff.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `host`'s VirtualService is in effect on the cluster-local
/// listener: only the VirtualService path sends `x-envoy-attempt-count`
/// (the autoscale app's `/headers` shows it).
async fn until_vs(skiff: &Skiff, host: &str) {
    eventually(skiff, &skiff.local_url("/headers"), host, &[], |r| {
        r.status == 200 && r.body.contains("x-envoy-attempt-count")
    })
    .await;
}

/// A counter of the autoscale app's `/stats` behind `name`.
async fn app_count(skiff: &Skiff, name: &str, field: &str) -> u64 {
    stats(skiff, &ext(name)).await[field]
        .as_u64()
        .unwrap_or_else(|| panic!("/stats of {name} has no {field}"))
}

/// The admin listener's Prometheus text.
async fn scrape(skiff: &Skiff) -> String {
    support::get(&format!("{}/metrics", skiff.admin), "localhost")
        .await
        .body
}

/// Sum of the samples of `name` (with or without OpenMetrics' `_total`)
/// whose labels include every pair of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let named = n == name || n.strip_suffix("_total") == Some(name);
            (named && want.iter().all(|w| rest.contains(w.as_str())))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The autoscale app's `/stats` of the revision behind `host` (through the
/// gateway, on a path no VirtualService rule touches).
async fn stats(skiff: &Skiff, host: &str) -> Value {
    let r = support::get(&skiff.url("/stats"), host).await;
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.body).unwrap()
}

fn ext(name: &str) -> String {
    format!("{name}.default.127.0.0.1.sslip.io")
}

fn mesh(name: &str) -> String {
    format!("{name}.default.svc.cluster.local")
}

// ------------------------------------------------------------------- tests

/// The seeds' A/B example: a DestinationRule subset per Knative revision
/// (by `serving.knative.dev/revision`), a VirtualService sending
/// `user-type: premium` to v2 and everyone else 80/20. Served to the mesh
/// (the cluster-local listener the instances call through); Knative's own
/// route (100 % v1) is untouched on the external listener.
#[tokio::test(flavor = "multi_thread")]
async fn ab_example_splits_80_20_and_sends_premium_users_to_v2() {
    let skiff = Skiff::start();
    skiff.apply(&hello("ab", "v1", &[], None));
    skiff.wait_ready("ksvc", "ab");
    skiff.apply(&format!(
        "{}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: ab}}
spec:
  host: ab.default.svc.cluster.local
  subsets:
  - name: v1
    labels: {{serving.knative.dev/revision: ab-00001}}
  - name: v2
    labels: {{serving.knative.dev/revision: ab-00002}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: ab}}
spec:
  hosts: [ab.default.svc.cluster.local]
  http:
  - match:
    - headers:
        user-type: {{exact: premium}}
    route:
    - destination: {{host: ab.default.svc.cluster.local, subset: v2}}
  - route:
    - destination: {{host: ab.default.svc.cluster.local, subset: v1}}
      weight: 80
    - destination: {{host: ab.default.svc.cluster.local, subset: v2}}
      weight: 20
",
        hello("ab", "v2", &[], Some("ab-00001"))
    ));
    let url = skiff.local_url("/");
    eventually(
        &skiff,
        &url,
        &mesh("ab"),
        &[("user-type", "premium")],
        |r| r.body == "Hello v2!\n",
    )
    .await;

    let client = support::client();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        let r = must(&client, "GET", &url, &mesh("ab"), &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        *counts.entry(r.body).or_default() += 1;
    }
    // The split is exact over every window of sum(weights) requests.
    assert_eq!(counts.get("Hello v1!\n"), Some(&80), "{counts:?}");
    assert_eq!(counts.get("Hello v2!\n"), Some(&20), "{counts:?}");
    for _ in 0..20 {
        let r = must(
            &client,
            "GET",
            &url,
            "ab.default",
            &[("user-type", "premium")],
        )
        .await;
        assert_eq!(r.body, "Hello v2!\n", "short mesh names route too");
    }
    // Knative's route (100 % to ab-00001) serves the external host.
    for _ in 0..10 {
        let r = must(
            &client,
            "GET",
            &skiff.url("/"),
            &ext("ab"),
            &[("user-type", "premium")],
        )
        .await;
        assert_eq!(r.body, "Hello v1!\n");
    }
    // Istio-shaped metrics per revision.
    let m = scrape(&skiff).await;
    let v2 = metric(
        &m,
        "istio_requests",
        &[
            ("destination_service", "ab.default.svc.cluster.local"),
            ("destination_canonical_revision", "ab-00002"),
            ("response_code", "200"),
        ],
    );
    assert!(v2 >= 40.0, "20 split + 20 premium (+ polling): {v2}\n{m}");
    assert!(
        m.contains("istio_request_duration_milliseconds_bucket{"),
        "{m}"
    );
}

/// First match wins over ordered rules: exact, regex (full match), method,
/// headers, query parameters, a rewrite, and 404 NR when nothing matches —
/// on a Gateway of its own (a listener opened for its server port).
#[tokio::test(flavor = "multi_thread")]
async fn rules_match_in_order_on_a_gateway_listener() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("m", &[], &[]));
    skiff.apply(&manifests::autoscale("shadow", &[], &[]));
    skiff.wait_ready("ksvc", "m");
    skiff.wait_ready("ksvc", "shadow");
    let [port] = free_ports();
    let rule = |name: &str, m: &str| {
        format!(
            "  - name: {name}
    match: [{m}]
    headers: {{response: {{set: {{x-rule: {name}}}}}}}
    route: [{{destination: {{host: m}}}}]
"
        )
    };
    let mut vs = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: web}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ['*.example.com']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: m}}
spec:
  hosts: [shop.example.com]
  gateways: [web]
  http:
"
    );
    vs += &rule("exact-login", "{uri: {exact: /login}}");
    vs += &rule("api-regex", "{uri: {regex: '/api/v[0-9]+/.*'}}");
    vs += &rule(
        "post-orders",
        "{uri: {prefix: /orders}, method: {exact: POST}}",
    );
    vs += &rule("premium", "{headers: {user-type: {exact: premium}}}");
    vs += &rule("beta", "{queryParams: {beta: {exact: '1'}}}");
    vs += "  - name: rewrite
    match: [{uri: {exact: /static}}]
    rewrite: {uri: /headers}
    route: [{destination: {host: m}}]
  - name: mirrored
    match: [{uri: {exact: /mirror}}]
    headers: {response: {set: {x-rule: mirrored}}}
    route: [{destination: {host: m}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 100}
";
    skiff.apply(&vs);
    let base = format!("http://127.0.0.1:{port}");
    eventually(
        &skiff,
        &format!("{base}/login"),
        "shop.example.com",
        &[],
        |r| r.status == 200,
    )
    .await;
    let client = support::client();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        ("GET", "/login", &[], Some("exact-login")),
        ("GET", "/login/x", &[], None),
        ("GET", "/api/v2/items", &[], Some("api-regex")),
        ("GET", "/x/api/v2/items", &[], None),
        ("POST", "/orders/1", &[], Some("post-orders")),
        ("GET", "/orders/1", &[], None),
        (
            "GET",
            "/orders/1",
            &[("user-type", "premium")],
            Some("premium"),
        ),
        (
            "POST",
            "/orders/1",
            &[("user-type", "premium")],
            Some("post-orders"),
        ),
        ("GET", "/?beta=1", &[], Some("beta")),
        ("GET", "/?beta=2", &[], None),
    ];
    for (method, path, headers, want) in cases {
        let r = must(
            &client,
            method,
            &format!("{base}{path}"),
            "shop.example.com",
            headers,
        )
        .await;
        match want {
            Some(rule) => {
                assert_eq!(r.status, 200, "{method} {path} {headers:?}: {r:?}");
                assert_eq!(r.headers["x-rule"], *rule, "{method} {path} {headers:?}");
            }
            None => {
                assert_eq!(r.status, 404, "{method} {path} {headers:?}: {r:?}");
                assert_eq!(r.headers["x-skiff-flags"], "NR");
                assert!(r.body.contains("no rule of the VirtualServices"), "{r:?}");
            }
        }
    }
    // The rewrite: the app sees /headers, and where the request came from.
    // (A gateway drops router-steering headers from external clients: a
    // 1 ms timeout asked for here is neither applied nor forwarded.)
    let r = must(
        &client,
        "GET",
        &format!("{base}/static"),
        "shop.example.com",
        &[("x-envoy-upstream-rq-timeout-ms", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        seen.get("x-envoy-upstream-rq-timeout-ms").is_none(),
        "{seen}"
    );
    assert_eq!(seen[":path"], "/headers");
    assert_eq!(seen["x-envoy-original-path"], "/static");
    assert_eq!(seen["x-envoy-attempt-count"], "1");
    assert!(
        seen["x-request-id"].as_str().is_some_and(|s| s.len() == 36),
        "{seen}"
    );
    // Mirrors: the copy reaches the shadow service; the client gets m's answer.
    let shadow0 = app_count(&skiff, "shadow", "requests").await;
    for _ in 0..3 {
        let r = must(
            &client,
            "GET",
            &format!("{base}/mirror"),
            "shop.example.com",
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.headers["x-rule"], "mirrored");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while app_count(&skiff, "shadow", "requests").await - shadow0 < 3 {
        assert!(Instant::now() < deadline, "the mirror copies never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A host the gateway server admits but no VirtualService claims.
    let r = must(
        &client,
        "GET",
        &format!("{base}/login"),
        "other.example.com",
        &[],
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "NR");
}

/// Istio's circuit-breaking task: maxConnections 1 and
/// http1MaxPendingRequests 1 under 3 concurrent clients. Never more than
/// one request at the app and one queued; every other answer a 503 `UO`
/// with `x-envoy-overloaded`; the overflow counter equals what clients saw.
#[tokio::test(flavor = "multi_thread")]
async fn circuit_breaker_allows_one_in_flight_and_one_pending() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("cb", &[], &[]));
    skiff.wait_ready("ksvc", "cb");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cb}
spec:
  host: cb
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cb}
spec:
  hosts: [cb]
  http:
  - route: [{destination: {host: cb}}]
",
    );
    let url = skiff.local_url("/?sleep=50ms");
    until_vs(&skiff, &mesh("cb")).await;
    let before = scrape(&skiff).await;
    let cluster = "outbound|||cb.default.svc.cluster.local";
    let overflow0 = metric(
        &before,
        "envoy_cluster_upstream_rq_pending_overflow",
        &[("cluster_name", cluster)],
    );
    let app0 = app_count(&skiff, "cb", "requests").await;

    let mut clients = Vec::new();
    for _ in 0..3 {
        let (url, host) = (url.clone(), mesh("cb"));
        clients.push(tokio::spawn(async move {
            let client = support::client();
            let (mut ok, mut overflow, mut max_in_flight) = (0u64, 0u64, 0u64);
            for _ in 0..30 {
                let r = must(&client, "GET", &url, &host, &[]).await;
                match r.status {
                    200 => {
                        ok += 1;
                        let level: u64 = r.headers["x-in-flight"].to_str().unwrap().parse().unwrap();
                        max_in_flight = max_in_flight.max(level);
                    }
                    503 => {
                        assert_eq!(r.headers["x-skiff-flags"], "UO", "{r:?}");
                        assert_eq!(r.headers["x-envoy-overloaded"], "true", "{r:?}");
                        assert!(r.body.starts_with(
                            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
                        ), "{r:?}");
                        overflow += 1;
                    }
                    s => panic!("unexpected {s}: {r:?}"),
                }
            }
            (ok, overflow, max_in_flight)
        }));
    }
    let (mut ok, mut overflow, mut max_in_flight) = (0, 0, 0);
    for c in clients {
        let (o, f, m) = c.await.unwrap();
        ok += o;
        overflow += f;
        max_in_flight = max_in_flight.max(m);
    }
    assert_eq!(ok + overflow, 90);
    assert!(
        overflow > 0,
        "three clients against one connection and one pending slot overflow"
    );
    assert_eq!(max_in_flight, 1, "never more than one request at the app");
    let app = stats(&skiff, &ext("cb")).await;
    assert_eq!(
        app["requests"].as_u64().unwrap() - app0,
        ok,
        "every 200 reached the app, no 503 did"
    );
    assert_eq!(app["max_in_flight"], 1);
    let after = scrape(&skiff).await;
    let overflow1 = metric(
        &after,
        "envoy_cluster_upstream_rq_pending_overflow",
        &[("cluster_name", cluster)],
    );
    assert_eq!(
        overflow1 - overflow0,
        overflow as f64,
        "the counter equals what the clients saw"
    );
    assert_eq!(
        metric(
            &after,
            "istio_requests",
            &[
                ("destination_service", "cb.default.svc.cluster.local"),
                ("response_code", "503"),
                ("response_flags", "UO")
            ]
        ),
        overflow as f64
    );
    assert!(
        after.contains(&format!(
            "envoy_cluster_circuit_breakers_default_remaining_cx{{cluster_name=\"{cluster}\"}} 1"
        )),
        "{after}"
    );
}

/// Outlier detection ejects the instance answering 500s: the cluster's
/// other revision takes the traffic, a subset with only the ejected
/// instance answers 503 `no healthy upstream` (UH), and after
/// baseEjectionTime the instance is back.
#[tokio::test(flavor = "multi_thread")]
async fn outlier_detection_ejects_a_failing_host_and_brings_it_back() {
    let skiff = Skiff::start();
    // v1: the hello app (always 200); v2: the autoscale app (?status=500).
    skiff.apply(&hello("od", "v1", &[("pool", "od")], None));
    skiff.wait_ready("ksvc", "od");
    let v2 = manifests::autoscale("od", &[], &[])
        .replace("labels: {app: od}", "labels: {app: od, pool: od}");
    skiff.apply(&format!(
        "{v2}  traffic:
  - revisionName: od-00001
    percent: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: od}}
spec:
  host: od
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 10s
      maxEjectionPercent: 100
  subsets:
  - name: both
    labels: {{pool: od}}
  - name: v2
    labels: {{serving.knative.dev/revision: od-00002}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: od}}
spec:
  hosts: [od]
  http:
  - match: [{{headers: {{x-only: {{exact: v2}}}}}}]
    route: [{{destination: {{host: od, subset: v2}}}}]
  - route: [{{destination: {{host: od, subset: both}}}}]
"
    ));
    let url = skiff.local_url("/?status=500");
    let client = support::client();
    // Until both revisions serve: a 500 shows v2 answered (and is ejected).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = must(&client, "GET", &url, &mesh("od"), &[]).await;
        if r.status == 500 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "v2 never answered: {r:?}\n{}",
            skiff.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ejected (for 10 s): v2's subset has no healthy host, and v1 serves
    // everything for the cluster of both.
    let r = must(&client, "GET", &url, &mesh("od"), &[("x-only", "v2")]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "UH", "{r:?}");
    assert!(r.body.starts_with("no healthy upstream"), "{r:?}");
    for _ in 0..10 {
        let r = must(&client, "GET", &url, &mesh("od"), &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "Hello v1!\n"), "{r:?}");
    }
    let m = scrape(&skiff).await;
    let both = "outbound||both|od.default.svc.cluster.local";
    assert_eq!(
        metric(
            &m,
            "envoy_cluster_outlier_detection_ejections_enforced_total",
            &[("cluster_name", both)]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "envoy_cluster_outlier_detection_ejections_active",
            &[("cluster_name", both)]
        ),
        1.0,
        "{m}"
    );
    // After baseEjectionTime v2 answers again (its 500s are back).
    let back = eventually(&skiff, &url, &mesh("od"), &[("x-only", "v2")], |r| {
        r.status == 500
    })
    .await;
    assert!(
        back.headers.contains_key("x-instance"),
        "the app answered: {back:?}"
    );
}

/// Retries: a POST the app processed before resetting is not retried
/// (server-side count equals the client's single attempt); a GET is retried
/// as `retryOn: 5xx,reset` says; a VirtualService may opt non-idempotent
/// requests in; the route timeout is never retried. The JSON access log,
/// filtered to errors, shows each request's attempts.
#[tokio::test(flavor = "multi_thread")]
async fn retries_never_repeat_what_the_app_processed_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let skiff = Skiff::start_with(&[
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-encoding",
        "JSON",
        "--access-log-filter",
        "response.code >= 400",
    ]);
    skiff.apply(&manifests::autoscale("flaky", &[], &[]));
    skiff.apply(&manifests::autoscale("optin", &[], &[]));
    skiff.wait_ready("ksvc", "flaky");
    skiff.wait_ready("ksvc", "optin");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky]
  http:
  - match: [{uri: {prefix: /slow}}]
    timeout: 300ms
    retries: {attempts: 2, retryOn: '5xx,reset'}
    route: [{destination: {host: flaky}}]
  - retries: {attempts: 2, retryOn: '5xx,reset'}
    route: [{destination: {host: flaky}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: optin
  annotations: {retry.skiff.dev/non-idempotent: 'true'}
spec:
  hosts: [optin]
  http:
  - retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: optin}}]
",
    );
    until_vs(&skiff, &mesh("flaky")).await;
    until_vs(&skiff, &mesh("optin")).await;
    let client = support::client();

    // POST, reset after processing: one attempt, 503 UC.
    let r0 = app_count(&skiff, "flaky", "processed_resets").await;
    let r = send(
        &client,
        "POST",
        &skiff.local_url("/?reset=1&id=post-reset"),
        &mesh("flaky"),
        &[],
        "order",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, &r.headers["x-skiff-flags"]),
        (503, &"UC".parse().unwrap()),
        "{r:?}"
    );
    assert!(
        r.body.contains("not idempotent, so it was not retried"),
        "{r:?}"
    );
    assert_eq!(
        app_count(&skiff, "flaky", "processed_resets").await - r0,
        1,
        "the app processed it exactly once"
    );

    // GET, reset: retried twice.
    let r0 = app_count(&skiff, "flaky", "processed_resets").await;
    let r = must(
        &client,
        "GET",
        &skiff.local_url("/?reset=1&id=get-reset"),
        &mesh("flaky"),
        &[],
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "UC,URX");
    assert_eq!(app_count(&skiff, "flaky", "processed_resets").await - r0, 3);

    // GET, 503 from the app: retried, then passed through.
    let q0 = app_count(&skiff, "flaky", "requests").await;
    let r = must(
        &client,
        "GET",
        &skiff.local_url("/?status=503&id=get-503"),
        &mesh("flaky"),
        &[],
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(
        !r.headers.contains_key("x-skiff-flags"),
        "the app's own answer: {r:?}"
    );
    assert_eq!(app_count(&skiff, "flaky", "requests").await - q0, 3);

    // POST, 503: not retried without the opt-in, retried (body resent) with.
    let q0 = app_count(&skiff, "flaky", "requests").await;
    let r = send(
        &client,
        "POST",
        &skiff.local_url("/?status=503&id=post-503"),
        &mesh("flaky"),
        &[],
        "x",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app_count(&skiff, "flaky", "requests").await - q0, 1);
    let q0 = app_count(&skiff, "optin", "requests").await;
    let r = send(
        &client,
        "POST",
        &skiff.local_url("/?status=503&id=optin"),
        &mesh("optin"),
        &[],
        "payload",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app_count(&skiff, "optin", "requests").await - q0, 3);

    // The route timeout: 504 UT, never retried (even with retryOn 5xx).
    let q0 = app_count(&skiff, "flaky", "requests").await;
    let r = must(
        &client,
        "GET",
        &skiff.local_url("/slow?sleep=5s&id=slow"),
        &mesh("flaky"),
        &[],
    )
    .await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "UT");
    assert!(r.body.starts_with("upstream request timeout"), "{r:?}");
    assert_eq!(app_count(&skiff, "flaky", "requests").await - q0, 1);
    // A client may ask for a longer one (Envoy's header).
    let r = must(
        &client,
        "GET",
        &skiff.local_url("/slow?sleep=400ms"),
        &mesh("flaky"),
        &[("x-envoy-upstream-rq-timeout-ms", "30000")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Every retry shows in the access log.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The filter kept the errors only (the successful requests are not there).
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["response_code"].as_u64() >= Some(400)),
        "{text}"
    );
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| {
                l["path"]
                    .as_str()
                    .is_some_and(|p| p.contains(&format!("id={id}")))
            })
            .unwrap_or_else(|| panic!("no log line for {id}:\n{text}"))
    };
    for (id, attempts, flags) in [
        ("post-reset", 1, "UC"),
        ("get-reset", 3, "UC,URX"),
        ("get-503", 3, "URX"),
        ("post-503", 1, ""),
        ("optin", 3, "URX"),
        ("slow", 1, "UT"),
    ] {
        let l = line(id);
        assert_eq!(l["upstream_request_attempt_count"], attempts, "{id}: {l}");
        assert_eq!(
            l["response_flags"].as_str().unwrap_or(""),
            flags,
            "{id}: {l}"
        );
        assert_eq!(
            l["response_code"],
            if id == "slow" { 504 } else { 503 },
            "{id}: {l}"
        );
        assert!(
            l["upstream_cluster"]
                .as_str()
                .unwrap()
                .starts_with("outbound|"),
            "{l}"
        );
    }
    let m = scrape(&skiff).await;
    assert!(
        metric(
            &m,
            "envoy_cluster_upstream_rq_retry",
            &[("cluster_name", "outbound|||flaky.default.svc.cluster.local")]
        ) >= 4.0,
        "{m}"
    );
}

/// Fault injection: aborts and delays hit their percentage of requests
/// (within six standard deviations), aborted ones never reach the app.
#[tokio::test(flavor = "multi_thread")]
async fn fault_injection_percentages_hold() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let skiff = Skiff::start_with(&["--access-log", log.to_str().unwrap()]);
    skiff.apply(&manifests::autoscale("faulty", &[], &[]));
    skiff.wait_ready("ksvc", "faulty");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faulty}
spec:
  hosts: [faulty]
  http:
  - match: [{uri: {prefix: /stats}}]
    route: [{destination: {host: faulty}}]
  - fault:
      abort: {httpStatus: 418, percentage: {value: 30}}
      delay: {fixedDelay: 1ms, percentage: {value: 50}}
    route: [{destination: {host: faulty}}]
",
    );
    eventually(
        &skiff,
        &skiff.local_url("/warm"),
        &mesh("faulty"),
        &[],
        |r| r.status == 418,
    )
    .await;
    let before = app_count(&skiff, "faulty", "requests").await;
    let log_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    let client = support::client();
    const N: u64 = 300;
    let mut aborted = 0u64;
    for _ in 0..N {
        let r = must(
            &client,
            "GET",
            &skiff.local_url("/counted"),
            &mesh("faulty"),
            &[],
        )
        .await;
        match r.status {
            418 => {
                assert_eq!(r.body, "fault filter abort");
                assert!(
                    r.headers["x-skiff-flags"].to_str().unwrap().ends_with("FI"),
                    "{r:?}"
                );
                aborted += 1;
            }
            200 => {}
            s => panic!("unexpected {s}: {r:?}"),
        }
    }
    // Binomial(300, 0.3): mean 90, sd 7.9.
    assert!((43..=137).contains(&aborted), "aborted {aborted} of {N}");
    let reached = app_count(&skiff, "faulty", "requests").await - before;
    assert_eq!(reached, N - aborted, "aborted requests never reach the app");
    // Delays: Binomial(300, 0.5): mean 150, sd 8.7. Access log lines are
    // written when responses end: wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<String> = text
            .lines()
            .skip(log_before)
            .filter(|l| l.contains("\"GET /counted "))
            .map(str::to_string)
            .collect();
        if lines.len() as u64 >= N || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lines.len() as u64, N);
    let delayed = lines
        .iter()
        .filter(|l| l.contains(" 200 DI ") || l.contains(" 418 DI,FI "))
        .count();
    assert!((98..=202).contains(&delayed), "delayed {delayed} of {N}");
    let aborted_logged = lines
        .iter()
        .filter(|l| l.contains(" 418 ") && l.contains("fault_filter_abort"))
        .count();
    assert_eq!(aborted_logged as u64, aborted);
}

// --------------------------------------------------------------------- TLS

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// (certificate PEM, key PEM) for `dns` names (and URI SANs).
    fn leaf(&self, dns: &[&str], uris: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        for u in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

fn tls_secret(name: &str, (cert, key): &(String, String), ca: Option<&str>) -> String {
    let mut s = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: {name}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(cert),
        indent(key)
    );
    if let Some(ca) = ca {
        s += &format!("  ca.crt: |\n{}", indent(ca));
    }
    s
}

/// `curl` over TLS to `name:port` on 127.0.0.1: (exit code, http code,
/// http version, body).
fn curl_tls(name: &str, port: u16, path: &str, extra: &[&str]) -> (i32, String, String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
            "--max-time",
            "20",
        ])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (code, version) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        out.status.code().unwrap_or(-1),
        code.to_string(),
        version.to_string(),
        body.to_string(),
    )
}

/// A TLS connection with a request sender kept open (to see it survive a
/// certificate reload).
async fn tls_connection(
    name: &str,
    port: u16,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name.to_string().try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn tls_get(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
) -> (u16, String) {
    let req = http::Request::get("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s
        .send_request(req)
        .await
        .expect("the open connection still serves");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Gateway TLS: SIMPLE with SNI choosing between two certificates, HTTP/2
/// over TLS by ALPN, MUTUAL refusing clients without a certificate from
/// the CA, httpsRedirect, and a certificate reload (Secret changed) that
/// new handshakes see while an open connection keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn tls_simple_mutual_sni_redirect_and_reload() {
    let skiff = Skiff::start();
    skiff.apply(&hello("web", "TLS", &[], None));
    skiff.wait_ready("ksvc", "web");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gateway ca");
    let client_ca = Ca::new("client ca");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p.to_str().unwrap().to_string()
    };
    let ca_file = write("ca.pem", &ca.pem);
    let client = client_ca.leaf(
        &["client"],
        &["spiffe://cluster.local/ns/default/sa/tester"],
    );
    let stranger = Ca::new("other").leaf(&["client"], &[]);
    let (client_cert, client_key) = (
        write("client.pem", &client.0),
        write("client.key", &client.1),
    );
    let (stranger_cert, stranger_key) = (write("s.pem", &stranger.0), write("s.key", &stranger.1));
    let [https, mtls, plain] = free_ports();
    skiff.apply(&format!(
        "{}---
{}---
{}---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tls}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {https}, name: https-a, protocol: HTTPS}}
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, credentialName: cert-a}}
  - port: {{number: {https}, name: https-b, protocol: HTTPS}}
    hosts: [b.example.com]
    tls: {{mode: SIMPLE, credentialName: cert-b}}
  - port: {{number: {mtls}, name: mtls, protocol: HTTPS}}
    hosts: [m.example.com]
    tls: {{mode: MUTUAL, credentialName: cert-m}}
  - port: {{number: {plain}, name: http, protocol: HTTP}}
    hosts: [a.example.com]
    tls: {{httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [a.example.com, b.example.com, m.example.com]
  gateways: [tls]
  http:
  - route: [{{destination: {{host: web}}}}]
",
        tls_secret("cert-a", &ca.leaf(&["a.example.com"], &[]), None),
        tls_secret("cert-b", &ca.leaf(&["b.example.com"], &[]), None),
        tls_secret(
            "cert-m",
            &ca.leaf(&["m.example.com"], &[]),
            Some(&client_ca.pem)
        ),
    ));
    // SNI picks each name's certificate (curl verifies it against the name).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = curl_tls("a.example.com", https, "/", &["--cacert", &ca_file]);
        if r.1 == "200" {
            assert_eq!(r.3, "Hello TLS!\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TLS listener never served: {r:?}\n{}",
            skiff.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = curl_tls(
        "b.example.com",
        https,
        "/",
        &["--cacert", &ca_file, "--http1.1"],
    );
    assert_eq!(
        (b.0, b.1.as_str(), b.2.as_str()),
        (0, "200", "1.1"),
        "{b:?}"
    );
    let h2 = curl_tls(
        "a.example.com",
        https,
        "/",
        &["--cacert", &ca_file, "--http2"],
    );
    assert_eq!(
        (h2.1.as_str(), h2.2.as_str()),
        ("200", "2"),
        "HTTP/2 by ALPN: {h2:?}"
    );
    // MUTUAL: no certificate, or one from another CA: the handshake fails.
    let none = curl_tls("m.example.com", mtls, "/", &["--cacert", &ca_file]);
    assert_ne!(none.0, 0, "{none:?}");
    let wrong = curl_tls(
        "m.example.com",
        mtls,
        "/",
        &[
            "--cacert",
            &ca_file,
            "--cert",
            &stranger_cert,
            "--key",
            &stranger_key,
        ],
    );
    assert_ne!(wrong.0, 0, "{wrong:?}");
    let good = curl_tls(
        "m.example.com",
        mtls,
        "/",
        &[
            "--cacert",
            &ca_file,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ],
    );
    assert_eq!((good.0, good.1.as_str()), (0, "200"), "{good:?}");
    // httpsRedirect on the plain port.
    let r = support::get(&format!("http://127.0.0.1:{plain}/x?y=1"), "a.example.com").await;
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.headers["location"], "https://a.example.com/x?y=1");

    // Reload: a new certificate for a.example.com from another CA.
    let mut open = tls_connection("a.example.com", https, &ca.pem).await;
    assert_eq!(
        tls_get(&mut open, "a.example.com").await,
        (200, "Hello TLS!\n".into())
    );
    let ca2 = Ca::new("gateway ca 2");
    let ca2_file = write("ca2.pem", &ca2.pem);
    skiff.apply(&tls_secret(
        "cert-a",
        &ca2.leaf(&["a.example.com"], &[]),
        None,
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl_tls("a.example.com", https, "/", &["--cacert", &ca2_file]).1 != "200" {
        assert!(
            Instant::now() < deadline,
            "the new certificate is never served\n{}",
            skiff.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = curl_tls("a.example.com", https, "/", &["--cacert", &ca_file]);
    assert_ne!(old.0, 0, "new handshakes get the new certificate: {old:?}");
    // b.example.com still has its own, and the open connection goes on.
    assert_eq!(
        curl_tls("b.example.com", https, "/", &["--cacert", &ca_file]).1,
        "200"
    );
    assert_eq!(
        tls_get(&mut open, "a.example.com").await,
        (200, "Hello TLS!\n".into())
    );
}

/// AuthorizationPolicy: DENY before ALLOW, ALLOW lists what passes, the
/// selector scopes workload policies, and the ingress gateway's own policy
/// applies at the gateway only (not to the mesh's requests).
#[tokio::test(flavor = "multi_thread")]
async fn authorization_policy_allow_deny_matrix() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("guarded", &[], &[]));
    skiff.apply(&manifests::autoscale("open", &[], &[]));
    skiff.wait_ready("ksvc", "guarded");
    skiff.wait_ready("ksvc", "open");
    skiff.apply(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: guarded}}
  action: DENY
  rules:
  - to: [{operation: {paths: ['/admin*']}}]
  - when: [{key: 'request.headers[x-block]', values: ['yes']}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-reads}
spec:
  selector: {matchLabels: {app: guarded}}
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET, HEAD]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-deny, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: ['/gw-blocked']}}]
",
    );
    let client = support::client();
    eventually(&skiff, &skiff.url("/admin"), &ext("guarded"), &[], |r| {
        r.status == 403
    })
    .await;
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("guarded", "GET", "/", &[], 200),
        ("guarded", "GET", "/admin/users", &[], 403),
        ("guarded", "POST", "/", &[], 403),
        ("guarded", "GET", "/", &[("x-block", "yes")], 403),
        ("guarded", "GET", "/", &[("x-block", "no")], 200),
        ("open", "POST", "/admin", &[], 200),
        ("guarded", "GET", "/gw-blocked", &[], 403),
        ("open", "GET", "/gw-blocked", &[], 403),
    ];
    for (svc, method, path, headers, want) in cases {
        let r = must(&client, method, &skiff.url(path), &ext(svc), headers).await;
        assert_eq!(r.status, *want, "{svc} {method} {path} {headers:?}: {r:?}");
        if *want == 403 {
            assert!(r.body.starts_with("RBAC: access denied\n"), "{r:?}");
            assert!(
                r.body.contains("AuthorizationPolicy"),
                "which policy: {r:?}"
            );
        }
    }
    // From the mesh (the cluster-local listener: no gateway workload) the
    // gateway's policy does not apply; the workload's still do.
    let r = must(
        &client,
        "GET",
        &skiff.local_url("/gw-blocked"),
        &mesh("open"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = must(
        &client,
        "POST",
        &skiff.local_url("/"),
        &mesh("guarded"),
        &[],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// The keepalive race: the app closes connections idle for 1 s; clients
/// send with gaps around 1 s. GETs ride pooled connections (a request the
/// closing connection swallowed is sent again: it is idempotent and has no
/// body); POSTs go through a subset whose pool gives up on idle connections
/// after 800 ms, before the app would. Zero errors.
#[tokio::test(flavor = "multi_thread")]
async fn keepalive_race_with_an_app_closing_idle_connections_has_no_errors() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale(
        "idle",
        &[("IDLE_TIMEOUT_MS", "1000")],
        &[],
    ));
    skiff.wait_ready("ksvc", "idle");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: idle}
spec:
  host: idle
  subsets:
  - name: pooled
    labels: {app: idle}
  - name: short
    labels: {app: idle}
    trafficPolicy:
      connectionPool: {http: {idleTimeout: 800ms}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: idle}
spec:
  hosts: [idle]
  http:
  - match: [{method: {exact: POST}}]
    route: [{destination: {host: idle, subset: short}}]
  - route: [{destination: {host: idle, subset: pooled}}]
",
    );
    eventually(&skiff, &skiff.local_url("/"), &mesh("idle"), &[], |r| {
        r.status == 200 && r.headers.contains_key("x-instance")
    })
    .await;
    let client = support::client();
    let gaps = [900u64, 950, 1000, 1050, 1100];
    let mut errors = Vec::new();
    for i in 0..15 {
        tokio::time::sleep(Duration::from_millis(gaps[i % gaps.len()])).await;
        let method = if i % 3 == 2 { "POST" } else { "GET" };
        match send(
            &client,
            method,
            &skiff.local_url("/"),
            &mesh("idle"),
            &[],
            if method == "POST" { "data" } else { "" },
        )
        .await
        {
            Ok(r) if r.status == 200 => {}
            other => errors.push(format!("{method} #{i}: {other:?}")),
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Raw HTTP/1.1 upgrade through the gateway: the 101 comes back and bytes
/// flow both ways, on a plain Knative route and through a VirtualService.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_pass_through_the_gateway() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("ws", &[], &[]));
    skiff.wait_ready("ksvc", "ws");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ws}
spec:
  hosts: [ws]
  http:
  - route: [{destination: {host: ws}}]
",
    );
    eventually(&skiff, &skiff.local_url("/"), &mesh("ws"), &[], |r| {
        r.status == 200 && r.headers.contains_key("x-instance")
    })
    .await;
    async fn echo(addr: SocketAddr, host: &str) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /echo HTTP/1.1\r\nhost: {host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(
                n,
                0,
                "closed before the 101: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        for msg in [&b"ping"[..], b"second message"] {
            s.write_all(msg).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(buf, msg);
        }
    }
    echo(skiff.gateway, &ext("ws")).await;
    echo(skiff.local_gateway, &mesh("ws")).await;
}

/// A revision behind a VirtualService is still Knative's: at zero a request
/// waits for the cold start (and wakes the autoscaler), containerConcurrency
/// holds for every request the cluster sends, and a revision that cannot
/// start fails its requests at once with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn knative_guarantees_hold_through_a_virtual_service() {
    let skiff = Skiff::start();
    let flag = skiff.data_dir().join("broken");
    let script = format!(
        "if [ -e {f} ]; then echo 'cannot reach the database' >&2; exit 3; fi; exec {bin} example autoscale",
        f = flag.display(),
        bin = support::skiff_bin().display()
    );
    skiff.apply(&manifests::service(
        "cold",
        Some(1),
        &[("window", "6s"), ("max-scale", "10")],
        &[],
        Some(&["sh", "-c", &script]),
    ));
    skiff.wait_ready("ksvc", "cold");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cold}
spec:
  hosts: [cold]
  http:
  - route: [{destination: {host: cold}}]
",
    );
    until_vs(&skiff, &mesh("cold")).await;
    wait_for_zero(&skiff, "cold-00001");

    // A burst from zero through the VirtualService.
    let mut clients = Vec::new();
    for _ in 0..6 {
        let url = skiff.local_url("/?sleep=300ms");
        clients.push(tokio::spawn(async move {
            let client = support::client();
            let mut levels = Vec::new();
            for _ in 0..2 {
                let r = must(&client, "GET", &url, &mesh("cold"), &[]).await;
                assert_eq!(r.status, 200, "{r:?}");
                levels.push(r.headers["x-in-flight"].to_str().unwrap().to_string());
            }
            levels
        }));
    }
    for c in clients {
        for level in c.await.unwrap() {
            assert_eq!(
                level, "1",
                "containerConcurrency 1 holds through the cluster"
            );
        }
    }
    let m = scrape(&skiff).await;
    assert!(
        metric(
            &m,
            "skiff_activator_queued_requests",
            &[("revision", "default/cold-00001")]
        ) >= 1.0,
        "requests waited in the activator: {m}"
    );

    // The revision cannot start any more: requests fail fast, with why.
    wait_for_zero(&skiff, "cold-00001");
    std::fs::write(&flag, "").unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        must(
            &support::client(),
            "GET",
            &skiff.local_url("/"),
            &mesh("cold"),
            &[],
        ),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "UH");
    assert!(r.body.contains("cannot become ready"), "{r:?}");
    assert!(r.body.contains("cannot reach the database"), "{r:?}");
}

/// `skiff proxy-config KIND -o json`, parsed.
fn proxy_config(skiff: &Skiff, kind: &str) -> Value {
    let out = skiff.cli(&["proxy-config", kind, "-o", "json"]);
    assert!(
        out.status.success(),
        "proxy-config {kind}: {}",
        support::text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The cluster named `name` in `proxy-config clusters`.
fn cluster_view(skiff: &Skiff, name: &str) -> Value {
    let v = proxy_config(skiff, "clusters");
    v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no cluster {name} in {v:#}"))
}

/// Poll `proxy-config clusters` until `check` holds for cluster `name`;
/// panics with the last view after a minute.
fn cluster_until(skiff: &Skiff, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = cluster_view(skiff, name);
        if check(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "cluster {name} never got there: {c:#}\n--- server output ---\n{}",
            skiff.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first line (the header) and the lines mentioning `needle` of a
/// `proxy-config` table.
fn table_lines(skiff: &Skiff, kind: &str, needle: &str) -> (String, Vec<String>) {
    let out = skiff.cli(&["proxy-config", kind]);
    assert!(
        out.status.success(),
        "proxy-config {kind}: {}",
        support::text(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect();
    (header, rows)
}

/// `skiff proxy-config` shows what the gateway does now: the cluster a
/// DestinationRule with a connection pool and outlier detection makes, its
/// circuit breakers' live counts while requests hold the only connection
/// and wait for it (and the overflow the clients saw), then the instance's
/// ejection after consecutive 500s, in JSON and in istioctl-like tables.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_config_shows_live_breakers_endpoints_and_ejections() {
    let skiff = Skiff::start();
    // One instance, always: the counts below are per instance.
    skiff.apply(&manifests::autoscale(
        "pc",
        &[],
        &[
            ("autoscaling.knative.dev/min-scale", "1"),
            ("autoscaling.knative.dev/max-scale", "1"),
        ],
    ));
    skiff.wait_ready("ksvc", "pc");
    skiff.apply(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pc}
spec:
  host: pc
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 5m
      maxEjectionPercent: 100
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pc}
spec:
  hosts: [pc]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: pc}}]
    timeout: 30s
  - route: [{destination: {host: pc}}]
",
    );
    until_vs(&skiff, &mesh("pc")).await;
    let cluster = "outbound|||pc.default.svc.cluster.local";

    // The cluster as the DestinationRule makes it.
    let c = cluster_view(&skiff, cluster);
    assert_eq!(c["kind"], "destination", "{c:#}");
    assert_eq!(c["revisions"][0]["revision"], "default/pc-00001", "{c:#}");
    assert_eq!(
        (&c["endpoints"], &c["healthy_endpoints"]),
        (&1.into(), &1.into())
    );
    let cb = &c["circuit_breakers"];
    assert_eq!(cb["max_connections"], 1, "{c:#}");
    assert_eq!(cb["max_pending_requests"], 1, "{c:#}");
    assert_eq!(cb["max_requests"], Value::Null, "unlimited: {c:#}");
    let od = &c["outlier_detection"];
    assert_eq!(od["consecutive_5xx_errors"], 2, "{c:#}");
    assert_eq!(od["base_ejection_time_ms"], 300_000, "{c:#}");
    assert_eq!(od["ejections_active"], 0, "{c:#}");

    // The routes: the VirtualService's rules in order on the cluster-local
    // listener, Knative's route on the external one.
    let routes = proxy_config(&skiff, "routes");
    let local = skiff.local_gateway.to_string();
    let vh = routes["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == mesh("pc") && h["listener"] == local.as_str())
        .unwrap_or_else(|| panic!("no virtual host for pc: {routes:#}"));
    assert_eq!(
        vh["rules"][0]["matches"][0]["uri"]["prefix"], "/api",
        "{vh:#}"
    );
    assert_eq!(vh["rules"][0]["timeout_ms"], 30_000, "{vh:#}");
    assert_eq!(
        vh["rules"][1]["action"]["destinations"][0]["cluster"], cluster,
        "{vh:#}"
    );
    let external = routes["knative"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == ext("pc"))
        .unwrap_or_else(|| panic!("no Knative route for pc: {routes:#}"));
    assert_eq!(external["listeners"][0], skiff.gateway.to_string());
    assert_eq!(external["traffic"][0]["percent"], 100);

    // One request holds the only connection, a second waits for it, a
    // third overflows: what the clients see is what proxy-config counts.
    let held = |n: usize| {
        let url = skiff.local_url(&format!("/?sleep=120s&n={n}"));
        tokio::spawn(async move {
            let _ = send(&support::client(), "GET", &url, &mesh("pc"), &[], "").await;
        })
    };
    let first = held(1);
    cluster_until(&skiff, cluster, |c| {
        c["circuit_breakers"]["active_connections"] == 1
    });
    let second = held(2);
    let c = cluster_until(&skiff, cluster, |c| {
        c["circuit_breakers"]["pending_requests"] == 1
    });
    assert_eq!(c["circuit_breakers"]["active_requests"], 2, "{c:#}");
    let r = must(
        &support::client(),
        "GET",
        &skiff.local_url("/"),
        &mesh("pc"),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, &r.headers["x-skiff-flags"]),
        (503, &"UO".parse::<http::HeaderValue>().unwrap()),
        "{r:?}"
    );
    let c = cluster_view(&skiff, cluster);
    let cb = &c["circuit_breakers"];
    assert_eq!(cb["rq_pending_overflow"], 1, "{c:#}");
    assert_eq!(cb["rq_pending_total"], 1, "{c:#}");
    assert_eq!(cb["active_requests"], 2, "{c:#}");
    let (header, rows) = table_lines(&skiff, "clusters", cluster);
    for col in [
        "NAME",
        "CONNECTIONS",
        "PENDING",
        "REQUESTS",
        "OVERFLOWS",
        "EJECTED",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let cells: Vec<&str> = rows[0].split_whitespace().collect();
    // NAME TYPE REVISIONS ENDPOINTS LB CONNECTIONS PENDING REQUESTS OVERFLOWS
    assert_eq!(
        cells[..9],
        [
            cluster,
            "destination",
            "pc-00001",
            "1/1",
            "LEAST_REQUEST",
            "1/1",
            "1/1",
            "2",
            "1"
        ],
        "{rows:?}"
    );
    // Clients that give up free what they held.
    first.abort();
    second.abort();
    cluster_until(&skiff, cluster, |c| {
        let cb = &c["circuit_breakers"];
        cb["active_requests"] == 0 && cb["active_connections"] == 0 && cb["pending_requests"] == 0
    });

    // Two 500s in a row eject the instance; then nothing is healthy.
    let client = support::client();
    let mut five_hundreds = 0;
    loop {
        let r = must(
            &client,
            "GET",
            &skiff.local_url("/?status=500"),
            &mesh("pc"),
            &[],
        )
        .await;
        match r.status {
            500 => five_hundreds += 1,
            503 => {
                assert_eq!(r.headers["x-skiff-flags"], "UH", "{r:?}");
                break;
            }
            s => panic!("unexpected {s}: {r:?}"),
        }
        assert!(
            five_hundreds <= 2,
            "still not ejected after {five_hundreds} 500s"
        );
    }
    assert_eq!(five_hundreds, 2);
    let eps = proxy_config(&skiff, "endpoints");
    let mine: Vec<&Value> = eps["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["revision"] == "default/pc-00001")
        .collect();
    let clusters: Vec<&str> = mine
        .iter()
        .map(|e| e["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["default/pc-00001", cluster], "{eps:#}");
    for e in &mine {
        // The ejection is the instance's: it shows in every cluster.
        assert_eq!(e["ejected"], true, "{e:#}");
        assert_eq!(e["ejections"], 1, "{e:#}");
        assert_eq!(e["errors"], 2, "the two 500s: {e:#}");
        assert_eq!(e["status"], "HEALTHY", "running, not draining: {e:#}");
        assert_eq!(e["in_flight"], 0, "{e:#}");
        assert!(e["ejected_until"].is_string(), "{e:#}");
    }
    let c = cluster_view(&skiff, cluster);
    assert_eq!(c["healthy_endpoints"], 0, "{c:#}");
    assert_eq!(c["outlier_detection"]["ejections_active"], 1, "{c:#}");
    assert_eq!(
        c["outlier_detection"]["ejections_enforced_total"], 1,
        "{c:#}"
    );
    assert_eq!(c["stats"]["upstream_cx_none_healthy"], 1, "{c:#}");

    // The tables, with istioctl's columns.
    let (header, rows) = table_lines(&skiff, "endpoints", "pc-00001");
    let columns: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "ENDPOINT",
            "STATUS",
            "OUTLIER CHECK",
            "CLUSTER",
            "REVISION",
            "IN-FLIGHT",
            "REQUESTS",
            "ERRORS",
            "EJECTIONS",
            "EJECTED FOR"
        ]
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], ["HEALTHY", "FAILED"], "{row}");
    }
    let (header, rows) = table_lines(&skiff, "routes", &mesh("pc"));
    assert!(header.starts_with("LISTENER"), "{header}");
    assert!(
        rows.iter()
            .any(|r| r.contains("/api*") && r.contains("vs default/pc")),
        "{rows:?}"
    );
    let (header, rows) = table_lines(&skiff, "listeners", &local);
    assert!(header.starts_with("ADDRESS"), "{header}");
    assert!(rows[0].contains("cluster-local"), "{rows:?}");
}
