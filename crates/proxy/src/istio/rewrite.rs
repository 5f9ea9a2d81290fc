//! URI and authority rewrites (forwarded requests) and redirects (local
//! 3xx replies), as Istio translates them for Envoy.
//!
//! `rewrite.uri` is Envoy's `prefix_rewrite`: it replaces the part of the
//! path the rule's match consumed — the prefix for a prefix match, the whole
//! path for an exact or regex match, and `/` when the match has no `uri`
//! (Istio generates a `/` prefix route). The query string is kept.

use http::StatusCode;
use http::header::HeaderValue;
use regex::Regex;
use skiff_api::istio::check;
use skiff_api::istio::virtual_service::{HttpRedirect, HttpRewrite, RedirectPortSelection};

use super::request::{RequestView, host_of, port_of};

#[derive(Debug, Clone)]
pub enum UriRewrite {
    /// Replace the matched part of the path.
    Prefix(Box<str>),
    /// Replace every match of `re` in the path (RE2 `\1` groups).
    Regex { re: Regex, replacement: Box<str> },
}

#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub uri: Option<UriRewrite>,
    pub authority: Option<HeaderValue>,
}

/// RE2 substitution (`\1`, `\\`) to the regex crate's (`${1}`, `$$`).
fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

impl Rewrite {
    pub fn compile(r: &HttpRewrite) -> Result<Rewrite, String> {
        let uri = if let Some(rr) = &r.uri_regex_rewrite {
            Some(UriRewrite::Regex {
                re: check::search_regex(&rr.pattern)?,
                replacement: re2_substitution(&rr.rewrite).into(),
            })
        } else if !r.uri.is_empty() {
            Some(UriRewrite::Prefix(r.uri.as_str().into()))
        } else {
            None
        };
        let authority = if r.authority.is_empty() {
            None
        } else {
            Some(
                HeaderValue::from_str(&r.authority)
                    .map_err(|_| format!("invalid authority {:?}", r.authority))?,
            )
        };
        Ok(Rewrite { uri, authority })
    }

    /// The rewritten path and query, or `None` when the path is unchanged.
    /// `matched_len`: how much of `path` the rule's match consumed.
    pub fn path(&self, path: &str, query: Option<&str>, matched_len: usize) -> Option<String> {
        let new_path = match self.uri.as_ref()? {
            UriRewrite::Prefix(p) => {
                let rest = path.get(matched_len.min(path.len())..).unwrap_or("");
                let mut s = String::with_capacity(p.len() + rest.len());
                s.push_str(p);
                s.push_str(rest);
                s
            }
            UriRewrite::Regex { re, replacement } => {
                re.replace_all(path, &**replacement).into_owned()
            }
        };
        Some(with_query(new_path, query))
    }
}

