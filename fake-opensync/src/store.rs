//! The deployment's tables and its four sync mutations, following waynesutton/opensync
//! `convex/sessions.ts` (`upsert`, `batchUpsert`) and `convex/messages.ts` (`upsert`,
//! `batchUpsert`): their validators, dedup windows, "0 tokens never overwrite", bare sessions for
//! unknown ids, and the batch message update that deletes a message's parts without inserting the
//! new ones. A mutation that throws writes nothing (Convex transactions).

use serde_json::{Map, Value, json};

use crate::convex::{V, check_document, check_value, validate};

/// `SESSION_DEDUP_MS` in sessions.ts: an unchanged session updated this recently is skipped.
pub const SESSION_DEDUP_MS: u64 = 10_000;
/// `MESSAGE_DEDUP_MS` in messages.ts: a message whose `createdAt` is this recent is skipped.
pub const MESSAGE_DEDUP_MS: u64 = 5_000;

const ROLES: &[&str] = &["user", "assistant", "system", "tool", "unknown"];

fn part_v() -> V {
    V::Obj(vec![("type", V::Str), ("content", V::Any)])
}

/// `sessionInputValidator` (batch) or `upsert`'s args (`createdAt` only there).
pub fn session_v(single: bool) -> V {
    let mut f = vec![("externalId", V::Str)];
    for k in ["title", "projectPath", "projectName", "model", "provider", "source"] {
        f.push((k, V::opt(V::Str)));
    }
    for k in ["promptTokens", "completionTokens", "cost", "durationMs"] {
        f.push((k, V::opt(V::Num)));
    }
    if single {
        f.push(("createdAt", V::opt(V::Num)));
    }
    V::Obj(f)
}

/// `messageInputValidator` (batch) or `upsert`'s args (`createdAt` only there).
pub fn message_v(single: bool) -> V {
    let mut f = vec![("sessionExternalId", V::Str), ("externalId", V::Str), ("role", V::Lits(ROLES))];
    for k in ["textContent", "model"] {
        f.push((k, V::opt(V::Str)));
    }
    for k in ["promptTokens", "completionTokens", "durationMs"] {
        f.push((k, V::opt(V::Num)));
    }
    f.push(("source", V::opt(V::Str)));
    f.push(("parts", V::opt(V::arr(part_v()))));
    if single {
        f.push(("createdAt", V::opt(V::Num)));
    }
    V::Obj(f)
}

/// Checks a mutation's arguments (without `userId`, which the server adds).
pub fn check_args(args: &Value, v: &V) -> Result<(), String> {
    check_value(args)?;
    validate(Some(args), v, "")
}

#[derive(Default, Clone)]
pub struct Tables {
    /// Session documents (without userId), insertion order.
    pub sessions: Vec<Map<String, Value>>,
    /// Message documents: `_id`, `sessionId`, `externalId`, `role`, ..., `createdAt`.
    pub messages: Vec<Map<String, Value>>,
    /// Part documents: `messageId`, `type`, `content`, `order`.
    pub parts: Vec<Map<String, Value>>,
}

fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(0.0)
}

fn normalized_source(src: Option<&Value>) -> Value {
    match src.and_then(Value::as_str).filter(|x| !x.is_empty()).unwrap_or("opencode") {
        "cursor" => json!("cursor-sync"),
        x => json!(x),
    }
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<&Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v.clone());
    }
}

impl Tables {
    fn session_idx(&self, ext: &Value) -> Option<usize> {
        self.sessions.iter().position(|x| x.get("externalId") == Some(ext))
    }
    fn message_idx(&self, ext: &Value) -> Option<usize> {
        self.messages.iter().position(|x| x.get("externalId") == Some(ext))
    }

    fn new_session(&mut self, a: &Map<String, Value>, created: Value, now: u64, id: String) -> Result<String, String> {
        let prompt = num(a.get("promptTokens"));
        let completion = num(a.get("completionTokens"));
        let mut d = Map::new();
        d.insert("_id".into(), json!(id));
        put(&mut d, "externalId", a.get("externalId"));
        for k in ["title", "projectPath", "projectName", "model", "provider"] {
            put(&mut d, k, a.get(k));
        }
        d.insert("source".into(), normalized_source(a.get("source")));
        d.insert("promptTokens".into(), json!(prompt));
        d.insert("completionTokens".into(), json!(completion));
        d.insert("totalTokens".into(), json!(prompt + completion));
        d.insert("cost".into(), a.get("cost").cloned().unwrap_or(json!(0)));
        put(&mut d, "durationMs", a.get("durationMs"));
        d.insert("isPublic".into(), json!(false));
        put(&mut d, "searchableText", a.get("title"));
        d.insert("messageCount".into(), json!(0));
        d.insert("createdAt".into(), created);
        d.insert("updatedAt".into(), json!(now));
        check_document("sessions", &Value::Object(d.clone()))?;
        self.sessions.push(d);
        Ok(id)
    }

