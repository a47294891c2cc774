//! Benchmark of repository format 2's targets (issue 16) on a heavy user's history, through the
//! in-process fake GitHub: requests, body bytes, wall time and the peak RSS of each sync, run as
//! the real `oc-sync sync` command in a child process (so the peak RSS is the whole oc-sync
//! process, not the fake's). A benchmark, not a test: it prints PASS/MISS per target, exit 0.
//!
//! Build, then run (release):
//! `cargo build --release --bin oc-sync --example bench_heavy && target/release/examples/bench_heavy
//! [--sessions 600] [--messages 12400] [--parts 49600] [--long-mb 22] [--json]`.
//!
//! Corpus (deterministic): machine A's OpenCode database from `support/heavy_corpus.rs` (sessions
//! over 40 projects, skewed lengths, 2-7 parts per message, a third of the tool parts with a 2-50
//! KiB output) plus ONE long session of `--long-mb` MB, and 120 config files (agents, commands,
//! skills: 0.5-8 KiB). Phases: A's first push; A idle; B's first pull (a new machine with an empty
//! database), timed against `git clone --depth 1` of the same repository; B idle; A appends one
//! 5 KiB message to the long session and pushes; B pulls it; A edits one config file and pushes;
//! B pulls it; A pushes a file B does not take (a category B has off) and B syncs once, then idles;
//! A appends 10 more messages (one sync each) and the repository's growth per message is printed
//! (packed with `git gc`, as a git host stores it, and as loose objects).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fake_github::{FakeGithub, FakeOptions};
use serde_json::{Value, json};

#[path = "support/heavy_corpus.rs"]
mod heavy_corpus;
use heavy_corpus::*;

const OWNER_REPO: &str = ".opencode-sync";

struct Machine {
    _dir: tempfile::TempDir,
    home: PathBuf,
    db: PathBuf,
}

impl Machine {
    fn new(id: &str, extra: Value) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        let mut cfg = json!({ "machineId": id });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        write(&home.join(".config/opencode/opencode-sync.json"), serde_json::to_string_pretty(&cfg).unwrap().as_bytes());
        let db = home.join(".local/share/opencode/opencode.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        Machine { _dir: dir, home, db }
    }
}

/// One `oc-sync sync --json` in a child process: (report, wall ms, peak RSS KiB of the child).
fn run_sync(bin: &Path, gh: &FakeGithub, m: &Machine) -> (Value, f64, u64) {
    let t = Instant::now();
    let child = Command::new(bin)
        .args(["sync", "--json"])
        .env_clear()
        .env("HOME", &m.home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITHUB_TOKEN", gh.token())
        .env("GITHUB_API_URL", &gh.url)
        .env("OC_SYNC_OPENCODE", "/nonexistent/opencode")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run oc-sync (build it: cargo build --release --bin oc-sync)");
    let pid = child.id() as libc::pid_t;
    // ru_maxrss would include this process's own RSS (Linux keeps the forked image's peak across
    // exec), so the child's peak is read from its VmHWM while it runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                {
                    peak = peak.max(kib);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak
        })
    };
    let out = child.wait_with_output_rusage(pid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polled = poller.join().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (status, stdout, stderr, _maxrss_with_parent) = out;
    let maxrss = polled;
    if !(status == 0 || status == 3) {
        panic!("oc-sync sync failed ({status}): {}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    }
    let report: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("sync --json: {e}: {}", String::from_utf8_lossy(&stdout)));
    (report, ms, maxrss)
}

trait WaitRusage {
    /// Waits for the child and returns (exit code, stdout, stderr, peak RSS in KiB).
    fn wait_with_output_rusage(self, pid: libc::pid_t) -> (i32, Vec<u8>, Vec<u8>, u64);
}

impl WaitRusage for std::process::Child {
    fn wait_with_output_rusage(mut self, pid: libc::pid_t) -> (i32, Vec<u8>, Vec<u8>, u64) {
        use std::io::Read;
        let mut out_pipe = self.stdout.take().unwrap();
        let mut err_pipe = self.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            err_pipe.read_to_end(&mut v).ok();
            v
        });
        let mut stdout = Vec::new();
        out_pipe.read_to_end(&mut stdout).ok();
        let stderr = err_reader.join().unwrap();
        let mut status = 0;
        // SAFETY: plain libc call on our own child's pid; `self` is not waited on afterwards.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        assert_eq!(r, pid, "wait4");
        std::mem::forget(self);
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
        (code, stdout, stderr, ru.ru_maxrss as u64)
    }
}

