//! Checks shared by Istio's validators (istio/istio pkg/config/validation):
//! host names, ports, header names and values, regexes, percentages.
//! Messages follow Istio's wording; paths are added by the callers.

use std::net::IpAddr;

use regex::Regex;

use crate::field_error::{CURRENT_FIELD, FieldError};

/// Envoy rejects regex programs that are too big; Istio approximates with
/// the length.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-size budget for user regexes (the regex crate's own default is
/// larger; a route table holds many).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, at most 63 characters (Istio's
/// labels.IsDNS1123Label, which allows upper case).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `*`, `*label`, `*-label` or a plain label.
fn is_wildcard_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    is_dns1123_label(rest)
}

/// Istio's ValidateWildcardDomain: a DNS name whose first label may be a
/// wildcard.
pub fn wildcard_domain(domain: &str) -> Result<(), String> {
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => dns1123_labels(domain, r),
        None => Ok(()),
    }
}

/// Istio's ValidateDNS1123Labels over `labels` (a suffix of `domain`).
fn dns1123_labels(domain: &str, labels: &str) -> Result<(), String> {
    let parts: Vec<&str> = labels.split('.').collect();
    let tld = parts[parts.len() - 1];
    if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot is allowed (`istio.io.`).
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified name without wildcards.
pub fn fqdn(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    dns1123_labels(name, name)
}

pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `::1/128`).
pub fn ip_or_cidr(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((ip, bits)) => {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("bad CIDR range ({s}): invalid IP address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(b) if b <= max => Ok(()),
                _ => Err(format!("bad CIDR range ({s}): invalid prefix length")),
            }
        }
        None => s
            .parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("bad IP address ({s})")),
    }
}

pub fn port(n: i64) -> Result<(), String> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(format!("port number {n} must be in the range 1..65535"))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An RFC 7230 token.
pub fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if !name.bytes().all(is_tchar) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// A header a request `set`/`add` may name (`:authority`/`host` allowed: it
/// becomes a host rewrite).
pub fn request_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if name.starts_with(':') && !is_authority(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// A header `remove` or a response operation may name.
pub fn header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// A header value for a header operation: no control characters, and `%`
/// either doubled or opening an Envoy `%VARIABLE%`.
pub fn header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!("header value configuration {value} is invalid"));
    }
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if b.get(i + 1) == Some(&b'%') {
                i += 2;
                continue;
            }
            match value[i + 1..].find('%') {
                Some(end) if end > 0 => i += end + 2,
                _ => {
                    return Err(
                        "header value configuration: invalid header configuration. Un-escaped %"
                            .to_string(),
                    );
                }
            }
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Compile a user regex the way routes use it: whole-string match (RE2/Envoy
/// `safe_regex` semantics), bounded size. The error names the rule.
pub fn full_match_regex(re: &str) -> Result<Regex, String> {
    if re.is_empty() {
        return Err("regex string match should not be empty".to_string());
    }
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex is too large, max length allowed is {MAX_REGEX_LEN}"
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            format!(
                "{}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
                first_line(&e.to_string())
            )
        })
}

/// Compile a regex used for searching/substitution (uriRegexRewrite).
pub fn search_regex(re: &str) -> Result<Regex, String> {
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex is too large, max length allowed is {MAX_REGEX_LEN}"
        ));
    }
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| first_line(&e.to_string()))
}

fn first_line(s: &str) -> String {
    // The regex crate's errors are multi-line with a caret diagram; keep
    // them on one line for field errors.
    s.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Istio's validatePercentage: 0, or in [0.0001, 100].
pub fn percentage(v: f64) -> Result<(), String> {
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) || v.is_nan() {
        return Err(format!(
            "percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"
        ));
    }
    Ok(())
}

/// An integer percent in 0..=100.
pub fn percent(v: i64) -> Result<(), String> {
    if (0..=100).contains(&v) {
        Ok(())
    } else {
        Err(format!("percentage {v} is not in range 0..100"))
    }
}

/// A Kubernetes label key (`[prefix/]name`) and value.
pub fn label(key: &str, value: &str) -> Result<(), String> {
    use crate::admission::names::qualified_name;
    if !qualified_name(key).is_empty() {
        return Err(format!("invalid label key {key:?}"));
    }
    if !value.is_empty() && (value.contains('/') || !qualified_name(value).is_empty()) {
        return Err(format!("invalid label value {value:?} for key {key:?}"));
    }
    Ok(())
}

/// Shorthand: an error at `path` with `message`.
pub fn err(message: impl Into<String>, path: &str) -> FieldError {
    FieldError::new(message, &[path])
}

/// Shorthand: an error at the current field.
pub fn here(message: impl Into<String>) -> FieldError {
    FieldError::new(message, &[CURRENT_FIELD])
}

/// `Err(message)` → a FieldError at `path`.
pub fn at(r: Result<(), String>, path: &str) -> FieldError {
    match r {
        Ok(()) => FieldError::default(),
        Err(m) => err(m, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for ok in [
            "example.com",
            "*.example.com",
            "*",
            "reviews",
            "a-b.c",
            "istio.io.",
            "*-api.example.com",
        ] {
            assert_eq!(wildcard_domain(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            wildcard_domain("foo.*.com"),
            Err("domain name \"foo.*.com\" invalid (label \"*\" invalid)".into())
        );
        assert!(wildcard_domain("").is_err());
        assert!(wildcard_domain("a..b").is_err());
        assert!(wildcard_domain("example.123").is_err());
        assert!(wildcard_domain("-bad.com").is_err());
    }

    #[test]
    fn headers() {
        assert!(header_name("x-user_type").is_ok());
        assert!(header_name("bad header").is_err());
        assert!(request_header_op_name(":authority").is_ok());
        assert!(request_header_op_name(":path").is_err());
        assert!(header_op_name("Host").is_err());
        assert!(header_value("100%%").is_ok());
        assert!(header_value("%HOSTNAME%").is_ok());
        assert!(header_value("pre %HOSTNAME% post").is_ok());
        assert!(header_value("abc%123").is_err());
        assert!(header_value("line\nbreak").is_err());
    }

    #[test]
    fn regexes() {
        let re = full_match_regex("/api/v[0-9]+").unwrap();
        assert!(re.is_match("/api/v2"));
        assert!(!re.is_match("/api/v2/x"), "whole-string match");
        let e = full_match_regex("(unclosed").unwrap_err();
        assert!(e.contains("RE2"), "{e}");
        assert!(!e.contains('\n'));
        assert!(full_match_regex(&"a".repeat(1025)).is_err());
        assert!(full_match_regex("").is_err());
        // Huge programs are refused, not compiled.
        assert!(full_match_regex("(a{1000}){1000}").is_err());
    }

    #[test]
    fn numbers() {
        assert!(percentage(0.0).is_ok());
        assert!(percentage(0.00001).is_err());
        assert!(percentage(100.1).is_err());
        assert!(port(0).is_err());
        assert!(port(65535).is_ok());
        assert!(ip_or_cidr("10.0.0.0/8").is_ok());
        assert!(ip_or_cidr("10.0.0.0/33").is_err());
        assert!(ip_or_cidr("::1").is_ok());
        assert!(ip_or_cidr("nope").is_err());
        assert!(label("serving.knative.dev/revision", "hello-00001").is_ok());
        assert!(label("bad key!", "v").is_err());
    }
}
