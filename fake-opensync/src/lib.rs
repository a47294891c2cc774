//! A fake of the OpenSync dashboard's HTTP sync API (the routes oc-sync uses), kept in memory,
//! listening on 127.0.0.1 only, that follows the real server's code (waynesutton/opensync
//! `convex/http.ts`, `sessions.ts`, `messages.ts`): see [`store`] for the mutations and
//! [`convex`] for Convex's argument validation and limits. Start it in-process with
//! [`FakeOpenSync::start`], or run the `fake-opensync` binary.
//!
//! Routes (all answers are JSON; errors are `{"error": "<text>"}`):
//! - `GET /health` (no auth) → `{"status":"ok","timestamp":<ms>}`
//! - `POST /sync/session` → `{"ok":true,"sessionId":"<internal id>"}`; no `externalId`/`sessionId`
//!   → 400; the named fields (unknown ones dropped) go to `sessions.upsert`, whose validator
//!   failure (a `null`, a wrong type) → 500 `{"error":"Error: ArgumentValidationError: ..."}`.
//! - `POST /sync/message` → `{"ok":true,"messageId":"<internal id>"}`; validation as above.
//! - `POST /sync/batch` → 200 `{"ok":true,"sessions":n,"messages":n,"errors":["..."]}`: `sessions`
//!   and `messages` go AS THEY ARE to the batch mutations (`v.object` items without `createdAt`):
//!   one bad item fails its whole kind (`"Sessions batch error: ..."`, nothing of that kind
//!   stored); per-message failures are `"<externalId>: Error: ..."`; counts are inserted +
//!   updated (deduplicated items are not counted).
//! - `GET /sync/sessions/list` → `{"sessionIds":[...]}`
//!
//! Auth as http.ts: no `Bearer ` header → 401 `Missing Authorization header`; `Bearer osk_…` not
//! the key → 401 `Invalid API key`; another bearer token → 401 `Invalid or expired token`;
//! `/sync/sessions/list` takes only API keys (`Invalid API key format`).
//!
//! For tests that run the binary, a few unauthenticated helper routes (not recorded, not subject
//! to faults) expose the state: `GET /_fake/state` → `{"sessions":[..],"messages":[..],"requests":[..]}`
//! (messages with their `parts` and their session's `sessionExternalId`),
//! `POST /_fake/fault` with `{"path":"<glob>","times":n,"status":s}` or `{"path":..,"times":n,"drop":true}`,
//! `POST /_fake/refuse` with `{"kind":"sessions"|"messages","reason":"..."}` (a server whose
//! mutation of that kind throws; `{"kind":null}` stops), `POST /_fake/clock` with `{"advanceMs":n}`,
//! `POST /_fake/reset` (forget everything).

pub mod convex;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use convex::V;

/// Options for [`FakeOpenSync::start`].
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The one valid API key; `None` generates a random `osk_` + 32 alphanumerics.
    pub key: Option<String>,
    /// Delay before each answer (a deployment's round trip), for benchmarks.
    pub latency_ms: u64,
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
    tables: store::Tables,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    /// Message externalIds whose mutation throws (a server-side failure of that one item).
    refuse: Vec<String>,
    /// ("sessions" | "messages", reason): every mutation of that kind throws.
    refuse_kind: Option<(String, String)>,
    /// Added to the wall clock (tests of the dedup windows).
    clock_offset_ms: u64,
}

impl State {
    fn now(&self) -> u64 {
        now_ms() + self.clock_offset_ms
    }
    fn kind_refused(&self, kind: &str) -> Option<String> {
        self.refuse_kind.as_ref().filter(|(k, _)| k == kind).map(|(_, r)| r.clone())
    }
}

struct Inner {
    key: String,
    latency_ms: u64,
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
        let inner = Arc::new(Inner { key, latency_ms: opts.latency_ms, state: Mutex::new(State::default()) });
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

    /// Session documents in insertion order, as sessions.ts writes them (`_id`, `externalId`,
    /// `title`, ..., `promptTokens`, `completionTokens`, `totalTokens`, `cost`, `messageCount`,
    /// `searchableText`, `createdAt`, `updatedAt`; absent optional fields left out).
    pub fn sessions(&self) -> Vec<Value> {
        self.inner.lock().tables.sessions.iter().cloned().map(Value::Object).collect()
    }

