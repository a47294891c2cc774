//! The git remote: any git server (GitLab, Gitea/Forgejo, Bitbucket, a server over SSH, `git
//! daemon`, a bare repository on a share) reached with the person's own `git`, so their SSH keys,
//! agent and credential helpers work as for their other repositories.
//!
//! oc-sync keeps a bare mirror in its data folder (`Paths::git_mirror_dir`) and reads it with the
//! folder remote's repository-format-2 code ([`LocalRemote::open_bare`]): same layout, same checks
//! on everything read. The mirror's `refs/heads/main` is the remote branch as last fetched.
//!
//! - `head`: `git ls-remote <url> refs/heads/<branch>` (one round trip, no objects); only when it
//!   differs from the mirror: `git fetch <url> +refs/heads/<branch>:refs/heads/main`.
//! - `commit`: the commit is written into the mirror on top of the expected version (the mirror's
//!   own ref transaction), then `git push --force-with-lease=refs/heads/<branch>:<expected> <url>
//!   <new>:refs/heads/<branch>` (an empty `<expected>` = the branch must not exist): the server's
//!   compare-and-swap. A rejected push is [`CommitOutcome::Conflict`]; any other failure puts the
//!   mirror's ref back and is [`RemoteError::Unreachable`] with git's message (the next `head`
//!   asks the server again, so a push that died half way is found out either way).
//!
//! git runs without a shell, with `GIT_TERMINAL_PROMPT=0` (a missing credential fails instead of
//! waiting for a prompt nobody sees), hooks off, only the file/git/ssh/http(s) transports
//! (`GIT_ALLOW_PROTOCOL`: never `ext::`), and a time limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use url::Url;

use super::local::LocalRemote;
use super::{Changes, CommitOutcome, Manifest, Remote, RemoteError, Version};

/// Oldest git oc-sync runs (`--force-with-lease` with an empty expected value, `ls-remote` of one ref).
pub const MIN_GIT: (u32, u32) = (2, 20);
const LS_REMOTE_WAIT: Duration = Duration::from_secs(120);
const TRANSFER_WAIT: Duration = Duration::from_secs(900);
const ALLOWED_PROTOCOLS: &str = "file:git:ssh:http:https";

/// A git remote's address, checked: shown as given (it holds no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl(String);

