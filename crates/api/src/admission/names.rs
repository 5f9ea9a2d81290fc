//! Kubernetes' name rules (apimachinery util/validation), with its messages.

const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_dns1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && !b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_dns1123_label)
}

/// IsDNS1035Label (empty when valid).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push(max_len(63));
    }
    if !is_dns1035(s) {
        msgs.push(DNS1035_MSG.to_string());
    }
    msgs
}

/// NameIsDNS1035Label(name, prefix): a generateName prefix may end in `-`
/// (apimachinery masks the trailing dash; like it, this replaces the last two
/// characters by `a`).
pub fn name_is_dns1035(s: &str, prefix: bool) -> Vec<String> {
    if prefix && s.len() > 1 && s.ends_with('-') {
        let masked = format!("{}a", &s[..s.len() - 2]);
        return dns1035_label(&masked);
    }
    dns1035_label(s)
}

/// IsDNS1123Label.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push(max_len(63));
    }
    if !is_dns1123_label(s) {
        if is_dns1123_subdomain(s) {
            msgs.push("must not contain dots".to_string());
        } else {
            msgs.push(DNS1123_LABEL_MSG.to_string());
        }
    }
    msgs
}

/// IsDNS1123Subdomain.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 253 {
        msgs.push(max_len(253));
    }
    if !is_dns1123_subdomain(s) {
        msgs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    msgs
}

/// IsQualifiedName (a label key: optional DNS subdomain prefix and `/`).
pub fn qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let mut msgs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                msgs.push("prefix part must be non-empty".to_string());
            } else {
                msgs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a valid label key {QUALIFIED_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        msgs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        msgs.push(format!("name part {}", max_len(63)));
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        msgs.push(format!("name part {QUALIFIED_MSG}"));
    }
    msgs
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(msgs: &[String]) -> String {
    format!("[{}]", msgs.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1035_label("hello-1").is_empty());
        assert_eq!(dns1035_label("1hello").len(), 1);
        assert_eq!(dns1035_label(&"a".repeat(64)), vec![max_len(63)]);
        assert!(name_is_dns1035("hello-", true).is_empty());
        assert!(!name_is_dns1035("hello-", false).is_empty());
        assert_eq!(
            dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
        assert!(dns1123_label("1abc").is_empty());
        assert!(qualified_name("Hello.World_1").is_empty());
        assert!(qualified_name("example.com/Name").is_empty());
        assert_eq!(
            qualified_name("-bad"),
            vec![format!("name part {QUALIFIED_MSG}")]
        );
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(dns1123_subdomain("my-sa.team").is_empty());
        assert!(!dns1123_subdomain("My_SA").is_empty());
    }
}
