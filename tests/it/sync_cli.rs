//! Drives the real `oc-sync` binary on 2-3 simulated machines (one HOME each) sharing one folder
//! remote through OC_SYNC_REMOTE.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{Machine, Out};
use serde_json::Value;

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    crate::common::walk(dir, "", &mut out);
    out
}

/// A shared remote folder and n machines ("a", "b", "c") with the same extra settings.
fn world(n: usize, settings: Value) -> (tempfile::TempDir, Vec<Machine>) {
    let shared = tempfile::tempdir().unwrap();
    let remote = shared.path().join("remote");
    let ms = ["a", "b", "c"][..n].iter().map(|id| Machine::new(id).folder_remote(&remote).settings(settings.clone())).collect();
    (shared, ms)
}

fn remote_dir(shared: &tempfile::TempDir) -> PathBuf {
    shared.path().join("remote")
}

fn remote_contains(shared: &tempfile::TempDir, needle: &str) -> Vec<String> {
    all_files(&remote_dir(shared))
        .into_iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains(needle))
        .map(|(k, _)| k)
        .collect()
}

const JSONC: &str = "// my OpenCode config\n{\n  // the model I like\n  \"model\": \"anthropic/claude\",\n  /* block comment */\n  \"theme\": \"dark\", // trailing\n}\n";

