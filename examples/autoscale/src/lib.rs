//! `autoscale`: the Skiff equivalent of Knative's `autoscale-go` sample and
//! `autoscale` test image, extended with knobs for testing a serverless
//! platform's proxy and process supervision.
//!
//! # Requests
//!
//! Query parameters work on any path and combine in one request:
//!
//! | parameter    | effect                                                          |
//! |--------------|-----------------------------------------------------------------|
//! | `sleep=MS`   | sleep that long (async); `MS` is a number of milliseconds, or a number with a `ms`, `s` or `m` suffix |
//! | `prime=N`    | compute the largest prime `<= N` on a blocking thread (`N <= 1000000000`) |
//! | `bloat=MB`   | allocate and touch `MB` MiB, held until the response is built   |
//! | `status=CODE`| answer with that status (200..=599); the body still reports     |
//! | `crash=CODE` | exit the process at once with that code (0..=255), no response  |
//! | `reset=1`    | read the request body, count the request, then abort the TCP connection (RST) without responding |
//! | `bytes=N`    | append `N` bytes of `x` to the body                             |
//! | `drip=MS`    | send the `bytes` one at a time, `MS` apart (headers and report at once) |
//!
//! `sleep`, `prime` and `bloat` run concurrently, as in `autoscale-go`. The
//! body is one line per action, in this order:
//!
//! ```text
//! Hello {TARGET}!                               (only when TARGET is set)
//! Slept for 100.12 milliseconds.
//! The largest prime less than 10000 is 9973.    (or: There are no primes smaller than 1.)
//! Allocated 5 Mb of memory.
//! xxxxxxxx...                                   (bytes=N, no newline)
//! ```
//!
//! A parameter that does not parse gets a `400` naming it. Special paths:
//!
//! * `/headers`: the request headers as a JSON object (lower-case name to
//!   value, repeated headers joined with `", "`), plus `":method"`,
//!   `":path"` (path and query) and, when the request has one in its URI
//!   (HTTP/2), `":authority"`. Query parameters still apply; the JSON
//!   replaces the report (and `bytes` is ignored).
//! * `/stats`: `{"pid","revision","in_flight","max_in_flight","requests",
//!   "processed_resets","startup_ms"}` as JSON. Not counted itself.
//! * `/healthz`: `200 ok`. Not counted.
//! * `/echo` with `Connection: upgrade` and `Upgrade: P` (any protocol, e.g.
//!   `websocket`): `101 Switching Protocols` with `Upgrade: P`, then every
//!   byte received on the connection is sent back until the client closes.
//!   Not counted.
//!
//! Every response carries `x-instance: <pid>`; every counted one also
//! carries `x-in-flight: <requests in flight in this process when this one
//! started, itself included>`.
//!
//! # Environment
//!
//! | variable           | default     | meaning                                              |
//! |--------------------|-------------|------------------------------------------------------|
//! | `PORT`             | `8080`      | TCP port (`0` picks a free one)                      |
//! | `HOST`             | `127.0.0.1` | address or host name to bind                         |
//! | `TARGET`           | unset       | adds a first body line `Hello {TARGET}!`             |
//! | `K_REVISION`       | `""`        | reported as `revision` by `/stats`                   |
//! | `STARTUP_DELAY_MS` | `0`         | sleep this long before binding the port              |
//! | `EXIT_AT_START`    | unset       | exit at once with this code (0..=255), never listen  |
//! | `IGNORE_SIGTERM`   | `0`         | `1`: ignore SIGTERM (SIGINT still stops it)          |
//! | `IDLE_TIMEOUT_MS`  | `0` (none)  | close HTTP/1 keep-alive connections idle this long   |
//!
//! On start it prints `autoscale: listening on http://ADDR (ready N ms after
//! start)` to stdout. SIGTERM (unless ignored) or SIGINT stop accepting, let
//! in-flight requests finish, and exit 0.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

/// Name used as the prefix of every line this app prints.
const NAME: &str = "autoscale";

/// Largest `prime=N` accepted (the sieve needs `N / 16` bytes).
pub const MAX_PRIME: u64 = 1_000_000_000;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";
const X_INSTANCE: &str = "x-instance";
const X_IN_FLIGHT: &str = "x-in-flight";

