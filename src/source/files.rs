//! [`FileSource`]: the `config` and `state` categories, served from OpenCode's directories.
//!
//! Only an explicit allow-list of files is ever listed or written (see [`FileSource::is_syncable`]);
//! hard exclusions (dependencies, editor temp files, oc-sync's own files, hidden entries) cannot be
//! overridden by user globs; symbolic links are never followed, listed or written through.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::{Category, Item, ItemMeta, ReadAll, Source, SourceError};
use crate::config::Config;
use crate::merge::MergeKind;
use crate::paths::Paths;
use crate::remote::validate_key;

/// Files larger than this are skipped unless configured otherwise: 50 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;

/// Mode given to files this source creates (existing files keep theirs).
const NEW_FILE_MODE: u32 = 0o644;

const CONFIG_ROOT_FILES: &[&str] = &[
    "opencode.json",
    "opencode.jsonc",
    "config.json",
    "tui.json",
    "AGENTS.md",
];
const STATE_FILES: &[&str] = &[
    "model.json",
    "prompt-history.jsonl",
    "prompt-stash.jsonl",
    "frecency.jsonl",
    "kv.json",
];

/// Folder rules of the config category: (folder, recursive, allowed extensions; empty = any file).
const CONFIG_DIRS: &[(&str, bool, &[&str])] = &[
    ("agent", true, &["md"]),
    ("agents", true, &["md"]),
    ("command", true, &["md"]),
    ("commands", true, &["md"]),
    ("mode", false, &["md"]),
    ("modes", false, &["md"]),
    ("tool", false, &["js", "ts"]),
    ("tools", false, &["js", "ts"]),
    ("plugin", false, &["js", "ts"]),
    ("plugins", false, &["js", "ts"]),
    ("skill", true, &[]),
    ("skills", true, &[]),
    ("themes", false, &["json"]),
];

/// Names never synced, at any depth.
const NEVER_NAMES: &[&str] = &[
    "node_modules",
    "package.json",
    "package-lock.json",
    "bun.lock",
    "bun.lockb",
    ".DS_Store",
];

/// Tunables of a [`FileSource`].
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// Files larger than this are skipped (listed in [`Listing::skipped`]) and never written.
    pub max_file_size: u64,
    /// Extra globs (relative to the root) added to the category; only honoured for `config`.
    pub include: Vec<String>,
    /// Globs removed from the category; they win over everything. Matched against the path relative
    /// to the root and against the full key (`state/kv.json`).
    pub exclude: Vec<String>,
    /// A file inside the root that must never be synced (oc-sync's own config file), relative or absolute.
    pub own_files: Vec<PathBuf>,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        FileSourceOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            include: Vec::new(),
            exclude: Vec::new(),
            own_files: Vec::new(),
        }
    }
}

/// An entry that looked syncable but was left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key it would have had (lossy for names that are not UTF-8).
    pub key: String,
    pub path: PathBuf,
    pub reason: String,
}

/// The result of a scan: what is synced, and what was deliberately left out.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub items: Vec<ItemMeta>,
    pub skipped: Vec<Skipped>,
    /// The content read while scanning, in the order of `items`.
    pub contents: Vec<Vec<u8>>,
}

/// Matchers built from user globs. Patterns without a `/` also match a bare file name at any depth
/// (as in `.gitignore`); `*` never crosses `/`, `**` does.
#[derive(Debug, Clone)]
struct Globs {
    full: GlobSet,
    basename: GlobSet,
    empty: bool,
}

impl Globs {
    fn new(which: &'static str, patterns: &[String]) -> Result<Globs, SourceError> {
        let mut full = GlobSetBuilder::new();
        let mut basename = GlobSetBuilder::new();
        for raw in patterns {
            let p = raw.trim();
            let p = p.strip_prefix("./").unwrap_or(p);
            let p = p.trim_start_matches('/');
            let p = p
                .strip_suffix('/')
                .map(|d| format!("{d}/**"))
                .unwrap_or_else(|| p.to_string());
            if p.is_empty() {
                continue;
            }
            let glob = |pat: &str| -> Result<Glob, SourceError> {
                GlobBuilder::new(pat)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| SourceError::Glob {
                        which,
                        pattern: raw.clone(),
                        message: e.kind().to_string(),
                    })
            };
            full.add(glob(&p)?);
            if !p.contains('/') {
                basename.add(glob(&p)?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| SourceError::Glob {
                which,
                pattern: patterns.join(", "),
                message: e.to_string(),
            })
        };
        Ok(Globs {
            full: build(full)?,
            basename: build(basename)?,
            empty: patterns.iter().all(|p| p.trim().is_empty()),
        })
    }

