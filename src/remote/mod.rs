//! Remotes: where synced items live between machines.
//!
//! A remote is a sequence of immutable snapshots. Each snapshot is a [`Manifest`] (one
//! [`Entry`] per item key) plus content-addressed blobs (sha256 of the bytes). The only way to
//! change a remote is [`Remote::commit`], one atomic compare-and-swap per sync: "if the remote
//! is still at `expected`, make it the current manifest with `changes` applied; otherwise tell
//! me it moved". The caller then re-reads, merges, and retries. Every implementation (the
//! folder remote in [`local`], [`github`], any git host in [`git`]) keeps exactly these semantics.
//!
//! All three store repository format 2 ([`envelope`]): a git tree with each item in one file at
//! its key path (a header with its [`Entry`], then its bytes), so the tree is the index and each
//! remote keeps a [`tree_index::TreeIndex`] to read only what changed. A remote still in format 1
//! (oc-sync 0.1) answers [`RemoteError::NeedsUpgrade`]; the engine upgrades it once through
//! [`Remote::format1`] and [`Remote::upgrade`].
//!
//! Everything read from a remote is untrusted: keys, hashes, sizes and JSON are validated, and
//! a violation is [`RemoteError::Corrupt`] naming the offending key or file — never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::VectorClock;

pub mod envelope;
pub mod git;
pub mod github;
pub mod local;
pub mod open;
/// Test support (a delegating remote with hooks), not part of the API.
#[doc(hidden)]
pub mod testing;

pub mod tree_index;

#[cfg(test)]
mod tests;

pub use local::LocalRemote;

/// The manifest format this build writes and the newest it can read.
pub const MANIFEST_FORMAT: u32 = 1;
/// The repository format this build writes (see [`envelope`]); format 1 remotes are upgraded.
pub const REPOSITORY_FORMAT: u32 = envelope::FORMAT;
/// Longest item key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest single path component of a key, in bytes.
pub const MAX_KEY_COMPONENT_LEN: usize = 255;
/// Longest short text field (kind, category, machine, clock machine names), in bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// Most machines one vector clock may name.
pub const MAX_CLOCK_MACHINES: usize = 1024;

/// Opaque id of one remote snapshot (for git: a commit sha; for the folder remote: a content
/// hash of its manifest file).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The remote's index: one entry per item key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub entries: BTreeMap<String, Entry>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            entries: BTreeMap::new(),
        }
    }
}

/// What the remote knows about one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub clock: VectorClock,
    /// sha256 hex of the bytes; `None` = tombstone (the item was deleted).
    pub hash: Option<String>,
    pub size: u64,
    /// Merge kind name (how concurrent versions are reconciled).
    pub kind: String,
    pub category: String,
    pub modified_ms: u64,
    /// The machine that wrote this entry last.
    pub machine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_ms: Option<u64>,
}

impl Entry {
    pub fn is_tombstone(&self) -> bool {
        self.hash.is_none()
    }
}

/// One sync's worth of changes to apply on top of the expected snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New or changed entries (including tombstones).
    pub entries: BTreeMap<String, Entry>,
    /// Entries dropped for good (expired tombstones).
    pub removed: Vec<String>,
    /// Blob bytes by their sha256 hex. Blobs the remote already holds may be left out.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Human-readable description of this sync (kept in the remote's history).
    pub message: String,
}

/// Result of [`Remote::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The changes are now the remote's current snapshot.
    Committed(Version),
    /// Someone else committed first: re-read `current`, merge, retry. Nothing was applied.
    Conflict { current: Option<Version> },
}

/// Size limits applied to everything read from (and written to) a remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest file accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 64 << 20,
            max_blob_bytes: 256 << 20,
        }
    }
}

