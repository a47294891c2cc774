//! Driver tests that need fault injection (a remote that misbehaves or a file edited mid-sync).
//! Multi-machine property and CLI tests live in tests/.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::remote::local::LocalRemote;
use crate::remote::testing::HookedRemote;
use crate::testing::{Machine, config};

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
    assert!(report.refused.iter().any(|s| s.starts_with("config/node_modules/x.js: ")), "{:?}", report.refused);
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
    let wrapper = HookedRemote::new(&remote).before_next_commit(move || std::fs::write(&agents, "one\ntwo\nTHREE\n").unwrap());
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

/// An in-memory source with fingerprints (like OpenCode's database), counting full reads.
struct MemSource {
    cat: Category,
    items: Mutex<BTreeMap<String, (u64, Vec<u8>)>>, // key → (version, bytes)
    reads: Mutex<usize>,
}

impl MemSource {
    fn new(cat: Category) -> MemSource {
        MemSource { cat, items: Mutex::new(BTreeMap::new()), reads: Mutex::new(0) }
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        let mut m = self.items.lock().unwrap();
        let v = m.get(key).map_or(1, |(v, _)| v + 1);
        m.insert(key.into(), (v, bytes.to_vec()));
    }
    fn reads(&self) -> usize {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl Source for &MemSource {
    fn category(&self) -> Category {
        self.cat
    }
    fn list(&self) -> Result<Vec<crate::source::ItemMeta>, crate::source::SourceError> {
        unreachable!("the engine uses fingerprints")
    }
    fn fingerprints(&self) -> Result<Option<crate::source::Fingerprints>, crate::source::SourceError> {
        let items = self.items.lock().unwrap().iter().map(|(k, (v, _))| (k.clone(), v.to_string())).collect();
        Ok(Some(crate::source::Fingerprints { items, skipped: Vec::new() }))
    }
    fn read(&self, key: &str) -> Result<Option<crate::source::Item>, crate::source::SourceError> {
        *self.reads.lock().unwrap() += 1;
        Ok(self.items.lock().unwrap().get(key).map(|(_, b)| crate::source::Item {
            meta: crate::source::ItemMeta { key: key.into(), category: self.cat, kind: MergeKind::Text, size: b.len() as u64, modified_ms: 1, mode: None },
            bytes: b.clone(),
        }))
    }
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), crate::source::SourceError> {
        self.put(key, bytes);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), crate::source::SourceError> {
        self.items.lock().unwrap().remove(key);
        Ok(())
    }
}

fn mem_syncer<'a>(name: &str, dir: &Path, src: &'a MemSource, config: &'a Config, remote: &'a dyn Remote) -> Syncer<'a> {
    crate::testing::syncer(name, config, remote, vec![Box::new(src)], dir.join(name))
}

#[test]
fn fingerprinted_items_are_read_only_when_their_fingerprint_changes() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let cfg = config();
    let a = MemSource::new(Category::Sessions);
    let b = MemSource::new(Category::Sessions);
    for i in 0..50 {
        a.put(&format!("sessions/s{i}.json"), format!("session {i}\n").as_bytes());
    }
    let opts = SyncOptions::default();
    let r = mem_syncer("a", t.path(), &a, &cfg, &remote).sync(&opts).unwrap();
    assert_eq!((r.pushed.len(), a.reads()), (50, 50));
    // Nothing changed: nothing read.
    let r = mem_syncer("a", t.path(), &a, &cfg, &remote).sync(&opts).unwrap();
    assert!(r.pushed.is_empty() && r.pulled.is_empty());
    assert_eq!(a.reads(), 0);
    // One change: one read, one push.
    a.put("sessions/s7.json", b"changed\n");
    let r = mem_syncer("a", t.path(), &a, &cfg, &remote).sync(&opts).unwrap();
    assert_eq!((r.pushed.clone(), a.reads()), (vec!["sessions/s7.json".to_string()], 1));
    // b pulls everything; its writes change its fingerprints, so it reads them once to learn the new ones.
    let r = mem_syncer("b", t.path(), &b, &cfg, &remote).sync(&opts).unwrap();
    assert_eq!(r.pulled.len(), 50);
    let r = mem_syncer("b", t.path(), &b, &cfg, &remote).sync(&opts).unwrap();
    assert!(r.pushed.is_empty() && r.pulled.is_empty(), "{r:?}");
    b.reads();
    let r = mem_syncer("b", t.path(), &b, &cfg, &remote).sync(&opts).unwrap();
    assert!(r.pushed.is_empty() && r.pulled.is_empty());
    assert_eq!(b.reads(), 0);
    // A deletion on b (key gone from the fingerprints) reaches a.
    b.items.lock().unwrap().remove("sessions/s3.json");
    mem_syncer("b", t.path(), &b, &cfg, &remote).sync(&opts).unwrap();
    mem_syncer("a", t.path(), &a, &cfg, &remote).sync(&opts).unwrap();
    assert!(!a.items.lock().unwrap().contains_key("sessions/s3.json"));
}

