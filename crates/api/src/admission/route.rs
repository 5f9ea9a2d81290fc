//! Routes (serving route_defaults.go, route_validation.go; docs
//! knative-api.md §7).

use super::{Request, fieldmask, metadata, spec_changed, traffic};
use crate::field_error::FieldError;
use crate::labels;
use crate::serving::Route;

pub fn admit(req: &Request<'_>, r: &mut Route, old: Option<&Route>) -> FieldError {
    traffic::default_list(&mut r.spec.traffic, false);
    let user_created = r.metadata.owner_references.is_empty();
    let changed = old.map(|o| spec_changed(&o.spec, &r.spec));
    if user_created {
        metadata::set_user_info(&mut r.metadata, req.user, changed);
    }

    let m = &r.metadata;
    let mut errs = metadata::object_name(m)
        .also(metadata::no_autoscaling_annotations(&m.annotations).via_field("annotations"))
        .also(metadata::label_owner(m, labels::SERVICE, "Service").via_field("labels"))
        .also(metadata::rollout_duration(&m.annotations).via_field("annotations"))
        .via_field("metadata");
    errs.push(fieldmask::check_extra(&r.spec.extra, &[]).via_field("spec"));
    errs.push(traffic::validate_list(&r.spec.traffic, false).via_field("spec.traffic"));
    if let Some(o) = old
        && user_created
    {
        errs.push(
            metadata::creator_and_modifier(
                &o.metadata.annotations,
                &m.annotations,
                changed == Some(true),
            )
            .via_field("metadata.annotations"),
        );
    }
    errs
}
