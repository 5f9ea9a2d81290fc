//! Server-side admission: Knative's defaulting and validation under the live
//! configuration, Istio's validation (and Secrets'), then whether the
//! runtime can run what the object describes.

use skiff_api::DynamicObject;
use skiff_api::admission::{self, Admitted, Denied, Request};
use skiff_api::serving::{Configuration, Revision, Service};
use skiff_api::{istio, secret};
use skiff_runtime::Runtime;

pub fn admit<R: Runtime>(
    obj: &DynamicObject,
    old: Option<&DynamicObject>,
    req: &Request<'_>,
    runtime: &R,
) -> Result<Admitted, Denied> {
    let mut admitted = admission::admit(obj, old, req)?;
    // Istio kinds and Secrets; every other kind passes through unchanged.
    admitted.object = istio::admit(&admitted.object)?;
    admitted.object = secret::admit(&admitted.object, old)?;
    let o = &admitted.object;
    let runnable = match o.kind.as_str() {
        "Service" => o.to_typed::<Service>().map(|s| {
            runtime
                .check(&s.spec.template.spec)
                .via_field("spec.template.spec")
        }),
        "Configuration" => o.to_typed::<Configuration>().map(|c| {
            runtime
                .check(&c.spec.template.spec)
                .via_field("spec.template.spec")
        }),
        // A Revision's spec cannot change: only a new one must be runnable.
        "Revision" if old.is_none() => o
            .to_typed::<Revision>()
            .map(|r| runtime.check(&r.spec).via_field("spec")),
        _ => return Ok(admitted),
    }
    .map_err(|e| Denied::Fields(skiff_api::FieldError::new(e.message, &[e.path.as_str()])))?;
    if runnable.has_errors() {
        return Err(Denied::Fields(runnable));
    }
    Ok(admitted)
}
