//! The folder remote: a folder (local disk, USB stick, NFS/SMB share) holding a bare git
//! repository in repository format 2, the same tree layout as the GitHub remote (every item one
//! file at its key path, see [`super::envelope`]).
//!
//! ```text
//! <remote>/
//!   repo.git/                 bare git repository; branch refs/heads/main is the remote's head
//!   HEAD, manifests/<h>.json  format 1's pointer; in format 2 it names a stub manifest
//!                             {"format":2,"entries":{}} so oc-sync 0.1 stops ("upgrade oc-sync")
//!                             instead of writing format 1 beside the repository
//!   lock                      format 1's lock file (format-1 writers lock it to swap HEAD; format 2
//!                             takes it only to write the stub and to upgrade)
//!   objects/, manifests/…     left by format 1 after an upgrade: unused, safe to delete once every
//!                             machine runs an oc-sync that understands format 2
//! ```
//!
//! A [`Version`] is a commit id of `repo.git`. `commit` writes the changed items' files as git
//! blobs, edits the expected commit's tree, writes a commit whose parent is the expected one, and
//! then moves `refs/heads/main` in a git ref transaction that requires the old value to be the
//! expected commit (or the ref to be absent): git's own compare-and-swap, under git's lock file
//! `refs/heads/main.lock`. A writer that loses gets [`CommitOutcome::Conflict`]; the objects it
//! wrote stay unreferenced (harmless; `git gc` prunes them). Readers take no lock: objects are
//! immutable and the ref is replaced by rename.
//!
//! Why git rather than format 1's own folder of objects:
//! - objects are zlib-compressed and packed by `git gc`; old history is git's to prune;
//! - `git -C <remote>/repo.git log`, `git show main:config/opencode.json`, `git fsck` work, and the
//!   layout is the one the GitHub remote uses (a repository can move between hosts);
//! - the compare-and-swap is git's ref transaction (lock file created with `O_EXCL`, rename),
//!   which does not depend on OS file locks;
//! - written through gitoxide (pure Rust): no git binary, no hooks, no user git configuration.
//!
//! What is read is checked: the ref must name a commit, `.oc-sync/format` must say 2 (a higher
//! number is [`RemoteError::UnsupportedFormat`]), every item file is decoded against its key
//! (header, size, sha256), and a symbolic link, submodule or executable where an item's file
//! should be is refused by key ([`Remote::refused_keys`]). A [`TreeIndex`] (in memory, and in a
//! file when [`LocalRemote::with_index_file`] is given) keeps every item's entry and blob id, so a
//! read after another machine's commit diffs the two commits' trees and decodes only the files
//! that changed.
//!
//! Upgrade from format 1 ([`Remote::upgrade`]): under format 1's lock, check HEAD still names the
//! format-1 snapshot, write one root commit holding every item, set `refs/heads/main`, then swap
//! HEAD to the stub. That swap is the commit point: an upgrade that dies before it leaves format 1
//! authoritative (and the next upgrade overwrites the leftover ref).
//!
//! Known limits:
//! - git's lock files are created with `O_CREAT|O_EXCL`, which NFSv3+ and SMB honour; cloud-drive
//!   folders (Dropbox, OneDrive…) replicate files without any cross-machine atomicity and may
//!   produce conflicted copies of refs: use them only when machines never sync simultaneously;
//! - a writer that dies holding `refs/heads/main.lock` leaves it behind (as git does): later
//!   commits report the remote busy until the file is removed;
//! - if the remote folder itself is missing the remote counts as empty (it is created on the
//!   first commit), but only when its parent folder exists: a missing parent is reported as
//!   unreachable (likely an unmounted share) rather than silently creating a new remote.

pub mod format1;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::refs::Target;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use self::format1::{Format1Remote, Pointer};
use super::envelope;
use super::tree_index::TreeIndex;
use super::{Changes, CommitOutcome, Entry, Limits, Manifest, Remote, RemoteError, Version, truncate};

pub use self::format1::CommitInfo;

/// The bare repository inside the remote folder.
pub const REPO_DIR: &str = "repo.git";
/// The branch that is the remote's head.
pub const BRANCH_REF: &str = "refs/heads/main";
/// Longest commit message kept.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Author and committer of every commit.
const SIGNATURE_NAME: &str = "oc-sync";
const SIGNATURE_EMAIL: &str = "oc-sync@localhost";

/// A remote stored in a folder. See the module docs for the layout.
pub struct LocalRemote {
    root: PathBuf,
    limits: Limits,
    lock_timeout: Duration,
    v1: Format1Remote,
    index_file: Option<PathBuf>,
    state: Mutex<IndexState>,
    /// `Some` = a bare repository used directly (the git remote's mirror): no folder around it,
    /// no format-1 stub or upgrade; the text is what `describe` says.
    bare: Option<(PathBuf, String)>,
}

/// The tree index and what the last snapshot read refused.
#[derive(Default)]
struct IndexState {
    index: Option<TreeIndex>,
    /// Paths of the indexed snapshot that are not plain files → what they are.
    refused: BTreeMap<String, String>,
}

