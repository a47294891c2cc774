//! Upgrading a remote from repository format 1 (oc-sync 0.1) to format 2, once, by the first
//! machine that syncs with this build.
//!
//! The format-1 snapshot is read with the remote's format-1 reader ([`Remote::format1`]), every
//! item is carried over with its clock, kind, category, machine and times (tombstones too, so a
//! deletion still reaches machines that had the item), and format 1's one-document-per-session
//! `messages/<project>/<session>.json` items become one item per message
//! (`messages/<project>/<session>/<message>.json`) with the document's clock. The result is
//! written by [`Remote::upgrade`] in one atomic step, on the condition that the remote is still at
//! the snapshot read; if another machine committed (or upgraded) meanwhile, it is read again.
//! Nothing is lost on a failure at any step: until the upgrade's last step the format-1 snapshot
//! stays the remote's truth.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::remote::{Changes, CommitOutcome, Entry, Manifest, Remote, RemoteError, Version};

use super::error::SyncError;

/// How many times an upgrade that lost a race is tried again.
const MAX_ATTEMPTS: u32 = 5;

/// Turns one format-1 item into its format-2 items, or `None` when it stays as it is:
/// `(key, bytes)` → `[(new key, new bytes)]`. Called with empty bytes for a tombstone, where
/// `Some` means "a key that splits" (its tombstone is dropped).
pub type Splitter<'a> = dyn Fn(&str, &[u8]) -> Option<Result<Vec<(String, Vec<u8>)>, String>> + 'a;

/// What an upgrade did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upgraded {
    /// Items in the format-2 snapshot (tombstones included).
    pub items: usize,
    /// Format-1 documents split into smaller items (whole sessions into messages).
    pub split: usize,
    /// Items those documents became.
    pub split_into: usize,
    /// Tombstones of split documents, dropped: the session's own tombstone carries the deletion.
    pub dropped_tombstones: usize,
    /// Bytes of item content written.
    pub bytes: u64,
}

impl Upgraded {
    pub fn summary(&self) -> String {
        format!(
            "upgraded the remote to repository format 2: {} items ({} session documents split into {} message items)",
            self.items, self.split, self.split_into
        )
    }
}

/// Upgrades `remote` if it is in format 1: `Ok(None)` when it was not (empty or already format 2).
pub fn upgrade_if_needed(remote: &dyn Remote, split: &Splitter<'_>) -> Result<Option<Upgraded>, SyncError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some((from, manifest)) = remote.format1()? else {
            return Ok(None);
        };
        let (changes, done) = convert(remote, &from, &manifest, split)?;
        tracing::info!(
            "upgrading {} from repository format 1 to 2 ({} items)",
            remote.describe(),
            changes.entries.len()
        );
        match remote.upgrade(&from, changes)? {
            CommitOutcome::Committed(v) => {
                tracing::info!("{} (now at {v})", done.summary());
                return Ok(Some(done));
            }
            CommitOutcome::Conflict { .. } => {
                tracing::info!("the remote changed during its upgrade; reading it again");
            }
        }
    }
    Err(SyncError::TooManyRetries(MAX_ATTEMPTS))
}

/// The format-2 change set holding every item of the format-1 snapshot `from`.
fn convert(remote: &dyn Remote, from: &Version, manifest: &Manifest, split: &Splitter<'_>) -> Result<(Changes, Upgraded), SyncError> {
    let mut done = Upgraded::default();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, e) in &manifest.entries {
        let Some(hash) = &e.hash else {
            if split(key, b"").is_some() {
                done.dropped_tombstones += 1;
            } else {
                entries.insert(key.clone(), e.clone());
            }
            continue;
        };
        let bytes = remote.format1_blob(hash)?;
        match split(key, &bytes) {
            None => {
                done.bytes += bytes.len() as u64;
                entries.insert(key.clone(), e.clone());
                blobs.insert(hash.clone(), bytes);
            }
            Some(parts) => {
                let parts = parts.map_err(|why| {
                    SyncError::Remote(RemoteError::Corrupt(format!(
                        "format-1 item {key:?} cannot be upgraded: {why}"
                    )))
                })?;
                done.split += 1;
                done.split_into += parts.len();
                for (new_key, new_bytes) in parts {
                    let hash = crate::remote::sha256_hex(&new_bytes);
                    done.bytes += new_bytes.len() as u64;
                    entries.insert(
                        new_key,
                        Entry {
                            hash: Some(hash.clone()),
                            size: new_bytes.len() as u64,
                            ..e.clone()
                        },
                    );
                    blobs.insert(hash, new_bytes);
                }
            }
        }
    }
    done.items = entries.len();
    let changes = Changes {
        entries,
        removed: Vec::new(),
        blobs,
        message: format!("Upgrade to repository format 2 (from format-1 snapshot {from})"),
    };
    Ok((changes, done))
}

