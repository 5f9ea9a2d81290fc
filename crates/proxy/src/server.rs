//! The gateway's HTTP side: every accepted connection (plain or TLS, from
//! the listener manager) is served with HTTP/1.1, h2 or h2c and upgrades;
//! every request is routed through the current routing table — a
//! VirtualService's rules when one is bound to the host on this listener,
//! else Knative's routes — and answered, by the app or by a local reply
//! that says why. Connections finish their requests and close when their
//! listener closes or the gateway drains.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::access::{AccessLog, Extras, Pending};
use crate::activator::Backends;
use crate::body::ProxyBody;
use crate::drain::Drain;
use crate::forward;
use crate::gated::Gated;
use crate::istio::authz::Decision;
use crate::istio::local_reply;
use crate::istio::request::{RequestView, host_of};
use crate::istio::rewrite::Redirect;
use crate::listeners::{BoxFuture, Connection, ConnectionHandler, ListenerInfo};
use crate::metrics::GatewayStats;
use crate::outline::{Outlined, outlined};
use crate::reply::{Generated, respond};
use crate::request_metrics::RequestMetrics;
use crate::table::{HostRoute, RoutingTable, VirtualHost};
use crate::tls::TlsInfo;
use crate::vs_forward;

/// Which Knative routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    pub const NONE: ListenerScope = ListenerScope {
        external: false,
        local: false,
    };
}

/// The data plane's shared state: the current routing table, counters,
/// backends and the access log.
pub struct Gateway {
    table: ArcSwap<RoutingTable>,
    /// The current table's generation (see [`Gateway::with_table`]).
    generation: AtomicU64,
    stats: GatewayStats,
    backends: Backends,
    metrics: RequestMetrics,
    access_log: OnceLock<Arc<AccessLog>>,
    drain: Drain,
    /// A routing table has been published: the gateway knows its routes.
    configured: AtomicBool,
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
            generation: AtomicU64::new(next_generation()),
            stats: GatewayStats::default(),
            backends: Backends::default(),
            metrics: RequestMetrics::default(),
            access_log: OnceLock::new(),
            drain: Drain::default(),
            configured: AtomicBool::new(false),
        }
    }
}

/// What every request on one connection shares.
pub struct ConnInfo {
    pub gateway: Arc<Gateway>,
    /// The client's address as it goes into X-Forwarded-For.
    pub client_ip: HeaderValue,
    /// The original client (PROXY protocol), else the peer.
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: Arc<ListenerInfo>,
    pub tls: Option<TlsInfo>,
    pub scheme: &'static str,
    /// The port VirtualService `port` matches see (the Gateway server's).
    pub port: u16,
    /// The connection speaks HTTP/2 (seen on its first request).
    pub h2: AtomicBool,
}

/// One request's bookkeeping on its way through the gateway.
pub(crate) struct Rq {
    pub start: Instant,
    /// Its access log record (logging on).
    pub log: Option<Box<Pending>>,
    /// Its request metrics were recorded on the way.
    pub recorded: bool,
}

impl Gateway {
    pub fn new() -> Arc<Gateway> {
        Arc::new(Gateway::default())
    }

    /// Log every request to `log` from now on (once, at startup).
    pub fn set_access_log(&self, log: AccessLog) -> bool {
        self.access_log.set(Arc::new(log)).is_ok()
    }

    /// Make `table` current. Requests already routed finish on the table they
    /// started with.
    pub fn publish(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
        // After the store: a worker that reads this generation loads this
        // table (or a newer one).
        self.generation.store(next_generation(), Ordering::Release);
        self.configured.store(true, Ordering::Relaxed);
    }

