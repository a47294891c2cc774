//! One OpenCode session (oc-sync's documents, see [`crate::source::opencode_db`]) mapped to the
//! OpenSync dashboard's payloads: one session payload and one payload per message.
//!
//! Inputs are the bytes of the `sessions/<sid>`, `messages/<sid>` and `projects/<pid>` documents
//! (untrusted: every problem is an `Err` naming the document and the field). Outputs are JSON
//! values ready to POST; absent values are left out (never `null`: OpenSync's validators take an
//! optional field as absent, not null).
//!
//! Choices (the contract leaves them to us):
//! - **Tokens.** `promptTokens` = Σ `tokens.input` of assistant messages, cache reads and writes NOT
//!   included (OpenCode's own `input` figure and the session row's `tokens_input`; cached tokens
//!   are already priced into `cost`). `completionTokens` = Σ (`tokens.output` + `tokens.reasoning`):
//!   reasoning tokens are billed as output. The same definitions are used per message.
//! - **Session totals** come from the messages document when it is given (assistant messages'
//!   `data.cost` and `data.tokens`, OpenCode's own per-message figures), else from the session row
//!   (`cost`, `tokens_input`, `tokens_output` + `tokens_reasoning`), which OpenCode keeps equal.
//! - **Session `durationMs`**: with messages, the latest message end (`time.completed`, else
//!   `time.created`) minus the first message's `time.created` (the active span of the
//!   conversation; `session.time_updated` also moves on title or metadata changes); without
//!   messages (or none), `time_updated − time_created`. Never negative.
//! - **Model/provider**: the session row's `model` column (`{"id","providerID"}`, JSON text), else
//!   the last assistant message's `modelID`/`providerID`, else the last user message's
//!   `model.{modelID,providerID}`.
//! - **Project**: `projectPath` = `session.directory`, else the project's `worktree`;
//!   `projectName` = the project's non-empty `name`, else the last component of `projectPath`.
//!   The project is taken from `project_doc` when given, else from the session document.
//! - **Roles**: `user`, `assistant`, `system`, `tool` kept; anything else (or none) → `unknown`.
//! - **Parts** (in the document's order, which is conversation order within a message):
//!   `text` → `{type:"text", content:<string>}`; `tool` → `{type:"tool-call", content:{name,
//!   callId, args}}` and, when the tool finished, `{type:"tool-result", content:{name, callId,
//!   result, status}}` (status `completed`) or `{…, error, status}` (status `error`);
//!   `reasoning` → `{type:"reasoning", content:<string>}` only with
//!   [`Options::include_reasoning`]. Text and reasoning content is a string (rendered as markdown);
//!   tool content is a JSON object keyed `name`, `args`, `result` (what every OpenSync version's
//!   viewer reads; newer ones also accept `toolName`, `input`, `output`). Skipped: empty text/reasoning, text parts marked `ignored`, and `patch`,
//!   `file`, `step-start`, `step-finish`, `snapshot`, `subtask`, `agent`, `retry`, `compaction`
//!   and unknown types (bookkeeping, snapshot hashes or machine-local paths, nothing the dashboard
//!   renders). A message without any kept part still carries `parts: []`, so every payload is
//!   complete and re-sending it replaces, never merges.
//! - **`textContent`**: every kept text part of the message (after truncation) joined with "\n\n"
//!   (not only the last one); reasoning never goes into it. Omitted when there is no text.
//! - **Truncation**: every string longer than [`Options::max_part_chars`] characters (text,
//!   reasoning, tool output/error, each string inside a tool's input) keeps its first
//!   `max_part_chars` characters followed by [`TRUNCATION_MARKER`] and the number of characters cut;
//!   a truncated tool result also carries `"truncated": true`. `0` disables truncation.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::source::opencode_db::docs::{DocProblem, parse_doc, take_rows};

/// The `source` of every payload.
pub const SOURCE: &str = "opencode";

/// Appended to a truncated string, followed by `<n> chars]`.
pub const TRUNCATION_MARKER: &str = "\n\n…[truncated by oc-sync: ";

/// How messages are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Emit `reasoning` parts (the model's thinking). Off by default: it is often long and may be
    /// private.
    pub include_reasoning: bool,
    /// Longest string (in characters) kept in a part; longer ones are cut and marked. 0 = no limit.
    pub max_part_chars: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_reasoning: false,
            max_part_chars: 100_000,
        }
    }
}

type Obj = Map<String, Value>;

fn err(doc: &str, field: impl AsRef<str>, problem: impl AsRef<str>) -> String {
    format!("{doc} document: {}: {}", field.as_ref(), problem.as_ref())
}

fn parse(doc: &str, bytes: &[u8]) -> Result<Obj, String> {
    parse_doc(bytes).map_err(|DocProblem { field, problem }| err(doc, field, problem))
}

/// The object under `key`; `None` when absent or null.
fn opt_obj(doc_name: &str, doc: &mut Obj, key: &str) -> Result<Option<Obj>, String> {
    match doc.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(err(doc_name, key, "is not a JSON object")),
    }
}

fn req_obj(doc_name: &str, doc: &mut Obj, key: &str) -> Result<Obj, String> {
    opt_obj(doc_name, doc, key)?.ok_or_else(|| err(doc_name, key, "missing"))
}

fn req_str<'a>(doc_name: &str, row: &'a Obj, field: &str, at: &str) -> Result<&'a str, String> {
    match row.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(err(doc_name, format!("{at}.{field}"), "is empty")),
        Some(_) => Err(err(doc_name, format!("{at}.{field}"), "is not a string")),
        None => Err(err(doc_name, format!("{at}.{field}"), "missing")),
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| cur.get(p))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

fn num_at(v: &Value, path: &[&str]) -> Option<f64> {
    get(v, path).and_then(Value::as_f64)
}

fn put_str(out: &mut Obj, key: &str, v: Option<&str>) {
    if let Some(s) = v {
        out.insert(key.into(), Value::String(s.to_owned()));
    }
}

