//! `networking.istio.io` Gateway: the servers (port, protocol, hosts, TLS) a
//! gateway listens with. VirtualServices bind to it by name and host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, at, err, here};
use super::proto::proto_enum;
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default)]
    pub servers: Vec<Server>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    #[serde(default)]
    pub number: u32,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// A port's protocol, as Istio parses it (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Http2,
    Grpc,
    GrpcWeb,
    Tcp,
    Tls,
    Mongo,
    Redis,
    Mysql,
    Unsupported,
}

impl Protocol {
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "HTTP2" => Protocol::Http2,
            "GRPC" => Protocol::Grpc,
            "GRPC-WEB" => Protocol::GrpcWeb,
            "TCP" => Protocol::Tcp,
            "TLS" => Protocol::Tls,
            "MONGO" => Protocol::Mongo,
            "REDIS" => Protocol::Redis,
            "MYSQL" => Protocol::Mysql,
            _ => Protocol::Unsupported,
        }
    }

    /// Carried over TLS at the gateway.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// Served as HTTP (after TLS termination for HTTPS).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb | Protocol::Https
        )
    }
}

proto_enum!(
    ServerTlsMode, "server TLS mode" {
        Passthrough = 0 => "PASSTHROUGH",
        Simple = 1 => "SIMPLE",
        Mutual = 2 => "MUTUAL",
        AutoPassthrough = 3 => "AUTO_PASSTHROUGH",
        IstioMutual = 4 => "ISTIO_MUTUAL",
        OptionalMutual = 5 => "OPTIONAL_MUTUAL",
    }
);

proto_enum!(
    TlsProtocol, "TLS protocol version" {
        Auto = 0 => "TLS_AUTO",
        V1_0 = 1 => "TLSV1_0",
        V1_1 = 2 => "TLSV1_1",
        V1_2 = 3 => "TLSV1_2",
        V1_3 = 4 => "TLSV1_3",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub https_redirect: bool,
    /// `None` = PASSTHROUGH (the proto default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServerTlsMode>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

impl ServerTlsSettings {
    pub fn mode(&self) -> ServerTlsMode {
        self.mode.unwrap_or_default()
    }

    /// Every Secret this server reads certificates from.
    pub fn credential_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        if !self.credential_name.is_empty() {
            v.push(&self.credential_name);
        }
        v.extend(self.credential_names.iter().map(String::as_str));
        v
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
}

// ---------------------------------------------------------------- validation

/// Istio's ValidateGateway, with paths.
pub fn validate(gw: &Gateway) -> FieldError {
    let mut errs = FieldError::default();
    if !gw.metadata.name.is_empty() && !check::is_dns1123_label(&gw.metadata.name) {
        errs.push(err(
            format!("invalid gateway name: {:?}", gw.metadata.name),
            "metadata.name",
        ));
    }
    let spec = &gw.spec;
    let mut s_errs = FieldError::default();
    if spec.servers.is_empty() {
        s_errs.push(err("gateway must have at least one server", "servers"));
    }
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: Vec<(u32, &str, usize)> = Vec::new();
    for (i, s) in spec.servers.iter().enumerate() {
        let mut e = validate_server(s);
        if let Some(p) = &s.port {
            if !p.name.is_empty() && names.contains(&p.name.as_str()) {
                e.push(err(
                    format!(
                        "port names in servers must be unique: duplicate name {}",
                        p.name
                    ),
                    "port.name",
                ));
            }
            names.push(&p.name);
            // Servers sharing a port must agree on whether it speaks TLS:
            // one listener serves them all.
            let tls = Protocol::parse(&p.protocol).is_tls();
            let kind = if tls { "TLS" } else { "plain text" };
            if let Some((_, other, j)) = numbers
                .iter()
                .find(|(n, k, _)| *n == p.number && *k != kind)
            {
                e.push(err(
                    format!(
                        "port {} is {kind} here but {other} in servers[{j}]: one port is one listener",
                        p.number
                    ),
                    "port.protocol",
                ));
            }
            numbers.push((p.number, kind, i));
        }
        s_errs.push(e.via_field_index("servers", i));
    }
    for (k, v) in &spec.selector {
        s_errs.push(at(check::label(k, v), "").via_field_key("selector", k));
    }
    errs.push(s_errs.via_field("spec"));
    errs
}

fn validate_server(s: &Server) -> FieldError {
    let mut errs = FieldError::default();
    if s.hosts.is_empty() {
        errs.push(err("server config must contain at least one host", "hosts"));
    }
    for (i, h) in s.hosts.iter().enumerate() {
        errs.push(at(gateway_host(h), "").via_field_index("hosts", i));
    }
    let mut port_ok = false;
    match &s.port {
        None => errs.push(FieldError::missing_field(&["port"])),
        Some(p) => {
            let mut e = FieldError::default();
            if Protocol::parse(&p.protocol) == Protocol::Unsupported {
                e.push(err(
                    format!(
                        "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, MONGO, REDIS, MYSQL, TCP, TLS",
                        p.protocol
                    ),
                    "protocol",
                ));
            }
            e.push(at(check::port(p.number as i64), "number"));
            if p.target_port.is_some_and(|t| t > 0) {
                e.push(err("targetPort has no impact on Gateways", "targetPort"));
            }
            if p.name.is_empty() {
                e.push(FieldError::missing_field(&["name"]).with_details("port name must be set"));
            }
            port_ok = e.is_empty();
            errs.push(e.via_field("port"));
        }
    }
    if !s.bind.is_empty() && !check::is_ip(&s.bind) && !s.bind.starts_with("unix://") {
        errs.push(err(format!("{} is not a valid IP", s.bind), "bind"));
    }
    if let Some(t) = &s.tls {
        errs.push(validate_tls(t).via_field("tls"));
    }
    if port_ok && let Some(p) = &s.port {
        let proto = Protocol::parse(&p.protocol);
        match &s.tls {
            None if proto.is_tls() => errs.push(
                FieldError::missing_field(&["tls"])
                    .with_details("server must have TLS settings for HTTPS/TLS protocols"),
            ),
            Some(t) if !proto.is_tls() => {
                let only_redirect = t.mode() == ServerTlsMode::Passthrough
                    && t.ca_certificates.is_empty()
                    && t.private_key.is_empty()
                    && t.server_certificate.is_empty()
                    && t.credential_names().is_empty();
                if proto.is_http() && !only_redirect {
                    errs.push(err(
                        "server cannot have TLS settings for plain text HTTP ports",
                        "tls",
                    ));
                } else if !proto.is_http() {
                    errs.push(err(
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                        "tls",
                    ));
                }
            }
            _ => {}
        }
    }
    errs
}

/// `[namespace/]dnsName` with a left-most wildcard, or an IP.
fn gateway_host(h: &str) -> Result<(), String> {
    let (ns, name) = match h.split_once('/') {
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                return Err(
                    "config namespace and dnsName in host entry cannot be empty".to_string()
                );
            }
            (Some(ns), name)
        }
        None => (None, h),
    };
    if let Some(ns) = ns
        && ns != "*"
        && ns != "."
        && !check::is_dns1123_label(ns)
    {
        return Err(format!("invalid namespace value {ns:?} in gateway"));
    }
    if name != "*" && !name.contains('.') {
        return Err("short names (non FQDN) are not allowed".to_string());
    }
    if name.contains('*') && name != "*" && !name.starts_with("*.") {
        return Err(format!("partial wildcard {name:?} not allowed"));
    }
    if check::wildcard_domain(name).is_err() && !check::is_ip(name) {
        return check::wildcard_domain(name);
    }
    Ok(())
}

