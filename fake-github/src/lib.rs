#![recursion_limit = "512"]
//! A fake of GitHub's REST API (the Git Data API subset oc-sync needs), backed by real bare git
//! repositories, listening on 127.0.0.1 only. Start it in-process with [`FakeGithub::start`].

mod api;
mod git;
mod util;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use api::Response;

/// Options for [`FakeGithub::start`].
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Directory holding `<owner>/<name>.git` bare repositories. `None`: a fresh temporary
    /// directory, removed again by `stop()`/drop.
    pub root: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The one valid token; `None` generates a random `ghp_...` token.
    pub token: Option<String>,
    /// Login of the token's user (owner of repos created with `POST /user/repos`).
    pub login: String,
    /// Primary rate limit per hour (x-ratelimit-limit).
    pub rate_limit: u32,
    /// Secondary limit on content-creating requests (blobs, trees, commits, refs, repos).
    pub secondary_per_minute: u32,
    pub secondary_per_hour: u32,
    /// `GET .../git/trees/{sha}?recursive=1` lists at most this many entries, then `truncated: true`.
    pub tree_truncate_entries: usize,
    /// Files larger than this are rejected with 422 (GitHub: 100 MB).
    pub max_file_size: u64,
    /// `compare` lists at most this many files (GitHub: 300).
    pub compare_max_files: usize,
    /// Retry-After (seconds) sent with injected 403/429 faults.
    pub fault_retry_after: u64,
    /// After a repo is created with `POST /user/repos`, the next this-many
    /// `GET .../git/ref/...` / `GET .../git/refs/...` requests for that repo answer
    /// 409 "Git Repository is empty." even if it has its initial commit (as GitHub does in the
    /// moments right after creation). 0: off.
    pub ref_unreadable_after_create: u32,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            root: None,
            port: 0,
            token: None,
            login: "octo-user".into(),
            rate_limit: 5000,
            secondary_per_minute: 80,
            secondary_per_hour: 500,
            tree_truncate_entries: 100_000,
            max_file_size: 100 * 1024 * 1024,
            compare_max_files: 300,
            fault_retry_after: 60,
            ref_unreadable_after_create: 0,
        }
    }
}

/// One request as the fake saw it (after the optional `/api/v3` prefix was removed from `path`).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the `/api/v3` prefix, with the query string (if any).
    pub path: String,
    /// Status answered; 0 when the connection was dropped by a fault.
    pub status: u16,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
}

impl RecordedRequest {
    pub fn request_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.request_body).ok()
    }
    pub fn response_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.response_body).ok()
    }
}

/// What an injected fault does.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this status and a GitHub-like body (403/429 carry Retry-After and the
    /// secondary-rate-limit message; 409 "Git Repository is empty."; 422 "Validation Failed"...).
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Handle the request normally (its effects are applied), then close the connection without
    /// sending the answer: the client never learns that, say, its ref update went through.
    ApplyThenDrop,
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Handle the request normally, then change the last byte of a 200 answer's body (a server or
    /// proxy that serves other bytes than the ones asked for).
    Tamper,
}

/// A fault rule: the next `times` requests matching `method` (None: any) and the path glob
/// (`*` matches any characters, including `/`; matched against the path without `/api/v3`
/// and without the query string) get `action`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path: String,
    pub times: usize,
    pub action: FaultAction,
}

impl Fault {
    pub fn status(status: u16, path_glob: &str) -> Fault {
        Fault { method: None, path: path_glob.into(), times: 1, action: FaultAction::Status(status) }
    }
    pub fn drop_connection(path_glob: &str) -> Fault {
        Fault { method: None, path: path_glob.into(), times: 1, action: FaultAction::Drop }
    }
    pub fn apply_then_drop(path_glob: &str) -> Fault {
        Fault { method: None, path: path_glob.into(), times: 1, action: FaultAction::ApplyThenDrop }
    }
    pub fn tamper(path_glob: &str) -> Fault {
        Fault { method: None, path: path_glob.into(), times: 1, action: FaultAction::Tamper }
    }
    pub fn delay(d: Duration, path_glob: &str) -> Fault {
        Fault { method: None, path: path_glob.into(), times: 1, action: FaultAction::Delay(d) }
    }
    pub fn method(mut self, m: &str) -> Fault {
        self.method = Some(m.to_ascii_uppercase());
        self
    }
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
}

