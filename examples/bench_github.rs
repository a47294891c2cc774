//! Benchmark of the GitHub remote against the in-process fake GitHub (`fake-github`): requests,
//! body bytes and wall time of the typical syncs on a generated corpus. A benchmark, not a test:
//! it prints PASS/MISS for each target and always exits 0.
//!
//! Run: `cargo run --release --example bench_github -- [--files N] [--json]` (default 3000 files).
//!
//! Phases: machine A pushes the whole corpus (first push), syncs with nothing changed (idle sync),
//! changes one file and pushes it; machine B (a fresh HOME) pulls the whole corpus (first pull);
//! A changes another file and pushes, then B syncs (pull of one change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fake_github::{FakeGithub, FakeOptions, RecordedRequest};

/// What is kept of a recorded request (not its bodies, which would inflate the peak memory).
struct Req {
    method: String,
    path: String,
    status: u16,
    /// Sent with If-None-Match (a revalidation; a 304 answer does not count against the rate limit).
    conditional: bool,
    sent: u64,
    received: u64,
}

impl From<&RecordedRequest> for Req {
    fn from(r: &RecordedRequest) -> Req {
        Req {
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status,
            conditional: r.request_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("if-none-match")),
            sent: r.request_body.len() as u64,
            received: r.response_body.len() as u64,
        }
    }
}
use oc_sync::paths::{EnvSnapshot, Paths};
use oc_sync::sync::run::{SyncOptions, SyncReport};
use serde_json::{Value, json};

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "agent", "review", "the", "code", "and", "tests", "before", "commit", "always", "prefer", "small", "changes",
    "use", "project", "conventions", "explain", "why", "not", "what", "run", "build", "check", "errors", "carefully",
    "when", "a", "file", "is", "large", "split", "it", "into", "modules", "keep", "functions", "short", "document",
    "public", "API", "with", "examples", "avoid", "unsafe", "blocks", "unless", "needed", "measure", "performance",
    "first", "then", "optimise", "hot", "paths", "only", "write", "clear", "messages", "for", "every", "change",
];

/// Markdown-ish text of about `size` bytes.
fn text(rng: &mut Rng, title: &str, size: usize) -> String {
    let mut s = format!("---\ndescription: {title}\n---\n\n# {title}\n\n");
    while s.len() < size {
        let n = 8 + rng.below(20) as usize;
        let mut line: Vec<&str> = (0..n).map(|_| WORDS[rng.below(WORDS.len() as u64) as usize]).collect();
        if rng.below(6) == 0 {
            line.insert(0, "-");
        }
        s.push_str(&line.join(" "));
        s.push_str(if rng.below(4) == 0 { ".\n\n" } else { ".\n" });
    }
    s.truncate(size);
    s.push('\n');
    s
}

