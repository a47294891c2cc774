//! The string values of a config file with their paths, and rewriting some of them in place.
//!
//! Two syntaxes: JSON / JSONC files (`*.json`, `*.jsonc`: every string leaf; rewritten through
//! the CST so comments and layout survive), and the YAML front matter of markdown files (`*.md`:
//! `key: value` scalars of the block between the leading `---` lines, nested by indentation;
//! rewritten by replacing the scalar's text on its line). Front-matter values are taken as they
//! are written (inside their quotes, escapes untouched), so putting one back is byte-exact.

use serde_json::Value;

/// How a config item is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    FrontMatter,
}

impl Syntax {
    /// The syntax of a config item key (`config/opencode.json`, `config/agent/x.md`), if it has
    /// values oc-sync looks into.
    pub fn of_key(key: &str) -> Option<Syntax> {
        let rel = key.strip_prefix("config/")?;
        let ext = rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "json" | "jsonc" => Some(Syntax::Json),
            "md" => Some(Syntax::FrontMatter),
            _ => None,
        }
    }
}

/// One string value and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub path: Vec<String>,
    pub value: String,
}

/// The text is not what its syntax says (only JSON can fail: front matter is best effort).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DocError(pub String);

/// Every string value of `text`.
pub fn scalars(syntax: Syntax, text: &str) -> Result<Vec<Scalar>, DocError> {
    match syntax {
        Syntax::Json => {
            let mut out = Vec::new();
            if let Some(v) = parse_json(text)? {
                walk(&v, &mut Vec::new(), &mut out);
            }
            Ok(out)
        }
        Syntax::FrontMatter => Ok(front_matter(text).into_iter().map(|f| f.scalar).collect()),
    }
}

/// `text` with the values at the given paths replaced (paths not found are ignored).
pub fn replace(syntax: Syntax, text: &str, new: &[(Vec<String>, String)]) -> Result<String, DocError> {
    if new.is_empty() {
        return Ok(text.to_owned());
    }
    match syntax {
        Syntax::Json => {
            let Some(mut v) = parse_json(text)? else { return Ok(text.to_owned()) };
            if let Some(out) = splice_json(text, new).filter(|out| means(out, &v, new)) {
                return Ok(out);
            }
            for (path, s) in new {
                if let Some(slot) = at_mut(&mut v, path) {
                    *slot = Value::String(s.clone());
                }
            }
            let out = crate::merge::jsonc::rewrite_to(text.as_bytes(), &v).map_err(|e| DocError(e.to_string()))?;
            String::from_utf8(out).map_err(|e| DocError(e.to_string()))
        }
        Syntax::FrontMatter => {
            let mut out = text.to_owned();
            let mut found = front_matter(text);
            // From the end, so earlier offsets stay valid.
            found.sort_by_key(|f| std::cmp::Reverse(f.start));
            for f in found {
                if let Some((_, s)) = new.iter().find(|(p, _)| *p == f.scalar.path) {
                    out.replace_range(f.start..f.end, s);
                }
            }
            Ok(out)
        }
    }
}

