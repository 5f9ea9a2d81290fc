//! The peer identity of a verified client certificate: its URI subject
//! alternative names (SPIFFE IDs, `spiffe://cluster.local/ns/x/sa/y`), read
//! with a minimal DER walk (rustls verifies the certificate; this only
//! locates one extension).

/// OID 2.5.29.17 (subjectAltName), DER-encoded body.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The TLVs of a constructed value.
fn children(mut b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = tlv(b)?;
        b = rest;
        Some((tag, content))
    })
}

/// URI SANs of a DER certificate (empty if it has none or is malformed).
pub fn uri_sans(cert_der: &[u8]) -> Vec<String> {
    fn inner(cert_der: &[u8]) -> Option<Vec<String>> {
        let (_, cert, _) = tlv(cert_der)?;
        let (_, tbs, _) = tlv(cert)?;
        // Extensions are the [3] explicit tag of TBSCertificate.
        let (_, exts_wrapper) = children(tbs).find(|(tag, _)| *tag == 0xa3)?;
        let (_, exts, _) = tlv(exts_wrapper)?;
        for (_, ext) in children(exts) {
            let mut parts = children(ext);
            let (oid_tag, oid) = parts.next()?;
            if oid_tag != 0x06 || oid != SAN_OID {
                continue;
            }
            // Optional `critical` BOOLEAN, then the OCTET STRING.
            let value = parts.find(|(tag, _)| *tag == 0x04)?.1;
            let (_, names, _) = tlv(value)?;
            return Some(
                children(names)
                    // [6] IMPLICIT IA5String: uniformResourceIdentifier.
                    .filter(|(tag, _)| *tag == 0x86)
                    .filter_map(|(_, v)| std::str::from_utf8(v).ok().map(str::to_string))
                    .collect(),
            );
        }
        Some(Vec::new())
    }
    inner(cert_der).unwrap_or_default()
}

/// The principal Istio's authorization compares: the first SPIFFE URI
/// without its scheme (`cluster.local/ns/default/sa/sleep`), else the first
/// URI as is.
pub fn principal(cert_der: &[u8]) -> Option<String> {
    let uris = uri_sans(cert_der);
    uris.iter()
        .find_map(|u| u.strip_prefix("spiffe://").map(str::to_string))
        .or_else(|| uris.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_uri_from_rcgen_cert() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
                .try_into()
                .unwrap(),
        ));
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            uri_sans(cert.der()),
            ["spiffe://cluster.local/ns/default/sa/sleep"]
        );
        assert_eq!(
            principal(cert.der()).as_deref(),
            Some("cluster.local/ns/default/sa/sleep")
        );
        let plain = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(uri_sans(plain.der()).is_empty());
        assert_eq!(principal(plain.der()), None);
    }

    #[test]
    fn garbage_is_not_a_panic() {
        for b in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01],
        ] {
            assert!(uri_sans(b).is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_der_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = uri_sans(&b);
        }
    }
}