impl GitUrl {
    /// Accepts `ssh://`, `git://`, `https://`, `http://` (loopback only), `file://` URLs, scp-like
    /// `user@host:path`, and absolute paths of a repository. Refuses a password in the URL.
    pub fn parse(s: &str) -> Result<GitUrl, String> {
        let s = s.trim();
        if s.is_empty() || s.starts_with('-') || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("a git remote URL must not be empty, start with '-' or hold spaces".into());
        }
        if s.contains("://") {
            let u = Url::parse(s).map_err(|e| format!("{:?} is not a valid URL: {e}", shown(s)))?;
            if u.password().is_some() {
                return Err(format!(
                    "{:?} holds a password: remove it and let git's credential helper supply it \
                     (for example `git config --global credential.helper store`, or your system's keychain helper)",
                    shown(s)
                ));
            }
            if matches!(u.scheme(), "http" | "https") && !u.username().is_empty() {
                return Err(format!(
                    "{:?} holds a user name, which is often a token on git hosts: remove it and let git's credential \
                     helper supply the credential (`git config --global credential.helper store`, or your keychain helper; \
                     a user name can be set with `git config --global credential.https://HOST.username NAME`)",
                    shown(s)
                ));
            }
            match u.scheme() {
                "ssh" | "git" | "https" | "file" => {}
                "http" => {
                    let loopback = u.host().is_some_and(|h| crate::net::is_loopback(&h));
                    if !loopback {
                        return Err(format!("{s:?} uses plain http to a non-loopback host, which would send your credentials unencrypted: use https"));
                    }
                }
                other => return Err(format!("{s:?}: the {other}:// transport is not supported (use ssh://, https://, git:// or file://)")),
            }
            if u.scheme() != "file" && u.host_str().is_none_or(str::is_empty) {
                return Err(format!("{s:?} names no host"));
            }
            return Ok(GitUrl(s.to_string()));
        }
        if Path::new(s).is_absolute() {
            return Ok(GitUrl(s.to_string()));
        }
        // scp-like: [user@]host:path, the colon before any slash.
        if let Some((host, path)) = s.split_once(':')
            && !host.contains('/')
            && !path.is_empty()
        {
            if path.split('/').next().is_some_and(|p| p.contains('@')) {
                return Err("a git remote URL must not hold a password (user:password@host): use an SSH key or a credential helper".into());
            }
            let h = host.rsplit('@').next().unwrap_or("");
            let ok = |c: char| c.is_ascii_alphanumeric() || "-._[]".contains(c);
            if h.len() > 1 && h.chars().all(ok) && !h.starts_with('-') {
                return Ok(GitUrl(s.to_string()));
            }
        }
        Err(format!("{s:?} is not a git URL (git@host:owner/repo.git, ssh://, https://, git://, file://) nor an absolute path"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the URL is a public hosting service whose privacy oc-sync cannot check: any host
    /// but a local path or `file://`.
    pub fn is_networked(&self) -> bool {
        !(self.0.starts_with("file://") || Path::new(&self.0).is_absolute())
    }
}

impl std::fmt::Display for GitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `s` with any `user:password@` replaced by `***@` (for error messages).
fn shown(s: &str) -> String {
    scrub(s)
}

/// Removes anything that looks like `scheme://user:secret@` from git's output.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest.find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether a directory is a bare git repository (HEAD, objects/ and refs/ in it).
pub fn is_bare_repository(p: &Path) -> bool {
    p.join("HEAD").is_file() && p.join("objects").is_dir() && p.join("refs").is_dir()
}

/// The git remote. See the module docs.
pub struct GitRemote {
    url: GitUrl,
    branch: String,
    mirror: PathBuf,
    inner: LocalRemote,
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote").field("url", &self.url.0).field("mirror", &self.mirror).finish_non_exhaustive()
    }
}

impl GitRemote {
    /// The git remote at `url`, branch `branch`, mirrored in `mirror` (created on first use);
    /// `index_file` keeps the tree index between runs.
    pub fn open(url: GitUrl, branch: &str, mirror: PathBuf, index_file: Option<PathBuf>) -> Result<GitRemote, RemoteError> {
        if branch.is_empty() || gix::validate::reference::name_partial(branch.into()).is_err() || branch.starts_with('-') {
            return Err(RemoteError::Denied(format!("branch {branch:?} is not a valid git branch name")));
        }
        let describe = format!("git remote {url}");
        let mut inner = LocalRemote::open_bare(&mirror, describe)?;
        if let Some(f) = index_file {
            inner = inner.with_index_file(f);
        }
        Ok(GitRemote { url, branch: branch.to_string(), mirror, inner })
    }

    pub fn url(&self) -> &GitUrl {
        &self.url
    }

    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    fn remote_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    fn unreachable(&self, what: &str, detail: &str) -> RemoteError {
        const AUTH: &[&str] = &[
            "Authentication failed",
            "could not read Username",
            "could not read Password",
            "terminal prompts disabled",
            "Permission denied (publickey",
            "HTTP Basic: Access denied",
            "returned error: 403",
        ];
        if AUTH.iter().any(|m| detail.contains(m)) {
            return RemoteError::Denied(format!(
                "{what} {} was refused: git has no working credential for it ({}). Set up the way you \
                 authenticate to this host for git itself (an SSH key loaded in your agent, or a credential \
                 helper such as `git config --global credential.helper store`/your keychain with a token), \
                 check with `git ls-remote {}`, then sync again",
                self.url,
                truncate_lines(&scrub(detail)),
                self.url
            ));
        }
        RemoteError::Unreachable(format!("{what} {} failed: {}", self.url, truncate_lines(&scrub(detail))))
    }

