//! Scheduler tests on tokio's paused clock: time only advances when every task is idle,
//! so the recorded instants are exact.

use super::*;
use std::sync::Mutex as StdMutex;
use tokio::time::{sleep, sleep_until};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

#[derive(Default)]
struct FakeInner {
    starts: Vec<Instant>,
    ends: Vec<Instant>,
    active: u32,
    max_active: u32,
    /// Per-run (duration, outcome); when empty, `default_dur` and `Ok`.
    script: VecDeque<(Duration, RunOutcome)>,
    default_dur: Duration,
}

/// A fake runner: counts calls, records start/end instants, can take time and fail.
#[derive(Clone, Default)]
struct Fake(Arc<StdMutex<FakeInner>>);

impl Fake {
    fn new(default_dur: Duration) -> Self {
        let f = Fake::default();
        f.0.lock().unwrap().default_dur = default_dur;
        f
    }
    fn script(&self, steps: impl IntoIterator<Item = (Duration, RunOutcome)>) {
        self.0.lock().unwrap().script.extend(steps);
    }
    fn runner(&self) -> Runner {
        let me = self.clone();
        Box::new(move || {
            let (dur, out) = {
                let mut g = me.0.lock().unwrap();
                g.starts.push(Instant::now());
                g.active += 1;
                g.max_active = g.max_active.max(g.active);
                let d = g.default_dur;
                g.script.pop_front().unwrap_or((d, RunOutcome::Ok))
            };
            let me = me.clone();
            Box::pin(async move {
                sleep(dur).await;
                let mut g = me.0.lock().unwrap();
                g.active -= 1;
                g.ends.push(Instant::now());
                out
            })
        })
    }
    /// Start instants relative to `t0`.
    fn starts(&self, t0: Instant) -> Vec<Duration> {
        self.0.lock().unwrap().starts.iter().map(|s| *s - t0).collect()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().starts.len()
    }
}

fn cfg() -> SchedulerConfig {
    SchedulerConfig {
        quiet: 5 * S,
        max_wait: 30 * S,
        interval: None,
        startup_delay: None,
        retry_base: S,
        retry_max: 5 * 60 * S,
        max_syncs_per_hour: 1000,
        poll: None,
    }
}

fn secs(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|s| Duration::from_secs(*s)).collect()
}

fn retry(msg: &str) -> RunOutcome {
    RunOutcome::Retryable(msg.into())
}

#[tokio::test(start_paused = true)]
async fn quiet_flush_exactly_after_single_change() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::FileChange);
    sleep(MS).await;
    let st = h.state();
    assert!(st.pending && !st.running);
    assert!(st.next_sync_at_ms.is_some());
    sleep(60 * S).await;
    assert_eq!(fake.starts(t0), secs(&[5]));
    let st = h.state();
    assert!(!st.pending);
    assert_eq!(st.total_syncs, 1);
    assert_eq!(st.syncs_last_hour, 1);
    assert!(st.last_ok_ms.is_some() && st.last_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn continuous_changes_are_forced_by_max_wait() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let h = Scheduler::spawn(cfg(), fake.runner());
    for i in 0..600u32 {
        sleep_until(t0 + 100 * MS * i).await;
        h.trigger(Trigger::FileChange);
    }
    sleep_until(t0 + 300 * S).await;
    let starts = fake.starts(t0);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 30 * S);
    assert!(starts[1] >= 60 * S && starts[1] <= 60 * S + 100 * MS, "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn triggers_during_a_run_coalesce_into_one_debounced_follow_up() {
    let t0 = Instant::now();
    let fake = Fake::new(3 * S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::Manual);
    for i in 1..=10u32 {
        sleep_until(t0 + 200 * MS * i).await; // 0.2 s .. 2.0 s, all during the run
        assert!(h.state().running);
        h.trigger(if i % 2 == 0 { Trigger::FileChange } else { Trigger::HostEvent("x".into()) });
    }
    sleep(120 * S).await;
    // Run 0..3 s, then one follow-up 5 s after the last change (2 s).
    assert_eq!(fake.starts(t0), secs(&[0, 7]));
}

