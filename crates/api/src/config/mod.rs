//! Cluster configuration carried by Knative's ConfigMaps (namespace
//! `knative-serving`), as typed settings with Knative's defaults.

pub mod autoscaler;

pub use autoscaler::AutoscalerConfig;
