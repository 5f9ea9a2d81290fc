//! The process runtime against real processes: `sh` for failures, and this
//! test binary itself (re-executed as a tiny HTTP server) for readiness.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::serving::Revision;
use skiff_runtime::image_map::ImageMap;
use skiff_runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use skiff_runtime::{NoDrain, Phase, RevisionKey, RevisionState, Runtime};

fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(
        ProcessRuntimeConfig {
            logs_dir: dir.join("logs"),
            owner: dir.display().to_string(),
            images: ImageMap::default(),
            env: Vec::new(),
        },
        Arc::new(NoDrain),
    )
}

fn revision(name: &str, command: &[&str], env: &[(&str, &str)]) -> Revision {
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default",
            "labels": {"serving.knative.dev/configuration": "c", "serving.knative.dev/service": "s"}},
        "spec": {"timeoutSeconds": 5, "containers": [{"image": "x", "command": command, "env": env}]}
    }))
    .unwrap()
}

async fn wait_for(
    rt: &ProcessRuntime,
    key: &RevisionKey,
    what: impl Fn(&RevisionState) -> bool,
) -> RevisionState {
    let mut rx = rt.subscribe();
    let fut = async {
        loop {
            if let Some(s) = rx.borrow_and_update().revisions.get(key)
                && what(s)
            {
                return s.clone();
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("state reached in time")
}

#[tokio::test]
async fn command_not_found_is_a_named_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let key = RevisionKey::new("default", "nf-00001");
    rt.apply(&revision("nf-00001", &["/definitely/not/here"], &[]), 1);
    let s = wait_for(&rt, &key, |s| s.failure.is_some()).await;
    let f = s.failure.unwrap();
    assert_eq!(f.reason, "ContainerMissing");
    assert!(f.message.contains("/definitely/not/here"), "{}", f.message);
    assert!(f.before_ready);
    rt.shutdown().await;
}

#[tokio::test]
async fn exit_code_and_last_output_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let key = RevisionKey::new("default", "crash-00001");
    rt.apply(
        &revision(
            "crash-00001",
            &["sh", "-c", "echo starting; echo boom >&2; exit 3"],
            &[],
        ),
        1,
    );
    let s = wait_for(&rt, &key, |s| s.failure.is_some()).await;
    let f = s.failure.unwrap();
    assert_eq!(f.reason, "ExitCode3");
    assert!(f.message.contains("exited with code 3"), "{}", f.message);
    assert!(f.message.contains("boom"), "{}", f.message);
    // It is restarted (with backoff) while it keeps failing.
    wait_for(&rt, &key, |s| s.instances.iter().any(|i| i.restarts >= 1)).await;
    let log = std::fs::read_to_string(rt.log_files(&key)[0].clone()).unwrap();
    assert!(log.contains("starting"), "{log}");
    rt.shutdown().await;
}

#[tokio::test]
async fn ready_instance_gets_port_and_env_then_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let key = RevisionKey::new("default", "ok-00001");
    // A shell "server": accepts one TCP connection on $PORT with bash's
    // /dev/tcp is not portable, so use python only if present; otherwise
    // fall back to the test's own re-exec server.
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    rt.apply(
        &revision(
            "ok-00001",
            &[exe, "--exact", "child_server", "--nocapture", "--ignored"],
            &[("RUNTIME_TEST_CHILD", "1")],
        ),
        1,
    );
    let s = wait_for(&rt, &key, |s| s.ready_count() == 1).await;
    let inst = &s.instances[0];
    assert_eq!(inst.phase, Phase::Ready);
    let pid = inst.pid.unwrap();
    // The child saw PORT and the K_ variables.
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(env.contains(&format!("PORT={}", inst.addr.port())));
    assert!(env.contains("K_REVISION=ok-00001"));
    assert!(env.contains("K_SERVICE=s"));
    // Scale to zero: the instance is drained and stopped.
    rt.apply(&revision("ok-00001", &[exe], &[]), 0);
    wait_for(&rt, &key, |s| s.instances.is_empty()).await;
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie_free(pid));
    rt.shutdown().await;
}

fn is_zombie_free(pid: u32) -> bool {
    // The process may linger as a zombie for an instant before being reaped.
    std::thread::sleep(Duration::from_millis(100));
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Not a test: the body of the child process above. Listens on $PORT until
/// killed.
#[test]
#[ignore]
fn child_server() {
    if std::env::var("RUNTIME_TEST_CHILD").is_err() {
        return;
    }
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for c in l.incoming() {
        drop(c);
    }
}
