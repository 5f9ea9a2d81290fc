//! Image references as go-containerregistry's `name.ParseReference` (weak
//! validation) accepts them: `[registry/]repository[:tag]` or
//! `[registry/]repository@sha256:<64 hex>`.

fn check_element(element: &str, allowed: &str, min: usize, max: usize) -> bool {
    let n = element.chars().count();
    n >= min && n <= max && element.chars().all(|c| allowed.contains(c))
}

const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const REPO_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";

fn registry_ok(r: &str) -> bool {
    // An RFC 3986 authority: host (name or [v6]) and an optional port.
    if r.is_empty() {
        return true;
    }
    let (host, port) = match r.rfind(':') {
        Some(i) if !r[i..].contains(']') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    };
    let host_ok = if host.starts_with('[') {
        host.ends_with(']')
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=".contains(c))
    };
    host_ok && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn repository_ok(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let (registry, repo) = match name.split_once('/') {
        Some((reg, repo)) if reg.contains('.') || reg.contains(':') => (reg, repo),
        _ => ("", name),
    };
    check_element(repo, REPO_CHARS, 2, 255) && registry_ok(registry)
}

fn tag_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let (base, tag) = match parts.last() {
        Some(last) if parts.len() > 1 && !last.contains('/') => {
            (parts[..parts.len() - 1].join(":"), *last)
        }
        _ => (s.to_string(), ""),
    };
    if !tag.is_empty() && !check_element(tag, TAG_CHARS, 1, 128) {
        return false;
    }
    repository_ok(&base)
}

fn digest_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('@').collect();
    let [base, dig] = parts.as_slice() else {
        return false;
    };
    let Some(hex) = dig.strip_prefix("sha256:") else {
        return false;
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    tag_ok(base) || repository_ok(base)
}

/// `Err` with go-containerregistry's message when `s` is not a reference.
pub fn parse_reference(s: &str) -> Result<(), String> {
    if tag_ok(s) || digest_ok(s) {
        Ok(())
    } else {
        Err(format!("could not parse reference: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_reference;

    #[test]
    fn references() {
        for ok in [
            "ghcr.io/knative/helloworld-go:latest",
            "gcr.io/knative-samples/autoscale-go",
            "busybox",
            "localhost:5000/app:v1",
            "registry.example.com/team/api",
            "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "example.com/custom",
        ] {
            assert!(parse_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "docker.io/{username}/app",
            "UPPER/case",
            "a",
            "app@sha256:123",
            "with space",
        ] {
            assert_eq!(
                parse_reference(bad),
                Err(format!("could not parse reference: {bad}")),
                "{bad}"
            );
        }
    }
}
