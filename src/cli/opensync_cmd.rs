//! `oc-sync opensync login|status|sync|logout`: the optional export to an OpenSync dashboard.

use std::io::{BufRead, IsTerminal};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Io, fail};
use crate::opensync::client::{self, OpenSyncClient, mask_key};
use crate::opensync::credentials::{self, Credentials};
use crate::opensync::export::{self, Mode};
use crate::opensync::payload::Options;
use crate::opensync::state;
use crate::paths::Paths;

fn prompt_line(question: &str) -> std::io::Result<String> {
    eprint!("{question}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

pub fn login(paths: &Paths, url: Option<String>, key: Option<String>, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let tty = std::io::stdin().is_terminal();
    let url = match url {
        Some(u) => u,
        None if tty => prompt_line("OpenSync URL (e.g. https://your-deployment.convex.cloud): ")?,
        None => return fail(io, json, "no --url given and standard input is not a terminal: pass --url URL --key osk_...", EXIT_USAGE),
    };
    let key = match key {
        Some(k) => k,
        None if tty => rpassword::prompt_password("OpenSync API key (osk_...): ")?.trim().to_owned(),
        None => return fail(io, json, "no --key given and standard input is not a terminal: pass --key osk_...", EXIT_USAGE),
    };
    let client = match OpenSyncClient::new(&url, &key, client::retry_delay(&io.env)) {
        Ok(c) => c,
        Err(e) => return fail(io, json, &e.to_string(), EXIT_FAILURE),
    };
    if let Err(e) = client.health() {
        return fail(io, json, &format!("login failed, nothing was stored: {e}"), EXIT_FAILURE);
    }
    let known = match client.session_ids() {
        Ok(ids) => ids.len(),
        Err(e) => return fail(io, json, &format!("login failed, nothing was stored: {e}"), EXIT_FAILURE),
    };
    let file = credentials::save(paths, &Credentials { url: client.url().to_owned(), api_key: key.clone() })?;
    if json {
        writeln!(io.out, "{}", serde_json::json!({ "ok": true, "url": client.url(), "key": mask_key(&key), "file": file, "sessionsKnown": known }))?;
    } else {
        writeln!(io.out, "Connected to OpenSync at {} (key {}, stored in {}, readable only by you).", client.url(), mask_key(&key), file.display())?;
        writeln!(io.out, "It holds {known} sessions of yours. Next: oc-sync opensync sync")?;
    }
    Ok(EXIT_OK)
}

pub fn logout(paths: &Paths, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let removed = credentials::remove(paths)?;
    let legacy = credentials::legacy_present(&io.env);
    if json {
        writeln!(io.out, "{}", serde_json::json!({ "ok": true, "removed": removed, "file": credentials::own_file(paths), "originalPluginFiles": legacy }))?;
        return Ok(EXIT_OK);
    }
    if removed {
        writeln!(io.out, "Removed the OpenSync credentials ({}).", credentials::own_file(paths).display())?;
    } else {
        writeln!(io.out, "No OpenSync credentials of oc-sync's to remove ({} does not exist).", credentials::own_file(paths).display())?;
    }
    for f in legacy {
        writeln!(io.out, "The original OpenSync plugin's credentials are still in {} (oc-sync reads them): delete that file to stop exporting.", f.display())?;
    }
    Ok(EXIT_OK)
}

pub fn status(paths: &Paths, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let Some(found) = credentials::load(paths, &io.env) else {
        return fail(io, json, "OpenSync is not set up on this machine: run `oc-sync opensync login`", EXIT_FAILURE);
    };
    let c = &found.credentials;
    let connection = match OpenSyncClient::new(&c.url, &c.api_key, client::retry_delay(&io.env)) {
        Err(e) => Err(e.to_string()),
        Ok(client) => client.health().and_then(|()| client.session_ids()).map_err(|e| e.to_string()),
    };
    let st = state::load(&state::file(paths));
    // Never more than the server holds: a session counts when the server lists it.
    let (synced, messages, missing) = match &connection {
        Ok(ids) => {
            let on_server: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            let stored = st.sessions.iter().filter(|(_, m)| m.fp.is_some());
            let (held, gone): (Vec<_>, Vec<_>) = stored.partition(|(id, _)| on_server.contains(id.as_str()));
            (Some(held.len()), Some(held.iter().map(|(_, m)| m.messages.len()).sum::<usize>()), gone.len())
        }
        Err(_) => (None, None, 0),
    };
    let refused: Vec<(&String, &state::Backoff)> = st.sessions.iter().filter_map(|(id, m)| m.retry.as_ref().map(|b| (id, b))).collect();
    let pending = export::pending(paths).map_err(|e| e.to_string());
    if json {
        let refused_json: Vec<serde_json::Value> = refused.iter().map(|(id, b)| serde_json::json!({"session": id, "reason": b.reason, "failures": b.failures, "nextTry": crate::time::format_ms(b.next_ms)})).collect();
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": connection.is_ok(),
                "url": c.url,
                "key": mask_key(&c.api_key),
                "credentialsFile": found.file,
                "connected": connection.is_ok(),
                "connectionError": connection.as_ref().err(),
                "sessionsOnServer": connection.as_ref().ok().map(Vec::len),
                "sessionsSynced": synced,
                "messagesSynced": messages,
                "storedButNotOnServer": missing,
                "refused": refused_json,
                "pendingSessions": pending.as_ref().ok(),
                "lastSync": st.last_sync_ms.map(crate::time::format_ms),
                "lastError": st.last_error,
            }))?
        )?;
        return Ok(if connection.is_ok() { EXIT_OK } else { EXIT_FAILURE });
    }
    let o = &mut io.out;
    writeln!(o, "opensync   {} (key {}, from {})", c.url, mask_key(&c.api_key), found.file.display())?;
    match &connection {
        Ok(ids) => writeln!(o, "connection ok: the server holds {} sessions of yours", ids.len())?,
        Err(e) => writeln!(o, "connection FAILED: {e}")?,
    }
    match (synced, messages) {
        (Some(s), Some(m)) => writeln!(o, "stored     {s} sessions, {m} messages from this machine (confirmed by the server)")?,
        _ => writeln!(o, "stored     unknown (the server could not be asked)")?,
    }
    if missing > 0 {
        writeln!(o, "           {missing} sessions stored earlier are no longer on the server: the next sync sends them again")?;
    }
    match &pending {
        Ok(n) => writeln!(o, "pending    {n} sessions not completely stored")?,
        Err(e) => writeln!(o, "pending    unknown ({e})")?,
    }
    for (id, b) in refused.iter().take(5) {
        writeln!(o, "refused    {id}: {} (next try {})", b.reason, crate::time::format_ms(b.next_ms))?;
    }
    writeln!(o, "last sync  {}", st.last_sync_ms.map(crate::time::format_ms).unwrap_or_else(|| "never".into()))?;
    if let Some(e) = &st.last_error {
        writeln!(o, "last error {e}")?;
    }
    Ok(if connection.is_ok() { EXIT_OK } else { EXIT_FAILURE })
}

