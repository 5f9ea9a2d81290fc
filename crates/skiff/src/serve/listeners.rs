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
use skiff_controller::ListenerPlan;
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

pub fn parse_addr(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("{what} address {addr:?} is not IP:PORT"))
}

fn default_spec(addr: SocketAddr, scope: ListenerScope) -> ListenerSpec {
    let mut s = ListenerSpec::plain(addr, Vec::new());
    s.scope = scope;
    s.gateway_port = Some(80);
    s
}

/// Open the default listeners; returns (external, cluster-local) as bound.
pub async fn open_defaults(
    manager: &mut ListenerManager,
    external: SocketAddr,
    local: SocketAddr,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let report = manager
        .apply(vec![
            default_spec(
                external,
                ListenerScope {
                    external: true,
                    local: false,
                },
            ),
            default_spec(
                local,
                ListenerScope {
                    external: false,
                    local: true,
                },
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
}
