//! Metadata rules shared by the four kinds (docs knative-api.md §3).

use std::collections::BTreeMap;

use super::names::{go_list, name_is_dns1035};
use crate::config::autoscaler::annotations as autoscaling;
use crate::field_error::{CURRENT_FIELD, FieldError};
use crate::go;
use crate::labels;
use crate::meta::{ObjectMeta, OwnerReference};

pub const ROLLOUT_DURATION: (&str, &str) = (
    "serving.knative.dev/rollout-duration",
    "serving.knative.dev/rolloutDuration",
);

/// knative/pkg ValidateObjectMetadata: only the first name problem. Paths are
/// relative to `metadata`.
pub fn object_name(meta: &ObjectMeta) -> FieldError {
    let generate = meta.generate_name.as_deref().unwrap_or("");
    if !generate.is_empty() {
        let msgs = name_is_dns1035(generate, true);
        if !msgs.is_empty() {
            return FieldError::new(
                format!("not a DNS 1035 label prefix: {}", go_list(&msgs)),
                &["generateName"],
            );
        }
    }
    if !meta.name.is_empty() {
        let msgs = name_is_dns1035(&meta.name, false);
        if !msgs.is_empty() {
            return FieldError::new(
                format!("not a DNS 1035 label: {}", go_list(&msgs)),
                &["name"],
            );
        }
    }
    if generate.is_empty() && meta.name.is_empty() {
        return FieldError::new("name or generateName is required", &["name"]);
    }
    FieldError::default()
}

/// Service, Configuration and Route may not carry autoscaling annotations
/// (paths relative to `metadata.annotations`).
pub fn no_autoscaling_annotations(annotations: &BTreeMap<String, String>) -> FieldError {
    let mut errs = FieldError::default();
    for key in annotations.keys() {
        if key.starts_with("autoscaling.knative.dev") {
            errs.push(
                FieldError::invalid_key_name(key, CURRENT_FIELD).with_details(format!(
                    "autoscaling annotations must be put under {} to work",
                    go::quote("spec.template.metadata.annotations")
                )),
            );
        }
    }
    errs
}

/// The value of a key with an alias (new key first), with the key found.
pub fn get_alias<'a>(
    annotations: &'a BTreeMap<String, String>,
    key: (&'static str, &'static str),
) -> Option<(&'static str, &'a str)> {
    autoscaling::get(annotations, (key.0, Some(key.1)))
}

/// A duration annotation that must be whole, non-negative seconds (paths
/// relative to `metadata.annotations`); `what` names it in the messages.
pub fn whole_seconds_annotation(key: &str, value: &str, what: &str) -> FieldError {
    let d = match go::parse_duration(value) {
        Ok(d) => d,
        Err(_) => return FieldError::invalid_value(value, key),
    };
    if !d.is_whole_seconds() {
        return FieldError::new(format!("{what}={value} is not at second precision"), &[key]);
    }
    if d.0 < 0 {
        return FieldError::new(format!("{what}={value} must be positive"), &[key]);
    }
    FieldError::default()
}

/// serving.knative.dev/rollout-duration on a Service or Route.
pub fn rollout_duration(annotations: &BTreeMap<String, String>) -> FieldError {
    match get_alias(annotations, ROLLOUT_DURATION) {
        Some((k, v)) if !v.is_empty() => whole_seconds_annotation(k, v, "rollout-duration"),
        _ => FieldError::default(),
    }
}

/// A label naming a parent (`serving.knative.dev/service: X`) needs an owner
/// reference of that kind and name (paths relative to `metadata.labels`).
pub fn label_owner(meta: &ObjectMeta, label: &str, owner_kind: &str) -> FieldError {
    let Some(val) = meta.labels.get(label) else {
        return FieldError::default();
    };
    let owned = |r: &OwnerReference| r.kind == owner_kind && &r.name == val;
    if meta.owner_references.iter().any(owned) {
        FieldError::default()
    } else {
        FieldError::missing_field(&[label])
    }
}

