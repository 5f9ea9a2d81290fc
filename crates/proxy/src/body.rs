//! Body types of the data path, as enums rather than boxed trait objects so
//! that proxying a request allocates nothing for its bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::deadline::Timer;
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

/// Why a response body stopped before its end.
#[derive(Debug)]
pub enum BodyError {
    /// The instance's connection failed.
    Upstream(hyper::Error),
    /// The revision's `timeoutSeconds` or `idleTimeoutSeconds` ran out
    /// while the response streamed: it is cut, as Knative's queue-proxy
    /// cuts it (the client sees an incomplete response, never a complete
    /// one that is short).
    Timeout(&'static str),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Upstream(e) => write!(f, "upstream: {e}"),
            BodyError::Timeout(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Upstream(e) => Some(e),
            BodyError::Timeout(_) => None,
        }
    }
}

/// A revision's limits on a response that is still streaming: the whole
/// request within `timeoutSeconds` of its start, and (if set) no gap
/// between body chunks longer than `idleTimeoutSeconds`. The timer is only
/// created when the body has to wait, so a response that arrives whole
/// costs nothing.
pub(crate) struct StreamLimits {
    total: tokio::time::Instant,
    idle: Option<Duration>,
    /// When the last body chunk came (idle timeout only).
    last_data: tokio::time::Instant,
    /// A worker deadline, not a tokio timer (see `deadline`).
    timer: Option<Timer>,
}

impl StreamLimits {
    pub(crate) fn new(total: tokio::time::Instant, idle: Option<Duration>) -> StreamLimits {
        StreamLimits {
            total,
            idle,
            // Only the idle timeout reads it: no clock read without one.
            last_data: if idle.is_some() {
                tokio::time::Instant::now()
            } else {
                total
            },
            timer: None,
        }
    }

    #[inline]
    pub(crate) fn data(&mut self) {
        if self.idle.is_some() {
            self.last_data = tokio::time::Instant::now();
        }
    }

    /// Ready with the reason when a limit ran out.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        let idle_at = self.idle.map(|d| self.last_data + d);
        let (at, why) = match idle_at {
            Some(i) if i < self.total => (
                i,
                "the response paused longer than the revision's idleTimeoutSeconds",
            ),
            _ => (
                self.total,
                "the response did not finish in time (the revision's timeoutSeconds or the route's timeout)",
            ),
        };
        let timer = self.timer.get_or_insert_with(|| Timer::new(at));
        if timer.deadline() != at {
            timer.reset(at);
        }
        timer.poll_expired(cx).map(|()| why)
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
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, lease } => {
                let r = Pin::new(body).poll_frame(cx);
                if r.is_pending()
                    && let Some(l) = lease.as_mut()
                    && let Some(limits) = l.limits.as_mut()
                    && let Poll::Ready(why) = limits.poll_expired(cx)
                {
                    if let Some(l) = lease.take() {
                        l.finish(false);
                    }
                    return Poll::Ready(Some(Err(BodyError::Timeout(why))));
                }
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
                r.map_err(BodyError::Upstream)
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