/// The splitter of a real upgrade: format 1's whole-session `messages/<project>/<session>.json`
/// documents become one item per message.
pub fn split_session_documents(key: &str, bytes: &[u8]) -> Option<Result<Vec<(String, Vec<u8>)>, String>> {
    let rest = key.strip_prefix("messages/")?;
    if rest.split('/').count() != 2 || !rest.ends_with(".json") {
        return None;
    }
    if bytes.is_empty() {
        return Some(Ok(Vec::new()));
    }
    Some(crate::source::sessions::split_legacy_messages_doc(key, bytes).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::VectorClock;
    use crate::remote::sha256_hex;

    /// A format-1 remote in memory: `format1` until upgraded, then the upgraded change set.
    struct OldRemote {
        manifest: Manifest,
        blobs: BTreeMap<String, Vec<u8>>,
        /// Versions returned by successive `format1` calls (a race moves it once).
        versions: Mutex<Vec<&'static str>>,
        upgraded: Mutex<Option<(Version, Changes)>>,
    }

    impl Remote for OldRemote {
        fn describe(&self) -> String {
            "old".into()
        }
        fn head(&self) -> Result<Option<Version>, RemoteError> {
            Err(RemoteError::NeedsUpgrade)
        }
        fn manifest(&self, _: &Version) -> Result<Manifest, RemoteError> {
            Err(RemoteError::NeedsUpgrade)
        }
        fn blob(&self, _: &str) -> Result<Vec<u8>, RemoteError> {
            Err(RemoteError::NeedsUpgrade)
        }
        fn commit(&self, _: Option<&Version>, _: Changes) -> Result<CommitOutcome, RemoteError> {
            Err(RemoteError::NeedsUpgrade)
        }
        fn format1(&self) -> Result<Option<(Version, Manifest)>, RemoteError> {
            if self.upgraded.lock().unwrap().is_some() {
                return Ok(None);
            }
            let v = self.versions.lock().unwrap().remove(0);
            Ok(Some((Version(v.into()), self.manifest.clone())))
        }
        fn format1_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
            self.blobs.get(hash).cloned().ok_or_else(|| RemoteError::Corrupt(hash.into()))
        }
        fn upgrade(&self, from: &Version, changes: Changes) -> Result<CommitOutcome, RemoteError> {
            if from.0 != "v2" {
                return Ok(CommitOutcome::Conflict { current: Some(Version("v2".into())) });
            }
            *self.upgraded.lock().unwrap() = Some((from.clone(), changes));
            Ok(CommitOutcome::Committed(Version("new".into())))
        }
    }

    fn entry(bytes: Option<&[u8]>, clock: u64) -> Entry {
        Entry {
            clock: VectorClock([("a".to_string(), clock)].into()),
            hash: bytes.map(sha256_hex),
            size: bytes.map_or(0, |b| b.len() as u64),
            kind: "rows".into(),
            category: "sessions".into(),
            modified_ms: 7,
            machine: "a".into(),
            deleted_ms: bytes.is_none().then_some(9),
        }
    }

    /// Splits `messages/p/s.json` "m1,m2" into one item per comma-separated part.
    fn split(key: &str, bytes: &[u8]) -> Option<Result<Vec<(String, Vec<u8>)>, String>> {
        let stem = key.strip_prefix("messages/")?.strip_suffix(".json")?;
        if bytes == b"bad" {
            return Some(Err("not a session document".into()));
        }
        Some(Ok(bytes
            .split(|&b| b == b',')
            .filter(|p| !p.is_empty())
            .map(|p| (format!("messages/{stem}/{}.json", String::from_utf8_lossy(p)), p.to_vec()))
            .collect()))
    }

    fn old(items: &[(&str, Option<&[u8]>)]) -> OldRemote {
        let mut manifest = Manifest::default();
        let mut blobs = BTreeMap::new();
        for (k, b) in items {
            manifest.entries.insert(k.to_string(), entry(*b, 3));
            if let Some(b) = b {
                blobs.insert(sha256_hex(b), b.to_vec());
            }
        }
        OldRemote {
            manifest,
            blobs,
            versions: Mutex::new(vec!["v1", "v2", "v2"]),
            upgraded: Mutex::new(None),
        }
    }

    #[test]
    fn every_item_clock_and_tombstone_is_carried_and_documents_split_after_a_lost_race() {
        let r = old(&[
            ("config/opencode.json", Some(b"{}")),
            ("config/gone.json", None),
            ("messages/p/s.json", Some(b"m1,m2")),
            ("messages/p/old.json", None),
            ("sessions/p/s.json", Some(b"row")),
        ]);
        let done = upgrade_if_needed(&r, &split).unwrap().unwrap();
        assert_eq!(
            done,
            Upgraded { items: 5, split: 1, split_into: 2, dropped_tombstones: 1, bytes: 2 + 2 + 2 + 3 }
        );
        let (from, changes) = r.upgraded.lock().unwrap().clone().unwrap();
        assert_eq!(from.0, "v2", "the lost race read the remote again");
        let keys: Vec<&str> = changes.entries.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["config/gone.json", "config/opencode.json", "messages/p/s/m1.json", "messages/p/s/m2.json", "sessions/p/s.json"]
        );
        let m1 = &changes.entries["messages/p/s/m1.json"];
        assert_eq!(m1.clock, entry(None, 3).clock);
        assert_eq!((m1.size, m1.hash.as_deref()), (2, Some(sha256_hex(b"m1").as_str())));
        assert!(changes.entries["config/gone.json"].is_tombstone());
        changes.validate(&Default::default()).unwrap();
        for e in changes.entries.values() {
            if let Some(h) = &e.hash {
                assert!(changes.blobs.contains_key(h));
            }
        }
        assert!(upgrade_if_needed(&r, &split).unwrap().is_none(), "upgraded once");
    }

    #[test]
    fn a_document_that_cannot_be_split_stops_the_upgrade_with_its_key() {
        let r = old(&[("messages/p/s.json", Some(b"bad"))]);
        let err = upgrade_if_needed(&r, &split).unwrap_err().to_string();
        assert!(err.contains("messages/p/s.json") && err.contains("not a session document"), "{err}");
        assert!(r.upgraded.lock().unwrap().is_none());
    }
}
