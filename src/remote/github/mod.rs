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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

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

const TOKEN_HELP: &str = "create a fine-grained personal access token with \"Contents: Read and \
     write\" on this repository (github.com → Settings → Developer settings → Personal access \
     tokens), or a classic token with the \"repo\" scope, and configure it";

/// A remote in a private GitHub repository. See the module docs.
pub struct GithubRemote {
    rt: tokio::runtime::Runtime,
    octo: Octocrab,
    /// Only used to scrub it out of error texts, never shown.
    token: String,
    api_url: String,
    owner: String,
    repo: String,
    branch: String,
    limits: Limits,
    cache: Mutex<Cache>,
}

impl fmt::Debug for GithubRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubRemote")
            .field("api_url", &self.api_url)
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
    /// Every blob path of the tree → its git blob sha; `None` for files our own commit wrote
    /// inline (their sha is learnt by listing the tree when needed).
    files: HashMap<String, Option<String>>,
}

/// One HTTP answer.
struct Resp {
    status: u16,
    retry_after: Option<String>,
    rate_remaining: Option<String>,
    rate_reset: Option<String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
    fn message(&self) -> String {
        self.json()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .map(|m| truncate(&m, 300).to_owned())
            .unwrap_or_default()
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl GithubRemote {
    /// Connects to `owner/repo` on the GitHub API at `api_url` (`https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server) with a personal access token, and
    /// checks that the repository exists, the token works, and the repository is private.
    /// Syncing into a public repository is refused. Must not be called from inside an async
    /// task (see the module docs).
    pub fn connect(
        api_url: &str,
        token: &str,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Self, RemoteError> {
        if !valid_name(owner) || !valid_name(repo) {
            return Err(RemoteError::Unreachable(format!(
                "{:?}/{:?} is not a valid GitHub repository name (letters, digits, '-', '_', '.')",
                truncate(owner, 100),
                truncate(repo, 100)
            )));
        }
        if !valid_branch(branch) {
            return Err(RemoteError::Unreachable(format!(
                "{:?} is not a valid branch name",
                truncate(branch, 100)
            )));
        }
        if token.trim().is_empty() {
            return Err(RemoteError::Unreachable(format!(
                "no GitHub token is configured: {TOKEN_HELP}"
            )));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::io("cannot start the GitHub client's runtime", e))?;
        let api = api_url.trim_end_matches('/').to_owned();
        let token_owned = token.trim().to_owned();
        // octocrab's builder needs a running tokio runtime.
        let octo = rt.block_on(async {
            Octocrab::builder()
                .base_uri(api.as_str())
                .map_err(|_| {
                    RemoteError::Unreachable(format!("{api:?} is not a valid GitHub API address"))
                })?
                .personal_token(token_owned.clone())
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(120)))
                .build()
                .map_err(|e| {
                    RemoteError::Unreachable(format!("cannot set up the GitHub client: {e}"))
                })
        })?;
        let me = GithubRemote {
            rt,
            octo,
            token: token_owned,
            api_url: api,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            limits: Limits::default(),
            cache: Mutex::new(Cache::default()),
        };
        me.check_repo()?;
        Ok(me)
    }

    /// Replaces the size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
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

    fn scrub(&self, s: &str) -> String {
        if self.token.len() >= 4 {
            s.replace(&self.token, "***")
        } else {
            s.to_owned()
        }
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.repo)
    }

    fn name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    // ---- HTTP ------------------------------------------------------------------------------