/// The knobs of the autoscale app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address or host name bound by [`main_from_env`]. Env `HOST`.
    pub host: String,
    /// Port bound by [`main_from_env`]. Env `PORT`.
    pub port: u16,
    /// When set, the report starts with `Hello {target}!`. Env `TARGET`.
    pub target: Option<String>,
    /// Reported by `/stats`. Env `K_REVISION`.
    pub revision: String,
    /// How long [`main_from_env`] sleeps before binding. Env `STARTUP_DELAY_MS`.
    pub startup_delay: Duration,
    /// When set, [`main_from_env`] exits at once with this code, without
    /// listening. Env `EXIT_AT_START`.
    pub exit_at_start: Option<u8>,
    /// Whether SIGTERM is ignored. Env `IGNORE_SIGTERM`.
    pub ignore_sigterm: bool,
    /// Idle HTTP/1 keep-alive connections are closed after this long.
    /// Env `IDLE_TIMEOUT_MS` (`0` or unset: never).
    pub idle_timeout: Option<Duration>,
    /// Reported by `/stats` as `startup_ms`; [`main_from_env`] sets it to the
    /// time from its entry to listening.
    pub startup_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            target: None,
            revision: String::new(),
            startup_delay: Duration::ZERO,
            exit_at_start: None,
            ignore_sigterm: false,
            idle_timeout: None,
            startup_ms: 0,
        }
    }
}

impl Config {
    /// Reads the configuration from the environment (see the crate docs).
    ///
    /// Unset or empty variables take their defaults; a value that does not
    /// parse is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Config::from_env`], with an arbitrary variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |key: &str| lookup(key).filter(|v| !v.is_empty());
        let parse = |key: &str, what: &str| -> Result<Option<u64>, String> {
            var(key)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{key} must be {what}, got {v:?}"))
                })
                .transpose()
        };
        let millis = |key: &str| parse(key, "a number of milliseconds");

        let mut config = Self::default();
        if let Some(host) = var("HOST") {
            config.host = host;
        }
        if let Some(port) = parse("PORT", "a port number")? {
            config.port = u16::try_from(port)
                .map_err(|_| format!("PORT must be a port number, got {port}"))?;
        }
        config.target = var("TARGET");
        config.revision = var("K_REVISION").unwrap_or_default();
        if let Some(ms) = millis("STARTUP_DELAY_MS")? {
            config.startup_delay = Duration::from_millis(ms);
        }
        if let Some(code) = parse("EXIT_AT_START", "an exit code (0..=255)")? {
            config.exit_at_start = Some(
                u8::try_from(code)
                    .map_err(|_| format!("EXIT_AT_START must be 0..=255, got {code}"))?,
            );
        }
        if let Some(flag) = var("IGNORE_SIGTERM") {
            config.ignore_sigterm = parse_flag(&flag)
                .ok_or_else(|| format!("IGNORE_SIGTERM must be 1 or 0, got {flag:?}"))?;
        }
        config.idle_timeout = millis("IDLE_TIMEOUT_MS")?
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        Ok(config)
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Entry point of the `autoscale` binary (and of `skiff example autoscale`).
///
/// Reads the environment, honours `EXIT_AT_START` and `STARTUP_DELAY_MS`,
/// binds, prints the ready line and serves until SIGTERM (unless ignored) or
/// SIGINT. Returns 0 after a graceful stop, 1 if the server could not start,
/// 2 for a bad environment.
pub fn main_from_env() -> ExitCode {
    let start = Instant::now();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(code) = config.exit_at_start {
        eprintln!("{NAME}: exiting at start with code {code} as asked");
        return ExitCode::from(code);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{NAME}: cannot build the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Install the handlers first: a SIGTERM during the startup delay or
        // right after the ready line must be handled (or ignored), not fatal.
        let mut signals = ShutdownSignals::install(config.ignore_sigterm)?;
        if !config.startup_delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(config.startup_delay) => {}
                signal = signals.recv() => {
                    eprintln!("{NAME}: received {signal} while starting, exiting");
                    return Ok(());
                }
            }
        }
        let listener = bind(&config.host, config.port).await?;
        let addr = listener.local_addr()?;
        config.startup_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        println!(
            "{NAME}: listening on http://{addr} (ready {} ms after start)",
            config.startup_ms
        );
        serve_with_shutdown(listener, config, async move {
            let signal = signals.recv().await;
            eprintln!("{NAME}: received {signal}, draining connections");
        })
        .await
    });
    // A `prime` whose client went away may still be running on a blocking
    // thread; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `listener` until SIGTERM (unless `config.ignore_sigterm`) or
