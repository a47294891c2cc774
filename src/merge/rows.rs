//! The `Rows` kind: OpenCode session documents (database rows exported as one JSON object).
//!
//! A document is a JSON object such as
//! `{"format":1,"sessionId":"ses_x","messages":[{row},…],"parts":[{row},…]}`. Its top-level keys
//! are merged three-way, each according to what its value is:
//!
//! - **Tables** (an array of objects on every side where the key exists): rows are matched by
//!   identity — `"id"` if every row has one, else `"position"` (todos) — and each row is merged
//!   three-way as a whole (see [`merge_row`]). Rows added on either side are all kept, so a session
//!   continued offline on two machines keeps both continuations. A table whose rows have neither
//!   identity, or a repeated identity on one side, is merged as a whole value instead.
//! - **Single rows** (an object on every side where the key exists, at least one with
//!   `"time_updated"`, e.g. `"session"`, `"project"`): merged like one table row.
//! - **Anything else** (scalars such as `"sessionId"`, other objects, other arrays): whole-value
//!   three-way; both sides changing it differently is a [`Conflict`] resolved by `prefer`.
//!
//! Row rule for `(base, local, remote)`: equal sides → that; one side unchanged → the other
//! (including a deletion); both changed and both present → the greater numeric `"time_updated"`
//! wins, and a tie (or a missing/non-numeric time) is a conflict resolved by `prefer`; one side
//! deleted and the other changed → the changed row (an edit wins over a deletion, no conflict).
//!
//! `"format"` is never merged: if local and remote carry different formats the merge fails
//! ([`MergeError::InvalidJson`] naming the side that moved away from the base, or remote), so the
//! engine keeps one whole side. A base of another format than the (agreed) sides' is ignored, as if
//! the item had never synced: additions from both sides are kept, nothing is deleted.
//!
//! Output: [`render_doc`] (one row per line). If one side is unchanged (or both sides are equal) the
//! other side is re-rendered as it is. Otherwise a merged table is sorted by
//! `("time_created", "id")` (tables keyed by `"id"`) or by `"position"`, and the top-level key order
//! is that of whichever side's key list sorts first, followed by the other side's extra keys; so the
//! result never depends on which machine is "local": `merge(b, l, r, p)` equals
//! `merge(b, r, l, p')` byte for byte, where `p'` is `p` flipped (irrelevant when nothing ties).
//! Equality is order-sensitive (two objects with the same entries in another key order differ), so
//! that this holds byte for byte.
//!
//! An empty (whitespace-only) side is `{}`; a side that is not a JSON object is an error.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::json::render;
use super::{Conflict, Input, MergeError, MergeOutcome, Side};

