//! The engine's live view of its settings and of the remote, between syncs:
//!
//! * the config (and the token `oc-sync login` stores) are re-read at the start of a sync when
//!   their fingerprint changed, so a fix made while OpenCode runs is used without a restart (the
//!   scheduler's settings follow);
//! * the remote's head is remembered after each sync, so the idle poll can tell whether another
//!   machine pushed (a conditional request on GitHub: a 304 costs no rate limit);
//! * problems are recorded in the status once per distinct problem (see [`super::problem`]);
//! * one engine per process: a plugin loaded twice leaves the second copy idle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{scheduler_config, EngineStatus, SyncContext};
use crate::autosync::problem::{fingerprint, Problem, ProblemKind, Recovered};
use crate::autosync::scheduler::{Probe, SchedulerHandle};
use crate::config;
use crate::paths::{EnvSnapshot, Paths};
use crate::time::now_ms;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the current problem (None: all is well). A new problem is logged once (and the plugin
/// shows it once); a problem that goes away is logged and noted in `recovered`.
pub(super) fn report(st: &Mutex<EngineStatus>, p: Option<Problem>) {
    let old = lock(st).problem.clone();
    match (old, p) {
        (Some(old), Some(new)) if old.same(&new) => {}
        (_, Some(new)) => {
            let text = format!("{}. To fix it: {}", new.message.trim_end_matches('.'), new.action);
            if new.kind == ProblemKind::AlreadyRunning {
                tracing::warn!("{text}");
            } else {
                tracing::error!("{text}");
            }
            lock(st).problem = Some(new);
        }
        (Some(old), None) => {
            tracing::info!("oc-sync is syncing again (fixed: {})", kind_name(old.kind));
            let mut s = lock(st);
            s.problem = None;
            s.recovered = Some(Recovered { kind: old.kind, message: old.message, at_ms: now_ms() });
        }
        (None, None) => {}
    }
}

fn kind_name(k: ProblemKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The settings the engine started with, re-read when their files change.
pub(super) struct Live {
    pub paths: Paths,
    env: EnvSnapshot,
    plugin_options: Option<Value>,
    inner: Mutex<Inner>,
}

struct Inner {
    ctx: Arc<SyncContext>,
    fingerprint: String,
    /// The config as it is now is invalid (the message): syncs fail until it changes.
    broken: Option<String>,
    /// The remote head after the last sync or check (None = not known yet).
    head: Option<Option<String>>,
}

impl Live {
    pub fn new(ctx: Arc<SyncContext>, env: &EnvSnapshot, plugin_options: Option<Value>, fingerprint: String) -> Arc<Live> {
        Arc::new(Live {
            paths: ctx.paths.clone(),
            env: env.clone(),
            plugin_options,
            inner: Mutex::new(Inner { ctx, fingerprint, broken: None, head: None }),
        })
    }

    pub fn current(&self) -> Arc<SyncContext> {
        lock(&self.inner).ctx.clone()
    }

    /// The context for the next sync: re-reads the config when its files changed. Err: the config
    /// is invalid (already recorded as the problem).
    pub fn refresh(&self, st: &Mutex<EngineStatus>, slot: &Mutex<Option<SchedulerHandle>>) -> Result<Arc<SyncContext>, String> {
        let fp = fingerprint(&self.paths);
        let mut inner = lock(&self.inner);
        if fp == inner.fingerprint {
            return match &inner.broken {
                Some(e) => Err(e.clone()),
                None => Ok(inner.ctx.clone()),
            };
        }
        inner.fingerprint = fp;
        match config::load(&self.paths, &self.env, self.plugin_options.as_ref()) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!("oc-sync re-read its config (it changed)");
                let old = inner.ctx.clone();
                let new = Arc::new(SyncContext { config: loaded.config, ..(*old).clone() });
                let sched = scheduler_config(&new.config);
                if sched != scheduler_config(&old.config)
                    && let Some(h) = lock(slot).as_ref()
                {
                    h.reconfigure(sched);
                }
                inner.ctx = new.clone();
                inner.broken = None;
                drop(inner);
                let mut s = lock(st);
                s.config_error = None;
                s.config_file = loaded.file;
                s.warnings = loaded.warnings.iter().map(|w| w.to_string()).collect();
                Ok(new)
            }
            Err(e) => {
                let msg = e.to_string();
                inner.broken = Some(msg.clone());
                drop(inner);
                lock(st).config_error = Some(msg.clone());
                report(st, Some(Problem::new(ProblemKind::Config, msg.clone())));
                Err(msg)
            }
        }
    }

    /// Notes the remote head a sync ended on.
    pub fn saw_head(&self, head: Option<String>) {
        lock(&self.inner).head = Some(head);
    }

    /// Reads the remote head now and notes it (after another process wrote the remote).
    pub fn reread_head(&self, ctx: &SyncContext) {
        if let Ok(head) = self.read_head(ctx) {
            self.saw_head(head);
        }
    }

    fn read_head(&self, ctx: &SyncContext) -> Result<Option<String>, crate::remote::RemoteError> {
        let remote = crate::remote::open::open_remote(&ctx.config, &ctx.paths, &ctx.env)?;
        Ok(remote.head()?.map(|v| v.0))
    }

    /// Whether a sync is wanted now: the config or token changed, or the remote moved since the
    /// last sync (blocking: one cheap request on GitHub, a file read for a folder remote).
    pub fn wants_sync(&self) -> bool {
        let (ctx, changed, broken) = {
            let inner = lock(&self.inner);
            (inner.ctx.clone(), fingerprint(&self.paths) != inner.fingerprint, inner.broken.is_some())
        };
        if changed {
            return true;
        }
        if broken {
            return false;
        }
        let head = match self.read_head(&ctx) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!("remote check failed (the next one tries again): {e}");
                return false;
            }
        };
        let mut inner = lock(&self.inner);
        let moved = inner.head.as_ref().is_some_and(|known| *known != head);
        inner.head = Some(head);
        moved
    }

    /// The scheduler's remote check.
    pub fn probe(self: &Arc<Self>) -> Probe {
        let me = self.clone();
        Box::new(move || {
            let me = me.clone();
            Box::pin(async move { tokio::task::spawn_blocking(move || me.wants_sync()).await.unwrap_or(false) })
        })
    }
}

/// One running engine per process (a plugin listed twice, e.g. by name and by file:// path).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Held by the engine that runs; released when it stops, so a later start (a reload) works.
pub(super) struct Instance;

impl Instance {
    pub fn try_acquire() -> Option<Instance> {
        ACTIVE.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| Instance)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::Release);
    }
}