    /// `sessions.upsert` (POST /sync/session).
    pub fn session_upsert(&mut self, a: &Map<String, Value>, now: u64, id: String) -> Result<String, String> {
        let prompt = num(a.get("promptTokens"));
        let completion = num(a.get("completionTokens"));
        let Some(i) = self.session_idx(&a["externalId"]) else {
            let created = a.get("createdAt").cloned().unwrap_or(json!(now));
            return self.new_session(a, created, now, id);
        };
        let e = &self.sessions[i];
        let same = |k: &str| a.get(k) == e.get(k);
        let unchanged = same("title")
            && same("model")
            && same("projectPath")
            && (prompt == 0.0 || prompt == num(e.get("promptTokens")))
            && (completion == 0.0 || completion == num(e.get("completionTokens")));
        let id = e["_id"].as_str().unwrap_or_default().to_owned();
        if unchanged && now.saturating_sub(num(e.get("updatedAt")) as u64) < SESSION_DEDUP_MS {
            return Ok(id);
        }
        let mut d = e.clone();
        for k in ["title", "projectPath", "projectName", "model", "provider", "source", "cost", "durationMs"] {
            if let Some(v) = a.get(k).filter(|v| Some(*v) != e.get(k)) {
                d.insert(k.into(), v.clone());
                if k == "title" {
                    d.insert("searchableText".into(), v.clone());
                }
            }
        }
        if prompt > 0.0 {
            d.insert("promptTokens".into(), json!(prompt));
        }
        if completion > 0.0 {
            d.insert("completionTokens".into(), json!(completion));
        }
        if prompt > 0.0 || completion > 0.0 {
            let total = num(d.get("promptTokens")) + num(d.get("completionTokens"));
            d.insert("totalTokens".into(), json!(total));
        }
        d.insert("updatedAt".into(), json!(now));
        check_document("sessions", &Value::Object(d.clone()))?;
        self.sessions[i] = d;
        Ok(id)
    }

    /// `sessions.batchUpsert`: (inserted, updated, skipped). New sessions get `createdAt = now`.
    pub fn session_batch(&mut self, items: &[Value], now: u64, mut ids: impl FnMut() -> String) -> Result<(u64, u64, u64), String> {
        let before = self.clone();
        let r = (|| {
            let (mut ins, mut upd, mut skip) = (0, 0, 0);
            for item in items {
                let a = item.as_object().cloned().unwrap_or_default();
                let prompt = num(a.get("promptTokens"));
                let completion = num(a.get("completionTokens"));
                let Some(i) = self.session_idx(&a["externalId"]) else {
                    self.new_session(&a, json!(now), now, ids())?;
                    ins += 1;
                    continue;
                };
                let e = &self.sessions[i];
                let unchanged = a.get("title") == e.get("title")
                    && a.get("model") == e.get("model")
                    && (prompt == 0.0 || prompt == num(e.get("promptTokens")));
                if unchanged && now.saturating_sub(num(e.get("updatedAt")) as u64) < SESSION_DEDUP_MS {
                    skip += 1;
                    continue;
                }
                let mut d = e.clone();
                for k in ["title", "projectPath", "projectName", "model", "provider", "source", "cost", "durationMs"] {
                    put(&mut d, k, a.get(k));
                }
                if prompt > 0.0 {
                    d.insert("promptTokens".into(), json!(prompt));
                    let c = if completion != 0.0 { completion } else { num(e.get("completionTokens")) };
                    d.insert("totalTokens".into(), json!(prompt + c));
                }
                if completion > 0.0 {
                    d.insert("completionTokens".into(), json!(completion));
                    let p = if prompt != 0.0 { prompt } else { num(e.get("promptTokens")) };
                    d.insert("totalTokens".into(), json!(p + completion));
                }
                d.insert("updatedAt".into(), json!(now));
                check_document("sessions", &Value::Object(d.clone()))?;
                self.sessions[i] = d;
                upd += 1;
            }
            Ok((ins, upd, skip))
        })();
        if r.is_err() {
            *self = before; // the mutation failed: nothing was written
        }
        r
    }

