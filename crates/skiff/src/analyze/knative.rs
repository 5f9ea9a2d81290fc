//! What Knative objects mean for routing: the hosts each route answers on
//! and the revisions (with their pod labels and declared capacity) behind
//! them.

use std::collections::BTreeMap;

use skiff_api::config::ClusterConfig;
use skiff_api::config::autoscaler::annotations;
use skiff_api::labels;
use skiff_api::meta::ObjectMeta;
use skiff_api::serving::{Revision, TrafficTarget};
use skiff_controller::network::group_hosts;
use skiff_proxy::istio::policy::revision_labels;

use super::Objects;

/// A revision as the rules see it.
#[derive(Debug, Clone)]
pub struct RevisionFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// 0: unlimited.
    pub container_concurrency: u64,
    pub min_scale: u64,
    /// 0: unlimited.
    pub max_scale: u64,
    /// `autoscaling.knative.dev/target`, when set.
    pub target: Option<f64>,
}

impl RevisionFacts {
    fn of(r: &Revision) -> RevisionFacts {
        RevisionFacts::from_parts(r, &r.metadata.annotations)
    }

    /// The revision a Service's template will make, when no Revision is in
    /// the input (offline manifests).
    fn from_template(
        owner: &ObjectMeta,
        template: &skiff_api::serving::RevisionTemplateSpec,
    ) -> RevisionFacts {
        let mut r = Revision::default();
        r.metadata.name = if template.metadata.name.is_empty() {
            format!("{} (next revision)", owner.name)
        } else {
            template.metadata.name.clone()
        };
        r.metadata.labels = template.metadata.labels.clone();
        r.metadata
            .labels
            .insert(labels::SERVICE.to_string(), owner.name.clone());
        r.metadata
            .labels
            .insert(labels::CONFIGURATION.to_string(), owner.name.clone());
        r.spec = template.spec.clone();
        RevisionFacts::from_parts(&r, &template.metadata.annotations)
    }

    fn from_parts(r: &Revision, a: &std::collections::BTreeMap<String, String>) -> RevisionFacts {
        let num = |k| annotations::get(a, k).and_then(|(_, v)| v.trim().parse::<u64>().ok());
        RevisionFacts {
            name: r.metadata.name.clone(),
            labels: revision_labels(r),
            container_concurrency: r.spec.container_concurrency.unwrap_or(0).max(0) as u64,
            min_scale: num(annotations::MIN_SCALE).unwrap_or(0),
            max_scale: num(annotations::MAX_SCALE).unwrap_or(0),
            target: annotations::get(a, annotations::TARGET)
                .and_then(|(_, v)| v.trim().parse().ok()),
        }
    }

    /// Concurrent requests the revision declares it can take at most
    /// (containerConcurrency × max-scale), if bounded.
    pub fn declared_capacity(&self) -> Option<u64> {
        (self.container_concurrency > 0 && self.max_scale > 0)
            .then(|| self.container_concurrency * self.max_scale)
    }

    /// Concurrency one instance is meant to run at: the autoscaling target
    /// (Knative's default 100), never above containerConcurrency.
    pub fn per_instance_target(&self) -> u64 {
        let target = self.target.map_or(100, |t| t.ceil().max(1.0) as u64);
        if self.container_concurrency > 0 {
            target.min(self.container_concurrency)
        } else {
            target
        }
    }
}

/// A Knative route (a Service's or a standalone Route) and its revisions.
#[derive(Debug, Clone)]
pub struct RouteFacts {
    pub namespace: String,
    pub name: String,
    pub revisions: Vec<RevisionFacts>,
    /// Whether Revision objects were in the input (offline files may have
    /// only the Service: then `revisions` is the one its template makes).
    pub revisions_known: bool,
}

/// Hosts → routes.
#[derive(Debug, Default)]
pub struct Knative {
    pub routes: Vec<RouteFacts>,
    hosts: BTreeMap<String, usize>,
}

