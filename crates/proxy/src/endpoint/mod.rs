//! An endpoint is one instance of a revision as the data path sees it: its
//! address, its in-flight count, and a pool of upstream connections. Endpoint
//! objects outlive routing snapshots (see [`crate::EndpointRegistry`]), so
//! counters and pooled connections survive configuration changes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::activator::Slot;
use crate::body::UpstreamRequestBody;
use crate::istio::circuit_breaker::Guard;
use crate::istio::outlier::HostOutlier;
use crate::istio::policy::Keepalive;
use crate::outline::outlined;
use crate::queue_proxy::RequestStats;
use crate::replay::Head;
use crate::worker::{self, ShardedCounter};

/// Connections idle longer than this are not reused: they are closed before a
/// typical app's keep-alive timeout would close them under our feet (Node's
/// is 5 s, gunicorn's 2 s).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_millis(1900);
const POOL_MAX_IDLE: usize = 512;
/// Reusing a connection idle at least this long may race the app closing it.
const RACE_AFTER_IDLE: Duration = Duration::from_millis(20);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How connections for one request are made and reused: the plain route's
/// defaults, or a DestinationRule's `connectionPool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOpts {
    pub connect_timeout: Duration,
    /// A pooled connection idle this long is not reused (closed instead).
    pub idle_timeout: Duration,
    /// Requests per connection (`None`: unlimited; 1 disables keep-alive).
    pub max_requests: Option<u32>,
    /// TCP keepalive on new connections.
    pub keepalive: Option<Keepalive>,
}

impl ConnOpts {
    /// What plain Knative routes use.
    pub const DEFAULT: ConnOpts = ConnOpts {
        connect_timeout: CONNECT_TIMEOUT,
        idle_timeout: POOL_IDLE_TIMEOUT,
        max_requests: None,
        keepalive: None,
    };
}

pub struct Endpoint {
    pub addr: SocketAddr,
    /// `namespace/revision` (for logs and error bodies).
    pub revision: Arc<str>,
    pub instance: u64,
    h2c: bool,
    /// Requests holding a slot here (the queue-proxy's in-flight count).
    in_flight: AtomicUsize,
    /// The revision's containerConcurrency: slots per instance, 0 = no limit.
    capacity: AtomicUsize,
    requests: ShardedCounter,
    /// Requests that failed here: a 5xx from the app, a failed connect, a
    /// reset or a timeout (rare: a plain atomic).
    errors: AtomicU64,
    /// What the autoscaler is told every second.
    pub(crate) stats: RequestStats,
    /// Set when the instance starts to drain: no new slots are handed out.
    draining: AtomicBool,
    /// Set when the instance leaves: no new requests, pooled conns dropped.
    retired: AtomicBool,
    /// Outlier detection state: kept with the endpoint so that ejections
    /// survive routing snapshots (and apply to every cluster it is in).
    pub outlier: Arc<HostOutlier>,
    /// Idle HTTP/1.1 connections, one pool per gateway worker: a connection
    /// is registered with the I/O driver of the worker that opened it, so
    /// only that worker uses it. The lock is never contended. Most recently
    /// used at the back.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// The multiplexed connection to an h2c instance.
    h2: Mutex<Option<H2>>,
}

/// An HTTP/2 connection to an h2c instance, shared by its requests. `id`
/// tells it from the one that replaces it.
#[derive(Clone)]
struct H2 {
    id: u64,
    sender: http2::SendRequest<UpstreamRequestBody>,
}

/// An HTTP/1.1 connection to the instance, as a lease or the pool holds
/// it: hyper's sender. The connection's I/O is a task of its own, spawned
/// when it was opened, as in hyper's documentation: the request's task
/// hands it the request and takes the response back. Driving the
/// connection from the request's task instead saves instructions, but puts
/// the whole request path in one poll, too much code for the instruction
/// cache to keep from one connection to the next; split into tasks, each
/// phase runs for every ready connection in turn while its code is cached
/// (bench/README.md, "Gateway work per request").
struct H1 {
    sender: http1::SendRequest<UpstreamRequestBody>,
    /// Requests it carried.
    uses: u32,
    /// How long it may sit idle in the pool: the last request's setting.
    idle_timeout: Duration,
}

struct Idle {
    conn: H1,
    since: Instant,
}

