//! Hosts and URLs of routes (Knative's domain and tag templates, with the
//! quick-start domain as default).

use skiff_api::labels;
use skiff_api::meta::ObjectMeta;

pub const CLUSTER_LOCAL_DOMAIN: &str = "svc.cluster.local";

/// Network settings the controller needs (config-domain / config-network).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Domain suffix of external URLs.
    pub domain: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            // Knative's quick start configures sslip.io for 127.0.0.1.
            domain: "127.0.0.1.sslip.io".to_string(),
        }
    }
}

/// The hosts one traffic group (the main route, or one tag) answers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHosts {
    /// External host, when the route is externally visible.
    pub external: Option<String>,
    /// Cluster-local names: `x.ns.svc.cluster.local`, `x.ns.svc`, `x.ns`.
    pub local: Vec<String>,
}

impl GroupHosts {
    /// The host the URL of this group shows.
    pub fn url_host(&self) -> &str {
        self.external.as_deref().unwrap_or(&self.local[0])
    }
}

pub fn is_cluster_local(meta: &ObjectMeta) -> bool {
    meta.label(labels::VISIBILITY) == Some(labels::VISIBILITY_CLUSTER_LOCAL)
}

impl NetworkConfig {
    /// Hosts of the route `meta` for `tag` (None = the main group).
    pub fn hosts(&self, meta: &ObjectMeta, tag: Option<&str>) -> GroupHosts {
        let name = match tag {
            Some(t) => format!("{t}-{}", meta.name),
            None => meta.name.clone(),
        };
        let ns = &meta.namespace;
        GroupHosts {
            external: (!is_cluster_local(meta)).then(|| format!("{name}.{ns}.{}", self.domain)),
            local: vec![
                format!("{name}.{ns}.{CLUSTER_LOCAL_DOMAIN}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ],
        }
    }

    pub fn url(&self, meta: &ObjectMeta, tag: Option<&str>) -> String {
        format!("http://{}", self.hosts(meta, tag).url_host())
    }

    /// `status.address.url`: always the cluster-local name.
    pub fn address(&self, meta: &ObjectMeta) -> String {
        format!(
            "http://{}.{}.{CLUSTER_LOCAL_DOMAIN}",
            meta.name, meta.namespace
        )
    }
}
