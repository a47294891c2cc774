//! The thin napi-rs layer between Node/Bun (OpenCode) and the oc-sync engine.
//!
//! Every exported function runs inside [`guard`]: a Rust panic becomes a JS `Error` instead of
//! aborting the host process, and the panic message goes to oc-sync's log, never to stderr.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use oc_sync::autosync::commands::{self, Keep, Request};
use oc_sync::autosync::engine::{Engine as CoreEngine, EngineHandle, EngineOptions};
use oc_sync::paths::{EnvSnapshot, Paths};

static PANIC_HOOK: Once = Once::new();

/// Runs `f`, turning a panic into an error. Installs (once) a panic hook that logs instead of printing.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!("internal error (panic): {info}");
            oc_sync::logging::push_host_record("error", format!("oc-sync internal error: {info}"));
        }));
    });
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::from_reason(format!(
                "oc-sync internal error in {what}: {msg} (please report it with the oc-sync log file)"
            )))
        }
    }
}

fn to_js_err(e: impl std::fmt::Display) -> Error {
    Error::from_reason(e.to_string())
}

/// The oc-sync version.
#[napi]
pub fn version() -> String {
    oc_sync::VERSION.to_string()
}

/// Runs the `oc-sync` command line with `argv` (without the program name) on the process's own
/// stdout/stderr and returns its exit code (0 ok, 1 failure, 2 usage error). For the npm launcher,
/// never for use inside OpenCode.
#[napi]
pub fn run_cli(argv: Vec<String>) -> Result<i32> {
    guard("runCli", || Ok(oc_sync::cli::run_process(std::iter::once("oc-sync".to_string()).chain(argv))))
}

/// The OpenCode and oc-sync paths resolved from the current environment.
#[napi]
pub fn resolve_paths() -> Result<serde_json::Value> {
    guard("resolvePaths", || {
        let paths = Paths::resolve(&EnvSnapshot::from_process()).map_err(to_js_err)?;
        serde_json::to_value(paths).map_err(to_js_err)
    })
}

/// The same report `oc-sync status --json` prints.
#[napi]
pub fn status_report() -> Result<serde_json::Value> {
    guard("statusReport", || {
        let env = EnvSnapshot::from_process();
        let paths = Paths::resolve(&env).map_err(to_js_err)?;
        serde_json::to_value(oc_sync::status::report(&paths, &env)).map_err(to_js_err)
    })
}

/// Used by the test suite to prove that a panic becomes a JS error.
#[napi(js_name = "_testPanic")]
pub fn test_panic() -> Result<()> {
    guard("_testPanic", || panic!("deliberate test panic"))
}

/// A slash command oc-sync adds to OpenCode (name without the slash).
#[napi(object)]
pub struct SlashCommand {
    pub name: String,
    pub description: String,
    /// The prompt template OpenCode's config requires; never sent, the plugin answers instead.
    pub template: String,
}

/// The slash commands the plugin registers (`/sync`, `/sync-status`, `/sync-conflicts`).
#[napi]
pub fn slash_commands() -> Vec<SlashCommand> {
    commands::SLASH_COMMANDS
        .iter()
        .map(|c| SlashCommand { name: c.name.into(), description: c.description.into(), template: c.template.into() })
        .collect()
}

#[napi(object)]
pub struct LogRecord {
    /// "error", "warn" or "info".
    pub level: String,
    pub message: String,
}

/// The background engine for a host such as OpenCode: `Engine.start()` returns at once, `stop()` ends
/// all background work within a bounded time.
#[napi]
pub struct Engine {
    inner: Arc<Mutex<Option<CoreEngine>>>,
    /// For the commands' answers, usable while `inner` is locked or stopped.
    handle: EngineHandle,
    helper: Option<Vec<String>>,
}

#[napi]
impl Engine {
    /// Starts the engine in the background. `options` are the plugin options from opencode.json,
    /// `directory` the project OpenCode runs in, `helper` the command (program and arguments) that
    /// runs the `oc-sync` CLI in a separate process, for OpenCode's database. Never blocks on disk
    /// or network.
    #[napi(factory)]
    pub fn start(options: Option<serde_json::Value>, directory: Option<String>, helper: Option<Vec<String>>) -> Result<Engine> {
        guard("Engine.start", || {
            // One running engine per process: a plugin listed twice stays idle (status.problem).
            let opts = EngineOptions { plugin_options: options, directory: directory.map(Into::into), db_helper: helper.clone(), single_instance: true };
            let engine = CoreEngine::start(opts, EnvSnapshot::from_process()).map_err(to_js_err)?;
            let handle = engine.handle();
            Ok(Engine { inner: Arc::new(Mutex::new(Some(engine))), handle, helper })
        })
    }

