use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use super::*;
use super::local::format1::Format1Remote;
use crate::clock::VectorClock;

fn entry_for(machine: &str, bytes: &[u8]) -> Entry {
    let mut clock = VectorClock::new();
    clock.bump(machine);
    Entry {
        clock,
        hash: Some(sha256_hex(bytes)),
        size: bytes.len() as u64,
        kind: "file".into(),
        category: "config".into(),
        modified_ms: 1_700_000_000_000,
        machine: machine.into(),
        deleted_ms: None,
    }
}

fn put(changes: &mut Changes, key: &str, machine: &str, bytes: &[u8]) {
    let e = entry_for(machine, bytes);
    changes
        .blobs
        .insert(e.hash.clone().unwrap(), bytes.to_vec());
    changes.entries.insert(key.into(), e);
}

fn one(key: &str, bytes: &[u8]) -> Changes {
    let mut c = Changes {
        message: format!("set {key}"),
        ..Default::default()
    };
    put(&mut c, key, "m1", bytes);
    c
}

fn committed(o: CommitOutcome) -> Version {
    match o {
        CommitOutcome::Committed(v) => v,
        CommitOutcome::Conflict { current } => panic!("unexpected conflict, head {current:?}"),
    }
}

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, RemoteError>, needle: &str) {
    match r {
        Err(RemoteError::Corrupt(m)) => assert!(
            m.contains(needle),
            "message {m:?} should mention {needle:?}"
        ),
        other => panic!("expected Corrupt mentioning {needle:?}, got {other:?}"),
    }
}

/// Plants a manifest file (named by its hash) and points HEAD at it.
fn plant_manifest(root: &Path, json: &[u8]) -> Version {
    let h = sha256_hex(json);
    fs::create_dir_all(root.join("manifests")).unwrap();
    fs::write(root.join("manifests").join(format!("{h}.json")), json).unwrap();
    fs::write(root.join("HEAD"), format!("{h}\n")).unwrap();
    Version(h)
}

// ---- validation helpers ---------------------------------------------------------------------

#[test]
fn validate_key_rules() {
    for ok in [
        "a",
        "config/opencode.json",
        "sessions/ses_1/msg 2.json",
        "a.b/..c/d..",
        "ünïcode/x",
    ] {
        assert!(validate_key(ok).is_ok(), "{ok}");
    }
    let long_comp = "x".repeat(MAX_KEY_COMPONENT_LEN + 1);
    let long_key = ["a"; MAX_KEY_LEN / 2 + 1].join("/");
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "..\\x",
        "a\0b",
        "a\nb",
        "C:/x",
        "c:x",
        &long_comp,
        &long_key,
    ] {
        assert!(validate_key(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn validate_hash_rules() {
    assert!(validate_hash(&sha256_hex(b"x")).is_ok());
    assert!(validate_hash(&sha256_hex(b"x").to_uppercase()).is_err());
    assert!(validate_hash("abc").is_err());
    assert!(validate_hash(&"g".repeat(64)).is_err());
    assert!(validate_hash(&format!("{}/", &sha256_hex(b"x")[..63])).is_err());
}

#[test]
fn changes_validation() {
    let limits = Limits::default();
    let mut c = one("a", b"hello");
    assert!(c.validate(&limits).is_ok());
    c.blobs.insert(sha256_hex(b"other"), b"not other".to_vec());
    assert!(matches!(
        c.validate(&limits),
        Err(RemoteError::InvalidChanges(_))
    ));

    let mut c = one("a", b"hello");
    c.removed.push("a".into());
    assert!(matches!(
        c.validate(&limits),
        Err(RemoteError::InvalidChanges(_))
    ));

    let mut c = one("a", b"hello");
    c.entries.get_mut("a").unwrap().size = 99;
    assert!(matches!(
        c.validate(&limits),
        Err(RemoteError::InvalidChanges(_))
    ));

    let c = one("../a", b"hello");
    assert!(matches!(
        c.validate(&limits),
        Err(RemoteError::InvalidChanges(_))
    ));

    let c = one("a", &[0u8; 100]);
    assert!(matches!(
        c.validate(&Limits {
            max_blob_bytes: 99,
            ..limits
        }),
        Err(RemoteError::InvalidChanges(_))
    ));
}

// ---- basic behaviour ------------------------------------------------------------------------

#[test]
fn empty_remote_has_no_head_and_open_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    assert_eq!(r.head().unwrap(), None);
    assert!(!root.exists(), "open/head must not create the folder");
    // an existing empty folder is an empty remote too
    fs::create_dir(&root).unwrap();
    assert_eq!(r.head().unwrap(), None);
}

#[test]
fn missing_parent_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path().join("not-mounted").join("remote")).unwrap();
    assert!(matches!(r.head(), Err(RemoteError::Unreachable(_))));
    assert!(matches!(
        r.commit(None, one("a", b"1")),
        Err(RemoteError::Unreachable(_))
    ));
    assert!(!tmp.path().join("not-mounted").exists());
}