pub(crate) struct RaceRule {
    /// (owner, repo, branch); None matches any PATCH of a branch ref.
    pub target: Option<(String, String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct RepoMeta {
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub id: u64,
    pub created_at: i64,
    pub description: Option<String>,
}

pub(crate) struct State {
    pub repos: HashMap<(String, String), RepoMeta>,
    pub next_id: u64,
    pub requests: Vec<RecordedRequest>,
    pub faults: Vec<Fault>,
    pub races: Vec<RaceRule>,
    pub race_commits: Vec<String>,
    pub rate_remaining: u32,
    pub rate_reset: u64,
    pub secondary: VecDeque<Instant>,
    pub download_tokens: Vec<String>,
    /// (owner, name) -> ref reads still to answer with 409 (see
    /// [`FakeOptions::ref_unreadable_after_create`]).
    pub ref_unreadable: HashMap<(String, String), u32>,
}

pub(crate) struct Inner {
    pub opts: FakeOptions,
    pub root: PathBuf,
    pub token: String,
    pub url: String,
    pub state: Mutex<State>,
}

impl Inner {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn git_dir(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }

    /// Creates (or re-registers) a bare repo; returns false if it already existed.
    pub(crate) fn create_repo(&self, owner: &str, name: &str, private: bool, init: bool, description: Option<String>) -> bool {
        let key = (owner.to_string(), name.to_string());
        {
            let mut st = self.lock();
            if st.repos.contains_key(&key) {
                return false;
            }
            st.next_id += 1;
            let id = st.next_id;
            st.repos.insert(
                key,
                RepoMeta {
                    owner: owner.into(),
                    name: name.into(),
                    private,
                    id,
                    created_at: util::now_secs(),
                    description,
                },
            );
        }
        let dir = self.git_dir(owner, name);
        git::init_bare(&dir).expect("git init --bare");
        if init && git::is_empty_repo(&dir) {
            let blob = git::hash_blob(&dir, format!("# {name}\n").as_bytes()).expect("hash README");
            let tree = git::build_tree(
                &dir,
                None,
                &[git::TreeChange::Put { path: "README.md".into(), mode: "100644".into(), sha: blob }],
            )
            .expect("README tree");
            let ident = git::Ident { name: self.opts.login.clone(), email: format!("{}@users.noreply.github.com", self.opts.login), date: None };
            let commit = git::commit_tree(&dir, &tree, &[], "Initial commit", &ident, &ident).expect("initial commit");
            git::update_ref(&dir, "refs/heads/main", &commit, Some(git::ZERO_SHA)).expect("update-ref main");
        }
        true
    }

    /// Makes a commit on top of `branch` as "another machine" and moves the branch to it.
    pub(crate) fn commit_as_other_machine(&self, owner: &str, name: &str, branch: &str, files: &[(&str, &[u8])]) -> Result<String, String> {
        let entries: Vec<(&str, &str, &[u8])> = files.iter().map(|(p, c)| (*p, "100644", *c)).collect();
        self.commit_entries_as_other_machine(owner, name, branch, &entries)
    }

    /// Like [`Self::commit_as_other_machine`] with a git mode per entry: 100644/100755 (a file
    /// with `content`), 120000 (a symbolic link whose target is `content`) or 160000 (a submodule:
    /// `content` is the hex id of a commit in another repository, which need not exist here).
    pub(crate) fn commit_entries_as_other_machine(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
        entries: &[(&str, &str, &[u8])],
    ) -> Result<String, String> {
        let dir = self.git_dir(owner, name);
        let full = format!("refs/heads/{branch}");
        let head = git::resolve_ref(&dir, &full);
        let base_tree = head.as_ref().map(|h| format!("{h}^{{tree}}"));
        let mut changes = Vec::new();
        for (path, mode, content) in entries {
            let sha = match *mode {
                "100644" | "100755" | "120000" => git::hash_blob(&dir, content).map_err(|e| e.0)?,
                "160000" => {
                    let sha = String::from_utf8_lossy(content).trim().to_string();
                    if !git::is_valid_sha(&sha) {
                        return Err(format!("a submodule entry needs a commit id, not {sha:?}"));
                    }
                    sha
                }
                m => return Err(format!("unsupported mode {m}")),
            };
            changes.push(git::TreeChange::Put { path: path.to_string(), mode: mode.to_string(), sha });
        }
        let tree = git::build_tree(&dir, base_tree.as_deref(), &changes).map_err(|e| e.0)?;
        let ident = git::Ident { name: "Another Machine".into(), email: "other-machine@example.com".into(), date: None };
        let parents: Vec<String> = head.iter().cloned().collect();
        let commit = git::commit_tree(&dir, &tree, &parents, "Change from another machine\n", &ident, &ident).map_err(|e| e.0)?;
        git::update_ref(&dir, &full, &commit, Some(head.as_deref().unwrap_or(git::ZERO_SHA))).map_err(|e| e.0)?;
        Ok(commit)
    }
}

/// A running fake GitHub.
pub struct FakeGithub {
    /// `http://127.0.0.1:PORT` (the API also answers under `/api/v3`).
    pub url: String,
    pub root: PathBuf,
    inner: Arc<Inner>,
    server: Option<tokio::task::JoinHandle<()>>,
    remove_root: bool,
}

/// Injects faults into a running fake. Cheap to clone.
#[derive(Clone)]
pub struct FaultHandle {
    inner: Arc<Inner>,
}

impl FaultHandle {
    /// Adds a fault rule (rules are checked in insertion order; the first match with times left wins).
    pub fn inject(&self, fault: Fault) {
        self.inner.lock().faults.push(fault);
    }
    /// The next `times` requests matching the glob get `status`.
    pub fn fail_next(&self, path_glob: &str, times: usize, status: u16) {
        self.inject(Fault::status(status, path_glob).times(times));
    }
    pub fn drop_next(&self, path_glob: &str, times: usize) {
        self.inject(Fault::drop_connection(path_glob).times(times));
    }
    pub fn delay_next(&self, path_glob: &str, times: usize, delay: Duration) {
        self.inject(Fault::delay(delay, path_glob).times(times));
    }
    /// Race mode: just before the next `PATCH .../git/refs/heads/{branch}` of this repo, the branch
    /// moves to a new commit made by "another machine", so a fast-forward-only PATCH whose commit
    /// was based on the old head fails with 422.
    pub fn race_next_ref_update(&self, owner: &str, repo: &str, branch: &str) {
        self.inner.lock().races.push(RaceRule { target: Some((owner.into(), repo.into(), branch.into())) });
    }
    /// Race mode for the next PATCH of any branch ref.
    pub fn race_next_any_ref_update(&self) {
        self.inner.lock().races.push(RaceRule { target: None });
    }
    /// Commits made by race mode so far.
    pub fn race_commits(&self) -> Vec<String> {
        self.inner.lock().race_commits.clone()
    }
    /// Sets the primary rate limit's remaining count (0: every authenticated request gets 403).
    pub fn set_rate_remaining(&self, remaining: u32) {
        self.inner.lock().rate_remaining = remaining;
    }
    /// Removes all pending faults and races.
    pub fn clear(&self) {
        let mut st = self.inner.lock();
        st.faults.clear();
        st.races.clear();
    }
    /// Number of pending (not yet consumed) fault hits.
    pub fn pending(&self) -> usize {
        self.inner.lock().faults.iter().map(|f| f.times).sum()
    }
}

static ROOT_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl FakeGithub {
    /// Starts the server on 127.0.0.1 (`opts.port`, 0 = any free port).
    pub async fn start(opts: FakeOptions) -> std::io::Result<FakeGithub> {
        let (root, remove_root) = match &opts.root {
            Some(r) => (r.clone(), false),
            None => {
                let n = ROOT_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
                (std::env::temp_dir().join(format!("fake-github-{}-{n}-{nanos}", std::process::id())), true)
            }
        };
        std::fs::create_dir_all(&root)?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port))).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://127.0.0.1:{}", addr.port());
        let token = opts.token.clone().unwrap_or_else(|| format!("ghp_{}", util::random_alnum(36)));
        let inner = Arc::new(Inner {
            root: root.clone(),
            token,
            url: url.clone(),
            state: Mutex::new(State {
                repos: HashMap::new(),
                next_id: 100_000,
                requests: vec![],
                faults: vec![],
                races: vec![],
                race_commits: vec![],
                rate_remaining: opts.rate_limit,
                rate_reset: util::now_secs() as u64 + 3600,
                secondary: VecDeque::new(),
                download_tokens: vec![],
                ref_unreadable: HashMap::new(),
            }),
            opts,
        });
        // Re-register repos already on disk (`<root>/<owner>/<name>.git`) as private.
        if let Ok(owners) = std::fs::read_dir(&root) {
            for owner in owners.flatten().filter(|e| e.path().is_dir()) {
                for repo in std::fs::read_dir(owner.path()).into_iter().flatten().flatten() {
                    let fname = repo.file_name().to_string_lossy().to_string();
                    if let Some(name) = fname.strip_suffix(".git") {
                        inner.create_repo(&owner.file_name().to_string_lossy(), name, true, false, None);
                    }
                }
            }
        }
        let server_inner = inner.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let inner = server_inner.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(inner.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(FakeGithub { url, root, inner, server: Some(server), remove_root })
    }

    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Login of the token's user.
    pub fn login(&self) -> &str {
        &self.inner.opts.login
    }

