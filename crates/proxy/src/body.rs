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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequestBody::Client(b) => b.is_end_stream(),
            UpstreamRequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequestBody::Client(b) => b.size_hint(),
            UpstreamRequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Body of a response sent to the client.
pub enum ProxyBody {
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
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper does not poll a body that reports its end up front (204, 304,
        // HEAD, `content-length: 0`): such a body ended cleanly too.
        if let ProxyBody::Upstream { body, lease } = self
            && let Some(l) = lease.take()
        {
            l.finish(body.is_end_stream());
        }
    }
}