/// Renders a document in the rows layout: the top-level object on one line, except that every
/// non-empty array of objects is opened with `[\n`, has one compact row per line (rows joined by
/// `,\n`) and is closed with `\n]`. Empty arrays are `[]`; every other value is compact JSON. Ends
/// with a newline. Key order is kept.
pub fn render_doc(doc: &Map<String, Value>) -> Vec<u8> {
    let mut out = String::from("{");
    for (i, (key, value)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(key.as_str()).to_string());
        out.push(':');
        match value {
            Value::Array(rows) if !rows.is_empty() && rows.iter().all(Value::is_object) => {
                out.push_str("[\n");
                for (j, row) in rows.iter().enumerate() {
                    if j > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(&row.to_string());
                }
                out.push_str("\n]");
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out.push_str("}\n");
    out.into_bytes()
}

/// Parses one side; whitespace-only text is `{}`, a UTF-8 BOM is allowed, the root must be an object.
fn parse_doc(bytes: &[u8], side: Input) -> Result<Map<String, Value>, MergeError> {
    let text = super::utf8(bytes, side)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(MergeError::InvalidJson {
            side,
            message: format!(
                "a rows document must be a JSON object, found {}",
                render(&other)
            ),
        }),
        Err(e) => Err(MergeError::InvalidJson {
            side,
            message: e.to_string(),
        }),
    }
}

/// The `Rows` kind. See the module docs.
pub fn merge_rows(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    prefer: Side,
) -> Result<MergeOutcome, MergeError> {
    let b = base.map(|b| parse_doc(b, Input::Base)).transpose()?;
    let l = parse_doc(local, Input::Local)?;
    let r = parse_doc(remote, Input::Remote)?;

    check_formats(b.as_ref(), &l, &r)?;
    let b = base_of_agreed_format(b, &l, &r);
    let empty = Map::new();
    let bm = b.as_ref().unwrap_or(&empty);

    // Whole-document fast paths (keep that side's own order and layout choices).
    if same_map(&l, &r) || same_map(&r, bm) {
        return Ok(MergeOutcome::clean(render_doc(&l)));
    }
    if same_map(&l, bm) {
        return Ok(MergeOutcome::clean(render_doc(&r)));
    }

    let (first, second) = if l.keys().lt(r.keys()) {
        (&l, &r)
    } else {
        (&r, &l)
    };
    let keys: Vec<&String> = first
        .keys()
        .chain(second.keys().filter(|k| !first.contains_key(*k)))
        .collect();

    let mut out = Map::new();
    let mut conflicts = Vec::new();
    for key in keys {
        if let Some(v) = merge_key(
            key,
            bm.get(key),
            l.get(key),
            r.get(key),
            prefer,
            &mut conflicts,
        ) {
            out.insert(key.clone(), v);
        }
    }
    Ok(MergeOutcome {
        bytes: render_doc(&out),
        conflicts,
    })
}

/// Formats are never merged across: local and remote carrying different formats is an error
/// naming the side that moved away from the base (or remote).
fn check_formats(
    b: Option<&Map<String, Value>>,
    l: &Map<String, Value>,
    r: &Map<String, Value>,
) -> Result<(), MergeError> {
    let (fb, fl, fr) = (
        b.and_then(|b| b.get("format")),
        l.get("format"),
        r.get("format"),
    );
    if let (Some(fl), Some(fr)) = (fl, fr)
        && !same_value(fl, fr)
    {
        let (side, theirs, ours) = if fb.is_some_and(|fb| same_value(fb, fr)) {
            (Input::Local, fl, fr)
        } else {
            (Input::Remote, fr, fl)
        };
        let other = if side == Input::Local {
            "remote"
        } else {
            "local"
        };
        return Err(MergeError::InvalidJson {
            side,
            message: format!(
                "document format {} differs from the {other} side's format {}; documents of \
                 different formats are never merged",
                render(theirs),
                render(ours)
            ),
        });
    }
    Ok(())
}

/// The base, unless it is of another format than the (agreed) sides': then none, as if the item
/// had never synced.
fn base_of_agreed_format(
    b: Option<Map<String, Value>>,
    l: &Map<String, Value>,
    r: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let agreed = l.get("format").or(r.get("format"));
    match (b, agreed) {
        (Some(b), Some(f)) if b.get("format").is_some_and(|fb| !same_value(fb, f)) => None,
        (b, _) => b,
    }
}

/// Merges one top-level key; `None` = absent on that side / in the result.
fn merge_key(
    key: &str,
    b: Option<&Value>,
    l: Option<&Value>,
    r: Option<&Value>,
    prefer: Side,
    conflicts: &mut Vec<Conflict>,
) -> Option<Value> {
    if same(l, r) || same(r, b) {
        return l.cloned();
    }
    if same(l, b) {
        return r.cloned();
    }
    let path = pointer(&[key]);
    if let Some(ident) = table_identity([b, l, r]) {
        return Some(merge_table(&path, ident, b, l, r, prefer, conflicts));
    }
    let present = [b, l, r].into_iter().flatten();
    if present.clone().all(Value::is_object)
        && present.clone().any(|v| v.get("time_updated").is_some())
    {
        let (v, c) = merge_row(&path, b, l, r, prefer);
        conflicts.extend(c);
        return v;
    }
    let (v, c) = whole_value(&path, b, l, r, prefer);
    conflicts.extend(c);
    v
}

/// The identity field if `values` (the present ones) are all arrays of objects that all carry it,
/// without repeats within one side. `Some("id")` is also returned when there are no rows at all.
fn table_identity(values: [Option<&Value>; 3]) -> Option<&'static str> {
    let arrays: Vec<&Vec<Value>> = values
        .into_iter()
        .flatten()
        .map(|v| v.as_array())
        .collect::<Option<_>>()?;
    if arrays.is_empty() || !arrays.iter().all(|a| a.iter().all(Value::is_object)) {
        return None;
    }
    let ident = ["id", "position"].into_iter().find(|f| {
        arrays
            .iter()
            .all(|a| a.iter().all(|row| row.get(f).is_some()))
    })?;
    let unique = arrays.iter().all(|a| {
        let mut seen = BTreeSet::new();
        a.iter().all(|row| seen.insert(identity_key(row, ident)))
    });
    unique.then_some(ident)
}

