//! Repository format 1 of the folder remote, as oc-sync 0.1 wrote it: a plain directory holding
//! content-addressed, immutable files plus one mutable pointer.
//!
//! ```text
//! <remote>/
//!   HEAD                      "<manifest hash>\n": the current snapshot (replaced atomically)
//!   lock                      empty; an exclusive OS file lock on it guards the HEAD swap
//!   manifests/<hash>.json     immutable; <hash> = sha256 of the file's bytes = the Version
//!   objects/ab/cdef…          immutable blobs; path = sha256 of the content split 2/62
//! ```
//!
//! A stored manifest is the [`Manifest`] JSON plus `parent` (the Version it was built on) and
//! `message`, so manifests form a hash chain like git commits.
//!
//! `commit` writes the new blobs and the new manifest first (immutable, named by their hash: a
//! crash leaves only unreferenced garbage), then does the compare-and-swap: exclusive lock on
//! `lock`, compare HEAD with `expected`, replace HEAD by temp-file + rename, unlock.
//!
//! oc-sync now keeps a folder remote in format 2 (a bare git repository, see [`super`]); this
//! module stays for two jobs: reading a format-1 remote so the engine can upgrade it
//! ([`super::LocalRemote`] delegates `format1`/`format1_blob` here), and the pointer + lock that
//! format 1 clients obey, which format 2 reuses to make them stop (HEAD then names a stub manifest
//! saying format 2). [`Format1Remote`] still implements [`Remote`] exactly as oc-sync 0.1 did, so
//! tests can create format-1 remotes and play an old client.
//!
//! Known limits of format 1 (history pruning, OS file locks on network filesystems) are those
//! described in [`super`].

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::remote::{
    Changes, CommitOutcome, Entry, Limits, MANIFEST_FORMAT, Manifest, Remote, RemoteError, Version,
    sha256_hex, truncate, validate_hash,
};
use crate::fsutil::atomic_write;

const HEAD: &str = "HEAD";
const LOCK: &str = "lock";
const MANIFESTS: &str = "manifests";
const OBJECTS: &str = "objects";
/// HEAD holds one hash and a newline; anything bigger is not ours.
const MAX_HEAD_BYTES: u64 = 1024;
/// Longest commit message kept in a manifest.
const MAX_MESSAGE_BYTES: usize = 4096;

/// A manifest as stored on disk: the manifest plus its history link.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredManifest {
    format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default)]
    message: String,
    entries: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// History information about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub parent: Option<Version>,
    pub message: String,
}

/// A remote stored in a folder. See the module docs for the layout.
#[derive(Debug, Clone)]
pub struct Format1Remote {
    root: PathBuf,
    limits: Limits,
    lock_timeout: Duration,
}

