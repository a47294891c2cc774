//! The GitHub remote: a **private** GitHub repository, written through the Git Data API, in
//! repository format 2 (see [`crate::remote::envelope`]).
//!
//! Layout of the branch (readable by a person browsing the repository):
//!
//! ```text
//! config/opencode.json        each item at its key path: one header line `oc-sync-item 2 {entry}`,
//! messages/<p>/<s>/<m>.json   then the item's bytes as stored by the engine (ciphertext when a
//! ...                         codec encrypts them); a tombstone is the header alone
//! .oc-sync/format             "2"
//! .oc-sync/manifest.json      a stub saying format 2 (oc-sync 0.1 then stops: "upgrade oc-sync")
//! .oc-sync/chunks/<hash>/<i>  the parts of items too big for one GitHub file
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
//! Requests per call (see [`read`] for how reads follow what changed): `head` 1 (conditional:
//! free when nothing changed) plus, when the head moved, what `manifest` of it costs: 0 when the
//! tree index is at that commit, else one `compare` and one raw read per changed item file (one
//! tarball instead when many changed; a tree listing when the compare is not usable); `blob` 0
//! for what a read just brought, else 1 raw read (one per part); `commit` 3 (tree, commit, ref)
//! plus one `POST git/blobs` per item file that is not UTF-8 text or is over [`INLINE_MAX`] (and
//! per part), plus one `GET ref` when the last head this remote saw is not `expected`.
//!
//! **Blocking.** [`Remote`] is synchronous, so this type owns a small current-thread tokio
//! runtime and `block_on`s every call. Never call it (or drop it) from inside an async task of
//! another tokio runtime — tokio panics there. From async code use `tokio::task::spawn_blocking`
//! or a plain thread.
//!
//! The token is never put in an error message or a log line.

use std::collections::{BTreeMap, HashMap};
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
use self::read::{Listing, MemCache, State};

use super::tree_index::TreeIndex;
use super::{
    Changes, CommitOutcome, Limits, Manifest, Remote, RemoteError, Version, truncate, validate_hash,
};

