//! Core `v1` Secret, for what Skiff uses Secrets for: certificates
//! (`kubernetes.io/tls`: `tls.crt`, `tls.key`, optional `ca.crt`; Istio's
//! generic form `cert`/`key`/`cacert` too). `data` is base64 as in
//! Kubernetes; `stringData` is merged into `data` on write and never stored.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;
use crate::meta::ObjectMeta;
use crate::object::{DynamicObject, Resource, ResourceKind};

pub static SECRET: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    short_names: &[],
    namespaced: true,
};

pub const TYPE_TLS: &str = "kubernetes.io/tls";
pub const TYPE_OPAQUE: &str = "Opaque";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CERT: &str = "ca.crt";
/// Istio's generic-secret keys.
pub const GENERIC_CERT: &str = "cert";
pub const GENERIC_KEY: &str = "key";
pub const GENERIC_CA: &str = "cacert";
/// Istio reads a MUTUAL gateway's CA from `<credentialName>-cacert` when the
/// main Secret has none.
pub const CA_SECRET_SUFFIX: &str = "-cacert";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64 values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Resource for Secret {
    fn kind() -> &'static ResourceKind {
        &SECRET
    }
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// PEM certificate material from a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub cert_chain_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
    pub ca_pem: Option<Vec<u8>>,
}

impl Secret {
    pub fn secret_type(&self) -> &str {
        self.type_.as_deref().unwrap_or(TYPE_OPAQUE)
    }

    /// The decoded value of `key` (stringData wins, as on write).
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(s) = self.string_data.get(key) {
            return Some(s.as_bytes().to_vec());
        }
        self.data
            .get(key)
            .and_then(|b| STANDARD.decode(b.trim()).ok())
    }

    /// The certificate, key and optional CA this Secret carries, in either
    /// the `kubernetes.io/tls` or Istio's generic layout.
    pub fn tls_material(&self) -> Result<TlsMaterial, String> {
        let pick = |a: &str, b: &str| self.value(a).or_else(|| self.value(b));
        let cert = pick(TLS_CERT, GENERIC_CERT);
        let key = pick(TLS_KEY, GENERIC_KEY);
        let ca = pick(CA_CERT, GENERIC_CA);
        match (cert, key) {
            (Some(c), Some(k)) => Ok(TlsMaterial {
                cert_chain_pem: c,
                private_key_pem: k,
                ca_pem: ca,
            }),
            (c, k) => {
                let mut missing = Vec::new();
                if c.is_none() {
                    missing.push(TLS_CERT);
                }
                if k.is_none() {
                    missing.push(TLS_KEY);
                }
                Err(format!(
                    "Secret {}/{} has no {} (expected keys tls.crt and tls.key, or cert and key)",
                    self.metadata.namespace,
                    self.metadata.name,
                    missing.join(" or ")
                ))
            }
        }
    }

    /// Only a CA bundle (`<name>-cacert` Secrets).
    pub fn ca_only(&self) -> Option<Vec<u8>> {
        self.value(CA_CERT)
            .or_else(|| self.value(GENERIC_CA))
            .or_else(|| self.value(GENERIC_CERT))
    }
}

/// Does `pem` hold at least one block whose label satisfies `label`?
fn has_pem_block(pem: &[u8], label: impl Fn(&str) -> bool) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
            .is_some_and(&label)
    })
}

