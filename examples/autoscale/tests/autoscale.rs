//! In-process tests of the autoscale server, plus the behaviours that need
//! a real process (exit codes, signals, startup delay) against the binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use skiff_example_autoscale::{Config, serve_with_shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An in-process server on 127.0.0.1:0, stopped (abruptly) when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_shutdown(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn default() -> Self {
        Self::start(Config::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals a graceful shutdown; the returned task ends when `serve` does.
    fn shutdown(mut self) -> JoinHandle<std::io::Result<()>> {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap()
    }

    async fn stats(&self) -> Value {
        let (status, headers, body) = get(&self.url("/stats")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert!(headers.get("x-in-flight").is_none());
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(request: Request<Full<Bytes>>, http2: bool) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("request timed out")
        .map_err(|err| format!("{err:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("{err:?}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    })
}

async fn get(url: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::get(url).body(Full::default()).unwrap();
    let reply = send(request, false).await.unwrap();
    (reply.status, reply.headers, reply.body)
}

fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn sleep_sleeps() {
    let server = Server::default().await;
    let start = Instant::now();
    let (status, headers, body) = get(&server.url("/?sleep=50")).await;
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
    let ms: f64 = body
        .strip_prefix("Slept for ")
        .and_then(|rest| rest.strip_suffix(" milliseconds.\n"))
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        .parse()
        .unwrap();
    assert!(ms >= 50.0, "{body}");
}

#[tokio::test]
async fn prime_finds_the_largest_prime() {
    let server = Server::default().await;
    let (status, _, body) = get(&server.url("/?prime=10000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "The largest prime less than 10000 is 9973.\n");
    let (_, _, body) = get(&server.url("/any/path?prime=1")).await;
    assert_eq!(body, "There are no primes smaller than 1.\n");
}

#[tokio::test]
async fn bloat_reports_the_allocation() {
    let server = Server::default().await;
    let (status, _, body) = get(&server.url("/?bloat=5")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Allocated 5 Mb of memory.\n");
}

#[tokio::test]
async fn actions_combine_in_order_with_target_and_bytes() {
    let server = Server::start(Config {
        target: Some("Skiff".into()),
        ..Config::default()
    })
    .await;
    let (status, _, body) = get(&server.url("/x?bytes=5&bloat=1&prime=100&sleep=10")).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<_> = body.split('\n').collect();
    assert_eq!(lines.len(), 5, "{body:?}");
    assert_eq!(lines[0], "Hello Skiff!");
    assert!(lines[1].starts_with("Slept for "), "{body:?}");
    assert_eq!(lines[2], "The largest prime less than 100 is 97.");
    assert_eq!(lines[3], "Allocated 1 Mb of memory.");
    assert_eq!(lines[4], "xxxxx");

    // No action, no target: an empty body, and bytes=N makes it exactly N.
    let server = Server::default().await;
    let (_, headers, body) = get(&server.url("/")).await;
    assert_eq!(body, "");
    assert_eq!(headers["content-length"], "0");
    let (_, headers, body) = get(&server.url("/?bytes=100000")).await;
    assert_eq!(headers["content-length"], "100000");
    assert_eq!(body.len(), 100_000);
    assert!(body.bytes().all(|b| b == b'x'));
}

#[tokio::test]
async fn status_sets_the_status_and_still_reports() {
    let server = Server::default().await;
    let (status, headers, body) = get(&server.url("/?status=503&prime=20")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "The largest prime less than 20 is 19.\n");
    assert_eq!(header_u64(&headers, "x-in-flight"), 1);
}

#[tokio::test]
async fn bad_parameters_are_400() {
    let server = Server::default().await;
    for query in [
        "sleep=soon",
        "prime=-1",
        "status=42",
        "crash=1000",
        "bytes=lots",
    ] {
        let (status, headers, body) = get(&server.url(&format!("/?{query}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let key = query.split('=').next().unwrap();
        assert!(body.contains(key), "{query}: {body}");
        assert!(headers.contains_key("x-in-flight"));
    }
}

#[tokio::test]
async fn headers_echoes_the_request() {
    let server = Server::default().await;
    let request = Request::post(server.url("/headers?a=1&b=2"))
        .header("x-multi", "one")
        .header("x-multi", "two")
        .header("x-single", "solo")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let reply = send(request, false).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
    let json: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json[":method"], "POST");
    assert_eq!(json[":path"], "/headers?a=1&b=2");
    assert_eq!(json["x-multi"], "one, two");
    assert_eq!(json["x-single"], "solo");
    assert_eq!(json["host"], server.addr.to_string());
    assert_eq!(json["content-length"], "7");
    assert!(json.get(":authority").is_none());

    // Over h2c the authority is part of the URI.
    let request = Request::get(server.url("/headers"))
        .body(Full::default())
        .unwrap();
    let reply = send(request, true).await.unwrap();
    let json: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json[":method"], "GET");
    assert_eq!(json[":path"], "/headers");
    assert_eq!(json[":authority"], server.addr.to_string());
}

#[tokio::test]
async fn stats_counts_requests_but_not_itself_or_healthz() {
    let server = Server::start(Config {
        revision: "autoscale-00001".into(),
        startup_ms: 42,
        ..Config::default()
    })
    .await;
    let stats = server.stats().await;
    assert_eq!(stats["requests"], 0);
    for path in ["/", "/a?prime=10", "/headers"] {
        let (status, headers, _) = get(&server.url(path)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            header_u64(&headers, "x-instance"),
            u64::from(std::process::id())
        );
        assert_eq!(header_u64(&headers, "x-in-flight"), 1);
    }
    let (status, headers, body) = get(&server.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert!(headers.get("x-in-flight").is_none());

    let stats = server.stats().await;
    assert_eq!(stats["pid"], std::process::id());
    assert_eq!(stats["revision"], "autoscale-00001");
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["max_in_flight"], 1);
    assert_eq!(stats["processed_resets"], 0);
    assert_eq!(stats["startup_ms"], 42);
}

#[tokio::test]
async fn x_in_flight_counts_concurrent_requests() {
    let server = Server::default().await;
    let url = server.url("/?sleep=500");
    let requests: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            // Two over HTTP/1.1 connections, one over h2c.
            tokio::spawn(async move {
                let request = Request::get(url).body(Full::default()).unwrap();
                send(request, i == 2).await.unwrap()
            })
        })
        .collect();
    let mut levels = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        levels.push(header_u64(&reply.headers, "x-in-flight"));
    }
    levels.sort_unstable();
    assert_eq!(levels, [1, 2, 3]);
    let stats = server.stats().await;
    assert_eq!(stats["max_in_flight"], 3);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["requests"], 3);
}

/// Sends a raw HTTP/1.1 request and reads until the connection ends.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, std::io::Result<usize>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("connection neither answered nor closed");
        match read {
            Ok(n) if n > 0 => received.extend_from_slice(&buf[..n]),
            end => return (received, end),
        }
    }
}

