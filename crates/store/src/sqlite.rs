//! The embedded store: one SQLite database in WAL mode with `synchronous=FULL`,
//! so a commit is on disk before it is acknowledged and survives `kill -9`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use skiff_api::meta;
use skiff_api::object::{self, DynamicObject, ObjectKey, ResourceKind};
use tokio::sync::broadcast;

use crate::store::{Committed, Event, EventType, Store, StoreError, Write};

const SCHEMA_VERSION: i64 = 1;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Writes go through this connection, one transaction at a time.
    writer: Mutex<Writer>,
    /// Reads use their own connection: WAL lets them run beside a write.
    reader: Mutex<Connection>,
    events: broadcast::Sender<Event>,
}

struct Writer {
    conn: Connection,
    /// Last resource version handed out (also persisted in `meta`).
    resource_version: u64,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        let reader = Connection::open(path).map_err(backend)?;
        Self::with_connections(conn, reader)
    }

    fn with_connections(conn: Connection, reader: Connection) -> Result<SqliteStore, StoreError> {
        for c in [&conn, &reader] {
            c.pragma_update(None, "journal_mode", "WAL")
                .map_err(backend)?;
            c.pragma_update(None, "synchronous", "FULL")
                .map_err(backend)?;
            c.pragma_update(None, "foreign_keys", "ON")
                .map_err(backend)?;
            c.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(backend)?;
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "the database has schema version {version}, this Skiff knows up to {SCHEMA_VERSION}: use a newer skiff"
            )));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                 kind TEXT NOT NULL,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 uid TEXT NOT NULL,
                 resource_version INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (kind, namespace, name)
             );
             CREATE TABLE IF NOT EXISTS owners (
                 owner_uid TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 PRIMARY KEY (owner_uid, kind, namespace, name)
             );
             CREATE INDEX IF NOT EXISTS objects_uid ON objects (uid);
             CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );
             INSERT OR IGNORE INTO meta (key, value) VALUES ('resource_version', 0);",
        )
        .map_err(backend)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(backend)?;
        let resource_version: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'resource_version'",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let (events, _) = broadcast::channel(4096);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    conn,
                    resource_version: resource_version as u64,
                }),
                reader: Mutex::new(reader),
                events,
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

impl Store for SqliteStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<DynamicObject>, StoreError> {
        let key = key.clone();
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            read_object(&conn, &key)
        })
        .await
    }

    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<DynamicObject>, StoreError> {
        let namespace = namespace.map(str::to_string);
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            let qk = object::qualified_kind(kind);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
                     ORDER BY namespace, name",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![qk, namespace], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            let mut out = Vec::new();
            for body in rows {
                out.push(decode(&body.map_err(backend)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>, StoreError> {
        self.blocking(move |inner| {
            let mut w = inner.writer.lock().expect("writer lock");
            let mut rv = w.resource_version;
            let tx = w.conn.transaction().map_err(backend)?;
            let mut results = Vec::with_capacity(writes.len());
            let mut events = Vec::new();
            for write in writes {
                results.push(apply(&tx, write, &mut rv, &mut events)?);
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'resource_version'",
                params![rv as i64],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            w.resource_version = rv;
            // Sent under the writer lock, so watchers see commits in order.
            for e in events {
                let _ = inner.events.send(e);
            }
            Ok(results)
        })
        .await
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
}

fn decode(body: &str) -> Result<DynamicObject, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Backend(format!("corrupt object: {e}")))
}

fn read_object(conn: &Connection, key: &ObjectKey) -> Result<Option<DynamicObject>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
        .map_err(backend)?
        .query_row(
            params![key.qualified_kind(), key.namespace, key.name],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    body.as_deref().map(decode).transpose()
}

fn key_of(obj: &DynamicObject) -> Result<ObjectKey, StoreError> {
    let key = obj.key().ok_or_else(|| {
        StoreError::Invalid(format!(
            "unknown kind {:?} in apiVersion {:?}",
            obj.kind, obj.api_version
        ))
    })?;
    if key.name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{} has no metadata.name",
            key.kind.kind
        )));
    }
    if key.kind.namespaced && key.namespace.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{} {} has no metadata.namespace",
            key.kind.kind, key.name
        )));
    }
    Ok(key)
}