impl Format1Remote {
    /// Opens the folder remote at `path`. Creates nothing (the folder is created on the first
    /// commit). Fails only if `path` exists and is not a folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RemoteError> {
        let path = path.as_ref();
        let root = std::path::absolute(path).map_err(|e| {
            RemoteError::io(
                format!("cannot resolve remote folder {}", path.display()),
                e,
            )
        })?;
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => {
                return Err(RemoteError::Unreachable(format!(
                    "{} exists but is not a folder",
                    root.display()
                )));
            }
            _ => {}
        }
        Ok(Format1Remote {
            root,
            limits: Limits::default(),
            lock_timeout: Duration::from_secs(60),
        })
    }

    /// Replaces the size limits (tests, or users with very large items).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long `commit` waits for another writer's lock before giving up with `Busy`.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The parent and message recorded for snapshot `at`.
    pub fn commit_info(&self, at: &Version) -> Result<CommitInfo, RemoteError> {
        let s = self.read_stored(at)?;
        Ok(CommitInfo {
            parent: s.parent.map(Version),
            message: s.message,
        })
    }

    // ---- paths and safe reads -------------------------------------------------------------

    fn object_rel(hash: &str) -> String {
        format!("{OBJECTS}/{}/{}", &hash[..2], &hash[2..])
    }

    fn manifest_rel(hash: &str) -> String {
        format!("{MANIFESTS}/{hash}.json")
    }

    /// lstat of `rel` (a `/`-separated path inside the remote), refusing symlinks on every
    /// component and requiring intermediate components to be folders. `None` = missing.
    fn lstat_inside(&self, rel: &str) -> Result<Option<Metadata>, RemoteError> {
        let comps: Vec<&str> = rel.split('/').collect();
        let mut p = self.root.clone();
        let mut last = None;
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let shown = comps[..=i].join("/");
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                    return Err(RemoteError::Corrupt(format!(
                        "{shown} in {} is not reachable: a parent is not a folder",
                        self.describe()
                    )));
                }
                Err(e) => {
                    return Err(RemoteError::io(
                        format!("cannot inspect {}", p.display()),
                        e,
                    ));
                }
            };
            if m.file_type().is_symlink() {
                return Err(RemoteError::Corrupt(format!(
                    "{shown} in {} is a symbolic link; refusing to follow it",
                    self.describe()
                )));
            }
            if i + 1 < comps.len() && !m.is_dir() {
                return Err(RemoteError::Corrupt(format!(
                    "{shown} in {} should be a folder",
                    self.describe()
                )));
            }
            last = Some(m);
        }
        Ok(last)
    }

    /// Reads the regular file `rel` inside the remote, refusing symlinks and anything over
    /// `cap` bytes. `None` = missing.
    fn read_inside(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        // A writer may replace the file (HEAD) between our lstat and open; retry then.
        for _ in 0..20 {
            let Some(meta) = self.lstat_inside(rel)? else {
                return Ok(None);
            };
            let path = self.root.join(rel);
            if !meta.is_file() {
                return Err(RemoteError::Corrupt(format!(
                    "{rel} in {} is not a regular file",
                    self.describe()
                )));
            }
            let too_big = |n: u64| {
                RemoteError::Corrupt(format!(
                    "{rel} in {} is {n} bytes, over the {cap} byte limit",
                    self.describe()
                ))
            };
            if meta.len() > cap {
                return Err(too_big(meta.len()));
            }
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RemoteError::io(
                        format!("cannot open {}", path.display()),
                        e,
                    ));
                }
            };
            // The file we opened must be the one we inspected (not swapped for a symlink in
            // between); if it changed, look again.
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let opened = f.metadata().map_err(|e| {
                    RemoteError::io(format!("cannot inspect {}", path.display()), e)
                })?;
                if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            let mut buf = Vec::with_capacity(meta.len() as usize);
            f.take(cap + 1)
                .read_to_end(&mut buf)
                .map_err(|e| RemoteError::io(format!("cannot read {}", path.display()), e))?;
            if buf.len() as u64 > cap {
                return Err(too_big(buf.len() as u64));
            }
            return Ok(Some(buf));
        }
        Err(RemoteError::Busy(format!(
            "{rel} in {} kept changing while being read",
            self.describe()
        )))
    }

    fn read_stored(&self, at: &Version) -> Result<StoredManifest, RemoteError> {
        validate_hash(&at.0)
            .map_err(|m| RemoteError::Corrupt(format!("version of {}: {m}", self.describe())))?;
        let rel = Self::manifest_rel(&at.0);
        let bytes = self.read_inside(&rel, self.limits.max_manifest_bytes)?.ok_or_else(|| {
            RemoteError::Corrupt(format!(
                "snapshot {at} of {} has no manifest file {rel} (HEAD names a missing manifest?)",
                self.describe()
            ))
        })?;
        let actual = sha256_hex(&bytes);
        if actual != at.0 {
            return Err(RemoteError::Corrupt(format!(
                "{rel} in {} hashes to {actual}, not to its name",
                self.describe()
            )));
        }
        let stored: StoredManifest = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                if let Ok(f) = serde_json::from_slice::<FormatOnly>(&bytes)
                    && f.format > MANIFEST_FORMAT
                {
                    return Err(RemoteError::UnsupportedFormat {
                        found: f.format,
                        supported: MANIFEST_FORMAT,
                    });
                }
                return Err(RemoteError::Corrupt(format!(
                    "{rel} in {} is not a valid manifest: {e}",
                    self.describe()
                )));
            }
        };
        if let Some(p) = &stored.parent {
            validate_hash(p).map_err(|m| {
                RemoteError::Corrupt(format!("{rel} in {}: parent {m}", self.describe()))
            })?;
        }
        let manifest = Manifest {
            format: stored.format,
            entries: stored.entries,
        };
        manifest.validate(&format!("{rel} in {}", self.describe()))?;
        Ok(StoredManifest {
            format: manifest.format,
            entries: manifest.entries,
            ..stored
        })
    }

    fn read_head(&self) -> Result<Option<Version>, RemoteError> {
        match fs::symlink_metadata(&self.root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A missing remote folder is an empty remote, unless its parent is missing too
                // (more likely an unmounted share than a new remote).
                let parent_ok = self.root.parent().is_none_or(|p| p.is_dir());
                return if parent_ok {
                    Ok(None)
                } else {
                    Err(RemoteError::Unreachable(format!(
                        "neither {} nor its parent folder exists",
                        self.root.display()
                    )))
                };
            }
            Err(e) => {
                return Err(RemoteError::io(
                    format!("cannot inspect {}", self.root.display()),
                    e,
                ));
            }
        }
        if !self.root.is_dir() {
            return Err(RemoteError::Unreachable(format!(
                "{} is not a folder",
                self.root.display()
            )));
        }
        let Some(bytes) = self.read_inside(HEAD, MAX_HEAD_BYTES)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            RemoteError::Corrupt(format!("HEAD of {} is not text", self.describe()))
        })?;
        let hash = text.trim_end_matches(['\n', '\r']);
        validate_hash(hash)
            .map_err(|m| RemoteError::Corrupt(format!("HEAD of {}: {m}", self.describe())))?;
        Ok(Some(Version(hash.to_owned())))
    }

    // ---- writes ---------------------------------------------------------------------------

    /// Creates the remote folder (not its parents) and the sub-folders of `rel_dir`, refusing
    /// symlinks and non-folders on the way.
    fn ensure_dir(&self, rel_dir: &str) -> Result<(), RemoteError> {
        match fs::create_dir(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RemoteError::Unreachable(format!(
                    "cannot create {}: its parent folder does not exist",
                    self.root.display()
                )));
            }
            Err(e) => {
                return Err(RemoteError::io(
                    format!("cannot create {}", self.root.display()),
                    e,
                ));
            }
        }
        if !self.root.is_dir() {
            return Err(RemoteError::Unreachable(format!(
                "{} is not a folder",
                self.root.display()
            )));
        }
        let mut rel = String::new();
        for c in rel_dir.split('/').filter(|c| !c.is_empty()) {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(c);
            match self.lstat_inside(&rel)? {
                Some(m) if m.is_dir() => continue,
                Some(_) => {
                    return Err(RemoteError::Corrupt(format!(
                        "{rel} in {} should be a folder",
                        self.describe()
                    )));
                }
                None => {}
            }
            let p = self.root.join(&rel);
            match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(RemoteError::io(format!("cannot create {}", p.display()), e)),
            }
            match self.lstat_inside(&rel)? {
                Some(m) if m.is_dir() => {}
                _ => {
                    return Err(RemoteError::Corrupt(format!(
                        "{rel} in {} should be a folder",
                        self.describe()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes an immutable, content-addressed file unless an intact copy is already there.
    fn write_immutable(&self, rel: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        self.ensure_dir(dir)?;
        if let Some(m) = self.lstat_inside(rel)? {
            if m.is_file() && m.len() == bytes.len() as u64 {
                return Ok(());
            }
            if !m.is_file() {
                return Err(RemoteError::Corrupt(format!(
                    "{rel} in {} is not a regular file",
                    self.describe()
                )));
            }
            tracing::warn!(file = rel, remote = %self.describe(), "replacing a damaged remote file");
        }
        let path = self.root.join(rel);
        atomic_write(&path, bytes, None)
            .map_err(|e| RemoteError::io(format!("cannot write {}", path.display()), e))
    }

    fn object_present(&self, hash: &str) -> Result<bool, RemoteError> {
        Ok(matches!(self.lstat_inside(&Self::object_rel(hash))?, Some(m) if m.is_file()))
    }

    /// Takes the exclusive lock on `<remote>/lock`, waiting up to `lock_timeout`.
    fn lock(&self) -> Result<File, RemoteError> {
        if let Some(m) = self.lstat_inside(LOCK)?
            && !m.is_file()
        {
            return Err(RemoteError::Corrupt(format!(
                "{LOCK} in {} is not a regular file",
                self.describe()
            )));
        }
        let path = self.root.join(LOCK);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                RemoteError::io(format!("cannot open the lock file {}", path.display()), e)
            })?;
        let start = Instant::now();
        let mut wait = Duration::from_millis(1);
        loop {
            match fs2::FileExt::try_lock_exclusive(&f) {
                Ok(()) => return Ok(f),
                Err(e)
                    if e.kind() == fs2::lock_contended_error().kind()
                        || e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(RemoteError::io(
                        format!(
                            "cannot lock {} (does this filesystem support file locks?)",
                            path.display()
                        ),
                        e,
                    ));
                }
            }
            if start.elapsed() >= self.lock_timeout {
                return Err(RemoteError::Busy(format!(
                    "another oc-sync held the lock on {} for over {:?}",
                    path.display(),
                    self.lock_timeout
                )));
            }
            thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }
}

impl Remote for Format1Remote {
    fn describe(&self) -> String {
        format!("folder remote {}", self.root.display())
    }

    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.read_head()
    }

    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        let s = self.read_stored(at)?;
        Ok(Manifest {
            format: s.format,
            entries: s.entries,
        })
    }

    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        validate_hash(hash).map_err(|m| {
            RemoteError::Corrupt(format!("blob requested from {}: {m}", self.describe()))
        })?;
        let rel = Self::object_rel(hash);
        let bytes = self
            .read_inside(&rel, self.limits.max_blob_bytes)?
            .ok_or_else(|| {
                RemoteError::Corrupt(format!(
                    "blob {hash} is missing from {} ({rel})",
                    self.describe()
                ))
            })?;
        let actual = sha256_hex(&bytes);
        if actual != hash {
            return Err(RemoteError::Corrupt(format!(
                "blob {rel} in {} hashes to {actual}, not to its name",
                self.describe()
            )));
        }
        Ok(bytes)
    }

    fn commit(
        &self,
        expected: Option<&Version>,
        changes: Changes,
    ) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        if let Some(v) = expected {
            validate_hash(&v.0)
                .map_err(|m| RemoteError::InvalidChanges(format!("expected version: {m}")))?;
        }
        // Cheap early check; the real one is under the lock below.
        let current = self.read_head()?;
        if current.as_ref() != expected {
            return Ok(CommitOutcome::Conflict { current });
        }
        let base = match expected {
            Some(v) => self.manifest(v)?,
            None => Manifest::default(),
        };
        self.check_blobs_known(&changes)?;
        let new = base.apply(&changes);
        // 1. immutable blobs and manifest (crash here = only unreferenced garbage)
        let hash = self.write_snapshot(expected, &changes, new)?;
        // 2. compare-and-swap HEAD under the lock
        crate::fault::step(crate::fault::REF_UPDATE)
            .map_err(|e| RemoteError::io("commit", std::io::Error::other(e)))?;
        let result = self.swap_head(expected, hash);
        if let Ok(CommitOutcome::Committed(v)) = &result {
            self.collect_garbage(v);
        }
        result
    }
}

