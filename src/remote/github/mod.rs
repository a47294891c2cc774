//! The GitHub remote: a **private** GitHub repository, written through the Git Data API.
//!
//! Layout of the branch (readable by a person browsing the repository):
//!
//! ```text
//! config/opencode.json        each live item at its key path; the blob is the item's bytes as
//! state/...                   stored by the engine (ciphertext when a codec encrypts them)
//! .oc-sync/manifest.json      the Manifest (pretty JSON); keys map to paths one-to-one
//! ```
//!
//! A [`Version`] is the branch's commit sha. `commit` is one compare-and-swap: it builds a tree
//! on top of the expected commit's tree, a commit whose only parent is the expected commit, and
//! moves the branch with `PATCH git/refs/heads/{branch}` and `force: false`. GitHub accepts that
//! only as a fast-forward, so if anyone moved the branch meanwhile the update fails (422) and
//! nothing is applied: [`CommitOutcome::Conflict`]. (The only case the fast-forward check lets
//! through is a branch that was rewound to an ancestor of `expected`; then the rewound commits
//! come back, which loses nothing.)
//!
//! Requests per call: `head` 1; `manifest` 2 (tree + manifest blob) the first time per version,
//! then 0 (cached; a commit made by this process is cached too); `blob` 1; `commit` 3 (tree,
//! commit, ref) plus one `POST git/blobs` per item that is not UTF-8 text or is over
//! [`INLINE_MAX`], plus one `GET ref` when the last head this remote saw is not `expected`.
//!
//! **Blocking.** [`Remote`] is synchronous, so this type owns a small current-thread tokio
//! runtime and `block_on`s every call. Never call it (or drop it) from inside an async task of
//! another tokio runtime — tokio panics there. From async code use `tokio::task::spawn_blocking`
//! or a plain thread.
//!
//! The token is never put in an error message or a log line.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use self::cache::{CacheKey, Persisted, StoredSnapshot};
use self::http::{Http, Resp, now_secs};

use super::{
    Changes, CommitOutcome, Limits, MANIFEST_FORMAT, Manifest, Remote, RemoteError, Version,
    sha256_hex, truncate, validate_hash,
};

/// Where the manifest lives in the repository.
pub const MANIFEST_PATH: &str = ".oc-sync/manifest.json";
/// Items that are UTF-8 text up to this size go inline in the tree request; others are uploaded
/// with `POST git/blobs` first.
pub const INLINE_MAX: usize = 1 << 20;
/// Snapshots (tree listing + manifest) kept in memory.
const CACHE_SNAPSHOTS: usize = 8;
/// Longest commit message sent.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Items larger than this are stored as several blobs under `.oc-sync/chunks/<sha256>/` (GitHub
/// refuses files over 100 MB); the manifest's sha256 of the whole item is their checksum.
pub const CHUNK_BYTES: usize = 48 << 20;
/// Largest inline content sent in one `POST git/trees` request; more goes into further requests.
pub const TREE_REQUEST_MAX: usize = 8 << 20;
/// Where chunked items' parts live.
pub const CHUNKS_DIR: &str = ".oc-sync/chunks";
/// A pull needing at least this many blobs downloads the commit's tarball instead.
pub const TARBALL_MIN_BLOBS: usize = 16;
/// How long a visibility check stays valid before the next write re-checks (conditionally).
const VISIBILITY_TTL_S: u64 = 600;
/// Content-creating requests oc-sync allows itself per minute / hour (GitHub: 80 / 500).
const CONTENT_PER_MINUTE: usize = 70;
const CONTENT_PER_HOUR: usize = 450;
/// `compare` lists at most 300 files; at that count the listing may be incomplete.
const COMPARE_MAX_FILES: usize = 300;

/// A remote in a private GitHub repository. See the module docs.
pub struct GithubRemote {
    http: Http,
    owner: String,
    repo: String,
    branch: String,
    limits: Limits,
    chunk_bytes: usize,
    cache: Mutex<Cache>,
    /// What is remembered between runs, and where (None: nothing is written).
    persist: Mutex<Persisted>,
    cache_file: Option<PathBuf>,
    /// Blobs downloaded in bulk by `prefetch`, by sha256.
    prefetched: Mutex<HashMap<String, Vec<u8>>>,
    /// Status of the last branch read that found no branch (404 missing, 409 empty repository).
    last_ref_status: Mutex<u16>,
}

/// How to reach the sync repository (see [`GithubRemote::open`]).
#[derive(Debug, Clone)]
pub struct GithubSettings {
    pub api_url: String,
    pub token: String,
    /// None: the token's own account.
    pub owner: Option<String>,
    pub repo: String,
    /// None: the repository's default branch.
    pub branch: Option<String>,
    /// Where connection facts, ETags and the head snapshot are kept between runs.
    pub cache_file: Option<PathBuf>,
    /// The first wait before retrying a failed request (it doubles each time).
    pub retry_unit: Duration,
}