    /// Log records to forward to the host's log since the last call.
    #[napi]
    pub fn take_logs(&self) -> Result<Vec<LogRecord>> {
        guard("Engine.takeLogs", || {
            Ok(oc_sync::logging::take_host_records()
                .into_iter()
                .map(|r| LogRecord { level: r.level, message: r.message })
                .collect())
        })
    }

    /// What the engine is doing.
    #[napi]
    pub fn status(&self) -> Result<serde_json::Value> {
        guard("Engine.status", || {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match inner.as_ref() {
                Some(e) => serde_json::to_value(e.status()).map_err(to_js_err),
                None => Ok(serde_json::json!({ "state": "stopped" })),
            }
        })
    }

    /// Tells the engine about a host event (an OpenCode event type such as "session.idle").
    #[napi]
    pub fn notify(&self, event_type: String) -> Result<()> {
        guard("Engine.notify", || {
            if let Some(e) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                e.notify(&event_type);
            }
            Ok(())
        })
    }

    /// Answers an oc-sync slash command typed in OpenCode (`name` without the slash, `arguments`
    /// as typed): resolves to the text to show the person, or null when the command is not
    /// oc-sync's. Runs off the JS thread (a sync is waited for, at most a minute).
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn answer_command(&self, name: String, arguments: Option<String>) -> AsyncTask<AnswerTask> {
        self.answer(Request::from_slash(&name, arguments.as_deref().unwrap_or("")))
    }

    /// Answers the agent's `oc_sync` tool: `action` is "status", "sync" or "conflicts".
    #[napi(ts_return_type = "Promise<string>")]
    pub fn answer_tool(&self, action: String) -> AsyncTask<AnswerTask> {
        self.answer(Some(Request::from_action(&action)))
    }

    /// Settles a conflict (item key or conflict id) keeping "local" or "remote", then syncs the choice.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn resolve_conflict(&self, target: String, keep: String) -> AsyncTask<AnswerTask> {
        self.answer(Some(match Keep::parse(&keep) {
            Some(keep) => Request::Resolve { target, keep },
            None => Request::Usage(format!("keep must be \"local\" or \"remote\", not {keep:?}")),
        }))
    }

    fn answer(&self, request: Option<Request>) -> AsyncTask<AnswerTask> {
        AsyncTask::new(AnswerTask { handle: self.handle.clone(), helper: self.helper.clone(), request })
    }

    /// Stops all background work, waiting at most `timeoutMs` (default 3000) off the JS thread.
    /// Resolves to true when everything stopped in time. Safe to call more than once.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn stop(&self, timeout_ms: Option<u32>) -> AsyncTask<StopTask> {
        AsyncTask::new(StopTask {
            inner: self.inner.clone(),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(3000) as u64),
        })
    }
}

pub struct StopTask {
    inner: Arc<Mutex<Option<CoreEngine>>>,
    timeout: Duration,
}

impl Task for StopTask {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> Result<bool> {
        guard("Engine.stop", || {
            let engine = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
            Ok(match engine {
                Some(mut e) => e.stop(self.timeout),
                None => true,
            })
        })
    }

    fn resolve(&mut self, _env: Env, output: bool) -> Result<bool> {
        Ok(output)
    }
}

pub struct AnswerTask {
    handle: EngineHandle,
    helper: Option<Vec<String>>,
    request: Option<Request>,
}

impl Task for AnswerTask {
    type Output = Option<String>;
    type JsValue = Option<String>;

    fn compute(&mut self) -> Result<Option<String>> {
        guard("Engine.answer", || {
            Ok(self.request.as_ref().map(|r| {
                commands::answer(&self.handle, &EnvSnapshot::from_process(), self.helper.as_deref(), r, commands::ANSWER_WAIT)
            }))
        })
    }

    fn resolve(&mut self, _env: Env, output: Option<String>) -> Result<Option<String>> {
        Ok(output)
    }
}