impl Format1Remote {
    /// Refuses entries naming a blob that is neither in the change set nor on the remote.
    fn check_blobs_known(&self, changes: &Changes) -> Result<(), RemoteError> {
        for (key, e) in &changes.entries {
            if let Some(h) = &e.hash
                && !changes.blobs.contains_key(h)
                && !self.object_present(h)?
            {
                return Err(RemoteError::InvalidChanges(format!(
                    "entry {key:?} names blob {h}, which is neither in the change set nor on the remote"
                )));
            }
        }
        Ok(())
    }

    /// Writes the changes' blobs and the new manifest (immutable files); returns the manifest's
    /// hash, the version it becomes once HEAD names it.
    fn write_snapshot(
        &self,
        expected: Option<&Version>,
        changes: &Changes,
        new: Manifest,
    ) -> Result<String, RemoteError> {
        for (hash, bytes) in &changes.blobs {
            self.write_immutable(&Self::object_rel(hash), bytes)?;
        }
        let stored = StoredManifest {
            format: MANIFEST_FORMAT,
            parent: expected.map(|v| v.0.clone()),
            message: truncate(&changes.message, MAX_MESSAGE_BYTES).to_owned(),
            entries: new.entries,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| {
            RemoteError::InvalidChanges(format!("cannot serialize the manifest: {e}"))
        })?;
        if bytes.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RemoteError::InvalidChanges(format!(
                "the new manifest would be {} bytes, over the {} byte limit",
                bytes.len(),
                self.limits.max_manifest_bytes
            )));
        }
        let hash = sha256_hex(&bytes);
        self.write_immutable(&Self::manifest_rel(&hash), &bytes)?;
        Ok(hash)
    }

    /// The compare-and-swap: under the lock, points HEAD at manifest `hash` if it still names
    /// `expected`.
    fn swap_head(&self, expected: Option<&Version>, hash: String) -> Result<CommitOutcome, RemoteError> {
        let lock = self.lock()?;
        let result = (|| {
            let current = self.read_head()?;
            if current.as_ref() != expected {
                return Ok(CommitOutcome::Conflict { current });
            }
            if let Some(m) = self.lstat_inside(HEAD)?
                && !m.is_file()
            {
                return Err(RemoteError::Corrupt(format!(
                    "HEAD of {} is not a regular file",
                    self.describe()
                )));
            }
            let head = self.root.join(HEAD);
            atomic_write(&head, format!("{hash}\n").as_bytes(), None)
                .map_err(|e| RemoteError::io(format!("cannot update {}", head.display()), e))?;
            Ok(CommitOutcome::Committed(Version(hash)))
        })();
        let _ = fs2::FileExt::unlock(&lock);
        drop(lock);
        result
    }
}

