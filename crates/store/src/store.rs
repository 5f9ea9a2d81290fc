use std::future::Future;
use std::sync::Arc;

use skiff_api::object::{DynamicObject, ObjectKey, Resource, ResourceKind, TypedError};
use tokio::sync::broadcast;

/// One change to apply in a commit. A commit is all or nothing.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create, or update metadata and spec of an existing object (status is
    /// kept): `kubectl apply` semantics.
    Apply(DynamicObject),
    /// Create; fails if the object exists.
    Create(DynamicObject),
    /// Replace metadata and spec. If `metadata.resourceVersion` is set it must
    /// match the stored one (optimistic concurrency).
    Update(DynamicObject),
    /// Replace only `status` (same precondition rule as `Update`).
    UpdateStatus(DynamicObject),
    /// Delete the object and, transitively, everything it owns.
    Delete(ObjectKey),
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Committed {
    pub event: EventType,
    pub object: DynamicObject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    /// An `Apply` that changed nothing.
    Unchanged,
}

/// A committed change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub event: EventType,
    pub key: ObjectKey,
    pub object: Arc<DynamicObject>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error(
        "{key} was modified concurrently (resourceVersion {expected} expected, {actual} stored)"
    )]
    Conflict {
        key: ObjectKey,
        expected: String,
        actual: String,
    },
    #[error("{key} cannot be written: its owner {owner} no longer exists")]
    OwnerGone { key: ObjectKey, owner: String },
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error("store failure: {0}")]
    Backend(String),
}

/// Durable object storage with a change feed.
pub trait Store: Clone + Send + Sync + 'static {
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<DynamicObject>, StoreError>> + Send;

    /// Objects of `kind`, in one namespace or all, ordered by namespace and name.
    fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<DynamicObject>, StoreError>> + Send;

    /// Apply `writes` atomically; results are in the order of `writes` (a
    /// cascading delete reports the root object).
    fn commit(
        &self,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send;

    /// Changes committed after this call. A receiver that lags must re-list.
    fn watch(&self) -> broadcast::Receiver<Event>;
}

/// Typed conveniences over any [`Store`].
pub trait TypedStore: Store {
    fn get_as<T: Resource + Send>(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        let key = ObjectKey::new(T::kind(), namespace, name);
        async move {
            match self.get(&key).await? {
                Some(obj) => Ok(Some(obj.to_typed().map_err(corrupt)?)),
                None => Ok(None),
            }
        }
    }

    fn list_as<T: Resource + Send>(
        &self,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send {
        async move {
            self.list(T::kind(), namespace)
                .await?
                .iter()
                .map(|o| o.to_typed().map_err(corrupt))
                .collect()
        }
    }
}

impl<S: Store> TypedStore for S {}

fn corrupt(e: TypedError) -> StoreError {
    StoreError::Backend(format!("stored object does not decode: {e}"))
}