/// SIGINT, then shuts down gracefully.
///
/// The signal handlers are installed when this is called. Tests that want
/// to control the shutdown use [`serve_with_shutdown`] instead.
pub async fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let mut signals = ShutdownSignals::install(config.ignore_sigterm)?;
    serve_with_shutdown(listener, config, async move {
        signals.recv().await;
    })
    .await
}

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits for the open connections to finish their in-flight requests
/// (idle keep-alive connections are closed at once).
///
/// `host`, `port`, `startup_delay`, `exit_at_start` and `ignore_sigterm` are
/// not used here: they concern [`main_from_env`] and [`serve`].
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = Arc::new(State::new(&config));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    if let Some(idle) = config.idle_timeout {
        // Once a response is written, hyper starts this timer while waiting
        // for the next request head; if it fires first, the connection is
        // closed (FIN, no response). It also bounds how long the head of a
        // request may take to arrive, much like Node's `headersTimeout`.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(idle);
    }
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
        };
        // Best effort: a failure here only costs latency.
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let builder = Arc::clone(&builder);
        // Taken before spawning so a shutdown signalled meanwhile is seen.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let control = Arc::new(ConnControl::default());
            let io = TokioIo::new(ConnIo {
                stream,
                control: Arc::clone(&control),
            });
            let service = {
                let control = Arc::clone(&control);
                service_fn(move |req| handle(req, Arc::clone(&state), Arc::clone(&control)))
            };
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::select! {
                // Errors are clients going away, or a reset we asked for.
                _ = watcher.watch(conn) => {}
                // A `reset=1` request: drop the connection (and with it the
                // socket, which `ConnIo` turns into an RST) right away, even
                // for HTTP/2 where the handler runs on another task.
                () = control.abort.notified() => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Process-wide counters and the parts of the config the handler needs.
struct State {
    pid: u32,
    pid_header: HeaderValue,
    hello_line: Option<String>,
    revision: String,
    startup_ms: u64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    requests: AtomicU64,
    processed_resets: AtomicU64,
}

impl State {
    fn new(config: &Config) -> Self {
        let pid = std::process::id();
        Self {
            pid,
            pid_header: HeaderValue::from(pid),
            hello_line: config.target.as_ref().map(|t| format!("Hello {t}!\n")),
            revision: config.revision.clone(),
            startup_ms: config.startup_ms,
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            processed_resets: AtomicU64::new(0),
        }
    }

    fn stats_json(&self) -> Vec<u8> {
        let stats = serde_json::json!({
            "pid": self.pid,
            "revision": self.revision,
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "max_in_flight": self.max_in_flight.load(Ordering::SeqCst),
            "requests": self.requests.load(Ordering::SeqCst),
            "processed_resets": self.processed_resets.load(Ordering::SeqCst),
            "startup_ms": self.startup_ms,
        });
        let mut json = stats.to_string().into_bytes();
        json.push(b'\n');
        json
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight {
    state: Arc<State>,
    /// Requests in flight when this one started, itself included.
    level: u64,
}

impl InFlight {
    fn enter(state: Arc<State>) -> Self {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let level = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(level, Ordering::SeqCst);
        Self { state, level }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Shared between a connection's task, its socket and its requests.
#[derive(Default)]
struct ConnControl {
    /// Set by a `reset=1` request: the socket must be closed with an RST.
    reset: AtomicBool,
    /// Wakes the connection task so it drops the connection.
    abort: Notify,
}

impl ConnControl {
    fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.abort.notify_one();
    }
}

/// The accepted socket, as handed to hyper.
///
/// Once the connection is marked for reset it refuses to write (so no
/// response or FIN can leave), and when hyper drops it, it sets `SO_LINGER`
/// to zero so that closing the socket sends an RST instead of a FIN.
struct ConnIo {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection reset as asked",
    )
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_reset() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.control.is_reset() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.control.is_reset() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_reset() {
            // No FIN: the RST comes when the socket is dropped.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.control.is_reset() {
            // Closing a socket whose linger time is zero sends an RST. The
            // socket is non-blocking, so this cannot stall the runtime.
            let _ = self.stream.set_zero_linger();
        }
    }
}

/// Why a request ends without a response; hyper then drops the connection.
#[derive(Debug)]
enum NoResponse {
    /// `reset=1`: the connection is being reset.
    Reset,
    /// The request body could not be read.
    Body(hyper::Error),
}

impl fmt::Display for NoResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reset => f.write_str("connection reset as asked"),
            Self::Body(err) => write!(f, "cannot read the request body: {err}"),
        }
    }
}