/// Garbage collection runs once `manifests/` holds more than this many files...
const GC_TRIGGER: usize = 64;
/// ...and keeps the snapshots this many commits back from HEAD...
const GC_KEEP: usize = 16;
/// Shortest time between two collections (the age of the `gc` stamp file).
const GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
const GC_STAMP: &str = "gc";
/// ...and anything younger than this (a machine may be in the middle of a commit or a read).
const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Format1Remote {
    /// Deletes old snapshots and the blobs only they used: every snapshot at most [`GC_KEEP`]
    /// commits behind `head` is kept, and so is every file younger than [`GC_GRACE`]. Best effort:
    /// a failure is logged, never an error (the commit is already in).
    fn collect_garbage(&self, head: &Version) {
        // At most once per GC_INTERVAL (a stamp file's age): the scan is O(history).
        let stamp = self.root.join(GC_STAMP);
        let recent = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if recent.is_some_and(|age| age < GC_INTERVAL) {
            return;
        }
        let dir = self.root.join(MANIFESTS);
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let files: Vec<std::fs::DirEntry> = entries.flatten().collect();
        if files.len() <= GC_TRIGGER {
            return;
        }
        if let Err(e) = std::fs::write(&stamp, b"") {
            tracing::debug!("cannot write {}: {e}", stamp.display());
        }
        let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut referenced: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut cur = Some(head.clone());
        while let Some(v) = cur.take() {
            if keep.len() >= GC_KEEP {
                break;
            }
            let Ok(m) = self.manifest(&v) else { return }; // unsure what is in use: keep everything
            referenced.extend(m.blob_hashes().map(str::to_owned));
            cur = self.commit_info(&v).ok().and_then(|i| i.parent);
            keep.insert(v.0);
        }
        let old = |e: &std::fs::DirEntry| {
            e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > GC_GRACE)
        };
        let mut removed = 0usize;
        for e in &files {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hash) = name.strip_suffix(".json") else { continue };
            if keep.contains(hash) || !old(e) {
                continue;
            }
            // Blobs of a snapshot kept for its age stay too.
            if std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        // Blobs referenced by any remaining snapshot stay.
        if let Ok(rest) = std::fs::read_dir(&dir) {
            for e in rest.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(hash) = name.strip_suffix(".json")
                    && !keep.contains(hash)
                    && let Ok(m) = self.manifest(&Version(hash.to_owned()))
                {
                    referenced.extend(m.blob_hashes().map(str::to_owned));
                }
            }
        }
        let objects = self.root.join(OBJECTS);
        let mut freed = 0usize;
        for shard in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
            let prefix = shard.file_name().to_string_lossy().into_owned();
            for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let hash = format!("{prefix}{}", e.file_name().to_string_lossy());
                if !referenced.contains(&hash) && old(&e) && std::fs::remove_file(e.path()).is_ok() {
                    freed += 1;
                }
            }
        }
        if removed + freed > 0 {
            tracing::info!("{}: removed {removed} old snapshots and {freed} unused blobs", self.describe());
        }
    }
}

