use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;

use super::*;

const PID: &str = "799b4078f34a5a21d6b39d41aa31836448aceb07";
const S1: &str = "ses_e0252f198ffeJ1DAzgJnAF8aQp";
const S2: &str = "ses_e025157acffe4GpQD7r0BNLFWD";

fn new_db(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    create_test_db(&p).unwrap();
    p
}

/// A db with two sessions of the same project (S2 a child of S1).
fn populated(dir: &Path) -> PathBuf {
    let p = new_db(dir, "src.db");
    let c = Connection::open(&p).unwrap();
    c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    insert_fake_session(&c, PID, S1, 6, 4, 300).unwrap();
    insert_fake_session(&c, PID, S2, 3, 3, 100).unwrap();
    c.execute("UPDATE session SET parent_id = ?1 WHERE id = ?2", [S1, S2])
        .unwrap();
    p
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn docs_of(db: &OpencodeDb, sid: &str) -> [Vec<u8>; 3] {
    [
        db.read_session_doc(sid).unwrap().unwrap(),
        db.read_messages_doc(sid).unwrap().unwrap(),
        db.read_todos_doc(sid).unwrap().unwrap(),
    ]
}

fn copy_all(src: &OpencodeDb, dst: &OpencodeDb) {
    dst.write_project_doc(&src.read_project_doc(PID).unwrap().unwrap(), None)
        .unwrap();
    for sid in [S1, S2] {
        let [s, m, t] = docs_of(src, sid);
        dst.write_session_doc(&s, None, None).unwrap();
        dst.write_messages_doc(&m).unwrap();
        dst.write_todos_doc(&t).unwrap();
    }
}

#[test]
fn fixture_schema_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(new_db(dir.path(), "a.db")).unwrap();
    assert_eq!(KNOWN_MIGRATIONS.len(), 38);
    assert_eq!(db.schema().unwrap(), SchemaStatus::Known);
    let c = db.connection();
    assert_eq!(
        count(c, "SELECT count(*) FROM sqlite_master WHERE type='table'"),
        20
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM sqlite_master WHERE type='index' AND sql NOT NULL"
        ),
        17
    );
    let fk: i64 = c
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn missing_file_is_a_clear_error_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("opencode.db");
    let e = OpencodeDb::open(&p).unwrap_err();
    assert!(matches!(e, DbError::NotFound { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("OpenCode has not run on this machine yet"),
        "{e}"
    );
    assert!(!p.exists());
}

#[test]
fn reads_are_deterministic_and_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    assert_eq!(docs_of(&db, S1), docs_of(&db, S1));
    let [s, m, t] = docs_of(&db, S1);
    let s = String::from_utf8(s).unwrap();
    assert!(
        s.starts_with("{\"format\":1,\"session\":{\"id\":\"ses_"),
        "{s}"
    );
    assert_eq!(s.matches('\n').count(), 1);
    let v: Value = serde_json::from_str(&s).unwrap();
    assert!(v["project"].get("time_updated").is_none());
    assert_eq!(
        v["project"]["worktree"],
        format!("/home/user/projects/{PID}")
    );
    let keys: Vec<&str> = v["session"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys[..3], ["id", "project_id", "workspace_id"]);
    assert_eq!(keys.len(), 29);
    let m = String::from_utf8(m).unwrap();
    // 6 messages + 24 parts, one per line, plus the header lines.
    assert_eq!(m.lines().count(), 6 + 24 + 3, "{m}"); // + `{..."messages":[`, `],"parts":[`, `]}`
    let v: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(v["messages"][1]["data"]["role"], "assistant");
    assert!(v["messages"][1]["data"]["tokens"]["cache"]["read"].is_i64());
    let t = String::from_utf8(t).unwrap();
    assert!(t.starts_with("{\"format\":1,\"sessionId\":\"ses_e0252f198ffeJ1DAzgJnAF8aQp\",\"todos\":[\n{\"session_id\""), "{t}");
    assert_eq!(db.read_session_doc("ses_nope").unwrap(), None);
    assert_eq!(db.read_messages_doc("ses_nope").unwrap(), None);
    assert_eq!(db.read_project_doc("nope").unwrap(), None);
    // An empty session: empty arrays.
    let c = db.connection();
    insert_fake_session(c, PID, "ses_empty", 0, 0, 0).unwrap();
    assert_eq!(
        db.read_messages_doc("ses_empty").unwrap().unwrap(),
        b"{\"format\":1,\"sessionId\":\"ses_empty\",\"messages\":[],\"parts\":[]}\n"
    );
}