#[tokio::test(start_paused = true)]
async fn manual_during_a_run_gives_one_immediate_follow_up() {
    let t0 = Instant::now();
    let fake = Fake::new(3 * S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::Manual);
    for i in 1..=10u32 {
        sleep_until(t0 + 200 * MS * i).await;
        h.trigger(if i == 5 { Trigger::Manual } else { Trigger::FileChange });
    }
    sleep(120 * S).await;
    assert_eq!(fake.starts(t0), secs(&[0, 3]));
}

#[tokio::test(start_paused = true)]
async fn never_two_runs_at_once() {
    let fake = Fake::new(4 * S);
    let c = SchedulerConfig { interval: Some(7 * S), startup_delay: Some(S), ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    let all = [Trigger::Manual, Trigger::FileChange, Trigger::Timer, Trigger::Rescan, Trigger::Startup];
    for i in 0..120 {
        h.trigger(all[i % all.len()].clone());
        sleep(250 * MS).await;
    }
    sleep(60 * S).await;
    let g = fake.0.lock().unwrap();
    assert_eq!(g.max_active, 1);
    assert!(g.starts.len() > 5);
    for w in 0..g.starts.len() - 1 {
        assert!(g.starts[w + 1] >= g.ends[w], "run {} started before run {} ended", w + 1, w);
    }
}

#[tokio::test(start_paused = true)]
async fn timer_runs_every_interval_when_idle_and_is_rearmed_after_a_sync() {
    let t0 = Instant::now();
    let fake = Fake::new(2 * S);
    let c = SchedulerConfig { interval: Some(300 * S), ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    sleep(MS).await;
    assert!(h.state().next_timer_at_ms.is_some());
    assert!(!h.state().pending);
    sleep_until(t0 + 1000 * S).await;
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 1400 * S).await;
    // 300 (ends 302) -> 602 (ends 604) -> 904 (ends 906); change at 1000 -> 1005 (ends 1007) -> 1307.
    assert_eq!(fake.starts(t0), secs(&[300, 602, 904, 1005, 1307]));
}

#[tokio::test(start_paused = true)]
async fn startup_sync_after_startup_delay_only_once() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let c = SchedulerConfig { startup_delay: Some(S), ..cfg() };
    let _h = Scheduler::spawn(c, fake.runner());
    sleep(600 * S).await;
    assert_eq!(fake.starts(t0), secs(&[1]));
}

#[tokio::test(start_paused = true)]
async fn no_startup_sync_when_disabled() {
    let fake = Fake::new(Duration::ZERO);
    let _h = Scheduler::spawn(cfg(), fake.runner());
    sleep(3600 * S).await;
    assert_eq!(fake.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_is_capped_not_bypassed_by_triggers_and_resets_after_success() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    fake.script((0..7).map(|_| (Duration::ZERO, retry("unreachable"))));
    fake.script([(Duration::ZERO, RunOutcome::Ok), (Duration::ZERO, retry("again"))]);
    let c = SchedulerConfig { retry_base: S, retry_max: 10 * S, ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    h.trigger(Trigger::Manual);
    sleep_until(t0 + 2 * S).await;
    let st = h.state();
    assert_eq!(st.consecutive_failures, 2);
    assert!(st.pending && st.retry_at_ms.is_some());
    assert_eq!(st.last_error.as_deref(), Some("unreachable"));
    // A change at 16 s would flush at 21 s, but the backoff holds it until 25 s.
    sleep_until(t0 + 16 * S).await;
    h.trigger(Trigger::FileChange);
    h.trigger(Trigger::Timer);
    sleep_until(t0 + 50 * S).await;
    let st = h.state();
    assert_eq!(st.consecutive_failures, 0);
    assert!(!st.pending && st.retry_at_ms.is_none() && st.last_error.is_none());
    // After the success a new failure backs off from the base again.
    sleep_until(t0 + 100 * S).await;
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 200 * S).await;
    // Failures at 0,1,3,7,15 (delays 1,2,4,8), then capped at 10: 25,35; success at 45;
    // change at 100 -> 105 fails -> retry 1 s later succeeds.
    assert_eq!(fake.starts(t0), secs(&[0, 1, 3, 7, 15, 25, 35, 45, 105, 106]));
}

#[tokio::test(start_paused = true)]
async fn failed_does_not_retry_by_itself() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    fake.script([(Duration::ZERO, RunOutcome::Failed("too many deletions".into()))]);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 1000 * S).await;
    assert_eq!(fake.starts(t0), secs(&[5]));
    let st = h.state();
    assert!(!st.pending && st.retry_at_ms.is_none());
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(st.last_error.as_deref(), Some("too many deletions"));
    // The next trigger runs normally.
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 2000 * S).await;
    assert_eq!(fake.starts(t0), secs(&[5, 1005]));
    assert_eq!(h.state().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn failed_then_timer_runs_at_next_interval() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    fake.script([(Duration::ZERO, RunOutcome::Failed("bad config".into()))]);
    let c = SchedulerConfig { interval: Some(100 * S), ..cfg() };
    let _h = Scheduler::spawn(c, fake.runner());
    sleep_until(t0 + 250 * S).await;
    assert_eq!(fake.starts(t0), secs(&[100, 200]));
}

