//! A fake of the OpenSync dashboard's HTTP sync API (the routes oc-sync uses), kept in memory,
//! listening on 127.0.0.1 only. Start it in-process with [`FakeOpenSync::start`], or run the
//! `fake-opensync` binary.
//!
//! Routes (all answers are JSON; errors are `{"error": "<text>"}`):
//! - `GET /health` (no auth) → `{"status":"ok","timestamp":<ms>}`
//! - `POST /sync/session` → `{"ok":true,"sessionId":"<internal id>"}`
//! - `POST /sync/message` → `{"ok":true,"messageId":"<internal id>"}`
//! - `POST /sync/batch` → always 200 `{"ok":true,"sessions":n,"messages":n,"errors":[...]}`
//! - `GET /sync/sessions/list` → `{"sessionIds":[...]}`
//!
//! Everything but `/health` needs `Authorization: Bearer <key>`: no header → 401
//! `Missing Authorization header`, anything else than the one key → 401 `Invalid API key`.
//! Missing required fields → 400; values of the wrong type (and unknown roles) → 500 with a
//! Convex-like `ArgumentValidationError: ...` text, as the real server does.
//!
//! For tests that run the binary, a few unauthenticated helper routes (not recorded, not subject
//! to faults) expose the state: `GET /_fake/state` → `{"sessions":[..],"messages":[..],"requests":[..]}`,
//! `POST /_fake/fault` with `{"path":"<glob>","times":n,"status":s}` or `{"path":..,"times":n,"drop":true}`,
//! `POST /_fake/reset` (forget sessions, messages, requests and faults).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Options for [`FakeOpenSync::start`].
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The one valid API key; `None` generates a random `osk_` + 32 alphanumerics.
    pub key: Option<String>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path with the query string (if any).
    pub path: String,
    /// Status answered; 0 when the connection was dropped by a fault.
    pub status: u16,
    /// The request body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The response body (`Null` when the connection was dropped).
    pub response: Value,
}

impl Recorded {
    fn to_json(&self) -> Value {
        json!({"method": self.method, "path": self.path, "status": self.status, "body": self.body, "response": self.response})
    }
}

#[derive(Debug, Clone)]
enum FaultAction {
    Status(u16),
    Drop,
}

#[derive(Debug, Clone)]
struct Fault {
    path: String,
    times: usize,
    action: FaultAction,
}

#[derive(Default)]
struct State {
    /// Stored sessions in insertion order (each has `_id` and `externalId`).
    sessions: Vec<Value>,
    /// Stored messages in insertion order (each has `_id`, `externalId`, `parts`).
    messages: Vec<Value>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    /// Message externalIds a batch refuses (listed in its `errors`), as a server-side validation
    /// failure would.
    refuse: Vec<String>,
}

