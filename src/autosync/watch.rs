//! File watching: reports changes to synced files under OpenCode's config and state directories.
//!
//! Every directory is watched **non-recursively** and the recursion is done here, so that
//! `node_modules`, hidden folders and symbolic links are never descended into (notify's own recursive
//! mode would add a watch for every folder of a `node_modules` tree). What is watched per root:
//!
//! * the root itself (top-level files);
//! * every listed folder ([`WatchRoot::folders`]) that exists, with all its sub-folders;
//! * with [`WatchRoot::recursive_root`], every folder of the root.
//!
//! A root that does not exist yet is waited for by watching its nearest existing parent; when it
//! appears it is watched and its synced files are reported as [`WatchEvent::Changed`]. Folders
//! created later (a listed folder at the root, or any sub-folder inside a watched tree) are added
//! the same way, and the files already in them are reported.
//!
//! notify's callback only forwards into a std channel; a worker thread filters the events, adds or
//! removes watches and calls the user's callback (never while holding the internal lock).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::source::FileSource;

/// Folders of the `config` category that may hold synced files (see `FileSource`).
pub const CONFIG_FOLDERS: &[&str] = &[
    "agent", "agents", "command", "commands", "mode", "modes", "tool", "tools", "plugin",
    "plugins", "skill", "skills", "themes",
];

/// Most notify messages handled in one batch (events of a batch are de-duplicated).
const MAX_BATCH: usize = 4096;

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchEvent {
    /// A synced file changed (created, modified, removed, renamed). The path is absolute and starts
    /// with the [`WatchRoot::root`] it belongs to. It may also be a watched folder that was created,
    /// removed or renamed away (a listed folder, or a sub-folder whose files are gone with it).
    Changed(PathBuf),
    /// Events were lost (queue overflow, notify's rescan flag, a watcher error) or a whole root
    /// disappeared: the caller should rescan everything.
    Rescan,
}

/// Decides whether a path relative to a root is synced.
pub type SyncableFn = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// One directory tree to watch.
#[derive(Clone)]
pub struct WatchRoot {
    pub root: PathBuf,
    /// Top-level folder names to watch recursively (only those that exist; added later if created).
    pub folders: Vec<String>,
    /// Whether to watch the whole tree recursively (used when the user has include globs), still
    /// filtered (no `node_modules`, hidden folders or symlinks).
    pub recursive_root: bool,
    /// Whether a path (relative to `root`) is synced; only those are reported.
    pub is_syncable: SyncableFn,
}

impl std::fmt::Debug for WatchRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchRoot")
            .field("root", &self.root)
            .field("folders", &self.folders)
            .field("recursive_root", &self.recursive_root)
            .finish_non_exhaustive()
    }
}

impl WatchRoot {
    /// A root served by `source` (its root and [`FileSource::is_syncable`]).
    pub fn from_source(source: &FileSource, folders: &[&str], recursive_root: bool) -> WatchRoot {
        let src = source.clone();
        WatchRoot {
            root: source.root().to_path_buf(),
            folders: folders.iter().map(|f| f.to_string()).collect(),
            recursive_root,
            is_syncable: Arc::new(move |rel: &Path| src.is_syncable(rel)),
        }
    }
}

