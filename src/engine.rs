//! The background engine that runs inside OpenCode (through the plugin) or any long-lived host.
//!
//! [`Engine::start`] returns at once: config loading, logging setup and everything else happen on a
//! dedicated thread with its own single-threaded tokio runtime, so the host's startup never waits
//! on the disk or the network. [`Engine::stop`] shuts that thread down within a bounded time.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::config;
use crate::logging;
use crate::machine_id;
use crate::paths::{EnvSnapshot, Paths};

/// What the host passes when starting the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The options from opencode.json's plugin tuple, if any.
    pub plugin_options: Option<Value>,
    /// The project directory OpenCode was started in.
    pub directory: Option<PathBuf>,
}

/// A snapshot of what the engine is doing, for the host and `status`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// "starting", "running", "stopped" or "failed".
    pub state: String,
    pub machine_id: Option<String>,
    pub config_file: Option<PathBuf>,
    pub config_error: Option<String>,
    pub warnings: Vec<String>,
    pub log_dir: Option<PathBuf>,
    pub started_at_ms: u64,
    pub events_seen: u64,
    pub last_event: Option<String>,
    /// Items whose conflicts wait for the person (`oc-sync resolve`); the plugin shows a toast.
    pub conflicts_waiting: Vec<String>,
}

pub struct Engine {
    status: Arc<Mutex<EngineStatus>>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    finished: mpsc::Receiver<()>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Engine {
    /// Starts the engine thread and returns immediately.
    pub fn start(opts: EngineOptions, env: EnvSnapshot) -> std::io::Result<Engine> {
        let status = Arc::new(Mutex::new(EngineStatus {
            state: "starting".into(),
            started_at_ms: now_ms(),
            ..Default::default()
        }));
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let (done_tx, finished) = mpsc::channel();
        let st = status.clone();
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
                    setup(&opts, &env, &st);
                    // Later issues add the scheduler here (startup sync, watcher, timer).
                    while !*shutdown_rx.borrow() {
                        if shutdown_rx.changed().await.is_err() {
                            break;
                        }
                    }
                    tracing::info!("oc-sync engine stopped");
                });
            }));
            if result.is_err() {
                fail(&st, "internal error in the engine thread (see the oc-sync log)".into());
            } else {
                lock(&st).state = "stopped".into();
            }
            let _ = done_tx.send(());
        })?;
        Ok(Engine { status, shutdown, thread: Some(thread), finished })
    }

    pub fn status(&self) -> EngineStatus {
        lock(&self.status).clone()
    }

    /// Tells the engine that something happened in the host (an OpenCode event type).
    pub fn notify(&self, event_type: &str) {
        let mut s = lock(&self.status);
        s.events_seen += 1;
        s.last_event = Some(event_type.to_string());
    }

    /// Asks the engine to stop and waits up to `timeout` for it. Returns true if it stopped in time;
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
    s.state = "failed".into();
    s.config_error.get_or_insert(msg);
}

/// Loads paths, config, logging and the machine id; problems are reported, never thrown.
fn setup(opts: &EngineOptions, env: &EnvSnapshot, st: &Mutex<EngineStatus>) {
    let paths = match Paths::resolve(env) {
        Ok(p) => p,
        Err(e) => return fail(st, format!("oc-sync cannot start: {e}")),
    };
    let loaded = config::load(&paths, env, opts.plugin_options.as_ref());
    let level = loaded.as_ref().map(|l| l.config.log_level.clone()).unwrap_or_else(|_| "info".into());
    let log_dir = logging::init(&paths.log_dir, &level);
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            let mut s = lock(st);
            s.state = "failed".into();
            s.config_error = Some(e.to_string());
            s.log_dir = log_dir;
            return;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let machine = machine_id::get_or_create(loaded.config.machine_id.as_deref(), &paths.machine_id_file);
    let waiting: Vec<String> = crate::sync::session::conflict_store(&paths)
        .list(false)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.needs_person)
        .map(|c| c.key)
        .collect();
    if !waiting.is_empty() {
        tracing::warn!("{} conflict(s) wait for you: run `oc-sync conflicts`", waiting.len());
    }
    let mut s = lock(st);
    s.conflicts_waiting = waiting;
    s.log_dir = log_dir;
    s.config_file = loaded.file.clone();
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
            s.state = "running".into();
        }
        Err(e) => {
            tracing::error!("cannot get this machine's id: {e}");
            s.state = "failed".into();
            s.config_error = Some(format!("cannot get this machine's id: {e}"));
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
            if e.status().state != "starting" {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = e.status();
        assert_eq!(s.state, "running", "{s:?}");
        assert!(s.machine_id.is_some());
        e.notify("session.idle");
        assert_eq!(e.status().events_seen, 1);
        assert!(e.stop(Duration::from_secs(2)));
        assert_eq!(e.status().state, "stopped");
        assert!(e.stop(Duration::from_secs(1)), "stop is idempotent");
    }

    #[test]
    fn broken_config_is_reported_not_thrown() {
        let tmp = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let opts = EngineOptions { plugin_options: Some(serde_json::json!({"conflictStrategy": "nope"})), directory: None };
        let mut e = Engine::start(opts, env).unwrap();
        for _ in 0..200 {
            if e.status().state != "starting" {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = e.status();
        assert_eq!(s.state, "failed");
        assert!(s.config_error.unwrap().contains("conflictStrategy"));
        assert!(e.stop(Duration::from_secs(2)));
    }
}
