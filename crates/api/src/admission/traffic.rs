//! Traffic targets (serving route_defaults.go, route_validation.go; docs
//! knative-api.md §7.2-7.3). Paths are relative to the traffic list.

use super::fieldmask;
use super::names::{dns1035_label, go_list, qualified_name};
use crate::field_error::{CURRENT_FIELD, FieldError};
use crate::serving::TrafficTarget;

/// Defaults of a traffic list. `in_service`: an empty list means 100% to the
/// latest revision of the Service's Configuration.
pub fn default_list(traffic: &mut Vec<TrafficTarget>, in_service: bool) {
    if traffic.is_empty() && in_service {
        traffic.push(TrafficTarget {
            percent: Some(100),
            latest_revision: Some(true),
            ..Default::default()
        });
    }
    for t in traffic {
        if t.latest_revision.is_none() {
            t.latest_revision = Some(t.revision_name.as_deref().unwrap_or("").is_empty());
        }
        if t.percent.is_none() {
            t.percent = Some(0);
        }
    }
}

/// Validation of a spec traffic list. `in_service`: targets may name neither
/// revision nor configuration (they mean the Service's), and may not name a
/// configuration.
pub fn validate_list(traffic: &[TrafficTarget], in_service: bool) -> FieldError {
    let mut errs = FieldError::default();
    let mut first_by_tag: Vec<(&str, usize)> = Vec::new();
    let mut sum: i64 = 0;
    for (i, t) in traffic.iter().enumerate() {
        errs.push(target(t, in_service).via_index(i));
        sum += t.percent.unwrap_or(0);
        let Some(tag) = t.tag.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        let msgs = dns1035_label(tag);
        if !msgs.is_empty() {
            errs.push(
                FieldError::invalid_value(
                    format!("not a DNS 1035 label: {}", go_list(&msgs)),
                    CURRENT_FIELD,
                )
                .via_field_index("tag", i),
            );
        }
        match first_by_tag.iter().find(|(t, _)| *t == tag) {
            Some((_, first)) => errs.push(FieldError::new(
                format!("Multiple definitions for {}", crate::go::quote(tag)),
                &[&format!("[{i}].tag"), &format!("[{first}].tag")],
            )),
            None => first_by_tag.push((tag, i)),
        }
    }
    if sum != 100 {
        errs.push(FieldError::new(
            format!("Traffic targets sum to {sum}, want 100"),
            &[CURRENT_FIELD],
        ));
    }
    errs
}