struct Phase {
    name: String,
    requests: u64,
    not_modified: u64,
    sent: u64,
    received: u64,
    ms: f64,
    rss_kib: u64,
    items: usize,
    endpoints: Vec<String>,
}

fn measure(name: &str, bin: &Path, gh: &FakeGithub, m: &Machine) -> Phase {
    gh.clear_requests();
    let (report, ms, rss_kib) = run_sync(bin, gh, m);
    let reqs = gh.requests();
    let (requests, sent, received) = gh.traffic();
    let count = |k: &str| report[k].as_array().map_or(0, Vec::len);
    let items = count("pushed") + count("pulled") + count("merged");
    let mut endpoints: Vec<String> = Vec::new();
    for r in &reqs {
        let path = r.path.split('?').next().unwrap_or("");
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let what = match segs.as_slice() {
            ["_codeload", ..] => "codeload".to_string(),
            ["repos", _, _, "git", kind, ..] => kind.to_string(),
            ["repos", _, _, kind, ..] => kind.to_string(),
            ["repos", _, _] => "repo".to_string(),
            _ => path.to_string(),
        };
        endpoints.push(format!("{} {what} {}", r.method, r.status));
    }
    let not_modified = reqs.iter().filter(|r| r.status == 304).count() as u64;
    let p = Phase { name: name.to_string(), requests, not_modified, sent, received, ms, rss_kib, items, endpoints };
    eprintln!(
        "  {:<44} {:>4} req {:>10} sent {:>10} recv {:>8.0} ms  RSS {:>6.1} MiB  items {}",
        p.name, p.requests, kib(p.sent), kib(p.received), p.ms, p.rss_kib as f64 / 1024.0, p.items
    );
    p
}

fn kib(b: u64) -> String {
    if b >= 10 << 20 { format!("{:.1} MiB", b as f64 / 1048576.0) } else { format!("{:.1} KiB", b as f64 / 1024.0) }
}