    /// Runs git on the mirror. `Ok((success, stdout, stderr))`; a missing or old git and a
    /// timeout are errors.
    fn git(&self, args: &[&str], wait: Duration) -> Result<(bool, String, String), RemoteError> {
        check_git_version()?;
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.mirror);
        cmd.args(["-c", "core.hooksPath=/dev/null", "-c", "init.defaultBranch=main"]);
        cmd.args(args);
        cmd.env("GIT_TERMINAL_PROMPT", "0").env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS).env("LC_ALL", "C");
        for v in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"] {
            cmd.env_remove(v);
        }
        match crate::child::run_within(&mut cmd, wait) {
            Ok(Some(f)) => Ok((f.status.success(), f.stdout, f.stderr)),
            Ok(None) => Err(RemoteError::Unreachable(format!("git {} on {} took over {:?} and was stopped", args[0], self.url, wait))),
            Err(e) => Err(RemoteError::Unreachable(format!("cannot run git: {e}"))),
        }
    }

    fn ensure_mirror(&self) -> Result<(), RemoteError> {
        if self.mirror.join("HEAD").is_file() {
            return Ok(());
        }
        if let Some(p) = self.mirror.parent() {
            std::fs::create_dir_all(p).map_err(|e| RemoteError::io(format!("cannot create {}", p.display()), e))?;
        }
        check_git_version()?;
        let out = crate::child::run_within(
            Command::new("git").args(["init", "--bare", "--quiet"]).arg(&self.mirror).env_remove("GIT_DIR").env("LC_ALL", "C"),
            LS_REMOTE_WAIT,
        );
        match out {
            Ok(Some(f)) if f.status.success() => Ok(()),
            Ok(Some(f)) => Err(RemoteError::io(format!("cannot create the mirror {}", self.mirror.display()), std::io::Error::other(f.stderr.trim().to_string()))),
            _ => Err(RemoteError::io(format!("cannot create the mirror {}", self.mirror.display()), std::io::Error::other("git init failed"))),
        }
    }

    /// The commit the server's branch names (`git ls-remote`), `None` if it has none.
    fn ls_remote(&self) -> Result<Option<String>, RemoteError> {
        let r = self.remote_ref();
        let (ok, out, err) = self.git(&["ls-remote", "--", self.url.as_str(), &r], LS_REMOTE_WAIT)?;
        if !ok {
            return Err(self.unreachable("git ls-remote", &err));
        }
        for line in out.lines() {
            if let Some((id, name)) = line.split_once('\t')
                && name == r
            {
                if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(RemoteError::Corrupt(format!("{} answered a branch id {:?}", self.url, super::truncate(id, 80))));
                }
                return Ok(Some(id.to_ascii_lowercase()));
            }
        }
        Ok(None)
    }

    fn fetch(&self) -> Result<(), RemoteError> {
        let spec = format!("+{}:refs/heads/main", self.remote_ref());
        let (ok, _, err) = self.git(&["fetch", "--quiet", "--no-tags", "--update-head-ok", "--", self.url.as_str(), &spec], TRANSFER_WAIT)?;
        if !ok {
            return Err(self.unreachable("git fetch from", &err));
        }
        Ok(())
    }

    /// Puts the mirror's ref at `to` (`None` = deletes it).
    fn set_mirror_ref(&self, to: Option<&Version>) -> Result<(), RemoteError> {
        let (ok, _, err) = match to {
            Some(v) => self.git(&["update-ref", "refs/heads/main", &v.0], LS_REMOTE_WAIT)?,
            None => self.git(&["update-ref", "-d", "refs/heads/main"], LS_REMOTE_WAIT)?,
        };
        if !ok {
            return Err(RemoteError::io(format!("cannot reset the mirror {}", self.mirror.display()), std::io::Error::other(err.trim().to_string())));
        }
        Ok(())
    }

    /// Asks the server where its branch is and brings the mirror there.
    fn sync_mirror(&self) -> Result<Option<Version>, RemoteError> {
        self.ensure_mirror()?;
        let remote = self.ls_remote()?.map(Version);
        let local = self.inner.head()?;
        if remote == local {
            return Ok(remote);
        }
        match remote {
            None => {
                self.set_mirror_ref(None)?;
                Ok(None)
            }
            Some(_) => {
                self.fetch()?;
                self.inner.head()
            }
        }
    }
}

