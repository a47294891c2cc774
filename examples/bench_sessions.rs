//! Benchmark of session sync on a heavy user's OpenCode database, through a folder remote: time,
//! peak memory and items/s of the first export, an idle sync, an incremental sync after one session
//! changed, and the first import on a new machine. A benchmark, not a test: it always exits 0
//! unless the sync itself fails or machine B's copy differs from A's.
//!
//! Run: `cargo run --release --example bench_sessions -- [--sessions 3000] [--messages 64000]
//! [--parts 274000] [--part-bytes N] [--json] [--keep]`.
//!
//! The database (machine A) is generated with `create_test_db` + `insert_fake_session` in one
//! transaction: the sessions spread over 40 projects (skewed: a few projects hold most sessions),
//! messages per session skewed too (2 to ~100), parts per message 2-7 per session, chosen so the
//! totals are the requested ones (parts within a few of the target). Part sizes: the helper's small
//! parts (text of `--part-bytes`, default 100-300 B per session, step-start/step-finish rows) and a
//! share of the tool parts given a large output (2-50 KiB, log-uniform), tuned so the average
//! part row (`length(part.data)`) is about 1 KiB.
//!
//! A sync whose rounds stop bringing new items (the same documents pulled and refused again) is
//! stopped after 5 such rounds and reported as STALLED (the library would go on to `MAX_ROUNDS`).
//!
//! Peak memory per phase: the peak RSS is reset before each phase (`5` into /proc/self/clear_refs)
//! and `VmHWM` read after it (Linux only; `?` elsewhere).

use std::path::{Path, PathBuf};
use std::time::Instant;

use oc_sync::paths::{EnvSnapshot, Paths};
use oc_sync::source::opencode_db::{OpencodeDb, create_test_db};
use oc_sync::sync::run::{SyncOptions, SyncReport};
use rusqlite::Connection;
use serde_json::{Value, json};

#[path = "support/heavy_corpus.rs"]
mod heavy_corpus;
use heavy_corpus::*;

/// One simulated machine: its HOME, environment and loaded configuration.
struct Machine {
    paths: Paths,
    env: EnvSnapshot,
    config: oc_sync::config::Config,
}

