//! A simulated machine: its own HOME (OpenCode's config and state folders inside it as on a real
//! machine), the environment its `oc-sync` runs get, and ways to run a sync: the real binary
//! (blocking or from an async test), a binary killed at a sync step, or the library's `Syncer`
//! in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::lib::{Category, Config, create_test_db, jsonc, FileSource, Remote, Source, StateStore, SyncError, SyncOptions, SyncReport, Syncer, system_now_ms};
use super::{Out, kill_at_pause_mark, synced_files};

/// The OpenCode config file the scenario tests edit, as an item key.
pub const OC: &str = "config/opencode.json";

#[derive(Clone)]
pub struct Machine {
    /// The machine id (also written as `machineId` by [`Machine::settings`]).
    pub id: String,
    pub home: PathBuf,
    /// Keeps an own temporary HOME alive (None: HOME is inside a directory the test owns).
    _dir: Option<Arc<tempfile::TempDir>>,
    /// Environment of every `oc-sync` run, besides HOME and PATH (later entries win).
    vars: Vec<(String, String)>,
}

impl Machine {
    /// A machine with its own temporary HOME.
    pub fn new(id: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        Machine { id: id.into(), home, _dir: Some(Arc::new(dir)), vars: Vec::new() }
    }

    /// A machine whose HOME is `<root>/<id>` (created when something is written).
    pub fn under(root: &Path, id: &str) -> Machine {
        Machine { id: id.into(), home: root.join(id), _dir: None, vars: Vec::new() }
    }

