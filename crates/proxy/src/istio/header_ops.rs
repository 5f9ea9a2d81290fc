//! VirtualService header operations (`headers.request|response.set/add/
//! remove`), compiled to header names and values once per snapshot.
//!
//! Order, as Envoy applies them: remove, then set/add. Rule-level operations
//! run before destination-level ones (Istio sets
//! `most_specific_header_mutations_wins`), so a destination's `set` wins.
//! `set`/`add` of `:authority`/`host` on requests is a host rewrite, not a
//! header operation.

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use skiff_api::istio::virtual_service::{HeaderOperations, Headers};

/// Per-request values Envoy's `%VARIABLE%`s in header values refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderContext<'a> {
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    pub request_headers: Option<&'a HeaderMap>,
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(Box<str>),
    RemoteAddress,
    RemoteAddressWithoutPort,
    LocalAddress,
    LocalAddressWithoutPort,
    Hostname,
    Protocol,
    RequestHeader(HeaderName),
}

/// A header value: fixed (the common case, no work per request) or a
/// template with Envoy variables.
#[derive(Debug, Clone)]
enum Value {
    Static(HeaderValue),
    Template(Box<[Piece]>),
}

impl Value {
    fn parse(s: &str) -> Result<Value, String> {
        if !s.contains('%') {
            return HeaderValue::from_str(s)
                .map(Value::Static)
                .map_err(|_| format!("invalid header value {s:?}"));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let end = rest
                .find('%')
                .ok_or_else(|| format!("invalid header value {s:?}: un-escaped %"))?;
            let var = &rest[..end];
            rest = &rest[end + 1..];
            let piece = match var {
                "DOWNSTREAM_REMOTE_ADDRESS" => Piece::RemoteAddress,
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Piece::RemoteAddressWithoutPort,
                "DOWNSTREAM_LOCAL_ADDRESS" => Piece::LocalAddress,
                "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Piece::LocalAddressWithoutPort,
                "HOSTNAME" => Piece::Hostname,
                "PROTOCOL" => Piece::Protocol,
                v if v.starts_with("REQ(") && v.ends_with(')') => {
                    let name = &v[4..v.len() - 1];
                    Piece::RequestHeader(
                        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                            .map_err(|_| format!("invalid header name in %{v}%"))?,
                    )
                }
                // Unknown variables stay literal text.
                other => Piece::Literal(format!("%{other}%").into()),
            };
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit).into()));
            }
            pieces.push(piece);
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit.into()));
        }
        if let [Piece::Literal(l)] = pieces.as_slice() {
            return HeaderValue::from_str(l)
                .map(Value::Static)
                .map_err(|_| format!("invalid header value {s:?}"));
        }
        Ok(Value::Template(pieces.into_boxed_slice()))
    }

    fn render(&self, ctx: &HeaderContext<'_>) -> Option<HeaderValue> {
        match self {
            Value::Static(v) => Some(v.clone()),
            Value::Template(pieces) => {
                let mut out = String::new();
                for p in pieces.iter() {
                    match p {
                        Piece::Literal(l) => out.push_str(l),
                        Piece::RemoteAddress => {
                            if let Some(a) = ctx.downstream_remote {
                                out.push_str(&a.to_string());
                            }
                        }
                        Piece::RemoteAddressWithoutPort => {
                            if let Some(a) = ctx.downstream_remote {
                                out.push_str(&a.ip().to_string());
                            }
                        }
                        Piece::LocalAddress => {
                            if let Some(a) = ctx.downstream_local {
                                out.push_str(&a.to_string());
                            }
                        }
                        Piece::LocalAddressWithoutPort => {
                            if let Some(a) = ctx.downstream_local {
                                out.push_str(&a.ip().to_string());
                            }
                        }
                        Piece::Hostname => out.push_str(hostname()),
                        Piece::Protocol => out.push_str(ctx.protocol),
                        Piece::RequestHeader(n) => {
                            if let Some(v) = ctx
                                .request_headers
                                .and_then(|h| h.get(n))
                                .and_then(|v| v.to_str().ok())
                            {
                                out.push_str(v);
                            }
                        }
                    }
                }
                HeaderValue::from_str(&out).ok()
            }
        }
    }
}

fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// One direction's operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    set: Box<[(HeaderName, Value)]>,
    add: Box<[(HeaderName, Value)]>,
    remove: Box<[HeaderName]>,
}

fn is_authority(n: &str) -> bool {
    n.eq_ignore_ascii_case(":authority") || n.eq_ignore_ascii_case("host")
}

fn name(n: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("invalid header name {n:?}"))
}

