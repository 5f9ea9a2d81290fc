//! Hosts and URLs of routes, as Knative forms them (serving
//! pkg/reconciler/route/domains): the domain from config-domain by the
//! Route's labels, the host from config-network's domain-template (the
//! default template for cluster-local routes), tags named by tag-template.
//! Every route also answers on its cluster-local names on the local listener.

use skiff_api::config::ClusterConfig;
use skiff_api::config::domain::CLUSTER_LOCAL_DOMAIN;
use skiff_api::config::network::DEFAULT_DOMAIN_TEMPLATE;
use skiff_api::labels;
use skiff_api::meta::ObjectMeta;
use skiff_api::template::{self, Template};

/// The hosts of one traffic group (the main route, or one tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHosts {
    /// The host on the external listener; None for a cluster-local route.
    pub external: Option<String>,
    /// Names on the local listener: `x.ns.svc.cluster.local`, `x.ns.svc`,
    /// `x.ns`.
    pub local: Vec<String>,
    /// What `status.url` (or the tag's `status.traffic[].url`) shows.
    pub url: String,
}

/// The route's visibility: cluster-local when its domain is
/// `svc.cluster.local` (config-domain, or the visibility label).
pub fn is_cluster_local(cfg: &ClusterConfig, meta: &ObjectMeta) -> bool {
    cfg.domain.lookup(&meta.labels) == CLUSTER_LOCAL_DOMAIN
}

/// HostnameFromTemplate: the route name, or tag-template of (name, tag).
pub fn hostname(cfg: &ClusterConfig, name: &str, tag: Option<&str>) -> Result<String, String> {
    match tag {
        None | Some("") => Ok(name.to_string()),
        Some(tag) => cfg
            .network
            .tag_template
            .execute(&template::tag_values(name, tag))
            .map_err(|e| format!("domain name error: error executing the TagTemplate: {e}")),
    }
}

/// DomainNameFromTemplate: the full host of `name` for the route `meta`.
pub fn domain_name(
    cfg: &ClusterConfig,
    meta: &ObjectMeta,
    name: &str,
    cluster_local: bool,
) -> Result<String, String> {
    let mut route_labels = meta.labels.clone();
    if cluster_local {
        route_labels.insert(
            labels::VISIBILITY.into(),
            labels::VISIBILITY_CLUSTER_LOCAL.into(),
        );
    } else {
        route_labels.remove(labels::VISIBILITY);
    }
    let domain = cfg.domain.lookup(&route_labels);
    let default_template;
    let tmpl = if cluster_local {
        default_template =
            Template::parse("domain-template", DEFAULT_DOMAIN_TEMPLATE).expect("default template");
        &default_template
    } else {
        &cfg.network.domain_template
    };
    let data = template::domain_values(
        name,
        &meta.namespace,
        &domain,
        Some(&meta.annotations),
        Some(&route_labels),
    );
    let host = tmpl
        .execute(&data)
        .map_err(|e| format!("domain name error: error executing the DomainTemplate: {e}"))?;
    if let Err(e) = fully_qualified(&host) {
        return Err(format!(
            "domain name error: invalid domain name {}: {e}",
            skiff_api::go::quote(&host)
        ));
    }
    Ok(host)
}

