//! Property and scenario tests of the sync engine, driving `Syncer` directly with simulated machines
//! (one temp dir per machine with `config/`, `state/` and `sync/`) sharing one folder remote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::lib::{Config, ConflictStrategy, HookedRemote, LocalRemote, Remote, SyncError, SyncOptions, SyncReport, fault};
use crate::common::{Machine, OC};
use proptest::prelude::*;
use serde_json::{Map, Value};
const HIST: &str = "state/prompt-history.jsonl";

fn config(strategy: ConflictStrategy) -> Config {
    Config { conflict_strategy: strategy, retry_delay_ms: 0, ..Config::default() }
}

fn changed(r: &SyncReport) -> bool {
    !(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty() && r.deleted_remote.is_empty() && r.deleted_local.is_empty() && r.expired.is_empty())
}

/// The current remote bytes of `key` (None: absent or tombstone).
fn remote_bytes(remote: &dyn Remote, key: &str) -> Option<Vec<u8>> {
    let head = remote.head().unwrap()?;
    let m = remote.manifest(&head).unwrap();
    let e = m.entries.get(key)?;
    e.hash.as_deref().map(|h| remote.blob(h).unwrap())
}

fn remote_json(remote: &dyn Remote) -> Map<String, Value> {
    match serde_json::from_slice(&remote_bytes(remote, OC).expect("remote has opencode.json")).unwrap() {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

struct World {
    _remote_dir: tempfile::TempDir,
    remote: HookedRemote<'static>,
    machines: Vec<Machine>,
}

impl World {
    fn new(n: usize) -> World {
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = HookedRemote::owning(LocalRemote::open(remote_dir.path().join("remote")).unwrap());
        let machines = (0..n).map(|i| Machine::new(&format!("m{}", i + 1))).collect();
        World { _remote_dir: remote_dir, remote, machines }
    }
    /// Two machines sharing an opencode.json with a key "seed", settled.
    fn seeded_pair(cfg: &Config, opts: &SyncOptions) -> World {
        let w = World::new(2);
        w.machines[0].set_key("seed", Value::from("s"));
        w.settle(cfg, opts).unwrap();
        w
    }
    /// Round-robin syncs until a whole round changes nothing (at least two rounds). Returns rounds run.
    fn settle(&self, cfg: &Config, opts: &SyncOptions) -> Result<usize, String> {
        for round in 1..=8 {
            let mut any = false;
            for m in &self.machines {
                let r = m.sync_with(&self.remote, cfg, BTreeSet::new(), opts).map_err(|e| format!("settle sync of {}: {e}", m.id))?;
                any |= changed(&r);
            }
            if !any && round >= 2 {
                return Ok(round);
            }
        }
        Err("no convergence after 8 round-robin rounds".into())
    }
}

// ---------------------------------------------------------------- property test

const KEYS: &[&str] = &["k0", "k1", "k2", "k3"];
const AGENTS: &[&str] = &["alpha", "beta", "gamma"];

#[derive(Debug, Clone)]
enum Op {
    SetKey { m: usize, k: usize, v: u8 },
    DelKey { m: usize, k: usize },
    Append { m: usize },
    AgentWrite { m: usize, name: usize, line: usize },
    AgentDelete { m: usize, name: usize },
    Sync { m: usize },
    /// A sync cut off by `FAULTS[fault]` (a lost answer, or a failure at a step).
    FaultySync { m: usize, fault: usize },
}

fn op_strategy(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..n, 0..KEYS.len(), any::<u8>()).prop_map(|(m, k, v)| Op::SetKey { m, k, v }),
        1 => (0..n, 0..KEYS.len()).prop_map(|(m, k)| Op::DelKey { m, k }),
        2 => (0..n).prop_map(|m| Op::Append { m }),
        2 => (0..n, 0..AGENTS.len(), 0..4usize).prop_map(|(m, name, line)| Op::AgentWrite { m, name, line }),
        1 => (0..n, 0..AGENTS.len()).prop_map(|(m, name)| Op::AgentDelete { m, name }),
        4 => (0..n).prop_map(|m| Op::Sync { m }),
        2 => (0..n, 0..FAULTS.len()).prop_map(|(m, fault)| Op::FaultySync { m, fault }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=3).prop_flat_map(|n| (Just(n), prop::collection::vec(op_strategy(n), 1..40)))
}

static CASES: AtomicUsize = AtomicUsize::new(0);
static FAULTS_INJECTED: AtomicUsize = AtomicUsize::new(0);
const PROP_CASES: u32 = 96;

fn run_scenario(n: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let n_case = CASES.fetch_add(1, Ordering::Relaxed) + 1;
    if n_case.is_multiple_of(100) {
        eprintln!("{n_case} cases, {} syncs cut off so far", FAULTS_INJECTED.load(Ordering::Relaxed));
    }
    let cfg = config(ConflictStrategy::AutoMerge);
    // Random ops may delete most agent files; the deletion guard is tested separately.
    let opts = SyncOptions { allow_deletions: true, ..Default::default() };
    let w = World::new(n);
    // Seed: m1 has a config and a history line; everybody syncs once.
    w.machines[0].set_key("seed", Value::from("s"));
    w.machines[0].append_line(HIST, "{\"text\":\"seed\"}");
    w.settle(&cfg, &opts).map_err(TestCaseError::fail)?;

    let mut lines: Vec<String> = vec!["{\"text\":\"seed\"}".into()];
    // Per JSON key: which machines touched it, and the last value the last toucher left (None = deleted).
    let mut touched: BTreeMap<&str, (BTreeSet<usize>, Option<Value>)> = BTreeMap::new();
    let mut seq = 0usize;
    for op in ops {
        seq += 1;
        match *op {
            Op::SetKey { m, k, v } => {
                let val = Value::from(format!("{}-{v}-{seq}", w.machines[m].id));
                w.machines[m].set_key(KEYS[k], val.clone());
                let t = touched.entry(KEYS[k]).or_default();
                t.0.insert(m);
                t.1 = Some(val);
            }
            Op::DelKey { m, k } => {
                w.machines[m].del_key(KEYS[k]);
                let t = touched.entry(KEYS[k]).or_default();
                t.0.insert(m);
                t.1 = None;
            }
            Op::Append { m } => {
                let line = format!("{{\"text\":\"{}-op{seq}\"}}", w.machines[m].id);
                w.machines[m].append_line(HIST, &line);
                lines.push(line);
            }
            Op::AgentWrite { m, name, line } => {
                let key = format!("config/agents/{}.md", AGENTS[name]);
                let mach = &w.machines[m];
                let text = format!("{} edit {seq}", mach.id);
                let mut ls: Vec<String> = match mach.read(&key) {
                    Some(b) => String::from_utf8(b).unwrap().lines().map(String::from).collect(),
                    None => vec!["# agent".into(), "line one".into(), "line two".into()],
                };
                if line < ls.len() {
                    ls[line] = text;
                } else {
                    ls.push(text);
                }
                mach.write(&key, (ls.join("\n") + "\n").as_bytes());
            }
            Op::AgentDelete { m, name } => w.machines[m].remove(&format!("config/agents/{}.md", AGENTS[name])),
            Op::Sync { m } => {
                // (d): with auto-merge nothing errors.
                w.machines[m].sync_with(&w.remote, &cfg, BTreeSet::new(), &opts)
                    .map_err(|e| TestCaseError::fail(format!("sync of {} failed: {e}", w.machines[m].id)))?;
            }
            Op::FaultySync { m, fault } => {
                // Fails, or succeeds when the step is not reached (nothing to commit or write).
                if faulty_sync(&w.machines[m], &w.remote, &cfg, &opts, FAULTS[fault]).is_err() {
                    FAULTS_INJECTED.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    w.settle(&cfg, &opts).map_err(TestCaseError::fail)?;

    // (a) identical file sets everywhere.
    let first = w.machines[0].synced_files();
    for m in &w.machines[1..] {
        let files = m.synced_files();
        prop_assert_eq!(
            first.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "file sets differ between m1 and {}",
            m.id
        );
        for (k, v) in &first {
            prop_assert!(
                files[k] == *v,
                "{} differs between m1 and {}:\n--- m1\n{}\n--- {}\n{}",
                k,
                m.id,
                String::from_utf8_lossy(v),
                m.id,
                String::from_utf8_lossy(&files[k])
            );
        }
    }
    // (b) every appended line present everywhere, exactly once (all lines are unique).
    for m in &w.machines {
        let have = m.lines(HIST);
        for l in &lines {
            let count = have.iter().filter(|h| *h == l).count();
            prop_assert_eq!(count, 1, "line {} appears {} times on {}", l, count, m.id);
        }
    }
    // (c) a key touched by one machine only keeps that machine's last value (or stays deleted).
    let json = w.machines[0].oc_json();
    prop_assert_eq!(json.get("seed"), Some(&Value::from("s")));
    for (k, (who, last)) in &touched {
        if who.len() == 1 {
            prop_assert_eq!(json.get(*k), last.as_ref(), "key {} (only touched by m{})", k, who.iter().next().unwrap() + 1);
        }
    }
    Ok(())
}

/// Random sequences of edits and syncs on 2-3 machines, then settle; checks (a)-(d) (see
/// `run_scenario`). Run through a `TestRunner` so the number of cases actually run is checked.
#[test]
fn random_edits_and_syncs_converge_without_losing_anything() {
    // OC_SYNC_PROP_CASES raises the count for a longer local hunt.
    let cases = std::env::var("OC_SYNC_PROP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(PROP_CASES);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let before = CASES.load(Ordering::Relaxed);
    if let Err(e) = runner.run(&scenario(), |(n, ops)| run_scenario(n, &ops)) {
        panic!("{e}");
    }
    let ran = CASES.load(Ordering::Relaxed) - before;
    assert!(ran >= cases as usize);
    eprintln!("{ran} cases, {} syncs cut off by a fault", FAULTS_INJECTED.load(Ordering::Relaxed));
}

// ---------------------------------------------------------------- strategies

const T0: u64 = 1_700_000_000_000;

/// m1 and m2 share {"a":"base","x":"base"}; then m1 sets a="A", y="A" and m2 sets a="B", z="B",
/// with file mtimes `a_ms` and `b_ms`. m1 syncs first. Returns (world, m2's report).
fn concurrent_same_key(strategy: ConflictStrategy, a_ms: u64, b_ms: u64) -> (World, Config, SyncReport) {
    let cfg = config(strategy);
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let mut m = Map::new();
    m.insert("a".into(), "base".into());
    m.insert("x".into(), "base".into());
    a.set_oc_json(&m);
    a.set_mtime(OC, T0);
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    assert_eq!(b.oc_json(), m);

    a.set_key("a", "A");
    a.set_key("y", "A");
    a.set_mtime(OC, a_ms);
    b.set_key("a", "B");
    b.set_key("z", "B");
    b.set_mtime(OC, b_ms);
    let ra = a.sync_on(&w.remote, &cfg);
    assert_eq!(ra.pushed, vec![OC.to_string()]);
    let rb = b.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions::default()).unwrap();
    (w, cfg, rb)
}

fn get<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn assert_converged(w: &World, cfg: &Config) {
    w.settle(cfg, &SyncOptions::default()).unwrap();
    assert_eq!(w.machines[0].synced_files(), w.machines[1].synced_files(), "machines did not converge");
}

#[test]
fn auto_merge_merges_other_keys_and_newest_side_wins_the_conflicting_key() {
    // m2's file is newer: m2's value.
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::AutoMerge, T0 + 1000, T0 + 2000);
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "x"), get(&j, "y"), get(&j, "z")), (Some("B"), Some("base"), Some("A"), Some("B")), "{j:?}");
    assert_eq!(rb.merged, vec![OC.to_string()]);
    assert_eq!(rb.conflicts.len(), 1);
    assert!(!rb.conflicts[0].needs_person);
    assert_eq!(get(&remote_json(&w.remote), "a"), Some("B"));
    assert_converged(&w, &cfg);

    // m1's file is newer: m1's value, still merged.
    let (w, cfg, _) = concurrent_same_key(ConflictStrategy::AutoMerge, T0 + 2000, T0 + 1000);
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("A"), Some("A"), Some("B")), "{j:?}");
    assert_converged(&w, &cfg);
    assert_eq!(get(&w.machines[0].oc_json(), "a"), Some("A"));
}