fn is_valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Admission for Secrets: merge `stringData` into `data`, check keys and
/// base64, and for `kubernetes.io/tls` require PEM `tls.crt` and `tls.key`.
/// Other kinds pass through.
pub fn admit(
    obj: &DynamicObject,
    old: Option<&DynamicObject>,
) -> Result<DynamicObject, FieldError> {
    if obj.resource_kind() != Some(&SECRET) {
        return Ok(obj.clone());
    }
    let mut s: Secret = obj
        .to_typed()
        .map_err(|e| FieldError::new(e.message, &[e.path.as_str()]))?;
    let mut errs = FieldError::default();
    errs.push(crate::istio::validate_name(&s.metadata.name));
    for (k, v) in &s.data {
        if !is_valid_key(k) {
            errs.push(FieldError::invalid_key_name(k, "data").with_details(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        } else if STANDARD.decode(v.trim()).is_err() {
            errs.push(FieldError::invalid_value(
                "illegal base64 data",
                &format!("data[{k}]"),
            ));
        }
    }
    for k in s.string_data.keys() {
        if !is_valid_key(k) {
            errs.push(FieldError::invalid_key_name(k, "stringData"));
        }
    }
    // stringData is write-only: merged into data, never stored.
    let string_data = std::mem::take(&mut s.string_data);
    for (k, v) in string_data {
        s.data.insert(k, STANDARD.encode(v.as_bytes()));
    }
    if s.secret_type() == TYPE_TLS {
        for key in [TLS_CERT, TLS_KEY] {
            if !s.data.contains_key(key) {
                errs.push(
                    FieldError::missing_field(&[&format!("data[{key}]")])
                        .with_details("a kubernetes.io/tls Secret needs tls.crt and tls.key"),
                );
            }
        }
        let check = |key: &str, what: &str, label: &dyn Fn(&str) -> bool| -> FieldError {
            match s.value(key) {
                Some(v) if !has_pem_block(&v, label) => FieldError::invalid_value(
                    format!("no PEM {what} block found"),
                    &format!("data[{key}]"),
                ),
                _ => FieldError::default(),
            }
        };
        errs.push(check(TLS_CERT, "CERTIFICATE", &|l| l == "CERTIFICATE"));
        errs.push(check(TLS_KEY, "PRIVATE KEY", &|l| {
            l.ends_with("PRIVATE KEY")
        }));
        errs.push(check(CA_CERT, "CERTIFICATE", &|l| l == "CERTIFICATE"));
    }
    if let Some(old) = old.and_then(|o| o.to_typed::<Secret>().ok()) {
        if old.secret_type() != s.secret_type() {
            errs.push(FieldError::new(
                format!("field is immutable (was {:?})", old.secret_type()),
                &["type"],
            ));
        }
        if old.immutable == Some(true) && (old.data != s.data || s.immutable != Some(true)) {
            errs.push(FieldError::new(
                "field is immutable when `immutable` is set",
                &["data"],
            ));
        }
    }
    if errs.has_errors() {
        return Err(errs);
    }
    let mut d = s.to_dynamic();
    d.api_version = "v1".to_string();
    d.kind = "Secret".to_string();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_manifest;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn obj(yaml: &str) -> DynamicObject {
        parse_manifest("t", yaml, "default")
            .unwrap()
            .remove(0)
            .object
    }

    #[test]
    fn string_data_is_merged_and_dropped() {
        let o = admit(
            &obj(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {CERT:?}\n  tls.key: {KEY:?}\n"
            )),
            None,
        )
        .unwrap();
        let s: Secret = o.to_typed().unwrap();
        assert!(s.string_data.is_empty());
        assert_eq!(s.data[TLS_CERT], STANDARD.encode(CERT));
        let m = s.tls_material().unwrap();
        assert_eq!(m.private_key_pem, KEY.as_bytes());
        assert_eq!(m.ca_pem, None);
    }

    #[test]
    fn tls_secret_needs_both_keys_and_pem() {
        let e = admit(
            &obj(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n",
                STANDARD.encode("not a cert")
            )),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing field(s): data[tls.key]"), "{e}");
        assert!(
            e.contains("invalid value: no PEM CERTIFICATE block found: data[tls.crt]"),
            "{e}"
        );
        let e = admit(
            &obj("apiVersion: v1\nkind: Secret\nmetadata: {name: c}\ndata: {x: '***'}\n"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "invalid value: illegal base64 data: data[x]");
    }

    #[test]
    fn generic_layout_and_missing_material() {
        let s = Secret {
            data: [
                (GENERIC_CERT.to_string(), STANDARD.encode(CERT)),
                (GENERIC_KEY.to_string(), STANDARD.encode(KEY)),
                (GENERIC_CA.to_string(), STANDARD.encode(CERT)),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(s.tls_material().unwrap().ca_pem.unwrap(), CERT.as_bytes());
        let empty = Secret::default();
        assert!(
            empty
                .tls_material()
                .unwrap_err()
                .contains("no tls.crt or tls.key")
        );
    }

    #[test]
    fn type_is_immutable() {
        let old = obj("apiVersion: v1\nkind: Secret\nmetadata: {name: c}\ntype: Opaque\n");
        let new = obj(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {CERT:?}, tls.key: {KEY:?}}}\n"
        ));
        let e = admit(&new, Some(&old)).unwrap_err().to_string();
        assert!(e.contains("field is immutable"), "{e}");
    }
}