#[test]
fn open_refuses_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("file");
    fs::write(&f, b"x").unwrap();
    assert!(matches!(
        LocalRemote::open(&f),
        Err(RemoteError::Unreachable(_))
    ));
}

#[test]
fn commit_then_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();

    let mut c = Changes {
        message: "first".into(),
        ..Default::default()
    };
    put(&mut c, "config/opencode.json", "m1", b"{\"a\":1}");
    put(&mut c, "state/x.json", "m1", b"[]");
    let v1 = committed(r.commit(None, c).unwrap());
    assert_eq!(r.head().unwrap(), Some(v1.clone()));

    let m = r.manifest(&v1).unwrap();
    assert_eq!(m.format, REPOSITORY_FORMAT);
    assert_eq!(m.entries.len(), 2);
    let e = &m.entries["config/opencode.json"];
    assert_eq!(r.blob(e.hash.as_deref().unwrap()).unwrap(), b"{\"a\":1}");
    assert_eq!(e.clock.get("m1"), 1);

    // second commit: change one, tombstone one, layout on disk
    let mut c = Changes {
        message: "second".into(),
        ..Default::default()
    };
    put(&mut c, "config/opencode.json", "m2", b"{\"a\":2}");
    let mut tomb = m.entries["state/x.json"].clone();
    tomb.hash = None;
    tomb.size = 0;
    tomb.deleted_ms = Some(1);
    c.entries.insert("state/x.json".into(), tomb);
    let v2 = committed(r.commit(Some(&v1), c).unwrap());
    assert_ne!(v1, v2);
    let m2 = r.manifest(&v2).unwrap();
    assert!(m2.entries["state/x.json"].is_tombstone());
    assert_eq!(
        r.blob(m2.entries["config/opencode.json"].hash.as_deref().unwrap())
            .unwrap(),
        b"{\"a\":2}"
    );
    // old snapshot still readable (immutable)
    assert_eq!(r.manifest(&v1).unwrap(), m);
    let info = r.commit_info(&v2).unwrap();
    assert_eq!(info.parent, Some(v1.clone()));
    assert_eq!(info.message, "second");
    // layout: a bare git repository whose branch main is the head; HEAD names the format-2 stub
    assert!(root.join("repo.git").join("objects").is_dir());
    assert!(!root.join("objects").exists());
    let stub = sha256_hex(&envelope::legacy_manifest_stub());
    assert_eq!(fs::read_to_string(root.join("HEAD")).unwrap(), format!("{stub}\n"));
    assert_eq!(
        fs::read_to_string(root.join("repo.git/refs/heads/main")).unwrap(),
        format!("{v2}\n")
    );

    // third: drop the expired tombstone for good; an entry may reuse bytes the snapshot holds
    let mut c = Changes {
        removed: vec!["state/x.json".into()],
        ..Default::default()
    };
    c.entries.insert("copy.json".into(), entry_for("m1", b"{\"a\":2}"));
    let v3 = committed(r.commit(Some(&v2), c).unwrap());
    let m3 = r.manifest(&v3).unwrap();
    assert!(!m3.entries.contains_key("state/x.json"));
    assert!(m3.entries.contains_key("copy.json"));
    assert_eq!(r.blob(&sha256_hex(b"{\"a\":2}")).unwrap(), b"{\"a\":2}");
    // bytes only an older snapshot held must come with the change set
    let mut c = Changes::default();
    c.entries.insert("again.json".into(), entry_for("m1", b"[]"));
    assert!(matches!(r.commit(Some(&v3), c), Err(RemoteError::InvalidChanges(_))));

    // an entry naming a blob that exists nowhere is refused and changes nothing
    let mut c = Changes::default();
    c.entries
        .insert("ghost".into(), entry_for("m1", b"never uploaded"));
    assert!(matches!(
        r.commit(Some(&v3), c),
        Err(RemoteError::InvalidChanges(_))
    ));
    assert_eq!(r.head().unwrap(), Some(v3));
}

