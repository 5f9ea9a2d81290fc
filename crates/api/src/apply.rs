//! `kubectl apply` semantics for an object that already exists: a three-way
//! JSON merge between the last applied manifest (kept in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation), the new
//! manifest and the live object, as kubectl does for custom resources (JSON
//! merge patch: maps merge, lists are replaced whole). Fields the server set
//! (Knative's defaults, the creator annotations) survive a re-apply; fields
//! the user removed from the manifest are removed.

use serde_json::{Map, Value};

use crate::labels::LAST_APPLIED;
use crate::object::DynamicObject;

/// The object to admit when `manifest` is applied over `live`.
pub fn merge(manifest: &DynamicObject, live: &DynamicObject) -> DynamicObject {
    let new = to_value(manifest);
    let last = live
        .metadata
        .annotations
        .get(LAST_APPLIED)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut live_v = to_value(live);
    if let Some(o) = live_v.as_object_mut() {
        o.remove("status");
    }
    let patch = three_way(&last, &new);
    let mut merged = apply_patch(live_v, &patch);
    // Identity fields always come from the manifest's kind and the live object.
    if let Some(o) = merged.as_object_mut() {
        o.insert(
            "apiVersion".into(),
            Value::String(manifest.api_version.clone()),
        );
        o.insert("kind".into(), Value::String(manifest.kind.clone()));
    }
    let mut out: DynamicObject =
        serde_json::from_value(merged).unwrap_or_else(|_| manifest.clone());
    record_last_applied(&mut out, manifest);
    out
}

/// Store `manifest` (without the annotation itself) as the last applied
/// configuration of `obj`.
pub fn record_last_applied(obj: &mut DynamicObject, manifest: &DynamicObject) {
    let mut m = manifest.clone();
    m.metadata.annotations.remove(LAST_APPLIED);
    m.body.remove("status");
    if let Ok(s) = serde_json::to_string(&m) {
        obj.metadata
            .annotations
            .insert(LAST_APPLIED.into(), format!("{s}\n"));
    }
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// The merge patch taking `last` to `new`: changed keys set, keys the user
/// dropped deleted (null).
fn three_way(last: &Value, new: &Value) -> Value {
    let (Some(l), Some(n)) = (last.as_object(), new.as_object()) else {
        return new.clone();
    };
    let mut patch = Map::new();
    for (k, nv) in n {
        match l.get(k) {
            Some(lv) if lv == nv => {}
            Some(lv) if lv.is_object() && nv.is_object() => {
                let p = three_way(lv, nv);
                if p.as_object().is_some_and(|o| !o.is_empty()) {
                    patch.insert(k.clone(), p);
                }
            }
            _ => {
                patch.insert(k.clone(), nv.clone());
            }
        }
    }
    for k in l.keys() {
        if !n.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    Value::Object(patch)
}

/// RFC 7386 JSON merge patch.
fn apply_patch(target: Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else {
        return patch.clone();
    };
    let mut t = match target {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else if v.is_object() {
            let cur = t.remove(k).unwrap_or(Value::Null);
            t.insert(k.clone(), apply_patch(cur, v));
        } else {
            t.insert(k.clone(), v.clone());
        }
    }
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn server_defaults_survive_and_removed_fields_go() {
        let first = obj(
            json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "a", "labels": {"team": "x"}},
            "spec": {"template": {"spec": {"containers": [{"image": "i1"}]}}}}),
        );
        let mut live = obj(
            json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "a", "labels": {"team": "x"},
                "annotations": {"serving.knative.dev/creator": "alice"}},
            "spec": {"template": {"spec": {"timeoutSeconds": 300,
                "containers": [{"image": "i1", "name": "user-container"}]}}},
            "status": {"url": "http://a"}}),
        );
        record_last_applied(&mut live, &first);
        // Same manifest again: nothing but what the server set.
        let again = merge(&first, &live);
        assert_eq!(again.body["spec"], live.body["spec"]);
        assert_eq!(
            again.metadata.annotations["serving.knative.dev/creator"],
            "alice"
        );
        assert!(again.body.get("status").is_none());
        // A new image replaces the list; the label the user dropped goes.
        let second = obj(
            json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "a"},
            "spec": {"template": {"spec": {"containers": [{"image": "i2"}]}}}}),
        );
        let m = merge(&second, &live);
        assert_eq!(m.body["spec"]["template"]["spec"]["timeoutSeconds"], 300);
        assert_eq!(
            m.body["spec"]["template"]["spec"]["containers"],
            json!([{"image": "i2"}])
        );
        assert!(m.metadata.labels.is_empty());
        assert!(m.metadata.annotations[LAST_APPLIED].contains("\"i2\""));
    }
}