    /// Sends one request; transport failures are `Unreachable`. Any status is returned.
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Resp, RemoteError> {
        let what = format!("{method} {path}");
        let result = self.rt.block_on(async {
            let res = match method {
                "GET" => self.octo._get(path).await,
                "POST" => self.octo._post(path, body).await,
                "PATCH" => self.octo._patch(path, body).await,
                _ => unreachable!("unsupported method {method}"),
            }?;
            let header = |n: &str| {
                res.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let status = res.status().as_u16();
            let retry_after = header("retry-after");
            let rate_remaining = header("x-ratelimit-remaining");
            let rate_reset = header("x-ratelimit-reset");
            let body = self.octo.body_to_string(res).await?;
            Ok::<_, octocrab::Error>(Resp {
                status,
                retry_after,
                rate_remaining,
                rate_reset,
                body,
            })
        });
        result.map_err(|e| {
            RemoteError::Unreachable(self.scrub(&format!(
                "GitHub API at {} did not answer {what}: {e}",
                self.api_url
            )))
        })
    }

    /// The error for an unexpected answer to `what`.
    fn http_error(&self, what: &str, r: &Resp) -> RemoteError {
        let msg = r.message();
        let detail = if msg.is_empty() {
            format!("HTTP {}", r.status)
        } else {
            format!("HTTP {}: {msg}", r.status)
        };
        let text = match r.status {
            401 => {
                return RemoteError::Unreachable(format!(
                    "GitHub rejected the token ({detail}) while trying to {what}: it is wrong, \
                     expired or revoked. To fix it, {TOKEN_HELP}"
                ));
            }
            403 | 429 => {
                let retry = r
                    .retry_after
                    .as_deref()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                let exhausted = r.rate_remaining.as_deref().map(str::trim) == Some("0");
                if let Some(secs) = retry {
                    return RemoteError::Busy(format!(
                        "GitHub's rate limit was hit while trying to {what} ({detail}); retry \
                         after {secs} seconds"
                    ));
                }
                if exhausted || r.status == 429 || msg.to_ascii_lowercase().contains("rate limit") {
                    let wait = r
                        .rate_reset
                        .as_deref()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|reset| reset.saturating_sub(now_secs()));
                    return RemoteError::Busy(match wait {
                        Some(w) => format!(
                            "GitHub's rate limit was hit while trying to {what} ({detail}); it \
                             resets in {w} seconds, retry after that"
                        ),
                        None => format!(
                            "GitHub's rate limit was hit while trying to {what} ({detail}); \
                             retry in a few minutes"
                        ),
                    });
                }
                format!(
                    "GitHub refused to {what} ({detail}): the token lacks permission. It needs \
                     \"Contents: Read and write\" on {} (fine-grained token) or the \"repo\" scope \
                     (classic token)",
                    self.name()
                )
            }
            404 => format!(
                "GitHub answered \"not found\" while trying to {what}: the repository {} does not \
                 exist, or the token cannot see it (a fine-grained token must be granted access \
                 to this repository)",
                self.name()
            ),
            409 => format!(
                "GitHub could not {what} ({detail}); if the repository {} is empty, create it \
                 with an initial commit (\"Add a README file\")",
                self.name()
            ),
            s if s >= 500 => format!("GitHub had a server error while trying to {what} ({detail})"),
            _ => format!("GitHub refused to {what} ({detail})"),
        };
        RemoteError::Unreachable(self.scrub(&text))
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        r: &Resp,
    ) -> Result<T, RemoteError> {
        serde_json::from_str(&r.body).map_err(|e| {
            RemoteError::Corrupt(format!(
                "GitHub's answer to {what} for {} is not what was expected: {e}",
                self.name()
            ))
        })
    }

    // ---- reads -----------------------------------------------------------------------------

    fn check_repo(&self) -> Result<(), RemoteError> {
        let what = format!("read the repository {}", self.name());
        let r = self.send("GET", &self.repo_path(), None)?;
        if r.status != 200 {
            return Err(self.http_error(&what, &r));
        }
        let v: Value = self.parse(&what, &r)?;
        let private = v["private"].as_bool();
        let visibility = v["visibility"].as_str().unwrap_or("");
        if private != Some(true) || visibility == "public" {
            return Err(RemoteError::Corrupt(format!(
                "the GitHub repository {} is public (or its visibility is unknown): anyone could \
                 read your synced configuration and credentials. oc-sync only syncs into private \
                 repositories: make it private (Settings → General → Danger Zone → Change \
                 visibility) or configure a private one",
                self.name()
            )));
        }
        Ok(())
    }

