//! Untyped objects (what the store keeps and the admin API moves) and the
//! registry of kinds Skiff serves.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::meta::ObjectMeta;

/// A kind Skiff knows: its API group/version, names and scope.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ResourceKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
}

impl ResourceKind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The REST path of the collection, Kubernetes style.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            _ => format!("{prefix}/{}", self.plural),
        }
    }

    /// True if this kind is served under `version` of its group (Istio
    /// serves older versions with the same schema).
    pub fn serves_version(&self, version: &str) -> bool {
        version == self.version || crate::istio::older_versions(self.group).contains(&version)
    }

    /// True if `name` is this kind's plural, singular, short name or kind
    /// (case-insensitive), as `kubectl get` accepts them.
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == self.plural
            || name == self.singular
            || name == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&name.as_str())
            || name == format!("{}.{}", self.plural, self.group)
    }
}

const SERVING: &str = "serving.knative.dev";

pub static SERVICE: ResourceKind = ResourceKind {
    group: SERVING,
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    short_names: &["ksvc", "kservice"],
    namespaced: true,
};
pub static CONFIGURATION: ResourceKind = ResourceKind {
    group: SERVING,
    version: "v1",
    kind: "Configuration",
    plural: "configurations",
    singular: "configuration",
    short_names: &["config", "cfg"],
    namespaced: true,
};
pub static REVISION: ResourceKind = ResourceKind {
    group: SERVING,
    version: "v1",
    kind: "Revision",
    plural: "revisions",
    singular: "revision",
    short_names: &["rev"],
    namespaced: true,
};
pub static ROUTE: ResourceKind = ResourceKind {
    group: SERVING,
    version: "v1",
    kind: "Route",
    plural: "routes",
    singular: "route",
    short_names: &["rt"],
    namespaced: true,
};

pub static CONFIGMAP: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    short_names: &["cm"],
    namespaced: true,
};
pub static EVENT: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    namespaced: true,
};

/// Every kind the store accepts; configuration first, then the Knative kinds
/// (referenced kinds first), Secrets and Istio's, then events.
pub static KINDS: &[&ResourceKind] = &[
    &CONFIGMAP,
    &SERVICE,
    &CONFIGURATION,
    &REVISION,
    &ROUTE,
    &crate::secret::SECRET,
    &crate::istio::GATEWAY,
    &crate::istio::DESTINATION_RULE,
    &crate::istio::VIRTUAL_SERVICE,
    &crate::istio::PEER_AUTHENTICATION,
    &crate::istio::AUTHORIZATION_POLICY,
    &EVENT,
];

/// The kind for an `apiVersion` + `kind` pair, if Skiff serves it.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static ResourceKind> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    KINDS
        .iter()
        .copied()
        .find(|k| k.kind == kind && k.group == group && k.serves_version(version))
}

/// The kind a CLI user means by `name` (`ksvc`, `revisions`, `route`, ...).
pub fn by_name(name: &str) -> Option<&'static ResourceKind> {
    // `services` alone means Knative services here: Skiff has no core Services.
    KINDS.iter().copied().find(|k| k.answers_to(name))
}

/// The kind whose plural is `plural` in `group` (REST paths).
pub fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.plural == plural)
}

/// Identity of one object: kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: &'static ResourceKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: &'static ResourceKind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `group/Kind`, unique across API groups (the store's kind column).
    pub fn qualified_kind(&self) -> String {
        qualified_kind(self.kind)
    }
}

pub fn qualified_kind(kind: &ResourceKind) -> String {
    format!("{}/{}", kind.group, kind.kind)
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind.group, self.kind.kind, &self.namespace, &self.name).cmp(&(
            other.kind.group,
            other.kind.kind,
            &other.namespace,
            &other.name,
        ))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.kind, self.namespace, self.name)
    }
}

/// An object of any kind: type and object metadata plus the rest of the body
/// (`spec`, `status`, `data`, ...) as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicObject {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

impl DynamicObject {
    pub fn resource_kind(&self) -> Option<&'static ResourceKind> {
        lookup(&self.api_version, &self.kind)
    }

    pub fn key(&self) -> Option<ObjectKey> {
        let kind = self.resource_kind()?;
        Some(ObjectKey::new(
            kind,
            &self.metadata.namespace,
            &self.metadata.name,
        ))
    }

    pub fn spec(&self) -> Option<&Value> {
        self.body.get("spec")
    }

    pub fn status(&self) -> Option<&Value> {
        self.body.get("status")
    }

    pub fn from_typed<T: Serialize>(typed: &T) -> DynamicObject {
        let v = serde_json::to_value(typed).expect("typed objects serialize");
        serde_json::from_value(v).expect("typed objects are objects")
    }

    /// Convert to a typed object; the error names the offending field.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, TypedError> {
        let v = serde_json::to_value(self).expect("objects serialize");
        serde_path_to_error::deserialize(v).map_err(|e| TypedError {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }

    /// Everything but metadata and status: what a change of counts as a spec
    /// change (bumps `metadata.generation`).
    pub fn desired_state(&self) -> Map<String, Value> {
        let mut m = self.body.clone();
        m.remove("status");
        m
    }
}

/// A typed conversion failed at `path`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TypedError {
    pub path: String,
    pub message: String,
}

/// Typed resources.
pub trait Resource: Serialize + DeserializeOwned {
    fn kind() -> &'static ResourceKind;
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;

    fn key(&self) -> ObjectKey {
        ObjectKey::new(
            Self::kind(),
            &self.metadata().namespace,
            &self.metadata().name,
        )
    }

    /// The untyped object, with `apiVersion` and `kind` always set (a typed
    /// object built with `Default` leaves them empty).
    fn to_dynamic(&self) -> DynamicObject {
        let mut d = DynamicObject::from_typed(self);
        let k = Self::kind();
        if d.api_version.is_empty() {
            d.api_version = k.api_version();
        }
        if d.kind.is_empty() {
            d.kind = k.kind.to_string();
        }
        d
    }
}
