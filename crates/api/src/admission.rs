//! Admission: defaulting first, then validation, as Knative's webhooks do.
//!
//! This covers the rules the platform needs to run what it stores (names,
//! containers, traffic). Errors use Knative's field-error text.

use serde_json::Value;

use crate::field_error::{CURRENT_FIELD, FieldError};
use crate::object::{self, DynamicObject, Resource};
use crate::serving::{
    Configuration, Container, Revision, RevisionSpec, RevisionTemplateSpec, Route, Service,
    TrafficTarget,
};

/// Cluster defaults (config-defaults); Knative's stock values.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub revision_timeout_seconds: i64,
    pub max_revision_timeout_seconds: i64,
    pub container_concurrency: i64,
    pub container_concurrency_max_limit: i64,
    pub container_name: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            revision_timeout_seconds: 300,
            max_revision_timeout_seconds: 600,
            container_concurrency: 0,
            container_concurrency_max_limit: 1000,
            container_name: "user-container".to_string(),
        }
    }
}

/// Default and validate `obj` (create when `old` is None, else update).
/// Returns the defaulted object, or the errors that reject it.
pub fn admit(
    obj: &DynamicObject,
    old: Option<&DynamicObject>,
    defaults: &Defaults,
) -> Result<DynamicObject, FieldError> {
    let kind = obj
        .resource_kind()
        .ok_or_else(|| FieldError::new(format!("unknown kind {:?}", obj.kind), &["kind"]))?;
    let typed_err = |e: object::TypedError| FieldError::new(e.message, &[e.path.as_str()]);
    match kind.kind {
        "Service" => {
            let mut s: Service = obj.to_typed().map_err(typed_err)?;
            default_service(&mut s, defaults);
            into_result(validate_service(&s, defaults), &s)
        }
        "Configuration" => {
            let mut c: Configuration = obj.to_typed().map_err(typed_err)?;
            default_template(&mut c.spec.template, defaults);
            let errs = validate_meta(obj)
                .also(validate_template(&c.spec.template, defaults).via_field("spec.template"));
            into_result(errs, &c)
        }
        "Revision" => {
            let mut r: Revision = obj.to_typed().map_err(typed_err)?;
            // Revision defaulting is skipped on update (revision_defaults.go).
            if old.is_none() {
                default_revision_spec(&mut r.spec, defaults);
            }
            let errs = validate_meta(obj)
                .also(validate_revision_spec(&r.spec, defaults).via_field("spec"));
            into_result(errs, &r)
        }
        "Route" => {
            let mut r: Route = obj.to_typed().map_err(typed_err)?;
            r.spec.traffic.iter_mut().for_each(default_target);
            let errs = validate_meta(obj)
                .also(validate_traffic(&r.spec.traffic, false).via_field("spec.traffic"));
            into_result(errs, &r)
        }
        _ => Ok(obj.clone()),
    }
}

fn into_result<T: Resource>(errs: FieldError, typed: &T) -> Result<DynamicObject, FieldError> {
    if errs.has_errors() {
        Err(errs)
    } else {
        Ok(typed.to_dynamic())
    }
}

fn default_service(s: &mut Service, defaults: &Defaults) {
    default_template(&mut s.spec.template, defaults);
    let traffic = s.spec.traffic.get_or_insert_with(Vec::new);
    if traffic.is_empty() {
        traffic.push(TrafficTarget {
            percent: Some(100),
            latest_revision: Some(true),
            ..Default::default()
        });
    }
    traffic.iter_mut().for_each(default_target);
}

fn default_template(t: &mut RevisionTemplateSpec, defaults: &Defaults) {
    default_revision_spec(&mut t.spec, defaults);
}

fn default_revision_spec(spec: &mut RevisionSpec, defaults: &Defaults) {
    if spec.timeout_seconds.unwrap_or(0) == 0 {
        spec.timeout_seconds = Some(defaults.revision_timeout_seconds);
    }
    if spec.container_concurrency.is_none() {
        spec.container_concurrency = Some(defaults.container_concurrency);
    }
    let multi = spec.pod.containers.len() > 1;
    let mut counter = 0;
    let taken: Vec<String> = spec.pod.containers.iter().map(|c| c.name.clone()).collect();
    for c in &mut spec.pod.containers {
        if c.name.is_empty() {
            c.name = if multi {
                loop {
                    let n = format!("{}-{counter}", defaults.container_name);
                    counter += 1;
                    if !taken.contains(&n) {
                        break n;
                    }
                }
            } else {
                defaults.container_name.clone()
            };
        }
    }
}