impl std::error::Error for NoResponse {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    control: Arc<ConnControl>,
) -> Result<Response<ReplyBody>, NoResponse> {
    match req.uri().path() {
        "/healthz" => return Ok(reply(&state, StatusCode::OK, TEXT_PLAIN, "ok")),
        "/stats" => {
            let json = state.stats_json();
            return Ok(reply(&state, StatusCode::OK, APPLICATION_JSON, json));
        }
        "/echo" if req.headers().contains_key(hyper::header::UPGRADE) => {
            return Ok(echo(req, &state));
        }
        _ => {}
    }

    let in_flight = InFlight::enter(Arc::clone(&state));
    let mut response = respond(req, &state, &control).await?;
    response.headers_mut().insert(
        HeaderName::from_static(X_IN_FLIGHT),
        HeaderValue::from(in_flight.level),
    );
    drop(in_flight);
    Ok(response)
}

/// Switch to the protocol asked for and echo the bytes of the upgraded
/// connection.
fn echo(mut req: Request<Incoming>, state: &State) -> Response<ReplyBody> {
    let protocol = req.headers()[hyper::header::UPGRADE].clone();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
    });
    let mut response = reply(state, StatusCode::SWITCHING_PROTOCOLS, TEXT_PLAIN, "");
    let h = response.headers_mut();
    h.remove(CONTENT_TYPE);
    h.insert(hyper::header::UPGRADE, protocol);
    h.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    response
}

/// The counted part of [`handle`].
async fn respond(
    req: Request<Incoming>,
    state: &State,
    control: &ConnControl,
) -> Result<Response<ReplyBody>, NoResponse> {
    let params = match Params::parse(req.uri().query().unwrap_or("")) {
        Ok(params) => params,
        Err(msg) => return Ok(reply(state, StatusCode::BAD_REQUEST, TEXT_PLAIN, msg)),
    };
    if let Some(code) = params.crash {
        eprintln!("{NAME}: crashing with exit code {code} as asked");
        std::process::exit(code);
    }
    let headers_json = (req.uri().path() == "/headers").then(|| headers_json(&req));

    // Read (and discard) the whole body: `reset` must only happen once the
    // request has fully arrived, and it keeps the connection reusable.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(NoResponse::Body)?;
    }

    let report = match perform(&params).await {
        Ok(report) => report,
        Err(msg) => {
            return Ok(reply(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT_PLAIN,
                msg,
            ));
        }
    };

    if params.reset {
        state.processed_resets.fetch_add(1, Ordering::SeqCst);
        control.reset();
        return Err(NoResponse::Reset);
    }

    let status = params.status.unwrap_or(StatusCode::OK);
    let response = match headers_json {
        Some(json) => reply(state, status, APPLICATION_JSON, json),
        None => {
            let mut text = state.hello_line.clone().unwrap_or_default();
            text.push_str(&report.lines);
            let mut response = reply(state, status, TEXT_PLAIN, text);
            response.body_mut().fill = params.bytes;
            response.body_mut().drip = params.drip;
            response
        }
    };
    // Keep the memory until the response is ready.
    drop(report.bloat);
    Ok(response)
}

fn reply(
    state: &State,
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ReplyBody> {
    let mut response = Response::new(ReplyBody {
        head: body.into(),
        fill: 0,
        drip: None,
        timer: None,
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        HeaderName::from_static(X_INSTANCE),
        state.pid_header.clone(),
    );
    response
}

/// The request's headers as a JSON object, plus its method and path.
fn headers_json(req: &Request<Incoming>) -> Vec<u8> {
    let mut object = headers_map(req.headers());
    object.insert(":method".to_owned(), req.method().as_str().to_owned());
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    object.insert(":path".to_owned(), path);
    if let Some(authority) = req.uri().authority() {
        object.insert(":authority".to_owned(), authority.as_str().to_owned());
    }
    let mut json = serde_json::to_vec(&object).expect("a map of strings serializes");
    json.push(b'\n');
    json
}

fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        map.insert(name.as_str().to_owned(), values.join(", "));
    }
    map
}