#[test]
fn auto_merge_tie_on_mtime_is_broken_by_machine_id() {
    // Same mtime: the larger machine id ("m2" > "m1") counts as newer.
    let (w, cfg, _) = concurrent_same_key(ConflictStrategy::AutoMerge, T0 + 1000, T0 + 1000);
    assert_eq!(get(&w.machines[1].oc_json(), "a"), Some("B"));
    assert_converged(&w, &cfg);
    assert_eq!(get(&w.machines[0].oc_json(), "a"), Some("B"));
}

#[test]
fn local_wins_keeps_the_syncing_machines_value() {
    // Even though m1's file is newer.
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::LocalWins, T0 + 2000, T0 + 1000);
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("B"), Some("A"), Some("B")), "{j:?}");
    assert_eq!(rb.conflicts.len(), 1);
    assert_eq!(rb.conflicts[0].strategy, "local-wins");
    assert_eq!(get(&remote_json(&w.remote), "a"), Some("B"));
    assert_converged(&w, &cfg);
}

#[test]
fn remote_wins_keeps_the_already_pushed_value() {
    // Even though m2's file is newer.
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::RemoteWins, T0 + 1000, T0 + 2000);
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("A"), Some("A"), Some("B")), "{j:?}");
    assert_eq!(rb.conflicts.len(), 1);
    assert_eq!(rb.conflicts[0].strategy, "remote-wins");
    assert_converged(&w, &cfg);
    assert_eq!(get(&w.machines[0].oc_json(), "a"), Some("A"));
}

