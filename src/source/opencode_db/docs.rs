//! Rows as JSON, and the byte layout of the documents.
//!
//! A row is a JSON object of ALL its columns, in table column order (so columns added by a newer
//! OpenCode are carried through): INTEGER → integer, REAL → number (serde_json always writes a
//! fraction or exponent for floats, so `0.0` stays a REAL), TEXT → string, NULL → null,
//! BLOB → `{"$base64": "..."}`. The `data` column of `message` and `part` holds JSON text and is
//! embedded parsed; it is written back as compact JSON text. A `data` value that is not JSON text
//! is embedded as `{"$raw": <value as above>}` and written back unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value};

/// The `format` of every document this module reads and writes.
pub const FORMAT: i64 = 1;

pub(crate) type Row = Map<String, Value>;

/// Converts one SQLite value to JSON. `json_text`: the column holds JSON text (`data`).
pub(crate) fn sql_to_json(v: ValueRef<'_>, json_text: bool) -> Value {
    if json_text
        && let ValueRef::Text(t) = v
        && let Ok(parsed) = super::json::parse(t)
    {
        return parsed;
    }
    let plain = match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut m = Map::new();
            m.insert("$base64".into(), Value::String(BASE64.encode(b)));
            Value::Object(m)
        }
    };
    if json_text {
        let mut m = Map::new();
        m.insert("$raw".into(), plain);
        Value::Object(m)
    } else {
        plain
    }
}

/// The inverse of [`sql_to_json`]; the error describes the problem (the caller names the field).
pub(crate) fn json_to_sql(v: &Value, json_text: bool) -> Result<SqlValue, String> {
    if json_text {
        if let Some(inner) = single_key(v, "$raw") {
            return json_to_sql(inner, false);
        }
        return Ok(SqlValue::Text(
            serde_json::to_string(v).map_err(|e| e.to_string())?,
        ));
    }
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlValue::Integer(i)
            } else if n.is_u64() {
                return Err(format!("integer {n} does not fit SQLite's 64-bit integers"));
            } else {
                SqlValue::Real(n.as_f64().ok_or_else(|| format!("bad number {n}"))?)
            }
        }
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(_) => match single_key(v, "$base64") {
            Some(Value::String(s)) => SqlValue::Blob(
                BASE64
                    .decode(s)
                    .map_err(|e| format!("bad $base64 value: {e}"))?,
            ),
            _ => return Err("a JSON object where a column value was expected".into()),
        },
        Value::Array(_) => return Err("a JSON array where a column value was expected".into()),
    })
}

fn single_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(key),
        _ => None,
    }
}

/// Reads every column of a row (in statement order) into a JSON object, leaving out `skip`.
pub(crate) fn row_to_json(
    row: &rusqlite::Row<'_>,
    names: &[String],
    json_col: Option<&str>,
    skip: &[&str],
) -> rusqlite::Result<Row> {
    let mut m = Map::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let v = row.get_ref(i)?;
        m.insert(
            name.clone(),
            sql_to_json(v, json_col == Some(name.as_str())),
        );
    }
    Ok(m)
}

fn push_json(out: &mut Vec<u8>, v: &impl serde::Serialize) {
    // Serializing a Value/Map into a Vec cannot fail.
    serde_json::to_writer(&mut *out, v).expect("serializing JSON into memory");
}

/// `"name":[\n{row},\n{row}\n]` (or `"name":[]`).
fn push_rows(out: &mut Vec<u8>, name: &str, rows: &[Row]) {
    push_json(out, &name);
    out.extend_from_slice(b":[");
    for (i, r) in rows.iter().enumerate() {
        out.push(b'\n');
        push_json(out, r);
        if i + 1 < rows.len() {
            out.push(b',');
        }
    }
    if !rows.is_empty() {
        out.push(b'\n');
    }
    out.push(b']');
}

