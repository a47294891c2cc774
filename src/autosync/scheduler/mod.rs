//! The auto-sync scheduler: decides *when* a sync runs inside OpenCode.
//!
//! It is one tokio task (spawned on the engine's single-threaded runtime) that owns all
//! scheduling state. Callers talk to it through a cloneable [`SchedulerHandle`]: `trigger()`
//! is a non-blocking send on an unbounded channel (callable from any thread), `state()`
//! reads a snapshot, `shutdown()` flushes and stops. The sync itself is performed by the
//! [`Runner`] future; the caller wraps the blocking sync in `spawn_blocking` inside it.
//!
//! # Rules
//!
//! * **Debounce.** `FileChange`, `HostEvent` and `Rescan` start or extend a burst. The sync
//!   runs at `min(last_change + quiet, first_change + max_wait)`: after `quiet` of silence,
//!   but never later than `max_wait` after the burst's first change (a never-ending stream
//!   of edits still syncs every `max_wait`).
//! * **Immediate.** `Timer`, `Manual` and `Startup` run a sync as soon as possible.
//! * **Single flight.** At most one run at a time. Triggers arriving while a run is in
//!   progress are coalesced: afterwards exactly one follow-up run happens, debounced from the
//!   latest change for file changes, immediately for `Manual`/`Timer`/`Startup`.
//! * **Timer.** With `interval = Some(i)` the timer is armed at spawn (`now + i`) and
//!   re-armed after *every* run (`run end + i`), so an idle machine syncs once per interval
//!   (pulling the other machines' changes) and a busy one never gets an extra timer run.
//! * **Startup.** With `startup_delay = Some(d)` the first run happens `d` after spawn.
//! * **Backoff.** After a `Retryable` failure the scheduler retries at
//!   `end + min(retry_base * 2^(n-1), retry_max)` (`n` = consecutive failures); `pending`
//!   stays true, and new triggers (also the timer) are held back until the retry time,
//!   except `Manual`, which bypasses the backoff. The first success resets `n`.
//! * **Failed.** A `Failed` outcome needs the person: no automatic retry; the next trigger
//!   or timer tick runs again normally. (It still counts in `consecutive_failures`, so a
//!   later `Retryable` backs off from the combined count.)
//! * **Budget.** The end instants of the last hour's runs are kept; a run that would make
//!   more than `max_syncs_per_hour` in the sliding hour waits until the oldest one drops out.
//!   This applies to every run, `Manual` and the shutdown flush included (0 = no cap).
//! * **Remote poll.** With `poll = Some(p)` and a [`Probe`] (see [`Scheduler::spawn_with_probe`]),
//!   the scheduler asks the probe every `p.active` whether the remote moved (a cheap head check,
//!   done by the caller) and runs a sync only when it answers true. After `p.idle_after` without a
//!   host event or file change, or while the machine runs on battery ([`crate::autosync::power`]),
//!   the cadence drops to `p.idle`; the next activity brings it back (on mains power). The
//!   poll is re-armed after every run and every probe; it is skipped while a run is due anyway,
//!   running, or held back by the backoff. Probes do not count in the budget (they are not syncs).
//! * **Reconfigure.** [`SchedulerHandle::reconfigure`] swaps the settings (the config file
//!   changed): a changed interval or poll re-arms its timer from now.
//! * **Shutdown.** Waits for a running sync, then, if changes are pending (a burst, a
//!   scheduled retry, or an unserved `Manual`), runs one final sync ignoring debounce and
//!   backoff (not the budget). All of it is bounded by `flush_timeout`; returns true when
//!   nothing is left pending and the last run (if any ever ran) succeeded.
//!
//! # Request rate
//!
//! With quiet 5 s / max_wait 30 s and a 5 min timer, a continuous stream of changes gives
//! one sync per 30 s = 120/hour, and the timer adds at most 12/hour: at most 120 + 12 = 132
//! syncs/hour from triggers and timer in that pattern (in fact the timer never fires while
//! trigger-driven syncs are less than 5 min apart, because it is re-armed after every run).
//! Caveat: *isolated* changes spaced just over `quiet` apart each form their own burst, so
//! the trigger-driven rate is bounded only by `3600 / quiet` = 720/hour, and `Manual` is not
//! debounced at all. `max_syncs_per_hour` (e.g. 150) is what caps the rate regardless.
//!
//! The `*_ms` fields of [`SchedulerState`] are wall-clock estimates for display only
//! (`SystemTime::now() + (deadline - Instant::now())`); scheduling uses tokio's clock.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[cfg(test)]
mod tests;

const HOUR: Duration = Duration::from_secs(3600);

