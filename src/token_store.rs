//! The GitHub token `oc-sync login` stores: one JSON file in oc-sync's own data dir
//! (`$XDG_DATA_HOME/oc-sync/github-token.json`), mode 0600, written atomically, never synced.
//! Tokens from the config or the environment take precedence over it (see [`find_token`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret};
use crate::paths::{EnvSnapshot, Paths};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    token: String,
    /// The account the token belonged to when it was stored.
    #[serde(default)]
    login: Option<String>,
    /// The API it was checked against.
    #[serde(default)]
    api_url: Option<String>,
}

/// Where the stored token lives.
pub fn path(paths: &Paths) -> PathBuf {
    paths.github_token_file()
}

/// The stored token, if any (an unreadable or malformed file counts as none).
pub fn load(paths: &Paths) -> Option<Secret> {
    let bytes = std::fs::read(path(paths)).ok()?;
    let s: Stored = serde_json::from_slice(&bytes).ok()?;
    let t = s.token.trim().to_owned();
    (!t.is_empty()).then(|| Secret::new(t))
}

/// Stores `token` (0600, atomic), remembering the account and API it was checked against.
pub fn save(paths: &Paths, token: &Secret, login: Option<&str>, api_url: Option<&str>) -> std::io::Result<PathBuf> {
    let p = path(paths);
    let body = Stored { token: token.expose().trim().to_owned(), login: login.map(str::to_owned), api_url: api_url.map(str::to_owned) };
    crate::fsutil::save_private_json(&p, &body)?;
    Ok(p)
}

/// Removes the stored token. Returns whether there was one.
pub fn remove(paths: &Paths) -> std::io::Result<bool> {
    crate::fsutil::remove_if_exists(&path(paths))
}

/// The GitHub token to use and where it came from: the config's `token`, else GITHUB_TOKEN, else
/// GH_TOKEN, else the one `oc-sync login` stored.
pub fn find_token(cfg: &Config, env: &EnvSnapshot, paths: &Paths) -> Option<(Secret, &'static str)> {
    if let Some(t) = &cfg.token {
        return Some((t.clone(), "config"));
    }
    for var in ["GITHUB_TOKEN", "GH_TOKEN"] {
        if let Some(t) = env.var(var) {
            return Some((Secret::new(t), var));
        }
    }
    load(paths).map(|t| (t, "oc-sync login"))
}
