//! Three-way merge of JSON values, and the plain `Json` kind.
//!
//! Objects merge key by key, recursively: a key changed (added, deleted) on one side only takes that
//! change; both sides making the same change is not a conflict; anything else (including deleted on
//! one side and changed on the other) is a conflict at that key's JSON pointer, resolved by `prefer`.
//! When both sides turn a key into objects (e.g. both added it), those objects merge key by key
//! against the base object (or an empty one if the base was not an object).
//!
//! Arrays, scalars and non-object roots are whole values. Arrays are deliberately *not* merged
//! element-wise: OpenCode's arrays (plugins, instructions, permissions lists) are small and
//! order-sensitive, and an element-wise merge would silently produce combinations neither machine
//! ever had; a visible conflict is the safer outcome.
//!
//! Key order is stable: local's keys in local's order, then keys that exist only on the remote side
//! in remote's order.

use serde_json::{Map, Value};

use super::{Conflict, Input, MergeError, MergeOutcome, Side};

/// Three-way merges two JSON values. `None` base means "never synced" and counts as `{}`.
pub fn merge_values(
    base: Option<&Value>,
    local: &Value,
    remote: &Value,
    prefer: Side,
) -> (Value, Vec<Conflict>) {
    let empty = Value::Object(Map::new());
    let base = base.unwrap_or(&empty);
    let mut conflicts = Vec::new();
    let merged = merge_at(
        &mut String::new(),
        Some(base),
        Some(local),
        Some(remote),
        prefer,
        &mut conflicts,
    )
    // Both roots are present, so a merged root always exists.
    .unwrap_or(Value::Null);
    (merged, conflicts)
}

/// Merges one slot; `None` means the key is absent on that side. Returns `None` if the merged slot is
/// absent (deleted).
fn merge_at(
    path: &mut String,
    base: Option<&Value>,
    local: Option<&Value>,
    remote: Option<&Value>,
    prefer: Side,
    conflicts: &mut Vec<Conflict>,
) -> Option<Value> {
    if local == remote {
        return local.cloned();
    }
    // Two objects always merge key by key (even if one side is unchanged) so that the key order
    // rule holds: local's order, then remote's new keys.
    if let (Some(Value::Object(l)), Some(Value::Object(r))) = (local, remote) {
        let empty = Map::new();
        let b = match base {
            Some(Value::Object(b)) => b,
            _ => &empty,
        };
        return Some(Value::Object(merge_objects(
            path, b, l, r, prefer, conflicts,
        )));
    }
    if base == remote {
        return local.cloned();
    }
    if base == local {
        return remote.cloned();
    }
    conflicts.push(Conflict {
        path: path.clone(),
        local: local.map(render),
        remote: remote.map(render),
        base: base.map(render),
    });
    match prefer {
        Side::Local => local.cloned(),
        Side::Remote => remote.cloned(),
    }
}

fn merge_objects(
    path: &mut String,
    base: &Map<String, Value>,
    local: &Map<String, Value>,
    remote: &Map<String, Value>,
    prefer: Side,
    conflicts: &mut Vec<Conflict>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let keys = local
        .keys()
        .chain(remote.keys().filter(|k| !local.contains_key(*k)));
    for key in keys {
        let len = path.len();
        push_pointer_token(path, key);
        if let Some(v) = merge_at(
            path,
            base.get(key),
            local.get(key),
            remote.get(key),
            prefer,
            conflicts,
        ) {
            out.insert(key.clone(), v);
        }
        path.truncate(len);
    }
    out
}

/// Appends `/key` with RFC 6901 escaping (`~` → `~0`, `/` → `~1`).
fn push_pointer_token(path: &mut String, key: &str) {
    path.push('/');
    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

/// Compact, shortened JSON rendering for a conflict report.
pub(crate) fn render(v: &Value) -> String {
    super::short(&v.to_string())
}

/// Parses one side as strict JSON. Empty (whitespace-only) text is `{}`. A UTF-8 BOM is allowed.
fn parse_strict(bytes: &[u8], side: Input) -> Result<Value, MergeError> {
    let text = super::utf8(bytes, side)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).map_err(|e| MergeError::InvalidJson {
        side,
        message: e.to_string(),
    })
}

