//! The OpenSync dashboard's HTTP API (`/health`, `/sync/session`, `/sync/message`, `/sync/batch`,
//! `/sync/sessions/list`), with the key in `Authorization: Bearer osk_…`. Blocking (ureq, rustls).
//!
//! Connection errors and 5xx are retried (1, 2, 4 s); a 401 says the key is wrong; every message
//! is scrubbed of the key.

use std::time::Duration;

use serde_json::Value;

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

/// What a batch answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub sessions: u64,
    pub messages: u64,
    /// (type, externalId, error) of the items OpenSync did not take.
    pub errors: Vec<(String, String, String)>,
}

pub struct OpenSyncClient {
    base: String,
    key: String,
    agent: ureq::Agent,
    backoff: Duration,
}

impl OpenSyncClient {
    pub fn new(url: &str, key: &str) -> Result<Self, OpenSyncError> {
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
        let backoff = std::env::var("OC_SYNC_OPENSYNC_RETRY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
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
                Ok((s, _)) => *s >= 500 && attempt < ATTEMPTS,
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

    /// `POST /sync/batch`. A 200 answer lists refused items in `errors`.
    pub fn batch(&self, sessions: &[Value], messages: &[Value]) -> Result<BatchResult, OpenSyncError> {
        let body = serde_json::json!({ "sessions": sessions, "messages": messages });
        let (_, v) = self.call("POST", "/sync/batch", Some(&body), true)?;
        let errors = v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let s = |k: &str| e[k].as_str().map(str::to_owned).unwrap_or_else(|| e[k].to_string());
                        (s("type"), s("externalId"), s("error"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(BatchResult { sessions: v["sessions"].as_u64().unwrap_or(0), messages: v["messages"].as_u64().unwrap_or(0), errors })
    }
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
        assert!(OpenSyncClient::new("https://x.convex.cloud", "nope").is_err());
    }

    #[test]
    fn user_info_and_lookalike_hosts_are_refused() {
        for u in ["http://127.0.0.1:80@other.example", "http://127.0.0.1.evil.com", "https://u:p@x.convex.cloud"] {
            assert!(OpenSyncClient::new(u, "osk_abcdefghijkl").is_err(), "{u}");
        }
        assert_eq!(normalize_url("HTTPS://Happy-Cat.Convex.Cloud").unwrap(), "https://happy-cat.convex.site");
        assert_eq!(normalize_url("https://x.convex.cloud.evil.com").unwrap(), "https://x.convex.cloud.evil.com");
        assert_eq!(normalize_url("http://2130706433:3210/").unwrap(), "http://127.0.0.1:3210");
    }
}
