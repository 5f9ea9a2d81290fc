//! An HTTP/1.1 connection to an instance, driven by the request that holds
//! it rather than by a task of its own.
//!
//! hyper's client connection is a future that does the I/O, and a sender
//! that hands it requests over a channel. Spawned as a task, each request
//! costs that task two polls and three cross-task wake-ups (the request
//! handed over, the response handed back, the body taken). Here the
//! request's own task drives the connection instead, about 1,300
//! instructions per request fewer (bench/gateway/instructions.sh): while it
//! waits for the response head ([`H1Conn::exchange`]), then while it streams
//! the response body ([`H1Conn::poll_body`]). A pooled connection is not
//! driven at all; the request that takes it finds out whether the app
//! closed it meanwhile.
//!
//! The connection is polled with a waker of its own, a [`Relay`] to the
//! holder's. Taking a body chunk wakes the connection (it may read the
//! next); that wake comes from the holder's own poll, which drives the
//! connection again before it waits, so the relay drops it instead of
//! waking the task a second time. A connection put back in the pool
//! relays to nothing: neither the next request handed to it nor the app
//! closing it wakes the task that used it last.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::UpstreamRequestBody;

type Driver = http1::Connection<TokioIo<TcpStream>, UpstreamRequestBody>;

/// Boxed where it is kept (a lease, the pool): it is large, and moves in
/// and out of the pool with every request.
pub(crate) struct H1Conn {
    sender: http1::SendRequest<UpstreamRequestBody>,
    /// The connection's I/O; `None` once it ended.
    driver: Option<Driver>,
    relay: Arc<Relay>,
    /// `relay` as a waker, made once per connection.
    waker: Waker,
    /// Requests it carried. Counted by the lease of each request.
    pub(crate) uses: u32,
    /// How long it may sit idle in the pool: set by the lease of each
    /// request, from that request's settings.
    pub(crate) idle_timeout: Duration,
}

/// The waker the connection is polled with: wakes the task that holds the
/// connection, unless muted.
struct Relay {
    task: AtomicWaker,
    muted: AtomicBool,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.muted.load(Ordering::Relaxed) {
            self.task.wake();
        }
    }
}

impl H1Conn {
    pub(crate) fn new(
        sender: http1::SendRequest<UpstreamRequestBody>,
        driver: Driver,
    ) -> Box<H1Conn> {
        let relay = Arc::new(Relay {
            task: AtomicWaker::new(),
            muted: AtomicBool::new(false),
        });
        Box::new(H1Conn {
            sender,
            driver: Some(driver),
            waker: Waker::from(relay.clone()),
            relay,
            uses: 0,
            idle_timeout: Duration::ZERO,
        })
    }

    /// Let the connection make progress (write the request, read the
    /// response); `cx` is woken when it can make more.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(d) = self.driver.as_mut() {
            self.relay.task.register(cx.waker());
            if Pin::new(d)
                .poll(&mut Context::from_waker(&self.waker))
                .is_ready()
            {
                self.driver = None;
            }
        }
    }

    /// Still to be driven by its holder (not ended).
    fn is_driven(&self) -> bool {
        self.driver.is_some()
    }

    /// Poll `f`, something the connection feeds (its body), in the
    /// holder's task. The wake-ups `f` causes the connection are dropped:
    /// the caller drives it again before it next waits on it.
    fn muted<T>(&self, f: impl FnOnce() -> T) -> T {
        self.relay.muted.store(true, Ordering::Relaxed);
        let r = f();
        self.relay.muted.store(false, Ordering::Relaxed);
        r
    }

    /// Send `request` and drive the connection until its response head.
    pub(crate) fn exchange(
        &mut self,
        request: Request<UpstreamRequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<UpstreamRequestBody>>>> + '_
    {
        Exchange {
            response: self.sender.try_send_request(request),
            conn: self,
        }
    }

    /// The response body ended: can the connection carry another request?
    /// From here on it wakes nobody until it is driven again.
    pub(crate) fn settle(&mut self) -> bool {
        if self.is_driven() && !self.sender.is_ready() {
            // Its last poll left it short of idle (the end of a chunked
            // body still unread, say): one more, with nobody to wake.
            self.drive(&mut Context::from_waker(Waker::noop()));
        }
        self.relay.task.take();
        self.is_driven() && self.sender.is_ready()
    }

    /// Poll the response `body` this connection feeds, driving the
    /// connection only when the body has nothing yet.
    pub(crate) fn poll_body(
        &mut self,
        mut body: Pin<&mut Incoming>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, hyper::Error>>> {
        if !self.is_driven() {
            return body.poll_frame(cx);
        }
        let noop = &mut Context::from_waker(Waker::noop());
        if let Poll::Ready(r) = self.muted(|| body.as_mut().poll_frame(noop)) {
            return Poll::Ready(r);
        }
        self.drive(cx);
        if !self.is_driven() {
            return body.poll_frame(cx);
        }
        self.muted(|| body.poll_frame(noop))
    }
}

pin_project_lite::pin_project! {
    /// [`H1Conn::exchange`]'s future: hyper's response future, polled
    /// after each drive of the connection. Not an `async` block: that holds
    /// hyper's future twice (as captured and pinned), and the request's
    /// future, which is copied whole, would carry both.
    struct Exchange<'a, F> {
        conn: &'a mut H1Conn,
        #[pin]
        response: F,
    }
}

