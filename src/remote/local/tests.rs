//! Format 2 of the folder remote: the git repository (checked with the real git binary), the tree
//! index, hostile repositories, and the upgrade from format 1.

use std::fs;
use std::path::Path;
use std::process::Command;

use gix::objs::tree::EntryKind;

use super::format1::Format1Remote;
use super::*;
use crate::clock::VectorClock;
use crate::remote::{REPOSITORY_FORMAT, sha256_hex};

fn entry(machine: &str, bytes: Option<&[u8]>) -> Entry {
    let mut clock = VectorClock::new();
    clock.bump(machine);
    Entry {
        clock,
        hash: bytes.map(sha256_hex),
        size: bytes.map_or(0, |b| b.len() as u64),
        kind: "file".into(),
        category: "config".into(),
        modified_ms: 1_700_000_000_000,
        machine: machine.into(),
        deleted_ms: if bytes.is_none() { Some(1_700_000_000_001) } else { None },
    }
}

fn changes(items: &[(&str, &[u8])]) -> Changes {
    let mut c = Changes { message: "test".into(), ..Default::default() };
    for (k, b) in items {
        c.entries.insert(k.to_string(), entry("m1", Some(b)));
        c.blobs.insert(sha256_hex(b), b.to_vec());
    }
    c
}

fn committed(o: CommitOutcome) -> Version {
    match o {
        CommitOutcome::Committed(v) => v,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("the git binary runs (tests need it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_repository_is_plain_git() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    let mut c = changes(&[("config/opencode.json", b"{\"a\":1}\n"), ("state/x.json", b"[]")]);
    c.message = "first sync".into();
    let v1 = committed(r.commit(None, c).unwrap());
    let mut c = changes(&[("config/opencode.json", b"{\"a\":2}\n")]);
    c.entries.insert("state/x.json".into(), entry("m1", None));
    c.message = "second sync".into();
    let v2 = committed(r.commit(Some(&v1), c).unwrap());

    let repo = root.join(REPO_DIR);
    let (ok, log) = git(&repo, &["log", "--format=%H %an <%ae> %s"]);
    assert!(ok, "{log}");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![
            format!("{v2} oc-sync <oc-sync@localhost> second sync"),
            format!("{v1} oc-sync <oc-sync@localhost> first sync")
        ]
    );
    let (ok, show) = git(&repo, &["show", "main:config/opencode.json"]);
    assert!(ok, "{show}");
    assert!(show.starts_with("oc-sync-item 2 {"), "{show}");
    assert!(show.ends_with("\n{\"a\":2}\n"), "{show}");
    let (ok, format) = git(&repo, &["show", "main:.oc-sync/format"]);
    assert!(ok && format == "2\n", "{format}");
    let (ok, fsck) = git(&repo, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "git fsck: {fsck}");
    // HEAD of the folder names the stub, which oc-sync 0.1 refuses ("upgrade oc-sync")
    let old = Format1Remote::open(&root).unwrap();
    let stub = old.head().unwrap().unwrap();
    assert!(matches!(old.manifest(&stub), Err(RemoteError::UnsupportedFormat { found: 2, supported: 1 })));
    // history
    let info = r.commit_info(&v2).unwrap();
    assert_eq!(info.parent, Some(v1.clone()));
    assert_eq!(info.message, "second sync");
}

#[test]
fn a_second_instance_reads_only_what_changed_through_its_index_file() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let ix = t.path().join("state/index.json");
    let a = LocalRemote::open(&root).unwrap().with_index_file(ix.clone());
    let v1 = committed(a.commit(None, changes(&[("config/a.md", b"one"), ("config/b.md", b"two")])).unwrap());
    assert!(ix.is_file());
    // another machine (no index) commits a change to b
    let other = LocalRemote::open(&root).unwrap();
    other.manifest(&v1).unwrap();
    let v2 = committed(other.commit(Some(&v1), changes(&[("config/b.md", b"three")])).unwrap());
    // damage a's unchanged file in the object store: a new process with the index never reads it
    let repo = gix::open(root.join(REPO_DIR)).unwrap();
    let tree = repo.find_commit(ObjectId::from_hex(v2.0.as_bytes()).unwrap()).unwrap().tree().unwrap();
    let mut tree2 = tree.clone();
    let a_oid = tree2.peel_to_entry_by_path("config/a.md").unwrap().unwrap().object_id();
    let hex = a_oid.to_hex().to_string();
    let loose = root.join(REPO_DIR).join("objects").join(&hex[..2]).join(&hex[2..]);
    let mut perms = fs::metadata(&loose).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&loose, perms).unwrap();
    fs::write(&loose, b"garbage").unwrap();
    let b = LocalRemote::open(&root).unwrap().with_index_file(ix.clone());
    let m = b.manifest(&v2).unwrap();
    assert_eq!(m.entries.len(), 2);
    assert_eq!(b.blob(&sha256_hex(b"three")).unwrap(), b"three");
    // without the index everything is read, and the damage is found
    let fresh = LocalRemote::open(&root).unwrap();
    assert!(fresh.manifest(&v2).unwrap_err().is_corrupt());
}