#[test]
fn stale_expected_is_a_conflict_and_applies_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path().join("remote")).unwrap();
    let v1 = committed(r.commit(None, one("a", b"1")).unwrap());
    let v2 = committed(r.commit(Some(&v1), one("a", b"2")).unwrap());

    // stale: expected v1, head is v2
    match r.commit(Some(&v1), one("b", b"x")).unwrap() {
        CommitOutcome::Conflict { current } => assert_eq!(current, Some(v2.clone())),
        o => panic!("{o:?}"),
    }
    // stale: expected empty, head is v2
    match r.commit(None, one("b", b"x")).unwrap() {
        CommitOutcome::Conflict { current } => assert_eq!(current, Some(v2.clone())),
        o => panic!("{o:?}"),
    }
    assert_eq!(r.head().unwrap(), Some(v2.clone()));
    assert!(!r.manifest(&v2).unwrap().entries.contains_key("b"));

    // expected something on an empty remote
    let r2 = LocalRemote::open(tmp.path().join("other")).unwrap();
    match r2.commit(Some(&v1), one("b", b"x")).unwrap() {
        CommitOutcome::Conflict { current } => assert_eq!(current, None),
        o => panic!("{o:?}"),
    }
}

#[test]
fn same_content_on_different_parent_is_a_new_version() {
    // no ABA: re-committing identical entries still moves HEAD to a distinct version
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path().join("remote")).unwrap();
    let v1 = committed(r.commit(None, one("a", b"1")).unwrap());
    let v2 = committed(r.commit(Some(&v1), Changes::default()).unwrap());
    assert_ne!(v1, v2);
    assert_eq!(r.manifest(&v1).unwrap(), r.manifest(&v2).unwrap());
}

// ---- races ----------------------------------------------------------------------------------

/// Reads head + the counter, writes `worker/round` and counter+1; retries until committed.
/// Returns how many attempts it took.
fn commit_with_retry(r: &LocalRemote, worker: &str, round: usize) -> usize {
    for attempt in 1.. {
        let head = r.head().unwrap();
        let manifest = head
            .as_ref()
            .map(|v| r.manifest(v).unwrap())
            .unwrap_or_default();
        let counter: u64 = match manifest.entries.get("counter") {
            Some(e) => String::from_utf8(r.blob(e.hash.as_deref().unwrap()).unwrap())
                .unwrap()
                .parse()
                .unwrap(),
            None => 0,
        };
        let mut c = Changes {
            message: format!("{worker} round {round}"),
            ..Default::default()
        };
        put(
            &mut c,
            &format!("{worker}/{round}"),
            worker,
            format!("{worker}-{round}").as_bytes(),
        );
        put(
            &mut c,
            "counter",
            worker,
            (counter + 1).to_string().as_bytes(),
        );
        match r.commit(head.as_ref(), c).unwrap() {
            CommitOutcome::Committed(_) => return attempt,
            CommitOutcome::Conflict { .. } => continue,
        }
    }
    unreachable!()
}