impl<F: Future> Future for Exchange<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.conn.drive(cx);
        if !this.conn.is_driven() {
            // It ended, and has resolved the response.
            return this.response.poll(cx);
        }
        // The response comes from the connection, just driven with `cx`:
        // it needs no waker of its own.
        this.response.poll(&mut Context::from_waker(Waker::noop()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::tests::Count;
    use std::future::poll_fn;
    use std::net::SocketAddr;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An app that answers `Hello` to each request, up to `per_conn` on a
    /// connection (then closes it a moment later). Counts the connections
    /// it accepted and those it closed.
    async fn app(per_conn: usize) -> (SocketAddr, Arc<[AtomicUsize; 2]>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c[0].fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_conn {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nHello";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    drop(s);
                    c[1].fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, counts)
    }

    async fn connect(addr: SocketAddr) -> Box<H1Conn> {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (sender, driver) = http1::handshake(io).await.unwrap();
        H1Conn::new(sender, driver)
    }

    fn get() -> Request<UpstreamRequestBody> {
        Request::get("/")
            .header("host", "app")
            .body(UpstreamRequestBody::Empty)
            .unwrap()
    }

    /// Poll `f` with `waker` until it is ready, whether or not it wakes
    /// it: what the test counts is the wakes.
    async fn poll_with<T>(waker: &Waker, f: impl Future<Output = T>) -> T {
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(r) = f.as_mut().poll(&mut Context::from_waker(waker)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn read_body(conn: &mut H1Conn, waker: &Waker, resp: Response<Incoming>) -> Vec<u8> {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(f) =
            poll_with(waker, poll_fn(|cx| conn.poll_body(Pin::new(&mut body), cx))).await
        {
            if let Ok(d) = f.unwrap().into_data() {
                out.extend_from_slice(&d);
            }
        }
        out
    }

    #[tokio::test]
    async fn carries_one_request_after_another_without_a_task() {
        let (addr, counts) = app(usize::MAX).await;
        let mut conn = connect(addr).await;
        let waker = Waker::noop().clone();
        for _ in 0..3 {
            let resp = poll_with(&waker, conn.exchange(get())).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(read_body(&mut conn, &waker, resp).await, b"Hello");
            assert!(conn.settle(), "idle after its response");
        }
        assert_eq!(counts[0].load(Ordering::SeqCst), 1, "one connection");
    }

    #[tokio::test]
    async fn neither_the_body_nor_the_next_holder_wakes_the_last_holder() {
        let (addr, _) = app(usize::MAX).await;
        let mut conn = connect(addr).await;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let first = Waker::from(count.clone());
        let resp = poll_with(&first, conn.exchange(get())).await.unwrap();
        // Head and body came in one read: taking the body wakes nobody.
        let woken = count.0.load(Ordering::SeqCst);
        assert_eq!(read_body(&mut conn, &first, resp).await, b"Hello");
        assert!(conn.settle());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            woken,
            "the body woke its reader"
        );
        // Another task takes the connection: the first is not woken.
        let resp = conn.exchange(get()).await.unwrap();
        assert_eq!(
            read_body(&mut conn, &Waker::noop().clone(), resp).await,
            b"Hello"
        );
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            woken,
            "the next request woke the last holder"
        );
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_in_the_pool_hands_the_request_back() {
        let (addr, counts) = app(1).await;
        let mut conn = connect(addr).await;
        let resp = conn.exchange(get()).await.unwrap();
        assert_eq!(
            read_body(&mut conn, &Waker::noop().clone(), resp).await,
            b"Hello"
        );
        assert!(conn.settle());
        // The app closes it while nobody drives it.
        while counts[1].load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut e = conn.exchange(get()).await.unwrap_err();
        assert!(
            e.take_message().is_some(),
            "the request was not handed back: {}",
            e.into_error()
        );
        assert!(!conn.settle());
    }
}