    /// Shutdown's first step (see [`Drain`]).
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// What a load balancer's health check should see: ready once the
    /// routes are known, until draining starts.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.drain.is_draining() {
            Err("draining: the gateway is shutting down")
        } else if !self.configured.load(Ordering::Relaxed) {
            Err("starting: no routing table yet")
        } else {
            Ok(())
        }
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

    /// `istio_requests_total` and friends, by destination.
    pub fn request_metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    /// True while a revision's endpoint set still lists `endpoint`, so new
    /// requests could still get a slot on it.
    pub fn references(&self, endpoint: &Arc<crate::Endpoint>) -> bool {
        self.backends.references(endpoint)
    }

    /// Route and forward one request.
    ///
    /// Routing is synchronous; what is awaited is the forward's own future,
    /// returned as hyper's service future with nothing around it. A
    /// request's future is copied whole at each level of `.await` nesting
    /// (and once more into hyper's connection), and an `async` block here
    /// would also keep the client request it was given next to the forward's
    /// rewritten copy.
    fn handle(
        conn: Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Handling<impl Future<Output = Response<ProxyBody>> + Send + 'static> {
        let this = &*conn.gateway;
        this.stats.request();
        let http1 = req.version() < Version::HTTP_2;
        if !http1 && !conn.h2.load(Ordering::Relaxed) {
            conn.h2.store(true, Ordering::Relaxed);
        }
        let mut rq = Rq {
            start: Instant::now(),
            log: None,
            recorded: false,
        };
        if let Some(log) = this.access_log.get() {
            rq.log = Some(Pending::capture(
                log,
                &req,
                rq.start,
                conn.local,
                conn.remote(req.headers()),
                conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
            ));
        }
        // Routed by reference: the request is moved once, into the forward.
        match this.route(&req, &conn) {
            Routed::Plain(route) => match forward::forward(route, req, conn, rq, http1) {
                Ok(forward) => Handling::Plain { forward },
                Err(resp) => Handling::Done { resp: Some(resp) },
            },
            Routed::Reply(mut resp) => {
                this.complete(&mut resp, rq, http1);
                Handling::Done { resp: Some(resp) }
            }
            // Boxed: the policy path's future is several times the size of
            // the plain path's; inline, every request would pay its copies.
            Routed::Mesh(table, vh) => Handling::Mesh {
                forward: outlined(async move {
                    let mut rq = rq;
                    let mut resp = vs_forward::forward(table, &vh, req, &conn, &mut rq).await;
                    conn.gateway.complete(&mut resp, rq, http1);
                    resp
                }),
            },
        }
    }

    /// The gateway's part of every response, whoever made it: the drain's
    /// `Connection: close`, the counters, and the access log record.
    /// By reference: each by-value pass copies the response.
    pub(crate) fn complete(&self, resp: &mut Response<ProxyBody>, rq: Rq, http1: bool) {
        self.drained(resp, http1);
        self.finish(resp, rq);
    }

    /// While draining, an HTTP/1.1 response closes its connection, so the
    /// client's next request opens a new one (which the load balancer sends
    /// elsewhere) instead of racing the close of an idle connection.
    #[inline]
    fn drained(&self, resp: &mut Response<ProxyBody>, http1: bool) {
        if http1 && self.drain.is_draining() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }

    /// Count the response, and hand its log record to its body (written
    /// when the body is done).
    fn finish(&self, resp: &mut Response<ProxyBody>, mut rq: Rq) {
        let generated = resp.extensions().get::<Generated>();
        let flags = generated.map_or(Default::default(), |g| g.flags);
        if generated.is_some() {
            self.stats.local_reply(flags);
        }
        if !rq.recorded {
            self.metrics
                .unrouted
                .record(resp.status().as_u16(), flags, rq.start.elapsed());
        }
        let Some(mut p) = rq.log.take() else {
            return;
        };
        p.code = resp.status().as_u16();
        p.flags.set(flags);
        if let Some(g) = resp.extensions().get::<Generated>() {
            p.details = g.details.to_string().into();
        }
        match resp.body_mut() {
            ProxyBody::Upstream {
                lease: Some(lease), ..
            } => {
                lease.extras.get_or_insert_with(Box::default).log = Some(p);
            }
            ProxyBody::Full(b) => {
                let b = b.take();
                *resp.body_mut() = ProxyBody::Logged {
                    body: b,
                    log: Some(Box::new(Extras {
                        log: Some(p),
                        ..Default::default()
                    })),
                };
            }
            ProxyBody::Logged { log, .. } => {
                log.get_or_insert_with(Box::default).log = Some(p);
            }
            ProxyBody::Upstream { lease: None, .. } => p.write(0, true),
        }
    }

    /// Where a request goes, decided from the current routing table.
    fn route(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Routed {
        if conn.listener.https_redirect() {
            let view = RequestView::of_request(req, conn.scheme, conn.port);
            let to = Redirect::https().location(&view, 0);
            return Routed::Reply(Box::new(
                match local_reply::redirect(http::StatusCode::MOVED_PERMANENTLY, &to) {
                    Some(r) => respond(r),
                    None => respond(local_reply::bad_request(
                        "cannot redirect this request to https",
                    )),
                },
            ));
        }
        let Some(authority) = authority(req) else {
            return Routed::Reply(Box::new(respond(local_reply::bad_request(
                "the request has no Host header",
            ))));
        };
        let host = host_of(authority);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let found = self.with_table(|table| {
            let mut gateway_authz = None;
            if !table.istio.is_empty()
                && let Some(lr) = table.istio.listener(conn.listener.addr)
            {
                if let Some(vh) = lr.hosts.lookup(host) {
                    return Err(Routed::Mesh(table.clone(), vh.clone()));
                }
                gateway_authz = lr.authz.clone();
            }
            let scope = conn.listener.scope;
            match table.lookup(host, scope.external, scope.local) {
                Some(r) => Ok((r.for_request(req.headers()).clone(), gateway_authz)),
                None => Err(Routed::Reply(Box::new(respond(local_reply::no_route(&format!(
                    "no route matched host {host:?}: no Route serves this host on this listener (see `skiff get routes -A`)"
                )))))),
            }
        });
        let (route, gateway_authz) = match found {
            Ok(found) => found,
            Err(routed) => return routed,
        };
        if let Some(a) = gateway_authz.filter(|a| !a.is_empty()) {
            let view = RequestView::of_request(req, conn.scheme, conn.port);
            let d = a.evaluate(&conn.authz_request(view));
            if let (Decision::Deny(_), Some(r)) =
                (&d, local_reply::denied(&d, "the ingress gateway"))
            {
                return Routed::Reply(Box::new(respond(r)));
            }
        }
        Routed::Plain(route)
    }

    /// Run `f` on the current routing table, as this thread last saw it
    /// when no table was published since: one atomic load instead of an
    /// `ArcSwap` load (a few hundred instructions) per request.
    #[inline]
    fn with_table<R>(&self, f: impl FnOnce(&Arc<RoutingTable>) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        CURRENT_TABLE.with(|cached| {
            if let Some((g, table)) = &*cached.borrow()
                && *g == generation
            {
                return f(table);
            }
            // Loaded after the generation was read: at least as new as it.
            let table = self.table.load_full();
            let r = f(&table);
            // The table this replaces is dropped after the cell is free.
            cached.replace(Some((generation, table)));
            r
        })
    }
}