impl std::fmt::Debug for LocalRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRemote").field("root", &self.root).finish_non_exhaustive()
    }
}

/// One path whose tree entry differs between two trees: `None` = gone.
struct TreeChange {
    path: String,
    new: Option<(EntryKind, ObjectId)>,
}

/// An item file read and checked, waiting to enter the index.
struct Staged {
    key: String,
    oid: String,
    entry: Entry,
    parts: Option<u32>,
}

impl LocalRemote {
    /// Opens the folder remote at `path`. Creates nothing (the folder and its repository are
    /// created on the first commit). Fails only if `path` exists and is not a folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RemoteError> {
        let v1 = Format1Remote::open(path)?;
        Ok(LocalRemote {
            root: v1.path().to_path_buf(),
            limits: Limits::default(),
            lock_timeout: Duration::from_secs(60),
            v1,
            index_file: None,
            state: Mutex::new(IndexState::default()),
            bare: None,
        })
    }

    /// The repository-format-2 code on a bare repository at `repo` itself (created on the first
    /// commit): the git remote's mirror. No format-1 stub, no upgrade; `describe` says `describe`.
    pub fn open_bare(repo: impl AsRef<Path>, describe: impl Into<String>) -> Result<Self, RemoteError> {
        let repo = repo.as_ref().to_path_buf();
        let parent = repo.parent().ok_or_else(|| RemoteError::Unreachable(format!("{} has no parent folder", repo.display())))?;
        let mut me = LocalRemote::open(parent)?;
        me.root = parent.to_path_buf();
        me.bare = Some((repo, describe.into()));
        Ok(me)
    }

    /// Replaces the size limits (tests, or users with very large items).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.v1 = self.v1.with_limits(limits);
        self
    }

    /// How long `commit` waits for another writer's lock before giving up with `Busy`.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self.v1 = self.v1.with_lock_timeout(timeout);
        self
    }

    /// Keeps the tree index in `file` between runs (oc-sync's data folder), so a new process
    /// reads only what changed since the last sync.
    pub fn with_index_file(mut self, file: PathBuf) -> Self {
        self.index_file = Some(file);
        self
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The bare repository's folder.
    pub fn repo_path(&self) -> PathBuf {
        if let Some((p, _)) = &self.bare {
            return p.clone();
        }
        self.root.join(REPO_DIR)
    }

    /// The parent and message of commit `at`.
    pub fn commit_info(&self, at: &Version) -> Result<CommitInfo, RemoteError> {
        let repo = self.repo()?.ok_or_else(|| self.corrupt(format!("snapshot {at} does not exist")))?;
        let id = self.commit_id(&repo, at)?;
        let commit = repo.find_commit(id).map_err(|e| self.corrupt(format!("commit {at}: {e}")))?;
        let decoded = commit.decode().map_err(|e| self.corrupt(format!("commit {at}: {e}")))?;
        Ok(CommitInfo {
            parent: decoded.parents().next().map(|p| Version(p.to_hex().to_string())),
            message: decoded.message.to_str_lossy().trim_end().to_string(),
        })
    }

    /// How many commits the branch's first-parent history holds (tests and diagnostics).
    pub fn history_len(&self) -> Result<usize, RemoteError> {
        let mut n = 0;
        let mut cur = self.head()?;
        while let Some(v) = cur {
            n += 1;
            cur = self.commit_info(&v)?.parent;
        }
        Ok(n)
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> RemoteError {
        RemoteError::Corrupt(format!("{} in {}", what, self.describe()))
    }

    fn git_err(&self, what: &str, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::io(format!("{what} in {}", self.describe()), std::io::Error::other(e.to_string()))
    }

    // ---- the repository --------------------------------------------------------------------

    /// The repository, if `repo.git` exists. Opened for each operation (a gix repository handle
    /// is not `Sync` without gix's `parallel` feature; opening reads one small config file).
    fn repo(&self) -> Result<Option<gix::Repository>, RemoteError> {
        if let Some((p, _)) = &self.bare {
            if !p.join("HEAD").is_file() {
                return Ok(None);
            }
        } else if !self.v1.is_dir_inside(REPO_DIR)? {
            return Ok(None);
        }
        let opened = gix::open_opts(self.repo_path(), gix::open::Options::isolated())
            .map_err(|e| self.corrupt(format!("{REPO_DIR} is not a git repository oc-sync can open: {e}")))?;
        if !opened.is_bare() {
            return Err(self.corrupt(format!("{REPO_DIR} is not a bare repository")));
        }
        Ok(Some(opened))
    }

    /// The repository, created (bare, branch main) if missing. Two processes creating it at
    /// once: each builds it in a temporary folder and renames it into place; the loser uses the
    /// winner's.
    fn repo_or_create(&self) -> Result<gix::Repository, RemoteError> {
        if let Some(r) = self.repo()? {
            return Ok(r);
        }
        if let Some((p, _)) = &self.bare {
            std::fs::create_dir_all(&self.root).map_err(|e| RemoteError::io(format!("cannot create {}", self.root.display()), e))?;
            if p.is_dir() && std::fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false) {
                let _ = std::fs::remove_dir(p);
            }
        } else {
            self.v1.create_root()?;
        }
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let tmp = self.root.join(format!(".{REPO_DIR}.new-{}-{}", std::process::id(), hex::encode(nonce)));
        if let Err(e) = gix::init_bare(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return match self.repo()? {
                Some(r) => Ok(r),
                None => Err(self.git_err("cannot create the repository", e)),
            };
        }
        match std::fs::rename(&tmp, self.repo_path()) {
            Ok(()) => {}
            Err(_) if self.repo_path().is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(RemoteError::io(format!("cannot create {}", self.repo_path().display()), e));
            }
        }
        self.repo()?.ok_or_else(|| self.corrupt(format!("{REPO_DIR} vanished")))
    }

    /// The commit `refs/heads/main` names, `None` if the branch does not exist yet.
    fn read_ref(&self, repo: &gix::Repository) -> Result<Option<ObjectId>, RemoteError> {
        let r = repo
            .refs
            .try_find(BRANCH_REF)
            .map_err(|e| self.corrupt(format!("{BRANCH_REF} cannot be read: {e}")))?;
        let Some(r) = r else { return Ok(None) };
        let id = match r.target {
            Target::Object(id) => id,
            Target::Symbolic(name) => {
                return Err(self.corrupt(format!("{BRANCH_REF} is a symbolic reference (to {})", name.as_bstr())));
            }
        };
        let header = repo
            .try_find_header(id)
            .map_err(|e| self.corrupt(format!("{BRANCH_REF} names {id}, which cannot be read: {e}")))?
            .ok_or_else(|| self.corrupt(format!("{BRANCH_REF} names {id}, which is missing")))?;
        if header.kind() != gix::objs::Kind::Commit {
            return Err(self.corrupt(format!("{BRANCH_REF} names a {} ({id}), not a commit", header.kind())));
        }
        Ok(Some(id))
    }

    /// Checks a version names a commit of the repository.
    fn commit_id(&self, repo: &gix::Repository, at: &Version) -> Result<ObjectId, RemoteError> {
        let bad = || self.corrupt(format!("version {:?} is not a commit id", truncate(&at.0, 80)));
        if at.0.len() != 40 || !at.0.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        let id = ObjectId::from_hex(at.0.as_bytes()).map_err(|_| bad())?;
        match repo.try_find_header(id) {
            Ok(Some(h)) if h.kind() == gix::objs::Kind::Commit => Ok(id),
            Ok(Some(h)) => Err(self.corrupt(format!("snapshot {at} is a {}, not a commit", h.kind()))),
            Ok(None) => Err(self.corrupt(format!("snapshot {at} does not exist"))),
            Err(e) => Err(self.corrupt(format!("snapshot {at} cannot be read: {e}"))),
        }
    }

    fn tree_of(&self, repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, RemoteError> {
        let c = repo.find_commit(commit).map_err(|e| self.corrupt(format!("commit {commit}: {e}")))?;
        let tree = c.tree_id().map_err(|e| self.corrupt(format!("commit {commit}: {e}")))?.detach();
        match repo.try_find_header(tree) {
            Ok(Some(h)) if h.kind() == gix::objs::Kind::Tree => Ok(tree),
            _ => Err(self.corrupt(format!("commit {commit} names a tree {tree} that is missing or not a tree"))),
        }
    }

    /// Reads a blob, refusing anything over `cap` bytes before reading it.
    fn read_blob(&self, repo: &gix::Repository, id: ObjectId, path: &str, cap: u64) -> Result<Vec<u8>, RemoteError> {
        let p = truncate(path, 120);
        let header = repo
            .try_find_header(id)
            .map_err(|e| self.corrupt(format!("{p:?} ({id}) cannot be read: {e}")))?
            .ok_or_else(|| self.corrupt(format!("{p:?} names blob {id}, which is missing")))?;
        if header.kind() != gix::objs::Kind::Blob {
            return Err(self.corrupt(format!("{p:?} ({id}) is a {}, not a blob", header.kind())));
        }
        if header.size() > cap {
            return Err(self.corrupt(format!("{p:?} is {} bytes, over the {cap} byte limit", header.size())));
        }
        let mut blob = repo.find_blob(id).map_err(|e| self.corrupt(format!("{p:?} ({id}) cannot be read: {e}")))?;
        Ok(blob.take_data())
    }

    /// The entries of a tree by name.
    fn tree_entries(&self, repo: &gix::Repository, id: ObjectId, prefix: &str) -> Result<BTreeMap<String, (EntryKind, ObjectId)>, RemoteError> {
        let tree = repo.find_tree(id).map_err(|e| self.corrupt(format!("tree {id} ({prefix:?}): {e}")))?;
        let decoded = tree.decode().map_err(|e| self.corrupt(format!("tree {id} ({prefix:?}): {e}")))?;
        let mut out = BTreeMap::new();
        for e in &decoded.entries {
            let name = std::str::from_utf8(e.filename).map_err(|_| {
                self.corrupt(format!("a name in folder {prefix:?} of the repository is not UTF-8"))
            })?;
            if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.chars().any(char::is_control) {
                return Err(self.corrupt(format!(
                    "folder {prefix:?} of the repository holds an entry named {:?}, which cannot be a path",
                    truncate(name, 120)
                )));
            }
            out.insert(name.to_string(), (e.mode.kind(), e.oid.to_owned()));
        }
        Ok(out)
    }

    /// The paths whose entries differ between tree `old` and tree `new` (`None` = empty tree),
    /// skipping sub-trees with the same id.
    fn diff_trees(&self, repo: &gix::Repository, old: Option<ObjectId>, new: Option<ObjectId>, prefix: &str, out: &mut Vec<TreeChange>) -> Result<(), RemoteError> {
        if old == new {
            return Ok(());
        }
        if prefix.len() > super::MAX_KEY_LEN {
            return Err(self.corrupt(format!("the repository nests folders deeper than any key ({:?}…)", truncate(prefix, 120))));
        }
        let old_entries = match old {
            Some(id) => self.tree_entries(repo, id, prefix)?,
            None => BTreeMap::new(),
        };
        let new_entries = match new {
            Some(id) => self.tree_entries(repo, id, prefix)?,
            None => BTreeMap::new(),
        };
        let names: BTreeSet<&String> = old_entries.keys().chain(new_entries.keys()).collect();
        for name in names {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let o = old_entries.get(name).copied();
            let n = new_entries.get(name).copied();
            if o == n {
                continue;
            }
            let old_tree = o.filter(|(k, _)| *k == EntryKind::Tree).map(|(_, id)| id);
            let new_tree = n.filter(|(k, _)| *k == EntryKind::Tree).map(|(_, id)| id);
            if old_tree.is_some() || new_tree.is_some() {
                self.diff_trees(repo, old_tree, new_tree, &path, out)?;
            }
            match n {
                Some((k, id)) if k != EntryKind::Tree => out.push(TreeChange { path, new: Some((k, id)) }),
                _ if o.is_some_and(|(k, _)| k != EntryKind::Tree) => out.push(TreeChange { path, new: None }),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks `.oc-sync/format` of tree `tree` says 2.
    fn check_format(&self, repo: &gix::Repository, tree: ObjectId) -> Result<(), RemoteError> {
        let own = self.tree_entries(repo, tree, "")?.get(envelope::OWN_DIR).copied();
        let file = match own {
            Some((EntryKind::Tree, id)) => self.tree_entries(repo, id, envelope::OWN_DIR)?.get("format").copied(),
            _ => None,
        };
        let Some((kind, id)) = file else {
            return Err(self.corrupt(format!("the snapshot has no {}: not an oc-sync format-2 repository", envelope::FORMAT_FILE)));
        };
        if kind != EntryKind::Blob {
            return Err(self.corrupt(format!("{} is not a plain file", envelope::FORMAT_FILE)));
        }
        let bytes = self.read_blob(repo, id, envelope::FORMAT_FILE, 64)?;
        let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
        match text.parse::<u32>() {
            Ok(n) if n == envelope::FORMAT => Ok(()),
            Ok(n) if n > envelope::FORMAT => Err(RemoteError::UnsupportedFormat { found: n, supported: envelope::FORMAT }),
            _ => Err(self.corrupt(format!("{} says {:?}, not a format this oc-sync knows", envelope::FORMAT_FILE, truncate(text, 40)))),
        }
    }

    // ---- the index ---------------------------------------------------------------------------

    fn state(&self) -> MutexGuard<'_, IndexState> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.index.is_none() {
            let (index, refused) = match &self.index_file {
                Some(f) => (TreeIndex::load(f), load_refused(&refused_file(f))),
                None => (TreeIndex::new(), BTreeMap::new()),
            };
            s.index = Some(index);
            s.refused = refused;
        }
        s
    }

    fn save_index(&self, s: &IndexState) {
        let (Some(f), Some(ix)) = (&self.index_file, &s.index) else { return };
        if let Err(e) = ix.save(f) {
            tracing::warn!("cannot save the folder remote's index {}: {e}", f.display());
        }
        let rf = refused_file(f);
        let result = if s.refused.is_empty() {
            match std::fs::remove_file(&rf) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            serde_json::to_vec(&s.refused)
                .map_err(std::io::Error::other)
                .and_then(|b| crate::fsutil::atomic_write(&rf, &b, Some(0o600)))
        };
        if let Err(e) = result {
            tracing::warn!("cannot save {}: {e}", rf.display());
        }
    }

    /// Brings the index to commit `at`: a diff from the commit it describes when that commit is in
    /// the repository, else a full read. Reads and checks every changed file before changing the
    /// index (a hostile snapshot leaves it as it was).
    fn index_to(&self, repo: &gix::Repository, s: &mut IndexState, at: &Version) -> Result<(), RemoteError> {
        let id = self.commit_id(repo, at)?;
        let tree = self.tree_of(repo, id)?;
        self.check_format(repo, tree)?;
        let index = s.index.as_mut().expect("loaded");
        if index.version.as_ref() == Some(at) {
            return Ok(());
        }
        let base = match &index.version {
            Some(v) => ObjectId::from_hex(v.0.as_bytes())
                .ok()
                .filter(|b| matches!(repo.try_find_header(*b), Ok(Some(h)) if h.kind() == gix::objs::Kind::Commit))
                .map(|b| self.tree_of(repo, b))
                .transpose()?,
            None => None,
        };
        if base.is_none() {
            index.clear();
            s.refused.clear();
        }
        let mut changes = Vec::new();
        self.diff_trees(repo, base, Some(tree), "", &mut changes)?;
        let cap = self.limits.max_blob_bytes + envelope::MAX_HEADER_BYTES as u64 + 64;
        let mut staged = Vec::new();
        let mut refused = Vec::new();
        let mut gone = Vec::new();
        for c in changes {
            if envelope::is_own_path(&c.path) {
                continue;
            }
            let key = envelope::key_of_path(&c.path).map_err(|m| self.corrupt(m))?.to_string();
            match c.new {
                None => gone.push(key),
                Some((EntryKind::Blob, oid)) => {
                    let bytes = self.read_blob(repo, oid, &key, cap)?;
                    let decoded = envelope::decode(&key, &bytes).map_err(|m| self.corrupt(m))?;
                    staged.push(Staged { key, oid: oid.to_hex().to_string(), entry: decoded.entry, parts: decoded.parts });
                }
                Some((kind, _)) => {
                    let what = match kind {
                        EntryKind::Link => "a symbolic link",
                        EntryKind::Commit => "a submodule",
                        EntryKind::BlobExecutable => "an executable file",
                        _ => "not a plain file",
                    };
                    refused.push((key, format!("{what} in the repository: refused (oc-sync only reads plain files)")));
                }
            }
        }
        for key in gone {
            index.remove(&key);
            s.refused.remove(&key);
        }
        for (key, why) in refused {
            index.remove(&key);
            s.refused.insert(key, why);
        }
        for st in staged {
            s.refused.remove(&st.key);
            index.put(&st.key, &st.oid, st.entry, st.parts);
        }
        index.version = Some(at.clone());
        self.save_index(s);
        Ok(())
    }

    /// The bytes of the item at `key` of the index (whole, or from its parts), checked.
    fn item_bytes(&self, repo: &gix::Repository, key: &str, oid: &str, parts: Option<u32>, hash: &str) -> Result<Vec<u8>, RemoteError> {
        let id = ObjectId::from_hex(oid.as_bytes()).map_err(|_| self.corrupt(format!("index names blob {oid:?}")))?;
        let cap = self.limits.max_blob_bytes + envelope::MAX_HEADER_BYTES as u64 + 64;
        let file = self.read_blob(repo, id, key, cap)?;
        let decoded = envelope::decode(key, &file).map_err(|m| self.corrupt(m))?;
        if decoded.entry.hash.as_deref() != Some(hash) {
            return Err(self.corrupt(format!("{key:?} no longer holds blob {hash}")));
        }
        let Some(n) = parts.or(decoded.parts) else {
            return Ok(decoded.content.to_vec());
        };
        // Bytes stored in parts (written by a host with a file size limit).
        let tree = match self.read_ref(repo)? {
            Some(c) => self.tree_of(repo, c)?,
            None => return Err(self.corrupt(format!("{key:?}: parts without a snapshot"))),
        };
        let mut out = Vec::new();
        let t = repo.find_tree(tree).map_err(|e| self.corrupt(format!("tree {tree}: {e}")))?;
        for i in 0..n {
            let path = envelope::part_path(hash, i);
            let mut t = t.clone();
            let entry = t
                .peel_to_entry_by_path(&path)
                .map_err(|e| self.corrupt(format!("{path}: {e}")))?
                .ok_or_else(|| self.corrupt(format!("part {path} of {key:?} is missing")))?;
            if entry.mode().kind() != EntryKind::Blob {
                return Err(self.corrupt(format!("part {path} of {key:?} is not a plain file")));
            }
            let rest = self.limits.max_blob_bytes.saturating_sub(out.len() as u64);
            out.extend(self.read_blob(repo, entry.object_id(), &path, rest)?);
        }
        let actual = super::sha256_hex(&out);
        if actual != hash {
            return Err(self.corrupt(format!("the parts of {key:?} hash to {actual}, the header says {hash}")));
        }
        Ok(out)
    }

    // ---- writes ------------------------------------------------------------------------------

    /// Makes sure format-1 clients see the stub (writes it if HEAD is absent). Errors with
    /// [`RemoteError::NeedsUpgrade`] if a format-1 snapshot appeared meanwhile.
    fn ensure_stub(&self) -> Result<(), RemoteError> {
        if self.bare.is_some() {
            return Ok(());
        }
        match self.v1.pointer()? {
            Pointer::Stub => Ok(()),
            Pointer::Format1(_) => Err(RemoteError::NeedsUpgrade),
            Pointer::Absent => self.v1.locked(|v1| match v1.pointer()? {
                Pointer::Absent => v1.point_to_stub(),
                Pointer::Stub => Ok(()),
                Pointer::Format1(_) => Err(RemoteError::NeedsUpgrade),
            }),
        }
    }

    fn signature(&self) -> gix::actor::Signature {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        gix::actor::Signature {
            name: SIGNATURE_NAME.into(),
            email: SIGNATURE_EMAIL.into(),
            time: gix::date::Time { seconds: secs, offset: 0 },
        }
    }

    /// Writes a commit of `tree` on `parent` (not referenced yet).
    fn write_commit(&self, repo: &gix::Repository, tree: ObjectId, parent: Option<ObjectId>, message: &str) -> Result<ObjectId, RemoteError> {
        let sig = self.signature();
        let mut message = truncate(message, MAX_MESSAGE_BYTES).trim_end().to_string();
        if message.is_empty() {
            message = "oc-sync".into();
        }
        message.push('\n');
        let commit = gix::objs::Commit {
            tree,
            parents: parent.into_iter().collect(),
            author: sig.clone(),
            committer: sig,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        repo.write_object(&commit).map(|id| id.detach()).map_err(|e| self.git_err("cannot write a commit", e))
    }

    /// Moves `refs/heads/main` to `new` if it still names `expected` (git's ref transaction).
    fn move_ref(&self, repo: &gix::Repository, expected: PreviousValue, new: ObjectId, message: &str) -> Result<CommitOutcome, RemoteError> {
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange { mode: RefLog::AndReference, force_create_reflog: false, message: truncate(message, 200).into() },
                expected: expected.clone(),
                new: Target::Object(new),
            },
            name: BRANCH_REF.try_into().expect("a valid ref name"),
            deref: false,
        };
        let fail = gix::lock::acquire::Fail::AfterDurationWithBackoff(self.lock_timeout);
        let sig = self.signature();
        let result = repo
            .refs
            .transaction()
            .prepare(Some(edit), fail, fail)
            .and_then(|t| t.commit(Some(sig.to_ref(&mut gix::date::parse::TimeBuf::default()))));
        match result {
            Ok(_) => Ok(CommitOutcome::Committed(Version(new.to_hex().to_string()))),
            Err(e) => {
                let current = self.read_ref(repo)?;
                let still = match &expected {
                    PreviousValue::MustNotExist => current.is_none(),
                    PreviousValue::ExistingMustMatch(Target::Object(id)) => current == Some(*id),
                    PreviousValue::Any => true,
                    _ => false,
                };
                if !still || e.is_conflict() {
                    return Ok(CommitOutcome::Conflict { current: current.map(|c| Version(c.to_hex().to_string())) });
                }
                if e.is_retryable() || e.to_string().contains("lock") {
                    return Err(RemoteError::Busy(format!(
                        "another writer held {}/{BRANCH_REF}.lock for over {:?} (if no oc-sync is running, \
                         a crashed one left it: delete that file)",
                        self.repo_path().display(),
                        self.lock_timeout
                    )));
                }
                Err(self.git_err(&format!("cannot update {BRANCH_REF}"), e))
            }
        }
    }

    /// The bytes each changed entry's file needs: from the change set, else from an item of the
    /// indexed snapshot holding the same bytes.
    fn bytes_for<'c>(&self, repo: &gix::Repository, s: &IndexState, changes: &'c Changes, key: &str, hash: &str) -> Result<std::borrow::Cow<'c, [u8]>, RemoteError> {
        if let Some(b) = changes.blobs.get(hash) {
            return Ok(std::borrow::Cow::Borrowed(b));
        }
        let index = s.index.as_ref().expect("loaded");
        match index.find_hash(hash) {
            Some((k, ix)) => Ok(std::borrow::Cow::Owned(self.item_bytes(repo, k, &ix.oid, ix.parts, hash)?)),
            None => Err(RemoteError::InvalidChanges(format!(
                "entry {key:?} names blob {hash}, which is neither in the change set nor in the snapshot it is committed on"
            ))),
        }
    }

    /// Refuses a change set that would need one path to be both a file and a folder.
    fn check_paths(&self, index: &TreeIndex, changes: &Changes) -> Result<(), RemoteError> {
        let removed: BTreeSet<&str> = changes.removed.iter().map(String::as_str).collect();
        let exists = |k: &str| changes.entries.contains_key(k) || (index.items.contains_key(k) && !removed.contains(k));
        for key in changes.entries.keys() {
            if envelope::is_own_path(key) {
                return Err(RemoteError::InvalidChanges(format!("{key:?} is oc-sync's own path, not an item key")));
            }
            let mut at = 0;
            while let Some(i) = key[at..].find('/') {
                let dir = &key[..at + i];
                if exists(dir) {
                    return Err(RemoteError::InvalidChanges(format!("{key:?} would sit inside the item {dir:?}")));
                }
                at += i + 1;
            }
            let below = format!("{key}/");
            let inside = |k: &&String| k.starts_with(&below) && !removed.contains(k.as_str());
            if index.items.range(below.clone()..).take_while(|(k, _)| k.starts_with(&below)).any(|(k, _)| inside(&k))
                || changes.entries.range(below.clone()..).take_while(|(k, _)| k.starts_with(&below)).next().is_some()
            {
                return Err(RemoteError::InvalidChanges(format!("{key:?} is a folder of other items")));
            }
        }
        Ok(())
    }

    /// Writes the tree of `base` (`None` = empty) with `changes` applied and oc-sync's own files;
    /// returns it and the staged index entries.
    fn write_tree(&self, repo: &gix::Repository, s: &IndexState, base: Option<ObjectId>, changes: &Changes) -> Result<(ObjectId, Vec<Staged>), RemoteError> {
        let base = base.unwrap_or_else(|| ObjectId::empty_tree(repo.object_hash()));
        let mut editor = repo.edit_tree(base).map_err(|e| self.git_err("cannot edit the tree", e))?;
        let mut staged = Vec::new();
        for (key, e) in &changes.entries {
            let file = match &e.hash {
                Some(h) => envelope::encode(e, Some(&self.bytes_for(repo, s, changes, key, h)?)),
                None => envelope::encode(e, None),
            };
            let oid = repo.write_blob(&file).map_err(|e| self.git_err("cannot write a blob", e))?.detach();
            editor.upsert(key.as_str(), EntryKind::Blob, oid).map_err(|e| self.git_err(&format!("cannot place {key:?}"), e))?;
            staged.push(Staged { key: key.clone(), oid: oid.to_hex().to_string(), entry: e.clone(), parts: None });
        }
        for key in &changes.removed {
            editor.remove(key.as_str()).map_err(|e| self.git_err(&format!("cannot remove {key:?}"), e))?;
        }
        for (path, bytes) in [
            (envelope::FORMAT_FILE, envelope::format_file_content().to_vec()),
            (envelope::LEGACY_MANIFEST, envelope::legacy_manifest_stub()),
        ] {
            let oid = repo.write_blob(&bytes).map_err(|e| self.git_err("cannot write a blob", e))?.detach();
            editor.upsert(path, EntryKind::Blob, oid).map_err(|e| self.git_err(&format!("cannot place {path}"), e))?;
        }
        let tree = editor.write().map_err(|e| self.git_err("cannot write the tree", e))?.detach();
        Ok((tree, staged))
    }

    /// After a commit of ours: the index moves to `new` without reading anything back.
    fn index_committed(&self, s: &mut IndexState, base: Option<&Version>, new: &Version, staged: Vec<Staged>, removed: &[String]) {
        let index = s.index.as_mut().expect("loaded");
        if index.version.as_ref() != base {
            // The index was not at the base (it is brought there before committing; only a
            // failure in between gets here): let the next read rebuild it.
            index.clear();
            s.refused.clear();
            return;
        }
        for key in removed {
            index.remove(key);
            s.refused.remove(key);
        }
        for st in staged {
            s.refused.remove(&st.key);
            index.put(&st.key, &st.oid, st.entry, st.parts);
        }
        index.version = Some(new.clone());
        self.save_index(s);
    }

    /// Where the engine stands with this remote's format.
    fn format2_repo(&self) -> Result<Option<gix::Repository>, RemoteError> {
        if self.bare.is_some() {
            return self.repo();
        }
        match self.v1.pointer()? {
            Pointer::Format1(_) => Err(RemoteError::NeedsUpgrade),
            Pointer::Stub => match self.repo()? {
                Some(r) => Ok(Some(r)),
                None => Err(self.corrupt(format!("HEAD names the format-2 stub but {REPO_DIR} is missing"))),
            },
            Pointer::Absent => self.repo(),
        }
    }
}