// ---- hostile repositories ----------------------------------------------------------------------

/// Plants a commit on main whose tree holds `files` (a path, its kind, its bytes) plus a format
/// file saying `format` (none when `None`), bypassing oc-sync's writer.
fn plant(root: &Path, format: Option<&[u8]>, files: &[(&str, EntryKind, Vec<u8>)]) -> Version {
    let r = LocalRemote::open(root).unwrap();
    if r.head().unwrap().is_none() {
        committed(r.commit(None, changes(&[("config/seed.md", b"seed")])).unwrap());
    }
    let repo = gix::open(root.join(REPO_DIR)).unwrap();
    let mut ed = repo.edit_tree(ObjectId::empty_tree(repo.object_hash())).unwrap();
    if let Some(f) = format {
        let id = repo.write_blob(f).unwrap().detach();
        ed.upsert(envelope::FORMAT_FILE, EntryKind::Blob, id).unwrap();
    }
    for (path, kind, bytes) in files {
        let id = match kind {
            EntryKind::Commit => repo.find_reference("refs/heads/main").unwrap().id().detach(),
            _ => repo.write_blob(bytes).unwrap().detach(),
        };
        ed.upsert(*path, *kind, id).unwrap();
    }
    let tree = ed.write().unwrap().detach();
    set_main(&repo, tree)
}

fn set_main(repo: &gix::Repository, tree: ObjectId) -> Version {
    let sig = gix::actor::Signature {
        name: "evil".into(),
        email: "evil@example.com".into(),
        time: gix::date::Time { seconds: 1, offset: 0 },
    };
    let commit = gix::objs::Commit {
        tree,
        parents: Default::default(),
        author: sig.clone(),
        committer: sig,
        encoding: None,
        message: "planted\n".into(),
        extra_headers: vec![],
    };
    let id = repo.write_object(&commit).unwrap().detach();
    set_ref(repo, id);
    Version(id.to_hex().to_string())
}

fn set_ref(repo: &gix::Repository, id: ObjectId) {
    repo.refs
        .transaction()
        .prepare(
            Some(RefEdit {
                change: Change::Update { log: LogChange::default(), expected: PreviousValue::Any, new: Target::Object(id) },
                name: BRANCH_REF.try_into().unwrap(),
                deref: false,
            }),
            gix::lock::acquire::Fail::Immediately,
            gix::lock::acquire::Fail::Immediately,
        )
        .unwrap()
        .commit(None)
        .unwrap();
}

fn file(bytes: &[u8]) -> Vec<u8> {
    envelope::encode(&entry("m1", Some(bytes)), Some(bytes))
}

fn corrupt_mentioning<T: std::fmt::Debug>(r: Result<T, RemoteError>, needle: &str) {
    match r {
        Err(RemoteError::Corrupt(m)) => assert!(m.contains(needle), "{m:?} should mention {needle:?}"),
        other => panic!("expected Corrupt mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn content_not_matching_its_header_is_corrupt_and_the_index_stays() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    let good = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, file(b"good"))]);
    assert_eq!(r.manifest(&good).unwrap().entries.len(), 1);
    let mut bad = file(b"good");
    *bad.last_mut().unwrap() = b'X';
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, bad)]);
    corrupt_mentioning(r.manifest(&v), "hashes to");
    // the index still describes the good snapshot
    assert_eq!(r.blob(&sha256_hex(b"good")).unwrap(), b"good");
    // a longer file than its header says, a tombstone with content, no header, a huge header
    let mut longer = file(b"good");
    longer.push(b'!');
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, longer)]);
    corrupt_mentioning(r.manifest(&v), "header says");
    let mut tomb = envelope::encode(&entry("m1", None), None);
    tomb.extend_from_slice(b"x");
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, tomb)]);
    corrupt_mentioning(r.manifest(&v), "tombstone with content");
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, b"just bytes".to_vec())]);
    corrupt_mentioning(r.manifest(&v), "no header");
    let huge = [envelope::MAGIC, &vec![b' '; envelope::MAX_HEADER_BYTES + 10][..]].concat();
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, huge)]);
    corrupt_mentioning(r.manifest(&v), "header line");
    // a file at oc-sync's own path is not an item; one too big is refused before it is read
    let small = LocalRemote::open(&root).unwrap().with_limits(Limits { max_blob_bytes: 10, ..Limits::default() });
    let v = plant(&root, Some(b"2\n"), &[("config/a.json", EntryKind::Blob, file(&[b'x'; 300_000]))]);
    corrupt_mentioning(small.manifest(&v), "byte limit");
}

