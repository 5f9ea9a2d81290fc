//! `config-defaults`: the defaults admission fills into revisions and the
//! bounds it checks them against (docs knative-api.md §11.1).

use std::collections::BTreeMap;

use super::parse_with;
use crate::field_error::FieldError;
use crate::go;
use crate::template::{self, Template};

pub const CONFIGMAP: &str = "config-defaults";

#[derive(Debug, Clone, PartialEq)]
pub struct DefaultsConfig {
    pub revision_timeout_seconds: i64,
    pub max_revision_timeout_seconds: i64,
    pub revision_response_start_timeout_seconds: i64,
    pub revision_idle_timeout_seconds: i64,
    pub container_concurrency: i64,
    pub container_concurrency_max_limit: i64,
    pub allow_container_concurrency_zero: bool,
    /// `None`: leave `enableServiceLinks` unset.
    pub enable_service_links: Option<bool>,
    pub user_container_name_template: Template,
    pub init_container_name_template: Template,
    /// `revision-{cpu,memory,ephemeral-storage}-{request,limit}` as written,
    /// keyed by (resource, "requests"|"limits").
    pub resources: BTreeMap<(&'static str, &'static str), String>,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            revision_timeout_seconds: 300,
            max_revision_timeout_seconds: 600,
            revision_response_start_timeout_seconds: 300,
            revision_idle_timeout_seconds: 0,
            container_concurrency: 0,
            container_concurrency_max_limit: 1000,
            allow_container_concurrency_zero: true,
            enable_service_links: Some(false),
            user_container_name_template: Template::parse("container-template", "user-container")
                .expect("a constant template"),
            init_container_name_template: Template::parse("container-template", "init-container")
                .expect("a constant template"),
            resources: BTreeMap::new(),
        }
    }
}

const RESOURCE_KEYS: [(&str, &str, &str); 6] = [
    ("revision-cpu-request", "cpu", "requests"),
    ("revision-memory-request", "memory", "requests"),
    (
        "revision-ephemeral-storage-request",
        "ephemeral-storage",
        "requests",
    ),
    ("revision-cpu-limit", "cpu", "limits"),
    ("revision-memory-limit", "memory", "limits"),
    (
        "revision-ephemeral-storage-limit",
        "ephemeral-storage",
        "limits",
    ),
];

