//! DestinationRule limits against the load the revisions declare (or that
//! was observed), and outlier detection that can eject a service's only
//! instance.

use skiff_api::istio::DestinationRule;
use skiff_api::istio::destination_rule::{ConnectionPoolSettings, OutlierDetection, TrafficPolicy};
use skiff_proxy::istio::policy::{effective_policy, qualify_host, select};

use super::knative::{RevisionFacts, RouteFacts};
use super::{Finding, Knative, Objects, Settings, Severity};

fn dr_id(dr: &DestinationRule) -> String {
    format!(
        "DestinationRule {}/{}",
        dr.metadata.namespace, dr.metadata.name
    )
}

/// The most concurrent requests the pool lets through, and why.
fn request_ceiling(p: &ConnectionPoolSettings) -> Option<(u64, String)> {
    let mut best: Option<(u64, String)> = None;
    let mut consider = |v: u64, why: String| {
        if best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, why));
        }
    };
    if let Some(h) = &p.http
        && h.http2_max_requests > 0
    {
        consider(
            h.http2_max_requests as u64,
            format!("http2MaxRequests {}", h.http2_max_requests),
        );
    }
    if let Some(t) = &p.tcp
        && t.max_connections > 0
    {
        // HTTP/1.1: one request per connection, plus the pending queue.
        let pending = p.http.as_ref().map_or(0, |h| h.http1_max_pending_requests);
        if pending > 0 {
            consider(
                (t.max_connections + pending) as u64,
                format!(
                    "maxConnections {} + http1MaxPendingRequests {pending}",
                    t.max_connections
                ),
            );
        }
    }
    best
}

/// (what one of the revisions needs, evidence).
fn needed(revs: &[&RevisionFacts]) -> Option<(u64, String)> {
    revs.iter()
        .map(|r| match r.declared_capacity() {
            Some(c) => (
                c,
                format!(
                    "revision {} declares containerConcurrency {} x max-scale {} = {c} concurrent requests",
                    r.name, r.container_concurrency, r.max_scale
                ),
            ),
            None => (
                r.per_instance_target(),
                format!(
                    "one instance of revision {} is meant to run {} concurrent requests (autoscaling target)",
                    r.name,
                    r.per_instance_target()
                ),
            ),
        })
        .max_by_key(|(n, _)| *n)
}

struct Scope<'a> {
    label: String,
    policy: Option<TrafficPolicy>,
    revisions: Vec<&'a RevisionFacts>,
    hosts: Vec<String>,
}