#[test]
fn newest_wins_takes_the_whole_newer_file() {
    // m1's file newer: m2 ends with m1's file exactly (z is lost there, kept as conflict copy).
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::NewestWins, T0 + 2000, T0 + 1000);
    assert_eq!(w.machines[1].read(OC), w.machines[0].read(OC));
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("A"), Some("A"), None), "{j:?}");
    assert_eq!(rb.conflicts.len(), 1);
    assert_eq!(rb.conflicts[0].winner, "remote");
    assert!(rb.conflicts[0].local.as_deref().is_some_and(|l| String::from_utf8_lossy(l).contains("\"z\"")));
    assert_converged(&w, &cfg);

    // m2's file newer: m2's whole file (y lost), and m1 pulls it.
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::NewestWins, T0 + 1000, T0 + 2000);
    let j = w.machines[1].oc_json();
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("B"), None, Some("B")), "{j:?}");
    assert_eq!(rb.conflicts[0].winner, "local");
    assert_converged(&w, &cfg);
    assert_eq!(get(&w.machines[0].oc_json(), "y"), None);
}

#[test]
fn ask_blocks_the_item_keeps_local_and_pushes_nothing_for_it() {
    let (w, cfg, rb) = concurrent_same_key(ConflictStrategy::Ask, T0 + 1000, T0 + 2000);
    let b = &w.machines[1];
    let j = b.oc_json();
    // Local file untouched.
    assert_eq!((get(&j, "a"), get(&j, "y"), get(&j, "z")), (Some("B"), None, Some("B")), "{j:?}");
    assert_eq!(rb.blocked, vec![OC.to_string()]);
    assert_eq!(rb.conflicts.len(), 1);
    let c = &rb.conflicts[0];
    assert!(c.needs_person);
    assert_eq!(c.key, OC);
    assert_eq!(c.winner, "none");
    assert!(rb.pushed.is_empty() && rb.merged.is_empty());
    // The remote still holds m1's version.
    let r = remote_json(&w.remote);
    assert_eq!((get(&r, "a"), get(&r, "z")), (Some("A"), None));
    // While blocked (the session passes open ask-conflicts as `blocked`), later syncs leave it alone.
    let blocked: BTreeSet<String> = [OC.to_string()].into();
    let again = b.sync_with(&w.remote, &cfg, blocked, &SyncOptions::default()).unwrap();
    assert_eq!(again.blocked, vec![OC.to_string()]);
    assert!(again.conflicts.is_empty());
    assert_eq!(get(&b.oc_json(), "a"), Some("B"));
    assert_eq!(get(&remote_json(&w.remote), "a"), Some("A"));
    let ra = w.machines[0].sync_on(&w.remote, &cfg);
    assert!(!changed(&ra));
    assert_eq!(get(&w.machines[0].oc_json(), "a"), Some("A"));
}