/// Where format 1 kept its manifest (format 2 keeps a stub there).
pub const MANIFEST_PATH: &str = ".oc-sync/manifest.json";
/// Item files that are UTF-8 text up to this size go inline in the tree request; others are
/// uploaded with `POST git/blobs` first.
pub const INLINE_MAX: usize = 1 << 20;
/// Longest commit message sent.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Items larger than this are stored as several blobs under `.oc-sync/chunks/<sha256>/` (GitHub
/// refuses files over 100 MB); the entry's sha256 of the whole item is their checksum.
pub const CHUNK_BYTES: usize = 48 << 20;
/// Largest inline content sent in one `POST git/trees` request; more goes into further requests.
pub const TREE_REQUEST_MAX: usize = 8 << 20;
/// Where format 1 kept chunked items' parts (`<hash>/<i:05>`; format 2: `<hash>/<i>`).
pub const CHUNKS_DIR: &str = ".oc-sync/chunks";
/// A read needing at least this many item files downloads the commit's tarball instead.
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
    /// The tree index and what goes with it.
    state: Mutex<State>,
    /// Small item contents read recently, by sha256.
    mem: Mutex<MemCache>,
    /// Bigger item contents read in bulk, as files named by their sha256.
    blob_dir: PathBuf,
    /// Owns `blob_dir` when no data directory was configured.
    _blob_tmp: Option<tempfile::TempDir>,
    /// Where the tree index is kept between runs (None: nothing is written).
    index_file: Option<PathBuf>,
    /// The format-1 snapshot read by `format1` (for the upgrade).
    f1: Mutex<Option<format1::Snapshot1>>,
    /// What is remembered between runs, and where (None: nothing is written).
    persist: Mutex<Persisted>,
    cache_file: Option<PathBuf>,
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
    /// Where connection facts, ETags and the head snapshot are kept between runs; the tree index
    /// of the branch is kept next to it.
    pub cache_file: Option<PathBuf>,
    /// oc-sync's data directory: item contents read in bulk wait in `github-blobs/` there until
    /// the engine takes them (None: a temporary directory).
    pub data_dir: Option<PathBuf>,
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
        let me = GithubRemote::with_http(Http::new(api_url, token)?, owner, repo, branch, None, None, Persisted::default());
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
            let me = GithubRemote::with_http(http, &owner, &s.repo, &branch, s.cache_file.clone(), s.data_dir.clone(), p);
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
        let mut me = GithubRemote::with_http(http, &owner, &s.repo, s.branch.as_deref().unwrap_or("main"), s.cache_file.clone(), s.data_dir.clone(), persisted);
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
            me.index_file = s.cache_file.as_ref().map(|f| index_file_for(f, &me.http.api_url, &me.owner, &me.repo, &me.branch));
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

    fn with_http(
        http: Http,
        owner: &str,
        repo: &str,
        branch: &str,
        cache_file: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        mut persisted: Persisted,
    ) -> Self {
        persisted.facts.api_url = http.api_url.clone();
        persisted.facts.owner = owner.to_owned();
        persisted.facts.repo = repo.to_owned();
        persisted.facts.branch = branch.to_owned();
        let index_file = cache_file.as_ref().map(|f| index_file_for(f, &http.api_url, owner, repo, branch));
        let mut state = State::default();
        let extras = persisted.snapshot.take();
        if let Some(file) = &index_file {
            let ix = TreeIndex::load(file);
            if let Some(x) = extras.filter(|x| ix.version.as_ref().is_some_and(|v| v.0 == x.version)) {
                state = State { ix, tree_sha: Some(x.tree_sha), own_files: x.own_files, not_files: x.not_files, last_head: None };
            }
        }
        let (blob_dir, blob_tmp) = match data_dir.map(|d| d.join("github-blobs")) {
            // Created when first needed (a bulk read, a big item).
            Some(d) => (d, None),
            None => {
                let t = tempfile::TempDir::new().ok();
                (t.as_ref().map_or_else(std::env::temp_dir, |t| t.path().to_path_buf()), t)
            }
        };
        GithubRemote {
            http,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            limits: Limits::default(),
            chunk_bytes: CHUNK_BYTES,
            state: Mutex::new(state),
            mem: Mutex::new(MemCache::default()),
            blob_dir,
            _blob_tmp: blob_tmp,
            index_file,
            f1: Mutex::new(None),
            persist: Mutex::new(persisted),
            cache_file,
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, MemCache> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persisted(&self) -> std::sync::MutexGuard<'_, Persisted> {
        self.persist.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is remembered between runs.
    fn save_persisted(&self) {
        let Some(path) = &self.cache_file else { return };
        let rate = self.http.rate();
        let mut p = self.persisted().clone();
        if rate != http::RateInfo::default() {
            p.facts.rate = rate;
            p.facts.rate_s = Some(now_secs());
        }
        {
            let s = self.state();
            p.snapshot = match (&s.ix.version, &s.tree_sha) {
                (Some(v), Some(t)) => Some(StoredSnapshot {
                    version: v.0.clone(),
                    tree_sha: t.clone(),
                    own_files: s.own_files.clone(),
                    not_files: s.not_files.clone(),
                }),
                _ => None,
            };
        }
        *self.persisted() = Persisted { snapshot: None, ..p.clone() };
        cache::save(path, &p);
    }

    /// Writes the tree index (and the facts that go with it).
    fn save_index(&self) {
        if let Some(file) = &self.index_file {
            let r = self.state().ix.save(file);
            if let Err(e) = r {
                tracing::warn!("cannot write {}: {e}", file.display());
            }
        }
        self.save_persisted();
    }

    /// The disk cache's directory, created (private) when missing.
    fn blob_dir(&self) -> Result<&std::path::Path, RemoteError> {
        if !self.blob_dir.is_dir() {
            std::fs::create_dir_all(&self.blob_dir)
                .map_err(|e| RemoteError::io(format!("cannot create {}", self.blob_dir.display()), e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&self.blob_dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        Ok(&self.blob_dir)
    }

    /// "GitHub repository ..." for messages.
    fn describe_repo(&self) -> String {
        self.describe()
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
        if self.state().last_head.as_ref().is_some_and(Option::is_some) {
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
        self.state().last_head = Some(head.clone());
        Ok(head)
    }
    /// Lists the tree of `treeish` (a commit or tree sha): its root tree sha, every plain file
    /// (path → blob sha, with sizes) and every entry that is not one (path → what it is). Walks
    /// sub-trees when the recursive listing is truncated.
    fn list_tree(&self, treeish: &str) -> Result<Listing, RemoteError> {
        let what = format!("list the files of {treeish}");
        let r = self.send("GET", &format!("{}/git/trees/{treeish}?recursive=1", self.repo_path()), None)?;
        if r.status != 200 {
            return Err(self.http_error(&what, &r));
        }
        let listing: TreeListing = self.parse(&what, &r)?;
        drop(r);
        if !valid_oid(&listing.sha) {
            return Err(RemoteError::Corrupt(format!("tree of {treeish} in {} has an invalid id", self.name())));
        }
        let mut out = Listing { tree_sha: listing.sha.clone(), files: HashMap::new(), sizes: HashMap::new(), not_files: BTreeMap::new() };
        let mut take = |path: String, item: &TreeItem| -> Result<(), RemoteError> {
            match not_a_file(&item.kind, &item.mode) {
                None => {
                    if !valid_oid(&item.sha) {
                        return Err(RemoteError::Corrupt(format!("{} in {} has an invalid blob id", truncate(&path, 120), self.name())));
                    }
                    if let Some(n) = item.size {
                        out.sizes.insert(path.clone(), n);
                    }
                    out.files.insert(path, item.sha.clone());
                }
                Some(what) => {
                    out.not_files.insert(path, what.to_string());
                }
            }
            Ok(())
        };
        if !listing.truncated {
            for item in listing.tree.iter().filter(|i| i.kind != "tree") {
                take(item.path.clone(), item)?;
            }
            return Ok(out);
        }
        // Truncated: walk the trees one level at a time.
        let mut pending = vec![(String::new(), listing.sha.clone())];
        let mut visited = 0usize;
        while let Some((prefix, sha)) = pending.pop() {
            visited += 1;
            if visited > 100_000 {
                return Err(RemoteError::Corrupt(format!("the tree of {treeish} in {} has too many folders", self.name())));
            }
            if !valid_oid(&sha) {
                return Err(RemoteError::Corrupt(format!("a folder in {} has an invalid tree id", self.name())));
            }
            let r = self.send("GET", &format!("{}/git/trees/{sha}", self.repo_path()), None)?;
            if r.status != 200 {
                return Err(self.http_error(&what, &r));
            }
            let level: TreeListing = self.parse(&what, &r)?;
            for item in level.tree {
                let path = if prefix.is_empty() { item.path.clone() } else { format!("{prefix}/{}", item.path) };
                match item.kind.as_str() {
                    "tree" => pending.push((path, item.sha)),
                    _ => take(path, &item)?,
                }
            }
        }
        Ok(out)
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

}

impl Remote for GithubRemote {
    fn describe(&self) -> String {
        let host = match self.http.api_host.as_str() {
            "api.github.com" => "github.com",
            h => h,
        };
        format!("GitHub repository {host}/{}/{} (branch {})", self.owner, self.repo, self.branch)
    }

    fn head(&self) -> Result<Option<Version>, RemoteError> {
        let head = self.read_head()?;
        // A moved head is read now (what changed, usually one compare): a format-1 branch is
        // noticed here, and `manifest` of it then costs nothing.
        if let Some(v) = &head {
            self.sync_index(v)?;
        }
        Ok(head)
    }

    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        self.sync_index(at)?;
        let s = self.state();
        if s.ix.version.as_ref() != Some(at) {
            return Err(RemoteError::Corrupt(format!("the snapshot {at} of {} changed while it was read", self.describe())));
        }
        let mut m = s.ix.manifest();
        // What is not a plain file at an item path is listed (so the engine refuses it by name,
        // see `refused_keys`) with a stand-in entry; its content is never read.
        for (key, what) in s.not_files.iter().filter(|(p, _)| read::is_item_path(p)) {
            if m.entries.contains_key(key) || super::validate_key(key).is_err() {
                continue;
            }
            m.entries.insert(
                key.clone(),
                super::Entry {
                    clock: Default::default(),
                    hash: Some(super::sha256_hex(format!("{key}: {what}").as_bytes())),
                    size: 0,
                    kind: "file".into(),
                    category: key.split('/').next().unwrap_or_default().to_owned(),
                    modified_ms: 0,
                    machine: "unknown".into(),
                    deleted_ms: None,
                },
            );
        }
        Ok(m)
    }

    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        validate_hash(hash).map_err(|m| RemoteError::Corrupt(format!("blob requested from {}: {m}", self.describe())))?;
        self.read_blob(hash)
    }

    fn refused_keys(&self) -> Vec<(String, String)> {
        let s = self.state();
        s.not_files
            .iter()
            .filter(|(p, _)| read::is_item_path(p))
            .map(|(k, what)| (k.clone(), format!("{what} in the repository: refused (oc-sync only reads plain files)")))
            .collect()
    }

    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        let out = self.do_commit(expected, changes);
        self.after_write(&out);
        out
    }

    fn format1(&self) -> Result<Option<(Version, Manifest)>, RemoteError> {
        self.read_format1()
    }

    fn format1_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        validate_hash(hash).map_err(|m| RemoteError::Corrupt(format!("blob requested from {}: {m}", self.describe())))?;
        self.read_format1_blob(hash)
    }

    fn upgrade(&self, from: &Version, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        if !valid_oid(&from.0) {
            return Err(RemoteError::InvalidChanges(format!("version {:?} is not a commit id", truncate(&from.0, 80))));
        }
        let out = self.do_upgrade(from, changes);
        self.after_write(&out);
        if matches!(out, Ok(CommitOutcome::Committed(_))) {
            *self.f1.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        out
    }
}

impl GithubRemote {
    fn after_write(&self, out: &Result<CommitOutcome, RemoteError>) {
        match out {
            // We may not know where the branch is now.
            Err(_) => self.state().last_head = None,
            Ok(CommitOutcome::Conflict { current }) => self.state().last_head = Some(current.clone()),
            Ok(CommitOutcome::Committed(_)) => {}
        }
    }
}

/// The tree index file of one api/owner/repo/branch, next to the cache file.
fn index_file_for(cache_file: &std::path::Path, api_url: &str, owner: &str, repo: &str, branch: &str) -> PathBuf {
    let id = &super::sha256_hex(format!("{api_url}\n{owner}\n{repo}\n{branch}").as_bytes())[..16];
    cache_file.with_file_name(format!("github-index-{id}.json"))
}

pub mod cache;
mod commit;
mod compare;
mod format1;
pub mod http;
pub mod read;
pub mod tarball;

#[cfg(test)]
mod tests;