impl fmt::Debug for GithubRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubRemote")
            .field("api_url", &self.http.api_url)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    /// The branch head as last seen (by `head`, a commit or a conflict).
    last_head: Option<Option<Version>>,
    /// The version whose manifest was read last (used by `blob`).
    last_read: Option<Version>,
    snapshots: HashMap<Version, Snapshot>,
    order: VecDeque<Version>,
}

impl Cache {
    fn insert(&mut self, v: Version, s: Snapshot) {
        if self.snapshots.insert(v.clone(), s).is_none() {
            self.order.push_back(v);
        }
        while self.order.len() > CACHE_SNAPSHOTS {
            if let Some(old) = self.order.pop_front() {
                self.snapshots.remove(&old);
            }
        }
    }
}

#[derive(Clone)]
struct Snapshot {
    tree_sha: String,
    manifest: Manifest,
    /// Every plain file (mode 100644/100755) of the tree → its git blob sha; `None` for files our
    /// own commit wrote inline (their sha is learnt by listing the tree when needed).
    files: HashMap<String, Option<String>>,
    /// Entries that are not plain files (symbolic links, submodules) → what they are. Never
    /// fetched, never written: their keys are refused by name.
    not_files: HashMap<String, String>,
}

/// What a tree entry that is not a folder is, when it is not a plain file oc-sync may read:
/// GitHub lists a symbolic link as a blob of mode 120000 (the blob holds the link target) and a
/// submodule as type "commit", mode 160000 (the sha is a commit of another repository).
fn not_a_file(kind: &str, mode: &str) -> Option<&'static str> {
    match (kind, mode) {
        ("blob", "100644" | "100755") => None,
        ("blob", "120000") => Some("a symbolic link"),
        ("commit", _) | (_, "160000") => Some("a submodule"),
        _ => Some("not a plain file"),
    }
}

/// A tree listing split into plain files and the rest.
type Listed = (String, HashMap<String, Option<String>>, HashMap<String, String>);