/// Why a sync is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The host started (usually scheduled via [`SchedulerConfig::startup_delay`] instead).
    Startup,
    /// A watched file changed (debounced).
    FileChange,
    /// The host reported something (session saved, config edited...); debounced. The string is for logs.
    HostEvent(String),
    /// The interval timer ticked (an external timer may also send this); immediate.
    Timer,
    /// The person asked for a sync; immediate, bypasses the backoff (not the budget).
    Manual,
    /// A rescan found differences (debounced).
    Rescan,
}

/// Scheduling parameters (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// `fileWatcherDebounceMs`: sync after this much quiet since the last change.
    pub quiet: Duration,
    /// `maxDebounceMs`: but at most this long after the first change of a burst.
    pub max_wait: Duration,
    /// `syncIntervalMinutes`; `None` = no timer (`continuousSync = false`).
    pub interval: Option<Duration>,
    /// `autoSyncOnStartup`: first sync this long after spawn; `None` = no startup sync.
    pub startup_delay: Option<Duration>,
    /// Backoff after retryable failures: `retry_base * 2^(n-1)`, capped at `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Hard budget over a sliding hour; 0 = no cap.
    pub max_syncs_per_hour: u32,
    /// Checking the remote for other machines' changes while idle; `None` = no polling.
    pub poll: Option<PollConfig>,
}

/// The cadence of the remote poll (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    /// Poll this often while the host is active.
    pub active: Duration,
    /// ...and this often once nothing happened for `idle_after`.
    pub idle: Duration,
    pub idle_after: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self { active: Duration::from_secs(60), idle: Duration::from_secs(5 * 60), idle_after: Duration::from_secs(30 * 60) }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            interval: Some(Duration::from_secs(5 * 60)),
            startup_delay: Some(Duration::from_secs(1)),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * 60),
            max_syncs_per_hour: 150,
            poll: Some(PollConfig::default()),
        }
    }
}

/// The result of one sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Ok,
    /// Remote unreachable, I/O error...: back off and retry.
    Retryable(String),
    /// Needs the person (too many deletions, bad config...): no automatic retry.
    Failed(String),
}

/// The future of one sync run.
pub type RunFuture = Pin<Box<dyn Future<Output = RunOutcome> + Send>>;

/// The thing that performs one sync. Called at most once at a time (single flight).
pub type Runner = Box<dyn FnMut() -> RunFuture + Send>;

/// One remote check: resolves to true when a sync is wanted (the remote moved, the config changed).
/// Errors are the probe's business (log, answer false): the next poll tries again.
pub type ProbeFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The thing that checks the remote between syncs. Called at most once at a time, never during a run.
pub type Probe = Box<dyn FnMut() -> ProbeFuture + Send>;

/// A snapshot of the scheduler, for status displays.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerState {
    pub running: bool,
    /// Changes noted (or a retry scheduled), not yet synced.
    pub pending: bool,
    /// When the next non-timer sync is due (debounce deadline after gates), wall clock ms.
    pub next_sync_at_ms: Option<u64>,
    pub next_timer_at_ms: Option<u64>,
    pub retry_at_ms: Option<u64>,
    /// End of the last run (any outcome), wall clock ms.
    pub last_sync_ms: Option<u64>,
    pub last_ok_ms: Option<u64>,
    /// The last run's error; cleared by a success.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub syncs_last_hour: u32,
    pub total_syncs: u64,
    /// When the remote is checked next (wall clock ms); null without polling.
    #[serde(default)]
    pub next_poll_at_ms: Option<u64>,
    /// Remote checks so far, and how many of them found the remote moved.
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub polls_moved: u64,
}

enum Msg {
    Trigger(Trigger),
    Shutdown {
        timeout: Duration,
        reply: oneshot::Sender<bool>,
    },
    Reconfigure(SchedulerConfig),
}

/// The scheduler task's state. Use [`Scheduler::spawn`].
pub struct Scheduler {
    cfg: SchedulerConfig,
    runner: Runner,
    shared: Arc<Mutex<SchedulerState>>,
    /// Snapshot under construction (counters live here).
    st: SchedulerState,
    /// Current debounce burst: (first change, last change).
    burst: Option<(Instant, Instant)>,
    /// An immediate run was requested (Timer/Manual/Startup trigger).
    asap: bool,
    /// The immediate request came from `Manual` (bypasses backoff).
    manual: bool,
    startup_at: Option<Instant>,
    timer_at: Option<Instant>,
    retry_at: Option<Instant>,
    run_ends: VecDeque<Instant>,
    probe: Option<Probe>,
    poll_at: Option<Instant>,
    /// The last host event or file change (or the spawn): decides the poll cadence.
    last_activity: Instant,
    /// The same failure at every run is logged once, with how often it repeated.
    failure_log: crate::logging::Collapse,
}