    /// Message documents in insertion order (`_id`, `sessionId`, `externalId`, `role`, ...,
    /// `createdAt`), each with its `parts` (`[{type, content}]` in order) and its session's
    /// `sessionExternalId` added.
    pub fn messages(&self) -> Vec<Value> {
        let st = self.inner.lock();
        st.tables.messages.iter().map(|m| st.tables.message_view(m)).collect()
    }

    pub fn session(&self, external_id: &str) -> Option<Value> {
        self.sessions().into_iter().find(|s| s["externalId"] == external_id)
    }

    pub fn message(&self, external_id: &str) -> Option<Value> {
        self.messages().into_iter().find(|m| m["externalId"] == external_id)
    }

    /// Messages of one session (by the session's externalId), in insertion order.
    pub fn messages_of(&self, session_external_id: &str) -> Vec<Value> {
        self.messages().into_iter().filter(|m| m["sessionExternalId"] == session_external_id).collect()
    }

    /// Every mutation of `kind` ("sessions" or "messages") throws `reason` until
    /// [`FakeOpenSync::accept_all`]: `/sync/session` (or `/sync/message`) answers 500 and a batch
    /// reports `"Sessions batch error: ..."` (or `"Messages batch error: ..."`).
    pub fn refuse_kind(&self, kind: &str, reason: &str) {
        self.inner.lock().refuse_kind = Some((kind.into(), reason.into()));
    }

    /// Moves the server's clock forward (past a dedup window without sleeping).
    pub fn advance_clock(&self, ms: u64) {
        self.inner.lock().clock_offset_ms += ms;
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

    /// The mutation of the message with this externalId throws (`/sync/message` answers 500, a
    /// batch lists it in `errors`) until [`FakeOpenSync::accept_all`].
    pub fn refuse_message(&self, external_id: &str) {
        self.inner.lock().refuse.push(external_id.into());
    }

    /// Stops refusing (messages and kinds).
    pub fn accept_all(&self) {
        let mut st = self.inner.lock();
        st.refuse.clear();
        st.refuse_kind = None;
    }

    /// The next `times` requests whose path (without query) matches `path_glob` (`*` matches any
    /// characters, including `/`) are answered with `status` and `{"error":"injected"}`.
    /// Rules are checked in insertion order; the first with hits left wins.
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

    if inner.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(inner.latency_ms)).await;
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
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest) {
        ("GET", "state") => {
            let st = inner.lock();
            let requests: Vec<Value> = st.requests.iter().map(Recorded::to_json).collect();
            let sessions: Vec<Value> = st.tables.sessions.iter().cloned().map(Value::Object).collect();
            let messages: Vec<Value> = st.tables.messages.iter().map(|m| st.tables.message_view(m)).collect();
            (200, json!({"sessions": sessions, "messages": messages, "requests": requests, "key": inner.key}))
        }
        ("POST", "reset") => {
            *inner.lock() = State::default();
            (200, json!({"ok": true}))
        }
        ("POST", "refuse") => {
            let kind = v["kind"].as_str().map(str::to_owned);
            let reason = v["reason"].as_str().unwrap_or("refused by the fake").to_owned();
            inner.lock().refuse_kind = kind.map(|k| (k, reason));
            (200, json!({"ok": true}))
        }
        ("POST", "clock") => {
            inner.lock().clock_offset_ms += v["advanceMs"].as_u64().unwrap_or(0);
            (200, json!({"ok": true}))
        }
        ("POST", "fault") => {
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

/// http.ts's `authenticate` (JWT or API key) and `validateApiKey` (API key only).
fn check_auth(inner: &Inner, auth: Option<&str>, api_key_only: bool) -> Result<(), (u16, Value)> {
    let auth = auth.unwrap_or("");
    match auth.strip_prefix("Bearer ") {
        Some(k) if k.starts_with("osk_") => if k == inner.key { Ok(()) } else { Err(err(401, "Invalid API key")) },
        _ if api_key_only => Err(err(401, "Invalid API key format")),
        Some(_) => Err(err(401, "Invalid or expired token")),
        None => Err(err(401, "Missing Authorization header")),
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
        ("OPTIONS", p) if ROUTES.contains(&p) || p.starts_with('/') => return (204, Value::Null),
        _ => return err(404, "No matching routes found"),
    };
    if route == "health" {
        return (200, json!({"status": "ok", "timestamp": now_ms()}));
    }
    if let Err(e) = check_auth(inner, auth, route == "list") {
        return e;
    }
    let mut st = inner.lock();
    if route == "list" {
        let ids: Vec<Value> = st.tables.sessions.iter().map(|s| s["externalId"].clone()).collect();
        return (200, json!({ "sessionIds": ids }));
    }
    // `await request.json()` inside the handler's try: a bad body is a 500.
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return err(500, &format!("SyntaxError: Unexpected token in JSON ({e})")),
    };
    match route {
        "session" => single_session(&mut st, &body),
        "message" => single_message(&mut st, &body),
        _ => batch(&mut st, &body),
    }
}

/// JavaScript truthiness.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => true,
    }
}

