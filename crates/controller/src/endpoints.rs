//! Keeps every revision's endpoint set (in the gateway's backends) in step
//! with the runtime, directly from its state feed: a newly ready instance
//! takes queued requests within microseconds of passing readiness, without
//! waiting for a reconcile or a store round trip (the cold-start path).
//! Draining instances leave the set before they are stopped; a revision
//! whose instances cannot start fails its queued requests at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use skiff_proxy::{EndpointKey, EndpointRegistry, Gateway};
use skiff_runtime::{Phase, RevisionState, RuntimeState};
use tokio::sync::watch;

/// Why requests to this revision cannot be served now, if they cannot: no
/// instance is ready and the latest start attempt failed (command missing,
/// exited before ready, readiness deadline), or the runtime cannot run it.
pub fn start_failure(state: &RevisionState) -> Option<String> {
    let failure = state.failure.as_ref()?;
    if state.ready_count() > 0 {
        return None;
    }
    let failing = state.instances.iter().any(|i| i.start_failures > 0)
        || (state.desired > 0 && state.instances.is_empty());
    failing.then(|| failure.message.clone())
}

/// Apply one runtime snapshot to the backends.
pub fn sync(gateway: &Gateway, registry: &Mutex<EndpointRegistry>, state: &RuntimeState) {
    let mut registry = registry.lock().unwrap_or_else(|e| e.into_inner());
    let mut live: HashSet<EndpointKey> = HashSet::new();
    for (key, rs) in &state.revisions {
        let rev = format!("{}/{}", key.namespace, key.name);
        let backend = gateway.backends().get(&rev);
        let mut endpoints = Vec::new();
        for inst in &rs.instances {
            let ek = EndpointKey {
                revision: rev.clone(),
                instance: inst.id.0,
                addr: inst.addr,
            };
            match inst.phase {
                Phase::Ready => {
                    endpoints.push(registry.get(&ek, inst.h2c));
                    live.insert(ek);
                }
                // Its in-flight requests finish on the endpoint object; it
                // gets no new ones.
                Phase::Draining => {
                    if let Some(e) = registry.find(&ek) {
                        e.drain();
                    }
                    live.insert(ek);
                }
                Phase::Starting => {
                    if inst.pid.is_some() && inst.start_failures == 0 {
                        backend.note_spawned();
                    }
                }
                Phase::Unready => {}
            }
        }
        backend.set_endpoints(endpoints);
        backend.set_failure(start_failure(rs));
    }
    // Revisions the runtime no longer runs have no instances.
    let running: HashSet<String> = state
        .revisions
        .keys()
        .map(|k| format!("{}/{}", k.namespace, k.name))
        .collect();
    for b in gateway.backends().all() {
        if !running.contains(&*b.revision) && !b.endpoints().is_empty() {
            b.set_endpoints(Vec::new());
        }
    }
    registry.retain(|k| live.contains(k));
}

/// Follow the runtime until its feed closes.
pub async fn run(
    gateway: Arc<Gateway>,
    registry: Arc<Mutex<EndpointRegistry>>,
    mut rx: watch::Receiver<Arc<RuntimeState>>,
) {
    loop {
        let state = rx.borrow_and_update().clone();
        sync(&gateway, &registry, &state);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::{Failure, InstanceId, InstanceState};
    use std::time::SystemTime;

    fn inst(phase: Phase, start_failures: u32) -> InstanceState {
        InstanceState {
            id: InstanceId(1),
            addr: "127.0.0.1:1".parse().unwrap(),
            phase,
            pid: Some(1),
            restarts: 0,
            started: SystemTime::now(),
            h2c: false,
            start_failures,
        }
    }

    #[test]
    fn only_a_failing_start_with_nothing_ready_fails_requests() {
        let failure = Some(Failure {
            reason: "ExitCode3".into(),
            message: "exited with code 3".into(),
            before_ready: false,
        });
        let mut s = RevisionState {
            desired: 1,
            instances: vec![inst(Phase::Starting, 1)],
            failure: failure.clone(),
            ever_ready: true,
        };
        assert_eq!(start_failure(&s).as_deref(), Some("exited with code 3"));
        // A fresh start after an old failure: give it its chance.
        s.instances = vec![inst(Phase::Starting, 0)];
        assert_eq!(start_failure(&s), None);
        // Something is ready: serve with that.
        s.instances = vec![inst(Phase::Ready, 0), inst(Phase::Starting, 2)];
        assert_eq!(start_failure(&s), None);
        // Scaled to zero: a new request must be able to try again.
        s.instances.clear();
        s.desired = 0;
        assert_eq!(start_failure(&s), None);
        // Wanted, but the runtime cannot run it at all.
        s.desired = 1;
        assert!(start_failure(&s).is_some());
    }
}
