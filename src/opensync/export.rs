//! One export run: sessions new or changed since the last run (by their cheap database signals),
//! mapped to OpenSync payloads and sent the way the real server keeps their times:
//!
//! - a session not yet stored → `POST /sync/session` with `createdAt` (the batch mutation stamps
//!   new sessions with the server's clock), before any of its messages (a message for an unknown
//!   session creates a bare one, stamped now);
//! - a new or changed message → `POST /sync/message` with `createdAt` and all its parts (the batch
//!   mutation stamps new messages now, and deletes an updated message's parts without storing the
//!   new ones);
//! - a stored session whose figures changed while none of its messages did → `/sync/batch`
//!   (sessions only, no `createdAt`: an update never touches the stored time), up to 100 a request.
//!
//! Sessions go in parallel ([`WORKERS`] connections), the requests of one session in order.
//! Only the server's answer marks an item stored; refused items stay pending with a backoff, and
//! changes the server would silently skip (its dedup windows) wait for the next run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use serde::Serialize;
use serde_json::Value;

use super::client::{OpenSyncClient, OpenSyncError};
use super::payload::{self, Options};
use super::state::{self, Backoff, Problem, SessionMark, StoredState};
use crate::paths::{EnvSnapshot, Paths};
use crate::source::opencode_db::OpencodeDb;
use crate::time::now_ms;

/// Sessions per batch request (metadata updates only).
const BATCH_ITEMS: usize = 100;
/// Sessions exported at the same time (each over its own connection).
pub const WORKERS: usize = 6;
/// The server skips an unchanged session update this soon after its last write (10 s), and a
/// message update this soon after the message's `createdAt` (5 s); plus room for clock skew.
const DEDUP_GUARD_MS: u64 = 15_000;
/// An assistant message still being written is sent once finished, or once this old (OpenCode
/// stopped before finishing it).
const UNFINISHED_MS: i64 = 10 * 60 * 1000;

/// Which sessions an export looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sessions whose database signals moved since the last export.
    Changed,
    /// Every session, sending what differs from what the server stored.
    All,
    /// Every session and message, sent again.
    Force,
}

/// One item the server refused, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// "session" or "message".
    pub kind: String,
    pub id: String,
    pub session: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub url: String,
    pub sessions_looked_at: usize,
    /// Sessions and messages the server confirmed it stored in this run.
    pub sessions_stored: usize,
    pub messages_stored: usize,
    /// Items the server refused (not stored; retried later with a backoff).
    pub refused: Vec<Refusal>,
    /// Items held back for a later run: messages still being written, changes the server would
    /// skip inside its dedup window, session updates whose batch answer did not confirm them.
    pub deferred: usize,
    /// Sessions skipped because the server refused them recently (backoff; `opensync sync` does
    /// not wait).
    pub backing_off: usize,
    /// Sessions not completely stored after this run.
    pub pending: usize,
    /// Sessions this machine could not read or map (stay pending): "id: why".
    pub unreadable: Vec<String>,
    /// Requests sent.
    pub requests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OpenSync is not set up on this machine: run `oc-sync opensync login`")]
    NotConfigured,
    #[error(transparent)]
    OpenSync(#[from] OpenSyncError),
    #[error("{0}")]
    Local(String),
}

/// Sends new and changed sessions when OpenSync credentials exist (oc-sync's own or the original
/// plugin's), unless a recent failure asks to wait; logs the outcome, never fails. What the
/// plugin's database process runs after its sync. The outcome is also in the state file
/// ([`StoredState::problem`]), which the plugin reads to show a toast.
pub fn run_if_configured(paths: &Paths, env: &EnvSnapshot) -> Option<ExportReport> {
    let found = super::credentials::load(paths, env)?;
    let c = &found.credentials;
    let st = state::load(&state::file(paths));
    if let Some(b) = st.retry.as_ref().filter(|b| b.waiting(now_ms()) && st.url == normalized(&c.url)) {
        tracing::debug!("opensync: waiting until {} after: {}", b.next_ms, b.reason);
        return None;
    }
    let result = OpenSyncClient::new(&c.url, &c.api_key, super::client::retry_delay(env))
        .map_err(ExportError::from)
        .and_then(|client| run_with(paths, &client, Mode::Changed, &Options::default(), workers(env), false));
    match &result {
        Ok(r) => log_report(r),
        Err(e) => tracing::warn!("opensync export failed (what was not stored stays pending): {e}"),
    }
    result.ok()
}