#[test]
fn round_trip_into_a_fresh_db_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    // A REAL that is integral, a BLOB, and non-JSON data survive too.
    let c = src.connection();
    c.execute(
        "UPDATE session SET cost = 0.0, metadata = x'00ff10' WHERE id = ?1",
        [S2],
    )
    .unwrap();
    c.execute("UPDATE part SET data = 'not json {' WHERE id = (SELECT min(id) FROM part WHERE session_id = ?1)", [S2])
        .unwrap();
    copy_all(&src, &dst);
    for sid in [S1, S2] {
        let a = docs_of(&src, sid);
        let b = docs_of(&dst, sid);
        // S2's totals are recomputed from its messages (cost was forced to 0.0 in src).
        if sid == S1 {
            assert_eq!(a[0], b[0], "{}", String::from_utf8_lossy(&b[0]));
        }
        assert_eq!(a[1], b[1]);
        assert_eq!(a[2], b[2]);
        // Writing what was read, then reading again, is a fixed point.
        dst.write_session_doc(&b[0], None, None).unwrap();
        dst.write_messages_doc(&b[1]).unwrap();
        dst.write_todos_doc(&b[2]).unwrap();
        assert_eq!(docs_of(&dst, sid), b);
    }
    assert_eq!(
        src.read_project_doc(PID).unwrap(),
        dst.read_project_doc(PID).unwrap()
    );
    assert_eq!(
        src.project_signals().unwrap(),
        dst.project_signals().unwrap()
    );
    let raw: String = dst
        .connection()
        .query_row(
            "SELECT data FROM part WHERE session_id = ?1 ORDER BY id LIMIT 1",
            [S2],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, "not json {");
    let blob: Vec<u8> = dst
        .connection()
        .query_row("SELECT metadata FROM session WHERE id = ?1", [S2], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(blob, [0, 0xff, 0x10]);
}

#[test]
fn unknown_extra_columns_are_carried_through() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    for db in [&src, &dst] {
        db.connection()
            .execute_batch(
                "ALTER TABLE session ADD COLUMN future_flag INTEGER; ALTER TABLE message ADD COLUMN future_note TEXT;\
                 ALTER TABLE part ADD COLUMN future_real REAL;",
            )
            .unwrap();
    }
    src.connection()
        .execute("UPDATE session SET future_flag = 7", [])
        .unwrap();
    src.connection()
        .execute("UPDATE message SET future_note = 'n-' || id", [])
        .unwrap();
    src.connection()
        .execute("UPDATE part SET future_real = 1.5", [])
        .unwrap();
    copy_all(&src, &dst);
    let a = docs_of(&src, S1);
    assert!(String::from_utf8_lossy(&a[0]).contains("\"future_flag\":7"));
    assert!(String::from_utf8_lossy(&a[1]).contains("\"future_real\":1.5"));
    assert_eq!(a, docs_of(&dst, S1));
    // Into a db without those columns, they are dropped (not an error).
    let plain = OpencodeDb::open(new_db(dir.path(), "plain.db")).unwrap();
    plain.write_session_doc(&a[0], None, None).unwrap();
    plain.write_messages_doc(&a[1]).unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.read_session_doc(S1).unwrap().unwrap())
            .contains("future_flag")
    );
}

#[test]
fn unknown_schema_refuses_writes_but_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let docs = docs_of(&db, S1);
    db.connection()
        .execute(
            "INSERT INTO migration (id, time_completed) VALUES ('20270101000000_future', 1)",
            [],
        )
        .unwrap();
    assert_eq!(
        db.schema().unwrap(),
        SchemaStatus::Unknown {
            last: "20270101000000_future".into(),
            count: 39
        }
    );
    assert_eq!(docs_of(&db, S1), docs);
    assert_eq!(db.session_signals().unwrap().len(), 2);
    let e = db.write_session_doc(&docs[0], None, None).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DbError::UnknownSchema { .. }));
    assert!(msg.contains("has schema 20270101000000_future (39 migrations), which this oc-sync does not know (it knows OpenCode 1.18.33, up to 20260622202450_simplify_session_input): sessions are read and pushed but not written here; upgrade oc-sync"), "{msg}");
    assert!(msg.contains(&db.path().display().to_string()));
    assert!(matches!(
        db.write_messages_doc(&docs[1]),
        Err(DbError::UnknownSchema { .. })
    ));
    assert!(matches!(
        db.delete_session(S1),
        Err(DbError::UnknownSchema { .. })
    ));
    // Older (a prefix of the known list) is unknown too; no table is Missing.
    db.connection()
        .execute_batch("DELETE FROM migration WHERE id >= '20260622'")
        .unwrap();
    assert!(matches!(
        db.schema().unwrap(),
        SchemaStatus::Unknown { count: 35, .. }
    ));
    db.connection()
        .execute_batch("DROP TABLE migration")
        .unwrap();
    assert_eq!(db.schema().unwrap(), SchemaStatus::Missing);
    assert!(matches!(db.delete_todos(S1), Err(DbError::NoSchema { .. })));
}