fn check_no_lost_update(root: &Path, workers: &[String], rounds: usize) {
    let r = LocalRemote::open(root).unwrap();
    let head = r.head().unwrap().unwrap();
    let m = r.manifest(&head).unwrap();
    let counter: u64 = String::from_utf8(
        r.blob(m.entries["counter"].hash.as_deref().unwrap())
            .unwrap(),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(
        counter,
        (workers.len() * rounds) as u64,
        "every commit saw the previous one"
    );
    for w in workers {
        for round in 0..rounds {
            let key = format!("{w}/{round}");
            let e = m
                .entries
                .get(&key)
                .unwrap_or_else(|| panic!("{key} was lost"));
            assert_eq!(
                r.blob(e.hash.as_deref().unwrap()).unwrap(),
                format!("{w}-{round}").as_bytes()
            );
        }
    }
    // the history is a single chain of exactly workers*rounds commits
    let mut n = 0;
    let mut cur = Some(head);
    while let Some(v) = cur {
        n += 1;
        cur = r.commit_info(&v).unwrap().parent;
    }
    assert_eq!(n, workers.len() * rounds);
}

#[test]
fn racing_threads_exactly_one_wins_per_round_and_nothing_is_lost() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 60;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = root.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                // a separate instance per thread, as separate processes would have
                let r = LocalRemote::open(&root).unwrap();
                let worker = format!("w{t}");
                let mut wins = Vec::new();
                for round in 0..ROUNDS {
                    // everyone reads the same head, then all commit against it at once
                    barrier.wait();
                    let head = r.head().unwrap();
                    barrier.wait();
                    let manifest = head
                        .as_ref()
                        .map(|v| r.manifest(v).unwrap())
                        .unwrap_or_default();
                    let counter: u64 = match manifest.entries.get("counter") {
                        Some(e) => String::from_utf8(r.blob(e.hash.as_deref().unwrap()).unwrap())
                            .unwrap()
                            .parse()
                            .unwrap(),
                        None => 0,
                    };
                    let mut c = Changes::default();
                    put(
                        &mut c,
                        &format!("{worker}/{round}"),
                        &worker,
                        format!("{worker}-{round}").as_bytes(),
                    );
                    put(
                        &mut c,
                        "counter",
                        &worker,
                        (counter + 1).to_string().as_bytes(),
                    );
                    let won = matches!(
                        r.commit(head.as_ref(), c).unwrap(),
                        CommitOutcome::Committed(_)
                    );
                    wins.push(won);
                    // the losers re-read, merge and retry (after the round's winner is known)
                    barrier.wait();
                    if !won {
                        // retry writes the same key; commit_with_retry re-reads the counter
                        commit_with_retry(&r, &worker, round);
                    }
                }
                wins
            })
        })
        .collect();
    let results: Vec<Vec<bool>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..ROUNDS {
        let winners = results.iter().filter(|w| w[round]).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of the simultaneous commits must win"
        );
    }
    let workers: Vec<String> = (0..THREADS).map(|t| format!("w{t}")).collect();
    check_no_lost_update(&root, &workers, ROUNDS);
}

#[test]
fn free_running_threads_lose_no_update() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 50;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = root.clone();
            thread::spawn(move || {
                let r = LocalRemote::open(&root).unwrap();
                for round in 0..ROUNDS {
                    commit_with_retry(&r, &format!("t{t}"), round);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let workers: Vec<String> = (0..THREADS).map(|t| format!("t{t}")).collect();
    check_no_lost_update(&root, &workers, ROUNDS);
}

const CHILD_ENV: &str = "OC_SYNC_REMOTE_TEST_CHILD";
const CHILD_ROUNDS: usize = 50;

/// Worker body for `racing_processes_lose_no_update`; does nothing in a normal test run.
#[test]
fn child_process_worker() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (worker, root) = spec.split_once('=').unwrap();
    let r = LocalRemote::open(root).unwrap();
    for round in 0..CHILD_ROUNDS {
        commit_with_retry(&r, worker, round);
    }
}

#[test]
fn racing_processes_lose_no_update() {
    const PROCS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "remote::tests::child_process_worker",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CHILD_ENV, format!("p{p}={}", root.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "child worker failed");
    }
    let workers: Vec<String> = (0..PROCS).map(|p| format!("p{p}")).collect();
    check_no_lost_update(&root, &workers, CHILD_ROUNDS);
}

