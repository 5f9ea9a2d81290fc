//! Responses Skiff generates itself. Each carries `x-skiff-flags` with an
//! Envoy-style response flag and a plain-text body that says which hop failed
//! and why: the opposite of an empty reply.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ProxyBody;

pub const FLAGS_HEADER: &str = "x-skiff-flags";

/// Envoy response flags Skiff uses.
pub mod flags {
    /// No route matched the request.
    pub const NO_ROUTE: &str = "NR";
    /// No healthy (ready) upstream instance.
    pub const NO_HEALTHY_UPSTREAM: &str = "UH";
    /// Could not connect to the upstream.
    pub const UPSTREAM_CONNECTION_FAILURE: &str = "UF";
    /// The upstream closed the connection before responding.
    pub const UPSTREAM_CONNECTION_TERMINATION: &str = "UC";
    /// The upstream did not answer in time.
    pub const UPSTREAM_REQUEST_TIMEOUT: &str = "UT";
    /// Retries were exhausted.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: &str = "URX";
    /// The request from the client could not be read.
    pub const DOWNSTREAM_PROTOCOL_ERROR: &str = "DPE";
}

/// A local reply: `status`, flag header, `text/plain` body (newline added).
pub fn local_reply(status: StatusCode, flag: &'static str, body: String) -> Response<ProxyBody> {
    let mut body = body;
    body.push('\n');
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(FLAGS_HEADER, HeaderValue::from_static(flag));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
