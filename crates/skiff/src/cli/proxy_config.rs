//! `skiff proxy-config routes|clusters|endpoints|listeners`: what the
//! gateway is doing now, like `istioctl proxy-config`. Tables by default
//! (istioctl's column names where they fit), the server's views with
//! `-o json|yaml`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_proxy::introspect::{
    ActionView, CircuitBreakersView, ClusterKind, ClusterView, ClustersView, EndpointView,
    EndpointsView, KnativeRouteView, ListenerView, ListenersView, MatchView, RoutesView, RuleView,
    StringMatchView, VirtualHostView, Visibility,
};

use super::{Output, ProxyConfigArgs, ProxyConfigKind, to_yaml};
use crate::client::Client;
use crate::table;

pub async fn run(client: &Client, args: &ProxyConfigArgs) -> anyhow::Result<ExitCode> {
    if args.host.is_some() && args.kind != ProxyConfigKind::Routes {
        bail!("--host applies to `proxy-config routes`");
    }
    if args.cluster.is_some()
        && !matches!(
            args.kind,
            ProxyConfigKind::Clusters | ProxyConfigKind::Endpoints
        )
    {
        bail!("--cluster applies to `proxy-config clusters` and `proxy-config endpoints`");
    }
    let contains =
        |filter: &Option<String>, s: &str| filter.as_deref().is_none_or(|f| s.contains(f));
    let out = match args.kind {
        ProxyConfigKind::Routes => {
            let mut v: RoutesView = fetch(client, "routes").await?;
            v.virtual_hosts.retain(|h| contains(&args.host, &h.host));
            v.knative.retain(|r| contains(&args.host, &r.host));
            render(&v, args.output, routes_table)?
        }
        ProxyConfigKind::Clusters => {
            let mut v: ClustersView = fetch(client, "clusters").await?;
            v.clusters.retain(|c| contains(&args.cluster, &c.name));
            render(&v, args.output, clusters_table)?
        }
        ProxyConfigKind::Endpoints => {
            let mut v: EndpointsView = fetch(client, "endpoints").await?;
            v.endpoints.retain(|e| contains(&args.cluster, &e.cluster));
            render(&v, args.output, endpoints_table)?
        }
        ProxyConfigKind::Listeners => {
            let v: ListenersView = fetch(client, "listeners").await?;
            render(&v, args.output, listeners_table)?
        }
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

async fn fetch<T: DeserializeOwned>(client: &Client, kind: &str) -> anyhow::Result<T> {
    let v = client
        .call(Method::GET, &format!("/debug/proxy-config/{kind}"), None)
        .await?;
    serde_json::from_value(v).with_context(|| {
        format!(
            "the server's {kind} are not what this skiff reads (is the server another version?)"
        )
    })
}

fn render<T: Serialize>(
    view: &T,
    output: Option<Output>,
    table: fn(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match output {
        Some(Output::Json) => serde_json::to_string_pretty(view)? + "\n",
        Some(Output::Yaml) => to_yaml(&serde_json::to_value(view)?)?,
        None => table(view),
    })
}

// ----------------------------------------------------------------- routes

const ROUTE_COLUMNS: [&str; 7] = [
    "LISTENER",
    "HOST",
    "MATCH",
    "DESTINATION",
    "TIMEOUT",
    "RETRIES",
    "SOURCE",
];

fn routes_table(v: &RoutesView) -> String {
    let mut rows = Vec::new();
    for vh in &v.virtual_hosts {
        rule_rows(vh, &vh.rules, &mut rows);
    }
    for r in &v.knative {
        knative_rows(r, &mut rows);
    }
    table::render(&ROUTE_COLUMNS, &rows)
}

/// One row per rule and match entry (Envoy makes a route of each), the
/// rules of a delegate after the rule delegating to them.
fn rule_rows(vh: &VirtualHostView, rules: &[RuleView], rows: &mut Vec<Vec<String>>) {
    for rule in rules {
        let matches: Vec<String> = if rule.matches.is_empty() {
            vec!["/*".to_string()]
        } else {
            rule.matches.iter().map(match_summary).collect()
        };
        for m in matches {
            rows.push(vec![
                vh.listener.clone(),
                vh.host.clone(),
                m,
                action_summary(&rule.action),
                rule.timeout_ms.map_or("-".to_string(), duration_ms),
                rule.retries.attempts.to_string(),
                format!("vs {}", rule.virtual_service),
            ]);
        }
        if let ActionView::Delegate { rules } = &rule.action {
            rule_rows(vh, rules, rows);
        }
    }
}

fn knative_rows(r: &KnativeRouteView, rows: &mut Vec<Vec<String>>) {
    let destination = r
        .traffic
        .iter()
        .map(|t| format!("{} {}%", t.revision, t.percent))
        .collect::<Vec<_>>()
        .join(", ");
    // Not served anywhere: every listener for it has a VirtualService.
    let none = [match r.visibility {
        Visibility::External => "(external: none)".to_string(),
        Visibility::ClusterLocal => "(cluster-local: none)".to_string(),
    }];
    let listeners = if r.listeners.is_empty() {
        &none[..]
    } else {
        &r.listeners[..]
    };
    for l in listeners {
        rows.push(vec![
            l.clone(),
            r.host.clone(),
            "/*".to_string(),
            destination.clone(),
            "-".to_string(),
            "-".to_string(),
            format!("route {}", r.route),
        ]);
    }
}

/// `exact` as is, `prefix*`, `*suffix`, `~regex`, `*` for presence.
fn string_match(m: &StringMatchView) -> String {
    let s = if let Some(v) = &m.exact {
        v.clone()
    } else if let Some(v) = &m.prefix {
        format!("{v}*")
    } else if let Some(v) = &m.suffix {
        format!("*{v}")
    } else if let Some(v) = &m.regex {
        format!("~{v}")
    } else {
        "*".to_string()
    };
    if m.ignore_case {
        format!("{s} (ignore case)")
    } else {
        s
    }
}

/// A match entry in one line: `/api* header x-user=~a.* method=GET`.
fn match_summary(m: &MatchView) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &m.uri {
        parts.push(string_match(u));
    }
    for (name, v) in [
        ("method", &m.method),
        ("authority", &m.authority),
        ("scheme", &m.scheme),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name}={}", string_match(v)));
        }
    }
    for (k, v) in &m.headers {
        parts.push(format!("header {k}={}", string_match(v)));
    }
    for (k, v) in &m.without_headers {
        parts.push(format!("!header {k}={}", string_match(v)));
    }
    for (k, v) in &m.query_params {
        parts.push(format!("query {k}={}", string_match(v)));
    }
    if let Some(p) = m.port {
        parts.push(format!("port={p}"));
    }
    if parts.is_empty() {
        "/*".to_string()
    } else {
        parts.join(" ")
    }
}

