//! What oc-sync answers inside OpenCode: the slash commands `/sync`, `/sync-status` and
//! `/sync-conflicts`, and the agent's tools (`oc_sync`, `oc_sync_resolve`). Each answer is plain
//! text for the person (or the agent); nothing here prints.
//!
//! Anything that reads OpenCode's database runs in the helper process, like the database sync
//! (see [`super::engine::EngineOptions::db_helper`]): the status report (`oc-sync status`) and
//! settling a conflict (`oc-sync resolve`). A sync goes through the engine's scheduler (a manual
//! trigger), so it never runs twice at once. Every function here blocks: the napi layer calls
//! them off the JS thread.

use std::time::{Duration, Instant};

use super::engine::{helper_command, EngineHandle, EngineStatus};
use super::scheduler::SchedulerState;
use crate::paths::{EnvSnapshot, Paths};
use crate::sync::conflicts::{ConflictRecord, ConflictStore};
use crate::time::format_ms;

/// A slash command oc-sync adds to OpenCode: its name (without the slash), what the command list
/// shows, and the prompt template OpenCode requires (never sent: the plugin answers instead).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlashCommand {
    pub name: &'static str,
    pub description: &'static str,
    pub template: &'static str,
}

pub const SLASH_COMMANDS: &[SlashCommand] = &[
    SlashCommand { name: "sync", description: "oc-sync: sync now and show what happened", template: "Sync OpenCode with oc-sync now." },
    SlashCommand { name: "sync-status", description: "oc-sync: status (remote, last sync, pending, conflicts)", template: "Show the oc-sync status." },
    SlashCommand {
        name: "sync-conflicts",
        description: "oc-sync: conflicts waiting; `/sync-conflicts KEY local|remote` settles one",
        template: "List the oc-sync conflicts.",
    },
];

/// Which side a settled conflict keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Local,
    Remote,
}

impl Keep {
    pub fn parse(s: &str) -> Option<Keep> {
        match s.trim().trim_start_matches("--").to_ascii_lowercase().as_str() {
            "local" | "mine" | "here" => Some(Keep::Local),
            "remote" | "theirs" | "there" => Some(Keep::Remote),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Keep::Local => "local",
            Keep::Remote => "remote",
        }
    }
}

/// One thing asked of oc-sync inside OpenCode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Sync,
    Conflicts,
    Resolve { target: String, keep: Keep },
    /// Arguments the command does not understand: the answer says how to use it.
    Usage(String),
}

impl Request {
    /// The request of a slash command (`name` without the slash, `arguments` as typed), or None
    /// when the command is not oc-sync's.
    pub fn from_slash(name: &str, arguments: &str) -> Option<Request> {
        let args: Vec<&str> = arguments.split_whitespace().collect();
        Some(match name {
            "sync" => Request::Sync,
            "sync-status" => Request::Status,
            "sync-conflicts" => match args.as_slice() {
                [] => Request::Conflicts,
                [target, side] | ["resolve", target, side] => match Keep::parse(side) {
                    Some(keep) => Request::Resolve { target: target.to_string(), keep },
                    None => Request::Usage(RESOLVE_USAGE.into()),
                },
                _ => Request::Usage(RESOLVE_USAGE.into()),
            },
            _ => return None,
        })
    }

    /// The request of the agent's `oc_sync` tool (`action`: status, sync or conflicts).
    pub fn from_action(action: &str) -> Request {
        match action.trim() {
            "status" => Request::Status,
            "sync" => Request::Sync,
            "conflicts" => Request::Conflicts,
            other => Request::Usage(format!("unknown action {other:?}: use status, sync or conflicts")),
        }
    }
}

const RESOLVE_USAGE: &str = "Usage: `/sync-conflicts` lists the conflicts; `/sync-conflicts KEY local` keeps this machine's version of KEY, `/sync-conflicts KEY remote` takes the other machine's.";