/// The query parameters this app understands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Params {
    sleep: Option<Duration>,
    prime: Option<u64>,
    bloat_mb: Option<usize>,
    status: Option<StatusCode>,
    crash: Option<i32>,
    reset: bool,
    bytes: u64,
    drip: Option<Duration>,
}

impl Params {
    /// Parses a raw query string; unknown parameters are ignored, and a
    /// repeated one takes its last value.
    fn parse(query: &str) -> Result<Self, String> {
        let mut params = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |what: &str| format!("invalid {key}={value:?}: expected {what}\n");
            match key {
                "sleep" => {
                    params.sleep =
                        Some(parse_sleep(value).ok_or_else(|| {
                            bad("milliseconds, or a number with a ms, s or m suffix")
                        })?)
                }
                "prime" => {
                    params.prime = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n <= MAX_PRIME)
                            .ok_or_else(|| bad(&format!("an integer in 0..={MAX_PRIME}")))?,
                    )
                }
                "bloat" => {
                    params.bloat_mb = Some(
                        value
                            .parse::<usize>()
                            .ok()
                            .filter(|mb| mb.checked_mul(1 << 20).is_some())
                            .ok_or_else(|| bad("a number of megabytes"))?,
                    )
                }
                "status" => {
                    params.status = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|code| (200..=599).contains(code))
                            .and_then(|code| StatusCode::from_u16(code).ok())
                            .ok_or_else(|| bad("a status code in 200..=599"))?,
                    )
                }
                "crash" => {
                    params.crash = Some(
                        value
                            .parse::<u8>()
                            .map(i32::from)
                            .map_err(|_| bad("an exit code in 0..=255"))?,
                    )
                }
                "reset" => params.reset = parse_flag(value).ok_or_else(|| bad("1 or 0"))?,
                "bytes" => {
                    params.bytes = value.parse().map_err(|_| bad("a number of bytes"))?;
                }
                "drip" => {
                    params.drip =
                        Some(parse_sleep(value).ok_or_else(|| {
                            bad("milliseconds, or a number with a ms, s or m suffix")
                        })?)
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// `100`, `2.5` (milliseconds), `100ms`, `1.5s`, `1m`.
fn parse_sleep(value: &str) -> Option<Duration> {
    let (number, unit_secs) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, 1e-3)
    };
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(number * unit_secs).ok()
}

/// What `sleep`, `prime` and `bloat` did.
struct Report {
    /// One line per action, each ending in `\n`.
    lines: String,
    /// The `bloat` memory, to be freed once the response is built.
    bloat: Option<Vec<u8>>,
}

/// Runs `sleep`, `prime` and `bloat` concurrently.
async fn perform(params: &Params) -> Result<Report, String> {
    let sleep = async {
        let duration = params.sleep?;
        let start = Instant::now();
        tokio::time::sleep(duration).await;
        Some(format!(
            "Slept for {:.2} milliseconds.\n",
            start.elapsed().as_secs_f64() * 1e3
        ))
    };
    let prime = async {
        let n = params.prime?;
        Some(
            tokio::task::spawn_blocking(move || largest_prime_at_most(n))
                .await
                .map(|largest| match largest {
                    Some(p) => format!("The largest prime less than {n} is {p}.\n"),
                    None => format!("There are no primes smaller than {n}.\n"),
                })
                .map_err(|err| format!("prime failed: {err}\n")),
        )
    };
    let bloat = async {
        let mb = params.bloat_mb?;
        Some(
            tokio::task::spawn_blocking(move || allocate_mb(mb))
                .await
                .unwrap_or_else(|err| Err(format!("bloat failed: {err}\n"))),
        )
    };
    let (slept, prime, bloat) = tokio::join!(sleep, prime, bloat);

    let mut lines = slept.unwrap_or_default();
    if let Some(prime) = prime {
        lines.push_str(&prime?);
    }
    let bloat = bloat.transpose()?;
    if let Some(mb) = params.bloat_mb {
        lines.push_str(&format!("Allocated {mb} Mb of memory.\n"));
    }
    Ok(Report { lines, bloat })
}