/// Numbers the routing tables published by every gateway in the process,
/// never reusing one: a generation names one table of one gateway.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    /// The routing table this thread routed its last request with, and its
    /// generation. A worker that goes idle keeps its last table (and the
    /// routes in it) alive until its next request.
    static CURRENT_TABLE: RefCell<Option<(u64, Arc<RoutingTable>)>> = const { RefCell::new(None) };
}

/// What routing decided for one request.
enum Routed {
    /// The gateway answers itself (no route, a redirect, a denial): rare,
    /// boxed so that a routed request's decision stays small.
    Reply(Box<Response<ProxyBody>>),
    /// A Knative route: the fast path.
    Plain(Arc<HostRoute>),
    /// A VirtualService bound to the host on this listener.
    Mesh(Arc<RoutingTable>, Arc<VirtualHost>),
}

pin_project_lite::pin_project! {
    /// A request's future, as hyper holds it: the plain forward inline
    /// (`F`), the policy path boxed, or a reply the gateway made itself.
    #[project = HandlingProj]
    pub(crate) enum Handling<F> {
        Plain { #[pin] forward: F },
        Mesh { forward: Outlined<'static, Response<ProxyBody>> },
        Done { resp: Option<Box<Response<ProxyBody>>> },
    }
}

impl<F: Future<Output = Response<ProxyBody>>> Future for Handling<F> {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandlingProj::Plain { forward } => forward.poll(cx).map(Ok),
            HandlingProj::Mesh { forward } => forward.as_mut().poll(cx).map(Ok),
            HandlingProj::Done { resp } => match resp.take() {
                Some(resp) => Poll::Ready(Ok(*resp)),
                None => panic!("a request's future polled after it completed"),
            },
        }
    }
}