#[test]
fn rewriting_a_session_keeps_its_messages_no_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let c = db.connection();
    let before = (
        count(c, "SELECT count(*) FROM message"),
        count(c, "SELECT count(*) FROM part"),
        count(c, "SELECT count(*) FROM todo"),
    );
    let [s, _, _] = docs_of(&db, S1);
    let mut v: Value = serde_json::from_slice(&s).unwrap();
    v["session"]["title"] = "renamed".into();
    db.write_session_doc(&serde_json::to_vec(&v).unwrap(), Some("/elsewhere"), None)
        .unwrap();
    db.write_project_doc(&db.read_project_doc(PID).unwrap().unwrap(), None)
        .unwrap();
    let after = (
        count(c, "SELECT count(*) FROM message"),
        count(c, "SELECT count(*) FROM part"),
        count(c, "SELECT count(*) FROM todo"),
    );
    assert_eq!(before, after);
    let (title, dir_): (String, String) = c
        .query_row(
            "SELECT title, directory FROM session WHERE id = ?1",
            [S1],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((title.as_str(), dir_.as_str()), ("renamed", "/elsewhere"));
    // The trap is real on this schema: INSERT OR REPLACE would have wiped them.
    c.execute_batch(&format!(
        "INSERT OR REPLACE INTO session SELECT * FROM session WHERE id = '{S1}'"
    ))
    .unwrap();
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM message WHERE session_id = '{S1}'")
        ),
        0
    );
}

#[test]
fn local_only_columns_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    src.connection()
        .execute("UPDATE session SET share_url = 'https://remote/s', workspace_id = 'wrk_remote' WHERE id = ?1", [S1])
        .unwrap();
    let [s, _, _] = docs_of(&src, S1);
    // Insert: worktree and directory overrides; workspace_id NULL; project time_updated = now.
    dst.write_session_doc(&s, Some("/local/demo/sub"), Some("/local/demo"))
        .unwrap();
    let c = dst.connection();
    let row = |c: &Connection| -> (Option<String>, Option<String>, String) {
        c.query_row(
            "SELECT share_url, workspace_id, directory FROM session WHERE id = ?1",
            [S1],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(
        row(c),
        (
            Some("https://remote/s".into()),
            None,
            "/local/demo/sub".into()
        )
    );
    let (wt, tu): (String, i64) = c
        .query_row(
            "SELECT worktree, time_updated FROM project WHERE id = ?1",
            [PID],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(wt, "/local/demo");
    assert!(tu > 1_700_000_000_000);
    // Update: local share_url / workspace_id kept; directory from the doc without override.
    c.execute("UPDATE session SET share_url = 'https://local/s', workspace_id = 'wrk_local' WHERE id = ?1", [S1]).unwrap();
    c.execute("UPDATE project SET time_updated = 42", [])
        .unwrap();
    dst.write_session_doc(&s, None, Some("/ignored")).unwrap();
    assert_eq!(
        row(c),
        (
            Some("https://local/s".into()),
            Some("wrk_local".into()),
            format!("/home/user/projects/{PID}")
        )
    );
    // Project doc: local worktree and time_updated kept unless overridden.
    let mut p: Value =
        serde_json::from_slice(&src.read_project_doc(PID).unwrap().unwrap()).unwrap();
    p["project"]["name"] = "Demo".into();
    let p = serde_json::to_vec(&p).unwrap();
    dst.write_project_doc(&p, None).unwrap();
    let get = || -> (String, i64, Option<String>) {
        c.query_row(
            "SELECT worktree, time_updated, name FROM project WHERE id = ?1",
            [PID],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(get(), ("/local/demo".into(), 42, Some("Demo".into())));
    dst.write_project_doc(&p, Some("/new/wt")).unwrap();
    assert_eq!(get(), ("/new/wt".into(), 42, Some("Demo".into())));
}

#[test]
fn messages_doc_replaces_and_recomputes_totals() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let c = db.connection();
    let totals_of = || -> (f64, i64, i64, i64) {
        c.query_row(
            "SELECT cost, tokens_input, tokens_output, time_updated FROM session WHERE id = ?1",
            [S1],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let orig = totals_of();
    let [_, m, _] = docs_of(&db, S1);
    c.execute(
        "UPDATE session SET cost = 99, tokens_input = 0, tokens_output = 0 WHERE id = ?1",
        [S1],
    )
    .unwrap();
    db.write_messages_doc(&m).unwrap();
    assert_eq!(
        totals_of(),
        orig,
        "totals recomputed from the messages equal the generator's sums"
    );
    // Drop the last assistant message (and its parts): rows deleted, totals follow.
    let mut v: Value = serde_json::from_slice(&m).unwrap();
    let last = v["messages"].as_array_mut().unwrap().pop().unwrap();
    let last_id = last["id"].as_str().unwrap().to_string();
    v["parts"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["message_id"] != last_id.as_str());
    // And one extra part on the first message.
    let mut extra = v["parts"][0].clone();
    extra["id"] = "prt_zzzz_extra".into();
    v["parts"].as_array_mut().unwrap().push(extra);
    db.write_messages_doc(&serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM message WHERE session_id = '{S1}'")
        ),
        5
    );
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM part WHERE session_id = '{S1}'")
        ),
        21
    );
    let t = totals_of();
    assert_eq!(t.3, orig.3, "time_updated unchanged");
    assert_eq!(
        t.1,
        orig.1 - last["data"]["tokens"]["input"].as_i64().unwrap()
    );
    assert!((t.0 - (orig.0 - last["data"]["cost"].as_f64().unwrap())).abs() < 1e-12);
    db.delete_messages(S1).unwrap();
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM part WHERE session_id = '{S1}'")
        ),
        0
    );
    assert_eq!(totals_of().1, 0);
    // Sessions of other ids untouched.
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM message WHERE session_id = '{S2}'")
        ),
        3
    );
}

