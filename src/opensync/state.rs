//! What was sent to OpenSync (persisted in `$XDG_STATE_HOME/oc-sync/opensync-sent.json`), so a
//! restart resends nothing twice: per session and per message the fingerprint of the payload last
//! accepted, plus the last sync time and last error for `oc-sync opensync status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentState {
    /// The OpenSync URL this state belongs to (another deployment starts afresh).
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub sessions: BTreeMap<String, String>,
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
    /// Per session: the signal (time_updated and counts) last exported, to skip unchanged sessions
    /// without reading them.
    #[serde(default)]
    pub signals: BTreeMap<String, String>,
    #[serde(default)]
    pub last_sync_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

pub fn file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("opensync-sent.json")
}

pub fn load(path: &Path) -> SentState {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub fn save(path: &Path, s: &SentState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(path, &bytes, None)
}