fn target(t: &TrafficTarget, in_service: bool) -> FieldError {
    let rev = t.revision_name.as_deref().unwrap_or("");
    let cfg = t.configuration_name.as_deref().unwrap_or("");
    let mut errs = fieldmask::check_extra(&t.extra, &[]);
    if let Some(latest) = t.latest_revision
        && rev.is_empty() != latest
    {
        errs.push(FieldError::new(
            format!(
                "may not set revisionName {} when latestRevision is {latest}",
                crate::go::quote(rev)
            ),
            &["latestRevision"],
        ));
    }
    if in_service && !cfg.is_empty() {
        errs.push(FieldError::disallowed_fields(&["configurationName"]));
    } else if !rev.is_empty() && !cfg.is_empty() {
        errs.push(FieldError::multiple_one_of(&[
            "revisionName",
            "configurationName",
        ]));
    } else if !rev.is_empty() {
        let msgs = qualified_name(rev);
        if !msgs.is_empty() {
            errs.push(
                FieldError::invalid_key_name(rev, "revisionName").with_details(msgs.join(", ")),
            );
        }
    } else if !cfg.is_empty() {
        let msgs = qualified_name(cfg);
        if !msgs.is_empty() {
            errs.push(
                FieldError::invalid_key_name(cfg, "configurationName")
                    .with_details(msgs.join(", ")),
            );
        }
    } else if !in_service {
        errs.push(FieldError::missing_one_of(&[
            "revisionName",
            "configurationName",
        ]));
    }
    if let Some(p) = t.percent
        && !(0..=100).contains(&p)
    {
        errs.push(FieldError::out_of_bounds(p, 0, 100, "percent"));
    }
    if t.url.as_deref().is_some_and(|u| !u.is_empty()) {
        errs.push(FieldError::disallowed_fields(&["url"]));
        if t.tag.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::disallowed_fields(&["url"]));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        rev: Option<&str>,
        cfg: Option<&str>,
        pct: Option<i64>,
        tag: Option<&str>,
    ) -> TrafficTarget {
        TrafficTarget {
            revision_name: rev.map(Into::into),
            configuration_name: cfg.map(Into::into),
            percent: pct,
            tag: tag.map(Into::into),
            ..Default::default()
        }
    }

    fn check(mut list: Vec<TrafficTarget>, in_service: bool) -> String {
        default_list(&mut list, in_service);
        validate_list(&list, in_service)
            .via_field("spec.traffic")
            .to_string()
    }

    /// docs knative-api.md §7 and §12, and upstream route_validation tests.
    #[test]
    fn table() {
        let dns = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
        let qn = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let cases: Vec<(Vec<TrafficTarget>, bool, String)> = vec![
            // Omitted traffic in a Service is valid (defaulted to 100% latest).
            (vec![], true, String::new()),
            // A standalone Route gets no default: the sum is 0.
            (vec![], false, "Traffic targets sum to 0, want 100: spec.traffic".into()),
            (vec![t(Some("a-1"), None, Some(100), None)], false, String::new()),
            (vec![t(None, Some("a"), Some(100), None)], false, String::new()),
            // Omitted percent is 0 after defaulting.
            (vec![t(None, Some("a"), None, None)], false, "Traffic targets sum to 0, want 100: spec.traffic".into()),
            (vec![t(None, None, Some(100), None)], false, "expected exactly one, got neither: spec.traffic[0].configurationName, spec.traffic[0].revisionName".into()),
            (vec![t(None, None, Some(100), None)], true, String::new()),
            (vec![t(Some("a-1"), Some("a"), Some(100), None)], false, "expected exactly one, got both: spec.traffic[0].configurationName, spec.traffic[0].revisionName".into()),
            (vec![t(None, Some("a"), Some(100), None)], true, "must not set the field(s): spec.traffic[0].configurationName".into()),
            // Qualified names: uppercase and dots allowed, a leading dash is not.
            (vec![t(Some("Hello.World"), None, Some(100), None)], false, String::new()),
            (vec![t(Some("-bad"), None, Some(100), None)], false, format!("invalid key name \"-bad\": spec.traffic[0].revisionName\n{qn}")),
            (vec![t(Some("a-1"), None, Some(101), None)], false, "Traffic targets sum to 101, want 100: spec.traffic\nexpected 0 <= 101 <= 100: spec.traffic[0].percent".into()),
            (vec![t(Some("a-1"), None, Some(-1), None), t(Some("b-1"), None, Some(101), None)], false, "expected 0 <= -1 <= 100: spec.traffic[0].percent\nexpected 0 <= 101 <= 100: spec.traffic[1].percent".into()),
            (vec![t(Some("a-1"), None, Some(50), Some("Bad")), t(Some("b-1"), None, Some(50), None)], false, format!("invalid value: not a DNS 1035 label: [{dns}]: spec.traffic.tag[0]")),
            (vec![t(Some("a-1"), None, Some(50), Some("x")), t(Some("b-1"), None, Some(50), Some("x"))], false, "Multiple definitions for \"x\": spec.traffic[0].tag, spec.traffic[1].tag".into()),
            (vec![t(Some("a-1"), None, Some(100), Some("v1")), t(Some("b-1"), None, Some(0), Some("v2"))], false, String::new()),
        ];
        for (list, in_service, want) in cases {
            assert_eq!(check(list.clone(), in_service), want, "{list:?}");
        }
    }

    #[test]
    fn latest_revision_consistency() {
        let mut x = t(Some("a-1"), None, Some(100), None);
        x.latest_revision = Some(true);
        assert_eq!(
            validate_list(&[x], false)
                .via_field("spec.traffic")
                .to_string(),
            "may not set revisionName \"a-1\" when latestRevision is true: spec.traffic[0].latestRevision"
        );
        let mut y = t(None, Some("a"), Some(100), None);
        y.latest_revision = Some(false);
        assert_eq!(
            validate_list(&[y], false)
                .via_field("spec.traffic")
                .to_string(),
            "may not set revisionName \"\" when latestRevision is false: spec.traffic[0].latestRevision"
        );
        let mut z = t(Some("a-1"), None, Some(100), Some("v1"));
        z.url = Some("http://x".into());
        assert_eq!(
            validate_list(&[z], false)
                .via_field("spec.traffic")
                .to_string(),
            "must not set the field(s): spec.traffic[0].url"
        );
    }
}