/// How long an answer may wait for a sync or the helper process; after that it says the work goes
/// on in the background.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// Answers `req` (blocking, at most about `wait`).
pub fn answer(engine: &EngineHandle, env: &EnvSnapshot, helper: Option<&[String]>, req: &Request, wait: Duration) -> String {
    match req {
        Request::Status => status(engine, helper, wait),
        Request::Sync => sync(engine, wait),
        Request::Conflicts => conflicts(env),
        Request::Resolve { target, keep } => resolve(engine, helper, target, *keep, wait),
        Request::Usage(text) => text.clone(),
    }
}

/// The engine's own line (what runs in this OpenCode), then `oc-sync status` as the CLI prints it.
fn status(engine: &EngineHandle, helper: Option<&[String]>, wait: Duration) -> String {
    let mut out = format!("{}\n\n", engine_line(&engine.status()));
    match run_helper(helper, &["status"], wait) {
        Ok((_, stdout, stderr)) => {
            out.push_str(stdout.trim_end());
            if !stderr.trim().is_empty() {
                out.push_str(&format!("\n{}", stderr.trim_end()));
            }
        }
        Err(e) => out.push_str(&format!("The full status is not available: {e}. Run `oc-sync status` in a terminal.")),
    }
    out
}

/// One line on the engine inside this OpenCode.
fn engine_line(s: &EngineStatus) -> String {
    if let Some(e) = &s.config_error {
        return format!("oc-sync is not syncing in this OpenCode: {e}");
    }
    let Some(sched) = &s.scheduler else {
        return "oc-sync is starting in this OpenCode.".into();
    };
    let mut parts = vec![format!("oc-sync is running in this OpenCode ({})", if s.watching { "watching your files" } else { "file watching off" })];
    if sched.running {
        parts.push("syncing right now".into());
    }
    match (sched.last_ok_ms, &sched.last_error) {
        (_, Some(e)) => parts.push(format!("last sync failed: {e}")),
        (Some(t), None) => parts.push(format!("last sync {}", format_ms(t))),
        (None, None) => parts.push("no sync yet".into()),
    }
    if let Some(t) = sched.retry_at_ms {
        parts.push(format!("retry at {}", format_ms(t)));
    }
    format!("{}.", parts.join("; "))
}

