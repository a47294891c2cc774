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

/// Smart HTTP: `git http-backend` run as CGI behind a tiny HTTP/1.1 server on 127.0.0.1 that
/// demands basic auth (`user`/`password`), one connection at a time, `Connection: close`.
struct HttpGit {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpGit {
    fn start(base: &Path, user: &str, password: &str) -> HttpGit {
        use base64_basic as b64;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let expected = format!("Basic {}", b64::encode(format!("{user}:{password}").as_bytes()));
        let backend = Path::new(git(&["--exec-path"]).trim()).join("git-http-backend");
        let base = base.to_path_buf();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let _ = serve_one(conn, &backend, &base, &expected);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpGit { port, stop, thread: Some(thread) }
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(conn: std::net::TcpStream, backend: &Path, base: &Path, expected_auth: &str) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = header("content-length") {
        body.resize(n.parse().unwrap_or(0), 0);
        r.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    if header("authorization").as_deref() != Some(expected_auth) {
        w.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new(backend);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "user")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "100M");
    if let Some(t) = header("content-type") {
        cmd.env("CONTENT_TYPE", t);
    }
    if let Some(e) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    if let Some(p) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out)?;
    let _ = feeder.join();
    child.wait()?;
    let split = out.windows(4).position(|x| x == b"\r\n\r\n").map(|i| (i, 4)).or_else(|| out.windows(2).position(|x| x == b"\n\n").map(|i| (i, 2)));
    let (head, content) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&out[..i]).into_owned(), &out[i + n..]),
        None => (String::new(), &out[..]),
    };
    let mut status = "200 OK".to_string();
    let mut resp_headers = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some((k, v)) => resp_headers.push_str(&format!("{k}: {}\r\n", v.trim())),
            None => {}
        }
    }
    w.write_all(format!("HTTP/1.1 {status}\r\n{resp_headers}Content-Length: {}\r\nConnection: close\r\n\r\n", content.len()).as_bytes())?;
    w.write_all(content)?;
    w.flush()
}

/// A credential helper script answering `user` and `password` (git's helper protocol).
fn helper_env(dir: &Path, name: &str, password: &str) -> Vec<(String, String)> {
    let script = dir.join(name);
    std::fs::write(&script, format!("#!/bin/sh\ntest \"$1\" = get || exit 0\necho username=user\necho password={password}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "credential.helper".into()),
        ("GIT_CONFIG_VALUE_0".into(), script.display().to_string()),
    ]
}

#[test]
fn machines_converge_over_smart_http_with_a_credential_helper_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let server = HttpGit::start(dir.path(), "user", "s3cret-pass");
    let url = format!("http://127.0.0.1:{}/sync.git", server.port);
    let ms: Vec<Machine> = ["a", "b"]
        .iter()
        .map(|id| helper_env(dir.path(), &format!("helper-{id}"), "s3cret-pass").into_iter().fold(Machine::new(id).env("OC_SYNC_REMOTE", &url), |m, (k, v)| m.env(&k, v)))
        .collect();
    converge(&ms);
    check_repository(&repo);
    // A wrong password: a clear refusal, the secret never printed.
    let wrong = helper_env(dir.path(), "helper-wrong", "wrong-pass-77").into_iter().fold(Machine::new("w").env("OC_SYNC_REMOTE", &url), |m, (k, v)| m.env(&k, v));
    let r = wrong.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("wrong-pass-77") && !r.all().contains("s3cret-pass"), "{}", r.all());
    assert!(r.all().contains("credential"), "{}", r.all());
    // No helper at all: git does not wait for a prompt.
    let none = Machine::new("n").env("OC_SYNC_REMOTE", &url);
    let t = Instant::now();
    let r = none.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(t.elapsed() < Duration::from_secs(60));
}

/// Just enough base64 for a basic-auth header.
mod base64_basic {
    pub fn encode(b: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}

#[test]
fn a_sync_killed_before_its_push_while_the_server_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let port = free_port();
    let daemon = Daemon::start(dir.path(), port);
    let url = format!("git://127.0.0.1:{port}/sync.git");
    let ms = machines(&url, 2);
    ms[0].write_cfg("opencode.json", "{\n  \"model\": \"m0\"\n}\n");
    ms[0].sync();
    ms[1].sync();
    // a: its commit is in the mirror, the push not done; then the server goes away and a dies.
    ms[0].set_key("model", "from-a");
    ms[0].kill_sync_at("git-push");
    drop(daemon);
    let r = ms[0].run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let _daemon = Daemon::start(dir.path(), port);
    // Meanwhile b pushed something else: a fetches over its own unpushed commit, merges, pushes.
    ms[1].set_key("theme", "from-b");
    ms[1].sync();
    ms[0].sync();
    ms[1].sync();
    for m in &ms {
        let j = m.json("opencode.json");
        assert_eq!((j["model"].as_str(), j["theme"].as_str()), (Some("from-a"), Some("from-b")), "{j}");
    }
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
    check_repository_format(&repo);
}

fn check_repository_format(repo: &Path) {
    let r = repo.to_str().unwrap();
    assert_eq!(git(&["--git-dir", r, "show", "main:.oc-sync/format"]).trim(), "2");
    git(&["--git-dir", r, "fsck", "--strict"]);
}

/// `sshd` (Debian's openssh-server; CI installs it) on 127.0.0.1 with a test host key, accepting
/// one test user key for the user running the tests; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "this test needs sshd: apt-get install openssh-server");
        let keygen = |name: &str| {
            let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(dir.join(name)).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        keygen("hostkey");
        keygen("userkey");
        std::fs::copy(dir.join("userkey.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("sshd runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, key: dir.join("userkey") }
    }

    fn ssh_command(&self) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn machines_converge_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare(dir.path(), "sync.git");
    let sshd = Sshd::start(dir.path());
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let url = format!("ssh://{}@127.0.0.1:{}{}", user.trim(), sshd.port, repo.display());
    let ms: Vec<Machine> = ["a", "b"].iter().map(|id| Machine::new(id).env("OC_SYNC_REMOTE", &url).env("GIT_SSH_COMMAND", sshd.ssh_command())).collect();
    converge(&ms);
    check_repository(&repo);
    // Without the key (an empty agent, no ~/.ssh): refused, saying how git authenticates.
    let stranger = Machine::new("s").env("OC_SYNC_REMOTE", &url).env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
    let r = stranger.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("SSH key"), "{}", r.all());
}

#[test]
fn init_with_a_git_remote_writes_it_and_shows_the_mirror() {
    let m = Machine::new("a");
    let out = m.ok(&["init", "--remote", "git@gitlab.com:me/opencode-sync.git"]);
    assert!(out.contains("Remote: git git@gitlab.com:me/opencode-sync.git") && out.contains("git-remotes") && out.contains("private"), "{out}");
    assert_eq!(m.jsonc("opencode-sync.json")["remote"], "git@gitlab.com:me/opencode-sync.git");
    let r = m.run(&["init", "--force", "--remote", "https://me:pw-42@example.org/x.git"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("pw-42") && r.all().contains("credential helper"), "{}", r.all());
}
