//! Races between machines committing to one remote: the loser of the compare-and-swap retries and
//! both changes end up in the remote.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use crate::common::lib::{Config, HookedRemote, LocalRemote};
use crate::common::{Machine, OC};
use serde_json::Value;

const HIST: &str = "state/prompt-history.jsonl";

fn cfg() -> Config {
    Config { retry_delay_ms: 0, max_retry_attempts: 50, ..Config::default() }
}

type Hook = Box<dyn FnOnce() + Send>;

fn setup(n: usize) -> (tempfile::TempDir, PathBuf, Vec<Machine>) {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let ms: Vec<Machine> = (1..=n).map(|i| Machine::under(dir.path(), &format!("m{i}"))).collect();
    (dir, remote, ms)
}

#[test]
fn loser_of_a_commit_race_retries_and_both_edits_survive() {
    let (_dir, remote_path, ms) = setup(2);
    let (a, b) = (ms[0].clone(), ms[1].clone());
    let config = cfg();
    let plain = LocalRemote::open(&remote_path).unwrap();
    a.set_key("shared", "base");
    a.append_line(HIST, "{\"text\":\"base\"}");
    a.sync_on(&plain, &config);
    b.sync_on(&plain, &config);

    a.set_key("from_a", "A");
    a.append_line(HIST, "{\"text\":\"a\"}");
    b.set_key("from_b", "B");
    b.append_line(HIST, "{\"text\":\"b\"}");
    // While A is about to commit, B runs a whole sync and wins the race.
    let (b2, remote2, config2) = (b.clone(), remote_path.clone(), config.clone());
    let b_ran = Arc::new(AtomicBool::new(false));
    let flag = b_ran.clone();
    let hook: Hook = Box::new(move || {
        let r = b2.sync_on(&LocalRemote::open(&remote2).unwrap(), &config2);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.pushed, vec![OC.to_string(), HIST.to_string()]);
        flag.store(true, Ordering::SeqCst);
    });
    let local = LocalRemote::open(&remote_path).unwrap();
    let wrapped = HookedRemote::new(&local).before_next_commit(hook);
    let ra = a.sync_on(&wrapped, &config);
    assert!(b_ran.load(Ordering::SeqCst));
    assert_eq!(wrapped.outcomes(), vec!["conflict", "committed"]);
    assert_eq!(ra.attempts, 2);
    assert_eq!(ra.merged, vec![OC.to_string(), HIST.to_string()], "{ra:?}");
    b.sync_on(&plain, &config);
    for m in [&a, &b] {
        let j = m.oc_json();
        assert_eq!((j.get("from_a"), j.get("from_b"), j.get("shared")), (Some(&"A".into()), Some(&"B".into()), Some(&"base".into())), "{}", m.id);
        let l = m.lines(HIST);
        for want in ["{\"text\":\"base\"}", "{\"text\":\"a\"}", "{\"text\":\"b\"}"] {
            assert_eq!(l.iter().filter(|x| *x == want).count(), 1, "{want} on {}: {l:?}", m.id);
        }
    }
    assert_eq!(a.synced_files(), b.synced_files());
    // Settled: nothing more to do.
    let r = a.sync_on(&plain, &config);
    assert!(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty());
}

#[test]
fn two_threads_commit_at_the_same_moment_one_retries() {
    let (_dir, remote_path, ms) = setup(2);
    let config = cfg();
    let plain = LocalRemote::open(&remote_path).unwrap();
    ms[0].set_key("shared", "base");
    ms[0].sync_on(&plain, &config);
    ms[1].sync_on(&plain, &config);
    ms[0].set_key("k_m1", "1");
    ms[0].append_line(HIST, "{\"text\":\"m1\"}");
    ms[1].set_key("k_m2", "2");
    ms[1].append_line(HIST, "{\"text\":\"m2\"}");

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
                let local = LocalRemote::open(&remote_path).unwrap();
                let w = HookedRemote::new(&local).before_next_commit(hook);
                let r = m.sync_on(&w, &config);
                let outcomes = w.outcomes();
                (r.attempts, outcomes)
            })
        })
        .collect();
    let mut results: Vec<(u32, Vec<&str>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    results.sort();
    assert_eq!(results, vec![(1, vec!["committed"]), (2, vec!["conflict", "committed"])]);
    for m in &ms {
        m.sync_on(&plain, &config);
    }
    for m in &ms {
        let j = m.oc_json();
        assert_eq!((j.get("k_m1"), j.get("k_m2")), (Some(&"1".into()), Some(&"2".into())), "{}", m.id);
        let l = m.lines(HIST);
        assert!(l.contains(&"{\"text\":\"m1\"}".to_string()) && l.contains(&"{\"text\":\"m2\"}".to_string()), "{l:?}");
    }
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
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
                    m.append_line(HIST, &format!("{{\"text\":\"{}-{round}\"}}", m.id));
                    attempts += m.sync_on(&remote, &config).attempts;
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
            let r = m.sync_on(&remote, &config);
            any |= !(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty());
        }
        if !any {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "no convergence");
    let first = ms[0].synced_files();
    for m in &ms[1..] {
        assert_eq!(m.synced_files(), first, "{} differs from m1", m.id);
    }
    let j = ms[0].oc_json();
    for m in &ms {
        // Keys only one machine ever wrote keep its last value.
        assert_eq!(j.get(&format!("key_{}", m.id)), Some(&Value::from((ROUNDS - 1) as u64)), "{j:?}");
    }
    assert!(j.get("contended").and_then(Value::as_str).is_some_and(|v| v.ends_with(&format!("-{}", ROUNDS - 1))), "{j:?}");
    let lines = ms[0].lines(HIST);
    for m in &ms {
        for round in 0..ROUNDS {
            let want = format!("{{\"text\":\"{}-{round}\"}}", m.id);
            assert_eq!(lines.iter().filter(|l| **l == want).count(), 1, "{want}: {lines:?}");
        }
    }
    assert_eq!(lines.len(), 3 * ROUNDS);
}
