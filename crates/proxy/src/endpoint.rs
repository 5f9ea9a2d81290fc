//! An endpoint is one instance of a revision as the data path sees it: its
//! address, its in-flight count, and a pool of upstream connections. Endpoint
//! objects outlive routing snapshots (see [`crate::EndpointRegistry`]), so
//! counters and pooled connections survive configuration changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::activator::Slot;
use crate::body::UpstreamRequestBody;
use crate::queue_proxy::RequestStats;
use crate::worker::{self, ShardedCounter};

/// Connections idle longer than this are not reused: they are closed before a
/// typical app's keep-alive timeout would close them under our feet (Node's
/// is 5 s, gunicorn's 2 s).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_millis(1900);
const POOL_MAX_IDLE: usize = 512;
/// Reusing a connection idle at least this long may race the app closing it.
const RACE_AFTER_IDLE: Duration = Duration::from_millis(20);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// What the autoscaler is told every second.
    pub(crate) stats: RequestStats,
    /// Set when the instance starts to drain: no new slots are handed out.
    draining: AtomicBool,
    /// Set when the instance leaves: no new requests, pooled conns dropped.
    retired: AtomicBool,
    /// Idle HTTP/1.1 connections, one pool per gateway worker: a connection
    /// is driven by a task on the worker that opened it, so only that worker
    /// uses it (no cross-thread wakeups). The lock is never contended.
    idle: Box<[Mutex<Vec<Idle>>]>,
    h2: Mutex<Option<http2::SendRequest<UpstreamRequestBody>>>,
}

struct Idle {
    sender: http1::SendRequest<UpstreamRequestBody>,
    since: Instant,
}

/// The head of an idempotent, bodiless request, to send it again.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &Request<UpstreamRequestBody>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            http::Method::GET
                | http::Method::HEAD
                | http::Method::OPTIONS
                | http::Method::TRACE
                | http::Method::PUT
                | http::Method::DELETE
        );
        (idempotent && http_body::Body::is_end_stream(req.body())).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(self) -> Request<UpstreamRequestBody> {
        let mut r = Request::new(UpstreamRequestBody::Empty);
        *r.method_mut() = self.method;
        *r.uri_mut() = self.uri;
        *r.headers_mut() = self.headers;
        r
    }
}

/// Why a request did not get a response from this endpoint.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was written upstream: the request is handed back, retrying it
    /// anywhere is safe.
    NotSent {
        request: Box<Request<UpstreamRequestBody>>,
        reason: String,
    },
    /// The request was (possibly) written, then the exchange failed before a
    /// response head arrived. `reused`: it went out on a pooled connection
    /// (and was not replayable).
    Failed { reason: String, reused: bool },
}

/// Holds the request's slot on the endpoint (and, for HTTP/1, the
/// connection) until the response body ends.
pub struct Lease {
    sender: Option<http1::SendRequest<UpstreamRequestBody>>,
    /// Released after the connection went back to the pool, so a request
    /// handed this slot finds the connection.
    slot: Slot,
}