    /// Creates a repository (no-op if it exists). `with_initial_commit`: a README.md commit on `main`.
    pub fn add_repo(&self, owner: &str, name: &str, private: bool, with_initial_commit: bool) {
        self.inner.create_repo(owner, name, private, with_initial_commit, None);
    }

    /// The bare repository backing `owner/name`.
    pub fn repo_git_dir(&self, owner: &str, name: &str) -> PathBuf {
        self.inner.git_dir(owner, name)
    }

    /// Commits `files` on top of `branch` as "another machine" (as if pushed elsewhere) and returns the sha.
    pub fn commit_as_other_machine(&self, owner: &str, name: &str, branch: &str, files: &[(&str, &[u8])]) -> Result<String, String> {
        self.inner.commit_as_other_machine(owner, name, branch, files)
    }

    /// Commits entries with explicit git modes (symbolic links 120000, submodules 160000, files
    /// 100644/100755) on top of `branch`, as a hostile or foreign pusher would. See
    /// `commit_entries_as_other_machine` for what `content` means per mode.
    pub fn commit_entries_as_other_machine(&self, owner: &str, name: &str, branch: &str, entries: &[(&str, &str, &[u8])]) -> Result<String, String> {
        self.inner.commit_entries_as_other_machine(owner, name, branch, entries)
    }