fn default_target(t: &mut TrafficTarget) {
    if t.latest_revision.is_none() {
        t.latest_revision = Some(t.revision_name.as_deref().unwrap_or("").is_empty());
    }
    if t.percent.is_none() {
        t.percent = Some(0);
    }
}

fn validate_service(s: &Service, defaults: &Defaults) -> FieldError {
    validate_meta(&s.to_dynamic())
        .also(validate_template(&s.spec.template, defaults).via_field("spec.template"))
        .also(
            validate_traffic(s.spec.traffic.as_deref().unwrap_or(&[]), true)
                .via_field("spec.traffic"),
        )
}

fn validate_meta(obj: &DynamicObject) -> FieldError {
    let m = &obj.metadata;
    if let Some(g) = &m.generate_name {
        let msgs = dns1035_label_errors(g.trim_end_matches('-'));
        if !msgs.is_empty() {
            return FieldError::invalid_value(
                format!("not a DNS 1035 label prefix: [{}]", msgs.join(" ")),
                "metadata.generateName",
            );
        }
    }
    if !m.name.is_empty() {
        let msgs = dns1035_label_errors(&m.name);
        if !msgs.is_empty() {
            return FieldError::invalid_value(
                format!("not a DNS 1035 label: [{}]", msgs.join(" ")),
                "metadata.name",
            );
        }
    } else if m.generate_name.is_none() {
        return FieldError::new("name or generateName is required", &["metadata.name"]);
    }
    FieldError::default()
}

fn validate_template(t: &RevisionTemplateSpec, defaults: &Defaults) -> FieldError {
    validate_revision_spec(&t.spec, defaults).via_field("spec")
}

fn validate_revision_spec(spec: &RevisionSpec, defaults: &Defaults) -> FieldError {
    let mut errs = FieldError::default();
    if let Some(t) = spec.timeout_seconds
        && t != 0
        && !(0..=defaults.max_revision_timeout_seconds).contains(&t)
    {
        errs.push(FieldError::out_of_bounds(
            t,
            0,
            defaults.max_revision_timeout_seconds,
            "timeoutSeconds",
        ));
    }
    if let Some(cc) = spec.container_concurrency
        && !(0..=defaults.container_concurrency_max_limit).contains(&cc)
    {
        errs.push(FieldError::out_of_bounds(
            cc,
            0,
            defaults.container_concurrency_max_limit,
            "containerConcurrency",
        ));
    }
    if spec.pod.containers.is_empty() {
        errs.push(FieldError::missing_field(&["containers"]));
    }
    for (i, c) in spec.pod.containers.iter().enumerate() {
        errs.push(validate_container(c).via_field_index("containers", i));
    }
    errs
}

fn validate_container(c: &Container) -> FieldError {
    let mut errs = FieldError::default();
    if c.image.is_empty() {
        errs.push(FieldError::missing_field(&["image"]));
    }
    for (i, e) in c.env.iter().enumerate() {
        if e.name.is_empty() {
            errs.push(FieldError::missing_field(&["name"]).via_field_index("env", i));
        }
    }
    if let Some(p) = c.ports.first()
        && !(0..=65535).contains(&p.container_port)
    {
        errs.push(
            FieldError::out_of_bounds(p.container_port, 0, 65535, "containerPort")
                .via_field_index("ports", 0),
        );
    }
    errs
}

