//! Kubernetes-style Events: what a controller did to an object (created a
//! child, restored one edited by hand, a revision failed). Equal events of
//! one object are aggregated (`count`, `lastTimestamp`), and events older
//! than an hour are pruned, like the API server's default event TTL.

use std::time::{Duration, SystemTime};

use skiff_api::core::{Event, EventSource, InvolvedObject};
use skiff_api::meta::{self, ObjectMeta};
use skiff_api::object::{EVENT, ObjectKey, Resource};
use skiff_store::{Store, StoreError, TypedStore, Write};

pub const COMPONENT: &str = "skiff-controller";
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";
/// How long events are kept (the API server's default `--event-ttl`).
pub const TTL: Duration = Duration::from_secs(3600);

/// Record an event about `obj`.
pub async fn record<S: Store, T: Resource>(
    store: &S,
    obj: &T,
    type_: &str,
    reason: &str,
    message: String,
) -> Result<(), StoreError> {
    let m = obj.metadata();
    let involved = InvolvedObject {
        api_version: T::kind().api_version(),
        kind: T::kind().kind.to_string(),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
    };
    let now = meta::now();
    let existing = store
        .list_as::<Event>(Some(&m.namespace))
        .await?
        .into_iter()
        .find(|e| {
            e.involved_object == involved
                && e.reason == reason
                && e.message == message
                && e.type_ == type_
        });
    let write = match existing {
        Some(mut e) => {
            e.count += 1;
            e.last_timestamp = Some(now);
            Write::Update(e.to_dynamic())
        }
        None => {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let e = Event {
                metadata: ObjectMeta {
                    name: format!("{}.{nanos:x}", m.name),
                    namespace: m.namespace.clone(),
                    ..Default::default()
                },
                involved_object: involved,
                reason: reason.to_string(),
                message,
                type_: type_.to_string(),
                source: EventSource {
                    component: COMPONENT.to_string(),
                },
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                count: 1,
                ..Default::default()
            };
            Write::Create(e.to_dynamic())
        }
    };
    store.commit(vec![write]).await?;
    Ok(())
}

/// Delete events last seen longer than [`TTL`] ago.
pub async fn prune<S: Store>(store: &S) -> Result<usize, StoreError> {
    let cutoff = SystemTime::now() - TTL;
    let old: Vec<Write> = store
        .list_as::<Event>(None)
        .await?
        .into_iter()
        .filter(|e| {
            e.last_timestamp
                .as_deref()
                .and_then(meta::parse_timestamp)
                .is_some_and(|t| t < cutoff)
        })
        .map(|e| {
            Write::Delete(ObjectKey::new(
                &EVENT,
                &e.metadata.namespace,
                &e.metadata.name,
            ))
        })
        .collect();
    let n = old.len();
    if n > 0 {
        store.commit(old).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::serving::Service;
    use skiff_store::SqliteStore;

    #[tokio::test]
    async fn equal_events_aggregate() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let svc = Service {
            metadata: ObjectMeta {
                name: "hello".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        for _ in 0..2 {
            record(&store, &svc, WARNING, "Reverted", "x".into())
                .await
                .unwrap();
        }
        record(&store, &svc, NORMAL, "Created", "y".into())
            .await
            .unwrap();
        let events = store.list_as::<Event>(Some("default")).await.unwrap();
        assert_eq!(events.len(), 2);
        let reverted = events.iter().find(|e| e.reason == "Reverted").unwrap();
        assert_eq!(reverted.count, 2);
        assert_eq!(reverted.involved_object.kind, "Service");
        assert_eq!(prune(&store).await.unwrap(), 0);
    }
}
