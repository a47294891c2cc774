//! The generated heavy-user OpenCode database shared by the session benchmarks (`bench_sessions`,
//! `bench_heavy`): deterministic, built with `create_test_db` + `insert_fake_session` in one
//! transaction. Included by each benchmark with `#[path]`.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

use oc_sync::source::opencode_db::{create_test_db, insert_fake_session};
use rusqlite::{Connection, params};
use serde_json::json;

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub const WORDS: &[&str] = &[
    "running", "cargo", "test", "--release", "Compiling", "oc-sync", "v0.1.0", "Finished", "warning:", "unused",
    "variable", "src/sync/run.rs:42:9", "error[E0599]:", "no", "method", "named", "found", "for", "struct", "in",
    "the", "current", "scope", "-rw-r--r--", "1", "user", "staff", "4096", "Nov", "21", "README.md", "ok", "passed;",
    "0", "failed;", "diff", "--git", "a/src/lib.rs", "b/src/lib.rs", "@@", "-12,7", "+12,9", "fn", "main()", "{", "}",
];

/// Tool-output-like text of exactly `n` bytes (ASCII).
pub fn filler(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 32);
    while s.len() < n {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push(if rng.below(9) == 0 { '\n' } else { ' ' });
    }
    s.truncate(n);
    s
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Size of a file or a whole directory tree (bytes, files).
pub fn du(p: &Path) -> (u64, u64) {
    let Ok(md) = std::fs::symlink_metadata(p) else { return (0, 0) };
    if md.is_file() {
        return (md.len(), 1);
    }
    let mut total = (0, 0);
    if md.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let (b, n) = du(&e.path());
            total.0 += b;
            total.1 += n;
        }
    }
    total
}

/// The database plus its -wal and -shm files.
pub fn db_size(db: &Path) -> u64 {
    ["", "-wal", "-shm"].iter().map(|s| du(Path::new(&format!("{}{s}", db.display()))).0).sum()
}

pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak RSS (VmHWM) to the current RSS; false when the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub struct GenStats {
    pub sessions: usize,
    pub messages: u64,
    pub parts: u64,
    pub part_bytes: u64,
    pub big_parts: u64,
    pub projects: usize,
    pub ms: f64,
    pub largest: (String, usize),
}

