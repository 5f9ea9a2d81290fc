//! How Gateways and VirtualServices meet: which gateway servers a
//! VirtualService binds to (by gateway name and by host), the host a
//! request is routed under (exact, then the longest wildcard, then `*`),
//! and the gateway servers grouped by port — one listener per port.

use std::collections::HashMap;

use skiff_api::istio::gateway::{Protocol, Server, ServerTlsMode, ServerTlsSettings};
use skiff_api::istio::virtual_service::MESH_GATEWAY;
use skiff_api::istio::{Gateway, VirtualService};

/// A gateway reference as `namespace/name` (or `mesh`): a bare name is in
/// `namespace` (the referring VirtualService's); the legacy
/// `name.namespace[.svc.cluster.local]` form is understood.
pub fn qualify_gateway(g: &str, namespace: &str) -> String {
    if g == MESH_GATEWAY || g.contains('/') {
        g.to_string()
    } else if let Some((name, ns)) = g.split_once('.') {
        format!("{}/{name}", ns.split('.').next().unwrap_or(ns))
    } else {
        format!("{namespace}/{g}")
    }
}

/// The gateways a VirtualService applies to, as `namespace/name` (or
/// `mesh`). No `gateways` means the mesh only.
pub fn vs_gateways(vs: &VirtualService) -> Vec<String> {
    if vs.spec.gateways.is_empty() {
        return vec![MESH_GATEWAY.to_string()];
    }
    vs.spec
        .gateways
        .iter()
        .map(|g| qualify_gateway(g, &vs.metadata.namespace))
        .collect()
}

/// Does wildcard-or-exact `pattern` cover `host`? (`*.a.com` covers
/// `x.a.com` and `*.x.a.com`, not `a.com`; `*` covers all.)
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The host under which a VirtualService host is served by a gateway
/// server host: the more specific of the two when one covers the other
/// (Istio narrows `*.example.com` on a `shop.example.com` server to
/// `shop.example.com`).
pub fn intersect(server_host: &str, vs_host: &str) -> Option<String> {
    if covers(server_host, vs_host) {
        Some(vs_host.to_ascii_lowercase())
    } else if covers(vs_host, server_host) {
        Some(server_host.to_ascii_lowercase())
    } else {
        None
    }
}

/// A gateway server host `[namespace/]dnsName` admits VirtualServices of
/// `vs_ns` (`*` any, `.` the gateway's own).
fn namespace_admits<'a>(server_host: &'a str, gateway_ns: &str, vs_ns: &str) -> (bool, &'a str) {
    match server_host.split_once('/') {
        None => (true, server_host),
        Some(("*", h)) => (true, h),
        Some((".", h)) => (gateway_ns == vs_ns, h),
        Some((ns, h)) => (ns == vs_ns, h),
    }
}

/// The hosts `vs` is served under on `server` of gateway `gateway_ns`
/// (empty: it does not bind there).
pub fn bound_hosts(server: &Server, gateway_ns: &str, vs: &VirtualService) -> Vec<String> {
    let mut out = Vec::new();
    for sh in &server.hosts {
        let (ok, host) = namespace_admits(sh, gateway_ns, &vs.metadata.namespace);
        if !ok {
            continue;
        }
        for vh in &vs.spec.hosts {
            if let Some(h) = intersect(host, vh)
                && !out.contains(&h)
            {
                out.push(h);
            }
        }
    }
    out
}

/// Routes by request host: exact names, then wildcard suffixes (longest
/// first), then `*` — Envoy's virtual host domain order.
#[derive(Debug)]
pub struct HostIndex<T> {
    /// Looked up per request: a fast seeded hash (see `table::HostMap`).
    exact: HashMap<Box<str>, T, foldhash::fast::RandomState>,
    /// (suffix including the dot, value), longest first.
    wildcard: Vec<(Box<str>, T)>,
    any: Option<T>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        HostIndex {
            exact: HashMap::default(),
            wildcard: Vec::new(),
            any: None,
        }
    }
}

impl<T> HostIndex<T> {
    /// Add `host` (first insert of a host wins, as the first VirtualService
    /// to claim a host on a gateway does).
    pub fn insert(&mut self, host: &str, value: T) {
        let host = host.to_ascii_lowercase();
        if host == "*" {
            if self.any.is_none() {
                self.any = Some(value);
            }
        } else if let Some(suffix) = host.strip_prefix('*') {
            if !self.wildcard.iter().any(|(s, _)| **s == *suffix) {
                self.wildcard.push((suffix.into(), value));
                self.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
            }
        } else {
            self.exact.entry(host.into_boxed_str()).or_insert(value);
        }
    }

    /// The value for a request host (lowercase, no port).
    pub fn lookup(&self, host: &str) -> Option<&T> {
        self.exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(&**s))
                    .map(|(_, v)| v)
            })
            .or(self.any.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    /// Every host pattern and its value (exact names, wildcards, `*`).
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        self.exact
            .iter()
            .map(|(h, v)| (h.to_string(), v))
            .chain(self.wildcard.iter().map(|(s, v)| (format!("*{s}"), v)))
            .chain(self.any.iter().map(|v| ("*".to_string(), v)))
    }
}

/// One gateway server as a listener serves it.
#[derive(Debug, Clone)]
pub struct BoundServer {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    pub server: Server,
}

impl BoundServer {
    pub fn tls(&self) -> Option<&ServerTlsSettings> {
        self.server.tls.as_ref()
    }

