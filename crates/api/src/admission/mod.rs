//! Admission, as Knative's webhooks do it: defaulting first, then validation,
//! on create and on update, with Knative's field-error text. Errors are
//! collected (not first-only) and rendered merged and sorted; warnings are
//! returned beside the object and never reject.
//!
//! One file per concern: object metadata, the pod spec and its containers,
//! revisions and templates, traffic, and the four kinds, plus ConfigMaps.

mod autoscaling;
mod configmap;
mod configuration;
mod container;
mod diff;
pub mod fieldmask;
mod image;
pub mod metadata;
pub mod names;
mod podspec;
mod revision;
mod route;
mod service;
pub mod traffic;

use serde::Serialize;

use crate::config::ClusterConfig;
use crate::core::ConfigMap;
use crate::field_error::{FieldError, Level};
use crate::object::{self, DynamicObject, Resource};
use crate::serving::{Configuration, Revision, Route, Service};

pub use autoscaling::validate as validate_autoscaling_annotations;
pub use image::parse_reference;
pub use revision::default_spec as default_revision_spec;

/// Who asks, and under which configuration.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub config: &'a ClusterConfig,
    /// The requesting user, for the creator / lastModifier annotations
    /// (None: leave them alone).
    pub user: Option<&'a str>,
}

/// An admitted (defaulted) object and the warnings it raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub object: DynamicObject,
    pub warnings: Vec<String>,
}

/// Why an object was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Denied {
    /// Knative's field errors (rendered merged and sorted).
    #[error("{0}")]
    Fields(FieldError),
    /// A ConfigMap webhook's message (no field paths).
    #[error("{0}")]
    Message(String),
}

impl From<FieldError> for Denied {
    fn from(e: FieldError) -> Denied {
        Denied::Fields(e)
    }
}

/// Default and validate `obj`; `old` is the stored object on update.
pub fn admit(
    obj: &DynamicObject,
    old: Option<&DynamicObject>,
    req: &Request<'_>,
) -> Result<Admitted, Denied> {
    let kind = obj.resource_kind().ok_or_else(|| {
        Denied::Fields(FieldError::new(
            format!("unknown kind {:?}", obj.kind),
            &["kind"],
        ))
    })?;
    let typed_err = |e: object::TypedError| FieldError::new(e.message, &[e.path.as_str()]);
    match kind.kind {
        "Service" => {
            let mut s: Service = obj.to_typed().map_err(typed_err)?;
            let o: Option<Service> = old.map(|o| o.to_typed()).transpose().map_err(typed_err)?;
            let errs = service::admit(req, &mut s, o.as_ref());
            finish(errs, &s)
        }
        "Configuration" => {
            let mut c: Configuration = obj.to_typed().map_err(typed_err)?;
            let o: Option<Configuration> =
                old.map(|o| o.to_typed()).transpose().map_err(typed_err)?;
            let errs = configuration::admit(req, &mut c, o.as_ref());
            finish(errs, &c)
        }
        "Revision" => {
            let mut r: Revision = obj.to_typed().map_err(typed_err)?;
            let o: Option<Revision> = old.map(|o| o.to_typed()).transpose().map_err(typed_err)?;
            let errs = revision::admit(req.config, &mut r, o.as_ref());
            finish(errs, &r)
        }
        "Route" => {
            let mut r: Route = obj.to_typed().map_err(typed_err)?;
            let o: Option<Route> = old.map(|o| o.to_typed()).transpose().map_err(typed_err)?;
            let errs = route::admit(req, &mut r, o.as_ref());
            finish(errs, &r)
        }
        "ConfigMap" => {
            let cm: ConfigMap = obj.to_typed().map_err(typed_err)?;
            configmap::admit(&cm).map_err(Denied::Message)?;
            Ok(Admitted {
                object: obj.clone(),
                warnings: Vec::new(),
            })
        }
        _ => Ok(Admitted {
            object: obj.clone(),
            warnings: Vec::new(),
        }),
    }
}

fn finish<T: Resource>(errs: FieldError, typed: &T) -> Result<Admitted, Denied> {
    if errs.has_errors() {
        return Err(Denied::Fields(errs.filter(Level::Error)));
    }
    let mut object = typed.to_dynamic();
    // The typed form drops nothing but may reorder; keep status as given.
    object.body.remove("status");
    Ok(Admitted {
        object,
        warnings: errs.filter(Level::Warning).lines(),
    })
}

/// Spec equality as Knative's `equality.Semantic.DeepEqual` sees it.
pub(crate) fn spec_changed<T: Serialize>(old: &T, new: &T) -> bool {
    serde_json::to_value(old).ok() != serde_json::to_value(new).ok()
}

#[cfg(test)]
mod tests;