/// Why a remote operation failed. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "cannot reach the remote: {0}. Check that it exists and is mounted/accessible, then retry"
    )]
    Unreachable(String),
    #[error(
        "the remote is corrupt or unsafe: {0}. Nothing was changed locally; inspect or repair the \
         remote (or restore it from a backup) before syncing again"
    )]
    Corrupt(String),
    #[error(
        "this remote was upgraded by a newer oc-sync (repository format {found}; this oc-sync \
         understands up to {supported}): update oc-sync on this machine. Nothing was written"
    )]
    UnsupportedFormat { found: u32, supported: u32 },
    /// The remote is still in repository format 1 (oc-sync 0.1): the engine upgrades it (see
    /// [`Remote::format1`] and [`Remote::upgrade`]) before it syncs.
    #[error(
        "the remote is in repository format 1 (written by oc-sync 0.1); a sync (not a dry run) \
         upgrades it to format 2, keeping every item"
    )]
    NeedsUpgrade,
    #[error(
        "the remote is busy: {0}. Retry in a moment; if it persists, check for a stuck oc-sync process"
    )]
    Busy(String),
    /// Refused for good until the person fixes something (a wrong token, a public repository,
    /// a missing permission): retrying does not help.
    #[error("{0}")]
    Denied(String),
    /// The token is missing, malformed, or rejected (HTTP 401: wrong, expired or revoked): the
    /// person must give a valid one (`oc-sync login`); retrying does not help.
    #[error("{0}")]
    BadToken(String),
    /// Over a rate limit: retry later (the message says when).
    #[error("{0}")]
    RateLimited(String),
    #[error("refusing an invalid change set (this is a bug in oc-sync, please report it): {0}")]
    InvalidChanges(String),
    #[error("{context}: {source}. Check permissions and free space on the remote, then retry")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl RemoteError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        RemoteError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn is_corrupt(&self) -> bool {
        matches!(self, RemoteError::Corrupt(_))
    }
}

/// The storage every remote implements.
pub trait Remote: Send + Sync {
    /// Human-readable name for messages ("folder /mnt/share/oc-sync").
    fn describe(&self) -> String;
    /// The current snapshot; `None` for an empty remote.
    fn head(&self) -> Result<Option<Version>, RemoteError>;
    /// The manifest of snapshot `at` (validated).
    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError>;
    /// The bytes of a blob; their sha256 is verified against `hash`.
    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError>;
    /// Hints that `blob` will be asked for each of `hashes` (of the last manifest read) soon, so
    /// a remote that can fetch many at once (GitHub's tarball) may do so. Never required.
    fn prefetch(&self, _hashes: &[String]) -> Result<(), RemoteError> {
        Ok(())
    }
    /// Keys of the manifest read last that this remote will not serve, with the reason (a
    /// symbolic link or a submodule where the item's file should be). The engine refuses them by
    /// name and never asks for their blobs.
    fn refused_keys(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Atomic compare-and-swap: applies `changes` on top of `expected` only if `expected` is
    /// still the current snapshot, else returns [`CommitOutcome::Conflict`] and applies nothing.
    fn commit(
        &self,
        expected: Option<&Version>,
        changes: Changes,
    ) -> Result<CommitOutcome, RemoteError>;
    /// A remote still in repository format 1: its current snapshot as format 1 stored it (read
    /// and validated by the format-1 reader). `None` when the remote is empty or in format 2.
    /// On a format-1 remote, [`Remote::head`] fails with [`RemoteError::NeedsUpgrade`].
    fn format1(&self) -> Result<Option<(Version, Manifest)>, RemoteError> {
        Ok(None)
    }
    /// The bytes of a blob of the snapshot [`Remote::format1`] returned (sha256 verified).
    fn format1_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        Err(RemoteError::Corrupt(format!("no format-1 snapshot holds blob {hash}")))
    }
    /// Replaces the format-1 snapshot `from` by a format-2 snapshot holding exactly
    /// `changes.entries` (with their blobs), in one atomic step that also makes format-1 clients
    /// stop ("update oc-sync"). [`CommitOutcome::Conflict`] (nothing applied) when the remote is no
    /// longer at `from`.
    fn upgrade(&self, _from: &Version, _changes: Changes) -> Result<CommitOutcome, RemoteError> {
        Err(RemoteError::InvalidChanges("this remote has no format-1 snapshot to upgrade".into()))
    }
}

/// sha256 of `bytes` as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks that `hash` is 64 lowercase hex characters.
pub fn validate_hash(hash: &str) -> Result<(), String> {
    if hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a sha256 hash (64 lowercase hex characters)",
            truncate(hash, 80)
        ))
    }
}

