//! Which listeners the gateway has: the two default ones for Knative's
//! routes (`--listen`, `--local-listen`) and one per Gateway server port.
//!
//! - The default external listener acts as Knative's
//!   `knative-serving/knative-ingress-gateway` (an HTTP server for `*` on
//!   port 80), the cluster-local one as `knative-serving/knative-local-gateway`
//!   and as the mesh: VirtualServices without `gateways` are served there,
//!   the way sidecars would serve them to the instances that call through
//!   it.
//! - A Gateway server port `P` listens on `--gateway-address:P`, or where
//!   `--gateway-port-map P=ADDR` says. A port that maps to a default
//!   listener's address joins that listener (plain HTTP only).
//! - Knative's routes are also served on listeners that carry servers of
//!   `knative-serving/knative-ingress-gateway` (external routes) or
//!   `knative-local-gateway` (cluster-local routes): declaring that Gateway
//!   with an HTTPS server serves Knative's routes over TLS, as with Istio.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use skiff_api::istio::Gateway;
use skiff_api::istio::gateway::{Port, Server};
use skiff_api::secret::Secret;
use skiff_proxy::ListenerScope;
use skiff_proxy::istio::binding::{BoundServer, servers_by_port};
use skiff_proxy::listeners::{DEFAULT_KEEPALIVE_IDLE, ListenerSpec};
use skiff_proxy::tls::{Credentials, TlsListenerConfig};

pub const KNATIVE_INGRESS_GATEWAY: &str = "knative-serving/knative-ingress-gateway";
pub const KNATIVE_LOCAL_GATEWAY: &str = "knative-serving/knative-local-gateway";
/// The pseudo-gateway of VirtualServices without `gateways`.
pub const MESH: &str = "mesh";

/// Where listeners go, from `skiff serve`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlan {
    /// The default listeners, as bound.
    pub external: SocketAddr,
    pub local: SocketAddr,
    /// Address Gateway server ports listen on.
    pub bind: IpAddr,
    /// Gateway server port → address, overriding `bind`.
    pub port_map: BTreeMap<u16, SocketAddr>,
    pub keepalive_idle: Option<Duration>,
    /// Listeners behind a load balancer that sends the PROXY protocol.
    pub proxy_protocol: ProxyProtocolListeners,
    /// Trusted proxies in front of every listener (X-Forwarded-For).
    pub xff_trusted_hops: u32,
}

/// Which listeners expect a PROXY protocol header first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocolListeners {
    /// The default external listener (`--listen`).
    pub external: bool,
    /// The cluster-local listener (`--local-listen`).
    pub local: bool,
    /// Gateway server ports.
    pub ports: BTreeSet<u16>,
}

impl ProxyProtocolListeners {
    fn expects(&self, plan: &ListenerPlan, l: &Layout) -> bool {
        if l.addr == plan.external {
            self.external
        } else if l.addr == plan.local {
            self.local
        } else {
            self.ports.contains(&l.gateway_port)
        }
    }
}

impl ListenerPlan {
    /// A plan with only the default listeners (tests, embedding).
    pub fn defaults(external: SocketAddr, local: SocketAddr) -> ListenerPlan {
        ListenerPlan {
            external,
            local,
            bind: external.ip(),
            port_map: BTreeMap::new(),
            keepalive_idle: Some(DEFAULT_KEEPALIVE_IDLE),
            proxy_protocol: ProxyProtocolListeners::default(),
            xff_trusted_hops: 0,
        }
    }

    fn address_of(&self, port: u16) -> SocketAddr {
        self.port_map
            .get(&port)
            .copied()
            .unwrap_or(SocketAddr::new(self.bind, port))
    }
}

/// One listener and what it serves.
#[derive(Debug, Clone)]
pub struct Layout {
    pub addr: SocketAddr,
    /// Gateway servers, the implicit Knative ones included (and the mesh's
    /// on the cluster-local listener).
    pub servers: Vec<BoundServer>,
    pub scope: ListenerScope,
    pub gateway_port: u16,
}

impl Layout {
    pub fn terminates_tls(&self) -> bool {
        self.servers.iter().any(BoundServer::terminates_tls)
    }
}

/// An HTTP server for every host on port 80, as `gateway` (`ns/name`).
fn implicit(gateway: &str) -> BoundServer {
    BoundServer {
        gateway: gateway.to_string(),
        server: Server {
            port: Some(Port {
                number: 80,
                protocol: "HTTP".into(),
                name: "http".into(),
                target_port: None,
            }),
            hosts: vec!["*".into()],
            ..Default::default()
        },
    }
}

