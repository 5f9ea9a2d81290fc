//! Istio's traffic-management and security API, as Skiff serves it:
//! `networking.istio.io` Gateway, VirtualService, DestinationRule and
//! `security.istio.io` PeerAuthentication, AuthorizationPolicy. Every
//! version Istio serves (`v1`, `v1beta1`, `v1alpha3`) has the same schema and
//! is accepted; objects are stored as `v1`.
//!
//! Validation follows istio/istio `pkg/config/validation` (rules and
//! wording), with Knative-style field paths.

pub mod authorization_policy;
pub mod check;
pub mod destination_rule;
pub mod duration;
pub mod gateway;
pub mod peer_authentication;
pub mod proto;
pub mod string_match;
pub mod virtual_service;

pub use authorization_policy::AuthorizationPolicy;
pub use destination_rule::DestinationRule;
pub use gateway::Gateway;
pub use peer_authentication::PeerAuthentication;
pub use string_match::StringMatch;
pub use virtual_service::VirtualService;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::field_error::FieldError;
use crate::meta::ObjectMeta;
use crate::object::{DynamicObject, Resource, ResourceKind, TypedError};

pub const NETWORKING: &str = "networking.istio.io";
pub const SECURITY: &str = "security.istio.io";

pub static GATEWAY: ResourceKind = ResourceKind {
    group: NETWORKING,
    version: "v1",
    kind: "Gateway",
    plural: "gateways",
    singular: "gateway",
    short_names: &["gw"],
    namespaced: true,
};
pub static VIRTUAL_SERVICE: ResourceKind = ResourceKind {
    group: NETWORKING,
    version: "v1",
    kind: "VirtualService",
    plural: "virtualservices",
    singular: "virtualservice",
    short_names: &["vs"],
    namespaced: true,
};
pub static DESTINATION_RULE: ResourceKind = ResourceKind {
    group: NETWORKING,
    version: "v1",
    kind: "DestinationRule",
    plural: "destinationrules",
    singular: "destinationrule",
    short_names: &["dr"],
    namespaced: true,
};
pub static PEER_AUTHENTICATION: ResourceKind = ResourceKind {
    group: SECURITY,
    version: "v1",
    kind: "PeerAuthentication",
    plural: "peerauthentications",
    singular: "peerauthentication",
    short_names: &["pa"],
    namespaced: true,
};
pub static AUTHORIZATION_POLICY: ResourceKind = ResourceKind {
    group: SECURITY,
    version: "v1",
    kind: "AuthorizationPolicy",
    plural: "authorizationpolicies",
    singular: "authorizationpolicy",
    short_names: &["ap"],
    namespaced: true,
};

/// Versions served besides a kind's storage version, by group: Istio serves
/// the same schema under all of them.
pub fn older_versions(group: &str) -> &'static [&'static str] {
    match group {
        NETWORKING => &["v1beta1", "v1alpha3"],
        SECURITY => &["v1beta1"],
        _ => &[],
    }
}

