//! Is a desired object already in place? The reconciler skips a server-side
//! apply (a write, even when it changes nothing) when every field it would set
//! already has that value in the live object, so a Pipeline at rest costs the
//! API server reads only. Fields the API server or other managers added
//! (defaults, status, annotations of other tools) do not count as drift.

use serde_json::Value;

/// True when `live` holds every field of `desired` with the same value.
/// Lists must match element by element (the order is ours under
/// server-side apply). An empty list, an empty map or a null in `desired`
/// also matches a field the API server left out.
pub fn in_place(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(k, w)| match have.get(k) {
            Some(h) => in_place(w, h),
            None => is_empty(w),
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| in_place(w, h))
        }
        (want, Value::Null) => is_empty(want),
        (want, have) => want == have,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::in_place;
    use serde_json::json;

    #[test]
    fn desired_fields_must_be_live_with_the_same_values() {
        for (desired, live, expected) in [
            (json!({"a": 1}), json!({"a": 1, "b": 2}), true),
            (json!({"a": 1}), json!({"a": 2}), false),
            (json!({"a": 1}), json!({}), false),
            (
                json!({"m": {"x": "1"}}),
                json!({"m": {"x": "1", "y": "defaulted"}}),
                true,
            ),
            (json!({"m": {"x": "1"}}), json!({"m": {"x": "2"}}), false),
            // Lists: element-wise, same length (a removed env var is drift).
            (
                json!({"l": [{"n": "A"}]}),
                json!({"l": [{"n": "A", "p": "TCP"}]}),
                true,
            ),
            (
                json!({"l": [{"n": "A"}]}),
                json!({"l": [{"n": "A"}, {"n": "B"}]}),
                false,
            ),
            (
                json!({"l": [{"n": "A"}, {"n": "B"}]}),
                json!({"l": [{"n": "B"}, {"n": "A"}]}),
                false,
            ),
            // What the API server drops when empty.
            (json!({"l": [], "m": {}, "n": null}), json!({}), true),
            (json!({"m": {}}), json!({"m": null}), true),
            (json!({"l": [1]}), json!({}), false),
            // Scalars compare exactly: a replica count is drift.
            (json!({"replicas": 3}), json!({"replicas": 2}), false),
            (json!("500m"), json!("500m"), true),
        ] {
            assert_eq!(in_place(&desired, &live), expected, "{desired} in {live}");
        }
    }
}