/// A mutation error as the handler's `catch (e)` answers it.
fn thrown(e: &str) -> (u16, Value) {
    err(500, &format!("Error: {e}"))
}

fn single_session(st: &mut State, body: &Value) -> (u16, Value) {
    // `const externalId = body.externalId || body.sessionId`
    let ext = if truthy(body.get("externalId")) { body.get("externalId") } else { body.get("sessionId") };
    if !truthy(ext) {
        return err(400, "Missing externalId or sessionId");
    }
    let mut args = store::named_args(body, store::SESSION_FIELDS);
    args["externalId"] = ext.cloned().unwrap_or_default();
    if let Err(e) = store::check_args(&args, &store::session_v(true)) {
        return thrown(&e);
    }
    if let Some(r) = st.kind_refused("sessions") {
        return thrown(&r);
    }
    let now = st.now();
    match st.tables.session_upsert(args.as_object().expect("object"), now, new_id()) {
        Ok(id) => (200, json!({"ok": true, "sessionId": id})),
        Err(e) => thrown(&e),
    }
}

fn single_message(st: &mut State, body: &Value) -> (u16, Value) {
    let args = store::named_args(body, store::MESSAGE_FIELDS);
    if let Err(e) = store::check_args(&args, &store::message_v(true)) {
        return thrown(&e);
    }
    if let Some(r) = st.kind_refused("messages") {
        return thrown(&r);
    }
    if st.refuse.iter().any(|r| args["externalId"] == r.as_str()) {
        return thrown("refused by the fake");
    }
    let now = st.now();
    match st.tables.message_upsert(args.as_object().expect("object"), now, new_id) {
        Ok(id) => (200, json!({"ok": true, "messageId": id})),
        Err(e) => thrown(&e),
    }
}

/// The items of `body[key]` when http.ts would run that kind's mutation (`body.x && body.x.length
/// > 0`), else None.
fn batch_items(body: &Value, key: &str) -> Option<Value> {
    let v = body.get(key)?;
    let len = match v {
        Value::Array(a) => a.len(),
        Value::String(s) => s.encode_utf16().count(),
        _ => 0,
    };
    (truthy(Some(v)) && len > 0).then(|| v.clone())
}

fn batch(st: &mut State, body: &Value) -> (u16, Value) {
    let mut errors: Vec<String> = Vec::new();
    let (mut n_sessions, mut n_messages) = (0, 0);
    let now = st.now();
    if let Some(items) = batch_items(body, "sessions") {
        let args = json!({ "sessions": items });
        let r = store::check_args(&args, &V::Obj(vec![("sessions", V::arr(store::session_v(false)))]))
            .and_then(|()| st.kind_refused("sessions").map_or(Ok(()), Err))
            .and_then(|()| st.tables.session_batch(items.as_array().expect("validated"), now, new_id));
        match r {
            Ok((ins, upd, _)) => n_sessions = ins + upd,
            Err(e) => errors.push(format!("Sessions batch error: Error: {e}")),
        }
    }
    if let Some(items) = batch_items(body, "messages") {
        let args = json!({ "messages": items });
        let refused = st.refuse.clone();
        let r = store::check_args(&args, &V::Obj(vec![("messages", V::arr(store::message_v(false)))]))
            .and_then(|()| st.kind_refused("messages").map_or(Ok(()), Err))
            .and_then(|()| {
                // Items the fake refuses fail inside the mutation, like a per-item error.
                let list = items.as_array().expect("validated");
                let (bad, good): (Vec<&Value>, Vec<&Value>) = list.iter().partition(|m| refused.iter().any(|r| m["externalId"] == r.as_str()));
                let good: Vec<Value> = good.into_iter().cloned().collect();
                let mut r = st.tables.message_batch(&good, now, new_id)?;
                r.3.extend(bad.iter().map(|m| format!("{}: Error: refused by the fake", m["externalId"].as_str().unwrap_or_default())));
                Ok(r)
            });
        match r {
            Ok((ins, upd, _, errs)) => {
                n_messages = ins + upd;
                errors.extend(errs);
            }
            Err(e) => errors.push(format!("Messages batch error: Error: {e}")),
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
