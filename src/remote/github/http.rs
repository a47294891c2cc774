//! One HTTP client for GitHub's REST API (octocrab, rustls): sends requests, retries what is
//! safe to retry, reads the rate-limit headers, and turns unexpected answers into errors that
//! say what to do. The token is scrubbed from every message.
//!
//! Retries (octocrab's own retry layer is not compiled in, so these are the only ones):
//! - connection errors and 5xx: up to [`MAX_ATTEMPTS`] attempts, waiting 1 s, 2 s, 4 s
//!   (every request oc-sync sends is safe to repeat: git objects are content-addressed and the
//!   ref update is a fast-forward to a fixed commit);
//! - 403/429 with `Retry-After` of at most [`MAX_RETRY_AFTER`]: wait that long, once or twice;
//!   a longer wait, or an exhausted primary limit, becomes [`RemoteError::RateLimited`] and the
//!   caller's scheduler backs off.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::net::github_api_url;
use crate::paths::EnvSnapshot;
use crate::remote::{RemoteError, truncate};

/// Attempts for a request that fails with a connection error or a 5xx.
pub const MAX_ATTEMPTS: u32 = 4;
/// Longest `Retry-After` waited inside one request, in seconds.
pub const MAX_RETRY_AFTER: u64 = 60;

pub(crate) const TOKEN_HELP: &str = "create a fine-grained personal access token with \"Contents: \
     Read and write\" and \"Administration: Read and write\" (to create the repository) \
     (github.com → Settings → Developer settings → Personal access tokens), or a classic token \
     with the \"repo\" scope, then run `oc-sync login` or set GITHUB_TOKEN";

/// The rate-limit figures of the last answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateInfo {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds when the window resets.
    pub reset: Option<u64>,
}

