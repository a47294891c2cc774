//! Two machines, each with its own OpenCode database, syncing sessions through a folder remote.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::*;
use crate::remote::local::LocalRemote;
use crate::remote::Remote;
use crate::remote::testing::HookedRemote;
use crate::source::opencode_db::{create_test_db, insert_fake_session};
use crate::sync::run::{SyncOptions, SyncReport, Syncer};
use crate::time::now_ms as system_now_ms;
use crate::sync::state::StateStore;

struct Machine {
    dir: PathBuf,
}

impl Machine {
    fn new(root: &Path, name: &str) -> Machine {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        create_test_db(dir.join("opencode.db")).unwrap();
        Machine { dir }
    }
    fn db(&self) -> PathBuf {
        self.dir.join("opencode.db")
    }
    fn conn(&self) -> Connection {
        let c = Connection::open(self.db()).unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        c
    }
    fn syncer<'a>(&self, name: &str, config: &'a Config, remote: &'a dyn Remote) -> Syncer<'a> {
        let srcs = sources(&self.db(), &self.dir.join("state"), config, system_now_ms()).unwrap();
        let srcs = srcs.into_iter().map(|s| Box::new(s) as Box<dyn Source>).collect();
        crate::testing::syncer(name, config, remote, srcs, self.dir.join("state/sync"))
    }
    fn sync_with(&self, name: &str, config: &Config, remote: &dyn Remote) -> SyncReport {
        self.syncer(name, config, remote).sync(&SyncOptions::default()).unwrap()
    }
    fn sync(&self, name: &str, remote: &dyn Remote) -> SyncReport {
        self.sync_with(name, &Config { retry_delay_ms: 0, ..Config::default() }, remote)
    }
    fn open(&self) -> OpencodeDb {
        OpencodeDb::open(self.db()).unwrap()
    }
    fn count(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }
    /// Adds a user + assistant message pair (one text part each) to a session.
    fn continue_session(&self, sid: &str, tag: &str, t: i64) {
        let c = self.conn();
        for (i, role) in ["user", "assistant"].iter().enumerate() {
            let mid = format!("msg_{tag}{i}");
            let data = serde_json::json!({"role": role, "time": {"created": t}, "cost": if i == 1 { 0.5 } else { 0.0 },
                "tokens": {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 0, "write": 0}}});
            c.execute("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
                rusqlite::params![mid, sid, t + i as i64, data.to_string()]).unwrap();
            let pdata = serde_json::json!({"type": "text", "text": format!("{tag} says {role}")});
            c.execute("INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                rusqlite::params![format!("prt_{tag}{i}"), mid, sid, t + i as i64, pdata.to_string()]).unwrap();
        }
        c.execute("UPDATE session SET time_updated = ?2 WHERE id = ?1", rusqlite::params![sid, t + 10]).unwrap();
    }
}

fn world() -> (tempfile::TempDir, LocalRemote, Machine, Machine) {
    let t = tempfile::tempdir().unwrap();
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let a = Machine::new(t.path(), "a");
    let b = Machine::new(t.path(), "b");
    (t, remote, a, b)
}

#[test]
fn a_session_reaches_another_machine_identically_and_settles() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 6, 3, 300).unwrap();
    let r = a.sync("a", &remote);
    assert_eq!(r.pushed.len(), 9, "{r:?}"); // session, 6 messages, todos, project
    assert_eq!(r.pushed.iter().filter(|k| k.starts_with("messages/proj1/ses_one/msg_")).count(), 6, "{r:?}");
    let r = b.sync("b", &remote);
    assert_eq!(r.pulled.len(), 9, "{r:?}");
    assert_eq!(a.open().read_messages_doc("ses_one").unwrap(), b.open().read_messages_doc("ses_one").unwrap());
    assert_eq!(a.open().read_todos_doc("ses_one").unwrap(), b.open().read_todos_doc("ses_one").unwrap());
    // Nothing moves afterwards, on either side.
    for _ in 0..2 {
        for (m, n) in [(&a, "a"), (&b, "b")] {
            let r = m.sync(n, &remote);
            assert!(r.pushed.is_empty() && r.pulled.is_empty() && r.merged.is_empty(), "{n}: {r:?}");
        }
    }
}

