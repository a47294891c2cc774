//! `oc-sync status`: a short plain summary, or `--json` for scripts.

use std::io::Write;

use super::{Io, EXIT_FAILURE, EXIT_OK};
use crate::paths::Paths;
use crate::status;

pub fn run(paths: &Paths, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let r = status::report(paths, &io.env);
    let code = if r.config.error.is_some() { EXIT_FAILURE } else { EXIT_OK };
    if json {
        writeln!(io.out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(code);
    }
    let o = &mut io.out;
    writeln!(o, "oc-sync {}", r.version)?;
    let cfg = match (&r.config.error, r.config.found) {
        (Some(_), _) => format!("{} (INVALID, see below)", r.config.file.display()),
        (None, true) => r.config.file.display().to_string(),
        (None, false) => format!("{} (not found: using defaults)", r.config.file.display()),
    };
    writeln!(o, "config     {cfg}")?;
    match (&r.machine_id, &r.machine_id_origin) {
        (Some(id), Some(origin)) => writeln!(o, "machine    {id} ({origin})")?,
        _ => writeln!(o, "machine    (not created yet: made on first use)")?,
    }
    writeln!(
        o,
        "remote     {} {}: {}{}",
        r.remote.kind,
        r.remote.location,
        r.remote.detail,
        if r.remote.reachable { "" } else { " [unreachable]" }
    )?;
    if let Some(os) = &r.opensync {
        let last = os.last_sync.as_deref().unwrap_or("never");
        writeln!(o, "opensync   {} (key {}): {} sessions, {} messages stored (as the server confirmed), last {last}", os.url, os.key, os.sessions_sent, os.messages_sent)?;
        if let Some(e) = &os.last_error {
            writeln!(o, "           last error: {e}")?;
        }
    }
    if let Some(g) = &r.github {
        write_github(o, g)?;
    }
    match &r.plugin.entry {
        Some(e) => writeln!(o, "plugin     registered as \"{e}\" in {}", r.plugin.opencode_config_file.display())?,
        None => writeln!(o, "plugin     not registered in {}", r.plugin.opencode_config_file.display())?,
    }
    write_categories(o, &r.categories)?;
    write_last_syncs(o, &r)?;
    if let Some(p) = &r.pending {
        let parts: Vec<String> = p.iter().filter(|(_, n)| **n > 0).map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(o, "pending    {}", if parts.is_empty() { "nothing".to_string() } else { parts.join(", ") })?;
    }
    match &r.autosync {
        Some(a) => writeln!(o, "auto-sync  {}", autosync_line(a))?,
        None => writeln!(o, "auto-sync  not seen yet (starts when OpenCode loads the plugin)")?,
    }
    write_secrets(o, &r.config_secrets)?;
    write_attention(o, &r)?;
    Ok(code)
}

/// What needs attention: conflicts, refused items, config warnings, next steps.
fn write_attention(o: &mut dyn Write, r: &status::StatusReport) -> std::io::Result<()> {
    if r.conflicts_open > 0 {
        writeln!(o, "conflicts  {} open, {} waiting for you", r.conflicts_open, r.conflicts_waiting.len())?;
    }
    for x in r.refused.iter().take(10) {
        writeln!(o, "refused    {x}")?;
    }
    if r.refused.len() > 10 {
        writeln!(o, "refused    (+{} more: `oc-sync status --json`)", r.refused.len() - 10)?;
    }
    for w in &r.config.warnings {
        writeln!(o, "warning: {w}")?;
    }
    if !r.next_steps.is_empty() {
        writeln!(o, "\nNext steps:")?;
        for s in &r.next_steps {
            writeln!(o, "  - {s}")?;
        }
    }
    Ok(())
}

/// The auto-sync line: who runs it, and its scheduler's last and next events.
fn autosync_line(a: &status::AutoSyncStatus) -> String {
    use crate::time::format_ms;
    let who = match a.alive {
        Some(true) => format!("running in OpenCode (pid {})", a.pid),
        Some(false) => format!("not running (OpenCode pid {} has exited)", a.pid),
        None => format!("last reported by OpenCode pid {}", a.pid),
    };
    let mut parts = vec![who];
    if let Some(s) = &a.scheduler {
        if let Some(t) = s.last_ok_ms {
            parts.push(format!("last ok {}", format_ms(t)));
        }
        if a.alive != Some(false)
            && let Some(t) = s.next_timer_at_ms {
                parts.push(format!("next timer {}", format_ms(t)));
            }
        if let Some(e) = &s.last_error {
            parts.push(format!("last error: {e}"));
        }
        if let (Some(t), true) = (s.retry_at_ms, a.alive != Some(false)) {
            parts.push(format!("retry at {}", format_ms(t)));
        }
    }
    parts.join("; ")
}

/// The config secrets: paths only, and what happens to them.
fn write_secrets(o: &mut dyn Write, s: &status::ConfigSecretsStatus) -> std::io::Result<()> {
    let how = if s.sealed { "encrypted on push" } else { "held back: not uploaded" };
    for i in &s.items {
        if !i.secrets.is_empty() {
            writeln!(o, "secrets    {} ({how}): {}", i.key, i.secrets.join(", "))?;
        }
        if !i.waiting.is_empty() {
            writeln!(o, "secrets    {} (placeholders, value kept on another machine): {}", i.key, i.waiting.join(", "))?;
        }
    }
    Ok(())
}

/// The GitHub lines: repository and account, last push, rate limit, token (all as of the last sync).
fn write_github(o: &mut dyn Write, g: &status::GithubStatus) -> std::io::Result<()> {
    match (&g.owner, &g.repo) {
        (Some(owner), Some(repo)) => {
            let mut line = format!("{owner}/{repo}");
            if let Some(v) = &g.visibility {
                line.push_str(&format!(" ({v})"));
            }
            if let Some(b) = &g.branch {
                line.push_str(&format!(", branch {b}"));
            }
            if let Some(a) = &g.account {
                line.push_str(&format!(", account {a}"));
            }
            if g.recorded_with_other_token {
                line.push_str(" [seen with another token]");
            }
            writeln!(o, "github     {line}")?;
        }
        _ => writeln!(o, "github     not contacted yet (the first `oc-sync sync` sets it up)")?,
    }
    if let Some(p) = &g.last_push {
        let short: String = p.sha.chars().take(7).collect();
        match &p.at {
            Some(at) => writeln!(o, "last push  {short} at {at}")?,
            None => writeln!(o, "last push  {short}")?,
        }
    }
    if let Some(rl) = &g.rate_limit {
        let n = |x: Option<u64>| x.map_or("?".to_string(), |v| v.to_string());
        let mut line = format!("{}/{}", n(rl.remaining), n(rl.limit));
        // "2026-11-21T10:45:00Z" -> "10:45 UTC"
        if let Some(hm) = rl.reset_at.as_deref().and_then(|t| t.get(11..16)) {
            line.push_str(&format!(", resets {hm} UTC"));
        }
        if let Some(at) = &rl.as_of {
            line.push_str(&format!(" (as of {at})"));
        }
        writeln!(o, "rate limit {line}")?;
    }
    match (&g.token, &g.token_source) {
        (Some(t), Some(src)) => writeln!(o, "token      {t} from {src}")?,
        _ => writeln!(o, "token      none: run `oc-sync login` or set GITHUB_TOKEN")?,
    }
    Ok(())
}

/// The categories, grouped by state: each reason said once.
fn write_categories(o: &mut dyn Write, cats: &[status::CategoryStatus]) -> std::io::Result<()> {
    use status::CategoryState::*;
    let names = |state, reason: Option<&str>| -> Vec<String> {
        cats.iter().filter(|c| c.state == state && c.reason.as_deref() == reason).map(|c| c.name.to_string()).collect()
    };
    let syncing = names(Syncing, None);
    writeln!(o, "syncing    {}", if syncing.is_empty() { "nothing".to_string() } else { syncing.join(", ") })?;
    let mut said: Vec<(status::CategoryState, Option<&str>)> = Vec::new();
    for c in cats.iter().filter(|c| c.state != Syncing) {
        let group = (c.state, c.reason.as_deref());
        if said.contains(&group) {
            continue;
        }
        said.push(group);
        let label = match c.state {
            Off => "off",
            NotSynced => "not synced",
            Waiting => "waiting",
            Syncing => unreachable!(),
        };
        let list = names(c.state, c.reason.as_deref()).join(", ");
        match &c.reason {
            Some(why) => writeln!(o, "{label:<10} {list}: {why}")?,
            None => writeln!(o, "{label:<10} {list}")?,
        }
    }
    Ok(())
}

/// The last success and, when it is the latest news, the last failure.
fn write_last_syncs(o: &mut dyn Write, r: &status::StatusReport) -> std::io::Result<()> {
    match &r.last_success {
        Some(w) => writeln!(o, "last sync  {} ({})", w.local, w.ago)?,
        None => writeln!(o, "last sync  never")?,
    }
    if let Some(f) = r.last_failure.as_ref().filter(|f| !f.recovered) {
        writeln!(o, "last error {} ({}): {}", f.at.local, f.at.ago, f.message)?;
    }
    Ok(())
}
