//! Timeouts that race: pooled upstream connections kept longer than the
//! app keeps them (the app closes one as the proxy reuses it: a reset), and
//! anything idle longer than the load balancer in front allows (the LB
//! drops the connection: `curl: (52) Empty reply`).

use std::time::Duration;

use skiff_api::istio::destination_rule::TrafficPolicy;
use skiff_api::istio::duration;
use skiff_proxy::istio::policy::qualify_host;

use super::{Finding, Objects, Settings, Severity};

fn fmt(d: Duration) -> String {
    duration::format(d)
}

pub fn check(objs: &Objects, settings: &Settings, out: &mut Vec<Finding>) {
    for dr in &objs.destination_rules {
        let id = format!(
            "DestinationRule {}/{}",
            dr.metadata.namespace, dr.metadata.name
        );
        let mut policies: Vec<(String, &TrafficPolicy)> = dr
            .spec
            .traffic_policy
            .iter()
            .map(|p| ("trafficPolicy".to_string(), p))
            .collect();
        policies.extend(dr.spec.subsets.iter().enumerate().filter_map(|(i, s)| {
            s.traffic_policy
                .as_ref()
                .map(|p| (format!("subsets[{i}]"), p))
        }));
        for (at, p) in policies {
            let Some(pool) = &p.connection_pool else {
                continue;
            };
            let http = pool
                .http
                .as_ref()
                .and_then(|h| h.idle_timeout.as_deref())
                .map(|v| ("http.idleTimeout", v));
            let tcp = pool
                .tcp
                .as_ref()
                .and_then(|t| t.idle_timeout.as_deref())
                .map(|v| ("tcp.idleTimeout", v));
            let Some((field, value)) = http.or(tcp) else {
                continue;
            };
            let Ok(idle) = duration::parse(value) else {
                continue;
            };
            if !idle.is_zero() && idle >= settings.upstream_keepalive {
                out.push(
                    Finding::new(
                        Severity::Warning,
                        "SK4001",
                        id.clone(),
                        format!("{at}: connectionPool.{field} {value} races the app's keep-alive"),
                    )
                    .evidence(format!(
                        "pooled connections stay open {} but apps commonly close idle connections after {} (Node.js); the proxy may reuse one the app is closing",
                        fmt(idle),
                        fmt(settings.upstream_keepalive)
                    ))
                    .evidence("a request written into a connection the app just closed fails: 502/503 UC, or a retry")
                    .fix(format!(
                        "set {field} below the app's keep-alive timeout (e.g. {}), so the proxy always gives up first",
                        fmt(settings.upstream_keepalive.saturating_sub(Duration::from_secs(1)).max(Duration::from_millis(500)))
                    )),
                );
            }
        }
    }
    let Some(lb) = settings.lb_idle_timeout else {
        return;
    };
    if settings.downstream_keepalive_idle >= lb {
        out.push(
            Finding::new(
                Severity::Warning,
                "SK4002",
                "Gateway skiff/gateway".to_string(),
                format!(
                    "downstream TCP keepalive ({}) is not below the load balancer's idle timeout ({})",
                    fmt(settings.downstream_keepalive_idle),
                    fmt(lb)
                ),
            )
            .evidence("the load balancer drops a connection idle for its timeout without telling either side")
            .fix(format!("send keepalives more often than every {}", fmt(lb))),
        );
    }
    // Responses slower than the LB idle timeout with no bytes sent.
    for r in &objs.revisions {
        let secs = r.spec.timeout_seconds.unwrap_or(300);
        let t = Duration::from_secs(secs.max(0) as u64);
        if t > lb {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK4003",
                    super::id("Revision", &r.metadata),
                    format!("timeoutSeconds {secs} is longer than the load balancer's idle timeout ({})", fmt(lb)),
                )
                .evidence("a response that sends no byte for longer than the load balancer's idle timeout is cut: the client sees an empty reply")
                .fix(format!("keep timeoutSeconds below {} or stream progress bytes", lb.as_secs())),
            );
        }
    }
    for vs in &objs.virtual_services {
        for (i, rule) in vs.spec.http.iter().enumerate() {
            let Some(t) = rule
                .timeout
                .as_deref()
                .and_then(|t| duration::parse(t).ok())
            else {
                continue;
            };
            if t > lb {
                let hosts: Vec<String> = vs
                    .spec
                    .hosts
                    .iter()
                    .map(|h| qualify_host(h, &vs.metadata.namespace))
                    .collect();
                out.push(
                    Finding::new(
                        Severity::Warning,
                        "SK4003",
                        super::id("VirtualService", &vs.metadata),
                        format!("http[{i}]: timeout {} is longer than the load balancer's idle timeout ({})", fmt(t), fmt(lb)),
                    )
                    .evidence(format!("hosts [{}]", hosts.join(", ")))
                    .evidence("the load balancer cuts a response that stays silent longer than its idle timeout")
                    .fix(format!("keep the timeout below {}", fmt(lb))),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Settings, analyze};
    use std::time::Duration;

    #[test]
    fn idle_timeout_races() {
        let y = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: hello
  trafficPolicy: {connectionPool: {http: {idleTimeout: 60s}}}
  subsets:
  - name: ok
    labels: {a: b}
    trafficPolicy: {connectionPool: {tcp: {idleTimeout: 2s}}}
";
        let f = find(y, "SK4001");
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .starts_with("trafficPolicy: connectionPool.http.idleTimeout 60s"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn load_balancer_idle_timeout() {
        let y = "apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: slow-00001}
spec: {timeoutSeconds: 600, containers: [{image: x}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec: {hosts: [a.b], http: [{timeout: 10m, route: [{destination: {host: a.b}}]}]}
";
        let f = find(y, "SK4003");
        assert_eq!(f.len(), 2, "{f:?}");
        let mut s = Settings {
            downstream_keepalive_idle: Duration::from_secs(400),
            ..Settings::default()
        };
        let f: Vec<_> = analyze(&objects(y), &s)
            .into_iter()
            .filter(|f| f.code == "SK4002")
            .collect();
        assert_eq!(f.len(), 1);
        s.lb_idle_timeout = None;
        assert!(
            analyze(&objects(y), &s)
                .iter()
                .all(|f| !f.code.starts_with("SK400"))
        );
    }
}