impl Machine {
    fn new(home: PathBuf, id: &str, remote: &Path) -> Machine {
        write(&home.join(".config/opencode/opencode-sync.json"), serde_json::to_string_pretty(&json!({ "machineId": id })).unwrap().as_bytes());
        let env = EnvSnapshot::new(home.clone(), [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let paths = Paths::resolve(&env).expect("paths");
        std::fs::create_dir_all(paths.opencode_db.parent().unwrap()).unwrap();
        let config = oc_sync::config::load(&paths, &env, None).expect("config").config;
        Machine { paths, env, config }
    }
    fn db(&self) -> &Path {
        &self.paths.opencode_db
    }
    fn count(&self, table: &str) -> i64 {
        let c = Connection::open(self.db()).unwrap();
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }
}

struct Phase {
    name: &'static str,
    pushed: usize,
    pulled: usize,
    /// Bytes of the documents pushed or pulled (their sizes in the remote's manifest).
    bytes: u64,
    commits: usize,
    ms: f64,
    hwm_kib: Option<u64>,
    rss_kib: Option<u64>,
    remote_bytes: u64,
    db_bytes: u64,
}

impl Phase {
    fn items(&self) -> usize {
        self.pushed + self.pulled
    }
    fn per_s(&self, n: f64) -> f64 {
        if self.ms > 0.0 { n / (self.ms / 1000.0) } else { 0.0 }
    }
    fn to_json(&self) -> Value {
        json!({
            "phase": self.name, "pushed": self.pushed, "pulled": self.pulled, "docBytes": self.bytes,
            "commits": self.commits, "ms": (self.ms * 10.0).round() / 10.0,
            "itemsPerS": self.per_s(self.items() as f64).round(), "mbPerS": (self.per_s(self.bytes as f64) / 1e6 * 100.0).round() / 100.0,
            "vmHwmKiB": self.hwm_kib, "vmRssKiB": self.rss_kib, "remoteBytes": self.remote_bytes, "dbBytes": self.db_bytes,
        })
    }
}

fn manifests(remote: &Path) -> usize {
    std::fs::read_dir(remote.join("manifests")).map(|d| d.count()).unwrap_or(0)
}

/// Sizes of the items in the remote's current manifest (key → size).
fn head_sizes(remote: &Path) -> std::collections::HashMap<String, u64> {
    let Ok(head) = std::fs::read_to_string(remote.join("HEAD")) else { return Default::default() };
    let m: Value = serde_json::from_slice(&std::fs::read(remote.join("manifests").join(format!("{}.json", head.trim()))).unwrap()).unwrap();
    m["entries"].as_object().unwrap().iter().map(|(k, e)| (k.clone(), e["size"].as_u64().unwrap_or(0))).collect()
}

/// Rounds in a row without a new item after which a sync counts as stalled.
const STALL_ROUNDS: usize = 5;

fn measure(name: &'static str, m: &Machine, remote: &Path) -> Phase {
    let before = manifests(remote);
    reset_peak();
    let t = Instant::now();
    // Rounds are counted through the progress callback (called after each round but the last);
    // a sync whose rounds stop moving items is stopped (by a panic caught here) and reported.
    let rounds = std::cell::Cell::new(1usize);
    let stalled = std::cell::Cell::new(0usize);
    let last = std::cell::Cell::new(0usize);
    let skipped = std::cell::RefCell::new(Vec::<String>::new());
    let progress = |r: &SyncReport| {
        rounds.set(rounds.get() + 1);
        // Distinct items: a round that pulls again what an earlier round pulled (and could not
        // apply) is no progress.
        let moved = r.pushed.iter().chain(&r.pulled).chain(&r.merged).collect::<std::collections::HashSet<_>>().len();
        if moved == last.get() { stalled.set(stalled.get() + 1) } else { stalled.set(0) }
        last.set(moved);
        if let Some(first) = r.skipped.first() {
            *skipped.borrow_mut() = vec![first.clone(); r.skipped.len()];
        }
        if stalled.get() >= STALL_ROUNDS {
            std::panic::panic_any(format!("no progress for {STALL_ROUNDS} rounds"));
        }
    };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        oc_sync::sync::sync_now(&m.paths, &m.config, &m.env, &SyncOptions::default(), oc_sync::sync::Hooks { on_progress: Some(&progress), ..Default::default() })
    }));
    let report: SyncReport = match run {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("{name}: sync failed: {e}"),
        Err(payload) if !payload.downcast_ref::<String>().is_some_and(|m| m.starts_with("no progress")) => {
            std::panic::resume_unwind(payload)
        }
        Err(_) => {
            eprintln!(
                "  [{name}] STALLED: {} rounds, the last {STALL_ROUNDS} moved no new item ({} distinct items; skipped: {}); stopped after {:.1} s",
                rounds.get(), last.get(), skipped.borrow().len(), t.elapsed().as_secs_f64()
            );
            if let Some(first) = skipped.borrow().first() {
                eprintln!("  [{name}] first of the items not applied: {first}");
            }
            SyncReport { pulled: vec!["(stalled)".into(); last.get()], ..Default::default() }
        }
    };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    eprintln!("  [{name}] done in {:.1} s", ms / 1000.0);
    let (hwm_kib, rss_kib) = (proc_status_kib("VmHWM:"), proc_status_kib("VmRSS:"));
    let sizes = head_sizes(remote);
    let bytes = report.pushed.iter().chain(&report.pulled).filter_map(|k| sizes.get(k)).sum();
    let moved: Vec<String> = report.pushed.iter().map(|k| format!("push {k}")).chain(report.pulled.iter().map(|k| format!("pull {k}"))).collect();
    eprintln!("  [{name}] {} pushed, {} pulled, {} rounds, {} commits, VmHWM {}", report.pushed.len(), report.pulled.len(), rounds.get(), manifests(remote) - before, kmib(hwm_kib));
    if !moved.is_empty() && moved.len() <= 4 {
        eprintln!("  [{name}] {}", moved.join(", "));
    }
    if !report.conflicts.is_empty() || !report.blocked.is_empty() || !report.deferred.is_empty() {
        eprintln!("{name}: {} conflicts, blocked {:?}, deferred {:?}", report.conflicts.len(), report.blocked, report.deferred);
    }
    Phase {
        name, pushed: report.pushed.len(), pulled: report.pulled.len(), bytes, commits: manifests(remote) - before, ms,
        hwm_kib, rss_kib, remote_bytes: du(remote).0, db_bytes: db_size(m.db()),
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}
fn kmib(k: Option<u64>) -> String {
    k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
}

