//! Per-hop header rules (RFC 9110 §7.6.1) and forwarding headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Called for every header of every message: most names are ruled out by
/// their length alone, and no `HeaderName` is built to compare against (a
/// `const` array of them would be built, and dropped, at each call).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    match name.as_str().len() {
        2 => name == header::TE,
        7 => name == header::TRAILER || name == header::UPGRADE,
        10 => name == header::CONNECTION || *name == KEEP_ALIVE,
        16 => *name == PROXY_CONNECTION,
        17 => name == header::TRANSFER_ENCODING,
        19 => name == header::PROXY_AUTHORIZATION,
        _ => false,
    }
}

/// Whether any hop-by-hop header is present. Most messages carry none: one
/// pass over the names instead of a lookup per hop-by-hop header.
pub fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        // Rare: only allocate when Connection names extra headers.
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| n != "close" && n != "keep-alive")
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
}

/// Append the client's address to `X-Forwarded-For`, and say which scheme
/// the client used in `X-Forwarded-Proto`. As Envoy at the edge: an
/// untrusted client's `X-Forwarded-Proto` is overwritten; one a trusted
/// proxy (`trusted`: the listener trusts at least one hop) set is kept.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    trusted: bool,
) {
    // One lookup; inserting into the occupied entry replaces every
    // X-Forwarded-For line with the joined one.
    match headers.entry(&X_FORWARDED_FOR) {
        header::Entry::Occupied(mut e) if !e.get().is_empty() => {
            let prev = e.get();
            let mut joined = Vec::with_capacity(prev.len() + 2 + client_ip.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                e.insert(v);
            }
        }
        header::Entry::Occupied(mut e) => {
            e.insert(client_ip.clone());
        }
        // The common case: a refcount bump, no allocation.
        header::Entry::Vacant(e) => {
            e.insert(client_ip.clone());
        }
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
}

/// The original client as Envoy's `xff_num_trusted_hops` defines it: with
/// `hops` trusted proxies in front, the `hops`-th address from the right of
/// `X-Forwarded-For` as received. `None` when no hop is trusted, or the
/// header has too few entries or a malformed one there (then the
/// connection's client is the original client).
pub fn trusted_client(headers: &HeaderMap, hops: u32) -> Option<IpAddr> {
    if hops == 0 {
        return None;
    }
    let mut seen = 0;
    // Entries right to left, across repeated header lines.
    for v in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let v = v.to_str().ok()?;
        for entry in v.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            seen += 1;
            if seen == hops {
                return parse_forwarded_ip(entry);
            }
        }
    }
    None
}

/// An X-Forwarded-For entry: an IP, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn hop_by_hop_names_are_recognized_whatever_their_length() {
        for n in [
            "connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        // Same lengths, not per-hop.
        for n in [
            "user-agent",
            "tk",
            "referer",
            "x-forwarded-host",
            "www-authenticate",
            "x-forwarded-proto",
            "x-custom-header-19c",
            "host",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &HeaderValue::from_static("10.0.0.1"), "http", false);
        add_forwarded(&mut h, &HeaderValue::from_static("10.0.0.2"), "http", false);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn forwarded_proto_is_kept_only_from_trusted_proxies() {
        let ip = HeaderValue::from_static("10.0.0.1");
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        add_forwarded(&mut h, &ip, "http", false);
        assert_eq!(h[&X_FORWARDED_PROTO], "http", "a client cannot claim https");
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        add_forwarded(&mut h, &ip, "http", true);
        assert_eq!(
            h[&X_FORWARDED_PROTO], "https",
            "the trusted LB terminated TLS"
        );
    }

    #[test]
    fn trusted_hops_count_from_the_right() {
        let mut h = HeaderMap::new();
        assert_eq!(trusted_client(&h, 1), None);
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.7, 10.0.0.9"),
        );
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("203.0.113.5:4711"),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(trusted_client(&h, 0), None, "nothing trusted: the peer");
        assert_eq!(trusted_client(&h, 1), ip("203.0.113.5"));
        assert_eq!(trusted_client(&h, 2), ip("10.0.0.9"));
        assert_eq!(trusted_client(&h, 3), ip("198.51.100.7"));
        assert_eq!(trusted_client(&h, 4), None, "fewer entries than hops");
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("junk, [2001:db8::1]:80"),
        );
        assert_eq!(trusted_client(&h, 1), ip("2001:db8::1"));
        assert_eq!(trusted_client(&h, 2), None, "malformed entry");
    }
}
