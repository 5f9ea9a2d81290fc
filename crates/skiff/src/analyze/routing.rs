//! Routing rules: destinations and subsets that resolve to nothing, gateways
//! that do not exist or do not serve the host, weights, unreachable and
//! duplicate rules, hosts claimed twice, DestinationRules for nothing.

use std::collections::BTreeMap;

use skiff_api::istio::virtual_service::{HttpMatchRequest, MESH_GATEWAY};
use skiff_api::istio::{DestinationRule, VirtualService};
use skiff_proxy::istio::binding::{bound_hosts, vs_gateways};
use skiff_proxy::istio::policy::{DestinationRules, qualify_host, select, subset};

use super::{Finding, Knative, Objects, Severity};

fn vs_id(vs: &VirtualService) -> String {
    format!(
        "VirtualService {}/{}",
        vs.metadata.namespace, vs.metadata.name
    )
}

fn dr_id(dr: &DestinationRule) -> String {
    format!(
        "DestinationRule {}/{}",
        dr.metadata.namespace, dr.metadata.name
    )
}

/// A match with no conditions matches everything.
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let mut bare = m.clone();
    bare.name.clear();
    bare.stat_prefix.clear();
    bare == HttpMatchRequest::default()
}

fn match_key(m: &HttpMatchRequest) -> String {
    let mut bare = m.clone();
    bare.name.clear();
    serde_json::to_string(&bare).unwrap_or_default()
}

pub fn check(objs: &Objects, kn: &Knative, out: &mut Vec<Finding>) {
    let drs = DestinationRules::new(objs.destination_rules.iter().cloned());
    for vs in &objs.virtual_services {
        destinations(vs, kn, &drs, out);
        gateways(vs, objs, out);
        rules(vs, out);
    }
    claimed_twice(objs, out);
    destination_rules(objs, kn, out);
}

fn destinations(vs: &VirtualService, kn: &Knative, drs: &DestinationRules, out: &mut Vec<Finding>) {
    let ns = &vs.metadata.namespace;
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let mut sum: i64 = 0;
        for (j, d) in rule.route.iter().enumerate() {
            sum += i64::from(d.weight.max(0));
            let Some(dest) = &d.destination else { continue };
            let host = qualify_host(&dest.host, ns);
            let at = format!("http[{i}].route[{j}]");
            if !kn.knows(&host) {
                out.push(
                    Finding::new(
                        Severity::Error,
                        "SK1001",
                        vs_id(vs),
                        format!("{at}: destination host {:?} resolves to nothing", dest.host),
                    )
                    .evidence(format!("{host} is the host of no Knative Service or Route"))
                    .evidence("requests routed there get 503 (flag NC: no cluster)")
                    .fix("route to a Knative Service's host (name.namespace.svc.cluster.local), or create that Service"),
                );
                continue;
            }
            if dest.subset.is_empty() {
                continue;
            }
            let dr = drs.lookup(&host, ns);
            let Some(s) = dr.and_then(|d| subset(d, &dest.subset)) else {
                let evidence = match dr {
                    Some(d) => format!(
                        "{} defines subsets [{}]",
                        dr_id(d),
                        d.spec
                            .subsets
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!("no DestinationRule has host {host}"),
                };
                out.push(
                    Finding::new(
                        Severity::Error,
                        "SK1002",
                        vs_id(vs),
                        format!("{at}: subset {:?} of host {host} is not defined", dest.subset),
                    )
                    .evidence(evidence)
                    .evidence("requests routed there get 503 (flag NC: no cluster)")
                    .fix(format!(
                        "add subset {:?} to the DestinationRule for {host} (labels such as serving.knative.dev/revision: <revision>)",
                        dest.subset
                    )),
                );
                continue;
            };
            let Some(route) = kn.route(&host) else {
                continue;
            };
            if !route.revisions_known {
                continue;
            }
            let members = select(
                s,
                route.revisions.iter().map(|r| (&r.labels, r.name.as_str())),
            );
            if members.is_empty() {
                let revs: Vec<&str> = route.revisions.iter().map(|r| r.name.as_str()).collect();
                out.push(
                    Finding::new(
                        Severity::Error,
                        "SK1003",
                        vs_id(vs),
                        format!("{at}: subset {:?} of host {host} selects no revision", dest.subset),
                    )
                    .evidence(format!(
                        "subset labels {}",
                        serde_json::to_string(&s.labels).unwrap_or_default()
                    ))
                    .evidence(format!("revisions of {}/{}: [{}]", route.namespace, route.name, revs.join(", ")))
                    .evidence("requests routed there get 503 no healthy upstream (flag UH)")
                    .fix("fix the subset's labels (serving.knative.dev/revision: <an existing revision>)"),
                );
            }
        }
        if rule.route.len() > 1 && sum != 100 {
            let weights: Vec<String> = rule.route.iter().map(|d| d.weight.to_string()).collect();
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK1006",
                    vs_id(vs),
                    format!("http[{i}]: destination weights sum to {sum}, not 100"),
                )
                .evidence(format!("weights [{}]", weights.join(", ")))
                .evidence(
                    "Istio splits by weight/sum, so the shares are not the percentages written",
                )
                .fix("make the weights add up to 100"),
            );
        }
    }
}

