//! The background engine that runs inside OpenCode (through the plugin) or any long-lived host.
//!
//! [`Engine::start`] returns at once: config loading, logging setup and everything else happen on a
//! dedicated thread with its own single-threaded tokio runtime, so the host's startup never waits
//! on the disk or the network. [`Engine::stop`] shuts that thread down within a bounded time.

mod live;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::logging;
use crate::machine_id;
use crate::paths::{EnvSnapshot, Paths};
use live::{report, Instance, Live};
use super::problem::{self, Problem, ProblemKind};
use super::scheduler::{PollConfig, RunOutcome, Runner, Scheduler, SchedulerConfig, SchedulerHandle, SchedulerState, Trigger};
use crate::source::FileSource;
use crate::sync::conflicts::ConflictStore;
use crate::sync::sources::local_path;
use crate::sync::{sync_now, Hooks, SyncOptions};
use crate::time::now_ms;
use super::watch::{WatchEvent, WatchRoot, Watcher, CONFIG_FOLDERS};

/// Files oc-sync itself is writing (`None`) or has written (`Some(hash)`, `Some(None)` = deleted):
/// the watcher ignores their events, so a pull does not trigger another sync.
type OwnWrites = Arc<Mutex<std::collections::HashMap<PathBuf, Option<Option<String>>>>>;

fn hash_of(path: &std::path::Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| crate::remote::sha256_hex(&b))
}

/// OpenCode events that mean "a session just changed": they feed the debounced sync trigger.
pub const SYNC_EVENTS: &[&str] = &["session.idle", "session.updated", "message.updated", "todo.updated", "session.deleted"];
/// How long `stop` lets the final flush run (the plugin's dispose waits a little longer).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(4);
/// Hard budget of automatic syncs per sliding hour (keeps GitHub's content limits; see README).
pub const MAX_SYNCS_PER_HOUR: u32 = 150;

/// What the host passes when starting the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The options from opencode.json's plugin tuple, if any.
    pub plugin_options: Option<Value>,
    /// The project directory OpenCode was started in.
    pub directory: Option<PathBuf>,
    /// How to run the `oc-sync` CLI in a separate process (program and arguments), which syncs
    /// OpenCode's database and exports to OpenSync. The engine itself never opens that database:
    /// the host process has its own SQLite, and two SQLite libraries in one process do not see
    /// each other's locks. None: the database is not synced by the engine.
    pub db_helper: Option<Vec<String>>,
    /// At most one running engine per process with this set (the plugin sets it): a second start
    /// stays idle with the problem `alreadyRunning` until the first one stops.
    pub single_instance: bool,
}

/// Where the engine is in its life; serialized as "starting", "running", "idle", "stopped", "failed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    #[default]
    Starting,
    Running,
    /// Another instance of the plugin in this process syncs; this one waits to take over.
    Idle,
    Stopped,
    Failed,
}

/// A snapshot of what the engine is doing, for the host and `status`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    pub state: EngineState,
    pub machine_id: Option<String>,
    pub config_file: Option<PathBuf>,
    pub config_error: Option<String>,
    pub warnings: Vec<String>,
    pub log_dir: Option<PathBuf>,
    pub started_at_ms: u64,
    pub events_seen: u64,
    pub last_event: Option<String>,
    /// The auto-sync scheduler (null when auto-sync is not running, e.g. a broken config).
    pub scheduler: Option<SchedulerState>,
    pub watching: bool,
    /// Items whose conflicts wait for the person (`oc-sync resolve`); the plugin shows a toast.
    pub conflicts_waiting: Vec<String>,
    /// What the last OpenSync export left for the person (refused items, a refused key), as the
    /// database process recorded it; the plugin shows a toast once per distinct problem.
    pub opensync_problem: Option<crate::opensync::state::Problem>,
    /// What stops auto-sync now (a rejected token, an invalid config, the mass-deletion stop...),
    /// with what to do; the plugin shows a toast when it changes. Null when all is well.
    pub problem: Option<problem::Problem>,
    /// The last problem that went away (the plugin says "syncing again").
    pub recovered: Option<problem::Recovered>,
    /// What the last successful sync changed ("pushed 1, pulled 0, ..."); null when it changed nothing.
    pub last_sync_summary: Option<String>,
}

pub struct Engine {
    status: Arc<Mutex<EngineStatus>>,
    scheduler: Arc<Mutex<Option<SchedulerHandle>>>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    finished: mpsc::Receiver<()>,
}

