//! `proxy-config listeners`: the running listeners and the Gateway
//! servers bound to them.

use serde::{Deserialize, Serialize};

use crate::listeners::ListenerState;
use crate::table::RoutingTable;

use super::{Visibility, millis};

/// `proxy-config listeners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenersView {
    pub listeners: Vec<ListenerView>,
}

/// One running listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerView {
    /// The address asked for (its bound address when port 0 was asked).
    pub address: String,
    pub bound: String,
    /// Terminates TLS.
    pub tls: bool,
    /// Host names TLS servers answer for (SNI).
    pub sni_hosts: Vec<String>,
    /// `namespace/name` of the Secrets holding its certificates.
    pub credentials: Vec<String>,
    pub proxy_protocol: bool,
    /// Proxies in front whose X-Forwarded-For entries are trusted.
    pub xff_trusted_hops: u32,
    /// The port VirtualService `port` matches see.
    pub gateway_port: Option<u16>,
    /// Which Knative routes it serves.
    pub knative_routes: Vec<Visibility>,
    /// Every server redirects plain HTTP to https.
    pub https_redirect: bool,
    pub keepalive_idle_ms: Option<u64>,
    pub servers: Vec<ServerView>,
    /// Hosts with VirtualService rules here.
    pub virtual_hosts: usize,
    /// Connections open now.
    pub connections: usize,
}

/// A Gateway server bound to a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    pub port: u32,
    pub protocol: String,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_mode: Option<String>,
}

/// The running listeners and what `table` binds to them.
pub fn listeners(table: &RoutingTable, running: &[ListenerState]) -> ListenersView {
    let listeners = running
        .iter()
        .map(|l| {
            let i = &l.info;
            let mut sni_hosts = Vec::new();
            let mut credentials = Vec::new();
            for s in i.servers.iter().filter(|s| s.terminates_tls()) {
                let ns = s.gateway.split('/').next().unwrap_or("");
                for h in &s.server.hosts {
                    // `ns/host` binds a host to VirtualServices of `ns`.
                    let host = h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h);
                    if !sni_hosts.iter().any(|x| x == host) {
                        sni_hosts.push(host.to_string());
                    }
                }
                if let Some(t) = s.tls() {
                    for c in t.credential_names() {
                        let c = format!("{ns}/{c}");
                        if !credentials.contains(&c) {
                            credentials.push(c);
                        }
                    }
                }
            }
            let mut knative_routes = Vec::new();
            if i.scope.external {
                knative_routes.push(Visibility::External);
            }
            if i.scope.local {
                knative_routes.push(Visibility::ClusterLocal);
            }
            ListenerView {
                address: i.addr.to_string(),
                bound: i.bound.to_string(),
                tls: i.tls,
                sni_hosts,
                credentials,
                proxy_protocol: i.proxy_protocol,
                xff_trusted_hops: i.xff_trusted_hops,
                gateway_port: i.gateway_port,
                knative_routes,
                https_redirect: i.https_redirect(),
                keepalive_idle_ms: i.keepalive_idle.map(millis),
                servers: i
                    .servers
                    .iter()
                    .map(|s| ServerView {
                        gateway: s.gateway.clone(),
                        port: s.server.port.as_ref().map_or(0, |p| p.number),
                        protocol: s
                            .server
                            .port
                            .as_ref()
                            .map_or(String::new(), |p| p.protocol.clone()),
                        hosts: s.server.hosts.clone(),
                        tls_mode: s.tls().map(|t| t.mode().to_string()),
                    })
                    .collect(),
                virtual_hosts: table
                    .istio
                    .listener(i.addr)
                    .map_or(0, |lr| lr.hosts.iter().count()),
                connections: l.connections,
            }
        })
        .collect();
    ListenersView { listeners }
}
