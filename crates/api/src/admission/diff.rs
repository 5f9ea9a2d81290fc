//! A short diff of two values (knative/pkg kmp.ShortDiff's shape): one entry
//! per changed leaf, `{<type>}.<Path>:` then `-: "<old>"` and `+: "<new>"`.
//! Skiff walks JSON, so paths use the Go field names derived from the JSON
//! names (`containers` -> `Containers`) and inlined pod spec fields appear
//! under `.PodSpec`.

use serde_json::Value;

const POD_SPEC_FIELDS: &[&str] = &[
    "containers",
    "volumes",
    "serviceAccountName",
    "imagePullSecrets",
    "enableServiceLinks",
    "automountServiceAccountToken",
    "initContainers",
];

/// The diff of `old` and `new` (empty when equal). `root` is the Go type,
/// e.g. `v1.RevisionSpec`.
pub fn short_diff(root: &str, old: &Value, new: &Value) -> String {
    let mut out = String::new();
    walk(&format!("{{{root}}}"), root, old, new, &mut out);
    out
}

fn go_name(parent_type: &str, key: &str) -> String {
    let mut cap = String::new();
    let mut chars = key.chars();
    if let Some(first) = chars.next() {
        cap.extend(first.to_uppercase());
        cap.push_str(chars.as_str());
    }
    let cap = match cap.as_str() {
        "HttpGet" => "HTTPGet".to_string(),
        "TcpSocket" => "TCPSocket".to_string(),
        "Grpc" => "GRPC".to_string(),
        _ => cap,
    };
    if parent_type == "v1.RevisionSpec" && POD_SPEC_FIELDS.contains(&key) {
        format!("PodSpec.{cap}")
    } else {
        cap
    }
}

fn leaf(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn walk(path: &str, ty: &str, old: &Value, new: &Value, out: &mut String) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let child_ty = if ty == "v1.RevisionTemplateSpec" && k == "spec" {
                    "v1.RevisionSpec"
                } else {
                    ""
                };
                let p = format!("{path}.{}", go_name(ty, k));
                walk(
                    &p,
                    child_ty,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), "", x, y, out);
            }
        }
        _ => {
            out.push_str(&format!("{path}:\n"));
            if !old.is_null() {
                out.push_str(&format!("\t-: \"{}\"\n", leaf(old)));
            }
            if !new.is_null() {
                out.push_str(&format!("\t+: \"{}\"\n", leaf(new)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_leaves() {
        let old = json!({"containers": [{"image": "a"}], "timeoutSeconds": 300});
        let new = json!({"containers": [{"image": "b"}], "timeoutSeconds": 300});
        assert_eq!(
            short_diff("v1.RevisionSpec", &old, &new),
            "{v1.RevisionSpec}.PodSpec.Containers[0].Image:\n\t-: \"a\"\n\t+: \"b\"\n"
        );
        let added = short_diff("v1.RevisionSpec", &json!({}), &json!({"timeoutSeconds": 5}));
        assert_eq!(added, "{v1.RevisionSpec}.TimeoutSeconds:\n\t+: \"5\"\n");
        assert_eq!(short_diff("x", &old, &old), "");
    }
}