impl Engine {
    /// Starts the engine thread and returns immediately.
    pub fn start(opts: EngineOptions, env: EnvSnapshot) -> std::io::Result<Engine> {
        let status = Arc::new(Mutex::new(EngineStatus {
            state: EngineState::Starting,
            started_at_ms: now_ms(),
            ..Default::default()
        }));
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let (done_tx, finished) = mpsc::channel();
        let st = status.clone();
        let sched_slot: Arc<Mutex<Option<SchedulerHandle>>> = Arc::new(Mutex::new(None));
        let slot = sched_slot.clone();
        let thread = std::thread::Builder::new().name("oc-sync-engine".into()).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        fail(&st, format!("cannot start the engine runtime: {e}"));
                        return;
                    }
                };
                rt.block_on(async {
                    let mut instance = None;
                    if opts.single_instance {
                        instance = wait_for_instance(&st, &mut shutdown_rx).await;
                    }
                    let ctx = if opts.single_instance && instance.is_none() { None } else { setup_until_valid(&opts, &env, &st, &mut shutdown_rx).await };
                    let mut watcher = None;
                    if let Some((ctx, fp)) = ctx {
                        let own: OwnWrites = Arc::default();
                        let live = Live::new(ctx.clone(), &env, opts.plugin_options.clone(), fp);
                        let probe = ctx.config.continuous_sync.then(|| live.probe());
                        let handle = Scheduler::spawn_with_probe(scheduler_config(&ctx.config), runner(live, st.clone(), slot.clone(), own.clone()), probe);
                        if ctx.config.continuous_sync {
                            watcher = start_watcher(&ctx, handle.clone(), own);
                        }
                        lock(&st).watching = watcher.is_some();
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
                    }
                    while !*shutdown_rx.borrow() {
                        if shutdown_rx.changed().await.is_err() {
                            break;
                        }
                    }
                    drop(watcher);
                    let handle = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(h) = handle {
                        let flushed = h.shutdown(FLUSH_TIMEOUT).await;
                        if !flushed {
                            tracing::warn!("oc-sync stopped before every change was synced; they sync next time");
                        }
                        lock(&st).scheduler = Some(h.state());
                        if let Ok(paths) = Paths::resolve(&env) {
                            persist_state(&paths, &Arc::new(Mutex::new(Some(h))));
                        }
                    }
                    tracing::info!("oc-sync engine stopped");
                    drop(instance);
                });
            }));
            if result.is_err() {
                fail(&st, "internal error in the engine thread (see the oc-sync log)".into());
            } else {
                lock(&st).state = EngineState::Stopped;
            }
            let _ = done_tx.send(());
        })?;
        Ok(Engine { status, scheduler: sched_slot, shutdown, thread: Some(thread), finished })
    }

    pub fn status(&self) -> EngineStatus {
        self.handle().status()
    }

    /// A handle for asking the engine from other threads (status, sync now) while it runs.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle { status: self.status.clone(), scheduler: self.scheduler.clone() }
    }

    /// Tells the engine that something happened in the host (an OpenCode event type). Events that
    /// mean "a session just changed" feed the debounced sync trigger.
    pub fn notify(&self, event_type: &str) {
        {
            let mut s = lock(&self.status);
            s.events_seen += 1;
            s.last_event = Some(event_type.to_string());
        }
        if SYNC_EVENTS.contains(&event_type)
            && let Some(h) = self.scheduler.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                h.trigger(Trigger::HostEvent(event_type.to_string()));
            }
    }

    /// Asks for a sync now (no debounce).
    pub fn sync_now(&self) {
        self.handle().sync_now()
    }

    /// Asks the engine to stop (flushing pending changes for up to [`FLUSH_TIMEOUT`]) and waits up
    /// to `timeout` for it. Returns true if it stopped in time;
    /// otherwise the thread is left to finish on its own (it holds nothing that needs cleanup).
    pub fn stop(&mut self, timeout: Duration) -> bool {
        let _ = self.shutdown.send(true);
        let Some(handle) = self.thread.take() else { return true };
        match self.finished.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("oc-sync engine did not stop within {:?}", timeout);
                false
            }
        }
    }
}

/// What other threads may ask of a running [`Engine`]; it does not keep the engine alive.
#[derive(Clone)]
pub struct EngineHandle {
    status: Arc<Mutex<EngineStatus>>,
    scheduler: Arc<Mutex<Option<SchedulerHandle>>>,
}

