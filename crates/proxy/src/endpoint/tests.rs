use super::*;
use crate::activator::Backends;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An app that answers `Hello` to each request, up to `per_conn` on a
/// connection, then closes it a moment later. Counts the connections it
/// accepted and those it closed.
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

/// One GET through `ep`'s pool, its body read to the end and its lease
/// finished (the connection pooled again).
async fn get(ep: &Arc<Endpoint>) -> Vec<u8> {
    let backend = Backends::default().get("ns/rev");
    backend.set_endpoints(vec![ep.clone()]);
    let slot = Slot::new(backend.try_acquire(&[]).unwrap(), backend.clone());
    let mut req = Some(
        Request::get("/")
            .header("host", "app")
            .body(UpstreamRequestBody::Empty)
            .unwrap(),
    );
    let (resp, lease) = ep
        .send(&mut req, slot, &ConnOpts::DEFAULT, Instant::now())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    lease.finish(true);
    body.to_vec()
}

#[tokio::test]
async fn requests_one_after_another_share_a_pooled_connection() {
    let (addr, counts) = app(usize::MAX).await;
    let ep = Arc::new(Endpoint::new(addr, "ns/rev".into(), 1, false));
    for _ in 0..3 {
        assert_eq!(get(&ep).await, b"Hello");
    }
    assert_eq!(counts[0].load(Ordering::SeqCst), 1, "one connection");
}

#[tokio::test]
async fn a_connection_the_app_closed_in_the_pool_is_not_used() {
    let (addr, counts) = app(1).await;
    let ep = Arc::new(Endpoint::new(addr, "ns/rev".into(), 1, false));
    assert_eq!(get(&ep).await, b"Hello");
    // The app closes the pooled connection, and its task sees it.
    let pooled_closed = || {
        lock(&ep.idle[worker::index()])
            .iter()
            .all(|c| c.conn.sender.is_closed())
    };
    while counts[1].load(Ordering::SeqCst) == 0 || !pooled_closed() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(lock(&ep.idle[worker::index()]).len(), 1, "it was pooled");
    // The next request leaves it and opens a new one.
    assert_eq!(get(&ep).await, b"Hello");
    assert_eq!(counts[0].load(Ordering::SeqCst), 2);
}

/// What a scripted h2c app does with a request stream.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Answer `200` once the request has ended.
    Answer,
    /// Reset the stream with `REFUSED_STREAM` as soon as its HEADERS arrive.
    Refuse,
    /// As soon as its HEADERS arrive, send a GOAWAY whose last stream id is
    /// the one before it and close the connection: a stream refused in
    /// flight, as Go's server does when its idle timeout races a request.
    GoAway,
    /// Send a GOAWAY that counts the stream as processed, then close the
    /// connection without answering it.
    Hangup,
}

/// An h2c app that speaks HTTP/2 frames by hand, to refuse streams the way
/// hyper's server never does. Connection `i` follows `plans[i]`, stream by
/// stream (then `Answer`). Returns its address, the bodies of the requests
/// it answered, and the number of connections it accepted.
async fn scripted_h2c(
    plans: Vec<Vec<Act>>,
) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (a, n) = (answered.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let plan = plans.get(i).cloned().unwrap_or_default();
            tokio::spawn(follow(s, plan, a.clone()));
        }
    });
    (addr, answered, accepted)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