fn check_precondition(
    key: &ObjectKey,
    incoming: &DynamicObject,
    stored: &DynamicObject,
) -> Result<(), StoreError> {
    let expected = &incoming.metadata.resource_version;
    if !expected.is_empty() && *expected != stored.metadata.resource_version {
        return Err(StoreError::Conflict {
            key: key.clone(),
            expected: expected.clone(),
            actual: stored.metadata.resource_version.clone(),
        });
    }
    Ok(())
}

fn apply(
    tx: &Transaction<'_>,
    write: Write,
    rv: &mut u64,
    events: &mut Vec<Event>,
) -> Result<Committed, StoreError> {
    match write {
        Write::Delete(key) => {
            let stored = read_object(tx, &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            delete_cascading(tx, &key, &stored, rv, events)?;
            Ok(Committed {
                event: EventType::Deleted,
                object: stored,
            })
        }
        Write::Create(mut obj) => {
            let key = generate_name(&mut obj)?;
            if read_object(tx, &key)?.is_some() {
                return Err(StoreError::AlreadyExists(key));
            }
            insert_new(tx, key, obj, rv, events)
        }
        Write::Apply(mut obj) => {
            let key = generate_name(&mut obj)?;
            match read_object(tx, &key)? {
                None => insert_new(tx, key, obj, rv, events),
                Some(stored) => update(tx, key, obj, stored, rv, events, false),
            }
        }
        Write::Update(obj) => {
            let key = key_of(&obj)?;
            let stored = read_object(tx, &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_precondition(&key, &obj, &stored)?;
            update(tx, key, obj, stored, rv, events, false)
        }
        Write::UpdateStatus(obj) => {
            let key = key_of(&obj)?;
            let stored = read_object(tx, &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_precondition(&key, &obj, &stored)?;
            update(tx, key, obj, stored, rv, events, true)
        }
    }
}

/// Fill `metadata.name` from `generateName` (Kubernetes appends 5 random
/// characters) and return the key.
fn generate_name(obj: &mut DynamicObject) -> Result<ObjectKey, StoreError> {
    if obj.metadata.name.is_empty()
        && let Some(prefix) = &obj.metadata.generate_name
    {
        obj.metadata.name = format!("{prefix}{}", random_suffix());
    }
    key_of(obj)
}

fn insert_new(
    tx: &Transaction<'_>,
    key: ObjectKey,
    mut obj: DynamicObject,
    rv: &mut u64,
    events: &mut Vec<Event>,
) -> Result<Committed, StoreError> {
    *rv += 1;
    obj.body.remove("status");
    let m = &mut obj.metadata;
    m.uid = new_uid();
    m.generation = 1;
    m.resource_version = rv.to_string();
    m.creation_timestamp = Some(meta::now());
    m.deletion_timestamp = None;
    persist(tx, key, obj, *rv, EventType::Added, events)
}

/// Write the row and queue the watch event for a committed change.
fn persist(
    tx: &Transaction<'_>,
    key: ObjectKey,
    obj: DynamicObject,
    rv: u64,
    event: EventType,
    events: &mut Vec<Event>,
) -> Result<Committed, StoreError> {
    write_row(tx, &key, &obj, rv)?;
    events.push(Event {
        event,
        key,
        object: Arc::new(obj.clone()),
    });
    Ok(Committed { event, object: obj })
}

fn update(
    tx: &Transaction<'_>,
    key: ObjectKey,
    incoming: DynamicObject,
    stored: DynamicObject,
    rv: &mut u64,
    events: &mut Vec<Event>,
    status_only: bool,
) -> Result<Committed, StoreError> {
    let mut next = if status_only {
        let mut next = stored.clone();
        match incoming.body.get("status") {
            Some(s) if !s.is_null() => {
                next.body.insert("status".into(), s.clone());
            }
            _ => {
                next.body.remove("status");
            }
        }
        next
    } else {
        let mut next = incoming;
        // Identity and server-managed fields come from the stored object.
        let sm = &stored.metadata;
        let m = &mut next.metadata;
        m.uid = sm.uid.clone();
        m.creation_timestamp = sm.creation_timestamp.clone();
        m.generation = sm.generation;
        m.generate_name = sm.generate_name.clone().or(m.generate_name.take());
        match stored.body.get("status") {
            Some(s) => {
                next.body.insert("status".into(), s.clone());
            }
            None => {
                next.body.remove("status");
            }
        }
        if next.desired_state() != stored.desired_state() {
            next.metadata.generation += 1;
        }
        next
    };
    next.metadata.resource_version = stored.metadata.resource_version.clone();
    if next == stored {
        return Ok(Committed {
            event: EventType::Unchanged,
            object: stored,
        });
    }
    *rv += 1;
    next.metadata.resource_version = rv.to_string();
    persist(tx, key, next, *rv, EventType::Modified, events)
}

fn write_row(
    tx: &Transaction<'_>,
    key: &ObjectKey,
    obj: &DynamicObject,
    rv: u64,
) -> Result<(), StoreError> {
    // An object owned by something that no longer exists would be collected
    // at once by Kubernetes' garbage collector; here it is never written (a
    // reconcile racing its owner's deletion must not leave orphans).
    for owner in &obj.metadata.owner_references {
        let exists: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM objects WHERE uid = ?1")
            .map_err(backend)?
            .query_row(params![owner.uid], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if exists.is_none() {
            return Err(StoreError::OwnerGone {
                key: key.clone(),
                owner: format!("{} {}", owner.kind, owner.name),
            });
        }
    }
    let body = serde_json::to_string(obj).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let qk = key.qualified_kind();
    tx.execute(
        "INSERT INTO objects (kind, namespace, name, uid, resource_version, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, namespace, name) DO UPDATE SET
             uid = excluded.uid, resource_version = excluded.resource_version, body = excluded.body",
        params![qk, key.namespace, key.name, obj.metadata.uid, rv as i64, body],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM owners WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![qk, key.namespace, key.name],
    )
    .map_err(backend)?;
    for owner in &obj.metadata.owner_references {
        tx.execute(
            "INSERT OR IGNORE INTO owners (owner_uid, kind, namespace, name) VALUES (?1, ?2, ?3, ?4)",
            params![owner.uid, qk, key.namespace, key.name],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Delete `key` and everything owned by it, depth first (Kubernetes' garbage
/// collector with background propagation, done in one transaction).
fn delete_cascading(
    tx: &Transaction<'_>,
    key: &ObjectKey,
    stored: &DynamicObject,
    rv: &mut u64,
    events: &mut Vec<Event>,
) -> Result<(), StoreError> {
    let children: Vec<(String, String, String)> = {
        let mut stmt = tx
            .prepare_cached("SELECT kind, namespace, name FROM owners WHERE owner_uid = ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![stored.metadata.uid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for (qk, ns, name) in children {
        let Some(kind) = object::KINDS
            .iter()
            .copied()
            .find(|k| object::qualified_kind(k) == qk)
        else {
            continue;
        };
        let child_key = ObjectKey::new(kind, &ns, &name);
        if let Some(child) = read_object(tx, &child_key)? {
            delete_cascading(tx, &child_key, &child, rv, events)?;
        }
    }
    let qk = key.qualified_kind();
    tx.execute(
        "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![qk, key.namespace, key.name],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM owners WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![qk, key.namespace, key.name],
    )
    .map_err(backend)?;
    *rv += 1;
    events.push(Event {
        event: EventType::Deleted,
        key: key.clone(),
        object: Arc::new(stored.clone()),
    });
    Ok(())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut buf = [0u8; N];
    // /dev/urandom never blocks once the system is up; failing to read it
    // means a broken system, not bad input.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// A random (version 4) UUID.
fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five characters from Kubernetes' generateName alphabet (no vowels).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn object_from_json(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("a JSON object")
    }
    use serde_json::json;
    use skiff_api::object::{CONFIGURATION, REVISION, SERVICE};

    fn svc(name: &str, image: &str) -> DynamicObject {
        object_from_json(json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}}
        }))
    }

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("skiff.db")).unwrap()
    }

    #[tokio::test]
    async fn apply_creates_then_bumps_generation_only_on_spec_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let c = store
            .commit(vec![Write::Apply(svc("a", "x"))])
            .await
            .unwrap();
        assert_eq!(c[0].event, EventType::Added);
        assert_eq!(c[0].object.metadata.generation, 1);
        let uid = c[0].object.metadata.uid.clone();

        let c = store
            .commit(vec![Write::Apply(svc("a", "x"))])
            .await
            .unwrap();
        assert_eq!(c[0].event, EventType::Unchanged);

        let mut labelled = svc("a", "x");
        labelled.metadata.labels.insert("k".into(), "v".into());
        let c = store.commit(vec![Write::Apply(labelled)]).await.unwrap();
        assert_eq!(c[0].event, EventType::Modified);
        assert_eq!(c[0].object.metadata.generation, 1);

        let c = store
            .commit(vec![Write::Apply(svc("a", "y"))])
            .await
            .unwrap();
        assert_eq!(c[0].object.metadata.generation, 2);
        assert_eq!(c[0].object.metadata.uid, uid);
    }

    #[tokio::test]
    async fn status_is_a_subresource() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut obj = store
            .commit(vec![Write::Apply(svc("a", "x"))])
            .await
            .unwrap()[0]
            .object
            .clone();
        obj.body.insert("status".into(), json!({"url": "http://a"}));
        store.commit(vec![Write::UpdateStatus(obj)]).await.unwrap();
        // A later apply (no status) keeps the status.
        let c = store
            .commit(vec![Write::Apply(svc("a", "y"))])
            .await
            .unwrap();
        assert_eq!(c[0].object.status(), Some(&json!({"url": "http://a"})));
    }

    #[tokio::test]
    async fn commit_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .commit(vec![Write::Create(svc("b", "x"))])
            .await
            .unwrap();
        let err = store
            .commit(vec![
                Write::Create(svc("a", "x")),
                Write::Create(svc("b", "x")),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)));
        let key = ObjectKey::new(&SERVICE, "default", "a");
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn objects_of_a_deleted_owner_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let s = store
            .commit(vec![Write::Create(svc("a", "x"))])
            .await
            .unwrap()[0]
            .object
            .clone();
        store
            .commit(vec![Write::Delete(ObjectKey::new(
                &SERVICE, "default", "a",
            ))])
            .await
            .unwrap();
        let orphan = object_from_json(json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
            "metadata": {"name": "a", "namespace": "default",
              "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                "name": "a", "uid": s.metadata.uid, "controller": true}]},
            "spec": {}
        }));
        let err = store.commit(vec![Write::Create(orphan)]).await.unwrap_err();
        assert!(matches!(err, StoreError::OwnerGone { .. }), "{err}");
        assert!(store.list(&CONFIGURATION, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn stale_resource_version_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let first = store
            .commit(vec![Write::Create(svc("a", "x"))])
            .await
            .unwrap()[0]
            .object
            .clone();
        store
            .commit(vec![Write::Apply(svc("a", "y"))])
            .await
            .unwrap();
        let err = store.commit(vec![Write::Update(first)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    }

    #[tokio::test]
    async fn delete_cascades_to_owned_objects_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let s = store
            .commit(vec![Write::Create(svc("a", "x"))])
            .await
            .unwrap()[0]
            .object
            .clone();
        let owned = |kind: &str, name: &str, owner_kind: &str, uid: &str| {
            object_from_json(json!({
                "apiVersion": "serving.knative.dev/v1", "kind": kind,
                "metadata": {"name": name, "namespace": "default",
                  "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": owner_kind,
                    "name": "a", "uid": uid, "controller": true}]},
                "spec": {}
            }))
        };
        let cfg = store
            .commit(vec![Write::Create(owned(
                "Configuration",
                "a",
                "Service",
                &s.metadata.uid,
            ))])
            .await
            .unwrap()[0]
            .object
            .clone();
        store
            .commit(vec![Write::Create(owned(
                "Revision",
                "a-00001",
                "Configuration",
                &cfg.metadata.uid,
            ))])
            .await
            .unwrap();
        let mut watch = store.watch();
        store
            .commit(vec![Write::Delete(ObjectKey::new(
                &SERVICE, "default", "a",
            ))])
            .await
            .unwrap();
        let mut deleted = Vec::new();
        while let Ok(e) = watch.try_recv() {
            assert_eq!(e.event, EventType::Deleted);
            deleted.push(e.key.kind.kind);
        }
        assert_eq!(deleted, ["Revision", "Configuration", "Service"]);
        drop(store);
        let store = open(&dir);
        assert!(store.list(&REVISION, None).await.unwrap().is_empty());
        assert!(store.list(&CONFIGURATION, None).await.unwrap().is_empty());
        // The resource version keeps counting after a reopen.
        let c = store
            .commit(vec![Write::Create(svc("z", "x"))])
            .await
            .unwrap();
        assert!(
            c[0].object
                .metadata
                .resource_version
                .parse::<u64>()
                .unwrap()
                > 4
        );
    }
}
