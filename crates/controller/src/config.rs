//! The live cluster configuration: Knative's ConfigMaps in `knative-serving`
//! as one [`ClusterConfig`], reloaded from the store whenever one of them
//! changes (no restart). Admission reads it for defaults and bounds, the
//! reconcilers for domains, templates and GC, and the autoscaler for
//! `config-autoscaler`:
//!
//! ```text
//! let cfg = live.current();               // Arc<ClusterConfig>, cheap
//! let target = cfg.autoscaler.container_concurrency_target_default;
//! let mut changes = live.subscribe();     // wakes on every reload
//! changes.changed().await?;
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::config::{CONFIGMAPS, ClusterConfig, ConfigMapError, SYSTEM_NAMESPACE};
use skiff_api::core::ConfigMap;
use skiff_api::object::CONFIGMAP;
use skiff_store::{Store, StoreError};
use tokio::sync::watch;

/// Shared handle to the current configuration. Clones share it.
#[derive(Clone)]
pub struct LiveConfig {
    tx: Arc<watch::Sender<Arc<ClusterConfig>>>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig::new(ClusterConfig::default())
    }
}

/// Why a reload kept the previous configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ConfigMap {SYSTEM_NAMESPACE}/{0}")]
    Invalid(#[from] ConfigMapError),
}

impl LiveConfig {
    pub fn new(config: ClusterConfig) -> LiveConfig {
        let (tx, _) = watch::channel(Arc::new(config));
        LiveConfig { tx: Arc::new(tx) }
    }

    /// The configuration now.
    pub fn current(&self) -> Arc<ClusterConfig> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every new configuration (the value is the whole
    /// configuration; `autoscaler` is `config-autoscaler`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.tx.subscribe()
    }

    /// Make `config` current; true if it differs from the previous one.
    pub fn set(&self, config: ClusterConfig) -> bool {
        self.tx.send_if_modified(|cur| {
            if **cur == config {
                false
            } else {
                *cur = Arc::new(config);
                true
            }
        })
    }

    /// Rebuild from the ConfigMaps in the store. A ConfigMap that does not
    /// parse (admission refuses those, so only a store edited behind Skiff's
    /// back has them) keeps the previous configuration and is reported.
    pub async fn reload<S: Store>(&self, store: &S) -> Result<bool, ReloadError> {
        let maps = system_configmaps(store).await?;
        let config = ClusterConfig::from_configmaps(&maps)?;
        Ok(self.set(config))
    }
}

/// Data of the ConfigMaps Skiff reads, by name.
pub async fn system_configmaps<S: Store>(
    store: &S,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
    let mut out = BTreeMap::new();
    for obj in store.list(&CONFIGMAP, Some(SYSTEM_NAMESPACE)).await? {
        if !CONFIGMAPS.contains(&obj.metadata.name.as_str()) {
            continue;
        }
        let cm: ConfigMap = obj
            .to_typed()
            .map_err(|e| StoreError::Backend(format!("stored ConfigMap does not decode: {e}")))?;
        out.insert(cm.metadata.name.clone(), cm.data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_store::{SqliteStore, Write};

    #[tokio::test]
    async fn reloads_from_the_store_and_notifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let live = LiveConfig::default();
        let mut rx = live.subscribe();
        assert!(
            !live.reload(&store).await.unwrap(),
            "no ConfigMaps: defaults"
        );
        let cm = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
            "data": {"stable-window": "2m", "max-scale-limit": "10", "max-scale": "5"}
        }))
        .unwrap();
        store.commit(vec![Write::Apply(cm)]).await.unwrap();
        assert!(live.reload(&store).await.unwrap());
        assert!(rx.has_changed().unwrap());
        let cfg = rx.borrow_and_update().clone();
        assert_eq!(cfg.autoscaler.stable_window.as_secs(), 120);
        assert_eq!(live.current().autoscaler.max_scale_limit, 10);
        // Unchanged data: no notification.
        assert!(!live.reload(&store).await.unwrap());
    }
}
