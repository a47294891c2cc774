//! The `Jsonc` kind: value merge as in [`super::json`], written back into the *local* text so that
//! its comments and formatting survive.
//!
//! All three sides are parsed with the strict [`crate::jsonc::parse`]. The merged value is computed
//! three-way; then the difference between local's value and the merged value is applied to local's
//! concrete syntax tree (jsonc-parser's CST): changed keys get `set_value`, nested objects that
//! changed are patched recursively, deleted keys are removed and new keys appended. Untouched
//! properties keep their text, comments included.
//!
//! The patched text is re-parsed and compared with the merged value; if the CST edit did not yield
//! exactly that value (or local's root is not an object, or the root's type changed), the result
//! falls back to pretty-printed JSON — correct content wins over preserved comments.

use jsonc_parser::cst::{CstInputValue, CstNode, CstObject, CstObjectProp, CstRootNode};
use serde_json::{Map, Value};

use super::json::{merge_values, pretty};
use super::{Input, MergeError, MergeOutcome, Side};

fn parse_side(bytes: &[u8], side: Input) -> Result<Value, MergeError> {
    let text = super::utf8(bytes, side)?;
    match crate::jsonc::parse(text) {
        Ok(v) => Ok(v.unwrap_or_else(|| Value::Object(Map::new()))),
        Err(e) => Err(MergeError::InvalidJson {
            side,
            message: e.to_string(),
        }),
    }
}

pub fn merge_jsonc(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    prefer: Side,
) -> Result<MergeOutcome, MergeError> {
    let b = base.map(|b| parse_side(b, Input::Base)).transpose()?;
    let l = parse_side(local, Input::Local)?;
    let r = parse_side(remote, Input::Remote)?;
    let (merged, conflicts) = merge_values(b.as_ref(), &l, &r, prefer);
    if merged == l {
        return Ok(MergeOutcome {
            bytes: local.to_vec(),
            conflicts,
        });
    }
    // `parse_side` succeeded, so local is UTF-8.
    let local_text = std::str::from_utf8(local).unwrap_or_default();
    let bytes = patch_local(local_text, &l, &merged).unwrap_or_else(|| pretty(&merged));
    Ok(MergeOutcome { bytes, conflicts })
}

/// Rewrites `text` (JSONC) so that it parses to `target`, keeping its comments and formatting
/// wherever the values are unchanged: the same CST patching as the merge (changed keys get new
/// values, removed keys go with their comment lines, new keys are appended). Falls back to
/// pretty-printed JSON when patching cannot produce exactly `target` (e.g. `text` is empty or its
/// root is not an object). Text that already means `target` is returned unchanged.
///
/// Errors only when `text` itself is not valid JSONC (reported as the local side).
pub fn rewrite_to(text: &[u8], target: &Value) -> Result<Vec<u8>, MergeError> {
    let current = parse_side(text, Input::Local)?;
    if current == *target {
        return Ok(text.to_vec());
    }
    // `parse_side` succeeded, so the text is UTF-8.
    let local_text = std::str::from_utf8(text).unwrap_or_default();
    Ok(patch_local(local_text, &current, target).unwrap_or_else(|| pretty(target)))
}

/// Applies `local → merged` to local's CST; `None` if that cannot be done faithfully.
fn patch_local(local_text: &str, local: &Value, merged: &Value) -> Option<Vec<u8>> {
    let (Value::Object(l), Value::Object(m)) = (local, merged) else {
        return None;
    };
    let (bom, body) = match local_text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", local_text),
    };
    let root = CstRootNode::parse(body, &Default::default()).ok()?;
    let obj = root.object_value()?;
    patch_object(&obj, l, m);
    let out = format!("{bom}{root}");
    // Verify: the patched text must mean exactly the merged value, key order included.
    match crate::jsonc::parse(&out) {
        Ok(Some(v)) if v == *merged && same_order(&v, merged) => Some(out.into_bytes()),
        _ => None,
    }
}

