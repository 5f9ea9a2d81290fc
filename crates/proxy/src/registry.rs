//! Endpoint objects keyed by instance, reused across routing snapshots so
//! that in-flight counts and pooled connections carry over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::endpoint::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// `namespace/revision`.
    pub revision: String,
    pub instance: u64,
    /// A restarted instance listens on a new port: a new endpoint.
    pub addr: SocketAddr,
}

#[derive(Default)]
pub struct EndpointRegistry {
    endpoints: HashMap<EndpointKey, Arc<Endpoint>>,
}

impl EndpointRegistry {
    pub fn get(&mut self, key: &EndpointKey, h2c: bool) -> Arc<Endpoint> {
        self.endpoints
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Endpoint::new(
                    key.addr,
                    key.revision.as_str().into(),
                    key.instance,
                    h2c,
                ))
            })
            .clone()
    }

    /// Look up without creating.
    pub fn find(&self, key: &EndpointKey) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(key)
    }

    /// The endpoint of `revision`'s instance, whatever its address.
    pub fn find_instance(&self, revision: &str, instance: u64) -> Option<Arc<Endpoint>> {
        self.endpoints
            .iter()
            .find(|(k, _)| k.revision == revision && k.instance == instance)
            .map(|(_, e)| e.clone())
    }

    /// Forget (and retire) every endpoint for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&EndpointKey) -> bool) {
        self.endpoints.retain(|k, e| {
            let kept = keep(k);
            if !kept {
                e.retire();
            }
            kept
        });
    }
}
