//! `config-domain`: which domain suffix a Route gets, chosen by its labels
//! (docs knative-api.md §9, serving pkg/reconciler/route/config/domain.go).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::labels;

pub const CONFIGMAP: &str = "config-domain";
/// `svc.<cluster domain>`: the domain of cluster-local routes.
pub const CLUSTER_LOCAL_DOMAIN: &str = "svc.cluster.local";
/// The domain Skiff configures when no config-domain ConfigMap exists, as
/// Knative's quickstart does for a one-machine cluster.
pub const SKIFF_DEFAULT_DOMAIN: &str = "127.0.0.1.sslip.io";

#[derive(Debug, Clone, PartialEq)]
pub struct DomainConfig {
    /// Domain suffix -> label selector (empty = matches every route).
    pub domains: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for DomainConfig {
    /// What `skiff serve` uses until a config-domain ConfigMap is applied.
    fn default() -> Self {
        DomainConfig {
            domains: BTreeMap::from([(SKIFF_DEFAULT_DOMAIN.to_string(), BTreeMap::new())]),
        }
    }
}

impl DomainConfig {
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<DomainConfig, String> {
        let mut domains = BTreeMap::new();
        let mut has_default = false;
        for (k, v) in data {
            if k == super::EXAMPLE_KEY {
                continue;
            }
            let selector = parse_selector(v)?;
            if selector.is_empty() {
                has_default = true;
            }
            domains.insert(k.clone(), selector);
        }
        if !has_default {
            domains.insert(CLUSTER_LOCAL_DOMAIN.to_string(), BTreeMap::new());
        }
        Ok(DomainConfig { domains })
    }

    /// The domain for a route with `route_labels`: the matching entry with
    /// the most selector labels, ties broken by the smallest name.
    pub fn lookup(&self, route_labels: &BTreeMap<String, String>) -> String {
        if route_labels.get(labels::VISIBILITY).map(String::as_str)
            == Some(labels::VISIBILITY_CLUSTER_LOCAL)
        {
            return CLUSTER_LOCAL_DOMAIN.to_string();
        }
        let mut best: Option<(&String, usize)> = None;
        for (domain, selector) in &self.domains {
            let matches = selector.iter().all(|(k, v)| route_labels.get(k) == Some(v));
            if !matches {
                continue;
            }
            // BTreeMap order: the first of equal specificity is the smallest.
            if best.is_none_or(|(_, s)| selector.len() > s) {
                best = Some((domain, selector.len()));
            }
        }
        best.map(|(d, _)| d.clone()).unwrap_or_default()
    }
}

fn parse_selector(v: &str) -> Result<BTreeMap<String, String>, String> {
    if v.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let value: Value = serde_saphyr::from_str(v).map_err(|e| {
        format!(
            "error converting YAML to JSON: {}",
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    let unmarshal = |what: &str, field: &str, want: &str| {
        format!(
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {what} into Go {field} of type {want}"
        )
    };
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let obj = match value {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(o) => o,
        other => {
            return Err(unmarshal(
                kind(&other),
                "value",
                "config.domainInternalConfig",
            ));
        }
    };
    let mut out = BTreeMap::new();
    match obj.get("selector") {
        None | Some(Value::Null) => {}
        Some(Value::Object(sel)) => {
            for (k, v) in sel {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => {
                        return Err(unmarshal(
                            kind(other),
                            "struct field domainInternalConfig.selector",
                            "string",
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(unmarshal(
                kind(other),
                "struct field domainInternalConfig.selector",
                "map[string]string",
            ));
        }
    }
    if let Some(t) = obj.get("type")
        && !t.is_string()
        && !t.is_null()
    {
        return Err(unmarshal(
            kind(t),
            "struct field domainInternalConfig.type",
            "string",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<DomainConfig, String> {
        DomainConfig::from_configmap(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selection_by_specificity_then_name() {
        let c = cfg(&[
            ("example.com", ""),
            ("prod.example.com", "selector:\n  app: prod\n"),
            ("a.example.com", "selector:\n  app: prod\n"),
            ("team.example.com", "selector:\n  app: prod\n  team: x\n"),
        ])
        .unwrap();
        assert_eq!(c.lookup(&labels(&[])), "example.com");
        assert_eq!(c.lookup(&labels(&[("app", "prod")])), "a.example.com");
        assert_eq!(
            c.lookup(&labels(&[("app", "prod"), ("team", "x")])),
            "team.example.com"
        );
        assert_eq!(
            c.lookup(&labels(&[(labels::VISIBILITY, "cluster-local")])),
            CLUSTER_LOCAL_DOMAIN
        );
        // The old visibility label is ignored.
        assert_eq!(
            c.lookup(&labels(&[(
                "serving.knative.dev/visibility",
                "cluster-local"
            )])),
            "example.com"
        );
    }

    #[test]
    fn without_a_default_entry_everything_is_cluster_local() {
        assert_eq!(cfg(&[]).unwrap().lookup(&labels(&[])), CLUSTER_LOCAL_DOMAIN);
        let c = cfg(&[("prod.example.com", "selector: {app: prod}")]).unwrap();
        assert_eq!(c.lookup(&labels(&[("app", "dev")])), CLUSTER_LOCAL_DOMAIN);
        assert_eq!(
            DomainConfig::default().lookup(&labels(&[])),
            SKIFF_DEFAULT_DOMAIN
        );
    }

    #[test]
    fn bad_selectors() {
        assert!(
            cfg(&[("x.com", "selector: [a]")])
                .unwrap_err()
                .contains("cannot unmarshal array into Go struct field domainInternalConfig.selector of type map[string]string")
        );
        assert!(cfg(&[("x.com", "selector: {a: [1]}")]).is_err());
    }
}
