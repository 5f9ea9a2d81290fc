//! End-to-end tests of request-driven autoscaling: the real binary, real
//! instance processes, real HTTP clients driving load. Assertions are on
//! responses, counts and the app's own reports (`x-in-flight`, `/stats`),
//! never on timings.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::manifests::service;
use support::{Skiff, condition, instance_pids, wait_for_zero};

fn host(name: &str) -> String {
    format!("{name}.default.127.0.0.1.sslip.io")
}

/// The revision's ready instances and desired scale from its status.
fn replicas(skiff: &Skiff, rev: &str) -> (i64, i64) {
    let r = skiff.get("revision", rev).unwrap_or_default();
    (
        r["status"]["actualReplicas"].as_i64().unwrap_or(-1),
        r["status"]["desiredReplicas"].as_i64().unwrap_or(-1),
    )
}

/// `name{revision="default/rev"} value` from the admin listener's /metrics.
async fn metric(skiff: &Skiff, name: &str, rev: &str) -> Option<f64> {
    let text = support::get(&format!("{}/metrics", skiff.admin), "localhost")
        .await
        .body;
    let prefix = format!("{name}{{revision=\"default/{rev}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_from_zero_gets_200s_and_never_exceeds_container_concurrency() {
    let skiff = Skiff::start();
    skiff.apply(&service(
        "burst",
        Some(1),
        &[("window", "6s"), ("max-scale", "20")],
        &[],
        None,
    ));
    skiff.wait_ready("ksvc", "burst");
    wait_for_zero(&skiff, "burst-00001");

    // 1,000 concurrent requests with a 200 ms handler, at zero.
    let client = support::client();
    let url = skiff.url("/?sleep=200");
    let h = host("burst");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (client, url, h) = (client.clone(), url.clone(), h.clone());
        tasks.push(tokio::spawn(async move {
            support::request_with(&client, "GET", &url, &h, "").await
        }));
    }
    let mut pids = BTreeSet::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        let r = t.await.unwrap().expect("an HTTP response");
        *statuses.entry(r.status).or_default() += 1;
        assert_eq!(r.status, 200, "{r:?}");
        // The app's own count of requests in flight when this one started.
        assert_eq!(r.headers["x-in-flight"], "1", "{r:?}");
        pids.insert(r.headers["x-instance"].to_str().unwrap().to_string());
    }
    assert_eq!(statuses.get(&200), Some(&1000));
    assert!(pids.len() > 1, "the burst scaled out: {pids:?}");
    assert!(pids.len() <= 20, "max-scale: {pids:?}");
    let max_seen = metric(&skiff, "skiff_autoscaler_requested_pods", "burst-00001")
        .await
        .unwrap();
    assert!(max_seen <= 20.0);
    // The cold start was measured.
    let m = support::get(&format!("{}/metrics", skiff.admin), "localhost")
        .await
        .body;
    assert!(
        m.lines().any(
            |l| l.starts_with("skiff_cold_start_seconds_count{phase=\"total\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
    let out = skiff.output();
    assert!(
        out.contains("scaling") && out.contains("burst-00001"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scales_to_zero_after_the_retention_and_back_on_the_next_request() {
    let skiff = Skiff::start();
    skiff.apply(&service(
        "sleepy",
        None,
        &[
            ("window", "6s"),
            ("scale-to-zero-pod-retention-period", "12s"),
        ],
        &[],
        None,
    ));
    skiff.wait_ready("ksvc", "sleepy");
    let first = support::get(&skiff.url("/"), &host("sleepy")).await;
    assert_eq!(first.status, 200);
    let pid1 = first.headers["x-instance"].to_str().unwrap().to_string();

    // Inactive first, with its last instance retained...
    let rev = skiff.wait_for("revision", "sleepy-00001", Duration::from_secs(60), |o| {
        condition(o, "Active").0 == "False"
    });
    assert_eq!(condition(&rev, "Active").1, "NoTraffic");
    assert_eq!(
        instance_pids(skiff.data_dir()),
        vec![pid1.parse::<u32>().unwrap()],
        "the last instance is retained for the retention period"
    );
    // ...then at zero.
    wait_for_zero(&skiff, "sleepy-00001");
    let rev = skiff.get("revision", "sleepy-00001").unwrap();
    assert_eq!(
        condition(&rev, "Ready").0,
        "True",
        "a revision at zero stays Ready"
    );

    // The next request wakes it: a new process answers.
    let again = support::get(&skiff.url("/"), &host("sleepy")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_ne!(again.headers["x-instance"].to_str().unwrap(), pid1);
    skiff.wait_for("revision", "sleepy-00001", Duration::from_secs(30), |o| {
        condition(o, "Active").0 == "True" && o["status"]["actualReplicas"] == 1
    });
    let out = skiff.output();
    assert!(
        out.contains("no traffic"),
        "the scale-down is logged with its reason:\n{out}"
    );
}

/// Clients sending requests back to back until `stop`; every outcome is
/// counted.
#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    bad: std::sync::Mutex<Vec<String>>,
    bodies: std::sync::Mutex<BTreeSet<String>>,
}

fn run_load(
    skiff: &Skiff,
    name: &str,
    clients: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    path: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = skiff.url(path);
    let h = host(name);
    (0..16)
        .map(|i| {
            let (url, h, clients, stop, load) = (
                url.clone(),
                h.clone(),
                clients.clone(),
                stop.clone(),
                load.clone(),
            );
            tokio::spawn(async move {
                let client = support::client();
                while !stop.load(Ordering::Relaxed) {
                    if i >= clients.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    match support::request_with(&client, "GET", &url, &h, "").await {
                        Ok(r) if (200..300).contains(&r.status) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            let first = r.body.lines().next().unwrap_or("").to_string();
                            load.bodies.lock().unwrap().insert(first);
                        }
                        Ok(r) => load
                            .bad
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", r.status, r.body)),
                        Err(e) => load
                            .bad
                            .lock()
                            .unwrap()
                            .push(format!("connection error: {e}")),
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_down_and_a_rollout_under_steady_load_fail_no_request() {
    let skiff = Skiff::start();
    let ann = [("window", "6s")];
    skiff.apply(&service("steady", Some(1), &ann, &[("TARGET", "v1")], None));
    skiff.wait_ready("ksvc", "steady");

    let clients = Arc::new(AtomicUsize::new(8));
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let tasks = run_load(
        &skiff,
        "steady",
        clients.clone(),
        stop.clone(),
        load.clone(),
        "/?sleep=50",
    );

    // Scale out under 8 clients...
    let peak = skiff.wait_for("revision", "steady-00001", Duration::from_secs(60), |o| {
        o["status"]["actualReplicas"].as_i64().unwrap_or(0) >= 6
    });
    let peak = peak["status"]["actualReplicas"].as_i64().unwrap();
    // ...and in again with 2.
    clients.store(2, Ordering::Relaxed);
    skiff.wait_for("revision", "steady-00001", Duration::from_secs(90), |o| {
        let n = o["status"]["actualReplicas"].as_i64().unwrap_or(0);
        n > 0 && n < peak && n <= 4
    });
    // A new revision rolls out while the load goes on.
    skiff.apply(&service("steady", Some(1), &ann, &[("TARGET", "v2")], None));
    skiff.wait_for("ksvc", "steady", Duration::from_secs(60), |o| {
        o["status"]["latestReadyRevisionName"] == "steady-00002"
            && o["status"]["traffic"][0]["revisionName"] == "steady-00002"
    });
    let before = load.ok.load(Ordering::Relaxed);
    // Requests keep flowing to the new revision.
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.ok.load(Ordering::Relaxed) < before + 50
        || !load.bodies.lock().unwrap().contains("Hello v2!")
    {
        assert!(
            Instant::now() < deadline,
            "the load stalled after the rollout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let bad = load.bad.lock().unwrap();
    assert!(
        bad.is_empty(),
        "{} failed requests: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let bodies = load.bodies.lock().unwrap();
    assert!(
        bodies.contains("Hello v1!") && bodies.contains("Hello v2!"),
        "{bodies:?}"
    );
    assert!(load.ok.load(Ordering::Relaxed) > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_that_cannot_start_fails_queued_requests_with_the_reason() {
    let skiff = Skiff::start();
    let flag = skiff.data_dir().join("broken");
    let script = format!(
        "if [ -e {f} ]; then echo 'cannot reach the database' >&2; exit 3; fi; exec {bin} example autoscale",
        f = flag.display(),
        bin = support::skiff_bin().display()
    );
    skiff.apply(&service(
        "fragile",
        None,
        &[("window", "6s")],
        &[],
        Some(&["sh", "-c", &script]),
    ));
    skiff.wait_ready("ksvc", "fragile");
    wait_for_zero(&skiff, "fragile-00001");

    // From now on its command exits at once.
    std::fs::write(&flag, "").unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        support::get(&skiff.url("/"), &host("fragile")),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
    assert_eq!(r.headers["x-skiff-flags"], "UH");
    assert!(r.body.contains("cannot become ready"), "{r:?}");
    assert!(r.body.contains("exited with code 3"), "{r:?}");
    assert!(r.body.contains("cannot reach the database"), "{r:?}");
    // While it keeps failing, requests fail fast too.
    let again = support::get(&skiff.url("/"), &host("fragile")).await;
    assert_eq!(again.status, 503, "{again:?}");

    // Fixed: the restarts succeed and requests are served again.
    std::fs::remove_file(&flag).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = support::get(&skiff.url("/"), &host("fragile")).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(Instant::now() < deadline, "never recovered: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn min_and_max_scale_hold_at_every_sample() {
    let skiff = Skiff::start();
    skiff.apply(&service(
        "bounded",
        Some(1),
        &[("window", "6s"), ("min-scale", "2"), ("max-scale", "4")],
        &[],
        None,
    ));
    skiff.wait_ready("ksvc", "bounded");

    let clients = Arc::new(AtomicUsize::new(12));
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let tasks = run_load(
        &skiff,
        "bounded",
        clients.clone(),
        stop.clone(),
        load.clone(),
        "/?sleep=100",
    );
    let rev = "bounded-00001";
    let mut saw_max = false;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut samples = 0;
    loop {
        let requested = metric(&skiff, "skiff_autoscaler_requested_pods", rev).await;
        let desired = metric(&skiff, "skiff_autoscaler_desired_pods", rev).await;
        let actual = metric(&skiff, "skiff_autoscaler_actual_pods", rev).await;
        let (Some(requested), Some(desired), Some(actual)) = (requested, desired, actual) else {
            panic!("autoscaler metrics for {rev} are missing");
        };
        samples += 1;
        assert!((2.0..=4.0).contains(&requested), "requested {requested}");
        assert!((2.0..=4.0).contains(&desired), "desired {desired}");
        assert!(actual <= 4.0, "ready {actual}");
        let pids = instance_pids(skiff.data_dir()).len();
        // Draining instances may still exist for a moment after a scale-down.
        assert!(pids <= 4 + 2, "{pids} processes");
        let (status_actual, status_desired) = replicas(&skiff, rev);
        assert!(
            status_actual <= 4 && (2..=4).contains(&status_desired),
            "{status_actual} {status_desired}"
        );
        if requested == 4.0 {
            saw_max = true;
        }
        if saw_max && !stop.load(Ordering::Relaxed) && started.elapsed() > Duration::from_secs(10) {
            stop.store(true, Ordering::Relaxed);
        }
        // Load gone: back down to min-scale, not below.
        if stop.load(Ordering::Relaxed) && requested == 2.0 && actual == 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not settle: requested {requested}, ready {actual}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(saw_max, "the load reached max-scale");
    assert!(samples > 10);
    assert!(
        load.bad.lock().unwrap().is_empty(),
        "{:?}",
        load.bad.lock().unwrap()
    );
}

/// config-autoscaler as a ConfigMap in knative-serving.
fn config_autoscaler(data: &[(&str, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n  namespace: knative-serving\ndata:\n",
    );
    for (k, v) in data {
        yaml.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn config_autoscaler_changes_apply_without_a_restart() {
    let skiff = Skiff::start();
    // Invalid values are refused with Knative's message and change nothing.
    let out = skiff.cli_stdin(
        &["apply", "-f", "-"],
        Some(&config_autoscaler(&[("max-scale-up-rate", "0.5")])),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max-scale-up-rate = 0.5, must be greater than 1.0"),
        "{err}"
    );

    skiff.apply(&config_autoscaler(&[
        ("enable-scale-to-zero", "false"),
        ("stable-window", "6s"),
    ]));
    skiff.apply(&service("keeper", None, &[], &[], None));
    skiff.wait_ready("ksvc", "keeper");
    // Two stable windows without traffic: scale-to-zero is off, so the
    // revision keeps one instance at every sample.
    let until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < until {
        let (actual, desired) = replicas(&skiff, "keeper-00001");
        assert_eq!(
            (actual, desired),
            (1, 1),
            "enable-scale-to-zero: false holds"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Turned on while running: the idle revision goes to zero.
    skiff.apply(&config_autoscaler(&[
        ("enable-scale-to-zero", "true"),
        ("stable-window", "6s"),
        ("scale-to-zero-grace-period", "1s"),
    ]));
    wait_for_zero(&skiff, "keeper-00001");
    let r = support::get(&skiff.url("/"), &host("keeper")).await;
    assert_eq!(r.status, 200, "{r:?}");
}