    fn matches(&self, rel: &str) -> bool {
        if self.empty {
            return false;
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.full.is_match(rel) || self.basename.is_match(name)
    }
}

/// Serves one file-backed category from a root directory.
#[derive(Debug, Clone)]
pub struct FileSource {
    category: Category,
    root: PathBuf,
    max_file_size: u64,
    include: Globs,
    exclude: Globs,
    /// `/`-separated paths (relative to root) of oc-sync's own files.
    own_files: Vec<String>,
}

impl FileSource {
    /// A source for `category` (`Config` or `State`; any other category lists nothing) rooted at `root`.
    pub fn new(
        category: Category,
        root: impl Into<PathBuf>,
        opts: FileSourceOptions,
    ) -> Result<Self, SourceError> {
        let root = root.into();
        let include = Globs::new(
            "include",
            if matches!(category, Category::Config | Category::Credentials) {
                &opts.include
            } else {
                &[]
            },
        )?;
        let exclude = Globs::new("exclude", &opts.exclude)?;
        let own_files = opts
            .own_files
            .iter()
            .filter_map(|p| own_rel(&root, p))
            .collect();
        Ok(FileSource {
            category,
            root,
            max_file_size: opts.max_file_size,
            include,
            exclude,
            own_files,
        })
    }

    /// The `config` category: OpenCode's global config dir, with the user's include/exclude globs.
    pub fn config(paths: &Paths, config: &Config) -> Result<Self, SourceError> {
        Self::from_config(
            Category::Config,
            paths.opencode_config.clone(),
            paths,
            config,
        )
    }

    /// The `state` category: OpenCode's state dir (user excludes apply, includes do not).
    pub fn state(paths: &Paths, config: &Config) -> Result<Self, SourceError> {
        Self::from_config(Category::State, paths.opencode_state.clone(), paths, config)
    }

    /// The `credentials` category: OpenCode's secret files in its data dir (auth.json,
    /// mcp-auth.json, plus `credentialFiles`). Written 0600; encrypted by the engine before any remote.
    pub fn credentials(paths: &Paths, config: &Config) -> Result<Self, SourceError> {
        let opts = FileSourceOptions { include: config.credential_files.clone(), ..FileSourceOptions::default() };
        Self::new(Category::Credentials, paths.opencode_data.clone(), opts)
    }

    fn from_config(
        category: Category,
        root: PathBuf,
        paths: &Paths,
        config: &Config,
    ) -> Result<Self, SourceError> {
        let opts = FileSourceOptions {
            include: config.include.clone(),
            exclude: config.exclude.clone(),
            own_files: vec![paths.config_file.clone()],
            ..FileSourceOptions::default()
        };
        Self::new(category, root, opts)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Whether a path relative to the root is in the synced set (by name only; the file system is not
    /// consulted, so symlinks and sizes are checked elsewhere). For the file watcher.
    pub fn is_syncable(&self, rel: &Path) -> bool {
        rel_to_str(rel).is_some_and(|r| self.is_syncable_str(&r))
    }

    fn is_syncable_str(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return false;
        }
        if validate_key(&format!("{}/{rel}", self.category.as_str())).is_err() {
            return false;
        }
        if parts.iter().any(|p| never_component(p)) || never_file(parts[parts.len() - 1]) {
            return false;
        }
        if self.own_files.iter().any(|own| is_own_file(own, rel)) {
            return false;
        }
        if self.exclude.matches(rel)
            || self
                .exclude
                .matches(&format!("{}/{rel}", self.category.as_str()))
        {
            return false;
        }
        builtin_allowed(self.category, &parts) || self.include.matches(rel)
    }

    /// Whether a folder (relative to root) may hold syncable files, so the scan descends into it.
    fn may_descend(&self, parts: &[&str]) -> bool {
        if parts.iter().any(|p| never_component(p)) {
            return false;
        }
        match self.category {
            Category::Config => {
                !self.include.empty
                    || CONFIG_DIRS.iter().any(|(dir, recursive, _)| {
                        *dir == parts[0] && (*recursive || parts.len() == 1)
                    })
            }
            _ => false,
        }
    }

    /// Lists the synced files and the ones deliberately skipped (symlinks, too large, odd names).
    pub fn scan(&self) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        if !matches!(self.category, Category::Config | Category::State | Category::Credentials) {
            return Ok(listing);
        }
        match fs::symlink_metadata(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => {
                return Err(SourceError::io(
                    format!("cannot read {}", self.root.display()),
                    e,
                ));
            }
            Ok(_) => {}
        }
        let mut read = Vec::new();
        self.scan_dir(&self.root, &mut Vec::new(), &mut listing, &mut read)?;
        read.sort_by(|a: &Item, b: &Item| a.meta.key.cmp(&b.meta.key));
        (listing.items, listing.contents) = read.into_iter().map(|i| (i.meta, i.bytes)).unzip();
        listing.skipped.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }

    fn scan_dir(
        &self,
        dir: &Path,
        prefix: &mut Vec<String>,
        out: &mut Listing,
        read: &mut Vec<Item>,
    ) -> Result<(), SourceError> {
        let entries = fs::read_dir(dir)
            .map_err(|e| SourceError::io(format!("cannot list {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| SourceError::io(format!("cannot list {}", dir.display()), e))?;
            let path = entry.path();
            let Ok(name) = entry.file_name().into_string() else {
                let lossy = entry.file_name().to_string_lossy().into_owned();
                let rel = join_rel(prefix, &lossy);
                if self.is_syncable_str(&rel) || self.may_descend(&rel_parts(&rel)) {
                    out.skipped
                        .push(self.skip(&rel, path, "the name is not valid UTF-8"));
                }
                continue;
            };
            let rel = join_rel(prefix, &name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // vanished meanwhile
                Err(e) => {
                    return Err(SourceError::io(
                        format!("cannot stat {}", path.display()),
                        e,
                    ));
                }
            };
            let ft = meta.file_type();
            let parts = rel_parts(&rel);
            if ft.is_symlink() {
                if self.is_syncable_str(&rel) || self.may_descend(&parts) {
                    out.skipped
                        .push(self.skip(&rel, path, "symbolic link (never followed)"));
                }
            } else if ft.is_dir() {
                if self.may_descend(&parts) {
                    prefix.push(name);
                    self.scan_dir(&path, prefix, out, read)?;
                    prefix.pop();
                }
            } else if self.is_syncable_str(&rel) {
                if !ft.is_file() {
                    out.skipped
                        .push(self.skip(&rel, path, "not a regular file"));
                } else if meta.len() > self.max_file_size {
                    let reason = format!(
                        "{} bytes, over the {}-byte limit",
                        meta.len(),
                        self.max_file_size
                    );
                    out.skipped.push(self.skip(&rel, path, &reason));
                } else {
                    match fs::read(&path) {
                        Ok(bytes) => read.push(Item { meta: self.meta_for(&rel, &meta, &bytes), bytes }),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(SourceError::io(
                                format!("cannot read {}", path.display()),
                                e,
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes stale oc-sync temp files in `dir` and the folders the scan descends into (the only
    /// places oc-sync writes files); symlinks are never followed.
    fn remove_temps_in(&self, dir: &Path, prefix: &mut Vec<String>) -> usize {
        let mut n = crate::fsutil::remove_stale_temps(dir);
        let Ok(entries) = fs::read_dir(dir) else { return n };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else { continue };
            prefix.push(name);
            let parts: Vec<&str> = prefix.iter().map(String::as_str).collect();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && self.may_descend(&parts) {
                n += self.remove_temps_in(&entry.path(), prefix);
            }
            prefix.pop();
        }
        n
    }

    fn skip(&self, rel: &str, path: PathBuf, reason: &str) -> Skipped {
        Skipped {
            key: format!("{}/{rel}", self.category.as_str()),
            path,
            reason: reason.to_string(),
        }
    }

    fn meta_for(&self, rel: &str, meta: &fs::Metadata, bytes: &[u8]) -> ItemMeta {
        ItemMeta {
            key: format!("{}/{rel}", self.category.as_str()),
            category: self.category,
            kind: kind_for(self.category, rel, bytes),
            size: bytes.len() as u64,
            modified_ms: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64),
            mode: mode_of(meta),
        }
    }

    /// Checks a key and maps it to (relative path, absolute path). Every refusal is an error.
    fn resolve_key(&self, key: &str) -> Result<(String, PathBuf), SourceError> {
        let refuse = |reason: String| SourceError::KeyRefused {
            key: key.to_string(),
            reason,
        };
        validate_key(key).map_err(refuse)?;
        let cat = self.category.as_str();
        let rel = key
            .strip_prefix(cat)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| refuse(format!("it is not in the {cat:?} category")))?;
        if !self.is_syncable_str(rel) {
            return Err(refuse(format!("it is not a file oc-sync syncs in {cat:?}")));
        }
        let mut path = self.root.clone();
        for part in rel.split('/') {
            path.push(part);
        }
        // Defence in depth: the joined path must stay inside the root lexically.
        if !path.starts_with(&self.root)
            || Path::new(rel)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(refuse("it does not map inside the root".into()));
        }
        Ok((rel.to_string(), path))
    }

    /// Fails when any folder between the root (exclusive) and the item, or the item itself, is a
    /// symlink, or when a folder on the way is not a folder. Returns the item's own metadata, if any.
    fn check_no_symlinks(&self, rel: &str) -> Result<Option<fs::Metadata>, SourceError> {
        let mut path = self.root.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(SourceError::io(
                        format!("cannot stat {}", path.display()),
                        e,
                    ));
                }
            };
            if meta.file_type().is_symlink() {
                return Err(SourceError::Symlink { path });
            }
            let last = i + 1 == parts.len();
            if last {
                if !meta.is_file() {
                    return Err(SourceError::NotAFile { path });
                }
                return Ok(Some(meta));
            }
            if !meta.is_dir() {
                return Err(SourceError::NotAFile { path });
            }
        }
        Ok(None)
    }
}

impl Source for FileSource {
    fn category(&self) -> Category {
        self.category
    }

    fn refuse_key(&self, key: &str) -> Option<String> {
        match self.resolve_key(key) {
            Err(SourceError::KeyRefused { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    fn list(&self) -> Result<Vec<ItemMeta>, SourceError> {
        Ok(self.scan()?.items)
    }

    fn read_all(&self) -> Result<ReadAll, SourceError> {
        let l = self.scan()?;
        let items = l.items.into_iter().zip(l.contents).map(|(meta, bytes)| Item { meta, bytes }).collect();
        Ok((items, l.skipped.into_iter().map(|s| (s.key, s.reason)).collect()))
    }

    fn read(&self, key: &str) -> Result<Option<Item>, SourceError> {
        let (rel, path) = self.resolve_key(key)?;
        let Some(meta) = self.check_no_symlinks(&rel)? else {
            return Ok(None);
        };
        if meta.len() > self.max_file_size {
            return Err(SourceError::TooLarge {
                path,
                size: meta.len(),
                limit: self.max_file_size,
            });
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SourceError::io(
                    format!("cannot read {}", path.display()),
                    e,
                ));
            }
        };
        Ok(Some(Item {
            meta: self.meta_for(&rel, &meta, &bytes),
            bytes,
        }))
    }

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        let (rel, path) = self.resolve_key(key)?;
        if bytes.len() as u64 > self.max_file_size {
            return Err(SourceError::TooLarge {
                path,
                size: bytes.len() as u64,
                limit: self.max_file_size,
            });
        }
        self.check_no_symlinks(&rel)?;
        if self.category == Category::Credentials {
            // Secrets: owner-only, whatever mode an older copy had.
            return crate::fsutil::write_private(&path, bytes)
                .map_err(|e| SourceError::io(format!("cannot write {}", path.display()), e));
        }
        crate::fsutil::atomic_write(&path, bytes, Some(NEW_FILE_MODE))
            .map_err(|e| SourceError::io(format!("cannot write {}", path.display()), e))
    }

    fn remove_stale_temps(&self) -> usize {
        self.remove_temps_in(&self.root, &mut Vec::new())
    }

    fn delete(&self, key: &str) -> Result<(), SourceError> {
        let (rel, path) = self.resolve_key(key)?;
        if self.check_no_symlinks(&rel)?.is_none() {
            return Ok(());
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SourceError::io(
                    format!("cannot delete {}", path.display()),
                    e,
                ));
            }
        }
        // Prune folders left empty, deepest first, never the root itself.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// The merge kind of a file: by extension, and `Binary` whenever the content is not UTF-8.
/// OpenCode reads every JSON file of its config dir as JSONC (comments allowed, even in
/// `opencode.json`), so config `.json` files merge as JSONC, which keeps their comments; state files
/// are written by OpenCode with `JSON.stringify` and merge as plain JSON.
pub(crate) fn kind_for(category: Category, rel: &str, bytes: &[u8]) -> MergeKind {
    if std::str::from_utf8(bytes).is_err() {
        return MergeKind::Binary;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") if category == Category::Config => MergeKind::Jsonc,
        Some("json") => MergeKind::Json,
        Some("jsonc") => MergeKind::Jsonc,
        Some("jsonl") => MergeKind::Jsonl,
        _ => MergeKind::Text,
    }
}

fn builtin_allowed(category: Category, parts: &[&str]) -> bool {
    match category {
        Category::Config => {
            if parts.len() == 1 {
                return CONFIG_ROOT_FILES.contains(&parts[0]);
            }
            let name = parts[parts.len() - 1];
            CONFIG_DIRS.iter().any(|(dir, recursive, exts)| {
                *dir == parts[0]
                    && (*recursive || parts.len() == 2)
                    && (exts.is_empty() || exts.iter().any(|x| has_ext(name, x)))
            })
        }
        Category::State => parts.len() == 1 && STATE_FILES.contains(&parts[0]),
        Category::Credentials => parts.len() == 1 && CREDENTIAL_FILES.contains(&parts[0]),
        _ => false,
    }
}

/// OpenCode's secret files (in its data dir): provider API keys / OAuth tokens and MCP OAuth tokens.
pub const CREDENTIAL_FILES: &[&str] = &["auth.json", "mcp-auth.json"];

fn has_ext(name: &str, ext: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, e)| !stem.is_empty() && e == ext)
}

/// A path component that excludes everything under and at it: dependencies and hidden entries.
fn never_component(part: &str) -> bool {
    part.starts_with('.') || NEVER_NAMES.contains(&part)
}

/// File names never synced: editor/oc-sync temp files and oc-sync's own files.
fn never_file(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".tmp")
        || name.contains(".oc-sync-tmp-")
        || name.starts_with("opencode-sync.")
}

fn is_own_file(own: &str, rel: &str) -> bool {
    rel == own
        || rel
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('.') && rel.ends_with(".bak"))
}

/// `own` relative to `root` as a `/`-separated string, when it lies inside it.
fn own_rel(root: &Path, own: &Path) -> Option<String> {
    let try_strip = |r: &Path, o: &Path| o.strip_prefix(r).ok().and_then(rel_to_str);
    if own.is_relative() {
        return rel_to_str(own);
    }
    try_strip(root, own).or_else(|| {
        let r = fs::canonicalize(root).ok()?;
        let parent = fs::canonicalize(own.parent()?).ok()?;
        try_strip(&r, &parent.join(own.file_name()?))
    })
}

/// A relative path as a `/`-separated UTF-8 string, or `None` if it is not plain relative or not UTF-8.
fn rel_to_str(rel: &Path) -> Option<String> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => out.push(s.to_str()?),
            _ => return None,
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

fn join_rel(prefix: &[String], name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", prefix.join("/"))
    }
}

fn rel_parts(rel: &str) -> Vec<&str> {
    rel.split('/').collect()
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_meta: &fs::Metadata) -> Option<u32> {
    None
}
