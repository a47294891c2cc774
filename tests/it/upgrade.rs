//! Upgrading a remote written by oc-sync 0.1 (repository format 1, `tests/fixtures/format1`) to
//! format 2, on the folder remote and on GitHub: every item, clock and tombstone kept, whole-session
//! documents split into message items, the machine that wrote format 1 carries on without pushing
//! or pulling anything, new machines get everything, and format-1 clients are stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use fake_github::{Fault, FakeGithub, FakeOptions};
use serde_json::{Value, json};

use crate::common::Machine;

const REPO: &str = ".opencode-sync";
const PROJECT: &str = "prj_format1fixture";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The format-1 manifest of the fixture (the one HEAD names) and its blobs by hash.
fn fixture_snapshot() -> (Value, Vec<(String, Vec<u8>)>) {
    let remote = fixture().join("remote");
    let head = std::fs::read_to_string(remote.join("HEAD")).unwrap();
    let m: Value = serde_json::from_slice(&std::fs::read(remote.join("manifests").join(format!("{}.json", head.trim()))).unwrap()).unwrap();
    let mut files = Vec::new();
    for (key, e) in m["entries"].as_object().unwrap() {
        if let Some(h) = e["hash"].as_str() {
            files.push((key.clone(), std::fs::read(remote.join("objects").join(&h[..2]).join(&h[2..])).unwrap()));
        }
    }
    (m, files)
}

/// Writes the fixture machine's config files and database rows into `m`.
fn with_laptop_data(m: &Machine) {
    m.write_cfg("opencode.json", "{ \"model\": \"fake/m\" }\n");
    m.write_cfg("agent/review.md", "---\ndescription: reviewer\n---\nReview the change.\n");
    m.create_db();
    let sql = std::fs::read_to_string(fixture().join("rows.sql")).unwrap();
    m.db().execute_batch(&format!("PRAGMA foreign_keys=ON; BEGIN; {sql} COMMIT;")).unwrap();
}

/// Counts of OpenCode's rows on `m`: (projects, sessions, messages, parts, todos).
fn rows(m: &Machine) -> (i64, i64, i64, i64, i64) {
    let c = m.db();
    let n = |t: &str| c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap();
    (n("project"), n("session"), n("message"), n("part"), n("todo"))
}

fn part_text(m: &Machine, id: &str) -> String {
    m.db().query_row("SELECT json_extract(data, '$.text') FROM part WHERE id = ?1", [id], |r| r.get(0)).unwrap()
}

fn sync_json(m: &Machine) -> Value {
    let o = m.run(&["sync", "--json"]);
    assert_eq!(o.code, 0, "{}", o.all());
    serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("{e}: {}", o.all()))
}