#[derive(Deserialize)]
struct TreeListing {
    sha: String,
    #[serde(default)]
    tree: Vec<TreeItem>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct TreeItem {
    path: String,
    #[serde(default)]
    mode: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
}

#[derive(Deserialize)]
struct BlobBody {
    content: String,
    #[serde(default)]
    encoding: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// Splits tree entries into batches whose inline contents stay under `max` bytes (an entry
/// bigger than `max` alone gets a batch of its own). Order is kept; never returns no batch.
fn split_tree_entries(entries: Vec<Value>, max: usize) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    let mut size = 0usize;
    for e in entries {
        let n = e["content"].as_str().map_or(0, str::len) + e["path"].as_str().map_or(0, str::len) + 64;
        if size + n > max && !out.last().is_some_and(Vec::is_empty) {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        out.last_mut().expect("never empty").push(e);
    }
    out
}

/// Checks owner, repository and (optional) branch names before they go into a URL.
fn check_names(owner: &str, repo: &str, branch: Option<&str>) -> Result<(), RemoteError> {
    if !valid_name(owner) || !valid_name(repo) {
        return Err(RemoteError::Denied(format!(
            "{:?}/{:?} is not a valid GitHub repository name (letters, digits, '-', '_', '.'): fix repoOwner / repoName",
            truncate(owner, 100),
            truncate(repo, 100)
        )));
    }
    if let Some(b) = branch
        && !valid_branch(b)
    {
        return Err(RemoteError::Denied(format!("{:?} is not a valid branch name: fix `branch`", truncate(b, 100))));
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_branch(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("@{")
        && s.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
        })
}

/// A git object id: 40 (sha1) or 64 (sha256) lowercase hex characters.
fn valid_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl GithubRemote {
    /// Connects to the existing repository `owner/repo` on the GitHub API at `api_url`
    /// (`https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server) with a
    /// personal access token, and checks that the repository exists, the token works, and the
    /// repository is private. Nothing is remembered between runs (see [`GithubRemote::open`]).
    /// Must not be called from inside an async task (see the module docs).
    pub fn connect(api_url: &str, token: &str, owner: &str, repo: &str, branch: &str) -> Result<Self, RemoteError> {
        check_names(owner, repo, Some(branch))?;
        let me = GithubRemote::with_http(Http::new(api_url, token)?, owner, repo, branch, None, Persisted::default());
        me.ensure_private(true)?;
        Ok(me)
    }

    /// Opens the sync repository as configured: the owner is the token's account unless set;
    /// a missing repository is created (private, with an initial commit); the branch is the
    /// repository's default unless set. What was learnt is kept in `cache_file`, so later runs
    /// need no request until something is read or written: an idle sync costs one conditional
    /// request. Refuses a public repository.
    pub fn open(s: &GithubSettings) -> Result<Self, RemoteError> {
        let mut http = Http::new(&s.api_url, &s.token)?;
        http.set_backoff(s.retry_unit);
        if let Some(o) = &s.owner {
            check_names(o, &s.repo, s.branch.as_deref())?;
        } else {
            check_names("x", &s.repo, s.branch.as_deref())?;
        }
        let key = CacheKey {
            api_url: http.api_url.clone(),
            token_id: cache::token_id(&s.token),
            owner_setting: s.owner.clone(),
            repo: s.repo.clone(),
            branch_setting: s.branch.clone(),
        };
        let cached = s.cache_file.as_deref().and_then(cache::load).filter(|p| p.key == key && !p.facts.owner.is_empty() && !p.facts.branch.is_empty());
        if let Some(p) = cached {
            let (owner, branch) = (p.facts.owner.clone(), p.facts.branch.clone());
            let me = GithubRemote::with_http(http, &owner, &s.repo, &branch, s.cache_file.clone(), p);
            me.ensure_private(false)?;
            return Ok(me);
        }
        // First contact with this repository (or the settings changed).
        let mut persisted = Persisted { key, ..Default::default() };
        let (owner, login) = match &s.owner {
            Some(o) => (o.clone(), None),
            None => {
                let account = http.user()?;
                (account.login.clone(), Some(account.login))
            }
        };
        check_names(&owner, &s.repo, None)?;
        persisted.facts.login = login.clone();
        let mut me = GithubRemote::with_http(http, &owner, &s.repo, s.branch.as_deref().unwrap_or("main"), s.cache_file.clone(), persisted);
        let (info, created) = match me.read_repo(None)? {
            Some(info) => (info, false),
            None => {
                // Only the token's own account gets a repository created: learn it if unknown.
                let login = match login {
                    Some(l) => l,
                    None => {
                        let l = me.http.user()?.login;
                        me.persisted().facts.login = Some(l.clone());
                        l
                    }
                };
                (me.create_repo(Some(&login))?, true)
            }
        };
        if s.branch.is_none() {
            let b = info["default_branch"].as_str().unwrap_or("main");
            if !valid_branch(b) {
                return Err(RemoteError::Corrupt(format!("the default branch {:?} of {} is not a valid branch name", truncate(b, 100), me.name())));
            }
            me.branch = b.to_owned();
        }
        me.check_private(&info)?;
        // A new repository has only its default branch (readable after a moment); a configured
        // other branch is created by the first commit.
        if created && s.branch.as_deref().is_none_or(|b| info["default_branch"].as_str() == Some(b)) {
            me.wait_for_ref();
        }
        me.ensure_initialised()?;
        {
            let mut p = me.persisted();
            p.facts.owner = me.owner.clone();
            p.facts.repo = me.repo.clone();
            p.facts.branch = me.branch.clone();
        }
        me.save_persisted();
        Ok(me)
    }

    fn with_http(http: Http, owner: &str, repo: &str, branch: &str, cache_file: Option<PathBuf>, mut persisted: Persisted) -> Self {
        persisted.facts.api_url = http.api_url.clone();
        persisted.facts.owner = owner.to_owned();
        persisted.facts.repo = repo.to_owned();
        persisted.facts.branch = branch.to_owned();
        let mut cache = Cache::default();
        if let Some(snap) = persisted.snapshot.take() {
            cache.insert(
                Version(snap.version),
                Snapshot { tree_sha: snap.tree_sha, manifest: snap.manifest, files: snap.files, not_files: snap.not_files },
            );
        }
        GithubRemote {
            http,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            limits: Limits::default(),
            chunk_bytes: CHUNK_BYTES,
            cache: Mutex::new(cache),
            persist: Mutex::new(persisted),
            cache_file,
            prefetched: Mutex::new(HashMap::new()),
            last_ref_status: Mutex::new(0),
        }
    }

    /// Replaces the size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the size above which items are stored in chunks (tests use a small one).
    pub fn with_chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n.max(1);
        self
    }

    /// Replaces the unit of retry waits (tests use a short one).
    pub fn with_retry_unit(mut self, unit: Duration) -> Self {
        self.http.set_backoff(unit);
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }
    pub fn repo(&self) -> &str {
        &self.repo
    }
    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persisted(&self) -> std::sync::MutexGuard<'_, Persisted> {
        self.persist.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is remembered between runs (with the head's snapshot, when cached).
    fn save_persisted(&self) {
        let Some(path) = &self.cache_file else { return };
        let rate = self.http.rate();
        let mut p = self.persisted().clone();
        if rate != http::RateInfo::default() {
            p.facts.rate = rate;
            p.facts.rate_s = Some(now_secs());
        }
        {
            // The head's snapshot when known, else the newest one read: later runs start from it
            // (compare) instead of listing the whole tree.
            let c = self.cache();
            let pick = p
                .head
                .clone()
                .map(Version)
                .filter(|v| c.snapshots.contains_key(v))
                .or_else(|| c.last_read.clone().filter(|v| c.snapshots.contains_key(v)))
                .or_else(|| c.order.back().cloned());
            if let Some(v) = pick
                && let Some(s) = c.snapshots.get(&v)
            {
                p.snapshot = Some(StoredSnapshot {
                    version: v.0,
                    tree_sha: s.tree_sha.clone(),
                    manifest: s.manifest.clone(),
                    files: s.files.clone(),
                    not_files: s.not_files.clone(),
                });
            }
        }
        *self.persisted() = Persisted { snapshot: None, ..p.clone() };
        cache::save(path, &p);
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.repo)
    }