#[test]
fn links_submodules_and_executables_are_refused_by_key() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    let v = plant(
        &root,
        Some(b"2\n"),
        &[
            ("config/ok.md", EntryKind::Blob, file(b"fine")),
            ("config/link.md", EntryKind::Link, b"/etc/passwd".to_vec()),
            ("config/sub", EntryKind::Commit, vec![]),
            ("config/run.sh", EntryKind::BlobExecutable, file(b"#!/bin/sh")),
        ],
    );
    let m = r.manifest(&v).unwrap();
    assert_eq!(m.entries.keys().collect::<Vec<_>>(), vec!["config/ok.md"]);
    let refused = r.refused_keys();
    let keys: Vec<&str> = refused.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["config/link.md", "config/run.sh", "config/sub"]);
    assert!(refused[0].1.contains("symbolic link") && refused[1].1.contains("executable") && refused[2].1.contains("submodule"));
    // committing on top replaces nothing it does not name, and the refusals survive an index file
    let ix = t.path().join("ix.json");
    let r2 = LocalRemote::open(&root).unwrap().with_index_file(ix.clone());
    r2.manifest(&v).unwrap();
    let r3 = LocalRemote::open(&root).unwrap().with_index_file(ix);
    r3.manifest(&v).unwrap();
    assert_eq!(r3.refused_keys().len(), 3);
}

#[test]
fn names_that_cannot_be_paths_are_corrupt() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    plant(&root, Some(b"2\n"), &[]);
    let repo = gix::open(root.join(REPO_DIR)).unwrap();
    let blob = repo.write_blob(file(b"x")).unwrap().detach();
    let fmt = repo.write_blob(b"2\n").unwrap().detach();
    for name in ["..", "a\nb", "."] {
        let own = gix::objs::Tree {
            entries: vec![gix::objs::tree::Entry { mode: EntryKind::Blob.into(), filename: "format".into(), oid: fmt }],
        };
        let own = repo.write_object(&own).unwrap().detach();
        let mut entries = vec![
            gix::objs::tree::Entry { mode: EntryKind::Tree.into(), filename: ".oc-sync".into(), oid: own },
            gix::objs::tree::Entry { mode: EntryKind::Blob.into(), filename: name.into(), oid: blob },
        ];
        entries.sort();
        let tree = repo.write_object(&gix::objs::Tree { entries }).unwrap().detach();
        let v = set_main(&repo, tree);
        corrupt_mentioning(r.manifest(&v), "cannot be a path");
    }
}

#[test]
fn the_format_file_and_the_ref_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let r = LocalRemote::open(&root).unwrap();
    let v = plant(&root, Some(b"3\n"), &[("config/a.json", EntryKind::Blob, file(b"x"))]);
    assert!(matches!(r.manifest(&v), Err(RemoteError::UnsupportedFormat { found: 3, supported: 2 })));
    assert!(matches!(r.commit(Some(&v), changes(&[("config/b", b"1")])), Err(RemoteError::UnsupportedFormat { found: 3, .. })));
    let v = plant(&root, None, &[("config/a.json", EntryKind::Blob, file(b"x"))]);
    corrupt_mentioning(r.manifest(&v), "not an oc-sync format-2 repository");
    let v = plant(&root, Some(b"two"), &[]);
    corrupt_mentioning(r.manifest(&v), "not a format");
    // the branch naming a blob, or a missing object
    let repo = gix::open(root.join(REPO_DIR)).unwrap();
    let blob = repo.write_blob(b"not a commit").unwrap().detach();
    set_ref(&repo, blob);
    corrupt_mentioning(r.head(), "not a commit");
    fs::write(root.join(REPO_DIR).join("refs/heads/main"), format!("{}\n", "1".repeat(40))).unwrap();
    corrupt_mentioning(r.head(), "missing");
    fs::write(root.join(REPO_DIR).join("refs/heads/main"), "ref: refs/heads/other\n").unwrap();
    corrupt_mentioning(r.head(), "symbolic");
    // a version that is not a commit id of this repository
    corrupt_mentioning(r.manifest(&Version("../../x".into())), "not a commit id");
    corrupt_mentioning(r.manifest(&Version(blob.to_hex().to_string())), "not a commit");
    // the stub without its repository
    fs::remove_dir_all(root.join(REPO_DIR)).unwrap();
    corrupt_mentioning(LocalRemote::open(&root).unwrap().head(), "repo.git is missing");
}