fn with_query(mut path: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirectPort {
    /// Envoy's default: keep what the host says.
    Unset,
    Explicit(u16),
    FromRequest,
    ProtocolDefault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RedirectPath {
    Keep,
    Replace(Box<str>),
    Prefix(Box<str>),
}

/// A compiled `HTTPRedirect` (also used for `httpsRedirect`).
#[derive(Debug, Clone)]
pub struct Redirect {
    scheme: Option<Box<str>>,
    authority: Option<Box<str>>,
    port: RedirectPort,
    path: RedirectPath,
    pub status: StatusCode,
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

impl Redirect {
    pub fn compile(r: &HttpRedirect) -> Result<Redirect, String> {
        let code = r.redirect_code.filter(|c| *c != 0).unwrap_or(301);
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(StatusCode::is_redirection)
            .ok_or_else(|| format!("{code} is not a valid redirect code, must be 3xx"))?;
        let port = match (r.port, r.derive_port) {
            (Some(p), _) if p > 0 => RedirectPort::Explicit(
                u16::try_from(p).map_err(|_| format!("port {p} out of range"))?,
            ),
            (_, Some(RedirectPortSelection::FromRequestPort)) => RedirectPort::FromRequest,
            (_, Some(RedirectPortSelection::FromProtocolDefault)) => RedirectPort::ProtocolDefault,
            _ => RedirectPort::Unset,
        };
        let path = if !r.prefix_rewrite.is_empty() {
            RedirectPath::Prefix(r.prefix_rewrite.as_str().into())
        } else if !r.uri.is_empty() {
            RedirectPath::Replace(r.uri.as_str().into())
        } else {
            RedirectPath::Keep
        };
        Ok(Redirect {
            scheme: (!r.scheme.is_empty()).then(|| r.scheme.as_str().into()),
            authority: (!r.authority.is_empty()).then(|| r.authority.as_str().into()),
            port,
            path,
            status,
        })
    }

    /// Gateway `tls.httpsRedirect`: 301 to the same URL over https.
    pub fn https() -> Redirect {
        Redirect {
            scheme: Some("https".into()),
            authority: None,
            port: RedirectPort::Unset,
            path: RedirectPath::Keep,
            status: StatusCode::MOVED_PERMANENTLY,
        }
    }

    /// What the redirect changes in the request's URL, for `proxy-config`:
    /// e.g. `scheme https, authority shop.example.com, uri /v2`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.scheme {
            parts.push(format!("scheme {s}"));
        }
        if let Some(a) = &self.authority {
            parts.push(format!("authority {a}"));
        }
        match self.port {
            RedirectPort::Unset => {}
            RedirectPort::Explicit(p) => parts.push(format!("port {p}")),
            RedirectPort::FromRequest => parts.push("port from the request".into()),
            RedirectPort::ProtocolDefault => parts.push("port of the scheme".into()),
        }
        match &self.path {
            RedirectPath::Keep => {}
            RedirectPath::Replace(p) => parts.push(format!("uri {p}")),
            RedirectPath::Prefix(p) => parts.push(format!("prefix {p}")),
        }
        if parts.is_empty() {
            "same URL".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The `Location` for `req`. `matched_len` as for [`Rewrite::path`].
    pub fn location(&self, req: &RequestView<'_>, matched_len: usize) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host_in = self.authority.as_deref().unwrap_or(req.authority);
        let explicit = match self.port {
            RedirectPort::Explicit(p) => Some(p),
            RedirectPort::FromRequest => Some(req.port),
            RedirectPort::ProtocolDefault => Some(default_port(scheme)),
            RedirectPort::Unset => None,
        };
        let mut host = String::with_capacity(host_in.len() + 6);
        match explicit {
            Some(p) => {
                host.push_str(host_of(host_in));
                // No explicit :80 / :443 for their own schemes (Istio).
                if p != default_port(scheme) {
                    host.push_str(&format!(":{p}"));
                }
            }
            None => {
                // A scheme change drops the old scheme's standard port.
                let changed = !scheme.eq_ignore_ascii_case(req.scheme);
                match port_of(host_in) {
                    Some(p) if changed && p == default_port(req.scheme) => {
                        host.push_str(host_of(host_in))
                    }
                    _ => host.push_str(host_in),
                }
            }
        }
        let path = match &self.path {
            RedirectPath::Keep => with_query(req.path.to_string(), req.query),
            RedirectPath::Replace(p) if p.contains('?') => p.to_string(),
            RedirectPath::Replace(p) => with_query(p.to_string(), req.query),
            RedirectPath::Prefix(pre) => {
                let rest = req
                    .path
                    .get(matched_len.min(req.path.len())..)
                    .unwrap_or("");
                with_query(format!("{pre}{rest}"), req.query)
            }
        };
        format!("{scheme}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(parts: &'a http::request::Parts, scheme: &'a str, port: u16) -> RequestView<'a> {
        RequestView::new(parts, scheme, port)
    }

    fn parts(uri: &str, host: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn redirect(yaml: &str) -> Redirect {
        Redirect::compile(&crate::istio::testing::yaml(yaml)).unwrap()
    }

    #[test]
    fn prefix_and_regex_rewrites() {
        let prefix = Rewrite::compile(&HttpRewrite {
            uri: "/v2".into(),
            ..Default::default()
        })
        .unwrap();
        // Matched prefix /api of /api/items -> /v2/items, query kept.
        assert_eq!(
            prefix.path("/api/items", Some("a=1"), 4).as_deref(),
            Some("/v2/items?a=1")
        );
        // Exact match: the whole path is replaced.
        assert_eq!(prefix.path("/login", None, 6).as_deref(), Some("/v2"));
        // No uri match: Istio's "/" prefix route.
        assert_eq!(prefix.path("/x", None, 1).as_deref(), Some("/v2x"));
        let re = Rewrite::compile(&HttpRewrite {
            uri_regex_rewrite: Some(skiff_api::istio::virtual_service::RegexRewrite {
                pattern: "^/service/([^/]+)(/.*)$".into(),
                rewrite: "\\2/instance/\\1".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            re.path("/service/foo/v1/api", Some("q"), 0).as_deref(),
            Some("/v1/api/instance/foo?q")
        );
        let none = Rewrite::compile(&HttpRewrite {
            authority: "new.example.com".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(none.path("/a", None, 1), None);
        assert_eq!(none.authority.unwrap(), "new.example.com");
        assert_eq!(re2_substitution("a$b\\\\c\\1"), "a$$b\\c${1}");
    }

    #[test]
    fn redirects() {
        let p = parts("/v1/getProductRatings?x=1", "ratings.example.com:8080");
        let cases: &[(&str, &str, u16, usize, &str, u16)] = &[
            (
                "{uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local}",
                "http",
                8080,
                0,
                "http://newratings.default.svc.cluster.local/v1/bookRatings?x=1",
                301,
            ),
            (
                "{uri: /new, redirectCode: 302}",
                "http",
                8080,
                0,
                "http://ratings.example.com:8080/new?x=1",
                302,
            ),
            (
                "{scheme: https}",
                "http",
                8080,
                0,
                "https://ratings.example.com:8080/v1/getProductRatings?x=1",
                301,
            ),
            (
                "{port: 9090}",
                "http",
                8080,
                0,
                "http://ratings.example.com:9090/v1/getProductRatings?x=1",
                301,
            ),
            (
                "{scheme: https, port: 443}",
                "http",
                8080,
                0,
                "https://ratings.example.com/v1/getProductRatings?x=1",
                301,
            ),
            (
                "{derivePort: FROM_PROTOCOL_DEFAULT, scheme: https}",
                "http",
                8080,
                0,
                "https://ratings.example.com/v1/getProductRatings?x=1",
                301,
            ),
            (
                "{derivePort: FROM_REQUEST_PORT, authority: other.example.com}",
                "http",
                8080,
                0,
                "http://other.example.com:8080/v1/getProductRatings?x=1",
                301,
            ),
            (
                "{prefixRewrite: /v2}",
                "http",
                8080,
                3,
                "http://ratings.example.com:8080/v2/getProductRatings?x=1",
                301,
            ),
            (
                "{uri: '/new?y=2'}",
                "http",
                8080,
                0,
                "http://ratings.example.com:8080/new?y=2",
                301,
            ),
        ];
        for (yaml, scheme, port, matched, want, code) in cases {
            let r = redirect(yaml);
            assert_eq!(
                r.location(&req(&p, scheme, *port), *matched),
                *want,
                "{yaml}"
            );
            assert_eq!(r.status.as_u16(), *code, "{yaml}");
        }
    }

    #[test]
    fn redirects_describe_what_they_change() {
        assert_eq!(Redirect::https().describe(), "scheme https");
        assert_eq!(
            redirect("{authority: a.example.com, port: 9090, prefixRewrite: /v2}").describe(),
            "authority a.example.com, port 9090, prefix /v2"
        );
        assert_eq!(redirect("{redirectCode: 302}").describe(), "same URL");
    }

    #[test]
    fn https_redirect_drops_standard_port_only() {
        let r = Redirect::https();
        let p = parts("/x", "shop.example.com:80");
        assert_eq!(
            r.location(&req(&p, "http", 80), 0),
            "https://shop.example.com/x"
        );
        let p = parts("/x", "shop.example.com:8080");
        assert_eq!(
            r.location(&req(&p, "http", 8080), 0),
            "https://shop.example.com:8080/x"
        );
        let p = parts("/x", "shop.example.com");
        assert_eq!(
            r.location(&req(&p, "http", 80), 0),
            "https://shop.example.com/x"
        );
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    }
}