    fn read_head(&self) -> Result<Option<Version>, RemoteError> {
        let what = format!("read branch {} of {}", self.branch, self.name());
        let r = self.send(
            "GET",
            &format!("{}/git/ref/heads/{}", self.repo_path(), self.branch),
            None,
        )?;
        let head = match r.status {
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
                Some(Version(sha.to_owned()))
            }
            // 404: no such branch yet; 409: "Git Repository is empty".
            404 | 409 => None,
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

    /// Lists every blob of the tree of `treeish` (a commit or tree sha): path → blob sha.
    /// Returns the root tree sha too. Walks sub-trees when the recursive listing is truncated.
    fn list_tree(
        &self,
        treeish: &str,
    ) -> Result<(String, HashMap<String, Option<String>>), RemoteError> {
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
        if !listing.truncated {
            for item in listing.tree {
                if item.kind == "blob" {
                    files.insert(item.path, Some(item.sha));
                }
            }
            return Ok((listing.sha, files));
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
                    item.path
                } else {
                    format!("{prefix}/{}", item.path)
                };
                match item.kind.as_str() {
                    "blob" => {
                        files.insert(path, Some(item.sha));
                    }
                    "tree" => pending.push((path, item.sha)),
                    _ => {}
                }
            }
        }
        Ok((listing.sha, files))
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
        let (tree_sha, files) = self.list_tree(&at.0)?;
        let manifest = match files.get(MANIFEST_PATH) {
            // A repository oc-sync has not written to yet.
            None => Manifest::default(),
            Some(sha) => {
                let sha = sha.as_deref().unwrap_or_default();
                let bytes =
                    self.get_blob_bytes(sha, self.limits.max_manifest_bytes, MANIFEST_PATH)?;
                self.parse_manifest(at, &bytes)?
            }
        };
        let snap = Snapshot {
            tree_sha,
            manifest,
            files,
        };
        self.cache().insert(at.clone(), snap.clone());
        Ok(snap)
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