fn gateways(vs: &VirtualService, objs: &Objects, out: &mut Vec<Finding>) {
    for g in vs_gateways(vs) {
        if g == MESH_GATEWAY {
            continue;
        }
        let (gns, gname) = g.split_once('/').unwrap_or(("", &g));
        let implicit = g == skiff_controller::KNATIVE_INGRESS_GATEWAY
            || g == skiff_controller::KNATIVE_LOCAL_GATEWAY;
        let Some(gw) = objs
            .gateways
            .iter()
            .find(|x| x.metadata.namespace == gns && x.metadata.name == gname)
        else {
            // Knative's gateways exist without an object: the default
            // listeners serve them (every host).
            if implicit {
                continue;
            }
            out.push(
                Finding::new(
                    Severity::Error,
                    "SK1004",
                    vs_id(vs),
                    format!("gateway {g} does not exist"),
                )
                .evidence(format!("spec.gateways names {g}; no Gateway {g} was found"))
                .evidence("the rules are not served on any listener: requests get 404 (flag NR)")
                .fix(format!(
                    "create Gateway {g}, or name an existing one as namespace/name"
                )),
            );
            continue;
        };
        let bound = gw
            .spec
            .servers
            .iter()
            .any(|s| !bound_hosts(s, gns, vs).is_empty());
        if !bound {
            let server_hosts: Vec<&str> = gw
                .spec
                .servers
                .iter()
                .flat_map(|s| s.hosts.iter().map(String::as_str))
                .collect();
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK1005",
                    vs_id(vs),
                    format!("no host of this VirtualService is served by gateway {g}"),
                )
                .evidence(format!("VirtualService hosts [{}]", vs.spec.hosts.join(", ")))
                .evidence(format!("Gateway servers' hosts [{}]", server_hosts.join(", ")))
                .fix("add the host to a server of the Gateway (or use a wildcard), or fix the VirtualService hosts"),
            );
        }
    }
}

fn rules(vs: &VirtualService, out: &mut Vec<Finding>) {
    let mut catch_all: Option<usize> = None;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in vs.spec.http.iter().enumerate() {
        if let Some(c) = catch_all {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK1007",
                    vs_id(vs),
                    format!("http[{i}] is never used"),
                )
                .evidence(format!(
                    "http[{c}] matches every request and comes first (first match wins)"
                ))
                .fix(format!("move http[{c}] last, or give it a match")),
            );
            continue;
        }
        if r.matches.is_empty() || r.matches.iter().any(is_catch_all) {
            catch_all = Some(i);
        }
        for (j, m) in r.matches.iter().enumerate() {
            let key = match_key(m);
            match seen.get(&key) {
                Some(first) if *first != i => out.push(
                    Finding::new(
                        Severity::Warning,
                        "SK1008",
                        vs_id(vs),
                        format!("http[{i}].match[{j}] is never used"),
                    )
                    .evidence(format!("http[{first}] has the same match and comes first"))
                    .fix(
                        "remove the duplicate match, or make it more specific than the earlier one",
                    ),
                ),
                Some(_) => {}
                None => {
                    seen.insert(key, i);
                }
            }
        }
    }
}

/// The same host on the same gateway in several VirtualServices.
fn claimed_twice(objs: &Objects, out: &mut Vec<Finding>) {
    let mut claims: BTreeMap<(String, String), Vec<&VirtualService>> = BTreeMap::new();
    for vs in &objs.virtual_services {
        for g in vs_gateways(vs) {
            for h in &vs.spec.hosts {
                claims
                    .entry((g.clone(), qualify_host(h, &vs.metadata.namespace)))
                    .or_default()
                    .push(vs);
            }
        }
    }
    for ((g, h), list) in claims {
        if list.len() < 2 {
            continue;
        }
        let names: Vec<String> = list
            .iter()
            .map(|v| format!("{}/{}", v.metadata.namespace, v.metadata.name))
            .collect();
        for vs in &list[1..] {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK1009",
                    vs_id(vs),
                    format!("host {h} on gateway {g} is also claimed by {}", names[0]),
                )
                .evidence(format!("VirtualServices for {h} on {g}: [{}]", names.join(", ")))
                .evidence("their rules are merged in creation order: an earlier catch-all hides later rules")
                .fix("keep one VirtualService per host and gateway, or use delegate VirtualServices"),
            );
        }
    }
}