#[test]
fn a_pulled_session_lands_in_the_local_worktree_and_the_shared_document_stays_the_same() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 2, 2, 50).unwrap();
    // b has the same project at another path.
    b.conn()
        .execute("INSERT INTO project (id, worktree, vcs, time_created, time_updated, sandboxes) VALUES ('proj1', '/Users/b/code/proj1', 'git', 1, 1, '[]')", [])
        .unwrap();
    a.sync("a", &remote);
    b.sync("b", &remote);
    let dir: String = b.conn().query_row("SELECT directory FROM session WHERE id='ses_one'", [], |r| r.get(0)).unwrap();
    assert_eq!(dir, "/Users/b/code/proj1");
    let worktree: String = b.conn().query_row("SELECT worktree FROM project WHERE id='proj1'", [], |r| r.get(0)).unwrap();
    assert_eq!(worktree, "/Users/b/code/proj1");
    // The mapped directory does not come back as a change.
    let r = b.sync("b", &remote);
    assert!(r.pushed.is_empty(), "{r:?}");
    // a gets b's project record (b had its own), never b's paths.
    let r = a.sync("a", &remote);
    assert!(r.pulled.iter().all(|k| k.starts_with("projects/")), "{r:?}");
    let dir_a: String = a.conn().query_row("SELECT directory FROM session WHERE id='ses_one'", [], |r| r.get(0)).unwrap();
    assert_eq!(dir_a, "/home/user/projects/proj1");
    let worktree_a: String = a.conn().query_row("SELECT worktree FROM project WHERE id='proj1'", [], |r| r.get(0)).unwrap();
    assert_eq!(worktree_a, "/home/user/projects/proj1");
    for (m, n) in [(&a, "a"), (&b, "b")] {
        let r = m.sync(n, &remote);
        assert!(r.pushed.is_empty() && r.pulled.is_empty(), "{n}: {r:?}");
    }
}

#[test]
fn the_path_map_applies_to_projects_not_found_locally() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 2, 2, 50).unwrap();
    a.sync("a", &remote);
    let cfg = Config {
        retry_delay_ms: 0,
        session_path_map: vec![("/home/user/projects".into(), "/srv/code".into())],
        ..Config::default()
    };
    b.sync_with("b", &cfg, &remote);
    let dir: String = b.conn().query_row("SELECT directory FROM session WHERE id='ses_one'", [], |r| r.get(0)).unwrap();
    assert_eq!(dir, "/srv/code/proj1");
    let r = b.sync_with("b", &cfg, &remote);
    assert!(r.pushed.is_empty(), "{r:?}");
}

#[test]
fn a_session_continued_on_both_machines_offline_keeps_both_continuations() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 4, 2, 50).unwrap();
    a.sync("a", &remote);
    b.sync("b", &remote);
    let t0 = 1_900_000_000_000;
    a.continue_session("ses_one", "fromA", t0);
    b.continue_session("ses_one", "fromB", t0 + 5);
    a.sync("a", &remote);
    let r = b.sync("b", &remote);
    assert!(!r.merged.is_empty(), "{r:?}");
    a.sync("a", &remote);
    for m in [&a, &b] {
        assert_eq!(m.count("SELECT count(*) FROM message WHERE session_id='ses_one'"), 8);
        assert_eq!(m.count("SELECT count(*) FROM message WHERE id IN ('msg_fromA1', 'msg_fromB1')"), 2);
    }
    assert_eq!(a.open().read_messages_doc("ses_one").unwrap(), b.open().read_messages_doc("ses_one").unwrap());
    // Totals follow the merged messages on both machines.
    let cost = |m: &Machine| -> f64 { m.conn().query_row("SELECT cost FROM session WHERE id='ses_one'", [], |r| r.get(0)).unwrap() };
    let sum = |m: &Machine| -> f64 {
        m.conn()
            .query_row("SELECT sum(json_extract(data,'$.cost')) FROM message WHERE session_id='ses_one' AND json_extract(data,'$.role')='assistant'", [], |r| r.get(0))
            .unwrap()
    };
    assert!((cost(&a) - sum(&a)).abs() < 1e-9 && (cost(&b) - sum(&b)).abs() < 1e-9, "{} {} {} {}", cost(&a), sum(&a), cost(&b), sum(&b));
    // Both recomputed the same totals; at most one more exchange settles them.
    a.sync("a", &remote);
    b.sync("b", &remote);
    for (m, n) in [(&a, "a"), (&b, "b")] {
        let r = m.sync(n, &remote);
        assert!(r.pushed.is_empty() && r.pulled.is_empty(), "{n}: {r:?}");
    }
}

#[test]
fn a_deleted_session_is_deleted_on_the_other_machine() {
    let (_t, remote, a, b) = world();
    for i in 0..4 {
        insert_fake_session(&a.conn(), "proj1", &format!("ses_{i}"), 2, 2, 50).unwrap();
    }
    a.sync("a", &remote);
    b.sync("b", &remote);
    a.conn().execute("DELETE FROM session WHERE id='ses_2'", []).unwrap();
    let r = a.sync("a", &remote);
    assert!(r.deleted_remote.iter().any(|k| k.starts_with("sessions/")), "{r:?}");
    b.sync("b", &remote);
    assert_eq!(b.count("SELECT count(*) FROM session WHERE id='ses_2'"), 0);
    assert_eq!(b.count("SELECT count(*) FROM message WHERE session_id='ses_2'"), 0);
    assert_eq!(b.count("SELECT count(*) FROM session"), 3);
}

