//! A borrowed view of the request parts routing and policies look at. Built
//! once per request from `http::request::Parts`; every accessor borrows.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::HeaderName;

#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// `http` or `https` (the downstream connection's scheme).
    pub scheme: &'a str,
    /// As received: `host[:port]`.
    pub authority: &'a str,
    /// The path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The listener port the request arrived on.
    pub port: u16,
}

impl<'a> RequestView<'a> {
    /// View of `parts`; the authority is the URI's (HTTP/2, absolute form)
    /// or the Host header.
    pub fn new(parts: &'a http::request::Parts, scheme: &'a str, port: u16) -> RequestView<'a> {
        RequestView::of(&parts.method, &parts.uri, &parts.headers, scheme, port)
    }

    /// View of `req`'s head.
    pub fn of_request<B>(req: &'a http::Request<B>, scheme: &'a str, port: u16) -> RequestView<'a> {
        RequestView::of(req.method(), req.uri(), req.headers(), scheme, port)
    }

    /// View of a request head held apart (method, URI, headers).
    pub fn of(
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a HeaderMap,
        scheme: &'a str,
        port: u16,
    ) -> RequestView<'a> {
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        RequestView {
            method: method.as_str(),
            scheme,
            authority,
            path: uri.path(),
            query: uri.query(),
            headers,
            port,
        }
    }

    /// The authority without its port.
    pub fn host(&self) -> &'a str {
        host_of(self.authority)
    }

    /// A header's value as Envoy's matchers see it: several values are
    /// joined with `,` (allocates only then). Pseudo-headers (`:path`,
    /// `:method`, `:authority`, `:scheme`) name the request line.
    pub fn header(&self, name: &HeaderName) -> Option<Cow<'a, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let first = first.to_str().ok()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = String::from(first);
                joined.push(',');
                joined.push_str(second.to_str().ok()?);
                for v in values {
                    joined.push(',');
                    joined.push_str(v.to_str().ok()?);
                }
                Some(Cow::Owned(joined))
            }
        }
    }

    /// A pseudo-header's value (`:path` is path and query, as on the wire).
    pub fn pseudo(&self, name: &str) -> Option<&'a str> {
        match name {
            ":method" => Some(self.method),
            ":authority" => Some(self.authority),
            ":scheme" => Some(self.scheme),
            ":path" => Some(self.path),
            _ => None,
        }
    }

    /// The first value of query parameter `name` (raw, not decoded, as
    /// Envoy's query parameter matcher sees it); `Some("")` for `?name`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// A cookie's value from the Cookie header(s).
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }
}

/// The host part of an authority (no port; IPv6 brackets kept).
pub fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    // memrchr: the host is on every request's path, and a byte-at-a-time
    // scan of a typical Knative host costs several times as much.
    match memchr::memrchr(b':', authority.as_bytes()) {
        Some(i) => &authority[..i],
        None => authority,
    }
}

/// The port of an authority, if it names one.
pub fn port_of(authority: &str) -> Option<u16> {
    let rest = if authority.starts_with('[') {
        &authority[authority.find(']')? + 1..]
    } else {
        authority
    };
    rest.rfind(':').and_then(|i| rest[i + 1..].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn view() {
        let p = parts(
            "/a/b?x=1&flag&y=2",
            &[
                ("host", "Shop.Example.com:8080"),
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("cookie", "session=abc; user=u1"),
            ],
        );
        let v = RequestView::new(&p, "http", 8080);
        assert_eq!(v.path, "/a/b");
        assert_eq!(v.authority, "Shop.Example.com:8080");
        assert_eq!(v.host(), "Shop.Example.com");
        assert_eq!(v.query_param("x"), Some("1"));
        assert_eq!(v.query_param("flag"), Some(""));
        assert_eq!(v.query_param("z"), None);
        assert_eq!(v.cookie("user"), Some("u1"));
        assert_eq!(v.cookie("nope"), None);
        assert_eq!(
            v.header(&HeaderName::from_static("x-multi")).as_deref(),
            Some("a,b")
        );
        assert_eq!(v.pseudo(":method"), Some("GET"));
        let p2 = parts("http://h2.example.com/x", &[]);
        assert_eq!(
            RequestView::new(&p2, "http", 80).authority,
            "h2.example.com"
        );
    }

    #[test]
    fn ports() {
        assert_eq!(port_of("a:80"), Some(80));
        assert_eq!(port_of("a"), None);
        assert_eq!(port_of("[::1]:443"), Some(443));
        assert_eq!(port_of("[::1]"), None);
        assert_eq!(host_of("[::1]:443"), "[::1]");
    }
}