fn validate_tls(t: &ServerTlsSettings) -> FieldError {
    let mut errs = FieldError::default();
    let mode = t.mode();
    if mode == ServerTlsMode::IstioMutual {
        for (field, set) in [
            ("serverCertificate", !t.server_certificate.is_empty()),
            ("privateKey", !t.private_key.is_empty()),
            ("caCertificates", !t.ca_certificates.is_empty()),
            ("tlsCertificates", !t.tls_certificates.is_empty()),
            ("credentialName", !t.credential_name.is_empty()),
            ("credentialNames", !t.credential_names.is_empty()),
        ] {
            if set {
                errs.push(
                    FieldError::disallowed_fields(&[field])
                        .with_details("ISTIO_MUTUAL TLS uses the mesh's certificates"),
                );
            }
        }
        return errs;
    }
    let sources = [
        !t.server_certificate.is_empty() && !t.private_key.is_empty(),
        !t.credential_name.is_empty(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources > 1 {
        errs.push(here(
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        ));
    }
    if !t.credential_name.is_empty() {
        errs.push(at(credential(&t.credential_name), "credentialName"));
    }
    for (i, c) in t.credential_names.iter().enumerate() {
        errs.push(at(credential(c), "").via_field_index("credentialNames", i));
    }
    let terminating = matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    if terminating && t.credential_names().is_empty() {
        let prefix = if mode == ServerTlsMode::Simple {
            "SIMPLE TLS"
        } else {
            "MUTUAL TLS"
        };
        if mode != ServerTlsMode::Simple && t.ca_certificates.is_empty() {
            errs.push(err(
                format!("{prefix} requires a client CA bundle"),
                "caCertificates",
            ));
        }
        if t.tls_certificates.is_empty() {
            if t.server_certificate.is_empty() {
                errs.push(err(
                    format!("{prefix} requires a server certificate (or credentialName)"),
                    "serverCertificate",
                ));
            }
            if t.private_key.is_empty() {
                errs.push(err(
                    format!("{prefix} requires a private key (or credentialName)"),
                    "privateKey",
                ));
            }
        }
        for (i, c) in t.tls_certificates.iter().enumerate() {
            if c.server_certificate.is_empty() {
                errs.push(
                    FieldError::missing_field(&["serverCertificate"])
                        .via_field_index("tlsCertificates", i),
                );
            }
            if c.private_key.is_empty() {
                errs.push(
                    FieldError::missing_field(&["privateKey"])
                        .via_field_index("tlsCertificates", i),
                );
            }
        }
    }
    if !t.ca_crl.is_empty() {
        if !t.credential_name.is_empty() {
            errs.push(err(
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
                "caCrl",
            ));
        }
        if mode == ServerTlsMode::Simple {
            errs.push(err("CRL is not supported with SIMPLE TLS", "caCrl"));
        }
    }
    if let (Some(min), Some(max)) = (t.min_protocol_version, t.max_protocol_version)
        && min != TlsProtocol::Auto
        && max != TlsProtocol::Auto
        && (min as u8) > (max as u8)
    {
        errs.push(err(
            format!("minProtocolVersion {min} is above maxProtocolVersion {max}"),
            "minProtocolVersion",
        ));
    }
    errs
}

/// A credentialName: a Secret name (`name`, or `kubernetes://name`).
fn credential(c: &str) -> Result<(), String> {
    let name = c.strip_prefix("kubernetes://").unwrap_or(c);
    if name.is_empty() || check::fqdn(name).is_err() || name.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(format!("{c:?} is not a valid Secret name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(yaml: &str) -> Gateway {
        crate::istio::testing::yaml(yaml)
    }

    fn errors(yaml: &str) -> String {
        validate(&gw(yaml)).to_string()
    }

    #[test]
    fn typical_gateway() {
        let g = gw("
metadata: {name: public}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*.example.com', 'default/api.example.org']
    tls: {mode: SIMPLE, credentialName: example-cert}
  - port: {number: 8443, name: mtls, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: MUTUAL, credentialName: mtls-cert}
");
        assert_eq!(validate(&g).to_string(), "");
        assert_eq!(
            g.spec.servers[1].tls.as_ref().unwrap().mode(),
            ServerTlsMode::Simple
        );
        assert!(g.spec.servers[0].tls.as_ref().unwrap().https_redirect);
    }

    #[test]
    fn table_of_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "metadata: {name: a.b}\nspec: {servers: [{port: {number: 80, name: h, protocol: HTTP}, hosts: ['*']}]}",
                "invalid gateway name: \"a.b\": metadata.name",
            ),
            (
                "spec: {servers: []}",
                "gateway must have at least one server: spec.servers",
            ),
            (
                "spec: {servers: [{port: {number: 443, name: h, protocol: HTTPS}, hosts: ['*']}]}",
                "missing field(s): spec.servers[0].tls",
            ),
            (
                "spec: {servers: [{port: {number: 443, name: h, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE}}]}",
                "SIMPLE TLS requires a server certificate (or credentialName): spec.servers[0].tls.serverCertificate",
            ),
            (
                "spec: {servers: [{port: {number: 443, name: h, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}]}",
                "MUTUAL TLS requires a client CA bundle: spec.servers[0].tls.caCertificates",
            ),
            (
                "spec: {servers: [{port: {number: 80, name: h, protocol: HTTP}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}]}",
                "server cannot have TLS settings for plain text HTTP ports: spec.servers[0].tls",
            ),
            (
                "spec: {servers: [{port: {number: 80, name: h, protocol: QUIC}, hosts: ['*']}]}",
                "invalid protocol \"QUIC\"",
            ),
            (
                "spec: {servers: [{port: {number: 0, name: h, protocol: HTTP}, hosts: ['*']}]}",
                "port number 0 must be in the range 1..65535: spec.servers[0].port.number",
            ),
            (
                "spec: {servers: [{port: {number: 80, name: h, protocol: HTTP}, hosts: [foo]}]}",
                "short names (non FQDN) are not allowed: spec.servers[0].hosts[0]",
            ),
            (
                "spec: {servers: [{port: {number: 80, name: h, protocol: HTTP}, hosts: ['a*.b.com']}]}",
                "partial wildcard \"a*.b.com\" not allowed",
            ),
            (
                "spec: {servers: [{port: {number: 80, name: h, protocol: HTTP}, hosts: ['*']}, {port: {number: 81, name: h, protocol: HTTP}, hosts: ['*']}]}",
                "port names in servers must be unique: duplicate name h: spec.servers[1].port.name",
            ),
            (
                "spec: {servers: [{port: {number: 443, name: a, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}, {port: {number: 443, name: b, protocol: HTTP}, hosts: ['*']}]}",
                "port 443 is plain text here but TLS in servers[0]",
            ),
            (
                "spec: {servers: [{port: {number: 443, name: h, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: Bad_Name}}]}",
                "\"Bad_Name\" is not a valid Secret name: spec.servers[0].tls.credentialName",
            ),
        ];
        crate::istio::testing::each_error_contains(cases, errors);
    }

    #[test]
    fn unknown_mode_is_a_clear_error() {
        let v: serde_json::Value = serde_saphyr::from_str(
            "spec: {servers: [{port: {number: 443, name: h, protocol: HTTPS}, hosts: ['*'], tls: {mode: STRICT}}]}",
        )
        .unwrap();
        let e = serde_json::from_value::<Gateway>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown server TLS mode \"STRICT\": expected one of PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL"), "{e}");
    }
}
