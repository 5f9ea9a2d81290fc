//! Gateway listeners from Gateway servers: one listener per port, plain or
//! TLS, optionally behind the PROXY protocol, opened and closed as the set
//! of desired listeners changes. Each listener accepts on every gateway
//! worker (one `SO_REUSEPORT` socket per worker runtime, so a connection and
//! its requests stay on one thread); what a listener serves (its gateway
//! servers, TLS certificates) is swapped in place without closing it.
//!
//! Accepted connections go to a [`ConnectionHandler`] (the gateway's HTTP
//! server) with their TLS details, real client address and the listener's
//! servers (hosts, `httpsRedirect`).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::istio::binding::BoundServer;
use crate::outline::outlined;
use crate::proxy_protocol::{self, ProxyHeader};
use crate::server::ListenerScope;
use crate::tls::{TlsAcceptor, TlsInfo, TlsListenerConfig};

/// Downstream TCP keepalive idle time by default: below the 350 s idle
/// timeout of AWS load balancers, so they never drop a live connection.
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(300);
/// How long a client has to send its PROXY header.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to an HTTP request on a PROXY protocol listener.
fn no_proxy_header_reply() -> Vec<u8> {
    let body = "skiff gateway: this listener expects a PROXY protocol header before the \
                request (skiff serve --proxy-protocol); the load balancer must send one\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nx-skiff-flags: DPE\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Any accepted stream (plain TCP, TLS, with PROXY bytes put back).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A listener the gateway should have.
pub struct ListenerSpec {
    pub addr: SocketAddr,
    /// TLS termination (the port's servers terminate TLS).
    pub tls: Option<TlsListenerConfig>,
    /// The gateway servers on this port.
    pub servers: Vec<BoundServer>,
    pub scope: ListenerScope,
    /// Expect a PROXY protocol v1/v2 header first.
    pub proxy_protocol: bool,
    /// Proxies in front whose X-Forwarded-For entries are trusted (Envoy's
    /// `xff_num_trusted_hops`, Istio's `numTrustedProxies`).
    pub xff_trusted_hops: u32,
    /// TCP keepalive idle time (`None`: off).
    pub keepalive_idle: Option<Duration>,
    /// The port requests are matched as arriving on (the Gateway server's
    /// port number, which may differ from the bound port); `None`: the
    /// bound port.
    pub gateway_port: Option<u16>,
}

impl ListenerSpec {
    pub fn plain(addr: SocketAddr, servers: Vec<BoundServer>) -> ListenerSpec {
        ListenerSpec {
            addr,
            tls: None,
            servers,
            scope: ListenerScope::ALL,
            proxy_protocol: false,
            xff_trusted_hops: 0,
            keepalive_idle: Some(DEFAULT_KEEPALIVE_IDLE),
            gateway_port: None,
        }
    }
}

/// What a running listener serves; read per connection.
#[derive(Debug)]
pub struct ListenerInfo {
    /// The listener's key: the address asked for, or where it is bound
    /// when port 0 was asked for.
    pub addr: SocketAddr,
    pub bound: SocketAddr,
    pub servers: Vec<BoundServer>,
    pub scope: ListenerScope,
    pub proxy_protocol: bool,
    pub xff_trusted_hops: u32,
    pub keepalive_idle: Option<Duration>,
    pub tls: bool,
    pub gateway_port: Option<u16>,
    /// Computed once: read for every request.
    redirect_all: bool,
}

impl ListenerInfo {
    /// Plain HTTP port whose servers all redirect to https.
    #[inline]
    pub fn https_redirect(&self) -> bool {
        self.redirect_all
    }
}

fn redirects_all(tls: bool, servers: &[BoundServer]) -> bool {
    !tls && !servers.is_empty() && servers.iter().all(BoundServer::https_redirect)
}

/// One accepted connection, ready for HTTP.
pub struct Connection {
    pub io: Box<dyn Io>,
    /// The TCP peer (the load balancer, with the PROXY protocol).
    pub peer: SocketAddr,
    /// The client: from the PROXY header if there was one, else the peer.
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<TlsInfo>,
    pub listener: Arc<ListenerInfo>,
    /// Becomes true when the listener closes (or the gateway drains): finish
    /// in-flight requests, then close (Connection: close / GOAWAY).
    pub closing: watch::Receiver<bool>,
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Serves accepted connections (HTTP/1.1, h2, upgrades).
pub trait ConnectionHandler: Send + Sync + 'static {
    fn serve(&self, conn: Connection) -> BoxFuture;
}

struct Running {
    info: Arc<ArcSwap<ListenerInfo>>,
    tls: Option<Arc<TlsAcceptor>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connections: Arc<AtomicUsize>,
}

/// What a running listener shares with [`LiveListeners`]: the same cells
/// the manager and its accept loops update.
#[derive(Clone)]
struct Shared {
    info: Arc<ArcSwap<ListenerInfo>>,
    connections: Arc<AtomicUsize>,
}

/// A running listener at one moment.
#[derive(Debug, Clone)]
pub struct ListenerState {
    pub info: Arc<ListenerInfo>,
    /// Connections open now (accepted and not yet closed).
    pub connections: usize,
}

/// A read-only view of the running listeners for `proxy-config`, usable
/// while the manager is owned by its task: the set is republished when
/// listeners open or close; servers and connection counts are read live.
#[derive(Clone, Default)]
pub struct LiveListeners(Arc<ArcSwap<Vec<Shared>>>);

impl LiveListeners {
    /// The running listeners now, in address order.
    pub fn snapshot(&self) -> Vec<ListenerState> {
        self.0
            .load()
            .iter()
            .map(|s| ListenerState {
                info: s.info.load_full(),
                connections: s.connections.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Opens, updates and closes the gateway's listeners.
pub struct ListenerManager {
    workers: Vec<Handle>,
    handler: Arc<dyn ConnectionHandler>,
    running: BTreeMap<SocketAddr, Running>,
    live: LiveListeners,
}

/// What [`ListenerManager::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// (asked, bound) of listeners opened now.
    pub opened: Vec<(SocketAddr, SocketAddr)>,
    pub updated: Vec<SocketAddr>,
    pub closed: Vec<SocketAddr>,
    /// Listeners that could not be opened, and why.
    pub failed: Vec<(SocketAddr, String)>,
}

fn bind(addr: SocketAddr, n: usize) -> io::Result<(Vec<TcpSocket>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(n);
    let mut bound = addr;
    for _ in 0..n.max(1) {
        let s = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        s.set_reuseaddr(true)?;
        s.set_reuseport(true)?;
        s.bind(bound)?;
        // Port 0 picks a port once; the other workers share it.
        bound = s.local_addr()?;
        sockets.push(s);
    }
    Ok((sockets, bound))
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Dropping the sender counts as stopping too.
    let _ = rx.wait_for(|s| *s).await;
}

fn set_keepalive(tcp: &TcpStream, idle: Option<Duration>) {
    let _ = tcp.set_nodelay(true);
    if let Some(idle) = idle {
        let ka = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(75));
        let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
    }
}

/// PROXY header, TLS handshake; `None` if the connection is unusable.
async fn prepare(
    tcp: TcpStream,
    peer: SocketAddr,
    info: Arc<ListenerInfo>,
    tls: Option<Arc<TlsAcceptor>>,
    closing: watch::Receiver<bool>,
) -> Option<Connection> {
    set_keepalive(&tcp, info.keepalive_idle);
    let local = tcp.local_addr().ok()?;
    let (io, client): (Box<dyn Io>, SocketAddr) = if info.proxy_protocol {
        let read =
            tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_protocol::read_header(tcp)).await;
        match read {
            Ok(Ok((header, rest))) => {
                let client = match header {
                    ProxyHeader::Proxied { source, .. } => source,
                    ProxyHeader::Local => peer,
                };
                (Box::new(rest), client)
            }
            Ok(Err(mut rejected)) => {
                tracing::debug!(%peer, "closing connection: {:?}", rejected);
                if rejected.looks_like_http() {
                    // Someone reached the listener without the load
                    // balancer: tell them why instead of an empty reply.
                    use tokio::io::AsyncWriteExt;
                    let _ = rejected.io.write_all(&no_proxy_header_reply()).await;
                    let _ = rejected.io.shutdown().await;
                }
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "closing connection: no PROXY header in time");
                return None;
            }
        }
    } else {
        (Box::new(tcp), peer)
    };
    let (io, tls_info): (Box<dyn Io>, _) = match tls {
        Some(acceptor) => match acceptor.accept(io).await {
            Ok((stream, tls_info)) => (Box::new(stream), Some(tls_info)),
            Err(e) => {
                tracing::debug!(%client, "TLS handshake failed: {e}");
                return None;
            }
        },
        None => (io, None),
    };
    Some(Connection {
        io,
        peer,
        client,
        local,
        tls: tls_info,
        listener: info,
        closing,
    })
}

impl ListenerManager {
    /// `workers`: the gateway workers' runtimes (one accept loop each).
    pub fn new(workers: Vec<Handle>, handler: Arc<dyn ConnectionHandler>) -> ListenerManager {
        ListenerManager {
            workers,
            handler,
            running: BTreeMap::new(),
            live: LiveListeners::default(),
        }
    }

    /// (asked, bound, TLS, open connections) of the running listeners.
    pub fn listeners(&self) -> Vec<(SocketAddr, SocketAddr, bool, usize)> {
        self.running
            .iter()
            .map(|(a, r)| {
                let i = r.info.load();
                (*a, i.bound, i.tls, r.connections.load(Ordering::Relaxed))
            })
            .collect()
    }

    /// A view of the running listeners that stays current.
    pub fn live(&self) -> LiveListeners {
        self.live.clone()
    }

    /// Tell [`LiveListeners`] which listeners run now.
    fn publish(&self) {
        let set = self
            .running
            .values()
            .map(|r| Shared {
                info: r.info.clone(),
                connections: r.connections.clone(),
            })
            .collect();
        self.live.0.store(Arc::new(set));
    }

    /// Make the running listeners exactly `desired`: open new ones, update
    /// changed ones in place (servers, certificates), close the rest (they
    /// have stopped accepting when this returns; their connections are told
    /// to finish and close).
    pub async fn apply(&mut self, desired: Vec<ListenerSpec>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let wanted: Vec<SocketAddr> = desired.iter().map(|s| s.addr).collect();
        let stale: Vec<SocketAddr> = self
            .running
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in stale {
            if let Some(r) = self.running.remove(&addr) {
                let _ = r.stop.send(true);
                // Accept loops end at once; their connections carry on.
                for t in r.tasks {
                    let _ = t.await;
                }
                report.closed.push(addr);
            }
        }
        for spec in desired {
            let addr = spec.addr;
            if let Some(r) = self.running.get(&addr) {
                // A TLS listener stays TLS and a plain one plain: switching
                // reopens the port.
                if r.tls.is_some() == spec.tls.is_some() {
                    let bound = r.info.load().bound;
                    if let (Some(acceptor), Some(cfg)) = (&r.tls, spec.tls) {
                        acceptor.update(cfg);
                    }
                    let tls = r.tls.is_some();
                    r.info.store(Arc::new(ListenerInfo {
                        addr,
                        bound,
                        redirect_all: redirects_all(tls, &spec.servers),
                        servers: spec.servers,
                        scope: spec.scope,
                        proxy_protocol: spec.proxy_protocol,
                        xff_trusted_hops: spec.xff_trusted_hops,
                        keepalive_idle: spec.keepalive_idle,
                        tls,
                        gateway_port: spec.gateway_port,
                    }));
                    report.updated.push(addr);
                    continue;
                }
                if let Some(r) = self.running.remove(&addr) {
                    let _ = r.stop.send(true);
                    // Let the old sockets go before binding again.
                    for t in r.tasks {
                        let _ = t.await;
                    }
                }
            }
            match self.open(spec).await {
                Ok((bound, running)) => {
                    // Port 0: the bound address is the key from now on.
                    let key = if addr.port() == 0 { bound } else { addr };
                    self.running.insert(key, running);
                    report.opened.push((addr, bound));
                }
                Err(e) => report.failed.push((addr, e.to_string())),
            }
        }
        self.publish();
        report
    }

    async fn open(&self, spec: ListenerSpec) -> io::Result<(SocketAddr, Running)> {
        let workers = if self.workers.is_empty() {
            vec![Handle::current()]
        } else {
            self.workers.clone()
        };
        let (sockets, bound) = bind(spec.addr, workers.len())?;
        let tls = spec.tls.map(|c| Arc::new(TlsAcceptor::new(c)));
        let info = Arc::new(ArcSwap::from_pointee(ListenerInfo {
            addr: if spec.addr.port() == 0 {
                bound
            } else {
                spec.addr
            },
            bound,
            redirect_all: redirects_all(tls.is_some(), &spec.servers),
            servers: spec.servers,
            scope: spec.scope,
            proxy_protocol: spec.proxy_protocol,
            xff_trusted_hops: spec.xff_trusted_hops,
            keepalive_idle: spec.keepalive_idle,
            tls: tls.is_some(),
            gateway_port: spec.gateway_port,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let connections = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(workers.len());
        let mut ready = Vec::with_capacity(workers.len());
        for (socket, worker) in sockets.into_iter().zip(workers) {
            let (ready_tx, ready_rx) = oneshot::channel::<io::Result<()>>();
            ready.push(ready_rx);
            let (info, tls, handler, connections) = (
                info.clone(),
                tls.clone(),
                self.handler.clone(),
                connections.clone(),
            );
            let mut stop_rx = stop_rx.clone();
            tasks.push(worker.spawn(async move {
                let listener = match socket.listen(4096) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let (tcp, peer) = tokio::select! {
                        r = listener.accept() => match r {
                            Ok(x) => x,
                            Err(e) => {
                                // Out of descriptors and the like: keep serving.
                                tracing::warn!("accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                        _ = stopped(&mut stop_rx) => break,
                    };
                    let (info, tls, handler, connections) = (
                        info.load_full(),
                        tls.clone(),
                        handler.clone(),
                        connections.clone(),
                    );
                    let closing = stop_rx.clone();
                    connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        // Outlined: the TLS handshake's future is 3 KB, and
                        // this task lives as long as its connection. Boxed,
                        // it is freed once the connection is ready; behind a
                        // vtable, the poll that each request runs does not
                        // carry the handshake's stack frame (crate::outline).
                        let prepared = outlined(prepare(tcp, peer, info, tls, closing)).await;
                        if let Some(conn) = prepared {
                            handler.serve(conn).await;
                        }
                        connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }));
        }
        for r in ready {
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = stop.send(true);
                    return Err(e);
                }
                Err(_) => {
                    let _ = stop.send(true);
                    return Err(io::Error::other(
                        "a gateway worker stopped while opening a listener",
                    ));
                }
            }
        }
        Ok((
            bound,
            Running {
                info,
                tls,
                stop,
                tasks,
                connections,
            },
        ))
    }

    /// Close every listener; returns once they stopped accepting.
    pub async fn close_all(&mut self) {
        self.drain(Duration::ZERO).await;
    }

    /// Close every listener, tell every open connection to finish its
    /// requests and close, and wait up to `timeout` for them to be gone.
    /// Returns how many connections were still open then.
    pub async fn drain(&mut self, timeout: Duration) -> usize {
        let all = std::mem::take(&mut self.running);
        self.publish();
        let mut open = Vec::with_capacity(all.len());
        for (_, r) in all {
            let _ = r.stop.send(true);
            for t in r.tasks {
                let _ = t.await;
            }
            open.push((r.connections, r.stop));
        }
        let left = || {
            open.iter()
                .map(|(c, _)| c.load(Ordering::Relaxed))
                .sum::<usize>()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while left() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        left()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Credentials;
    use crate::tls::config::testing::{Ca, secret};
    use skiff_api::istio::Gateway;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each connection with one line describing it, then closes
    /// (or waits for `closing` when the client says "wait").
    struct Echo;

    impl ConnectionHandler for Echo {
        fn serve(&self, mut c: Connection) -> BoxFuture {
            Box::pin(async move {
                let mut buf = [0u8; 4];
                let n = c.io.read(&mut buf).await.unwrap_or(0);
                if &buf[..n] == b"wait" {
                    let _ = c.closing.wait_for(|s| *s).await;
                }
                let line = format!(
                    "client={} tls={} redirect={} servers={}\n",
                    c.client,
                    c.tls
                        .as_ref()
                        .and_then(|t| t.sni.clone())
                        .unwrap_or_default(),
                    c.listener.https_redirect(),
                    c.listener.servers.len()
                );
                let _ = c.io.write_all(line.as_bytes()).await;
                let _ = c.io.shutdown().await;
            })
        }
    }

    fn servers(yaml: &str) -> Vec<(u16, Vec<BoundServer>)> {
        let g: Gateway = crate::istio::testing::yaml(yaml);
        crate::istio::binding::servers_by_port(&[g]).0
    }

    async fn ask(addr: SocketAddr, send: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(send).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_update_close() {
        let mut m =
            ListenerManager::new(vec![Handle::current(), Handle::current()], Arc::new(Echo));
        let gw = servers(
            "metadata: {name: g, namespace: x}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}]}",
        );
        let r = m
            .apply(vec![ListenerSpec::plain(any_port(), gw[0].1.clone())])
            .await;
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let (_, bound) = r.opened[0];
        assert!(ask(bound, b"x").await.contains("redirect=true servers=1"));
        // Asked for port 0, it is known by its bound address from now on.
        assert_eq!(m.listeners()[0].0, bound);
        let live = m.live();
        assert_eq!(live.snapshot()[0].info.addr, bound);
        assert_eq!(live.snapshot()[0].info.servers.len(), 1);
        // Update in place: same socket, new servers.
        let r = m.apply(vec![ListenerSpec::plain(bound, vec![])]).await;
        assert_eq!(r.updated, [bound]);
        assert!(ask(bound, b"x").await.contains("redirect=false servers=0"));
        assert_eq!(
            live.snapshot()[0].info.servers.len(),
            0,
            "updates show live"
        );
        // A connection in flight survives the close and is told to finish.
        let mut inflight = TcpStream::connect(bound).await.unwrap();
        inflight.write_all(b"wait").await.unwrap();
        while m.listeners()[0].3 == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(live.snapshot()[0].connections, 1);
        let r = m.apply(vec![]).await;
        assert_eq!(r.closed, [bound]);
        assert!(live.snapshot().is_empty());
        let mut out = String::new();
        inflight.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("client=127.0.0.1"), "{out}");
        // And the port no longer accepts.
        assert!(TcpStream::connect(bound).await.is_err());
    }

    #[tokio::test]
    async fn proxy_protocol_gives_the_client_address() {
        let mut m = ListenerManager::new(vec![], Arc::new(Echo));
        let mut spec = ListenerSpec::plain(any_port(), vec![]);
        spec.proxy_protocol = true;
        let bound = m.apply(vec![spec]).await.opened[0].1;
        let out = ask(bound, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\nx").await;
        assert!(out.starts_with("client=203.0.113.7:40000"), "{out}");
        // Without a header the connection is closed; an HTTP client is
        // told why first.
        let out = ask(bound, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("x-skiff-flags: DPE"), "{out}");
        assert_eq!(ask(bound, b"\x16\x03\x01 not http\n").await, "");
        m.close_all().await;
    }

    #[tokio::test]
    async fn tls_listener_and_bind_errors() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(&["shop.example.com"], &[]);
        let creds = Credentials::new([secret("x", "shop", &leaf, None)]);
        let gw = servers(
            "metadata: {name: g, namespace: x}\nspec: {servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: shop}}]}",
        );
        let (tls, problems) = TlsListenerConfig::from_servers(&gw[0].1, &creds);
        assert!(problems.is_empty());
        let mut m = ListenerManager::new(vec![], Arc::new(Echo));
        let mut spec = ListenerSpec::plain(any_port(), gw[0].1.clone());
        spec.tls = Some(tls);
        let bound = m.apply(vec![spec]).await.opened[0].1;
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::config::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(bound).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("shop.example.com".try_into().unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(b"x").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.contains("tls=shop.example.com"), "{out}");
        // A port taken by someone else is reported, not fatal.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = m
            .apply(vec![ListenerSpec::plain(
                taken.local_addr().unwrap(),
                vec![],
            )])
            .await;
        assert_eq!(r.failed.len(), 1, "{r:?}");
        assert_eq!(r.closed.len(), 1);
        m.close_all().await;
    }
}