    /// The session for a message, created bare (createdAt now) when unknown: its index.
    fn session_for(&mut self, ext: &Value, first: &Map<String, Value>, now: u64, id: String) -> Result<usize, String> {
        if let Some(i) = self.session_idx(ext) {
            return Ok(i);
        }
        let mut a = Map::new();
        a.insert("externalId".into(), ext.clone());
        put(&mut a, "model", first.get("model"));
        put(&mut a, "source", first.get("source"));
        self.new_session(&a, json!(now), now, id)?;
        Ok(self.sessions.len() - 1)
    }

    fn insert_parts(&mut self, message_id: &str, parts: Option<&Value>) -> Result<(), String> {
        for (i, p) in parts.and_then(Value::as_array).into_iter().flatten().enumerate() {
            let doc = json!({"messageId": message_id, "type": p["type"], "content": p.get("content").cloned().unwrap_or(Value::Null), "order": i});
            check_document("parts", &doc)?;
            if let Value::Object(m) = doc {
                self.parts.push(m);
            }
        }
        Ok(())
    }

    fn text_of_parts(parts: Option<&Value>) -> String {
        let texts: Vec<String> = parts
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| match &p["content"] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("text").or_else(|| o.get("content")).and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .filter(|t| !t.is_empty())
            .collect();
        texts.join(" ")
    }

    fn patch_message(&mut self, i: usize, a: &Map<String, Value>) -> Result<String, String> {
        let mut d = self.messages[i].clone();
        for k in ["textContent", "model", "promptTokens", "completionTokens", "durationMs"] {
            put(&mut d, k, a.get(k));
        }
        check_document("messages", &Value::Object(d.clone()))?;
        let id = d["_id"].as_str().unwrap_or_default().to_owned();
        self.messages[i] = d;
        self.parts.retain(|p| p["messageId"] != id.as_str());
        Ok(id)
    }

    fn insert_message(&mut self, a: &Map<String, Value>, session_id: &Value, created: Value, id: String) -> Result<String, String> {
        let mut d = Map::new();
        d.insert("_id".into(), json!(id));
        d.insert("sessionId".into(), session_id.clone());
        for k in ["externalId", "role", "textContent", "model", "promptTokens", "completionTokens", "durationMs"] {
            put(&mut d, k, a.get(k));
        }
        d.insert("createdAt".into(), created);
        check_document("messages", &Value::Object(d.clone()))?;
        self.messages.push(d);
        Ok(id)
    }

    fn add_searchable(&mut self, si: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        let cur = self.sessions[si].get("searchableText").and_then(Value::as_str).unwrap_or("").to_owned();
        let joined: String = format!("{cur} {text}").chars().take(10_000).collect();
        self.sessions[si].insert("searchableText".into(), json!(joined));
    }

    /// `messages.upsert` (POST /sync/message).
    pub fn message_upsert(&mut self, a: &Map<String, Value>, now: u64, mut ids: impl FnMut() -> String) -> Result<String, String> {
        // What could fail is checked before anything is written (a failed mutation writes nothing).
        for p in a.get("parts").and_then(Value::as_array).into_iter().flatten() {
            check_document("parts", &json!({"messageId": "x".repeat(32), "type": p["type"], "content": p.get("content"), "order": 0}))?;
        }
        check_document("messages", &Value::Object(a.clone()))?;
        {
            let existing = self.message_idx(&a["externalId"]);
            if let Some(i) = existing
                && now.saturating_sub(num(self.messages[i].get("createdAt")) as u64) < MESSAGE_DEDUP_MS
            {
                return Ok(self.messages[i]["_id"].as_str().unwrap_or_default().to_owned());
            }
            let si = self.session_for(&a["sessionExternalId"], a, now, ids())?;
            let session_id = self.sessions[si]["_id"].clone();
            let (id, new) = match existing {
                Some(i) => (self.patch_message(i, a)?, false),
                None => (self.insert_message(a, &session_id, a.get("createdAt").cloned().unwrap_or(json!(now)), ids())?, true),
            };
            self.insert_parts(&id, a.get("parts"))?;
            let text = Self::text_of_parts(a.get("parts"));
            if new || !text.is_empty() {
                self.sessions[si].insert("updatedAt".into(), json!(now));
                if new {
                    let n = num(self.sessions[si].get("messageCount"));
                    self.sessions[si].insert("messageCount".into(), json!(n + 1.0));
                }
                self.add_searchable(si, &text);
            }
            Ok(id)
        }
    }

