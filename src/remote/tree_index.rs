//! What a format-2 remote knows of one snapshot without reading it again: for each item key, its
//! [`Entry`] (from the item file's header, see [`super::envelope`]) and the git blob id of its file.
//!
//! A remote keeps one `TreeIndex` per branch (on disk between runs) and moves it from the snapshot
//! it describes to a newer one by the paths whose blob id changed (a diff of two trees, or GitHub's
//! compare): only those files are read. A file whose blob id the index already holds under another
//! key is not read again either (the header is the same only if the whole file is; a different key
//! with the same file is re-checked against its own key).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::envelope::{self, ItemFile};
use super::{Entry, Manifest, RemoteError, Version};
use crate::fsutil::atomic_write;

/// Format of the index file on disk; another value means "rebuild from the remote".
const INDEX_FILE_FORMAT: u32 = 1;

/// One item of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indexed {
    /// Git blob id (hex) of the item's file.
    pub oid: String,
    pub entry: Entry,
    /// The item is stored in this many parts under `.oc-sync/chunks/<hash>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

/// The items of one snapshot (`version`), by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeIndex {
    #[serde(default)]
    format: u32,
    /// The snapshot described; `None` for an empty remote (or a fresh index).
    pub version: Option<Version>,
    pub items: BTreeMap<String, Indexed>,
    /// Content hash → one key holding it (rebuilt on load).
    #[serde(skip)]
    by_hash: HashMap<String, String>,
}

impl TreeIndex {
    /// An index of nothing, at no version.
    pub fn new() -> Self {
        TreeIndex {
            format: INDEX_FILE_FORMAT,
            ..Default::default()
        }
    }

    /// Loads an index saved by [`TreeIndex::save`]; a missing, unreadable or older file gives an
    /// empty index (the remote is then read again, never trusted less).
    pub fn load(file: &Path) -> Self {
        let Ok(bytes) = std::fs::read(file) else {
            return Self::new();
        };
        match serde_json::from_slice::<TreeIndex>(&bytes) {
            Ok(mut ix) if ix.format == INDEX_FILE_FORMAT => {
                ix.reindex();
                ix
            }
            _ => Self::new(),
        }
    }