impl EngineHandle {
    pub fn status(&self) -> EngineStatus {
        let mut s = lock(&self.status).clone();
        if let Some(h) = self.scheduler.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            s.scheduler = Some(h.state());
        }
        s
    }

    /// Whether auto-sync runs (started, with a usable config, and not stopped).
    pub fn syncing(&self) -> bool {
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Asks for a sync now (no debounce); nothing when auto-sync does not run.
    pub fn sync_now(&self) {
        if let Some(h) = self.scheduler.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.trigger(Trigger::Manual);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn lock(m: &Mutex<EngineStatus>) -> std::sync::MutexGuard<'_, EngineStatus> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fail(st: &Mutex<EngineStatus>, msg: String) {
    logging::push_host_record("error", msg.clone());
    let mut s = lock(st);
    s.state = EngineState::Failed;
    s.config_error.get_or_insert(msg);
}

/// What auto-sync needs to run syncs.
#[derive(Clone)]
pub(super) struct SyncContext {
    pub(super) paths: Paths,
    pub(super) config: Config,
    pub(super) env: EnvSnapshot,
    pub(super) db_helper: Option<Vec<String>>,
}

/// How often a failed start (an invalid config) looks at the config file again, and an idle second
/// copy of the plugin checks whether the first one stopped.
const RECHECK: Duration = Duration::from_secs(2);

/// Waits (idle) while another engine runs in this process; None when stopped first.
async fn wait_for_instance(st: &Mutex<EngineStatus>, shutdown_rx: &mut watch::Receiver<bool>) -> Option<Instance> {
    let mut reported = false;
    loop {
        if let Some(i) = Instance::try_acquire() {
            if reported {
                report(st, None);
            }
            return Some(i);
        }
        if !reported {
            reported = true;
            lock(st).state = EngineState::Idle;
            report(st, Some(Problem::new(ProblemKind::AlreadyRunning, "oc-sync is loaded twice in this OpenCode; this copy stays idle")));
        }
        tokio::select! {
            r = shutdown_rx.changed() => if r.is_err() || *shutdown_rx.borrow() { return None },
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// [`setup`], again each time the config files change while the config is invalid, until it
/// works or the engine stops. Returns the context and the config files' fingerprint it used.
async fn setup_until_valid(
    opts: &EngineOptions,
    env: &EnvSnapshot,
    st: &Mutex<EngineStatus>,
    shutdown_rx: &mut watch::Receiver<bool>,
) -> Option<(Arc<SyncContext>, String)> {
    loop {
        let paths = Paths::resolve(env).ok();
        let fp = paths.as_ref().map(problem::fingerprint).unwrap_or_default();
        match setup(opts, env, st) {
            Ok(ctx) => {
                report(st, None);
                return Some((ctx, fp));
            }
            Err(false) => return None,
            Err(true) => {}
        }
        let paths = paths?;
        loop {
            tokio::select! {
                r = shutdown_rx.changed() => if r.is_err() || *shutdown_rx.borrow() { return None },
                () = tokio::time::sleep(RECHECK) => {}
            }
            if problem::fingerprint(&paths) != fp {
                tracing::info!("oc-sync's config changed; starting again");
                break;
            }
        }
    }
}

/// Loads paths, config, logging and the machine id; problems are reported, never thrown.
/// Err(true): the config is invalid (a fix can be picked up); Err(false): cannot start at all.
fn setup(opts: &EngineOptions, env: &EnvSnapshot, st: &Mutex<EngineStatus>) -> Result<Arc<SyncContext>, bool> {
    let paths = match Paths::resolve(env) {
        Ok(p) => p,
        Err(e) => {
            fail(st, format!("oc-sync cannot start: {e}"));
            return Err(false);
        }
    };
    let loaded = config::load(&paths, env, opts.plugin_options.as_ref());
    let level = loaded.as_ref().map(|l| l.config.log_level.clone()).unwrap_or_else(|_| "info".into());
    let log_dir = logging::init(&paths.log_dir, &level);
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            {
                let mut s = lock(st);
                s.state = EngineState::Failed;
                s.config_error = Some(e.to_string());
                s.log_dir = log_dir;
            }
            // Logged (once per distinct error) and shown by the plugin.
            report(st, Some(Problem::new(ProblemKind::Config, e.to_string())));
            return Err(true);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let machine = machine_id::get_or_create(loaded.config.machine_id.as_deref(), &paths.machine_id_file);
    let waiting = ConflictStore::new(paths.conflicts_dir()).waiting().unwrap_or_default();
    if !waiting.is_empty() {
        tracing::warn!("{} conflict(s) wait for you: run `oc-sync conflicts`", waiting.len());
    }
    let mut s = lock(st);
    s.conflicts_waiting = waiting;
    s.log_dir = log_dir;
    s.config_file = loaded.file.clone();
    s.config_error = None;
    s.warnings = loaded.warnings.iter().map(|w| w.to_string()).collect();
    match machine {
        Ok(m) => {
            tracing::info!(
                "oc-sync {} loaded (machine {}, config {}, project {})",
                crate::VERSION,
                m.id,
                loaded.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "defaults".into()),
                opts.directory.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
            );
            s.machine_id = Some(m.id);
            s.state = EngineState::Running;
        }
        Err(e) => {
            tracing::error!("cannot get this machine's id: {e}");
            s.state = EngineState::Failed;
            s.config_error = Some(format!("cannot get this machine's id: {e}"));
            return Err(false);
        }
    }
    Ok(Arc::new(SyncContext { paths, config: loaded.config, env: env.clone(), db_helper: opts.db_helper.clone().filter(|h| !h.is_empty()) }))
}

pub(super) fn scheduler_config(c: &Config) -> SchedulerConfig {
    SchedulerConfig {
        quiet: Duration::from_millis(c.file_watcher_debounce_ms),
        max_wait: Duration::from_millis(c.max_debounce_ms),
        interval: c.continuous_sync.then(|| Duration::from_secs_f64(c.sync_interval_minutes * 60.0)),
        startup_delay: c.auto_sync_on_startup.then(|| Duration::from_millis(STARTUP_DELAY_MS)),
        retry_base: Duration::from_millis(c.retry_delay_ms.max(250)),
        retry_max: Duration::from_secs(300),
        max_syncs_per_hour: MAX_SYNCS_PER_HOUR,
        // Other machines' changes: check the remote's head while idle (continuous sync only).
        poll: c.continuous_sync.then(PollConfig::default),
    }
}

/// Whether the database process has anything to do: OpenCode's database exists and sessions or
/// projects sync, or the OpenSync export is set up. (Spares a process start per sync otherwise.)
fn database_work(c: &SyncContext) -> bool {
    c.paths.opencode_db.is_file()
        && (c.config.sync.sessions || c.config.sync.projects || crate::opensync::credentials::load(&c.paths, &c.env).is_some())
}

/// The helper's exit code for "synced, but a conflict waits for the person" (`cli::EXIT_CONFLICTS`;
/// spelled here because the engine sits below the CLI).
const DB_HELPER_CONFLICTS_WAITING: i32 = 3;

/// Longest a database sync in the helper process may take before the engine stops waiting (the
/// process goes on and finishes by itself).
const DB_HELPER_WAIT: Duration = Duration::from_secs(300);

/// The command that runs the `oc-sync` CLI in a separate process with `args` (`helper`: program
/// and its first arguments, as the host gave them); None when there is none.
pub(super) fn helper_command(helper: &[String], args: &[&str]) -> Option<std::process::Command> {
    let (program, pre) = helper.split_first()?;
    let mut cmd = std::process::Command::new(program);
    // A compiled Bun executable (OpenCode) runs the script as Bun with this set.
    cmd.args(pre).args(args).env("BUN_BE_BUN", "1");
    Some(cmd)
}

/// Runs `oc-sync sync --database-only` in a separate process (sessions, then the OpenSync export
/// when set up) and waits for it. It logs to oc-sync's log file itself; here only its outcome.
fn run_db_helper(helper: &[String]) -> Result<(), String> {
    let Some(mut cmd) = helper_command(helper, &["sync", "--database-only"]) else { return Ok(()) };
    let program = &helper[0];
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot start the database sync process ({program}): {e}");
            return Err(format!("cannot start the database sync process: {e}"));
        }
    };
    let deadline = std::time::Instant::now() + DB_HELPER_WAIT;
    loop {
        match child.try_wait() {
            // Exit 3: synced, a conflict waits for the person (the conflict store tells the plugin).
            Ok(Some(status)) if status.success() || status.code() == Some(DB_HELPER_CONFLICTS_WAITING) => return Ok(()),
            Ok(Some(status)) => {
                tracing::warn!("the database sync process failed ({status}); see this log for its reason");
                return Err(format!("the sync of OpenCode's sessions failed ({status})"));
            }
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                tracing::warn!("the database sync process is still running after {} s; not waiting for it", DB_HELPER_WAIT.as_secs());
                return Ok(());
            }
            Err(e) => {
                tracing::warn!("cannot wait for the database sync process: {e}");
                return Ok(());
            }
        }
    }
}

