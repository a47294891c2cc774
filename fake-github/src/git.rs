//! Thin helpers over the `git` command line, run against bare repositories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Output of a failed git invocation.
#[derive(Debug)]
pub struct GitError(pub String);

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `git` in `dir` (a bare repository) and returns stdout.
pub fn run(dir: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_WORK_TREE")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| GitError(format!("spawn git: {e}")))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        // Write from a thread so a large input cannot deadlock against a full stdout pipe.
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().map_err(|e| GitError(format!("wait git: {e}")))?;
        let _ = writer.join();
        return finish(args, out);
    }
    let out = child.wait_with_output().map_err(|e| GitError(format!("wait git: {e}")))?;
    finish(args, out)
}

fn finish(args: &[&str], out: std::process::Output) -> Result<Vec<u8>, GitError> {
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub fn run_str(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    run(dir, args, None, &[]).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

pub fn init_bare(dir: &Path) -> Result<(), GitError> {
    std::fs::create_dir_all(dir).map_err(|e| GitError(e.to_string()))?;
    run(dir, &["init", "--bare", "--quiet", "--initial-branch=main"], None, &[])?;
    Ok(())
}

pub fn is_valid_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The type of an object ("blob", "tree", "commit", "tag"), or None if absent.
pub fn object_type(dir: &Path, sha: &str) -> Option<String> {
    if !is_valid_sha(sha) {
        return None;
    }
    run_str(dir, &["cat-file", "-t", sha]).ok()
}

pub fn hash_blob(dir: &Path, content: &[u8]) -> Result<String, GitError> {
    let out = run(dir, &["hash-object", "-w", "-t", "blob", "--stdin"], Some(content), &[])?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

pub fn cat_blob(dir: &Path, sha: &str) -> Result<Vec<u8>, GitError> {
    run(dir, &["cat-file", "blob", sha], None, &[])
}

pub fn resolve_ref(dir: &Path, full_ref: &str) -> Option<String> {
    run_str(dir, &["rev-parse", "--verify", "--quiet", &format!("{full_ref}^{{commit}}")])
        .ok()
        .filter(|s| is_valid_sha(s))
}

/// Resolves a sha, branch, tag or "refs/..." name to a commit sha.
pub fn resolve_commitish(dir: &Path, name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with('-') {
        return None;
    }
    for candidate in [format!("refs/heads/{name}"), format!("refs/tags/{name}"), name.to_string()] {
        if let Some(sha) = resolve_ref(dir, &candidate) {
            return Some(sha);
        }
    }
    None
}

pub fn is_empty_repo(dir: &Path) -> bool {
    run_str(dir, &["for-each-ref", "--count=1", "refs/heads/"])
        .map(|s| s.is_empty())
        .unwrap_or(true)
}

/// One entry of `git ls-tree -l`.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub mode: String,
    pub kind: String,
    pub sha: String,
    pub size: Option<u64>,
    pub path: String,
}

pub fn ls_tree(dir: &Path, tree: &str, recursive: bool) -> Result<Vec<TreeEntry>, GitError> {
    let mut args = vec!["ls-tree", "-z", "-l", "--full-tree"];
    if recursive {
        args.push("-r");
        args.push("-t");
    }
    args.push(tree);
    let out = run(dir, &args, None, &[])?;
    let mut entries = Vec::new();
    for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8_lossy(rec);
        let (meta, path) = rec.split_once('\t').ok_or_else(|| GitError(format!("bad ls-tree line {rec}")))?;
        let mut parts = meta.split_whitespace();
        let mode = parts.next().unwrap_or_default().to_string();
        let kind = parts.next().unwrap_or_default().to_string();
        let sha = parts.next().unwrap_or_default().to_string();
        let size = parts.next().and_then(|s| s.parse().ok());
        entries.push(TreeEntry { mode, kind, sha, size, path: path.to_string() });
    }
    Ok(entries)
}

/// A change to apply on top of a base tree.
pub enum TreeChange {
    /// Put an object (blob with mode 100644/100755/120000, commit with 160000) at a path.
    Put { path: String, mode: String, sha: String },
    /// Replace whatever is at `path` with the contents of a tree object.
    PutTree { path: String, sha: String },
    /// Remove a path (file or whole directory).
    Delete { path: String },
}

static INDEX_COUNTER: AtomicU64 = AtomicU64::new(0);

struct TempIndex(PathBuf);
impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("lock"));
    }
}