fn truncate_lines(s: &str) -> String {
    let t: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    super::truncate(&t.join(" / "), 600).to_string()
}

/// The installed git's version, checked once per process.
pub fn check_git_version() -> Result<(), RemoteError> {
    static CHECKED: OnceLock<Result<(u32, u32), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let out = crate::child::run_within(Command::new("git").arg("--version").env("LC_ALL", "C"), Duration::from_secs(30));
        match out {
            Ok(Some(f)) if f.status.success() => parse_git_version(&f.stdout).ok_or_else(|| format!("cannot read git's version from {:?}", f.stdout.trim())),
            Ok(Some(f)) => Err(format!("`git --version` failed: {}", f.stderr.trim())),
            Ok(None) => Err("`git --version` did not answer".into()),
            Err(e) => Err(format!("git is not installed or not on PATH ({e}): a git remote needs git {}.{} or newer", MIN_GIT.0, MIN_GIT.1)),
        }
    });
    match r {
        Ok(v) if *v >= MIN_GIT => Ok(()),
        Ok(v) => Err(RemoteError::Denied(format!("git {}.{} is too old: a git remote needs git {}.{} or newer", v.0, v.1, MIN_GIT.0, MIN_GIT.1))),
        Err(m) => Err(RemoteError::Denied(m.clone())),
    }
}

