//! Skiff's resource model: the Knative Serving v1 types, Kubernetes-style object
//! metadata, manifest parsing (multi-document YAML or JSON), and admission
//! (defaulting, then validation) with Knative's field-error format.
//!
//! This crate depends on nothing else of Skiff's: the store, the controller, the
//! proxy and the CLI all speak these types.

pub mod admission;
pub mod apply;
pub mod condition;
pub mod config;
pub mod core;
pub mod field_error;
pub mod go;
pub mod istio;
pub mod labels;
pub mod meta;
pub mod names;
pub mod object;
pub mod parse;
pub mod quantity;
pub mod secret;
pub mod serving;
pub mod template;

pub use condition::{Condition, ConditionStatus};
pub use field_error::FieldError;
pub use meta::{ObjectMeta, OwnerReference};
pub use object::{DynamicObject, ObjectKey, ResourceKind};