/// The two standard roots: the `config` source with [`CONFIG_FOLDERS`] (the whole tree when the user
/// has include globs) and the `state` source (top-level files only).
pub fn for_sources(
    config: &FileSource,
    state: &FileSource,
    include_globs_present: bool,
) -> Vec<WatchRoot> {
    vec![
        WatchRoot::from_source(config, CONFIG_FOLDERS, include_globs_present),
        WatchRoot::from_source(state, &[], false),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the file watcher: {0}")]
    Notify(#[from] notify::Error),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the file watcher thread: {0}")]
    Thread(#[from] io::Error),
}

enum Msg {
    Notify(notify::Result<notify::Event>),
    Stop,
}

/// Watches the roots until stopped or dropped.
pub struct Watcher {
    inner: Arc<Mutex<Inner>>,
    tx: Sender<Msg>,
    stopping: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("watched_dirs", &self.watched_dirs())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching. When this returns, every existing root (or the nearest existing parent of a
    /// missing one) is watched. `on_event` is called from a worker thread, never after
    /// [`Watcher::stop`] (or drop) has returned.
    pub fn start(
        roots: Vec<WatchRoot>,
        on_event: impl Fn(WatchEvent) + Send + 'static,
    ) -> Result<Watcher, WatchError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let notify_tx = tx.clone();
        let watcher = RecommendedWatcher::new(
            move |res: notify::Result<notify::Event>| {
                // Only forwards: calling into the watcher from here could deadlock.
                let _ = notify_tx.send(Msg::Notify(res));
            },
            notify::Config::default(),
        )?;
        let mut roots_state = Vec::with_capacity(roots.len());
        for mut spec in roots {
            if let Ok(abs) = std::path::absolute(&spec.root) {
                spec.root = abs;
            }
            roots_state.push(RootState {
                canon: None,
                spec,
                active: false,
                pending: None,
            });
        }
        let mut inner = Inner {
            watcher: Some(watcher),
            roots: roots_state,
            owners: BTreeMap::new(),
        };
        for i in 0..inner.roots.len() {
            let mut ignored = Vec::new();
            inner.refresh_root(i, false, &mut ignored)?;
        }
        let inner = Arc::new(Mutex::new(inner));
        let stopping = Arc::new(AtomicBool::new(false));
        let worker = {
            let inner = inner.clone();
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("oc-sync-watch".into())
                .spawn(move || worker(rx, inner, stopping, on_event))?
        };
        Ok(Watcher {
            inner,
            tx,
            stopping,
            worker: Some(worker),
        })
    }

    /// Stops watching and joins the worker thread (same as dropping the watcher).
    pub fn stop(self) {}

    /// The directories currently watched (each one non-recursively), sorted.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        lock(&self.inner).owners.keys().cloned().collect()
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop);
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::warn!("the file watcher thread panicked");
        }
        let watcher = lock(&self.inner).watcher.take();
        drop(watcher);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(
    rx: Receiver<Msg>,
    inner: Arc<Mutex<Inner>>,
    stopping: Arc<AtomicBool>,
    on_event: impl Fn(WatchEvent),
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if stopping.load(Ordering::SeqCst) || batch.iter().any(|m| matches!(m, Msg::Stop)) {
            return;
        }
        let events = lock(&inner).handle_batch(batch);
        let mut seen = HashSet::new();
        for ev in events {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            if seen.insert(ev.clone()) {
                on_event(ev);
            }
        }
    }
}

struct RootState {
    spec: WatchRoot,
    /// The canonical form of the root (some back ends report resolved paths), once active.
    canon: Option<PathBuf>,
    /// The root exists and is watched.
    active: bool,
    /// While the root is missing: the watched nearest existing parent.
    pending: Option<PathBuf>,
}

impl RootState {
    /// `path` relative to the root, tried against the root as given and its canonical form.
    fn rel<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        path.strip_prefix(&self.spec.root)
            .ok()
            .or_else(|| self.canon.as_ref().and_then(|c| path.strip_prefix(c).ok()))
    }

    /// Whether a folder (relative to the root) is watched when it exists.
    fn should_watch_dir(&self, rel: &Path) -> bool {
        let mut parts = rel.components().map(|c| c.as_os_str().to_str());
        let Some(Some(first)) = parts.next() else {
            return false;
        };
        if !(self.spec.recursive_root || self.spec.folders.iter().any(|f| f == first)) {
            return false;
        }
        rel.components().all(|c| {
            matches!(c, std::path::Component::Normal(n)
                if n.to_str().is_some_and(|s| !s.starts_with('.') && s != "node_modules"))
        })
    }

    fn is_listed_folder(&self, rel: &Path) -> bool {
        let mut comps = rel.components();
        match (comps.next(), comps.next()) {
            (Some(std::path::Component::Normal(n)), None) => {
                self.spec.folders.iter().any(|f| f.as_str() == n)
            }
            _ => false,
        }
    }
}

struct Inner {
    watcher: Option<RecommendedWatcher>,
    roots: Vec<RootState>,
    /// Watched directories and the roots that need them.
    owners: BTreeMap<PathBuf, BTreeSet<usize>>,
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

impl Inner {
    fn acquire(&mut self, path: &Path, i: usize) -> Result<(), notify::Error> {
        if let Some(owners) = self.owners.get_mut(path) {
            owners.insert(i);
            return Ok(());
        }
        if let Some(w) = self.watcher.as_mut() {
            w.watch(path, RecursiveMode::NonRecursive)?;
        }
        self.owners.insert(path.to_path_buf(), BTreeSet::from([i]));
        Ok(())
    }