#[test]
fn lock_timeout_is_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let r = LocalRemote::open(&root)
        .unwrap()
        .with_lock_timeout(std::time::Duration::from_millis(50));
    let v1 = committed(r.commit(None, one("a", b"1")).unwrap());
    // another writer in the middle of its ref update (git's lock file)
    let lock = root.join("repo.git/refs/heads/main.lock");
    fs::write(&lock, b"").unwrap();
    assert!(matches!(
        r.commit(Some(&v1), one("a", b"2")),
        Err(RemoteError::Busy(_))
    ));
    assert_eq!(r.head().unwrap(), Some(v1.clone()), "readers need no lock");
    fs::remove_file(&lock).unwrap();
    committed(r.commit(Some(&v1), one("a", b"2")).unwrap());
}

// ---- corrupt / hostile remotes ----------------------------------------------------------------

fn manifest_json(key: &str, hash: &str) -> Vec<u8> {
    format!(
        r#"{{"format":1,"entries":{{{}:{{"clock":{{"m":1}},"hash":"{hash}","size":1,"kind":"file","category":"c","modified_ms":0,"machine":"m"}}}}}}"#,
        serde_json::to_string(key).unwrap()
    )
    .into_bytes()
}

/// A format-1 remote's snapshot is read by `format1()`; `head()` asks for the upgrade.
fn format1_manifest(r: &LocalRemote) -> Result<Manifest, RemoteError> {
    assert!(matches!(r.head(), Err(RemoteError::NeedsUpgrade)), "a format-1 HEAD asks for the upgrade");
    r.format1().map(|m| m.expect("a format-1 snapshot").1)
}

#[test]
fn bad_keys_in_manifest_are_corrupt() {
    let h = sha256_hex(b"x");
    for key in ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "a//b"] {
        let tmp = tempfile::tempdir().unwrap();
        let r = LocalRemote::open(tmp.path()).unwrap();
        plant_manifest(tmp.path(), &manifest_json(key, &h));
        let err = format1_manifest(&r).unwrap_err();
        assert!(err.is_corrupt(), "{key:?}: {err}");
        assert!(err.to_string().contains("item key"), "{err}");
    }
}

#[test]
fn bad_hash_in_manifest_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    plant_manifest(tmp.path(), &manifest_json("a", "../../../../etc/passwd"));
    assert_corrupt(format1_manifest(&r), "sha256");
}

#[test]
fn invalid_or_truncated_manifest_json_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    let good = manifest_json("a", &sha256_hex(b"x"));
    plant_manifest(tmp.path(), &good[..good.len() / 2]);
    assert_corrupt(format1_manifest(&r), "not a valid manifest");
    plant_manifest(tmp.path(), b"not json at all");
    assert_corrupt(format1_manifest(&r), "not a valid manifest");
    plant_manifest(
        tmp.path(),
        br#"{"format":1,"entries":{"a":{"clock":{"m":-1}}}}"#,
    );
    assert_corrupt(format1_manifest(&r), "not a valid manifest");
    plant_manifest(tmp.path(), br#"{"format":0,"entries":{}}"#);
    assert_corrupt(format1_manifest(&r), "format 0");
}

#[test]
fn newer_format_asks_for_an_upgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    plant_manifest(
        tmp.path(),
        br#"{"format":7,"entries":{"a":{"whatever":true}}}"#,
    );
    assert!(matches!(
        r.head(),
        Err(RemoteError::UnsupportedFormat { found: 7, .. })
    ));
    assert!(matches!(
        r.commit(None, one("a", b"1")),
        Err(RemoteError::UnsupportedFormat { found: 7, .. })
    ));
}

