//! PROXY protocol v1 (text) and v2 (binary) on accepted connections, as a
//! cloud load balancer (AWS NLB) sends it: the client's real address before
//! the first byte of TLS or HTTP. Bytes read past the header are handed
//! back through [`Rewind`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Longest v1 header (with CRLF).
const V1_MAX: usize = 107;

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxied connection's source and destination.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `UNKNOWN` (v1) or LOCAL / unspecified family (v2, e.g. the load
    /// balancer's own health checks): use the connection's addresses.
    Local,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("PROXY protocol: {}", msg.into()),
    )
}

/// Parse a complete header at the start of `buf`: `Ok(Some((header,
/// length)))`, `Ok(None)` if more bytes are needed.
pub fn parse(buf: &[u8]) -> io::Result<Option<(ProxyHeader, usize)>> {
    if buf.len() < V2_SIG.len().min(6) {
        return Ok(None);
    }
    if buf.starts_with(b"PROXY ") {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() >= V1_MAX {
                Err(bad("v1 header longer than 107 bytes"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[6..end]).map_err(|_| bad("v1 header is not ASCII"))?;
        let parts: Vec<&str> = line.split(' ').collect();
        let header = match parts.as_slice() {
            ["UNKNOWN", ..] => ProxyHeader::Local,
            [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
                let ip = |s: &str| -> io::Result<IpAddr> {
                    let ip: IpAddr = s.parse().map_err(|_| bad(format!("bad address {s:?}")))?;
                    if (*proto == "TCP4") != ip.is_ipv4() {
                        return Err(bad(format!("{s} is not {proto}")));
                    }
                    Ok(ip)
                };
                let port = |s: &str| s.parse::<u16>().map_err(|_| bad(format!("bad port {s:?}")));
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(src)?, port(sport)?),
                    destination: SocketAddr::new(ip(dst)?, port(dport)?),
                }
            }
            _ => return Err(bad(format!("bad v1 header {line:?}"))),
        };
        return Ok(Some((header, end + 2)));
    }
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] != V2_SIG[..n] {
        return Err(bad("no PROXY header (expected v1 or v2)"));
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(bad(format!("unsupported version {}", ver_cmd >> 4)));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let header = match (ver_cmd & 0x0f, buf[13] >> 4) {
        (0, _) => ProxyHeader::Local,
        (1, 1) if body.len() >= 12 => {
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[o],
                    body[o + 1],
                    body[o + 2],
                    body[o + 3],
                ))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        (1, 2) if body.len() >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        // UNIX sockets and unspecified families carry nothing we can use.
        (1, _) => ProxyHeader::Local,
        (cmd, _) => return Err(bad(format!("unknown v2 command {cmd}"))),
    };
    Ok(Some((header, 16 + len)))
}

/// A connection that did not start with a valid PROXY header.
pub struct Rejected<IO> {
    pub error: io::Error,
    /// The connection, to answer on (a client that spoke HTTP directly
    /// gets told why).
    pub io: IO,
    /// What it sent.
    pub received: Vec<u8>,
}

impl<IO> std::fmt::Debug for Rejected<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} after {} bytes", self.error, self.received.len())
    }
}

impl<IO> Rejected<IO> {
    /// The client sent an HTTP/1 request line instead of a PROXY header.
    pub fn looks_like_http(&self) -> bool {
        let line = self
            .received
            .split(|b| *b == b'\n')
            .next()
            .unwrap_or_default();
        line.windows(5).any(|w| w == b"HTTP/")
            && line
                .iter()
                .take_while(|b| **b != b' ')
                .all(u8::is_ascii_uppercase)
    }
}

/// Read the header from `io`; the bytes after it come back out of the
/// returned [`Rewind`].
pub async fn read_header<IO: AsyncRead + Unpin>(
    mut io: IO,
) -> Result<(ProxyHeader, Rewind<IO>), Rejected<IO>> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = match io.read(&mut chunk).await {
            Ok(0) => {
                return Err(Rejected {
                    error: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the PROXY header",
                    ),
                    io,
                    received: buf,
                });
            }
            Ok(n) => n,
            Err(error) => {
                return Err(Rejected {
                    error,
                    io,
                    received: buf,
                });
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let error = match parse(&buf) {
            Ok(Some((header, len))) => {
                buf.drain(..len);
                return Ok((
                    header,
                    Rewind {
                        prefix: buf,
                        pos: 0,
                        inner: io,
                    },
                ));
            }
            Ok(None) if buf.len() > 16 + usize::from(u16::MAX) => bad("header too long"),
            Ok(None) => continue,
            Err(e) => e,
        };
        return Err(Rejected {
            error,
            io,
            received: buf,
        });
    }
}

/// An I/O stream with some already-read bytes put back in front.
#[derive(Debug)]
pub struct Rewind<IO> {
    prefix: Vec<u8>,
    pos: usize,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Vec<u8>, inner: IO) -> Rewind<IO> {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }

    pub fn inner(&self) -> &IO {
        &self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIG.to_vec();
        b.push(0x20 | cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v1_headers() {
        let (h, n) = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET /")
            .unwrap()
            .unwrap();
        assert_eq!(n, 43);
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                source: "203.0.113.7:56324".parse().unwrap(),
                destination: "10.0.0.1:443".parse().unwrap()
            }
        );
        let (h, _) = parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(h, ProxyHeader::Proxied { .. }));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            ProxyHeader::Local
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), None, "incomplete");
        for bad in [
            &b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n"[..],
            b"PROXY TCP4 a b c d\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b"PROXY ".as_slice(), &[b'x'; 200]].concat()).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut body = vec![203, 0, 113, 7, 10, 0, 0, 1];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a TLV, skipped
        let b = v2(1, 0x11, &body);
        let (h, n) = parse(&b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                source: "203.0.113.7:56324".parse().unwrap(),
                destination: "10.0.0.1:443".parse().unwrap()
            }
        );
        assert_eq!(
            parse(&v2(0, 0, &[])).unwrap().unwrap().0,
            ProxyHeader::Local,
            "health check"
        );
        assert_eq!(parse(&b[..20]).unwrap(), None);
        let mut wrong = b.clone();
        wrong[12] = 0x11;
        assert!(parse(&wrong).is_err());
    }

    #[tokio::test]
    async fn bytes_after_the_header_are_kept() {
        let (mut client, server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client
                .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
        });
        let (h, mut rest) = read_header(server).await.unwrap();
        assert!(matches!(h, ProxyHeader::Proxied { .. }));
        let mut out = String::new();
        rest.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "GET / HTTP/1.1\r\n\r\n");

        // A client that talks HTTP straight to the listener is recognized.
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let rejected = read_header(server).await.unwrap_err();
        assert!(rejected.looks_like_http(), "{rejected:?}");
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"\x16\x03\x01\x00\xff garbage\n")
            .await
            .unwrap();
        assert!(!read_header(server).await.unwrap_err().looks_like_http());
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing never panics.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&b);
            let mut v = V2_SIG.to_vec();
            v.extend_from_slice(&b);
            let _ = parse(&v);
            let mut t = b"PROXY ".to_vec();
            t.extend_from_slice(&b);
            let _ = parse(&t);
        }
    }
}
