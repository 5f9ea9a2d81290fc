//! Draining an instance before it stops (the queue-proxy's drain): it gets
//! no new slots, leaves its revision's endpoint set, and finishes its
//! in-flight requests (bounded by the revision's timeout). Only then does
//! the runtime send SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proxy::{EndpointRegistry, Gateway};
use skiff_runtime::{BoxFuture, Drainer, InstanceId, RevisionKey};

/// Poll interval while draining (a drain is rare; polling keeps the hot path
/// free of notifications).
const POLL: Duration = Duration::from_millis(5);
/// Added to the revision's timeout: a request may have queued for that long
/// before it got its slot here.
const DRAIN_SLACK: Duration = Duration::from_secs(5);

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
        // In-flight requests end within the revision's timeout.
        let bound = gateway
            .backends()
            .find(&rev)
            .map_or(skiff_proxy::activator::DEFAULT_TIMEOUT, |b| b.timeout())
            + DRAIN_SLACK;
        Box::pin(async move {
            let Some(ep) = endpoint else { return };
            // No new slots from now on; then wait until no backend lists it
            // and nothing is in flight.
            ep.drain();
            let wait = async {
                while gateway.references(&ep) || ep.in_flight() > 0 {
                    tokio::time::sleep(POLL).await;
                }
            };
            if tokio::time::timeout(bound, wait).await.is_err() {
                tracing::warn!(revision = %rev, instance = instance.0,
                    in_flight = ep.in_flight(), "drain timed out; stopping the instance anyway");
            }
            ep.retire();
        })
    }
}