// ---------------------------------------------------------------- deletions

fn agent(name: &str) -> String {
    format!("config/agents/{name}.md")
}

#[test]
fn deletion_concurrent_with_an_edit_keeps_the_edit() {
    let cfg = config(ConflictStrategy::AutoMerge);
    // Order 1: the deletion reaches the remote first.
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.write(&agent("x"), b"# x\nv1\n");
    a.write(&agent("keep"), b"# keep\n");
    a.write(&agent("keep2"), b"# keep2\n");
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    a.remove(&agent("x"));
    b.write(&agent("x"), b"# x\nv2 edited on m2\n");
    let ra = a.sync_on(&w.remote, &cfg);
    assert_eq!(ra.deleted_remote, vec![agent("x")]);
    let rb = b.sync_on(&w.remote, &cfg);
    assert_eq!(rb.pushed, vec![agent("x")], "{rb:?}");
    assert_eq!(b.read(&agent("x")).as_deref(), Some(&b"# x\nv2 edited on m2\n"[..]));
    a.sync_on(&w.remote, &cfg);
    assert_eq!(a.read(&agent("x")).as_deref(), Some(&b"# x\nv2 edited on m2\n"[..]));
    assert_converged(&w, &cfg);

    // Order 2: the edit reaches the remote first.
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.write(&agent("x"), b"# x\nv1\n");
    a.write(&agent("keep"), b"# keep\n");
    a.write(&agent("keep2"), b"# keep2\n");
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    b.write(&agent("x"), b"# x\nv2 edited on m2\n");
    b.sync_on(&w.remote, &cfg);
    a.remove(&agent("x"));
    let ra = a.sync_on(&w.remote, &cfg);
    assert!(ra.deleted_remote.is_empty(), "{ra:?}");
    assert_eq!(a.read(&agent("x")).as_deref(), Some(&b"# x\nv2 edited on m2\n"[..]));
    assert_converged(&w, &cfg);
}

