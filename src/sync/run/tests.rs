//! Driver tests that need fault injection (a remote that misbehaves or a file edited mid-sync).
//! Multi-machine property and CLI tests live in tests/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::remote::local::LocalRemote;
use crate::source::FileSource;

struct Machine {
    root: PathBuf,
}

impl Machine {
    fn new(dir: &Path, name: &str) -> Machine {
        let root = dir.join(name);
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("state")).unwrap();
        Machine { root }
    }
    fn put(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn get(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }
    fn syncer<'a>(&self, name: &str, config: &'a Config, remote: &'a dyn Remote) -> Syncer<'a> {
        Syncer {
            machine: name.into(),
            config,
            remote,
            sources: vec![
                Box::new(FileSource::new(Category::Config, self.root.join("config"), Default::default()).unwrap()),
                Box::new(FileSource::new(Category::State, self.root.join("state"), Default::default()).unwrap()),
            ],
            state: StateStore::new(self.root.join("sync")),
            blocked: Default::default(),
            now_ms: system_now_ms,
            on_local_write: None,
            codec: None,
        }
    }
}

fn config() -> Config {
    Config { retry_delay_ms: 0, ..Config::default() }
}

#[test]
fn items_the_source_refuses_are_skipped_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    // A remote entry whose key is well-formed but outside the synced set.
    let bad = b"evil()".to_vec();
    let hash = sha256_hex(&bad);
    let mut entries = BTreeMap::new();
    let mut clock = VectorClock::new();
    clock.bump("mallory");
    let entry = |h: &str, n: u64| Entry {
        clock: clock.clone(),
        hash: Some(h.to_string()),
        size: n,
        kind: "text".into(),
        category: "config".into(),
        modified_ms: 1,
        machine: "mallory".into(),
        deleted_ms: None,
    };
    entries.insert("config/node_modules/x.js".to_string(), entry(&hash, bad.len() as u64));
    let good = b"# agent\n".to_vec();
    let good_hash = sha256_hex(&good);
    entries.insert("config/agents/a.md".to_string(), entry(&good_hash, good.len() as u64));
    let mut blobs = BTreeMap::new();
    blobs.insert(hash, bad);
    blobs.insert(good_hash, good);
    remote.commit(None, Changes { entries, removed: vec![], blobs, message: "crafted".into() }).unwrap();

    let m = Machine::new(t.path(), "b");
    let cfg = config();
    let report = m.syncer("b", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert!(report.skipped.iter().any(|s| s.starts_with("config/node_modules/x.js")), "{:?}", report.skipped);
    assert!(!m.root.join("config/node_modules").exists());
    assert_eq!(m.get("config/agents/a.md").as_deref(), Some("# agent\n"));
}

#[test]
fn dry_run_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let m = Machine::new(t.path(), "a");
    m.put("config/AGENTS.md", "hi\n");
    let cfg = config();
    let r = m.syncer("a", &cfg, &remote).sync(&SyncOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!(r.pushed, vec!["config/AGENTS.md"]);
    assert!(remote.head().unwrap().is_none());
    assert!(!m.root.join("sync").exists());
}

/// A remote that runs a hook (an edit by the person) just before committing.
struct EditDuringCommit<'a> {
    inner: &'a LocalRemote,
    hook: Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
}

impl Remote for EditDuringCommit<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn head(&self) -> Result<Option<Version>, RemoteError> {
        self.inner.head()
    }
    fn manifest(&self, at: &Version) -> Result<Manifest, RemoteError> {
        self.inner.manifest(at)
    }
    fn blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        self.inner.blob(hash)
    }
    fn commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        if let Some(hook) = self.hook.lock().unwrap().take() {
            hook();
        }
        self.inner.commit(expected, changes)
    }
}

#[test]
fn a_file_edited_during_the_sync_is_not_overwritten_and_merges_next_time() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let cfg = config();
    let a = Machine::new(t.path(), "a");
    let b = Machine::new(t.path(), "b");
    a.put("config/AGENTS.md", "one\ntwo\nthree\n");
    a.syncer("a", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    b.syncer("b", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    // A changes the first line; B edits another file (so B commits) and, during B's commit,
    // the person edits the last line of AGENTS.md on B.
    a.put("config/AGENTS.md", "ONE\ntwo\nthree\n");
    a.syncer("a", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    b.put("config/agents/x.md", "x\n");
    let agents = b.root.join("config/AGENTS.md");
    let wrapper = EditDuringCommit {
        inner: &remote,
        hook: Mutex::new(Some(Box::new(move || std::fs::write(&agents, "one\ntwo\nTHREE\n").unwrap()))),
    };
    let r = b.syncer("b", &cfg, &wrapper).sync(&SyncOptions::default()).unwrap();
    assert_eq!(r.deferred, vec!["config/AGENTS.md"]);
    assert_eq!(b.get("config/AGENTS.md").as_deref(), Some("one\ntwo\nTHREE\n"), "the person's edit is kept");
    // Next sync merges both edits.
    let r = b.syncer("b", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert_eq!(r.merged, vec!["config/AGENTS.md"]);
    assert_eq!(b.get("config/AGENTS.md").as_deref(), Some("ONE\ntwo\nTHREE\n"));
    a.syncer("a", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert_eq!(a.get("config/AGENTS.md"), b.get("config/AGENTS.md"));
}

#[cfg(unix)]
#[test]
fn a_synced_file_that_became_a_symlink_is_not_a_deletion() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let cfg = config();
    let a = Machine::new(t.path(), "a");
    let b = Machine::new(t.path(), "b");
    a.put("config/AGENTS.md", "shared\n");
    a.syncer("a", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    b.syncer("b", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    // A's dotfile manager replaces the file with a symlink.
    let target = t.path().join("dotfiles-AGENTS.md");
    std::fs::write(&target, "shared\n").unwrap();
    std::fs::remove_file(a.root.join("config/AGENTS.md")).unwrap();
    std::os::unix::fs::symlink(&target, a.root.join("config/AGENTS.md")).unwrap();
    let r = a.syncer("a", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert!(r.deleted_remote.is_empty(), "{r:?}");
    assert!(r.skipped.iter().any(|s| s.starts_with("config/AGENTS.md")), "{:?}", r.skipped);
    b.syncer("b", &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert_eq!(b.get("config/AGENTS.md").as_deref(), Some("shared\n"));
}