fn scopes<'a>(dr: &'a DestinationRule, routes: &[&'a RouteFacts]) -> Vec<Scope<'a>> {
    let all: Vec<&RevisionFacts> = routes.iter().flat_map(|r| r.revisions.iter()).collect();
    let hosts: Vec<String> = routes
        .iter()
        .map(|r| format!("{}.{}.svc.cluster.local", r.name, r.namespace))
        .collect();
    let host_level = dr.spec.traffic_policy.as_ref();
    let mut out = vec![Scope {
        label: "trafficPolicy".into(),
        policy: effective_policy(host_level, None, None),
        revisions: all.clone(),
        hosts: hosts.clone(),
    }];
    for (i, s) in dr.spec.subsets.iter().enumerate() {
        if s.traffic_policy.is_none() {
            continue;
        }
        out.push(Scope {
            label: format!("subsets[{i}] ({})", s.name),
            policy: effective_policy(host_level, s.traffic_policy.as_ref(), None),
            revisions: select(s, all.iter().map(|r| (&r.labels, *r))),
            hosts: hosts.clone(),
        });
    }
    out
}

fn outlier_problem(o: &OutlierDetection, revs: &[&RevisionFacts]) -> Option<String> {
    let detects =
        o.consecutive_5xx_errors != Some(0) || o.consecutive_gateway_errors.unwrap_or(0) > 0;
    if o.min_health_percent > 0 || !detects {
        return None;
    }
    revs.iter().find(|r| r.min_scale < 2).map(|r| {
        format!(
            "revision {} can run a single instance (min-scale {})",
            r.name, r.min_scale
        )
    })
}

pub fn check(objs: &Objects, kn: &Knative, settings: &Settings, out: &mut Vec<Finding>) {
    for dr in &objs.destination_rules {
        let host = qualify_host(&dr.spec.host, &dr.metadata.namespace);
        let routes = kn.routes_matching(&host);
        if routes.is_empty() {
            continue;
        }
        for scope in scopes(dr, &routes) {
            let Some(policy) = &scope.policy else {
                continue;
            };
            if let Some(pool) = &policy.connection_pool
                && let Some((ceiling, why)) = request_ceiling(pool)
            {
                if let Some((need, evidence)) = needed(&scope.revisions)
                    && ceiling < need
                {
                    out.push(
                        Finding::new(
                            Severity::Warning,
                            "SK2001",
                            dr_id(dr),
                            format!(
                                "{}: connectionPool lets {ceiling} concurrent requests through, below the {need} the service is built for",
                                scope.label
                            ),
                        )
                        .evidence(format!("{why} caps concurrent requests at {ceiling}"))
                        .evidence(evidence)
                        .evidence("requests above the cap get 503 with x-envoy-overloaded (flag UO)")
                        .fix(format!("raise the limits to at least {need}, or remove them (Istio's default is unlimited)")),
                    );
                }
                for h in &scope.hosts {
                    if let Some(seen) = settings.observed_concurrency.get(h)
                        && *seen > ceiling
                    {
                        out.push(
                            Finding::new(
                                Severity::Warning,
                                "SK2001",
                                dr_id(dr),
                                format!(
                                    "{}: observed {seen} concurrent requests to {h}, above the pool's {ceiling}",
                                    scope.label
                                ),
                            )
                            .evidence(format!("{why} caps concurrent requests at {ceiling}"))
                            .fix(format!("raise the limits above {seen}")),
                        );
                    }
                }
            }
            if let Some(o) = &policy.outlier_detection
                && let Some(why) = outlier_problem(o, &scope.revisions)
            {
                out.push(
                    Finding::new(
                        Severity::Warning,
                        "SK2002",
                        dr_id(dr),
                        format!("{}: outlier detection can eject the only instance", scope.label),
                    )
                    .evidence(why)
                    .evidence(format!(
                        "Envoy always lets one host be ejected (maxEjectionPercent {}), and Istio disables panic mode (minHealthPercent 0)",
                        if o.max_ejection_percent > 0 { o.max_ejection_percent } else { 10 }
                    ))
                    .evidence("with the only instance ejected every request gets 503 no healthy upstream (flag UH) for baseEjectionTime")
                    .fix("run at least 2 instances (autoscaling.knative.dev/min-scale: \"2\"), or set minHealthPercent (e.g. 50) so traffic keeps flowing when all hosts are ejected"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn dr(policy: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: hello}}\nspec:\n  host: hello\n  trafficPolicy: {policy}\n"
        )
    }

    #[test]
    fn limits_below_declared_load() {
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 10, "autoscaling.knative.dev/max-scale: '3'"),
            dr("{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}")
        );
        let f = find(&y, "SK2001");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message
                .contains("lets 2 concurrent requests through, below the 30"),
            "{}",
            f[0].message
        );
        assert!(f[0].evidence[0].contains("maxConnections 1 + http1MaxPendingRequests 1"));
        // Enough room: nothing.
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 10, "autoscaling.knative.dev/max-scale: '3'"),
            dr("{connectionPool: {http: {http2MaxRequests: 100}}}")
        );
        assert!(find(&y, "SK2001").is_empty());
        // No max-scale: one instance's target counts.
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 0, ""),
            dr("{connectionPool: {http: {http2MaxRequests: 10}}}")
        );
        assert!(find(&y, "SK2001")[0].evidence[1].contains("meant to run 100"));
    }

    #[test]
    fn observed_load() {
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 5, ""),
            dr("{connectionPool: {http: {http2MaxRequests: 10}}}")
        );
        let mut s = super::super::Settings::default();
        s.observed_concurrency
            .insert("hello.default.svc.cluster.local".into(), 50);
        let f: Vec<_> = super::super::analyze(&objects(&y), &s)
            .into_iter()
            .filter(|f| f.code == "SK2001")
            .collect();
        assert!(f.iter().any(|f| f.message.contains("observed 50")), "{f:?}");
    }

    #[test]
    fn outlier_on_a_single_instance() {
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 0, ""),
            dr("{outlierDetection: {consecutive5xxErrors: 1}}")
        );
        let f = find(&y, "SK2002");
        assert_eq!(f.len(), 1);
        assert!(f[0].evidence[0].contains("min-scale 0"));
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 0, "autoscaling.knative.dev/min-scale: '2'"),
            dr("{outlierDetection: {consecutive5xxErrors: 1}}")
        );
        assert!(find(&y, "SK2002").is_empty());
        let y = format!(
            "{}{}",
            ksvc("hello", 1, 0, ""),
            dr("{outlierDetection: {consecutive5xxErrors: 1, minHealthPercent: 50}}")
        );
        assert!(
            find(&y, "SK2002").is_empty(),
            "panic mode keeps traffic flowing"
        );
    }
}