    fn name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    // ---- HTTP ------------------------------------------------------------------------------

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Resp, RemoteError> {
        self.http.send(method, path, body, None)
    }

    fn http_error(&self, what: &str, r: &Resp) -> RemoteError {
        self.http.error(what, &self.name(), r)
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, r: &Resp) -> Result<T, RemoteError> {
        self.http.parse(what, &self.name(), r)
    }

    // ---- the repository --------------------------------------------------------------------

    /// `GET /repos/{o}/{r}` (conditional when an ETag is known): the repository's JSON, Some(Null)
    /// when unchanged since `etag`'s answer, None when it does not exist.
    fn read_repo(&self, etag: Option<&str>) -> Result<Option<Value>, RemoteError> {
        let what = format!("read the repository {}", self.name());
        let r = self.http.send("GET", &self.repo_path(), None, etag)?;
        match r.status {
            200 => {
                self.persisted().repo_etag = r.etag.clone();
                Ok(Some(self.parse(&what, &r)?))
            }
            304 => Ok(Some(Value::Null)),
            404 => Ok(None),
            _ => Err(self.http_error(&what, &r)),
        }
    }

    /// Refuses a repository that is not private.
    fn check_private(&self, info: &Value) -> Result<(), RemoteError> {
        let private = info["private"].as_bool();
        let visibility = info["visibility"].as_str().unwrap_or(if private == Some(true) { "private" } else { "" });
        if private != Some(true) || visibility == "public" {
            return Err(RemoteError::Denied(format!(
                "the GitHub repository {} is public (or its visibility is unknown): anyone could read your synced \
                 configuration and credentials. oc-sync only syncs into private repositories: make it private \
                 (Settings → General → Danger Zone → Change visibility) or set repoName to another repository",
                self.name()
            )));
        }
        let mut p = self.persisted();
        p.facts.visibility = visibility.to_owned();
        p.facts.checked_s = now_secs();
        Ok(())
    }

    /// Checks the repository is (still) private: always when `force`, else when the last check
    /// is older than [`VISIBILITY_TTL_S`]. Conditional, so an unchanged repository costs no rate limit.
    fn ensure_private(&self, force: bool) -> Result<(), RemoteError> {
        let (checked, etag) = {
            let p = self.persisted();
            (p.facts.checked_s, p.repo_etag.clone())
        };
        if !force && now_secs().saturating_sub(checked) < VISIBILITY_TTL_S && !self.persisted().facts.visibility.is_empty() {
            return Ok(());
        }
        let etag = if force { None } else { etag };
        match self.read_repo(etag.as_deref())? {
            Some(Value::Null) => {
                self.persisted().facts.checked_s = now_secs();
                Ok(())
            }
            Some(info) => self.check_private(&info),
            None => Err(RemoteError::Denied(format!(
                "the repository {} does not exist, or the token cannot see it (a fine-grained token must be \
                 granted access to this repository)",
                self.name()
            ))),
        }
    }

    /// Creates the sync repository (private, with an initial commit) in the token's account.
    fn create_repo(&self, login: Option<&str>) -> Result<Value, RemoteError> {
        if login.is_none_or(|l| !l.eq_ignore_ascii_case(&self.owner)) {
            return Err(RemoteError::Denied(format!(
                "the repository {} does not exist (or the token cannot see it). oc-sync creates the sync repository \
                 only in your own account: create {} as a private repository yourself, or remove repoOwner",
                self.name(),
                self.name()
            )));
        }
        let what = format!("create the private repository {}", self.name());
        let body = json!({
            "name": self.repo,
            "private": true,
            "auto_init": true,
            "description": "OpenCode settings and sessions synced by oc-sync (keep this repository private)",
        });
        let r = self.send("POST", "/user/repos", Some(&body))?;
        match r.status {
            201 => {
                tracing::info!("created the private repository {}", self.name());
                self.parse(&what, &r)
            }
            // Another machine created it a moment ago.
            422 => match self.read_repo(None)? {
                Some(info) => Ok(info),
                None => Err(self.http_error(&what, &r)),
            },
            _ => Err(self.http_error(&what, &r)),
        }
    }

    /// Right after creation GitHub may not serve the branch yet (404/409 for a moment): waits
    /// for it a few seconds. A branch that stays missing is fine (the first sync creates it).
    fn wait_for_ref(&self) {
        for attempt in 0..8u32 {
            match self.read_head() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {}
            }
            if attempt < 7 {
                std::thread::sleep(Duration::from_millis(250 * u64::from(attempt + 1)).min(Duration::from_secs(2)));
            }
        }
    }

