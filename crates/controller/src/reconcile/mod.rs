//! The reconcilers, one file per kind. Each reads the object and what it
//! depends on, converges the children it owns, and writes status. They are
//! idempotent: running one twice in a row changes nothing the second time.

mod configuration;
mod revision;
mod route;
mod service;

pub use configuration::configuration;
pub use revision::revision;
pub use route::route;
pub use service::service;

use skiff_api::condition::{self, ConditionStatus, Conditions};
use skiff_api::config::ClusterConfig;
use skiff_api::object::Resource;
use skiff_api::serving::conditions;
use skiff_store::{Store, StoreError, Write};

/// What reconcilers share.
pub struct Ctx<'a, S, R> {
    pub store: &'a S,
    pub autoscaling: &'a crate::autoscaling::Autoscaling,
    pub runtime: &'a R,
    /// The configuration this pass runs under.
    pub config: &'a ClusterConfig,
    pub runtime_state: &'a skiff_runtime::RuntimeState,
    /// What the Service reconciler last derived for each child it owns
    /// (spec, labels, annotations, owner references as JSON): a child that
    /// differs from an unchanged derivation was edited by hand.
    pub derived: &'a std::sync::Mutex<std::collections::HashMap<skiff_api::ObjectKey, String>>,
    /// Keys a reconciler wants to see again later (a rollout's next step).
    pub requeue: &'a std::sync::Mutex<Vec<(skiff_api::ObjectKey, std::time::Duration)>>,
}

impl<S, R> Ctx<'_, S, R> {
    pub fn requeue_after(&self, key: skiff_api::ObjectKey, after: std::time::Duration) {
        self.requeue
            .lock()
            .expect("requeue lock")
            .push((key, after));
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

fn ready_of(conds: &[skiff_api::Condition]) -> Option<&skiff_api::Condition> {
    condition::get(conds, conditions::READY)
}

async fn write_status<S: Store, T: Resource>(store: &S, obj: &T) -> Result<()> {
    store
        .commit(vec![Write::UpdateStatus(obj.to_dynamic())])
        .await?;
    Ok(())
}

fn typed<T: Resource>(obj: &skiff_api::DynamicObject) -> Result<T> {
    obj.to_typed()
        .map_err(|e| StoreError::Backend(format!("stored object does not decode: {e}")))
}

/// Copy a dependent object's Ready condition into `type_`.
fn mirror(conds: &mut Conditions<'_>, type_: &str, from: Option<&[skiff_api::Condition]>) {
    match from.and_then(ready_of) {
        Some(c) => match c.status {
            ConditionStatus::True => conds.mark_true(type_),
            ConditionStatus::False => conds.mark_false(
                type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.clone().unwrap_or_default(),
            ),
            ConditionStatus::Unknown => conds.mark_unknown(
                type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.clone().unwrap_or_default(),
            ),
        },
        None => conds.mark_unknown(type_, "", ""),
    }
}