#[test]
fn a_deletion_propagates_as_a_tombstone() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    for n in ["one", "two", "three"] {
        a.write(&agent(n), format!("# {n}\n").as_bytes());
    }
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    assert!(b.path(&agent("two")).exists());
    a.remove(&agent("two"));
    let ra = a.sync_on(&w.remote, &cfg);
    assert_eq!(ra.deleted_remote, vec![agent("two")]);
    let head = w.remote.head().unwrap().unwrap();
    let e = &w.remote.manifest(&head).unwrap().entries[&agent("two")];
    assert!(e.is_tombstone(), "{e:?}");
    assert_eq!(e.machine, "m1");
    let rb = b.sync_on(&w.remote, &cfg);
    assert_eq!(rb.deleted_local, vec![agent("two")]);
    assert!(!b.path(&agent("two")).exists());
    assert!(b.path(&agent("one")).exists() && b.path(&agent("three")).exists());
    assert_converged(&w, &cfg);
}

#[test]
fn deleting_most_of_a_category_needs_allow_deletions() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let names = ["a1", "a2", "a3", "a4", "a5"];
    for n in names {
        a.write(&agent(n), format!("# {n}\n").as_bytes());
    }
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    for n in &names[..4] {
        a.remove(&agent(n));
    }
    let head = w.remote.head().unwrap();
    match a.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions::default()) {
        Err(SyncError::TooManyDeletions { category, count, total, .. }) => {
            assert_eq!((category.as_str(), count, total), ("config", 4, 5));
        }
        other => panic!("expected TooManyDeletions, got {other:?}"),
    }
    let msg = a.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("--allow-deletions"), "{msg}");
    assert_eq!(w.remote.head().unwrap(), head, "a refused sync must not commit");

    let ra = a.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions { allow_deletions: true, ..Default::default() }).unwrap();
    assert_eq!(ra.deleted_remote.len(), 4);
    // The other machine would also delete 4 of its 5: refused there too, until allowed.
    assert!(matches!(
        b.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions::default()),
        Err(SyncError::TooManyDeletions { count: 4, .. })
    ));
    assert!(b.path(&agent("a1")).exists());
    let rb = b.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions { allow_deletions: true, ..Default::default() }).unwrap();
    assert_eq!(rb.deleted_local.len(), 4);
    assert_converged(&w, &cfg);
    assert_eq!(b.synced_files().keys().cloned().collect::<Vec<_>>(), vec![agent("a5")]);
}

