//! `oc-sync resolve`: settles a conflict that waits for the person with the side they chose.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::paths::Paths;
use crate::remote::sha256_hex;
use crate::source::Category;

use super::conflicts::{ConflictRecord, ConflictStore};
use super::error::SyncError;
use super::lock::{SyncLock, LOCK_WAIT};
use super::sources::sources;
use super::state::{BaseEntry, StateStore};

/// How `resolve` settles a conflict.
#[derive(Debug, Clone)]
pub enum Resolution {
    Local,
    Remote,
    File(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub key: String,
    pub records: Vec<String>,
    pub how: String,
}

/// Settles the open conflicts of an item (by key or conflict id): writes the chosen content as the
/// local item and, for items held by "ask", records that the remote version was seen, so the next
/// sync pushes the choice instead of meeting the same conflict again.
pub fn resolve(paths: &Paths, config: &Config, key_or_id: &str, how: &Resolution) -> Result<Resolved, SyncError> {
    let _lock = SyncLock::acquire(&paths.sync_lock_file(), LOCK_WAIT)?;
    let store = ConflictStore::new(paths.conflicts_dir());
    let open = store.find(key_or_id).map_err(|e| SyncError::local(format!("cannot read {}", store.root().display()), e))?;
    let Some(newest) = open.last().cloned() else {
        return Err(SyncError::NoSuchConflict(key_or_id.to_string()));
    };
    let key = newest.key.clone();
    let bytes = match how {
        Resolution::Local => copy(&store, &newest, "local")?,
        Resolution::Remote => copy(&store, &newest, "remote")?,
        Resolution::File(p) => Some(std::fs::read(p).map_err(|e| SyncError::local(format!("cannot read {}", p.display()), e))?),
    };
    let state = StateStore::new(paths.sync_state_dir());
    let srcs = sources(paths, config, &state)?;
    let cat = Category::of_key(&key).ok_or_else(|| SyncError::NotSynced(key.clone()))?;
    let src = srcs
        .iter()
        .find(|s| s.category() == cat)
        .ok_or(SyncError::CategoryOff(cat))?;
    match &bytes {
        Some(b) => src.write(&key, b)?,
        None => src.delete(&key)?,
    }
    if open.iter().any(|r| r.needs_person) {
        // The person saw the remote version: make it this machine's base.
        let mut st = state.load()?;
        let remote_copy = copy(&store, &newest, "remote")?;
        let base = st.items.entry(key.clone()).or_insert_with(|| BaseEntry {
            clock: Default::default(),
            hash: None,
            kind: "text".into(),
            category: cat.as_str().into(),
            synced_ms: 0,
            fingerprint: None,
        });
        base.clock = base.clock.join(&newest.remote_clock);
        base.hash = remote_copy.as_deref().map(sha256_hex);
        if let Some(r) = &remote_copy {
            state.put_base(r)?;
        }
        state.save(&st)?;
    }
    let how_s = match how {
        Resolution::Local => "local",
        Resolution::Remote => "remote",
        Resolution::File(_) => "file",
    };
    for r in &open {
        store.mark_resolved(r, how_s).map_err(|e| SyncError::local(format!("cannot mark conflict {} resolved", r.id), e))?;
    }
    Ok(Resolved { key, records: open.iter().map(|r| r.id.clone()).collect(), how: how_s.into() })
}

fn copy(store: &ConflictStore, rec: &ConflictRecord, side: &str) -> Result<Option<Vec<u8>>, SyncError> {
    store.read_copy(rec, side).map_err(|e| SyncError::local(format!("cannot read the kept {side} copy"), e))
}
