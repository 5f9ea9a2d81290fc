//! Manifests in, objects out: multi-document YAML (`---`) or JSON (an object,
//! an array, or a `kind: List`), each document checked for the identity fields
//! every object needs. Errors name the document (by position and, once known,
//! by kind and name) and the field.

use std::fmt;

use serde_json::Value;

use crate::object::{self, DynamicObject};

/// One parsed document of a manifest.
#[derive(Debug, Clone)]
pub struct Document {
    /// 1-based position in the input (after expanding `List`s).
    pub index: usize,
    pub object: DynamicObject,
}

/// A document that could not be turned into an object.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentError {
    pub index: usize,
    /// `Kind namespace/name` when the document got that far.
    pub identity: Option<String>,
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity {
            Some(id) => write!(f, "document {} ({id}): {}", self.index, self.message),
            None => write!(f, "document {}: {}", self.index, self.message),
        }
    }
}

/// The whole input could not be parsed (bad YAML or JSON syntax).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SyntaxError {
    pub source_name: String,
    pub message: String,
}

/// Parse `text` into raw JSON values, one per document. Empty documents are
/// skipped; `kind: List` and JSON arrays are expanded.
pub fn parse_values(source_name: &str, text: &str) -> Result<Vec<Value>, SyntaxError> {
    let trimmed = text.trim_start();
    let raw: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON: one value, or several concatenated.
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            out.push(v.map_err(|e| SyntaxError {
                source_name: source_name.to_string(),
                message: format!("invalid JSON: {e}"),
            })?);
        }
        out
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| SyntaxError {
            source_name: source_name.to_string(),
            message: format!("invalid YAML: {e}"),
        })?
    };
    let mut docs = Vec::new();
    for v in raw {
        expand(v, &mut docs);
    }
    Ok(docs)
}

fn expand(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Null => {}
        Value::Array(items) => items.into_iter().for_each(|i| expand(i, out)),
        Value::Object(ref m)
            if m.get("kind").and_then(Value::as_str) == Some("List")
                && m.get("items").is_some_and(Value::is_array) =>
        {
            if let Value::Object(mut m) = v
                && let Some(Value::Array(items)) = m.remove("items")
            {
                items.into_iter().for_each(|i| expand(i, out));
            }
        }
        other => out.push(other),
    }
}

/// Parse a manifest into objects. Every document is checked; the result is
/// either all documents or all the errors found (a file is all or nothing).
pub fn parse_manifest(
    source_name: &str,
    text: &str,
    default_namespace: &str,
) -> Result<Vec<Document>, ManifestError> {
    let values = parse_values(source_name, text).map_err(ManifestError::Syntax)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match to_object(i + 1, v, default_namespace) {
            Ok(object) => docs.push(Document {
                index: i + 1,
                object,
            }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        if docs.is_empty() {
            return Err(ManifestError::Syntax(SyntaxError {
                source_name: source_name.to_string(),
                message: "no objects found".to_string(),
            }));
        }
        Ok(docs)
    } else {
        Err(ManifestError::Documents {
            source_name: source_name.to_string(),
            errors,
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Syntax(SyntaxError),
    #[error("{}", render_documents(.source_name, .errors))]
    Documents {
        source_name: String,
        errors: Vec<DocumentError>,
    },
}

fn render_documents(source_name: &str, errors: &[DocumentError]) -> String {
    errors
        .iter()
        .map(|e| format!("{source_name}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drop fields whose value is null, as the Kubernetes API server does: in
/// YAML `annotations:` with nothing after it means "no annotations".
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Check one document's identity and convert it to an object.
pub fn to_object(
    index: usize,
    mut v: Value,
    default_namespace: &str,
) -> Result<DynamicObject, DocumentError> {
    strip_nulls(&mut v);
    let err = |identity: Option<String>, message: String| DocumentError {
        index,
        identity,
        message,
    };
    let Value::Object(map) = &v else {
        return Err(err(
            None,
            format!("expected a mapping (an object), got {}", type_name(&v)),
        ));
    };
    let str_field = |name: &str| map.get(name).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (str_field("apiVersion"), str_field("kind"));
    let mut missing: Vec<&str> = Vec::new();
    if api_version.is_empty() {
        missing.push("apiVersion");
    }
    if kind.is_empty() {
        missing.push("kind");
    }
    if !missing.is_empty() {
        return Err(err(
            None,
            format!("missing field(s): {}", missing.join(", ")),
        ));
    }
    let Some(rk) = object::lookup(api_version, kind) else {
        let known: Vec<String> = object::KINDS
            .iter()
            .map(|k| format!("{} {}", k.api_version(), k.kind))
            .collect();
        return Err(err(
            None,
            format!(
                "unknown kind {kind:?} in apiVersion {api_version:?}: Skiff serves {}",
                known.join(", ")
            ),
        ));
    };
    let mut obj: DynamicObject = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        err(
            Some(rk.kind.to_string()),
            format!("invalid value at {}: {}", e.path(), e.inner()),
        )
    })?;
    if obj.metadata.namespace.is_empty() && rk.namespaced {
        obj.metadata.namespace = default_namespace.to_string();
    }
    let identity = format!(
        "{} {}/{}",
        rk.kind,
        obj.metadata.namespace,
        if obj.metadata.name.is_empty() {
            "<unnamed>"
        } else {
            &obj.metadata.name
        }
    );
    if obj.metadata.name.is_empty() && obj.metadata.generate_name.is_none() {
        return Err(err(
            Some(identity),
            "name or generateName is required: metadata.name".to_string(),
        ));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata:
  name: r
  namespace: other
spec: {}
---
";

    #[test]
    fn multi_document_yaml() {
        let docs = parse_manifest("f.yaml", TWO_DOCS, "default").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].object.metadata.namespace, "default");
        assert_eq!(docs[1].object.metadata.namespace, "other");
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn json_and_lists() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"serving.knative.dev/v1","kind":"Route","metadata":{"name":"a"}}]}"#;
        let docs = parse_manifest("f.json", text, "default").unwrap();
        assert_eq!(docs[0].object.kind, "Route");
    }

    #[test]
    fn errors_name_document_and_field() {
        let text = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {}\n---\nkind: Foo\napiVersion: x/v1\nmetadata: {name: a}\n";
        let err = parse_manifest("f.yaml", text, "default").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("f.yaml: document 1 (Service default/<unnamed>): name or generateName is required: metadata.name"), "{msg}");
        assert!(
            msg.contains("f.yaml: document 2: unknown kind \"Foo\""),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let text =
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: a, labels: [1]}\n";
        let msg = parse_manifest("f.yaml", text, "default")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metadata.labels"), "{msg}");
    }

    #[test]
    fn null_fields_mean_unset() {
        let text = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\nspec:\n  template:\n    metadata:\n      annotations:\n";
        let docs = parse_manifest("f.yaml", text, "default").unwrap();
        assert!(docs[0].object.metadata.annotations.is_empty());
        assert_eq!(
            docs[0].object.body["spec"]["template"],
            serde_json::json!({"metadata": {}})
        );
    }

    #[test]
    fn bad_syntax() {
        let err = parse_manifest("f.yaml", "a: [1, 2", "default").unwrap_err();
        assert!(matches!(err, ManifestError::Syntax(_)));
    }
}
