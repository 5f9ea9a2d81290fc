//! `hello`: the Skiff equivalent of Knative's `helloworld-go` sample.
//!
//! Every request, whatever its method or path, gets `200 Hello {TARGET}!\n`.
//! It is the backend of a throughput benchmark, so the hot path does as
//! little as possible: the body is built once as [`Bytes`] and every response
//! only clones it (a reference count bump).
//!
//! Environment variables (read by [`Config::from_env`]):
//!
//! | variable        | default     | meaning                                         |
//! |-----------------|-------------|-------------------------------------------------|
//! | `PORT`          | `8080`      | TCP port to listen on (`0` picks a free one)    |
//! | `HOST`          | `127.0.0.1` | address (or host name) to bind                  |
//! | `TARGET`        | `World`     | who to greet                                    |
//! | `HELLO_THREADS` | `1`         | `> 1` selects a multi-thread runtime with N workers |
//!
//! On start it prints `hello: listening on http://ADDR (ready N ms after start)`
//! to stdout. SIGTERM or SIGINT stop accepting, let in-flight requests finish,
//! and exit 0.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};

/// Name used as the prefix of every line this app prints.
const NAME: &str = "hello";

/// Content type of every response (the same one Go's `helloworld-go` sends).
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The knobs of the hello app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Who to greet: the body is `Hello {target}!\n`. Env `TARGET`.
    pub target: String,
    /// Runtime worker threads used by [`main_from_env`]: `1` means a
    /// current-thread runtime. Env `HELLO_THREADS`.
    pub threads: usize,
    /// Address or host name to bind in [`main_from_env`]. Env `HOST`.
    pub host: String,
    /// Port to bind in [`main_from_env`]. Env `PORT`.
    pub port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: "World".to_owned(),
            threads: 1,
            host: "127.0.0.1".to_owned(),
            port: 8080,
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
        let mut config = Self::default();
        if let Some(target) = var("TARGET") {
            config.target = target;
        }
        if let Some(host) = var("HOST") {
            config.host = host;
        }
        if let Some(port) = var("PORT") {
            config.port = port
                .trim()
                .parse()
                .map_err(|_| format!("PORT must be a port number, got {port:?}"))?;
        }
        if let Some(threads) = var("HELLO_THREADS") {
            config.threads = threads
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    format!("HELLO_THREADS must be a positive integer, got {threads:?}")
                })?;
        }
        Ok(config)
    }

    /// The response body, `Hello {target}!\n`.
    pub fn body(&self) -> Bytes {
        Bytes::from(format!("Hello {}!\n", self.target))
    }
}

/// Entry point of the `hello` binary (and of `skiff example hello`).
///
/// Reads the environment, builds the runtime, binds, prints the ready line,
/// and serves until SIGTERM or SIGINT. Returns 0 after a graceful stop, 1 if
/// the server could not start, 2 for a bad environment.
pub fn main_from_env() -> ExitCode {
    let start = Instant::now();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = if config.threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{NAME}: cannot build the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Install the handlers before listening, so that a SIGTERM sent as
        // soon as the ready line appears is handled rather than fatal.
        let signals = ShutdownSignals::install()?;
        let listener = bind(&config.host, config.port).await?;
        let addr = listener.local_addr()?;
        println!(
            "{NAME}: listening on http://{addr} (ready {} ms after start)",
            start.elapsed().as_millis()
        );
        serve_with_shutdown(listener, config, async move {
            let signal = signals.recv().await;
            eprintln!("{NAME}: received {signal}, draining connections");
        })
        .await
    });
    // Do not wait for blocking tasks (there are none in normal operation).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `listener` until SIGTERM or SIGINT, then shuts down gracefully.
///
/// The signal handlers are installed when this is called. Tests that want
/// to control the shutdown use [`serve_with_shutdown`] instead.
pub async fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let signals = ShutdownSignals::install()?;
    serve_with_shutdown(listener, config, async move {
        signals.recv().await;
    })
    .await
}

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits for the open connections to finish their in-flight requests
/// (idle keep-alive connections are closed at once).
///
/// `config.threads`, `config.host` and `config.port` are not used here:
/// the listener and the runtime belong to the caller.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let body = config.body();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).pipeline_flush(true);
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
        let body = body.clone();
        let builder = Arc::clone(&builder);
        // Taken before spawning so a shutdown signalled meanwhile is seen.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(hello_response(&body)))
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // Errors are clients going away mid-request: nothing to do.
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn hello_response(body: &Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.clone()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
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
}

impl ShutdownSignals {
    fn install() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first signal and names it.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
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
        let config = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.body(), Bytes::from_static(b"Hello World!\n"));
        assert_eq!(config.port, 8080);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.threads, 1);
    }

    #[test]
    fn config_from_vars() {
        let config = Config::from_lookup(lookup(&[
            ("TARGET", "Skiff"),
            ("PORT", "9090"),
            ("HOST", "0.0.0.0"),
            ("HELLO_THREADS", "4"),
        ]))
        .unwrap();
        assert_eq!(config.body(), Bytes::from_static(b"Hello Skiff!\n"));
        assert_eq!(config.port, 9090);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.threads, 4);
    }

    #[test]
    fn config_empty_values_are_defaults() {
        let config = Config::from_lookup(lookup(&[
            ("TARGET", ""),
            ("PORT", ""),
            ("HELLO_THREADS", ""),
        ]))
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn config_rejects_garbage() {
        let err = Config::from_lookup(lookup(&[("PORT", "http")])).unwrap_err();
        assert!(err.contains("PORT"), "{err}");
        let err = Config::from_lookup(lookup(&[("HELLO_THREADS", "0")])).unwrap_err();
        assert!(err.contains("HELLO_THREADS"), "{err}");
    }
}
