//! `oc-sync sync`: one sync now, with a short plain summary (or `--json`).

use super::progress_view::{Mode, View};
use super::{fail, Io, EXIT_CONFLICTS, EXIT_FAILURE, EXIT_OK};
use crate::config::{ConfigError, Loaded};
use crate::paths::Paths;
use crate::sync::sources::credentials_off_reason;
use crate::sync::{sync_now, Hooks, Progress, SyncError, SyncOptions, SyncReport, Tracker};

pub fn run(paths: &Paths, loaded: Result<Loaded, ConfigError>, opts: SyncOptions, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => return fail(io, json, &e.to_string(), EXIT_FAILURE),
    };
    for w in &loaded.warnings {
        writeln!(io.err, "warning: {w}")?;
    }
    crate::logging::init(&paths.log_dir, &loaded.config.log_level);
    if opts.reseal
        && let Some(why) = credentials_off_reason(&loaded.config) {
            return fail(io, json, &format!("nothing to re-encrypt: credentials are not synced ({why})"), EXIT_FAILURE);
        }
    let result = sync_showing_progress(paths, &loaded, &opts, json, io);
    if opts.scope == crate::sync::Scope::Database && !opts.dry_run {
        crate::opensync::export::run_if_configured(paths, &io.env);
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("sync failed: {e}");
            if json {
                writeln!(io.out, "{}", serde_json::json!({ "ok": false, "error": e.to_string(), "tooManyDeletions": matches!(e, SyncError::TooManyDeletions { .. }) }))?;
            } else {
                writeln!(io.err, "sync failed: {e}")?;
            }
            return Ok(EXIT_FAILURE);
        }
    };
    tracing::info!("sync: {}", report.summary());
    // A conflict that waits for the person is not a failure, but scripts must see it.
    let code = if report.waits_for_person() { EXIT_CONFLICTS } else { EXIT_OK };
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = true.into();
        v["waitingForYou"] = report.waits_for_person().into();
        writeln!(io.out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(code);
    }
    write_summary(io.out, &report)?;
    Ok(code)
}

/// One sync, showing its progress on stderr (see [`progress_view`]; stdout keeps the summary or
/// the JSON).
fn sync_showing_progress(paths: &Paths, loaded: &Loaded, opts: &SyncOptions, json: bool, io: &mut Io<'_>) -> Result<SyncReport, SyncError> {
    let mode = if opts.dry_run { Mode::Silent } else { Mode::pick(json, io.err_terminal) };
    let view = View::new(mode, &mut *io.err);
    let show = |p: &Progress| view.show(p);
    let tracker = Tracker::new(&show);
    let result = sync_now(paths, &loaded.config, &io.env, opts, Hooks { progress: Some(&tracker), ..Default::default() });
    view.clear();
    result
}

/// Up to five keys, then how many more.
fn list(keys: &[String]) -> String {
    let shown: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
    let more = if keys.len() > 5 { format!(" (+{} more)", keys.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// The plain summary of a sync.
fn write_summary(o: &mut dyn std::io::Write, report: &SyncReport) -> std::io::Result<()> {
    let verb = if report.dry_run { "would " } else { "" };
    if let Some(program) = &report.database_created_by {
        writeln!(o, "OpenCode's database did not exist: created by {program} (session list)")?;
    }
    if let Some(u) = &report.upgraded {
        writeln!(o, "{}", u.summary())?;
    }
    let mut any = false;
    for (label, keys) in [
        ("push", &report.pushed),
        ("pull", &report.pulled),
        ("merge", &report.merged),
        ("delete on the remote", &report.deleted_remote),
        ("delete here", &report.deleted_local),
    ] {
        if !keys.is_empty() {
            any = true;
            writeln!(o, "{verb}{label} {}: {}", keys.len(), list(keys))?;
        }
    }
    if let Some(why) = &report.sessions_waiting {
        writeln!(o, "sessions waiting: {why}")?;
    } else if !any && !report.waits_for_person() {
        writeln!(o, "{}", if report.dry_run { "nothing to sync" } else { "already in sync" })?;
    }
    write_conflicts(o, report)?;
    for s in report.skipped.iter().take(5) {
        writeln!(o, "not synced: {s}")?;
    }
    for s in report.refused.iter().take(10) {
        writeln!(o, "refused from the remote: {s}")?;
    }
    if report.refused.len() > 10 {
        writeln!(o, "refused from the remote: +{} more (`oc-sync sync --json` lists them all)", report.refused.len() - 10)?;
    }
    if !report.deferred.is_empty() {
        writeln!(o, "changed during the sync, will sync next time: {}", list(&report.deferred))?;
    }
    if !report.dry_run {
        writeln!(o, "{} at {}", report.remote, report.version.as_deref().map(|v| &v[..v.len().min(12)]).unwrap_or("(empty)"))?;
    }
    Ok(())
}

/// The conflicts of a sync, and the items waiting for a person.
fn write_conflicts(o: &mut dyn std::io::Write, report: &SyncReport) -> std::io::Result<()> {
    for c in &report.conflicts {
        if c.needs_person {
            writeln!(o, "conflict in {} kept for you: settle it with `oc-sync resolve {} --local|--remote|--file PATH`", c.key, c.key)?;
        } else {
            writeln!(o, "conflict in {} settled by {} ({} kept); the other side is kept, see `oc-sync conflicts`", c.key, c.strategy, c.winner)?;
        }
        for d in c.details.iter().take(3) {
            writeln!(o, "    {d}")?;
        }
    }
    for k in &report.blocked {
        if !report.conflicts.iter().any(|c| &c.key == k) {
            writeln!(o, "waiting for you: {k} (oc-sync resolve {k} --local|--remote|--file PATH)")?;
        }
    }
    Ok(())
}
