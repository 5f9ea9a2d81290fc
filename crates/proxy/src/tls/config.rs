//! rustls server configurations for gateway servers: certificates from
//! Kubernetes TLS Secrets (`credentialName`, `credentialNames`) or PEM
//! files, SIMPLE / MUTUAL / OPTIONAL_MUTUAL client authentication, ALPN h2
//! and http/1.1, protocol version bounds. Crypto is rustls' ring provider.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use skiff_api::istio::gateway::{ServerTlsMode, ServerTlsSettings, TlsProtocol};
use skiff_api::secret::{CA_SECRET_SUFFIX, Secret, TlsMaterial};

/// ALPN protocols offered, in preference order.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS Secrets by `namespace/name`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    secrets: HashMap<String, Secret>,
}

impl Credentials {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Credentials {
        Credentials {
            secrets: secrets
                .into_iter()
                .map(|s| (format!("{}/{}", s.metadata.namespace, s.metadata.name), s))
                .collect(),
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&Secret> {
        let name = name.strip_prefix("kubernetes://").unwrap_or(name);
        self.secrets.get(&format!("{namespace}/{name}"))
    }

    /// Certificate and key from Secret `name` (the gateway's namespace).
    pub fn material(&self, namespace: &str, name: &str) -> Result<TlsMaterial, String> {
        self.get(namespace, name)
            .ok_or_else(|| format!("Secret {namespace}/{name} (credentialName) not found"))?
            .tls_material()
    }

    /// A MUTUAL server's client CA: `ca.crt` in the Secret, else the
    /// `<name>-cacert` Secret (Istio's convention).
    pub fn client_ca(&self, namespace: &str, name: &str) -> Option<Vec<u8>> {
        self.get(namespace, name)
            .and_then(|s| s.tls_material().ok()?.ca_pem)
            .or_else(|| {
                self.get(namespace, &format!("{name}{CA_SECRET_SUFFIX}"))
                    .and_then(Secret::ca_only)
            })
    }
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read certificates: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM CERTIFICATE found".into());
    }
    Ok(chain)
}

fn certified_key(m: &TlsMaterial, p: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let chain = certs(&m.cert_chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&m.private_key_pem)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    CertifiedKey::from_der(chain, key, p)
        .map(Arc::new)
        .map_err(|e| format!("certificate and key do not fit: {e}"))
}

/// Several certificates for one server (e.g. RSA and ECDSA): the first
/// whose key can sign with a scheme the client offers.
#[derive(Debug)]
struct MultiCert(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for MultiCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// Where a server's certificates come from, resolved.
#[derive(Debug, Clone)]
pub struct ServerCerts {
    pub keys: Vec<TlsMaterial>,
    /// PEM bundle for client verification (MUTUAL, OPTIONAL_MUTUAL).
    pub client_ca: Option<Vec<u8>>,
}

/// Resolve a gateway server's certificate sources: Secrets in
/// `namespace` (`credentialName(s)`), or PEM files
/// (`serverCertificate`/`privateKey`, `tlsCertificates`, `caCertificates`).
pub fn server_certs(
    t: &ServerTlsSettings,
    namespace: &str,
    creds: &Credentials,
) -> Result<ServerCerts, String> {
    let mut keys = Vec::new();
    let mut client_ca = None;
    let names = t.credential_names();
    for n in &names {
        keys.push(creds.material(namespace, n)?);
    }
    if let Some(first) = names.first() {
        client_ca = creds.client_ca(namespace, first);
        if !t.ca_cert_credential_name.is_empty() {
            client_ca = creds
                .get(namespace, &t.ca_cert_credential_name)
                .and_then(Secret::ca_only);
        }
    }
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    if keys.is_empty() {
        if !t.server_certificate.is_empty() {
            keys.push(TlsMaterial {
                cert_chain_pem: read(&t.server_certificate)?,
                private_key_pem: read(&t.private_key)?,
                ca_pem: None,
            });
        }
        for c in &t.tls_certificates {
            keys.push(TlsMaterial {
                cert_chain_pem: read(&c.server_certificate)?,
                private_key_pem: read(&c.private_key)?,
                ca_pem: None,
            });
        }
    }
    if client_ca.is_none() && !t.ca_certificates.is_empty() {
        client_ca = Some(read(&t.ca_certificates)?);
    }
    if keys.is_empty() {
        return Err("no certificate: set credentialName (a kubernetes.io/tls Secret) or serverCertificate and privateKey".into());
    }
    Ok(ServerCerts { keys, client_ca })
}

/// A rustls configuration for one terminating gateway server.
pub fn server_config(
    mode: ServerTlsMode,
    certs_in: &ServerCerts,
    min: Option<TlsProtocol>,
    max: Option<TlsProtocol>,
) -> Result<Arc<ServerConfig>, String> {
    let p = provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let lo = min.unwrap_or(TlsProtocol::Auto);
        let hi = max.unwrap_or(TlsProtocol::Auto);
        if matches!(lo, TlsProtocol::V1_0 | TlsProtocol::V1_1) {
            return Err(format!(
                "minProtocolVersion {lo} is not supported (TLS 1.2 and 1.3 only)"
            ));
        }
        let mut v = Vec::new();
        if lo != TlsProtocol::V1_3 && !matches!(hi, TlsProtocol::V1_0 | TlsProtocol::V1_1) {
            v.push(&rustls::version::TLS12);
        }
        if hi != TlsProtocol::V1_2 {
            v.push(&rustls::version::TLS13);
        }
        if v.is_empty() {
            return Err("minProtocolVersion/maxProtocolVersion leave no TLS version".into());
        }
        v
    };
    let builder = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = match mode {
        ServerTlsMode::Simple => builder.with_no_client_auth(),
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let ca = certs_in.client_ca.as_deref().ok_or(
                "MUTUAL TLS needs a client CA: ca.crt in the Secret or a <name>-cacert Secret",
            )?;
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad client CA certificate: {e}"))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone());
            let v = if mode == ServerTlsMode::OptionalMutual {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
        other => {
            return Err(format!(
                "TLS mode {other} is not terminated by Skiff's gateway"
            ));
        }
    };
    let keys = certs_in
        .keys
        .iter()
        .map(|m| certified_key(m, &p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = builder.with_cert_resolver(Arc::new(MultiCert(keys)));
    config.alpn_protocols = ALPN.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod testing {
    //! rcgen certificates for tests.
    use super::*;

    pub struct Ca {
        pub params: rcgen::CertificateParams,
        pub key: rcgen::KeyPair,
        pub pem: String,
    }

    impl Ca {
        pub fn new(name: &str) -> Ca {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let pem = params.self_signed(&key).unwrap().pem();
            Ca { params, key, pem }
        }

        /// A leaf for `dns` names (and URI SANs), signed by this CA.
        pub fn leaf(&self, dns: &[&str], uris: &[&str]) -> TlsMaterial {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(
                dns.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            for u in uris {
                params
                    .subject_alt_names
                    .push(rcgen::SanType::URI((*u).try_into().unwrap()));
            }
            let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
            let cert = params.signed_by(&key, &issuer).unwrap();
            TlsMaterial {
                cert_chain_pem: cert.pem().into_bytes(),
                private_key_pem: key.serialize_pem().into_bytes(),
                ca_pem: None,
            }
        }
    }

    pub fn secret(ns: &str, name: &str, m: &TlsMaterial, ca: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = ns.into();
        s.metadata.name = name.into();
        s.type_ = Some("kubernetes.io/tls".into());
        s.string_data.insert(
            "tls.crt".into(),
            String::from_utf8(m.cert_chain_pem.clone()).unwrap(),
        );
        s.string_data.insert(
            "tls.key".into(),
            String::from_utf8(m.private_key_pem.clone()).unwrap(),
        );
        if let Some(ca) = ca {
            s.string_data.insert("ca.crt".into(), ca.into());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn settings(yaml: &str) -> ServerTlsSettings {
        crate::istio::testing::yaml(yaml)
    }

    #[test]
    fn builds_from_secrets() {
        let ca = Ca::new("test ca");
        let leaf = ca.leaf(&["shop.example.com"], &[]);
        let creds = Credentials::new([
            secret("istio-system", "shop", &leaf, None),
            secret("istio-system", "mtls", &leaf, Some(&ca.pem)),
        ]);
        let simple = settings("{mode: SIMPLE, credentialName: shop}");
        let c = server_certs(&simple, "istio-system", &creds).unwrap();
        let cfg = server_config(ServerTlsMode::Simple, &c, None, None).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        // MUTUAL without a CA is a clear error; with ca.crt it builds.
        let no_ca = server_certs(
            &settings("{mode: MUTUAL, credentialName: shop}"),
            "istio-system",
            &creds,
        )
        .unwrap();
        let e = server_config(ServerTlsMode::Mutual, &no_ca, None, None).unwrap_err();
        assert!(e.contains("client CA"), "{e}");
        let with_ca = server_certs(
            &settings("{mode: MUTUAL, credentialName: mtls}"),
            "istio-system",
            &creds,
        )
        .unwrap();
        assert!(server_config(ServerTlsMode::Mutual, &with_ca, None, None).is_ok());
        // Missing Secret / wrong namespace.
        let e = server_certs(&simple, "default", &creds).unwrap_err();
        assert_eq!(e, "Secret default/shop (credentialName) not found");
        // Version bounds.
        assert!(server_config(ServerTlsMode::Simple, &c, Some(TlsProtocol::V1_0), None).is_err());
        assert!(
            server_config(
                ServerTlsMode::Simple,
                &c,
                Some(TlsProtocol::V1_3),
                Some(TlsProtocol::V1_2)
            )
            .is_err()
        );
        assert!(server_config(ServerTlsMode::Simple, &c, Some(TlsProtocol::V1_3), None).is_ok());
    }

    #[test]
    fn cacert_secret_convention() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(&["a.example.com"], &[]);
        let mut ca_secret = Secret::default();
        ca_secret.metadata.namespace = "gw".into();
        ca_secret.metadata.name = "a-cacert".into();
        ca_secret
            .string_data
            .insert("ca.crt".into(), ca.pem.clone());
        let creds = Credentials::new([secret("gw", "a", &leaf, None), ca_secret]);
        assert_eq!(creds.client_ca("gw", "a").unwrap(), ca.pem.as_bytes());
    }

    #[test]
    fn mismatched_key_is_an_error() {
        let ca = Ca::new("ca");
        let a = ca.leaf(&["a"], &[]);
        let b = ca.leaf(&["b"], &[]);
        let bad = ServerCerts {
            keys: vec![TlsMaterial {
                cert_chain_pem: a.cert_chain_pem,
                private_key_pem: b.private_key_pem,
                ca_pem: None,
            }],
            client_ca: None,
        };
        let e = server_config(ServerTlsMode::Simple, &bad, None, None).unwrap_err();
        assert!(e.contains("do not fit"), "{e}");
    }
}