impl Lease {
    /// The response body ended (`clean`) or was abandoned/failed.
    pub fn finish(mut self, clean: bool) {
        if clean && let Some(sender) = self.sender.take() {
            self.slot.endpoint().check_in(sender);
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
            stats: RequestStats::default(),
            draining: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            idle: (0..worker::SHARDS)
                .map(|_| Mutex::new(Vec::new()))
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
            pool.lock().expect("pool lock").clear();
        }
        self.h2.lock().expect("h2 lock").take();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn check_in(&self, sender: http1::SendRequest<UpstreamRequestBody>) {
        if self.is_retired() || sender.is_closed() {
            return;
        }
        let mut idle = self.idle[worker::index()].lock().expect("pool lock");
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// The most recently used live connection and how long it sat idle,
    /// dropping stale ones.
    fn check_out(&self) -> Option<(http1::SendRequest<UpstreamRequestBody>, Duration)> {
        let mut idle = self.idle[worker::index()].lock().expect("pool lock");
        while let Some(c) = idle.pop() {
            let idle_for = c.since.elapsed();
            if idle_for < POOL_IDLE_TIMEOUT && !c.sender.is_closed() {
                return Some((c.sender, idle_for));
            }
        }
        None
    }

    /// Send `request` to this endpoint, on the slot the caller holds here.
    /// On success the response comes with a lease to keep until its body
    /// ends (it holds the slot).
    ///
    /// A pooled connection the app closed while it sat idle fails the request
    /// we write into it (the keep-alive race): when `request` is idempotent
    /// and has no body it is sent once more on a new connection.
    pub(crate) async fn send(
        &self,
        request: Request<UpstreamRequestBody>,
        slot: Slot,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        self.requests.inc();
        let mut lease = Lease { sender: None, slot };
        let result = if self.h2c {
            self.send_h2(request).await
        } else {
            self.send_h1(request).await.map(|(resp, sender)| {
                lease.sender = Some(sender);
                resp
            })
        };
        result.map(|resp| (resp, lease))
    }

    async fn send_h1(
        &self,
        mut request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<Incoming>, http1::SendRequest<UpstreamRequestBody>), SendError> {
        while let Some((mut sender, idle_for)) = self.check_out() {
            // Only a connection that sat idle can have been closed by the app
            // as we reuse it; a copy of the head to replay costs two
            // allocations, so keep one only then.
            let replay = (idle_for >= RACE_AFTER_IDLE)
                .then(|| Replay::of(&request))
                .flatten();
            match sender.try_send_request(request).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut e) => match e.take_message() {
                    // The connection died before our request went out.
                    Some(r) => request = r,
                    None => match replay {
                        Some(r) => {
                            tracing::debug!(endpoint = %self.addr, "pooled connection closed under a request, replaying it: {}", e.into_error());
                            request = r.request();
                        }
                        None => {
                            return Err(SendError::Failed {
                                reason: e.into_error().to_string(),
                                reused: true,
                            });
                        }
                    },
                },
            }
        }
        let io = match self.connect().await {
            Ok(io) => io,
            Err(reason) => {
                return Err(SendError::NotSent {
                    request: Box::new(request),
                    reason,
                });
            }
        };
        let (mut sender, conn) = match http1::Builder::new().handshake(io).await {
            Ok(x) => x,
            Err(e) => {
                return Err(SendError::NotSent {
                    request: Box::new(request),
                    reason: format!("HTTP/1.1 handshake with {}: {e}", self.addr),
                });
            }
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        match sender.try_send_request(request).await {
            Ok(resp) => Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::NotSent {
                    request: Box::new(request),
                    reason: e.into_error().to_string(),
                }),
                None => Err(SendError::Failed {
                    reason: e.into_error().to_string(),
                    reused: false,
                }),
            },
        }
    }

    async fn send_h2(
        &self,
        mut request: Request<UpstreamRequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
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
        let existing = self
            .h2
            .lock()
            .expect("h2 lock")
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let (mut sender, reused) = match existing {
            Some(s) => (s, true),
            None => {
                let io = match self.connect().await {
                    Ok(io) => io,
                    Err(reason) => {
                        return Err(SendError::NotSent {
                            request: Box::new(request),
                            reason,
                        });
                    }
                };
                let (sender, conn) = match http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                {
                    Ok(x) => x,
                    Err(e) => {
                        return Err(SendError::NotSent {
                            request: Box::new(request),
                            reason: format!("h2c handshake with {}: {e}", self.addr),
                        });
                    }
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                *self.h2.lock().expect("h2 lock") = Some(sender.clone());
                (sender, false)
            }
        };
        match sender.try_send_request(request).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::NotSent {
                    request: Box::new(request),
                    reason: e.into_error().to_string(),
                }),
                None => Err(SendError::Failed {
                    reason: e.into_error().to_string(),
                    reused,
                }),
            },
        }
    }

    async fn connect(&self) -> Result<TokioIo<TcpStream>, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(TokioIo::new(s))
            }
            Ok(Err(e)) => Err(format!("connect to {}: {e}", self.addr)),
            Err(_) => Err(format!(
                "connect to {}: timed out after {:?}",
                self.addr, CONNECT_TIMEOUT
            )),
        }
    }
}
