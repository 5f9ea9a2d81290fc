//! `skiff analyze`: a rules engine over a set of objects that flags the
//! misconfigurations behind empty replies and 503s, each finding with its
//! evidence and a fix. Pure: the objects (from the server or from files)
//! and the settings come in, findings go out.

mod autoscaling;
mod knative;
mod resilience;
mod routing;
mod security;
mod timeouts;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use skiff_api::DynamicObject;
use skiff_api::config::{ClusterConfig, SYSTEM_NAMESPACE};
use skiff_api::core::ConfigMap;
use skiff_api::istio::{
    AuthorizationPolicy, DestinationRule, Gateway, PeerAuthentication, VirtualService,
};
use skiff_api::secret::Secret;
use skiff_api::serving::{Configuration, Revision, Route, Service};

pub use knative::Knative;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        })
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable code (`SK1002`).
    pub code: &'static str,
    /// `Kind namespace/name`.
    pub object: String,
    pub message: String,
    /// What in the configuration shows it.
    pub evidence: Vec<String>,
    /// What to change.
    pub fix: String,
}

impl Finding {
    fn new(severity: Severity, code: &'static str, object: String, message: String) -> Finding {
        Finding {
            severity,
            code,
            object,
            message,
            evidence: Vec::new(),
            fix: String::new(),
        }
    }

    fn evidence(mut self, e: impl Into<String>) -> Finding {
        self.evidence.push(e.into());
        self
    }

    fn fix(mut self, f: impl Into<String>) -> Finding {
        self.fix = f.into();
        self
    }

    /// The namespace of the object the finding is about.
    pub fn namespace(&self) -> &str {
        self.object
            .split_once(' ')
            .and_then(|(_, r)| r.split_once('/'))
            .map_or("", |(ns, _)| ns)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} [{}] ({}) {}",
            self.severity, self.code, self.object, self.message
        )?;
        for e in &self.evidence {
            writeln!(f, "    evidence: {e}")?;
        }
        if !self.fix.is_empty() {
            writeln!(f, "    fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Everything the rules look at.
#[derive(Debug, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub configurations: Vec<Configuration>,
    pub revisions: Vec<Revision>,
    pub routes: Vec<Route>,
    pub gateways: Vec<Gateway>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub secrets: Vec<Secret>,
    /// Knative's configuration (config-domain, config-network, ...).
    pub configmaps: Vec<ConfigMap>,
    /// Objects that could not be read: (identity, why).
    pub unreadable: Vec<(String, String)>,
}

fn ident(o: &DynamicObject) -> String {
    id(&o.kind, &o.metadata)
}

/// `Kind namespace/name`, how findings name objects.
fn id(kind: &str, m: &skiff_api::meta::ObjectMeta) -> String {
    format!("{kind} {}/{}", m.namespace, m.name)
}

impl Objects {
    /// Sort untyped objects into their kinds; the unknown or unreadable
    /// ones are kept for an SK0001 finding.
    pub fn from_dynamic(objs: impl IntoIterator<Item = DynamicObject>) -> Objects {
        let mut o = Objects::default();
        for d in objs {
            let Some(kind) = d.resource_kind() else {
                o.unreadable.push((
                    ident(&d),
                    format!("unknown kind {} {}", d.api_version, d.kind),
                ));
                continue;
            };
            macro_rules! push {
                ($field:ident) => {
                    match d.to_typed() {
                        Ok(t) => o.$field.push(t),
                        Err(e) => o.unreadable.push((ident(&d), e.to_string())),
                    }
                };
            }
            match (kind.group, kind.kind) {
                (_, "Service") if kind.group == "serving.knative.dev" => push!(services),
                (_, "Configuration") => push!(configurations),
                (_, "Revision") => push!(revisions),
                (_, "Route") => push!(routes),
                (_, "Gateway") => push!(gateways),
                (_, "VirtualService") => push!(virtual_services),
                (_, "DestinationRule") => push!(destination_rules),
                (_, "PeerAuthentication") => push!(peer_authentications),
                (_, "AuthorizationPolicy") => push!(authorization_policies),
                (_, "Secret") => push!(secrets),
                (_, "ConfigMap") => push!(configmaps),
                _ => {}
            }
        }
        o
    }

    /// The cluster configuration the Knative ConfigMaps among the objects
    /// make (those that do not parse are left out; defaults otherwise).
    pub fn cluster_config(&self) -> ClusterConfig {
        let mut maps = BTreeMap::new();
        for cm in self
            .configmaps
            .iter()
            .filter(|c| c.metadata.namespace == SYSTEM_NAMESPACE)
        {
            if skiff_api::config::validate_configmap(
                &cm.metadata.name,
                &cm.data,
                &cm.metadata.annotations,
            )
            .is_ok()
            {
                maps.insert(cm.metadata.name.clone(), cm.data.clone());
            }
        }
        ClusterConfig::from_configmaps(&maps).unwrap_or_default()
    }
}

/// Facts the objects do not carry.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle timeout of a load balancer in front of the gateway (AWS NLB:
    /// 350 s); `None`: no load balancer.
    pub lb_idle_timeout: Option<Duration>,
    /// The gateway's downstream TCP keepalive idle time.
    pub downstream_keepalive_idle: Duration,
    /// How long the apps keep idle connections open (Node.js: 5 s).
    pub upstream_keepalive: Duration,
    /// Observed peak concurrent requests per destination host, when known.
    pub observed_concurrency: BTreeMap<String, u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lb_idle_timeout: Some(Duration::from_secs(350)),
            downstream_keepalive_idle: skiff_proxy::listeners::DEFAULT_KEEPALIVE_IDLE,
            upstream_keepalive: Duration::from_secs(5),
            observed_concurrency: BTreeMap::new(),
        }
    }
}

