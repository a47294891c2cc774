//! This machine's memory of its last sync: for every item, the vector clock and content hash last
//! agreed with the remote (the merge base) and the base bytes themselves (content-addressed, so a
//! three-way merge can use them), plus which remote and version that was.
//!
//! Lives in `<oc-sync state dir>/sync/`: `state.json` (written atomically) and `base/ab/cdef…`.
//! Losing this folder loses nothing: every item is then treated as never synced, and two different
//! versions are merged with an empty base (both sides' content kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::VectorClock;
use crate::fsutil;
use crate::remote::{sha256_hex, validate_hash};

pub const STATE_FORMAT: u32 = 1;

/// What this machine last agreed with the remote about one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseEntry {
    pub clock: VectorClock,
    /// Content hash; `None` = the agreed state is "deleted".
    pub hash: Option<String>,
    pub kind: String,
    pub category: String,
    pub synced_ms: u64,
    /// The source's fingerprint of the local content when it was last seen equal to `hash`
    /// (sources with fingerprints only): unchanged fingerprint = unchanged content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub format: u32,
    /// Which remote this state belongs to (its description); a different remote starts afresh.
    pub remote: Option<String>,
    /// The remote version of the last successful sync.
    pub version: Option<String>,
    pub last_sync_ms: Option<u64>,
    pub items: BTreeMap<String, BaseEntry>,
    /// Remote items this machine refused, by key (see [`crate::sync::refusals`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, crate::sync::refusals::Refusal>,
}

impl Default for SyncState {
    fn default() -> Self {
        SyncState { format: STATE_FORMAT, remote: None, version: None, last_sync_ms: None, items: BTreeMap::new(), refused: BTreeMap::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{} is damaged ({reason}); delete it to let oc-sync start afresh (nothing is lost: the next sync merges with the remote)", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// Reads and writes the sync state and base contents.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    /// Base files written since the last [`StateStore::sync_bases`]: not yet durable.
    unsynced: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl StateStore {
    /// `dir` is `<oc-sync state dir>/sync`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into(), unsynced: Default::default() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The stored state, or an empty one when none exists yet.
    pub fn load(&self) -> Result<SyncState, StateError> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SyncState::default()),
            Err(source) => return Err(StateError::Io { what: "read", path, source }),
        };
        let state: SyncState =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Corrupt { path, reason: format!("unknown format {}", state.format) });
        }
        Ok(state)
    }

    /// The state for `remote`: the stored one if it belongs to that remote, else a fresh one.
    pub fn load_for(&self, remote: &str) -> Result<SyncState, StateError> {
        let s = self.load()?;
        if s.remote.as_deref() == Some(remote) {
            Ok(s)
        } else {
            Ok(SyncState { remote: Some(remote.to_string()), ..SyncState::default() })
        }
    }

    pub fn save(&self, state: &SyncState) -> Result<(), StateError> {
        self.sync_bases()?;
        let path = self.file();
        let bytes = serde_json::to_vec_pretty(state).expect("sync state serialises");
        fsutil::write_private(&path, &bytes).map_err(|source| StateError::Io { what: "write", path, source })
    }

    fn base_path(&self, hash: &str) -> PathBuf {
        self.dir.join("base").join(&hash[..2]).join(&hash[2..])
    }

    /// Keeps `bytes` as a merge base; returns its hash.
    pub fn put_base(&self, bytes: &[u8]) -> Result<String, StateError> {
        let hash = sha256_hex(bytes);
        let path = self.base_path(&hash);
        if !path.exists() {
            // Made durable together (one syncfs) before the state or the journal names them: a
            // first sync of thousands of items would otherwise spend most of its time in fsyncs.
            fsutil::atomic_write_unsynced(&path, bytes, Some(0o600)).map_err(|source| StateError::Io { what: "write", path: path.clone(), source })?;
            self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).push(path);
        }
        Ok(hash)
    }

    /// Makes the base files written since the last call durable (before a file that names them).
    pub fn sync_bases(&self) -> Result<(), StateError> {
        let paths = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()));
        fsutil::sync_written(&paths).map_err(|source| StateError::Io { what: "sync", path: self.dir.join("base"), source })
    }

    /// The base bytes for `hash`, if kept (and intact).
    pub fn base(&self, hash: &str) -> Option<Vec<u8>> {
        validate_hash(hash).ok()?;
        let bytes = std::fs::read(self.base_path(hash)).ok()?;
        (sha256_hex(&bytes) == hash).then_some(bytes)
    }

    /// Removes temp files an interrupted write left in the state folder (see
    /// [`fsutil::remove_stale_temps`]); returns how many.
    pub fn remove_stale_temps(&self) -> usize {
        let mut n = fsutil::remove_stale_temps(&self.dir);
        if let Ok(dirs) = std::fs::read_dir(self.dir.join("base")) {
            n += dirs.flatten().map(|d| fsutil::remove_stale_temps(&d.path())).sum::<usize>();
        }
        n
    }

    /// Removes base contents no item refers to any more.
    pub fn prune_bases(&self, state: &SyncState) {
        let keep: std::collections::HashSet<&str> = state.items.values().filter_map(|e| e.hash.as_deref()).collect();
        let Ok(dirs) = std::fs::read_dir(self.dir.join("base")) else { return };
        for d in dirs.flatten() {
            let prefix = d.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(d.path()) else { continue };
            for f in files.flatten() {
                let hash = format!("{prefix}{}", f.file_name().to_string_lossy());
                if !keep.contains(hash.as_str()) {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_remote_switch() {
        let t = tempfile::tempdir().unwrap();
        let store = StateStore::new(t.path().join("sync"));
        assert_eq!(store.load().unwrap(), SyncState::default());
        let mut s = store.load_for("folder /r").unwrap();
        let mut clock = VectorClock::new();
        clock.bump("m1");
        let hash = store.put_base(b"hello").unwrap();
        s.items.insert(
            "config/a.md".into(),
            BaseEntry { clock, hash: Some(hash.clone()), kind: "text".into(), category: "config".into(), synced_ms: 1, fingerprint: None },
        );
        s.version = Some("v1".into());
        store.save(&s).unwrap();
        assert_eq!(store.load_for("folder /r").unwrap(), s);
        assert!(store.load_for("folder /other").unwrap().items.is_empty(), "another remote starts afresh");
        assert_eq!(store.base(&hash).unwrap(), b"hello");
        store.prune_bases(&SyncState::default());
        assert!(store.base(&hash).is_none());
    }

    #[test]
    fn damaged_state_says_how_to_recover() {
        let t = tempfile::tempdir().unwrap();
        let store = StateStore::new(t.path());
        std::fs::write(t.path().join("state.json"), "{ nope").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("delete it") && e.contains("nothing is lost"), "{e}");
    }
}