fn refused_file(index_file: &Path) -> PathBuf {
    let mut name = index_file.file_name().unwrap_or_default().to_os_string();
    name.push(".refused");
    index_file.with_file_name(name)
}

fn load_refused(file: &Path) -> BTreeMap<String, String> {
    std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

impl Remote for LocalRemote {
    fn describe(&self) -> String {
        if let Some((_, d)) = &self.bare {
            return d.clone();
        }
        format!("folder remote {}", self.root.display())
    }

    fn head(&self) -> Result<Option<Version>, RemoteError> {
        let Some(repo) = self.format2_repo()? else { return Ok(None) };
        Ok(self.read_ref(&repo)?.map(|id| Version(id.to_hex().to_string())))
    }

    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        let repo = self.format2_repo()?.ok_or_else(|| self.corrupt(format!("snapshot {at} does not exist (no repository)")))?;
        let mut s = self.state();
        self.index_to(&repo, &mut s, at)?;
        Ok(s.index.as_ref().expect("loaded").manifest())
    }

    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        super::validate_hash(hash).map_err(|m| self.corrupt(format!("blob requested: {m}")))?;
        let repo = self.format2_repo()?.ok_or_else(|| self.corrupt(format!("blob {hash} is missing (no repository)")))?;
        let s = self.state();
        let index = s.index.as_ref().expect("loaded");
        let Some((key, ix)) = index.find_hash(hash) else {
            return Err(self.corrupt(format!("blob {hash} is missing: no item of the snapshot read last holds it")));
        };
        let (key, oid, parts) = (key.to_string(), ix.oid.clone(), ix.parts);
        drop(s);
        let bytes = self.item_bytes(&repo, &key, &oid, parts, hash)?;
        if bytes.len() as u64 > self.limits.max_blob_bytes {
            return Err(self.corrupt(format!("blob {hash} is {} bytes, over the {} byte limit", bytes.len(), self.limits.max_blob_bytes)));
        }
        Ok(bytes)
    }

    fn refused_keys(&self) -> Vec<(String, String)> {
        let s = self.state();
        s.refused.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        if let Some(v) = expected
            && (v.0.len() != 40 || ObjectId::from_hex(v.0.as_bytes()).is_err())
        {
            return Err(RemoteError::InvalidChanges(format!("expected version {:?} is not a commit id", truncate(&v.0, 80))));
        }
        // Cheap early check; the real one is the ref transaction.
        let current = self.head()?;
        if current.as_ref() != expected {
            return Ok(CommitOutcome::Conflict { current });
        }
        let repo = self.repo_or_create()?;
        self.ensure_stub()?;
        let mut s = self.state();
        let base = match expected {
            Some(v) => {
                self.index_to(&repo, &mut s, v)?;
                Some(self.tree_of(&repo, self.commit_id(&repo, v)?)?)
            }
            None => {
                let ix = s.index.as_mut().expect("loaded");
                ix.clear();
                s.refused.clear();
                None
            }
        };
        self.check_paths(s.index.as_ref().expect("loaded"), &changes)?;
        let (tree, staged) = self.write_tree(&repo, &s, base, &changes)?;
        let parent = expected.map(|v| ObjectId::from_hex(v.0.as_bytes()).expect("checked"));
        let commit = self.write_commit(&repo, tree, parent, &changes.message)?;
        crate::fault::step(crate::fault::REF_UPDATE).map_err(|e| RemoteError::io("commit", std::io::Error::other(e)))?;
        let previous = match parent {
            Some(p) => PreviousValue::ExistingMustMatch(Target::Object(p)),
            None => PreviousValue::MustNotExist,
        };
        let outcome = self.move_ref(&repo, previous, commit, &changes.message)?;
        if let CommitOutcome::Committed(v) = &outcome {
            self.index_committed(&mut s, expected, v, staged, &changes.removed);
        }
        Ok(outcome)
    }

    fn format1(&self) -> Result<Option<(Version, Manifest)>, RemoteError> {
        if self.bare.is_some() {
            return Ok(None);
        }
        match self.v1.pointer()? {
            Pointer::Format1(v) => {
                let m = self.v1.manifest(&v)?;
                Ok(Some((v, m)))
            }
            _ => Ok(None),
        }
    }

    fn format1_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        self.v1.blob(hash)
    }

    fn upgrade(&self, from: &Version, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        if self.bare.is_some() {
            return Err(RemoteError::InvalidChanges("a bare repository has no format 1 to upgrade".into()));
        }
        if !changes.removed.is_empty() {
            return Err(RemoteError::InvalidChanges("an upgrade writes a whole snapshot; it removes nothing".into()));
        }
        // Blobs left out of the change set come from format 1's objects (read before the lock).
        let mut changes = changes;
        for e in changes.entries.values() {
            if let Some(h) = &e.hash
                && !changes.blobs.contains_key(h)
            {
                let bytes = self.v1.blob(h).map_err(|e| match e {
                    RemoteError::Corrupt(m) => RemoteError::InvalidChanges(format!("upgrade: {m}")),
                    other => other,
                })?;
                changes.blobs.insert(h.clone(), bytes);
            }
        }
        let repo = self.repo_or_create()?;
        let mut s = self.state();
        self.v1.locked(|v1| {
            match v1.pointer()? {
                Pointer::Format1(v) if &v == from => {}
                Pointer::Format1(v) => return Ok(CommitOutcome::Conflict { current: Some(v) }),
                Pointer::Stub | Pointer::Absent => {
                    let current = self.repo()?.map(|r| self.read_ref(&r)).transpose()?.flatten();
                    return Ok(CommitOutcome::Conflict { current: current.map(|c| Version(c.to_hex().to_string())) });
                }
            }
            let ix = s.index.as_mut().expect("loaded");
            ix.clear();
            s.refused.clear();
            self.check_paths(s.index.as_ref().expect("loaded"), &changes)?;
            let (tree, staged) = self.write_tree(&repo, &s, None, &changes)?;
            let message = format!(
                "Upgrade to repository format 2 ({} items, from format-1 snapshot {from})",
                changes.entries.len()
            );
            let commit = self.write_commit(&repo, tree, None, &message)?;
            // Force: repo.git may hold what an upgrade that died before its last step wrote.
            let outcome = self.move_ref(&repo, PreviousValue::Any, commit, &message)?;
            let CommitOutcome::Committed(v) = outcome else {
                return Err(self.corrupt("the upgrade could not set the branch"));
            };
            crate::fault::step(crate::fault::REF_UPDATE).map_err(|e| RemoteError::io("upgrade", std::io::Error::other(e)))?;
            // The commit point: from here on format-1 clients stop and format 2 is authoritative.
            v1.point_to_stub()?;
            self.index_committed(&mut s, None, &v, staged, &[]);
            Ok(CommitOutcome::Committed(v))
        })
    }
}