macro_rules! istio_resource {
    ($ty:ty, $kind:expr) => {
        impl Resource for $ty {
            fn kind() -> &'static ResourceKind {
                &$kind
            }
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

istio_resource!(Gateway, GATEWAY);
istio_resource!(VirtualService, VIRTUAL_SERVICE);
istio_resource!(DestinationRule, DESTINATION_RULE);
istio_resource!(PeerAuthentication, PEER_AUTHENTICATION);
istio_resource!(AuthorizationPolicy, AUTHORIZATION_POLICY);

fn typed<T: DeserializeOwned>(obj: &DynamicObject) -> Result<T, FieldError> {
    obj.to_typed()
        .map_err(|e: TypedError| FieldError::new(e.message, &[e.path.as_str()]))
}

/// Kubernetes object names (DNS-1123 subdomain), as the API server checks.
pub(crate) fn validate_name(name: &str) -> FieldError {
    let msgs = crate::admission::names::dns1123_subdomain(name);
    if name.is_empty() || msgs.is_empty() {
        return FieldError::default();
    }
    FieldError::invalid_value(
        format!(
            "{name:?}: not a DNS 1123 subdomain: {}",
            crate::admission::names::go_list(&msgs)
        ),
        "metadata.name",
    )
}

/// Validate an Istio object and return it as stored (typed round trip:
/// apiVersion normalized to `v1`, unknown fields refused). Objects of other
/// kinds pass through unchanged.
pub fn admit(obj: &DynamicObject) -> Result<DynamicObject, FieldError> {
    let Some(kind) = obj.resource_kind() else {
        return Ok(obj.clone());
    };
    fn finish<T: Resource + Serialize>(
        t: T,
        obj: &DynamicObject,
        errs: FieldError,
    ) -> Result<DynamicObject, FieldError> {
        let errs = validate_name(&obj.metadata.name).also(errs);
        if errs.has_errors() {
            return Err(errs);
        }
        let mut d = t.to_dynamic();
        d.api_version = T::kind().api_version();
        d.kind = T::kind().kind.to_string();
        Ok(d)
    }
    match (kind.group, kind.kind) {
        (NETWORKING, "Gateway") => {
            let t: Gateway = typed(obj)?;
            let e = gateway::validate(&t);
            finish(t, obj, e)
        }
        (NETWORKING, "VirtualService") => {
            let t: VirtualService = typed(obj)?;
            let e = virtual_service::validate(&t);
            finish(t, obj, e)
        }
        (NETWORKING, "DestinationRule") => {
            let t: DestinationRule = typed(obj)?;
            let e = destination_rule::validate(&t);
            finish(t, obj, e)
        }
        (SECURITY, "PeerAuthentication") => {
            let t: PeerAuthentication = typed(obj)?;
            let e = peer_authentication::validate(&t);
            finish(t, obj, e)
        }
        (SECURITY, "AuthorizationPolicy") => {
            let t: AuthorizationPolicy = typed(obj)?;
            let e = authorization_policy::validate(&t);
            finish(t, obj, e)
        }
        _ => Ok(obj.clone()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    /// A value from YAML, the way manifests arrive (YAML → JSON → type).
    pub fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        let v: serde_json::Value = serde_saphyr::from_str(s).expect("test YAML parses");
        serde_json::from_value(v).expect("test YAML has the type's shape")
    }

    /// Table check: for each (yaml, want), `errors(yaml)` mentions `want`.
    pub fn each_error_contains(cases: &[(&str, &str)], errors: impl Fn(&str) -> String) {
        for (yaml, want) in cases {
            let got = errors(yaml);
            assert!(got.contains(want), "for {yaml}\n got: {got}\nwant: {want}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_manifest;

    fn admit_yaml(yaml: &str) -> Result<DynamicObject, FieldError> {
        let docs = parse_manifest("t", yaml, "default").unwrap();
        admit(&docs[0].object)
    }

    #[test]
    fn every_served_version_is_accepted_and_stored_as_v1() {
        for v in ["v1", "v1beta1", "v1alpha3"] {
            let o = admit_yaml(&format!(
                "apiVersion: networking.istio.io/{v}\nkind: DestinationRule\nmetadata: {{name: d}}\nspec: {{host: a.b}}\n"
            ))
            .unwrap();
            assert_eq!(o.api_version, "networking.istio.io/v1");
            assert_eq!(o.metadata.namespace, "default");
        }
        let o = admit_yaml(
            "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all}\nspec: {}\n",
        )
        .unwrap();
        assert_eq!(o.api_version, "security.istio.io/v1");
        let docs = parse_manifest(
            "t",
            "apiVersion: security.istio.io/v1alpha3\nkind: AuthorizationPolicy\nmetadata: {name: x}\n",
            "default",
        );
        assert!(docs.is_err(), "security has no v1alpha3");
    }

    #[test]
    fn errors_name_the_field() {
        let e = admit_yaml(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [a.b]\n  http:\n  - route: [{destination: {host: a.b}}]\n    timeout: 5 seconds\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "time: unknown unit \" seconds\" in duration \"5 seconds\": spec.http[0].timeout"
        );
        let e = admit_yaml(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: a.b, trafficPolicy: {tls: {mode: FOO}}}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.trafficPolicy.tls.mode"), "{e}");
        let e = admit_yaml(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: Bad_Name}\nspec: {host: a.b}\n",
        )
        .unwrap_err();
        assert!(e.to_string().ends_with("metadata.name"), "{e}");
    }
}
