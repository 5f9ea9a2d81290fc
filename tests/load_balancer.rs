//! End to end: Skiff's gateway behind a cloud load balancer (an AWS NLB in
//! the seeds' setup). The load balancer's health check, the SIGTERM drain
//! that lets it deregister the gateway without failing a request, and the
//! real client's address through the PROXY protocol and trusted
//! X-Forwarded-For hops.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use support::{Skiff, get, manifests, process_alive, signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "drain.default.127.0.0.1.sslip.io";

/// The health check's status code, or 0 when nothing answers.
async fn health(url: &str) -> u16 {
    match tokio::time::timeout(Duration::from_secs(5), get(url, "health")).await {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

/// What one client loop saw.
#[derive(Default)]
struct Seen {
    ok: AtomicUsize,
    errors: AtomicUsize,
    /// Requests that needed a new connection.
    connects: AtomicUsize,
    /// Requests sent after the health check started failing.
    after_unhealthy: AtomicUsize,
    /// Requests sent again after a GOAWAY refused them (HTTP/2).
    goaway_resends: AtomicUsize,
}

/// `n` requests in a row from one curl, reusing its connection as long as
/// the server lets it (HTTP/1.1 keep-alive): (status, new connections) per
/// request; status 0 when it failed.
fn curl_batch(url: &str, n: usize) -> Vec<(u16, u32)> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "30", "-H", &format!("Host: {HOST}")])
        .args(["-w", "%{http_code} %{num_connects}\\n"]);
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = cmd.output().expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().map(|v| v.parse().unwrap_or(0));
            (f.next().unwrap_or(0) as u16, f.next().unwrap_or(0))
        })
        .collect()
}

/// Connects every request to the gateway, whatever the URI's host, and
/// counts the connections (the h2 client's URI carries the service's host
/// as its `:authority`).
#[derive(Clone)]
struct ToGateway {
    addr: std::net::SocketAddr,
    seen: Arc<Seen>,
}

impl tower_service::Service<http::Uri> for ToGateway {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (addr, seen) = (self.addr, self.seen.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            seen.connects.fetch_add(1, Ordering::SeqCst);
            Ok(TokioIo::new(tcp))
        })
    }
}

/// Whether hyper's HTTP/2 client refused to send a request because the
/// connection had just received the server's graceful GOAWAY. hyper fails
/// such a request instead of sending it on a new connection
/// (hyperium/hyper#2500). RFC 9113 section 6.8 says a request the GOAWAY
/// refused was not processed and can be sent again, and gRPC, Go's and
/// Envoy's clients do resend it. So does this client.
fn refused_by_goaway(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = s.source();
    }
    false
}

