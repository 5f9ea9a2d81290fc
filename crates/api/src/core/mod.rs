//! Core (`v1`) kinds Skiff stores: ConfigMaps (Knative's configuration) and
//! Events (what controllers did, for `skiff describe` and `get events`).

mod configmap;
mod event;

pub use configmap::ConfigMap;
pub use event::{Event, EventSource, InvolvedObject};
