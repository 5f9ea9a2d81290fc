//! `config-network`: URL templates and schemes of routes (docs knative-api.md
//! §11.4; knative/networking pkg/config).

use std::collections::BTreeMap;

use super::parse_with;
use crate::go;
use crate::template::{self, Template};

pub const CONFIGMAP: &str = "config-network";
pub const DEFAULT_DOMAIN_TEMPLATE: &str = "{{.Name}}.{{.Namespace}}.{{.Domain}}";
pub const DEFAULT_TAG_TEMPLATE: &str = "{{.Tag}}-{{.Name}}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    Enabled,
    Disabled,
    Redirected,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub domain_template: Template,
    pub tag_template: Template,
    pub default_external_scheme: String,
    pub rollout_duration_secs: i64,
    pub http_protocol: HttpProtocol,
    pub external_domain_tls: bool,
    pub cluster_local_domain_tls: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            domain_template: Template::parse("domain-template", DEFAULT_DOMAIN_TEMPLATE)
                .expect("the default template parses"),
            tag_template: Template::parse("tag-template", DEFAULT_TAG_TEMPLATE)
                .expect("the default template parses"),
            default_external_scheme: "http".into(),
            rollout_duration_secs: 0,
            http_protocol: HttpProtocol::Enabled,
            external_domain_tls: false,
            cluster_local_domain_tls: false,
        }
    }
}