struct Inner {
    key: String,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake OpenSync server.
pub struct FakeOpenSync {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Inner>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeOpenSync {
    /// Starts the server on 127.0.0.1 (`opts.port`, 0 = any free port).
    pub async fn start(opts: FakeOptions) -> std::io::Result<FakeOpenSync> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port))).await?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let key = opts.key.unwrap_or_else(|| format!("osk_{}", random_alnum(32)));
        let inner = Arc::new(Inner { key, state: Mutex::new(State::default()) });
        let server_inner = inner.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let inner = server_inner.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(inner.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(FakeOpenSync { url, inner, server: Some(server) })
    }

    /// The one valid API key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// Stored sessions in insertion order. Each has `_id` (the internal id answered as
    /// `sessionId`), `externalId`, the fields sent, `createdAt` and `updatedAt` (a bare session
    /// created by a message for an unknown session has only `_id` and `externalId`).
    pub fn sessions(&self) -> Vec<Value> {
        self.inner.lock().sessions.clone()
    }

    /// Stored messages in insertion order. Each has `_id`, `externalId`, `sessionExternalId`,
    /// `sessionId` (internal id of its session), the fields sent, `createdAt`, `updatedAt` and
    /// `parts` (an array of `{type, content}`; empty when the last upsert had no `parts`).
    pub fn messages(&self) -> Vec<Value> {
        self.inner.lock().messages.clone()
    }

    pub fn session(&self, external_id: &str) -> Option<Value> {
        self.inner.lock().sessions.iter().find(|s| s["externalId"] == external_id).cloned()
    }

    pub fn message(&self, external_id: &str) -> Option<Value> {
        self.inner.lock().messages.iter().find(|m| m["externalId"] == external_id).cloned()
    }

    /// Stored messages of one session (by the session's externalId), in insertion order.
    pub fn messages_of(&self, session_external_id: &str) -> Vec<Value> {
        let st = self.inner.lock();
        st.messages.iter().filter(|m| m["sessionExternalId"] == session_external_id).cloned().collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Forgets all sessions, messages, recorded requests and pending faults.
    pub fn reset(&self) {
        *self.inner.lock() = State::default();
    }

    /// The next `times` requests whose path (without query) matches `path_glob` (`*` matches any
    /// characters, including `/`) are answered with `status` and `{"error":"injected"}`.
    /// Rules are checked in insertion order; the first with hits left wins.
    /// Batches refuse the message with this externalId (it goes to the answer's `errors`) until
    /// [`FakeOpenSync::accept_all`].
    pub fn refuse_message(&self, external_id: &str) {
        self.inner.lock().refuse.push(external_id.into());
    }

    /// Stops refusing messages.
    pub fn accept_all(&self) {
        self.inner.lock().refuse.clear();
    }

    pub fn fail_next(&self, path_glob: &str, times: usize, status: u16) {
        self.inner.lock().faults.push(Fault { path: path_glob.into(), times, action: FaultAction::Status(status) });
    }

    /// The next `times` requests matching `path_glob` get their connection closed without an
    /// answer (recorded with status 0).
    pub fn drop_next(&self, path_glob: &str, times: usize) {
        self.inner.lock().faults.push(Fault { path: path_glob.into(), times, action: FaultAction::Drop });
    }

    /// Number of fault hits not yet consumed.
    pub fn pending_faults(&self) -> usize {
        self.inner.lock().faults.iter().map(|f| f.times).sum()
    }

    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }
}

impl Drop for FakeOpenSync {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn random_alnum(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut state = 0u64;
    for i in 0..n {
        if i % 8 == 0 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i as u64);
            h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
            state = h.finish();
        }
        out.push(CHARS[(state % CHARS.len() as u64) as usize] as char);
        state /= CHARS.len() as u64;
    }
    out
}

/// A Convex-looking document id (32 lowercase alphanumerics).
fn new_id() -> String {
    random_alnum(32).to_ascii_lowercase()
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn respond(status: u16, v: &Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default())))
        .expect("valid response")
}

fn err(status: u16, text: &str) -> (u16, Value) {
    (status, json!({ "error": text }))
}

async fn serve(
    inner: Arc<Inner>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let recorded_path = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let auth = parts.headers.get("authorization").map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());

    if let Some(rest) = path.strip_prefix("/_fake/") {
        let (status, v) = admin(&inner, &method, rest, &body);
        return Ok(respond(status, &v));
    }

    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |status: u16, response: Value| {
        inner.lock().requests.push(Recorded {
            method: method.clone(),
            path: recorded_path.clone(),
            status,
            body: json_body.clone(),
            response,
        });
    };

    let action = {
        let mut st = inner.lock();
        let action = st.faults.iter_mut().find(|f| f.times > 0 && glob_match(&f.path, &path)).map(|f| {
            f.times -= 1;
            f.action.clone()
        });
        st.faults.retain(|f| f.times > 0);
        action
    };
    let (status, v) = match action {
        Some(FaultAction::Drop) => {
            record(0, Value::Null);
            return Err(std::io::Error::other("fault: connection dropped"));
        }
        Some(FaultAction::Status(s)) => err(s, "injected"),
        None => handle(&inner, &method, &path, auth.as_deref(), &body),
    };
    record(status, v.clone());
    Ok(respond(status, &v))
}