/// Runs a sync through the scheduler now and waits (at most `wait`) for it to end.
fn sync(engine: &EngineHandle, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let Some(before) = wait_for_scheduler(engine, deadline.min(Instant::now() + Duration::from_secs(10))) else {
        return format!("{}\nNothing was synced.", engine_line(&engine.status()));
    };
    // A running sync finishes first; the manual one follows it (the scheduler coalesces).
    let target = before.total_syncs + if before.running { 2 } else { 1 };
    engine.sync_now();
    let done = loop {
        let s = engine.status();
        match s.scheduler.clone() {
            Some(st) if st.total_syncs >= target && !st.running => break Some((st, s)),
            _ if !engine.syncing() => return "oc-sync stopped before the sync ended.".into(),
            _ if Instant::now() >= deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let Some((st, s)) = done else {
        return "The sync is still running; it goes on in the background (`/sync-status` shows how it went).".into();
    };
    let mut out = match &st.last_error {
        Some(e) => format!("The sync failed: {e}"),
        None => format!(
            "Synced at {}{}.",
            st.last_ok_ms.map(format_ms).unwrap_or_default(),
            s.last_sync_summary.as_deref().map(|x| format!(": {x}")).unwrap_or_else(|| ": nothing changed".into())
        ),
    };
    if let Some(t) = st.retry_at_ms {
        out.push_str(&format!(" It is retried at {}.", format_ms(t)));
    }
    if !s.conflicts_waiting.is_empty() {
        out.push_str(&format!(
            "\n{} conflict(s) wait for you: {}. `/sync-conflicts` shows them.",
            s.conflicts_waiting.len(),
            s.conflicts_waiting.join(", ")
        ));
    }
    out
}

/// Waits until the engine's scheduler runs (the engine starts in the background), or a config
/// problem shows it never will.
fn wait_for_scheduler(engine: &EngineHandle, deadline: Instant) -> Option<SchedulerState> {
    loop {
        let s = engine.status();
        if let Some(st) = s.scheduler {
            return Some(st);
        }
        if s.config_error.is_some() || Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The open conflicts (read from the conflict store; no database), and how to settle them here.
fn conflicts(env: &EnvSnapshot) -> String {
    let paths = match Paths::resolve(env) {
        Ok(p) => p,
        Err(e) => return format!("oc-sync cannot find its folders: {e}"),
    };
    let store = ConflictStore::new(paths.conflicts_dir());
    match store.list(false) {
        Ok(records) => render_conflicts(&records),
        Err(e) => format!("oc-sync cannot read its conflicts in {}: {e}", store.root().display()),
    }
}

/// The text of [`conflicts`].
pub fn render_conflicts(records: &[ConflictRecord]) -> String {
    if records.is_empty() {
        return "No open sync conflicts.".into();
    }
    let waiting = records.iter().filter(|r| r.needs_person).count();
    let mut out = format!("{} open sync conflict(s), {waiting} waiting for you:\n", records.len());
    for r in records {
        let state = if r.needs_person {
            "WAITING FOR YOU (not synced until you choose)".to_string()
        } else {
            format!("settled by {} ({} kept; the other side is kept in the copies)", r.strategy, r.winner)
        };
        out.push_str(&format!("\n- {}: {state}\n", r.key));
        for d in r.details.iter().take(3) {
            out.push_str(&format!("    {d}\n"));
        }
        out.push_str(&format!("    copies: {}\n", r.dir.display()));
    }
    out.push_str(
        "\nSettle one: `/sync-conflicts KEY local` keeps this machine's version, `/sync-conflicts KEY remote` takes the other machine's \
(or ask the agent, or run `oc-sync resolve KEY --local|--remote|--file PATH` in a terminal).",
    );
    out
}

/// Settles a conflict with `oc-sync resolve` in the helper process, then syncs the choice out.
fn resolve(engine: &EngineHandle, helper: Option<&[String]>, target: &str, keep: Keep, wait: Duration) -> String {
    let flag = format!("--{}", keep.as_str());
    match run_helper(helper, &["resolve", target, &flag], wait) {
        Ok((true, _, _)) => {
            engine.sync_now();
            format!("{target} now holds the {} version; oc-sync is sending it to your other machines now.", keep.as_str())
        }
        Ok((false, stdout, stderr)) => format!("Could not settle {target}: {}", first_text(&stderr, &stdout)),
        Err(e) => format!("Could not settle {target}: {e}. Run `oc-sync resolve {target} {flag}` in a terminal."),
    }
}

fn first_text(a: &str, b: &str) -> String {
    let t = if a.trim().is_empty() { b } else { a };
    t.trim().to_string()
}

/// Runs the `oc-sync` CLI (the helper) with `args`, collecting its output; at most `wait`, then
/// it is killed. Returns (success, stdout, stderr).
fn run_helper(helper: Option<&[String]>, args: &[&str], wait: Duration) -> Result<(bool, String, String), String> {
    let Some(mut cmd) = helper.and_then(|h| helper_command(h, args)) else {
        return Err("no oc-sync helper command was given to the engine".into());
    };
    cmd.env("NO_COLOR", "1");
    match crate::child::run_within(&mut cmd, wait) {
        Ok(Some(done)) => Ok((done.status.success(), done.stdout, done.stderr)),
        Ok(None) => Err(format!("`oc-sync {}` took longer than {} s", args.join(" "), wait.as_secs())),
        Err(e) => Err(format!("cannot run `oc-sync {}`: {e}", args.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autosync::engine::Engine;

    #[test]
    fn slash_commands_parse() {
        assert_eq!(Request::from_slash("sync", ""), Some(Request::Sync));
        assert_eq!(Request::from_slash("sync-status", " "), Some(Request::Status));
        assert_eq!(Request::from_slash("sync-conflicts", ""), Some(Request::Conflicts));
        assert_eq!(
            Request::from_slash("sync-conflicts", "config/opencode.json remote"),
            Some(Request::Resolve { target: "config/opencode.json".into(), keep: Keep::Remote })
        );
        assert_eq!(
            Request::from_slash("sync-conflicts", "resolve config/AGENTS.md --local"),
            Some(Request::Resolve { target: "config/AGENTS.md".into(), keep: Keep::Local })
        );
        assert!(matches!(Request::from_slash("sync-conflicts", "config/x.md sideways"), Some(Request::Usage(_))));
        assert_eq!(Request::from_slash("review", ""), None);
        assert!(SLASH_COMMANDS.iter().all(|c| Request::from_slash(c.name, "").is_some()));
    }

    #[test]
    fn conflicts_text_says_how_to_settle() {
        assert_eq!(render_conflicts(&[]), "No open sync conflicts.");
        let tmp = tempfile::tempdir().unwrap();
        let store = ConflictStore::new(tmp.path());
        let meta = crate::sync::conflicts::NewConflict {
            strategy: crate::config::ConflictStrategy::Ask,
            winner: crate::sync::conflicts::Winner::None,
            needs_person: true,
            details: vec!["/model: local \"a\" vs remote \"b\"".into()],
            local_clock: Default::default(),
            remote_clock: Default::default(),
            local_machine: String::new(),
            remote_machine: String::new(),
        };
        store.record("config/opencode.json", Some(b"{}"), Some(b"{}"), None, meta).unwrap();
        let text = render_conflicts(&store.list(false).unwrap());
        assert!(text.contains("config/opencode.json: WAITING FOR YOU"), "{text}");
        assert!(text.contains("/model: local"), "{text}");
        assert!(text.contains("/sync-conflicts KEY local"), "{text}");
    }

    #[test]
    fn a_failed_engine_answers_with_its_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(tmp.path(), Vec::<(String, String)>::new());
        let opts = super::super::engine::EngineOptions { plugin_options: Some(serde_json::json!({"conflictStrategy": "nope"})), ..Default::default() };
        let mut e = Engine::start(opts, env.clone()).unwrap();
        let text = answer(&e.handle(), &env, None, &Request::Sync, Duration::from_secs(5));
        assert!(text.contains("not syncing") && text.contains("conflictStrategy"), "{text}");
        let text = answer(&e.handle(), &env, None, &Request::Status, Duration::from_secs(5));
        assert!(text.contains("conflictStrategy") && text.contains("oc-sync status"), "{text}");
        assert!(e.stop(Duration::from_secs(2)));
    }

    #[test]
    fn sync_waits_for_the_run_and_reports_it() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(tmp.path().join(".config/opencode")).unwrap();
        std::fs::write(tmp.path().join(".config/opencode/AGENTS.md"), "x\n").unwrap();
        let env = EnvSnapshot::new(tmp.path(), [("OC_SYNC_REMOTE", remote.to_string_lossy().into_owned())]);
        let opts = super::super::engine::EngineOptions { plugin_options: Some(serde_json::json!({"autoSyncOnStartup": false})), ..Default::default() };
        let mut e = Engine::start(opts, env.clone()).unwrap();
        let text = answer(&e.handle(), &env, None, &Request::Sync, Duration::from_secs(20));
        assert!(text.starts_with("Synced at "), "{text}");
        assert!(text.contains("pushed 1"), "{text}");
        let text = answer(&e.handle(), &env, None, &Request::Sync, Duration::from_secs(20));
        assert!(text.contains("nothing changed"), "{text}");
        assert!(e.stop(Duration::from_secs(5)));
    }
}
