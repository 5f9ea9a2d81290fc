//! Readiness probes: TCP connect, HTTP GET, or a command.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::workload::ProbeAction;

/// Run `action` once against the instance at `addr`. `Err` says why it failed.
pub async fn probe_once(
    action: &ProbeAction,
    addr: SocketAddr,
    timeout: Duration,
    env: &[(String, String)],
    h2c: bool,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run(action, addr, env, h2c)).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

async fn run(
    action: &ProbeAction,
    addr: SocketAddr,
    env: &[(String, String)],
    h2c: bool,
) -> Result<(), String> {
    match action {
        ProbeAction::Tcp => TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {addr}: {e}")),
        ProbeAction::Http { path, headers } => http_get(addr, path, headers, h2c).await,
        ProbeAction::Exec { command } => {
            let status = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("exec {:?}: {e}", command[0]))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("exec {:?} exited with {status}", command[0]))
            }
        }
    }
}

async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    h2c: bool,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let io = TokioIo::new(stream);
    let mut req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "kube-probe/skiff");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad probe request: {e}"))?;
    let status = if h2c {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2c handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .status()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .status()
    };
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}
