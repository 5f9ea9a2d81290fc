//! The resource store: where applied objects live, and the stream of changes
//! the controller reacts to.
//!
//! [`Store`] is the contract the controller and the admin API use; [`SqliteStore`]
//! is the embedded implementation (one SQLite file in WAL mode, every commit
//! fsync'd before it is acknowledged). A Kubernetes-backed store implements the
//! same trait later.

mod sqlite;
mod store;

pub use sqlite::SqliteStore;
pub use store::{Committed, Event, EventType, Store, StoreError, TypedStore, Write};