fn normalized(url: &str) -> String {
    super::client::normalize_url(url).unwrap_or_else(|_| url.to_owned())
}

fn log_report(r: &ExportReport) {
    if r.sessions_stored + r.messages_stored > 0 {
        tracing::info!("opensync: stored {} sessions and {} messages", r.sessions_stored, r.messages_stored);
    }
    for x in &r.refused {
        tracing::warn!("opensync refused {} {} (session {}): {}", x.kind, x.id, x.session, x.reason);
    }
}

/// Sessions not completely stored (their count only, for status).
pub fn pending(paths: &Paths) -> Result<usize, ExportError> {
    let st = state::load(&state::file(paths));
    if !paths.opencode_db.is_file() {
        return Ok(0);
    }
    let db = OpencodeDb::open(&paths.opencode_db).map_err(|e| ExportError::Local(e.to_string()))?;
    let signals = db.session_signals().map_err(|e| ExportError::Local(e.to_string()))?;
    Ok(signals.iter().filter(|s| st.sessions.get(&s.id).and_then(|m| m.signal.as_ref()) != Some(&signal_of(s))).count())
}

fn signal_of(s: &crate::source::opencode_db::SessionSignal) -> String {
    format!("{}:{}:{}:{}", s.time_updated, s.messages, s.parts, s.totals)
}

/// Sessions exported at the same time: [`WORKERS`], or OC_SYNC_OPENSYNC_WORKERS (tests).
pub fn workers(env: &EnvSnapshot) -> usize {
    env.var("OC_SYNC_OPENSYNC_WORKERS").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(WORKERS)
}

/// Runs one export with `client` and `workers` sessions at a time (see [`workers`]), not waiting
/// for backoffs (the person asked for it).
pub fn run(paths: &Paths, client: &OpenSyncClient, mode: Mode, opts: &Options, workers: usize) -> Result<ExportReport, ExportError> {
    run_with(paths, client, mode, opts, workers, true)
}

fn run_with(paths: &Paths, client: &OpenSyncClient, mode: Mode, opts: &Options, workers: usize, asked: bool) -> Result<ExportReport, ExportError> {
    let state_file = state::file(paths);
    let mut st = state::load(&state_file);
    if st.url != client.url() {
        st = StoredState { url: client.url().to_owned(), ..Default::default() };
    }
    let mut report = ExportReport { url: client.url().to_owned(), ..Default::default() };
    let run = Run { client, mode, opts, workers, asked };
    let result = export(paths, &run, &mut st, &mut report);
    let now = now_ms();
    st.last_sync_ms = Some(now);
    st.last_error = result.as_ref().err().map(|e| e.to_string());
    st.retry = match &result {
        Err(ExportError::OpenSync(e)) => Some(Backoff::after_failure(st.retry.as_ref(), now, e.to_string())),
        _ => None,
    };
    // A refusal stays the problem while refused sessions wait for their retry (one toast for it).
    let still_refused = st.sessions.values().any(|m| m.retry.is_some());
    st.problem = problem_of(&result, &report).or_else(|| st.problem.take().filter(|p| p.kind == "refused" && still_refused));
    state::save(&state_file, &st).map_err(|e| ExportError::Local(format!("cannot write {}: {e}", state_file.display())))?;
    result.map(|()| report)
}