impl NetworkConfig {
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<NetworkConfig, String> {
        let mut c = NetworkConfig::default();
        let mut domain_template = DEFAULT_DOMAIN_TEMPLATE.to_string();
        let mut tag_template = DEFAULT_TAG_TEMPLATE.to_string();
        let string = |s: &str| Ok::<_, String>(s.trim().to_string());
        let int = |s: &str| go::parse_int(s, 64);
        let mut ignored = String::new();
        let mut ignored_bool = false;
        // Legacy camelCase keys first, so the new keys win (as upstream).
        parse_with(data, "ingress.class", string, &mut ignored)?;
        parse_with(data, "certificate.class", string, &mut ignored)?;
        parse_with(data, "domainTemplate", string, &mut domain_template)?;
        parse_with(data, "tagTemplate", string, &mut tag_template)?;
        parse_with(data, "rolloutDuration", int, &mut c.rollout_duration_secs)?;
        parse_with(
            data,
            "autocreateClusterDomainClaims",
            go::parse_bool,
            &mut ignored_bool,
        )?;
        parse_with(
            data,
            "defaultExternalScheme",
            string,
            &mut c.default_external_scheme,
        )?;
        parse_with(data, "ingress-class", string, &mut ignored)?;
        parse_with(data, "certificate-class", string, &mut ignored)?;
        parse_with(data, "domain-template", string, &mut domain_template)?;
        parse_with(data, "tag-template", string, &mut tag_template)?;
        parse_with(data, "rollout-duration", int, &mut c.rollout_duration_secs)?;
        parse_with(
            data,
            "autocreate-cluster-domain-claims",
            go::parse_bool,
            &mut ignored_bool,
        )?;
        parse_with(
            data,
            "enable-mesh-pod-addressability",
            go::parse_bool,
            &mut ignored_bool,
        )?;
        parse_with(
            data,
            "default-external-scheme",
            string,
            &mut c.default_external_scheme,
        )?;
        parse_with(
            data,
            "internal-encryption",
            go::parse_bool,
            &mut ignored_bool,
        )?;
        if c.rollout_duration_secs < 0 {
            return Err(format!(
                "rollout-duration must be a positive integer, but was {}",
                c.rollout_duration_secs
            ));
        }
        c.domain_template = Template::parse("domain-template", &domain_template)?;
        check_domain_template(&c.domain_template)?;
        c.tag_template = Template::parse("tag-template", &tag_template)?;
        c.tag_template.execute(&template::tag_values("foo", "v2"))?;

        let mut auto_tls = false;
        for key in ["autoTLS", "auto-tls"] {
            if let Some(v) = data.get(key) {
                auto_tls = v.eq_ignore_ascii_case("enabled");
            }
        }
        c.external_domain_tls = match data.get("external-domain-tls") {
            Some(v) => v.eq_ignore_ascii_case("enabled"),
            None => auto_tls,
        };
        let mut protocol = "";
        for key in ["httpProtocol", "http-protocol"] {
            if let Some(v) = data.get(key) {
                protocol = v;
            }
        }
        c.http_protocol = match protocol.to_ascii_lowercase().as_str() {
            "" | "enabled" => HttpProtocol::Enabled,
            "disabled" => HttpProtocol::Disabled,
            "redirected" => HttpProtocol::Redirected,
            _ => {
                return Err(format!(
                    "httpProtocol {} in config-network ConfigMap is not supported",
                    data.get("http-protocol").map(String::as_str).unwrap_or("")
                ));
            }
        };
        for key in ["system-internal-tls", "cluster-local-domain-tls"] {
            let v = data.get(key).map(String::as_str).unwrap_or("");
            match v.to_ascii_lowercase().as_str() {
                "" | "disabled" => {}
                "enabled" => {
                    if key == "cluster-local-domain-tls" {
                        c.cluster_local_domain_tls = true;
                    }
                }
                _ => {
                    return Err(format!(
                        "{key} with value: {} in config-network ConfigMap is not supported",
                        go::quote(v)
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// The domain template must render a host without a path (checked with
/// sample values, as upstream's checkDomainTemplate).
fn check_domain_template(t: &Template) -> Result<(), String> {
    let host = t.execute(&template::domain_values(
        "foo", "bar", "baz.com", None, None,
    ))?;
    let url = format!("https://{host}");
    let rest = &url["https://".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_part = authority.rsplit('@').next().unwrap_or("");
    if let Some(bad) = host_part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~!$&'()*+,;=:[]<>\"%".contains(*c)))
    {
        return Err(format!(
            "parse {}: invalid character {} in host name",
            go::quote(&url),
            go::quote(&bad.to_string())
        ));
    }
    let hostname = match host_part.rfind(':') {
        Some(i) if !host_part.ends_with(']') => {
            let port = &host_part[i + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "parse {}: invalid port {} after host",
                    go::quote(&url),
                    go::quote(&format!(":{port}"))
                ));
            }
            &host_part[..i]
        }
        _ => host_part,
    };
    if hostname.is_empty() {
        return Err("empty hostname".into());
    }
    let tail = &rest[end..];
    let request_uri = {
        let path_end = tail.find('#').unwrap_or(tail.len());
        let t = &tail[..path_end];
        if t.is_empty() || t.starts_with('?') {
            format!("/{t}")
        } else {
            t.to_string()
        }
    };
    if request_uri != "/" {
        return Err(format!("domain template has url path: {request_uri}"));
    }
    Ok(())
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
            (
                &[("domain-template", "{{.Name}}-{{.Namespace}}.{{.Domain}}")],
                Ok(()),
            ),
            (
                &[(
                    "domain-template",
                    "{{.Name}}.{{.Namespace}}.{{.Domain}}/path",
                )],
                Err("domain template has url path: /path"),
            ),
            (
                &[("domain-template", "{{.Nme}}.{{.Domain}}")],
                Err(
                    "template: domain-template:1:2: executing \"domain-template\" at <.Nme>: can't evaluate field Nme in type config.DomainTemplateValues",
                ),
            ),
            (
                &[(
                    "domain-template",
                    "{{.Name}}.{{.Annotations.x}}.{{.Domain}}",
                )],
                Err(
                    "parse \"https://foo.<no value>.baz.com\": invalid character \" \" in host name",
                ),
            ),
            (&[("domain-template", "")], Err("empty hostname")),
            (&[("tag-template", "{{.Tag}}_{{.Name}}")], Ok(())),
            (
                &[("tag-template", "{{.Version}}-{{.Name}}")],
                Err(
                    "template: tag-template:1:2: executing \"tag-template\" at <.Version>: can't evaluate field Version in type config.TagTemplateValues",
                ),
            ),
            (
                &[("rollout-duration", "-3")],
                Err("rollout-duration must be a positive integer, but was -3"),
            ),
            (
                &[("rollout-duration", "1m")],
                Err(
                    "failed to parse \"rollout-duration\": strconv.ParseInt: parsing \"1m\": invalid syntax",
                ),
            ),
            (
                &[("http-protocol", "Sometimes")],
                Err("httpProtocol Sometimes in config-network ConfigMap is not supported"),
            ),
            (
                &[("cluster-local-domain-tls", "maybe")],
                Err(
                    "cluster-local-domain-tls with value: \"maybe\" in config-network ConfigMap is not supported",
                ),
            ),
        ];
        for (input, want) in cases {
            let got = NetworkConfig::from_configmap(&data(input)).map(|_| ());
            assert_eq!(got, want.map_err(str::to_string), "{input:?}");
        }
    }

    #[test]
    fn new_keys_win_over_legacy_ones() {
        let c = NetworkConfig::from_configmap(&data(&[
            ("domainTemplate", "{{.Name}}.legacy.{{.Domain}}"),
            ("domain-template", "{{.Name}}.new.{{.Domain}}"),
        ]))
        .unwrap();
        assert_eq!(c.domain_template.source(), "{{.Name}}.new.{{.Domain}}");
    }
}
