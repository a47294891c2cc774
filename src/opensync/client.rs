//! The OpenSync dashboard's HTTP API (`/health`, `/sync/session`, `/sync/message`, `/sync/batch`,
//! `/sync/sessions/list`), with the key in `Authorization: Bearer osk_…`. Blocking (ureq, rustls).
//!
//! Connection errors and 5xx other than the handler's own answer are retried (1, 2, 4 s); a 401
//! says the key is wrong; a 400, or a 500 carrying the handler's `{"error": ...}` (a mutation that
//! threw, e.g. Convex refusing the arguments), is the server refusing that item
//! ([`OpenSyncError::Refused`]); every message is scrubbed of the key.

use std::time::Duration;

use serde_json::Value;

use crate::paths::EnvSnapshot;

/// Attempts for a request that fails with a connection error or a 5xx.
const ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum OpenSyncError {
    #[error(
        "OpenSync refused the API key ({0}): it is wrong or was revoked. Create a key in the dashboard's settings and run `oc-sync opensync login --key osk_...`"
    )]
    Unauthorized(String),
    #[error("cannot reach OpenSync at {url}: {detail}. Check the URL (`oc-sync opensync status`) and your connection; oc-sync retries later")]
    Unreachable { url: String, detail: String },
    #[error("OpenSync at {url} had a server error ({detail}); oc-sync retries later")]
    Server { url: String, detail: String },
    #[error("OpenSync refused the request ({0})")]
    Rejected(String),
    /// The server's handler answered with its error for this item (400, or 500 with
    /// `{"error": ...}`): not stored; trying the same payload again right away will not help.
    #[error("OpenSync refused it: {0}")]
    Refused(String),
    #[error("{0}")]
    Config(String),
}

impl OpenSyncError {
    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, OpenSyncError::Unreachable { .. } | OpenSyncError::Server { .. })
    }
}

/// The URL to talk to: a `.convex.cloud` deployment URL (what people are given) becomes its
/// `.convex.site` HTTP-actions URL; other URLs (self-hosted) stay as given. https, or http to a
/// loopback address only.
pub fn normalize_url(url: &str) -> Result<String, String> {
    let c = crate::net::check_secure_url(url, "API key", "e.g. https://your-deployment.convex.cloud")?;
    Ok(match c.host.strip_suffix(".convex.cloud") {
        Some(name) => c.with_host(&format!("{name}.convex.site"), "API key")?.url,
        None => c.url,
    })
}

/// `osk_…1234`.
pub fn mask_key(key: &str) -> String {
    let n = key.chars().count();
    if n <= 8 {
        "****".into()
    } else {
        let tail: String = key.chars().skip(n - 4).collect();
        format!("{}…{tail}", key.chars().take(4).collect::<String>())
    }
}

/// What a batch answered (`/sync/batch` always answers 200; its `errors` say what failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    /// Sessions and messages stored (inserted + updated; deduplicated ones are not counted).
    pub sessions: u64,
    pub messages: u64,
    /// `Sessions batch error: ...`: the sessions mutation failed, none of them was stored.
    pub sessions_error: Option<String>,
    /// `Messages batch error: ...`: the messages mutation failed, none of them was stored.
    pub messages_error: Option<String>,
    /// Per-message failures `(externalId, error)` (the other messages were stored).
    pub message_errors: Vec<(String, String)>,
    /// Entries of `errors` of no known shape (kept whole).
    pub other_errors: Vec<String>,
}

impl BatchResult {
    /// Sorts the answer's `errors` strings (http.ts and messages.ts write them).
    pub fn parse(v: &Value, sent_messages: &[&str]) -> BatchResult {
        let mut r = BatchResult { sessions: v["sessions"].as_u64().unwrap_or(0), messages: v["messages"].as_u64().unwrap_or(0), ..Default::default() };
        for e in v["errors"].as_array().into_iter().flatten() {
            let text = e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string());
            if let Some(rest) = text.strip_prefix("Sessions batch error: ") {
                r.sessions_error = Some(rest.to_owned());
            } else if let Some(rest) = text.strip_prefix("Messages batch error: ") {
                r.messages_error = Some(rest.to_owned());
            } else if let Some((id, why)) = text.split_once(": ").filter(|(id, _)| sent_messages.contains(id)) {
                r.message_errors.push((id.to_owned(), why.to_owned()));
            } else {
                r.other_errors.push(text);
            }
        }
        r
    }
}

