//! The commit journal: what a sync is about to commit and write locally, written durably before
//! the compare-and-swap, so a sync that dies after its commit landed (killed, or the answer to
//! the final ref update lost) or in the middle of its local writes does not leave this machine
//! with a stale memory of the remote.
//!
//! The intent (`<oc-sync state dir>/sync/intent.json`, temp file + fsync + rename) holds the
//! remote and the head the commit expects, and for every item committed or written locally the
//! base it implies (clock and local content hash; the content itself is put in the base store
//! first) and the local write still to do (with the local hash it replaces). Each local write,
//! once done, is appended to `intent-applied.log` (one key per line).
//!
//! The next attempt, before planning anything, settles it against the remote's manifest: the
//! commit landed when the remote holds, for a committed item, a clock equal to or descending from
//! the one committed, and that clock carried a counter of this machine that its sync state has
//! not seen (only this machine makes those, and only in this commit). Landed (or nothing to
//! commit): an item takes its new base when its write is logged as done or the local item already
//! holds the new content; a merged item whose local item is still what the commit expected gets
//! its write now; a merged item edited before its write happened takes as base the local side
//! the commit merged (with its old clock), so the next sync merges just the edit; a pull not
//! written keeps its old base (planned again). Not landed: discarded (no local write happens
//! before the commit).
//!
//! This module is the journal store; the sync writes and settles it in `sync/run/recover.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clock::ClockOrder;
use crate::fsutil;
use crate::remote::Manifest;

use super::state::{BaseEntry, StateError, StateStore, SyncState};

pub const INTENT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub format: u32,
    /// The remote's description (an intent for another remote is dropped).
    pub remote: String,
    /// The head the compare-and-swap expects (None: an empty remote).
    pub expected: Option<String>,
    pub items: BTreeMap<String, IntentItem>,
    /// Expired tombstones the commit drops (their bases go with them).
    #[serde(default)]
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentItem {
    /// The base the commit implies: the committed clock, the local content hash (in the base store).
    pub base: BaseEntry,
    /// A local write still to do once the commit is in (merged items): the local content hash it
    /// replaces (None: the item is absent locally). The content is `base.hash`.
    /// (`null` in the file is `Some(None)`: a write of an item absent here, a pull of a new item.)
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_or_null")]
    pub write_over: Option<Option<String>>,
    /// Part of the commit (else only a local write of remote content: a pull).
    #[serde(default)]
    pub committed: bool,
}

/// A field that is present is `Some`, also when it is `null` (serde's default reads `null` as
/// the outer `None`, which would take a pending write of a new item for no write at all).
fn present_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// How a pending intent was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The commit landed: bases adopted, this many local writes finished, this many items left
    /// for a merge (edited since).
    Adopted { written: usize, left: usize },
    /// The commit did not land: dropped.
    Discarded,
}

/// Where the intent lives: next to the sync state.
#[derive(Debug, Clone)]
pub struct IntentStore {
    path: PathBuf,
}

impl IntentStore {
    pub fn new(state: &StateStore) -> Self {
        IntentStore { path: state.dir().join("intent.json") }
    }

    fn log_path(&self) -> PathBuf {
        self.path.with_file_name("intent-applied.log")
    }

    /// Notes that the local write of `key` is done (appended; survives the process being killed).
    pub fn log_applied(&self, key: &str) -> Result<(), StateError> {
        use std::io::Write;
        let path = self.log_path();
        let io = |source| StateError::Io { what: "write", path: path.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        f.write_all(format!("{key}\n").as_bytes()).map_err(io)
    }

    /// The keys whose local writes are logged as done.
    pub fn applied(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.log_path()).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
    }

    pub fn load(&self) -> Result<Option<Intent>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { what: "read", path: self.path.clone(), source }),
        };
        match serde_json::from_slice::<Intent>(&bytes) {
            Ok(i) if i.format == INTENT_FORMAT => Ok(Some(i)),
            // A torn or foreign journal cannot be trusted: the plan's own rules still never pull over
            // a local edit, so dropping it loses nothing.
            _ => {
                tracing::warn!("ignoring the unreadable commit journal {}", self.path.display());
                Ok(None)
            }
        }
    }

    /// Writes the intent durably (temp file, fsync, rename, fsync of the folder).
    pub fn save(&self, intent: &Intent) -> Result<(), StateError> {
        self.clear_log()?;
        let bytes = serde_json::to_vec(intent).expect("intent serialises");
        fsutil::write_private(&self.path, &bytes).map_err(|source| StateError::Io { what: "write", path: self.path.clone(), source })
    }

    pub fn clear(&self) -> Result<(), StateError> {
        self.clear_log()?;
        remove(&self.path)
    }

    fn clear_log(&self) -> Result<(), StateError> {
        remove(&self.log_path())
    }
}

fn remove(path: &std::path::Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io { what: "remove", path: path.to_path_buf(), source }),
    }
}

/// Whether the commit of `intent` is in the remote whose manifest is `manifest`.
/// An intent that commits nothing (only local writes of remote content) counts as landed.
pub fn landed(intent: &Intent, manifest: &Manifest, state: &SyncState) -> bool {
    let mut committed = intent.items.iter().filter(|(_, i)| i.committed).peekable();
    if committed.peek().is_none() {
        return true;
    }
    committed.any(|(key, item)| {
        let fresh = state.items.get(key).is_none_or(|b| matches!(item.base.clock.compare(&b.clock), ClockOrder::After | ClockOrder::Concurrent));
        fresh
            && manifest
                .entries
                .get(key)
                .is_some_and(|r| matches!(r.clock.compare(&item.base.clock), ClockOrder::Equal | ClockOrder::After))
    })
}

/// For a merged item edited here before the merge was written locally (the sync was cut off, or
/// the person edited it during the sync): the base for merging that edit. The commit `merged`
/// already holds the local side it merged (`local_hash`), so that content, with the old base's
/// clock (`old`), is the base: the next sync merges just what changed since, and never mistakes
/// this machine's own merged values for concurrent ones. None when that content was not kept.
pub(super) fn merged_side_base(store: &StateStore, merged: &BaseEntry, local_hash: Option<&str>, old: Option<&BaseEntry>) -> Option<BaseEntry> {
    let hash = local_hash.filter(|h| store.base(h).is_some())?;
    let clock = old.map(|b| b.clock.clone()).unwrap_or_default();
    Some(BaseEntry { clock, hash: Some(hash.to_string()), fingerprint: None, ..merged.clone() })
}

#[cfg(test)]
mod tests;