fn git(git_dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("git").arg("--git-dir").arg(git_dir).args(args).output().expect("run git");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// What every upgrade of the fixture must give: 11 items (the two session documents became four
/// message items), the tombstone kept.
fn assert_upgraded(v: &Value) {
    let u = &v["upgraded"];
    assert_eq!(u["items"], 11, "{v}");
    assert_eq!(u["split"], 2, "{v}");
    assert_eq!(u["splitInto"], 4, "{v}");
}

/// A new machine (empty database) gets everything the format-1 machine had; the deleted agent
/// stays deleted.
fn assert_new_machine_complete(m: &Machine) {
    let v = sync_json(m);
    assert_eq!(v["conflicts"], json!([]), "{v}");
    assert_eq!(rows(m), (1, 2, 4, 6, 1), "{v}");
    assert_eq!(part_text(m, "prt_f1a00301"), "Thanks! Now a multi-byte line: café ✓");
    assert_eq!(m.read_cfg("agent/review.md").as_deref(), Some("---\ndescription: reviewer\n---\nReview the change.\n"));
    assert_eq!(m.read_cfg("opencode.json").as_deref(), Some("{ \"model\": \"fake/m\" }\n"));
    assert!(m.read_cfg("agent/old.md").is_none());
}

#[test]
fn a_folder_remote_of_oc_sync_0_1_is_upgraded_and_every_machine_carries_on() {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("remote");
    copy_dir(&fixture().join("remote"), &remote);

    // The machine that wrote it, with its 0.1 sync state, updates oc-sync and syncs.
    let laptop = Machine::new("format1-laptop").folder_remote(&remote).settings(json!({}));
    with_laptop_data(&laptop);
    let state_dir = laptop.home.join(".local/state/oc-sync/sync");
    copy_dir(&fixture().join("laptop-state"), &state_dir);
    let state_file = state_dir.join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    // The state belongs to the remote the sync describes (the folder moved since 0.1 wrote it).
    state["remote"] = json!(format!("folder remote {}", remote.display()));
    std::fs::write(&state_file, serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    let v = sync_json(&laptop);
    assert_upgraded(&v);
    for k in ["pushed", "pulled", "merged", "conflicts", "deletedLocal", "deletedRemote"] {
        assert_eq!(v[k], json!([]), "the upgrading machine changes nothing ({k}): {v}");
    }
    assert_eq!(rows(&laptop), (1, 2, 4, 6, 1));

    // The remote is now a bare git repository in format 2, readable with git.
    let repo = remote.join("repo.git");
    let (ok, out) = git(&repo, &["show", "main:.oc-sync/format"]);
    assert!(ok && out == "2\n", "{out}");
    let (ok, out) = git(&repo, &["show", &format!("main:messages/{PROJECT}/ses_format1a/msg_f1a002.json")]);
    assert!(ok && out.starts_with("oc-sync-item 2 {"), "{out}");
    assert!(out.contains("\"format1-laptop\":1"), "the document's clock is kept: {out}");
    let (ok, out) = git(&repo, &["show", "main:config/agent/old.md"]);
    assert!(ok && out.contains("\"hash\":null") && out.contains("deleted_ms"), "the tombstone is kept: {out}");
    let (ok, out) = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(ok && !out.contains(&format!("messages/{PROJECT}/ses_format1a.json")), "no whole-session document left: {out}");
    let (ok, out) = git(&repo, &["fsck", "--strict"]);
    assert!(ok, "{out}");

    // oc-sync 0.1 reads HEAD → a manifest in format 2 → "upgrade oc-sync on this machine".
    let head = std::fs::read_to_string(remote.join("HEAD")).unwrap();
    let stub: Value = serde_json::from_slice(&std::fs::read(remote.join("manifests").join(format!("{}.json", head.trim()))).unwrap()).unwrap();
    assert_eq!(stub["format"], 2, "{stub}");
    assert_eq!(stub["entries"], json!({}), "{stub}");

    // A new machine gets everything; the laptop then has nothing to do; no second upgrade.
    let desk = Machine::new("desk").folder_remote(&remote).settings(json!({}));
    desk.create_db();
    assert_new_machine_complete(&desk);
    let v = sync_json(&laptop);
    assert!(v["upgraded"].is_null(), "{v}");
    assert_eq!(v["pushed"], json!([]), "{v}");
    assert_eq!(v["pulled"], json!([]), "{v}");

    // Both go on syncing in format 2: a message added on the desk reaches the laptop.
    desk.add_turn("ses_format1b", "desk", 1_795_000_100_000);
    let v = sync_json(&desk);
    assert!(v["pushed"].as_array().unwrap().iter().any(|k| k == &json!(format!("messages/{PROJECT}/ses_format1b/msg_desk0.json"))), "{v}");
    sync_json(&laptop);
    assert_eq!(rows(&laptop), (1, 2, 6, 8, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_repository_of_oc_sync_0_1_is_upgraded_once_even_after_a_failed_attempt() {
    let gh = FakeGithub::start(FakeOptions::default()).await.expect("fake GitHub");
    let login = gh.login().to_string();
    gh.add_repo(&login, REPO, true, false);
    // Format 1 on GitHub: each item's bytes at its key path, the manifest in .oc-sync/.
    let (mut manifest, files) = fixture_snapshot();
    manifest.as_object_mut().unwrap().retain(|k, _| k == "format" || k == "entries");
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut tree: Vec<(&str, &[u8])> = files.iter().map(|(k, b)| (k.as_str(), b.as_slice())).collect();
    tree.push((".oc-sync/manifest.json", &manifest_bytes));
    gh.commit_as_other_machine(&login, REPO, "main", &tree).unwrap();
    let git_dir = gh.repo_git_dir(&login, REPO);

    let new = |id: &str| {
        let m = Machine::new(id).github(&gh.url, gh.token()).settings(json!({}));
        m.create_db();
        m
    };
    let desk = new("desk");
    // The upgrade's last step (the ref update) fails: the remote stays in format 1.
    gh.faults().inject(Fault::status(500, "*/git/refs/heads/*").method("PATCH").times(10));
    let d = desk.clone();
    let o = tokio::task::spawn_blocking(move || d.run(&["sync", "--json"])).await.unwrap();
    assert_ne!(o.code, 0, "{}", o.all());
    gh.faults().clear();
    let (ok, out) = git(&git_dir, &["show", "main:.oc-sync/manifest.json"]);
    assert!(ok && out.contains("\"format\": 1"), "still format 1: {out}");
    assert_eq!(rows(&desk), (0, 0, 0, 0, 0), "nothing written locally");

    let d = desk.clone();
    let v = tokio::task::spawn_blocking(move || sync_json(&d)).await.unwrap();
    assert_upgraded(&v);
    assert_eq!(rows(&desk), (1, 2, 4, 6, 1), "{v}");
    let (ok, out) = git(&git_dir, &["show", "main:.oc-sync/format"]);
    assert!(ok && out == "2\n", "{out}");
    let (ok, out) = git(&git_dir, &["show", "main:.oc-sync/manifest.json"]);
    let stub: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && stub["format"] == 2 && stub["entries"] == json!({}), "format-1 clients stop: {stub}");
    let (ok, out) = git(&git_dir, &["show", &format!("main:messages/{PROJECT}/ses_format1a/msg_f1a001.json")]);
    assert!(ok && out.starts_with("oc-sync-item 2 {"), "{out}");
    let (ok, out) = git(&git_dir, &["fsck", "--strict"]);
    assert!(ok, "{out}");

    let lap = new("laptop2");
    let v = tokio::task::spawn_blocking(move || {
        assert_new_machine_complete(&lap);
        sync_json(&lap)
    })
    .await
    .unwrap();
    assert!(v["upgraded"].is_null(), "upgraded once: {v}");
}
