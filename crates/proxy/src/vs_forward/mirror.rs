//! Mirrored requests: a copy sent to another cluster and forgotten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http_body_util::BodyExt;

use crate::activator::Slot;
use crate::body::ProxyBody;
use crate::cluster::{Choice, Cluster};
use crate::istio::request::{host_of, port_of};
use crate::istio::route::SHADOW_SUFFIX;
use crate::istio::time::MonoTime;
use crate::replay::Head;

/// A mirrored request gets this long before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// The shadow host of a mirrored request (`host-shadow[:port]`).
pub(super) fn shadow_host(authority: &str) -> Option<HeaderValue> {
    let host = host_of(authority);
    let s = match port_of(authority) {
        Some(p) => format!("{host}{SHADOW_SUFFIX}:{p}"),
        None => format!("{host}{SHADOW_SUFFIX}"),
    };
    HeaderValue::from_str(&s).ok()
}

/// Send a copy of the request to `cluster` and forget it: no queueing, no
/// retries; the response is read and dropped.
pub(super) fn mirror(cluster: Arc<Cluster>, head: &Head) {
    let mut req = head.request();
    if let Some(h) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow_host)
    {
        req.headers_mut().insert(header::HOST, h);
    }
    tokio::spawn(async move {
        let Choice::Endpoint { member, ep } = cluster.choose(None, &[], MonoTime::now()) else {
            return;
        };
        let slot = Slot::new(ep.clone(), cluster.members[member].backend.clone());
        let guard = if ep.is_h2c() {
            None
        } else {
            match cluster.breaker.try_connection() {
                Some(g) => Some(g),
                None => return,
            }
        };
        let sent = tokio::time::timeout(MIRROR_TIMEOUT, async {
            let mut req = Some(req);
            if let Ok((resp, lease)) = ep.send(&mut req, slot, &cluster.opts, Instant::now()).await
            {
                // The body drives the connection and ends the lease.
                let body = ProxyBody::Upstream {
                    body: resp.into_body(),
                    lease: Some(lease),
                };
                let _ = body.collect().await;
            }
        });
        let _ = sent.await;
        drop(guard);
    });
}