/// `{"format":1,"session":{...},"project":{...}}\n`
pub(crate) fn session_doc(session: &Row, project: Option<&Row>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(b"{\"format\":1,\"session\":");
    push_json(&mut out, session);
    out.extend_from_slice(b",\"project\":");
    match project {
        Some(p) => push_json(&mut out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
    out
}

/// `{"format":1,"sessionId":"..","messages":[\n{row},...\n],"parts":[\n{row},...\n]}\n`
pub(crate) fn messages_doc(session_id: &str, messages: &[Row], parts: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 * (messages.len() + parts.len() + 1));
    out.extend_from_slice(b"{\"format\":1,\"sessionId\":");
    push_json(&mut out, &session_id);
    out.push(b',');
    push_rows(&mut out, "messages", messages);
    out.push(b',');
    push_rows(&mut out, "parts", parts);
    out.extend_from_slice(b"}\n");
    out
}

/// `{"format":1,"sessionId":"..","todos":[\n{row},...\n]}\n`
pub(crate) fn todos_doc(session_id: &str, todos: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * (todos.len() + 1));
    out.extend_from_slice(b"{\"format\":1,\"sessionId\":");
    push_json(&mut out, &session_id);
    out.push(b',');
    push_rows(&mut out, "todos", todos);
    out.extend_from_slice(b"}\n");
    out
}

/// `{"format":1,"project":{...}}\n`
pub(crate) fn project_doc(project: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"format\":1,\"project\":");
    push_json(&mut out, project);
    out.extend_from_slice(b"}\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing and validating documents (remote data is untrusted).

/// A document problem: which document, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocProblem {
    pub field: String,
    pub problem: String,
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> DocProblem {
    DocProblem {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parses a document and checks `format`.
pub(crate) fn parse_doc(bytes: &[u8]) -> Result<Map<String, Value>, DocProblem> {
    let v: Value = super::json::parse(bytes)
        .map_err(|e| problem("(document)", format!("not valid JSON: {e}")))?;
    let Value::Object(m) = v else {
        return Err(problem("(document)", "not a JSON object"));
    };
    match m.get("format") {
        Some(f) if f.as_i64() == Some(FORMAT) => Ok(m),
        Some(f) => Err(problem(
            "format",
            format!("is {f}, this oc-sync reads format {FORMAT} only (upgrade oc-sync)"),
        )),
        None => Err(problem("format", "missing")),
    }
}

/// The object under `key`.
pub(crate) fn take_row(doc: &mut Map<String, Value>, key: &str) -> Result<Row, DocProblem> {
    match doc.remove(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(problem(key, "is not a JSON object")),
        None => Err(problem(key, "missing")),
    }
}

/// The array of objects under `key`.
pub(crate) fn take_rows(doc: &mut Map<String, Value>, key: &str) -> Result<Vec<Row>, DocProblem> {
    match doc.remove(key) {
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok(m),
                _ => Err(problem(format!("{key}[{i}]"), "is not a JSON object")),
            })
            .collect(),
        Some(_) => Err(problem(key, "is not a JSON array")),
        None => Err(problem(key, "missing")),
    }
}

/// A non-empty string field (ids).
pub(crate) fn str_field<'a>(row: &'a Row, field: &str, at: &str) -> Result<&'a str, DocProblem> {
    match row.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => Ok(s),
        Some(Value::String(_)) => Err(problem(
            format!("{at}.{field}"),
            "must be a non-empty string of at most 512 bytes",
        )),
        Some(_) => Err(problem(format!("{at}.{field}"), "is not a string")),
        None => Err(problem(format!("{at}.{field}"), "missing")),
    }
}

/// The document's top-level string field (`sessionId`).
pub(crate) fn doc_str(doc: &Map<String, Value>, field: &str) -> Result<String, DocProblem> {
    match doc.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => Ok(s.clone()),
        Some(_) => Err(problem(field, "must be a non-empty string")),
        None => Err(problem(field, "missing")),
    }
}

/// Checks that every column value can be stored (`json_col` may hold any JSON).
pub(crate) fn check_values(row: &Row, json_col: Option<&str>, at: &str) -> Result<(), DocProblem> {
    for (k, v) in row {
        json_to_sql(v, json_col == Some(k.as_str()))
            .map_err(|e| problem(format!("{at}.{k}"), e))?;
    }
    Ok(())
}

/// A number inside JSON (`data.cost`...), 0 when absent or not a number.
pub(crate) fn num_at(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0.0,
        }
    }
    cur.as_f64().unwrap_or(0.0)
}

/// An integer inside JSON (`data.tokens.input`...), 0 when absent.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_i64()
        .or_else(|| cur.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}