#[test]
fn an_unknown_schema_is_read_and_pushed_but_never_written() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 2, 2, 50).unwrap();
    a.sync("a", &remote);
    b.conn().execute("INSERT INTO migration (id, time_completed) VALUES ('29990101000000_future', 1)", []).unwrap();
    let r = b.sync("b", &remote);
    assert!(r.refused.iter().any(|s| s.contains("does not know")), "{r:?}");
    assert_eq!(b.count("SELECT count(*) FROM session"), 0);
}

#[test]
fn old_sessions_and_other_projects_are_left_alone_when_filtered() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_keep", 2, 2, 50).unwrap();
    insert_fake_session(&a.conn(), "proj2", "ses_other", 2, 2, 50).unwrap();
    a.conn().execute("UPDATE session SET time_updated = 1000 WHERE id='ses_keep'", []).unwrap();
    let cfg = Config { retry_delay_ms: 0, session_max_age_days: 30, ..Config::default() };
    let r = a.sync_with("a", &cfg, &remote);
    assert!(r.pushed.iter().all(|k| !k.contains("ses_keep")), "{r:?}");
    assert!(r.pushed.iter().any(|k| k.contains("ses_other")), "{r:?}");
    // Only proj1 on b: the other project's session is not pulled.
    let cfg = Config { retry_delay_ms: 0, session_projects: vec!["proj1".into()], ..Config::default() };
    let r = b.sync_with("b", &cfg, &remote);
    assert!(r.pulled.iter().all(|k| !k.contains("ses_other")), "{r:?}");
    // a turning the filter off later pushes the old session; nothing was deleted anywhere.
    a.sync("a", &remote);
    assert_eq!(a.count("SELECT count(*) FROM session"), 2);
}

#[test]
fn a_first_import_bigger_than_one_round_completes_parents_first() {
    let (_t, remote, a, b) = world();
    for i in 0..8 {
        insert_fake_session(&a.conn(), &format!("proj{}", i % 2), &format!("ses_{i}"), 6, 3, 2000).unwrap();
    }
    crate::sync::run::ROUND_BYTES_OVERRIDE.with(|c| c.set(Some(40_000)));
    let pushed = a.sync("a", &remote).pushed.len();
    let r = b.sync("b", &remote);
    crate::sync::run::ROUND_BYTES_OVERRIDE.with(|c| c.set(None));
    assert_eq!(r.pulled.len(), pushed, "{r:?}");
    assert_eq!(b.count("SELECT count(*) FROM session"), 8);
    assert_eq!(b.count("SELECT count(*) FROM message"), a.count("SELECT count(*) FROM message"));
    let commits = LocalRemote::open(_t.path().join("remote")).unwrap().history_len().unwrap();
    assert!(commits >= 3, "{commits} commits: the export should have needed several rounds");
}

// ---------------------------------------------------------------------------------------------
// A hostile remote: documents whose content names another session or project than their key.

use crate::testing::home_snapshot;

/// Puts `bytes` at `key` as a new version from a machine "mallory", as a hostile remote would.
fn hostile_put(remote: &LocalRemote, key: &str, bytes: &[u8]) {
    use crate::remote::{Changes, CommitOutcome, Entry, sha256_hex};
    let head = remote.head().unwrap();
    let m = head.as_ref().map(|v| remote.manifest(v).unwrap()).unwrap_or_default();
    let mut clock = m.entries.get(key).map(|e| e.clock.clone()).unwrap_or_default();
    clock.bump("mallory");
    let hash = sha256_hex(bytes);
    let entry = Entry {
        clock,
        hash: Some(hash.clone()),
        size: bytes.len() as u64,
        kind: "rows".into(),
        category: key.split('/').next().unwrap().into(),
        modified_ms: system_now_ms(),
        machine: "mallory".into(),
        deleted_ms: None,
    };
    let changes = Changes {
        entries: [(key.to_string(), entry)].into(),
        blobs: [(hash, bytes.to_vec())].into(),
        message: "mallory".into(),
        ..Default::default()
    };
    assert!(matches!(remote.commit(head.as_ref(), changes).unwrap(), CommitOutcome::Committed(_)));
}

