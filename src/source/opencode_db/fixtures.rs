//! Test and benchmark helpers: an empty OpenCode 1.18.33 database, and fake sessions shaped like
//! the real ones. Public so integration tests and benchmarks can use them; not for production.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

/// The real schema (tables and indexes in creation order) and the 38 `migration` rows of 1.18.33.
const SCHEMA_SQL: &str = include_str!("../../../tests/fixtures/opencode-1.18.33-schema.sql");

/// Creates a new database at `path` with OpenCode 1.18.33's schema and migration rows, in WAL mode
/// like OpenCode's (test helper).
#[doc(hidden)]
pub fn create_test_db(path: impl AsRef<Path>) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch(&format!("BEGIN;\n{SCHEMA_SQL}\nCOMMIT;"))
}

fn hash(s: &str) -> u64 {
    // FNV-1a: deterministic across runs and platforms.
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic filler text of `n` bytes, varying with `seed`.
fn filler(seed: u64, n: usize) -> String {
    const WORDS: &[&str] = &[
        "total",
        "drwxr-xr-x",
        "root",
        "src/",
        "fn",
        "main()",
        "let",
        "mut",
        "Cargo.toml",
        "ok",
        "test",
        "passed;",
        "error[E0308]:",
        "mismatched",
        "types",
        "README.md",
        "=>",
        "{",
        "}",
        "\n",
    ];
    let mut out = String::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        out.push(' ');
    }
    out.truncate(n);
    out
}

/// Inserts a fake session shaped like OpenCode's rows (test and benchmark helper): the project when
/// missing, the session, `n_messages` messages alternating user/assistant (assistant `data` with
/// role/time/modelID/providerID/cost/tokens), `parts_per_message` parts each (user: text; assistant:
/// step-start, tool/text, step-finish), the bulky ones (text, tool output) about `part_bytes` long,
/// and 2 todos. The session's cost/token totals equal the sums of its assistant messages.
/// Deterministic: the same arguments give the same rows.
#[doc(hidden)]
pub fn insert_fake_session(
    conn: &Connection,
    project_id: &str,
    session_id: &str,
    n_messages: usize,
    parts_per_message: usize,
    part_bytes: usize,
) -> rusqlite::Result<()> {
    let seed = hash(session_id);
    let fake = Fake {
        session_id,
        seed,
        base: 1_795_000_000_000 + (seed % 1_000_000_000) as i64,
        worktree: format!("/home/user/projects/{project_id}"),
        snapshot: format!("{:016x}{:016x}{:08x}", seed, seed.rotate_left(17), seed as u32),
        suffix: format!("{:016x}", seed),
        n_messages,
        parts_per_message,
        part_bytes,
    };
    insert_fake_project(conn, project_id, &fake)?;
    insert_fake_session_row(conn, project_id, &fake)?;
    let (cost, tin, tout) = insert_fake_messages(conn, &fake)?;
    conn.execute(
        "UPDATE session SET cost = ?2, tokens_input = ?3, tokens_output = ?4 WHERE id = ?1",
        params![session_id, cost, tin, tout],
    )?;
    if n_messages > 0 {
        for (pos, (content, status)) in [("first todo", "pending"), ("second todo", "completed")]
            .iter()
            .enumerate()
        {
            conn.execute(
                "INSERT INTO todo (session_id, content, status, priority, position, time_created, time_updated) \
                 VALUES (?1, ?2, ?3, 'high', ?4, ?5, ?5)",
                params![session_id, content, status, pos as i64, fake.base + 500],
            )?;
        }
    }
    Ok(())
}

/// One fake session being inserted: its arguments and what is derived from its id.
struct Fake<'a> {
    session_id: &'a str,
    seed: u64,
    /// Its time base (ms).
    base: i64,
    worktree: String,
    snapshot: String,
    /// What makes its message and part ids unique.
    suffix: String,
    n_messages: usize,
    parts_per_message: usize,
    part_bytes: usize,
}

/// The project row, when missing.
fn insert_fake_project(conn: &Connection, project_id: &str, fake: &Fake<'_>) -> rusqlite::Result<()> {
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM project WHERE id = ?1", [project_id], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_none() {
        conn.execute(
            "INSERT INTO project (id, worktree, vcs, name, icon_url, icon_url_override, icon_color, time_created, \
             time_updated, time_initialized, sandboxes, commands) VALUES (?1, ?2, 'git', NULL, NULL, NULL, NULL, ?3, ?3, NULL, '[]', NULL)",
            params![project_id, fake.worktree, fake.base - 1000],
        )?;
    }
    Ok(())
}