async fn follow(mut s: TcpStream, plan: Vec<Act>, answered: Arc<Mutex<Vec<Vec<u8>>>>) {
    const PREFACE: usize = 24;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut preface = false;
    let mut streams = 0;
    let mut bodies = std::collections::HashMap::<u32, Vec<u8>>::new();
    if s.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if !preface {
            if buf.len() < PREFACE {
                continue;
            }
            buf.drain(..PREFACE);
            preface = true;
        }
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
            let mut reply = Vec::new();
            match kind {
                SETTINGS if flags & ACK == 0 => reply = frame(SETTINGS, ACK, 0, &[]),
                HEADERS => {
                    let act = plan.get(streams).copied().unwrap_or(Act::Answer);
                    streams += 1;
                    let goaway = |last: u32| {
                        let mut p = last.to_be_bytes().to_vec();
                        p.extend(0u32.to_be_bytes()); // NO_ERROR
                        frame(GOAWAY, 0, 0, &p)
                    };
                    match act {
                        Act::Answer => {
                            bodies.insert(id, Vec::new());
                        }
                        Act::Refuse => reply = frame(RST_STREAM, 0, id, &7u32.to_be_bytes()),
                        Act::GoAway | Act::Hangup => {
                            let last = if let Act::GoAway = act {
                                id.saturating_sub(2)
                            } else {
                                id
                            };
                            // Close after the client did, reading all it sent: a
                            // close with unread input would reset the connection.
                            let _ = s.write_all(&goaway(last)).await;
                            let _ = s.shutdown().await;
                            while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
                            return;
                        }
                    }
                }
                DATA => {
                    if let Some(b) = bodies.get_mut(&id) {
                        b.extend_from_slice(&payload);
                    }
                }
                _ => {}
            }
            if matches!(kind, DATA | HEADERS)
                && flags & END_STREAM != 0
                && let Some(body) = bodies.remove(&id)
            {
                answered.lock().unwrap().push(body);
                // `:status: 200` is entry 8 of HPACK's static table.
                reply = frame(HEADERS, END_STREAM | 0x4, id, &[0x88]);
            }
            if !reply.is_empty() && s.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

/// Sends `req` to `ep` as the gateway does: again, up to three times in
/// all, while the app did not see it. Returns the reasons of the attempts
/// that were not sent, and how the last one ended.
async fn send_as_gateway(
    ep: &Arc<Endpoint>,
    req: Request<UpstreamRequestBody>,
) -> (Vec<String>, Result<u16, SendError>) {
    let backend = Backends::default().get("ns/rev");
    backend.set_endpoints(vec![ep.clone()]);
    let mut req = Some(req);
    let mut not_sent = Vec::new();
    loop {
        let slot = Slot::new(backend.try_acquire(&[]).unwrap(), backend.clone());
        match ep
            .send(&mut req, slot, &ConnOpts::DEFAULT, Instant::now())
            .await
        {
            Ok((resp, lease)) => {
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                lease.finish(true);
                return (not_sent, Ok(status));
            }
            Err(SendError::NotSent { reason, kind }) if not_sent.len() < 2 && req.is_some() => {
                assert_eq!(kind, NotSentKind::Refused, "{reason}");
                not_sent.push(reason);
            }
            Err(e) => return (not_sent, Err(e)),
        }
    }
}

fn post(body: &'static [u8]) -> Request<UpstreamRequestBody> {
    Request::post("/")
        .header("host", "app")
        .body(UpstreamRequestBody::Buffered(Some(
            bytes::Bytes::from_static(body),
        )))
        .unwrap()
}

fn get_request() -> Request<UpstreamRequestBody> {
    Request::get("/")
        .header("host", "app")
        .body(UpstreamRequestBody::Empty)
        .unwrap()
}

#[tokio::test]
async fn an_h2c_stream_refused_in_flight_by_a_goaway_goes_out_again_on_a_new_connection() {
    // The first stream is answered; the second, a POST, is in flight when
    // the GOAWAY that leaves it out arrives.
    let (addr, answered, accepted) = scripted_h2c(vec![vec![Act::Answer, Act::GoAway]]).await;
    let ep = Arc::new(Endpoint::new(addr, "ns/rev".into(), 1, true));
    let (not_sent, last) = send_as_gateway(&ep, get_request()).await;
    assert_eq!((not_sent.len(), last.unwrap()), (0, 200));
    let (not_sent, last) = send_as_gateway(&ep, post(b"hi")).await;
    assert_eq!(last.unwrap(), 200, "{not_sent:?}");
    assert_eq!(not_sent.len(), 1, "{not_sent:?}");
    assert!(
        not_sent[0].contains("sent a GOAWAY (NO_ERROR) that leaves the request's stream out"),
        "{not_sent:?}"
    );
    assert_eq!(*answered.lock().unwrap(), [b"".to_vec(), b"hi".to_vec()]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_h2c_stream_reset_with_refused_stream_goes_out_again() {
    let (addr, answered, accepted) = scripted_h2c(vec![vec![Act::Refuse]]).await;
    let ep = Arc::new(Endpoint::new(addr, "ns/rev".into(), 1, true));
    let (not_sent, last) = send_as_gateway(&ep, post(b"hi")).await;
    assert_eq!((not_sent.len(), last.unwrap()), (1, 200), "{not_sent:?}");
    assert!(not_sent[0].contains("REFUSED_STREAM"), "{not_sent:?}");
    assert_eq!(*answered.lock().unwrap(), [b"hi".to_vec()]);
    // The connection stays: only the stream was refused.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_h2c_stream_the_app_counted_as_processed_is_not_sent_again() {
    let (addr, answered, accepted) = scripted_h2c(vec![vec![Act::Hangup]]).await;
    let ep = Arc::new(Endpoint::new(addr, "ns/rev".into(), 1, true));
    let (not_sent, last) = send_as_gateway(&ep, get_request()).await;
    assert!(not_sent.is_empty(), "{not_sent:?}");
    assert!(matches!(last, Err(SendError::Failed { .. })), "{last:?}");
    assert!(answered.lock().unwrap().is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
