//! Knative's child naming (knative/pkg kmeta.ChildName).

use md5::{Digest, Md5};

const LONGEST: usize = 63;
const HEAD: usize = LONGEST - 32;

/// `parent + suffix`, shortened with an md5 of the parent when it would
/// exceed 63 characters.
pub fn child_name(parent: &str, suffix: &str) -> String {
    let n = format!("{parent}{suffix}");
    if n.len() <= LONGEST {
        return n;
    }
    if suffix.len() < HEAD {
        let keep = HEAD - suffix.len();
        let head = &parent[..keep.min(parent.len())];
        return format!("{head}{}{suffix}", md5_hex(parent));
    }
    // The suffix alone is too long: hash everything and pad with the head of
    // the suffix, trimming trailing non-alphanumerics.
    let head = &parent[..HEAD.min(parent.len())];
    let mut out = format!("{head}{}{suffix}", md5_hex(&n));
    out.truncate(LONGEST);
    while out.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.pop();
    }
    out
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a Configuration's revision for `generation`.
pub fn revision_name(configuration: &str, generation: i64) -> String {
    child_name(configuration, &format!("-{generation:05}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_concatenated() {
        assert_eq!(revision_name("hello", 1), "hello-00001");
        assert_eq!(revision_name("hello", 123456), "hello-123456");
    }

    #[test]
    fn long_names_are_hashed_to_63() {
        let parent = "a".repeat(60);
        let n = revision_name(&parent, 2);
        assert_eq!(n.len(), 63);
        assert!(n.starts_with(&"a".repeat(25)));
        assert!(n.ends_with("-00002"));
        assert_eq!(&n[25..57], md5_hex(&parent));
    }
}