/// Traffic rules (route_validation.go). `in_service`: targets may omit both
/// names (they mean the Service's Configuration), configurationName is
/// forbidden.
pub fn validate_traffic(traffic: &[TrafficTarget], in_service: bool) -> FieldError {
    let mut errs = FieldError::default();
    let mut sum: i64 = 0;
    let mut tags: Vec<(&str, usize)> = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        let rev = t.revision_name.as_deref().unwrap_or("");
        let cfg = t.configuration_name.as_deref().unwrap_or("");
        let mut e = FieldError::default();
        if let Some(latest) = t.latest_revision
            && rev.is_empty() != latest
        {
            e.push(FieldError::new(
                format!("may not set revisionName {rev:?} when latestRevision is {latest}"),
                &["latestRevision"],
            ));
        }
        if in_service && !cfg.is_empty() {
            e.push(FieldError::disallowed_fields(&["configurationName"]));
        } else if !rev.is_empty() && !cfg.is_empty() {
            e.push(FieldError::multiple_one_of(&[
                "configurationName",
                "revisionName",
            ]));
        } else if !rev.is_empty() {
            if !is_qualified_name(rev) {
                e.push(FieldError::invalid_key_name(rev, "revisionName"));
            }
        } else if !cfg.is_empty() {
            if !is_qualified_name(cfg) {
                e.push(FieldError::invalid_key_name(cfg, "configurationName"));
            }
        } else if !in_service {
            e.push(FieldError::missing_one_of(&[
                "configurationName",
                "revisionName",
            ]));
        }
        let pct = t.percent.unwrap_or(0);
        if !(0..=100).contains(&pct) {
            e.push(FieldError::out_of_bounds(pct, 0, 100, "percent"));
        }
        if t.url.is_some() {
            e.push(FieldError::disallowed_fields(&["url"]));
        }
        errs.push(e.via_index(i));
        sum += pct;
        if let Some(tag) = t.tag.as_deref() {
            let msgs = dns1035_label_errors(tag);
            if !msgs.is_empty() {
                errs.push(
                    FieldError::invalid_value(
                        format!("not a DNS 1035 label: [{}]", msgs.join(" ")),
                        CURRENT_FIELD,
                    )
                    .via_field_index("tag", i),
                );
            }
            tags.push((tag, i));
        }
    }
    // Each repeat is reported against the first definition (route_validation.go).
    for (n, (tag, i)) in tags.iter().enumerate() {
        if let Some((_, first)) = tags[..n].iter().find(|(t, _)| t == tag) {
            errs.push(FieldError::new(
                format!("Multiple definitions for {tag:?}"),
                &[&format!("[{first}].tag"), &format!("[{i}].tag")],
            ));
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

const DNS1035_FMT: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Kubernetes' IsDNS1035Label messages (empty when valid).
pub fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if !ok {
        msgs.push(DNS1035_FMT.to_string());
    }
    msgs
}

/// Kubernetes' qualified-name rule for the name part (no prefix).
pub fn is_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Look up a string value by JSON pointer (for callers holding raw objects).
pub fn pointer_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_manifest;

    fn admit_yaml(yaml: &str) -> Result<DynamicObject, FieldError> {
        let docs = parse_manifest("t", yaml, "default").unwrap();
        admit(&docs[0].object, None, &Defaults::default())
    }

    #[test]
    fn service_gets_knative_defaults() {
        let obj = admit_yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\nspec:\n  template:\n    spec:\n      containers: [{image: img}]\n",
        )
        .unwrap();
        let s: Service = obj.to_typed().unwrap();
        assert_eq!(s.spec.template.spec.timeout_seconds, Some(300));
        assert_eq!(s.spec.template.spec.container_concurrency, Some(0));
        assert_eq!(
            s.spec.template.spec.pod.containers[0].name,
            "user-container"
        );
        let t = &s.spec.traffic.unwrap()[0];
        assert_eq!((t.percent, t.latest_revision), (Some(100), Some(true)));
    }

    #[test]
    fn missing_containers_and_bad_traffic() {
        let err = admit_yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\nspec:\n  template:\n    spec: {}\n  traffic:\n  - {percent: 50}\n  - {revisionName: hello-00001, percent: 40, tag: Bad}\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("missing field(s): spec.template.spec.containers"),
            "{text}"
        );
        assert!(
            text.contains("Traffic targets sum to 90, want 100: spec.traffic"),
            "{text}"
        );
        assert!(
            text.contains("invalid value: not a DNS 1035 label: [a DNS-1035 label must consist"),
            "{text}"
        );
        assert!(text.contains(": spec.traffic.tag[1]"), "{text}");
    }

    #[test]
    fn route_needs_a_target_name() {
        let err = admit_yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: r}\nspec:\n  traffic: [{percent: 100}]\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected exactly one, got neither: spec.traffic[0].configurationName, spec.traffic[0].revisionName"
        );
    }

    #[test]
    fn bad_names() {
        let err = admit_yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: Hello}\nspec:\n  traffic: [{configurationName: c, percent: 100}]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value: not a DNS 1035 label: [")
        );
        assert!(err.to_string().ends_with(": metadata.name"));
    }

    #[test]
    fn duplicate_tags() {
        let t = |tag: &str| TrafficTarget {
            tag: Some(tag.into()),
            configuration_name: Some("c".into()),
            percent: Some(50),
            ..Default::default()
        };
        let err = validate_traffic(&[t("a"), t("a")], false).via_field("spec.traffic");
        assert_eq!(
            err.to_string(),
            "Multiple definitions for \"a\": spec.traffic[0].tag, spec.traffic[1].tag"
        );
    }
}