    /// Plain HTTP server redirecting to https.
    pub fn https_redirect(&self) -> bool {
        self.tls().is_some_and(|t| t.https_redirect)
    }

    /// Terminates TLS (SIMPLE, MUTUAL, OPTIONAL_MUTUAL).
    pub fn terminates_tls(&self) -> bool {
        let proto = Protocol::parse(
            self.server
                .port
                .as_ref()
                .map_or("", |p| p.protocol.as_str()),
        );
        proto.is_tls()
            && self.tls().is_some_and(|t| {
                matches!(
                    t.mode(),
                    ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
                )
            })
    }
}

/// The servers of all gateways grouped by port number, in a stable order.
/// A port whose servers disagree on TLS keeps the first server's kind;
/// the others are reported.
pub fn servers_by_port(gateways: &[Gateway]) -> (Vec<(u16, Vec<BoundServer>)>, Vec<String>) {
    let mut ports: Vec<(u16, Vec<BoundServer>)> = Vec::new();
    let mut problems = Vec::new();
    let mut sorted: Vec<&Gateway> = gateways.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for g in sorted {
        let gw = format!("{}/{}", g.metadata.namespace, g.metadata.name);
        for s in &g.spec.servers {
            let Some(port) = s.port.as_ref().and_then(|p| u16::try_from(p.number).ok()) else {
                continue;
            };
            let bound = BoundServer {
                gateway: gw.clone(),
                server: s.clone(),
            };
            match ports.iter_mut().find(|(p, _)| *p == port) {
                Some((_, list)) => {
                    if list[0].terminates_tls() != bound.terminates_tls() {
                        problems.push(format!(
                            "gateway {gw}: port {port} is already served {} by gateway {}: server ignored",
                            if list[0].terminates_tls() { "with TLS" } else { "in plain text" },
                            list[0].gateway
                        ));
                        continue;
                    }
                    list.push(bound);
                }
                None => ports.push((port, vec![bound])),
            }
        }
    }
    ports.sort_by_key(|(p, _)| *p);
    (ports, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> VirtualService {
        crate::istio::testing::yaml(yaml)
    }

    fn gw(yaml: &str) -> Gateway {
        crate::istio::testing::yaml(yaml)
    }

    #[test]
    fn gateway_names() {
        let v = vs(
            "metadata: {name: a, namespace: web}\nspec: {gateways: [public, infra/edge, mesh, old.istio-system.svc.cluster.local]}",
        );
        assert_eq!(
            vs_gateways(&v),
            ["web/public", "infra/edge", "mesh", "istio-system/old"]
        );
        let v = vs("metadata: {name: a, namespace: web}\nspec: {}");
        assert_eq!(vs_gateways(&v), ["mesh"]);
    }

    #[test]
    fn host_binding() {
        let g = gw(
            "metadata: {name: public, namespace: istio-system}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['web/*.example.com', './admin.example.com', 'shop.example.org']}]}",
        );
        let s = &g.spec.servers[0];
        let web = vs(
            "metadata: {name: a, namespace: web}\nspec: {hosts: [api.example.com, '*.example.org', other.net]}",
        );
        assert_eq!(
            bound_hosts(s, "istio-system", &web),
            ["api.example.com", "shop.example.org"]
        );
        let other = vs(
            "metadata: {name: b, namespace: other}\nspec: {hosts: [api.example.com, admin.example.com]}",
        );
        assert!(
            bound_hosts(s, "istio-system", &other).is_empty(),
            "namespace-scoped server hosts"
        );
        let sys =
            vs("metadata: {name: c, namespace: istio-system}\nspec: {hosts: [admin.example.com]}");
        assert_eq!(bound_hosts(s, "istio-system", &sys), ["admin.example.com"]);
        assert!(!covers("*.a.com", "a.com"));
        assert_eq!(intersect("*", "x.y"), Some("x.y".into()));
    }

    #[test]
    fn host_index_order() {
        let mut idx = HostIndex::default();
        idx.insert("*", "any");
        idx.insert("*.example.com", "wild");
        idx.insert("*.api.example.com", "wilder");
        idx.insert("Shop.example.com", "exact");
        idx.insert("shop.example.com", "second-claim");
        assert_eq!(idx.lookup("shop.example.com"), Some(&"exact"));
        assert_eq!(idx.lookup("v1.api.example.com"), Some(&"wilder"));
        assert_eq!(idx.lookup("web.example.com"), Some(&"wild"));
        assert_eq!(idx.lookup("example.com"), Some(&"any"));
    }

    #[test]
    fn ports() {
        let a = gw(
            "metadata: {name: a, namespace: x}\nspec: {servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}, {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}]}",
        );
        let b = gw(
            "metadata: {name: b, namespace: x}\nspec: {servers: [{port: {number: 443, name: https2, protocol: HTTPS}, hosts: ['b.com'], tls: {mode: MUTUAL, credentialName: d}}, {port: {number: 80, name: tcp, protocol: TLS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: e}}]}",
        );
        let (ports, problems) = servers_by_port(&[b, a]);
        assert_eq!(
            ports.iter().map(|(p, s)| (*p, s.len())).collect::<Vec<_>>(),
            [(80, 1), (443, 2)]
        );
        assert!(ports[0].1[0].https_redirect());
        assert!(ports[1].1.iter().all(BoundServer::terminates_tls));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("port 80 is already served in plain text"));
    }
}