/// A copy of `req` to send again, if it is idempotent and has no body.
fn replayable(req: &Request<UpstreamRequestBody>) -> Option<Head> {
    let idempotent = matches!(
        *req.method(),
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    );
    (idempotent && http_body::Body::is_end_stream(req.body()))
        .then(|| Head::new(req.method(), req.uri(), req.headers(), None))
}

/// A copy of `req` to send again after an h2c instance refused its stream
/// unprocessed: any method may be resent then (RFC 9113 §8.7), if its body
/// is empty or was buffered.
fn resendable(req: &Request<UpstreamRequestBody>) -> Option<Head> {
    let body = match req.body() {
        UpstreamRequestBody::Buffered(b) => b.clone(),
        b if http_body::Body::is_end_stream(b) => None,
        _ => return None,
    };
    Some(Head::new(req.method(), req.uri(), req.headers(), body))
}

/// How the peer refused the stream without processing it, if it did: its
/// GOAWAY's last stream id is below the stream (h2 reports that, and a
/// stream it would not open after that GOAWAY, as a remote GOAWAY error; a
/// stream the peer counted as processed fails otherwise), or it reset the
/// stream with `REFUSED_STREAM`.
fn refusal(e: &hyper::Error) -> Option<Refusal> {
    let h = std::error::Error::source(e)?.downcast_ref::<h2::Error>()?;
    if !h.is_remote() {
        return None;
    }
    match h.reason()? {
        reason if h.is_go_away() => Some(Refusal::GoAway(reason)),
        h2::Reason::REFUSED_STREAM => Some(Refusal::Reset),
        _ => None,
    }
}

enum Refusal {
    /// A GOAWAY (with its error code) that leaves the stream out.
    GoAway(h2::Reason),
    /// `RST_STREAM` with `REFUSED_STREAM`.
    Reset,
}