/// Cloneable handle to a spawned [`Scheduler`].
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Mutex<SchedulerState>>,
}

fn lock(m: &Mutex<SchedulerState>) -> MutexGuard<'_, SchedulerState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wall_ms(at: Instant) -> u64 {
    let wall = SystemTime::now() + at.saturating_duration_since(Instant::now());
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

impl SchedulerHandle {
    /// Notes a trigger. Non-blocking; callable from any thread. Ignored after shutdown.
    pub fn trigger(&self, t: Trigger) {
        if self.tx.send(Msg::Trigger(t)).is_err() {
            tracing::debug!("scheduler: trigger after shutdown ignored");
        }
    }

    /// Replaces the settings (see the module docs). Non-blocking; ignored after shutdown.
    pub fn reconfigure(&self, cfg: SchedulerConfig) {
        let _ = self.tx.send(Msg::Reconfigure(cfg));
    }

    /// A snapshot of the scheduler's state.
    pub fn state(&self) -> SchedulerState {
        lock(&self.shared).clone()
    }

    /// Stops the scheduler. If changes are pending or a sync is running, waits for the running
    /// sync and runs one final sync to flush pending changes, all bounded by `flush_timeout`.
    /// Returns true when everything was flushed in time (nothing pending, last run succeeded).
    /// On timeout the run future is dropped; a `spawn_blocking` sync inside it keeps going
    /// detached until it finishes.
    pub async fn shutdown(&self, flush_timeout: Duration) -> bool {
        let fallback = |s: SchedulerState| !s.pending && !s.running && s.last_error.is_none();
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown { timeout: flush_timeout, reply }).is_err() {
            return fallback(self.state()); // already stopped
        }
        // The task enforces the deadline itself; this outer bound is only a safety net.
        match tokio::time::timeout(flush_timeout.saturating_add(Duration::from_secs(1)), rx).await {
            Ok(Ok(done)) => done,
            Ok(Err(_)) => fallback(self.state()), // a concurrent shutdown won
            Err(_) => false,
        }
    }
}

impl Scheduler {
    /// Spawns the scheduler task on the current tokio runtime (panics outside one). Returns a handle.
    pub fn spawn(cfg: SchedulerConfig, runner: Runner) -> SchedulerHandle {
        Self::spawn_with_probe(cfg, runner, None)
    }

