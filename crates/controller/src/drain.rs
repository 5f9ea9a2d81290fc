//! Draining an instance before it stops: wait until the published routing
//! table no longer sends it requests, then until its in-flight requests have
//! finished. Only then does the runtime send SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proxy::{EndpointRegistry, Gateway};
use skiff_runtime::{BoxFuture, Drainer, InstanceId, RevisionKey};

/// Longest a drain waits for in-flight requests (a stuck request must not keep
/// an instance forever; the revision's own timeout normally ends it first).
const MAX_DRAIN: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(5);

pub struct GatewayDrainer {
    pub gateway: Arc<Gateway>,
    pub registry: Arc<Mutex<EndpointRegistry>>,
}

impl Drainer for GatewayDrainer {
    fn drain(&self, revision: &RevisionKey, instance: InstanceId) -> BoxFuture<()> {
        let rev = format!("{}/{}", revision.namespace, revision.name);
        let endpoint = self
            .registry
            .lock()
            .expect("registry lock")
            .find_instance(&rev, instance.0);
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let Some(ep) = endpoint else { return };
            let wait = async {
                while gateway.references(&ep) || ep.in_flight() > 0 {
                    tokio::time::sleep(POLL).await;
                }
            };
            if tokio::time::timeout(MAX_DRAIN, wait).await.is_err() {
                tracing::warn!(revision = %rev, instance = instance.0,
                    in_flight = ep.in_flight(), "drain timed out; stopping the instance anyway");
            }
            ep.retire();
        })
    }
}