/// The h2c client loop: one pooled HTTP/2 connection at a time, as a
/// gRPC or Envoy client keeps it.
async fn h2_loop(gateway: std::net::SocketAddr, unhealthy: Arc<AtomicBool>, seen: Arc<Seen>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(ToGateway {
            addr: gateway,
            seen: seen.clone(),
        });
    loop {
        let after = unhealthy.load(Ordering::SeqCst);
        if after && seen.after_unhealthy.load(Ordering::SeqCst) >= 40 {
            return;
        }
        let request = || {
            http::Request::get(format!("http://{HOST}/"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let mut result = client.request(request()).await;
        for _ in 0..3 {
            match &result {
                Err(e) if refused_by_goaway(e) => {
                    seen.goaway_resends.fetch_add(1, Ordering::SeqCst);
                    result = client.request(request()).await;
                }
                _ => break,
            }
        }
        let ok = match result {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_body().collect().await;
                if status != 200 || body.is_err() {
                    eprintln!("error: {status} {body:?}");
                }
                status == 200 && body.is_ok()
            }
            Err(e) => {
                eprintln!("error: {e:?}");
                false
            }
        };
        let counter = if ok { &seen.ok } else { &seen.errors };
        counter.fetch_add(1, Ordering::SeqCst);
        if after {
            seen.after_unhealthy.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The HTTP/1.1 client loop: curl, sending requests back to back on a
/// keep-alive connection, until the health check has failed and 40 more
/// went through.
fn h1_loop(url: String, unhealthy: Arc<AtomicBool>, seen: Arc<Seen>) {
    const BATCH: usize = 20;
    loop {
        let after = unhealthy.load(Ordering::SeqCst);
        if after && seen.after_unhealthy.load(Ordering::SeqCst) >= 40 {
            return;
        }
        let results = curl_batch(&url, BATCH);
        if results.len() != BATCH {
            eprintln!("curl reported {} of {BATCH} requests", results.len());
            seen.errors
                .fetch_add(BATCH - results.len(), Ordering::SeqCst);
        }
        for (status, connects) in results {
            if status == 200 {
                seen.ok.fetch_add(1, Ordering::SeqCst);
            } else {
                eprintln!("error: status {status}");
                seen.errors.fetch_add(1, Ordering::SeqCst);
            }
            seen.connects.fetch_add(connects as usize, Ordering::SeqCst);
            if after {
                seen.after_unhealthy.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_behind_a_load_balancer_without_an_error() {
    let mut skiff = Skiff::start_with(&["--termination-drain-duration", "6s"]);
    skiff.apply(&manifests::autoscale("drain", &[], &[]));
    skiff.wait_ready("ksvc", "drain");
    let health_url = skiff.health.clone().expect("the health check is on");
    assert_eq!(health(&health_url).await, 200);

    let unhealthy = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for http2 in [false, false, true, true] {
        let s = Arc::new(Seen::default());
        seen.push((http2, s.clone()));
        let (url, unhealthy) = (skiff.url("/"), unhealthy.clone());
        clients.push(if http2 {
            tokio::spawn(h2_loop(skiff.gateway, unhealthy, s))
        } else {
            tokio::task::spawn_blocking(move || h1_loop(url, unhealthy, s))
        });
    }
    // A slow request in flight through the whole drain.
    let slow = tokio::spawn({
        let url = skiff.url("/?sleep=2s");
        async move { get(&url, HOST).await }
    });
    // Traffic flows before the signal.
    while seen.iter().any(|(_, s)| s.ok.load(Ordering::SeqCst) < 10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let connects_before: Vec<usize> = seen
        .iter()
        .map(|(_, s)| s.connects.load(Ordering::SeqCst))
        .collect();
    let pid = skiff.pid();
    signal(pid, "TERM");
    // The load balancer's view: the target turns unhealthy while it serves.
    let mut polls = 0;
    while health(&health_url).await != 503 {
        polls += 1;
        assert!(polls < 500, "the health check never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unhealthy.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    for ((http2, s), before) in seen.iter().zip(connects_before) {
        let (ok, errors) = (s.ok.load(Ordering::SeqCst), s.errors.load(Ordering::SeqCst));
        let resends = s.goaway_resends.load(Ordering::SeqCst);
        assert_eq!(
            errors, 0,
            "http2={http2}: {errors} errors, {ok} ok ({resends} sent again after a GOAWAY)"
        );
        let after = s.after_unhealthy.load(Ordering::SeqCst);
        assert!(after >= 40);
        let reconnects = s.connects.load(Ordering::SeqCst) - before;
        if !http2 {
            // Every HTTP/1.1 response while draining closes its
            // connection: each request needs a new one.
            assert!(
                reconnects + 2 * 20 >= after,
                "{reconnects} new connections for {after} requests while draining"
            );
        } else {
            // GOAWAY: the h2 client moved to a new connection.
            assert!(reconnects >= 1, "no new h2 connection while draining");
        }
    }
    // The window ends, the listeners close, the process exits cleanly.
    let status = skiff
        .wait_exit(Duration::from_secs(60))
        .expect("skiff exits after the drain");
    assert!(status.success(), "exit status {status}");
    assert!(!process_alive(pid));
    let out = skiff.output();
    assert!(out.contains("skiff serve: draining"), "{out}");
    assert!(out.contains("skiff serve: stopped"), "{out}");
}

/// Send `head` (with a PROXY header in front) on a fresh connection and
/// return the whole response.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn request(proxy: &str, xff: &str, path: &str) -> Vec<u8> {
    format!(
        "{proxy}GET {path} HTTP/1.1\r\nHost: {}\r\nX-Forwarded-For: {xff}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        HOST.replace("drain", "lb"),
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_and_trusted_hops_give_the_real_client() {
    let skiff = Skiff::start_with(&["--proxy-protocol", "gateway", "--xff-num-trusted-hops", "1"]);
    skiff.apply(&manifests::autoscale("lb", &[], &[]));
    skiff.wait_ready("ksvc", "lb");
    // Only clients in 198.51.100.0/24 (as the trusted proxy saw them) may
    // call the service.
    skiff.apply(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: office-only}
spec:
  selector: {matchLabels: {app: lb}}
  action: ALLOW
  rules:
  - from: [{source: {remoteIpBlocks: ['198.51.100.0/24']}}]
",
    );
    let v1 = "PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n";

    // The original client is the trusted hop's entry, not the PROXY
    // source nor what an untrusted client wrote further left (once the
    // policy is in force).
    let mut attempts = 0;
    loop {
        let denied = raw(skiff.gateway, &request(v1, "198.51.100.7, 192.0.2.1", "/")).await;
        if denied.starts_with("HTTP/1.1 403") {
            break;
        }
        attempts += 1;
        assert!(attempts < 200, "{denied}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The app sees the load balancer's client appended to the trusted
    // proxy's X-Forwarded-For, and the scheme the trusted proxy saw.
    let resp = raw(skiff.gateway, &request(v1, "198.51.100.7", "/headers")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body = body
        .find('{')
        .map(|i| &body[i..body.rfind('}').unwrap() + 1])
        .unwrap_or(body);
    let headers: serde_json::Value = serde_json::from_str(body).expect(&resp);
    assert_eq!(headers["x-forwarded-for"], "198.51.100.7, 203.0.113.9");
    assert_eq!(headers["x-forwarded-proto"], "https");

    // PROXY v2 works on the same listener.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    v2.extend_from_slice(&[203, 0, 113, 10, 10, 0, 0, 1, 0x15, 0xb3, 0x00, 0x50]);
    let mut msg = v2.clone();
    msg.extend(request("", "198.51.100.8", "/"));
    let ok = raw(skiff.gateway, &msg).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // A client that skips the load balancer is told why, not reset.
    let plain = raw(skiff.gateway, &request("", "198.51.100.7", "/")).await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("expects a PROXY protocol header"), "{plain}");
}