fn admin(inner: &Inner, method: &str, rest: &str, body: &[u8]) -> (u16, Value) {
    match (method, rest) {
        ("GET", "state") => {
            let st = inner.lock();
            let requests: Vec<Value> = st.requests.iter().map(Recorded::to_json).collect();
            (200, json!({"sessions": st.sessions, "messages": st.messages, "requests": requests, "key": inner.key}))
        }
        ("POST", "reset") => {
            *inner.lock() = State::default();
            (200, json!({"ok": true}))
        }
        ("POST", "fault") => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(path) = v["path"].as_str() else { return err(400, "fault needs a path glob") };
            let times = v["times"].as_u64().unwrap_or(1) as usize;
            let action = if v["drop"] == true {
                FaultAction::Drop
            } else {
                match v["status"].as_u64() {
                    Some(s) if (100..=599).contains(&s) => FaultAction::Status(s as u16),
                    _ => return err(400, "fault needs a status (100-599) or drop: true"),
                }
            };
            inner.lock().faults.push(Fault { path: path.into(), times, action });
            (200, json!({"ok": true}))
        }
        _ => err(404, "No matching routes found"),
    }
}

fn handle(inner: &Inner, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, Value) {
    const ROUTES: [&str; 5] = ["/health", "/sync/session", "/sync/message", "/sync/batch", "/sync/sessions/list"];
    let route = match (method, path) {
        ("GET", "/health") => "health",
        ("POST", "/sync/session") => "session",
        ("POST", "/sync/message") => "message",
        ("POST", "/sync/batch") => "batch",
        ("GET", "/sync/sessions/list") => "list",
        ("OPTIONS", p) if ROUTES.contains(&p) => return (204, Value::Null),
        _ => return err(404, "No matching routes found"),
    };
    if route == "health" {
        return (200, json!({"status": "ok", "timestamp": now_ms()}));
    }

    // Authentication.
    let Some(auth) = auth else { return err(401, "Missing Authorization header") };
    let token = auth.trim().strip_prefix("Bearer ").map(str::trim);
    if token != Some(inner.key.as_str()) {
        return err(401, "Invalid API key");
    }

    if route == "list" {
        let st = inner.lock();
        let ids: Vec<Value> = st.sessions.iter().map(|s| s["externalId"].clone()).collect();
        return (200, json!({ "sessionIds": ids }));
    }

    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return err(500, &format!("SyntaxError: Unexpected end of JSON input or invalid JSON ({e})")),
    };
    let mut st = inner.lock();
    match route {
        "session" => match check_session(&body) {
            Ok(fields) => (200, json!({"ok": true, "sessionId": upsert_session(&mut st, fields)})),
            Err(e) => e.answer(),
        },
        "message" => match check_message(&body) {
            Ok(m) => (200, json!({"ok": true, "messageId": upsert_message(&mut st, m)})),
            Err(e) => e.answer(),
        },
        _ => batch(&mut st, &body),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation (shaped like Convex's argument validators) and the store

enum Invalid {
    /// 400: a required field is missing (or falsy).
    Missing(String),
    /// 500: `ArgumentValidationError: ...`.
    Type(String),
}

impl Invalid {
    fn text(&self) -> &str {
        match self {
            Invalid::Missing(t) | Invalid::Type(t) => t,
        }
    }
    fn answer(&self) -> (u16, Value) {
        match self {
            Invalid::Missing(t) => err(400, t),
            Invalid::Type(t) => err(500, t),
        }
    }
}

fn mismatch(path: &str, value: &Value, validator: &str) -> Invalid {
    Invalid::Type(format!(
        "ArgumentValidationError: Value does not match validator.\nPath: .{path}\nValue: {value}\nValidator: {validator}"
    ))
}

/// JavaScript truthiness of an optional JSON value.
fn falsy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

const SESSION_STRINGS: [&str; 6] = ["title", "projectPath", "projectName", "model", "provider", "source"];
const SESSION_NUMBERS: [&str; 5] = ["promptTokens", "completionTokens", "cost", "durationMs", "createdAt"];
const MESSAGE_STRINGS: [&str; 3] = ["textContent", "model", "source"];
const MESSAGE_NUMBERS: [&str; 4] = ["promptTokens", "completionTokens", "durationMs", "createdAt"];
const ROLES: [&str; 5] = ["user", "assistant", "system", "tool", "unknown"];
const ROLE_VALIDATOR: &str =
    "v.union(v.literal(\"user\"), v.literal(\"assistant\"), v.literal(\"system\"), v.literal(\"tool\"), v.literal(\"unknown\"))";

fn copy_typed(obj: &Map<String, Value>, out: &mut Map<String, Value>, strings: &[&str], numbers: &[&str]) -> Result<(), Invalid> {
    for &k in strings {
        if let Some(v) = obj.get(k) {
            if !v.is_string() {
                return Err(mismatch(k, v, "v.optional(v.string())"));
            }
            out.insert(k.into(), v.clone());
        }
    }
    for &k in numbers {
        if let Some(v) = obj.get(k) {
            if !v.is_number() {
                return Err(mismatch(k, v, "v.optional(v.float64())"));
            }
            out.insert(k.into(), v.clone());
        }
    }
    Ok(())
}

fn empty_map() -> Map<String, Value> {
    Map::new()
}

/// The session fields to store (externalId first), or why the body is refused.
fn check_session(body: &Value) -> Result<Map<String, Value>, Invalid> {
    let empty = empty_map();
    let obj = body.as_object().unwrap_or(&empty);
    let ext = match obj.get("externalId") {
        Some(v) if !v.is_null() => Some(v),
        _ => obj.get("sessionId"),
    };
    if falsy(ext) {
        return Err(Invalid::Missing("Missing externalId".into()));
    }
    let ext = ext.cloned().unwrap_or_default();
    if !ext.is_string() {
        return Err(mismatch("externalId", &ext, "v.string()"));
    }
    let mut out = Map::new();
    out.insert("externalId".into(), ext);
    copy_typed(obj, &mut out, &SESSION_STRINGS, &SESSION_NUMBERS)?;
    Ok(out)
}

struct MessageIn {
    fields: Map<String, Value>,
    parts: Option<Vec<Value>>,
}

fn check_message(body: &Value) -> Result<MessageIn, Invalid> {
    let empty = empty_map();
    let obj = body.as_object().unwrap_or(&empty);
    if ["sessionExternalId", "externalId", "role"].iter().any(|k| falsy(obj.get(*k))) {
        return Err(Invalid::Missing("Missing required fields: sessionExternalId, externalId, role".into()));
    }
    let mut fields = Map::new();
    for k in ["sessionExternalId", "externalId"] {
        let v = &obj[k];
        if !v.is_string() {
            return Err(mismatch(k, v, "v.string()"));
        }
        fields.insert(k.into(), v.clone());
    }
    let role = &obj["role"];
    if !role.as_str().is_some_and(|r| ROLES.contains(&r)) {
        return Err(mismatch("role", role, ROLE_VALIDATOR));
    }
    fields.insert("role".into(), role.clone());
    copy_typed(obj, &mut fields, &MESSAGE_STRINGS, &MESSAGE_NUMBERS)?;
    let parts = match obj.get("parts") {
        None => None,
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (i, p) in items.iter().enumerate() {
                let Some(po) = p.as_object() else {
                    return Err(mismatch(&format!("parts[{i}]"), p, "v.object({ type: v.string(), content: v.any() })"));
                };
                let t = po.get("type").cloned().unwrap_or(Value::Null);
                if !t.is_string() {
                    return Err(mismatch(&format!("parts[{i}].type"), &t, "v.string()"));
                }
                let mut part = Map::new();
                part.insert("type".into(), t);
                if let Some(c) = po.get("content") {
                    part.insert("content".into(), c.clone());
                }
                parts.push(Value::Object(part));
            }
            Some(parts)
        }
        Some(other) => {
            return Err(mismatch("parts", other, "v.optional(v.array(v.object({ type: v.string(), content: v.any() })))"));
        }
    };
    Ok(MessageIn { fields, parts })
}

/// Token counts of 0 never overwrite a stored non-zero value.
const KEEP_NONZERO: [&str; 2] = ["promptTokens", "completionTokens"];

fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}