/// What the person should hear about (refusals and a refused key; passing outages are retried).
fn problem_of(result: &Result<(), ExportError>, report: &ExportReport) -> Option<Problem> {
    match result {
        Err(ExportError::OpenSync(e @ OpenSyncError::Unauthorized(_))) => Some(Problem {
            kind: "unauthorized".into(),
            message: e.to_string(),
            hint: "create a key in the dashboard's settings, then run `oc-sync opensync login`".into(),
        }),
        Ok(()) if !report.refused.is_empty() => {
            let first = &report.refused[0];
            Some(Problem {
                kind: "refused".into(),
                message: format!("OpenSync refused {} item(s), e.g. {} {}: {}", report.refused.len(), first.kind, first.id, first.reason),
                hint: "they stay pending and are retried later; run `oc-sync opensync sync` to see every refusal".into(),
            })
        }
        _ => None,
    }
}

/// The work for one session: its session request (if any) and its messages, in order.
struct Job {
    sid: String,
    signal: String,
    /// (fingerprint, dedup key, payload with `createdAt`).
    session: Option<(String, String, Value)>,
    messages: Vec<(String, String, Value)>,
    /// Nothing of the session was held back: once all is stored, the signal is recorded.
    whole: bool,
}

struct JobResult {
    job: Job,
    session: Option<Result<(), String>>,
    messages: Vec<Result<(), String>>,
    requests: usize,
    fatal: Option<OpenSyncError>,
}

/// What one export run was asked to do.
struct Run<'a> {
    client: &'a OpenSyncClient,
    mode: Mode,
    opts: &'a Options,
    /// Sessions sent at the same time.
    workers: usize,
    /// The person asked for it (no waiting for backoffs, a request even when nothing moved).
    asked: bool,
}

/// A stored session's metadata update: (session id, signal, fingerprint, batch payload).
type BatchItem = (String, String, String, Value);

fn export(paths: &Paths, run: &Run<'_>, st: &mut StoredState, report: &mut ExportReport) -> Result<(), ExportError> {
    let local = |e: crate::source::opencode_db::DbError| ExportError::Local(e.to_string());
    if !paths.opencode_db.is_file() {
        return Ok(()); // OpenCode has not run on this machine yet: nothing to send
    }
    let db = OpencodeDb::open(&paths.opencode_db).map_err(local)?;
    let signals = db.session_signals().map_err(local)?;
    let changed = |st: &StoredState, s: &&crate::source::opencode_db::SessionSignal| {
        run.mode != Mode::Changed || st.sessions.get(&s.id).and_then(|m| m.signal.as_ref()) != Some(&signal_of(s))
    };
    if !run.asked && !signals.iter().any(|s| changed(st, &s)) {
        return Ok(()); // automatic run, nothing moved: no request at all
    }
    forget_lost(run.client, st, report)?;
    let todo: Vec<_> = signals.iter().filter(|s| changed(st, s)).collect();
    report.sessions_looked_at = todo.len();
    let batch = send_sessions(run, &db, &todo, st, report)?;
    for chunk in batch.chunks(BATCH_ITEMS) {
        send_batch(run.client, chunk, st, report)?;
    }
    report.pending = signals.iter().filter(|s| st.sessions.get(&s.id).and_then(|m| m.signal.as_ref()) != Some(&signal_of(s))).count();
    Ok(())
}