#[test]
fn a_sync_bigger_than_one_round_runs_in_several_commits() {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let cfg = config();
    let a = MemSource::new(Category::Messages);
    let b = MemSource::new(Category::Messages);
    let big = vec![b'x'; (ROUND_BYTES / 3 + 1) as usize];
    for i in 0..7 {
        let mut v = big.clone();
        v[0] = b'0' + i;
        a.put(&format!("messages/s{i}.json"), &v);
    }
    let rounds = Mutex::new(0);
    let progress = |_: &SyncReport| *rounds.lock().unwrap() += 1;
    let mut s = mem_syncer("a", t.path(), &a, &cfg, &remote);
    s.on_progress = Some(&progress);
    let r = s.sync(&SyncOptions::default()).unwrap();
    assert_eq!(r.pushed.len(), 7);
    assert!(*rounds.lock().unwrap() >= 2, "rounds");
    let versions = LocalRemote::open(t.path().join("remote")).unwrap().history_len().unwrap();
    assert!(versions >= 3, "{versions} commits");
    let r = mem_syncer("b", t.path(), &b, &cfg, &remote).sync(&SyncOptions::default()).unwrap();
    assert_eq!(r.pulled.len(), 7);
    assert_eq!(b.items.lock().unwrap().len(), 7);
}

#[test]
fn progress_knows_the_totals_from_the_start_of_a_sync_in_several_rounds() {
    use crate::sync::progress::{Phase, Progress, Tracker};
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let cfg = config();
    let a = MemSource::new(Category::Messages);
    let b = MemSource::new(Category::Messages);
    let size = (ROUND_BYTES / 3 + 1) as usize;
    for i in 0..7u8 {
        let mut v = vec![b'x'; size];
        v[0] = b'0' + i;
        a.put(&format!("messages/s{i}.json"), &v);
    }
    let total = 7 * size as u64;
    for (name, src) in [("a", &a), ("b", &b)] {
        let seen = Mutex::new(Vec::<Progress>::new());
        let sink = |p: &Progress| seen.lock().unwrap().push(*p);
        let tracker = Tracker::new(&sink);
        let mut s = mem_syncer(name, t.path(), src, &cfg, &remote);
        s.progress = Some(&tracker);
        s.sync(&SyncOptions::default()).unwrap();
        drop(s);
        let seen = seen.lock().unwrap().clone();
        // The first event carries the totals of the whole sync, before anything moved.
        assert_eq!(seen[0].phase, Some(Phase::Planning), "{name}");
        assert_eq!((seen[0].items_done, seen[0].items_total, seen[0].bytes_done), (0, 7, 0), "{name}: {:?}", seen[0]);
        assert_eq!(seen[0].bytes_total, total, "{name}: exact for what is read and pulled, estimated for the rest");
        for w in seen.windows(2) {
            assert!(w[1].items_done >= w[0].items_done && w[1].bytes_done >= w[0].bytes_done, "{name}: {w:?}");
            assert!(w[1].items_done <= w[1].items_total && w[1].bytes_done <= w[1].bytes_total, "{name}: {w:?}");
        }
        let last = seen.last().unwrap();
        assert_eq!(*last, Progress { phase: Some(Phase::Done), items_done: 7, items_total: 7, bytes_done: total, bytes_total: total }, "{name}");
        let phase = if name == "a" { Phase::Uploading } else { Phase::Downloading };
        assert!(seen.iter().any(|p| p.phase == Some(phase)), "{name}: {seen:?}");
    }
}