/// The startup sync waits this long so OpenCode's own startup has the machine first.
pub const STARTUP_DELAY_MS: u64 = 1000;

/// One automatic sync: the blocking sync on tokio's blocking pool, its outcome classified for the
/// scheduler (retry with backoff when offline, wait for the person when it needs them).
fn runner(live: Arc<Live>, st: Arc<Mutex<EngineStatus>>, slot: Arc<Mutex<Option<SchedulerHandle>>>, own: OwnWrites) -> Runner {
    Box::new(move || {
        let (live, st, slot, own) = (live.clone(), st.clone(), slot.clone(), own.clone());
        Box::pin(async move {
            let ctx = live.current();
            let status = st.clone();
            let (l, sl) = (live.clone(), slot.clone());
            let result = tokio::task::spawn_blocking(move || {
                // A config or token fixed (or broken) while the host runs counts from this sync.
                let c = match l.refresh(&status, &sl) {
                    Ok(c) => c,
                    Err(e) => return (Err(e), None),
                };
                own.lock().unwrap_or_else(|e| e.into_inner()).clear();
                let observe = |key: &str, done: bool| {
                    if let Some(path) = local_path(&c.paths, key) {
                        let value = if done { Some(hash_of(&path)) } else { None };
                        own.lock().unwrap_or_else(|e| e.into_inner()).insert(path, value);
                    }
                };
                let files = SyncOptions { scope: crate::sync::Scope::Files, ..Default::default() };
                let result = sync_now(&c.paths, &c.config, &c.env, &files, Hooks { on_local_write: Some(&observe), ..Default::default() });
                if let Ok(r) = &result {
                    l.saw_head(r.version.clone());
                }
                // OpenCode's database (sessions) and the OpenSync export: in a separate process.
                let mut db_problem = None;
                if let Some(helper) = &c.db_helper
                    && database_work(&c)
                {
                    db_problem = run_db_helper(helper).err();
                    // Its export's outcome, as it recorded it (structured, in its state file).
                    let problem = crate::opensync::state::load(&crate::opensync::state::file(&c.paths)).problem;
                    lock(&status).opensync_problem = problem;
                    // It may have pushed sessions: the remote's new head is this machine's own.
                    if result.is_ok() {
                        l.reread_head(&c);
                    }
                }
                (Ok(result), db_problem)
            })
            .await;
            let (result, db_problem) = match result {
                Ok((Err(config_error), _)) => (Ok(Err(config_error)), None),
                Ok((Ok(r), db)) => (Ok(Ok(r)), db),
                Err(join) => (Err(join), None),
            };
            let outcome = match result {
                Ok(Err(config_error)) => RunOutcome::Failed(config_error),
                Ok(Ok(Ok(report))) => {
                    let changed = report.changed_anything() || !report.conflicts.is_empty();
                    if changed {
                        tracing::info!("sync: {}", report.summary());
                    }
                    lock(&st).last_sync_summary = changed.then(|| report.summary());
                    for c in report.conflicts.iter() {
                        tracing::warn!("{}", c.describe());
                    }
                    lock(&st).conflicts_waiting = ConflictStore::new(ctx.paths.conflicts_dir()).waiting().unwrap_or_default();
                    live::report(&st, db_problem.map(|m| Problem::new(ProblemKind::DatabaseSync, m)));
                    RunOutcome::Ok
                }
                Ok(Ok(Err(e))) => {
                    let retryable = e.is_retryable();
                    match problem::classify(&e) {
                        // Logged once by `report`, not at every retry.
                        Some(p) => report(&st, Some(p)),
                        None => {
                            // Offline for an hour: one line, then how often it repeated.
                            static SAME: crate::logging::Collapse = crate::logging::Collapse::new();
                            let line = format!("sync failed{}: {e}", if retryable { " (will retry)" } else { "" });
                            if SAME.first(&line) {
                                tracing::warn!("{line}");
                            }
                        }
                    }
                    if retryable { RunOutcome::Retryable(e.to_string()) } else { RunOutcome::Failed(e.to_string()) }
                }
                Err(join) => RunOutcome::Failed(format!("internal error in a sync: {join}")),
            };
            // Persist once the scheduler has recorded this outcome.
            let paths = ctx.paths.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                persist_state(&paths, &slot);
            });
            outcome
        })
    })
}