#[test]
fn writes_to_a_missing_session_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    let [_, m, t] = docs_of(&src, S1);
    let e = dst.write_messages_doc(&m).unwrap_err();
    assert!(matches!(e, DbError::SessionMissing { .. }));
    assert!(
        e.to_string()
            .contains("write sessions/ses_e0252f198ffeJ1DAzgJnAF8aQp first"),
        "{e}"
    );
    assert!(matches!(
        dst.write_todos_doc(&t),
        Err(DbError::SessionMissing { .. })
    ));
}

#[test]
fn invalid_docs_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let [s, m, t] = docs_of(&db, S1);
    let edit = |doc: &[u8], f: &dyn Fn(&mut Value)| -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(doc).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let field_of = |r: Result<(), DbError>| match r {
        Err(DbError::InvalidDoc { field, problem, .. }) => format!("{field}: {problem}"),
        other => panic!("expected InvalidDoc, got {other:?}"),
    };
    let f = field_of(db.write_messages_doc(b"{not json"));
    assert!(f.starts_with("(document): not valid JSON"), "{f}");
    let f = field_of(db.write_messages_doc(&edit(&m, &|v| v["format"] = 2.into())));
    assert!(f.starts_with("format: is 2"), "{f}");
    let f =
        field_of(db.write_messages_doc(&edit(&m, &|v| v["messages"][2]["session_id"] = S2.into())));
    assert!(
        f.starts_with("messages[2].session_id: is ses_e025157a"),
        "{f}"
    );
    let f = field_of(db.write_messages_doc(&edit(&m, &|v| {
        v["parts"][3]["message_id"] = "msg_other".into()
    })));
    assert_eq!(
        f,
        "parts[3].message_id: msg_other is not a message of this document"
    );
    let f = field_of(db.write_messages_doc(&edit(&m, &|v| {
        v["parts"][1]["id"] = v["parts"][0]["id"].clone()
    })));
    assert!(
        f.starts_with("parts[1].id:") && f.ends_with("appears twice"),
        "{f}"
    );
    let f = field_of(db.write_messages_doc(&edit(&m, &|v| {
        v["messages"][0]["time_created"] = serde_json::json!([1])
    })));
    assert!(
        f.starts_with("messages[0].time_created: a JSON array"),
        "{f}"
    );
    let f = field_of(db.write_messages_doc(&edit(&m, &|v| {
        v["messages"][0].as_object_mut().unwrap().remove("id");
    })));
    assert_eq!(f, "messages[0].id: missing");
    let f = field_of(db.write_session_doc(
        &edit(&s, &|v| v["project"]["id"] = "other".into()),
        None,
        None,
    ));
    assert!(f.starts_with("project.id: is not session"), "{f}");
    let f = field_of(db.write_session_doc(
        &edit(&s, &|v| v["session"]["id"] = Value::Null),
        None,
        None,
    ));
    assert_eq!(f, "session.id: is not a string");
    let f = field_of(db.write_todos_doc(&edit(&t, &|v| v["todos"][1]["position"] = 0.into())));
    assert_eq!(f, "todos[1].position: 0 appears twice");
    let f = field_of(db.write_project_doc(b"{\"format\":1}", None));
    assert_eq!(f, "project: missing");
    let e = db.write_messages_doc(b"[]").unwrap_err().to_string();
    assert!(
        e.contains("refusing to write a messages document into") && e.contains("src.db"),
        "{e}"
    );
    // Nothing was changed by the refused writes.
    assert_eq!(docs_of(&db, S1), [s, m, t]);
}