// ---- what format 2 needs of format 1's files -------------------------------------------------

/// What `<remote>/HEAD` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pointer {
    /// No HEAD: an empty (or missing) folder, or a format-2 remote whose first commit died
    /// before its stub was written.
    Absent,
    /// A format-1 snapshot (or a file only the format-1 reader can explain: it reports it).
    Format1(Version),
    /// The format-2 stub manifest: the git repository is authoritative.
    Stub,
}

impl Format1Remote {
    /// Reads HEAD and the format of the manifest it names. A format above 2 is
    /// [`RemoteError::UnsupportedFormat`].
    pub(crate) fn pointer(&self) -> Result<Pointer, RemoteError> {
        let Some(v) = self.read_head()? else { return Ok(Pointer::Absent) };
        let rel = Self::manifest_rel(&v.0);
        let Some(bytes) = self.read_inside(&rel, self.limits.max_manifest_bytes)? else {
            return Ok(Pointer::Format1(v)); // the format-1 reader reports the missing file
        };
        if sha256_hex(&bytes) != v.0 {
            return Ok(Pointer::Format1(v));
        }
        match serde_json::from_slice::<FormatOnly>(&bytes) {
            Ok(f) if f.format == crate::remote::REPOSITORY_FORMAT => Ok(Pointer::Stub),
            Ok(f) if f.format > crate::remote::REPOSITORY_FORMAT => Err(RemoteError::UnsupportedFormat {
                found: f.format,
                supported: crate::remote::REPOSITORY_FORMAT,
            }),
            _ => Ok(Pointer::Format1(v)),
        }
    }