/// Plans the sessions of `todo` and sends their requests on `run.workers` threads, applying each
/// answer as it comes; returns the metadata updates left for batch requests.
fn send_sessions(
    run: &Run<'_>,
    db: &OpencodeDb,
    todo: &[&crate::source::opencode_db::SessionSignal],
    st: &mut StoredState,
    report: &mut ExportReport,
) -> Result<Vec<BatchItem>, ExportError> {
    let now = now_ms();
    let abort = AtomicBool::new(false);
    let mut batch: Vec<BatchItem> = Vec::new();
    let mut fatal = None;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(run.workers * 2);
    let (res_tx, res_rx) = mpsc::channel::<JobResult>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| -> Result<(), ExportError> {
        // Owned here, so any early return closes it and the workers end.
        let job_tx = job_tx;
        for _ in 0..run.workers {
            let (job_rx, res_tx, abort, client) = (&job_rx, res_tx.clone(), &abort, run.client);
            scope.spawn(move || {
                loop {
                    // The lock is released before the job runs, so the workers run in parallel.
                    let next = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = next else { break };
                    let _ = res_tx.send(run_job(client, job, abort));
                }
            });
        }
        drop(res_tx);
        let mut apply = |r: JobResult, st: &mut StoredState, report: &mut ExportReport| {
            if let Some(e) = apply_result(r, st, report) {
                fatal.get_or_insert(e);
            }
        };
        for s in todo {
            while let Ok(r) = res_rx.try_recv() {
                apply(r, st, report);
            }
            if abort.load(Ordering::Relaxed) {
                break;
            }
            let sent = match next_plan(run, db, s, st, now, report) {
                Some(Plan::Batch(b)) => {
                    batch.push(b);
                    true
                }
                Some(Plan::Job(job)) => job_tx.send(job).is_ok(),
                None => true,
            };
            if !sent {
                break;
            }
        }
        drop(job_tx);
        for r in res_rx {
            apply(r, st, report);
        }
        Ok(())
    })?;
    if let Some(e) = fatal {
        return Err(e.into());
    }
    Ok(batch)
}

/// What to send for session `s` now; None when it waits for its backoff, has nothing to send, or
/// cannot be read (then it is reported and stays pending: one unreadable session does not stop
/// the others).
fn next_plan(
    run: &Run<'_>,
    db: &OpencodeDb,
    s: &crate::source::opencode_db::SessionSignal,
    st: &StoredState,
    now: u64,
    report: &mut ExportReport,
) -> Option<Plan> {
    let mark = st.sessions.get(&s.id).cloned().unwrap_or_default();
    if !run.asked && mark.retry.as_ref().is_some_and(|b| b.waiting(now)) {
        report.backing_off += 1;
        return None;
    }
    match plan_session(db, s, &mark, run.mode, run.opts, now, report) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::warn!("opensync: cannot export session {}: {e}", s.id);
            report.unreadable.push(format!("{}: {e}", s.id));
            None
        }
    }
}

/// The server's list is the truth: a session it no longer holds is sent again.
fn forget_lost(client: &OpenSyncClient, st: &mut StoredState, report: &mut ExportReport) -> Result<(), OpenSyncError> {
    let on_server: BTreeSet<String> = client.session_ids()?.into_iter().collect();
    report.requests += 1;
    for (sid, mark) in st.sessions.iter_mut() {
        if mark.fp.is_some() && !on_server.contains(sid) {
            *mark = SessionMark::default();
        }
    }
    Ok(())
}

enum Plan {
    /// (session id, signal, fingerprint, batch payload): a stored session's metadata update.
    Batch((String, String, String, Value)),
    Job(Job),
}