/// A path as a JSON pointer (`/provider/openai/options/apiKey`).
pub fn pointer(path: &[String]) -> String {
    path.iter().map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

/// A path as people read it (`provider.openai.options.apiKey`).
pub fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// `text` with the string literals at the given paths rewritten in place (every other byte kept).
fn splice_json(text: &str, new: &[(Vec<String>, String)]) -> Option<String> {
    use jsonc_parser::ast;
    fn collect<'t>(v: &ast::Value<'_>, path: &mut Vec<String>, new: &'t [(Vec<String>, String)], out: &mut Vec<(usize, usize, &'t str)>) {
        match v {
            ast::Value::StringLit(lit) => {
                if let Some((_, s)) = new.iter().find(|(p, _)| p == path) {
                    out.push((lit.range.start, lit.range.end, s));
                }
            }
            ast::Value::Array(a) => {
                for (i, x) in a.elements.iter().enumerate() {
                    path.push(i.to_string());
                    collect(x, path, new, out);
                    path.pop();
                }
            }
            ast::Value::Object(o) => {
                for prop in &o.properties {
                    path.push(prop.name.as_str().to_owned());
                    collect(&prop.value, path, new, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let opts = jsonc_parser::ParseOptions { allow_comments: true, allow_loose_object_property_names: false, allow_trailing_commas: true };
    let parsed = jsonc_parser::parse_to_ast(body, &Default::default(), &opts).ok()?;
    let mut edits = Vec::new();
    collect(parsed.value.as_ref()?, &mut Vec::new(), new, &mut edits);
    edits.sort_by_key(|(start, ..)| std::cmp::Reverse(*start));
    let mut out = body.to_owned();
    for (start, end, s) in edits {
        out.replace_range(start..end, &serde_json::to_string(s).ok()?);
    }
    Some(format!("{bom}{out}"))
}

/// Whether `out` parses to `before` with the replacements made.
fn means(out: &str, before: &Value, new: &[(Vec<String>, String)]) -> bool {
    let mut want = before.clone();
    for (path, s) in new {
        if let Some(slot) = at_mut(&mut want, path) {
            *slot = Value::String(s.clone());
        }
    }
    matches!(crate::jsonc::parse(out), Ok(Some(v)) if v == want)
}

fn parse_json(text: &str) -> Result<Option<Value>, DocError> {
    crate::jsonc::parse(text).map_err(|e| DocError(format!("not valid JSONC: {e}")))
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Scalar>) {
    match v {
        Value::String(s) => out.push(Scalar { path: path.clone(), value: s.clone() }),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                walk(x, path, out);
                path.pop();
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                walk(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// A front-matter scalar and the byte range of its text (inside quotes) in the whole file.
struct Found {
    scalar: Scalar,
    start: usize,
    end: usize,
}

/// The `key: value` scalars of a markdown file's leading `---` block.
fn front_matter(text: &str) -> Vec<Found> {
    let mut lines = lines_with_offsets(text);
    match lines.next() {
        Some((_, first)) if first.trim_end() == "---" => {}
        _ => return Vec::new(),
    }
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut block: Option<usize> = None;
    for (offset, line) in lines {
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "---" || content == "..." {
            return out;
        }
        let body = content.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = content.len() - body.len();
        match block {
            Some(b) if indent > b => continue,
            _ => block = None,
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let Some((key, after)) = split_key(body) else { continue };
        let value_at = content.len() - after.len();
        let v = after.trim_start_matches([' ', '\t']);
        let v_at = offset + value_at + (after.len() - v.len());
        if v.is_empty() || v.starts_with('#') {
            stack.push((indent, key));
            continue;
        }
        if v.starts_with(['|', '>']) {
            block = Some(indent);
            continue;
        }
        if let Some((s, e)) = scalar_range(v) {
            let mut path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
            path.push(key);
            out.push(Found { scalar: Scalar { path, value: v[s..e].to_owned() }, start: v_at + s, end: v_at + e });
        }
    }
    // No closing line: not front matter.
    Vec::new()
}

fn lines_with_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0usize, |at, line| {
        let start = *at;
        *at += line.len();
        Some((start, line))
    })
}

/// `key: rest` → (key, rest after the colon).
fn split_key(body: &str) -> Option<(String, &str)> {
    if body.starts_with("- ") || body == "-" || body.starts_with(['[', '{', '?']) {
        return None;
    }
    if let Some(q) = body.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = body[1..].find(q)? + 1;
        let rest = body[end + 1..].strip_prefix(':')?;
        return Some((body[1..end].to_owned(), rest));
    }
    let colon = body.match_indices(':').map(|(i, _)| i).find(|&i| body[i + 1..].is_empty() || body[i + 1..].starts_with([' ', '\t']))?;
    Some((body[..colon].trim_end().to_owned(), &body[colon + 1..]))
}

/// The value text inside `v` (after `key: `): inside its quotes, or a plain scalar up to a ` #`
/// comment. `None` for flow collections and unterminated quotes.
fn scalar_range(v: &str) -> Option<(usize, usize)> {
    match v.chars().next()? {
        '"' => {
            let mut escaped = false;
            for (i, c) in v.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return Some((1, i)),
                    _ => escaped = false,
                }
            }
            None
        }
        '\'' => {
            let b = v.as_bytes();
            let mut i = 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some((1, i));
                }
                i += 1;
            }
            None
        }
        '[' | '{' | '&' | '*' | '!' => None,
        _ => {
            let end = v.find(" #").or_else(|| v.find("\t#")).unwrap_or(v.len());
            Some((0, v[..end].trim_end().len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn front_matter_scalars_nest_by_indentation_and_keep_quotes_out() {
        let md = "---\ndescription: Reviews code # a comment\nmodel: \"anthropic/x\"\noptions:\n  apiKey: 'sk-a''b'\n  nested:\n    token: abc\nprompt: |\n  token: not-a-key\ntools:\n  - write\n---\n\ntoken: body text\n";
        let got: Vec<(String, String)> = scalars(Syntax::FrontMatter, md).unwrap().into_iter().map(|s| (dotted(&s.path), s.value)).collect();
        assert_eq!(
            got,
            vec![
                ("description".into(), "Reviews code".into()),
                ("model".into(), "anthropic/x".into()),
                ("options.apiKey".into(), "sk-a''b".into()),
                ("options.nested.token".into(), "abc".into()),
            ]
        );
        let out = replace(Syntax::FrontMatter, md, &[(p("options.nested.token"), "X".into()), (p("options.apiKey"), "Y".into())]).unwrap();
        assert_eq!(out, md.replace("token: abc", "token: X").replace("'sk-a''b'", "'Y'"));
    }

    #[test]
    fn markdown_without_closed_front_matter_has_no_values() {
        assert!(scalars(Syntax::FrontMatter, "# Title\ntoken: x\n").unwrap().is_empty());
        assert!(scalars(Syntax::FrontMatter, "---\ntoken: x\n").unwrap().is_empty());
    }

    #[test]
    fn json_replace_keeps_comments() {
        let text = "{\n  // the key\n  \"provider\": { \"a\": { \"options\": { \"apiKey\": \"k1\", \"x\": [\"k2\"] } } }\n}\n";
        let s = scalars(Syntax::Json, text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(pointer(&s[1].path), "/provider/a/options/x/0");
        let out = replace(Syntax::Json, text, &[(s[0].path.clone(), "NEW".into())]).unwrap();
        assert!(out.contains("// the key") && out.contains("\"NEW\"") && !out.contains("k1"), "{out}");
    }

    #[test]
    fn json_replace_keeps_every_other_byte() {
        let text = "\u{feff}{ \"é\": [\n    \"a\", // why\n    \"ü-key\"\n  ], \"x\": \"keep\\u0041\" }";
        let out = replace(Syntax::Json, text, &[(p("é.1"), "new \"q\"".into())]).unwrap();
        assert_eq!(out, text.replace("\"ü-key\"", "\"new \\\"q\\\"\""));
    }

    #[test]
    fn syntax_by_key() {
        assert_eq!(Syntax::of_key("config/opencode.jsonc"), Some(Syntax::Json));
        assert_eq!(Syntax::of_key("config/agent/a.md"), Some(Syntax::FrontMatter));
        assert_eq!(Syntax::of_key("config/tool/a.ts"), None);
        assert_eq!(Syntax::of_key("state/kv.json"), None);
    }
}