/// (prompt, completion) tokens of one message's `data`, per the module's definition.
fn message_tokens(data: &Value) -> Option<(i64, i64)> {
    let t = data.get("tokens")?;
    if !t.is_object() {
        return None;
    }
    let prompt = int_at(t, &["input"]).unwrap_or(0);
    let completion = int_at(t, &["output"]).unwrap_or(0) + int_at(t, &["reasoning"]).unwrap_or(0);
    Some((prompt, completion))
}

/// `s` cut to `max` characters (0 = no limit) plus the marker; `None` when it fits.
fn truncate(s: &str, max: usize) -> Option<String> {
    if max == 0 || s.len() <= max {
        return None; // bytes ≥ chars, so it fits
    }
    let (cut_at, _) = s.char_indices().nth(max)?;
    let cut = s[cut_at..].chars().count();
    Some(format!("{}{TRUNCATION_MARKER}{cut} chars]", &s[..cut_at]))
}

fn truncated_string(s: &str, max: usize, flag: &mut bool) -> String {
    match truncate(s, max) {
        Some(t) => {
            *flag = true;
            t
        }
        None => s.to_owned(),
    }
}

/// Truncates every string inside `v` (tool inputs).
fn truncate_value(v: &Value, max: usize, flag: &mut bool) -> Value {
    match v {
        Value::String(s) => Value::String(truncated_string(s, max, flag)),
        Value::Array(a) => Value::Array(a.iter().map(|x| truncate_value(x, max, flag)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), truncate_value(x, max, flag)))
                .collect(),
        ),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// The messages document parsed: the session id, the message rows in order, and each message's
/// parts (by message id, in document order).
struct Messages {
    session_id: String,
    messages: Vec<Obj>,
    parts: HashMap<String, Vec<Obj>>,
}

fn parse_messages(bytes: &[u8]) -> Result<Messages, String> {
    const D: &str = "messages";
    let mut doc = parse(D, bytes)?;
    let session_id = req_str(D, &doc, "sessionId", "(document)")
        .map_err(|_| err(D, "sessionId", "missing or not a non-empty string"))?
        .to_owned();
    let rows = |doc: &mut Obj, key: &str| -> Result<Vec<Obj>, String> {
        take_rows(doc, key).map_err(|DocProblem { field, problem }| err(D, field, problem))
    };
    let messages = rows(&mut doc, "messages")?;
    for (i, m) in messages.iter().enumerate() {
        req_str(D, m, "id", &format!("messages[{i}]"))?;
    }
    let mut parts: HashMap<String, Vec<Obj>> = HashMap::new();
    for (i, p) in rows(&mut doc, "parts")?.into_iter().enumerate() {
        let mid = req_str(D, &p, "message_id", &format!("parts[{i}]"))?.to_owned();
        parts.entry(mid).or_default().push(p);
    }
    Ok(Messages {
        session_id,
        messages,
        parts,
    })
}

fn map_role(role: Option<&str>) -> &'static str {
    match role {
        Some("user") => "user",
        Some("assistant") => "assistant",
        Some("system") => "system",
        Some("tool") => "tool",
        _ => "unknown",
    }
}

/// The dashboard parts of one message, and its text parts (for `textContent`).
fn map_parts(parts: &[Obj], opts: &Options) -> (Vec<Value>, Vec<String>) {
    let max = opts.max_part_chars;
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for p in parts {
        let Some(data) = p.get("data") else { continue };
        match data.get("type").and_then(Value::as_str) {
            Some("text") => {
                let ignored = data.get("ignored").and_then(Value::as_bool) == Some(true);
                let Some(text) = str_at(data, &["text"]) else {
                    continue;
                };
                if ignored || text.trim().is_empty() {
                    continue;
                }
                let text = truncated_string(text, max, &mut false);
                out.push(json!({"type": "text", "content": text}));
                texts.push(text);
            }
            Some("reasoning") if opts.include_reasoning => {
                let Some(text) = str_at(data, &["text"]).filter(|t| !t.trim().is_empty()) else {
                    continue;
                };
                let text = truncated_string(text, max, &mut false);
                out.push(json!({"type": "reasoning", "content": text}));
            }
            Some("tool") => {
                let tool = str_at(data, &["tool"]).unwrap_or("unknown");
                let call_id = str_at(data, &["callID"]).unwrap_or("");
                let state = data.get("state").cloned().unwrap_or(Value::Null);
                let input = state
                    .get("input")
                    .map(|v| convex_safe(truncate_value(v, max, &mut false)))
                    .unwrap_or_else(|| Value::Object(Map::new()));
                out.push(json!({"type": "tool-call",
                    "content": {"name": tool, "callId": call_id, "args": input}}));
                let status = state.get("status").and_then(Value::as_str);
                let (key, value) = match status {
                    Some("completed") => ("result", state.get("output")),
                    Some("error") => ("error", state.get("error")),
                    _ => continue,
                };
                let mut truncated = false;
                let value = match value {
                    Some(Value::String(s)) => {
                        Value::String(truncated_string(s, max, &mut truncated))
                    }
                    Some(Value::Null) | None => Value::String(String::new()),
                    Some(v) => convex_safe(truncate_value(v, max, &mut truncated)),
                };
                let mut content = Map::new();
                content.insert("name".into(), tool.into());
                content.insert("callId".into(), call_id.into());
                content.insert(key.into(), value);
                content.insert("status".into(), status.unwrap_or_default().into());
                if truncated {
                    content.insert("truncated".into(), true.into());
                }
                out.push(json!({"type": "tool-result", "content": content}));
            }
            // patch, file, step-start, step-finish, snapshot, subtask, agent, retry, compaction,
            // reasoning without the option, unknown types: skipped (see the module docs).
            _ => {}
        }
    }
    (out, texts)
}