/// A row's identity as a map key (the compact JSON of the identity value).
fn identity_key(row: &Value, ident: &str) -> String {
    row.get(ident).map(Value::to_string).unwrap_or_default()
}

fn merge_table(
    path: &str,
    ident: &'static str,
    b: Option<&Value>,
    l: Option<&Value>,
    r: Option<&Value>,
    prefer: Side,
    conflicts: &mut Vec<Conflict>,
) -> Value {
    fn index<'v>(v: Option<&'v Value>, ident: &str) -> HashMap<String, &'v Value> {
        v.and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|row| (identity_key(row, ident), row))
                    .collect()
            })
            .unwrap_or_default()
    }
    let (bi, li, ri) = (index(b, ident), index(l, ident), index(r, ident));
    let ids: BTreeSet<&String> = bi.keys().chain(li.keys()).chain(ri.keys()).collect();
    let mut merged: Vec<(Value, Option<Conflict>)> = Vec::new();
    for id in ids {
        let token = match serde_json::from_str::<Value>(id) {
            Ok(Value::String(s)) => s,
            _ => id.clone(),
        };
        let row_path = format!("{path}{}", pointer(&[&token]));
        let (v, c) = merge_row(
            &row_path,
            bi.get(id).copied(),
            li.get(id).copied(),
            ri.get(id).copied(),
            prefer,
        );
        if let Some(v) = v {
            merged.push((v, c));
        }
    }
    merged.sort_by(|(a, _), (b, _)| row_order(a, b, ident));
    let mut rows = Vec::with_capacity(merged.len());
    for (row, c) in merged {
        rows.push(row);
        conflicts.extend(c);
    }
    Value::Array(rows)
}

/// Table order: `("time_created", "id")` for tables keyed by `"id"`, `"position"` otherwise; the
/// identity's compact JSON breaks remaining ties, so the order is total.
fn row_order(a: &Value, b: &Value, ident: &str) -> Ordering {
    let by_time = if ident == "id" {
        cmp_opt(a.get("time_created"), b.get("time_created"))
    } else {
        Ordering::Equal
    };
    by_time
        .then_with(|| cmp_opt(a.get(ident), b.get(ident)))
        .then_with(|| identity_key(a, ident).cmp(&identity_key(b, ident)))
}

