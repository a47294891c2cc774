//! Races between machines committing to one remote: the loser of the compare-and-swap retries and
//! both changes end up in the remote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use oc_sync::config::Config;
use oc_sync::remote::{Changes, CommitOutcome, LocalRemote, Manifest, Remote, RemoteError, Version};
use oc_sync::source::{Category, FileSource, Source};
use oc_sync::sync::run::{SyncOptions, SyncReport, Syncer};
use oc_sync::time::now_ms as system_now_ms;
use oc_sync::sync::state::StateStore;
use serde_json::{Map, Value};

const OC: &str = "config/opencode.json";
const HIST: &str = "state/prompt-history.jsonl";

fn cfg() -> Config {
    Config { retry_delay_ms: 0, max_retry_attempts: 50, ..Config::default() }
}

#[derive(Clone)]
struct Machine {
    id: String,
    root: PathBuf,
}

impl Machine {
    fn new(base: &Path, id: &str) -> Machine {
        Machine { id: id.into(), root: base.join(id) }
    }
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
    fn json(&self) -> Map<String, Value> {
        match std::fs::read(self.path(OC)) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => Map::new(),
        }
    }
    fn set_key(&self, k: &str, v: Value) {
        let mut m = self.json();
        m.insert(k.into(), v);
        std::fs::create_dir_all(self.path(OC).parent().unwrap()).unwrap();
        std::fs::write(self.path(OC), serde_json::to_string_pretty(&m).unwrap()).unwrap();
    }
    fn append(&self, line: &str) {
        let p = self.path(HIST);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut b = std::fs::read(&p).unwrap_or_default();
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
        std::fs::write(p, b).unwrap();
    }
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path(HIST)).unwrap_or_default().lines().map(String::from).collect()
    }
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for key in [OC, HIST] {
            if let Ok(b) = std::fs::read(self.path(key)) {
                out.insert(key.to_string(), b);
            }
        }
        out
    }
    fn sync(&self, remote: &dyn Remote, config: &Config) -> SyncReport {
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(FileSource::new(Category::Config, self.root.join("config"), Default::default()).unwrap()),
            Box::new(FileSource::new(Category::State, self.root.join("state"), Default::default()).unwrap()),
        ];
        let syncer = Syncer {
            machine: self.id.clone(),
            config,
            remote,
            sources,
            state: StateStore::new(self.root.join("sync")),
            blocked: BTreeSet::new(),
            now_ms: system_now_ms,
            on_local_write: None,
            codec: None,
            on_progress: None,
        };
        syncer.sync(&SyncOptions::default()).unwrap_or_else(|e| panic!("sync of {} failed: {e}", self.id))
    }
}

type Hook = Box<dyn FnOnce() + Send>;

/// Delegates to a LocalRemote; runs `before_first_commit` (once) just before the first commit, and
/// counts commits and their outcomes.
struct Wrapper {
    inner: LocalRemote,
    before_first_commit: Mutex<Option<Hook>>,
    outcomes: Mutex<Vec<&'static str>>,
}

impl Wrapper {
    fn new(inner: LocalRemote, hook: Option<Hook>) -> Wrapper {
        Wrapper { inner, before_first_commit: Mutex::new(hook), outcomes: Mutex::new(Vec::new()) }
    }
}

impl Remote for Wrapper {
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
        let hook = self.before_first_commit.lock().unwrap().take();
        if let Some(h) = hook {
            h();
        }
        let out = self.inner.commit(expected, changes)?;
        self.outcomes.lock().unwrap().push(match out {
            CommitOutcome::Committed(_) => "committed",
            CommitOutcome::Conflict { .. } => "conflict",
        });
        Ok(out)
    }
}

fn setup(n: usize) -> (tempfile::TempDir, PathBuf, Vec<Machine>) {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let ms: Vec<Machine> = (1..=n).map(|i| Machine::new(dir.path(), &format!("m{i}"))).collect();
    (dir, remote, ms)
}

#[test]
fn loser_of_a_commit_race_retries_and_both_edits_survive() {
    let (_dir, remote_path, ms) = setup(2);
    let (a, b) = (ms[0].clone(), ms[1].clone());
    let config = cfg();
    let plain = LocalRemote::open(&remote_path).unwrap();
    a.set_key("shared", "base".into());
    a.append("{\"text\":\"base\"}");
    a.sync(&plain, &config);
    b.sync(&plain, &config);

    a.set_key("from_a", "A".into());
    a.append("{\"text\":\"a\"}");
    b.set_key("from_b", "B".into());
    b.append("{\"text\":\"b\"}");
    // While A is about to commit, B runs a whole sync and wins the race.
    let (b2, remote2, config2) = (b.clone(), remote_path.clone(), config.clone());
    let b_ran = Arc::new(AtomicBool::new(false));
    let flag = b_ran.clone();
    let hook: Hook = Box::new(move || {
        let r = b2.sync(&LocalRemote::open(&remote2).unwrap(), &config2);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.pushed, vec![OC.to_string(), HIST.to_string()]);
        flag.store(true, Ordering::SeqCst);
    });
    let wrapped = Wrapper::new(LocalRemote::open(&remote_path).unwrap(), Some(hook));
    let ra = a.sync(&wrapped, &config);
    assert!(b_ran.load(Ordering::SeqCst));
    assert_eq!(*wrapped.outcomes.lock().unwrap(), vec!["conflict", "committed"]);
    assert_eq!(ra.attempts, 2);
    assert_eq!(ra.merged, vec![OC.to_string(), HIST.to_string()], "{ra:?}");
    b.sync(&plain, &config);
    for m in [&a, &b] {
        let j = m.json();
        assert_eq!((j.get("from_a"), j.get("from_b"), j.get("shared")), (Some(&"A".into()), Some(&"B".into()), Some(&"base".into())), "{}", m.id);
        let l = m.lines();
        for want in ["{\"text\":\"base\"}", "{\"text\":\"a\"}", "{\"text\":\"b\"}"] {
            assert_eq!(l.iter().filter(|x| *x == want).count(), 1, "{want} on {}: {l:?}", m.id);
        }
    }
    assert_eq!(a.files(), b.files());
    // Settled: nothing more to do.
    let r = a.sync(&plain, &config);
    assert!(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty());
}