impl Knative {
    pub fn new(objs: &Objects, cfg: &ClusterConfig) -> Knative {
        let mut kn = Knative::default();
        let revisions_in = |ns: &str, pred: &dyn Fn(&Revision) -> bool| -> Vec<RevisionFacts> {
            objs.revisions
                .iter()
                .filter(|r| r.metadata.namespace == ns && pred(r))
                .map(RevisionFacts::of)
                .collect()
        };
        let mut add = |meta: &ObjectMeta,
                       traffic: &[TrafficTarget],
                       revisions: Vec<RevisionFacts>,
                       revisions_known: bool| {
            let idx = kn.routes.len();
            let mut tags: Vec<Option<&str>> = vec![None];
            tags.extend(traffic.iter().filter_map(|t| t.tag.as_deref()).map(Some));
            for tag in tags {
                // A route whose hosts cannot be made serves nothing.
                let Ok(h) = group_hosts(cfg, meta, tag) else {
                    continue;
                };
                for host in h.external.iter().chain(h.local.iter()) {
                    kn.hosts.entry(host.clone()).or_insert(idx);
                }
            }
            kn.routes.push(RouteFacts {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                revisions_known,
                revisions,
            });
        };
        for s in &objs.services {
            let name = s.metadata.name.clone();
            let revs = revisions_in(&s.metadata.namespace, &|r| {
                r.metadata.label(labels::SERVICE) == Some(name.as_str())
                    || r.metadata.label(labels::CONFIGURATION) == Some(name.as_str())
            });
            let known = !revs.is_empty();
            let revs = if known {
                revs
            } else {
                vec![RevisionFacts::from_template(&s.metadata, &s.spec.template)]
            };
            add(
                &s.metadata,
                s.spec.traffic.as_deref().unwrap_or(&[]),
                revs,
                known,
            );
        }
        for r in &objs.routes {
            // A Service's own Route is already there.
            if objs.services.iter().any(|s| {
                s.metadata.namespace == r.metadata.namespace && s.metadata.name == r.metadata.name
            }) {
                continue;
            }
            let t = &r.spec.traffic;
            let revs = revisions_in(&r.metadata.namespace, &|rev| {
                t.iter().any(|x| {
                    x.revision_name.as_deref() == Some(rev.metadata.name.as_str())
                        || x.configuration_name
                            .as_deref()
                            .is_some_and(|c| rev.metadata.label(labels::CONFIGURATION) == Some(c))
                })
            });
            let known = !revs.is_empty();
            add(&r.metadata, t, revs, known);
        }
        kn
    }

    /// The route answering on `host` (qualified, lowercase).
    pub fn route(&self, host: &str) -> Option<&RouteFacts> {
        self.hosts.get(host).map(|i| &self.routes[*i])
    }

    /// Routes whose hosts a (possibly wildcard) pattern covers.
    pub fn routes_matching(&self, pattern: &str) -> Vec<&RouteFacts> {
        let mut idx: Vec<usize> = self
            .hosts
            .iter()
            .filter(|(h, _)| skiff_proxy::istio::binding::covers(pattern, h))
            .map(|(_, i)| *i)
            .collect();
        idx.sort();
        idx.dedup();
        idx.into_iter().map(|i| &self.routes[i]).collect()
    }

    pub fn knows(&self, host: &str) -> bool {
        self.hosts.contains_key(host)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn hosts_and_revisions() {
        let o = objects(&format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-domain, namespace: knative-serving}}\ndata: {{example.com: ''}}\n",
            ksvc("hello", 2, 10, "autoscaling.knative.dev/max-scale: '3'")
        ));
        let kn = Knative::new(&o, &o.cluster_config());
        for h in [
            "hello.default.example.com",
            "hello.default.svc.cluster.local",
            "hello.default.svc",
            "hello.default",
        ] {
            assert!(kn.knows(h), "{h}");
        }
        let r = kn.route("hello.default.svc.cluster.local").unwrap();
        assert_eq!(r.revisions.len(), 2);
        assert_eq!(r.revisions[0].declared_capacity(), Some(30));
        assert_eq!(
            r.revisions[1].labels["serving.knative.dev/revision"],
            "hello-00002"
        );
        assert_eq!(kn.routes_matching("*.default.example.com").len(), 1);
        // Offline: only the Service; its template stands for the revision.
        let o = objects(&ksvc(
            "hello",
            0,
            10,
            "autoscaling.knative.dev/max-scale: '3'",
        ));
        let r = &Knative::new(&o, &o.cluster_config()).routes[0];
        assert!(!r.revisions_known);
        assert_eq!(r.revisions[0].declared_capacity(), Some(30));
    }
}
