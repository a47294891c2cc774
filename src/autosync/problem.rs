//! What stops auto-sync, in a form the host can show: one structured [`Problem`] at a time (its
//! kind, the message, one line on what to do), and [`Recovered`] once it went away. The plugin
//! shows a toast when the problem's signature (kind + message) changes, and "syncing again" when
//! `recovered` changes; the engine logs each distinct problem once, not at every retry.
//!
//! Also the fingerprint of the files that decide how syncs run (oc-sync's config file and the
//! token `oc-sync login` stored): the engine re-reads them when it changed, without a restart.

use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use crate::remote::RemoteError;
use crate::sync::SyncError;
use crate::time::now_ms;

/// Why auto-sync is not doing its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    /// oc-sync's config (file or plugin options) is invalid: nothing syncs until it is fixed.
    Config,
    /// GitHub refused the token (wrong, expired, revoked, missing), or no token is found.
    Token,
    /// GitHub or the remote refused for another reason the person must fix (permissions, a public
    /// repository, a bad setting).
    RemoteRefused,
    /// The mass-deletion stop: a sync would delete too much.
    TooManyDeletions,
    /// The separate process that syncs OpenCode's database (sessions, OpenSync export) failed.
    DatabaseSync,
    /// Another failure that needs the person (corrupt remote, newer format...).
    SyncFailed,
    /// oc-sync is loaded twice in this process: this copy stays idle.
    AlreadyRunning,
}

/// The current problem, for the host to show once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
    /// One line on what to do.
    pub action: String,
    /// When this problem was first seen (wall clock ms).
    pub since_ms: u64,
}

/// The last problem that went away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    pub kind: ProblemKind,
    pub message: String,
    pub at_ms: u64,
}

impl Problem {
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem { kind, message: message.into(), action: action(kind).into(), since_ms: now_ms() }
    }

    /// Same kind and message: the same problem (its toast is not shown again).
    pub fn same(&self, other: &Problem) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

/// What the person does about each kind (one line, shown in the toast).
pub fn action(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Config => "fix oc-sync's config (opencode-sync.json, or the plugin options in opencode.json); a fixed file is used from the next sync, plugin options after restarting OpenCode",
        ProblemKind::Token => "run `oc-sync login` (or set a valid GITHUB_TOKEN); the next sync uses the new token, no restart needed",
        ProblemKind::RemoteRefused => "fix what the message says (see `oc-sync status`); the next sync tries again",
        ProblemKind::TooManyDeletions => "if the deletions are intended, run `oc-sync sync --allow-deletions` once; otherwise restore the files",
        ProblemKind::DatabaseSync => "run `oc-sync sync` in a terminal to see why; the oc-sync log has the details",
        ProblemKind::SyncFailed => "run `oc-sync sync` in a terminal to see why; the oc-sync log has the details",
        ProblemKind::AlreadyRunning => "list oc-sync only once in opencode.json's \"plugin\" list",
    }
}

/// The problem a failed sync means for the person, or None when it is transient (offline, busy,
/// rate limited: the scheduler retries on its own).
pub fn classify(e: &SyncError) -> Option<Problem> {
    if e.is_retryable() {
        return None;
    }
    let kind = match e {
        SyncError::TooManyDeletions { .. } => ProblemKind::TooManyDeletions,
        SyncError::Remote(RemoteError::BadToken(_)) => ProblemKind::Token,
        SyncError::Remote(RemoteError::Denied(_)) => ProblemKind::RemoteRefused,
        _ => ProblemKind::SyncFailed,
    };
    Some(Problem::new(kind, e.to_string()))
}

/// A fingerprint of the files that decide how a sync runs: oc-sync's config file (also the
/// `.jsonc` spelling next to it) and the token `oc-sync login` stored. Content, not mtime, so an
/// edit within the same second counts too; the files are small.
pub fn fingerprint(paths: &Paths) -> String {
    let mut files = vec![paths.config_file.clone(), paths.github_token_file()];
    if let Some(stem) = paths.config_file.file_stem() {
        let dir = paths.config_file.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        for ext in ["json", "jsonc"] {
            let p = dir.join(format!("{}.{ext}", stem.to_string_lossy()));
            if !files.contains(&p) {
                files.push(p);
            }
        }
    }
    let mut all = Vec::new();
    for f in files {
        all.extend_from_slice(f.to_string_lossy().as_bytes());
        all.push(0);
        match std::fs::read(&f) {
            Ok(b) => all.extend_from_slice(crate::remote::sha256_hex(&b).as_bytes()),
            Err(_) => all.extend_from_slice(b"-"),
        }
        all.push(0);
    }
    crate::remote::sha256_hex(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_camel_case_and_every_failure_that_needs_the_person_is_classified() {
        assert_eq!(serde_json::to_value(ProblemKind::TooManyDeletions).unwrap(), "tooManyDeletions");
        assert_eq!(serde_json::to_value(ProblemKind::AlreadyRunning).unwrap(), "alreadyRunning");
        let del = SyncError::TooManyDeletions { category: "config".into(), count: 9, total: 10, sample: "a".into() };
        assert_eq!(classify(&del).unwrap().kind, ProblemKind::TooManyDeletions);
        let tok = SyncError::Remote(RemoteError::BadToken(
            "GitHub refused the token (401): it is wrong, expired or revoked; run `oc-sync login`".into(),
        ));
        assert_eq!(classify(&tok).unwrap().kind, ProblemKind::Token);
        let public = SyncError::Remote(RemoteError::Denied("the repository is public".into()));
        assert_eq!(classify(&public).unwrap().kind, ProblemKind::RemoteRefused);
        assert!(classify(&SyncError::Remote(RemoteError::Unreachable("x".into()))).is_none(), "offline is retried, not shown");
        let p = classify(&del).unwrap();
        assert!(p.same(&classify(&del).unwrap()));
        assert!(!p.action.is_empty());
    }

    #[test]
    fn the_fingerprint_follows_the_config_and_the_token_file() {
        let tmp = tempfile::tempdir().unwrap();
        let env = crate::paths::EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let paths = Paths::resolve(&env).unwrap();
        let a = fingerprint(&paths);
        assert_eq!(a, fingerprint(&paths));
        std::fs::create_dir_all(paths.config_file.parent().unwrap()).unwrap();
        std::fs::write(&paths.config_file, "{}").unwrap();
        let b = fingerprint(&paths);
        assert_ne!(a, b);
        std::fs::create_dir_all(paths.github_token_file().parent().unwrap()).unwrap();
        std::fs::write(paths.github_token_file(), r#"{"token":"x"}"#).unwrap();
        assert_ne!(b, fingerprint(&paths));
    }
}