#[test]
fn manifest_not_matching_its_name_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    let v = plant_manifest(tmp.path(), br#"{"format":1,"entries":{}}"#);
    fs::write(
        tmp.path().join("manifests").join(format!("{v}.json")),
        br#"{"format":1,"entries":{} }"#,
    )
    .unwrap();
    assert_corrupt(format1_manifest(&r), "hashes to");
}

#[test]
fn head_naming_a_missing_manifest_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    let h = sha256_hex(b"nothing");
    fs::write(tmp.path().join("HEAD"), format!("{h}\n")).unwrap();
    assert_corrupt(format1_manifest(&r), "missing manifest");
    // committing is refused too (the engine upgrades first, which reads the snapshot)
    assert!(matches!(r.commit(None, one("a", b"1")), Err(RemoteError::NeedsUpgrade)));
}

#[test]
fn garbage_head_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    fs::write(tmp.path().join("HEAD"), b"../../etc/passwd\n").unwrap();
    assert_corrupt(r.head(), "HEAD");
    fs::write(tmp.path().join("HEAD"), vec![b'a'; 5000]).unwrap();
    assert_corrupt(r.head(), "byte limit");
    fs::write(tmp.path().join("HEAD"), [0xff, 0xfe]).unwrap();
    assert_corrupt(r.head(), "not text");
}

#[test]
fn format1_blob_hash_mismatch_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    committed(Format1Remote::open(tmp.path()).unwrap().commit(None, one("a", b"good")).unwrap());
    let h = sha256_hex(b"good");
    assert_eq!(r.format1_blob(&h).unwrap(), b"good");
    fs::write(
        tmp.path().join("objects").join(&h[..2]).join(&h[2..]),
        b"evil",
    )
    .unwrap();
    assert_corrupt(r.format1_blob(&h), "hashes to");
    // missing blob and a malformed hash request
    assert_corrupt(r.format1_blob(&sha256_hex(b"absent")), "missing");
    assert_corrupt(r.format1_blob("../../HEAD"), "sha256");
    assert_corrupt(r.blob("../../HEAD"), "sha256");
}

#[test]
fn format1_blob_over_the_size_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    committed(Format1Remote::open(tmp.path()).unwrap().commit(None, one("a", &[7u8; 2000])).unwrap());
    let h = sha256_hex(&[7u8; 2000]);
    let small = LocalRemote::open(tmp.path()).unwrap().with_limits(Limits {
        max_blob_bytes: 1000,
        ..Limits::default()
    });
    assert_corrupt(small.format1_blob(&h), "byte limit");
    // default limit (256 MiB), with a sparse file so the test stays cheap
    let big = sha256_hex(b"big");
    let p = tmp.path().join("objects").join(&big[..2]);
    fs::create_dir_all(&p).unwrap();
    fs::File::create(p.join(&big[2..]))
        .unwrap()
        .set_len((256 << 20) + 1)
        .unwrap();
    assert_corrupt(r.format1_blob(&big), "byte limit");
}

#[test]
fn huge_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    // default 64 MiB limit: a sparse file, refused from its size alone
    let h = sha256_hex(b"huge");
    fs::create_dir_all(tmp.path().join("manifests")).unwrap();
    fs::File::create(tmp.path().join("manifests").join(format!("{h}.json")))
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    fs::write(tmp.path().join("HEAD"), format!("{h}\n")).unwrap();
    assert_corrupt(r.head(), "byte limit");

    // a configured small limit, on a real format-1 manifest
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Changes::default();
    for i in 0..50 {
        put(&mut c, &format!("k{i}"), "m", format!("{i}").as_bytes());
    }
    committed(Format1Remote::open(tmp.path()).unwrap().commit(None, c).unwrap());
    let small = LocalRemote::open(tmp.path()).unwrap().with_limits(Limits {
        max_manifest_bytes: 1024,
        ..Limits::default()
    });
    assert_corrupt(small.head(), "byte limit");
}