fn message_payload(session_id: &str, msg: &Obj, parts: &[Obj], opts: &Options) -> Value {
    let null = Value::Null;
    let data = msg.get("data").unwrap_or(&null);
    let mut out = Map::new();
    out.insert("sessionExternalId".into(), session_id.into());
    out.insert(
        "externalId".into(),
        msg.get("id").cloned().unwrap_or_default(),
    );
    let role = map_role(data.get("role").and_then(Value::as_str));
    out.insert("role".into(), role.into());
    let (mut parts_out, texts) = map_parts(parts, opts);
    if parts_out.len() > MAX_PARTS {
        let cut = parts_out.len() - MAX_PARTS + 1;
        parts_out.truncate(MAX_PARTS - 1);
        parts_out.push(json!({"type": "text", "content": format!("[oc-sync: {cut} more parts of this message left out: OpenSync takes at most {MAX_PARTS}]")}));
    }
    for p in &mut parts_out {
        fit_document(&mut p["content"]);
    }
    if !texts.is_empty() {
        let mut text = Value::String(texts.join("\n\n"));
        fit_document(&mut text);
        out.insert("textContent".into(), text);
    }
    put_str(
        &mut out,
        "model",
        str_at(data, &["modelID"]).or_else(|| str_at(data, &["model", "modelID"])),
    );
    if let Some((prompt, completion)) = message_tokens(data) {
        out.insert("promptTokens".into(), prompt.into());
        out.insert("completionTokens".into(), completion.into());
    }
    if let (Some(c), Some(d)) = (
        int_at(data, &["time", "created"]),
        int_at(data, &["time", "completed"]),
    ) {
        out.insert("durationMs".into(), (d - c).max(0).into());
    }
    out.insert("source".into(), SOURCE.into());
    if let Some(t) = msg
        .get("time_created")
        .and_then(Value::as_i64)
        .or_else(|| int_at(data, &["time", "created"]))
    {
        out.insert("createdAt".into(), t.into());
    }
    out.insert("parts".into(), Value::Array(parts_out));
    Value::Object(out)
}

/// One payload per message of `messages_doc`, in conversation order. `session_id` must be the
/// document's `sessionId`.
pub fn message_payloads(
    session_id: &str,
    messages_doc: &[u8],
    opts: &Options,
) -> Result<Vec<Value>, String> {
    Ok(message_outputs(session_id, messages_doc, opts)?.into_iter().map(|m| m.payload).collect())
}

/// A message payload (for `/sync/message`, with `createdAt`) and what the export needs to know.
#[derive(Debug, Clone)]
pub struct MessageOut {
    pub id: String,
    pub payload: Value,
    /// Finished: an assistant message with `time.completed` (or an `error`), any other message
    /// once a later one exists (OpenCode writes the row before its parts).
    pub complete: bool,
    /// OpenCode's creation time (ms).
    pub created_ms: Option<i64>,
}

/// [`message_payloads`] with each message's state.
pub fn message_outputs(session_id: &str, messages_doc: &[u8], opts: &Options) -> Result<Vec<MessageOut>, String> {
    let m = parse_messages(messages_doc)?;
    if m.session_id != session_id {
        return Err(err(
            "messages",
            "sessionId",
            format!("is {:?}, expected {session_id:?}", m.session_id),
        ));
    }
    let n = m.messages.len();
    Ok(m.messages
        .iter()
        .enumerate()
        .map(|(i, msg)| {
            let id = msg.get("id").and_then(Value::as_str).unwrap_or_default();
            let parts = m.parts.get(id).map(Vec::as_slice).unwrap_or_default();
            let mut payload = message_payload(session_id, msg, parts, opts);
            // One request must stay under Convex's argument size: cut long strings harder.
            let mut o = opts.clone();
            while payload.to_string().len() > MAX_REQUEST_BYTES && o.max_part_chars > 1000 {
                o.max_part_chars = if o.max_part_chars == 0 { 100_000 } else { o.max_part_chars / 4 };
                payload = message_payload(session_id, msg, parts, &o);
            }
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            // OpenCode writes a message's row before its parts: an assistant message is finished
            // at `time.completed` (or an error), any other once the conversation went on past it.
            let complete = match str_at(&data, &["role"]) {
                Some("assistant") => get(&data, &["time", "completed"]).is_some_and(|v| !v.is_null()) || data.get("error").is_some_and(|v| !v.is_null()),
                _ => i + 1 < n,
            };
            let created_ms = payload["createdAt"].as_i64();
            MessageOut { id: id.to_owned(), payload, complete, created_ms }
        })
        .collect())
}

/// The payload for `/sync/batch`, whose item validators have no `createdAt`.
pub fn for_batch(payload: &Value) -> Value {
    let mut v = payload.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("createdAt");
    }
    v
}

/// The session fields the server's dedup compares (sessions.ts `upsert`): an update that changes
/// none of them within 10 s of the session's last write is skipped by the server.
pub fn session_key(payload: &Value) -> String {
    let k = ["title", "model", "projectPath", "promptTokens", "completionTokens"].map(|f| payload.get(f).cloned().unwrap_or(Value::Null));
    Value::Array(k.to_vec()).to_string()
}

// ---------------------------------------------------------------------------------------------
// Convex's limits (see the notes: 8192 array elements, 1024 fields, field names, nesting depth
// 16 counted from the mutation's arguments, 1 MiB per document)

/// Most parts sent for one message (Convex arrays hold at most 8192 values).
pub const MAX_PARTS: usize = 8000;
/// Largest part content or `textContent` sent (a document is at most 1 MiB).
pub const MAX_DOC_BYTES: usize = 900_000;
/// Largest message request (Convex's argument limit).
pub const MAX_REQUEST_BYTES: usize = 8 << 20;
/// Deepest part content sent: the content sits 6 levels deep in a batch's arguments.
const MAX_CONTENT_DEPTH: usize = 10;

fn safe_at(v: &Value, depth: usize) -> bool {
    match v {
        Value::Array(a) => depth <= MAX_CONTENT_DEPTH && a.len() <= 8192 && a.iter().all(|x| safe_at(x, depth + 1)),
        Value::Object(m) => {
            depth <= MAX_CONTENT_DEPTH
                && m.len() <= 1024
                && m.iter().all(|(k, x)| !k.is_empty() && !k.starts_with('$') && !k.starts_with('_') && k.is_ascii() && safe_at(x, depth + 1))
        }
        _ => true,
    }
}