/// apimachinery IsFullyQualifiedDomainName, as a `url: Invalid value` error.
fn fully_qualified(name: &str) -> Result<(), String> {
    use skiff_api::admission::names;
    let invalid = |v: &str, detail: &str| {
        format!("url: Invalid value: {}: {detail}", skiff_api::go::quote(v))
    };
    if name.is_empty() {
        return Err("url: Required value".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let errs = names::dns1123_subdomain(name);
    if !errs.is_empty() {
        return Err(invalid(name, &errs.join(",")));
    }
    if name.split('.').count() < 2 {
        return Err(invalid(
            name,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for label in name.split('.') {
        let errs = names::dns1123_label(label);
        if !errs.is_empty() {
            return Err(invalid(label, &errs.join(",")));
        }
    }
    Ok(())
}

/// Hosts and URL of the route `meta` for `tag` (None: the main target).
pub fn group_hosts(
    cfg: &ClusterConfig,
    meta: &ObjectMeta,
    tag: Option<&str>,
) -> Result<GroupHosts, String> {
    let host_label = hostname(cfg, &meta.name, tag)?;
    let cluster_local = is_cluster_local(cfg, meta);
    let local_primary = domain_name(cfg, meta, &host_label, true)?;
    let ns = &meta.namespace;
    let local = vec![
        local_primary.clone(),
        format!("{host_label}.{ns}.svc"),
        format!("{host_label}.{ns}"),
    ];
    if cluster_local {
        return Ok(GroupHosts {
            external: None,
            url: format!("http://{local_primary}"),
            local,
        });
    }
    let external = domain_name(cfg, meta, &host_label, false)?;
    Ok(GroupHosts {
        url: format!("{}://{external}", cfg.network.default_external_scheme),
        external: Some(external),
        local,
    })
}

/// `status.address.url`: the route's cluster-local name.
pub fn address(meta: &ObjectMeta) -> String {
    format!(
        "http://{}.{}.{CLUSTER_LOCAL_DOMAIN}",
        meta.name, meta.namespace
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn cfg(maps: &[(&str, &[(&str, &str)])]) -> ClusterConfig {
        let m: BTreeMap<String, BTreeMap<String, String>> = maps
            .iter()
            .map(|(n, d)| {
                (
                    n.to_string(),
                    d.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect();
        ClusterConfig::from_configmaps(&m).unwrap()
    }

    fn route(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn knatives_examples() {
        // docs knative-api.md §9.
        let stock = cfg(&[("config-domain", &[])]);
        let h = group_hosts(&stock, &route("hello", &[]), None).unwrap();
        assert_eq!(h.url, "http://hello.default.svc.cluster.local");
        assert_eq!(h.external, None);
        let example = cfg(&[("config-domain", &[("example.com", "")])]);
        let h = group_hosts(&example, &route("hello", &[]), None).unwrap();
        assert_eq!(h.url, "http://hello.default.example.com");
        assert_eq!(h.local[0], "hello.default.svc.cluster.local");
        let t = group_hosts(&example, &route("hello", &[]), Some("latest")).unwrap();
        assert_eq!(t.url, "http://latest-hello.default.example.com");
        assert_eq!(
            t.local,
            [
                "latest-hello.default.svc.cluster.local",
                "latest-hello.default.svc",
                "latest-hello.default"
            ]
        );
        // The visibility label forces the cluster-local domain and template.
        let custom = cfg(&[
            ("config-domain", &[("example.com", "")]),
            (
                "config-network",
                &[
                    ("domain-template", "{{.Name}}-{{.Namespace}}.{{.Domain}}"),
                    ("tag-template", "{{.Name}}-{{.Tag}}"),
                ],
            ),
        ]);
        let local = route("hello", &[(labels::VISIBILITY, "cluster-local")]);
        let h = group_hosts(&custom, &local, Some("v2")).unwrap();
        assert_eq!(h.url, "http://hello-v2.default.svc.cluster.local");
        assert_eq!(h.external, None);
        let h = group_hosts(&custom, &route("hello", &[]), Some("v2")).unwrap();
        assert_eq!(h.url, "http://hello-v2-default.example.com");
    }

    #[test]
    fn bad_hosts_are_config_errors() {
        let c = cfg(&[("config-domain", &[("bad_domain", "")])]);
        let e = group_hosts(&c, &route("hello", &[]), None).unwrap_err();
        assert!(
            e.starts_with("domain name error: invalid domain name \"hello.default.bad_domain\": url: Invalid value: \"hello.default.bad_domain\": a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let c = cfg(&[(
            "config-network",
            &[(
                "domain-template",
                "{{.Name}}{{index .Annotations \"x\"}}.{{.Domain}}",
            )],
        )]);
        let mut meta = route("hello", &[]);
        meta.annotations.insert("x".into(), "-ok".into());
        assert_eq!(
            group_hosts(&c, &meta, None).unwrap().url,
            "http://hello-ok.127.0.0.1.sslip.io"
        );
    }
}
