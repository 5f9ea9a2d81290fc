//! Listeners: accept connections, serve HTTP/1.1 and h2c on the same port,
//! route every request through the current routing table, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::activator::Backends;
use crate::body::ProxyBody;
use crate::forward;
use crate::metrics::GatewayStats;
use crate::reply::{LocalReply, flags, local_reply};
use crate::table::RoutingTable;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerScope {
    /// Routes with external visibility.
    pub external: bool,
    /// Cluster-local routes (`*.svc.cluster.local`).
    pub local: bool,
}

impl ListenerScope {
    pub const ALL: ListenerScope = ListenerScope {
        external: true,
        local: true,
    };
}

/// The data plane's shared state: the current routing table and counters.
pub struct Gateway {
    table: ArcSwap<RoutingTable>,
    stats: GatewayStats,
    backends: Backends,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("table_version", &self.table.load().version)
            .finish()
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            stats: GatewayStats::default(),
            backends: Backends::default(),
        }
    }
}

impl Gateway {
    pub fn new() -> Arc<Gateway> {
        Arc::new(Gateway::default())
    }

    /// Make `table` current. Requests already routed finish on the table they
    /// started with.
    pub fn publish(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
    }

    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Every revision's backend (instances, activator queue).
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// True while a revision's endpoint set still lists `endpoint`, so new
    /// requests could still get a slot on it.
    pub fn references(&self, endpoint: &Arc<crate::Endpoint>) -> bool {
        self.backends.references(endpoint)
    }

    /// Route and forward one request. `client_ip` is the client's address
    /// as a header value (computed once per connection, for X-Forwarded-For).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client_ip: &HeaderValue,
        scope: ListenerScope,
    ) -> Response<ProxyBody> {
        self.stats.request();
        let resp = self.route(req, client_ip, scope).await;
        if let Some(LocalReply(flag)) = resp.extensions().get::<LocalReply>() {
            self.stats.local_reply(flag);
        }
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        client_ip: &HeaderValue,
        scope: ListenerScope,
    ) -> Response<ProxyBody> {
        let route = {
            let Some(authority) = authority(&req) else {
                return local_reply(
                    StatusCode::BAD_REQUEST,
                    flags::DOWNSTREAM_PROTOCOL_ERROR,
                    "skiff gateway: the request has no Host header".to_string(),
                );
            };
            let host = host_of(authority);
            let lowered;
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = host.to_ascii_lowercase();
                lowered.as_str()
            } else {
                host
            };
            let table = self.table.load();
            match table.lookup(host, scope.external, scope.local) {
                Some(r) => r.clone(),
                None => {
                    return local_reply(
                        StatusCode::NOT_FOUND,
                        flags::NO_ROUTE,
                        format!(
                            "skiff gateway: no route matched host {host:?}: no Route serves this host on this listener (see `skiff get routes -A`)"
                        ),
                    );
                }
            }
        };
        let req = forward::prepare(req, client_ip);
        forward::forward(&route, route.pick(), req, &self.stats).await
    }
}

/// The request's authority: the URI's (HTTP/2, absolute form), else Host.
fn authority(req: &Request<Incoming>) -> Option<&str> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// The host part of an authority (no port, no IPv6 brackets kept apart).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    match authority.rfind(':') {
        Some(i) => &authority[..i],
        None => authority,
    }
}

/// `ip` as it goes into X-Forwarded-For (IPv4-mapped addresses unmapped).
pub fn client_ip_header(ip: std::net::IpAddr) -> HeaderValue {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and let
/// open connections finish their requests (at most `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    scope: ListenerScope,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let client_ip = client_ip_header(client.ip());
        let service = service_fn(move |req| {
            let gateway = gateway.clone();
            let client_ip = client_ip.clone();
            async move { Ok::<_, Infallible>(gateway.handle(req, &client_ip, scope).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain_timeout:?}: closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        assert_eq!(
            host_of("hello.default.example.com:8080"),
            "hello.default.example.com"
        );
        assert_eq!(host_of("hello"), "hello");
        assert_eq!(host_of("[::1]:80"), "[::1]");
    }
}
