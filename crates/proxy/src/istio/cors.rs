//! CORS (`corsPolicy`), as Envoy's CORS filter does it: preflights from an
//! allowed origin get a local 200 with the policy's headers; actual requests
//! from an allowed origin are forwarded and get `Access-Control-Allow-Origin`
//! (the request's origin echoed) and friends on the response. Unmatched
//! preflights are forwarded (FORWARD, the default) or answered 200 without
//! CORS headers (IGNORE).

use http::header::{self, HeaderMap, HeaderValue};
use skiff_api::istio::duration;
use skiff_api::istio::virtual_service::{CorsPolicy, UnmatchedPreflights};

use super::matcher::Matcher;
use super::request::RequestView;

#[derive(Debug, Clone)]
pub struct Cors {
    origins: Box<[Matcher]>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
    forward_unmatched_preflights: bool,
}

/// What the CORS policy does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum CorsAction {
    /// Not a CORS request, or its origin is not allowed: forward as is.
    Forward,
    /// An allowed actual request: forward, then call
    /// [`Cors::add_response_headers`] with this origin.
    ForwardAllowed(HeaderValue),
    /// Reply 200 locally with these headers (allowed preflight), or with
    /// none (unmatched preflight under IGNORE).
    Reply(HeaderMap),
}

fn joined(list: &[String]) -> Result<Option<HeaderValue>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&list.join(","))
        .map(Some)
        .map_err(|_| format!("invalid CORS header list {list:?}"))
}

impl Cors {
    pub fn compile(p: &CorsPolicy) -> Result<Cors, String> {
        // The deprecated exact list counts only without allowOrigins.
        let origins: Vec<Matcher> = if p.allow_origins.is_empty() {
            p.allow_origin.iter().map(|o| Matcher::exact(o)).collect()
        } else {
            p.allow_origins
                .iter()
                .map(|o| Matcher::from_api(o, false))
                .collect::<Result<_, _>>()?
        };
        let max_age = match &p.max_age {
            Some(m) => Some(
                HeaderValue::from_str(&duration::parse(m)?.as_secs().to_string())
                    .expect("digits are a header value"),
            ),
            None => None,
        };
        Ok(Cors {
            origins: origins.into_boxed_slice(),
            allow_methods: joined(&p.allow_methods)?,
            allow_headers: joined(&p.allow_headers)?,
            expose_headers: joined(&p.expose_headers)?,
            max_age,
            allow_credentials: p.allow_credentials == Some(true),
            forward_unmatched_preflights: p.unmatched_preflights
                != Some(UnmatchedPreflights::Ignore),
        })
    }

    fn allowed(&self, origin: &str) -> bool {
        // As Envoy: a pattern that matches "*" allows every origin.
        self.origins
            .iter()
            .any(|m| m.matches(origin) || m.matches("*"))
    }

    pub fn on_request(&self, req: &RequestView<'_>) -> CorsAction {
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            return CorsAction::Forward;
        };
        let allowed = origin
            .to_str()
            .is_ok_and(|o| !o.is_empty() && self.allowed(o));
        let preflight = req.method == "OPTIONS"
            && req
                .headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        match (preflight, allowed) {
            (false, false) => CorsAction::Forward,
            (false, true) => CorsAction::ForwardAllowed(origin.clone()),
            (true, false) if self.forward_unmatched_preflights => CorsAction::Forward,
            (true, false) => CorsAction::Reply(HeaderMap::new()),
            (true, true) => {
                let mut h = HeaderMap::new();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                if self.allow_credentials {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                if let Some(v) = &self.allow_methods {
                    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
                }
                if let Some(v) = &self.allow_headers {
                    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                }
                if let Some(v) = &self.max_age {
                    h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
                }
                CorsAction::Reply(h)
            }
        }
    }

    /// Response headers for an allowed actual request.
    pub fn add_response_headers(&self, origin: &HeaderValue, resp: &mut HeaderMap) {
        resp.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            resp.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_headers {
            resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        Cors::compile(&crate::istio::testing::yaml(yaml)).unwrap()
    }

    fn parts(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/x")
            .header("host", "a");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    const POLICY: &str = "{allowOrigins: [{exact: 'https://example.com'}, {regex: 'https://.*\\.dev\\.example\\.com'}], allowMethods: [POST, GET], allowHeaders: [X-Foo], exposeHeaders: [X-Bar], maxAge: 24h, allowCredentials: true}";

    #[test]
    fn preflight_allowed() {
        let c = cors(POLICY);
        let p = parts(
            "OPTIONS",
            &[
                ("origin", "https://a.dev.example.com"),
                ("access-control-request-method", "POST"),
            ],
        );
        let CorsAction::Reply(h) = c.on_request(&RequestView::new(&p, "http", 80)) else {
            panic!("preflight is answered locally");
        };
        assert_eq!(
            h["access-control-allow-origin"],
            "https://a.dev.example.com"
        );
        assert_eq!(h["access-control-allow-methods"], "POST,GET");
        assert_eq!(h["access-control-allow-headers"], "X-Foo");
        assert_eq!(h["access-control-max-age"], "86400");
        assert_eq!(h["access-control-allow-credentials"], "true");
    }

    #[test]
    fn actual_and_unmatched() {
        let c = cors(POLICY);
        let p = parts("POST", &[("origin", "https://example.com")]);
        let CorsAction::ForwardAllowed(o) = c.on_request(&RequestView::new(&p, "http", 80)) else {
            panic!("allowed actual request");
        };
        let mut resp = HeaderMap::new();
        c.add_response_headers(&o, &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "https://example.com");
        assert_eq!(resp["access-control-expose-headers"], "X-Bar");
        let p = parts("POST", &[("origin", "https://evil.com")]);
        assert_eq!(
            c.on_request(&RequestView::new(&p, "http", 80)),
            CorsAction::Forward
        );
        let p = parts("GET", &[]);
        assert_eq!(
            c.on_request(&RequestView::new(&p, "http", 80)),
            CorsAction::Forward
        );
        // Unmatched preflight: forwarded by default, answered bare under IGNORE.
        let pre = parts(
            "OPTIONS",
            &[
                ("origin", "https://evil.com"),
                ("access-control-request-method", "GET"),
            ],
        );
        assert_eq!(
            c.on_request(&RequestView::new(&pre, "http", 80)),
            CorsAction::Forward
        );
        let ignore =
            cors("{allowOrigins: [{exact: 'https://example.com'}], unmatchedPreflights: IGNORE}");
        assert_eq!(
            ignore.on_request(&RequestView::new(&pre, "http", 80)),
            CorsAction::Reply(HeaderMap::new())
        );
    }

    #[test]
    fn wildcard_origin() {
        let c = cors("{allowOrigins: [{exact: '*'}]}");
        let p = parts("GET", &[("origin", "https://anything.example")]);
        assert!(matches!(
            c.on_request(&RequestView::new(&p, "http", 80)),
            CorsAction::ForwardAllowed(_)
        ));
    }
}
