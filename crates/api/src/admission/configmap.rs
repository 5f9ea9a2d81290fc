//! ConfigMaps: Knative's ConfigMap webhook for the ConfigMaps Skiff reads in
//! `knative-serving`; other ConfigMaps are stored as they are.

use crate::config::{self, SYSTEM_NAMESPACE};
use crate::core::ConfigMap;

/// Knative's error text for an invalid system ConfigMap.
pub fn admit(cm: &ConfigMap) -> Result<(), String> {
    if cm.metadata.namespace != SYSTEM_NAMESPACE {
        return Ok(());
    }
    config::validate_configmap(&cm.metadata.name, &cm.data, &cm.metadata.annotations)
}