/// Writes the scheduler's state for `oc-sync status` (a separate process) to read.
fn persist_state(paths: &Paths, slot: &Arc<Mutex<Option<SchedulerHandle>>>) {
    let state = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.state());
    let v = serde_json::json!({ "pid": std::process::id(), "updatedMs": now_ms(), "scheduler": state });
    let _ = crate::fsutil::atomic_write(&paths.autosync_file(), v.to_string().as_bytes(), None);
}

/// Watches exactly the synced paths; changes feed the debounced trigger, lost events a rescan.
fn start_watcher(ctx: &SyncContext, handle: SchedulerHandle, own: OwnWrites) -> Option<Watcher> {
    let mut roots = Vec::new();
    let config_src = FileSource::config(&ctx.paths, &ctx.config).ok();
    let state_src = FileSource::state(&ctx.paths, &ctx.config).ok();
    if ctx.config.sync.config
        && let Some(c) = &config_src {
            roots.push(WatchRoot::from_source(c, CONFIG_FOLDERS, !ctx.config.include.is_empty()));
        }
    if ctx.config.sync.state
        && let Some(s) = &state_src {
            roots.push(WatchRoot::from_source(s, &[], false));
        }
    if roots.is_empty() {
        return None;
    }
    match Watcher::start(roots, move |ev| match ev {
        WatchEvent::Changed(path) => {
            let own = own.lock().unwrap_or_else(|e| e.into_inner());
            let ours = match own.get(&path) {
                Some(None) => true, // being written by oc-sync right now
                Some(Some(written)) => *written == hash_of(&path),
                // A folder oc-sync created for a file it wrote.
                None => path.is_dir() && own.keys().any(|p| p.starts_with(&path)),
            };
            drop(own);
            if !ours {
                handle.trigger(Trigger::FileChange);
            }
        }
        WatchEvent::Rescan => handle.trigger(Trigger::Rescan),
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("file watching is off ({e}); changes still sync on the timer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_fast_runs_and_stops_within_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let t0 = std::time::Instant::now();
        let mut e = Engine::start(EngineOptions::default(), env).unwrap();
        assert!(t0.elapsed() < Duration::from_millis(200), "start must not block");
        for _ in 0..200 {
            if e.status().state != EngineState::Starting {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = e.status();
        assert_eq!(s.state, EngineState::Running, "{s:?}");
        assert!(s.machine_id.is_some());
        e.notify("session.idle");
        assert_eq!(e.status().events_seen, 1);
        assert!(e.stop(Duration::from_secs(2)));
        assert_eq!(e.status().state, EngineState::Stopped);
        assert!(e.stop(Duration::from_secs(1)), "stop is idempotent");
    }

    #[test]
    fn broken_config_is_reported_not_thrown() {
        let tmp = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let opts = EngineOptions { plugin_options: Some(serde_json::json!({"conflictStrategy": "nope"})), ..Default::default() };
        let mut e = Engine::start(opts, env).unwrap();
        for _ in 0..200 {
            if e.status().state != EngineState::Starting {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = e.status();
        assert_eq!(s.state, EngineState::Failed);
        assert!(s.config_error.unwrap().contains("conflictStrategy"));
        assert!(e.stop(Duration::from_secs(2)));
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..400 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}");
    }

    fn remote_keys(remote: &std::path::Path) -> Vec<String> {
        use crate::remote::Remote;
        let r = crate::remote::local::LocalRemote::open(remote).unwrap();
        match r.head().unwrap() {
            Some(v) => r.manifest(&v).unwrap().entries.keys().cloned().collect(),
            None => vec![],
        }
    }

    fn auto_engine(tmp: &std::path::Path, remote: &std::path::Path, opts: serde_json::Value) -> Engine {
        let env = EnvSnapshot::new(tmp, [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let e = Engine::start(EngineOptions { plugin_options: Some(opts), ..Default::default() }, env).unwrap();
        wait_for("the engine to start", || e.status().state != EngineState::Starting);
        assert_eq!(e.status().state, EngineState::Running, "{:?}", e.status());
        e
    }

    #[test]
    fn a_file_change_reaches_the_remote_without_a_manual_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        let cfg = tmp.path().join(".config/opencode");
        std::fs::create_dir_all(cfg.join("agents")).unwrap();
        let mut e = auto_engine(
            tmp.path(),
            &remote,
            serde_json::json!({"autoSyncOnStartup": false, "fileWatcherDebounceMs": 200, "maxDebounceMs": 1000}),
        );
        wait_for("the watcher", || e.status().watching);
        std::fs::write(cfg.join("agents/review.md"), "# r\n").unwrap();
        wait_for("the change to reach the remote", || remote_keys(&remote).contains(&"config/agents/review.md".to_string()));
        wait_for("the sync to finish", || e.status().scheduler.is_some_and(|s| s.last_ok_ms.is_some()));
        assert!(e.status().scheduler.unwrap().last_error.is_none());
        // An OpenCode event feeds the same trigger.
        std::fs::write(cfg.join("AGENTS.md"), "x\n").unwrap();
        e.notify("session.idle");
        wait_for("the second change", || remote_keys(&remote).contains(&"config/AGENTS.md".to_string()));
        assert!(e.stop(Duration::from_secs(5)));
    }

    #[test]
    fn stop_flushes_pending_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        let cfg = tmp.path().join(".config/opencode");
        std::fs::create_dir_all(&cfg).unwrap();
        let mut e = auto_engine(tmp.path(), &remote, serde_json::json!({"autoSyncOnStartup": false}));
        wait_for("the watcher", || e.status().watching);
        std::fs::write(cfg.join("AGENTS.md"), "flush me\n").unwrap();
        std::thread::sleep(Duration::from_millis(300)); // the watcher sees it; the 5 s debounce has not fired
        assert!(remote_keys(&remote).is_empty());
        assert!(e.stop(Duration::from_secs(6)));
        assert_eq!(remote_keys(&remote), vec!["config/AGENTS.md".to_string()]);
    }

    #[test]
    fn an_unreachable_remote_is_retried_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("not-mounted").join("remote");
        std::fs::create_dir_all(tmp.path().join(".config/opencode")).unwrap();
        std::fs::write(tmp.path().join(".config/opencode/AGENTS.md"), "x\n").unwrap();
        let mut e = auto_engine(tmp.path(), &remote, serde_json::json!({"retryDelayMs": 250}));
        wait_for("the startup sync to fail", || e.status().scheduler.is_some_and(|s| s.last_error.is_some()));
        let s = e.status().scheduler.unwrap();
        assert!(s.last_error.as_deref().unwrap().contains("cannot reach the remote"), "{s:?}");
        assert!(s.pending && s.retry_at_ms.is_some(), "{s:?}");
        std::fs::create_dir_all(tmp.path().join("not-mounted")).unwrap();
        wait_for("the retry to succeed", || remote_keys(&remote).contains(&"config/AGENTS.md".to_string()));
        assert!(e.stop(Duration::from_secs(5)));
    }

    #[test]
    fn a_config_fixed_while_running_starts_auto_sync_and_a_broken_one_is_reported_once() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        let cfg = tmp.path().join(".config/opencode");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("AGENTS.md"), "x\n").unwrap();
        let file = cfg.join("opencode-sync.json");
        std::fs::write(&file, r#"{"conflictStrategy": "nope"}"#).unwrap();
        let env = EnvSnapshot::new(tmp.path(), [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let opts = serde_json::json!({"autoSyncOnStartup": true, "fileWatcherDebounceMs": 200, "maxDebounceMs": 1000});
        let mut e = Engine::start(EngineOptions { plugin_options: Some(opts), ..Default::default() }, env).unwrap();
        wait_for("the failed start", || e.status().problem.is_some());
        let s = e.status();
        assert_eq!(s.state, EngineState::Failed);
        let p = s.problem.unwrap();
        assert_eq!(p.kind, ProblemKind::Config);
        assert!(p.message.contains("conflictStrategy") && !p.action.is_empty(), "{p:?}");
        // Fixed while running: auto-sync starts without a restart, and says so.
        std::fs::write(&file, r#"{"conflictStrategy": "newest-wins"}"#).unwrap();
        wait_for("the start after the fix", || e.status().state == EngineState::Running);
        let s = e.status();
        assert!(s.problem.is_none() && s.config_error.is_none(), "{s:?}");
        assert_eq!(s.recovered.unwrap().kind, ProblemKind::Config);
        wait_for("the startup sync", || remote_keys(&remote).contains(&"config/AGENTS.md".to_string()));
        wait_for("the sync to finish", || e.status().scheduler.is_some_and(|s| s.last_ok_ms.is_some() && !s.running));
        // Broken again while running: the next sync fails with the config problem, no restart.
        std::fs::write(&file, r#"{"conflictStrategy": 7}"#).unwrap();
        e.sync_now();
        wait_for("the config problem", || e.status().problem.is_some_and(|p| p.kind == ProblemKind::Config));
        // ...and fixed again: the next sync uses it.
        std::fs::write(&file, r#"{"conflictStrategy": "auto-merge"}"#).unwrap();
        std::fs::write(cfg.join("AGENTS.md"), "y\n").unwrap();
        e.sync_now();
        wait_for("the recovery", || e.status().problem.is_none());
        assert!(e.status().scheduler.unwrap().last_error.is_none());
        assert!(e.stop(Duration::from_secs(5)));
    }

    #[test]
    fn a_second_engine_in_one_process_stays_idle_until_the_first_stops() {
        // Single-instance engines share a process-wide flag: this is the only test that uses it.
        let tmp = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let opts = EngineOptions { plugin_options: Some(serde_json::json!({"autoSyncOnStartup": false})), single_instance: true, ..Default::default() };
        let mut first = Engine::start(opts.clone(), env.clone()).unwrap();
        wait_for("the first engine", || first.status().state == EngineState::Running);
        let mut second = Engine::start(opts.clone(), env.clone()).unwrap();
        wait_for("the second engine to notice", || second.status().problem.is_some());
        let s = second.status();
        assert_eq!(s.problem.unwrap().kind, ProblemKind::AlreadyRunning);
        assert!(s.scheduler.is_none(), "the second copy runs no syncs");
        assert!(first.stop(Duration::from_secs(5)));
        wait_for("the second engine to take over", || second.status().state == EngineState::Running);
        assert!(second.status().problem.is_none());
        assert!(second.stop(Duration::from_secs(5)));
        // After both stopped, a new start (OpenCode reloading the plugin) runs.
        let mut third = Engine::start(opts, env).unwrap();
        wait_for("a later start", || third.status().state == EngineState::Running);
        assert!(third.stop(Duration::from_secs(5)));
    }

    #[test]
    fn the_idle_poll_notices_another_machines_push() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        let home = tmp.path().join("me");
        std::fs::create_dir_all(home.join(".config/opencode")).unwrap();
        let env = EnvSnapshot::new(&home, [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let paths = Paths::resolve(&env).unwrap();
        let config = config::load(&paths, &env, None).unwrap().config;
        let ctx = Arc::new(SyncContext { paths: paths.clone(), config: config.clone(), env: env.clone(), db_helper: None });
        let live = Live::new(ctx.clone(), &env, None, problem::fingerprint(&paths));
        assert!(!live.wants_sync(), "the first check only learns the head");
        assert!(!live.wants_sync());
        // Another machine pushes.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(other.join(".config/opencode")).unwrap();
        std::fs::write(other.join(".config/opencode/AGENTS.md"), "from B\n").unwrap();
        let oenv = EnvSnapshot::new(&other, [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let opaths = Paths::resolve(&oenv).unwrap();
        sync_now(&opaths, &config::load(&opaths, &oenv, None).unwrap().config, &oenv, &SyncOptions::default(), Hooks::default()).unwrap();
        assert!(live.wants_sync(), "the head moved");
        assert!(!live.wants_sync(), "noted: no second sync for the same head");
        // A config edit also asks for a sync (it is re-read then).
        std::fs::write(&paths.config_file, "{}").unwrap();
        assert!(live.wants_sync());
    }

    #[test]
    fn its_own_writes_do_not_trigger_another_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        // Another machine pushes a file.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(other.join(".config/opencode/agents")).unwrap();
        std::fs::write(other.join(".config/opencode/agents/x.md"), "from the other machine\n").unwrap();
        let oenv = EnvSnapshot::new(&other, [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let opaths = Paths::resolve(&oenv).unwrap();
        let ocfg = config::load(&opaths, &oenv, None).unwrap().config;
        sync_now(&opaths, &ocfg, &oenv, &SyncOptions::default(), Hooks::default()).unwrap();

        let home = tmp.path().join("me");
        std::fs::create_dir_all(home.join(".config/opencode")).unwrap();
        let mut e = auto_engine(
            &home,
            &remote,
            serde_json::json!({"autoSyncOnStartup": false, "fileWatcherDebounceMs": 200, "maxDebounceMs": 1000}),
        );
        wait_for("the watcher", || e.status().watching);
        e.sync_now();
        wait_for("the pull", || home.join(".config/opencode/agents/x.md").exists());
        std::thread::sleep(Duration::from_millis(1200)); // longer than the debounce
        let s = e.status().scheduler.unwrap();
        assert_eq!(s.total_syncs, 1, "the pull's own writes triggered another sync: {s:?}");
        assert!(!s.pending, "{s:?}");
        // A real edit of the same file still triggers.
        std::fs::write(home.join(".config/opencode/agents/x.md"), "edited here\n").unwrap();
        wait_for("the edit to sync", || e.status().scheduler.is_some_and(|s| s.total_syncs == 2 && !s.running));
        assert!(e.stop(Duration::from_secs(5)));
    }

    #[test]
    fn engine_state_serializes_as_before() {
        let names: Vec<_> = [EngineState::Starting, EngineState::Running, EngineState::Idle, EngineState::Stopped, EngineState::Failed]
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(names, ["starting", "running", "idle", "stopped", "failed"]);
        assert_eq!(serde_json::to_value(EngineStatus::default()).unwrap()["state"], "starting");
    }
}