#[test]
fn deleting_two_of_five_needs_no_flag() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let w = World::new(1);
    let a = &w.machines[0];
    for n in ["a1", "a2", "a3", "a4", "a5"] {
        a.write(&agent(n), b"x\n");
    }
    a.sync_on(&w.remote, &cfg);
    a.remove(&agent("a1"));
    a.remove(&agent("a2"));
    assert_eq!(a.sync_on(&w.remote, &cfg).deleted_remote.len(), 2);
}

#[test]
fn history_lines_from_both_sides_are_kept_and_dry_run_changes_nothing() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let w = World::new(2);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.append_line(HIST, "{\"text\":\"one\"}");
    a.sync_on(&w.remote, &cfg);
    b.sync_on(&w.remote, &cfg);
    a.append_line(HIST, "{\"text\":\"from a\"}");
    b.append_line(HIST, "{\"text\":\"from b\"}");
    a.sync_on(&w.remote, &cfg);
    let head = w.remote.head().unwrap();
    let before = b.synced_files();
    let dry = b.sync_with(&w.remote, &cfg, BTreeSet::new(), &SyncOptions { dry_run: true, ..Default::default() }).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.merged, vec![HIST.to_string()]);
    assert_eq!(b.synced_files(), before);
    assert_eq!(w.remote.head().unwrap(), head);
    b.sync_on(&w.remote, &cfg);
    assert_converged(&w, &cfg);
    for m in &w.machines {
        let l = m.lines(HIST);
        for want in ["{\"text\":\"one\"}", "{\"text\":\"from a\"}", "{\"text\":\"from b\"}"] {
            assert_eq!(l.iter().filter(|x| *x == want).count(), 1, "{} on {}: {l:?}", want, m.id);
        }
    }
}

// ---------------------------------------------------------------- crashes and lost answers

/// The loss from issue #12: B edits, A edits and merges, the answer to A's commit is lost (the
/// commit landed), A edits again and syncs: A's second edit must survive everywhere.
#[test]
fn an_edit_after_a_lost_commit_answer_survives() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let w = World::new(2);
    let remote = &w.remote;
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.set_key("seed", Value::from("s"));
    a.sync_on(remote, &cfg);
    b.sync_on(remote, &cfg);
    b.set_key("b1", Value::from("B"));
    b.sync_on(remote, &cfg);
    a.set_key("a1", Value::from("A"));
    remote.lose_next.store(true, Ordering::SeqCst);
    assert!(a.sync_with(remote, &cfg, BTreeSet::new(), &SyncOptions::default()).is_err(), "the lost answer fails the sync");
    a.set_key("a2", Value::from("A2"));
    a.sync_on(remote, &cfg);
    b.sync_on(remote, &cfg);
    a.sync_on(remote, &cfg);
    for m in [a, b] {
        let j = m.oc_json();
        for (k, v) in [("seed", "s"), ("b1", "B"), ("a1", "A"), ("a2", "A2")] {
            assert_eq!(get(&j, k), Some(v), "{k} on {}: {j:?}", m.id);
        }
    }
}