    /// A repository without any commit (created without a README) refuses the Git Data API
    /// (409 "Git Repository is empty"): gives it a first commit through the contents API.
    fn ensure_initialised(&self) -> Result<(), RemoteError> {
        if self.cache().last_head.as_ref().is_some_and(Option::is_some) {
            return Ok(());
        }
        let what = format!("check whether {} has any commit", self.name());
        if self.read_head()?.is_some() || *self.last_ref_status.lock().unwrap_or_else(|e| e.into_inner()) != 409 {
            return Ok(());
        }
        let what_init = format!("create the first commit of the empty repository {}", self.name());
        let text = "This private repository holds OpenCode settings synced by oc-sync.\n";
        let body = json!({
            "message": "oc-sync: initialise the sync repository",
            "content": B64.encode(text),
            "branch": self.branch,
        });
        let r = self.send("PUT", &format!("{}/contents/.oc-sync/README.md", self.repo_path()), Some(&body))?;
        match r.status {
            200 | 201 => {
                self.record_content_writes(1);
                self.read_head()?;
                Ok(())
            }
            // Someone else initialised it meanwhile.
            409 | 422 => {
                self.read_head()?;
                Ok(())
            }
            _ => Err(self.http_error(if r.status == 404 { &what } else { &what_init }, &r)),
        }
    }

    // ---- GitHub's content-creation limits ----------------------------------------------------

    /// Waits or refuses so that `n` more content-creating requests stay under GitHub's secondary
    /// limits (80/minute, 500/hour) across runs: sync bursts are coalesced rather than refused by GitHub.
    fn reserve_content_writes(&self, n: usize) -> Result<(), RemoteError> {
        let now = now_secs();
        let mut p = self.persisted();
        p.content_writes.retain(|t| now.saturating_sub(*t) < 3600);
        if p.content_writes.len() + n > CONTENT_PER_HOUR && !p.content_writes.is_empty() {
            let oldest = p.content_writes.iter().min().copied().unwrap_or(now);
            let wait = (oldest + 3600).saturating_sub(now);
            return Err(RemoteError::RateLimited(format!(
                "oc-sync holds this push for {wait} seconds to stay under GitHub's limit of 500 content-creating \
                 requests per hour; your changes are kept and pushed then"
            )));
        }
        let last_minute = p.content_writes.iter().filter(|t| now.saturating_sub(**t) < 60).count();
        if last_minute + n > CONTENT_PER_MINUTE && last_minute > 0 {
            return Err(RemoteError::RateLimited(
                "oc-sync holds this push for up to a minute to stay under GitHub's limit of 80 content-creating \
                 requests per minute; your changes are kept and pushed then"
                    .into(),
            ));
        }
        Ok(())
    }

    fn record_content_writes(&self, n: usize) {
        let now = now_secs();
        let mut p = self.persisted();
        p.content_writes.extend(std::iter::repeat_n(now, n));
        let excess = p.content_writes.len().saturating_sub(CONTENT_PER_HOUR * 2);
        p.content_writes.drain(..excess);
    }

    // ---- reads -----------------------------------------------------------------------------

