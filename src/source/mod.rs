//! Where sync items come from. A [`Source`] lists, reads, writes and deletes items by key
//! (`<category>/<relative path>`); the engine does not know whether they live in files, a database
//! or anywhere else. [`FileSource`] serves the `config` and `state` categories from OpenCode's
//! config and state directories.

use std::io;
use std::path::PathBuf;

use crate::merge::MergeKind;

mod files;
pub mod opencode_db;
pub mod sessions;
#[cfg(test)]
mod tests;

pub use crate::category::Category;
pub use files::{DEFAULT_MAX_FILE_SIZE, FileSource, FileSourceOptions, Listing, Skipped};

/// What is known about an item without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMeta {
    /// `<category>/<relative path>`, always `/`-separated; passes [`crate::remote::validate_key`].
    pub key: String,
    pub category: Category,
    pub kind: MergeKind,
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch (0 when unknown).
    pub modified_ms: u64,
    /// Unix permission bits (`0o7777` mask); `None` where the platform has none.
    pub mode: Option<u32>,
}

/// What [`Source::fingerprints`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints {
    /// Every present, synced key with its fingerprint.
    pub items: Vec<(String, String)>,
    /// Keys present but deliberately not synced, with the reason (like [`Source::read_all`]'s).
    pub skipped: Vec<(String, String)>,
}

/// An item with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub meta: ItemMeta,
    pub bytes: Vec<u8>,
}

/// One local write of a batch ([`Source::write_batch`]).
#[derive(Debug, Clone, Copy)]
pub enum WriteOp<'b> {
    /// [`Source::write_over`]: `bytes` over an item last synced as `base`.
    Write { key: &'b str, bytes: &'b [u8], base: Option<&'b [u8]> },
    /// [`Source::delete`].
    Delete { key: &'b str },
}

impl<'b> WriteOp<'b> {
    pub fn key(&self) -> &'b str {
        match self {
            WriteOp::Write { key, .. } | WriteOp::Delete { key } => key,
        }
    }
}

/// Every item read in one pass, plus the files deliberately left out, as (key, reason).
pub type ReadAll = (Vec<Item>, Vec<(String, String)>);

/// A source lists and reads/writes items; the engine does not know where they come from.
pub trait Source {
    fn category(&self) -> Category;
    /// Every item currently present, sorted by key.
    fn list(&self) -> Result<Vec<ItemMeta>, SourceError>;
    /// Every item with its content (sorted by key), plus the files deliberately left out, as
    /// (key, reason). The engine leaves those keys alone: a file that became a symlink is not a
    /// deletion. Sources that read content while listing override this to read each file once.
    fn read_all(&self) -> Result<ReadAll, SourceError> {
        let mut items = Vec::new();
        for meta in self.list()? {
            items.extend(self.read(&meta.key)?);
        }
        Ok((items, Vec::new()))
    }
    /// Cheap change signals, for sources where reading every item is expensive (a database):
    /// every present key with a fingerprint that changes whenever its content may have changed.
    /// The engine then reads (with [`Source::read`]) only items whose fingerprint differs from
    /// the one recorded at their last sync. `None` (the default): use [`Source::read_all`].
    fn fingerprints(&self) -> Result<Option<Fingerprints>, SourceError> {
        Ok(None)
    }
    /// Whether this machine takes the remote item `key` (last written at `modified_ms`, `size`
    /// bytes). A source that syncs only part of what exists (recent sessions, say) says no to the
    /// rest; the engine then leaves the key alone in both directions.
    fn wants_remote(&self, _key: &str, _modified_ms: u64, _size: u64) -> bool {
        true
    }
    /// Why this machine refuses the remote key `key` outright (not of this category's shape, not
    /// in its synced set), or `None`. A refused key is reported by name, never fetched or written.
    fn refuse_key(&self, _key: &str) -> Option<String> {
        None
    }
    /// Checks remote content against its key before anything is written: content that names
    /// another item than its key is refused ([`SourceError::KeyRefused`]). Default: no check.
    fn check_content(&self, _key: &str, _bytes: &[u8]) -> Result<(), SourceError> {
        Ok(())
    }
    /// What a write of `key` depends on here besides the item itself (its project or session
    /// existing, writes being allowed): when it changes, a remembered refusal is tried again.
    fn write_condition(&self, _key: &str) -> String {
        String::new()
    }
    /// The item, or `None` when it does not exist. Errors (rather than `None`) for an item that exists
    /// but cannot be synced (a symlink, too large), so that it is never mistaken for a deletion.
    fn read(&self, key: &str) -> Result<Option<Item>, SourceError>;
    /// Creates or replaces the item. Refuses keys this source would not list.
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError>;
    /// Removes the item; succeeds when it is already absent.
    fn delete(&self, key: &str) -> Result<(), SourceError>;
    /// Writes content pulled or merged from the remote over an item whose last synced content
    /// was `base` (None: never synced). A source whose items are sets of rows keeps the rows
    /// added locally since `base`: the remote has not seen them, so it cannot have deleted them.
    fn write_over(&self, key: &str, bytes: &[u8], _base: Option<&[u8]>) -> Result<(), SourceError> {
        self.write(key, bytes)
    }
    /// Applies `ops` in order and returns one result per op, in the same order. A source that
    /// can (a database) makes the batch ONE atomic transaction: when this returns, every op with
    /// an `Ok` result is durably written and no op with an `Err` wrote anything; an `Err` for one
    /// op (a refusal) does not undo the others. The caller orders the ops (parents first) and sizes
    /// the batches. Default: [`Source::write_over`] / [`Source::delete`] one by one.
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Vec<Result<(), SourceError>> {
        ops.iter()
            .map(|op| match op {
                WriteOp::Write { key, bytes, base } => self.write_over(key, bytes, *base),
                WriteOp::Delete { key } => self.delete(key),
            })
            .collect()
    }
    /// Removes oc-sync's temp files an interrupted write left among the items (see
    /// [`crate::fsutil::remove_stale_temps`]); returns how many. Called under the sync lock.
    fn remove_stale_temps(&self) -> usize {
        0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The key is malformed, of another category, outside the root or not in the synced set.
    #[error("refusing item key {key:?}: {reason}")]
    KeyRefused { key: String, reason: String },
    /// The path (or a folder on the way to it) is a symbolic link; oc-sync never follows them.
    #[error("{} is a symbolic link (or lies under one); oc-sync does not follow symlinks", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is {size} bytes, over the {limit}-byte limit", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// Something other than a regular file (a folder, a socket...) is where the item should be.
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("invalid {which} glob {pattern:?}: {message}")]
    Glob {
        which: &'static str,
        pattern: String,
        message: String,
    },
}

impl SourceError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        SourceError::Io {
            context: context.into(),
            source,
        }
    }
}