#[test]
fn first_sync_pushes_and_second_machine_pulls_with_comments_intact() {
    let (_shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.jsonc", JSONC);
    a.write_cfg("agents/review.md", "# review\nbe nice\n");
    a.write_state("prompt-history.jsonl", "{\"input\":\"hello\"}\n");
    let out = a.sync();
    assert!(out.contains("push 3"), "{out}");
    let out = b.sync();
    assert!(out.contains("pull 3"), "{out}");
    assert_eq!(b.read_cfg("opencode.jsonc").as_deref(), Some(JSONC));
    assert_eq!(b.read_cfg("agents/review.md").as_deref(), Some("# review\nbe nice\n"));
    assert_eq!(b.read_state("prompt-history.jsonl").as_deref(), Some("{\"input\":\"hello\"}\n"));
    assert_eq!(a.synced_files(), b.synced_files());
    assert!(a.sync().contains("already in sync"));
    // oc-sync's own config file is never synced.
    assert_eq!(b.json("opencode-sync.json")["machineId"], "b");
}

#[test]
fn concurrent_edits_of_different_keys_merge_on_three_machines() {
    let (_shared, ms) = world(3, serde_json::json!({}));
    ms[0].write_cfg("opencode.json", "{\n  \"model\": \"m0\"\n}\n");
    for m in &ms {
        m.sync();
    }
    ms[0].set_key("model", "m1");
    ms[1].set_key("theme", "light");
    ms[2].set_key("username", "me");
    for m in &ms {
        m.sync();
    }
    for m in &ms {
        m.sync();
    }
    for m in &ms {
        let j = m.json("opencode.json");
        assert_eq!((j["model"].as_str(), j["theme"].as_str(), j["username"].as_str()), (Some("m1"), Some("light"), Some("me")), "{j}");
    }
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
    assert_eq!(ms[0].synced_files(), ms[2].synced_files());
}

#[test]
fn dry_run_reports_but_changes_nothing() {
    let (shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync();
    a.write_cfg("opencode.json", "{ \"model\": \"y\" }\n");
    a.write_cfg("agents/new.md", "new\n");
    let remote_before = all_files(&remote_dir(&shared));
    let a_before = a.synced_files();
    let out = a.ok(&["sync", "--dry-run"]);
    assert!(out.contains("would push 2"), "{out}");
    assert_eq!(all_files(&remote_dir(&shared)), remote_before);
    assert_eq!(a.synced_files(), a_before);
    // The other machine: would pull, pulls nothing.
    let out = b.ok(&["sync", "--dry-run", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["pulled"], serde_json::json!(["config/opencode.json"]));
    assert!(b.synced_files().is_empty());
    assert_eq!(all_files(&remote_dir(&shared)), remote_before);
    // Dry run on the machine itself leaves it pending: a real sync pushes both.
    let v: Value = serde_json::from_str(&a.ok(&["sync", "--json"])).unwrap();
    assert_eq!(v["pushed"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn sync_json_is_valid_json_with_pushed_and_pulled() {
    let (_shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.json", "{}\n");
    a.write_state("prompt-history.jsonl", "{\"input\":\"x\"}\n");
    let v: Value = serde_json::from_str(&a.ok(&["sync", "--json"])).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]));
    assert_eq!(v["pulled"], serde_json::json!([]));
    assert_eq!(v["attempts"], 1);
    let v: Value = serde_json::from_str(&b.ok(&["sync", "--json"])).unwrap();
    assert_eq!(v["pulled"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]));
    assert_eq!(v["pushed"], serde_json::json!([]));
    assert!(v["version"].is_string());
}

/// a and b share {"a":"base"} with strategy ask, then both change "a"; a syncs first, b meets the conflict.
fn ask_conflict() -> (tempfile::TempDir, Vec<Machine>) {
    let (shared, ms) = world(2, serde_json::json!({ "conflictStrategy": "ask" }));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.json", "{\n  \"a\": \"base\"\n}\n");
    a.sync();
    b.sync();
    a.set_key("a", "A");
    b.set_key("a", "B");
    a.sync();
    let out = b.sync_waiting();
    assert!(out.contains("conflict in config/opencode.json kept for you"), "{out}");
    assert_eq!(b.json("opencode.json")["a"], "B");
    let out = b.ok(&["conflicts"]);
    assert!(out.contains("config/opencode.json") && out.contains("WAITING"), "{out}");
    // Still waiting: the next sync leaves it alone and says so.
    let out = b.sync_waiting();
    assert!(out.contains("waiting for you: config/opencode.json"), "{out}");
    assert!(!out.contains("already in sync"), "{out}");
    assert_eq!(a.json("opencode.json")["a"], "A");
    (shared, ms)
}

#[test]
fn ask_then_resolve_remote_converges() {
    let (_shared, ms) = ask_conflict();
    let (a, b) = (&ms[0], &ms[1]);
    b.ok(&["resolve", "config/opencode.json", "--remote"]);
    assert_eq!(b.json("opencode.json")["a"], "A");
    assert!(b.ok(&["conflicts"]).contains("no open conflicts"));
    b.sync();
    a.sync();
    b.sync();
    assert_eq!(a.json("opencode.json")["a"], "A");
    assert_eq!(a.synced_files(), b.synced_files());
}

#[test]
fn ask_then_resolve_local_converges() {
    let (_shared, ms) = ask_conflict();
    let (a, b) = (&ms[0], &ms[1]);
    b.ok(&["resolve", "config/opencode.json", "--local"]);
    assert_eq!(b.json("opencode.json")["a"], "B");
    let out = b.sync();
    assert!(out.contains("push 1: config/opencode.json"), "{out}");
    a.sync();
    assert_eq!(a.json("opencode.json")["a"], "B");
    assert_eq!(a.synced_files(), b.synced_files());
    assert!(a.sync().contains("already in sync"));
    assert!(b.sync().contains("already in sync"));
}

#[test]
fn mass_deletion_is_refused_until_allowed() {
    let (_shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    for n in 1..=5 {
        a.write_cfg(&format!("agents/a{n}.md"), &format!("agent {n}\n"));
    }
    a.sync();
    b.sync();
    for n in 1..=4 {
        std::fs::remove_file(a.cfg_dir().join(format!("agents/a{n}.md"))).unwrap();
    }
    let Out { code, out, err } = a.run(&["sync"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--allow-deletions"), "{err}");
    let Out { code, out, .. } = a.run(&["sync", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["ok"].clone(), v["tooManyDeletions"].clone()), (Value::Bool(false), Value::Bool(true)));
    // Nothing reached the other machine.
    b.sync();
    assert!(b.cfg_dir().join("agents/a1.md").exists());
    let out = a.ok(&["sync", "--allow-deletions"]);
    assert!(out.contains("delete on the remote 4"), "{out}");
    let Out { code, err, .. } = b.run(&["sync"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-deletions"), "{err}");
    b.ok(&["sync", "--allow-deletions"]);
    assert_eq!(a.synced_files(), b.synced_files());
    assert_eq!(b.synced_files().keys().cloned().collect::<Vec<_>>(), vec!["config/agents/a5.md".to_string()]);
}

#[test]
fn per_machine_overrides_stay_local() {
    let (shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.json", "{\n  \"model\": \"a/model\",\n  \"theme\": \"dark\"\n}\n");
    b.write_cfg("opencode-sync.overrides.jsonc", "// this machine only\n{ \"model\": \"local/model\" }\n");
    a.sync();
    b.sync();
    let jb = b.json("opencode.json");
    assert_eq!((jb["model"].as_str(), jb["theme"].as_str()), (Some("local/model"), Some("dark")), "{jb}");
    // b edits a shared key: it travels, the override does not.
    b.set_key("theme", "light");
    b.sync();
    a.sync();
    let ja = a.json("opencode.json");
    assert_eq!((ja["model"].as_str(), ja["theme"].as_str()), (Some("a/model"), Some("light")), "{ja}");
    // a changes the model: b keeps its override.
    a.set_key("model", "a/model2");
    a.sync();
    b.sync();
    let jb = b.json("opencode.json");
    assert_eq!((jb["model"].as_str(), jb["theme"].as_str()), (Some("local/model"), Some("light")), "{jb}");
    a.sync();
    assert_eq!(a.json("opencode.json")["model"], "a/model2");
    assert_eq!(remote_contains(&shared, "local/model"), Vec::<String>::new(), "the override leaked into the remote");
    assert!(remote_contains(&shared, "this machine only").is_empty());
}

#[cfg(unix)]
#[test]
fn dependencies_and_symlinks_are_never_pushed() {
    let (shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("opencode.json", "{}\n");
    a.write_cfg("node_modules/x.js", "// NODE_MODULES_MARKER\n");
    a.write_cfg("plugin/node_modules/y.js", "// NODE_MODULES_MARKER\n");
    a.write_cfg("plugin/package.json", "{\"PACKAGE_MARKER\":1}\n");
    let secret = a.home.join("secret.md");
    std::fs::write(&secret, "SYMLINK_SECRET_MARKER\n").unwrap();
    std::fs::create_dir_all(a.cfg_dir().join("agents")).unwrap();
    std::os::unix::fs::symlink(&secret, a.cfg_dir().join("agents/link.md")).unwrap();
    std::os::unix::fs::symlink(&secret, a.cfg_dir().join("AGENTS.md")).unwrap();
    let outside = a.home.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("inner.md"), "SYMLINK_DIR_MARKER\n").unwrap();
    std::os::unix::fs::symlink(&outside, a.cfg_dir().join("commands")).unwrap();
    let v: Value = serde_json::from_str(&a.ok(&["sync", "--json"])).unwrap();
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json"]), "{v}");
    for marker in ["NODE_MODULES_MARKER", "PACKAGE_MARKER", "SYMLINK_SECRET_MARKER", "SYMLINK_DIR_MARKER"] {
        assert!(remote_contains(&shared, marker).is_empty(), "{marker} reached the remote");
    }
    b.sync();
    assert_eq!(b.synced_files().keys().cloned().collect::<Vec<_>>(), vec!["config/opencode.json".to_string()]);
    // The symlink's target is untouched.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "SYMLINK_SECRET_MARKER\n");
}

#[test]
fn exit_codes_for_resolve() {
    let (_shared, ms) = world(1, serde_json::json!({}));
    let a = &ms[0];
    assert_eq!(a.run(&["resolve", "x"]).code, 2);
    assert_eq!(a.run(&["resolve", "x", "--local", "--remote"]).code, 2);
    assert_eq!(a.run(&["sync", "--bogus"]).code, 2);
    let Out { code, err, .. } = a.run(&["resolve", "config/opencode.json", "--remote"]);
    assert_eq!(code, 1);
    assert!(err.contains("no open conflict"), "{err}");
    assert_eq!(a.run(&["sync"]).code, 0);
    assert_eq!(a.run(&["conflicts", "--json"]).code, 0);
}

/// A hostile folder remote (entries committed as some other writer of the folder would): keys
/// outside the synced set and outside a category's shape, next to one good item. The victim's
/// HOME changes only in OpenCode's synced folders and oc-sync's own; the refusals are listed by
/// name in `sync`, `sync --json` and `status`, and an idle sync downloads nothing again.
#[test]
fn a_hostile_folder_remote_changes_nothing_outside_the_synced_dirs_and_refusals_are_listed() {
    use crate::common::home_snapshot as hs;
    use crate::common::lib::{Changes, Entry, LocalRemote, Remote, VectorClock, sha256_hex};
    let (shared, ms) = world(1, serde_json::json!({}));
    let b = &ms[0];
    b.write_cfg("agents/mine.md", "mine\n");
    b.sync();
    let remote = LocalRemote::open(remote_dir(&shared)).unwrap();
    let head = remote.head().unwrap();
    let mut changes = Changes { message: "mallory".into(), ..Default::default() };
    let bad = [
        "config/node_modules/evil/index.js",
        "config/opencode-sync.json",
        "sessions/evil.json",
        "messages/p/s/m/x.json",
        "messages/p/s.json",
        "projects/a/b.json",
        "todos/p/s$.json",
    ];
    let good = "config/agents/theirs.md";
    for key in bad.iter().chain([&good]) {
        let bytes = format!("content of {key}\n").into_bytes();
        let hash = sha256_hex(&bytes);
        let mut clock = VectorClock::new();
        clock.bump("mallory");
        let category = key.split('/').next().unwrap().to_string();
        changes.entries.insert(
            key.to_string(),
            Entry { clock, hash: Some(hash.clone()), size: bytes.len() as u64, kind: "text".into(), category, modified_ms: 1, machine: "mallory".into(), deleted_ms: None },
        );
        changes.blobs.insert(hash, bytes);
    }
    remote.commit(head.as_ref(), changes).unwrap();

    hs::plant_canaries(&b.home);
    let before = hs::snapshot(&b.home);
    let out = b.sync();
    let after = hs::snapshot(&b.home);
    let changed = hs::assert_only_changed_under(&before, &after, &[".config/opencode/agents", ".local/state/oc-sync"]);
    assert!(changed.iter().any(|c| c.contains("agents/theirs.md")), "{changed:?}");
    hs::assert_canaries_intact(&b.home);
    assert!(!b.cfg_dir().join("node_modules").exists());
    for key in ["config/node_modules/evil/index.js", "config/opencode-sync.json"] {
        assert!(out.contains(&format!("refused from the remote: {key}: ")), "{key}: {out}");
    }
    assert_eq!(b.json("opencode-sync.json")["machineId"], "a", "oc-sync's own config is never taken");
    // --json lists every refusal; the next sync downloads nothing and changes nothing.
    let before = hs::snapshot(&b.home);
    let v: Value = serde_json::from_str(&b.ok(&["sync", "--json"])).unwrap();
    let refused: Vec<String> = v["refused"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    for key in bad.iter().filter(|k| k.starts_with("config/")) {
        assert!(refused.iter().any(|r| r.starts_with(&format!("{key}: "))), "{key}: {refused:?}");
    }
    assert!(v["pulled"].as_array().unwrap().is_empty(), "{v}");
    hs::assert_only_changed_under(&before, &hs::snapshot(&b.home), &[".local/state/oc-sync"]);
    let status = b.ok(&["status"]);
    assert!(status.contains("refused    config/node_modules/evil/index.js: "), "{status}");
    let v: Value = serde_json::from_str(&b.ok(&["status", "--json"])).unwrap();
    assert!(v["refused"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("config/opencode-sync.json: ")), "{v}");
}

/// Issue #12 with a real `kill -9`: a's sync (merging b's edits, writing locally) is killed at
/// every step; a then edits again (and a temp file of an interrupted write is lying around).
/// Every edit ends up on both machines; the next sync removes the stale temp file.
#[test]
fn every_edit_survives_a_kill_9_at_any_step() {
    for step in ["before-commit", "ref-update", "after-commit", "local-write", "before-state-save"] {
        let (_shared, ms) = world(2, serde_json::json!({}));
        let (a, b) = (&ms[0], &ms[1]);
        a.write_cfg("opencode.json", "{ \"seed\": \"s\" }\n");
        a.write_state("prompt-history.jsonl", "{\"input\":\"seed\"}\n");
        a.sync();
        b.sync();
        b.set_key("b1", "B");
        b.write_state("prompt-history.jsonl", "{\"input\":\"seed\"}\n{\"input\":\"b\"}\n");
        b.sync();
        a.set_key("a1", "A");
        a.write_state("prompt-history.jsonl", "{\"input\":\"seed\"}\n{\"input\":\"a1\"}\n");
        a.kill_sync_at(step);
        a.set_key("a2", "A2");
        let hist = a.read_state("prompt-history.jsonl").unwrap();
        a.write_state("prompt-history.jsonl", &format!("{hist}{{\"input\":\"a2\"}}\n"));
        let tmp = a.cfg_dir().join(".opencode.json.oc-sync-tmp-0123456789ab");
        std::fs::write(&tmp, "half written").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(old).unwrap();
        for m in [a, b, a, b] {
            m.sync();
        }
        assert!(!tmp.exists(), "{step}: the stale temp file is removed");
        for m in [a, b] {
            let j = m.json("opencode.json");
            for (k, v) in [("seed", "s"), ("b1", "B"), ("a1", "A"), ("a2", "A2")] {
                assert_eq!(j[k], v, "{step}: {k}: {j}");
            }
            let h = m.read_state("prompt-history.jsonl").unwrap();
            for line in ["seed", "b", "a1", "a2"] {
                assert_eq!(h.matches(&format!("{{\"input\":\"{line}\"}}")).count(), 1, "{step}: history line {line}: {h}");
            }
        }
        assert_eq!(a.synced_files(), b.synced_files(), "{step}");
    }
}

/// Sessions with a real `kill -9`: a's sync merging b's new turn with its own is killed at every
/// step, including inside the database import; both machines then add another turn. Every
/// message and part ends up in both databases.
#[test]
fn every_session_turn_survives_a_kill_9_at_any_step() {
    use crate::common::lib::insert_fake_session;
    for step in ["before-commit", "after-commit", "db-import", "local-write", "before-state-save"] {
        let (_shared, ms) = world(2, serde_json::json!({}));
        let (a, b) = (&ms[0], &ms[1]);
        for m in [a, b] {
            m.create_db();
        }
        insert_fake_session(&a.db(), "proj1", "ses_one", 2, 1, 50).unwrap();
        a.sync();
        b.sync();
        assert!(b.has_row("session", "ses_one"), "the session reached b");
        b.add_turn("ses_one", "b1", 1_000);
        b.sync();
        a.add_turn("ses_one", "a1", 2_000);
        a.kill_sync_at(step);
        a.add_turn("ses_one", "a2", 3_000);
        b.add_turn("ses_one", "b2", 4_000);
        for m in [a, b, a, b] {
            m.sync();
        }
        for (m, n) in [(a, "a"), (b, "b")] {
            for tag in ["b1", "a1", "a2", "b2"] {
                for i in 0..2 {
                    assert!(m.has_row("message", &format!("msg_{tag}{i}")), "{step}: message {tag}{i} on {n}");
                    assert!(m.has_row("part", &format!("prt_{tag}{i}")), "{step}: part {tag}{i} on {n}");
                }
            }
        }
    }
}

#[test]
fn a_long_sync_shows_plain_progress_lines_on_stderr_and_none_with_json() {
    let (_shared, ms) = world(3, serde_json::json!({}));
    for i in 0..25 {
        ms[0].write_cfg(&format!("agents/a{i}.md"), &format!("agent {i}\n"));
    }
    // Not a terminal: short plain lines on stderr, the summary alone on stdout.
    let Out { code, out, err } = ms[0].run(&["sync"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("push 25") && !out.contains("sync: "), "{out}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("sync: ")).collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("sync: planning 0/25 items")), "{err}");
    assert!(lines.iter().any(|l| l.starts_with("sync: uploading 25/25 items")), "{err}");
    assert!(lines.last().is_some_and(|l| l.starts_with("sync: done 25/25 items")), "{err}");
    assert!(lines.len() <= 14, "short: {err}");
    let Out { code, err, .. } = ms[1].run(&["sync"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("sync: planning 0/25 items") && err.contains("sync: writing") && err.contains("sync: done 25/25 items"), "{err}");
    // --json: stdout is the JSON alone, and no progress anywhere.
    let Out { code, out, err } = ms[2].run(&["sync", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is only the JSON");
    assert_eq!(v["pulled"].as_array().map(Vec::len), Some(25));
    assert!(!err.contains("sync: "), "{err}");
    // A short sync prints no progress.
    ms[0].write_cfg("agents/a0.md", "changed\n");
    let Out { err, .. } = ms[0].run(&["sync"]);
    assert!(!err.contains("sync: "), "{err}");
}

/// Runs git on the folder remote's repository, with `envs`; returns stdout (asserting success).
fn git_in(repo: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let o = std::process::Command::new("git").arg("--git-dir").arg(repo).args(args).envs(envs.iter().map(|(k, v)| (*k, *v))).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_symbolic_link_planted_in_the_folder_remote_is_refused_by_name_and_nothing_is_written() {
    let (shared, ms) = world(2, serde_json::json!({}));
    let (a, b) = (&ms[0], &ms[1]);
    a.write_cfg("agents/review.md", "# review\n");
    a.sync();
    // Someone with write access to the remote adds a symbolic link where an item file would be.
    let repo = remote_dir(&shared).join("repo.git");
    let index = shared.path().join("evil-index");
    let target = {
        let mut c = std::process::Command::new("git").arg("--git-dir").arg(&repo).args(["hash-object", "-w", "--stdin"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"/etc/passwd").unwrap();
        drop(c.stdin.take());
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
    };
    let env = [("GIT_INDEX_FILE", index.as_path())];
    git_in(&repo, &["read-tree", "main"], &env);
    git_in(&repo, &["update-index", "--add", "--cacheinfo", &format!("120000,{target},config/agents/link.md")], &env);
    let tree = git_in(&repo, &["write-tree"], &env);
    let commit = git_in(&repo, &["commit-tree", &tree, "-p", "main", "-m", "evil"], &[]);
    git_in(&repo, &["update-ref", "refs/heads/main", &commit], &[]);

    let o = b.run(&["sync", "--json"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let v: Value = serde_json::from_str(&o.out).unwrap();
    let refused = v["refused"].as_array().unwrap();
    assert!(refused.iter().any(|r| r.as_str().unwrap().contains("config/agents/link.md") && r.as_str().unwrap().contains("symbolic link")), "{v}");
    assert_eq!(b.read_cfg("agents/review.md").as_deref(), Some("# review\n"));
    assert!(!b.cfg_dir().join("agents/link.md").exists() && std::fs::symlink_metadata(b.cfg_dir().join("agents/link.md")).is_err());
    // The machine that holds the real files is not touched either.
    let v = a.run(&["sync", "--json"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.out.contains("config/agents/link.md"), "{}", v.out);
    assert_eq!(a.read_cfg("agents/review.md").as_deref(), Some("# review\n"));
}