#[test]
fn delete_session_cascades_and_project_delete_is_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let c = db.connection();
    assert!(!db.delete_project(PID).unwrap(), "sessions reference it");
    db.delete_session(S1).unwrap();
    db.delete_session(S1).unwrap(); // idempotent
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM message WHERE session_id = '{S1}'")
        ),
        0
    );
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM part WHERE session_id = '{S1}'")
        ),
        0
    );
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM todo WHERE session_id = '{S1}'")
        ),
        0
    );
    db.delete_todos(S2).unwrap();
    assert_eq!(count(c, "SELECT count(*) FROM todo"), 0);
    db.delete_session(S2).unwrap();
    c.execute(
        "INSERT INTO permission (id, project_id, action, resource, time_created, time_updated) VALUES ('per_1', ?1, 'allow', 'bash', 1, 1)",
        [PID],
    )
    .unwrap();
    assert!(
        !db.delete_project(PID).unwrap(),
        "a local permission references it"
    );
    c.execute("DELETE FROM permission", []).unwrap();
    assert!(db.delete_project(PID).unwrap());
    assert!(!db.delete_project(PID).unwrap());
}

#[test]
fn signals_count_through_covering_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let sig = db.session_signals().unwrap();
    assert_eq!(sig.len(), 2);
    let s2 = &sig[0];
    assert_eq!((s2.id.as_str(), s2.parent_id.as_deref()), (S2, Some(S1)));
    let s1 = &sig[1];
    assert_eq!((s1.messages, s1.parts, s1.todos), (6, 24, 2));
    assert_eq!((s2.messages, s2.parts, s2.todos), (3, 9, 2));
    assert!(s1.todos_updated > 0 && s1.time_archived.is_none());
    assert_eq!(s1.directory, format!("/home/user/projects/{PID}"));
    for (sql, index) in [
        (SQL_MESSAGE_COUNTS, "message_session_time_created_id_idx"),
        (SQL_MESSAGE_IDS, "message_session_time_created_id_idx"),
        (SQL_PART_COUNTS, "part_session_idx"),
    ] {
        let plan = query_plan(db.connection(), sql);
        assert!(
            plan.contains(&format!("SCAN message USING COVERING INDEX {index}"))
                || plan.contains(&format!("SCAN part USING COVERING INDEX {index}")),
            "{sql}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    let plan = query_plan(db.connection(), SQL_TODO_COUNTS);
    assert!(plan.contains("todo"), "{plan}");
    // Project signals: hash of the doc, stable across project.time_updated changes.
    let p1 = db.project_signals().unwrap();
    db.connection()
        .execute("UPDATE project SET time_updated = time_updated + 5", [])
        .unwrap();
    assert_eq!(p1, db.project_signals().unwrap());
    assert_eq!(p1[0].0, PID);
    assert_eq!(p1[0].1.len(), 64);
}

fn query_plan(c: &Connection, sql: &str) -> String {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn a_write_waits_for_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    let db = OpencodeDb::open(&path).unwrap();
    let [_, m, _] = docs_of(&db, S1);
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = path.clone();
    let holder = std::thread::spawn(move || {
        let c = Connection::open(p2).unwrap();
        c.execute_batch("BEGIN IMMEDIATE; UPDATE session SET title = 'held' WHERE id = 'ses_e025157acffe4GpQD7r0BNLFWD';").unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        c.execute_batch("COMMIT").unwrap();
    });
    rx.recv().unwrap();
    let start = Instant::now();
    db.write_messages_doc(&m).unwrap();
    let waited = start.elapsed();
    holder.join().unwrap();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    let title: String = db
        .connection()
        .query_row("SELECT title FROM session WHERE id = ?1", [S2], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(title, "held");
}

#[test]
fn writing_while_another_connection_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    let db = OpencodeDb::open(&path).unwrap();
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM todo"), 4);
    let start = Instant::now();
    db.delete_todos(S1).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "WAL: a reader does not block the writer"
    );
    assert_eq!(
        count(&reader, "SELECT count(*) FROM todo"),
        4,
        "the reader keeps its snapshot"
    );
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM todo"), 2);
    // And our reads see a snapshot while another connection writes: docs stay consistent.
    let a = db.read_messages_doc(S2).unwrap();
    let w = Connection::open(&path).unwrap();
    w.execute_batch("BEGIN IMMEDIATE; DELETE FROM part; ")
        .unwrap();
    assert_eq!(
        db.read_messages_doc(S2).unwrap(),
        a,
        "uncommitted writes are not seen"
    );
    w.execute_batch("ROLLBACK").unwrap();
}

