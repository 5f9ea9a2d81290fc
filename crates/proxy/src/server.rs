//! Listeners: accept connections, serve HTTP/1.1 and h2c on the same port,
//! route every request through the current routing table, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

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

    /// True while the current table can still send requests to `endpoint`.
    pub fn references(&self, endpoint: &Arc<crate::Endpoint>) -> bool {
        self.table.load().hosts().any(|(_, _, route)| {
            route
                .targets()
                .iter()
                .any(|b| b.endpoints.iter().any(|e| Arc::ptr_eq(e, endpoint)))
        })
    }

    /// Route and forward one request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        scope: ListenerScope,
    ) -> Response<ProxyBody> {
        self.stats.request();
        let resp = self.route(req, client, scope).await;
        if let Some(LocalReply(flag)) = resp.extensions().get::<LocalReply>() {
            self.stats.local_reply(flag);
        }
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        scope: ListenerScope,
    ) -> Response<ProxyBody> {
        let authority = match authority(&req) {
            Some(a) => a,
            None => {
                return local_reply(
                    StatusCode::BAD_REQUEST,
                    flags::DOWNSTREAM_PROTOCOL_ERROR,
                    "skiff gateway: the request has no Host header".to_string(),
                );
            }
        };
        let table = self.table.load();
        let host = host_of(&authority);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let Some(route) = table.lookup(host, scope.external, scope.local) else {
            return local_reply(
                StatusCode::NOT_FOUND,
                flags::NO_ROUTE,
                format!(
                    "skiff gateway: no route matched host {host:?}: no Route serves this host on this listener (see `skiff get routes -A`)"
                ),
            );
        };
        let route = route.clone();
        drop(table);
        let backend = route.pick().clone();
        let req = forward::prepare(req, &authority, client);
        forward::forward(&route, &backend, req, &self.stats).await
    }
}

fn authority(req: &Request<Incoming>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
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
        let service = service_fn(move |req| {
            let gateway = gateway.clone();
            async move { Ok::<_, Infallible>(gateway.handle(req, client, scope).await) }
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