    /// Current head of `refs/heads/{branch}`.
    pub fn branch_head(&self, owner: &str, name: &str, branch: &str) -> Option<String> {
        git::resolve_ref(&self.inner.git_dir(owner, name), &format!("refs/heads/{branch}"))
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Clears the recorded requests (and with them the totals of [`FakeGithub::traffic`]).
    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Totals over the recorded requests (since the start or the last `clear_requests()`):
    /// `(requests, request body bytes sent by the client, response body bytes received by the
    /// client)`. Only bodies are counted, not headers or HTTP framing.
    pub fn traffic(&self) -> (u64, u64, u64) {
        let st = self.inner.lock();
        st.requests.iter().fold((0, 0, 0), |(n, sent, received), r| {
            (n + 1, sent + r.request_body.len() as u64, received + r.response_body.len() as u64)
        })
    }

    /// Makes `owner/name` private or public (`GET /repos/...` then reports `private` and
    /// `visibility` accordingly). No-op for an unknown repo.
    pub fn set_private(&self, owner: &str, name: &str, private: bool) {
        let mut st = self.inner.lock();
        if let Some(meta) = st
            .repos
            .values_mut()
            .find(|m| m.owner.eq_ignore_ascii_case(owner) && m.name.eq_ignore_ascii_case(name))
        {
            meta.private = private;
        }
    }

    pub fn faults(&self) -> FaultHandle {
        FaultHandle { inner: self.inner.clone() }
    }

    /// Remaining primary rate limit.
    pub fn rate_remaining(&self) -> u32 {
        self.inner.lock().rate_remaining
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        if self.remove_root {
            self.remove_root = false;
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

pub(crate) fn strip_prefix_path(path: &str) -> &str {
    match path.strip_prefix("/api/v3") {
        Some("") => "/",
        Some(p) if p.starts_with('/') => p,
        _ => path,
    }
}

async fn serve(
    inner: Arc<Inner>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
    let method = parts.method.as_str().to_string();
    let raw_path = parts.uri.path().to_string();
    let path = strip_prefix_path(&raw_path).to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
        .collect();
    let recorded_path = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };

    // Faults.
    let action = {
        let mut st = inner.lock();
        let hit = st.faults.iter_mut().find(|f| {
            f.times > 0 && f.method.as_deref().is_none_or(|m| m == method) && glob_match(&f.path, &path)
        });
        let action = hit.map(|f| {
            f.times -= 1;
            f.action.clone()
        });
        st.faults.retain(|f| f.times > 0);
        action
    };
    let record = |status: u16, resp_body: &[u8]| {
        inner.lock().requests.push(RecordedRequest {
            method: method.clone(),
            path: recorded_path.clone(),
            status,
            request_headers: headers.clone(),
            request_body: body.clone(),
            response_body: resp_body.to_vec(),
        });
    };
    let drop_answer = matches!(action, Some(FaultAction::ApplyThenDrop));
    let tamper = matches!(action, Some(FaultAction::Tamper));
    let response = match action {
        Some(FaultAction::Drop) => {
            record(0, b"");
            return Err(std::io::Error::other("fault: connection dropped"));
        }
        Some(FaultAction::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(FaultAction::Status(s)) => Some(api::fault_response(&inner, s)),
        Some(FaultAction::ApplyThenDrop | FaultAction::Tamper) | None => None,
    };
    let response = match response {
        Some(r) => r,
        None => {
            let inner2 = inner.clone();
            let req = api::Request { method: method.clone(), path: path.clone(), query, headers: headers.clone(), body: body.clone() };
            tokio::task::spawn_blocking(move || api::handle(&inner2, req))
                .await
                .unwrap_or_else(|_| api::error(500, "Server Error"))
        }
    };
    if drop_answer {
        record(0, b"");
        return Err(std::io::Error::other("fault: connection dropped after the request was applied"));
    }
    let mut response = response;
    if tamper
        && response.status == 200
        && let Some(last) = response.body.last_mut()
    {
        *last ^= 1;
    }
    record(response.status, &response.body);
    let mut builder = hyper::Response::builder().status(response.status);
    for (k, v) in &response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    Ok(builder.body(Full::new(Bytes::from(response.body))).expect("valid response"))
}

/// Used by the binary: the path of a repo relative to a root.
pub fn repo_path(root: &Path, owner: &str, name: &str) -> PathBuf {
    root.join(owner).join(format!("{name}.git"))
}