/// Measures signals and doc reads on a generated DB of OpenCode's size in the brief:
/// 3,000 sessions / 64,000 messages / 274,000 parts of ~1 KB.
/// `cargo test --release --lib opencode_db::tests::bench_large -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_db(dir.path(), "big.db");
    let t0 = Instant::now();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; BEGIN")
            .unwrap();
        let (mut msgs, mut parts) = (0usize, 0usize);
        for i in 0..3000usize {
            let n = if i < 1000 { 22 } else { 21 };
            let ppm = if i < 818 { 5 } else { 4 };
            let project = format!("{:040x}", i % 40);
            insert_fake_session(&c, &project, &format!("ses_{i:026}"), n, ppm, 1250).unwrap();
            msgs += n;
            parts += n * ppm;
        }
        c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        eprintln!(
            "generated {msgs} messages, {parts} parts in {:?}",
            t0.elapsed()
        );
        let avg: f64 = c
            .query_row("SELECT avg(length(data)) FROM part", [], |r| r.get(0))
            .unwrap();
        eprintln!("avg part.data {avg:.0} bytes");
    }
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!("db size {:.1} MB", size as f64 / 1e6);
    let db = OpencodeDb::open(&path).unwrap();
    for sql in [SQL_MESSAGE_COUNTS, SQL_PART_COUNTS, SQL_TODO_COUNTS] {
        eprintln!("plan {sql}: {}", query_plan(db.connection(), sql));
    }
    for round in 0..3 {
        let t = Instant::now();
        let sig = db.session_signals().unwrap();
        eprintln!(
            "session_signals round {round}: {} sessions in {:?}",
            sig.len(),
            t.elapsed()
        );
        assert_eq!(sig.len(), 3000);
        let (m, p) = sig
            .iter()
            .fold((0, 0), |(m, p), s| (m + s.messages, p + s.parts));
        eprintln!("  counted {m} messages, {p} parts");
    }
    let t = Instant::now();
    let p = db.project_signals().unwrap();
    eprintln!("project_signals: {} projects in {:?}", p.len(), t.elapsed());
    let sid = format!("ses_{:026}", 5);
    let t = Instant::now();
    let m = db.read_messages_doc(&sid).unwrap().unwrap();
    eprintln!("read_messages_doc: {} bytes in {:?}", m.len(), t.elapsed());
    let t = Instant::now();
    db.write_messages_doc(&m).unwrap();
    eprintln!(
        "write_messages_doc (same content, upserts) in {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let mut total = 0;
    for i in 0..3000usize {
        let sid = format!("ses_{i:026}");
        total += db.read_session_doc(&sid).unwrap().unwrap().len();
        total += db.read_messages_doc(&sid).unwrap().unwrap().len();
        total += db.read_todos_doc(&sid).unwrap().unwrap().len();
    }
    eprintln!(
        "read all docs: {:.1} MB in {:?}",
        total as f64 / 1e6,
        t.elapsed()
    );
}

