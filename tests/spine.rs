//! End-to-end tests of the spine: the real `skiff` binary, real instance
//! processes, real HTTP clients.

mod support;

use std::time::Duration;

use support::{
    HELLO_HOST, Skiff, condition, curl, get, instance_pids, manifests, process_alive, text,
};

#[tokio::test(flavor = "multi_thread")]
async fn knative_sample_yaml_runs_and_answers_through_the_gateway() {
    let skiff = Skiff::start();
    let out = skiff.apply(manifests::HELLO);
    assert_eq!(out.trim(), "service.serving.knative.dev/hello created");

    let svc = skiff.wait_ready("ksvc", "hello");
    assert_eq!(
        svc["status"]["url"],
        "http://hello.default.127.0.0.1.sslip.io"
    );
    assert_eq!(svc["status"]["latestCreatedRevisionName"], "hello-00001");
    assert_eq!(svc["status"]["latestReadyRevisionName"], "hello-00001");
    assert_eq!(
        svc["status"]["address"]["url"],
        "http://hello.default.svc.cluster.local"
    );
    assert_eq!(svc["status"]["traffic"][0]["revisionName"], "hello-00001");
    assert_eq!(svc["status"]["traffic"][0]["percent"], 100);
    for c in ["ConfigurationsReady", "RoutesReady", "Ready"] {
        assert_eq!(condition(&svc, c).0, "True", "{c}");
    }

    // A real client, the external host, and the cluster-local host (on the
    // cluster-local listener only).
    let (code, status, body) = curl(&skiff.url("/"), HELLO_HOST, &[]);
    assert_eq!(
        (code, status.as_str(), body.as_str()),
        (0, "200", "Hello World!\n")
    );
    let local = get(&skiff.local_url("/"), "hello.default.svc.cluster.local").await;
    assert_eq!((local.status, local.body.as_str()), (200, "Hello World!\n"));
    let not_external = get(&skiff.url("/"), "hello.default.svc.cluster.local").await;
    assert_eq!(not_external.status, 404);
    let not_local = get(&skiff.local_url("/"), HELLO_HOST).await;
    assert_eq!(not_local.status, 404);
    let with_port = get(&skiff.url("/"), &format!("{HELLO_HOST}:80")).await;
    assert_eq!(with_port.status, 200);

    // kubectl's columns.
    let ksvc = skiff.cli(&["get", "ksvc"]);
    let table = String::from_utf8_lossy(&ksvc.stdout);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "URL",
            "LATESTCREATED",
            "LATESTREADY",
            "READY",
            "REASON"
        ]
    );
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "hello",
            "http://hello.default.127.0.0.1.sslip.io",
            "hello-00001",
            "hello-00001",
            "True"
        ]
    );
    // -o wide adds the instances (ready, desired) of the service's revisions.
    let wide =
        String::from_utf8_lossy(&skiff.cli(&["get", "ksvc", "-o", "wide"]).stdout).into_owned();
    let mut wide = wide.lines();
    assert!(wide.next().unwrap().ends_with("REASON   ACTUAL   DESIRED"));
    let cells: Vec<_> = wide.next().unwrap().split_whitespace().collect();
    assert_eq!(&cells[cells.len() - 2..], ["1", "1"]);
    let revs = String::from_utf8_lossy(&skiff.cli(&["get", "revisions"]).stdout).into_owned();
    assert!(revs.starts_with("NAME          CONFIG NAME   GENERATION   READY   REASON   ACTUAL REPLICAS   DESIRED REPLICAS"), "{revs}");
    assert!(
        revs.contains(
            "hello-00001   hello         1            True             1                 1"
        ),
        "{revs}"
    );
    let routes = String::from_utf8_lossy(&skiff.cli(&["get", "routes", "-A"]).stdout).into_owned();
    assert!(routes.starts_with("NAMESPACE   NAME    URL"), "{routes}");
    let cfgs = String::from_utf8_lossy(&skiff.cli(&["get", "configurations"]).stdout).into_owned();
    assert!(
        cfgs.contains("hello   hello-00001     hello-00001   True"),
        "{cfgs}"
    );
    let yaml = String::from_utf8_lossy(&skiff.cli(&["get", "ksvc", "hello", "-o", "yaml"]).stdout)
        .into_owned();
    assert!(
        yaml.contains("latestReadyRevisionName: hello-00001"),
        "{yaml}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn template_update_makes_a_new_revision_and_traffic_follows() {
    let skiff = Skiff::start();
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    // Applying the same file again changes nothing.
    assert_eq!(
        skiff.apply(manifests::HELLO).trim(),
        "service.serving.knative.dev/hello unchanged"
    );

    assert_eq!(
        skiff.apply(manifests::HELLO_V2).trim(),
        "service.serving.knative.dev/hello configured"
    );
    let svc = skiff.wait_for("ksvc", "hello", Duration::from_secs(30), |o| {
        o["status"]["latestReadyRevisionName"] == "hello-00002" && condition(o, "Ready").0 == "True"
    });
    assert_eq!(svc["status"]["traffic"][0]["revisionName"], "hello-00002");
    assert_eq!(
        get(&skiff.url("/"), HELLO_HOST).await.body,
        "Hello Knative!\n"
    );
    // History is kept; the old revision is still there.
    let old = skiff
        .get("revision", "hello-00001")
        .expect("revision 1 kept");
    assert_eq!(
        old["metadata"]["labels"]["serving.knative.dev/configurationGeneration"],
        "1"
    );
    let cfg = skiff.get("configuration", "hello").unwrap();
    assert_eq!(cfg["metadata"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_gets_a_404_that_says_why() {
    let skiff = Skiff::start();
    let (code, status, body) = curl(
        &skiff.url("/x"),
        "nope.default.127.0.0.1.sslip.io",
        &["-D", "-"],
    );
    assert_eq!(code, 0);
    assert_eq!(status, "404");
    assert!(
        body.to_ascii_lowercase().contains("x-skiff-flags: nr"),
        "{body}"
    );
    assert!(
        body.contains("no route matched host \"nope.default.127.0.0.1.sslip.io\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_clients_are_served() {
    let skiff = Skiff::start();
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    let (code, status, body) = curl(
        &format!("http://{HELLO_HOST}:{}/", skiff.gateway.port()),
        HELLO_HOST,
        &[
            "--http2-prior-knowledge",
            "--resolve",
            &format!("{HELLO_HOST}:{}:127.0.0.1", skiff.gateway.port()),
        ],
    );
    assert_eq!(
        (code, status.as_str(), body.as_str()),
        (0, "200", "Hello World!\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_the_token() {
    let skiff = Skiff::start();
    let url = format!(
        "{}/apis/serving.knative.dev/v1/namespaces/default/services",
        skiff.admin
    );
    let (_, status, body) = curl(&url, "x", &[]);
    assert_eq!(status, "401", "{body}");
    assert!(body.contains("Unauthorized"));
    let token = std::fs::read_to_string(skiff.data_dir().join("token")).unwrap();
    let (_, status, body) = curl(
        &url,
        "x",
        &["-H", &format!("Authorization: Bearer {}", token.trim())],
    );
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("\"kind\":\"ServiceList\""), "{body}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(skiff.data_dir().join("token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The CLI with SKIFF_TOKEN and SKIFF_SERVER instead of the data dir.
    let out = std::process::Command::new(support::skiff_bin())
        .args(["get", "ksvc"])
        .env("SKIFF_DATA_DIR", "/nonexistent")
        .env("SKIFF_SERVER", &skiff.admin)
        .env("SKIFF_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = std::process::Command::new(support::skiff_bin())
        .args(["get", "ksvc"])
        .env("SKIFF_DATA_DIR", "/nonexistent")
        .env("SKIFF_SERVER", &skiff.admin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_nothing_of_the_file_is_stored() {
    let skiff = Skiff::start();
    // The second document is missing its containers: the first is not stored either.
    let two = format!(
        "{}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  template:\n    spec: {{}}\n",
        manifests::HELLO
    );
    let out = skiff.cli_stdin(&["apply", "-f", "-"], Some(&two));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<stdin>: document 2 (Service default/broken): validation failed: missing field(s): spec.template.spec.containers"),
        "{err}"
    );
    assert!(
        skiff.get("ksvc", "hello").is_none(),
        "nothing of the file is stored"
    );

    // Unknown kind, malformed YAML, a missing name.
    let out = skiff.cli_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("document 1: unknown kind \"Pod\""),
        "{}",
        text(&out)
    );
    let out = skiff.cli_stdin(&["apply", "-f", "-"], Some("kind: [unclosed\n"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid YAML"),
        "{}",
        text(&out)
    );
    let out = skiff.cli_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: serving.knative.dev/v1\nkind: Service\nspec: {}\n"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("name or generateName is required: metadata.name"),
        "{}",
        text(&out)
    );
    // An image the process runtime cannot run, with no command.
    let out = skiff.cli_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{image: registry.example.com/unknown}]\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not in the image map")
            && err.contains("spec.template.spec.containers[0].image"),
        "{err}"
    );
    let empty = skiff.cli(&["get", "ksvc"]);
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No resources found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_that_cannot_start_says_why() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::command("missing", &["/no/such/binary"], &[]));
    skiff.apply(&manifests::command(
        "exits",
        &[
            "sh",
            "-c",
            "echo starting up; echo config invalid >&2; exit 3",
        ],
        &[],
    ));
    skiff.apply(&manifests::command(
        "silent",
        &["sleep", "600"],
        &[("serving.knative.dev/progress-deadline", "2s")],
    ));

    let failed = |o: &serde_json::Value| condition(o, "Ready").0 == "False";
    let rev = skiff.wait_for("revision", "missing-00001", Duration::from_secs(30), failed);
    let (_, reason, msg) = condition(&rev, "ContainerHealthy");
    assert_eq!(reason, "ContainerMissing");
    assert!(
        msg.contains("/no/such/binary") && msg.contains("No such file"),
        "{msg}"
    );

    let rev = skiff.wait_for("revision", "exits-00001", Duration::from_secs(30), failed);
    let (_, reason, msg) = condition(&rev, "ContainerHealthy");
    assert_eq!(reason, "ExitCode3");
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(
        msg.contains("config invalid"),
        "the last lines of output: {msg}"
    );

    let rev = skiff.wait_for("revision", "silent-00001", Duration::from_secs(30), failed);
    let (_, reason, msg) = condition(&rev, "ResourcesAvailable");
    assert_eq!(reason, "ProgressDeadlineExceeded");
    assert!(msg.contains("within 2s"), "{msg}");

    // The Service and Configuration carry the revision's failure.
    let svc = skiff.wait_for("ksvc", "exits", Duration::from_secs(10), failed);
    let (_, reason, msg) = condition(&svc, "ConfigurationsReady");
    assert_eq!(reason, "RevisionFailed");
    assert!(
        msg.starts_with("Revision \"exits-00001\" failed with message: "),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_instance_is_restarted_and_the_status_says_so() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("crashy", &[], &[]));
    skiff.wait_ready("ksvc", "crashy");
    let host = "crashy.default.127.0.0.1.sslip.io";
    let before = instance_pids(skiff.data_dir());
    assert_eq!(before.len(), 1);

    // The app exits mid-request: the client still gets an HTTP answer.
    let r = get(&skiff.url("/?crash=7"), host).await;
    assert!(r.status >= 500, "{r:?}");
    assert!(r.headers.contains_key("x-skiff-flags"), "{r:?}");
    assert!(!r.body.is_empty());

    let rev = skiff.wait_for("revision", "crashy-00001", Duration::from_secs(20), |o| {
        condition(o, "ContainerHealthy").1 == "ExitCode7"
    });
    assert!(
        condition(&rev, "ContainerHealthy")
            .2
            .contains("exited with code 7")
    );
    // Back up after its backoff, with a new process.
    skiff.wait_for("revision", "crashy-00001", Duration::from_secs(30), |o| {
        condition(o, "ContainerHealthy").0 == "True"
    });
    let ok = get(&skiff.url("/"), host).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let after = instance_pids(skiff.data_dir());
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_stops_processes_and_removes_routes() {
    let skiff = Skiff::start();
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    let pids = instance_pids(skiff.data_dir());
    assert_eq!(pids.len(), 1);

    let out = skiff.cli(&["delete", "ksvc", "hello"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "service.serving.knative.dev \"hello\" deleted"
    );
    for kind in ["configuration", "route", "revision"] {
        let name = if kind == "revision" {
            "hello-00001"
        } else {
            "hello"
        };
        assert!(
            skiff.get(kind, name).is_none(),
            "{kind} {name} was deleted with its owner"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| process_alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "instance still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut status = 0;
    for _ in 0..100 {
        status = get(&skiff.url("/"), HELLO_HOST).await.status;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_show_instance_output() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::command(
        "talker",
        &["sh", "-c", "echo hello from the app; (while sleep 0.2; do echo tick; done) & exec \"$SKIFF_BIN\" example hello"],
        &[],
    ).replace("          command:", &format!("          env: [{{name: SKIFF_BIN, value: {:?}}}]\n          command:", support::skiff_bin().display().to_string())));
    skiff.wait_ready("ksvc", "talker");
    let out = skiff.cli(&["logs", "ksvc", "talker"]);
    assert!(out.status.success(), "{}", text(&out));
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("hello from the app"), "{logs}");
    assert!(logs.contains("hello: listening on http://"), "{logs}");

    // Following: lines written later arrive, and the stream ends when the
    // service goes away.
    let ticks_before = logs.matches("tick").count();
    let mut follow = std::process::Command::new(support::skiff_bin())
        .args(["logs", "ksvc", "talker", "-f"])
        .env("SKIFF_DATA_DIR", skiff.data_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut ticks = 0;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("tick") {
                ticks += 1;
                if ticks == ticks_before + 5 {
                    break;
                }
            }
        }
        ticks
    });
    let handle = tokio::task::spawn_blocking(move || reader.join().unwrap());
    let ticks = tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("follow sees new lines")
        .unwrap();
    assert_eq!(ticks, ticks_before + 5);
    skiff.cli(&["delete", "ksvc", "talker"]);
    let exited = tokio::task::spawn_blocking(move || {
        support::wait_timeout(&mut follow, Duration::from_secs(20))
    });
    let status = exited
        .await
        .unwrap()
        .expect("logs -f ends when the service is deleted");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_stops_every_instance() {
    let mut skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("slow", &[], &[]));
    skiff.wait_ready("ksvc", "slow");
    let pids = instance_pids(skiff.data_dir());
    assert_eq!(pids.len(), 1);

    let url = skiff.url("/?sleep=1500");
    let inflight = tokio::spawn(async move { get(&url, "slow.default.127.0.0.1.sslip.io").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = skiff.terminate();
    assert!(status.success(), "exit status {status}");
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("Slept for"), "{r:?}");
    for p in pids {
        assert!(
            !process_alive(p),
            "instance {p} still running after skiff exited"
        );
    }
    assert!(instance_pids(skiff.data_dir()).is_empty());
    assert!(skiff.output().contains("skiff serve: stopped"));
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_applies_survive_kill_9_and_revisions_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut skiff = Skiff::start_in(dir.path(), &[]);
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    // Acknowledged, then killed at once: no time for anything to settle.
    skiff.apply(manifests::HELLO_V2);
    let old = instance_pids(skiff.data_dir());
    skiff.kill9();

    let skiff = Skiff::start_in(dir.path(), &[]);
    let svc = skiff.get("ksvc", "hello").expect("service survived");
    assert_eq!(
        svc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "Knative"
    );
    skiff.wait_for("ksvc", "hello", Duration::from_secs(60), |o| {
        o["status"]["latestReadyRevisionName"] == "hello-00002" && condition(o, "Ready").0 == "True"
    });
    let r = get(&skiff.url("/"), HELLO_HOST).await;
    assert_eq!(r.body, "Hello Knative!\n");
    // Only the new server's instances run: the old ones died with their
    // parent. (The old revision is no longer routed: the autoscaler need not
    // start it again.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pids = instance_pids(skiff.data_dir());
        if !pids.is_empty() && old.iter().all(|p| !process_alive(*p) && !pids.contains(p)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "instances: {pids:?}, before the kill: {old:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn owned_children_are_restored_after_hand_edits() {
    let skiff = Skiff::start();
    skiff.apply(manifests::HELLO);
    skiff.wait_ready("ksvc", "hello");
    // Change the Route by hand: all traffic to a made-up revision.
    let mut route = skiff.get("route", "hello").unwrap();
    route["spec"]["traffic"] =
        serde_json::json!([{"revisionName": "hello-00001", "percent": 100, "tag": "hacked"}]);
    route.as_object_mut().unwrap().remove("status");
    let out = skiff.cli_stdin(&["apply", "-f", "-"], Some(&route.to_string()));
    assert!(out.status.success(), "{}", text(&out));
    let restored = skiff.wait_for("route", "hello", Duration::from_secs(10), |r| {
        r["spec"]["traffic"][0]["configurationName"] == "hello"
    });
    assert!(restored["spec"]["traffic"][0].get("tag").is_none());
    // Delete the Configuration by hand: it comes back, with the same revision.
    let out = skiff.cli(&["delete", "configuration", "hello"]);
    assert!(out.status.success());
    skiff.wait_ready("configuration", "hello");
    let svc = skiff.wait_ready("ksvc", "hello");
    assert_eq!(svc["status"]["latestReadyRevisionName"], "hello-00001");
    assert_eq!(get(&skiff.url("/"), HELLO_HOST).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_empty_reply_when_an_instance_dies_under_the_gateway() {
    let skiff = Skiff::start();
    skiff.apply(&manifests::autoscale("victim", &[], &[]));
    skiff.wait_ready("ksvc", "victim");
    let host = "victim.default.127.0.0.1.sslip.io";
    let client = support::client();
    // Warm a pooled connection, then kill the process behind it.
    let r = support::request_with(&client, "GET", &skiff.url("/"), host, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let killed = r.headers["x-instance"].clone();
    for pid in instance_pids(skiff.data_dir()) {
        support::signal(pid, "KILL");
    }
    // Every request gets an HTTP response: 200 from the restarted process
    // (requests wait in the activator while it restarts), or 503/502 with a
    // reason if one raced the crash.
    let mut back = false;
    for _ in 0..200 {
        let r = support::request_with(&client, "GET", &skiff.url("/"), host, "").await;
        let r = r.expect("an HTTP response, never a reset or an empty reply");
        if r.status == 200 {
            if r.headers["x-instance"] != killed {
                back = true;
                break;
            }
        } else {
            // 503 while nothing listens; 502 when the dying process reset a
            // request it had been sent (it may have seen it: not retried).
            assert!(r.status == 503 || r.status == 502, "{r:?}");
            assert!(r.headers.contains_key("x-skiff-flags"), "{r:?}");
            assert!(
                r.body.contains("victim-00001"),
                "the body names the revision: {r:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "a new process answers after the kill");
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_connections_closed_by_the_app_are_retried_transparently() {
    let skiff = Skiff::start();
    // The app closes idle keep-alive connections after 150 ms.
    skiff.apply(&manifests::autoscale(
        "idler",
        &[("IDLE_TIMEOUT_MS", "150")],
        &[],
    ));
    skiff.wait_ready("ksvc", "idler");
    let host = "idler.default.127.0.0.1.sslip.io";
    let client = support::client();
    for i in 0..40u64 {
        let r = support::request_with(&client, "GET", &skiff.url("/"), host, "").await;
        let r = r.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        // Gaps around the app's idle timeout.
        tokio::time::sleep(Duration::from_millis(130 + (i % 5) * 10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_apps_are_spoken_to_in_http2() {
    let skiff = Skiff::start();
    let yaml = manifests::autoscale("grpcish", &[], &[]).replace(
        "        - image: gcr.io/knative-samples/autoscale-go\n",
        "        - image: gcr.io/knative-samples/autoscale-go\n          ports: [{name: h2c, containerPort: 8080}]\n",
    );
    skiff.apply(&yaml);
    skiff.wait_ready("ksvc", "grpcish");
    let host = "grpcish.default.127.0.0.1.sslip.io";
    // An HTTP/1.1 client; the gateway speaks HTTP/2 to the app, which sees
    // the authority in the request line.
    let r = get(&skiff.url("/headers?x=1"), host).await;
    assert_eq!(r.status, 200, "{r:?}");
    let headers: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(headers[":authority"], host, "{headers}");
    assert_eq!(headers[":path"], "/headers?x=1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    // Several concurrent requests share the multiplexed connection.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = skiff.url("/?sleep=50");
        tasks.push(tokio::spawn(async move {
            get(&url, "grpcish.default.127.0.0.1.sslip.io").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}