/// The first retry wait (doubling after), unless the environment changes it (see [`retry_delay`]).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The first retry wait: [`RETRY_DELAY`], or OC_SYNC_OPENSYNC_RETRY_MS milliseconds (tests).
pub fn retry_delay(env: &EnvSnapshot) -> Duration {
    env.var("OC_SYNC_OPENSYNC_RETRY_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(RETRY_DELAY, Duration::from_millis)
}

pub struct OpenSyncClient {
    base: String,
    key: String,
    agent: ureq::Agent,
    backoff: Duration,
}

impl OpenSyncClient {
    /// `backoff`: the first retry wait, see [`retry_delay`].
    pub fn new(url: &str, key: &str, backoff: Duration) -> Result<Self, OpenSyncError> {
        let base = normalize_url(url).map_err(OpenSyncError::Config)?;
        let key = key.trim().to_owned();
        if !key.starts_with("osk_") || key.len() < 8 || key.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(OpenSyncError::Config(
                "the OpenSync API key must look like osk_… (copy it from the dashboard's settings)".into(),
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(OpenSyncClient { base, key, agent, backoff })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn scrub(&self, s: &str) -> String {
        s.replace(&self.key, "***")
    }

    /// One request with retries; returns (status, parsed JSON body or Null).
    fn call(&self, method: &str, path: &str, body: Option<&Value>, auth: bool) -> Result<(u16, Value), OpenSyncError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = (|| -> Result<(u16, String), ureq::Error> {
                let mut resp = match (method, body) {
                    ("GET", _) => {
                        let mut r = self.agent.get(&url);
                        if auth {
                            r = r.header("Authorization", &format!("Bearer {}", self.key));
                        }
                        r.call()?
                    }
                    (_, b) => {
                        let bytes = serde_json::to_vec(b.unwrap_or(&Value::Null)).unwrap_or_default();
                        let mut r = self.agent.post(&url).header("Content-Type", "application/json");
                        if auth {
                            r = r.header("Authorization", &format!("Bearer {}", self.key));
                        }
                        r.send(&bytes[..])?
                    }
                };
                let status = resp.status().as_u16();
                let text = resp.body_mut().with_config().limit(16 << 20).read_to_string()?;
                Ok((status, text))
            })();
            let retry = match &result {
                Err(_) => attempt < ATTEMPTS,
                Ok((s, text)) => *s >= 500 && !handler_error(*s, text) && attempt < ATTEMPTS,
            };
            if retry {
                std::thread::sleep(self.backoff * (1 << (attempt - 1)));
                continue;
            }
            return match result {
                Err(e) => Err(OpenSyncError::Unreachable { url: self.base.clone(), detail: self.scrub(&e.to_string()) }),
                Ok((status, text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let detail = || {
                        let msg = v["error"].as_str().map(str::to_owned).unwrap_or_else(|| text.chars().take(200).collect());
                        self.scrub(&format!("{method} {path}: HTTP {status}: {msg}"))
                    };
                    match status {
                        200..=299 => Ok((status, v)),
                        401 | 403 => Err(OpenSyncError::Unauthorized(detail())),
                        400 => Err(OpenSyncError::Refused(self.scrub(v["error"].as_str().unwrap_or(&text)))),
                        s if handler_error(s, &text) => Err(OpenSyncError::Refused(self.scrub(v["error"].as_str().unwrap_or_default()))),
                        s if s >= 500 => Err(OpenSyncError::Server { url: self.base.clone(), detail: detail() }),
                        _ => Err(OpenSyncError::Rejected(detail())),
                    }
                }
            };
        }
    }

    /// `GET /health` (no key).
    pub fn health(&self) -> Result<(), OpenSyncError> {
        let (_, v) = self.call("GET", "/health", None, false)?;
        if v["status"] == "ok" {
            Ok(())
        } else {
            Err(OpenSyncError::Rejected(format!("{}/health did not answer {{\"status\":\"ok\"}}: is this an OpenSync deployment?", self.base)))
        }
    }

    /// The session ids OpenSync holds for this key (also checks the key).
    pub fn session_ids(&self) -> Result<Vec<String>, OpenSyncError> {
        let (_, v) = self.call("GET", "/sync/sessions/list", None, true)?;
        Ok(v["sessionIds"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default())
    }

    /// `POST /sync/session` (takes `createdAt`). Ok means stored (or already stored unchanged).
    pub fn post_session(&self, session: &Value) -> Result<(), OpenSyncError> {
        self.call("POST", "/sync/session", Some(session), true).map(drop)
    }

    /// `POST /sync/message` (takes `createdAt`; replaces the message's parts with the ones sent).
    pub fn post_message(&self, message: &Value) -> Result<(), OpenSyncError> {
        self.call("POST", "/sync/message", Some(message), true).map(drop)
    }

    /// `POST /sync/batch` (items without `createdAt`). A 200 answer says in `errors` what failed.
    pub fn batch(&self, sessions: &[Value], messages: &[Value]) -> Result<BatchResult, OpenSyncError> {
        let mut body = serde_json::Map::new();
        if !sessions.is_empty() {
            body.insert("sessions".into(), Value::Array(sessions.to_vec()));
        }
        if !messages.is_empty() {
            body.insert("messages".into(), Value::Array(messages.to_vec()));
        }
        let (_, v) = self.call("POST", "/sync/batch", Some(&Value::Object(body)), true)?;
        let ids: Vec<&str> = messages.iter().filter_map(|m| m["externalId"].as_str()).collect();
        let mut r = BatchResult::parse(&v, &ids);
        for e in [&mut r.sessions_error, &mut r.messages_error].into_iter().flatten() {
            *e = self.scrub(e);
        }
        Ok(r)
    }
}

/// A 500 whose body is the handler's `{"error": "..."}` (http.ts catches what the mutation threw):
/// the server's answer about this request, not a passing outage.
fn handler_error(status: u16, text: &str) -> bool {
    status == 500 && serde_json::from_str::<Value>(text).is_ok_and(|v| v["error"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(normalize_url("https://happy-cat-123.convex.cloud/").unwrap(), "https://happy-cat-123.convex.site");
        assert_eq!(normalize_url("https://sync.example.com/api").unwrap(), "https://sync.example.com/api");
        assert_eq!(normalize_url("http://127.0.0.1:3210").unwrap(), "http://127.0.0.1:3210");
        assert!(normalize_url("http://sync.example.com").unwrap_err().contains("unencrypted"));
        assert!(normalize_url("sync.example.com").is_err());
        assert_eq!(mask_key("osk_abcdefghijklmnop"), "osk_…mnop");
        assert!(OpenSyncClient::new("https://x.convex.cloud", "nope", RETRY_DELAY).is_err());
    }

    #[test]
    fn user_info_and_lookalike_hosts_are_refused() {
        for u in ["http://127.0.0.1:80@other.example", "http://127.0.0.1.evil.com", "https://u:p@x.convex.cloud"] {
            assert!(OpenSyncClient::new(u, "osk_abcdefghijkl", RETRY_DELAY).is_err(), "{u}");
        }
        assert_eq!(normalize_url("HTTPS://Happy-Cat.Convex.Cloud").unwrap(), "https://happy-cat.convex.site");
        assert_eq!(normalize_url("https://x.convex.cloud.evil.com").unwrap(), "https://x.convex.cloud.evil.com");
        assert_eq!(normalize_url("http://2130706433:3210/").unwrap(), "http://127.0.0.1:3210");
    }

    #[test]
    fn batch_answers_are_sorted_by_kind_and_item() {
        let v = serde_json::json!({"ok": true, "sessions": 0, "messages": 1, "errors": [
            "Sessions batch error: Error: ArgumentValidationError: Object contains extra field `createdAt`",
            "msg_2: Error: Value is too large",
            "something else"
        ]});
        let r = BatchResult::parse(&v, &["msg_1", "msg_2"]);
        assert!(r.sessions_error.as_deref().unwrap().contains("extra field `createdAt`"));
        assert_eq!(r.messages_error, None);
        assert_eq!(r.message_errors, vec![("msg_2".to_owned(), "Error: Value is too large".to_owned())]);
        assert_eq!(r.other_errors, vec!["something else".to_owned()]);
        assert_eq!((r.sessions, r.messages), (0, 1));
        let m = BatchResult::parse(&serde_json::json!({"errors": ["Messages batch error: Error: x"]}), &[]);
        assert_eq!(m.messages_error.as_deref(), Some("Error: x"));
        assert!(handler_error(500, r#"{"error":"Error: ArgumentValidationError"}"#));
        assert!(!handler_error(502, r#"{"error":"x"}"#) && !handler_error(500, "<html>"));
    }
}