#[test]
fn two_threads_commit_at_the_same_moment_one_retries() {
    let (_dir, remote_path, ms) = setup(2);
    let config = cfg();
    let plain = LocalRemote::open(&remote_path).unwrap();
    ms[0].set_key("shared", "base".into());
    ms[0].sync(&plain, &config);
    ms[1].sync(&plain, &config);
    ms[0].set_key("k_m1", "1".into());
    ms[0].append("{\"text\":\"m1\"}");
    ms[1].set_key("k_m2", "2".into());
    ms[1].append("{\"text\":\"m2\"}");

    // Both read the head and plan, then meet at the barrier inside their first commit.
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ms
        .iter()
        .cloned()
        .map(|m| {
            let (barrier, remote_path, config) = (barrier.clone(), remote_path.clone(), config.clone());
            std::thread::spawn(move || {
                let hook: Hook = Box::new(move || {
                    barrier.wait();
                });
                let w = Wrapper::new(LocalRemote::open(&remote_path).unwrap(), Some(hook));
                let r = m.sync(&w, &config);
                let outcomes = w.outcomes.lock().unwrap().clone();
                (r.attempts, outcomes)
            })
        })
        .collect();
    let mut results: Vec<(u32, Vec<&str>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    results.sort();
    assert_eq!(results, vec![(1, vec!["committed"]), (2, vec!["conflict", "committed"])]);
    for m in &ms {
        m.sync(&plain, &config);
    }
    for m in &ms {
        let j = m.json();
        assert_eq!((j.get("k_m1"), j.get("k_m2")), (Some(&"1".into()), Some(&"2".into())), "{}", m.id);
        let l = m.lines();
        assert!(l.contains(&"{\"text\":\"m1\"}".to_string()) && l.contains(&"{\"text\":\"m2\"}".to_string()), "{l:?}");
    }
    assert_eq!(ms[0].files(), ms[1].files());
}

#[test]
fn many_threads_edit_and_sync_concurrently_then_converge() {
    const ROUNDS: usize = 10;
    let (_dir, remote_path, ms) = setup(3);
    let config = cfg();
    let handles: Vec<_> = ms
        .iter()
        .cloned()
        .map(|m| {
            let (remote_path, config) = (remote_path.clone(), config.clone());
            std::thread::spawn(move || {
                let remote = LocalRemote::open(&remote_path).unwrap();
                let mut attempts = 0;
                for round in 0..ROUNDS {
                    m.set_key(&format!("key_{}", m.id), Value::from(round as u64));
                    m.set_key("contended", Value::from(format!("{}-{round}", m.id)));
                    m.append(&format!("{{\"text\":\"{}-{round}\"}}", m.id));
                    attempts += m.sync(&remote, &config).attempts;
                }
                attempts
            })
        })
        .collect();
    let attempts: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(attempts >= (3 * ROUNDS) as u32);
    // Settle round-robin until a whole round changes nothing.
    let remote = LocalRemote::open(&remote_path).unwrap();
    let mut quiet = false;
    for _ in 0..6 {
        let mut any = false;
        for m in &ms {
            let r = m.sync(&remote, &config);
            any |= !(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty());
        }
        if !any {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "no convergence");
    let first = ms[0].files();
    for m in &ms[1..] {
        assert_eq!(m.files(), first, "{} differs from m1", m.id);
    }
    let j = ms[0].json();
    for m in &ms {
        // Keys only one machine ever wrote keep its last value.
        assert_eq!(j.get(&format!("key_{}", m.id)), Some(&Value::from((ROUNDS - 1) as u64)), "{j:?}");
    }
    assert!(j.get("contended").and_then(Value::as_str).is_some_and(|v| v.ends_with(&format!("-{}", ROUNDS - 1))), "{j:?}");
    let lines = ms[0].lines();
    for m in &ms {
        for round in 0..ROUNDS {
            let want = format!("{{\"text\":\"{}-{round}\"}}", m.id);
            assert_eq!(lines.iter().filter(|l| **l == want).count(), 1, "{want}: {lines:?}");
        }
    }
    assert_eq!(lines.len(), 3 * ROUNDS);
}