fn parse_git_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().strip_prefix("git version ")?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Remote for GitRemote {
    fn describe(&self) -> String {
        format!("git remote {}", self.url)
    }

    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.sync_mirror()
    }

    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        self.inner.manifest(at)
    }

    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        self.inner.blob(hash)
    }

    fn refused_keys(&self) -> Vec<(String, String)> {
        self.inner.refused_keys()
    }

    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        self.ensure_mirror()?;
        if self.inner.head()?.as_ref() != expected {
            let current = self.sync_mirror()?;
            if current.as_ref() != expected {
                return Ok(CommitOutcome::Conflict { current });
            }
        }
        let new = match self.inner.commit(expected, changes)? {
            CommitOutcome::Committed(v) => v,
            CommitOutcome::Conflict { .. } => return Ok(CommitOutcome::Conflict { current: self.sync_mirror()? }),
        };
        if let Err(e) = crate::fault::step(crate::fault::GIT_PUSH) {
            let _ = self.set_mirror_ref(expected);
            return Err(RemoteError::io("commit", std::io::Error::other(e)));
        }
        let r = self.remote_ref();
        let lease = format!("--force-with-lease={r}:{}", expected.map(|v| v.0.as_str()).unwrap_or(""));
        let spec = format!("{}:{r}", new.0);
        let pushed = self.git(&["push", "--porcelain", "--quiet", &lease, "--", self.url.as_str(), &spec], TRANSFER_WAIT);
        let (ok, out, err) = match pushed {
            Ok(x) => x,
            Err(e) => {
                let _ = self.set_mirror_ref(expected);
                return Err(e);
            }
        };
        if ok {
            return Ok(CommitOutcome::Committed(new));
        }
        self.set_mirror_ref(expected)?;
        // --porcelain: "!\t<src>:<dst>\t[rejected] (stale info|fetch first|non-fast-forward)".
        let rejected = out.lines().any(|l| l.starts_with('!') && l.contains("[rejected]"))
            || err.contains("[rejected]")
            || err.contains("stale info");
        if rejected {
            return Ok(CommitOutcome::Conflict { current: self.sync_mirror()? });
        }
        // Lost a race inside the server ("cannot lock ref ... is at X but expected Y"), or the
        // push landed and only the answer was lost: the server's branch is not where we left it.
        if let Ok(now) = self.ls_remote()
            && now.as_deref() != expected.map(|v| v.0.as_str())
        {
            return Ok(CommitOutcome::Conflict { current: self.sync_mirror()? });
        }
        let detail = if err.trim().is_empty() { out } else { err };
        Err(self.unreachable("git push to", &detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for ok in [
            "git@gitlab.com:me/sync.git",
            "ssh://git@example.org:2222/me/sync.git",
            "https://codeberg.org/me/sync.git",
            "http://127.0.0.1:8080/sync.git",
            "git://127.0.0.1:9418/sync.git",
            "file:///srv/git/sync.git",
            "/srv/git/sync.git",
            "server:sync.git",
        ] {
            assert_eq!(GitUrl::parse(ok).unwrap().as_str(), ok);
        }
        let e = GitUrl::parse("https://me:hunter2@example.org/sync.git").unwrap_err();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        assert!(GitUrl::parse("http://example.org/sync.git").unwrap_err().contains("plain http"));
        let e = GitUrl::parse("https://ghp_token123@github.com/me/x.git").unwrap_err();
        assert!(e.contains("credential helper") && !e.contains("ghp_token123"), "{e}");
        let e = GitUrl::parse("me:pw999@host:repo.git").unwrap_err();
        assert!(!e.contains("pw999"), "{e}");
        assert!(GitUrl::parse("ext::sh -c touch% /tmp/x").is_err());
        assert!(GitUrl::parse("ftp://example.org/x.git").unwrap_err().contains("not supported"));
        assert!(GitUrl::parse("-uhelp:x").is_err());
        assert!(GitUrl::parse("relative/path.git").is_err());
        assert!(GitUrl::parse("c:repo").is_err(), "a drive letter is not a host");
    }

    fn item(key: &str, machine: &str, bytes: &[u8]) -> Changes {
        let mut clock = crate::clock::VectorClock::new();
        clock.bump(machine);
        let e = super::super::Entry {
            clock,
            hash: Some(super::super::sha256_hex(bytes)),
            size: bytes.len() as u64,
            kind: "file".into(),
            category: "config".into(),
            modified_ms: 1_700_000_000_000,
            machine: machine.into(),
            deleted_ms: None,
        };
        let mut c = Changes { message: format!("{machine} writes {key}"), ..Default::default() };
        c.entries.insert(key.into(), e);
        c.blobs.insert(super::super::sha256_hex(bytes), bytes.to_vec());
        c
    }

    fn server(dir: &Path) -> GitUrl {
        let repo = dir.join("server.git");
        let ok = Command::new("git").args(["init", "--bare", "--quiet"]).arg(&repo).status().unwrap().success();
        assert!(ok);
        GitUrl::parse(&format!("file://{}", repo.display())).unwrap()
    }

    fn client(dir: &Path, url: &GitUrl, name: &str) -> GitRemote {
        GitRemote::open(url.clone(), "main", dir.join(format!("{name}.git")), Some(dir.join(format!("{name}.index.json")))).unwrap()
    }

    #[test]
    fn compare_and_swap_through_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let url = server(dir.path());
        let (a, b) = (client(dir.path(), &url, "a"), client(dir.path(), &url, "b"));
        assert_eq!(a.head().unwrap(), None);
        let CommitOutcome::Committed(v1) = a.commit(None, item("config/x.json", "a", b"{}")).unwrap() else { panic!() };
        // b expected an empty remote: conflict, nothing applied, told the current version.
        assert_eq!(b.commit(None, item("config/y.json", "b", b"1")).unwrap(), CommitOutcome::Conflict { current: Some(v1.clone()) });
        assert_eq!(b.head().unwrap(), Some(v1.clone()));
        assert!(b.manifest(&v1).unwrap().entries.contains_key("config/x.json"));
        assert_eq!(b.blob(&super::super::sha256_hex(b"{}")).unwrap(), b"{}");
        let CommitOutcome::Committed(v2) = b.commit(Some(&v1), item("config/y.json", "b", b"1")).unwrap() else { panic!() };
        // a is stale: its push is rejected by the server's lease, its mirror put back.
        let o = a.commit(Some(&v1), item("config/z.json", "a", b"2")).unwrap();
        assert_eq!(o, CommitOutcome::Conflict { current: Some(v2.clone()) });
        let m = a.manifest(&v2).unwrap();
        assert_eq!(m.entries.keys().collect::<Vec<_>>(), ["config/x.json", "config/y.json"]);
    }

    #[test]
    fn racing_threads_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let url = server(dir.path());
        let workers = ["w0", "w1", "w2"];
        std::thread::scope(|s| {
            for w in workers {
                let r = client(dir.path(), &url, w);
                s.spawn(move || {
                    for round in 0..4 {
                        loop {
                            let head = r.head().unwrap();
                            if let Some(v) = &head {
                                r.manifest(v).unwrap();
                            }
                            let key = format!("config/{w}-{round}.json");
                            if let CommitOutcome::Committed(_) = r.commit(head.as_ref(), item(&key, w, key.as_bytes())).unwrap() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        let check = client(dir.path(), &url, "check");
        let v = check.head().unwrap().unwrap();
        let keys: Vec<String> = check.manifest(&v).unwrap().entries.into_keys().collect();
        assert_eq!(keys.len(), 12, "{keys:?}");
    }

    /// Makes `main` of the server repository a commit of `files` (path → bytes), with plain git.
    fn plant(repo: &str, files: &[(&str, &[u8])]) {
        let run = |args: &[&str], input: Option<&[u8]>| -> String {
            use std::io::Write;
            let mut c = Command::new("git").arg("--git-dir").arg(repo).args(args)
                .env("GIT_AUTHOR_NAME", "x").env("GIT_AUTHOR_EMAIL", "x@x").env("GIT_COMMITTER_NAME", "x").env("GIT_COMMITTER_EMAIL", "x@x")
                .stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
            c.stdin.take().unwrap().write_all(input.unwrap_or_default()).unwrap();
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success());
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index");
        for (path, bytes) in files {
            let id = run(&["hash-object", "-w", "--stdin"], Some(bytes));
            let o = Command::new("git").arg("--git-dir").arg(repo).env("GIT_INDEX_FILE", &index)
                .args(["update-index", "--add", "--cacheinfo", &format!("100644,{id},{path}")]).status().unwrap();
            assert!(o.success());
        }
        let tree = String::from_utf8(Command::new("git").arg("--git-dir").arg(repo).env("GIT_INDEX_FILE", &index).arg("write-tree").output().unwrap().stdout).unwrap();
        let commit = run(&["commit-tree", tree.trim(), "-m", "planted"], None);
        run(&["update-ref", "refs/heads/main", &commit], None);
    }

    #[test]
    fn what_the_server_holds_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = server(dir.path());
        let repo = url.as_str().strip_prefix("file://").unwrap().to_string();
        plant(&repo, &[(".oc-sync/format", b"3\n"), ("config/x.json", b"{}")]);
        let a = client(dir.path(), &url, "a");
        let v = a.head().unwrap().unwrap();
        assert!(matches!(a.manifest(&v), Err(RemoteError::UnsupportedFormat { found: 3, .. })), "{:?}", a.manifest(&v));
        plant(&repo, &[(".oc-sync/format", b"2\n"), ("config/x.json", b"not an oc-sync item file")]);
        let v = a.head().unwrap().unwrap();
        let e = a.manifest(&v).unwrap_err();
        assert!(e.is_corrupt() && e.to_string().contains("config/x.json"), "{e}");
    }

    #[test]
    fn scrub_removes_user_info() {
        assert_eq!(scrub("fatal: https://me:s3cret@host/x.git not found"), "fatal: https://***@host/x.git not found");
        assert_eq!(scrub("ssh://git@host/x"), "ssh://***@host/x");
        assert_eq!(parse_git_version("git version 2.39.5\n"), Some((2, 39)));
        assert_eq!(parse_git_version("git version 2.20.1.windows.1"), Some((2, 20)));
    }
}