#[tokio::test(start_paused = true)]
async fn manual_bypasses_debounce_and_backoff() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    fake.script([(Duration::ZERO, retry("down")), (Duration::ZERO, retry("down"))]);
    let c = SchedulerConfig { retry_base: 60 * S, retry_max: 300 * S, ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + S).await;
    h.trigger(Trigger::Manual); // not debounced: runs at 1 s, fails, retry at 61 s
    sleep_until(t0 + 10 * S).await;
    h.trigger(Trigger::FileChange); // held by the backoff
    sleep_until(t0 + 20 * S).await;
    h.trigger(Trigger::Manual); // bypasses it: runs at 20 s, fails, retry at 20 + 120 s
    sleep_until(t0 + 400 * S).await;
    assert_eq!(fake.starts(t0), secs(&[1, 20, 140]));
    assert_eq!(h.state().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn budget_caps_runs_per_sliding_hour() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let c = SchedulerConfig { max_syncs_per_hour: 3, ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    for i in 0..5u32 {
        sleep_until(t0 + i * S).await;
        h.trigger(Trigger::Manual);
    }
    sleep_until(t0 + 10 * S).await;
    assert_eq!(fake.starts(t0), secs(&[0, 1, 2]));
    let st = h.state();
    assert_eq!(st.syncs_last_hour, 3);
    assert!(st.next_sync_at_ms.is_some());
    sleep_until(t0 + 7200 * S).await;
    // The 4th and 5th requests coalesce into one run when the 0 s run drops out.
    assert_eq!(fake.starts(t0), secs(&[0, 1, 2, 3600]));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_pending_changes_runs_one_final_sync() {
    let t0 = Instant::now();
    let fake = Fake::new(2 * S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + S).await;
    assert!(h.shutdown(10 * S).await);
    assert_eq!(t0.elapsed(), 3 * S);
    assert_eq!(fake.starts(t0), secs(&[1]));
    let st = h.state();
    assert!(!st.pending && !st.running);
    // Stopped: later triggers are ignored.
    h.trigger(Trigger::Manual);
    sleep(100 * S).await;
    assert_eq!(fake.count(), 1);
    assert!(h.shutdown(S).await);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_running_sync_then_flushes_changes_made_meanwhile() {
    let t0 = Instant::now();
    let fake = Fake::new(3 * S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::Manual);
    sleep_until(t0 + S).await;
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 2 * S).await;
    assert!(h.shutdown(10 * S).await);
    assert_eq!(t0.elapsed(), 6 * S);
    assert_eq!(fake.starts(t0), secs(&[0, 3]));
}

#[tokio::test(start_paused = true)]
async fn shutdown_retries_once_after_a_retryable_running_sync() {
    let t0 = Instant::now();
    let fake = Fake::new(S);
    fake.script([(S, retry("down"))]);
    let c = SchedulerConfig { retry_base: 60 * S, ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    h.trigger(Trigger::Manual);
    sleep(MS).await; // the run (failing at 1 s) is in progress
    assert!(h.state().running);
    assert!(h.shutdown(10 * S).await);
    assert_eq!(fake.starts(t0), secs(&[0, 1]));
    assert_eq!(h.state().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_false_promptly_when_the_sync_outlasts_the_timeout() {
    let t0 = Instant::now();
    let fake = Fake::new(60 * S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::Manual);
    sleep_until(t0 + S).await;
    assert!(!h.shutdown(5 * S).await);
    assert_eq!(t0.elapsed(), 6 * S);
    assert_eq!(fake.count(), 1);
    assert!(h.state().pending);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_nothing_pending_returns_at_once_without_running() {
    let t0 = Instant::now();
    let fake = Fake::new(S);
    let c = SchedulerConfig { interval: Some(300 * S), ..cfg() };
    let h = Scheduler::spawn(c, fake.runner());
    sleep_until(t0 + 10 * S).await;
    assert!(h.shutdown(30 * S).await);
    assert_eq!(t0.elapsed(), 10 * S);
    assert_eq!(fake.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_after_a_completed_sync_does_not_run_again() {
    let t0 = Instant::now();
    let fake = Fake::new(S);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::FileChange);
    sleep_until(t0 + 20 * S).await;
    assert!(h.shutdown(30 * S).await);
    assert_eq!(t0.elapsed(), 20 * S);
    assert_eq!(fake.starts(t0), secs(&[5]));
}

#[tokio::test(start_paused = true)]
async fn state_serializes_in_camel_case() {
    let fake = Fake::new(Duration::ZERO);
    let h = Scheduler::spawn(cfg(), fake.runner());
    h.trigger(Trigger::FileChange);
    sleep(MS).await;
    let v = serde_json::to_value(h.state()).unwrap();
    assert_eq!(v["pending"], true);
    assert!(v["nextSyncAtMs"].is_u64());
    assert!(v["syncsLastHour"].is_u64());
    assert!(v.get("consecutiveFailures").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_is_callable_from_other_threads() {
    let fake = Fake::new(Duration::ZERO);
    let h = Scheduler::spawn(cfg(), fake.runner());
    let h2 = h.clone();
    std::thread::spawn(move || h2.trigger(Trigger::Manual)).join().unwrap();
    for _ in 0..200 {
        if fake.count() == 1 {
            break;
        }
        sleep(10 * MS).await;
    }
    assert_eq!(fake.count(), 1);
    assert!(h.shutdown(S).await);
}

// ---- remote poll -----------------------------------------------------------------------------

/// A fake remote check: records when it ran, answers "moved" at the scripted instants' indices.
#[derive(Clone, Default)]
struct FakeProbe(Arc<StdMutex<(Vec<Instant>, VecDeque<bool>)>>);

impl FakeProbe {
    fn answers(&self, a: impl IntoIterator<Item = bool>) {
        self.0.lock().unwrap().1.extend(a);
    }
    fn probe(&self) -> Probe {
        let me = self.clone();
        Box::new(move || {
            let moved = {
                let mut g = me.0.lock().unwrap();
                g.0.push(Instant::now());
                g.1.pop_front().unwrap_or(false)
            };
            Box::pin(async move {
                sleep(100 * MS).await; // a request takes a moment
                moved
            })
        })
    }
    fn at(&self, t0: Instant) -> Vec<Duration> {
        self.0.lock().unwrap().0.iter().map(|s| *s - t0).collect()
    }
}

fn poll_cfg() -> SchedulerConfig {
    SchedulerConfig { poll: Some(PollConfig { active: 60 * S, idle: 300 * S, idle_after: 1800 * S }), ..cfg() }
}

#[tokio::test(start_paused = true)]
async fn the_remote_is_checked_every_minute_and_syncs_only_when_it_moved() {
    let t0 = Instant::now();
    let fake = Fake::new(2 * S);
    let probe = FakeProbe::default();
    probe.answers([false, false, true, false]);
    let h = Scheduler::spawn_with_probe(poll_cfg(), fake.runner(), Some(probe.probe()));
    sleep(MS).await;
    assert!(h.state().next_poll_at_ms.is_some());
    sleep_until(t0 + 300 * S).await;
    // A check takes 0.1 s and the next one is 60 s after it: 60, 120.1, 180.2 (moved: sync
    // 180.3..182.3), then the poll is re-armed after the run.
    let at = probe.at(t0);
    assert_eq!(&at[..3], &[60 * S, 120 * S + 100 * MS, 180 * S + 200 * MS][..], "{at:?}");
    assert_eq!(fake.starts(t0), vec![180 * S + 300 * MS]);
    assert_eq!(at[3], 242 * S + 300 * MS, "{at:?}");
    let st = h.state();
    assert_eq!((st.polls_moved, st.total_syncs), (1, 1), "{st:?}");
    assert!(st.polls >= 4);
}

#[tokio::test(start_paused = true)]
async fn an_idle_host_is_polled_every_five_minutes_until_activity_returns() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let probe = FakeProbe::default();
    let h = Scheduler::spawn_with_probe(poll_cfg(), fake.runner(), Some(probe.probe()));
    sleep_until(t0 + 3600 * S).await;
    let at = probe.at(t0);
    // Every ~60 s for the first 30 min, then every ~300 s.
    let first_half = at.iter().filter(|t| **t <= 1800 * S).count();
    assert!((29..=30).contains(&first_half), "{at:?}");
    let second_half: Vec<_> = at.iter().filter(|t| **t > 1800 * S).collect();
    assert!((5..=6).contains(&second_half.len()), "{at:?}");
    for w in second_half.windows(2) {
        assert!(*w[1] - *w[0] >= 300 * S, "{at:?}");
    }
    // Activity: back to the minute cadence (its debounced sync runs at +5 s, the poll after it).
    let n = at.len();
    h.trigger(Trigger::HostEvent("session.idle".into()));
    sleep_until(t0 + 3600 * S + 200 * S).await;
    let after: Vec<_> = probe.at(t0)[n..].to_vec();
    assert!(after.len() >= 2, "{after:?}");
    assert!(after[0] <= 3600 * S + 66 * S, "{after:?}");
    assert_eq!(fake.count(), 1, "only the host event synced; unchanged polls did not");
}

#[tokio::test(start_paused = true)]
async fn no_poll_during_a_backoff_or_while_a_sync_is_due() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    fake.script([(Duration::ZERO, retry("offline")), (Duration::ZERO, retry("offline"))]);
    let probe = FakeProbe::default();
    let c = SchedulerConfig { retry_base: 100 * S, retry_max: 100 * S, ..poll_cfg() };
    let h = Scheduler::spawn_with_probe(c, fake.runner(), Some(probe.probe()));
    h.trigger(Trigger::Manual);
    sleep_until(t0 + 250 * S).await;
    // Failures at 0 and 100 hold polls back until the retry at 200 succeeded.
    assert_eq!(fake.starts(t0), secs(&[0, 100, 200]));
    let at = probe.at(t0);
    assert!(at.iter().all(|t| *t >= 260 * S) || at.is_empty(), "{at:?}");
    drop(h);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_rearms_the_timer_and_the_poll() {
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let probe = FakeProbe::default();
    let h = Scheduler::spawn_with_probe(SchedulerConfig { interval: Some(600 * S), ..cfg() }, fake.runner(), Some(probe.probe()));
    sleep_until(t0 + 10 * S).await;
    h.reconfigure(SchedulerConfig { interval: Some(100 * S), ..poll_cfg() });
    sleep_until(t0 + 135 * S).await;
    assert_eq!(fake.starts(t0), secs(&[110]), "the new interval counts from the change");
    assert_eq!(probe.at(t0), secs(&[70]), "polling started with the new settings");
}

#[tokio::test(start_paused = true)]
async fn on_battery_the_remote_is_checked_at_the_idle_cadence() {
    crate::autosync::power::ON_BATTERY_OVERRIDE.with(|c| c.set(Some(true)));
    let t0 = Instant::now();
    let fake = Fake::new(Duration::ZERO);
    let probe = FakeProbe::default();
    let _h = Scheduler::spawn_with_probe(poll_cfg(), fake.runner(), Some(probe.probe()));
    sleep_until(t0 + 1200 * S).await;
    crate::autosync::power::ON_BATTERY_OVERRIDE.with(|c| c.set(Some(false)));
    // Active (no idle time yet), but on battery: every ~300 s instead of every 60 s.
    let at = probe.at(t0);
    assert_eq!(at, vec![300 * S, 600 * S + 100 * MS, 900 * S + 200 * MS]);
}