/// Pretty JSON with 2-space indent and a trailing newline.
pub(crate) fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_else(|_| v.to_string().into_bytes());
    out.push(b'\n');
    out
}

/// The `Json` kind: value merge; local bytes are kept exactly if the merged value equals local's.
pub fn merge_json(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    prefer: Side,
) -> Result<MergeOutcome, MergeError> {
    let b = base.map(|b| parse_strict(b, Input::Base)).transpose()?;
    let l = parse_strict(local, Input::Local)?;
    let r = parse_strict(remote, Input::Remote)?;
    let (merged, conflicts) = merge_values(b.as_ref(), &l, &r, prefer);
    let bytes = if merged == l {
        local.to_vec()
    } else {
        pretty(&merged)
    };
    Ok(MergeOutcome { bytes, conflicts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{MergeKind, merge};
    use serde_json::json;

    fn mv(base: Value, local: Value, remote: Value, prefer: Side) -> (Value, Vec<Conflict>) {
        merge_values(Some(&base), &local, &remote, prefer)
    }

    #[test]
    fn one_side_changes_are_taken() {
        let base = json!({"a": 1, "b": 2, "c": 3});
        let local = json!({"a": 10, "b": 2, "c": 3, "d": 4});
        let remote = json!({"a": 1, "c": 30});
        let (m, c) = mv(base, local, remote, Side::Local);
        assert!(c.is_empty());
        assert_eq!(m, json!({"a": 10, "c": 30, "d": 4}));
    }

    #[test]
    fn both_same_change_is_clean() {
        let (m, c) = mv(
            json!({"a": 1}),
            json!({"a": 2, "n": [1]}),
            json!({"a": 2, "n": [1]}),
            Side::Remote,
        );
        assert!(c.is_empty());
        assert_eq!(m, json!({"a": 2, "n": [1]}));
    }

    #[test]
    fn conflicting_scalar_prefers_and_records() {
        let base = json!({"provider": {"openai": {"model": "a"}}});
        let local = json!({"provider": {"openai": {"model": "b"}}});
        let remote = json!({"provider": {"openai": {"model": "c"}}});
        let (m, c) = mv(base.clone(), local.clone(), remote.clone(), Side::Local);
        assert_eq!(m, local);
        assert_eq!(
            c,
            vec![Conflict {
                path: "/provider/openai/model".into(),
                local: Some("\"b\"".into()),
                remote: Some("\"c\"".into()),
                base: Some("\"a\"".into()),
            }]
        );
        let (m, c) = mv(base, local, remote.clone(), Side::Remote);
        assert_eq!(m, remote);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn delete_vs_edit_is_a_conflict() {
        let base = json!({"keep": 1, "x": {"y": 1}});
        let local = json!({"keep": 1});
        let remote = json!({"keep": 1, "x": {"y": 2}});
        let (m, c) = mv(base.clone(), local.clone(), remote.clone(), Side::Local);
        assert_eq!(m, json!({"keep": 1}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "/x");
        assert_eq!(c[0].local, None);
        assert_eq!(c[0].remote.as_deref(), Some(r#"{"y":2}"#));
        let (m, c) = mv(base, local, remote, Side::Remote);
        assert_eq!(m, json!({"keep": 1, "x": {"y": 2}}));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn delete_on_one_side_untouched_on_other_deletes() {
        let (m, c) = mv(
            json!({"a": 1, "b": 2}),
            json!({"a": 1, "b": 2}),
            json!({"b": 2}),
            Side::Local,
        );
        assert!(c.is_empty());
        assert_eq!(m, json!({"b": 2}));
    }

    #[test]
    fn nested_objects_merge_recursively() {
        let base = json!({"p": {"a": {"x": 1, "y": 1}, "b": 1}});
        let local = json!({"p": {"a": {"x": 2, "y": 1}, "b": 1}});
        let remote = json!({"p": {"a": {"x": 1, "y": 3}, "b": 4, "c": 5}});
        let (m, c) = mv(base, local, remote, Side::Local);
        assert!(c.is_empty());
        assert_eq!(m, json!({"p": {"a": {"x": 2, "y": 3}, "b": 4, "c": 5}}));
    }

    #[test]
    fn both_added_same_key_as_objects_merge() {
        let (m, c) = mv(
            json!({}),
            json!({"n": {"a": 1, "s": 1}}),
            json!({"n": {"b": 2, "s": 2}}),
            Side::Remote,
        );
        assert_eq!(m, json!({"n": {"a": 1, "s": 2, "b": 2}}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "/n/s");
        assert_eq!(c[0].base, None);
    }

    #[test]
    fn arrays_are_whole_values() {
        let (m, c) = mv(
            json!({"l": [1]}),
            json!({"l": [1, 2]}),
            json!({"l": [0, 1]}),
            Side::Local,
        );
        assert_eq!(m, json!({"l": [1, 2]}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "/l");
    }

    #[test]
    fn key_order_is_local_then_remote_new() {
        let (m, _) = mv(
            json!({}),
            json!({"z": 1, "a": 1}),
            json!({"m": 1, "a": 1, "b": 1}),
            Side::Local,
        );
        let keys: Vec<_> = m.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m", "b"]);
    }

    #[test]
    fn non_object_roots_are_whole_values() {
        let (m, c) = mv(json!([1]), json!([2]), json!([3]), Side::Remote);
        assert_eq!(m, json!([3]));
        assert_eq!(c[0].path, "");
        let (m, c) = mv(json!("s"), json!("s"), json!(5), Side::Local);
        assert_eq!(m, json!(5));
        assert!(c.is_empty());
    }

    #[test]
    fn pointer_escaping_and_unicode_keys() {
        let (_, c) = mv(
            json!({"a/b~c": 1}),
            json!({"a/b~c": 2}),
            json!({"a/b~c": 3}),
            Side::Local,
        );
        assert_eq!(c[0].path, "/a~1b~0c");
        let (m, c) = mv(
            json!({"ключ": "é"}),
            json!({"ключ": "ü", "日本": "語"}),
            json!({"ключ": "é", "🦀": 1}),
            Side::Local,
        );
        assert!(c.is_empty());
        assert_eq!(m, json!({"ключ": "ü", "日本": "語", "🦀": 1}));
    }

    #[test]
    fn json_kind_output_format() {
        let base = br#"{"a":1}"#;
        // Local unchanged in value: keep local's bytes exactly.
        let m = merge(
            MergeKind::Json,
            Some(base),
            b"{ \"a\" : 1 }",
            b"{\"a\":1}",
            Side::Local,
        )
        .unwrap();
        assert_eq!(m.bytes, b"{ \"a\" : 1 }");
        // Changed: pretty with 2 spaces and trailing newline.
        let m = merge(
            MergeKind::Json,
            Some(base),
            b"{\"a\":1}",
            b"{\"a\":1,\"b\":[true]}",
            Side::Local,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(m.bytes).unwrap(),
            "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}\n"
        );
    }

    #[test]
    fn json_kind_empty_and_never_synced() {
        let m = merge(MergeKind::Json, None, b"", b"{\"a\":1}", Side::Local).unwrap();
        assert!(m.conflicts.is_empty());
        assert_eq!(
            serde_json::from_slice::<Value>(&m.bytes).unwrap(),
            json!({"a": 1})
        );
        let m = merge(
            MergeKind::Json,
            None,
            b"{\"a\":1}",
            b"{\"a\":2}",
            Side::Remote,
        )
        .unwrap();
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(
            serde_json::from_slice::<Value>(&m.bytes).unwrap(),
            json!({"a": 2})
        );
        let m = merge(MergeKind::Json, Some(b""), b"", b"", Side::Remote).unwrap();
        assert_eq!(
            m,
            MergeOutcome {
                bytes: vec![],
                conflicts: vec![]
            }
        );
    }

    #[test]
    fn json_kind_rejects_comments() {
        let e = merge(MergeKind::Json, None, b"{} // c", b"{}", Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::InvalidJson {
                side: Input::Local,
                ..
            }
        ));
    }
}
