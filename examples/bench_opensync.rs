//! Benchmark of a first OpenSync export: requests and wall time to send S sessions with M messages
//! each to the in-process fake OpenSync (which follows the real server's code) answering every
//! request after `--latency-ms` (a deployment's round trip), three ways:
//!
//! 1. batch only (`/sync/batch`, 100 items a request, no `createdAt`: what the batch endpoint takes),
//!    for comparison: the server stamps every session and message with the upload time;
//! 2. the export's mix (`/sync/session` and `/sync/message` with `createdAt`) over 1 connection;
//! 3. the same mix over `--workers` connections (default: the export's own).
//!
//! For each it prints requests, seconds, and how many sessions and messages the fake holds at their
//! original time. A benchmark, not a test: it always exits 0.
//!
//! Run: `cargo run --release --example bench_opensync -- [--sessions 300] [--messages 10]
//! [--latency-ms 50] [--workers 6]`.

use std::time::Instant;

use fake_opensync::{FakeOpenSync, FakeOptions};
use oc_sync::opensync::client::{self, OpenSyncClient};
use oc_sync::opensync::{export, payload, state};
use oc_sync::paths::{EnvSnapshot, Paths};
use oc_sync::source::opencode_db::{OpencodeDb, create_test_db, insert_fake_session};
use serde_json::Value;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (sessions, messages) the fake holds with the database's own createdAt.
fn at_original_time(fake: &FakeOpenSync, db: &rusqlite::Connection) -> (usize, usize) {
    let time = |sql: &str, id: &Value| -> Option<i64> { db.query_row(sql, [id.as_str().unwrap_or_default()], |r| r.get(0)).ok() };
    let s = fake.sessions().iter().filter(|s| s["createdAt"].as_i64() == time("SELECT time_created FROM session WHERE id = ?1", &s["externalId"])).count();
    let m = fake.messages().iter().filter(|m| m["createdAt"].as_i64() == time("SELECT time_created FROM message WHERE id = ?1", &m["externalId"])).count();
    (s, m)
}

fn batch_only(paths: &Paths, client: &OpenSyncClient) -> usize {
    let db = OpencodeDb::open(&paths.opencode_db).unwrap();
    let opts = payload::Options::default();
    let (mut sessions, mut messages) = (Vec::new(), Vec::new());
    for s in db.session_signals().unwrap() {
        let doc = db.read_session_doc(&s.id).unwrap().unwrap();
        let mdoc = db.read_messages_doc(&s.id).unwrap();
        sessions.push(payload::for_batch(&payload::session_payload(&doc, None, mdoc.as_deref(), &opts).unwrap()));
        for m in payload::message_payloads(&s.id, mdoc.as_deref().unwrap_or(b"{}"), &opts).unwrap_or_default() {
            messages.push(payload::for_batch(&m));
        }
    }
    let mut requests = 0;
    for c in sessions.chunks(100) {
        client.batch(c, &[]).unwrap();
        requests += 1;
    }
    for c in messages.chunks(100) {
        client.batch(&[], c).unwrap();
        requests += 1;
    }
    requests
}

fn main() {
    let (n_sessions, n_messages, latency, workers) = (arg("--sessions", 300), arg("--messages", 10), arg("--latency-ms", 50), arg("--workers", export::WORKERS));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let fake = rt.block_on(FakeOpenSync::start(FakeOptions { latency_ms: latency as u64, ..Default::default() })).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = EnvSnapshot::new(dir.path().to_path_buf(), [("OC_SYNC_OPENSYNC_RETRY_MS", "5".to_string())]);
    let paths = Paths::resolve(&env).unwrap();
    std::fs::create_dir_all(paths.opencode_db.parent().unwrap()).unwrap();
    create_test_db(&paths.opencode_db).unwrap();
    let db = rusqlite::Connection::open(&paths.opencode_db).unwrap();
    for i in 0..n_sessions {
        insert_fake_session(&db, &format!("proj{}", i % 20), &format!("ses_{i:05}"), n_messages, 3, 200).unwrap();
    }
    let client = OpenSyncClient::new(&fake.url, fake.key(), client::retry_delay(&env)).unwrap();
    println!("first export of {n_sessions} sessions, {} messages; {latency} ms per request", n_sessions * n_messages);
    let t = Instant::now();
    let requests = batch_only(&paths, &client);
    let secs = t.elapsed().as_secs_f64();
    let (s, m) = at_original_time(&fake, &db);
    println!("batch only            {requests:>6} requests {secs:>7.2} s   at original time: {s} sessions, {m} messages");
    for w in [1, workers] {
        fake.reset();
        let _ = std::fs::remove_file(state::file(&paths));
        let t = Instant::now();
        let r = export::run(&paths, &client, export::Mode::Changed, &payload::Options::default(), w).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let (s, m) = at_original_time(&fake, &db);
        println!(
            "mix, {w} connection(s) {:>6} requests {secs:>7.2} s   at original time: {s} sessions, {m} messages (stored {} / {}, refused {})",
            r.requests,
            r.sessions_stored,
            r.messages_stored,
            r.refused.len()
        );
    }
}
