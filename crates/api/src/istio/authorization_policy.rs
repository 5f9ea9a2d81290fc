//! `security.istio.io` AuthorizationPolicy: ALLOW / DENY / AUDIT / CUSTOM
//! rules over request sources, operations and conditions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, at, err, here};
use super::destination_rule::WorkloadSelector;
use super::proto::proto_enum;
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AuthorizationPolicySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

proto_enum!(
    Action, "authorization action" {
        Allow = 0 => "ALLOW",
        Deny = 1 => "DENY",
        Audit = 2 => "AUDIT",
        Custom = 3 => "CUSTOM",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<Value>,
    /// `None` and `[]` both mean "no rules": an ALLOW policy then matches
    /// nothing (allow-nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    #[serde(default)]
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<From>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<To>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct From {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct To {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

impl Source {
    fn lists(&self) -> [(&'static str, &Vec<String>); 14] {
        [
            ("principals", &self.principals),
            ("notPrincipals", &self.not_principals),
            ("requestPrincipals", &self.request_principals),
            ("notRequestPrincipals", &self.not_request_principals),
            ("namespaces", &self.namespaces),
            ("notNamespaces", &self.not_namespaces),
            ("serviceAccounts", &self.service_accounts),
            ("notServiceAccounts", &self.not_service_accounts),
            ("ipBlocks", &self.ip_blocks),
            ("notIpBlocks", &self.not_ip_blocks),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
            ("trustDomains", &self.trust_domains),
            ("notTrustDomains", &self.not_trust_domains),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

impl Operation {
    fn lists(&self) -> [(&'static str, &Vec<String>); 8] {
        [
            ("hosts", &self.hosts),
            ("notHosts", &self.not_hosts),
            ("ports", &self.ports),
            ("notPorts", &self.not_ports),
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
            ("paths", &self.paths),
            ("notPaths", &self.not_paths),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// Condition keys Istio knows (the `[name]` ones are prefixes).
pub mod keys {
    pub const REQUEST_HEADERS: &str = "request.headers";
    pub const SOURCE_IP: &str = "source.ip";
    pub const REMOTE_IP: &str = "remote.ip";
    pub const SOURCE_NAMESPACE: &str = "source.namespace";
    pub const SOURCE_SERVICE_ACCOUNT: &str = "source.serviceAccount";
    pub const SOURCE_PRINCIPAL: &str = "source.principal";
    pub const SOURCE_TRUST_DOMAIN: &str = "source.trustDomain";
    pub const REQUEST_PRINCIPAL: &str = "request.auth.principal";
    pub const REQUEST_AUDIENCES: &str = "request.auth.audiences";
    pub const REQUEST_PRESENTER: &str = "request.auth.presenter";
    pub const REQUEST_CLAIMS: &str = "request.auth.claims";
    pub const DESTINATION_IP: &str = "destination.ip";
    pub const DESTINATION_PORT: &str = "destination.port";
    pub const CONNECTION_SNI: &str = "connection.sni";
    pub const EXPERIMENTAL: &str = "experimental.envoy.filters.";
}

/// The name inside `key[name]` (`request.headers[User-Agent]`).
pub fn bracketed<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')
        .filter(|n| !n.is_empty())
}

fn validate_values(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let ips = |vs: &[String]| vs.iter().try_for_each(|v| check::ip_or_cidr(v));
    let ports = |vs: &[String]| {
        vs.iter().try_for_each(|v| match v.parse::<i64>() {
            Ok(p) if (0..=65535).contains(&p) => Ok(()),
            _ => Err(format!("invalid port: {v}")),
        })
    };
    use keys::*;
    match key {
        _ if key.starts_with(REQUEST_HEADERS) => bracketed(key, REQUEST_HEADERS)
            .map(|_| ())
            .ok_or_else(|| format!("invalid key: {key}: expected {REQUEST_HEADERS}[name]")),
        SOURCE_IP | REMOTE_IP | DESTINATION_IP => ips(values),
        DESTINATION_PORT => ports(values),
        SOURCE_NAMESPACE
        | SOURCE_SERVICE_ACCOUNT
        | SOURCE_PRINCIPAL
        | SOURCE_TRUST_DOMAIN
        | REQUEST_PRINCIPAL
        | REQUEST_AUDIENCES
        | REQUEST_PRESENTER
        | CONNECTION_SNI => Ok(()),
        _ if key.starts_with(REQUEST_CLAIMS) => bracketed(key, REQUEST_CLAIMS)
            .map(|_| ())
            .ok_or_else(|| format!("invalid key: {key}: expected {REQUEST_CLAIMS}[name]")),
        _ if key.starts_with(EXPERIMENTAL) => Ok(()),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ => Err(format!("unknown attribute: {key}")),
    }
}

/// Istio's ValidateAuthorizationPolicy, with paths.
pub fn validate(ap: &AuthorizationPolicy) -> FieldError {
    let spec = &ap.spec;
    let mut errs = FieldError::default();
    let selectors = [
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        !spec.target_refs.is_empty(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if selectors > 1 {
        errs.push(here(
            "only one of targetRefs or workloadSelector can be set",
        ));
    }
    match spec.action {
        Action::Custom => {
            if spec.rules.is_none() {
                errs.push(err(
                    "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
                    "rules",
                ));
            } else if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                errs.push(err("`provider.name` must not be empty", "provider.name"));
            }
        }
        Action::Deny if spec.rules.is_none() => {
            errs.push(err(
                "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
                "rules",
            ));
        }
        _ => {}
    }
    if spec.provider.is_some() && spec.action != Action::Custom {
        errs.push(err(
            format!(
                "`provider` must not be with non CUSTOM action, found {}",
                spec.action
            ),
            "provider",
        ));
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        errs.push(validate_rule(rule).via_field_index("rules", i));
    }
    errs.via_field("spec")
}

fn validate_rule(rule: &Rule) -> FieldError {
    let mut errs = FieldError::default();
    if rule.from.as_ref().is_some_and(Vec::is_empty) {
        errs.push(err("`from` must not be empty", "from"));
    }
    for (j, f) in rule.from.iter().flatten().enumerate() {
        let e = match &f.source {
            None => FieldError::missing_field(&["source"]),
            Some(src) => validate_source(src).via_field("source"),
        };
        errs.push(e.via_field_index("from", j));
    }
    if rule.to.as_ref().is_some_and(Vec::is_empty) {
        errs.push(err("`to` must not be empty", "to"));
    }
    for (j, t) in rule.to.iter().flatten().enumerate() {
        let e = match &t.operation {
            None => FieldError::missing_field(&["operation"]),
            Some(op) => validate_operation(op).via_field("operation"),
        };
        errs.push(e.via_field_index("to", j));
    }
    for (j, c) in rule.when.iter().enumerate() {
        let mut e = FieldError::default();
        if c.key.is_empty() {
            e.push(FieldError::missing_field(&["key"]));
        } else if c.values.is_empty() && c.not_values.is_empty() {
            e.push(
                FieldError::missing_one_of(&["notValues", "values"]).with_details(format!(
                    "at least one of `values` or `notValues` must be set for key {}",
                    c.key
                )),
            );
        } else {
            if !c.values.is_empty() {
                e.push(at(
                    validate_values(&c.key, &c.values)
                        .map_err(|m| format!("invalid `value` for `key` {}: {m}", c.key)),
                    "values",
                ));
            }
            if !c.not_values.is_empty() {
                e.push(at(
                    validate_values(&c.key, &c.not_values)
                        .map_err(|m| format!("invalid `notValue` for `key` {}: {m}", c.key)),
                    "notValues",
                ));
            }
        }
        errs.push(e.via_field_index("when", j));
    }
    errs
}

fn validate_source(src: &Source) -> FieldError {
    let mut errs = FieldError::default();
    if src.lists().iter().all(|(_, l)| l.is_empty()) {
        return here("`from.source` must not be empty");
    }
    let ns_or_principal = !src.principals.is_empty()
        || !src.not_principals.is_empty()
        || !src.namespaces.is_empty()
        || !src.not_namespaces.is_empty();
    let sa = !src.service_accounts.is_empty() || !src.not_service_accounts.is_empty();
    if ns_or_principal && sa {
        errs.push(here(
            "cannot set serviceAccounts with namespaces or principals",
        ));
    }
    for (field, list) in src.lists() {
        for (i, v) in list.iter().enumerate() {
            let r = if v.is_empty() {
                Err(format!("empty value not allowed, found in {field}"))
            } else if field.ends_with("pBlocks") || field.ends_with("PBlocks") {
                check::ip_or_cidr(v)
            } else if field.ends_with("erviceAccounts") && v.matches('/').count() > 1 {
                Err(format!(
                    "invalid service account {v:?}: expected [namespace/]name"
                ))
            } else {
                Ok(())
            };
            errs.push(at(r, "").via_field_index(field, i));
        }
    }
    errs
}

fn validate_operation(op: &Operation) -> FieldError {
    let mut errs = FieldError::default();
    if op.lists().iter().all(|(_, l)| l.is_empty()) {
        return here("`to.operation` must not be empty");
    }
    for (field, list) in op.lists() {
        for (i, v) in list.iter().enumerate() {
            let r = if v.is_empty() {
                Err(format!("empty value not allowed, found in {field}"))
            } else if field.ends_with("orts") {
                match v.parse::<i64>() {
                    Ok(p) if (0..=65535).contains(&p) => Ok(()),
                    _ => Err(format!("invalid port: {v}")),
                }
            } else if field.ends_with("aths") {
                path_template(v)
            } else {
                Ok(())
            };
            errs.push(at(r, "").via_field_index(field, i));
        }
    }
    errs
}

/// Path templates (`/api/{*}/items/{**}`): `{*}` is one segment, `{**}`
/// any number of them and only last; no other braces.
pub fn path_template(v: &str) -> Result<(), String> {
    if !v.contains('{') && !v.contains('}') {
        return Ok(());
    }
    if !v.starts_with('/') {
        return Err(format!("invalid path template {v:?}: must start with /"));
    }
    let segments: Vec<&str> = v[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let ok = match *seg {
            "{*}" => true,
            "{**}" => i == segments.len() - 1,
            s => !s.contains('{') && !s.contains('}'),
        };
        if !ok {
            return Err(format!(
                "invalid path template {v:?}: use {{*}} for one segment and {{**}} only as the last one"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(yaml: &str) -> AuthorizationPolicy {
        crate::istio::testing::yaml(yaml)
    }

    fn errors(yaml: &str) -> String {
        validate(&ap(yaml)).to_string()
    }

    #[test]
    fn valid_policies() {
        for y in [
            "spec: {}",
            "spec: {action: ALLOW, rules: [{}]}",
            "spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}], to: [{operation: {methods: [POST], paths: ['/admin*']}}], when: [{key: 'request.headers[x-user]', values: ['*']}]}]}",
            "spec: {action: CUSTOM, provider: {name: ext}, rules: [{}]}",
        ] {
            assert_eq!(errors(y), "", "{y}");
        }
        assert_eq!(ap("spec: {}").spec.action, Action::Allow);
    }

    #[test]
    fn table_of_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "spec: {action: DENY}",
                "DENY action without `rules` is meaningless",
            ),
            (
                "spec: {action: CUSTOM, rules: [{}]}",
                "`provider.name` must not be empty: spec.provider.name",
            ),
            (
                "spec: {provider: {name: x}}",
                "`provider` must not be with non CUSTOM action, found ALLOW",
            ),
            (
                "spec: {rules: [{from: []}]}",
                "`from` must not be empty: spec.rules[0].from",
            ),
            (
                "spec: {rules: [{from: [{source: {}}]}]}",
                "`from.source` must not be empty: spec.rules[0].from[0].source",
            ),
            (
                "spec: {rules: [{to: [{operation: {ports: ['99999']}}]}]}",
                "invalid port: 99999: spec.rules[0].to[0].operation.ports[0]",
            ),
            (
                "spec: {rules: [{from: [{source: {ipBlocks: ['1.2.3.4/40']}}]}]}",
                "bad CIDR range (1.2.3.4/40)",
            ),
            (
                "spec: {rules: [{when: [{key: request.headers, values: [a]}]}]}",
                "invalid `value` for `key` request.headers: invalid key",
            ),
            (
                "spec: {rules: [{when: [{key: source.ip}]}]}",
                "expected exactly one, got neither: spec.rules[0].when[0].notValues, spec.rules[0].when[0].values",
            ),
            (
                "spec: {rules: [{when: [{key: foo.bar, values: [a]}]}]}",
                "unknown attribute: foo.bar",
            ),
            (
                "spec: {rules: [{from: [{source: {namespaces: [a], serviceAccounts: [a/b]}}]}]}",
                "cannot set serviceAccounts with namespaces or principals",
            ),
        ];
        crate::istio::testing::each_error_contains(cases, errors);
    }

    #[test]
    fn brackets() {
        assert_eq!(
            bracketed("request.headers[User-Agent]", keys::REQUEST_HEADERS),
            Some("User-Agent")
        );
        assert_eq!(bracketed("request.headers[]", keys::REQUEST_HEADERS), None);
        assert_eq!(bracketed("request.headers", keys::REQUEST_HEADERS), None);
    }

    #[test]
    fn templates() {
        assert!(path_template("/api/{*}/items/{**}").is_ok());
        assert!(path_template("/plain").is_ok());
        assert!(path_template("/a/{**}/b").is_err());
        assert!(path_template("/a/{x}").is_err());
    }
}