/// Bytes of the repository's objects on disk (loose and packed), from `git count-objects -v`.
fn repo_bytes(git_dir: &Path) -> u64 {
    let out = Command::new("git").arg("--git-dir").arg(git_dir).args(["count-objects", "-v"]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let kib = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    (kib("size:") + kib("size-pack:")) * 1024
}

/// Bytes of the repository once packed (`git gc` as a git host does), from `git count-objects -v`.
fn repo_bytes_packed(git_dir: &Path) -> u64 {
    let st = Command::new("git").arg("--git-dir").arg(git_dir).args(["gc", "--quiet", "--prune=now"]).status().unwrap();
    assert!(st.success(), "git gc");
    repo_bytes(git_dir)
}

/// Appends one assistant message (a step, a 4 KiB tool output, a text answer, the step's end:
/// about 5 KiB) to session `sid`, as OpenCode does; returns the message's row bytes.
fn append_message(db: &Path, sid: &str, n: usize) -> u64 {
    let mut c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    let t: i64 = c.query_row("SELECT max(time_created) FROM message WHERE session_id = ?1", [sid], |r| r.get::<_, i64>(0)).unwrap() + 60_000;
    let mut rng = Rng(1000 + n as u64);
    let tx = c.transaction().unwrap();
    let mid = format!("msg_zzbenchone{t}");
    let data = json!({"role": "assistant", "mode": "build", "agent": "build", "cost": 0.001, "path": {"cwd": "/", "root": "/"},
        "modelID": "m", "providerID": "fake", "tokens": {"total": 30, "input": 20, "output": 10, "reasoning": 0, "cache": {"write": 0, "read": 0}},
        "time": {"created": t, "completed": t + 4000}, "finish": "stop"});
    tx.execute("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)", rusqlite::params![mid, sid, t, data.to_string()]).unwrap();
    let mut bytes = data.to_string().len() as u64;
    let parts = [
        json!({"type": "step-start", "snapshot": "0123456789abcdef0123456789abcdef01234567"}),
        json!({"type": "tool", "tool": "bash", "callID": format!("call_{t}"), "state": {"status": "completed",
            "input": {"command": "cargo test", "description": "run the tests"}, "output": filler(&mut rng, 4096),
            "metadata": {"output": "", "exit": 0, "truncated": false}, "title": "cargo test", "time": {"start": t + 1000, "end": t + 3000}}}),
        json!({"type": "text", "text": "The tests pass now."}),
        json!({"type": "step-finish", "reason": "stop", "snapshot": "0123456789abcdef0123456789abcdef01234567",
            "tokens": {"total": 30, "input": 20, "output": 10, "reasoning": 0, "cache": {"write": 0, "read": 0}}, "cost": 0.001}),
    ];
    for (j, p) in parts.iter().enumerate() {
        let text = p.to_string();
        bytes += text.len() as u64;
        tx.execute("INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            rusqlite::params![format!("prt_zzbenchone{t}{j:02}"), mid, sid, t + 10 * j as i64, text]).unwrap();
    }
    tx.execute("UPDATE session SET time_updated = ?2, cost = cost + 0.001, tokens_input = tokens_input + 20, tokens_output = tokens_output + 10 WHERE id = ?1",
        rusqlite::params![sid, t + 5000]).unwrap();
    tx.commit().unwrap();
    bytes
}

/// (item files, their bytes, their header bytes) at the head of the repository's branch.
fn item_bytes(git_dir: &Path, branch: &str) -> (u64, u64, u64) {
    let ls = Command::new("git").arg("--git-dir").arg(git_dir).args(["ls-tree", "-r", "-l", branch]).output().unwrap();
    let mut files = 0;
    let mut bytes = 0;
    let mut shas = Vec::new();
    for line in String::from_utf8_lossy(&ls.stdout).lines() {
        let (meta, path) = line.split_once('\t').unwrap();
        if path.starts_with(".oc-sync/") {
            continue;
        }
        let f: Vec<&str> = meta.split_whitespace().collect();
        files += 1;
        bytes += f[3].parse::<u64>().unwrap_or(0);
        shas.push(f[2].to_string());
    }
    // Header lines: the first line of each item file.
    let mut header = 0;
    let mut cat = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["cat-file", "--batch"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for s in shas {
            writeln!(stdin, "{s}").unwrap();
        }
    });
    {
        use std::io::{BufRead, BufReader, Read};
        let mut r = BufReader::new(cat.stdout.take().unwrap());
        let mut line = String::new();
        while r.read_line(&mut line).unwrap() > 0 {
            let size: usize = line.split_whitespace().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut body = vec![0; size + 1];
            r.read_exact(&mut body).unwrap();
            header += body.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1) as u64;
            line.clear();
        }
    }
    writer.join().unwrap();
    cat.wait().unwrap();
    (files, bytes, header)
}

