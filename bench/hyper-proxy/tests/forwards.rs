//! The bench floor must be a working proxy, or its numbers mean nothing:
//! it forwards to the app over pooled connections, and says why when the
//! app is gone.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use skiff_example_hello::{Config, serve_with_shutdown};
use tokio::net::TcpListener;

/// The proxy process, killed when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyper-proxy"))
            .args(["127.0.0.1:0", &upstream.to_string(), "2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hyper-proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "hyper-proxy listening on ADDR, upstream ..."
        let addr = line
            .strip_prefix("hyper-proxy listening on ")
            .and_then(|rest| rest.split(',').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Proxy { child, addr }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> (u16, String) {
    let resp = client
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .expect("the proxy answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn forwards_then_reports_a_missing_upstream() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(serve_with_shutdown(listener, Config::default(), async {
        let _ = stopped.await;
    }));
    let proxy = Proxy::start(upstream);
    let client = Client::builder(TokioExecutor::new()).build_http();

    for _ in 0..50 {
        assert_eq!(
            get(&client, proxy.addr).await,
            (200, "Hello World!\n".to_owned())
        );
    }

    // A graceful stop returns once every connection of the app is closed:
    // the proxy's pooled ones are dead, and a new one is refused.
    stop.send(()).unwrap();
    app.await.unwrap().unwrap();
    let (status, body) = get(&client, proxy.addr).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(&upstream.to_string()), "{body}");
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_hyper-proxy"))
        .args(["127.0.0.1:0", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UPSTREAM 'not-an-address'"), "{err}");
}