fn patch_object(obj: &CstObject, local: &Map<String, Value>, merged: &Map<String, Value>) {
    for key in local.keys().filter(|k| !merged.contains_key(*k)) {
        if let Some(prop) = obj.get(key) {
            let comments = comment_lines_above(&prop);
            prop.remove();
            for node in comments {
                // `CstComment::remove` also eats the line break before a line comment; blanking the
                // comment text and removing the exact whitespace/newline nodes keeps this precise.
                match node.as_comment() {
                    Some(comment) => comment.set_raw_value(String::new()),
                    None => node.remove(),
                }
            }
        }
    }
    for (key, new) in merged {
        match local.get(key) {
            Some(old) if old == new => {}
            Some(Value::Object(old_obj)) if new.is_object() => match (obj.object_value(key), new) {
                (Some(child), Value::Object(new_obj)) => patch_object(&child, old_obj, new_obj),
                _ => set(obj, key, new),
            },
            Some(_) => set(obj, key, new),
            None => {
                obj.append(&cst_escape(key), to_input(new));
            }
        }
    }
}

/// The whole-line comments directly above a property (no blank line in between), with their
/// indentation and line breaks, so that removing the property does not leave its description
/// behind. A comment sharing its line with something else (e.g. `"a": 1, // about a`) stops the walk.
fn comment_lines_above(prop: &CstObjectProp) -> Vec<CstNode> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut siblings = prop.previous_siblings().peekable();
    // Indentation before the property itself stays (the next line reuses it).
    while siblings.peek().is_some_and(is_blank) {
        siblings.next();
    }
    loop {
        // Expect: newline, [whitespace], comment, [whitespace], newline-or-start-of-object ...
        match siblings.next() {
            Some(n) if n.is_newline() => pending.push(n),
            _ => break,
        }
        while siblings.peek().is_some_and(is_blank) {
            pending.push(siblings.next().expect("peeked"));
        }
        match siblings.next() {
            Some(n) if n.is_comment() => pending.push(n),
            _ => break,
        }
        while siblings.peek().is_some_and(is_blank) {
            pending.push(siblings.next().expect("peeked"));
        }
        // The comment must start its line: the next thing back is a line break or the `{`.
        match siblings.peek() {
            Some(n) if n.is_newline() => out.append(&mut pending),
            None => {
                out.append(&mut pending);
                break;
            }
            Some(n) if n.token_char() == Some('{') => {
                out.append(&mut pending);
                break;
            }
            _ => break,
        }
    }
    out
}

/// Whitespace, or a comment already blanked by an earlier removal.
fn is_blank(n: &CstNode) -> bool {
    n.is_whitespace() || (n.is_comment() && n.to_string().is_empty())
}

fn set(obj: &CstObject, key: &str, v: &Value) {
    match obj.get(key) {
        Some(prop) => prop.set_value(to_input(v)),
        None => {
            obj.append(&cst_escape(key), to_input(v));
        }
    }
}

fn to_input(v: &Value) -> CstInputValue {
    match v {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(cst_escape(s)),
        Value::Array(a) => CstInputValue::Array(a.iter().map(to_input).collect()),
        Value::Object(o) => CstInputValue::Object(
            o.iter()
                .map(|(k, v)| (cst_escape(k), to_input(v)))
                .collect(),
        ),
    }
}

/// jsonc-parser writes new strings (values and property names) as `"` + text + `"` with only `"`
/// escaped, so backslashes and control characters would come out wrong. This pre-escapes
/// everything else the JSON way: serde_json's escaping, minus the outer quotes, with `\"` turned
/// back into `"` (the first backslash before a quote in escaped text is always that quote's escape).
fn cst_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    let inner = quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default();
    inner.replace("\\\"", "\"")
}