/// Run every rule. Findings come sorted: errors first, then by object.
pub fn analyze(objs: &Objects, settings: &Settings) -> Vec<Finding> {
    let kn = Knative::new(objs, &objs.cluster_config());
    let mut out: Vec<Finding> = objs
        .unreadable
        .iter()
        .map(|(who, why)| {
            Finding::new(
                Severity::Error,
                "SK0001",
                who.clone(),
                format!("cannot be read: {why}"),
            )
            .fix("fix the object (skiff apply --dry-run shows every validation error)")
        })
        .collect();
    routing::check(objs, &kn, &mut out);
    resilience::check(objs, &kn, settings, &mut out);
    security::check(objs, &mut out);
    timeouts::check(objs, settings, &mut out);
    autoscaling::check(objs, &mut out);
    out.sort_by(|a, b| {
        (a.severity, &a.object, a.code, &a.message)
            .cmp(&(b.severity, &b.object, b.code, &b.message))
    });
    out
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Objects from a multi-document YAML string.
    pub fn objects(yaml: &str) -> Objects {
        let docs = skiff_api::parse::parse_manifest("test.yaml", yaml, "default").unwrap();
        Objects::from_dynamic(docs.into_iter().map(|d| d.object))
    }

    pub fn codes(yaml: &str) -> Vec<(&'static str, String)> {
        analyze(&objects(yaml), &Settings::default())
            .into_iter()
            .map(|f| (f.code, f.object))
            .collect()
    }

    pub fn find(yaml: &str, code: &str) -> Vec<Finding> {
        analyze(&objects(yaml), &Settings::default())
            .into_iter()
            .filter(|f| f.code == code)
            .collect()
    }

    /// A Knative Service `name` with revisions 1..=n (as the controller
    /// would have made them) and the given template annotations.
    pub fn ksvc(name: &str, revisions: u32, cc: u32, annotations: &str) -> String {
        let mut y = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec: {{containerConcurrency: {cc}, containers: [{{image: img}}]}}\n"
        );
        for i in 1..=revisions {
            y.push_str(&format!(
                "---\napiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: {name}-0000{i}\n  labels: {{serving.knative.dev/service: {name}, serving.knative.dev/configuration: {name}}}\n  annotations: {{{annotations}}}\nspec: {{containerConcurrency: {cc}, containers: [{{image: img}}]}}\n"
            ));
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn clean_configuration_has_no_findings() {
        let y = format!(
            "{}---\n{}",
            ksvc("hello", 2, 0, "autoscaling.knative.dev/min-scale: '2'"),
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hello}
spec:
  host: hello.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {serving.knative.dev/revision: hello-00001}}
  - {name: v2, labels: {serving.knative.dev/revision: hello-00002}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hello}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match: [{headers: {user-type: {exact: premium}}}]
    route: [{destination: {host: hello.default.svc.cluster.local, subset: v2}}]
  - route:
    - {destination: {host: hello.default.svc.cluster.local, subset: v1}, weight: 80}
    - {destination: {host: hello.default.svc.cluster.local, subset: v2}, weight: 20}
"
        );
        assert_eq!(codes(&y), Vec::<(&str, String)>::new());
    }

    #[test]
    fn unreadable_objects_are_errors_and_rendering() {
        let mut o = objects(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: a, bogus: 1}\n",
        );
        assert!(o.destination_rules.is_empty());
        let f = analyze(&o, &Settings::default());
        assert_eq!(f[0].code, "SK0001");
        assert_eq!(f[0].namespace(), "default");
        o.unreadable.clear();
        let text = Finding::new(Severity::Warning, "SK9", "X a/b".into(), "m".into())
            .evidence("e")
            .fix("f")
            .to_string();
        assert_eq!(
            text,
            "Warning [SK9] (X a/b) m\n    evidence: e\n    fix: f\n"
        );
    }
}