/// hyper's error with its causes: hyper's own message ("http2 error",
/// "connection error") does not say what happened. Cold: kept out of the
/// request path's code.
#[cold]
#[inline(never)]
fn describe(e: &hyper::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Why nothing was written upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentKind {
    /// TCP connect refused or timed out.
    Connect,
    /// The connection failed before the request went out (a closed pooled
    /// connection, a failed handshake).
    Closed,
    /// An h2c instance refused the stream before processing it: a GOAWAY
    /// whose last stream id is below it, or `REFUSED_STREAM` (RFC 9113
    /// §8.7). Its body may have gone out, so the request comes back only
    /// if it had none or a buffered one.
    Refused,
}

/// Why a request did not get a response from this endpoint.
#[derive(Debug)]
pub enum SendError {
    /// The app did not see the request: retrying it anywhere is safe.
    /// [`Endpoint::send`] hands it back, unless a refused stream took its
    /// streamed body with it ([`NotSentKind::Refused`]).
    NotSent { reason: String, kind: NotSentKind },
    /// The request was (possibly) written, then the exchange failed before a
    /// response head arrived. `reused`: it went out on a pooled connection
    /// (and was not replayable).
    Failed { reason: String, reused: bool },
}

impl SendError {
    /// Nothing was written: `why` is the reason and its kind.
    fn not_sent((reason, kind): (String, NotSentKind)) -> SendError {
        SendError::NotSent { reason, kind }
    }

    /// The request was lost on the gateway's side: its caller had none to send.
    fn no_request() -> SendError {
        SendError::Failed {
            reason: "the gateway had no request to send".into(),
            reused: false,
        }
    }

    /// hyper hands the request back when nothing of it was written.
    fn from_try_send(
        mut e: hyper::client::conn::TrySendError<Request<UpstreamRequestBody>>,
        reused: bool,
        back: &mut Option<Request<UpstreamRequestBody>>,
    ) -> SendError {
        match e.take_message() {
            Some(request) => {
                *back = Some(request);
                SendError::not_sent((describe(&e.into_error()), NotSentKind::Closed))
            }
            None => SendError::Failed {
                reason: describe(&e.into_error()),
                reused,
            },
        }
    }
}

/// Holds the request's slot on the endpoint (and, for HTTP/1, the
/// connection) until the response body ends.
pub struct Lease {
    /// The HTTP/1.1 connection, pooled again when the response body ends.
    conn: Option<H1>,
    /// Pool the connection again only below this many uses.
    max_uses: u32,
    /// Released after the connection went back to the pool, so a request
    /// handed this slot finds the connection.
    slot: Slot,
    /// The request's circuit-breaker admissions (the policy path), given
    /// back when its body ends — after the connection went back to the
    /// pool, like the slot. Held inline: no allocation per request.
    pub(crate) admission: Option<Guard>,
    /// Its access log record (logging on).
    pub(crate) extras: Option<Box<crate::access::Extras>>,
    /// The revision's limits on streaming the response body.
    pub(crate) limits: Option<crate::body::StreamLimits>,
}

impl Lease {
    /// A lease that only holds the slot (no pooled connection to return).
    pub(crate) fn without_connection(slot: Slot) -> Lease {
        Lease {
            conn: None,
            max_uses: 0,
            slot,
            admission: None,
            extras: None,
            limits: None,
        }
    }

    /// The response body ended (`clean`) or was abandoned/failed.
    pub fn finish(mut self, clean: bool) {
        // One clock read for the pool and the slot's counts.
        let now = Instant::now();
        if clean
            && let Some(conn) = self.conn.take()
            && conn.uses < self.max_uses
        {
            self.slot.endpoint().check_in(conn, now);
        }
        self.admission = None;
        if let Some(x) = self.extras.take() {
            x.finish(clean);
        }
        // Released after the connection went back to the pool.
        self.slot.end_at(now);
    }

    /// Count response body bytes for the access log (and the idle timer).
    #[inline]
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(x) = &mut self.extras {
            x.bytes_sent += n as u64;
        }
        if let Some(l) = &mut self.limits {
            l.data();
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("revision", &self.revision)
            .field("instance", &self.instance)
            .field("addr", &self.addr)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Endpoint {
    pub fn new(addr: SocketAddr, revision: Arc<str>, instance: u64, h2c: bool) -> Endpoint {
        Endpoint {
            addr,
            revision,
            instance,
            h2c,
            in_flight: AtomicUsize::new(0),
            capacity: AtomicUsize::new(0),
            requests: ShardedCounter::default(),
            errors: AtomicU64::new(0),
            stats: RequestStats::default(),
            draining: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            outlier: Arc::default(),
            idle: (0..worker::SHARDS)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            h2: Mutex::new(None),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Requests that failed at this instance so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Count a failed request: a 5xx from the app, a failed connect, a
    /// reset or a timeout.
    #[inline]
    pub(crate) fn note_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Slots per instance (`containerConcurrency`; 0 = unlimited).
    pub fn set_capacity(&self, cc: usize) {
        self.capacity.store(cc, Ordering::Release);
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    /// Take a slot if one is free. SeqCst pairs with [`Endpoint::drain`]:
    /// either the drain sees this request in flight, or this request sees
    /// the drain and backs off.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let cap = self.capacity.load(Ordering::Acquire);
        let mut cur = self.in_flight.load(Ordering::SeqCst);
        loop {
            if cap != 0 && cur >= cap {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if self.draining.load(Ordering::SeqCst) {
            self.release();
            return false;
        }
        true
    }

    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Hand out no more slots: the instance is leaving.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stop reusing connections to this endpoint (its instance is leaving).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        for pool in self.idle.iter() {
            lock(pool).clear();
        }
        lock(&self.h2).take();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Speaks h2c to its instance (one multiplexed connection).
    pub fn is_h2c(&self) -> bool {
        self.h2c
    }

    /// Pool a connection that finished a request. The least recently used
    /// ones idle past their timeout are closed here (a pooled connection is
    /// otherwise only looked at when a request takes it).
    fn check_in(&self, conn: H1, now: Instant) {
        if self.is_retired() || conn.sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle[worker::index()]);
        while idle
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.since) >= c.conn.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < POOL_MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }

    /// The most recently used connection ready for a request and how long
    /// it sat idle (at `now`), dropping closed and stale ones. One whose
    /// task has not yet taken in the end of its last response stays for the
    /// next request.
    fn check_out(&self, max_idle: Duration, now: Instant) -> Option<(H1, Duration)> {
        let mut idle = lock(&self.idle[worker::index()]);
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            let idle_for = now.saturating_duration_since(c.since);
            if c.conn.sender.is_closed() || idle_for >= max_idle.min(c.conn.idle_timeout) {
                idle.remove(i);
            } else if c.conn.sender.is_ready() {
                return idle.remove(i).map(|c| (c.conn, idle_for));
            }
        }
        None
    }

    /// Send the request in `request` to this endpoint, on the slot the
    /// caller holds here. On success the response comes with a lease to keep
    /// until its body ends (it holds the slot). When nothing was sent
    /// ([`SendError::NotSent`]) the request is back in `request`, to retry.
    ///
    /// A pooled connection the app closed while it sat idle fails the request
    /// we write into it (the keep-alive race): when `request` is idempotent
    /// and has no body it is sent once more on a new connection.
    ///
    /// The request stays in the caller's future until hyper takes it:
    /// a request moved into this future would be copied once more, and kept
    /// in both futures.
    #[expect(clippy::manual_async_fn, reason = "an async fn copies its arguments")]
    pub(crate) fn send<'a>(
        &'a self,
        request: &'a mut Option<Request<UpstreamRequestBody>>,
        slot: Slot,
        opts: &'a ConnOpts,
        now: Instant,
    ) -> impl Future<Output = Result<(Response<Incoming>, Lease), SendError>> + 'a {
        async move {
            self.requests.inc();
            let max_uses = opts.max_requests.unwrap_or(u32::MAX);
            let lease = |conn: Option<H1>| Lease {
                conn: conn.map(|mut c| {
                    c.uses = c.uses.saturating_add(1);
                    c.idle_timeout = opts.idle_timeout;
                    c
                }),
                max_uses,
                slot,
                admission: None,
                extras: None,
                limits: None,
            };
            // The rare paths are outlined (h2c instances, a new connection):
            // a request's future is copied whole, so its size is paid on
            // every request, and so is their stack frame if their poll is
            // inlined into this one (see crate::outline).
            if self.h2c {
                let resp = outlined(self.send_h2(request, opts)).await?;
                return Ok((resp, lease(None)));
            }
            while let Some((mut conn, idle_for)) = self.check_out(opts.idle_timeout, now) {
                // Only a connection that sat idle can have been closed by the app
                // as we reuse it; a copy of the head to replay costs
                // allocations, so keep one only then.
                let replay = (idle_for >= RACE_AFTER_IDLE)
                    .then(|| request.as_ref().and_then(replayable))
                    .flatten()
                    .map(Box::new);
                let Some(req) = request.take() else {
                    return Err(SendError::no_request());
                };
                match conn.sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, lease(Some(conn)))),
                    Err(mut e) => match e.take_message() {
                        // The connection died before our request went out.
                        Some(r) => *request = Some(r),
                        None => match replay {
                            Some(r) => {
                                tracing::debug!(endpoint = %self.addr, "pooled connection closed under a request, replaying it: {}", describe(&e.into_error()));
                                *request = Some(r.request());
                            }
                            None => {
                                return Err(SendError::Failed {
                                    reason: describe(&e.into_error()),
                                    reused: true,
                                });
                            }
                        },
                    },
                }
            }
            let (sender, driver) = match outlined(self.open_h1(opts)).await {
                Ok(x) => x,
                Err(why) => return Err(SendError::not_sent(why)),
            };
            let Some(req) = request.take() else {
                return Err(SendError::no_request());
            };
            tokio::spawn(driver);
            let mut conn = H1 {
                sender,
                uses: 0,
                idle_timeout: opts.idle_timeout,
            };
            match conn.sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, lease(Some(conn)))),
                Err(e) => Err(SendError::from_try_send(e, false, request)),
            }
        }
    }

    /// Send a request that asks for a protocol upgrade (websockets) on a
    /// connection of its own: after `101 Switching Protocols` the
    /// connection belongs to the upgraded stream and never returns to the
    /// pool.
    pub(crate) async fn send_upgrade(
        &self,
        request: Request<UpstreamRequestBody>,
        opts: &ConnOpts,
    ) -> Result<Response<Incoming>, SendError> {
        self.requests.inc();
        let (mut sender, conn) = match self.open_h1(opts).await {
            Ok(x) => x,
            Err(why) => return Err(SendError::not_sent(why)),
        };
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        // Not retried: a request handed back is dropped.
        sender
            .try_send_request(request)
            .await
            .map_err(|e| SendError::from_try_send(e, false, &mut None))
    }

    /// [`Self::send`] to an h2c instance; `back` as there.
    async fn send_h2(
        &self,
        back: &mut Option<Request<UpstreamRequestBody>>,
        opts: &ConnOpts,
    ) -> Result<Response<Incoming>, SendError> {
        let Some(mut request) = back.take() else {
            return Err(SendError::no_request());
        };
        // hyper keeps a stream the app refuses (below), so keep a copy to
        // send again, made before the request is rewritten for HTTP/2.
        let copy = resendable(&request);
        // HTTP/2 carries scheme and authority in the request line.
        *request.version_mut() = http::Version::HTTP_2;
        let authority = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Ok(uri) = format!("http://{authority}{path}").parse() {
            *request.uri_mut() = uri;
        }
        request.headers_mut().remove(http::header::HOST);
        let existing = lock(&self.h2)
            .as_ref()
            .filter(|c| !c.sender.is_closed())
            .cloned();
        let (mut conn, reused) = match existing {
            Some(c) => (c, true),
            None => match self.open_h2(opts).await {
                Ok(c) => (c, false),
                Err(why) => {
                    *back = Some(request);
                    return Err(SendError::not_sent(why));
                }
            },
        };
        match conn.sender.try_send_request(request).await {
            Ok(resp) => Ok(resp),
            Err(e)
                if e.message().is_none()
                    && let Some(how) = refusal(e.error()) =>
            {
                let how = match how {
                    Refusal::GoAway(code) => {
                        // No new streams on it: the next request opens another.
                        let mut current = lock(&self.h2);
                        if current.as_ref().is_some_and(|c| c.id == conn.id) {
                            *current = None;
                        }
                        format!("sent a GOAWAY ({code:?}) that leaves the request's stream out")
                    }
                    Refusal::Reset => "reset the request's stream with REFUSED_STREAM".into(),
                };
                let reason = format!("{} {how}: the app did not process it", self.addr);
                let reason = match copy {
                    Some(head) => {
                        *back = Some(head.request());
                        reason
                    }
                    None => {
                        format!("{reason}, but its body was streamed, so it cannot be sent again")
                    }
                };
                Err(SendError::NotSent {
                    reason,
                    kind: NotSentKind::Refused,
                })
            }
            Err(e) => Err(SendError::from_try_send(e, reused, back)),
        }
    }

    /// A new HTTP/2 connection to this h2c instance, shared from now on.
    async fn open_h2(&self, opts: &ConnOpts) -> Result<H2, (String, NotSentKind)> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let io = self
            .connect(opts)
            .await
            .map_err(|reason| (reason, NotSentKind::Connect))?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| {
                (
                    format!("h2c handshake with {}: {}", self.addr, describe(&e)),
                    NotSentKind::Closed,
                )
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let conn = H2 {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            sender,
        };
        *lock(&self.h2) = Some(conn.clone());
        Ok(conn)
    }

    /// A new HTTP/1.1 connection; the caller spawns its I/O.
    async fn open_h1(
        &self,
        opts: &ConnOpts,
    ) -> Result<
        (
            http1::SendRequest<UpstreamRequestBody>,
            http1::Connection<TokioIo<TcpStream>, UpstreamRequestBody>,
        ),
        (String, NotSentKind),
    > {
        let io = self
            .connect(opts)
            .await
            .map_err(|reason| (reason, NotSentKind::Connect))?;
        http1::Builder::new().handshake(io).await.map_err(|e| {
            (
                format!("HTTP/1.1 handshake with {}: {}", self.addr, describe(&e)),
                NotSentKind::Closed,
            )
        })
    }

    async fn connect(&self, opts: &ConnOpts) -> Result<TokioIo<TcpStream>, String> {
        match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                if let Some(k) = opts.keepalive {
                    set_keepalive(&s, k);
                }
                Ok(TokioIo::new(s))
            }
            Ok(Err(e)) => Err(format!("connect to {}: {e}", self.addr)),
            Err(_) => Err(format!(
                "connect to {}: timed out after {:?}",
                self.addr, opts.connect_timeout
            )),
        }
    }
}

/// `connectionPool.tcp.tcpKeepalive` on an upstream socket (unset fields
/// keep the OS defaults).
fn set_keepalive(s: &TcpStream, k: Keepalive) {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(p) = k.probes {
        ka = ka.with_retries(p);
    }
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

/// A poisoned pool lock only means a panic elsewhere: the pool is usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
