//! Test support, not part of oc-sync's API: a [`Remote`] that delegates to another one and lets a
//! test step in (run code just before a commit, lose a commit's answer, count blob
//! downloads, record commit outcomes). Used by the crate's own tests and by tests/.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Changes, CommitOutcome, Manifest, Remote, RemoteError, Version};

type Hook<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Delegates every call to `inner`, with the test hooks described on each field.
pub struct HookedRemote<'a> {
    inner: Inner<'a>,
    /// Runs once, just before the next commit reaches `inner` (an edit by the person, another
    /// machine's whole sync, a barrier...).
    before_commit: Mutex<Option<Hook<'a>>>,
    /// The next commit is applied and then answered with an error (the answer lost: the commit
    /// landed unheard).
    pub lose_next: AtomicBool,
    blobs: AtomicUsize,
    outcomes: Mutex<Vec<&'static str>>,
}

enum Inner<'a> {
    Borrowed(&'a dyn Remote),
    Owned(Box<dyn Remote + 'a>),
}

impl<'a> HookedRemote<'a> {
    /// Wraps a remote the test keeps.
    pub fn new(inner: &'a dyn Remote) -> Self {
        Self::with(Inner::Borrowed(inner))
    }

    /// Wraps a remote it keeps.
    pub fn owning(inner: impl Remote + 'a) -> Self {
        Self::with(Inner::Owned(Box::new(inner)))
    }

    fn with(inner: Inner<'a>) -> Self {
        HookedRemote {
            inner,
            before_commit: Mutex::new(None),
            lose_next: AtomicBool::new(false),
            blobs: AtomicUsize::new(0),
            outcomes: Mutex::new(Vec::new()),
        }
    }

    /// Sets the hook run (once) just before the next commit.
    pub fn before_next_commit(self, hook: impl FnOnce() + Send + 'a) -> Self {
        *self.before_commit.lock().unwrap() = Some(Box::new(hook));
        self
    }

    fn inner(&self) -> &dyn Remote {
        match &self.inner {
            Inner::Borrowed(r) => *r,
            Inner::Owned(r) => r.as_ref(),
        }
    }

    /// How many blobs were downloaded since the last call.
    pub fn take_blob_count(&self) -> usize {
        self.blobs.swap(0, Ordering::SeqCst)
    }

    /// The outcome of every commit that reached `inner`: "committed" or "conflict".
    pub fn outcomes(&self) -> Vec<&'static str> {
        self.outcomes.lock().unwrap().clone()
    }
}

impl Remote for HookedRemote<'_> {
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.inner().head()
    }
    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        self.inner().manifest(at)
    }
    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        self.blobs.fetch_add(1, Ordering::SeqCst);
        self.inner().blob(hash)
    }
    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        let hook = self.before_commit.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        let out = self.inner().commit(expected, changes)?;
        self.outcomes.lock().unwrap().push(match out {
            CommitOutcome::Committed(_) => "committed",
            CommitOutcome::Conflict { .. } => "conflict",
        });
        if self.lose_next.swap(false, Ordering::SeqCst) {
            return Err(RemoteError::Unreachable("test fault: the answer to the commit was lost".into()));
        }
        Ok(out)
    }
}
