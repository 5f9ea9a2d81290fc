//! Well-known label and annotation keys (Knative's names, so existing tooling and
//! selectors keep working).

pub const SERVICE: &str = "serving.knative.dev/service";
pub const SERVICE_UID: &str = "serving.knative.dev/serviceUID";
pub const CONFIGURATION: &str = "serving.knative.dev/configuration";
pub const CONFIGURATION_UID: &str = "serving.knative.dev/configurationUID";
pub const CONFIGURATION_GENERATION: &str = "serving.knative.dev/configurationGeneration";
pub const REVISION: &str = "serving.knative.dev/revision";
pub const ROUTE: &str = "serving.knative.dev/route";
pub const ROUTES_ANNOTATION: &str = "serving.knative.dev/routes";
pub const ROUTING_STATE: &str = "serving.knative.dev/routingState";
pub const ROUTING_STATE_MODIFIED: &str = "serving.knative.dev/routingStateModified";
pub const CREATOR: &str = "serving.knative.dev/creator";
pub const LAST_MODIFIER: &str = "serving.knative.dev/lastModifier";
pub const PROGRESS_DEADLINE: &str = "serving.knative.dev/progress-deadline";
pub const VISIBILITY: &str = "networking.knative.dev/visibility";
pub const VISIBILITY_CLUSTER_LOCAL: &str = "cluster-local";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
