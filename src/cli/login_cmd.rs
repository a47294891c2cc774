//! `oc-sync login` / `oc-sync logout`: store (after checking it against GitHub) or remove the
//! GitHub token oc-sync uses when neither the config nor the environment gives one.

use std::io::{BufRead, IsTerminal, Read, Write};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Io, fail};
use crate::config::{Config, ConfigError, Loaded, Secret};
use crate::paths::Paths;
use crate::remote::github;
use crate::token_store;

/// Longest line read as a token (GitHub tokens are well under 300 characters).
const MAX_TOKEN_LINE: u64 = 4096;

/// A token that takes precedence over the stored one: (source, masked token, how to remove it).
fn overriding_tokens(cfg: Option<&Config>, io: &Io<'_>, paths: &Paths) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    if let Some(t) = cfg.and_then(|c| c.token.as_ref()) {
        v.push(("config".to_string(), t.masked(), format!("remove `token` from {}", paths.config_file.display())));
    }
    for var in ["GITHUB_TOKEN", "GH_TOKEN"] {
        if let Some(t) = io.env.var(var).filter(|t| !t.trim().is_empty()) {
            v.push((var.to_string(), Secret::new(t).masked(), format!("unset {var}")));
        }
    }
    v
}

/// The host people know the API by: "github.com" for the public API, else the URL's host.
pub(super) fn host_of(api_url: &str) -> String {
    match crate::net::check_secure_url(api_url, "token", "https://api.github.com") {
        Ok(u) if u.url == "https://api.github.com" => "github.com".into(),
        Ok(u) => match u.parsed().port() {
            Some(port) => format!("{}:{port}", u.host),
            None => u.host,
        },
        Err(_) => api_url.trim().to_string(),
    }
}

/// Reads one line from standard input (the token), without its line ending.
fn read_token_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().take(MAX_TOKEN_LINE).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub fn login(paths: &Paths, loaded: Result<Loaded, ConfigError>, with_token: bool, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => return fail(io, json, &e.to_string(), EXIT_FAILURE),
    };
    for w in &loaded.warnings {
        writeln!(io.err, "warning: {w}")?;
    }
    let cfg = loaded.config;
    let raw = match ask_token(with_token) {
        Ok(t) => t,
        Err((msg, code)) => return fail(io, json, &msg, code),
    };
    if raw.is_empty() {
        return fail(io, json, "no token given: paste a GitHub personal access token (see `oc-sync login --help`)", EXIT_FAILURE);
    }
    let token = Secret::new(raw);
    let api_url = cfg.github_api_url.clone();
    let (account, rate) = match github::http::check_token(&api_url, token.expose(), github::http::retry_unit(&io.env)) {
        Ok(x) => x,
        Err(e) => {
            // The HTTP layer scrubs the token already; scrub again in case any path did not.
            let msg = e.to_string().replace(token.expose(), &token.masked());
            return fail(io, json, &format!("login failed, nothing was stored: {msg}"), EXIT_FAILURE);
        }
    };
    let path = match token_store::save(paths, &token, Some(&account.login), Some(&api_url)) {
        Ok(p) => p,
        Err(e) => {
            let p = token_store::path(paths);
            return fail(io, json, &format!("the token works, but it cannot be stored in {}: {e}", p.display()), EXIT_FAILURE);
        }
    };
    let overriding = overriding_tokens(Some(&cfg), io, paths);
    let stored = Stored { api_url: &api_url, account: &account, rate: &rate, token: &token, path: &path, overriding: &overriding };
    if json {
        writeln!(io.out, "{}", serde_json::to_string_pretty(&stored.json())?)?;
    } else {
        stored.write_plain(io.out)?;
    }
    Ok(EXIT_OK)
}

/// The token, from standard input (`--with-token`) or asked on the terminal; on failure the
/// message and exit code.
fn ask_token(with_token: bool) -> Result<String, (String, i32)> {
    if with_token {
        read_token_line().map_err(|e| (format!("cannot read the token from standard input: {e}"), EXIT_FAILURE))
    } else if std::io::stdin().is_terminal() {
        match rpassword::prompt_password("GitHub token: ") {
            Ok(t) => Ok(t.trim().to_string()),
            Err(e) => Err((format!("cannot read the token: {e}"), EXIT_FAILURE)),
        }
    } else {
        Err((
            "standard input is not a terminal, so oc-sync cannot ask for the token: pipe it in with \
             `oc-sync login --with-token < token.txt`, or set GITHUB_TOKEN instead of logging in"
                .to_string(),
            EXIT_USAGE,
        ))
    }
}

/// A token that was checked and stored, for the report of `oc-sync login`.
struct Stored<'a> {
    api_url: &'a str,
    account: &'a github::http::Account,
    rate: &'a github::http::RateInfo,
    token: &'a Secret,
    path: &'a std::path::Path,
    overriding: &'a [(String, String, String)],
}

impl Stored<'_> {
    fn json(&self) -> serde_json::Value {
        let (account, rate) = (self.account, self.rate);
        serde_json::json!({
            "ok": true,
            "host": host_of(self.api_url),
            "apiUrl": self.api_url,
            "login": account.login,
            "name": account.name,
            "scopes": account.scopes,
            "token": self.token.masked(),
            "path": self.path,
            "rateLimit": { "remaining": rate.remaining, "limit": rate.limit, "reset": rate.reset },
            "overriddenBy": self.overriding.first().map(|(src, _, _)| src),
        })
    }

    fn write_plain(&self, o: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            o,
            "Logged in to {} as {} (token {} stored in {}, readable only by you).",
            host_of(self.api_url),
            self.account.login,
            self.token.masked(),
            self.path.display()
        )?;
        if let Some((src, masked, how)) = self.overriding.first() {
            let from = if src == "config" { "the config's `token`".to_string() } else { src.clone() };
            writeln!(
                o,
                "Note: {from} ({masked}) takes precedence over the stored token; to use the stored one, {how}."
            )?;
        }
        writeln!(o, "Next: oc-sync sync")
    }
}

pub fn logout(paths: &Paths, loaded: Result<Loaded, ConfigError>, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    // Logging out must work even with a broken config: only the remaining-token hints need it.
    let cfg = match loaded {
        Ok(l) => Some(l.config),
        Err(e) => {
            writeln!(io.err, "warning: the config cannot be read, so its `token` is not checked: {e}")?;
            None
        }
    };
    let path = token_store::path(paths);
    let removed = match token_store::remove(paths) {
        Ok(r) => r,
        Err(e) => return fail(io, json, &format!("cannot remove {}: {e}", path.display()), EXIT_FAILURE),
    };
    let remaining = overriding_tokens(cfg.as_ref(), io, paths);
    if json {
        let rem: Vec<_> = remaining
            .iter()
            .map(|(src, masked, how)| serde_json::json!({ "source": src, "token": masked, "toRemove": how }))
            .collect();
        let v = serde_json::json!({ "ok": true, "removed": removed, "path": path, "remaining": rem });
        writeln!(io.out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(EXIT_OK);
    }
    if removed {
        writeln!(io.out, "Removed the stored GitHub token ({}).", path.display())?;
    } else {
        writeln!(io.out, "No stored GitHub token to remove ({} does not exist).", path.display())?;
    }
    for (src, masked, how) in &remaining {
        let what = if src == "config" { "the config's `token`".to_string() } else { src.clone() };
        writeln!(io.out, "{what} ({masked}) is still set and oc-sync keeps using it: {how}.")?;
    }
    Ok(EXIT_OK)
}