impl HeaderOps {
    /// Compile; for requests the authority (from `set`/`add` of
    /// `:authority`/`host`) is returned apart.
    fn compile(
        ops: &HeaderOperations,
        request: bool,
    ) -> Result<(HeaderOps, Option<HeaderValue>), String> {
        let mut authority = None;
        let mut compile = |map: &std::collections::BTreeMap<String, String>| {
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in map {
                if request && is_authority(k) {
                    authority = Some(
                        HeaderValue::from_str(v).map_err(|_| format!("invalid authority {v:?}"))?,
                    );
                    continue;
                }
                out.push((name(k)?, Value::parse(v)?));
            }
            Ok::<_, String>(out.into_boxed_slice())
        };
        let set = compile(&ops.set)?;
        let add = compile(&ops.add)?;
        let remove = ops
            .remove
            .iter()
            .map(|n| name(n))
            .collect::<Result<Vec<_>, _>>()?
            .into_boxed_slice();
        Ok((HeaderOps { set, add, remove }, authority))
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Apply to `headers`: remove, then set (replace), then add (append).
    pub fn apply(&self, headers: &mut HeaderMap, ctx: &HeaderContext<'_>) {
        for n in self.remove.iter() {
            headers.remove(n);
        }
        for (n, v) in self.set.iter() {
            if let Some(v) = v.render(ctx) {
                headers.insert(n.clone(), v);
            }
        }
        for (n, v) in self.add.iter() {
            if let Some(v) = v.render(ctx) {
                headers.append(n.clone(), v);
            }
        }
    }
}

/// Request and response operations of a rule or a destination.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub request: HeaderOps,
    pub response: HeaderOps,
    /// Host rewrite requested through `:authority`/`host` headers.
    pub authority: Option<HeaderValue>,
}

impl HeaderRules {
    pub fn compile(h: Option<&Headers>) -> Result<HeaderRules, String> {
        let Some(h) = h else {
            return Ok(HeaderRules::default());
        };
        let (request, authority) = match &h.request {
            Some(r) => HeaderOps::compile(r, true)?,
            None => (HeaderOps::default(), None),
        };
        let response = match &h.response {
            Some(r) => HeaderOps::compile(r, false)?.0,
            None => HeaderOps::default(),
        };
        Ok(HeaderRules {
            request,
            response,
            authority,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty() && self.authority.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> HeaderRules {
        let h: Headers = crate::istio::testing::yaml(yaml);
        HeaderRules::compile(Some(&h)).unwrap()
    }

    #[test]
    fn remove_then_set_then_add() {
        let r = rules(
            "request: {set: {x-env: prod, Host: other.example.com}, add: {x-tag: b}, remove: [x-secret, x-tag]}",
        );
        assert_eq!(r.authority.as_ref().unwrap(), "other.example.com");
        let mut h = HeaderMap::new();
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        h.insert("x-tag", HeaderValue::from_static("a"));
        r.request.apply(&mut h, &HeaderContext::default());
        assert!(h.get("x-secret").is_none());
        assert_eq!(h["x-env"], "prod");
        // remove ran first: the old x-tag is gone, the added one stays.
        let tags: Vec<_> = h.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["b"]);
        assert!(
            h.get("host").is_none(),
            "authority is a rewrite, not a header op"
        );
    }

    #[test]
    fn destination_after_rule_wins() {
        let rule = rules("response: {set: {x-served-by: rule}, add: {x-trail: r}}");
        let dest = rules("response: {set: {x-served-by: v2}, add: {x-trail: d}}");
        let mut h = HeaderMap::new();
        rule.response.apply(&mut h, &HeaderContext::default());
        dest.response.apply(&mut h, &HeaderContext::default());
        assert_eq!(h["x-served-by"], "v2");
        assert_eq!(h.get_all("x-trail").iter().count(), 2);
    }

    #[test]
    fn envoy_variables() {
        let r = rules(
            "request: {set: {x-client: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', x-pct: '100%%', x-ua: 'ua=%REQ(User-Agent)%', x-odd: '%NOPE%'}}",
        );
        let mut req = HeaderMap::new();
        req.insert("user-agent", HeaderValue::from_static("curl/8"));
        let ctx = HeaderContext {
            downstream_remote: Some("10.1.2.3:5555".parse().unwrap()),
            request_headers: Some(&req),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        r.request.apply(&mut h, &ctx);
        assert_eq!(h["x-client"], "10.1.2.3");
        assert_eq!(h["x-pct"], "100%");
        assert_eq!(h["x-ua"], "ua=curl/8");
        assert_eq!(h["x-odd"], "%NOPE%");
    }
}
