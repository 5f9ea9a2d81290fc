//! Server-side admission: Knative's defaulting and validation, Istio's
//! validation (and Secrets'), then whether the runtime can run what the
//! object describes.

use skiff_api::admission::{self, Defaults};
use skiff_api::serving::{Configuration, Revision, Service};
use skiff_api::{DynamicObject, FieldError};
use skiff_api::{istio, secret};
use skiff_runtime::Runtime;

pub fn admit<R: Runtime>(
    obj: &DynamicObject,
    old: Option<&DynamicObject>,
    defaults: &Defaults,
    runtime: &R,
) -> Result<DynamicObject, FieldError> {
    let admitted = admission::admit(obj, old, defaults)?;
    // Istio kinds and Secrets; every other kind passes through unchanged.
    let admitted = istio::admit(&admitted)?;
    let admitted = secret::admit(&admitted, old)?;
    let runnable = match admitted.kind.as_str() {
        "Service" => admitted.to_typed::<Service>().map(|s| {
            runtime
                .check(&s.spec.template.spec)
                .via_field("spec.template.spec")
        }),
        "Configuration" => admitted.to_typed::<Configuration>().map(|c| {
            runtime
                .check(&c.spec.template.spec)
                .via_field("spec.template.spec")
        }),
        "Revision" => admitted
            .to_typed::<Revision>()
            .map(|r| runtime.check(&r.spec).via_field("spec")),
        _ => Ok(FieldError::default()),
    }
    .map_err(|e| FieldError::new(e.message, &[e.path.as_str()]))?;
    if runnable.has_errors() {
        return Err(runnable);
    }
    Ok(admitted)
}
