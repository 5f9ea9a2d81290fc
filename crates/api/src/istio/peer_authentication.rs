//! `security.istio.io` PeerAuthentication: whether workloads accept plain
//! text, mTLS, or both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, at, err, here};
use super::destination_rule::WorkloadSelector;
use super::proto::proto_enum;
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthentication {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PeerAuthenticationSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Keys are port numbers (JSON object keys are strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<String, MutualTls>>,
}

proto_enum!(
    MtlsMode, "mTLS mode" {
        Unset = 0 => "UNSET",
        Disable = 1 => "DISABLE",
        Permissive = 2 => "PERMISSIVE",
        Strict = 3 => "STRICT",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualTls {
    #[serde(default)]
    pub mode: MtlsMode,
}

impl PeerAuthenticationSpec {
    /// The effective mode for `port`: the port-level setting, else the
    /// policy's, where UNSET means "inherit" (PERMISSIVE at the top).
    pub fn mode_for(&self, port: u16, inherited: MtlsMode) -> MtlsMode {
        let top = match self.mtls.as_ref().map(|m| m.mode) {
            None | Some(MtlsMode::Unset) => inherited,
            Some(m) => m,
        };
        match self
            .port_level_mtls
            .as_ref()
            .and_then(|p| p.get(&port.to_string()))
            .map(|m| m.mode)
        {
            None | Some(MtlsMode::Unset) => top,
            Some(m) => m,
        }
    }
}

/// Istio's ValidatePeerAuthentication.
pub fn validate(pa: &PeerAuthentication) -> FieldError {
    let spec = &pa.spec;
    let mut errs = FieldError::default();
    let empty_selector = spec
        .selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty());
    if let Some(ports) = &spec.port_level_mtls {
        if empty_selector && !ports.is_empty() {
            errs.push(err(
                "mesh/namespace peer authentication cannot have port level mTLS",
                "portLevelMtls",
            ));
        }
        if ports.is_empty() {
            errs.push(err(
                "port level mTLS, if defined, must have at least one element",
                "portLevelMtls",
            ));
        }
        for k in ports.keys() {
            let ok = k.parse::<i64>().is_ok_and(|p| check::port(p).is_ok());
            if !ok {
                errs.push(here("port must be in range 1..65535").via_field_key("portLevelMtls", k));
            }
        }
    }
    if let Some(s) = &spec.selector {
        for (k, v) in &s.match_labels {
            errs.push(at(check::label(k, v), "").via_field_key("selector.matchLabels", k));
        }
    }
    errs.via_field("spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(yaml: &str) -> PeerAuthentication {
        crate::istio::testing::yaml(yaml)
    }

    #[test]
    fn modes_and_inheritance() {
        let p = pa(
            "spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: DISABLE}}}",
        );
        assert_eq!(validate(&p).to_string(), "");
        assert_eq!(
            p.spec.mode_for(8080, MtlsMode::Permissive),
            MtlsMode::Disable
        );
        assert_eq!(p.spec.mode_for(80, MtlsMode::Permissive), MtlsMode::Strict);
        let p = pa("spec: {}");
        assert_eq!(
            p.spec.mode_for(80, MtlsMode::Permissive),
            MtlsMode::Permissive
        );
    }

    #[test]
    fn errors() {
        let e = validate(&pa("spec: {portLevelMtls: {'80': {mode: STRICT}}}")).to_string();
        assert_eq!(
            e,
            "mesh/namespace peer authentication cannot have port level mTLS: spec.portLevelMtls"
        );
        let e = validate(&pa(
            "spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {'0': {mode: STRICT}}}",
        ))
        .to_string();
        assert_eq!(e, "port must be in range 1..65535: spec.portLevelMtls[0]");
        let v: serde_json::Value =
            serde_saphyr::from_str("spec: {mtls: {mode: SOMETIMES}}").unwrap();
        assert!(
            serde_json::from_value::<PeerAuthentication>(v)
                .unwrap_err()
                .to_string()
                .contains("unknown mTLS mode \"SOMETIMES\"")
        );
    }
}