/// Round trip of every session of a real OpenCode database (a copy; set OC_SYNC_SAMPLE_DB):
/// read → write into a fresh db → read gives identical bytes, and recomputed totals equal
/// OpenCode's. `OC_SYNC_SAMPLE_DB=/path/copy.db cargo test --lib real_db -- --ignored --nocapture`
#[test]
#[ignore]
fn real_db_round_trip() {
    let Ok(sample) = std::env::var("OC_SYNC_SAMPLE_DB") else {
        return;
    };
    let src = OpencodeDb::open(&sample).unwrap();
    assert_eq!(src.schema().unwrap(), SchemaStatus::Known);
    let dir = tempfile::tempdir().unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    let sigs = src.session_signals().unwrap();
    for s in &sigs {
        let [sd, md, td] = docs_of(&src, &s.id);
        dst.write_session_doc(&sd, None, None).unwrap();
        dst.write_messages_doc(&md).unwrap();
        dst.write_todos_doc(&td).unwrap();
        assert_eq!(docs_of(&dst, &s.id), [sd, md, td], "{}", s.id);
        eprintln!(
            "{}: {} messages, {} parts, {} todos: identical",
            s.id, s.messages, s.parts, s.todos
        );
    }
    assert_eq!(
        src.project_signals().unwrap().len(),
        dst.project_signals().unwrap().len()
    );
}

#[test]
fn a_messages_doc_written_over_a_base_deletes_only_rows_the_base_had() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let c = db.connection();
    let [_, base, _] = docs_of(&db, S1);
    let base_ids = messages_doc_ids(&base);
    let mut v: Value = serde_json::from_slice(&base).unwrap();
    let n_parts = v["parts"].as_array().unwrap().len() as i64;
    // The remote deleted one part the base had...
    let gone = v["parts"].as_array_mut().unwrap().pop().unwrap();
    let gone_id = gone["id"].as_str().unwrap().to_string();
    // ...while OpenCode added one here (not in the base, not in the pulled document).
    let mut added = gone.clone();
    added["id"] = "prt_zzzz_added_here".into();
    let (mid, sid) = (added["message_id"].as_str().unwrap().to_string(), added["session_id"].as_str().unwrap().to_string());
    c.execute(
        "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES ('prt_zzzz_added_here', ?1, ?2, 1, 1, '{}')",
        [&mid, &sid],
    )
    .unwrap();
    db.write_messages_doc_over(&serde_json::to_vec(&v).unwrap(), Some(&base_ids)).unwrap();
    let parts = |id: &str| count(c, &format!("SELECT count(*) FROM part WHERE id = '{id}'"));
    assert_eq!(parts(&gone_id), 0, "deleted on the remote: deleted here");
    assert_eq!(parts("prt_zzzz_added_here"), 1, "added here since the base: kept");
    assert_eq!(count(c, &format!("SELECT count(*) FROM part WHERE session_id = '{S1}'")), n_parts);
    // The plain write makes the session exactly the document.
    db.write_messages_doc(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(parts("prt_zzzz_added_here"), 0);
}

// ---------------------------------------------------------------------------------------------
// Message items (`messages/<pid>/<sid>/<mid>`) and batches.

fn message_ids_of(db: &OpencodeDb, sid: &str) -> Vec<String> {
    db.message_ids().unwrap().into_iter().filter(|(s, _)| s == sid).map(|(_, m)| m).collect()
}