#[test]
fn a_key_cannot_be_both_a_file_and_a_folder() {
    let t = tempfile::tempdir().unwrap();
    let r = LocalRemote::open(t.path().join("remote")).unwrap();
    let v = committed(r.commit(None, changes(&[("config/a", b"1")])).unwrap());
    assert!(matches!(r.commit(Some(&v), changes(&[("config/a/b", b"2")])), Err(RemoteError::InvalidChanges(_))));
    assert!(matches!(r.commit(Some(&v), changes(&[("config", b"2")])), Err(RemoteError::InvalidChanges(_))));
    assert!(matches!(r.commit(Some(&v), changes(&[(".oc-sync/format", b"3")])), Err(RemoteError::InvalidChanges(_))));
    // once the file is removed, the folder may take its place
    let mut c = changes(&[("config/a/b", b"2")]);
    c.removed.push("config/a".into());
    let v2 = committed(r.commit(Some(&v), c).unwrap());
    assert_eq!(r.manifest(&v2).unwrap().entries.keys().collect::<Vec<_>>(), vec!["config/a/b"]);
}

// ---- format 1 → format 2 -------------------------------------------------------------------------

/// A format-1 remote as oc-sync 0.1 left it: two snapshots, one tombstone.
fn format1_remote(root: &Path) -> (Version, Manifest) {
    let old = Format1Remote::open(root).unwrap();
    let v1 = committed(old.commit(None, changes(&[("config/a.md", b"alpha"), ("config/gone.md", b"bye")])).unwrap());
    let mut c = changes(&[("config/b.md", b"beta")]);
    c.entries.insert("config/gone.md".into(), entry("m1", None));
    let v2 = committed(old.commit(Some(&v1), c).unwrap());
    let m = old.manifest(&v2).unwrap();
    (v2, m)
}

fn upgrade_changes(m: &Manifest) -> Changes {
    Changes { entries: m.entries.clone(), message: "upgrade".into(), ..Default::default() }
}

#[test]
fn a_format1_remote_upgrades_in_one_step_and_old_clients_stop() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let (v, m) = format1_remote(&root);
    let r = LocalRemote::open(&root).unwrap();
    assert!(matches!(r.head(), Err(RemoteError::NeedsUpgrade)));
    assert!(matches!(r.commit(None, changes(&[("config/x", b"1")])), Err(RemoteError::NeedsUpgrade)));
    let (fv, fm) = r.format1().unwrap().unwrap();
    assert_eq!((&fv, &fm), (&v, &m));
    assert_eq!(r.format1_blob(&sha256_hex(b"alpha")).unwrap(), b"alpha");
    // blobs left out come from format 1's objects
    let c = committed(r.upgrade(&v, upgrade_changes(&m)).unwrap());
    assert_eq!(r.head().unwrap(), Some(c.clone()));
    assert_eq!(r.manifest(&c).unwrap().entries, m.entries, "every item, clock and tombstone kept");
    assert_eq!(r.blob(&sha256_hex(b"beta")).unwrap(), b"beta");
    assert_eq!(r.format1().unwrap(), None);
    // a fresh reader agrees; git sees one root commit
    let fresh = LocalRemote::open(&root).unwrap();
    assert_eq!(fresh.manifest(&c).unwrap().entries, m.entries);
    let (ok, log) = git(&root.join(REPO_DIR), &["log", "--format=%P|%s"]);
    assert!(ok, "{log}");
    assert!(log.starts_with("|Upgrade to repository format 2"), "{log}");
    let (ok, fsck) = git(&root.join(REPO_DIR), &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "{fsck}");
    // an oc-sync 0.1 machine stops ("upgrade oc-sync") and cannot commit beside it
    let old = Format1Remote::open(&root).unwrap();
    let stub = old.head().unwrap().unwrap();
    assert!(matches!(old.manifest(&stub), Err(RemoteError::UnsupportedFormat { found: 2, .. })));
    assert!(matches!(
        old.commit(Some(&v), changes(&[("config/late", b"x")])).unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    // a second upgrade from the old snapshot is a conflict naming the format-2 head
    assert_eq!(r.upgrade(&v, upgrade_changes(&m)).unwrap(), CommitOutcome::Conflict { current: Some(c.clone()) });
    // and format 2 goes on
    committed(r.commit(Some(&c), changes(&[("config/c.md", b"gamma")])).unwrap());
}

#[test]
fn an_upgrade_from_a_stale_snapshot_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let (v, m) = format1_remote(&root);
    let old = Format1Remote::open(&root).unwrap();
    let v3 = committed(old.commit(Some(&v), changes(&[("config/new.md", b"new")])).unwrap());
    let r = LocalRemote::open(&root).unwrap();
    assert_eq!(r.upgrade(&v, upgrade_changes(&m)).unwrap(), CommitOutcome::Conflict { current: Some(v3.clone()) });
    assert!(matches!(r.head(), Err(RemoteError::NeedsUpgrade)));
    assert_eq!(old.head().unwrap(), Some(v3));
}

