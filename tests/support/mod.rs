//! Harness for end-to-end tests: starts the real `skiff` binary on free
//! loopback ports with its own data directory, drives it with its own CLI and
//! real HTTP clients, and always cleans up (Drop kills the server; its
//! instances die with it).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const HELLO_HOST: &str = "hello.default.127.0.0.1.sslip.io";

/// The binary under test: the one cargo built for the tests, or
/// `SKIFF_TEST_BIN` (to run the suite against a release or BOLT-optimized
/// build, as `.ci/run` does).
pub fn skiff_bin() -> PathBuf {
    match std::env::var_os("SKIFF_TEST_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
    }
}

/// A running `skiff serve`.
pub struct Skiff {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub gateway: SocketAddr,
    /// The cluster-local listener (`*.svc.cluster.local` names).
    pub local_gateway: SocketAddr,
    pub admin: String,
    /// The load balancer health check URL.
    pub health: Option<String>,
    pub stdout_path: PathBuf,
}

impl Skiff {
    pub fn start() -> Skiff {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Skiff::start_in(&dir, &[]);
        s._tmp = Some(tmp);
        s
    }

    pub fn start_with(args: &[&str]) -> Skiff {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Skiff::start_in(&dir, args);
        s._tmp = Some(tmp);
        s
    }