/// serving.SetUserInfo: the creator and last modifier annotations.
/// `spec_changed` is None on create.
pub fn set_user_info(meta: &mut ObjectMeta, user: Option<&str>, spec_changed: Option<bool>) {
    let Some(user) = user else { return };
    match spec_changed {
        None => {
            meta.annotations.insert(labels::CREATOR.into(), user.into());
            meta.annotations
                .insert(labels::LAST_MODIFIER.into(), user.into());
        }
        Some(true) => {
            meta.annotations
                .insert(labels::LAST_MODIFIER.into(), user.into());
        }
        Some(false) => {}
    }
}

/// knative/pkg ValidateCreatorAndModifier (paths relative to
/// `metadata.annotations`).
pub fn creator_and_modifier(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    spec_changed: bool,
) -> FieldError {
    let mut errs = FieldError::default();
    if old.get(labels::CREATOR) != new.get(labels::CREATOR) {
        errs.push(FieldError::new(
            "annotation value is immutable",
            &[labels::CREATOR],
        ));
    }
    if !spec_changed && old.get(labels::LAST_MODIFIER) != new.get(labels::LAST_MODIFIER) {
        errs.push(FieldError::invalid_value(
            new.get(labels::LAST_MODIFIER)
                .map(String::as_str)
                .unwrap_or(""),
            labels::LAST_MODIFIER,
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, generate: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            generate_name: generate.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn names_report_the_first_problem_only() {
        let cases = [
            (meta("hello", None), ""),
            (meta("", Some("hello-")), ""),
            (meta("", None), "name or generateName is required: name"),
            (
                meta("Hello", None),
                "not a DNS 1035 label: [a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]: name",
            ),
            (
                meta("a.b", None),
                "not a DNS 1035 label: [a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]: name",
            ),
            (
                meta(&"a".repeat(64), None),
                "not a DNS 1035 label: [must be no more than 63 characters]: name",
            ),
            // Both bad: the generateName problem alone.
            (
                meta("Bad", Some("1bad-")),
                "not a DNS 1035 label prefix: [a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]: generateName",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(object_name(&m).to_string(), want, "{m:?}");
        }
    }

    #[test]
    fn annotations() {
        let ann = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            no_autoscaling_annotations(&ann("autoscaling.knative.dev/min-scale", "1"))
                .via_field("metadata.annotations")
                .to_string(),
            "invalid key name \"autoscaling.knative.dev/min-scale\": metadata.annotations\nautoscaling annotations must be put under \"spec.template.metadata.annotations\" to work"
        );
        let rd = |v: &str| {
            rollout_duration(&ann("serving.knative.dev/rollout-duration", v))
                .via_field("metadata.annotations")
                .to_string()
        };
        assert_eq!(rd("90s"), "");
        assert_eq!(
            rd("soon"),
            "invalid value: soon: metadata.annotations.serving.knative.dev/rollout-duration"
        );
        assert_eq!(
            rd("1.5s"),
            "rollout-duration=1.5s is not at second precision: metadata.annotations.serving.knative.dev/rollout-duration"
        );
        assert_eq!(
            rd("-3s"),
            "rollout-duration=-3s must be positive: metadata.annotations.serving.knative.dev/rollout-duration"
        );
        assert_eq!(
            rollout_duration(&ann("serving.knative.dev/rolloutDuration", "x"))
                .via_field("metadata.annotations")
                .to_string(),
            "invalid value: x: metadata.annotations.serving.knative.dev/rolloutDuration"
        );
    }

    #[test]
    fn creator_rules() {
        let ann = |c: &str, m: &str| {
            BTreeMap::from([
                (labels::CREATOR.to_string(), c.to_string()),
                (labels::LAST_MODIFIER.to_string(), m.to_string()),
            ])
        };
        assert!(creator_and_modifier(&ann("a", "a"), &ann("a", "b"), true).is_empty());
        assert_eq!(
            creator_and_modifier(&ann("a", "a"), &ann("b", "a"), true)
                .via_field("metadata.annotations")
                .to_string(),
            "annotation value is immutable: metadata.annotations.serving.knative.dev/creator"
        );
        assert_eq!(
            creator_and_modifier(&ann("a", "a"), &ann("a", "mallory"), false)
                .via_field("metadata.annotations")
                .to_string(),
            "invalid value: mallory: metadata.annotations.serving.knative.dev/lastModifier"
        );
    }
}