/// Builds a tree from an optional base tree and a list of changes, using a temporary index.
pub fn build_tree(dir: &Path, base: Option<&str>, changes: &[TreeChange]) -> Result<String, GitError> {
    let n = INDEX_COUNTER.fetch_add(1, Ordering::Relaxed);
    let index = TempIndex(dir.join(format!("fake-index-{}-{n}", std::process::id())));
    let index_str = index.0.to_string_lossy().to_string();
    let env = [("GIT_INDEX_FILE", index_str.as_str())];
    match base {
        Some(b) => run(dir, &["read-tree", b], None, &env)?,
        None => run(dir, &["read-tree", "--empty"], None, &env)?,
    };
    let current = run(dir, &["ls-files", "-s", "-z"], None, &env)?;
    let mut existing: Vec<String> = current
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| String::from_utf8_lossy(r).split_once('\t').map(|(_, p)| p.to_string()))
        .collect();
    let mut info = String::new();
    let remove_under = |info: &mut String, existing: &mut Vec<String>, path: &str| {
        let prefix = format!("{path}/");
        existing.retain(|p| {
            if p == path || p.starts_with(&prefix) {
                info.push_str(&format!("0 {ZERO_SHA}\t{p}\0"));
                false
            } else {
                true
            }
        });
    };
    for change in changes {
        match change {
            TreeChange::Put { path, mode, sha } => {
                // A file replaces a directory of the same name and vice versa.
                remove_under(&mut info, &mut existing, path);
                let mut parent = path.as_str();
                while let Some((p, _)) = parent.rsplit_once('/') {
                    if existing.iter().any(|e| e == p) {
                        remove_under(&mut info, &mut existing, p);
                    }
                    parent = p;
                }
                info.push_str(&format!("{mode} {sha}\t{path}\0"));
                existing.push(path.clone());
            }
            TreeChange::PutTree { path, sha } => {
                remove_under(&mut info, &mut existing, path);
                for e in ls_tree(dir, sha, true)?.into_iter().filter(|e| e.kind != "tree") {
                    let p = format!("{path}/{}", e.path);
                    info.push_str(&format!("{} {}\t{p}\0", e.mode, e.sha));
                    existing.push(p);
                }
            }
            TreeChange::Delete { path } => remove_under(&mut info, &mut existing, path),
        }
    }
    if !info.is_empty() {
        run(dir, &["update-index", "-z", "--index-info"], Some(info.as_bytes()), &env)?;
    }
    run(dir, &["write-tree"], None, &env).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

/// Identity and date for commit-tree: (name, email, date in a format git understands).
pub struct Ident {
    pub name: String,
    pub email: String,
    pub date: Option<String>,
}

pub fn commit_tree(
    dir: &Path,
    tree: &str,
    parents: &[String],
    message: &str,
    author: &Ident,
    committer: &Ident,
) -> Result<String, GitError> {
    let mut args: Vec<&str> = vec!["commit-tree", tree];
    for p in parents {
        args.push("-p");
        args.push(p);
    }
    args.push("-F");
    args.push("-");
    let mut env = vec![
        ("GIT_AUTHOR_NAME", author.name.as_str()),
        ("GIT_AUTHOR_EMAIL", author.email.as_str()),
        ("GIT_COMMITTER_NAME", committer.name.as_str()),
        ("GIT_COMMITTER_EMAIL", committer.email.as_str()),
    ];
    if let Some(d) = &author.date {
        env.push(("GIT_AUTHOR_DATE", d));
    }
    if let Some(d) = &committer.date {
        env.push(("GIT_COMMITTER_DATE", d));
    }
    let out = run(dir, &args, Some(message.as_bytes()), &env)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// A parsed commit object.
pub struct CommitInfo {
    pub tree: String,
    pub parents: Vec<String>,
    /// (name, email, unix seconds, tz like "+0100")
    pub author: (String, String, i64, String),
    pub committer: (String, String, i64, String),
    pub message: String,
}

fn parse_ident(s: &str) -> (String, String, i64, String) {
    // "Name <email> 1700000000 +0000"
    let (name, rest) = s.split_once(" <").unwrap_or((s, ""));
    let (email, rest) = rest.split_once("> ").unwrap_or((rest, ""));
    let mut parts = rest.split_whitespace();
    let ts = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let tz = parts.next().unwrap_or("+0000").to_string();
    (name.to_string(), email.to_string(), ts, tz)
}

pub fn read_commit(dir: &Path, sha: &str) -> Result<CommitInfo, GitError> {
    let raw = run(dir, &["cat-file", "commit", sha], None, &[])?;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (header, message) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut info = CommitInfo {
        tree: String::new(),
        parents: vec![],
        author: Default::default(),
        committer: Default::default(),
        message: message.to_string(),
    };
    for line in header.lines() {
        if let Some(v) = line.strip_prefix("tree ") {
            info.tree = v.to_string();
        } else if let Some(v) = line.strip_prefix("parent ") {
            info.parents.push(v.to_string());
        } else if let Some(v) = line.strip_prefix("author ") {
            info.author = parse_ident(v);
        } else if let Some(v) = line.strip_prefix("committer ") {
            info.committer = parse_ident(v);
        }
    }
    Ok(info)
}

pub fn is_ancestor(dir: &Path, ancestor: &str, descendant: &str) -> bool {
    run(dir, &["merge-base", "--is-ancestor", ancestor, descendant], None, &[]).is_ok()
}

/// Atomically moves `full_ref` from `old` (ZERO_SHA: must not exist) to `new`.
pub fn update_ref(dir: &Path, full_ref: &str, new: &str, old: Option<&str>) -> Result<(), GitError> {
    let mut args = vec!["update-ref", full_ref, new];
    if let Some(o) = old {
        args.push(o);
    }
    run(dir, &args, None, &[]).map(|_| ())
}