    /// `messages.batchUpsert`: (inserted, updated, skipped, per-item errors). New messages get
    /// `createdAt = now`; an update deletes the message's parts and inserts none. A per-item error
    /// is caught inside the mutation, so what that item wrote before failing stays.
    pub fn message_batch(&mut self, items: &[Value], now: u64, mut ids: impl FnMut() -> String) -> Result<(u64, u64, u64, Vec<String>), String> {
        let before = self.clone();
        let r = (|| {
            let (mut ins, mut upd, mut skip, mut errors) = (0, 0, 0, Vec::new());
            let mut order: Vec<Value> = Vec::new();
            for m in items {
                if !order.contains(&m["sessionExternalId"]) {
                    order.push(m["sessionExternalId"].clone());
                }
            }
            for sext in order {
                let group: Vec<Map<String, Value>> = items.iter().filter(|m| m["sessionExternalId"] == sext).filter_map(|m| m.as_object().cloned()).collect();
                let si = self.session_for(&sext, &group[0], now, ids())?;
                let session_id = self.sessions[si]["_id"].clone();
                let mut new_msgs = 0.0;
                let mut texts = Vec::new();
                for a in &group {
                    let existing = self.message_idx(&a["externalId"]);
                    if let Some(i) = existing
                        && now.saturating_sub(num(self.messages[i].get("createdAt")) as u64) < MESSAGE_DEDUP_MS
                    {
                        skip += 1;
                        continue;
                    }
                    let r = match existing {
                        Some(i) => self.patch_message(i, a).map(|_| false),
                        None => self
                            .insert_message(a, &session_id, json!(now), ids())
                            .and_then(|id| self.insert_parts(&id, a.get("parts")))
                            .map(|()| true),
                    };
                    match r {
                        Ok(true) => {
                            ins += 1;
                            new_msgs += 1.0;
                            texts.push(Self::text_of_parts(a.get("parts")));
                        }
                        Ok(false) => upd += 1,
                        Err(e) => errors.push(format!("{}: Error: {e}", a["externalId"].as_str().unwrap_or_default())),
                    }
                }
                let text = texts.into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
                if new_msgs > 0.0 || !text.is_empty() {
                    let n = num(self.sessions[si].get("messageCount"));
                    self.sessions[si].insert("messageCount".into(), json!(n + new_msgs));
                    self.sessions[si].insert("updatedAt".into(), json!(now));
                    self.add_searchable(si, &text);
                }
            }
            Ok((ins, upd, skip, errors))
        })();
        if r.is_err() {
            *self = before;
        }
        r
    }

    /// A message document with its parts (ordered) and its session's externalId, for tests.
    pub fn message_view(&self, m: &Map<String, Value>) -> Value {
        let mut v = m.clone();
        let mut parts: Vec<&Map<String, Value>> = self.parts.iter().filter(|p| p.get("messageId") == m.get("_id")).collect();
        parts.sort_by_key(|p| p["order"].as_u64());
        v.insert("parts".into(), Value::Array(parts.iter().map(|p| json!({"type": p["type"], "content": p["content"]})).collect()));
        if let Some(s) = self.sessions.iter().find(|s| s.get("_id") == m.get("sessionId")) {
            put(&mut v, "sessionExternalId", s.get("externalId"));
        }
        Value::Object(v)
    }
}

/// Builds a mutation's arguments the way http.ts does: the named fields of the body, a missing
/// one left out (undefined), anything else in the body dropped.
pub fn named_args(body: &Value, names: &[&str]) -> Value {
    let mut out = Map::new();
    for k in names {
        if let Some(v) = body.get(*k) {
            out.insert((*k).into(), v.clone());
        }
    }
    Value::Object(out)
}

pub const SESSION_FIELDS: &[&str] = &[
    "externalId", "title", "projectPath", "projectName", "model", "provider", "source", "promptTokens", "completionTokens", "cost", "durationMs", "createdAt",
];
pub const MESSAGE_FIELDS: &[&str] = &[
    "sessionExternalId", "externalId", "role", "textContent", "model", "promptTokens", "completionTokens", "durationMs", "source", "parts", "createdAt",
];