fn percent(part: u32, total: u32) -> String {
    let p = f64::from(part) * 100.0 / f64::from(total.max(1));
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn action_summary(a: &ActionView) -> String {
    match a {
        ActionView::Route { destinations } => {
            let total: u32 = destinations.iter().map(|d| d.weight).sum();
            destinations
                .iter()
                .map(|d| {
                    let name = d
                        .cluster
                        .clone()
                        .unwrap_or_else(|| format!("{} (no such host or subset)", d.host));
                    if destinations.len() == 1 {
                        name
                    } else {
                        format!("{name} {}", percent(d.weight, total))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        ActionView::Redirect { status, redirect } => format!("redirect {status}: {redirect}"),
        ActionView::DirectResponse { status, .. } => format!("direct response {status}"),
        ActionView::Delegate { rules } => format!("delegate ({} rules below)", rules.len()),
    }
}

fn duration_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

// --------------------------------------------------------------- clusters

const CLUSTER_COLUMNS: [&str; 12] = [
    "NAME",
    "TYPE",
    "REVISIONS",
    "ENDPOINTS",
    "LB",
    "CONNECTIONS",
    "PENDING",
    "REQUESTS",
    "OVERFLOWS",
    "EJECTED",
    "IN-FLIGHT",
    "QUEUED",
];

/// `active/max`, or `active` without a limit.
fn usage(active: u32, max: Option<u32>) -> String {
    match max {
        Some(m) => format!("{active}/{m}"),
        None => active.to_string(),
    }
}

fn short_revision(r: &str) -> &str {
    r.rsplit_once('/').map_or(r, |(_, name)| name)
}

fn clusters_table(v: &ClustersView) -> String {
    let rows: Vec<Vec<String>> = v.clusters.iter().map(cluster_row).collect();
    table::render(&CLUSTER_COLUMNS, &rows)
}

fn cluster_row(c: &ClusterView) -> Vec<String> {
    let dash = || "-".to_string();
    let (kind, revisions) = match c.kind {
        ClusterKind::Revision => ("revision", dash()),
        ClusterKind::Destination => (
            "destination",
            c.revisions
                .iter()
                .map(|r| short_revision(&r.revision))
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    let breakers = c.circuit_breakers.as_ref();
    let column = |f: fn(&CircuitBreakersView) -> String| breakers.map_or_else(dash, f);
    // Requests refused with 503 UO: by a circuit breaker, or by the
    // activator (queue full, or no instance within the timeout).
    let overflows = match (breakers, &c.revision) {
        (Some(b), _) => (b.rq_pending_overflow + b.rq_retry_overflow).to_string(),
        (None, Some(r)) => (r.activator_overflow + r.activator_timed_out).to_string(),
        (None, None) => dash(),
    };
    vec![
        c.name.clone(),
        kind.to_string(),
        if revisions.is_empty() {
            dash()
        } else {
            revisions
        },
        format!("{}/{}", c.healthy_endpoints, c.endpoints),
        c.lb.clone(),
        column(|b| usage(b.active_connections, b.max_connections)),
        column(|b| usage(b.pending_requests, b.max_pending_requests)),
        column(|b| usage(b.active_requests, b.max_requests)),
        overflows,
        c.outlier_detection
            .as_ref()
            .map_or_else(dash, |o| o.ejections_active.to_string()),
        c.in_flight.to_string(),
        c.queued.to_string(),
    ]
}

// -------------------------------------------------------------- endpoints

const ENDPOINT_COLUMNS: [&str; 10] = [
    "ENDPOINT",
    "STATUS",
    "OUTLIER CHECK",
    "CLUSTER",
    "REVISION",
    "IN-FLIGHT",
    "REQUESTS",
    "ERRORS",
    "EJECTIONS",
    "EJECTED FOR",
];

fn endpoints_table(v: &EndpointsView) -> String {
    let rows: Vec<Vec<String>> = v.endpoints.iter().map(endpoint_row).collect();
    table::render(&ENDPOINT_COLUMNS, &rows)
}

fn endpoint_row(e: &EndpointView) -> Vec<String> {
    vec![
        e.address.clone(),
        e.status.as_str().to_string(),
        if e.ejected { "FAILED" } else { "OK" }.to_string(),
        e.cluster.clone(),
        short_revision(&e.revision).to_string(),
        match e.capacity {
            Some(c) => format!("{}/{c}", e.in_flight),
            None => e.in_flight.to_string(),
        },
        e.requests.to_string(),
        e.errors.to_string(),
        e.ejections.to_string(),
        // Rounded up: an ejection with 200 ms left is not over.
        e.ejection_remaining_ms.map_or("-".to_string(), |ms| {
            table::human_duration(ms.div_ceil(1000) as i64)
        }),
    ]
}

// -------------------------------------------------------------- listeners

const LISTENER_COLUMNS: [&str; 11] = [
    "ADDRESS",
    "BOUND",
    "PORT",
    "TLS",
    "SNI",
    "CERTIFICATES",
    "PROXY PROTOCOL",
    "KNATIVE ROUTES",
    "GATEWAYS",
    "VIRTUAL HOSTS",
    "CONNECTIONS",
];

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn listeners_table(v: &ListenersView) -> String {
    let rows: Vec<Vec<String>> = v.listeners.iter().map(listener_row).collect();
    table::render(&LISTENER_COLUMNS, &rows)
}

fn listener_row(l: &ListenerView) -> Vec<String> {
    let mut gateways: Vec<String> = Vec::new();
    for s in &l.servers {
        if !gateways.contains(&s.gateway) {
            gateways.push(s.gateway.clone());
        }
    }
    let scope: Vec<String> = l
        .knative_routes
        .iter()
        .map(|v| match v {
            Visibility::External => "external".to_string(),
            Visibility::ClusterLocal => "cluster-local".to_string(),
        })
        .collect();
    vec![
        l.address.clone(),
        l.bound.clone(),
        l.gateway_port.map_or("-".to_string(), |p| p.to_string()),
        yes_no(l.tls),
        list_or_dash(&l.sni_hosts),
        list_or_dash(&l.credentials),
        yes_no(l.proxy_protocol),
        list_or_dash(&scope),
        list_or_dash(&gateways),
        l.virtual_hosts.to_string(),
        l.connections.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proxy::introspect::{DestinationView, EndpointStatus, RetryView};
    use std::collections::BTreeMap;

    fn exact(v: &str) -> StringMatchView {
        StringMatchView {
            exact: Some(v.into()),
            ..Default::default()
        }
    }

    #[test]
    fn matches_read_in_one_line() {
        let m = MatchView {
            uri: Some(StringMatchView {
                prefix: Some("/api".into()),
                ..Default::default()
            }),
            method: Some(exact("GET")),
            headers: BTreeMap::from([(
                "x-user".to_string(),
                StringMatchView {
                    regex: Some("a.*".into()),
                    ..Default::default()
                },
            )]),
            without_headers: BTreeMap::from([("x-debug".to_string(), StringMatchView::default())]),
            port: Some(80),
            ..Default::default()
        };
        assert_eq!(
            match_summary(&m),
            "/api* method=GET header x-user=~a.* !header x-debug=* port=80"
        );
        assert_eq!(match_summary(&MatchView::default()), "/*");
    }

    #[test]
    fn route_rows_per_match_with_weights_in_percent() {
        let dest = |cluster: Option<&str>, weight| DestinationView {
            host: "hello".into(),
            subset: None,
            port: None,
            weight,
            cluster: cluster.map(str::to_string),
        };
        let v = RoutesView {
            version: 1,
            virtual_hosts: vec![VirtualHostView {
                listener: "127.0.0.1:8081".into(),
                host: "hello.default.svc.cluster.local".into(),
                https_redirect: false,
                authorization: false,
                rules: vec![RuleView {
                    virtual_service: "default/hello".into(),
                    name: String::new(),
                    matches: vec![
                        MatchView {
                            uri: Some(exact("/a")),
                            ..Default::default()
                        },
                        MatchView {
                            uri: Some(exact("/b")),
                            ..Default::default()
                        },
                    ],
                    action: ActionView::Route {
                        destinations: vec![
                            dest(Some("outbound||v1|hello.default.svc.cluster.local"), 4),
                            dest(None, 1),
                        ],
                    },
                    timeout_ms: Some(1500),
                    retries: RetryView {
                        attempts: 2,
                        retry_on: vec![],
                        per_try_timeout_ms: None,
                        idempotent_only: true,
                    },
                    rewrite: None,
                    fault: None,
                    mirrors: vec![],
                    cors: false,
                }],
            }],
            knative: vec![KnativeRouteView {
                host: "hello.default.127.0.0.1.sslip.io".into(),
                visibility: Visibility::External,
                route: "default/hello".into(),
                listeners: vec![],
                traffic: vec![],
            }],
        };
        let t = routes_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("LISTENER"), "{t}");
        assert!(lines[1].contains(" /a "), "{t}");
        assert!(lines[2].contains(" /b "), "{t}");
        assert!(
            lines[1].contains(
                "outbound||v1|hello.default.svc.cluster.local 80%, hello (no such host or subset) 20%"
            ),
            "{t}"
        );
        assert!(lines[1].contains("1500ms"), "{t}");
        assert!(lines[3].starts_with("(external: none)"), "{t}");
    }

    #[test]
    fn endpoint_rows_say_ok_or_failed() {
        let e = EndpointView {
            address: "127.0.0.1:4000".into(),
            cluster: "default/od-00002".into(),
            revision: "default/od-00002".into(),
            instance: 1,
            status: EndpointStatus::Healthy,
            ejected: true,
            ejected_until: None,
            ejection_remaining_ms: Some(9_200),
            ejections: 2,
            consecutive_5xx: 0,
            consecutive_gateway_errors: 0,
            in_flight: 1,
            capacity: Some(10),
            requests: 7,
            errors: 3,
            h2c: false,
        };
        assert_eq!(
            endpoint_row(&e),
            [
                "127.0.0.1:4000",
                "HEALTHY",
                "FAILED",
                "default/od-00002",
                "od-00002",
                "1/10",
                "7",
                "3",
                "2",
                "10s"
            ]
        );
    }

    #[test]
    fn unlimited_breakers_show_only_what_is_in_use() {
        assert_eq!(usage(3, None), "3");
        assert_eq!(usage(1, Some(1)), "1/1");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(duration_ms(2000), "2s");
    }
}