impl DefaultsConfig {
    /// Parse the ConfigMap's data in Knative's order; the first problem is the
    /// error, in Knative's words.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<DefaultsConfig, String> {
        let mut c = DefaultsConfig::default();
        for (key, target) in [
            (
                "init-container-name-template",
                &mut c.init_container_name_template,
            ),
            (
                "container-name-template",
                &mut c.user_container_name_template,
            ),
        ] {
            if let Some(raw) = data.get(key) {
                *target = Template::parse("container-template", raw)?;
            }
        }
        parse_with(
            data,
            "allow-container-concurrency-zero",
            go::parse_bool,
            &mut c.allow_container_concurrency_zero,
        )?;
        if let Some(raw) = data.get("enable-service-links") {
            c.enable_service_links = if raw.eq_ignore_ascii_case("true") {
                Some(true)
            } else if raw.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            };
        }
        let int64 = |s: &str| go::parse_int(s, 64);
        parse_with(
            data,
            "revision-timeout-seconds",
            int64,
            &mut c.revision_timeout_seconds,
        )?;
        parse_with(
            data,
            "max-revision-timeout-seconds",
            int64,
            &mut c.max_revision_timeout_seconds,
        )?;
        parse_with(
            data,
            "revision-idle-timeout-seconds",
            int64,
            &mut c.revision_idle_timeout_seconds,
        )?;
        parse_with(
            data,
            "container-concurrency",
            int64,
            &mut c.container_concurrency,
        )?;
        parse_with(
            data,
            "container-concurrency-max-limit",
            int64,
            &mut c.container_concurrency_max_limit,
        )?;
        for (key, resource, kind) in RESOURCE_KEYS {
            if let Some(raw) = data.get(key) {
                crate::quantity::parse(raw)
                    .map_err(|e| format!("failed to parse {}: {e}", go::quote(key)))?;
                c.resources.insert((resource, kind), raw.clone());
            }
        }
        c.revision_response_start_timeout_seconds = c.revision_timeout_seconds;
        parse_with(
            data,
            "revision-response-start-timeout-seconds",
            int64,
            &mut c.revision_response_start_timeout_seconds,
        )?;
        if c.revision_timeout_seconds > c.max_revision_timeout_seconds {
            return Err(format!(
                "revision-timeout-seconds ({}) cannot be greater than max-revision-timeout-seconds ({})",
                c.revision_timeout_seconds, c.max_revision_timeout_seconds
            ));
        }
        if c.revision_response_start_timeout_seconds > 0
            && c.revision_response_start_timeout_seconds > c.revision_timeout_seconds
        {
            return Err(format!(
                "revision-response-start-timeout-seconds ({}) cannot be greater than revision-timeout-seconds ({})",
                c.revision_response_start_timeout_seconds, c.revision_timeout_seconds
            ));
        }
        if c.revision_idle_timeout_seconds > 0
            && c.revision_idle_timeout_seconds > c.revision_timeout_seconds
        {
            return Err(format!(
                "revision-idle-timeout-seconds ({}) cannot be greater than revision-timeout-seconds ({})",
                c.revision_idle_timeout_seconds, c.revision_timeout_seconds
            ));
        }
        if c.container_concurrency_max_limit < 1 {
            return Err(FieldError::out_of_bounds(
                c.container_concurrency_max_limit,
                1,
                i32::MAX,
                "container-concurrency-max-limit",
            )
            .to_string());
        }
        if c.container_concurrency < 0
            || c.container_concurrency > c.container_concurrency_max_limit
        {
            return Err(FieldError::out_of_bounds(
                c.container_concurrency,
                0,
                c.container_concurrency_max_limit,
                "container-concurrency",
            )
            .to_string());
        }
        let empty = template::object_meta_values(&Default::default());
        for t in [
            &c.user_container_name_template,
            &c.init_container_name_template,
        ] {
            t.execute(&empty)
                .map_err(|e| format!("error executing template: {e}"))?;
        }
        Ok(c)
    }

    /// The default name of a user container in a revision of `parent`.
    pub fn user_container_name(&self, parent: &crate::meta::ObjectMeta) -> String {
        self.user_container_name_template
            .execute(&template::object_meta_values(parent))
            .unwrap_or_default()
    }

    pub fn init_container_name(&self, parent: &crate::meta::ObjectMeta) -> String {
        self.init_container_name_template
            .execute(&template::object_meta_values(parent))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[super::super::Case] = &[
            (&[], Ok(())),
            (&[("_example", "anything")], Ok(())),
            (
                &[("revision-timeout-seconds", "abc")],
                Err(
                    "failed to parse \"revision-timeout-seconds\": strconv.ParseInt: parsing \"abc\": invalid syntax",
                ),
            ),
            (
                &[("revision-timeout-seconds", "700")],
                Err(
                    "revision-timeout-seconds (700) cannot be greater than max-revision-timeout-seconds (600)",
                ),
            ),
            (
                &[
                    ("revision-timeout-seconds", "400"),
                    ("revision-response-start-timeout-seconds", "500"),
                ],
                Err(
                    "revision-response-start-timeout-seconds (500) cannot be greater than revision-timeout-seconds (400)",
                ),
            ),
            (
                &[("revision-idle-timeout-seconds", "301")],
                Err(
                    "revision-idle-timeout-seconds (301) cannot be greater than revision-timeout-seconds (300)",
                ),
            ),
            (
                &[("container-concurrency-max-limit", "0")],
                Err("expected 1 <= 0 <= 2147483647: container-concurrency-max-limit"),
            ),
            (
                &[("container-concurrency", "1001")],
                Err("expected 0 <= 1001 <= 1000: container-concurrency"),
            ),
            (
                &[("allow-container-concurrency-zero", "maybe")],
                Err(
                    "failed to parse \"allow-container-concurrency-zero\": strconv.ParseBool: parsing \"maybe\": invalid syntax",
                ),
            ),
            (
                &[("revision-cpu-request", "lots")],
                Err(
                    "failed to parse \"revision-cpu-request\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ),
            ),
            (
                &[("container-name-template", "{{.Nope}}")],
                Err(
                    "error executing template: template: container-template:1:2: executing \"container-template\" at <.Nope>: can't evaluate field Nope in type v1.ObjectMeta",
                ),
            ),
        ];
        for (input, want) in cases {
            let got = DefaultsConfig::from_configmap(&data(input)).map(|_| ());
            assert_eq!(got, want.map_err(str::to_string), "{input:?}");
        }
    }

    #[test]
    fn container_name_template_uses_the_parent() {
        let c =
            DefaultsConfig::from_configmap(&data(&[("container-name-template", "{{.Name}}-app")]))
                .unwrap();
        let meta = crate::meta::ObjectMeta {
            name: "hello".into(),
            ..Default::default()
        };
        assert_eq!(c.user_container_name(&meta), "hello-app");
        let c = DefaultsConfig::from_configmap(&data(&[("enable-service-links", "TRUE")])).unwrap();
        assert_eq!(c.enable_service_links, Some(true));
        let c = DefaultsConfig::from_configmap(&data(&[("enable-service-links", "x")])).unwrap();
        assert_eq!(c.enable_service_links, None);
    }
}
