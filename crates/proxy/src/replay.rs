//! A copy of a request's head, kept to send the request again: a retry
//! after the app saw it (Istio's default policy retries a 503), a mirror,
//! or a bodiless request written into a pooled connection the app was
//! closing (`Endpoint::send`).
//!
//! It is made for every request such a policy covers, and read only when a
//! retry happens. A clone of the `HeaderMap` costs two allocations and a
//! reference count per header, each undone when it is dropped: about 1,400
//! instructions per request (bench/gateway/instructions.sh, skiff-policy).
//! Here the headers are copied into one buffer instead, and parsed back only
//! for a request that goes out again.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::body::UpstreamRequestBody;

pub(crate) struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderLines,
    body: Option<Bytes>,
}

impl Head {
    /// `body`: the request's body read in full (`None`: it had none).
    pub(crate) fn new(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Head {
        Head {
            method: method.clone(),
            uri: uri.clone(),
            headers: HeaderLines::of(headers),
            body,
        }
    }

    /// The request again, as HTTP/1.1.
    pub(crate) fn request(&self) -> Request<UpstreamRequestBody> {
        let mut r = Request::new(match &self.body {
            Some(b) => UpstreamRequestBody::Buffered(Some(b.clone())),
            None => UpstreamRequestBody::Empty,
        });
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = self.headers.to_map();
        r
    }
}

/// Header fields as `name:value\n` lines, in the map's order (the lines of
/// a repeated header stay in theirs). Neither part can hold the separators:
/// a header name has no `:`, a header value no byte below 0x20 but tab.
struct HeaderLines(Vec<u8>);

impl HeaderLines {
    fn of(headers: &HeaderMap) -> HeaderLines {
        let mut b = Vec::with_capacity(headers.len() * 40);
        for (name, value) in headers {
            b.extend_from_slice(name.as_str().as_bytes());
            b.push(b':');
            b.extend_from_slice(value.as_bytes());
            b.push(b'\n');
        }
        HeaderLines(b)
    }

    fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in self.0.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                continue;
            };
            // Both were a valid name and value when copied.
            match (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(&line[colon + 1..]),
            ) {
                (Ok(n), Ok(v)) => {
                    map.append(n, v);
                }
                _ => tracing::warn!(
                    line = %String::from_utf8_lossy(line),
                    "a copied request header did not parse back; the retry goes without it"
                ),
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_back_as_they_were() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("ab.example.com"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        h.insert("x-empty", HeaderValue::from_static(""));
        h.insert("x-colons", HeaderValue::from_static("a:b::c"));
        h.insert("x-tab", HeaderValue::from_static("a\tb"));
        h.insert("x-obs", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let back = HeaderLines::of(&h).to_map();
        assert_eq!(back, h);
        let order: Vec<_> = back.get_all("x-forwarded-for").iter().collect();
        assert_eq!(order, ["10.0.0.1", "10.0.0.2, 10.0.0.3"]);
    }

    #[test]
    fn the_request_goes_out_again_as_http_1_1_with_its_body() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("2"));
        let uri: Uri = "/p?q=1".parse().unwrap();
        let head = Head::new(&Method::PUT, &uri, &h, Some(Bytes::from_static(b"hi")));
        for _ in 0..2 {
            let r = head.request();
            assert_eq!(r.method(), Method::PUT);
            assert_eq!(r.uri(), &uri);
            assert_eq!(r.version(), Version::HTTP_11);
            assert_eq!(r.headers(), &h);
            assert!(matches!(r.body(), UpstreamRequestBody::Buffered(Some(b)) if b == "hi"));
        }
        let empty = Head::new(&Method::GET, &uri, &HeaderMap::new(), None);
        assert!(matches!(empty.request().body(), UpstreamRequestBody::Empty));
        assert!(empty.request().headers().is_empty());
    }
}