/// The listeners for `gateways` under `plan`, and what could not be done.
pub fn layout(plan: &ListenerPlan, gateways: &[Gateway]) -> (Vec<Layout>, Vec<String>) {
    let mut out = vec![
        Layout {
            addr: plan.external,
            servers: vec![implicit(KNATIVE_INGRESS_GATEWAY)],
            scope: ListenerScope {
                external: true,
                local: false,
            },
            gateway_port: 80,
        },
        Layout {
            addr: plan.local,
            servers: vec![implicit(KNATIVE_LOCAL_GATEWAY), implicit(MESH)],
            scope: ListenerScope {
                external: false,
                local: true,
            },
            gateway_port: 80,
        },
    ];
    let (ports, mut problems) = servers_by_port(gateways);
    for (port, servers) in ports {
        let addr = plan.address_of(port);
        if let Some(l) = out.iter_mut().find(|l| l.addr == addr) {
            // A default listener is plain HTTP: TLS servers cannot join it.
            for s in servers {
                if s.terminates_tls() {
                    problems.push(format!(
                        "gateway {}: port {port} maps to {addr}, the plain default listener: its TLS server is not served (map the port elsewhere with --gateway-port-map)",
                        s.gateway
                    ));
                } else {
                    l.servers.push(s);
                }
            }
            continue;
        }
        let scope = ListenerScope {
            external: servers.iter().any(|s| s.gateway == KNATIVE_INGRESS_GATEWAY),
            local: servers.iter().any(|s| s.gateway == KNATIVE_LOCAL_GATEWAY),
        };
        out.push(Layout {
            addr,
            servers,
            scope,
            gateway_port: port,
        });
    }
    (out, problems)
}

/// The listener manager's specs for `layouts`, with certificates from
/// `secrets`.
pub fn specs(
    plan: &ListenerPlan,
    layouts: &[Layout],
    secrets: &[Secret],
) -> (Vec<ListenerSpec>, Vec<String>) {
    let creds = Credentials::new(secrets.iter().cloned());
    let mut problems = Vec::new();
    let specs = layouts
        .iter()
        .map(|l| {
            let tls = l.terminates_tls().then(|| {
                let (cfg, p) = TlsListenerConfig::from_servers(&l.servers, &creds);
                problems.extend(p);
                cfg
            });
            ListenerSpec {
                addr: l.addr,
                tls,
                servers: l.servers.clone(),
                scope: l.scope,
                proxy_protocol: plan.proxy_protocol.expects(plan, l),
                xff_trusted_hops: plan.xff_trusted_hops,
                keepalive_idle: plan.keepalive_idle,
                gateway_port: Some(l.gateway_port),
            }
        })
        .collect();
    (specs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(yaml: &str) -> Gateway {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ports_become_listeners() {
        let ext: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let mut plan = ListenerPlan::defaults(ext, local);
        plan.port_map.insert(80, ext);
        plan.port_map.insert(443, "127.0.0.1:8443".parse().unwrap());
        let g = gw("metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['shop.example.com']
    tls: {mode: SIMPLE, credentialName: shop}
  - port: {number: 9090, name: admin, protocol: HTTP}
    hosts: ['admin.example.com']
");
        let (l, problems) = layout(&plan, &[g]);
        assert!(problems.is_empty(), "{problems:?}");
        let addrs: Vec<String> = l.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:8080",
                "127.0.0.1:8081",
                "127.0.0.1:8443",
                "127.0.0.1:9090"
            ]
        );
        // Port 80 joined the default external listener.
        assert_eq!(l[0].servers.len(), 2);
        assert!(l[0].scope.external && !l[0].scope.local);
        assert!(l[2].terminates_tls() && l[2].scope == ListenerScope::NONE);
        assert_eq!(l[2].gateway_port, 443);
        // The certificate is missing: reported, the listener still comes up.
        let (s, problems) = specs(&plan, &l, &[]);
        assert_eq!(s.len(), 4);
        assert!(s[2].tls.is_some());
        assert!(
            problems.iter().any(|p| p.contains("not found")),
            "{problems:?}"
        );
    }

    #[test]
    fn knatives_own_gateway_serves_knative_routes() {
        let plan = ListenerPlan::defaults(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        );
        let g = gw(
            "metadata: {name: knative-ingress-gateway, namespace: knative-serving}
spec:
  servers:
  - port: {number: 18443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: wildcard}
",
        );
        let (l, _) = layout(&plan, &[g]);
        assert!(l[2].scope.external);
        // A TLS server mapped onto a default listener is refused.
        let mut plan2 = plan.clone();
        plan2.port_map.insert(18443, plan.external);
        let g = gw("metadata: {name: x, namespace: web}
spec:
  servers:
  - port: {number: 18443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: wildcard}
");
        let (l, problems) = layout(&plan2, &[g]);
        assert_eq!(l.len(), 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