#[tokio::test]
async fn reset_processes_the_request_then_resets_the_connection() {
    let server = Server::default().await;
    let (received, end) = raw_exchange(
        server.addr,
        b"POST /?reset=1&sleep=20 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    let err = end.expect_err("expected an RST, got a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // Through hyper's client, over HTTP/1.1 and h2c: an error, no response.
    for http2 in [false, true] {
        let request = Request::post(server.url("/?reset=1"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let err = send(request, http2).await.err().expect("expected an error");
        assert!(!err.is_empty());
    }

    let stats = server.stats().await;
    assert_eq!(stats["processed_resets"], 3);
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["in_flight"], 0);

    // The server is fine afterwards.
    let (status, _, _) = get(&server.url("/")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Reads one small response with a `content-length` from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response timed out")
            .unwrap();
        assert_ne!(n, 0, "connection closed before a response");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn echo_upgrades_and_sends_bytes_back() {
    let server = Server::default().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("response timed out")
            .unwrap();
        assert_ne!(n, 0, "closed before the 101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // Upgrades are not counted as requests.
    assert_eq!(server.stats().await["requests"], 0);
}

#[tokio::test]
async fn idle_timeout_closes_idle_keep_alive_connections() {
    let server = Server::start(Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A request slower than the idle timeout is not cut short.
    stream
        .write_all(b"GET /?sleep=300 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    // The connection is kept alive for a while...
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    // ...then closed by the server once idle.
    let idle_since = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("idle connection was not closed")
        .unwrap();
    assert_eq!(n, 0);
    assert!(idle_since.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn without_idle_timeout_idle_connections_stay_open() {
    let server = Server::default().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut stream).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    assert!(read.is_err(), "connection was closed: {read:?}");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let server = Server::default().await;
    let addr = server.addr;
    let url = server.url("/?sleep=300");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Let the request arrive before asking for the shutdown.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = server.shutdown();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("Slept for "), "{body}");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn request_methods_and_bodies_are_accepted() {
    let server = Server::default().await;
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let request = Request::builder()
            .method(method.clone())
            .uri(server.url("/?prime=30"))
            .body(Full::new(Bytes::from(vec![b'b'; 200_000])))
            .unwrap();
        let reply = send(request, false).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{method}");
        assert_eq!(reply.body, "The largest prime less than 30 is 29.\n");
    }
}

// --- The real binary ---------------------------------------------------------

/// A child process that is killed (if still running) when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
    ready_ms: u64,
}

fn command(envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoscale"));
    for key in [
        "HOST",
        "TARGET",
        "K_REVISION",
        "STARTUP_DELAY_MS",
        "EXIT_AT_START",
        "IGNORE_SIGTERM",
        "IDLE_TIMEOUT_MS",
    ] {
        command.env_remove(key);
    }
    command
        .env("PORT", "0")
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    command
}

impl Proc {
    fn spawn(envs: &[(&str, &str)]) -> Self {
        let mut child = command(envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let parsed = line
            .strip_prefix("autoscale: listening on http://")
            .and_then(|rest| rest.split_once(" (ready "))
            .and_then(|(addr, rest)| Some((addr, rest.strip_suffix(" ms after start)\n")?)));
        let Some((addr, ms)) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected ready line {line:?}");
        };
        Self {
            addr: addr.parse().unwrap(),
            ready_ms: ms.parse().unwrap(),
            child,
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP/1.1 exchange with `Connection: close`.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn binary_exit_at_start() {
    let output = command(&[("EXIT_AT_START", "3")]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("autoscale: exiting at start with code 3 as asked"),
        "{stderr}"
    );
}

#[test]
fn binary_rejects_a_bad_environment() {
    let output = command(&[("IDLE_TIMEOUT_MS", "forever")]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("IDLE_TIMEOUT_MS"));
}

#[test]
fn binary_crash_exits_with_the_code_and_no_response() {
    let mut proc = Proc::spawn(&[]);
    let response = http_get(proc.addr, "/?crash=7").unwrap_or_default();
    assert_eq!(response, "");
    assert_eq!(proc.wait_exit().code(), Some(7));
}

#[test]
fn binary_sigterm_drains_then_exits_0() {
    let mut proc = Proc::spawn(&[("STARTUP_DELAY_MS", "200"), ("K_REVISION", "rev-1")]);
    assert!(proc.ready_ms >= 200, "ready after {} ms", proc.ready_ms);
    let stats = http_get(proc.addr, "/stats").unwrap();
    let json: Value = serde_json::from_str(stats.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(json["revision"], "rev-1");
    assert_eq!(json["startup_ms"], proc.ready_ms);
    assert_eq!(json["pid"], proc.child.id());

    let addr = proc.addr;
    let in_flight = std::thread::spawn(move || http_get(addr, "/?sleep=400"));
    std::thread::sleep(Duration::from_millis(150));
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    let response = in_flight.join().unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Slept for "), "{response}");
    assert_eq!(proc.wait_exit().code(), Some(0));
}

#[test]
fn binary_ignore_sigterm() {
    let mut proc = Proc::spawn(&[("IGNORE_SIGTERM", "1")]);
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "exited on SIGTERM"
    );
    let response = http_get(proc.addr, "/healthz").unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    proc.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&proc.wait_exit()),
        Some(nix::sys::signal::Signal::SIGKILL as i32)
    );
}