/// Every way one sync can be cut off: a lost answer to the commit (it landed), and a failure at
/// each named step of the driver (as if the process died there).
const FAULTS: &[&str] = &["lost-answer", "before-commit", "ref-update", "after-commit", "local-write", "before-state-save"];

/// Runs `m`'s sync with `fault` injected; Err is expected (unless the step was not reached).
fn faulty_sync(m: &Machine, remote: &HookedRemote, cfg: &Config, opts: &SyncOptions, fault: &str) -> Result<SyncReport, SyncError> {
    let step: &'static str = FAULTS.iter().find(|f| **f == fault).copied().expect("a known fault");
    let _hook = if step == "lost-answer" {
        remote.lose_next.store(true, Ordering::SeqCst);
        None
    } else {
        Some(fault::inject(move |s| s == step))
    };
    let r = m.sync_with(remote, cfg, BTreeSet::new(), opts);
    remote.lose_next.store(false, Ordering::SeqCst);
    r
}

/// The fault matrix for files on the folder remote: A's sync that merges B's edits (keys, a
/// history line, an agent file it must write locally) fails at each step; A then edits again.
/// After everybody syncs, every edit is on every machine.
#[test]
fn every_edit_survives_a_sync_cut_off_at_any_step() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let opts = SyncOptions::default();
    let mut lost = Vec::new();
    for fault in FAULTS {
        let w = World::new(2);
        let remote = &w.remote;
        let (a, b) = (&w.machines[0], &w.machines[1]);
        a.set_key("seed", Value::from("s"));
        a.append_line(HIST, "{\"text\":\"seed\"}");
        a.write("config/agents/x.md", b"# x\none\ntwo\nthree\n");
        a.write("config/agents/y.md", b"# y\n");
        a.sync_on(remote, &cfg);
        b.sync_on(remote, &cfg);
        b.set_key("b1", Value::from("B"));
        b.append_line(HIST, "{\"text\":\"b\"}");
        b.write("config/agents/x.md", b"# x\nONE by b\ntwo\nthree\n");
        b.sync_on(remote, &cfg);
        a.set_key("a1", Value::from("A"));
        a.append_line(HIST, "{\"text\":\"a1\"}");
        a.write("config/agents/y.md", b"# y\ntried\n");
        let r = faulty_sync(a, remote, &cfg, &opts, fault);
        assert!(r.is_err(), "{fault}: the sync should have been cut off: {r:?}");
        // Edits after the failure, on both machines.
        a.set_key("a2", Value::from("A2"));
        a.append_line(HIST, "{\"text\":\"a2\"}");
        let mut x = String::from_utf8(a.read("config/agents/x.md").unwrap()).unwrap();
        x = x.replace("three", "THREE by a");
        a.write("config/agents/x.md", x.as_bytes());
        a.write("config/agents/y.md", b"# y\n"); // and thought better of it
        b.set_key("b2", Value::from("B2"));
        for m in [a, b, a, b] {
            m.sync_on(remote, &cfg);
        }
        for m in [a, b] {
            let j = m.oc_json();
            for (k, v) in [("seed", "s"), ("b1", "B"), ("a1", "A"), ("a2", "A2"), ("b2", "B2")] {
                if get(&j, k) != Some(v) {
                    lost.push(format!("{fault}: key {k} on {}", m.id));
                }
            }
            let lines = m.lines(HIST);
            for t in ["seed", "b", "a1", "a2"] {
                let l = format!("{{\"text\":\"{t}\"}}");
                if lines.iter().filter(|x| **x == l).count() != 1 {
                    lost.push(format!("{fault}: history line {t} on {}", m.id));
                }
            }
            let agent = String::from_utf8(m.read("config/agents/x.md").unwrap()).unwrap();
            for edit in ["ONE by b", "THREE by a"] {
                if !agent.contains(edit) {
                    lost.push(format!("{fault}: agent line {edit:?} on {}", m.id));
                }
            }
        }
        if m_read(a, "config/agents/y.md") != "# y\n" || m_read(b, "config/agents/y.md") != "# y\n" {
            lost.push(format!("{fault}: the revert of y.md"));
        }
        if a.synced_files() != b.synced_files() {
            lost.push(format!("{fault}: the machines hold different files"));
        }
    }
    assert!(lost.is_empty(), "{} edits lost over {} faults:\n{}", lost.len(), FAULTS.len(), lost.join("\n"));
}

