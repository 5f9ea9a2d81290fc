//! Knative's field errors (knative/pkg apis/field_error.go): a message, the
//! paths it applies to, optional details, and a level. Errors are collected, not
//! returned first-only; rendering merges equal messages and sorts everything, so
//! the text a user sees is exactly what Knative's webhook would print.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    message: String,
    paths: Vec<String>,
    details: String,
    level: Level,
}

/// A set of field errors (possibly empty). Build with the constructors, prefix
/// paths with the `via_*` methods as the error travels up, combine with `also`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldError {
    entries: Vec<Entry>,
}

pub const CURRENT_FIELD: &str = "";

impl FieldError {
    pub fn new(message: impl Into<String>, paths: &[&str]) -> FieldError {
        FieldError {
            entries: vec![Entry {
                message: message.into(),
                paths: paths.iter().map(|p| p.to_string()).collect(),
                details: String::new(),
                level: Level::Error,
            }],
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> FieldError {
        let details = details.into();
        for e in &mut self.entries {
            e.details = details.clone();
        }
        self
    }

    pub fn at_level(mut self, level: Level) -> FieldError {
        for e in &mut self.entries {
            e.level = level;
        }
        self
    }

    pub fn missing_field(paths: &[&str]) -> FieldError {
        FieldError::new("missing field(s)", paths)
    }

    pub fn disallowed_fields(paths: &[&str]) -> FieldError {
        FieldError::new("must not set the field(s)", paths)
    }

    pub fn invalid_value(value: impl fmt::Display, path: &str) -> FieldError {
        FieldError::new(format!("invalid value: {value}"), &[path])
    }

    pub fn missing_one_of(paths: &[&str]) -> FieldError {
        FieldError::new("expected exactly one, got neither", paths)
    }

    pub fn multiple_one_of(paths: &[&str]) -> FieldError {
        FieldError::new("expected exactly one, got both", paths)
    }

    pub fn invalid_key_name(key: &str, path: &str) -> FieldError {
        FieldError::new(format!("invalid key name {key:?}"), &[path])
    }

    pub fn out_of_bounds(
        value: impl fmt::Display,
        lo: impl fmt::Display,
        hi: impl fmt::Display,
        path: &str,
    ) -> FieldError {
        FieldError::new(format!("expected {lo} <= {value} <= {hi}"), &[path])
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if any entry is an error (not a warning).
    pub fn has_errors(&self) -> bool {
        self.entries.iter().any(|e| e.level == Level::Error)
    }

    /// Only the entries at `level`.
    pub fn filter(&self, level: Level) -> FieldError {
        FieldError {
            entries: self
                .entries
                .iter()
                .filter(|e| e.level == level)
                .cloned()
                .collect(),
        }
    }

    pub fn also(mut self, other: FieldError) -> FieldError {
        self.entries.extend(other.entries);
        self
    }

    pub fn push(&mut self, other: FieldError) {
        self.entries.extend(other.entries);
    }

    /// Prefix every path with `prefix` (which may itself contain dots and
    /// `[index]` segments).
    pub fn via_field(mut self, prefix: &str) -> FieldError {
        for e in &mut self.entries {
            for p in &mut e.paths {
                *p = flatten(&[prefix, p]);
            }
        }
        self
    }

    pub fn via_index(self, index: usize) -> FieldError {
        self.via_field(&format!("[{index}]"))
    }

    pub fn via_key(self, key: &str) -> FieldError {
        self.via_field(&format!("[{key}]"))
    }

    pub fn via_field_index(self, field: &str, index: usize) -> FieldError {
        self.via_index(index).via_field(field)
    }

    pub fn via_field_key(self, field: &str, key: &str) -> FieldError {
        self.via_key(key).via_field(field)
    }

    /// Entries after merging equal (message, details, level) and sorting, as
    /// Knative renders them.
    fn normalized(&self) -> Vec<Entry> {
        let mut merged: Vec<Entry> = Vec::new();
        for e in &self.entries {
            match merged
                .iter_mut()
                .find(|m| m.message == e.message && m.details == e.details && m.level == e.level)
            {
                Some(m) => m.paths.extend(e.paths.iter().cloned()),
                None => merged.push(e.clone()),
            }
        }
        for m in &mut merged {
            m.paths.sort();
            m.paths.dedup();
        }
        merged.sort_by(|a, b| {
            (&a.message, &a.details, a.level).cmp(&(&b.message, &b.details, b.level))
        });
        merged
    }

    /// Each rendered line, for callers that want to print per error.
    pub fn lines(&self) -> Vec<String> {
        self.normalized().iter().map(render).collect()
    }
}

fn render(e: &Entry) -> String {
    let mut s = format!("{}: {}", e.message, e.paths.join(", "));
    if !e.details.is_empty() {
        s.push('\n');
        s.push_str(&e.details);
    }
    s
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for FieldError {}

fn is_index(p: &str) -> bool {
    p.starts_with('[') && p.ends_with(']')
}

/// Join path segments with dots, attaching `[i]` segments to their predecessor
/// and dropping empty segments (knative/pkg `flatten`). Like upstream it splits
/// on every dot, so a key containing dots renders as `annotations.[a.b/c]`:
/// users compare these strings with Knative's, quirks included.
fn flatten(parts: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    for part in parts {
        for p in part.split('.') {
            if p.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if is_index(p) => last.push_str(p),
                _ => out.push(p.to_string()),
            }
        }
    }
    out.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_like_knative() {
        let e = FieldError::missing_field(&["tag"])
            .via_index(0)
            .via_field("traffic")
            .via_field("spec");
        assert_eq!(e.to_string(), "missing field(s): spec.traffic[0].tag");
        let e = FieldError::invalid_value("x", CURRENT_FIELD).via_field_index("tag", 2);
        assert_eq!(
            e.via_field("traffic").via_field("spec").to_string(),
            "invalid value: x: spec.traffic.tag[2]"
        );
    }

    #[test]
    fn equal_messages_merge_and_sort() {
        let e = FieldError::missing_field(&["b"])
            .also(FieldError::invalid_value(3, "c"))
            .also(FieldError::missing_field(&["a"]));
        assert_eq!(e.to_string(), "invalid value: 3: c\nmissing field(s): a, b");
    }

    #[test]
    fn details_render_on_their_own_line() {
        let e = FieldError::invalid_value(8012, "ports.containerPort")
            .with_details("8012 is a reserved port, please use a different value");
        assert_eq!(
            e.to_string(),
            "invalid value: 8012: ports.containerPort\n8012 is a reserved port, please use a different value"
        );
    }

    #[test]
    fn keys_render_like_upstream() {
        let e = FieldError::invalid_value("x", CURRENT_FIELD)
            .via_key("queue.sidecar.serving.knative.dev/cpu-resource-request")
            .via_field("metadata.annotations");
        assert_eq!(
            e.to_string(),
            "invalid value: x: metadata.annotations.[queue.sidecar.serving.knative.dev/cpu-resource-request]"
        );
        let e = FieldError::missing_field(&[CURRENT_FIELD])
            .via_key("plain")
            .via_field("data");
        assert_eq!(e.to_string(), "missing field(s): data[plain]");
    }
}