/// What to send for one session (None: nothing to send and nothing pending).
fn plan_session(
    db: &OpencodeDb,
    s: &crate::source::opencode_db::SessionSignal,
    mark: &SessionMark,
    mode: Mode,
    opts: &Options,
    now: u64,
    report: &mut ExportReport,
) -> Result<Option<Plan>, ExportError> {
    let local = |e: crate::source::opencode_db::DbError| ExportError::Local(e.to_string());
    let Some(session_doc) = db.read_session_doc(&s.id).map_err(local)? else { return Ok(None) };
    let project_doc = db.read_project_doc(&s.project_id).map_err(local)?;
    let messages_doc = db.read_messages_doc(&s.id).map_err(local)?;
    let bad = |e: String| ExportError::Local(format!("session {}: {e}", s.id));
    let session = payload::session_payload(&session_doc, project_doc.as_deref(), messages_doc.as_deref(), opts).map_err(bad)?;
    let outs = match &messages_doc {
        Some(doc) => payload::message_outputs(&s.id, doc, opts).map_err(bad)?,
        None => Vec::new(),
    };
    let force = mode == Mode::Force;
    let mut whole = true;
    let mut messages = Vec::new();
    for m in outs {
        let fp = payload::fingerprint(&m.payload);
        let stored = mark.messages.get(&m.id);
        if !force && stored == Some(&fp) {
            continue;
        }
        let age = m.created_ms.map_or(i64::MAX, |c| now as i64 - c);
        // Unfinished, or an update the server would skip (within 5 s of its createdAt).
        if (!m.complete && age < UNFINISHED_MS) || (stored.is_some() && age < DEDUP_GUARD_MS as i64) {
            whole = false;
            report.deferred += 1;
            continue;
        }
        messages.push((m.id, fp, m.payload));
    }
    let fp = payload::fingerprint(&session);
    let key = payload::session_key(&session);
    let changed = force || mark.fp.as_ref() != Some(&fp);
    let mut session_req = None;
    if changed {
        // An update that changes no key field within the server's window would be skipped.
        if mark.fp.is_some() && key == mark.key && now.saturating_sub(mark.written_ms) < DEDUP_GUARD_MS {
            whole = false;
            report.deferred += 1;
        } else if mark.fp.is_some() && messages.is_empty() && whole {
            return Ok(Some(Plan::Batch((s.id.clone(), signal_of(s), fp, payload::for_batch(&session)))));
        } else {
            session_req = Some((fp, key, session));
        }
    }
    if session_req.is_none() && messages.is_empty() && whole && mark.fp.is_some() {
        // Everything is stored already: only the signal moved.
        return Ok(Some(Plan::Job(Job { sid: s.id.clone(), signal: signal_of(s), session: None, messages, whole })));
    }
    if mark.fp.is_none() && session_req.is_none() {
        whole = false; // its messages wait for the session itself
        messages.clear();
    }
    Ok(Some(Plan::Job(Job { sid: s.id.clone(), signal: signal_of(s), session: session_req, messages, whole })))
}

/// Sends one session's requests in order; a refused session holds back its messages (they would
/// create a bare session stamped with the server's clock).
fn run_job(client: &OpenSyncClient, job: Job, abort: &AtomicBool) -> JobResult {
    let mut r = JobResult { session: None, messages: Vec::new(), requests: 0, fatal: None, job };
    let outcome = |e: OpenSyncError, r: &mut JobResult| -> Option<String> {
        match e {
            OpenSyncError::Refused(why) => Some(why),
            other => {
                abort.store(true, Ordering::Relaxed);
                r.fatal = Some(other);
                None
            }
        }
    };
    if abort.load(Ordering::Relaxed) {
        return r;
    }
    if let Some((_, _, payload)) = &r.job.session {
        r.requests += 1;
        match client.post_session(payload) {
            Ok(()) => r.session = Some(Ok(())),
            Err(e) => {
                match outcome(e, &mut r) {
                    Some(why) => r.session = Some(Err(why)),
                    None => return r,
                }
                return r;
            }
        }
    }
    for i in 0..r.job.messages.len() {
        if abort.load(Ordering::Relaxed) {
            break;
        }
        r.requests += 1;
        match client.post_message(&r.job.messages[i].2) {
            Ok(()) => r.messages.push(Ok(())),
            Err(e) => match outcome(e, &mut r) {
                Some(why) => r.messages.push(Err(why)),
                None => break,
            },
        }
    }
    r
}