/// A realistic size: mostly 0.5-3 KiB, some up to 8 KiB.
fn size(rng: &mut Rng) -> usize {
    if rng.below(4) == 0 { 3072 + rng.below(5 * 1024) as usize } else { 512 + rng.below(2560) as usize }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// (files, bytes, folders) of a generated corpus, and the files to change later.
type Corpus = ((usize, u64, usize), Vec<PathBuf>);

/// Writes `n` files (at least the fixed ones) into the OpenCode config and state dirs of `home`.
/// Returns (files, bytes, folders) and the config-relative paths of a few files to change later.
fn make_corpus(home: &Path, n: usize) -> Corpus {
    let cfg = home.join(".config/opencode");
    let st = home.join(".local/state/opencode");
    let mut rng = Rng(0x0C51_C0DE);
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    // Fixed files: the root config, AGENTS.md, 10 themes, the 5 state files.
    files.push((cfg.join("opencode.json"), serde_json::to_vec_pretty(&json!({
        "$schema": "https://opencode.ai/config.json",
        "model": "anthropic/claude-sonnet-4",
        "theme": "theme-03",
        "autoupdate": false,
        "mcp": { "docs": { "type": "remote", "url": "https://example.com/mcp" } },
        "permission": { "edit": "ask", "bash": { "git push": "ask", "*": "allow" } },
    })).unwrap()));
    files.push((cfg.join("AGENTS.md"), text(&mut rng, "Global rules", 2500).into_bytes()));
    for t in 0..10 {
        let mut theme = serde_json::Map::new();
        for k in 0..40 {
            theme.insert(format!("color{k}"), json!(format!("#{:06x}", rng.below(0xFF_FFFF))));
        }
        files.push((cfg.join(format!("themes/theme-{t:02}.json")), serde_json::to_vec_pretty(&json!({ "theme": theme })).unwrap()));
    }
    files.push((st.join("model.json"), br#"{"recent":[{"providerID":"anthropic","modelID":"claude-sonnet-4"}]}"#.to_vec()));
    files.push((st.join("kv.json"), br#"{"tips":false,"sidebar":"auto"}"#.to_vec()));
    for f in ["prompt-history.jsonl", "prompt-stash.jsonl", "frecency.jsonl"] {
        let mut s = String::new();
        let target = size(&mut rng);
        while s.len() < target {
            s.push_str(&serde_json::to_string(&json!({ "input": text(&mut rng, "prompt", 120).replace('\n', " "), "t": rng.below(1 << 40) })).unwrap());
            s.push('\n');
        }
        files.push((st.join(f), s.into_bytes()));
    }
    // The rest over 100 folders: 80 skills, 10 agent groups, 10 command groups.
    let rest = n.saturating_sub(files.len());
    let mut per_folder = [0usize; 100];
    for i in 0..rest {
        let f = i % 100;
        let j = per_folder[f];
        per_folder[f] += 1;
        let (rel, title) = match f {
            0..80 if j == 0 => (format!("skills/skill-{f:02}/SKILL.md"), format!("Skill {f}")),
            0..80 => (format!("skills/skill-{f:02}/reference-{j:03}.md"), format!("Skill {f} reference {j}")),
            80..90 => (format!("agents/team-{:02}/agent-{j:03}.md", f - 80), format!("Agent {j} of team {}", f - 80)),
            _ => (format!("commands/group-{:02}/cmd-{j:03}.md", f - 90), format!("Command {j} of group {}", f - 90)),
        };
        let sz = size(&mut rng);
        files.push((cfg.join(rel), text(&mut rng, &title, sz).into_bytes()));
    }
    let mut bytes = 0u64;
    let mut dirs = std::collections::BTreeSet::new();
    for (p, b) in &files {
        write(p, b);
        bytes += b.len() as u64;
        dirs.insert(p.parent().unwrap().to_path_buf());
    }
    let change = vec![cfg.join("skills/skill-07/SKILL.md"), cfg.join("agents/team-03/agent-000.md")];
    ((files.len(), bytes, dirs.len()), change)
}

/// One simulated machine: its HOME, environment and loaded configuration.
struct Machine {
    _dir: tempfile::TempDir,
    home: PathBuf,
    paths: Paths,
    env: EnvSnapshot,
    config: oc_sync::config::Config,
}

impl Machine {
    fn new(id: &str, gh: &FakeGithub, corpus: Option<usize>) -> (Machine, Option<Corpus>) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        write(&home.join(".config/opencode/opencode-sync.json"), serde_json::to_string_pretty(&json!({ "machineId": id })).unwrap().as_bytes());
        let made = corpus.map(|n| make_corpus(&home, n));
        let env = EnvSnapshot::new(home.clone(), [("GITHUB_TOKEN", gh.token().to_string()), ("GITHUB_API_URL", gh.url.clone())]);
        let paths = Paths::resolve(&env).expect("paths");
        let config = oc_sync::config::load(&paths, &env, None).expect("config").config;
        (Machine { _dir: dir, home, paths, env, config }, made)
    }
    fn sync(&self) -> SyncReport {
        oc_sync::sync::sync_now(&self.paths, &self.config, &self.env, &SyncOptions::default(), Default::default()).expect("sync")
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// "GET ref", "POST trees", ... for a request path (without /api/v3, with query).
fn endpoint(r: &Req) -> String {
    let path = r.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let name = match segs.as_slice() {
        ["user"] => "user".to_string(),
        ["user", "repos"] => "user/repos".to_string(),
        ["_codeload", ..] => "codeload tar.gz".to_string(),
        ["repos", _, _] => "repo".to_string(),
        ["repos", _, _, "git", "ref" | "refs", ..] => "ref".to_string(),
        ["repos", _, _, "git", kind] => kind.to_string(),
        ["repos", _, _, "git", kind, ..] => kind.trim_end_matches('s').to_string(),
        ["repos", _, _, kind, ..] => kind.to_string(),
        _ => path.to_string(),
    };
    format!("{} {name}", r.method)
}

/// The request path shortened: owner/repo and long shas abbreviated.
fn short_path(p: &str) -> String {
    let segs: Vec<String> = p
        .split('/')
        .enumerate()
        .map(|(i, s)| {
            if i == 3 && p.starts_with("/repos/") {
                "R".to_string()
            } else if i == 2 && p.starts_with("/repos/") {
                String::new()
            } else {
                // Abbreviate 40-hex runs.
                let mut out = String::new();
                let mut run = String::new();
                for c in s.chars() {
                    if c.is_ascii_hexdigit() {
                        run.push(c);
                    } else {
                        out.push_str(if run.len() >= 40 { &run[..7] } else { &run });
                        run.clear();
                        out.push(c);
                    }
                }
                out.push_str(if run.len() >= 40 { &run[..7] } else { &run });
                out
            }
        })
        .collect();
    let s = segs.join("/").replace("/repos//R", "/repos/R");
    // Drop one-time download tokens.
    match s.find("?token=") {
        Some(i) => format!("{}?token=…", &s[..i]),
        None => s,
    }
}

struct Phase {
    name: &'static str,
    requests: u64,
    sent: u64,
    received: u64,
    ms: f64,
    items: usize,
    hwm_kib: Option<u64>,
    reqs: Vec<Req>,
}

impl Phase {
    /// "GET ref 304 ×1", grouped by endpoint and status, in first-seen order.
    fn grouped(&self) -> Vec<(String, usize)> {
        let mut order: Vec<String> = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.reqs {
            let k = format!("{} {}", endpoint(r), r.status);
            if !counts.contains_key(&k) {
                order.push(k.clone());
            }
            *counts.entry(k).or_default() += 1;
        }
        order.into_iter().map(|k| { let n = counts[&k]; (k, n) }).collect()
    }
    fn to_json(&self) -> Value {
        json!({
            "phase": self.name,
            "items": self.items,
            "requests": self.requests,
            "bytesSent": self.sent,
            "bytesReceived": self.received,
            "ms": (self.ms * 10.0).round() / 10.0,
            "vmHwmKiB": self.hwm_kib,
            "byEndpoint": self.grouped().into_iter().map(|(k, n)| json!({"endpoint": k, "count": n})).collect::<Vec<_>>(),
            "requestList": self.reqs.iter().map(|r| format!("{} {}{} {}", r.method, short_path(&r.path), if r.conditional { " [If-None-Match]" } else { "" }, r.status)).collect::<Vec<_>>(),
        })
    }
}

/// Runs one sync, measuring the fake's traffic and the wall time.
fn measure(gh: &FakeGithub, name: &'static str, m: &Machine, count: fn(&SyncReport) -> usize) -> Phase {
    gh.clear_requests();
    let t = Instant::now();
    let report = m.sync();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (requests, sent, received) = gh.traffic();
    Phase { name, requests, sent, received, ms, items: count(&report), hwm_kib: vm_hwm_kib(), reqs: gh.requests().iter().map(Req::from).collect() }
}

fn touch(path: &Path, line: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(line);
    std::fs::write(path, s).unwrap();
}

fn kib(b: u64) -> String {
    if b >= 10 * 1024 * 1024 { format!("{:.1} MiB", b as f64 / 1048576.0) } else if b >= 1024 { format!("{:.1} KiB", b as f64 / 1024.0) } else { format!("{b} B") }
}

fn mib(k: Option<u64>) -> String {
    k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
}

fn main() {
    let mut files = 3000usize;
    let mut as_json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--files" => files = args.next().and_then(|v| v.parse().ok()).expect("--files N"),
            "--json" => as_json = true,
            "-h" | "--help" => {
                println!("cargo run --release --example bench_github -- [--files N] [--json]");
                return;
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }

    // The fake serves on its own multi-thread runtime; oc-sync's blocking calls run on this
    // (plain) main thread, outside any async task.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let gh = rt.block_on(FakeGithub::start(FakeOptions::default())).expect("fake GitHub");

    let t = Instant::now();
    let (a, made) = Machine::new("bench-a", &gh, Some(files));
    let ((n_files, n_bytes, n_dirs), change) = made.unwrap();
    let gen_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (b, _) = Machine::new("bench-b", &gh, None);

    let baseline = vm_hwm_kib();
    let mut phases = Vec::new();
    phases.push(measure(&gh, "first push (A)", &a, |r| r.pushed.len()));
    phases.push(measure(&gh, "idle sync (A, after push)", &a, |r| r.pushed.len() + r.pulled.len()));
    phases.push(measure(&gh, "idle sync (A, again)", &a, |r| r.pushed.len() + r.pulled.len()));
    touch(&change[0], "\nOne more line from machine A.\n");
    phases.push(measure(&gh, "push one change (A)", &a, |r| r.pushed.len()));
    phases.push(measure(&gh, "first pull (B, new machine)", &b, |r| r.pulled.len()));
    touch(&change[1], "\nAnother line from machine A.\n");
    phases.push(measure(&gh, "push one change (A, 2nd)", &a, |r| r.pushed.len()));
    phases.push(measure(&gh, "pull one change (B)", &b, |r| r.pulled.len()));
    let peak = vm_hwm_kib();

    // B's copy must now equal A's.
    let differ = {
        let rel = |m: &Machine, p: &Path| m.home.join(p.strip_prefix(&a.home).unwrap());
        change.iter().filter(|p| std::fs::read(p).ok() != std::fs::read(rel(&b, p)).ok()).count()
    };

    let get = |name: &str| phases.iter().find(|p| p.name == name).unwrap();
    let idle = get("idle sync (A, after push)");
    let idle2 = get("idle sync (A, again)");
    let one = get("push one change (A)");
    let push2 = get("push one change (A, 2nd)");
    let first_pull = get("first pull (B, new machine)");
    let pull_one = get("pull one change (B)");
    let one_conditional = |p: &Phase| p.requests == 1 && p.reqs.iter().all(|r| r.method == "GET" && r.conditional);
    let idle_ok = one_conditional(idle) && one_conditional(idle2) && idle2.reqs.iter().all(|r| r.status == 304);
    let idle_detail = |p: &Phase| {
        p.reqs.iter().map(|r| format!("{}{} {}", endpoint(r), if r.conditional { " (If-None-Match)" } else { "" }, r.status)).collect::<Vec<_>>().join(", ")
    };
    let targets = vec![
        (
            "idle sync is one conditional request",
            idle_ok,
            format!(
                "right after a push {} request(s): {}; again {} request(s): {}",
                idle.requests,
                idle_detail(idle),
                idle2.requests,
                idle_detail(idle2)
            ),
        ),
        ("one-file push is at most 4 requests", one.requests <= 4 && push2.requests <= 4, format!("{} and {} requests", one.requests, push2.requests)),
        ("first pull of the corpus takes a handful of requests (<= 10), not one per file", first_pull.requests <= 10, format!("{} requests for {} files", first_pull.requests, first_pull.items)),
        ("pull of one change is a handful of requests (<= 5)", pull_one.requests <= 5, format!("{} requests", pull_one.requests)),
        ("machine B has machine A's changes", differ == 0 && first_pull.items == n_files && pull_one.items == 1, format!("{} pulled first, {} then; {differ} changed file(s) differ", first_pull.items, pull_one.items)),
    ];

    if as_json {
        let out = json!({
            "corpus": { "files": n_files, "bytes": n_bytes, "folders": n_dirs, "generateMs": gen_ms.round() },
            "phases": phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
            "peakVmHwmKiB": peak,
            "baselineVmHwmKiB": baseline,
            "peakNote": "VmHWM of the whole benchmark process, including the in-process fake GitHub server",
            "targets": targets.iter().map(|(t, ok, d)| json!({"target": t, "pass": ok, "detail": d})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else {
        println!("oc-sync GitHub remote benchmark (fake GitHub at {}, bodies counted, not headers)", gh.url);
        println!("corpus: {n_files} files, {} in {n_dirs} folders (generated in {gen_ms:.0} ms)\n", kib(n_bytes));
        println!("{:<28} {:>6} {:>9} {:>12} {:>12} {:>10} {:>11}", "phase", "items", "requests", "sent", "received", "time ms", "VmHWM");
        let all: Vec<&Phase> = phases.iter().collect();
        for p in &all {
            println!(
                "{:<28} {:>6} {:>9} {:>12} {:>12} {:>10.1} {:>11}",
                p.name,
                p.items,
                p.requests,
                kib(p.sent),
                kib(p.received),
                p.ms,
                mib(p.hwm_kib)
            );
        }
        println!("\nGitHub API requests per phase (method endpoint status ×count):");
        for p in &all {
            let g: Vec<String> = p.grouped().into_iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            println!("  {:<28} {}", p.name, g.join(", "));
            if p.requests <= 12 {
                for r in &p.reqs {
                    println!(
                        "      {} {}{} → {} ({} sent, {} received)",
                        r.method,
                        short_path(&r.path),
                        if r.conditional { " [If-None-Match]" } else { "" },
                        r.status,
                        kib(r.sent),
                        kib(r.received)
                    );
                }
            }
        }
        println!(
            "\npeak memory (VmHWM): {} — the whole process, including the in-process fake GitHub server",
            mib(peak)
        );
        println!(
            "  (before the first sync, with the corpus generated and the fake started: {})",
            mib(baseline)
        );
        println!("\ntargets:");
        for (t, ok, d) in &targets {
            println!("  {} {t}: {d}", if *ok { "PASS" } else { "MISS" });
        }
    }
    drop(a);
    drop(b);
    drop(gh);
    drop(rt);
}