/// Allocates `mb` MiB and writes every byte, so the memory is really used.
fn allocate_mb(mb: usize) -> Result<Vec<u8>, String> {
    let len = mb
        .checked_mul(1 << 20)
        .ok_or_else(|| format!("cannot allocate {mb} Mb\n"))?;
    let mut memory = Vec::new();
    memory
        .try_reserve_exact(len)
        .map_err(|err| format!("cannot allocate {mb} Mb: {err}\n"))?;
    memory.resize(len, 1);
    Ok(std::hint::black_box(memory))
}

/// The largest prime `<= n`, found with a sieve of Eratosthenes over the odd
/// numbers (so the work grows with `n`, as in `autoscale-go`).
pub fn largest_prime_at_most(n: u64) -> Option<u64> {
    if n < 2 {
        return None;
    }
    if n == 2 {
        return Some(2);
    }
    let n = usize::try_from(n).ok()?;
    // Bit `i` stands for the odd number `2i + 1`, for all odd numbers <= n.
    let len = (n - 1) / 2 + 1;
    let mut composite = vec![0u64; len.div_ceil(64)];
    let is_composite = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
    composite[0] |= 1; // 1 is not prime
    let mut i = 1;
    loop {
        let p = 2 * i + 1;
        if p * p > n {
            break;
        }
        if !is_composite(&composite, i) {
            // Odd multiples of p from p², 2p apart, i.e. p bits apart.
            let mut j = p * p / 2;
            while j < len {
                composite[j / 64] |= 1 << (j % 64);
                j += p;
            }
        }
        i += 1;
    }
    (0..len)
        .rev()
        .find(|&i| !is_composite(&composite, i))
        .map(|i| 2 * i as u64 + 1)
}

/// A response body: `head`, then `fill` bytes of `x`, streamed from a static
/// buffer so that `bytes=N` costs no allocation.
struct ReplyBody {
    head: Bytes,
    fill: u64,
    /// `drip`: the fill goes out one byte at a time, this long apart.
    drip: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

static XS: [u8; 16 * 1024] = [b'x'; 16 * 1024];

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.head.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.head)))));
        }
        if this.fill > 0
            && let Some(gap) = this.drip
        {
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            std::task::ready!(timer.as_mut().poll(cx));
            this.timer = None;
            this.fill -= 1;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))));
        }
        if this.fill > 0 {
            let chunk = this.fill.min(XS.len() as u64);
            this.fill -= chunk;
            let chunk = Bytes::from_static(&XS[..chunk as usize]);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.fill == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.head.len() as u64 + self.fill)
    }
}

/// Binds `host:port` with `SO_REUSEADDR` and a deep accept backlog.
async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let context = |err: io::Error| {
        io::Error::new(err.kind(), format!("cannot listen on {host}:{port}: {err}"))
    };
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(context)?
    {
        match bind_addr(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = Some(err),
        }
    }
    Err(context(last_err.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind")
    })))
}

fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Keeps the accept loop alive through transient errors: per-connection
/// ones are skipped, resource exhaustion (EMFILE and the like) backs off.
async fn accept_error(err: io::Error) {
    use io::ErrorKind::*;
    if !matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    ) {
        eprintln!("{NAME}: accept failed: {err}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM and SIGINT streams, registered up front.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    ignore_sigterm: bool,
}

impl ShutdownSignals {
    fn install(ignore_sigterm: bool) -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            ignore_sigterm,
        })
    }

    /// Waits for the first signal that stops the server and names it.
    async fn recv(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    if !self.ignore_sigterm {
                        return "SIGTERM";
                    }
                    eprintln!("{NAME}: ignoring SIGTERM as asked");
                }
                _ = self.int.recv() => return "SIGINT",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn config_defaults() {
        assert_eq!(Config::from_lookup(lookup(&[])).unwrap(), Config::default());
    }

    #[test]
    fn config_from_vars() {
        let config = Config::from_lookup(lookup(&[
            ("PORT", "9000"),
            ("HOST", "0.0.0.0"),
            ("TARGET", "Skiff"),
            ("K_REVISION", "autoscale-00001"),
            ("STARTUP_DELAY_MS", "250"),
            ("EXIT_AT_START", "3"),
            ("IGNORE_SIGTERM", "1"),
            ("IDLE_TIMEOUT_MS", "5000"),
        ]))
        .unwrap();
        assert_eq!(
            config,
            Config {
                host: "0.0.0.0".into(),
                port: 9000,
                target: Some("Skiff".into()),
                revision: "autoscale-00001".into(),
                startup_delay: Duration::from_millis(250),
                exit_at_start: Some(3),
                ignore_sigterm: true,
                idle_timeout: Some(Duration::from_secs(5)),
                startup_ms: 0,
            }
        );
        let config = Config::from_lookup(lookup(&[("IDLE_TIMEOUT_MS", "0")])).unwrap();
        assert_eq!(config.idle_timeout, None);
    }

    #[test]
    fn config_rejects_garbage() {
        for (key, value) in [
            ("PORT", "70000"),
            ("STARTUP_DELAY_MS", "soon"),
            ("EXIT_AT_START", "256"),
            ("IGNORE_SIGTERM", "maybe"),
            ("IDLE_TIMEOUT_MS", "-1"),
        ] {
            let err = Config::from_lookup(lookup(&[(key, value)])).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn primes() {
        let cases = [
            (0, None),
            (1, None),
            (2, Some(2)),
            (3, Some(3)),
            (4, Some(3)),
            (9, Some(7)),
            (10, Some(7)),
            (11, Some(11)),
            (25, Some(23)),
            (49, Some(47)),
            (100, Some(97)),
            (10_000, Some(9973)),
            (400_000, Some(399_989)),
            (1_000_000, Some(999_983)),
        ];
        for (n, expected) in cases {
            assert_eq!(largest_prime_at_most(n), expected, "n = {n}");
        }
        // Against trial division.
        let is_prime = |n: u64| {
            n >= 2
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for n in 0..2000 {
            let expected = (0..=n).rev().find(|&k| is_prime(k));
            assert_eq!(largest_prime_at_most(n), expected, "n = {n}");
        }
    }

    #[test]
    fn params() {
        let p = Params::parse("sleep=100&prime=50&bloat=2&status=503&bytes=7&reset=1&drip=5ms&x=y")
            .unwrap();
        assert_eq!(
            p,
            Params {
                sleep: Some(Duration::from_millis(100)),
                prime: Some(50),
                bloat_mb: Some(2),
                status: Some(StatusCode::SERVICE_UNAVAILABLE),
                crash: None,
                reset: true,
                bytes: 7,
                drip: Some(Duration::from_millis(5)),
            }
        );
        assert_eq!(Params::parse("").unwrap(), Params::default());
        assert_eq!(Params::parse("crash=3").unwrap().crash, Some(3));
        assert!(!Params::parse("reset=0").unwrap().reset);
        for bad in [
            "sleep=abc",
            "sleep=-1",
            "prime=x",
            "prime=1000000001",
            "bloat=-3",
            "status=99",
            "status=600",
            "crash=256",
            "reset=maybe",
            "bytes=-1",
        ] {
            let err = Params::parse(bad).unwrap_err();
            let key = bad.split('=').next().unwrap();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn sleep_units() {
        assert_eq!(parse_sleep("100"), Some(Duration::from_millis(100)));
        assert_eq!(parse_sleep("2.5"), Some(Duration::from_micros(2500)));
        assert_eq!(parse_sleep("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_sleep("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_sleep("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_sleep("NaN"), None);
        assert_eq!(parse_sleep(""), None);
    }

    #[test]
    fn bloat_touches_memory() {
        let memory = allocate_mb(2).unwrap();
        assert_eq!(memory.len(), 2 << 20);
        assert!(memory.iter().all(|b| *b == 1));
    }

    #[test]
    fn headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.append("x-one", HeaderValue::from_static("1"));
        let map = headers_map(&headers);
        assert_eq!(map["accept"], "a, b");
        assert_eq!(map["x-one"], "1");
    }

    #[tokio::test]
    async fn reply_body_streams_fill() {
        let body = ReplyBody {
            head: Bytes::from_static(b"head\n"),
            fill: 40_000,
            drip: None,
            timer: None,
        };
        assert_eq!(body.size_hint().exact(), Some(40_005));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 40_005);
        assert!(bytes.starts_with(b"head\n"));
        assert!(bytes[5..].iter().all(|b| *b == b'x'));

        // Dripped: one byte per frame.
        let mut body = ReplyBody {
            head: Bytes::from_static(b"h"),
            fill: 3,
            drip: Some(Duration::from_millis(1)),
            timer: None,
        };
        let mut frames = 0;
        while let Some(f) = body.frame().await {
            f.unwrap();
            frames += 1;
        }
        assert_eq!(frames, 4);
    }
}