/// Absent first, then numbers (numerically), then strings, then anything else by its JSON.
fn cmp_opt(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None => 0,
            Some(Value::Number(_)) => 1,
            Some(Value::String(_)) => 2,
            Some(_) => 3,
        }
    }
    match (a, b) {
        (Some(Value::Number(_)), Some(Value::Number(_))) => {
            cmp_num(a, b).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) if rank(a) == rank(b) => x.to_string().cmp(&y.to_string()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Numeric comparison; `None` unless both are numbers.
fn cmp_num(a: Option<&Value>, b: Option<&Value>) -> Option<Ordering> {
    let (a, b) = (a?.as_number()?, b?.as_number()?);
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Three-way merge of one row (whole-row granularity); see the module docs.
fn merge_row(
    path: &str,
    b: Option<&Value>,
    l: Option<&Value>,
    r: Option<&Value>,
    prefer: Side,
) -> (Option<Value>, Option<Conflict>) {
    if let Some(v) = one_side_changed(b, l, r) {
        return (v, None);
    }
    match (l, r) {
        (Some(lv), Some(rv)) => match cmp_num(lv.get("time_updated"), rv.get("time_updated")) {
            Some(Ordering::Greater) => (l.cloned(), None),
            Some(Ordering::Less) => (r.cloned(), None),
            _ => resolve(path, b, l, r, prefer),
        },
        // An edit wins over a deletion.
        (Some(_), None) => (l.cloned(), None),
        (None, _) => (r.cloned(), None),
    }
}

/// Whole-value three-way merge; both sides changed differently → `prefer` and a conflict.
fn whole_value(
    path: &str,
    b: Option<&Value>,
    l: Option<&Value>,
    r: Option<&Value>,
    prefer: Side,
) -> (Option<Value>, Option<Conflict>) {
    match one_side_changed(b, l, r) {
        Some(v) => (v, None),
        None => resolve(path, b, l, r, prefer),
    }
}

/// The result when at most one side changed (`Some`), or `None` when both did, differently.
fn one_side_changed(b: Option<&Value>, l: Option<&Value>, r: Option<&Value>) -> Option<Option<Value>> {
    if same(l, r) || same(r, b) {
        Some(l.cloned())
    } else if same(l, b) {
        Some(r.cloned())
    } else {
        None
    }
}

fn resolve(
    path: &str,
    b: Option<&Value>,
    l: Option<&Value>,
    r: Option<&Value>,
    prefer: Side,
) -> (Option<Value>, Option<Conflict>) {
    let conflict = Conflict {
        path: path.to_string(),
        local: l.map(render),
        remote: r.map(render),
        base: b.map(render),
    };
    let winner = match prefer {
        Side::Local => l,
        Side::Remote => r,
    };
    (winner.cloned(), Some(conflict))
}

/// JSON pointer of the tokens (RFC 6901 escaping).
fn pointer(tokens: &[&str]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Order-sensitive equality (object key order counts), so that "equal" sides render identically.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => same_map(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

fn same_map(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_value(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{MergeKind, merge};
    use serde_json::json;

    fn doc(v: Value) -> Vec<u8> {
        match v {
            Value::Object(m) => render_doc(&m),
            _ => panic!("not an object"),
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn msg(id: &str, created: i64, updated: i64, text: &str) -> Value {
        json!({"id": id, "session_id": "ses_x", "time_created": created, "time_updated": updated,
               "data": {"text": text}})
    }

    fn msgs(rows: Vec<Value>) -> Vec<u8> {
        doc(json!({"format": 1, "sessionId": "ses_x", "messages": rows, "parts": []}))
    }

    fn ids(bytes: &[u8], table: &str) -> Vec<String> {
        parse(bytes)[table]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn m(base: Option<&[u8]>, l: &[u8], r: &[u8], p: Side) -> MergeOutcome {
        merge_rows(base, l, r, p).unwrap()
    }

    #[test]
    fn render_layout() {
        let d = json!({"format": 1, "sessionId": "ses_x",
                       "messages": [{"id": "a", "n": 1}, {"id": "b"}], "parts": [],
                       "session": {"id": "s", "time_updated": 2}});
        assert_eq!(
            String::from_utf8(doc(d)).unwrap(),
            "{\"format\":1,\"sessionId\":\"ses_x\",\"messages\":[\n{\"id\":\"a\",\"n\":1},\n\
             {\"id\":\"b\"}\n],\"parts\":[],\"session\":{\"id\":\"s\",\"time_updated\":2}}\n"
        );
        // Key order is preserved, not sorted.
        let d = json!({"z": [{"b": 1, "a": 2}], "a": "x"});
        assert_eq!(doc(d), b"{\"z\":[\n{\"b\":1,\"a\":2}\n],\"a\":\"x\"}\n");
        assert_eq!(render_doc(&Map::new()), b"{}\n");
    }

    #[test]
    fn both_continuations_kept() {
        let base = msgs(vec![msg("msg_1", 1, 1, "hi")]);
        let local = msgs(vec![msg("msg_1", 1, 1, "hi"), msg("msg_L", 3, 3, "local")]);
        let remote = msgs(vec![msg("msg_1", 1, 1, "hi"), msg("msg_R", 2, 2, "remote")]);
        let out = m(Some(&base), &local, &remote, Side::Local);
        assert!(out.conflicts.is_empty());
        assert_eq!(ids(&out.bytes, "messages"), ["msg_1", "msg_R", "msg_L"]);
        let swapped = m(Some(&base), &remote, &local, Side::Remote);
        assert_eq!(swapped.bytes, out.bytes);
        // Never synced: both sides' rows are kept too.
        let out = m(None, &local, &remote, Side::Remote);
        assert_eq!(ids(&out.bytes, "messages"), ["msg_1", "msg_R", "msg_L"]);
        assert!(out.conflicts.is_empty());
        // Also through the dispatcher.
        let out = merge(MergeKind::Rows, Some(&base), &local, &remote, Side::Local).unwrap();
        assert_eq!(ids(&out.bytes, "messages"), ["msg_1", "msg_R", "msg_L"]);
    }

    #[test]
    fn edit_wins_over_deletion() {
        let base = msgs(vec![msg("a", 1, 1, "x"), msg("b", 2, 2, "y")]);
        let local = msgs(vec![msg("a", 1, 5, "edited"), msg("b", 2, 2, "y")]);
        let remote = msgs(vec![msg("b", 2, 3, "y2")]);
        for p in [Side::Local, Side::Remote] {
            let out = m(Some(&base), &local, &remote, p);
            assert!(out.conflicts.is_empty());
            let v = parse(&out.bytes);
            assert_eq!(v["messages"][0]["data"]["text"], "edited");
            assert_eq!(v["messages"][1]["data"]["text"], "y2");
            assert_eq!(m(Some(&base), &remote, &local, p).bytes, out.bytes);
        }
    }

    #[test]
    fn deletion_on_one_side_propagates() {
        let base = msgs(vec![msg("a", 1, 1, "x"), msg("b", 2, 2, "y")]);
        let local = msgs(vec![msg("b", 2, 2, "y")]);
        let remote = msgs(vec![
            msg("a", 1, 1, "x"),
            msg("b", 2, 2, "y"),
            msg("c", 3, 3, "z"),
        ]);
        let out = m(Some(&base), &local, &remote, Side::Local);
        assert!(out.conflicts.is_empty());
        assert_eq!(ids(&out.bytes, "messages"), ["b", "c"]);
        // Deleted on both sides: gone.
        let out = m(Some(&base), &local, &local, Side::Local);
        assert_eq!(ids(&out.bytes, "messages"), ["b"]);
    }

    #[test]
    fn concurrent_edits_newer_wins() {
        let base = msgs(vec![msg("a", 1, 1, "x")]);
        let local = msgs(vec![msg("a", 1, 7, "local")]);
        let remote = msgs(vec![msg("a", 1, 4, "remote")]);
        for p in [Side::Local, Side::Remote] {
            let out = m(Some(&base), &local, &remote, p);
            assert!(out.conflicts.is_empty());
            assert_eq!(parse(&out.bytes)["messages"][0]["data"]["text"], "local");
            let out = m(Some(&base), &remote, &local, p);
            assert_eq!(parse(&out.bytes)["messages"][0]["data"]["text"], "local");
        }
        // Both added the same id (no base) with different content: newer wins.
        let out = m(None, &local, &remote, Side::Remote);
        assert!(out.conflicts.is_empty());
        assert_eq!(parse(&out.bytes)["messages"][0]["data"]["text"], "local");
    }

    #[test]
    fn tie_uses_prefer_and_reports() {
        let base = msgs(vec![msg("a", 1, 1, "x")]);
        let local = msgs(vec![msg("a", 1, 5, "local")]);
        let remote = msgs(vec![msg("a", 1, 5, "remote")]);
        let out = m(Some(&base), &local, &remote, Side::Remote);
        assert_eq!(parse(&out.bytes)["messages"][0]["data"]["text"], "remote");
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].path, "/messages/a");
        assert!(out.conflicts[0].local.as_deref().unwrap().contains("local"));
        assert!(out.conflicts[0].base.as_deref().unwrap().contains("\"x\""));
        let out = m(Some(&base), &local, &remote, Side::Local);
        assert_eq!(parse(&out.bytes)["messages"][0]["data"]["text"], "local");
        // Same content, same time: clean.
        let out = m(Some(&base), &local, &local, Side::Remote);
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn todos_by_position() {
        let todo = |pos: i64, content: &str, updated: i64| {
            json!({"session_id": "ses_x", "content": content, "status": "pending",
                   "priority": "high", "position": pos, "time_created": 1, "time_updated": updated})
        };
        let d = |rows: Vec<Value>| doc(json!({"format": 1, "sessionId": "ses_x", "todos": rows}));
        let base = d(vec![todo(0, "a", 1), todo(1, "b", 1), todo(2, "c", 1)]);
        // Local edits position 1 and adds 3; remote deletes 2 and edits 0.
        let local = d(vec![
            todo(0, "a", 1),
            todo(1, "B", 2),
            todo(2, "c", 1),
            todo(3, "d", 2),
        ]);
        let remote = d(vec![todo(0, "A", 3), todo(1, "b", 1)]);
        let out = m(Some(&base), &local, &remote, Side::Local);
        assert!(out.conflicts.is_empty());
        let v = parse(&out.bytes);
        let contents: Vec<&str> = v["todos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, ["A", "B", "d"]);
        assert_eq!(
            m(Some(&base), &remote, &local, Side::Remote).bytes,
            out.bytes
        );
    }

    #[test]
    fn single_row_session_newer_wins() {
        let d = |title: &str, updated: i64, extra: Value| {
            doc(json!({"format": 1,
                       "session": {"id": "ses_x", "title": title, "time_updated": updated},
                       "project": {"id": "p", "worktree": "/w", "time_updated": 1},
                       "meta": extra}))
        };
        let base = d("t", 1, json!({"k": 1}));
        let local = d("local title", 9, json!({"k": 1}));
        let remote = d("remote title", 4, json!({"k": 2}));
        for p in [Side::Local, Side::Remote] {
            let out = m(Some(&base), &local, &remote, p);
            assert!(out.conflicts.is_empty());
            let v = parse(&out.bytes);
            assert_eq!(v["session"]["title"], "local title");
            // A plain object changed on one side only: that side.
            assert_eq!(v["meta"], json!({"k": 2}));
            assert_eq!(m(Some(&base), &remote, &local, p).bytes, out.bytes);
        }
        // A plain object changed on both sides: prefer, with a conflict.
        let local = d("t", 1, json!({"k": 3}));
        let remote2 = d("remote title", 4, json!({"k": 2}));
        let out = m(Some(&base), &local, &remote2, Side::Local);
        let v = parse(&out.bytes);
        assert_eq!(v["meta"], json!({"k": 3}));
        assert_eq!(v["session"]["title"], "remote title");
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].path, "/meta");
    }

    #[test]
    fn scalars_three_way() {
        let d = |sid: &str| doc(json!({"format": 1, "sessionId": sid, "messages": []}));
        let out = m(Some(&d("a")), &d("a"), &d("b"), Side::Local);
        assert!(out.conflicts.is_empty());
        assert_eq!(parse(&out.bytes)["sessionId"], "b");
        let out = m(Some(&d("a")), &d("c"), &d("b"), Side::Remote);
        assert_eq!(parse(&out.bytes)["sessionId"], "b");
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].path, "/sessionId");
    }

    #[test]
    fn format_mismatch_refused() {
        let v1 = doc(json!({"format": 1, "messages": []}));
        let v2 = doc(json!({"format": 2, "messages": []}));
        let e = merge_rows(Some(&v1), &v1, &v2, Side::Local).unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::InvalidJson {
                    side: Input::Remote,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("format 2"), "{e}");
        let e = merge_rows(Some(&v1), &v2, &v1, Side::Local).unwrap_err();
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
        assert!(merge_rows(None, &v2, &v1, Side::Local).is_err());
        // Both sides moved to format 2: the old base is ignored (additions kept, no deletions).
        let base = doc(json!({"format": 1, "messages": [msg("a", 1, 1, "x")]}));
        let l = doc(json!({"format": 2, "messages": [msg("l", 2, 2, "l")]}));
        let r = doc(json!({"format": 2, "messages": [msg("r", 3, 3, "r")]}));
        let out = m(Some(&base), &l, &r, Side::Local);
        assert_eq!(ids(&out.bytes, "messages"), ["l", "r"]);
    }

    #[test]
    fn invalid_input_is_an_error() {
        let ok = msgs(vec![]);
        let e = merge_rows(None, &ok, b"{oops", Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::InvalidJson {
                side: Input::Remote,
                ..
            }
        ));
        let e = merge_rows(Some(b"[1]"), &ok, &ok, Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::InvalidJson {
                side: Input::Base,
                ..
            }
        ));
        let e = merge_rows(None, &[0xff], &ok, Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::NotUtf8 {
                side: Input::Local,
                ..
            }
        ));
        // Empty text is an empty document.
        let out = m(None, b"", &ok, Side::Local);
        assert_eq!(out.bytes, ok);
    }

    #[test]
    fn one_side_unchanged_keeps_other_verbatim_order() {
        // Unsorted rows on the changed side stay as they are when the other side is unchanged.
        let base = msgs(vec![msg("a", 1, 1, "x")]);
        let local = msgs(vec![msg("z", 0, 0, "new"), msg("a", 1, 1, "x")]);
        let out = m(Some(&base), &local, &base, Side::Remote);
        assert_eq!(out.bytes, local);
        let out = m(Some(&base), &base, &local, Side::Local);
        assert_eq!(out.bytes, local);
    }

    #[test]
    fn non_table_arrays_are_whole_values() {
        let d = |v: Value| doc(json!({"format": 1, "tags": v}));
        let base = d(json!(["a"]));
        let out = m(
            Some(&base),
            &d(json!(["a", "b"])),
            &d(json!(["a", "c"])),
            Side::Local,
        );
        assert_eq!(parse(&out.bytes)["tags"], json!(["a", "b"]));
        assert_eq!(out.conflicts.len(), 1);
        // Rows without identity: whole value too.
        let base = d(json!([{"x": 1}]));
        let out = m(
            Some(&base),
            &d(json!([{"x": 2}])),
            &d(json!([{"x": 3}])),
            Side::Remote,
        );
        assert_eq!(parse(&out.bytes)["tags"], json!([{"x": 3}]));
        assert_eq!(out.conflicts.len(), 1);
    }
}

#[cfg(test)]
mod proptests {
    use std::collections::BTreeSet;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::{merge_rows, render_doc};
    use crate::merge::{MergeOutcome, Side};

    const CASES: u32 = 256;

    #[derive(Debug, Clone)]
    struct Edits {
        /// Indexes (mod len) of base rows to delete, per table.
        delete: Vec<usize>,
        /// Indexes (mod len) of base rows to bump (new time_updated and content), per table.
        bump: Vec<usize>,
        /// Number of new rows per table.
        add: usize,
        /// Whether the session row is bumped.
        bump_session: bool,
    }

    fn row(id: &str, created: u64, updated: u64, text: &str) -> Value {
        json!({"id": id, "session_id": "ses_x", "time_created": created,
               "time_updated": updated, "data": {"text": text}})
    }

    /// A base doc: `n` messages and `k` parts with shuffled-ish creation times.
    fn base_doc() -> impl Strategy<Value = Map<String, Value>> {
        (vec(0u64..20, 0..6), vec(0u64..20, 0..6), 0u64..5).prop_map(|(m, p, st)| {
            let rows = |prefix: &str, times: &[u64]| {
                Value::Array(
                    times
                        .iter()
                        .enumerate()
                        .map(|(i, t)| row(&format!("{prefix}_{i}"), *t, *t, "base"))
                        .collect(),
                )
            };
            let doc = json!({"format": 1, "sessionId": "ses_x",
                             "session": {"id": "ses_x", "title": "t", "time_updated": st},
                             "messages": rows("msg", &m), "parts": rows("prt", &p)});
            doc.as_object().unwrap().clone()
        })
    }

    fn edits() -> impl Strategy<Value = Edits> {
        (
            vec(0usize..8, 0..3),
            vec(0usize..8, 0..3),
            0usize..3,
            any::<bool>(),
        )
            .prop_map(|(delete, bump, add, bump_session)| Edits {
                delete,
                bump,
                add,
                bump_session,
            })
    }

    /// Applies edits; `tag` makes added ids unique per side, `parity` keeps the two sides' bump
    /// times distinct (so no tie needs `prefer`). Returns the doc, the added ids, the deleted ids
    /// and the bumped ids.
    fn apply(
        base: &Map<String, Value>,
        e: &Edits,
        tag: &str,
        parity: u64,
    ) -> (
        Map<String, Value>,
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
    ) {
        let mut doc = base.clone();
        let (mut added, mut deleted, mut bumped) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for table in ["messages", "parts"] {
            let rows = doc[table].as_array_mut().unwrap();
            let n = rows.len();
            if n > 0 {
                for &i in &e.bump {
                    let r = rows[i % n].as_object_mut().unwrap();
                    let t = r["time_updated"].as_u64().unwrap();
                    r["time_updated"] = json!(100 + 2 * t + parity + 2 * (i as u64));
                    r["data"] = json!({"text": format!("bumped by {tag}")});
                    bumped.insert(r["id"].as_str().unwrap().to_string());
                }
                let del: BTreeSet<String> = e
                    .delete
                    .iter()
                    .map(|i| rows[i % n]["id"].as_str().unwrap().to_string())
                    .collect();
                rows.retain(|r| !del.contains(r["id"].as_str().unwrap()));
                deleted.extend(del);
            }
            for k in 0..e.add {
                let id = format!("{table}_{tag}_{k}");
                rows.push(row(&id, 50 + k as u64, 50 + k as u64, tag));
                added.insert(id);
            }
        }
        if e.bump_session {
            doc["session"]["time_updated"] = json!(10 + parity);
            doc["session"]["title"] = json!(format!("title {tag}"));
        }
        bumped.retain(|id| !deleted.contains(id));
        (doc, added, deleted, bumped)
    }

    fn bytes(d: &Map<String, Value>) -> Vec<u8> {
        render_doc(d)
    }

    fn all_ids(out: &MergeOutcome) -> BTreeSet<String> {
        let v: Value = serde_json::from_slice(&out.bytes).unwrap();
        ["messages", "parts"]
            .iter()
            .flat_map(|t| v[t].as_array().cloned().unwrap_or_default())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn flip(s: Side) -> Side {
        match s {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn rows_merge_properties(
            base in base_doc(),
            el in edits(),
            er in edits(),
            prefer in prop_oneof![Just(Side::Local), Just(Side::Remote)],
            with_base in prop::bool::weighted(0.9),
        ) {
            let (l, l_added, l_deleted, l_bumped) = apply(&base, &el, "L", 0);
            let (r, r_added, r_deleted, r_bumped) = apply(&base, &er, "R", 1);
            let bb = bytes(&base);
            let b = with_base.then_some(&bb[..]);
            let (lb, rb) = (bytes(&l), bytes(&r));

            let lr = merge_rows(b, &lb, &rb, prefer).unwrap();
            let rl = merge_rows(b, &rb, &lb, prefer).unwrap();
            // (1) Symmetric: with distinct bump times nothing ties, so `prefer` never matters.
            prop_assert!(lr.conflicts.is_empty(), "{:?}", lr.conflicts);
            prop_assert_eq!(&lr.bytes, &rl.bytes);
            let other = merge_rows(b, &lb, &rb, flip(prefer)).unwrap();
            prop_assert_eq!(&lr.bytes, &other.bytes);

            // (2) Idempotent.
            prop_assert_eq!(merge_rows(b, &lb, &lb, prefer).unwrap().bytes, lb.clone());
            prop_assert_eq!(merge_rows(b, &rb, &rb, prefer).unwrap().bytes, rb.clone());

            let ids = all_ids(&lr);
            // (3) Every added row is there.
            for id in l_added.iter().chain(&r_added) {
                prop_assert!(ids.contains(id), "added {} missing", id);
            }
            if with_base {
                // (4) Deleted on one side, untouched on the other: absent.
                for id in &l_deleted {
                    if !r_bumped.contains(id) {
                        prop_assert!(!ids.contains(id), "deleted {} present", id);
                    }
                }
                for id in &r_deleted {
                    if !l_bumped.contains(id) {
                        prop_assert!(!ids.contains(id), "deleted {} present", id);
                    }
                }
                // (5) Edited on one side, deleted on the other: kept.
                for id in l_bumped.iter().filter(|id| r_deleted.contains(*id)) {
                    prop_assert!(ids.contains(id), "edited {} lost", id);
                }
                // Untouched rows survive.
                for id in all_ids(&MergeOutcome { bytes: bb.clone(), conflicts: vec![] }) {
                    if !l_deleted.contains(&id) && !r_deleted.contains(&id) {
                        prop_assert!(ids.contains(&id), "untouched {} lost", id);
                    }
                }
            }
            // Result is a fixed point: merging it with either input against that input is itself.
            prop_assert_eq!(merge_rows(Some(&lb), &lb, &lr.bytes, prefer).unwrap().bytes, lr.bytes.clone());
        }

        #[test]
        fn rows_merge_symmetric_under_flip_even_with_ties(
            base in base_doc(),
            el in edits(),
            er in edits(),
            prefer in prop_oneof![Just(Side::Local), Just(Side::Remote)],
        ) {
            // Same parity: bump times may tie, so `prefer` decides; flipping sides and `prefer`
            // must give the same bytes and mirrored conflicts.
            let (l, ..) = apply(&base, &el, "L", 0);
            let (r, ..) = apply(&base, &er, "R", 0);
            let bb = bytes(&base);
            let (lb, rb) = (bytes(&l), bytes(&r));
            let lr = merge_rows(Some(&bb), &lb, &rb, prefer).unwrap();
            let rl = merge_rows(Some(&bb), &rb, &lb, flip(prefer)).unwrap();
            prop_assert_eq!(&lr.bytes, &rl.bytes);
            prop_assert_eq!(lr.conflicts.len(), rl.conflicts.len());
            for (a, b) in lr.conflicts.iter().zip(&rl.conflicts) {
                prop_assert_eq!(&a.path, &b.path);
                prop_assert_eq!(&a.local, &b.remote);
                prop_assert_eq!(&a.remote, &b.local);
            }
        }
    }
}
