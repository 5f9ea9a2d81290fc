//! `hyper-proxy LISTEN UPSTREAM [THREADS]`: the floor under Skiff's gateway
//! in `bench/gateway`.
//!
//! A reverse proxy that is nothing but hyper and tokio, laid out the way
//! Skiff's gateway is: one single-threaded runtime per thread, each accepting
//! on its own `SO_REUSEPORT` listener; HTTP/1.1 and h2c on one port
//! (hyper-util's auto server); a per-thread pool of HTTP/1.1 connections to
//! the one upstream, a connection going back to the pool when its response
//! body has ended. It does none of Skiff's work: no routing, no header
//! rules, no timeouts, no accounting, no retries, no metrics. The gap
//! between it and Skiff is what that work costs; the gap between it and
//! nginx is what the chosen stack costs.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpStream;

thread_local! {
    /// This thread's idle upstream connections.
    static POOL: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream, threads) = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\nusage: hyper-proxy LISTEN UPSTREAM [THREADS]");
            std::process::exit(2);
        }
    };
    // Bind once up front so that a bad address fails here, and so that
    // port 0 resolves to one port for every thread.
    let first = match bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let listen = first.local_addr().expect("a bound socket has an address");
    println!("hyper-proxy listening on {listen}, upstream {upstream}, {threads} thread(s)");
    let mut first = Some(first);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let socket = first.take();
            std::thread::Builder::new()
                .name(format!("hyper-proxy-{i}"))
                .spawn(move || worker(socket, listen, upstream))
                .expect("cannot start a thread")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn parse(args: &[String]) -> Result<(SocketAddr, SocketAddr, usize), String> {
    let addr = |i: usize, what: &str| -> Result<SocketAddr, String> {
        let s = args.get(i).ok_or(format!("{what} is missing"))?;
        s.parse().map_err(|e| format!("{what} '{s}': {e}"))
    };
    let threads = match args.get(3) {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("THREADS '{s}' is not a positive number"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok((addr(1, "LISTEN")?, addr(2, "UPSTREAM")?, threads))
}

/// A listening socket with `SO_REUSEPORT`, so every thread can have its own.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

fn worker(socket: Option<std::net::TcpListener>, listen: SocketAddr, upstream: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start a runtime");
    rt.block_on(async move {
        let socket = match socket {
            Some(s) => s,
            None => bind(listen).expect("cannot open a second listener on the same port"),
        };
        let listener = tokio::net::TcpListener::from_std(socket).expect("register listener");
        let server = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| forward(req, upstream));
                let _ = server
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut sender = match checkout(upstream).await {
        Ok(s) => s,
        Err(e) => return Ok(bad_gateway(format!("cannot connect to {upstream}: {e}\n"))),
    };
    Ok(match sender.send_request(req).await {
        Ok(resp) => resp.map(|body| ProxyBody::Upstream {
            body,
            sender: Some(sender),
        }),
        Err(e) => bad_gateway(format!("upstream {upstream}: {e}\n")),
    })
}

/// An idle pooled connection, or a new one.
async fn checkout(
    upstream: SocketAddr,
) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error>> {
    while let Some(s) = POOL.with(|p| p.borrow_mut().pop()) {
        if s.is_ready() {
            return Ok(s);
        }
    }
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn bad_gateway(why: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from(why))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// The upstream's response body, which gives its connection back to this
/// thread's pool once it has ended.
enum ProxyBody {
    Upstream {
        body: Incoming,
        sender: Option<SendRequest<Incoming>>,
    },
    Full(Option<Bytes>),
}

impl ProxyBody {
    fn check_in(sender: &mut Option<SendRequest<Incoming>>) {
        if let Some(s) = sender.take() {
            POOL.with(|p| p.borrow_mut().push(s));
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, sender } => {
                let r = Pin::new(body).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => ProxyBody::check_in(sender),
                    Poll::Ready(Some(Err(_))) => *sender = None,
                    _ => {}
                }
                r
            }
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper drops a body without polling its end when it knows the
        // length: a body that ended is as good as one polled to its end.
        if let ProxyBody::Upstream { body, sender } = self
            && body.is_end_stream()
        {
            ProxyBody::check_in(sender);
        }
    }
}