    /// [`Scheduler::spawn`] with a remote [`Probe`] for `cfg.poll`.
    pub fn spawn_with_probe(cfg: SchedulerConfig, runner: Runner, probe: Option<Probe>) -> SchedulerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(SchedulerState::default()));
        let now = Instant::now();
        let sched = Scheduler {
            startup_at: cfg.startup_delay.map(|d| now.checked_add(d).unwrap_or_else(|| far_future(now))),
            timer_at: cfg.interval.map(|i| now.checked_add(i).unwrap_or_else(|| far_future(now))),
            cfg,
            runner,
            shared: shared.clone(),
            st: SchedulerState::default(),
            burst: None,
            asap: false,
            manual: false,
            retry_at: None,
            run_ends: VecDeque::new(),
            poll_at: None,
            probe,
            last_activity: now,
            failure_log: crate::logging::Collapse::new(),
        };
        let mut sched = sched;
        sched.poll_at = sched.next_poll(now);
        sched.publish(false, now);
        tokio::spawn(sched.run(rx));
        SchedulerHandle { tx, shared }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut running: Option<RunFuture> = None;
        let mut probing: Option<ProbeFuture> = None;
        loop {
            let now = Instant::now();
            self.prune(now);
            self.publish(running.is_some(), now);
            let idle = running.is_none() && probing.is_none();
            let due = if idle { self.due(now) } else { None };
            let poll_due = if idle { self.poll_due(due) } else { None };
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    None => break, // every handle dropped
                    Some(Msg::Trigger(t)) => self.on_trigger(t, Instant::now()),
                    Some(Msg::Reconfigure(cfg)) => self.reconfigure(cfg, Instant::now()),
                    Some(Msg::Shutdown { timeout, reply }) => {
                        let done = self.shutdown(running.take(), timeout).await;
                        let _ = reply.send(done);
                        break;
                    }
                },
                out = async { running.as_mut().expect("guarded by precondition").await }, if running.is_some() => {
                    running = None;
                    self.finish(out, Instant::now());
                }
                moved = async { probing.as_mut().expect("guarded by precondition").await }, if probing.is_some() => {
                    probing = None;
                    self.probed(moved, Instant::now());
                }
                () = tokio::time::sleep_until(due.unwrap_or(now)), if due.is_some() => {
                    running = Some(self.start());
                }
                () = tokio::time::sleep_until(poll_due.unwrap_or(now)), if poll_due.is_some() => {
                    self.poll_at = None;
                    if let Some(probe) = self.probe.as_mut() {
                        tracing::debug!("scheduler: checking the remote");
                        probing = Some(probe());
                    }
                }
            }
        }
        tracing::debug!("scheduler stopped");
    }

    /// The cadence the poll has now (active or idle), if polling is on.
    fn next_poll(&self, now: Instant) -> Option<Instant> {
        let p = self.cfg.poll.as_ref().filter(|_| self.probe.is_some())?;
        // On battery (where the system says so), the idle cadence as after a long idle time.
        let idle = now.saturating_duration_since(self.last_activity) >= p.idle_after || crate::autosync::power::on_battery();
        let every = if idle { p.idle } else { p.active };
        Some(now.checked_add(every).unwrap_or_else(|| far_future(now)))
    }

    /// When to check the remote: not while a run is due anyway, nor during a backoff.
    fn poll_due(&self, run_due: Option<Instant>) -> Option<Instant> {
        let at = self.poll_at?;
        if self.burst.is_some() || self.asap || self.retry_at.is_some() || run_due.is_some_and(|d| d <= at) {
            return None;
        }
        Some(at)
    }

    fn probed(&mut self, moved: bool, now: Instant) {
        self.st.polls += 1;
        if moved {
            self.st.polls_moved += 1;
            tracing::debug!("scheduler: the remote moved; syncing");
            self.asap = true;
        }
        self.poll_at = self.next_poll(now);
    }

    fn reconfigure(&mut self, cfg: SchedulerConfig, now: Instant) {
        let arm = |d: Option<Duration>| d.map(|d| now.checked_add(d).unwrap_or_else(|| far_future(now)));
        if cfg.interval != self.cfg.interval {
            self.timer_at = arm(cfg.interval);
        }
        let poll_changed = cfg.poll != self.cfg.poll;
        self.cfg = cfg;
        if poll_changed {
            self.poll_at = self.next_poll(now);
        }
    }

    fn on_trigger(&mut self, t: Trigger, now: Instant) {
        tracing::debug!(trigger = ?t, "scheduler: trigger");
        if matches!(t, Trigger::FileChange | Trigger::HostEvent(_) | Trigger::Rescan | Trigger::Manual) {
            // Back from idle: poll at the active cadence again.
            let was_idle = self.cfg.poll.as_ref().is_some_and(|p| now.saturating_duration_since(self.last_activity) >= p.idle_after);
            self.last_activity = now;
            if was_idle {
                let sooner = self.next_poll(now);
                self.poll_at = match (self.poll_at, sooner) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        match t {
            Trigger::FileChange | Trigger::HostEvent(_) | Trigger::Rescan => {
                self.burst = Some(match self.burst {
                    Some((first, _)) => (first, now),
                    None => (now, now),
                });
            }
            Trigger::Timer | Trigger::Startup => self.asap = true,
            Trigger::Manual => {
                self.asap = true;
                self.manual = true;
            }
        }
    }

    fn burst_deadline(&self) -> Option<Instant> {
        self.burst.map(|(first, last)| {
            let by_quiet = last.checked_add(self.cfg.quiet);
            let by_max = first.checked_add(self.cfg.max_wait);
            match (by_quiet, by_max) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => far_future(last),
            }
        })
    }

    /// When the sliding-hour budget allows the next run (`None` = now is fine).
    fn budget_gate(&self, now: Instant) -> Option<Instant> {
        let max = self.cfg.max_syncs_per_hour as usize;
        if max == 0 {
            return None;
        }
        let recent: Vec<Instant> =
            self.run_ends.iter().copied().filter(|e| now.saturating_duration_since(*e) < HOUR).collect();
        // Wait until enough of the oldest have dropped out to leave room for one more.
        (recent.len() >= max).then(|| recent[recent.len() - max] + HOUR)
    }

    /// When the next run should start, or `None` if nothing wants one.
    fn due(&self, now: Instant) -> Option<Instant> {
        let wanted = [
            self.burst_deadline(),
            self.asap.then_some(now),
            self.startup_at,
            self.timer_at,
            self.retry_at,
        ];
        let mut due = wanted.into_iter().flatten().min()?;
        if !self.manual
            && let Some(retry) = self.retry_at
        {
            due = due.max(retry);
        }
        if let Some(gate) = self.budget_gate(now) {
            due = due.max(gate);
        }
        Some(due)
    }

    fn needs_flush(&self) -> bool {
        self.burst.is_some() || self.retry_at.is_some() || self.manual
    }

    fn prune(&mut self, now: Instant) {
        while self.run_ends.front().is_some_and(|e| now.saturating_duration_since(*e) >= HOUR) {
            self.run_ends.pop_front();
        }
    }

    /// Consumes every intent (they are all served by this run) and calls the runner.
    fn start(&mut self) -> RunFuture {
        self.burst = None;
        self.asap = false;
        self.manual = false;
        self.startup_at = None;
        self.timer_at = None;
        self.retry_at = None;
        tracing::debug!("scheduler: starting sync");
        (self.runner)()
    }

    fn finish(&mut self, out: RunOutcome, now: Instant) {
        self.run_ends.push_back(now);
        let wall = wall_ms(now);
        self.st.total_syncs += 1;
        self.st.last_sync_ms = Some(wall);
        match out {
            RunOutcome::Ok => {
                self.st.consecutive_failures = 0;
                self.st.last_ok_ms = Some(wall);
                self.st.last_error = None;
                self.retry_at = None;
                self.failure_log.reset();
            }
            RunOutcome::Retryable(e) => {
                self.st.consecutive_failures = self.st.consecutive_failures.saturating_add(1);
                let n = self.st.consecutive_failures;
                let factor = 1u32 << (n - 1).min(31);
                let delay = self.cfg.retry_base.saturating_mul(factor).min(self.cfg.retry_max);
                if self.failure_log.first(&format!("sync failed; will retry: {e}")) {
                    tracing::warn!(error = %e, failures = n, retry_in = ?delay, "sync failed; will retry");
                }
                self.retry_at = Some(now.checked_add(delay).unwrap_or_else(|| far_future(now)));
                self.st.last_error = Some(e);
            }
            RunOutcome::Failed(e) => {
                self.st.consecutive_failures = self.st.consecutive_failures.saturating_add(1);
                if self.failure_log.first(&format!("sync failed; not retrying automatically: {e}")) {
                    tracing::warn!(error = %e, "sync failed; not retrying automatically");
                }
                self.retry_at = None;
                self.st.last_error = Some(e);
            }
        }
        if let Some(i) = self.cfg.interval {
            self.timer_at = Some(now.checked_add(i).unwrap_or_else(|| far_future(now)));
        }
        self.poll_at = self.next_poll(now);
    }

    fn publish(&self, running: bool, now: Instant) {
        let mut s = self.st.clone();
        s.running = running;
        s.pending = self.burst.is_some() || self.retry_at.is_some();
        s.next_sync_at_ms = if running || !(self.burst.is_some() || self.asap) {
            None
        } else {
            self.due(now).map(wall_ms)
        };
        s.next_timer_at_ms = self.timer_at.map(wall_ms);
        s.retry_at_ms = self.retry_at.map(wall_ms);
        s.next_poll_at_ms = self.poll_at.map(wall_ms);
        s.syncs_last_hour =
            self.run_ends.iter().filter(|e| now.saturating_duration_since(**e) < HOUR).count() as u32;
        *lock(&self.shared) = s;
    }

    async fn shutdown(&mut self, running: Option<RunFuture>, timeout: Duration) -> bool {
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or_else(|| far_future(start));
        if let Some(fut) = running {
            tracing::debug!("scheduler: shutdown waits for the running sync");
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(out) => self.finish(out, Instant::now()),
                Err(_) => return self.give_up("running sync did not finish"),
            }
        }
        if self.needs_flush() {
            let now = Instant::now();
            if let Some(gate) = self.budget_gate(now) {
                if gate > deadline {
                    return self.give_up("hourly sync budget exhausted");
                }
                tokio::time::sleep_until(gate).await;
            }
            tracing::debug!("scheduler: final sync before shutdown");
            let fut = self.start();
            self.publish(true, Instant::now());
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(out) => self.finish(out, Instant::now()),
                Err(_) => return self.give_up("final sync did not finish"),
            }
        }
        self.publish(false, Instant::now());
        !self.needs_flush() && self.st.last_error.is_none()
    }

    fn give_up(&mut self, why: &str) -> bool {
        tracing::warn!("scheduler shutdown: {why} within the flush timeout; changes may be unsynced");
        self.publish(false, Instant::now());
        let mut s = lock(&self.shared);
        s.pending = true;
        false
    }
}