    fn release(&mut self, path: &Path, i: usize) {
        let Some(owners) = self.owners.get_mut(path) else {
            return;
        };
        owners.remove(&i);
        if owners.is_empty() {
            self.owners.remove(path);
            if let Some(w) = self.watcher.as_mut()
                && let Err(e) = w.unwatch(path)
            {
                // Usually the directory is gone and the OS already dropped the watch.
                tracing::debug!("unwatch {}: {e}", path.display());
            }
        }
    }

    fn owned(&self, path: &Path, i: usize) -> bool {
        self.owners.get(path).is_some_and(|o| o.contains(&i))
    }

    /// Releases `path` and every watched directory under it, for root `i`.
    fn release_tree(&mut self, path: &Path, i: usize) {
        let under: Vec<PathBuf> = self
            .owners
            .iter()
            .filter(|(p, o)| p.starts_with(path) && o.contains(&i))
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            self.release(&p, i);
        }
    }

    /// Watches `dir` (relative `rel` to root `i`) and its watchable sub-folders; with `emit`, reports
    /// the synced files found (they may have been created before the watch was in place).
    fn walk(
        &mut self,
        i: usize,
        dir: &Path,
        rel: &Path,
        emit: bool,
        out: &mut Vec<WatchEvent>,
    ) -> Result<(), notify::Error> {
        if !rel.as_os_str().is_empty() && !self.roots[i].should_watch_dir(rel) {
            return Ok(());
        }
        // Watch first, then list: anything created after the listing produces an event.
        match self.acquire(dir, i) {
            Ok(()) => {}
            // Removed meanwhile: its removal is (or was) reported by the parent's watch.
            Err(_) if !is_real_dir(dir) => return Ok(()),
            Err(e) => return Err(e),
        }
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("watch: cannot list {}: {e}", dir.display());
                return Ok(());
            }
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let child_rel = rel.join(entry.file_name());
            if ft.is_dir() {
                if self.roots[i].should_watch_dir(&child_rel) {
                    self.walk(i, &entry.path(), &child_rel, emit, out)?;
                }
            } else if emit && ft.is_file() && (self.roots[i].spec.is_syncable)(&child_rel) {
                out.push(WatchEvent::Changed(
                    self.roots[i].spec.root.join(&child_rel),
                ));
            }
        }
        Ok(())
    }

    /// Brings root `i` in line with the disk: watched if it exists, else its nearest existing
    /// parent is. Errors only when the root (or that parent) cannot be watched.
    fn refresh_root(
        &mut self,
        i: usize,
        emit: bool,
        out: &mut Vec<WatchEvent>,
    ) -> Result<(), WatchError> {
        let root = self.roots[i].spec.root.clone();
        if self.roots[i].active {
            if fs::metadata(&root).is_ok_and(|m| m.is_dir()) {
                return Ok(());
            }
            // The root went away: everything in it is gone.
            self.release_tree(&root, i);
            self.roots[i].active = false;
            self.roots[i].canon = None;
            out.push(WatchEvent::Rescan);
        }
        // Bounded: each round either settles or follows a folder created or removed meanwhile.
        for _ in 0..64 {
            if fs::metadata(&root).is_ok_and(|m| m.is_dir()) {
                if let Err(source) = self.acquire(&root, i) {
                    if fs::metadata(&root).is_ok_and(|m| m.is_dir()) {
                        return Err(WatchError::Watch { path: root, source });
                    }
                    continue; // removed again meanwhile
                }
                if let Some(p) = self.roots[i].pending.take() {
                    self.release(&p, i);
                }
                self.roots[i].active = true;
                self.roots[i].canon = fs::canonicalize(&root).ok().filter(|c| *c != root);
                if let Err(e) = self.walk(i, &root, Path::new(""), emit, out) {
                    tracing::warn!("watch: cannot watch all of {}: {e}", root.display());
                }
                return Ok(());
            }
            let Some(parent) = root
                .ancestors()
                .skip(1)
                .find(|a| fs::metadata(a).is_ok_and(|m| m.is_dir()))
                .map(Path::to_path_buf)
            else {
                tracing::warn!("watch: no existing parent of {}", root.display());
                return Ok(());
            };
            if self.roots[i].pending.as_deref() == Some(parent.as_path()) {
                return Ok(());
            }
            if let Err(source) = self.acquire(&parent, i) {
                if fs::metadata(&parent).is_ok_and(|m| m.is_dir()) {
                    return Err(WatchError::Watch {
                        path: parent,
                        source,
                    });
                }
                continue; // removed meanwhile: look further up
            }
            if let Some(old) = self.roots[i].pending.replace(parent) {
                self.release(&old, i);
            }
            // Loop: a deeper folder (or the root) may have appeared before the watch was in place.
        }
        tracing::warn!(
            "watch: {} keeps changing; retrying on the next event",
            root.display()
        );
        Ok(())
    }

    fn handle_batch(&mut self, batch: Vec<Msg>) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        let mut rescan = false;
        for msg in batch {
            let Msg::Notify(res) = msg else { continue };
            if needs_rescan(&res) {
                rescan = true;
            }
            match res {
                Err(e) => tracing::warn!("file watcher error: {e}"),
                Ok(ev) => {
                    if !is_change(&ev.kind) {
                        continue;
                    }
                    for path in &ev.paths {
                        self.handle_path(path, &mut out);
                    }
                }
            }
        }
        if rescan {
            // Watches may be missing for folders created while events were lost.
            for i in 0..self.roots.len() {
                if self.roots[i].active {
                    self.prune(i);
                    let root = self.roots[i].spec.root.clone();
                    if let Err(e) = self.walk(i, &root, Path::new(""), false, &mut out) {
                        tracing::warn!("watch: cannot watch all of {}: {e}", root.display());
                    }
                }
            }
        }
        for i in 0..self.roots.len() {
            if let Err(e) = self.refresh_root(i, true, &mut out) {
                tracing::warn!("{e}");
            }
        }
        if rescan || out.contains(&WatchEvent::Rescan) {
            return vec![WatchEvent::Rescan];
        }
        out
    }

    /// Drops watches of root `i` whose directories no longer exist.
    fn prune(&mut self, i: usize) {
        let gone: Vec<PathBuf> = self
            .owners
            .iter()
            .filter(|(p, o)| o.contains(&i) && !is_real_dir(p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            self.release(&p, i);
        }
    }

    fn handle_path(&mut self, path: &Path, out: &mut Vec<WatchEvent>) {
        for i in 0..self.roots.len() {
            if !self.roots[i].active {
                continue;
            }
            let Some(rel) = self.roots[i].rel(path).map(Path::to_path_buf) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue; // the root itself: refresh_root handles it after the batch
            }
            let full = self.roots[i].spec.root.join(&rel);
            if is_real_dir(&full) {
                // Folders are not files: only report a listed folder appearing, and the files found
                // in a newly watched folder.
                if self.roots[i].should_watch_dir(&rel) && !self.owned(&full, i) {
                    if self.roots[i].is_listed_folder(&rel) {
                        out.push(WatchEvent::Changed(full.clone()));
                    }
                    if let Err(e) = self.walk(i, &full, &rel, true, out) {
                        tracing::warn!("watch: cannot watch {}: {e}", full.display());
                    }
                }
                continue;
            } else if self.owned(&full, i) {
                self.release_tree(&full, i);
                out.push(WatchEvent::Changed(full.clone()));
            } else if self.roots[i].is_listed_folder(&rel) && !full.exists() {
                // A listed folder that could not be watched (or a symlink) went away.
                out.push(WatchEvent::Changed(full.clone()));
                continue;
            }
            if (self.roots[i].spec.is_syncable)(&rel) {
                out.push(WatchEvent::Changed(full));
            }
        }
    }
}

/// Whether notify reports lost events.
fn needs_rescan(res: &notify::Result<notify::Event>) -> bool {
    match res {
        Ok(ev) => ev.need_rescan(),
        // An error in the event stream (queue overflow on some back ends, watch limit) may mean
        // missed events.
        Err(_) => true,
    }
}

/// Whether an event kind may mean content changed (opening or reading a file does not).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests;
