//! The git remote against real git servers started here on 127.0.0.1: a bare repository over
//! `file://` (and by path), and `git daemon` (git://), driven through the real `oc-sync` binary on
//! two and three machines (one HOME each).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Machine;

fn git(args: &[&str]) -> String {
    let out = Command::new("git").args(args).env("GIT_CONFIG_NOSYSTEM", "1").output().expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new bare repository `<dir>/name`, empty (no branch yet).
fn bare(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    git(&["init", "--bare", "--quiet", p.to_str().unwrap()]);
    p
}

fn machines(url: &str, n: usize) -> Vec<Machine> {
    ["a", "b", "c"][..n].iter().map(|id| Machine::new(id).env("OC_SYNC_REMOTE", url)).collect()
}

fn converge(ms: &[Machine]) {
    ms[0].write_cfg("opencode.json", "{\n  \"model\": \"m0\"\n}\n");
    ms[0].write_cfg("agents/review.md", "# review\n");
    let out = ms[0].sync();
    assert!(out.contains("push 2"), "{out}");
    for m in &ms[1..] {
        let out = m.sync();
        assert!(out.contains("pull 2"), "{out}");
    }
    // Concurrent edits of different keys on every machine merge.
    let keys = ["model", "theme", "username"];
    for (m, k) in ms.iter().zip(keys) {
        m.set_key(k, format!("from-{k}"));
    }
    for _ in 0..2 {
        for m in ms {
            m.sync();
        }
    }
    for m in ms {
        let j = m.json("opencode.json");
        for k in &keys[..ms.len()] {
            assert_eq!(j[*k].as_str(), Some(format!("from-{k}").as_str()), "{j}");
        }
        assert_eq!(m.synced_files(), ms[0].synced_files());
    }
    assert!(ms[0].sync().contains("already in sync"));
}

/// The repository is an ordinary git repository in format 2.
fn check_repository(repo: &Path) {
    let r = repo.to_str().unwrap();
    assert_eq!(git(&["--git-dir", r, "show", "main:.oc-sync/format"]).trim(), "2");
    let tree = git(&["--git-dir", r, "ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.contains("config/agents/review.md"), "{tree}");
    git(&["--git-dir", r, "fsck", "--strict"]);
}

#[test]
fn two_and_three_machines_converge_over_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let url = format!("file://{}", repo.display());
    let ms = machines(&url, 3);
    converge(&ms);
    check_repository(&repo);
    // status shows the kind, the URL and the mirror, without contacting anything.
    let st: serde_json::Value = serde_json::from_str(&ms[0].ok(&["status", "--json"])).unwrap();
    assert_eq!(st["remote"]["kind"], "git", "{st}");
    assert_eq!(st["remote"]["location"], repo.to_str().unwrap(), "a file:// URL of a bare repository is its path");
    let detail = st["remote"]["detail"].as_str().unwrap();
    assert!(detail.contains("git-remotes") && detail.contains("exists"), "{detail}");
    assert!(ms[0].ok(&["paths"]).contains("git remote mirrors"));
}

#[test]
fn an_existing_bare_repository_path_is_a_git_remote() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "plain-path");
    let ms = machines(repo.to_str().unwrap(), 2);
    converge(&ms);
    check_repository(&repo);
    let st: serde_json::Value = serde_json::from_str(&ms[1].ok(&["status", "--json"])).unwrap();
    assert_eq!(st["remote"]["kind"], "git", "{st}");
    // A folder that is not a repository stays a folder remote.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let m = Machine::new("f").env("OC_SYNC_REMOTE", &folder);
    let st: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
    assert_eq!(st["remote"]["kind"], "local", "{st}");
}

#[test]
fn a_password_in_the_url_is_refused_without_printing_it() {
    let m = Machine::new("a").env("OC_SYNC_REMOTE", "https://me:hunter2-secret@example.org/sync.git");
    let r = m.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("hunter2-secret"), "{}", r.all());
    assert!(r.all().contains("credential helper"), "{}", r.all());
}

#[test]
fn racing_pushes_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let url = format!("file://{}", repo.display());
    let ms = machines(&url, 2);
    ms[0].write_cfg("opencode.json", "{\n  \"model\": \"m0\"\n}\n");
    ms[0].sync();
    ms[1].sync();
    for round in 0..3 {
        ms[0].write_cfg(&format!("agents/a{round}.md"), "a\n");
        ms[1].write_cfg(&format!("agents/b{round}.md"), "b\n");
        std::thread::scope(|s| {
            let h: Vec<_> = ms.iter().map(|m| s.spawn(move || m.sync())).collect();
            for x in h {
                x.join().unwrap();
            }
        });
    }
    ms[0].sync();
    ms[1].sync();
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
    let tree = git(&["--git-dir", repo.to_str().unwrap(), "ls-tree", "-r", "--name-only", "main"]);
    for round in 0..3 {
        assert!(tree.contains(&format!("agents/a{round}.md")) && tree.contains(&format!("agents/b{round}.md")), "{tree}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `git daemon` serving `base` on 127.0.0.1:`port`, pushes enabled; killed on drop.
struct Daemon(Child);

impl Daemon {
    fn start(base: &Path, port: u16) -> Daemon {
        // git-daemon itself (`git daemon` would run it as a child that outlives a kill of `git`).
        let exec = git(&["--exec-path"]);
        let child = Command::new(Path::new(exec.trim()).join("git-daemon"))
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn machines_converge_through_git_daemon_and_recover_when_it_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let port = free_port();
    let daemon = Daemon::start(dir.path(), port);
    let url = format!("git://127.0.0.1:{port}/sync.git");
    let ms = machines(&url, 2);
    converge(&ms);
    check_repository(&repo);
    // The server goes away: the sync fails clearly and changes nothing; back up, it recovers.
    drop(daemon);
    ms[0].set_key("model", "offline-edit");
    let r = ms[0].run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("cannot reach the remote") && r.all().contains(&url), "{}", r.all());
    let _daemon = Daemon::start(dir.path(), port);
    ms[0].sync();
    ms[1].sync();
    assert_eq!(ms[1].json("opencode.json")["model"], "offline-edit");
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
}

#[test]
fn an_idle_sync_transfers_no_objects() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let url = format!("file://{}", repo.display());
    let ms = machines(&url, 1);
    ms[0].write_cfg("opencode.json", "{}\n");
    ms[0].sync();
    let mirror = std::fs::read_dir(ms[0].data_dir().parent().unwrap().join("oc-sync/git-remotes")).unwrap().flatten().find(|e| e.path().extension().is_some_and(|x| x == "git")).unwrap().path();
    let objects = |p: &Path| git(&["--git-dir", p.to_str().unwrap(), "count-objects", "-v"]);
    let before = objects(&mirror);
    assert!(ms[0].sync().contains("already in sync"));
    assert_eq!(objects(&mirror), before);
}