/// Machine A's database: `sessions` sessions, `messages` messages and about `parts` parts.
pub fn generate(db: &Path, sessions: usize, messages: usize, parts: usize, part_bytes: Option<usize>) -> GenStats {
    let t = Instant::now();
    create_test_db(db).unwrap();
    let mut conn = Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=OFF").unwrap();
    let mut rng = Rng(0x5E55_1045);
    assert!(messages >= 2 * sessions, "--messages must be at least 2 per session");
    assert!(parts >= 2 * messages, "--parts must be at least 2 per message");

    // Messages per session: skewed weights (many short sessions, a few long ones), scaled so the
    // total is exact; at least 2 (a user + assistant exchange).
    let w: Vec<f64> = (0..sessions).map(|_| { let u = rng.unit(); 0.15 + u * u * u }).collect();
    let wsum: f64 = w.iter().sum();
    let mut msgs: Vec<usize> = w.iter().map(|x| ((x / wsum) * messages as f64).round().max(2.0) as usize).collect();
    let diff = messages as i64 - msgs.iter().sum::<usize>() as i64;
    let imax = (0..sessions).max_by_key(|&i| msgs[i]).unwrap();
    msgs[imax] = (msgs[imax] as i64 + diff).max(2) as usize;
    // Keep the last session short so the parts total ends close to the target.
    let ilast = sessions - 1;
    let imin = (0..sessions).min_by_key(|&i| msgs[i]).unwrap();
    msgs.swap(ilast, imin);

    // Share of tool parts given a big output, tuned for a ~1 KiB average part (see the header).
    let big_share = 0.33;
    let (mut m_rem, mut p_rem) = (messages as i64, parts as i64);
    let mut tx_stats = GenStats { sessions, messages: 0, parts: 0, part_bytes: 0, big_parts: 0, projects: 40, ms: 0.0, largest: (String::new(), 0) };
    let tx = conn.transaction().unwrap();
    for (i, &m) in msgs.iter().enumerate() {
        // Parts per message: error diffusion towards the target, with jitter except near the end.
        let ideal = p_rem as f64 / m_rem as f64;
        let jitter = if sessions - i > 50 { (rng.unit() - 0.5) * 3.0 } else { 0.0 };
        let ppm = (ideal + jitter).round().clamp(2.0, 7.0) as usize;
        m_rem -= m as i64;
        p_rem -= (m * ppm) as i64;
        let u = rng.unit();
        let project = format!("prj_{:040x}", ((u * u * 40.0) as u64 + 1) * 0x1_0000_0001);
        let sid = format!("ses_{:012x}bench{i:05}", 0x1a2b_3c4d_5e6fu64 + i as u64 * 7919);
        let pb = part_bytes.unwrap_or(100 + rng.below(201) as usize);
        insert_fake_session(&tx, &project, &sid, m, ppm, pb).unwrap();
        if m > tx_stats.largest.1 {
            tx_stats.largest = (sid.clone(), m);
        }
        // Big tool outputs.
        let tool_ids: Vec<String> = {
            let mut st = tx.prepare_cached("SELECT id FROM part WHERE session_id = ?1 AND json_extract(data, '$.type') = 'tool'").unwrap();
            st.query_map([&sid], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let mut up = tx.prepare_cached("UPDATE part SET data = json_set(data, '$.state.output', ?2) WHERE id = ?1").unwrap();
        for id in tool_ids {
            if rng.unit() < big_share {
                let n = (2048.0 * 25f64.powf(rng.unit())) as usize; // 2-50 KiB, log-uniform
                up.execute(params![id, filler(&mut rng, n)]).unwrap();
                tx_stats.big_parts += 1;
            }
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let q = |sql: &str| -> u64 { conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64 };
    tx_stats.messages = q("SELECT count(*) FROM message");
    tx_stats.parts = q("SELECT count(*) FROM part");
    tx_stats.part_bytes = q("SELECT sum(length(data)) FROM part");
    tx_stats.projects = q("SELECT count(*) FROM project") as usize;
    tx_stats.ms = t.elapsed().as_secs_f64() * 1000.0;
    tx_stats
}

/// Appends a user + assistant exchange (2 messages, 5 parts, one a 4 KiB tool output) to `sid`.
pub fn continue_session(db: &Path, sid: &str) {
    let mut c = Connection::open(db).unwrap();
    c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    let t: i64 = c.query_row("SELECT time_updated FROM session WHERE id = ?1", [sid], |r| r.get::<_, i64>(0)).unwrap() + 60_000;
    let mut rng = Rng(7);
    let tx = c.transaction().unwrap();
    let (u, a) = (format!("msg_zzbench{t}u"), format!("msg_zzbench{t}a"));
    let user = json!({"role": "user", "time": {"created": t}, "agent": "build",
        "model": {"providerID": "fake", "modelID": "m"}, "summary": {"diffs": []}});
    let asst = json!({"parentID": u, "role": "assistant", "mode": "build", "agent": "build", "cost": 0.001,
        "path": {"cwd": "/", "root": "/"}, "modelID": "m", "providerID": "fake",
        "tokens": {"total": 30, "input": 20, "output": 10, "reasoning": 0, "cache": {"write": 0, "read": 0}},
        "time": {"created": t + 1000, "completed": t + 5000}, "finish": "stop"});
    for (id, off, data) in [(&u, 0, &user), (&a, 1000, &asst)] {
        tx.execute("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
            params![id, sid, t + off, data.to_string()]).unwrap();
    }
    let parts = [
        (&u, json!({"type": "text", "text": "Now run the tests again and fix what fails."})),
        (&a, json!({"type": "step-start", "snapshot": "0123456789abcdef0123456789abcdef01234567"})),
        (&a, json!({"type": "tool", "tool": "bash", "callID": "call_zz", "state": {"status": "completed",
            "input": {"command": "cargo test", "description": "run the tests"}, "output": filler(&mut rng, 4096),
            "metadata": {"output": "", "exit": 0, "truncated": false}, "title": "cargo test",
            "time": {"start": t + 2000, "end": t + 4000}}})),
        (&a, json!({"type": "text", "text": "All tests pass now."})),
        (&a, json!({"type": "step-finish", "reason": "stop", "snapshot": "0123456789abcdef0123456789abcdef01234567",
            "tokens": {"total": 30, "input": 20, "output": 10, "reasoning": 0, "cache": {"write": 0, "read": 0}}, "cost": 0.001})),
    ];
    for (j, (mid, data)) in parts.iter().enumerate() {
        tx.execute("INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![format!("prt_zzbench{t}{j:02}"), mid, sid, t + 10 * j as i64, data.to_string()]).unwrap();
    }
    // Like OpenCode: the session's totals include the new assistant message.
    tx.execute(
        "UPDATE session SET time_updated = ?2, cost = cost + 0.001, tokens_input = tokens_input + 20, tokens_output = tokens_output + 10 WHERE id = ?1",
        params![sid, t + 6000],
    )
    .unwrap();
    tx.commit().unwrap();
}


/// Adds one long session to `db` (in project `project`): messages of 4 parts each whose text
/// parts are `part_bytes` long, until the session's message and part data reach `target_bytes`.
/// Returns the session id and its data bytes.
pub fn add_long_session(db: &Path, project: &str, target_bytes: usize, part_bytes: usize) -> (String, u64) {
    let mut conn = Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    let sid = "ses_ffffffffffffbenchlong".to_string();
    // One message of 4 parts carries about 3 parts of `part_bytes` (measured), plus row overhead.
    let per_message = 3 * part_bytes + 2000;
    let n = target_bytes.div_ceil(per_message).max(2);
    let tx = conn.transaction().unwrap();
    insert_fake_session(&tx, project, &sid, n, 4, part_bytes).unwrap();
    tx.commit().unwrap();
    let bytes: i64 = conn
        .query_row(
            "SELECT (SELECT coalesce(sum(length(data)), 0) FROM part WHERE session_id = ?1) + (SELECT coalesce(sum(length(data)), 0) FROM message WHERE session_id = ?1)",
            params![sid],
            |r| r.get(0),
        )
        .unwrap();
    (sid, bytes as u64)
}