fn m_read(m: &Machine, key: &str) -> String {
    String::from_utf8(m.read(key).unwrap_or_default()).unwrap()
}

/// Found by the property test: a sync cut off after it pulled a file but before it saved its
/// state; the machine then edits another key of that file. The pulled content is not a local
/// edit: the other machine's newer value of the pulled key must win.
#[test]
fn a_pull_cut_off_before_the_state_save_is_not_mistaken_for_a_local_edit() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let opts = SyncOptions::default();
    let w = World::seeded_pair(&cfg, &opts);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    b.set_key("k", Value::from("first"));
    b.sync_on(&w.remote, &cfg);
    b.set_key("k", Value::from("second"));
    assert!(faulty_sync(a, &w.remote, &cfg, &opts, "local-write").is_err());
    a.set_key("mine", Value::from("A"));
    w.settle(&cfg, &opts).unwrap();
    for m in [a, b] {
        let j = m.oc_json();
        assert_eq!((get(&j, "k"), get(&j, "mine")), (Some("second"), Some("A")), "{}: {j:?}", m.id);
    }
}

/// Found by the property test: a's merge lands unanswered; a edits the key it had merged before
/// the merge was written locally, b edits another key. a's newest value wins over the value its
/// own landed merge carried.
#[test]
fn an_edit_of_a_merged_key_after_a_lost_answer_keeps_the_newest_value() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let opts = SyncOptions::default();
    let w = World::seeded_pair(&cfg, &opts);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.set_key("x", Value::from("a-old"));
    b.set_key("y", Value::from("b-1"));
    b.sync_on(&w.remote, &cfg);
    assert!(faulty_sync(a, &w.remote, &cfg, &opts, "lost-answer").is_err());
    a.set_key("x", Value::from("a-new"));
    b.set_key("y", Value::from("b-2"));
    b.sync_on(&w.remote, &cfg);
    w.settle(&cfg, &opts).unwrap();
    for m in [a, b] {
        let j = m.oc_json();
        assert_eq!((get(&j, "x"), get(&j, "y")), (Some("a-new"), Some("b-2")), "{}: {j:?}", m.id);
    }
}

/// The same without any failure: a's sync merges, and the person edits the merged key while the
/// sync runs (after the commit, before the local write). The edit is kept, and so is b's later one.
#[test]
fn an_edit_during_a_merging_sync_keeps_the_newest_values() {
    let cfg = config(ConflictStrategy::AutoMerge);
    let opts = SyncOptions::default();
    let w = World::seeded_pair(&cfg, &opts);
    let (a, b) = (&w.machines[0], &w.machines[1]);
    a.set_key("x", Value::from("a-old"));
    b.set_key("y", Value::from("b-1"));
    b.sync_on(&w.remote, &cfg);
    let path = a.path(OC);
    let _hook = fault::inject(move |step| {
        if step == fault::AFTER_COMMIT {
            let text = std::fs::read_to_string(&path).unwrap().replace("a-old", "a-new");
            std::fs::write(&path, text).unwrap();
        }
        false
    });
    let r = a.sync_on(&w.remote, &cfg);
    drop(_hook);
    assert_eq!(r.deferred, [OC], "{r:?}");
    b.set_key("y", Value::from("b-2"));
    b.sync_on(&w.remote, &cfg);
    w.settle(&cfg, &opts).unwrap();
    for m in [a, b] {
        let j = m.oc_json();
        assert_eq!((get(&j, "x"), get(&j, "y")), (Some("a-new"), Some("b-2")), "{}: {j:?}", m.id);
    }
}
