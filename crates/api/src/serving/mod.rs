//! `serving.knative.dev/v1`: Service, Configuration, Revision, Route.

mod configuration;
mod podspec;
mod revision;
mod route;
mod service;

pub use configuration::{Configuration, ConfigurationSpec, ConfigurationStatus};
pub use podspec::{
    Container, ContainerPort, EnvVar, HttpGetAction, HttpHeader, IntOrString, PodSpec, Probe,
    TcpSocketAction,
};
pub use revision::{Revision, RevisionSpec, RevisionStatus, RevisionTemplateSpec};
pub use route::{Addressable, Route, RouteSpec, RouteStatus, TrafficTarget};
pub use service::{Service, ServiceSpec, ServiceStatus};

/// Condition types, as Knative names them.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const CONFIGURATIONS_READY: &str = "ConfigurationsReady";
    pub const ROUTES_READY: &str = "RoutesReady";
    pub const ALL_TRAFFIC_ASSIGNED: &str = "AllTrafficAssigned";
    pub const INGRESS_READY: &str = "IngressReady";
    pub const CERTIFICATE_PROVISIONED: &str = "CertificateProvisioned";
    pub const RESOURCES_AVAILABLE: &str = "ResourcesAvailable";
    pub const CONTAINER_HEALTHY: &str = "ContainerHealthy";
    pub const ACTIVE: &str = "Active";

    pub const SERVICE: &[&str] = &[CONFIGURATIONS_READY, ROUTES_READY];
    pub const ROUTE: &[&str] = &[ALL_TRAFFIC_ASSIGNED, INGRESS_READY, CERTIFICATE_PROVISIONED];
    pub const CONFIGURATION: &[&str] = &[];
    pub const REVISION: &[&str] = &[RESOURCES_AVAILABLE, CONTAINER_HEALTHY];
}

/// `metadata` + resource trait boilerplate for the four kinds.
macro_rules! resource {
    ($ty:ty, $kind:expr) => {
        impl $crate::object::Resource for $ty {
            fn kind() -> &'static $crate::object::ResourceKind {
                &$kind
            }
            fn metadata(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use resource;

pub(crate) fn api_version() -> String {
    "serving.knative.dev/v1".to_string()
}