pub fn sync(paths: &Paths, all: bool, force: bool, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let Some(found) = credentials::load(paths, &io.env) else {
        return fail(io, json, "OpenSync is not set up on this machine: run `oc-sync opensync login`", EXIT_FAILURE);
    };
    let c = &found.credentials;
    let client = match OpenSyncClient::new(&c.url, &c.api_key, client::retry_delay(&io.env)) {
        Ok(cl) => cl,
        Err(e) => return fail(io, json, &e.to_string(), EXIT_FAILURE),
    };
    let mode = if force { Mode::Force } else if all { Mode::All } else { Mode::Changed };
    let r = match export::run(paths, &client, mode, &Options::default(), export::workers(&io.env)) {
        Ok(r) => r,
        Err(e) => return fail(io, json, &format!("export failed (what was not stored stays pending): {e}"), EXIT_FAILURE),
    };
    let code = if r.refused.is_empty() && r.unreadable.is_empty() { EXIT_OK } else { EXIT_FAILURE };
    if json {
        let mut v = serde_json::to_value(&r)?;
        v["ok"] = (code == EXIT_OK).into();
        writeln!(io.out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(code);
    }
    writeln!(io.out, "stored {} sessions and {} messages on {} ({} sessions looked at, {} requests)", r.sessions_stored, r.messages_stored, r.url, r.sessions_looked_at, r.requests)?;
    for x in r.refused.iter().take(10) {
        writeln!(io.out, "refused by OpenSync: {} {} (session {}): {}", x.kind, x.id, x.session, x.reason)?;
    }
    if r.refused.len() > 10 {
        writeln!(io.out, "... and {} more refused", r.refused.len() - 10)?;
    }
    if !r.refused.is_empty() {
        writeln!(io.out, "Refused items are not stored; they stay pending and are retried later. If this repeats, update oc-sync or tell the server's operator.")?;
    }
    for x in r.unreadable.iter().take(5) {
        writeln!(io.out, "not exported (cannot read it here): {x}")?;
    }
    if r.deferred > 0 {
        writeln!(io.out, "{} items wait for a later run (messages still being written, or changes the server would skip right now)", r.deferred)?;
    }
    if r.pending > 0 {
        writeln!(io.out, "pending: {} sessions not completely stored", r.pending)?;
    }
    Ok(code)
}