fn destination_rules(objs: &Objects, kn: &Knative, out: &mut Vec<Finding>) {
    let mut by_host: BTreeMap<(String, String), Vec<&DestinationRule>> = BTreeMap::new();
    for dr in &objs.destination_rules {
        let host = qualify_host(&dr.spec.host, &dr.metadata.namespace);
        by_host
            .entry((dr.metadata.namespace.clone(), host.clone()))
            .or_default()
            .push(dr);
        if kn.routes_matching(&host).is_empty() {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "SK1011",
                    dr_id(dr),
                    format!("host {:?} matches no Knative Service or Route", dr.spec.host),
                )
                .evidence(format!("{host} (short names are completed with the rule's namespace)"))
                .fix("use the route's host (name.namespace.svc.cluster.local); a short name means the DestinationRule's namespace"),
            );
        }
    }
    for ((_, host), list) in by_host {
        if list.len() > 1 {
            let names: Vec<String> = list.iter().map(|d| d.metadata.name.clone()).collect();
            for dr in &list[1..] {
                out.push(
                    Finding::new(
                        Severity::Warning,
                        "SK1010",
                        dr_id(dr),
                        format!("host {host} has several DestinationRules in this namespace"),
                    )
                    .evidence(format!("DestinationRules [{}]", names.join(", ")))
                    .evidence("only one applies; the others' subsets and policies are ignored")
                    .fix("merge them into one DestinationRule"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    const DR: &str = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hello}
spec:
  host: hello
  subsets:
  - {name: v1, labels: {serving.knative.dev/revision: hello-00001}}
  - {name: v9, labels: {serving.knative.dev/revision: hello-00009}}
";

    fn with(vs: &str) -> String {
        format!("{}{DR}---\n{vs}", ksvc("hello", 2, 0, ""))
    }

    #[test]
    fn destinations_that_resolve_to_nothing() {
        let y = with(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - route:
    - {destination: {host: nosuch}, weight: 50}
    - {destination: {host: hello, subset: v2}, weight: 30}
    - {destination: {host: hello, subset: v9}, weight: 10}
    - {destination: {host: hello, subset: v1}, weight: 5}
",
        );
        let f = find(&y, "SK1001");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("\"nosuch\""), "{}", f[0].message);
        let f = find(&y, "SK1002");
        assert_eq!(f.len(), 1);
        assert!(
            f[0].evidence[0].contains("defines subsets [v1, v9]"),
            "{:?}",
            f[0].evidence
        );
        let f = find(&y, "SK1003");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("\"v9\""));
        assert!(f[0].evidence[1].contains("[hello-00001, hello-00002]"));
        let f = find(&y, "SK1006");
        assert!(f[0].message.contains("sum to 95"));
    }

    #[test]
    fn gateways_and_binding() {
        let y = with(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*.example.com']}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [hello.default.svc.cluster.local]
  gateways: [public, missing]
  http: [{route: [{destination: {host: hello}}]}]
",
        );
        let found: Vec<_> = codes(&y).into_iter().map(|(c, _)| c).collect();
        assert!(found.contains(&"SK1004"), "{found:?}");
        assert!(found.contains(&"SK1005"), "{found:?}");
        // Knative's ingress gateway needs no object: the default listener
        // serves it.
        let y = with(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [ab.example.com]
  gateways: [knative-serving/knative-ingress-gateway]
  http: [{route: [{destination: {host: hello}}]}]
",
        );
        let implicit: Vec<_> = codes(&y).into_iter().map(|(c, _)| c).collect();
        assert!(!implicit.contains(&"SK1004"), "{implicit:?}");
    }

    #[test]
    fn unreachable_and_duplicate_rules_and_double_claims() {
        let y = with(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: hello}}]
  - match: [{uri: {prefix: /api}, name: again}]
    route: [{destination: {host: hello}}]
  - route: [{destination: {host: hello}}]
  - match: [{uri: {prefix: /late}}]
    route: [{destination: {host: hello}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [hello]
  http: [{route: [{destination: {host: hello}}]}]
",
        );
        assert_eq!(
            find(&y, "SK1008")[0].message,
            "http[1].match[0] is never used"
        );
        assert_eq!(find(&y, "SK1007")[0].message, "http[3] is never used");
        let f = find(&y, "SK1009");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].object, "VirtualService default/b");
    }

    #[test]
    fn destination_rule_problems() {
        let y = format!(
            "{}{DR}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: hello-too}}
spec: {{host: hello.default.svc.cluster.local}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ghost}}
spec: {{host: ghost}}
",
            ksvc("hello", 1, 0, "")
        );
        assert_eq!(
            find(&y, "SK1010")[0].object,
            "DestinationRule default/hello-too"
        );
        assert_eq!(
            find(&y, "SK1011")[0].object,
            "DestinationRule default/ghost"
        );
    }
}
