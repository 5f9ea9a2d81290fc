//! Body types of the data path, as enums rather than boxed trait objects so
//! that proxying a request allocates nothing for its bodies.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::endpoint::Lease;

/// Body of a request sent upstream.
#[derive(Debug)]
pub enum UpstreamRequestBody {
    /// The client's body, streamed.
    Client(Incoming),
    /// No body (a retried bodiless request).
    Empty,
    /// A body read in full beforehand, so that the request can be sent
    /// again (retries after a response, mirrors).
    Buffered(Option<Bytes>),
}

impl Body for UpstreamRequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamRequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            UpstreamRequestBody::Empty => Poll::Ready(None),
            UpstreamRequestBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequestBody::Client(b) => b.is_end_stream(),
            UpstreamRequestBody::Empty => true,
            UpstreamRequestBody::Buffered(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequestBody::Client(b) => b.size_hint(),
            UpstreamRequestBody::Empty => SizeHint::with_exact(0),
            UpstreamRequestBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Body of a response sent to the client.
pub enum ProxyBody {
    /// A response Skiff generated itself that is logged when it has been
    /// sent (or the client went away).
    Logged {
        body: Option<Bytes>,
        log: Option<Box<crate::access::Extras>>,
    },
    /// Streamed from an instance. The lease returns the upstream connection to
    /// its pool (and ends the request's in-flight count) when the body ends.
    Upstream {
        body: Incoming,
        lease: Option<Lease>,
    },
    /// A response Skiff generated itself.
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Full(Some(b.into()))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
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
            ProxyBody::Upstream { body, lease } => {
                let r = Pin::new(body).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
                        if let (Some(l), Some(d)) = (lease.as_mut(), f.data_ref()) {
                            l.sent(d.len());
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(l) = lease.take() {
                            l.finish(true);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(l) = lease.take() {
                            l.finish(false);
                        }
                    }
                    _ => {}
                }
                r
            }
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Logged { body, log } => match body.take() {
                Some(b) => {
                    if let Some(l) = log.as_mut() {
                        l.bytes_sent += b.len() as u64;
                    }
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                None => {
                    if let Some(l) = log.take() {
                        l.finish(true);
                    }
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Logged { body, .. } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Full(Some(b)) | ProxyBody::Logged { body: Some(b), .. } => {
                SizeHint::with_exact(b.len() as u64)
            }
            ProxyBody::Full(None) | ProxyBody::Logged { body: None, .. } => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper does not poll a body that reports its end up front (204, 304,
        // HEAD, `content-length: 0`): such a body ended cleanly too.
        match self {
            ProxyBody::Upstream { body, lease } => {
                if let Some(l) = lease.take() {
                    l.finish(body.is_end_stream());
                }
            }
            ProxyBody::Logged { log, .. } => {
                // A short local reply hyper did not poll (HEAD) is done too.
                if let Some(l) = log.take() {
                    l.finish(true);
                }
            }
            ProxyBody::Full(_) => {}
        }
    }
}
