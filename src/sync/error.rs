//! Why a sync stopped. Code that reacts to a failure (auto-sync's retry, the CLI's exit code)
//! matches on these variants, never on the message.

use std::io;
use std::path::PathBuf;

use crate::fault::Injected;
use crate::remote::RemoteError;
use crate::source::{Category, SourceError};

use super::overrides::OverridesError;
use super::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Overrides(#[from] OverridesError),
    #[error("this sync would delete {count} of {total} {category} items ({sample}); if that is intended, run `oc-sync sync --allow-deletions`")]
    TooManyDeletions { category: String, count: usize, total: usize, sample: String },
    #[error("the remote kept changing: gave up after {0} attempts; run `oc-sync sync` again")]
    TooManyRetries(u32),
    #[error("{0}")]
    Crypto(String),
    #[error(transparent)]
    Fault(#[from] Injected),
    /// Another sync (the CLI or the plugin) holds this machine's sync lock: retry later.
    #[error("another oc-sync sync is running on this machine (lock {}); wait for it to finish and retry", .0.display())]
    Busy(PathBuf),
    /// A file of oc-sync's own on this machine (machine id, lock, conflict copies) failed.
    #[error("{context}: {source}")]
    Local {
        context: String,
        #[source]
        source: io::Error,
    },
    /// `resolve` was given a key or id that no open conflict has.
    #[error("no open conflict matches {0:?}; `oc-sync conflicts` lists them")]
    NoSuchConflict(String),
    /// `resolve` met a key outside every synced category.
    #[error("{0} is not a synced item")]
    NotSynced(String),
    /// `resolve` met an item of a category the config turns off.
    #[error("the {} category is turned off in the config", .0.as_str())]
    CategoryOff(Category),
    /// The sync state points at a base copy that is gone (deleted by hand, a full disk).
    #[error("the sync state lost the base copy {0}; run `oc-sync sync` again")]
    LostBase(String),
    /// A broken invariant: a bug in oc-sync.
    #[error("internal error (please report it): {0}")]
    Internal(&'static str),
}

impl SyncError {
    /// A failure of one of oc-sync's own local files, with what was being done.
    pub fn local(context: impl Into<String>, source: io::Error) -> Self {
        SyncError::Local { context: context.into(), source }
    }

    /// Failures that go away by themselves (an offline remote, a busy lock, a lost race): auto-sync
    /// retries them with backoff instead of waiting for the person.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SyncError::Remote(
                RemoteError::Unreachable(_) | RemoteError::Busy(_) | RemoteError::RateLimited(_) | RemoteError::Io { .. },
            ) | SyncError::TooManyRetries(_)
                | SyncError::Busy(_)
        )
    }
}

pub type Result<T, E = SyncError> = std::result::Result<T, E>;