/// `v` when Convex takes it as a value, else its JSON text (too deep, too many elements or
/// fields, or field names Convex refuses).
fn convex_safe(v: Value) -> Value {
    if safe_at(&v, 1) { v } else { Value::String(v.to_string()) }
}

/// Cuts `v` so that it fits in one document: a string is cut (marked), anything else becomes
/// its cut JSON text.
fn fit_document(v: &mut Value) {
    let text = match &*v {
        Value::String(s) if s.len() <= MAX_DOC_BYTES => return,
        Value::String(s) => s.clone(),
        other => {
            let t = other.to_string();
            if t.len() <= MAX_DOC_BYTES {
                return;
            }
            t
        }
    };
    let mut cut = MAX_DOC_BYTES - 100;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let rest = text[cut..].chars().count();
    *v = Value::String(format!("{}{TRUNCATION_MARKER}{rest} chars]", &text[..cut]));
}

// ---------------------------------------------------------------------------------------------
// Session

fn last_path_component(path: &str) -> Option<&str> {
    path.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
}

/// `(modelID, providerID)` from the session row's `model` column (JSON text or an object).
fn session_model(session: &Value) -> (Option<String>, Option<String>) {
    let parsed;
    let v = match session.get("model") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(_) => return (None, None),
        },
        Some(v @ Value::Object(_)) => v,
        _ => return (None, None),
    };
    (
        str_at(v, &["id"])
            .or_else(|| str_at(v, &["modelID"]))
            .map(str::to_owned),
        str_at(v, &["providerID"]).map(str::to_owned),
    )
}

/// The session payload. `project_doc` (when given) wins over the project embedded in the session
/// document; `messages_doc` (when given) supplies totals, duration and a model fallback.
pub fn session_payload(
    session_doc: &[u8],
    project_doc: Option<&[u8]>,
    messages_doc: Option<&[u8]>,
    _opts: &Options,
) -> Result<Value, String> {
    let SessionDocs { sid, session: sv, project: pv, messages } = session_docs(session_doc, project_doc, messages_doc)?;

    let mut out = Map::new();
    out.insert("externalId".into(), sid.into());
    put_str(&mut out, "title", str_at(&sv, &["title"]));
    let project_path = str_at(&sv, &["directory"]).or_else(|| str_at(&pv, &["worktree"]));
    put_str(&mut out, "projectPath", project_path);
    put_str(
        &mut out,
        "projectName",
        str_at(&pv, &["name"])
            .filter(|n| !n.trim().is_empty())
            .or_else(|| project_path.and_then(last_path_component)),
    );

    let (mut model, mut provider) = session_model(&sv);
    if let Some(m) = &messages {
        messages_model(m, &mut model, &mut provider);
    }
    put_str(&mut out, "model", model.as_deref());
    put_str(&mut out, "provider", provider.as_deref());
    out.insert("source".into(), SOURCE.into());

    let (prompt, completion, cost, span) = match &messages {
        Some(m) => message_totals(m),
        None => (
            int_at(&sv, &["tokens_input"]).unwrap_or(0),
            int_at(&sv, &["tokens_output"]).unwrap_or(0)
                + int_at(&sv, &["tokens_reasoning"]).unwrap_or(0),
            num_at(&sv, &["cost"]).unwrap_or(0.0),
            None,
        ),
    };
    out.insert("promptTokens".into(), prompt.into());
    out.insert("completionTokens".into(), completion.into());
    out.insert("cost".into(), json!(cost));
    let created = int_at(&sv, &["time_created"]);
    let duration = span.or_else(|| Some(int_at(&sv, &["time_updated"])? - created?));
    if let Some(d) = duration {
        out.insert("durationMs".into(), d.max(0).into());
    }
    if let Some(c) = created {
        out.insert("createdAt".into(), c.into());
    }
    Ok(Value::Object(out))
}

/// The documents behind one session payload, parsed and checked against each other.
struct SessionDocs {
    sid: String,
    /// The session row (an object).
    session: Value,
    /// The project row, or null.
    project: Value,
    messages: Option<Messages>,
}

fn session_docs(
    session_doc: &[u8],
    project_doc: Option<&[u8]>,
    messages_doc: Option<&[u8]>,
) -> Result<SessionDocs, String> {
    const D: &str = "sessions";
    let mut doc = parse(D, session_doc)?;
    let session = req_obj(D, &mut doc, "session")?;
    let sid = req_str(D, &session, "id", "session")?.to_owned();
    let mut project = opt_obj(D, &mut doc, "project")?;
    if let Some(bytes) = project_doc {
        let mut pdoc = parse("projects", bytes)?;
        project = Some(req_obj("projects", &mut pdoc, "project")?);
    }
    let messages = messages_doc.map(parse_messages).transpose()?;
    if let Some(m) = &messages
        && m.session_id != sid
    {
        return Err(err(
            "messages",
            "sessionId",
            format!("is {:?}, the session document is {sid:?}", m.session_id),
        ));
    }
    Ok(SessionDocs {
        sid,
        session: Value::Object(session),
        project: project.map(Value::Object).unwrap_or(Value::Null),
        messages,
    })
}

/// Fills a missing model or provider from the messages: the last assistant message naming a
/// model, else the last user message that chose one.
fn messages_model(m: &Messages, model: &mut Option<String>, provider: &mut Option<String>) {
    let null = Value::Null;
    let datas: Vec<&Value> = m
        .messages
        .iter()
        .map(|msg| msg.get("data").unwrap_or(&null))
        .collect();
    let assistant = datas.iter().rev().find(|d| {
        str_at(d, &["role"]) == Some("assistant") && str_at(d, &["modelID"]).is_some()
    });
    let user = datas
        .iter()
        .rev()
        .find(|d| str_at(d, &["model", "modelID"]).is_some());
    if model.is_none() {
        *model = assistant
            .and_then(|d| str_at(d, &["modelID"]))
            .or_else(|| user.and_then(|d| str_at(d, &["model", "modelID"])))
            .map(str::to_owned);
    }
    if provider.is_none() {
        *provider = assistant
            .and_then(|d| str_at(d, &["providerID"]))
            .or_else(|| user.and_then(|d| str_at(d, &["model", "providerID"])))
            .map(str::to_owned);
    }
}