/// The session row, with zero totals (set once the messages are in).
fn insert_fake_session_row(conn: &Connection, project_id: &str, fake: &Fake<'_>) -> rusqlite::Result<()> {
    let permission = r#"[{"permission":"question","pattern":"*","action":"deny"}]"#;
    conn.execute(
        "INSERT INTO session (id, project_id, workspace_id, parent_id, slug, directory, path, title, version, \
         share_url, summary_additions, summary_deletions, summary_files, summary_diffs, metadata, cost, \
         tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, revert, \
         permission, agent, model, time_created, time_updated, time_compacting, time_archived) \
         VALUES (?1, ?2, NULL, NULL, ?3, ?4, '', ?5, '1.18.33', NULL, 0, 0, 0, NULL, NULL, ?6, ?7, ?8, 0, 0, 0, \
         NULL, ?9, 'build', '{\"id\":\"m\",\"providerID\":\"fake\",\"variant\":\"default\"}', ?10, ?11, NULL, NULL) \
",
        params![
            fake.session_id,
            project_id,
            format!("fake-{}", fake.seed % 1000),
            fake.worktree,
            format!("Fake session {}", fake.session_id),
            0.0_f64,
            0_i64,
            0_i64,
            permission,
            fake.base - 100,
            fake.base + fake.n_messages as i64 * 1000,
        ],
    )?;
    Ok(())
}

/// The messages and their parts; returns the assistant messages' (cost, input, output) sums.
fn insert_fake_messages(conn: &Connection, fake: &Fake<'_>) -> rusqlite::Result<(f64, i64, i64)> {
    let mut msg_stmt = conn.prepare_cached(
        "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut part_stmt = conn.prepare_cached(
        "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let (session_id, suffix, n_messages) = (fake.session_id, &fake.suffix, fake.n_messages);
    let (mut cost, mut tin, mut tout) = (0.0_f64, 0_i64, 0_i64);
    let mut user_id = String::new();
    for i in 0..n_messages {
        let t = fake.base + i as i64 * 1000;
        let id = format!("msg_{suffix}{i:06}");
        let assistant = i % 2 == 1;
        let data = if assistant {
            let c = 0.00002 + (i as f64) * 0.000_001;
            let (input, output) = (10 + i as i64, 5 + (i as i64 % 7));
            cost += c;
            tin += input;
            tout += output;
            let worktree = &fake.worktree;
            json!({"parentID": user_id, "role": "assistant", "mode": "build", "agent": "build",
                "path": {"cwd": worktree, "root": worktree}, "cost": c,
                "tokens": {"total": input + output, "input": input, "output": output, "reasoning": 0,
                           "cache": {"write": 0, "read": 0}},
                "modelID": "m", "providerID": "fake", "time": {"created": t, "completed": t + 900},
                "finish": if i + 1 == n_messages { "stop" } else { "tool-calls" }})
        } else {
            user_id = id.clone();
            json!({"role": "user", "time": {"created": t}, "agent": "build",
                   "model": {"providerID": "fake", "modelID": "m"}, "summary": {"diffs": []}})
        };
        msg_stmt.execute(params![id, session_id, t, t + 900, data.to_string()])?;
        for j in 0..fake.parts_per_message {
            let pt = t + 10 * (j as i64 + 1);
            let pdata = fake_part(fake, i, j, pt, assistant);
            let pid = format!("prt_{suffix}{i:06}{j:04}");
            part_stmt.execute(params![pid, id, session_id, pt, pt + 2, pdata.to_string()])?;
        }
    }
    Ok((cost, tin, tout))
}

/// Part `j` of message `i` (created at `pt`): user: text; assistant: step-start, tool/text,
/// step-finish.
fn fake_part(fake: &Fake<'_>, i: usize, j: usize, pt: i64, assistant: bool) -> serde_json::Value {
    let (parts_per_message, part_bytes, snapshot) = (fake.parts_per_message, fake.part_bytes, &fake.snapshot);
    let pseed = fake.seed.wrapping_add((i * 1000 + j) as u64);
    if !assistant {
        json!({"type": "text", "text": filler(pseed, part_bytes)})
    } else if parts_per_message >= 2 && j == 0 {
        json!({"snapshot": snapshot, "type": "step-start"})
    } else if parts_per_message >= 2 && j + 1 == parts_per_message {
        json!({"reason": "tool-calls", "snapshot": snapshot, "type": "step-finish",
               "tokens": {"total": 15, "input": 10, "output": 5, "reasoning": 0,
                          "cache": {"write": 0, "read": 0}}, "cost": 0.00002})
    } else if j % 2 == 1 {
        let out = filler(pseed, part_bytes.saturating_sub(300));
        json!({"type": "tool", "tool": "bash", "callID": format!("call_{j}"),
               "state": {"status": "completed",
                         "input": {"command": format!("echo {j}"), "description": "run"},
                         "output": out, "metadata": {"output": "", "exit": 0, "truncated": false},
                         "title": format!("echo {j}"), "time": {"start": pt, "end": pt + 5}}})
    } else {
        json!({"type": "text", "text": filler(pseed, part_bytes), "time": {"start": pt, "end": pt + 5}})
    }
}
