//! What OpenSync confirmed it stored (persisted in `$XDG_STATE_HOME/oc-sync/opensync-stored.json`),
//! so a restart resends nothing twice: per session the fingerprint of the session payload and of
//! each message payload the server stored, the backoff of what it refused, and the outcome of the
//! last run (for `oc-sync opensync status` and the plugin's toast).
//!
//! Only the server's answer moves an item in here: an item that was sent but not stored stays
//! pending. (The file of earlier builds, `opensync-sent.json`, recorded items as sent even when the
//! server refused them; it is ignored, so everything is looked at again once.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

/// First wait after a failure; doubles per failure up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_BASE_MS: u64 = 60_000;
pub const BACKOFF_MAX_MS: u64 = 6 * 3600 * 1000;

/// Failures in a row and when the next automatic attempt may run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub failures: u32,
    pub next_ms: u64,
    /// The server's reason (or the transport error) of the last failure.
    pub reason: String,
}

impl Backoff {
    /// The backoff after one more failure at `now`.
    pub fn after_failure(prev: Option<&Backoff>, now: u64, reason: String) -> Backoff {
        let failures = prev.map_or(0, |b| b.failures).saturating_add(1);
        let wait = BACKOFF_BASE_MS.saturating_mul(1 << (failures - 1).min(20)).min(BACKOFF_MAX_MS);
        Backoff { failures, next_ms: now.saturating_add(wait), reason }
    }
    pub fn waiting(&self, now: u64) -> bool {
        now < self.next_ms
    }
}

/// One session as the server holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMark {
    /// Fingerprint of the session payload the server stored (None: not stored yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    /// The fields the server's dedup compares (title, model, path, tokens), as last stored.
    #[serde(default)]
    pub key: String,
    /// When oc-sync last wrote to this session (its own clock): the server skips an update that
    /// changes no key field within 10 s of its last write.
    #[serde(default)]
    pub written_ms: u64,
    /// Per message id: fingerprint of the payload the server stored.
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
    /// The database signal of the session once everything of it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Set while the server refuses something of this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Backoff>,
}

/// What the last run left for the person (the plugin shows it once as a toast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// "refused" (the server refused items), "unauthorized" (the key), "unreachable"/"server"
    /// (connection or server trouble), "local" (this machine).
    pub kind: String,
    /// One line: what happened, with the server's reason.
    pub message: String,
    /// One line: what to do.
    pub hint: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredState {
    /// The OpenSync URL this state belongs to (another deployment starts afresh).
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionMark>,
    #[serde(default)]
    pub last_sync_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Set after a run that could not reach the server (or was not let in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

impl StoredState {
    /// Sessions the server stored, and their stored messages.
    pub fn stored_counts(&self) -> (usize, usize) {
        let stored = self.sessions.values().filter(|m| m.fp.is_some());
        stored.fold((0, 0), |(s, m), x| (s + 1, m + x.messages.len()))
    }
}

pub fn file(paths: &Paths) -> PathBuf {
    paths.opensync_stored_file()
}

pub fn load(path: &Path) -> StoredState {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub fn save(path: &Path, s: &StoredState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(path, &bytes, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b1 = Backoff::after_failure(None, 1000, "x".into());
        assert_eq!((b1.failures, b1.next_ms), (1, 1000 + BACKOFF_BASE_MS));
        let b2 = Backoff::after_failure(Some(&b1), 1000, "x".into());
        assert_eq!(b2.next_ms, 1000 + 2 * BACKOFF_BASE_MS);
        let mut b = b2;
        for _ in 0..40 {
            b = Backoff::after_failure(Some(&b), 0, "x".into());
        }
        assert_eq!(b.next_ms, BACKOFF_MAX_MS);
        assert!(b.waiting(BACKOFF_MAX_MS - 1) && !b.waiting(BACKOFF_MAX_MS));
    }
}
