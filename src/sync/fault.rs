//! Test support for the fault points of [`crate::fault`]: a remote that loses the answer to a commit.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::remote::{Changes, CommitOutcome, Manifest, Remote, RemoteError, Version};

/// A remote wrapper for tests: with `lose_next` set, its next commit is applied and then
/// answered with an error (the answer to the final ref update lost: the commit landed unheard).
pub struct LosingRemote<'a> {
    pub inner: &'a dyn Remote,
    pub lose_next: AtomicBool,
}

impl<'a> LosingRemote<'a> {
    pub fn new(inner: &'a dyn Remote) -> Self {
        LosingRemote { inner, lose_next: AtomicBool::new(false) }
    }
}

impl Remote for LosingRemote<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.inner.head()
    }
    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        self.inner.manifest(at)
    }
    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        self.inner.blob(hash)
    }
    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        let out = self.inner.commit(expected, changes)?;
        if self.lose_next.swap(false, Ordering::SeqCst) {
            return Err(RemoteError::Unreachable("test fault: the answer to the commit was lost".into()));
        }
        Ok(out)
    }
}
