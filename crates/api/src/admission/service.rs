//! Services (serving service_defaults.go, service_validation.go; docs
//! knative-api.md §4).

use super::{Request, fieldmask, metadata, revision, spec_changed, traffic};
use crate::field_error::FieldError;
use crate::serving::Service;

pub fn admit(req: &Request<'_>, s: &mut Service, old: Option<&Service>) -> FieldError {
    let cfg = req.config;
    // Defaulting. A BYO-named template that keeps its name is left alone on
    // update, so new defaults do not change it.
    let keep_template = old.is_some_and(|o| {
        let name = &s.spec.template.metadata.name;
        !name.is_empty() && *name == o.spec.template.metadata.name
    });
    if !keep_template {
        let parent = s.metadata.clone();
        revision::default_spec(cfg, &mut s.spec.template.spec, &parent, old.is_none());
    }
    traffic::default_list(s.spec.traffic.get_or_insert_with(Vec::new), true);
    let changed = old.map(|o| spec_changed(&o.spec, &s.spec));
    metadata::set_user_info(&mut s.metadata, req.user, changed);

    // Validation.
    let m = &s.metadata;
    let mut errs = metadata::object_name(m)
        .also(metadata::no_autoscaling_annotations(&m.annotations).via_field("annotations"))
        .also(metadata::rollout_duration(&m.annotations).via_field("annotations"))
        .via_field("metadata");
    errs.push(fieldmask::check_extra(&s.spec.extra, &[]).via_field("spec"));
    errs.push(fieldmask::check_extra(&s.spec.template.extra, &[]).via_field("spec.template"));
    errs.push(revision::validate_template(cfg, &s.spec.template, m).via_field("spec.template"));
    errs.push(
        traffic::validate_list(s.spec.traffic.as_deref().unwrap_or_default(), true)
            .via_field("spec.traffic"),
    );
    if let Some(o) = old {
        errs.push(
            metadata::creator_and_modifier(
                &o.metadata.annotations,
                &m.annotations,
                changed == Some(true),
            )
            .via_field("metadata.annotations"),
        );
        errs.push(
            revision::verify_name_change(&s.spec.template, &o.spec.template)
                .via_field("spec.template"),
        );
    }
    errs
}