/// One HTTP answer.
pub struct Resp {
    pub status: u16,
    pub retry_after: Option<String>,
    pub rate_remaining: Option<String>,
    pub rate_reset: Option<String>,
    pub etag: Option<String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
    pub fn message(&self) -> String {
        self.json()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .map(|m| truncate(&m, 300).to_owned())
            .unwrap_or_default()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The unit of the retry waits, unless the environment changes it (see [`retry_unit`]).
pub const RETRY_UNIT: Duration = Duration::from_secs(1);

/// The unit of the retry waits: [`RETRY_UNIT`], or OC_SYNC_GITHUB_RETRY_MS milliseconds (tests).
pub fn retry_unit(env: &EnvSnapshot) -> Duration {
    env.var("OC_SYNC_GITHUB_RETRY_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(RETRY_UNIT, Duration::from_millis)
}

/// The client. Owns a small current-thread runtime and blocks on it: never use it from inside
/// an async task of another runtime.
pub struct Http {
    rt: tokio::runtime::Runtime,
    octo: Octocrab,
    token: String,
    pub api_url: String,
    /// The API's host (and port, when not the scheme's default), from the parsed URL.
    pub api_host: String,
    /// Unit of the retry waits ([`RETRY_UNIT`]; tests shorten it, see [`retry_unit`]).
    backoff: Duration,
    rate: Mutex<RateInfo>,
}

impl Http {
    pub fn new(api_url: &str, token: &str) -> Result<Http, RemoteError> {
        let secure = github_api_url(api_url).map_err(|m| RemoteError::Denied(format!("githubApiUrl / GITHUB_API_URL: {m}")))?;
        let api_host = match secure.parsed().port() {
            Some(port) => format!("{}:{port}", secure.host),
            None => secure.host.clone(),
        };
        let api = secure.url;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(RemoteError::BadToken(format!("no GitHub token is configured: {TOKEN_HELP}")));
        }
        if token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(RemoteError::BadToken(format!(
                "the GitHub token contains spaces or characters a token never has (a paste error?): {TOKEN_HELP}"
            )));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::io("cannot start the GitHub client's runtime", e))?;
        // octocrab's builder needs a running tokio runtime.
        let octo = rt.block_on(async {
            Octocrab::builder()
                .base_uri(api.as_str())
                .map_err(|_| RemoteError::Denied(format!("{api:?} is not a valid GitHub API address")))?
                .personal_token(token.clone())
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(120)))
                .build()
                .map_err(|e| RemoteError::Unreachable(format!("cannot set up the GitHub client: {e}")))
        })?;
        Ok(Http { rt, octo, token, api_url: api, api_host, backoff: RETRY_UNIT, rate: Mutex::new(RateInfo::default()) })
    }

    /// Replaces the retry wait unit.
    pub fn set_backoff(&mut self, unit: Duration) {
        self.backoff = unit;
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The rate-limit figures of the last answer that carried them.
    pub fn rate(&self) -> RateInfo {
        self.rate.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }


    /// `s` with the token replaced by `***`.
    pub fn scrub(&self, s: &str) -> String {
        if self.token.len() >= 4 { s.replace(&self.token, "***") } else { s.to_owned() }
    }

    /// Sends one request with the retries described in the module docs. `path` is relative to
    /// the API base (`/repos/...`) or an absolute URL. Any final status is returned as is.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, if_none_match: Option<&str>) -> Result<Resp, RemoteError> {
        let mut attempt = 0u32;
        let mut waited_for_limit = 0u32;
        loop {
            attempt += 1;
            let result = self.send_once(method, path, body, if_none_match);
            let retry_in = match &result {
                Err(_) if attempt < MAX_ATTEMPTS => Some(self.backoff * (1 << (attempt - 1))),
                Ok(r) if r.status >= 500 && attempt < MAX_ATTEMPTS => Some(self.backoff * (1 << (attempt - 1))),
                Ok(r) if (r.status == 403 || r.status == 429) && waited_for_limit < 2 => r
                    .retry_after
                    .as_deref()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .filter(|s| *s <= MAX_RETRY_AFTER)
                    .map(|s| {
                        waited_for_limit += 1;
                        // Retry-After is in seconds; the test knob scales it like the backoff.
                        self.backoff * (s.max(1) as u32)
                    }),
                _ => None,
            };
            match retry_in {
                Some(d) => {
                    tracing::debug!("GitHub {method} {path}: retrying in {} ms", d.as_millis());
                    std::thread::sleep(d);
                }
                None => return result,
            }
        }
    }

    fn send_once(&self, method: &str, path: &str, body: Option<&Value>, if_none_match: Option<&str>) -> Result<Resp, RemoteError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let result = self.rt.block_on(async {
            let res = match method {
                "GET" => {
                    let headers = match if_none_match {
                        Some(tag) => {
                            let mut h = http::HeaderMap::new();
                            if let Ok(v) = http::HeaderValue::from_str(tag) {
                                h.insert(http::header::IF_NONE_MATCH, v);
                            }
                            Some(h)
                        }
                        None => None,
                    };
                    self.octo._get_with_headers(path, headers).await
                }
                "POST" => self.octo._post(path, body).await,
                "PATCH" => self.octo._patch(path, body).await,
                "PUT" => self.octo._put(path, body).await,
                "DELETE" => self.octo._delete(path, body).await,
                _ => unreachable!("unsupported method {method}"),
            }?;
            let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = res.status().as_u16();
            let retry_after = header("retry-after");
            let rate_limit = header("x-ratelimit-limit");
            let rate_remaining = header("x-ratelimit-remaining");
            let rate_reset = header("x-ratelimit-reset");
            let etag = header("etag");
            let body = self.octo.body_to_string(res).await?;
            Ok::<_, octocrab::Error>((Resp { status, retry_after, rate_remaining, rate_reset, etag, body }, rate_limit))
        });
        match result {
            Ok((resp, limit)) => {
                let num = |s: &Option<String>| s.as_deref().and_then(|v| v.trim().parse::<u64>().ok());
                if resp.rate_remaining.is_some() {
                    let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
                    *r = RateInfo { limit: num(&limit), remaining: num(&resp.rate_remaining), reset: num(&resp.rate_reset) };
                }
                Ok(resp)
            }
            Err(e) => Err(RemoteError::Unreachable(
                self.scrub(&format!("GitHub API at {} did not answer {what}: {e}", self.api_url)),
            )),
        }
    }

    /// `GET path` with `Accept: application/vnd.github.raw+json` (a blob's raw bytes, no
    /// base64), at most `max_bytes` bytes (else [`RemoteError::Corrupt`]). Retries connection
    /// errors and 5xx like [`Http::send`]. A non-200 answer comes back as a [`Resp`] (its JSON
    /// body as text) for [`Http::error`].
    pub fn get_raw(&self, path: &str, max_bytes: u64) -> Result<Result<Vec<u8>, Resp>, RemoteError> {
        let mut out = Vec::new();
        let r = self.get_streamed(path, Some("application/vnd.github.raw+json"), max_bytes, &mut |chunk| {
            match chunk {
                None => out.clear(),
                Some(c) => out.extend_from_slice(c),
            }
            Ok(())
        })?;
        Ok(match r {
            None => Ok(out),
            Some(resp) => Err(resp),
        })
    }

    /// `GET path` (following redirects, e.g. a tarball) into `file`, at most `max_bytes` bytes:
    /// the body is never held in memory. `None` when the whole body was written; the answer
    /// otherwise.
    pub fn get_to_file(&self, path: &str, max_bytes: u64, file: &mut std::fs::File) -> Result<Option<Resp>, RemoteError> {
        use std::io::{Seek, Write};
        self.get_streamed(path, None, max_bytes, &mut |chunk| match chunk {
            None => {
                file.set_len(0)?;
                file.seek(std::io::SeekFrom::Start(0)).map(|_| ())
            }
            Some(c) => file.write_all(c),
        })
    }

    /// One streamed GET with retries: `sink(None)` starts (again) from nothing, `sink(Some(bytes))`
    /// takes the next piece of a 200 body. Returns None after a complete 200 body, else the answer.
    fn get_streamed(
        &self,
        path: &str,
        accept: Option<&str>,
        max_bytes: u64,
        sink: &mut dyn FnMut(Option<&[u8]>) -> std::io::Result<()>,
    ) -> Result<Option<Resp>, RemoteError> {
        let shown = path.split('?').next().unwrap_or(path).to_owned();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            sink(None).map_err(|e| RemoteError::io(format!("cannot store the answer to GET {shown}"), e))?;
            let result = self.rt.block_on(async {
                use http_body_util::BodyExt;
                let headers = accept.and_then(|a| http::HeaderValue::from_str(a).ok()).map(|v| {
                    let mut h = http::HeaderMap::new();
                    h.insert(http::header::ACCEPT, v);
                    h
                });
                let res = self.octo._get_with_headers(path, headers).await?;
                let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let status = res.status().as_u16();
                let mut resp = Resp {
                    status,
                    retry_after: header("retry-after"),
                    rate_remaining: header("x-ratelimit-remaining"),
                    rate_reset: header("x-ratelimit-reset"),
                    etag: header("etag"),
                    body: String::new(),
                };
                let limit = header("x-ratelimit-limit");
                if status != 200 {
                    resp.body = self.octo.body_to_string(res).await.unwrap_or_default();
                    return Ok::<_, octocrab::Error>(Ok((Some(resp), limit)));
                }
                let mut body = res.into_body();
                let mut total = 0u64;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        total += data.len() as u64;
                        if total > max_bytes {
                            return Ok(Err(None));
                        }
                        if let Err(e) = sink(Some(&data)) {
                            return Ok(Err(Some(e)));
                        }
                    }
                }
                Ok(Ok((None, limit)))
            });
            match result {
                Ok(Ok((resp, limit))) => {
                    if let Some(r) = &resp
                        && r.status >= 500
                        && attempt < MAX_ATTEMPTS
                    {
                        std::thread::sleep(self.backoff * (1 << (attempt - 1)));
                        continue;
                    }
                    if let Some(r) = &resp
                        && r.rate_remaining.is_some()
                    {
                        let num = |s: &Option<String>| s.as_deref().and_then(|v| v.trim().parse::<u64>().ok());
                        *self.rate.lock().unwrap_or_else(|e| e.into_inner()) =
                            RateInfo { limit: num(&limit), remaining: num(&r.rate_remaining), reset: num(&r.rate_reset) };
                    }
                    return Ok(resp);
                }
                Ok(Err(None)) => {
                    return Err(RemoteError::Corrupt(format!(
                        "the answer to GET {shown} from {} is over the {max_bytes} byte limit",
                        self.api_url
                    )));
                }
                Ok(Err(Some(e))) => return Err(RemoteError::io(format!("cannot store the answer to GET {shown}"), e)),
                Err(_) if attempt < MAX_ATTEMPTS => std::thread::sleep(self.backoff * (1 << (attempt - 1))),
                Err(e) => {
                    return Err(RemoteError::Unreachable(
                        self.scrub(&format!("GitHub API at {} did not answer GET {shown}: {e}", self.api_url)),
                    ));
                }
            }
        }
    }

    /// The error for an unexpected answer while trying to `what` (in `repo`, for messages).
    pub fn error(&self, what: &str, repo: &str, r: &Resp) -> RemoteError {
        let msg = r.message();
        let detail = if msg.is_empty() { format!("HTTP {}", r.status) } else { format!("HTTP {}: {msg}", r.status) };
        let text = match r.status {
            401 => {
                return RemoteError::BadToken(self.scrub(&format!(
                    "GitHub rejected the token ({detail}) while trying to {what}: it is wrong, expired or revoked. \
                     To fix it, {TOKEN_HELP}"
                )));
            }
            403 | 429 => {
                let retry = r.retry_after.as_deref().and_then(|s| s.trim().parse::<u64>().ok());
                let exhausted = r.rate_remaining.as_deref().map(str::trim) == Some("0");
                if let Some(secs) = retry {
                    return RemoteError::RateLimited(format!(
                        "GitHub's rate limit was hit while trying to {what} ({detail}); oc-sync waits {secs} seconds before trying again"
                    ));
                }
                if exhausted || r.status == 429 || msg.to_ascii_lowercase().contains("rate limit") {
                    let wait = r
                        .rate_reset
                        .as_deref()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|reset| reset.saturating_sub(now_secs()));
                    return RemoteError::RateLimited(match wait {
                        Some(w) => format!(
                            "GitHub's rate limit was hit while trying to {what} ({detail}); it resets in {w} seconds and oc-sync tries again after that"
                        ),
                        None => format!("GitHub's rate limit was hit while trying to {what} ({detail}); oc-sync tries again in a few minutes"),
                    });
                }
                return RemoteError::Denied(self.scrub(&format!(
                    "GitHub refused to {what} ({detail}): the token lacks permission. It needs \"Contents: Read and write\" \
                     on {repo} (fine-grained token) or the \"repo\" scope (classic token)"
                )));
            }
            404 => {
                return RemoteError::Denied(self.scrub(&format!(
                    "GitHub answered \"not found\" while trying to {what}: the repository {repo} does not exist, or the \
                     token cannot see it (a fine-grained token must be granted access to this repository)"
                )));
            }
            409 => format!(
                "GitHub could not {what} ({detail}); if the repository {repo} is empty, create it with an initial \
                 commit (\"Add a README file\")"
            ),
            s if s >= 500 => format!("GitHub had a server error while trying to {what} ({detail}); oc-sync retries later"),
            _ => format!("GitHub refused to {what} ({detail})"),
        };
        RemoteError::Unreachable(self.scrub(&text))
    }

    /// Parses a JSON answer.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, repo: &str, r: &Resp) -> Result<T, RemoteError> {
        serde_json::from_str(&r.body)
            .map_err(|e| RemoteError::Corrupt(format!("GitHub's answer to {what} for {repo} is not what was expected: {e}")))
    }
}