    /// Start on an existing data directory (restarts); the caller keeps the
    /// directory alive.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Skiff {
        let _ = std::fs::remove_file(dir.join("server.json"));
        let stdout_path = dir.join(format!("serve-{}.out", unique()));
        let out = std::fs::File::create(&stdout_path).expect("serve log");
        // Free ports for everything; SIGTERM stops at once unless a test
        // asks for a deregistration window.
        let defaults: Vec<&str> = [
            ("--health-listen", "127.0.0.1:0"),
            ("--termination-drain-duration", "0s"),
        ]
        .into_iter()
        .filter(|(flag, _)| !extra.contains(flag))
        .flat_map(|(flag, value)| [flag, value])
        .collect();
        let child = Command::new(skiff_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--local-listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(defaults)
            .args(extra)
            .env("SKIFF_DATA_DIR", dir)
            .env("SKIFF_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start skiff serve");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let info = loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("server.json"))
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && v["pid"].as_u64() == Some(pid as u64)
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "skiff serve did not start:\n{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let gateway = info["gateway"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let local_gateway = info["local_gateway"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        Skiff {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            gateway,
            local_gateway,
            admin: info["admin"].as_str().unwrap().to_string(),
            health: info["health"].as_str().map(str::to_string),
            stdout_path,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Run the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(skiff_bin())
            .args(args)
            .env("SKIFF_DATA_DIR", &self.dir)
            .env_remove("SKIFF_SERVER")
            .env_remove("SKIFF_TOKEN")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run skiff");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().expect("skiff output")
    }

    /// `skiff apply -f -` with `yaml`; panics with the CLI's output if it fails.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.cli_stdin(&["apply", "-f", "-"], Some(yaml));
        assert!(out.status.success(), "apply failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `skiff get KIND NAME -o json`, or None if it does not exist.
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.cli(&["get", kind, name, "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Wait until `kind/name` has condition Ready=True.
    pub fn wait_ready(&self, kind: &str, name: &str) -> Value {
        self.wait_for(kind, name, Duration::from_secs(60), |o| {
            condition(o, "Ready").0 == "True"
                && o["status"]["observedGeneration"] == o["metadata"]["generation"]
        })
    }

    /// Wait until `pred` holds for `kind/name`; panics with the object after
    /// `timeout`.
    pub fn wait_for(
        &self,
        kind: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let obj = self.get(kind, name);
            if let Some(o) = &obj
                && pred(o)
            {
                return o.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{kind}/{name} did not reach the expected state in {timeout:?}:\n{}\n--- server output ---\n{}",
                obj.map(|o| serde_json::to_string_pretty(&o).unwrap())
                    .unwrap_or_else(|| "(missing)".into()),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    /// A URL on the cluster-local listener.
    pub fn local_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.local_gateway)
    }

    /// Wait for the server to exit by itself (after a signal the test sent).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            self.child = Some(child);
        }
        status
    }

    /// Send SIGTERM and wait for the server to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(60)).expect("skiff serve exits after SIGTERM")
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the revision runs no instance at all.
pub fn wait_for_zero(skiff: &Skiff, rev: &str) {
    skiff.wait_for("revision", rev, Duration::from_secs(120), |o| {
        o["status"]["actualReplicas"] == 0 && o["status"]["desiredReplicas"] == 0
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !instance_pids(skiff.data_dir()).is_empty() {
        assert!(Instant::now() < deadline, "instances still running at zero");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (status, reason, message) of condition `type_`.
pub fn condition(obj: &Value, type_: &str) -> (String, String, String) {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie is not alive: it only waits for its parent to reap it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Processes whose environment says they belong to this data directory.
pub fn instance_pids(data_dir: &Path) -> Vec<u32> {
    let canonical = data_dir.canonicalize().unwrap_or(data_dir.to_path_buf());
    let marker = format!("SKIFF_OWNER={}", canonical.display());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
            && process_alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// A simple HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request through a given client.
pub async fn request_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    host: &str,
    body: &str,
) -> Result<Resp, String> {
    request_with_headers(client, method, url, host, &[], body).await
}

/// One request with extra headers through a given client.
pub async fn request_with_headers(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// GET with a Host header (fresh client).
pub async fn get(url: &str, host: &str) -> Resp {
    request_with(&client(), "GET", url, host, "")
        .await
        .unwrap_or_else(|e| panic!("GET {url} (Host {host}) failed: {e}"))
}

/// `curl` as a user would run it: returns (exit code, http code, body).
pub fn curl(url: &str, host: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Host: {host}"),
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        out.status.code().unwrap_or(-1),
        code.to_string(),
        body.to_string(),
    )
}

/// The manifests tests use (a fresh clone has no ../shared).
pub mod manifests {
    pub const HELLO: &str = "\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - containerPort: 8080
          env:
            - name: TARGET
              value: \"World\"
";

    pub const HELLO_V2: &str = "\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - containerPort: 8080
          env:
            - name: TARGET
              value: \"Knative\"
";

    /// A Service running the autoscale test app with extra env.
    pub fn autoscale(name: &str, env: &[(&str, &str)], annotations: &[(&str, &str)]) -> String {
        let mut env_yaml = String::new();
        for (k, v) in env {
            env_yaml.push_str(&format!(
                "            - name: {k}\n              value: \"{v}\"\n"
            ));
        }
        let mut ann = String::new();
        if !annotations.is_empty() {
            ann.push_str("      annotations:\n");
            for (k, v) in annotations {
                ann.push_str(&format!("        {k}: \"{v}\"\n"));
            }
        }
        format!(
            "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
{ann}      labels: {{app: {name}}}
    spec:
      containers:
        - image: gcr.io/knative-samples/autoscale-go
          env:
            - name: X_UNUSED
              value: \"1\"
{env_yaml}"
        )
    }

    /// A Service running the autoscale test app (or `command`), with
    /// `containerConcurrency` and autoscaling annotations.
    pub fn service(
        name: &str,
        cc: Option<u32>,
        annotations: &[(&str, &str)],
        env: &[(&str, &str)],
        command: Option<&[&str]>,
    ) -> String {
        let mut ann = String::new();
        for (k, v) in annotations {
            ann.push_str(&format!("        autoscaling.knative.dev/{k}: \"{v}\"\n"));
        }
        let mut env_yaml =
            String::from("          env:\n            - {name: X_UNUSED, value: \"1\"}\n");
        for (k, v) in env {
            env_yaml.push_str(&format!("            - {{name: {k}, value: \"{v}\"}}\n"));
        }
        let cmd = command
            .map(|c| {
                let parts: Vec<String> = c.iter().map(|p| format!("{p:?}")).collect();
                format!("          command: [{}]\n", parts.join(", "))
            })
            .unwrap_or_default();
        let cc = cc
            .map(|c| format!("      containerConcurrency: {c}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
      annotations:
{ann}    spec:
{cc}      containers:
        - image: gcr.io/knative-samples/autoscale-go
{cmd}{env_yaml}"
        )
    }

    /// A Service running an arbitrary command line.
    pub fn command(name: &str, cmd: &[&str], annotations: &[(&str, &str)]) -> String {
        let cmd: Vec<String> = cmd.iter().map(|c| format!("{c:?}")).collect();
        let mut ann = String::new();
        if !annotations.is_empty() {
            ann.push_str("    metadata:\n      annotations:\n");
            for (k, v) in annotations {
                ann.push_str(&format!("        {k}: \"{v}\"\n"));
            }
        }
        format!(
            "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
{ann}    spec:
      containers:
        - image: example.com/custom
          command: [{}]
",
            cmd.join(", ")
        )
    }
}
