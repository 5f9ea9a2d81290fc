//! TLS Secrets a Gateway or DestinationRule names that are missing or
//! unusable, and authorization policies Skiff cannot apply as written.

use skiff_api::istio::authorization_policy::Action;
use skiff_api::istio::destination_rule::{ClientTlsMode, TrafficPolicy};
use skiff_api::istio::gateway::ServerTlsMode;
use skiff_proxy::tls::Credentials;
use skiff_proxy::tls::config::{server_certs, server_config};

use super::{Finding, Objects, Severity};

pub fn check(objs: &Objects, out: &mut Vec<Finding>) {
    let creds = Credentials::new(objs.secrets.iter().cloned());
    for gw in &objs.gateways {
        let id = super::id("Gateway", &gw.metadata);
        let ns = &gw.metadata.namespace;
        for (i, s) in gw.spec.servers.iter().enumerate() {
            let Some(t) = &s.tls else { continue };
            let mode = t.mode();
            if !matches!(
                mode,
                ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
            ) {
                continue;
            }
            let at = format!("servers[{i}]");
            for name in t.credential_names() {
                let bare = name.strip_prefix("kubernetes://").unwrap_or(name);
                if creds.get(ns, bare).is_none() {
                    out.push(
                        Finding::new(Severity::Error, "SK3001", id.clone(), format!("{at}: TLS Secret {ns}/{bare} does not exist"))
                            .evidence(format!("tls.credentialName {name:?}; Secrets are looked up in the Gateway's namespace {ns}"))
                            .evidence("TLS handshakes for these hosts fail: clients see a reset, not an HTTP response")
                            .fix(format!("create a kubernetes.io/tls Secret {bare} in namespace {ns} (tls.crt, tls.key)")),
                    );
                }
            }
            if t.credential_names().iter().any(|n| {
                creds
                    .get(ns, n.strip_prefix("kubernetes://").unwrap_or(n))
                    .is_none()
            }) {
                continue;
            }
            let built = server_certs(t, ns, &creds).and_then(|c| {
                if mode != ServerTlsMode::Simple && c.client_ca.is_none() {
                    return Err(String::from("MUTUAL"));
                }
                server_config(mode, &c, t.min_protocol_version, t.max_protocol_version).map(|_| ())
            });
            match built {
                Ok(()) => {}
                Err(e) if e == "MUTUAL" => out.push(
                    Finding::new(Severity::Error, "SK3003", id.clone(), format!("{at}: {mode} TLS has no client CA"))
                        .evidence(format!(
                            "Secret {ns}/{} has no ca.crt and there is no Secret {ns}/{}-cacert",
                            t.credential_names().first().copied().unwrap_or(""),
                            t.credential_names().first().copied().unwrap_or("")
                        ))
                        .fix("add ca.crt (the CA that signs client certificates) to the Secret, or a <name>-cacert Secret"),
                ),
                Err(e) => out.push(
                    Finding::new(Severity::Error, "SK3002", id.clone(), format!("{at}: the TLS certificate cannot be used: {e}"))
                        .evidence("the server's certificate or key could not be loaded")
                        .fix("put a PEM certificate chain in tls.crt and its private key in tls.key"),
                ),
            }
        }
    }
    for dr in &objs.destination_rules {
        let id = format!(
            "DestinationRule {}/{}",
            dr.metadata.namespace, dr.metadata.name
        );
        let mut policies: Vec<&TrafficPolicy> = dr.spec.traffic_policy.iter().collect();
        policies.extend(
            dr.spec
                .subsets
                .iter()
                .filter_map(|s| s.traffic_policy.as_ref()),
        );
        for p in policies {
            let Some(t) = &p.tls else { continue };
            if matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
                && !t.credential_name.is_empty()
                && creds
                    .get(&dr.metadata.namespace, &t.credential_name)
                    .is_none()
            {
                out.push(
                    Finding::new(
                        Severity::Error,
                        "SK3001",
                        id.clone(),
                        format!(
                            "TLS Secret {}/{} does not exist",
                            dr.metadata.namespace, t.credential_name
                        ),
                    )
                    .evidence("tls.credentialName of the client TLS settings")
                    .fix("create the Secret in the DestinationRule's namespace"),
                );
            }
        }
    }
    for ap in &objs.authorization_policies {
        let id = format!(
            "AuthorizationPolicy {}/{}",
            ap.metadata.namespace, ap.metadata.name
        );
        match ap.spec.action {
            Action::Custom => out.push(
                Finding::new(Severity::Warning, "SK6001", id, "CUSTOM authorization is not applied: Skiff has no external authorizer".into())
                    .evidence(format!("action CUSTOM, provider {:?}", ap.spec.provider.as_ref().map(|p| p.name.as_str()).unwrap_or("")))
                    .fix("express the policy as ALLOW/DENY rules"),
            ),
            Action::Allow if ap.spec.rules.as_ref().is_none_or(Vec::is_empty) => out.push(
                Finding::new(Severity::Info, "SK6002", id, "this ALLOW policy has no rules: it allows nothing".into())
                    .evidence("an ALLOW policy without rules matches no request; every request to its workloads gets 403")
                    .fix("if that is not the intent, add rules (rules: [{}] allows everything)"),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    const GW: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE, credentialName: shop}
  - port: {number: 8443, name: mtls, protocol: HTTPS}
    hosts: ['*.example.com']
    tls: {mode: MUTUAL, credentialName: partner}
";

    fn tls_secret(name: &str, with_ca: bool) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["shop.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let ca = if with_ca {
            format!("\n  ca.crt: {:?}", cert)
        } else {
            String::new()
        };
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}{ca}\n",
            cert,
            key.serialize_pem()
        )
    }

    #[test]
    fn missing_and_incomplete_secrets() {
        let f = codes(GW);
        assert_eq!(f.iter().filter(|(c, _)| *c == "SK3001").count(), 2, "{f:?}");
        let y = format!(
            "{GW}{}{}",
            tls_secret("shop", false),
            tls_secret("partner", false)
        );
        let f = codes(&y);
        assert_eq!(
            f.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ["SK3003"],
            "{f:?}"
        );
        let y = format!(
            "{GW}{}{}",
            tls_secret("shop", false),
            tls_secret("partner", true)
        );
        assert!(codes(&y).is_empty());
        // A certificate with a key that does not belong to it.
        let broken = tls_secret("shop", false)
            .replace("BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY")
            .replace("END PRIVATE KEY", "END EC PRIVATE KEY");
        let y = format!("{GW}{broken}{}", tls_secret("partner", true));
        assert_eq!(find(&y, "SK3002").len(), 1);
    }

    #[test]
    fn authorization_notes() {
        let y = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing}
spec: {}
";
        let c = codes(y);
        assert!(c.contains(&("SK6001", "AuthorizationPolicy default/ext".into())));
        assert!(c.contains(&("SK6002", "AuthorizationPolicy default/nothing".into())));
    }
}