/// The account a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub login: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Classic tokens' scopes (`x-oauth-scopes`); None for fine-grained tokens.
    #[serde(default)]
    pub scopes: Option<String>,
}

/// Checks a token against the API (`GET /user`) and returns its account and rate figures;
/// `retry_unit`: see [`retry_unit`]. Must not be called from inside an async task.
pub fn check_token(api_url: &str, token: &str, retry_unit: Duration) -> Result<(Account, RateInfo), RemoteError> {
    let mut http = Http::new(api_url, token)?;
    http.set_backoff(retry_unit);
    let account = http.user()?;
    Ok((account, http.rate()))
}

impl Http {
    /// `GET /user`.
    pub fn user(&self) -> Result<Account, RemoteError> {
        let what = "read the token's account (GET /user)";
        let r = self.send("GET", "/user", None, None)?;
        if r.status != 200 {
            return Err(self.error(what, "(your account)", &r));
        }
        let v: Value = self.parse(what, "(your account)", &r)?;
        let login = v["login"].as_str().unwrap_or("").to_owned();
        if login.is_empty() {
            return Err(RemoteError::Corrupt("GitHub's answer to GET /user has no login".into()));
        }
        Ok(Account { login, name: v["name"].as_str().map(str::to_owned), scopes: None })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_refuses_user_info_before_any_request() {
        let e = super::Http::new("http://127.0.0.1:80@other.example", "ghp_abcdefghijklmnop").err().expect("refused");
        assert!(e.to_string().contains("githubApiUrl"), "{e}");
        assert!(!e.to_string().contains("ghp_"), "{e}");
    }
}