    /// Adds `name=value` to the environment of its `oc-sync` runs.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Machine {
        self.vars.push((name.into(), value.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Removes `name` from the environment of its `oc-sync` runs.
    pub fn without_env(mut self, name: &str) -> Machine {
        self.vars.retain(|(k, _)| k != name);
        self
    }

    /// Syncs through the folder remote at `remote` (OC_SYNC_REMOTE).
    pub fn folder_remote(self, remote: &Path) -> Machine {
        self.env("OC_SYNC_REMOTE", remote)
    }

    /// Syncs through the (fake) GitHub at `url` with `token`, retrying fast.
    pub fn github(self, url: &str, token: &str) -> Machine {
        self.env("GITHUB_TOKEN", token).env("GITHUB_API_URL", url).env("OC_SYNC_GITHUB_RETRY_MS", "5")
    }

    /// Writes oc-sync's config file: this machine's id, no wait between retries, and `settings`
    /// (an object; its keys win).
    pub fn settings(self, settings: Value) -> Machine {
        let mut cfg = serde_json::json!({ "machineId": self.id, "retryDelayMs": 0 });
        for (k, v) in settings.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        self.write_cfg("opencode-sync.json", &serde_json::to_string_pretty(&cfg).unwrap());
        self
    }

    // ---- paths and files

    /// OpenCode's config folder.
    pub fn cfg_dir(&self) -> PathBuf {
        self.home.join(".config/opencode")
    }
    /// OpenCode's state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.home.join(".local/state/opencode")
    }
    /// OpenCode's data folder (auth.json, opencode.db).
    pub fn data_dir(&self) -> PathBuf {
        self.home.join(".local/share/opencode")
    }
    /// OpenCode's credentials file.
    pub fn auth(&self) -> PathBuf {
        self.data_dir().join("auth.json")
    }
    pub fn auth_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.auth()).unwrap()).unwrap()
    }
    /// The file of an item key ("config/...", "state/...").
    pub fn path(&self, key: &str) -> PathBuf {
        if let Some(rel) = key.strip_prefix("config/") {
            self.cfg_dir().join(rel)
        } else if let Some(rel) = key.strip_prefix("state/") {
            self.state_dir().join(rel)
        } else {
            panic!("not a config or state key: {key}")
        }
    }
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }
    pub fn write(&self, key: &str, bytes: &[u8]) {
        write_file(&self.path(key), bytes);
    }
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }
    pub fn set_mtime(&self, key: &str, ms: u64) {
        let f = std::fs::File::options().write(true).open(self.path(key)).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_millis(ms)).unwrap();
    }
    /// Appends `line` (and a newline) to the file of `key`, ending its last line first if needed.
    pub fn append_line(&self, key: &str, line: &str) {
        let mut b = self.read(key).unwrap_or_default();
        if !b.is_empty() && !b.ends_with(b"\n") {
            b.push(b'\n');
        }
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
        self.write(key, &b);
    }
    /// The non-blank lines of the file of `key`.
    pub fn lines(&self, key: &str) -> Vec<String> {
        String::from_utf8(self.read(key).unwrap_or_default()).unwrap().lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
    }
    /// Writes `text` to `rel` in OpenCode's config folder.
    pub fn write_cfg(&self, rel: &str, text: &str) {
        write_file(&self.cfg_dir().join(rel), text.as_bytes());
    }
    pub fn write_cfg_bytes(&self, rel: &str, bytes: &[u8]) {
        write_file(&self.cfg_dir().join(rel), bytes);
    }
    pub fn read_cfg(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.cfg_dir().join(rel)).ok()
    }
    /// The text of `rel` in OpenCode's config folder (which must exist).
    pub fn cfg_text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.cfg_dir().join(rel)).unwrap_or_else(|e| panic!("{rel} on {}: {e}", self.home.display()))
    }
    pub fn write_state(&self, rel: &str, text: &str) {
        write_file(&self.state_dir().join(rel), text.as_bytes());
    }
    pub fn read_state(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.state_dir().join(rel)).ok()
    }
    /// The JSON file `rel` of OpenCode's config folder (which must exist).
    pub fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.read_cfg(rel).expect("file exists")).unwrap()
    }
    /// The JSONC file `rel` of OpenCode's config folder (which must exist).
    pub fn jsonc(&self, rel: &str) -> Value {
        jsonc::parse(&self.cfg_text(rel)).unwrap().unwrap()
    }
    /// OpenCode's opencode.json as an object (empty when absent).
    pub fn oc_json(&self) -> Map<String, Value> {
        match self.read(OC) {
            Some(b) => match serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{}: {OC} is not JSON ({e}): {}", self.id, String::from_utf8_lossy(&b))) {
                Value::Object(m) => m,
                other => panic!("{OC} is not an object: {other}"),
            },
            None => Map::new(),
        }
    }
    pub fn set_oc_json(&self, m: &Map<String, Value>) {
        self.write(OC, serde_json::to_string_pretty(&Value::Object(m.clone())).unwrap().as_bytes());
    }
    /// Sets top-level key `k` of opencode.json.
    pub fn set_key(&self, k: &str, v: impl Into<Value>) {
        let mut m = self.oc_json();
        m.insert(k.into(), v.into());
        self.set_oc_json(&m);
    }
    pub fn del_key(&self, k: &str) {
        let mut m = self.oc_json();
        m.remove(k);
        self.set_oc_json(&m);
    }
    /// The synced files of this machine (OpenCode config and state folders, oc-sync's own config
    /// left out), by item key.
    pub fn synced_files(&self) -> BTreeMap<String, Vec<u8>> {
        synced_files(&self.cfg_dir(), &self.state_dir())
    }

    // ---- OpenCode's database

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("opencode.db")
    }
    /// Creates OpenCode's database with the schema of the OpenCode version the tests know.
    pub fn create_db(&self) {
        std::fs::create_dir_all(self.data_dir()).unwrap();
        create_test_db(self.db_path()).unwrap();
    }
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }
    /// Adds a user + assistant message pair (one part each) to a session, tagged `tag`.
    pub fn add_turn(&self, sid: &str, tag: &str, t: i64) {
        let c = self.db();
        for (i, role) in ["user", "assistant"].iter().enumerate() {
            let mid = format!("msg_{tag}{i}");
            let data = serde_json::json!({"role": role, "time": {"created": t}});
            c.execute(
                "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
                rusqlite::params![mid, sid, t + i as i64, data.to_string()],
            )
            .unwrap();
            let pdata = serde_json::json!({"type": "text", "text": format!("{tag} {role}")});
            c.execute(
                "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                rusqlite::params![format!("prt_{tag}{i}"), mid, sid, t + i as i64, pdata.to_string()],
            )
            .unwrap();
        }
        c.execute("UPDATE session SET time_updated = ?2 WHERE id = ?1", rusqlite::params![sid, t + 10]).unwrap();
    }
    /// Whether `table` has the row `id`.
    pub fn has_row(&self, table: &str, id: &str) -> bool {
        self.db().query_row(&format!("SELECT count(*) FROM {table} WHERE id = ?1"), [id], |r| r.get::<_, i64>(0)).unwrap() == 1
    }

    // ---- the binary

    /// `oc-sync args` with only HOME, PATH and this machine's variables (then `extra`) set.
    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oc-sync"));
        cmd.args(args).env_clear().env("HOME", &self.home).env("PATH", std::env::var_os("PATH").unwrap_or_default());
        // These machines have no OpenCode: a `opencode` on the test runner's PATH (npm puts
        // node_modules/.bin there) must not create a database in their homes.
        cmd.env("OC_SYNC_OPENCODE", self.home.join("no-opencode-here"));
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }
    pub fn run_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Out {
        Out::from_output(self.command(args, extra).output().expect("run oc-sync"))
    }
    /// [`Machine::run`] for async tests (the binary runs inside `spawn_blocking`, so an in-process
    /// fake server on the test's runtime keeps answering).
    pub async fn run_async(&self, args: &[&str]) -> Out {
        self.run_env_async(args, &[]).await
    }
    pub async fn run_env_async(&self, args: &[&str], extra: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args, extra);
        tokio::task::spawn_blocking(move || Out::from_output(cmd.output().expect("run oc-sync"))).await.unwrap()
    }
    /// [`Machine::run_env_async`] with `stdin` fed in (None: stdin is /dev/null, not a terminal).
    pub async fn run_stdin_async(&self, args: &[&str], stdin: Option<String>, extra: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args, extra);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("run oc-sync");
            if let Some(text) = stdin {
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            }
            Out::from_output(child.wait_with_output().unwrap())
        })
        .await
        .unwrap()
    }
    /// Runs (from an async test) and parses stdout as JSON; returns the exit code too.
    pub async fn run_json_async(&self, args: &[&str]) -> (i32, Value) {
        let o = self.run_async(args).await;
        (o.code, serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("{e}: {}", o.all())))
    }
    /// Asserts that the run succeeded and printed no GitHub token; returns stdout.
    pub fn check_ok(&self, args: &[&str], r: Out) -> String {
        assert_eq!(r.code, 0, "oc-sync {args:?} failed\nstdout:\n{}\nstderr:\n{}", r.out, r.err);
        if let Some((_, token)) = self.vars.iter().find(|(k, _)| k == "GITHUB_TOKEN") {
            assert!(!r.all().contains(token.as_str()), "the token was printed:\n{}", r.all());
        }
        r.out
    }
    /// Runs and asserts exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.check_ok(args, self.run(args))
    }
    pub async fn ok_async(&self, args: &[&str]) -> String {
        self.check_ok(args, self.run_async(args).await)
    }
    /// `oc-sync sync`, asserted successful; returns stdout.
    pub fn sync(&self) -> String {
        self.ok(&["sync"])
    }
    /// `oc-sync sync` that leaves a conflict waiting for the person: exit code 3; returns stdout.
    pub fn sync_waiting(&self) -> String {
        let r = self.run(&["sync"]);
        assert_eq!(r.code, 3, "oc-sync sync: a conflict should wait (exit 3)\nstdout:\n{}\nstderr:\n{}", r.out, r.err);
        r.out
    }
    /// `oc-sync sync --json`, asserted successful (also `"ok": true`).
    pub async fn sync_json(&self) -> Value {
        let out = self.ok_async(&["sync", "--json"]).await;
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["ok"], true, "{v}");
        v
    }
    /// Runs `oc-sync sync` made to stop at `step` (OC_SYNC_TEST_PAUSE_AT) and kills it there with
    /// SIGKILL. Panics if the process never reaches the step.
    pub fn kill_sync_at(&self, step: &str) {
        let mark = self.home.join("paused");
        let _ = std::fs::remove_file(&mark);
        let mut cmd = self.command(&["sync"], &[("OC_SYNC_TEST_PAUSE_AT", step)]);
        cmd.env("OC_SYNC_TEST_PAUSE_MARK", &mark).stdout(Stdio::null()).stderr(Stdio::null());
        kill_at_pause_mark(cmd.spawn().expect("start oc-sync"), &mark, step);
    }
    pub async fn kill_sync_at_async(&self, step: &str) {
        let (m, step) = (self.clone(), step.to_string());
        tokio::task::spawn_blocking(move || m.kill_sync_at(&step)).await.unwrap();
    }

    // ---- in-process

    /// One sync by the library's `Syncer` (OpenCode's config and state folders as sources, sync
    /// state in oc-sync's state folder), as this machine.
    pub fn sync_with(&self, remote: &dyn Remote, config: &Config, blocked: BTreeSet<String>, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(FileSource::new(Category::Config, self.cfg_dir(), Default::default()).unwrap()),
            Box::new(FileSource::new(Category::State, self.state_dir(), Default::default()).unwrap()),
        ];
        let syncer = Syncer {
            machine: self.id.clone(),
            config,
            remote,
            sources,
            state: StateStore::new(self.home.join(".local/state/oc-sync/sync")),
            blocked,
            now_ms: system_now_ms,
            on_local_write: None,
            codec: None,
            on_progress: None,
            progress: None,
        };
        syncer.sync(opts)
    }
    /// [`Machine::sync_with`] with the default options, asserted successful.
    pub fn sync_on(&self, remote: &dyn Remote, config: &Config) -> SyncReport {
        self.sync_with(remote, config, BTreeSet::new(), &SyncOptions::default()).unwrap_or_else(|e| panic!("sync of {} failed: {e}", self.id))
    }
}

fn write_file(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}