    fn do_commit(
        &self,
        expected: Option<&Version>,
        changes: Changes,
    ) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        for key in changes.entries.keys().chain(changes.removed.iter()) {
            if key == ".oc-sync" || key.starts_with(".oc-sync/") {
                return Err(RemoteError::InvalidChanges(format!(
                    "key {key:?} is inside .oc-sync/, which the GitHub remote reserves"
                )));
            }
            if key.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
                return Err(RemoteError::InvalidChanges(format!(
                    "key {key:?} has a .git component, which GitHub refuses"
                )));
            }
        }
        if let Some(v) = expected
            && !valid_oid(&v.0)
        {
            return Err(RemoteError::InvalidChanges(format!(
                "expected version {:?} is not a commit id",
                truncate(&v.0, 80)
            )));
        }
        // Early check (saves creating objects for nothing). Skipped when this remote just saw
        // `expected` as the head: the fast-forward-only ref update is the real check.
        let seen = self.cache().last_head.clone();
        if seen.as_ref().map(Option::as_ref) != Some(expected) {
            let current = self.read_head()?;
            if current.as_ref() != expected {
                return Ok(CommitOutcome::Conflict { current });
            }
        }
        let base = match expected {
            Some(v) => Some(self.snapshot(v)?),
            None => None,
        };
        let empty = Manifest::default();
        let base_manifest = base.as_ref().map_or(&empty, |s| &s.manifest);
        let no_files = HashMap::new();
        let base_files = base.as_ref().map_or(&no_files, |s| &s.files);
        let new_manifest = base_manifest.apply(&changes);

        // Git blob sha of any base file holding `hash`.
        let known_sha = |hash: &str| -> Option<String> {
            base_manifest
                .entries
                .iter()
                .filter(|(_, e)| e.hash.as_deref() == Some(hash))
                .find_map(|(k, _)| base_files.get(k).cloned().flatten())
        };

        let mut tree: Vec<Value> = Vec::new();
        let mut new_files: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut uploaded: HashMap<String, String> = HashMap::new();
        for key in &changes.removed {
            if base_files.contains_key(key) {
                tree.push(json!({"path": key, "mode": "100644", "type": "blob", "sha": null}));
                new_files.insert(key.clone(), None);
            }
        }
        for (key, e) in &changes.entries {
            let Some(hash) = &e.hash else {
                if base_files.contains_key(key) {
                    tree.push(json!({"path": key, "mode": "100644", "type": "blob", "sha": null}));
                    new_files.insert(key.clone(), None);
                }
                continue;
            };
            let unchanged = base_manifest
                .entries
                .get(key)
                .is_some_and(|old| old.hash.as_ref() == Some(hash))
                && base_files.contains_key(key);
            if unchanged {
                continue;
            }
            if let Some(bytes) = changes.blobs.get(hash) {
                match std::str::from_utf8(bytes) {
                    Ok(text) if bytes.len() <= INLINE_MAX => {
                        tree.push(
                            json!({"path": key, "mode": "100644", "type": "blob", "content": text}),
                        );
                        new_files.insert(key.clone(), None);
                    }
                    _ => {
                        let sha = match uploaded.get(hash) {
                            Some(s) => s.clone(),
                            None => {
                                let what = format!("upload the content of {key}");
                                let v = self.post_json(
                                    &what,
                                    "/git/blobs",
                                    &json!({"content": B64.encode(bytes), "encoding": "base64"}),
                                )?;
                                let sha = self.sha_of(&what, &v)?;
                                uploaded.insert(hash.clone(), sha.clone());
                                sha
                            }
                        };
                        tree.push(
                            json!({"path": key, "mode": "100644", "type": "blob", "sha": sha}),
                        );
                        new_files.insert(key.clone(), Some(sha));
                    }
                }
            } else if let Some(sha) = known_sha(hash) {
                tree.push(json!({"path": key, "mode": "100644", "type": "blob", "sha": sha}));
                new_files.insert(key.clone(), Some(sha));
            } else {
                return Err(RemoteError::InvalidChanges(format!(
                    "entry {key:?} names blob {hash}, which is neither in the change set nor on \
                     the remote"
                )));
            }
        }
        let manifest_text = serde_json::to_string_pretty(&new_manifest).map_err(|e| {
            RemoteError::InvalidChanges(format!("cannot serialize the manifest: {e}"))
        })? + "\n";
        if manifest_text.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RemoteError::InvalidChanges(format!(
                "the new manifest would be {} bytes, over the {} byte limit",
                manifest_text.len(),
                self.limits.max_manifest_bytes
            )));
        }
        tree.push(json!({"path": MANIFEST_PATH, "mode": "100644", "type": "blob", "content": manifest_text}));
        new_files.insert(MANIFEST_PATH.to_owned(), None);

        let mut tree_body = json!({"tree": tree});
        if let Some(b) = &base {
            tree_body["base_tree"] = json!(b.tree_sha);
        }
        let what = format!("create the new file tree in {}", self.name());
        let v = self.post_json(&what, "/git/trees", &tree_body)?;
        let tree_sha = self.sha_of(&what, &v)?;

        let message = if changes.message.trim().is_empty() {
            "oc-sync".to_owned()
        } else {
            truncate(&changes.message, MAX_MESSAGE_BYTES).to_owned()
        };
        let parents: Vec<&str> = expected.iter().map(|v| v.0.as_str()).collect();
        let what = format!("create the sync commit in {}", self.name());
        let v = self.post_json(
            &what,
            "/git/commits",
            &json!({"message": message, "tree": tree_sha, "parents": parents}),
        )?;
        let commit_sha = self.sha_of(&what, &v)?;

        // The compare-and-swap.
        let what = format!("move branch {} of {}", self.branch, self.name());
        let r = match expected {
            Some(_) => self.send(
                "PATCH",
                &format!("{}/git/refs/heads/{}", self.repo_path(), self.branch),
                Some(&json!({"sha": commit_sha, "force": false})),
            )?,
            None => self.send(
                "POST",
                &format!("{}/git/refs", self.repo_path()),
                Some(&json!({"ref": format!("refs/heads/{}", self.branch), "sha": commit_sha})),
            )?,
        };
        match r.status {
            200 | 201 => {}
            // 422: not a fast forward / reference already exists; 409 after a concurrent change.
            422 | 409 => {
                let current = self.read_head()?;
                if current.as_ref() != expected {
                    return Ok(CommitOutcome::Conflict { current });
                }
                return Err(self.http_error(&what, &r));
            }
            _ => return Err(self.http_error(&what, &r)),
        }

        let version = Version(commit_sha);
        let mut files = base.map(|b| b.files).unwrap_or_default();
        for (path, sha) in new_files {
            match sha {
                Some(s) => {
                    files.insert(path, Some(s));
                }
                None if path == MANIFEST_PATH
                    || new_manifest
                        .entries
                        .get(&path)
                        .is_some_and(|e| e.hash.is_some()) =>
                {
                    // Written inline: the sha is unknown until the tree is listed.
                    files.insert(path, None);
                }
                None => {
                    files.remove(&path);
                }
            }
        }
        let mut cache = self.cache();
        cache.last_head = Some(Some(version.clone()));
        cache.insert(
            version.clone(),
            Snapshot {
                tree_sha,
                manifest: new_manifest,
                files,
            },
        );
        Ok(CommitOutcome::Committed(version))
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
                let (tree_sha, files) = self.list_tree(&at.0)?;
                let found = keys.iter().find_map(|k| files.get(*k).cloned().flatten());
                let mut full = snap.clone();
                full.tree_sha = tree_sha;
                full.files = files;
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
        let host = self
            .api_url
            .split("://")
            .nth(1)
            .unwrap_or(&self.api_url)
            .split('/')
            .next()
            .unwrap_or("");
        let host = if host == "api.github.com" {
            "github.com"
        } else {
            host
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
pub mod http;
pub mod tarball;

#[cfg(test)]
mod tests;