/// Everything of a database that a sync could change, as one comparable text.
fn db_dump(m: &Machine) -> String {
    let c = m.conn();
    let mut out = String::new();
    for table in ["project", "session", "message", "part", "todo"] {
        let mut stmt = c.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap();
        let n = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        v => format!("{v:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.push_str(&format!("{table}:\n{}\n", rows.join("\n")));
    }
    out
}

/// Machine b with two sessions of proj1, one of proj2, and todos, all synced.
fn victim() -> (tempfile::TempDir, LocalRemote, Machine) {
    let (t, remote, _a, b) = world();
    insert_fake_session(&b.conn(), "proj1", "ses_a", 2, 2, 50).unwrap();
    insert_fake_session(&b.conn(), "proj1", "ses_b", 4, 2, 50).unwrap();
    insert_fake_session(&b.conn(), "proj2", "ses_c", 2, 1, 50).unwrap();
    b.sync("b", &remote);
    (t, remote, b)
}

fn refused_names(r: &SyncReport, key: &str) -> bool {
    r.refused.iter().any(|s| s.starts_with(&format!("{key}: ")))
}

#[test]
fn a_document_naming_another_session_or_project_than_its_key_writes_nothing() {
    let (_t, remote, b) = victim();
    let before = db_dump(&b);
    let todos_b = b.open().read_todos_doc("ses_b").unwrap().unwrap();
    let todos_b = String::from_utf8(todos_b).unwrap();
    let mut proj2: serde_json::Value = serde_json::from_slice(&b.open().read_project_doc("proj2").unwrap().unwrap()).unwrap();
    proj2["project"]["name"] = "pwned".into();
    let a_ids = message_ids(&b, "ses_a");
    let b_ids = message_ids(&b, "ses_b");
    let b_msg = b.open().read_message_doc("ses_b", &b_ids[0]).unwrap().unwrap();
    let a_msg1 = b.open().read_message_doc("ses_a", &a_ids[1]).unwrap().unwrap();
    // ses_a's first message with the parts of its second.
    let mut mixed: serde_json::Value = serde_json::from_slice(&b.open().read_message_doc("ses_a", &a_ids[0]).unwrap().unwrap()).unwrap();
    mixed["parts"] = serde_json::from_slice::<serde_json::Value>(&a_msg1).unwrap()["parts"].clone();
    let (k_other_session, k_other_message, k_mixed) = (
        format!("messages/proj1/ses_a/{}.json", b_ids[0]),
        "messages/proj1/ses_a/msg_elsewhere.json".to_string(),
        format!("messages/proj1/ses_a/{}.json", a_ids[0]),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // An empty message list for ses_b, under the old key of ses_a: a format-1 key, refused.
        ("messages/proj1/ses_a.json", br#"{"format":1,"sessionId":"ses_b","messages":[],"parts":[]}"#.to_vec()),
        // ses_b's message under a key of ses_a: would move it (or write into ses_b).
        (&k_other_session, b_msg),
        // ses_a's second message under another message's key.
        (&k_other_message, a_msg1),
        // A message item whose parts belong to another message.
        (&k_mixed, serde_json::to_vec(&mixed).unwrap()),
        // ses_b's todos under ses_a's key, and ses_b's todo list emptied under ses_a's key.
        ("todos/proj1/ses_a.json", br#"{"format":1,"sessionId":"ses_b","todos":[]}"#.to_vec()),
        // ses_b's own todos under the key of a session of another project.
        ("todos/proj2/ses_c.json", todos_b.into_bytes()),
        // proj2's row (renamed) under proj1's key: would rename proj2 and give it proj1's worktree.
        ("projects/proj1.json", serde_json::to_vec(&proj2).unwrap()),
    ];
    for (key, bytes) in &cases {
        hostile_put(&remote, key, bytes);
    }
    let files_before = home_snapshot::snapshot(&b.dir);
    let r = b.sync("b", &remote);
    assert_eq!(db_dump(&b), before, "nothing may change locally");
    // Files: only the database (its WAL) and oc-sync's own state.
    home_snapshot::assert_only_changed_under(&files_before, &home_snapshot::snapshot(&b.dir), &["opencode.db", "opencode.db-wal", "opencode.db-shm", "state"]);
    for (key, _) in &cases {
        assert!(refused_names(&r, key), "{key} must be refused by name: {r:?}");
    }
    assert!(r.pulled.is_empty() && r.deleted_local.is_empty(), "{r:?}");
    // The next syncs neither write nor take the untouched sessions as deleted.
    for _ in 0..2 {
        let r = b.sync("b", &remote);
        assert!(r.deleted_remote.is_empty() && r.pushed.is_empty() && r.pulled.is_empty(), "{r:?}");
        assert!(cases.iter().all(|(k, _)| refused_names(&r, k)), "still listed: {r:?}");
    }
    assert_eq!(db_dump(&b), before);
    let m = remote.manifest(&remote.head().unwrap().unwrap()).unwrap();
    for mid in &b_ids {
        assert!(!m.entries[&format!("messages/proj1/ses_b/{mid}.json")].is_tombstone());
    }
    assert!(r.refused.iter().any(|l| l.contains(LEGACY_MESSAGES_REFUSAL)), "{r:?}");
}

/// The message ids of a session here, in conversation order.
fn message_ids(m: &Machine, sid: &str) -> Vec<String> {
    m.open().message_ids().unwrap().into_iter().filter(|(s, _)| s == sid).map(|(_, id)| id).collect()
}

#[test]
fn a_message_id_of_another_session_is_not_moved_into_this_one() {
    let (_t, remote, b) = victim();
    let before = db_dump(&b);
    // A message item of ses_a (by key and content) whose message and part ids belong to ses_b.
    let mid = message_ids(&b, "ses_b")[0].clone();
    let stolen = b.open().read_message_doc("ses_b", &mid).unwrap().unwrap();
    let doc = String::from_utf8(stolen).unwrap().replace("\"ses_b\"", "\"ses_a\"");
    let key = format!("messages/proj1/ses_a/{mid}.json");
    hostile_put(&remote, &key, doc.as_bytes());
    let r = b.sync("b", &remote);
    assert_eq!(db_dump(&b), before, "ses_b's message must stay in ses_b");
    assert!(refused_names(&r, &key), "{r:?}");
}

#[test]
fn a_session_row_naming_another_session_or_project_is_refused() {
    let (_t, remote, b) = victim();
    let before = db_dump(&b);
    let ses_b: serde_json::Value = serde_json::from_slice(&b.open().read_session_doc("ses_b").unwrap().unwrap()).unwrap();
    let mut other_project = ses_b.clone();
    other_project["session"]["project_id"] = "proj2".into();
    other_project["project"] = serde_json::Value::Null;
    let mut embedded = ses_b.clone();
    embedded["project"] = serde_json::json!({"id": "proj2", "worktree": "/tmp/x", "vcs": "git", "time_created": 1, "sandboxes": "[]"});
    hostile_put(&remote, "sessions/proj1/ses_a.json", &serde_json::to_vec(&ses_b).unwrap());
    hostile_put(&remote, "sessions/proj2/ses_b.json", &serde_json::to_vec(&other_project).unwrap());
    hostile_put(&remote, "sessions/proj1/ses_b.json", &serde_json::to_vec(&embedded).unwrap());
    // A message of ses_b under the key of ses_b in another project than its own here.
    let mid = message_ids(&b, "ses_b")[0].clone();
    let moved = format!("messages/proj2/ses_b/{mid}.json");
    hostile_put(&remote, &moved, &b.open().read_message_doc("ses_b", &mid).unwrap().unwrap());
    let r = b.sync("b", &remote);
    assert_eq!(db_dump(&b), before);
    for key in ["sessions/proj1/ses_a.json", "sessions/proj2/ses_b.json", "sessions/proj1/ses_b.json", moved.as_str()] {
        assert!(refused_names(&r, key), "{key}: {r:?}");
    }
}

#[test]
fn a_refused_item_is_not_downloaded_again_until_the_remote_or_this_machine_changes() {
    let (_t, remote, a, b) = world();
    // proj9's only session is too old for b, so b has no proj9 and refuses its project item.
    insert_fake_session(&a.conn(), "proj9", "ses_old", 2, 1, 50).unwrap();
    a.conn().execute("UPDATE session SET time_updated = 1000", []).unwrap();
    a.sync("a", &remote);
    let counting = HookedRemote::new(&remote);
    let cfg = Config { retry_delay_ms: 0, session_max_age_days: 30, ..Config::default() };
    let r = b.sync_with("b", &cfg, &counting);
    assert!(refused_names(&r, "projects/proj9.json"), "{r:?}");
    assert_eq!(counting.take_blob_count(), 1, "downloaded once: {r:?}");
    for _ in 0..2 {
        let r = b.sync_with("b", &cfg, &counting);
        assert!(refused_names(&r, "projects/proj9.json"), "still listed: {r:?}");
        assert_eq!(counting.take_blob_count(), 0, "an idle sync downloads nothing");
    }
    // The remote item changes: tried (and refused) once more.
    a.conn().execute("UPDATE project SET name = 'renamed' WHERE id = 'proj9'", []).unwrap();
    a.sync("a", &remote);
    let r = b.sync_with("b", &cfg, &counting);
    assert!(refused_names(&r, "projects/proj9.json"), "{r:?}");
    assert_eq!(counting.take_blob_count(), 1);
    // The project now exists here: the refusal no longer holds, the item is written.
    insert_fake_session(&b.conn(), "proj9", "ses_new", 1, 1, 10).unwrap();
    let r = b.sync_with("b", &cfg, &counting);
    assert!(r.refused.is_empty(), "{r:?}");
    assert!(r.pulled.contains(&"projects/proj9.json".to_string()) || r.merged.contains(&"projects/proj9.json".to_string()), "{r:?}");
    let r = b.sync_with("b", &cfg, &counting);
    assert!(r.refused.is_empty() && r.pulled.is_empty() && r.merged.is_empty(), "settled: {r:?}");
}

#[test]
fn keys_outside_a_category_shape_are_listed_not_fetched_and_change_nothing() {
    let (_t, remote, b) = victim();
    let before = db_dump(&b);
    let bad = [
        "sessions/proj1.json",
        "sessions/proj1/ses_a.txt",
        "sessions/proj1/ses_a/x.json",
        "messages/proj1/ses$a.json",
        "messages/proj1/ses_a.json",
        "messages/proj1/ses_a/msg$1.json",
        "messages/proj1/ses_a/msg_1/x.json",
        "todos/proj1/ses_a",
        "projects/proj1/extra.json",
        "projects/.json",
    ];
    for key in bad {
        hostile_put(&remote, key, br#"{"format":1}"#);
    }
    let counting = HookedRemote::new(&remote);
    let r = b.sync("b", &counting);
    for key in bad {
        assert!(refused_names(&r, key), "{key} must be listed: {r:?}");
    }
    assert_eq!(counting.take_blob_count(), 0, "refused keys are never fetched");
    assert_eq!(db_dump(&b), before);
    let state = StateStore::new(b.dir.join("state/sync")).load().unwrap();
    assert!(bad.iter().all(|k| state.refused.contains_key(*k)), "kept for status: {:?}", state.refused);
}

/// The fault matrix for sessions: a's sync that merges b's new turn with its own is cut off at
/// every step (a lost commit answer, and a failure at each driver step, including inside the
/// database import); both machines then add another turn. Every message and part ends up on
/// both machines.
#[test]
fn every_turn_survives_a_sync_cut_off_at_any_step() {
    use crate::fault;
    use std::sync::atomic::Ordering;
    let steps = ["lost-answer", fault::BEFORE_COMMIT, fault::REF_UPDATE, fault::AFTER_COMMIT, fault::DB_IMPORT, fault::LOCAL_WRITE, fault::BEFORE_STATE_SAVE];
    let mut lost = Vec::new();
    for step in steps {
        let (_t, folder, a, b) = world();
        let remote = HookedRemote::new(&folder);
        insert_fake_session(&a.conn(), "proj1", "ses_one", 2, 1, 50).unwrap();
        a.sync("a", &remote);
        b.sync("b", &remote);
        b.continue_session("ses_one", "b1", 1_000);
        b.sync("b", &remote);
        a.continue_session("ses_one", "a1", 2_000);
        let _hook = if step == "lost-answer" {
            remote.lose_next.store(true, Ordering::SeqCst);
            None
        } else {
            Some(fault::inject(move |s| s == step))
        };
        let cfg = Config { retry_delay_ms: 0, ..Config::default() };
        let syncer = a.syncer("a", &cfg, &remote);
        assert!(syncer.sync(&SyncOptions::default()).is_err(), "{step}: the sync should have been cut off");
        drop(syncer);
        drop(_hook);
        a.continue_session("ses_one", "a2", 3_000);
        b.continue_session("ses_one", "b2", 4_000);
        for (m, n) in [(&a, "a"), (&b, "b"), (&a, "a"), (&b, "b")] {
            m.sync(n, &remote);
        }
        for (m, n) in [(&a, "a"), (&b, "b")] {
            for tag in ["b1", "a1", "a2", "b2"] {
                for i in 0..2 {
                    let sql = format!("SELECT count(*) FROM message WHERE id = 'msg_{tag}{i}'");
                    if m.count(&sql) != 1 {
                        lost.push(format!("{step}: message {tag}{i} on {n}"));
                    }
                    let sql = format!("SELECT count(*) FROM part WHERE id = 'prt_{tag}{i}'");
                    if m.count(&sql) != 1 {
                        lost.push(format!("{step}: part {tag}{i} on {n}"));
                    }
                }
            }
        }
        if a.open().read_messages_doc("ses_one").unwrap() != b.open().read_messages_doc("ses_one").unwrap() {
            lost.push(format!("{step}: the machines' sessions differ"));
        }
    }
    assert!(lost.is_empty(), "{} rows lost over {} faults:\n{}", lost.len(), steps.len(), lost.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Sessions in small items, batched writes.

/// Appending one message to a long session changes exactly one new message item (and the
/// session row): nothing else is pushed, and the other machine pulls exactly that.
#[test]
fn appending_one_message_changes_one_message_item_and_the_session_row() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_long", 40, 4, 2000).unwrap();
    a.sync("a", &remote);
    b.sync("b", &remote);
    let c = a.conn();
    let t = 1_900_000_000_000i64;
    c.execute("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES ('msg_zz_new', 'ses_long', ?1, ?1, ?2)",
        rusqlite::params![t, r#"{"role":"user","time":{"created":1900000000000}}"#]).unwrap();
    for i in 0..3 {
        c.execute("INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, 'msg_zz_new', 'ses_long', ?2, ?2, ?3)",
            rusqlite::params![format!("prt_zz_new{i}"), t, format!(r#"{{"type":"text","text":"part {i}"}}"#)]).unwrap();
    }
    c.execute("UPDATE session SET time_updated = ?1 WHERE id = 'ses_long'", [t]).unwrap();
    let r = a.sync("a", &remote);
    let mut pushed = r.pushed.clone();
    pushed.sort();
    assert_eq!(pushed, ["messages/proj1/ses_long/msg_zz_new.json", "sessions/proj1/ses_long.json"], "{r:?}");
    let r = b.sync("b", &remote);
    let mut pulled = r.pulled.clone();
    pulled.sort();
    assert_eq!(pulled, ["messages/proj1/ses_long/msg_zz_new.json", "sessions/proj1/ses_long.json"], "{r:?}");
    assert_eq!(a.open().read_messages_doc("ses_long").unwrap(), b.open().read_messages_doc("ses_long").unwrap());
    // A part edited in place (same counts) is seen through the message's print.
    a.conn().execute("UPDATE part SET data = '{\"type\":\"text\",\"text\":\"edited\"}', time_updated = time_updated + 1 WHERE id = 'prt_zz_new1'", []).unwrap();
    a.conn().execute("UPDATE session SET time_updated = time_updated + 1 WHERE id = 'ses_long'", []).unwrap();
    let r = a.sync("a", &remote);
    assert!(r.pushed.contains(&"messages/proj1/ses_long/msg_zz_new.json".to_string()), "{r:?}");
    assert!(r.pushed.iter().all(|k| !k.starts_with("messages/") || k.ends_with("msg_zz_new.json")), "{r:?}");
    b.sync("b", &remote);
    assert_eq!(a.open().read_messages_doc("ses_long").unwrap(), b.open().read_messages_doc("ses_long").unwrap());
}

/// A message deleted in OpenCode (a revert) is that one key deleted, on the other machine too;
/// a deleted session with many messages is one deletion for the mass-deletion guard.
#[test]
fn a_reverted_message_and_a_deleted_long_session_are_deleted_on_the_other_machine() {
    let (_t, remote, a, b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 6, 2, 50).unwrap();
    for i in 0..3 {
        insert_fake_session(&a.conn(), "proj1", &format!("ses_long{i}"), 40, 2, 50).unwrap();
    }
    a.sync("a", &remote);
    b.sync("b", &remote);
    let last = message_ids(&a, "ses_one").pop().unwrap();
    a.conn().execute("DELETE FROM part WHERE message_id = ?1", [&last]).unwrap();
    a.conn().execute("DELETE FROM message WHERE id = ?1", [&last]).unwrap();
    let r = a.sync("a", &remote);
    assert_eq!(r.deleted_remote, [format!("messages/proj1/ses_one/{last}.json")], "{r:?}");
    b.sync("b", &remote);
    assert_eq!(message_ids(&b, "ses_one").len(), 5);
    assert_eq!(a.open().read_messages_doc("ses_one").unwrap(), b.open().read_messages_doc("ses_one").unwrap());
    // 40 message items, one session: not a mass deletion.
    a.conn().execute("DELETE FROM part WHERE session_id = 'ses_long1'", []).unwrap();
    a.conn().execute("DELETE FROM session WHERE id = 'ses_long1'", []).unwrap();
    let r = a.sync("a", &remote);
    assert_eq!(r.deleted_remote.len(), 40 + 2, "{r:?}"); // messages, session, todos
    b.sync("b", &remote);
    assert_eq!(b.count("SELECT count(*) FROM message WHERE session_id = 'ses_long1'"), 0);
    assert_eq!(b.count("SELECT count(*) FROM session"), 3);
}

/// The remote upgrade's split of a format-1 messages document gives exactly the items this
/// source lists and reads for the same rows, byte for byte.
#[test]
fn a_legacy_messages_document_splits_into_the_items_the_source_reads() {
    let (_t, _remote, a, _b) = world();
    insert_fake_session(&a.conn(), "proj1", "ses_one", 7, 3, 300).unwrap();
    insert_fake_session(&a.conn(), "proj1", "ses_two", 2, 2, 30).unwrap();
    // The old document, rendered by the old code path (the whole session).
    let legacy = a.open().read_messages_doc("ses_one").unwrap().unwrap();
    let split = split_legacy_messages_doc("messages/proj1/ses_one.json", &legacy).unwrap();
    let cfg = Config::default();
    let srcs = sources(&a.db(), &a.dir.join("state"), &cfg, system_now_ms()).unwrap();
    let msgs = srcs.iter().find(|s| s.category() == Category::Messages).unwrap();
    let listed: Vec<String> = msgs.list().unwrap().into_iter().map(|m| m.key).filter(|k| k.contains("/ses_one/")).collect();
    let mut split_keys: Vec<String> = split.iter().map(|(k, _)| k.clone()).collect();
    split_keys.sort();
    assert_eq!(split_keys, listed);
    assert_eq!(split.len(), 7);
    for (key, bytes) in &split {
        assert_eq!(&msgs.read(key).unwrap().unwrap().bytes, bytes, "{key}");
        msgs.check_content(key, bytes).unwrap();
    }
    // Refusals: another shape, another session than the key's, a damaged document.
    assert!(split_legacy_messages_doc("messages/proj1/ses_one/msg_1.json", &legacy).is_err());
    assert!(split_legacy_messages_doc("messages/proj1/ses_two.json", &legacy).is_err());
    assert!(split_legacy_messages_doc("messages/proj1/ses_one.json", b"{\"format\":1}").is_err());
    assert!(split_legacy_messages_doc("messages/proj1/ses_one.json", br#"{"format":1,"sessionId":"ses_one","messages":[],"parts":[]}"#).unwrap().is_empty());
    // The source itself refuses the old keys, naming why.
    assert_eq!(msgs.refuse_key("messages/proj1/ses_one.json").as_deref(), Some(LEGACY_MESSAGES_REFUSAL));
    assert!(msgs.write("messages/proj1/ses_one.json", &legacy).is_err());
}

/// A [`DbSource`] that records every batch the engine gives it: (keys, write transactions it took).
struct Recording<'r> {
    inner: DbSource,
    batches: &'r RefCell<Vec<(Vec<String>, u64)>>,
}

impl Source for Recording<'_> {
    fn category(&self) -> Category {
        self.inner.category()
    }
    fn list(&self) -> Result<Vec<ItemMeta>, SourceError> {
        self.inner.list()
    }
    fn fingerprints(&self) -> Result<Option<Fingerprints>, SourceError> {
        self.inner.fingerprints()
    }
    fn wants_remote(&self, key: &str, modified_ms: u64, size: u64) -> bool {
        self.inner.wants_remote(key, modified_ms, size)
    }
    fn refuse_key(&self, key: &str) -> Option<String> {
        self.inner.refuse_key(key)
    }
    fn check_content(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        self.inner.check_content(key, bytes)
    }
    fn write_condition(&self, key: &str) -> String {
        self.inner.write_condition(key)
    }
    fn read(&self, key: &str) -> Result<Option<Item>, SourceError> {
        self.inner.read(key)
    }
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        self.inner.write(key, bytes)
    }
    fn delete(&self, key: &str) -> Result<(), SourceError> {
        self.inner.delete(key)
    }
    fn write_over(&self, key: &str, bytes: &[u8], base: Option<&[u8]>) -> Result<(), SourceError> {
        self.inner.write_over(key, bytes, base)
    }
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Vec<Result<(), SourceError>> {
        let before = self.inner.write_transactions();
        let out = self.inner.write_batch(ops);
        self.batches.borrow_mut().push((ops.iter().map(|o| o.key().to_owned()).collect(), self.inner.write_transactions() - before));
        out
    }
}

/// A first pull of over 1,000 message items: batches of at most APPLY_BATCH_ITEMS items, each
/// ONE transaction, sessions before their messages, every item written.
#[test]
fn a_first_pull_writes_in_batches_of_one_transaction_each_parents_first() {
    use crate::sync::run::APPLY_BATCH_ITEMS;
    let (_t, remote, a, b) = world();
    for i in 0..26 {
        insert_fake_session(&a.conn(), &format!("proj{}", i % 3), &format!("ses_{i:02}"), 40, 1, 20).unwrap();
    }
    a.sync("a", &remote);
    let batches = RefCell::new(Vec::new());
    let cfg = Config { retry_delay_ms: 0, ..Config::default() };
    let srcs: Vec<Box<dyn Source>> = sources(&b.db(), &b.dir.join("state"), &cfg, system_now_ms())
        .unwrap()
        .into_iter()
        .map(|inner| Box::new(Recording { inner, batches: &batches }) as Box<dyn Source>)
        .collect();
    let r = crate::testing::syncer("b", &cfg, &remote, srcs, b.dir.join("state/sync")).sync(&SyncOptions::default()).unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_eq!(b.count("SELECT count(*) FROM message"), 26 * 40);
    assert_eq!(a.open().read_messages_doc("ses_07").unwrap(), b.open().read_messages_doc("ses_07").unwrap());
    let batches = batches.into_inner();
    let message_batches: Vec<usize> = batches.iter().filter(|(k, _)| k[0].starts_with("messages/")).map(|(k, _)| k.len()).collect();
    assert_eq!(message_batches.iter().sum::<usize>(), 26 * 40);
    assert!(message_batches.iter().all(|n| *n <= APPLY_BATCH_ITEMS), "{message_batches:?}");
    assert_eq!(message_batches.len(), (26 * 40usize).div_ceil(APPLY_BATCH_ITEMS), "{message_batches:?}");
    for (keys, transactions) in &batches {
        assert_eq!(*transactions, 1, "one transaction per batch of {} ({})", keys.len(), keys[0]);
        let cat = keys[0].split('/').next().unwrap();
        assert!(keys.iter().all(|k| k.starts_with(&format!("{cat}/"))), "one category per batch");
    }
    // Parents first: every session batch before the first message batch, todos after both.
    let order: Vec<&str> = batches.iter().map(|(k, _)| k[0].split('/').next().unwrap()).collect();
    let pos = |c: &str| order.iter().position(|x| *x == c).unwrap();
    let last = |c: &str| order.iter().rposition(|x| *x == c).unwrap();
    assert!(last("sessions") < pos("messages") && last("messages") < pos("todos"), "{order:?}");
}