fn upsert_session(st: &mut State, fields: Map<String, Value>) -> String {
    let now = now_ms();
    if let Some(existing) = st.sessions.iter_mut().find(|s| s["externalId"] == fields["externalId"]) {
        let obj = existing.as_object_mut().expect("stored sessions are objects");
        for (k, v) in fields {
            if KEEP_NONZERO.contains(&k.as_str()) && is_zero(&v) && obj.get(&k).is_some_and(|old| old.is_number() && !is_zero(old)) {
                continue;
            }
            obj.insert(k, v);
        }
        obj.entry("createdAt").or_insert(json!(now));
        obj.insert("updatedAt".into(), json!(now));
        return obj["_id"].as_str().unwrap_or_default().to_string();
    }
    let id = new_id();
    let mut obj = Map::new();
    obj.insert("_id".into(), json!(id));
    obj.extend(fields);
    obj.entry("createdAt").or_insert(json!(now));
    obj.insert("updatedAt".into(), json!(now));
    st.sessions.push(Value::Object(obj));
    id
}

/// The internal id of the session, creating a bare one (only `externalId`) if unknown.
fn ensure_session(st: &mut State, external_id: &Value) -> String {
    if let Some(s) = st.sessions.iter().find(|s| &s["externalId"] == external_id) {
        return s["_id"].as_str().unwrap_or_default().to_string();
    }
    let id = new_id();
    st.sessions.push(json!({"_id": id, "externalId": external_id}));
    id
}

