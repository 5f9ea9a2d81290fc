//! HTTP/1.1 protocol upgrades (websockets) through the gateway. The request
//! keeps the hop-by-hop headers the upgrade needs (`Upgrade`,
//! `Connection: upgrade`) and goes to the instance on a connection of its
//! own; when the instance answers `101 Switching Protocols`, the client
//! gets the 101, both sides are upgraded by hyper and the bytes are copied
//! both ways until either side closes. The request's slot at the instance
//! (its `containerConcurrency` share) is held for as long as the upgraded
//! stream lives, as Knative's queue-proxy counts a websocket as a request.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::activator::Slot;
use crate::body::{ProxyBody, UpstreamRequestBody};
use crate::endpoint::{ConnOpts, Endpoint, Lease, SendError};
use crate::headers;

/// Does this HTTP/1.1 request ask to switch protocols?
pub(crate) fn wanted(version: Version, h: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Strip hop-by-hop headers except those the upgrade needs.
pub(crate) fn keep_upgrade_headers(h: &mut HeaderMap) {
    let upgrade = h.remove(header::UPGRADE);
    headers::strip_hop_by_hop(h);
    if let Some(u) = upgrade {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Send an upgrade request to `ep` on `slot`; on 101, splice the client's
/// connection (`downstream`) and the instance's. `hold` (breaker guards,
/// say) lives as long as the exchange.
pub(crate) async fn forward<H: Send + 'static>(
    ep: &Arc<Endpoint>,
    req: Request<UpstreamRequestBody>,
    downstream: OnUpgrade,
    slot: Slot,
    opts: &ConnOpts,
    hold: H,
) -> Result<Response<ProxyBody>, SendError> {
    let mut resp = ep.send_upgrade(req, opts).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Not upgraded: an ordinary response on a connection of its own.
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        return Ok(Response::from_parts(
            parts,
            ProxyBody::Upstream {
                body,
                lease: Some(Lease::without_connection(slot)),
            },
        ));
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let addr = ep.addr;
    tokio::spawn(async move {
        let _held = (slot, hold);
        let (up, down) = match tokio::try_join!(upstream, downstream) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(endpoint = %addr, "upgrade failed: {e}");
                return;
            }
        };
        let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(endpoint = %addr, "upgraded stream ended: {e}");
        }
    });
    let (mut parts, _) = resp.into_parts();
    keep_upgrade_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_keep_what_the_upgrade_needs() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("sec-websocket-key", HeaderValue::from_static("x"));
        assert!(wanted(Version::HTTP_11, &h));
        assert!(!wanted(Version::HTTP_2, &h));
        keep_upgrade_headers(&mut h);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert!(!h.contains_key("keep-alive"));
        assert!(h.contains_key("sec-websocket-key"));
        let mut plain = HeaderMap::new();
        plain.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!wanted(Version::HTTP_11, &plain), "no Connection: upgrade");
    }
}