/// The message items of a session, read one by one, are the session's document split; writing
/// them into a fresh database (in one batch) gives the same rows, totals and bytes back.
#[test]
fn message_items_split_the_session_document_and_round_trip_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let whole = src.read_messages_doc(S1).unwrap().unwrap();
    let (sid, split) = split_messages_doc(&whole).unwrap();
    assert_eq!(sid, S1);
    let ids = message_ids_of(&src, S1);
    assert_eq!(split.len(), ids.len());
    for (mid, doc) in &split {
        assert_eq!(src.read_message_doc(S1, mid).unwrap().as_ref(), Some(doc), "{mid}");
    }
    assert_eq!(src.read_message_doc(S2, &ids[0]).unwrap(), None, "a message of another session is no item of this one");
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    dst.write_project_doc(&src.read_project_doc(PID).unwrap().unwrap(), None).unwrap();
    dst.write_session_doc(&src.read_session_doc(S1).unwrap().unwrap(), None, None).unwrap();
    // Half the messages (a batch or a round cut short): the session row keeps the totals it came
    // with, a partial sum never replaces them.
    let (first, rest) = split.split_at(split.len() / 2);
    for (mid, doc) in first {
        dst.write_message_doc_over(mid, doc, None).unwrap();
    }
    assert_eq!(dst.read_session_doc(S1).unwrap(), src.read_session_doc(S1).unwrap());
    let before = dst.write_transactions();
    let results = dst
        .write_batch(|| rest.iter().map(|(mid, doc)| dst.write_message_doc_over(mid, doc, None)).collect::<Vec<_>>())
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(dst.write_transactions() - before, 1, "one transaction for the batch");
    assert_eq!(dst.read_messages_doc(S1).unwrap().unwrap(), whole);
    // The totals were recomputed once, at the end of the batch: the session document is the same.
    assert_eq!(dst.read_session_doc(S1).unwrap(), src.read_session_doc(S1).unwrap());
    // Deleting one message takes its parts (the totals stay: its cost was spent).
    let last = ids.last().unwrap();
    dst.delete_message(S1, last).unwrap();
    assert_eq!(dst.read_message_doc(S1, last).unwrap(), None);
    assert_eq!(count(dst.connection(), &format!("SELECT count(*) FROM part WHERE message_id = '{last}'")), 0);
    assert_eq!(message_ids_of(&dst, S1).len(), ids.len() - 1);
}

/// A refused item of a batch undoes only itself; a batch that fails to commit writes nothing.
#[test]
fn a_refused_item_of_a_batch_undoes_itself_only_and_a_failed_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = OpencodeDb::open(populated(dir.path())).unwrap();
    let (_, split) = split_messages_doc(&src.read_messages_doc(S1).unwrap().unwrap()).unwrap();
    let dst = OpencodeDb::open(new_db(dir.path(), "dst.db")).unwrap();
    dst.write_project_doc(&src.read_project_doc(PID).unwrap().unwrap(), None).unwrap();
    dst.write_session_doc(&src.read_session_doc(S1).unwrap().unwrap(), None, None).unwrap();
    let (m0, d0) = &split[0];
    let (m1, d1) = &split[1];
    let results = dst
        .write_batch(|| {
            vec![
                dst.write_message_doc_over(m0, d0, None),
                // The content of another message under m0's id: refused, undone.
                dst.write_message_doc_over(m0, d1, None),
                // A message of a session that does not exist here.
                dst.write_message_doc_over(m1, &d1.clone().replace_session(S1, S2), None),
                dst.write_message_doc_over(m1, d1, None),
            ]
        })
        .unwrap();
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    assert!(matches!(results[1], Err(DbError::InvalidDoc { .. })), "{results:?}");
    assert!(matches!(results[2], Err(DbError::SessionMissing { .. })), "{results:?}");
    assert_eq!(dst.read_message_doc(S1, m0).unwrap().as_ref(), Some(d0));
    assert_eq!(dst.read_message_doc(S1, m1).unwrap().as_ref(), Some(d1));
    // A batch cut off at its commit (the `db-import` fault point) writes nothing.
    let (m2, d2) = &split[2];
    let hook = crate::fault::inject(|s| s == crate::fault::DB_IMPORT);
    assert!(dst.write_batch(|| dst.write_message_doc_over(m2, d2, None)).is_err());
    drop(hook);
    assert_eq!(dst.read_message_doc(S1, m2).unwrap(), None);
    assert_eq!(message_ids_of(&dst, S1).len(), 2);
}

trait ReplaceSession {
    fn replace_session(self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceSession for Vec<u8> {
    fn replace_session(self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace(from, to).into_bytes()
    }
}

/// A message's print changes with its row or any of its parts, and only its own.
#[test]
fn message_prints_follow_each_message_and_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let db = OpencodeDb::open(populated(dir.path())).unwrap();
    let before: HashMap<String, String> = db.message_prints(S1).unwrap().into_iter().collect();
    assert_eq!(before.len(), 6);
    let ids = message_ids_of(&db, S1);
    let c = db.connection();
    c.execute("UPDATE part SET data = json_set(data, '$.text', 'edited!') WHERE id = (SELECT min(id) FROM part WHERE message_id = ?1)", [&ids[1]]).unwrap();
    let after: HashMap<String, String> = db.message_prints(S1).unwrap().into_iter().collect();
    let changed: Vec<&String> = ids.iter().filter(|m| before[*m] != after[*m]).collect();
    assert_eq!(changed, [&ids[1]]);
}