/// Checks that an item key is a safe relative path: `/`-separated normal components, no `..`,
/// `.` or empty components, not absolute, no backslashes, NUL or control characters, no drive
/// prefix (`C:`), at most [`MAX_KEY_LEN`] bytes and [`MAX_KEY_COMPONENT_LEN`] per component.
pub fn validate_key(key: &str) -> Result<(), String> {
    let shown = truncate(key, 120);
    let bad = |why: &str| Err(format!("item key {shown:?} {why}"));
    if key.is_empty() {
        return bad("is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad(&format!("is longer than {MAX_KEY_LEN} bytes"));
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    if key.contains('\\') {
        return bad("contains a backslash");
    }
    if key.starts_with('/') {
        return bad("is an absolute path");
    }
    for (i, comp) in key.split('/').enumerate() {
        match comp {
            "" => return bad("has an empty path component"),
            "." => return bad("has a '.' path component"),
            ".." => return bad("has a '..' path component"),
            _ => {}
        }
        if comp.len() > MAX_KEY_COMPONENT_LEN {
            return bad(&format!(
                "has a path component longer than {MAX_KEY_COMPONENT_LEN} bytes"
            ));
        }
        if i == 0
            && comp.len() >= 2
            && comp.as_bytes()[1] == b':'
            && comp.as_bytes()[0].is_ascii_alphabetic()
        {
            return bad("starts with a drive prefix");
        }
    }
    Ok(())
}

fn validate_field(what: &str, key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_LEN {
        return Err(format!(
            "entry {:?}: {what} is longer than {MAX_FIELD_LEN} bytes",
            truncate(key, 120)
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "entry {:?}: {what} contains control characters",
            truncate(key, 120)
        ));
    }
    Ok(())
}

/// Validates one entry (its key included).
pub fn validate_entry(key: &str, e: &Entry) -> Result<(), String> {
    validate_key(key)?;
    let k = truncate(key, 120);
    if let Some(h) = &e.hash {
        validate_hash(h).map_err(|m| format!("entry {k:?}: {m}"))?;
    }
    validate_field("kind", key, &e.kind)?;
    validate_field("category", key, &e.category)?;
    validate_field("machine", key, &e.machine)?;
    if e.clock.0.len() > MAX_CLOCK_MACHINES {
        return Err(format!(
            "entry {k:?}: clock names more than {MAX_CLOCK_MACHINES} machines"
        ));
    }
    for m in e.clock.0.keys() {
        validate_field("clock machine name", key, m)?;
    }
    Ok(())
}

impl Manifest {
    /// Validates a manifest read from a remote. Errors are [`RemoteError::Corrupt`] (or
    /// [`RemoteError::UnsupportedFormat`]); `what` names the file for the message.
    pub fn validate(&self, what: &str) -> Result<(), RemoteError> {
        if self.format == 0 || self.format > MANIFEST_FORMAT {
            if self.format > MANIFEST_FORMAT {
                return Err(RemoteError::UnsupportedFormat {
                    found: self.format,
                    supported: MANIFEST_FORMAT,
                });
            }
            return Err(RemoteError::Corrupt(format!(
                "{what}: manifest format 0 is invalid"
            )));
        }
        for (key, e) in &self.entries {
            validate_entry(key, e).map_err(|m| RemoteError::Corrupt(format!("{what}: {m}")))?;
        }
        Ok(())
    }

    /// This manifest with `changes` applied (entries replaced/added, `removed` dropped).
    /// Does not validate; call [`Changes::validate`] first.
    pub fn apply(&self, changes: &Changes) -> Manifest {
        let mut out = self.clone();
        out.format = MANIFEST_FORMAT;
        for key in &changes.removed {
            out.entries.remove(key);
        }
        for (key, e) in &changes.entries {
            out.entries.insert(key.clone(), e.clone());
        }
        out
    }

    /// Hashes of every blob this manifest references.
    pub fn blob_hashes(&self) -> impl Iterator<Item = &str> {
        self.entries.values().filter_map(|e| e.hash.as_deref())
    }
}

impl Changes {
    /// Checks a change set before it is written: valid keys/entries, no key both changed and
    /// removed, every blob's bytes match its hash and size limit, and every provided blob whose
    /// entry names it has the entry's size. Errors are [`RemoteError::InvalidChanges`].
    pub fn validate(&self, limits: &Limits) -> Result<(), RemoteError> {
        let invalid = RemoteError::InvalidChanges;
        for (key, e) in &self.entries {
            validate_entry(key, e).map_err(invalid)?;
            if let Some(h) = &e.hash
                && let Some(b) = self.blobs.get(h)
                && b.len() as u64 != e.size
            {
                return Err(invalid(format!(
                    "entry {key:?}: size {} but its blob has {} bytes",
                    e.size,
                    b.len()
                )));
            }
        }
        for key in &self.removed {
            validate_key(key).map_err(invalid)?;
            if self.entries.contains_key(key) {
                return Err(invalid(format!("key {key:?} is both changed and removed")));
            }
        }
        for (h, bytes) in &self.blobs {
            validate_hash(h).map_err(invalid)?;
            if bytes.len() as u64 > limits.max_blob_bytes {
                return Err(invalid(format!(
                    "blob {h} has {} bytes, over the {} byte limit",
                    bytes.len(),
                    limits.max_blob_bytes
                )));
            }
            let actual = sha256_hex(bytes);
            if &actual != h {
                return Err(invalid(format!(
                    "blob listed as {h} actually hashes to {actual}"
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
