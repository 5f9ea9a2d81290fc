//! Configurations (serving configuration_defaults.go,
//! configuration_validation.go; docs knative-api.md §5.3).

use super::{Request, fieldmask, metadata, revision, spec_changed};
use crate::field_error::FieldError;
use crate::labels;
use crate::serving::Configuration;

pub fn admit(req: &Request<'_>, c: &mut Configuration, old: Option<&Configuration>) -> FieldError {
    let cfg = req.config;
    let keep_template = old.is_some_and(|o| {
        let name = &c.spec.template.metadata.name;
        !name.is_empty() && *name == o.spec.template.metadata.name
    });
    if !keep_template {
        let parent = c.metadata.clone();
        revision::default_spec(cfg, &mut c.spec.template.spec, &parent, old.is_none());
    }
    let user_created = c.metadata.owner_references.is_empty();
    let changed = old.map(|o| spec_changed(&o.spec, &c.spec));
    if user_created {
        metadata::set_user_info(&mut c.metadata, req.user, changed);
    }

    let m = &c.metadata;
    let mut errs = metadata::object_name(m)
        .also(metadata::no_autoscaling_annotations(&m.annotations).via_field("annotations"))
        .also(metadata::label_owner(m, labels::SERVICE, "Service").via_field("labels"))
        .via_field("metadata");
    errs.push(fieldmask::check_extra(&c.spec.extra, &[]).via_field("spec"));
    errs.push(fieldmask::check_extra(&c.spec.template.extra, &[]).via_field("spec.template"));
    errs.push(revision::validate_template(cfg, &c.spec.template, m).via_field("spec.template"));
    if let Some(o) = old {
        if user_created {
            errs.push(
                metadata::creator_and_modifier(
                    &o.metadata.annotations,
                    &m.annotations,
                    changed == Some(true),
                )
                .via_field("metadata.annotations"),
            );
        }
        errs.push(
            revision::verify_name_change(&c.spec.template, &o.spec.template)
                .via_field("spec.template"),
        );
    }
    errs
}