#[test]
fn an_upgrade_that_dies_before_its_last_step_leaves_format1_in_charge() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let (v, m) = format1_remote(&root);
    let r = LocalRemote::open(&root).unwrap();
    {
        let _g = crate::fault::inject(|step| step == crate::fault::REF_UPDATE);
        assert!(r.upgrade(&v, upgrade_changes(&m)).is_err());
    }
    // the branch was set, the pointer not swapped: still format 1, and 0.1 clients still work
    assert!(root.join(REPO_DIR).join("refs/heads/main").is_file());
    assert!(matches!(r.head(), Err(RemoteError::NeedsUpgrade)));
    let old = Format1Remote::open(&root).unwrap();
    let v3 = committed(old.commit(Some(&v), changes(&[("config/new.md", b"new")])).unwrap());
    let m3 = old.manifest(&v3).unwrap();
    // the next upgrade replaces the leftover
    let c = committed(r.upgrade(&v3, upgrade_changes(&m3)).unwrap());
    assert_eq!(r.manifest(&c).unwrap().entries, m3.entries);
}

#[test]
fn a_new_remote_names_the_stub_from_its_first_commit() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    fs::create_dir(&root).unwrap();
    let r = LocalRemote::open(&root).unwrap();
    assert_eq!(r.head().unwrap(), None);
    assert_eq!(r.format1().unwrap(), None);
    let v = committed(r.commit(None, changes(&[("config/a.md", b"a")])).unwrap());
    let old = Format1Remote::open(&root).unwrap();
    let stub = old.head().unwrap().unwrap();
    assert!(matches!(old.manifest(&stub), Err(RemoteError::UnsupportedFormat { .. })));
    assert_eq!(r.manifest(&v).unwrap().format, REPOSITORY_FORMAT);
}

/// Timing figures (run by hand: `cargo test -p oc-sync --lib remote::local::tests::timing -- --ignored --nocapture`).
#[test]
#[ignore]
fn timing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("remote");
    let ix = t.path().join("ix.json");
    let r = LocalRemote::open(&root).unwrap().with_index_file(ix.clone());
    let items: Vec<(String, Vec<u8>)> =
        (0..5000).map(|i| (format!("messages/p/s{}/m{i}.json", i % 50), format!("{{\"i\":{i},\"text\":\"{}\"}}", "x".repeat(2000)).into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = items.iter().map(|(k, b)| (k.as_str(), b.as_slice())).collect();
    let start = std::time::Instant::now();
    let v1 = committed(r.commit(None, changes(&refs)).unwrap());
    eprintln!("first commit of 5000 items: {:?}", start.elapsed());
    let start = std::time::Instant::now();
    let v2 = committed(r.commit(Some(&v1), changes(&[("messages/p/s1/new.json", b"{}")])).unwrap());
    eprintln!("one-item commit on top: {:?}", start.elapsed());
    let start = std::time::Instant::now();
    let fresh = LocalRemote::open(&root).unwrap();
    assert_eq!(fresh.manifest(&v2).unwrap().entries.len(), 5001);
    eprintln!("full read (no index): {:?}", start.elapsed());
    let other = LocalRemote::open(&root).unwrap();
    other.manifest(&v2).unwrap();
    let v3 = committed(other.commit(Some(&v2), changes(&[("messages/p/s2/new.json", b"{}")])).unwrap());
    let start = std::time::Instant::now();
    let b = LocalRemote::open(&root).unwrap().with_index_file(ix);
    assert_eq!(b.manifest(&v3).unwrap().entries.len(), 5002);
    eprintln!("new process, index file, one item changed: {:?}", start.elapsed());
}