#[cfg(unix)]
#[test]
fn symlinks_inside_the_remote_are_refused() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"secret bytes").unwrap();
    let h = sha256_hex(b"secret bytes");

    // a symlink planted as a format-1 blob file, pointing outside (even with matching content)
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    fs::create_dir_all(tmp.path().join("objects").join(&h[..2])).unwrap();
    symlink(
        &secret,
        tmp.path().join("objects").join(&h[..2]).join(&h[2..]),
    )
    .unwrap();
    assert_corrupt(r.format1_blob(&h), "symbolic link");

    // a symlinked repo.git: commit must not write through it, reads refuse it
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    let target = outside.path().join("writes-here");
    fs::create_dir_all(&target).unwrap();
    symlink(&target, tmp.path().join("repo.git")).unwrap();
    assert_corrupt(r.commit(None, one("a", b"1")), "symbolic link");
    assert_corrupt(r.head(), "symbolic link");
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written outside the remote"
    );

    // symlinked HEAD and manifest
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(tmp.path()).unwrap();
    let head_target = outside.path().join("head");
    fs::write(&head_target, format!("{h}\n")).unwrap();
    symlink(&head_target, tmp.path().join("HEAD")).unwrap();
    assert_corrupt(r.head(), "symbolic link");
    fs::remove_file(tmp.path().join("HEAD")).unwrap();
    let json = br#"{"format":1,"entries":{}}"#;
    let mh = sha256_hex(json);
    let mfile = outside.path().join("m.json");
    fs::write(&mfile, json).unwrap();
    fs::create_dir_all(tmp.path().join("manifests")).unwrap();
    symlink(
        &mfile,
        tmp.path().join("manifests").join(format!("{mh}.json")),
    )
    .unwrap();
    fs::write(tmp.path().join("HEAD"), format!("{mh}\n")).unwrap();
    assert_corrupt(r.format1(), "symbolic link");
}

#[test]
fn remote_is_object_safe_and_send_sync() {
    fn takes(_: &dyn Remote) {}
    fn send_sync<T: Send + Sync>() {}
    let tmp = tempfile::tempdir().unwrap();
    let r: Box<dyn Remote> = Box::new(LocalRemote::open(tmp.path()).unwrap());
    takes(r.as_ref());
    send_sync::<LocalRemote>();
    assert!(r.describe().contains(&tmp.path().display().to_string()));
    let _unused: BTreeMap<String, Entry> = BTreeMap::new();
}

#[test]
fn format1_old_snapshots_and_their_blobs_are_pruned_after_a_grace_period() {
    let t = tempfile::tempdir().unwrap();
    let r = Format1Remote::open(t.path().join("remote")).unwrap();
    let mut head = None;
    for i in 0..70 {
        head = Some(committed(r.commit(head.as_ref(), one("config/a.md", format!("v{i}\n").as_bytes())).unwrap()));
    }
    let count = |d: &str| walk_files(&t.path().join("remote").join(d));
    // Everything is younger than the grace period: nothing is deleted yet.
    assert_eq!(count("manifests"), 70);
    // Two hours later...
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for d in ["manifests", "objects"] {
        for p in all_files(&t.path().join("remote").join(d)) {
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
        }
    }
    let _ = std::fs::remove_file(t.path().join("remote/gc"));
    let v = committed(r.commit(head.as_ref(), one("config/a.md", b"last\n")).unwrap());
    assert!(count("manifests") <= 17, "{}", count("manifests"));
    assert!(count("objects") <= 17, "{}", count("objects"));
    // HEAD and the recent history still read.
    let m = r.manifest(&v).unwrap();
    assert_eq!(r.blob(m.entries["config/a.md"].hash.as_deref().unwrap()).unwrap(), b"last\n");
    let mut cur = Some(v);
    for _ in 0..15 {
        let v = cur.take().unwrap();
        r.manifest(&v).unwrap();
        cur = r.commit_info(&v).unwrap().parent;
    }
}

fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(all_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn walk_files(dir: &std::path::Path) -> usize {
    all_files(dir).len()
}