/// The request's authority: the URI's (HTTP/2, absolute form), else Host.
pub(crate) fn authority<B>(req: &Request<B>) -> Option<&str> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
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

/// Serves the listener manager's connections with the gateway.
pub struct HttpHandler {
    gateway: Arc<Gateway>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpHandler {
    pub fn new(gateway: Arc<Gateway>) -> HttpHandler {
        HttpHandler {
            gateway,
            builder: auto::Builder::new(TokioExecutor::new()),
        }
    }
}

impl ConnectionHandler for HttpHandler {
    fn serve(&self, conn: Connection) -> BoxFuture {
        let Connection {
            io,
            peer,
            client,
            local,
            tls,
            listener,
            mut closing,
        } = conn;
        let port = listener.gateway_port.unwrap_or(local.port());
        let info = Arc::new(ConnInfo {
            gateway: self.gateway.clone(),
            client_ip: client_ip_header(client.ip()),
            client,
            peer,
            local,
            scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            listener,
            port,
            h2: AtomicBool::new(false),
        });
        let mut draining = self.gateway.drain.subscribe();
        let builder = self.builder.clone();
        Box::pin(async move {
            let conn = info.clone();
            let service = service_fn(move |req| Gateway::handle(info.clone(), req));
            let c = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            tokio::pin!(c);
            // Gated: polled only when they fire, not on every request.
            let mut closed = Gated::new(async move {
                let _ = closing.wait_for(|c| *c).await;
            });
            let mut drained = Gated::new(async move {
                let _ = draining.wait_for(|d| *d).await;
            });
            let mut goaway_sent = false;
            let mut drain_seen = false;
            loop {
                tokio::select! {
                    biased;
                    r = c.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%client, "connection ended: {e}");
                        }
                        return;
                    }
                    () = &mut closed => break,
                    // The gateway drains but still serves: HTTP/2 clients
                    // get GOAWAY (streams in flight finish, new ones go to
                    // a new connection); HTTP/1.1 responses say
                    // Connection: close (see `Gateway::drained`).
                    () = &mut drained, if !drain_seen => {
                        drain_seen = true;
                        if conn.h2.load(Ordering::Relaxed) {
                            c.as_mut().graceful_shutdown();
                            goaway_sent = true;
                        }
                    }
                }
            }
            // The listener closes: finish what is in flight, then close
            // (Connection: close / GOAWAY).
            if !goaway_sent {
                c.as_mut().graceful_shutdown();
            }
            if let Err(e) = c.await {
                tracing::debug!(%client, "connection ended while draining: {e}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_sees_every_publish_of_every_gateway() {
        use crate::table::TableBuilder;
        let (a, b) = (Gateway::new(), Gateway::new());
        let version = |g: &Gateway| g.with_table(|t| t.version);
        assert_eq!((version(&a), version(&b)), (0, 0));
        a.publish(TableBuilder::new(1).build());
        assert_eq!(version(&a), 1);
        // The same thread, another gateway: its own table, not the cached one.
        assert_eq!(version(&b), 0);
        b.publish(TableBuilder::new(7).build());
        assert_eq!((version(&a), version(&b), version(&a)), (1, 7, 1));
        a.publish(TableBuilder::new(2).build());
        assert_eq!((version(&a), version(&a), version(&b)), (2, 2, 7));
        // Another thread starts with nothing cached.
        let a2 = a.clone();
        assert_eq!(std::thread::spawn(move || version(&a2)).join().unwrap(), 2);
    }

    #[test]
    fn client_ips_unmap_v4() {
        let v6: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_ip_header(v6), "10.1.2.3");
        let req = Request::builder()
            .uri("http://h2.example.com/x")
            .body(())
            .unwrap();
        assert_eq!(authority(&req), Some("h2.example.com"));
        assert_eq!(
            host_of("hello.default.example.com:8080"),
            "hello.default.example.com"
        );
    }
}