    /// The branch head: a conditional request when an ETag is known (a 304 answer is free).
    fn read_head(&self) -> Result<Option<Version>, RemoteError> {
        let what = format!("read branch {} of {}", self.branch, self.name());
        let (etag, known) = {
            let p = self.persisted();
            (p.ref_etag.clone(), p.head.clone())
        };
        let etag = etag.filter(|_| known.is_some());
        let r = self.http.send("GET", &format!("{}/git/ref/heads/{}", self.repo_path(), self.branch), None, etag.as_deref())?;
        let head = match r.status {
            304 => known.map(Version),
            200 => {
                let v: Value = self.parse(&what, &r)?;
                let sha = v["object"]["sha"].as_str().unwrap_or("");
                if !valid_oid(sha) {
                    return Err(RemoteError::Corrupt(format!(
                        "branch {} of {} points at {:?}, not a commit id",
                        self.branch,
                        self.name(),
                        truncate(sha, 80)
                    )));
                }
                let changed = {
                    let mut p = self.persisted();
                    let changed = p.ref_etag != r.etag || p.head.as_deref() != Some(sha);
                    p.ref_etag = r.etag.clone();
                    p.head = Some(sha.to_owned());
                    changed
                };
                if changed {
                    self.save_persisted();
                }
                Some(Version(sha.to_owned()))
            }
            // 404: no such branch yet; 409: "Git Repository is empty".
            404 | 409 => {
                *self.last_ref_status.lock().unwrap_or_else(|e| e.into_inner()) = r.status;
                let mut p = self.persisted();
                p.ref_etag = None;
                p.head = None;
                None
            }
            _ => return Err(self.http_error(&what, &r)),
        };
        self.cache().last_head = Some(head.clone());
        Ok(head)
    }
    fn get_blob_bytes(&self, sha: &str, cap: u64, what: &str) -> Result<Vec<u8>, RemoteError> {
        if !valid_oid(sha) {
            return Err(RemoteError::Corrupt(format!(
                "{what} in {} names {:?}, not a blob id",
                self.name(),
                truncate(sha, 80)
            )));
        }
        let r = self.send(
            "GET",
            &format!("{}/git/blobs/{sha}", self.repo_path()),
            None,
        )?;
        if r.status != 200 {
            return Err(self.http_error(&format!("read {what}"), &r));
        }
        // The base64 body is ~4/3 of the bytes; refuse early if it is far too big.
        if r.body.len() as u64 > cap.saturating_mul(2).saturating_add(4096) {
            return Err(RemoteError::Corrupt(format!(
                "{what} in {} is over the {cap} byte limit",
                self.name()
            )));
        }
        let b: BlobBody = self.parse(&format!("read {what}"), &r)?;
        if b.size.is_some_and(|s| s > cap) {
            return Err(RemoteError::Corrupt(format!(
                "{what} in {} is {} bytes, over the {cap} byte limit",
                self.name(),
                b.size.unwrap_or(0)
            )));
        }
        let bytes = match b.encoding.as_str() {
            "base64" | "" => {
                let clean: String = b.content.chars().filter(|c| !c.is_whitespace()).collect();
                B64.decode(clean.as_bytes()).map_err(|e| {
                    RemoteError::Corrupt(format!(
                        "{what} in {} is not valid base64: {e}",
                        self.name()
                    ))
                })?
            }
            "utf-8" | "utf8" => b.content.into_bytes(),
            other => {
                return Err(RemoteError::Corrupt(format!(
                    "{what} in {} has unknown encoding {:?}",
                    self.name(),
                    truncate(other, 40)
                )));
            }
        };
        if bytes.len() as u64 > cap {
            return Err(RemoteError::Corrupt(format!(
                "{what} in {} is {} bytes, over the {cap} byte limit",
                self.name(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Lists the tree of `treeish` (a commit or tree sha): its root tree sha, every plain file
    /// (path → blob sha) and every entry that is not one (path → what it is). Walks sub-trees
    /// when the recursive listing is truncated.
    fn list_tree(&self, treeish: &str) -> Result<Listed, RemoteError> {
        let what = format!("list the files of {treeish}");
        let r = self.send(
            "GET",
            &format!("{}/git/trees/{treeish}?recursive=1", self.repo_path()),
            None,
        )?;
        if r.status != 200 {
            return Err(self.http_error(&what, &r));
        }
        let listing: TreeListing = self.parse(&what, &r)?;
        if !valid_oid(&listing.sha) {
            return Err(RemoteError::Corrupt(format!(
                "tree of {treeish} in {} has an invalid id",
                self.name()
            )));
        }
        let mut files = HashMap::new();
        let mut not_files = HashMap::new();
        let mut take = |path: String, item: &TreeItem| match not_a_file(&item.kind, &item.mode) {
            None => {
                files.insert(path, Some(item.sha.clone()));
            }
            Some(what) => {
                not_files.insert(path, what.to_string());
            }
        };
        if !listing.truncated {
            for item in listing.tree.iter().filter(|i| i.kind != "tree") {
                take(item.path.clone(), item);
            }
            return Ok((listing.sha, files, not_files));
        }
        // Truncated: walk the trees one level at a time.
        let mut pending = vec![(String::new(), listing.sha.clone())];
        let mut visited = 0usize;
        while let Some((prefix, sha)) = pending.pop() {
            visited += 1;
            if visited > 100_000 {
                return Err(RemoteError::Corrupt(format!(
                    "the tree of {treeish} in {} has too many folders",
                    self.name()
                )));
            }
            if !valid_oid(&sha) {
                return Err(RemoteError::Corrupt(format!(
                    "a folder in {} has an invalid tree id",
                    self.name()
                )));
            }
            let r = self.send(
                "GET",
                &format!("{}/git/trees/{sha}", self.repo_path()),
                None,
            )?;
            if r.status != 200 {
                return Err(self.http_error(&what, &r));
            }
            let level: TreeListing = self.parse(&what, &r)?;
            for item in level.tree {
                let path = if prefix.is_empty() {
                    item.path.clone()
                } else {
                    format!("{prefix}/{}", item.path)
                };
                match item.kind.as_str() {
                    "tree" => pending.push((path, item.sha)),
                    _ => take(path, &item),
                }
            }
        }
        Ok((listing.sha, files, not_files))
    }

    fn parse_manifest(&self, at: &Version, bytes: &[u8]) -> Result<Manifest, RemoteError> {
        let what = format!("{MANIFEST_PATH} of commit {at} in {}", self.describe());
        let m: Manifest = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                if let Ok(f) = serde_json::from_slice::<FormatOnly>(bytes)
                    && f.format > MANIFEST_FORMAT
                {
                    return Err(RemoteError::UnsupportedFormat {
                        found: f.format,
                        supported: MANIFEST_FORMAT,
                    });
                }
                return Err(RemoteError::Corrupt(format!(
                    "{what} is not a valid manifest: {e}"
                )));
            }
        };
        m.validate(&what)?;
        Ok(m)
    }

    /// The snapshot of `at`, from the cache or GitHub (tree listing + manifest blob).
    fn snapshot(&self, at: &Version) -> Result<Snapshot, RemoteError> {
        if !valid_oid(&at.0) {
            return Err(RemoteError::Corrupt(format!(
                "version {:?} of {} is not a commit id",
                truncate(&at.0, 80),
                self.describe()
            )));
        }
        if let Some(s) = self.cache().snapshots.get(at) {
            return Ok(s.clone());
        }
        let snap = match self.snapshot_by_compare(at)? {
            Some(s) => s,
            None => {
                let (tree_sha, files, not_files) = self.list_tree(&at.0)?;
                if let Some(what) = not_files.get(MANIFEST_PATH) {
                    return Err(RemoteError::Corrupt(format!("{MANIFEST_PATH} in commit {at} of {} is {what}, not a file", self.describe())));
                }
                let manifest = self.read_manifest(at, files.get(MANIFEST_PATH))?;
                Snapshot { tree_sha, manifest, files, not_files }
            }
        };
        self.cache().insert(at.clone(), snap.clone());
        if self.persisted().head.as_deref() == Some(at.0.as_str()) {
            self.save_persisted();
        }
        Ok(snap)
    }

    fn read_manifest(&self, at: &Version, sha: Option<&Option<String>>) -> Result<Manifest, RemoteError> {
        match sha {
            // A repository oc-sync has not written to yet.
            None => Ok(Manifest::default()),
            Some(sha) => {
                let sha = sha.as_deref().unwrap_or_default();
                let bytes = self.get_blob_bytes(sha, self.limits.max_manifest_bytes, MANIFEST_PATH)?;
                self.parse_manifest(at, &bytes)
            }
        }
    }

    // ---- writes ----------------------------------------------------------------------------

    fn post_json(&self, what: &str, path: &str, body: &Value) -> Result<Value, RemoteError> {
        let r = self.send("POST", &format!("{}{path}", self.repo_path()), Some(body))?;
        if r.status != 201 && r.status != 200 {
            return Err(self.http_error(what, &r));
        }
        self.parse(what, &r)
    }

    fn sha_of(&self, what: &str, v: &Value) -> Result<String, RemoteError> {
        match v["sha"].as_str() {
            Some(s) if valid_oid(s) => Ok(s.to_owned()),
            _ => Err(RemoteError::Corrupt(format!(
                "GitHub's answer to {what} in {} has no valid sha",
                self.name()
            ))),
        }
    }

    /// The part paths and blob shas of a chunked item with `hash`, in order, if the last-read
    /// (or newest cached) snapshot stores it in parts.
    fn chunk_parts(&self, hash: &str) -> Option<Vec<(String, Option<String>)>> {
        let c = self.cache();
        let at = c.last_read.clone().or_else(|| c.order.back().cloned())?;
        let snap = c.snapshots.get(&at)?;
        let prefix = format!("{CHUNKS_DIR}/{hash}/");
        let mut parts: Vec<(String, Option<String>)> =
            snap.files.iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(p, s)| (p.clone(), s.clone())).collect();
        if parts.is_empty() {
            return None;
        }
        parts.sort();
        Some(parts)
    }

    /// Reads a chunked item's parts and checks the whole against its sha256.
    fn read_chunked(&self, hash: &str, parts: &[(String, Option<String>)]) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::new();
        for (i, (path, sha)) in parts.iter().enumerate() {
            if *path != format!("{CHUNKS_DIR}/{hash}/{i:05}") {
                return Err(RemoteError::Corrupt(format!("the parts of blob {hash} in {} are not numbered 0..{}", self.describe(), parts.len())));
            }
            let sha = match sha {
                Some(s) => s.clone(),
                None => return Err(RemoteError::Corrupt(format!("part {path} in {} has no known blob id", self.describe()))),
            };
            let cap = self.limits.max_blob_bytes.saturating_sub(out.len() as u64);
            out.extend(self.get_blob_bytes(&sha, cap, path)?);
        }
        let actual = sha256_hex(&out);
        if actual != hash {
            return Err(RemoteError::Corrupt(format!(
                "the parts of blob {hash} in {} join to content hashing to {actual}: a part is missing or altered",
                self.describe()
            )));
        }
        Ok(out)
    }

    /// The git blob sha of some file holding `hash` in the last-read (or any cached) snapshot.
    fn locate_blob(&self, hash: &str) -> Result<Option<String>, RemoteError> {
        let candidates: Vec<Version> = {
            let c = self.cache();
            let mut v: Vec<Version> = c.last_read.iter().cloned().collect();
            v.extend(
                c.order
                    .iter()
                    .rev()
                    .filter(|x| Some(*x) != c.last_read.as_ref())
                    .cloned(),
            );
            v
        };
        for at in candidates {
            let Some(snap) = self.cache().snapshots.get(&at).cloned() else {
                continue;
            };
            let keys: Vec<&String> = snap
                .manifest
                .entries
                .iter()
                .filter(|(_, e)| e.hash.as_deref() == Some(hash))
                .map(|(k, _)| k)
                .collect();
            if keys.is_empty() {
                continue;
            }
            if let Some(sha) = keys
                .iter()
                .find_map(|k| snap.files.get(*k).cloned().flatten())
            {
                return Ok(Some(sha));
            }
            if keys
                .iter()
                .any(|k| matches!(snap.files.get(*k), Some(None)))
            {
                // Our own commit wrote it inline: list the tree once to learn the sha.
                let (tree_sha, files, not_files) = self.list_tree(&at.0)?;
                let found = keys.iter().find_map(|k| files.get(*k).cloned().flatten());
                let mut full = snap.clone();
                full.tree_sha = tree_sha;
                full.files = files;
                full.not_files = not_files;
                self.cache().insert(at.clone(), full);
                if found.is_some() {
                    return Ok(found);
                }
            }
            return Err(RemoteError::Corrupt(format!(
                "the manifest of commit {at} in {} lists blob {hash} (for {}), but the file is \
                 missing from the commit",
                self.describe(),
                keys[0]
            )));
        }
        Ok(None)
    }
}

impl Remote for GithubRemote {
    fn describe(&self) -> String {
        let host = match self.http.api_host.as_str() {
            "api.github.com" => "github.com",
            h => h,
        };
        format!(
            "GitHub repository {host}/{}/{} (branch {})",
            self.owner, self.repo, self.branch
        )
    }

    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.read_head()
    }

    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        let snap = self.snapshot(at)?;
        self.cache().last_read = Some(at.clone());
        Ok(snap.manifest)
    }

    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        validate_hash(hash).map_err(|m| {
            RemoteError::Corrupt(format!("blob requested from {}: {m}", self.describe()))
        })?;
        if let Some(bytes) = self.prefetched.lock().unwrap_or_else(|e| e.into_inner()).remove(hash) {
            return Ok(bytes);
        }
        if let Some(parts) = self.chunk_parts(hash) {
            return self.read_chunked(hash, &parts);
        }
        let Some(sha) = self.locate_blob(hash)? else {
            return Err(RemoteError::Corrupt(format!(
                "blob {hash} is not listed in any manifest read from {} (read the manifest first)",
                self.describe()
            )));
        };
        let bytes =
            self.get_blob_bytes(&sha, self.limits.max_blob_bytes, &format!("blob {sha}"))?;
        let actual = sha256_hex(&bytes);
        if actual != hash {
            return Err(RemoteError::Corrupt(format!(
                "git blob {sha} in {} hashes to {actual}, not to {hash} as its manifest says",
                self.describe()
            )));
        }
        Ok(bytes)
    }

    fn refused_keys(&self) -> Vec<(String, String)> {
        let c = self.cache();
        let Some(snap) = c.last_read.as_ref().and_then(|v| c.snapshots.get(v)) else { return Vec::new() };
        snap.manifest
            .entries
            .iter()
            .filter(|(_, e)| !e.is_tombstone())
            .filter_map(|(k, _)| {
                let what = snap.not_files.get(k)?;
                Some((k.clone(), format!("{what} in the repository: refused (oc-sync only reads plain files)")))
            })
            .collect()
    }

    fn prefetch(&self, hashes: &[String]) -> Result<(), RemoteError> {
        if hashes.len() < TARBALL_MIN_BLOBS {
            return Ok(());
        }
        let Some(at) = self.cache().last_read.clone() else { return Ok(()) };
        let Some(snap) = self.cache().snapshots.get(&at).cloned() else { return Ok(()) };
        let want: HashSet<&str> = hashes.iter().map(String::as_str).collect();
        let wanted: HashMap<String, String> = snap
            .manifest
            .entries
            .iter()
            .filter_map(|(k, e)| e.hash.as_deref().filter(|h| want.contains(h)).map(|h| (k.clone(), h.to_owned())))
            .filter(|(k, _)| snap.files.contains_key(k))
            .collect();
        if wanted.len() < TARBALL_MIN_BLOBS {
            return Ok(());
        }
        let total: u64 = snap.manifest.entries.values().map(|e| e.size).sum::<u64>().saturating_mul(2).saturating_add(1 << 20);
        let (status, gz) = self.http.get_bytes(&format!("{}/tarball/{}", self.repo_path(), at.0), total)?;
        if status != 200 {
            // Not fatal: the blobs are fetched one by one instead.
            tracing::info!("bulk download of {} from {} failed (HTTP {status}); fetching files one by one", at, self.describe());
            return Ok(());
        }
        match tarball::extract(&gz[..], &wanted, self.limits.max_blob_bytes, total) {
            Ok(out) => {
                tracing::info!("bulk download: {} files from one tarball of {} bytes ({} skipped)", out.blobs.len(), gz.len(), out.rejected);
                self.prefetched.lock().unwrap_or_else(|e| e.into_inner()).extend(out.blobs);
            }
            Err(e) => tracing::info!("bulk download of {} from {}: {e}; fetching files one by one", at, self.describe()),
        }
        Ok(())
    }

    fn commit(
        &self,
        expected: Option<&Version>,
        changes: Changes,
    ) -> Result<CommitOutcome, RemoteError> {
        let out = self.do_commit(expected, changes);
        if out.is_err() {
            // We may not know where the branch is now.
            self.cache().last_head = None;
        }
        if let Ok(CommitOutcome::Conflict { current }) = &out {
            self.cache().last_head = Some(current.clone());
        }
        out
    }
}

pub mod cache;
mod commit;
mod compare;
pub mod http;
pub mod tarball;

#[cfg(test)]
mod tests;