fn main() {
    let (mut sessions, mut messages, mut parts) = (3000usize, 64000usize, 274000usize);
    let mut part_bytes = None;
    let (mut as_json, mut keep) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> usize { args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{what} N")) };
        match a.as_str() {
            "--sessions" => sessions = num("--sessions"),
            "--messages" => messages = num("--messages"),
            "--parts" => parts = num("--parts"),
            "--part-bytes" => part_bytes = Some(num("--part-bytes")),
            "--json" => as_json = true,
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("cargo run --release --example bench_sessions -- [--sessions 3000] [--messages 64000] [--parts 274000] [--part-bytes N] [--json] [--keep]");
                return;
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }

    let mut dir = Some(tempfile::tempdir().unwrap());
    let root = if keep { dir.take().unwrap().keep() } else { dir.as_ref().unwrap().path().to_path_buf() };
    let remote = root.join("remote");
    let a = Machine::new(root.join("home-a"), "bench-a", &remote);
    let b = Machine::new(root.join("home-b"), "bench-b", &remote);
    create_test_db(b.db()).unwrap();

    let g = generate(a.db(), sessions, messages, parts, part_bytes);
    let db_a = db_size(a.db());
    eprintln!("  generated {} sessions, {} messages, {} parts: {} in {:.1} s", g.sessions, g.messages, g.parts, mib(db_a), g.ms / 1000.0);
    let baseline = proc_status_kib("VmHWM:");
    let clear_ok = reset_peak();

    let mut phases = Vec::new();
    phases.push(measure("first export (A)", &a, &remote));
    phases.push(measure("idle sync (A)", &a, &remote));
    let t = Instant::now();
    continue_session(a.db(), &g.largest.0);
    let edit_ms = t.elapsed().as_secs_f64() * 1000.0;
    phases.push(measure("one session changed (A)", &a, &remote));
    phases.push(measure("first import (B, new)", &b, &remote));
    phases.push(measure("idle sync (B)", &b, &remote));

    // B must now hold A's sessions, messages and parts, and the same documents.
    let t = Instant::now();
    let counts: Vec<(&str, i64, i64)> =
        ["project", "session", "message", "part", "todo"].iter().map(|t| (*t, a.count(t), b.count(t))).collect();
    let (da, db) = (OpencodeDb::open(a.db()).unwrap(), OpencodeDb::open(b.db()).unwrap());
    // Every message item (`messages/<p>/<s>/<m>.json`: one message with its parts), byte for byte.
    let ids = da.message_ids().unwrap();
    let ids_same = ids == db.message_ids().unwrap();
    let mut differ = Vec::new();
    for (sid, mid) in &ids {
        if da.read_message_doc(sid, mid).unwrap() != db.read_message_doc(sid, mid).unwrap() {
            differ.push(format!("{sid}/{mid}"));
        }
    }
    let sample_same = ids_same
        && ids.iter().filter(|(s, _)| *s == g.largest.0).all(|(s, m)| da.read_message_doc(s, m).unwrap() == db.read_message_doc(s, m).unwrap());
    let verify_ms = t.elapsed().as_secs_f64() * 1000.0;
    let counts_ok = counts.iter().all(|(_, x, y)| x == y);
    let ok = counts_ok && ids_same && differ.is_empty() && sample_same;

    let (remote_bytes, remote_files) = du(&remote);
    if as_json {
        let out = json!({
            "database": { "sessions": g.sessions, "messages": g.messages, "parts": g.parts, "projects": g.projects,
                "partDataBytes": g.part_bytes, "avgPartBytes": g.part_bytes / g.parts.max(1), "bigToolParts": g.big_parts,
                "dbBytes": db_a, "generateMs": g.ms.round(), "changedSession": g.largest.0, "changedSessionMessages": g.largest.1 },
            "baselineVmHwmKiB": baseline, "peakResetWorks": clear_ok,
            "phases": phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
            "remote": { "bytes": remote_bytes, "files": remote_files, "manifests": manifests(&remote) },
            "verify": { "counts": counts.iter().map(|(t, x, y)| json!({"table": t, "a": x, "b": y})).collect::<Vec<_>>(),
                "messageItemsDiffer": differ.len(), "messageIdsSame": ids_same, "sampleIdentical": sample_same, "ok": ok, "ms": verify_ms.round() },
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else {
        println!("oc-sync sessions benchmark (folder remote, {} CPUs)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        println!(
            "database A: {} sessions, {} messages, {} parts in {} projects; part data {} (avg {} B/part, {} tool parts of 2-50 KiB)",
            g.sessions, g.messages, g.parts, g.projects, mib(g.part_bytes), g.part_bytes / g.parts.max(1), g.big_parts
        );
        println!("  file {} (generated in {:.1} s); process VmHWM after generating: {}", mib(db_a), g.ms / 1000.0, kmib(baseline));
        println!(
            "  changed session for the incremental phase: {} ({} messages before; +2 messages, +5 parts, edit took {edit_ms:.0} ms)\n",
            g.largest.0, g.largest.1
        );
        if !clear_ok {
            println!("  (cannot reset the peak RSS: /proc/self/clear_refs not writable; VmHWM is the process peak so far)\n");
        }
        println!(
            "{:<24} {:>7} {:>7} {:>11} {:>7} {:>9} {:>9} {:>7} {:>11} {:>11} {:>11} {:>11}",
            "phase", "pushed", "pulled", "doc bytes", "commits", "time s", "items/s", "MB/s", "peak RSS", "RSS after", "remote", "local DB"
        );
        for p in &phases {
            println!(
                "{:<24} {:>7} {:>7} {:>11} {:>7} {:>9.2} {:>9.0} {:>7.1} {:>11} {:>11} {:>11} {:>11}",
                p.name, p.pushed, p.pulled, mib(p.bytes), p.commits, p.ms / 1000.0, p.per_s(p.items() as f64),
                p.per_s(p.bytes as f64) / 1e6, kmib(p.hwm_kib), kmib(p.rss_kib), mib(p.remote_bytes), mib(p.db_bytes)
            );
        }
        println!("\nremote folder: {} in {remote_files} files, {} manifests (one per commit)", mib(remote_bytes), manifests(&remote));
        println!("items = documents (sessions/<p>/<s>, messages/<p>/<s>/<message>, todos/<p>/<s>, projects/<p> and the sync config); doc bytes = their sizes in the manifest;");
        println!("commits = new manifests in the remote; peak RSS = VmHWM of the phase (reset before it), RSS after = VmRSS at its end");
        println!("\nverify ({verify_ms:.0} ms):");
        for (t, x, y) in &counts {
            println!("  {:<8} A {x:>8}  B {y:>8}  {}", t, if x == y { "same" } else { "DIFFERENT" });
        }
        println!(
            "  message items: {} of {} identical{}; sample {} ({} messages): {}",
            ids.len() - differ.len(), ids.len(), if ids_same { "" } else { " (the message lists DIFFER)" }, g.largest.0, g.largest.1 + 2,
            if sample_same { "byte-identical" } else { "DIFFERENT" }
        );
        println!("{}", if ok { "OK: machine B has machine A's sessions" } else { "FAIL: machine B differs from A" });
        if keep {
            println!("kept: {}", root.display());
        }
    }
    drop(dir);
    if !ok {
        std::process::exit(1);
    }
}