fn upsert_message(st: &mut State, m: MessageIn) -> String {
    let now = now_ms();
    let session_id = ensure_session(st, &m.fields["sessionExternalId"]);
    let parts = Value::Array(m.parts.unwrap_or_default());
    if let Some(existing) = st.messages.iter_mut().find(|x| x["externalId"] == m.fields["externalId"]) {
        let obj = existing.as_object_mut().expect("stored messages are objects");
        obj.extend(m.fields);
        obj.insert("sessionId".into(), json!(session_id));
        obj.entry("createdAt").or_insert(json!(now));
        obj.insert("updatedAt".into(), json!(now));
        obj.insert("parts".into(), parts);
        return obj["_id"].as_str().unwrap_or_default().to_string();
    }
    let id = new_id();
    let mut obj = Map::new();
    obj.insert("_id".into(), json!(id));
    obj.extend(m.fields);
    obj.insert("sessionId".into(), json!(session_id));
    obj.entry("createdAt").or_insert(json!(now));
    obj.insert("updatedAt".into(), json!(now));
    obj.insert("parts".into(), parts);
    st.messages.push(Value::Object(obj));
    id
}

fn batch(st: &mut State, body: &Value) -> (u16, Value) {
    let list = |key: &str| -> Result<Vec<Value>, Invalid> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(mismatch(key, other, "v.array(v.any())")),
        }
    };
    let (sessions, messages) = match (list("sessions"), list("messages")) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => return e.answer(),
    };
    let mut errors = Vec::new();
    let mut n_sessions = 0;
    for s in &sessions {
        match check_session(s) {
            Ok(fields) => {
                upsert_session(st, fields);
                n_sessions += 1;
            }
            Err(e) => {
                let ext = match s.get("externalId") {
                    Some(v) if !v.is_null() => v.clone(),
                    _ => s.get("sessionId").cloned().unwrap_or(Value::Null),
                };
                errors.push(json!({"type": "session", "externalId": ext, "error": e.text()}));
            }
        }
    }
    let mut n_messages = 0;
    for m in &messages {
        let ext = m.get("externalId").and_then(Value::as_str).unwrap_or("");
        if st.refuse.iter().any(|r| r == ext) {
            errors.push(json!({"type": "message", "externalId": ext, "error": "injected: refused"}));
            continue;
        }
        match check_message(m) {
            Ok(m) => {
                upsert_message(st, m);
                n_messages += 1;
            }
            Err(e) => {
                let ext = m.get("externalId").cloned().unwrap_or(Value::Null);
                errors.push(json!({"type": "message", "externalId": ext, "error": e.text()}));
            }
        }
    }
    (200, json!({"ok": true, "sessions": n_sessions, "messages": n_messages, "errors": errors}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/sync/*", "/sync/batch"));
        assert!(glob_match("*", "/health"));
        assert!(glob_match("/sync/*/list", "/sync/sessions/list"));
        assert!(!glob_match("/sync/session", "/sync/sessions/list"));
        assert!(glob_match("/sync/session", "/sync/session"));
    }

    #[test]
    fn keys_look_right() {
        let k = random_alnum(32);
        assert_eq!(k.len(), 32);
        assert!(k.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_id(), new_id());
    }
}