fn config_files(home: &Path, rng: &mut Rng) -> Vec<PathBuf> {
    let base = home.join(".config/opencode");
    write(&base.join("opencode.json"), br#"{ "$schema": "https://opencode.ai/config.json", "model": "anthropic/claude-sonnet-4-5" }"#);
    let mut out = Vec::new();
    for i in 0..120 {
        let dir = ["agent", "command", "skill"][i % 3];
        let p = if dir == "skill" { base.join(format!("skill/s{i:03}/SKILL.md")) } else { base.join(format!("{dir}/f{i:03}.md")) };
        let n = 512 + rng.below(7680) as usize;
        write(&p, format!("---\ndescription: file {i}\n---\n{}\n", filler(rng, n)).as_bytes());
        out.push(p);
    }
    out
}

/// Adds a todo to session `sid` (as OpenCode does when the agent plans).
fn add_todo(db: &Path, sid: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let now = 1_900_000_000_000i64;
    c.execute(
        "INSERT INTO todo (session_id, content, status, priority, position, time_created, time_updated) VALUES (?1, 'bench todo', 'pending', 'high', 99, ?2, ?2)",
        rusqlite::params![sid, now],
    )
    .unwrap();
}

fn main() {
    let (mut sessions, mut messages, mut parts, mut long_mb, mut as_json) = (600usize, 12400usize, 49600usize, 22usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--sessions" => sessions = num(),
            "--messages" => messages = num(),
            "--parts" => parts = num(),
            "--long-mb" => long_mb = num(),
            "--json" => as_json = true,
            _ => {
                println!("bench_heavy [--sessions N] [--messages N] [--parts N] [--long-mb N] [--json]");
                return;
            }
        }
    }
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("oc-sync");
    assert!(bin.exists(), "{} is missing: cargo build --release --bin oc-sync", bin.display());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let gh = rt.block_on(FakeGithub::start(FakeOptions::default())).expect("fake GitHub");

    // Machine A: the corpus. Machine B: a new machine (empty database), todos off (so A's todo
    // pushes are items B does not take).
    let a = Machine::new("bench-a", json!({}));
    let b = Machine::new("bench-b", json!({"sync": {"todos": false}}));
    let t = Instant::now();
    let stats = generate(&a.db, sessions, messages, parts, None);
    let (long_sid, long_bytes) = add_long_session(&a.db, "prj_00000000000000000000000000000000000000aa", long_mb << 20, 9000);
    oc_sync::source::opencode_db::create_test_db(&b.db).unwrap();
    let mut rng = Rng(42);
    let configs = config_files(&a.home, &mut rng);
    eprintln!(
        "corpus: {} sessions (+1 long of {:.1} MiB), {} messages, {} parts ({:.1} MiB of part data), {} config files; generated in {:.1} s",
        stats.sessions, long_bytes as f64 / 1048576.0, stats.messages, stats.parts, stats.part_bytes as f64 / 1048576.0, configs.len(), t.elapsed().as_secs_f64()
    );

    let mut phases = Vec::new();
    phases.push(measure("first push (A)", &bin, &gh, &a));
    let login = gh.login().to_string();
    let git_dir = gh.repo_git_dir(&login, OWNER_REPO);
    let (files, file_bytes, header_bytes) = item_bytes(&git_dir, "main");
    // A first push of many rounds uses most of a minute's budget of GitHub's content-creating
    // requests (80 a minute; oc-sync holds further pushes for up to a minute past 70): the next
    // pushes are measured once that minute is over, as they would come in real use.
    std::thread::sleep(std::time::Duration::from_secs(61));
    phases.push(measure("idle (A, right after its push)", &bin, &gh, &a));
    phases.push(measure("idle (A)", &bin, &gh, &a));
    phases.push(measure("first pull (B, new machine)", &bin, &gh, &b));
    let clone_dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let st = Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "main"])
        .arg(format!("file://{}", git_dir.display()))
        .arg(clone_dir.path().join("c"))
        .status()
        .unwrap();
    assert!(st.success(), "git clone --depth 1");
    let clone_ms = t.elapsed().as_secs_f64() * 1000.0;
    phases.push(measure("idle (B)", &bin, &gh, &b));
    append_message(&a.db, &long_sid, 1);
    phases.push(measure("push one message appended to the long session (A)", &bin, &gh, &a));
    phases.push(measure("pull it (B)", &bin, &gh, &b));
    std::fs::write(&configs[0], [std::fs::read(&configs[0]).unwrap(), b"\nOne more line.\n".to_vec()].concat()).unwrap();
    phases.push(measure("push one config edit (A)", &bin, &gh, &a));
    phases.push(measure("pull it (B) ", &bin, &gh, &b));
    phases.push(measure("idle (A, right after its push) ", &bin, &gh, &a));
    phases.push(measure("idle (A, after B pulled)", &bin, &gh, &a));
    phases.push(measure("idle (B, after its pulls)", &bin, &gh, &b));
    add_todo(&a.db, &long_sid);
    phases.push(measure("push a todo B does not take (A)", &bin, &gh, &a));
    phases.push(measure("sync (B, todos off)", &bin, &gh, &b));
    phases.push(measure("idle (B, after A pushed what B does not take)", &bin, &gh, &b));

    // Growth, as a git host stores a repository (packed; loose objects are what a push delivers
    // before the host packs them): 10 more messages, one sync each.
    let (before, loose_before) = (repo_bytes_packed(&git_dir), repo_bytes(&git_dir));
    let mut message_bytes = 0;
    for i in 0..10 {
        message_bytes += append_message(&a.db, &long_sid, 2 + i);
        run_sync(&bin, &gh, &a);
    }
    let loose_growth = repo_bytes(&git_dir).saturating_sub(loose_before) / 10;
    let growth = repo_bytes_packed(&git_dir).saturating_sub(before) / 10;
    let exchange = message_bytes / 10;

    let get = |n: &str| phases.iter().find(|p| p.name == n).unwrap();
    let data = file_bytes - header_bytes;
    let mut targets: Vec<(String, bool, String)> = Vec::new();
    let mut t = |name: &str, ok: bool, got: String| targets.push((name.to_string(), ok, got));
    for n in ["idle (A)", "idle (B)", "idle (A, after B pulled)", "idle (B, after its pulls)", "idle (B, after A pushed what B does not take)"] {
        let p = get(n);
        t(&format!("{n}: 1 conditional request, 304, 0 body bytes"), p.requests == 1 && p.not_modified == 1 && p.received == 0, format!("{} req ({} x 304), {} B", p.requests, p.not_modified, p.received));
    }
    // The first check after this machine's own push cannot be conditional on an ETag it has not
    // seen yet (GitHub's ETag is a digest of the GET answer): one request, the ref's JSON.
    for n in ["idle (A, right after its push)", "idle (A, right after its push) "] {
        let p = get(n);
        t(&format!("{}: 1 request (the new head's ETag is learnt)", n.trim()), p.requests == 1, format!("{} req, {} B", p.requests, p.received));
    }
    for n in ["push one message appended to the long session (A)", "push one config edit (A)"] {
        let p = get(n);
        t(&format!("{n}: <= 4 requests, <= 64 KiB sent"), p.requests <= 4 && p.sent <= 64 << 10, format!("{} req, {}", p.requests, kib(p.sent)));
    }
    for n in ["pull it (B)", "pull it (B) "] {
        let p = get(n);
        t(&format!("{}: <= 4 requests, <= 64 KiB received", n.trim()), p.requests <= 4 && p.received <= 64 << 10, format!("{} req, {}", p.requests, kib(p.received)));
    }
    let fp = get("first pull (B, new machine)");
    t("first pull: <= 10 requests", fp.requests <= 10, format!("{} req", fp.requests));
    t("first pull: <= 3x git clone --depth 1", fp.ms <= 3.0 * clone_ms, format!("{:.0} ms vs clone {:.0} ms ({:.1}x)", fp.ms, clone_ms, fp.ms / clone_ms));
    let push = get("first push (A)");
    t("first push: bytes sent <= 1.2x the data", push.sent as f64 <= 1.2 * data as f64, format!("{} sent for {} of items ({:.2}x; headers {})", kib(push.sent), kib(data), push.sent as f64 / data as f64, kib(header_bytes)));
    let max_rss = phases.iter().map(|p| p.rss_kib).max().unwrap_or(0);
    t("peak RSS <= 150 MiB in every step", max_rss <= 150 << 10, format!("{:.1} MiB", max_rss as f64 / 1024.0));
    t("repository growth per appended message in proportion to it (packed, <= 2x the message)", growth <= 2 * exchange.max(1), format!("{} per message of {} ({} as loose objects before packing)", kib(growth), kib(exchange), kib(loose_growth)));

    if as_json {
        let out = json!({
            "corpus": {"sessions": stats.sessions + 1, "messages": stats.messages, "parts": stats.parts, "partBytes": stats.part_bytes,
                "longSessionBytes": long_bytes, "configFiles": configs.len(), "itemFiles": files, "itemBytes": data, "headerBytes": header_bytes},
            "gitCloneDepth1Ms": clone_ms,
            "phases": phases.iter().map(|p| json!({"phase": p.name.trim(), "requests": p.requests, "notModified": p.not_modified,
                "bytesSent": p.sent, "bytesReceived": p.received, "ms": p.ms.round(), "peakRssKiB": p.rss_kib, "items": p.items,
                "endpoints": p.endpoints})).collect::<Vec<_>>(),
            "growthPerExchange": growth,
            "targets": targets.iter().map(|(n, ok, got)| json!({"target": n, "met": ok, "measured": got})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else {
        println!("\nrepository: {files} item files, {} of items + {} of headers; git clone --depth 1: {clone_ms:.0} ms", kib(data), kib(header_bytes));
        for p in &phases {
            if p.requests <= 12 {
                println!("  {}: {}", p.name.trim(), p.endpoints.join(", "));
            }
        }
        println!();
        for (n, ok, got) in &targets {
            println!("{} {n}: {got}", if *ok { "PASS" } else { "MISS" });
        }
    }
}