/// (prompt tokens, completion tokens, cost, first-to-last span in ms) over the messages.
fn message_totals(m: &Messages) -> (i64, i64, f64, Option<i64>) {
    let null = Value::Null;
    let (mut prompt, mut completion, mut cost) = (0_i64, 0_i64, 0.0_f64);
    let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
    for msg in &m.messages {
        let d = msg.get("data").unwrap_or(&null);
        if str_at(d, &["role"]) == Some("assistant") {
            if let Some((p, c)) = message_tokens(d) {
                prompt += p;
                completion += c;
            }
            cost += num_at(d, &["cost"]).unwrap_or(0.0);
        }
        let created = int_at(d, &["time", "created"])
            .or_else(|| msg.get("time_created").and_then(Value::as_i64));
        let end = int_at(d, &["time", "completed"]).or(created);
        if let Some(c) = created {
            first = Some(first.map_or(c, |f| f.min(c)));
        }
        if let Some(e) = end {
            last = Some(last.map_or(e, |l| l.max(e)));
        }
    }
    let span = first.zip(last).map(|(f, l)| l - f);
    (prompt, completion, cost, span)
}

// ---------------------------------------------------------------------------------------------
// Fingerprint

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lowercase hex SHA-256 of `payload` as canonical JSON (object keys sorted by bytes at every
/// level, no whitespace): equal payloads give equal fingerprints whatever their key order, so a
/// payload whose fingerprint was recorded as sent need not be sent again.
pub fn fingerprint(payload: &Value) -> String {
    let mut s = String::new();
    canonical(payload, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, params};

    use super::*;
    use crate::source::opencode_db::{OpencodeDb, create_test_db, insert_fake_session};

    const PID: &str = "799b4078f34a5a21d6b39d41aa31836448aceb07";
    const SID: &str = "ses_e0252f198ffeJ1DAzgJnAF8aQp";

    /// A db with one fake session: 4 messages (user, assistant, user, assistant), 4 parts each.
    fn fake_db(dir: &Path) -> (OpencodeDb, Connection) {
        let p = dir.join("oc.db");
        create_test_db(&p).unwrap();
        let c = Connection::open(&p).unwrap();
        insert_fake_session(&c, PID, SID, 4, 4, 200).unwrap();
        (OpencodeDb::open(&p).unwrap(), c)
    }

    fn docs(db: &OpencodeDb) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            db.read_session_doc(SID).unwrap().unwrap(),
            db.read_messages_doc(SID).unwrap().unwrap(),
            db.read_project_doc(PID).unwrap().unwrap(),
        )
    }

    fn add_message(c: &Connection, id: &str, t: i64, data: Value) {
        c.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
            params![id, SID, t, data.to_string()],
        )
        .unwrap();
    }

    fn add_part(c: &Connection, mid: &str, id: &str, t: i64, data: Value) {
        c.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![id, mid, SID, t, data.to_string()],
        )
        .unwrap();
    }

    fn msgs(db: &OpencodeDb, opts: &Options) -> Vec<Value> {
        message_payloads(SID, &db.read_messages_doc(SID).unwrap().unwrap(), opts).unwrap()
    }

    fn by_id<'a>(ms: &'a [Value], id: &str) -> &'a Value {
        ms.iter().find(|m| m["externalId"] == id).unwrap()
    }

    #[test]
    fn session_payload_of_fake_session() {
        let dir = tempfile::tempdir().unwrap();
        let (db, c) = fake_db(dir.path());
        let (s, m, p) = docs(&db);
        let session: Value = serde_json::from_slice(&s).unwrap();
        let created = session["session"]["time_created"].as_i64().unwrap();
        let msgs: Value = serde_json::from_slice(&m).unwrap();
        let base = msgs["messages"][0]["time_created"].as_i64().unwrap();
        assert_eq!(created, base - 100);

        let opts = Options::default();
        let v = session_payload(&s, Some(&p), Some(&m), &opts).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "externalId",
                "title",
                "projectPath",
                "projectName",
                "model",
                "provider",
                "source",
                "promptTokens",
                "completionTokens",
                "cost",
                "durationMs",
                "createdAt"
            ]
        );
        assert_eq!(v["externalId"], SID);
        assert_eq!(v["title"], format!("Fake session {SID}"));
        assert_eq!(v["projectPath"], format!("/home/user/projects/{PID}"));
        assert_eq!(v["projectName"], PID); // no project name: last path component
        assert_eq!(v["model"], "m");
        assert_eq!(v["provider"], "fake");
        assert_eq!(v["source"], "opencode");
        // assistant messages 1 and 3: input 11 + 13, output 6 + 8 (reasoning 0)
        assert_eq!(v["promptTokens"], 24);
        assert_eq!(v["completionTokens"], 14);
        let cost = v["cost"].as_f64().unwrap();
        assert!((cost - 0.000044).abs() < 1e-12, "{cost}");
        assert!((cost - session["session"]["cost"].as_f64().unwrap()).abs() < 1e-12);
        // first message created (base) → last assistant completed (base + 3000 + 900)
        assert_eq!(v["durationMs"], 3900);
        assert_eq!(v["createdAt"], created);

        // Without messages: the session row's totals and time_updated − time_created.
        let v2 = session_payload(&s, None, None, &opts).unwrap();
        assert_eq!(v2["promptTokens"], 24);
        assert_eq!(v2["completionTokens"], 14);
        assert!((v2["cost"].as_f64().unwrap() - 0.000044).abs() < 1e-12);
        assert_eq!(v2["durationMs"], 4000 + 100);
        assert_eq!(v2["model"], "m"); // from the session's model column
        assert_eq!(v2["projectPath"], v["projectPath"]);

        // A named project, no session model: name and model fallbacks.
        c.execute("UPDATE project SET name = 'Demo' WHERE id = ?1", [PID])
            .unwrap();
        c.execute("UPDATE session SET model = NULL WHERE id = ?1", [SID])
            .unwrap();
        let (s, m, p) = docs(&db);
        let v3 = session_payload(&s, Some(&p), Some(&m), &opts).unwrap();
        assert_eq!(v3["projectName"], "Demo");
        assert_eq!(v3["model"], "m"); // last assistant message's modelID
        assert_eq!(v3["provider"], "fake");
        // The project embedded in the session document is used without project_doc.
        assert_eq!(
            session_payload(&s, None, None, &opts).unwrap()["projectName"],
            "Demo"
        );
        let v4 = session_payload(&s, None, None, &opts).unwrap();
        assert!(v4.get("model").is_none() && v4.get("provider").is_none());
    }

    #[test]
    fn message_payloads_of_fake_session() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _c) = fake_db(dir.path());
        let (_, m, _) = docs(&db);
        let doc: Value = serde_json::from_slice(&m).unwrap();
        let rows = doc["messages"].as_array().unwrap();
        let ms = message_payloads(SID, &m, &Options::default()).unwrap();
        assert_eq!(ms.len(), 4);
        let part_text = |mi: usize, pj: usize| -> String {
            let mid = rows[mi]["id"].as_str().unwrap();
            doc["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["message_id"] == mid)
                .nth(pj)
                .unwrap()["data"]
                .clone()
                .get("text")
                .map(|t| t.as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        for (i, msg) in ms.iter().enumerate() {
            assert_eq!(msg["sessionExternalId"], SID);
            assert_eq!(msg["externalId"], rows[i]["id"]);
            assert_eq!(msg["source"], "opencode");
            assert_eq!(msg["createdAt"], rows[i]["time_created"]);
            assert!(msg["parts"].is_array());
        }
        // User message: 4 text parts, all in textContent and in parts.
        let u = &ms[0];
        assert_eq!(u["role"], "user");
        assert_eq!(u["model"], "m"); // data.model.modelID
        assert!(u.get("promptTokens").is_none() && u.get("durationMs").is_none());
        let texts: Vec<String> = (0..4).map(|j| part_text(0, j)).collect();
        assert_eq!(u["textContent"], texts.join("\n\n"));
        let parts = u["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 4);
        for (p, t) in parts.iter().zip(&texts) {
            assert_eq!(p, &json!({"type": "text", "content": t}));
        }
        // Assistant message 1: step-start (skipped), bash tool (call + result), text, step-finish.
        let a = &ms[1];
        assert_eq!(a["role"], "assistant");
        assert_eq!(a["model"], "m");
        assert_eq!(a["promptTokens"], 11);
        assert_eq!(a["completionTokens"], 6);
        assert_eq!(a["durationMs"], 900);
        assert_eq!(a["textContent"], part_text(1, 2));
        let parts = a["parts"].as_array().unwrap();
        let types: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["tool-call", "tool-result", "text"]);
        assert_eq!(
            parts[0]["content"],
            json!({"name": "bash", "callId": "call_1",
                   "args": {"command": "echo 1", "description": "run"}})
        );
        let pid = rows[1]["id"].as_str().unwrap();
        let tool = doc["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["message_id"] == pid && p["data"]["type"] == "tool")
            .unwrap();
        assert_eq!(
            parts[1]["content"],
            json!({"name": "bash", "callId": "call_1",
                   "result": tool["data"]["state"]["output"], "status": "completed"})
        );
        assert_eq!(ms[3]["promptTokens"], 13);
        assert_eq!(ms[3]["completionTokens"], 8);
    }

    #[test]
    fn three_text_parts_reasoning_errors_roles_and_empty_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (db, c) = fake_db(dir.path());
        let t = 1_900_000_000_000_i64;
        add_message(
            &c,
            "msg_z1",
            t,
            json!({"role": "assistant", "modelID": "gpt", "providerID": "openai",
                   "time": {"created": t, "completed": t + 50}, "cost": 0.5,
                   "tokens": {"input": 100, "output": 20, "reasoning": 7,
                              "cache": {"read": 1000, "write": 3}}}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1a",
            t,
            json!({"type": "reasoning", "text": "thinking hard"}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1b",
            t,
            json!({"type": "text", "text": "one"}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1c",
            t,
            json!({"type": "patch", "hash": "abc", "files": ["/x"]}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1d",
            t,
            json!({"type": "text", "text": "two"}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1e",
            t,
            json!({"type": "tool", "tool": "read", "callID": "c9",
                   "state": {"status": "error", "input": {"filePath": "/nope"}, "error": "not found"}}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1f",
            t,
            json!({"type": "tool", "tool": "bash", "callID": "c10",
                   "state": {"status": "running", "input": {"command": "sleep 9"}}}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1g",
            t,
            json!({"type": "text", "text": "three"}),
        );
        add_part(
            &c,
            "msg_z1",
            "prt_z1h",
            t,
            json!({"type": "file", "url": "file:///x", "mime": "text/plain"}),
        );
        add_message(
            &c,
            "msg_z2",
            t + 100,
            json!({"role": "compaction-summary", "time": {"created": t + 100}}),
        );
        add_message(
            &c,
            "msg_z3",
            t + 200,
            json!({"role": "system", "time": {"created": t + 200}}),
        );
        add_part(
            &c,
            "msg_z3",
            "prt_z3a",
            t + 200,
            json!({"type": "step-start"}),
        );

        let ms = msgs(&db, &Options::default());
        assert_eq!(ms.len(), 7);
        let z1 = by_id(&ms, "msg_z1");
        assert_eq!(z1["textContent"], "one\n\ntwo\n\nthree");
        assert_eq!(z1["model"], "gpt");
        assert_eq!(z1["promptTokens"], 100); // cache reads/writes not included
        assert_eq!(z1["completionTokens"], 27); // output + reasoning
        assert_eq!(z1["durationMs"], 50);
        let parts = z1["parts"].as_array().unwrap();
        assert_eq!(
            parts,
            &vec![
                json!({"type": "text", "content": "one"}),
                json!({"type": "text", "content": "two"}),
                json!({"type": "tool-call", "content": {"name": "read", "callId": "c9", "args": {"filePath": "/nope"}}}),
                json!({"type": "tool-result", "content": {"name": "read", "callId": "c9", "error": "not found", "status": "error"}}),
                json!({"type": "tool-call", "content": {"name": "bash", "callId": "c10", "args": {"command": "sleep 9"}}}),
                json!({"type": "text", "content": "three"}),
            ]
        );
        // Reasoning only with the option, first (its document order), never in textContent.
        let with = msgs(
            &db,
            &Options {
                include_reasoning: true,
                ..Options::default()
            },
        );
        let z1r = by_id(&with, "msg_z1");
        assert_eq!(
            z1r["parts"][0],
            json!({"type": "reasoning", "content": "thinking hard"})
        );
        assert_eq!(z1r["parts"].as_array().unwrap().len(), 7);
        assert_eq!(z1r["textContent"], "one\n\ntwo\n\nthree");
        // Roles; messages without (kept) parts still carry parts: [] and no textContent.
        let z2 = by_id(&ms, "msg_z2");
        assert_eq!(z2["role"], "unknown");
        assert_eq!(z2["parts"], json!([]));
        assert!(z2.get("textContent").is_none());
        let z3 = by_id(&ms, "msg_z3");
        assert_eq!(z3["role"], "system");
        assert_eq!(z3["parts"], json!([]));

        // Session totals include the new assistant message; the latest model wins when the
        // session has no model column.
        c.execute("UPDATE session SET model = NULL WHERE id = ?1", [SID])
            .unwrap();
        let (s, m, p) = docs(&db);
        let v = session_payload(&s, Some(&p), Some(&m), &Options::default()).unwrap();
        assert_eq!(v["promptTokens"], 124);
        assert_eq!(v["completionTokens"], 14 + 27);
        assert_eq!(v["model"], "gpt");
        assert_eq!(v["provider"], "openai");
    }

    #[test]
    fn truncation() {
        let dir = tempfile::tempdir().unwrap();
        let (db, c) = fake_db(dir.path());
        let t = 1_900_000_000_000_i64;
        let big = "é".repeat(50) + &"x".repeat(100);
        add_message(
            &c,
            "msg_t1",
            t,
            json!({"role": "assistant", "time": {"created": t}}),
        );
        add_part(
            &c,
            "msg_t1",
            "prt_t1a",
            t,
            json!({"type": "text", "text": big}),
        );
        add_part(
            &c,
            "msg_t1",
            "prt_t1b",
            t,
            json!({"type": "tool", "tool": "write", "callID": "w",
                   "state": {"status": "completed", "input": {"content": big, "n": 3}, "output": big}}),
        );
        add_part(
            &c,
            "msg_t1",
            "prt_t1c",
            t,
            json!({"type": "tool", "tool": "bash", "callID": "s",
                   "state": {"status": "completed", "input": {}, "output": "short"}}),
        );
        let opts = Options {
            include_reasoning: false,
            max_part_chars: 60,
        };
        let ms = msgs(&db, &opts);
        let m = by_id(&ms, "msg_t1");
        let cut = format!(
            "{}{}{TRUNCATION_MARKER}90 chars]",
            "é".repeat(50),
            "x".repeat(10)
        );
        assert_eq!(m["parts"][0]["content"], cut);
        assert_eq!(m["textContent"], cut);
        assert_eq!(
            m["parts"][1]["content"]["args"],
            json!({"content": cut, "n": 3})
        );
        assert_eq!(
            m["parts"][2]["content"],
            json!({"name": "write", "callId": "w", "result": cut, "status": "completed", "truncated": true})
        );
        assert_eq!(
            m["parts"][4]["content"],
            json!({"name": "bash", "callId": "s", "result": "short", "status": "completed"})
        );
        // 0 = no limit.
        let ms = msgs(
            &db,
            &Options {
                include_reasoning: false,
                max_part_chars: 0,
            },
        );
        assert_eq!(by_id(&ms, "msg_t1")["parts"][0]["content"], big.as_str());
        assert_eq!(truncate("abc", 3), None);
        assert_eq!(
            truncate("abcd", 3).unwrap(),
            format!("abc{TRUNCATION_MARKER}1 chars]")
        );
    }

    #[test]
    fn invalid_documents_are_named() {
        let o = Options::default();
        let e = |r: Result<Value, String>| r.unwrap_err();
        let em = |r: Result<Vec<Value>, String>| r.unwrap_err();
        assert!(
            e(session_payload(b"not json", None, None, &o))
                .starts_with("sessions document: (document): not valid JSON")
        );
        assert_eq!(
            e(session_payload(br#"{"format":1}"#, None, None, &o)),
            "sessions document: session: missing"
        );
        assert!(
            e(session_payload(
                br#"{"format":2,"session":{}}"#,
                None,
                None,
                &o
            ))
            .starts_with("sessions document: format: is 2")
        );
        assert_eq!(
            e(session_payload(
                br#"{"format":1,"session":{"title":"x"}}"#,
                None,
                None,
                &o
            )),
            "sessions document: session.id: missing"
        );
        assert_eq!(
            e(session_payload(
                br#"{"format":1,"session":{"id":"s"},"project":5}"#,
                None,
                None,
                &o
            )),
            "sessions document: project: is not a JSON object"
        );
        let ok_session = br#"{"format":1,"session":{"id":"s","time_created":1},"project":null}"#;
        assert_eq!(
            e(session_payload(
                ok_session,
                Some(br#"{"format":1}"#),
                None,
                &o
            )),
            "projects document: project: missing"
        );
        assert_eq!(
            e(session_payload(
                ok_session,
                None,
                Some(br#"{"format":1,"sessionId":"t","messages":[],"parts":[]}"#),
                &o
            )),
            r#"messages document: sessionId: is "t", the session document is "s""#
        );
        let v = session_payload(
            ok_session,
            None,
            Some(br#"{"format":1,"sessionId":"s","messages":[],"parts":[]}"#),
            &o,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"externalId": "s", "source": "opencode", "promptTokens": 0,
                             "completionTokens": 0, "cost": 0.0, "createdAt": 1})
        );
        assert_eq!(
            em(message_payloads(
                "s",
                br#"{"format":1,"sessionId":"s","messages":[{"id":"m"}]}"#,
                &o
            )),
            "messages document: parts: missing"
        );
        assert_eq!(
            em(message_payloads(
                "s",
                br#"{"format":1,"sessionId":"s","messages":[{}],"parts":[]}"#,
                &o
            )),
            "messages document: messages[0].id: missing"
        );
        assert_eq!(
            em(message_payloads(
                "s",
                br#"{"format":1,"sessionId":"s","messages":[],"parts":[7]}"#,
                &o
            )),
            "messages document: parts[0]: is not a JSON object"
        );
        assert_eq!(
            em(message_payloads(
                "s",
                br#"{"format":1,"sessionId":"s","messages":[],"parts":[{"id":"p"}]}"#,
                &o
            )),
            "messages document: parts[0].message_id: missing"
        );
        assert_eq!(
            em(message_payloads(
                "s",
                br#"{"format":1,"messages":[],"parts":[]}"#,
                &o
            )),
            "messages document: sessionId: missing or not a non-empty string"
        );
        assert_eq!(
            em(message_payloads(
                "x",
                br#"{"format":1,"sessionId":"s","messages":[],"parts":[]}"#,
                &o
            )),
            r#"messages document: sessionId: is "s", expected "x""#
        );
        // A message whose data is not JSON ($raw) maps to an unknown, empty message.
        let ms = message_payloads(
            "s",
            br#"{"format":1,"sessionId":"s","messages":[{"id":"m","time_created":5,"data":{"$raw":"??"}}],"parts":[]}"#,
            &o,
        )
        .unwrap();
        assert_eq!(
            ms[0],
            json!({"sessionExternalId": "s", "externalId": "m", "role": "unknown",
                                 "source": "opencode", "createdAt": 5, "parts": []})
        );
    }

    #[test]
    fn fingerprint_is_canonical_and_stable() {
        let a = json!({"b": 1, "a": {"y": [1, "x"], "x": null}, "c": 0.5});
        let b: Value =
            serde_json::from_str(r#"{"c":0.5,"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 64);
        let mut s = String::new();
        canonical(&a, &mut s);
        assert_eq!(s, r#"{"a":{"x":null,"y":[1,"x"]},"b":1,"c":0.5}"#);
        assert_ne!(
            fingerprint(&a),
            fingerprint(&json!({"b": 2, "a": {"y": [1, "x"], "x": null}, "c": 0.5}))
        );
        // Mapping the same documents twice gives the same fingerprints.
        let dir = tempfile::tempdir().unwrap();
        let (db, _c) = fake_db(dir.path());
        let (s, m, p) = docs(&db);
        let o = Options::default();
        let f1 = fingerprint(&session_payload(&s, Some(&p), Some(&m), &o).unwrap());
        let f2 = fingerprint(&session_payload(&s, Some(&p), Some(&m), &o).unwrap());
        assert_eq!(f1, f2);
        let m1: Vec<String> = message_payloads(SID, &m, &o)
            .unwrap()
            .iter()
            .map(fingerprint)
            .collect();
        let m2: Vec<String> = message_payloads(SID, &m, &o)
            .unwrap()
            .iter()
            .map(fingerprint)
            .collect();
        assert_eq!(m1, m2);
    }

    #[test]
    fn convex_limits_batch_shape_and_completion() {
        // Too deep, refused field names: sent as JSON text; small values as they are.
        let mut deep = json!("x");
        for _ in 0..12 {
            deep = json!({"k": deep});
        }
        assert!(convex_safe(deep.clone()).is_string());
        assert_eq!(convex_safe(json!({"a": [1, {"b": null}]})), json!({"a": [1, {"b": null}]}));
        assert!(convex_safe(json!({"$ref": 1})).is_string());
        assert!(convex_safe(json!({"": 1})).is_string());
        // Over a document: cut and marked.
        let mut v = json!("é".repeat(MAX_DOC_BYTES));
        fit_document(&mut v);
        let t = v.as_str().unwrap();
        assert!(t.len() <= MAX_DOC_BYTES && t.contains(TRUNCATION_MARKER), "{}", t.len());
        let mut small = json!({"a": 1});
        fit_document(&mut small);
        assert_eq!(small, json!({"a": 1}));
        // Batch items carry no createdAt.
        assert_eq!(for_batch(&json!({"externalId": "s", "createdAt": 1})), json!({"externalId": "s"}));
        // An assistant message without time.completed is not complete; a user message followed
        // by another is.
        let dir = tempfile::tempdir().unwrap();
        let (db, c) = fake_db(dir.path());
        add_message(&c, "msg_zz_open", 1_700_000_000_000, json!({"role": "assistant", "time": {"created": 1_700_000_000_000_i64}}));
        let outs = message_outputs(SID, &db.read_messages_doc(SID).unwrap().unwrap(), &Options::default()).unwrap();
        let open = outs.iter().find(|m| m.id == "msg_zz_open").unwrap();
        assert!(!open.complete);
        assert_eq!(open.created_ms, Some(1_700_000_000_000));
        assert!(outs.iter().filter(|m| m.id != "msg_zz_open").all(|m| m.complete), "{outs:?}");
    }
}