/// Records what the server stored and refused; returns a fatal error of the job.
fn apply_result(r: JobResult, st: &mut StoredState, report: &mut ExportReport) -> Option<OpenSyncError> {
    let now = now_ms();
    report.requests += r.requests;
    let job = r.job;
    if r.session.is_none() && r.messages.is_empty() && (job.session.is_some() || !job.messages.is_empty()) {
        return r.fatal; // not attempted (the run stopped): the session stays as it was
    }
    let mark = st.sessions.entry(job.sid.clone()).or_default();
    let mut refused = Vec::new();
    match (&job.session, &r.session) {
        (Some((fp, key, _)), Some(Ok(()))) => {
            mark.fp = Some(fp.clone());
            mark.key = key.clone();
            mark.written_ms = now;
            report.sessions_stored += 1;
        }
        (Some(_), Some(Err(why))) => refused.push(Refusal { kind: "session".into(), id: job.sid.clone(), session: job.sid.clone(), reason: why.clone() }),
        _ => {}
    }
    for ((id, fp, _), res) in job.messages.iter().zip(&r.messages) {
        match res {
            Ok(()) => {
                mark.messages.insert(id.clone(), fp.clone());
                mark.written_ms = now;
                report.messages_stored += 1;
            }
            Err(why) => refused.push(Refusal { kind: "message".into(), id: id.clone(), session: job.sid.clone(), reason: why.clone() }),
        }
    }
    let all_sent = r.fatal.is_none() && r.messages.len() == job.messages.len() && (job.session.is_none() || r.session.is_some());
    if refused.is_empty() {
        mark.retry = None;
        if all_sent && job.whole && mark.fp.is_some() {
            mark.signal = Some(job.signal.clone());
        }
    } else {
        mark.retry = Some(Backoff::after_failure(mark.retry.as_ref(), now, refused[0].reason.clone()));
        mark.signal = None;
        report.refused.extend(refused);
    }
    r.fatal
}

/// Sends stored sessions' metadata updates in one batch; the server's answer decides.
fn send_batch(client: &OpenSyncClient, chunk: &[(String, String, String, Value)], st: &mut StoredState, report: &mut ExportReport) -> Result<(), ExportError> {
    let payloads: Vec<Value> = chunk.iter().map(|(_, _, _, p)| p.clone()).collect();
    let r = client.batch(&payloads, &[])?;
    report.requests += 1;
    let now = now_ms();
    if let Some(why) = &r.sessions_error {
        for (sid, ..) in chunk {
            let mark = st.sessions.entry(sid.clone()).or_default();
            mark.retry = Some(Backoff::after_failure(mark.retry.as_ref(), now, why.clone()));
            report.refused.push(Refusal { kind: "session".into(), id: sid.clone(), session: sid.clone(), reason: why.clone() });
        }
        return Ok(());
    }
    if r.sessions as usize != chunk.len() {
        // Some were skipped and the answer does not say which: all stay pending for the next run.
        report.deferred += chunk.len();
        return Ok(());
    }
    for (sid, signal, fp, payload) in chunk {
        let mark = st.sessions.entry(sid.clone()).or_default();
        mark.fp = Some(fp.clone());
        mark.key = payload::session_key(payload);
        mark.written_ms = now;
        mark.signal = Some(signal.clone());
        mark.retry = None;
        report.sessions_stored += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_first_refusal_and_what_to_do() {
        let mut r = ExportReport::default();
        assert_eq!(problem_of(&Ok(()), &r), None);
        r.refused.push(Refusal { kind: "message".into(), id: "msg_1".into(), session: "ses_1".into(), reason: "Error: too large".into() });
        let p = problem_of(&Ok(()), &r).unwrap();
        assert_eq!(p.kind, "refused");
        assert!(p.message.contains("msg_1") && p.message.contains("too large"), "{p:?}");
        let e = Err(ExportError::OpenSync(OpenSyncError::Unauthorized("HTTP 401".into())));
        assert_eq!(problem_of(&e, &r).unwrap().kind, "unauthorized");
        let e = Err(ExportError::OpenSync(OpenSyncError::Unreachable { url: "u".into(), detail: "d".into() }));
        assert_eq!(problem_of(&e, &r), None, "passing outages are retried, not toasted");
    }
}
