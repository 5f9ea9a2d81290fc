//! Knative's field masks (serving pkg/apis/serving/fieldmask.go): a field a
//! revision may not carry is reported as `must not set the field(s)` at its
//! JSON path. Skiff checks the JSON object directly: a key is set when its
//! value is not null and, for Go's non-pointer scalars, not the zero value.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::field_error::FieldError;

/// Keys that are Go pointers (or nullable) in the Kubernetes types: set as
/// soon as they are present, even with a zero value.
const POINTER_FIELDS: &[&str] = &[
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "shareProcessNamespace",
    "priority",
    "runtimeClassName",
    "setHostnameAsFQDN",
    "preemptionPolicy",
    "hostUsers",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "privileged",
    "procMount",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "fsGroup",
    "optional",
    "mountPropagation",
    "recursiveReadOnly",
    "restartPolicy",
];

/// True when `v` under `key` counts as set.
pub fn is_set(key: &str, v: &Value) -> bool {
    match v {
        Value::Null => false,
        _ if POINTER_FIELDS.contains(&key) => true,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `must not set the field(s)` for every set key of `obj` not in `allowed`.
pub fn check(obj: &Map<String, Value>, allowed: &[&str]) -> FieldError {
    let bad: Vec<&str> = obj
        .iter()
        .filter(|(k, v)| !allowed.contains(&k.as_str()) && is_set(k, v))
        .map(|(k, _)| k.as_str())
        .collect();
    if bad.is_empty() {
        FieldError::default()
    } else {
        FieldError::disallowed_fields(&bad)
    }
}

/// The same for a typed struct's `extra` map (its modelled fields are all
/// allowed).
pub fn check_extra(extra: &BTreeMap<String, Value>, allowed: &[&str]) -> FieldError {
    let bad: Vec<&str> = extra
        .iter()
        .filter(|(k, v)| !allowed.contains(&k.as_str()) && is_set(k, v))
        .map(|(k, _)| k.as_str())
        .collect();
    if bad.is_empty() {
        FieldError::default()
    } else {
        FieldError::disallowed_fields(&bad)
    }
}

/// `v` as an object, or an empty one.
pub fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
