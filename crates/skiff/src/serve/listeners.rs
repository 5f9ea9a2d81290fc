//! The gateway's listeners in `skiff serve`: the default external and
//! cluster-local listeners are opened at startup; the controller then sends
//! the full set (default listeners plus one per Gateway server port, TLS
//! configured from Secrets) whenever Gateways or Secrets change, and the
//! listener manager opens, updates in place (certificates swapped without
//! dropping connections) or closes them. On shutdown every listener stops
//! accepting and open connections finish their requests.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use skiff_controller::{ListenerPlan, ProxyProtocolListeners};
use skiff_proxy::ListenerScope;
use skiff_proxy::listeners::{DEFAULT_KEEPALIVE_IDLE, ListenerManager, ListenerSpec};
use tokio::sync::{mpsc, watch};

/// Parse `--gateway-port-map` entries (`PORT=IP:PORT`).
pub fn port_map(entries: &[String]) -> anyhow::Result<BTreeMap<u16, SocketAddr>> {
    let mut map = BTreeMap::new();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((port, addr)) = e.split_once('=') else {
            bail!("--gateway-port-map {e:?}: expected PORT=IP:PORT");
        };
        let port: u16 = port
            .trim()
            .parse()
            .with_context(|| format!("--gateway-port-map {e:?}: {port:?} is not a port"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("--gateway-port-map {e:?}: {addr:?} is not IP:PORT"))?;
        map.insert(port, addr);
    }
    Ok(map)
}

/// How the gateway sits behind a load balancer, from the flags.
#[derive(Debug, Clone, Default)]
pub struct Front {
    pub proxy_protocol: ProxyProtocolListeners,
    pub xff_trusted_hops: u32,
}

/// Parse `--proxy-protocol` entries: `gateway` (the `--listen` listener),
/// `local` (`--local-listen`) or a Gateway server port.
pub fn proxy_protocol(entries: &[String]) -> anyhow::Result<ProxyProtocolListeners> {
    let mut out = ProxyProtocolListeners::default();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match e {
            "gateway" => out.external = true,
            "local" => out.local = true,
            port => {
                let port: u16 = port.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "--proxy-protocol {e:?}: expected `gateway`, `local` or a Gateway server port"
                    )
                })?;
                out.ports.insert(port);
            }
        }
    }
    Ok(out)
}

pub fn parse_addr(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("{what} address {addr:?} is not IP:PORT"))
}

fn default_spec(
    addr: SocketAddr,
    scope: ListenerScope,
    proxy_protocol: bool,
    front: &Front,
) -> ListenerSpec {
    let mut s = ListenerSpec::plain(addr, Vec::new());
    s.scope = scope;
    s.gateway_port = Some(80);
    s.proxy_protocol = proxy_protocol;
    s.xff_trusted_hops = front.xff_trusted_hops;
    s
}

/// Open the default listeners; returns (external, cluster-local) as bound.
pub async fn open_defaults(
    manager: &mut ListenerManager,
    external: SocketAddr,
    local: SocketAddr,
    front: &Front,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let report = manager
        .apply(vec![
            default_spec(
                external,
                ListenerScope {
                    external: true,
                    local: false,
                },
                front.proxy_protocol.external,
                front,
            ),
            default_spec(
                local,
                ListenerScope {
                    external: false,
                    local: true,
                },
                front.proxy_protocol.local,
                front,
            ),
        ])
        .await;
    if let Some((addr, e)) = report.failed.first() {
        bail!("cannot listen on {addr} for the gateway: {e}");
    }
    // Opened in the order asked (both may ask for port 0).
    match report.opened.as_slice() {
        [(_, e), (_, l)] => Ok((*e, *l)),
        _ => bail!("the gateway's default listeners did not open"),
    }
}

/// The plan the controller lays Gateway listeners out by.
pub fn plan(
    external: SocketAddr,
    local: SocketAddr,
    bind: &str,
    port_map: BTreeMap<u16, SocketAddr>,
    front: Front,
) -> anyhow::Result<ListenerPlan> {
    let bind: IpAddr = bind
        .parse()
        .with_context(|| format!("--gateway-address {bind:?} is not an IP address"))?;
    Ok(ListenerPlan {
        external,
        local,
        bind,
        port_map,
        keepalive_idle: Some(DEFAULT_KEEPALIVE_IDLE),
        proxy_protocol: front.proxy_protocol,
        xff_trusted_hops: front.xff_trusted_hops,
    })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Apply the controller's listener sets until `stop`, then drain for up to
/// `drain`.
pub async fn run(
    mut manager: ListenerManager,
    mut specs: mpsc::UnboundedReceiver<Vec<ListenerSpec>>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    loop {
        tokio::select! {
            next = specs.recv() => {
                let Some(mut desired) = next else { break };
                // Only the latest set matters.
                while let Ok(newer) = specs.try_recv() {
                    desired = newer;
                }
                let r = manager.apply(desired).await;
                for (asked, bound) in &r.opened {
                    tracing::info!(%asked, %bound, "gateway listener opened");
                }
                for addr in &r.closed {
                    tracing::info!(%addr, "gateway listener closed");
                }
                for (addr, e) in &r.failed {
                    tracing::warn!(%addr, "cannot open gateway listener: {e}");
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
    let left = manager.drain(drain).await;
    if left > 0 {
        tracing::warn!("{left} connection(s) still open after {drain:?}: closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_maps() {
        let m = port_map(&["443=127.0.0.1:8443".into(), " 80=127.0.0.1:8080 ".into()]).unwrap();
        assert_eq!(m[&443], "127.0.0.1:8443".parse().unwrap());
        assert_eq!(m.len(), 2);
        assert!(port_map(&["443".into()]).is_err());
        assert!(port_map(&["x=127.0.0.1:1".into()]).is_err());
        assert!(port_map(&["1=nope".into()]).is_err());
    }

    #[test]
    fn proxy_protocol_listeners() {
        let p = proxy_protocol(&["gateway".into(), " 443".into(), "".into()]).unwrap();
        assert!(p.external && !p.local);
        assert_eq!(p.ports.iter().copied().collect::<Vec<_>>(), [443]);
        let e = proxy_protocol(&["external".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--proxy-protocol \"external\""), "{e}");
    }
}
