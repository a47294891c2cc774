//! Convex's argument validation and value limits, as the real OpenSync deployment applies them to
//! the arguments of its internal mutations (`convex/values` validators): `v.object` refuses extra
//! fields, `v.optional(x)` takes an absent field but not `null`, numbers are float64, and every
//! value obeys Convex's limits (arrays of at most 8192 elements, objects of at most 1024 fields,
//! field names non-empty and not starting with `$`, nesting depth at most 16). Documents are at
//! most 1 MiB.

use serde_json::Value;

/// Longest array Convex stores or takes as an argument.
pub const MAX_ARRAY: usize = 8192;
/// Most fields of one object.
pub const MAX_FIELDS: usize = 1024;
/// Deepest nesting of arrays and objects in a value (the value itself is level 1).
pub const MAX_DEPTH: usize = 16;
/// Largest document.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// A validator of `convex/values`.
#[derive(Debug, Clone)]
pub enum V {
    Str,
    Num,
    Any,
    Opt(Box<V>),
    Arr(Box<V>),
    Obj(Vec<(&'static str, V)>),
    /// `v.union(v.literal(a), v.literal(b), ...)`.
    Lits(&'static [&'static str]),
}

impl V {
    pub fn opt(v: V) -> V {
        V::Opt(Box::new(v))
    }
    pub fn arr(v: V) -> V {
        V::Arr(Box::new(v))
    }
    fn show(&self) -> String {
        match self {
            V::Str => "v.string()".into(),
            V::Num => "v.float64()".into(),
            V::Any => "v.any()".into(),
            V::Opt(x) => format!("v.optional({})", x.show()),
            V::Arr(x) => format!("v.array({})", x.show()),
            V::Obj(fields) => {
                let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {}", v.show())).collect();
                format!("v.object({{{}}})", f.join(", "))
            }
            V::Lits(l) => {
                let f: Vec<String> = l.iter().map(|x| format!("v.literal(\"{x}\")")).collect();
                format!("v.union({})", f.join(", "))
            }
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 { format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < 200).last().map_or(0, |(i, c)| i + c.len_utf8())]) } else { s }
}

fn mismatch(path: &str, value: &Value, v: &V) -> String {
    format!("ArgumentValidationError: Value does not match validator.\nPath: {path}\nValue: {}\nValidator: {}", short(value), v.show())
}

/// Checks `value` (None = absent) against `v`; the error is Convex's text.
pub fn validate(value: Option<&Value>, v: &V, path: &str) -> Result<(), String> {
    let Some(value) = value else {
        return match v {
            V::Opt(_) => Ok(()),
            _ => Err(format!("ArgumentValidationError: Object is missing the required field `{}`. Consider wrapping the field validator in `v.optional(...)` if this is expected.\nValidator: {}", path.rsplit('.').next().unwrap_or(path), v.show())),
        };
    };
    match v {
        V::Opt(inner) => validate(Some(value), inner, path),
        V::Any => Ok(()),
        V::Str if value.is_string() => Ok(()),
        V::Num if value.is_number() => Ok(()),
        V::Lits(l) if value.as_str().is_some_and(|s| l.contains(&s)) => Ok(()),
        V::Arr(inner) => {
            let Some(items) = value.as_array() else { return Err(mismatch(path, value, v)) };
            for (i, x) in items.iter().enumerate() {
                validate(Some(x), inner, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        V::Obj(fields) => {
            let Some(obj) = value.as_object() else { return Err(mismatch(path, value, v)) };
            if let Some(extra) = obj.keys().find(|k| !fields.iter().any(|(f, _)| f == k)) {
                return Err(format!(
                    "ArgumentValidationError: Object contains extra field `{extra}` that is not in the validator.\nPath: {path}\nObject: {}\nValidator: {}",
                    short(value),
                    v.show()
                ));
            }
            for (f, fv) in fields {
                validate(obj.get(*f), fv, &format!("{path}.{f}"))?;
            }
            Ok(())
        }
        _ => Err(mismatch(path, value, v)),
    }
}

/// Convex's limits on any value (arguments or documents).
pub fn check_value(value: &Value) -> Result<(), String> {
    check_at(value, 1)
}

fn check_at(value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => Err(format!("Value is too nested (nested depth > {MAX_DEPTH})")),
        Value::Array(a) => {
            if a.len() > MAX_ARRAY {
                return Err(format!("Array length is too long ({} > maximum length {MAX_ARRAY})", a.len()));
            }
            a.iter().try_for_each(|x| check_at(x, depth + 1))
        }
        Value::Object(m) => {
            if m.len() > MAX_FIELDS {
                return Err(format!("Object has too many fields ({} > maximum number {MAX_FIELDS})", m.len()));
            }
            for (k, x) in m {
                if k.is_empty() || k.starts_with('$') {
                    return Err(format!("Field name {k:?} is not valid: field names must be nonempty and not start with \"$\""));
                }
                check_at(x, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A document's size as Convex counts it (close enough: its JSON text).
pub fn check_document(table: &str, doc: &Value) -> Result<(), String> {
    let n = doc.to_string().len();
    if n > MAX_DOCUMENT {
        return Err(format!("Value is too large ({n} bytes > maximum size {MAX_DOCUMENT} bytes) in table \"{table}\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_optional_null_and_limits() {
        let v = V::Obj(vec![("a", V::Str), ("b", V::opt(V::Num))]);
        assert!(validate(Some(&json!({"a": "x"})), &v, "").is_ok());
        assert!(validate(Some(&json!({"a": "x", "b": 1.5})), &v, "").is_ok());
        assert!(validate(Some(&json!({"a": "x", "b": null})), &v, "").unwrap_err().contains("Path: .b"));
        assert!(validate(Some(&json!({"a": "x", "c": 1})), &v, "").unwrap_err().contains("extra field `c`"));
        assert!(validate(Some(&json!({"b": 1})), &v, "").unwrap_err().contains("missing the required field `a`"));
        assert!(check_value(&json!(vec![0; MAX_ARRAY])).is_ok());
        assert!(check_value(&json!(vec![0; MAX_ARRAY + 1])).is_err());
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(check_value(&deep).is_ok());
        assert!(check_value(&json!([deep])).is_err());
        assert!(check_value(&json!({"$x": 1})).is_err());
        assert!(check_value(&json!({"": 1})).is_err());
        assert!(check_document("parts", &json!({"c": "x".repeat(MAX_DOCUMENT)})).is_err());
    }
}
