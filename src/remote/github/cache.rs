//! What the GitHub remote remembers between runs, in one JSON file of oc-sync's state dir
//! (`$XDG_STATE_HOME/oc-sync/github.json`): the resolved owner/branch, the repository's
//! visibility and when it was checked, the ETag and sha of the branch head, what the tree index
//! does not hold about the commit it describes, recent content-creating requests (to stay under
//! GitHub's secondary limits), the last rate-limit figures and the last pushed commit.
//!
//! With it an idle sync costs one conditional request (`If-None-Match` on the branch ref, answered
//! 304, which GitHub does not count against the rate limit). The token itself is never stored
//! here, only a short fingerprint (to notice that the token changed). `oc-sync status` reads
//! [`Facts`] from this file without touching the network.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::http::RateInfo;

/// The file's format; other formats are ignored (and rebuilt). 2: snapshots keep the entries
/// that are not plain files (format 1 listed symbolic links as files). 3: repository format 2
/// (the items' entries are in the tree index file, the snapshot keeps the rest of the tree).
const FORMAT: u32 = 3;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persisted {
    pub format: u32,
    /// What the cache was built for; a different api/token/owner/repo/branch setting starts over.
    pub key: CacheKey,
    pub facts: Facts,
    #[serde(default)]
    pub repo_etag: Option<String>,
    #[serde(default)]
    pub ref_etag: Option<String>,
    /// The branch head the ETag belongs to (None: the branch did not exist).
    #[serde(default)]
    pub head: Option<String>,
    #[serde(default)]
    pub snapshot: Option<StoredSnapshot>,
    /// Unix seconds of recent content-creating requests (the last hour).
    #[serde(default)]
    pub content_writes: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheKey {
    pub api_url: String,
    /// First 16 hex digits of sha256(token).
    pub token_id: String,
    pub owner_setting: Option<String>,
    pub repo: String,
    pub branch_setting: Option<String>,
}

/// What `oc-sync status` shows about the GitHub remote (as of `checkedS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub api_url: String,
    /// The token's account (when it was read).
    pub login: Option<String>,
    pub owner: String,
    pub repo: String,
    pub branch: String,
    /// "private" / "internal" as GitHub reported it.
    pub visibility: String,
    /// Unix seconds of the last visibility check.
    pub checked_s: u64,
    pub last_push_sha: Option<String>,
    pub last_push_s: Option<u64>,
    pub rate: RateInfo,
    /// Unix seconds when `rate` was read.
    pub rate_s: Option<u64>,
}

/// What the tree index (a file of its own, see [`crate::remote::tree_index`]) does not hold about
/// the commit it describes: the root tree id, oc-sync's own files and the entries that are not
/// plain files. Used only when `version` is the index's version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSnapshot {
    pub version: String,
    pub tree_sha: String,
    /// Files under `.oc-sync/` → git blob id.
    #[serde(default)]
    pub own_files: BTreeMap<String, String>,
    /// Entries that are not plain files (symbolic links, submodules) → what they are.
    #[serde(default)]
    pub not_files: BTreeMap<String, String>,
}

/// First 16 hex digits of sha256(token): enough to notice a different token, useless to anyone else.
pub fn token_id(token: &str) -> String {
    crate::remote::sha256_hex(token.trim().as_bytes())[..16].to_owned()
}

/// Reads the cache; None when missing, unreadable or of another format.
pub fn load(path: &Path) -> Option<Persisted> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() > 256 << 20 {
        return None;
    }
    serde_json::from_slice::<Persisted>(&bytes).ok().filter(|p| p.format == FORMAT)
}

/// Writes the cache atomically (0600: it names the account and repository).
pub fn save(path: &Path, p: &Persisted) {
    let mut p = p.clone();
    p.format = FORMAT;
    match serde_json::to_vec(&p) {
        Ok(bytes) => {
            if let Err(e) = crate::fsutil::write_private(path, &bytes) {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("cannot serialize the GitHub cache: {e}"),
    }
}

/// The facts `oc-sync status` shows, if this machine has talked to GitHub.
pub fn read_facts(path: &Path) -> Option<Facts> {
    load(path).map(|p| p.facts).filter(|f| !f.owner.is_empty())
}