/// `Value`'s `==` ignores key order; this checks it too (recursively).
fn same_order(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same_order(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_order(a, b))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use crate::merge::{Input, MergeError, MergeKind, Side, merge};
    use serde_json::{Value, json};

    fn mj(base: &str, local: &str, remote: &str, prefer: Side) -> (String, usize) {
        let m = merge(
            MergeKind::Jsonc,
            Some(base.as_bytes()),
            local.as_bytes(),
            remote.as_bytes(),
            prefer,
        )
        .unwrap();
        (String::from_utf8(m.bytes).unwrap(), m.conflicts.len())
    }

    fn value(text: &str) -> Value {
        crate::jsonc::parse(text).unwrap().unwrap()
    }

    const BASE: &str = r#"{
  // the model we use
  "model": "a",
  /* providers
     block comment */
  "provider": {
    "openai": { "key": "x" }, // trailing comment
    "anthropic": { "key": "y" }
  },
  "theme": "dark", // the theme
}
"#;

    #[test]
    fn comments_survive_remote_change_of_sibling() {
        let remote = BASE.replace("\"dark\"", "\"light\"");
        let (out, c) = mj(BASE, BASE, &remote, Side::Local);
        assert_eq!(c, 0);
        assert_eq!(
            out, remote,
            "only the value changes, everything else is kept byte for byte"
        );
    }

    #[test]
    fn comments_survive_nested_change_addition_and_removal() {
        let local = BASE.replace("// the theme", "// my theme comment");
        let remote = r#"{"model": "a", "provider": {"openai": {"key": "x2"}}, "theme": "dark", "new": [1, "ü"]}"#;
        let (out, c) = mj(BASE, &local, remote, Side::Local);
        assert_eq!(c, 0);
        assert_eq!(
            value(&out),
            json!({"model": "a", "provider": {"openai": {"key": "x2"}}, "theme": "dark", "new": [1, "ü"]})
        );
        for comment in [
            "// the model we use",
            "/* providers\n     block comment */",
            "// trailing comment",
            "// my theme comment",
        ] {
            assert!(out.contains(comment), "lost {comment:?} in:\n{out}");
        }
        assert!(!out.contains("anthropic"));
    }

    #[test]
    fn conflict_prefers_and_keeps_comments() {
        let local = BASE.replace("\"model\": \"a\"", "\"model\": \"b\"");
        let remote = BASE.replace("\"model\": \"a\"", "\"model\": \"c\"");
        let (out, c) = mj(BASE, &local, &remote, Side::Remote);
        assert_eq!(c, 1);
        assert_eq!(out, remote);
        let (out, c) = mj(BASE, &local, &remote, Side::Local);
        assert_eq!(c, 1);
        assert_eq!(out, local);
    }

    #[test]
    fn unchanged_local_value_keeps_bytes() {
        let remote = r#"{"model":"a","provider":{"openai":{"key":"x"},"anthropic":{"key":"y"}},"theme":"dark"}"#;
        let (out, c) = mj(BASE, BASE, remote, Side::Remote);
        assert_eq!(c, 0);
        assert_eq!(out, BASE);
    }

    #[test]
    fn unicode_keys_and_values() {
        let base = "{\n  // 注释\n  \"名前\": \"値\"\n}\n";
        let remote = "{\"名前\": \"新しい\", \"emoji🦀\": \"✓\"}";
        let (out, c) = mj(base, base, remote, Side::Local);
        assert_eq!(c, 0);
        assert!(out.contains("// 注释"));
        assert_eq!(value(&out), json!({"名前": "新しい", "emoji🦀": "✓"}));
    }

    #[test]
    fn strings_needing_escapes_round_trip() {
        let remote = r#"{"s": "quote \" backslash \\ newline \n tab \t ctrl \u0001", "k\\e\"y\n": {"a\\": "\\\""}}"#;
        let (out, _) = mj("{}", "{ // c\n}", remote, Side::Local);
        assert_eq!(value(&out), value(remote));
        assert!(out.contains("// c"));
    }

    #[test]
    fn empty_and_never_synced() {
        let m = merge(MergeKind::Jsonc, None, b"", b"{\"a\": 1}", Side::Local).unwrap();
        assert!(m.conflicts.is_empty());
        assert_eq!(
            value(std::str::from_utf8(&m.bytes).unwrap()),
            json!({"a": 1})
        );
        let m = merge(
            MergeKind::Jsonc,
            None,
            b"// only a comment\n",
            b"{\"a\": 1}",
            Side::Local,
        )
        .unwrap();
        assert_eq!(
            value(std::str::from_utf8(&m.bytes).unwrap()),
            json!({"a": 1})
        );
    }

    #[test]
    fn crlf_local_keeps_comments() {
        let base = "{\r\n  // c1\r\n  \"a\": 1,\r\n  \"b\": 2\r\n}\r\n";
        let remote = "{\"a\": 1, \"b\": 3}";
        let (out, c) = mj(base, base, remote, Side::Local);
        assert_eq!(c, 0);
        assert_eq!(out, base.replace("\"b\": 2", "\"b\": 3"));
    }

    #[test]
    fn delete_vs_edit() {
        let base = "{\n  \"a\": 1, // keep me\n  \"b\": {\"c\": 1}\n}\n";
        let local = "{\n  \"a\": 1 // keep me\n}\n";
        let remote = "{\n  \"a\": 1, // keep me\n  \"b\": {\"c\": 2}\n}\n";
        let (out, c) = mj(base, local, remote, Side::Remote);
        assert_eq!(c, 1);
        assert_eq!(value(&out), json!({"a": 1, "b": {"c": 2}}));
        assert!(out.contains("// keep me"));
        let (out, c) = mj(base, local, remote, Side::Local);
        assert_eq!(c, 1);
        assert_eq!(out, local);
    }

    #[test]
    fn removed_key_takes_its_comment_lines_along() {
        let base = "{\n  // about a\n  \"a\": 1, // tail a\n  // about b\n  /* more b */\n  \"b\": 2,\n\n  // section\n\n  // about c\n  \"c\": 3\n}\n";
        let remote = r#"{"a": 1, "c": 3}"#;
        let (out, c) = mj(base, base, remote, Side::Local);
        assert_eq!(c, 0);
        assert_eq!(
            out,
            "{\n  // about a\n  \"a\": 1, // tail a\n\n  // section\n\n  // about c\n  \"c\": 3\n}\n"
        );
        let remote = r#"{"b": 2, "c": 3}"#;
        let (out, _) = mj(base, base, remote, Side::Local);
        assert_eq!(
            out,
            "{\n  // about b\n  /* more b */\n  \"b\": 2,\n\n  // section\n\n  // about c\n  \"c\": 3\n}\n"
        );
        let (out, _) = mj(base, base, r#"{"a": 1, "b": 2}"#, Side::Local);
        assert!(
            out.contains("// section") && !out.contains("about c"),
            "{out}"
        );
    }

    #[test]
    fn bom_is_kept() {
        let local = "\u{feff}{\n  // c\n  \"a\": 1\n}\n";
        let (out, _) = mj("{\"a\": 1}", local, "{\"a\": 2}", Side::Local);
        assert!(out.starts_with('\u{feff}'));
        assert!(out.contains("// c"));
        assert_eq!(value(&out), json!({"a": 2}));
    }

    #[test]
    fn non_object_root_falls_back_to_pretty() {
        let (out, c) = mj("[1]", "// c\n[1]", "[2]", Side::Local);
        assert_eq!(c, 0);
        assert_eq!(out, "[\n  2\n]\n");
    }

    #[test]
    fn rewrite_to_keeps_comments_and_falls_back() {
        use crate::merge::jsonc::rewrite_to;
        let text = "{\n  // the model\n  \"model\": \"a\", // tail\n  \"provider\": { /* p */ \"x\": {\"k\": 1} },\n  // gone\n  \"old\": true\n}\n";
        let target = json!({"model": "b", "provider": {"x": {"k": 1, "n": "w\\\""}}, "new": [1]});
        let out = rewrite_to(text.as_bytes(), &target).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(value(&out), target);
        for c in ["// the model", "// tail", "/* p */"] {
            assert!(out.contains(c), "lost {c:?} in:\n{out}");
        }
        assert!(!out.contains("gone") && !out.contains("old"), "{out}");
        // Already the target: bytes untouched.
        let same = rewrite_to(text.as_bytes(), &value(text)).unwrap();
        assert_eq!(same, text.as_bytes());
        // Empty text or non-object root: pretty JSON.
        let out = rewrite_to(b"", &json!({"a": 1})).unwrap();
        assert_eq!(out, b"{\n  \"a\": 1\n}\n");
        let out = rewrite_to(b"// c\n[1]", &json!({"a": 1})).unwrap();
        assert_eq!(value(std::str::from_utf8(&out).unwrap()), json!({"a": 1}));
        let e = rewrite_to(b"{\"a\": 1 \"b\": 2}", &json!({})).unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::InvalidJson {
                    side: Input::Local,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn invalid_local_is_an_error() {
        let e = merge(
            MergeKind::Jsonc,
            None,
            b"{\"a\": 1 \"b\": 2}",
            b"{}",
            Side::Local,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::InvalidJson {
                    side: Input::Local,
                    ..
                }
            ),
            "{e}"
        );
    }
}