    /// Saves the index (temp file + rename).
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        atomic_write(file, &bytes, Some(0o600))
    }

    fn reindex(&mut self) {
        self.by_hash.clear();
        for (k, ix) in &self.items {
            if let Some(h) = &ix.entry.hash {
                self.by_hash.entry(h.clone()).or_insert_with(|| k.clone());
            }
        }
    }

    /// The snapshot as the engine sees it.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: envelope::FORMAT,
            entries: self.items.iter().map(|(k, ix)| (k.clone(), ix.entry.clone())).collect(),
        }
    }

    /// A key whose item holds the bytes hashing to `hash`, with its index entry.
    pub fn find_hash(&self, hash: &str) -> Option<(&str, &Indexed)> {
        let key = self.by_hash.get(hash)?;
        let ix = self.items.get(key)?;
        (ix.entry.hash.as_deref() == Some(hash)).then_some((key.as_str(), ix))
    }

    /// A key (other than `path`) whose file is the blob `oid`, if the index holds one.
    pub fn find_oid(&self, oid: &str) -> Option<(&str, &Indexed)> {
        self.items.iter().find(|(_, ix)| ix.oid == oid).map(|(k, ix)| (k.as_str(), ix))
    }

    /// Sets the item at `path` from its file's bytes (blob `oid`), checking the file against its
    /// key. Returns the decoded file (its content borrowed from `file`) for the caller to keep.
    /// Errors are [`RemoteError::Corrupt`] naming the path.
    pub fn put_file<'f>(&mut self, path: &str, oid: &str, file: &'f [u8]) -> Result<ItemFile<'f>, RemoteError> {
        let key = envelope::key_of_path(path).map_err(RemoteError::Corrupt)?;
        let decoded = envelope::decode(key, file).map_err(RemoteError::Corrupt)?;
        self.put(key, oid, decoded.entry.clone(), decoded.parts);
        Ok(decoded)
    }

    /// Sets the item at `key` from an already checked header.
    pub fn put(&mut self, key: &str, oid: &str, entry: Entry, parts: Option<u32>) {
        if let Some(h) = &entry.hash {
            self.by_hash.insert(h.clone(), key.to_string());
        }
        self.items.insert(key.to_string(), Indexed { oid: oid.to_string(), entry, parts });
    }

    /// Drops the item at `key` (its file is gone from the tree).
    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.items.remove(key)
            && let Some(h) = old.entry.hash
            && self.by_hash.get(&h).map(String::as_str) == Some(key)
        {
            self.by_hash.remove(&h);
            if let Some((k, _)) = self.items.iter().find(|(_, ix)| ix.entry.hash.as_deref() == Some(&h)) {
                self.by_hash.insert(h, k.clone());
            }
        }
    }

    /// Forgets every item (before rebuilding from a full listing).
    pub fn clear(&mut self) {
        self.items.clear();
        self.by_hash.clear();
        self.version = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VectorClock;
    use crate::remote::sha256_hex;

    fn file(bytes: &[u8]) -> (Entry, Vec<u8>) {
        let e = Entry {
            clock: VectorClock::new(),
            hash: Some(sha256_hex(bytes)),
            size: bytes.len() as u64,
            kind: "text".into(),
            category: "config".into(),
            modified_ms: 1,
            machine: "m".into(),
            deleted_ms: None,
        };
        let f = envelope::encode(&e, Some(bytes));
        (e, f)
    }

    #[test]
    fn files_become_entries_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TreeIndex::new();
        let (e, f) = file(b"one");
        assert_eq!(ix.put_file("config/a.md", "oid1", &f).unwrap().content, b"one");
        ix.version = Some(Version("c1".into()));
        assert_eq!(ix.manifest().entries["config/a.md"], e);
        assert_eq!(ix.find_hash(e.hash.as_deref().unwrap()).unwrap().0, "config/a.md");
        let path = dir.path().join("ix.json");
        ix.save(&path).unwrap();
        let back = TreeIndex::load(&path);
        assert_eq!(back, ix);
        assert!(back.find_hash(e.hash.as_deref().unwrap()).is_some());
        assert_eq!(back.find_oid("oid1").unwrap().0, "config/a.md");
    }

    #[test]
    fn removing_keeps_the_hash_lookup_right() {
        let mut ix = TreeIndex::new();
        let (e, f) = file(b"same");
        ix.put_file("config/a.md", "o", &f).unwrap();
        ix.put_file("config/b.md", "o2", &f).unwrap();
        let h = e.hash.unwrap();
        ix.remove("config/b.md");
        ix.remove("config/a.md");
        assert!(ix.find_hash(&h).is_none());
        ix.put_file("config/a.md", "o", &f).unwrap();
        ix.put_file("config/b.md", "o2", &f).unwrap();
        ix.remove("config/b.md");
        assert_eq!(ix.find_hash(&h).unwrap().0, "config/a.md");
    }

    #[test]
    fn a_corrupt_or_foreign_index_file_means_start_over_and_hostile_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ix.json");
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(TreeIndex::load(&p), TreeIndex::new());
        std::fs::write(&p, br#"{"format":99,"version":null,"items":{}}"#).unwrap();
        assert_eq!(TreeIndex::load(&p), TreeIndex::new());
        let mut ix = TreeIndex::new();
        let (_, f) = file(b"x");
        assert!(ix.put_file("../x", "o", &f).unwrap_err().is_corrupt());
        assert!(ix.put_file(".oc-sync/format", "o", &f).unwrap_err().is_corrupt());
        assert!(ix.items.is_empty());
    }
}
