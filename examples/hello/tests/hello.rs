//! In-process tests of the hello server, plus a few of the real binary
//! (ready line, SIGTERM).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use skiff_example_hello::{Config, serve_with_shutdown};
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

    /// Asks for a graceful shutdown and waits for `serve` to return.
    async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn get(addr: SocketAddr, http2: bool) -> (StatusCode, Option<String>, Bytes) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Full<Bytes>>();
    let response = client
        .get(format!("http://{addr}/some/path?x=1").parse().unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body)
}

#[tokio::test]
async fn says_hello_world() {
    let server = Server::start(Config::default()).await;
    let (status, content_type, body) = get(server.addr, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello World!\n");
    assert_eq!(content_type.as_deref(), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn says_hello_target() {
    let config = Config {
        target: "Skiff".into(),
        ..Config::default()
    };
    let server = Server::start(config).await;
    let (status, _, body) = get(server.addr, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello Skiff!\n");
}

#[tokio::test]
async fn speaks_h2c() {
    let server = Server::start(Config::default()).await;
    let (status, _, body) = get(server.addr, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello World!\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_multi_thread_runtime() {
    let server = Server::start(Config::default()).await;
    let requests: Vec<_> = (0..20)
        .map(|i| tokio::spawn(get(server.addr, i % 2 == 0)))
        .collect();
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "Hello World!\n");
    }
}

#[tokio::test]
async fn answers_any_method_and_keeps_the_connection_alive() {
    let server = Server::start(Config::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Two pipelined requests, the first with a body, on one connection.
    stream
        .write_all(
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
              GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let mut received = String::new();
    let mut buf = [0u8; 1024];
    while received.matches("Hello World!\n").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("timed out waiting for two responses")
            .unwrap();
        assert_ne!(n, 0, "connection closed early: {received:?}");
        received.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert_eq!(received.matches("HTTP/1.1 200 OK\r\n").count(), 2);
    assert!(!received.to_ascii_lowercase().contains("connection: close"));
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let server = Server::start(Config::default()).await;
    let addr = server.addr;
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with("Hello World!\n")
    );

    server.shutdown().await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("idle connection left open")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

// --- The real binary ---------------------------------------------------------

/// A child process that is killed (if still running) when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
    ready_line: String,
}

impl Proc {
    fn spawn(envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hello"))
            .env_remove("TARGET")
            .env_remove("HOST")
            .env_remove("HELLO_THREADS")
            .env("PORT", "0")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready_line)
            .unwrap();
        let addr = ready_line
            .strip_prefix("hello: listening on http://")
            .and_then(|rest| rest.split_once(' '))
            .unwrap_or_else(|| panic!("unexpected ready line {ready_line:?}"))
            .0
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            ready_line,
        }
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
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

fn http_get(addr: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn binary_prints_ready_line_serves_and_exits_0_on_sigterm() {
    for threads in ["1", "2"] {
        let mut proc = Proc::spawn(&[("TARGET", "Binary"), ("HELLO_THREADS", threads)]);
        let ms = proc
            .ready_line
            .split_once("(ready ")
            .and_then(|(_, rest)| rest.strip_suffix(" ms after start)\n"))
            .unwrap_or_else(|| panic!("unexpected ready line {:?}", proc.ready_line));
        ms.parse::<u64>().unwrap();
        assert!(proc.addr.ip().is_loopback());

        let response = http_get(proc.addr);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nHello Binary!\n"), "{response}");

        proc.sigterm();
        assert_eq!(proc.wait_exit().code(), Some(0));
    }
}

#[test]
fn binary_rejects_a_bad_port() {
    let output = Command::new(env!("CARGO_BIN_EXE_hello"))
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}