    /// Runs `f` holding format 1's lock (created with the remote folder if needed).
    pub(crate) fn locked<T>(&self, f: impl FnOnce(&Self) -> Result<T, RemoteError>) -> Result<T, RemoteError> {
        self.ensure_dir("")?;
        let lock = self.lock()?;
        let result = f(self);
        let _ = fs2::FileExt::unlock(&lock);
        drop(lock);
        result
    }

    /// Points HEAD at the format-2 stub manifest, so format-1 clients stop ("upgrade oc-sync").
    /// Call under [`Format1Remote::locked`].
    pub(crate) fn point_to_stub(&self) -> Result<(), RemoteError> {
        let bytes = crate::remote::envelope::legacy_manifest_stub();
        let hash = sha256_hex(&bytes);
        self.write_immutable(&Self::manifest_rel(&hash), &bytes)?;
        if let Some(m) = self.lstat_inside(HEAD)?
            && !m.is_file()
        {
            return Err(RemoteError::Corrupt(format!("HEAD of {} is not a regular file", self.describe())));
        }
        let head = self.root.join(HEAD);
        atomic_write(&head, format!("{hash}\n").as_bytes(), None)
            .map_err(|e| RemoteError::io(format!("cannot update {}", head.display()), e))
    }

    /// Creates the remote folder (not its parents).
    pub(crate) fn create_root(&self) -> Result<(), RemoteError> {
        self.ensure_dir("")
    }

    /// Whether `rel` inside the remote is a folder (symbolic links refused).
    pub(crate) fn is_dir_inside(&self, rel: &str) -> Result<bool, RemoteError> {
        match self.lstat_inside(rel)? {
            None => Ok(false),
            Some(m) if m.is_dir() => Ok(true),
            Some(_) => Err(RemoteError::Corrupt(format!("{rel} in {} should be a folder", self.describe()))),
        }
    }
}
