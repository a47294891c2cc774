//! One export run: sessions new or changed since the last run (by their cheap database signals),
//! mapped to OpenSync payloads, sent in batches; what OpenSync accepted is remembered so nothing is
//! sent twice, and a message is never sent without its parts.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::client::{OpenSyncClient, OpenSyncError};
use super::payload::{self, Options};
use super::state::{self, SentState};
use crate::paths::Paths;
use crate::source::opencode_db::OpencodeDb;

/// Items per batch request, and the request size it aims to stay under.
const BATCH_ITEMS: usize = 100;
const BATCH_BYTES: usize = 2 << 20;

/// Which sessions an export looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sessions whose database signals moved since the last export.
    Changed,
    /// Every session, sending what differs from what was sent.
    All,
    /// Every session and message, sent again.
    Force,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub url: String,
    pub sessions_looked_at: usize,
    pub sessions_sent: usize,
    pub messages_sent: usize,
    /// Items OpenSync refused (batch `errors[]`): "type externalId: error".
    pub refused: Vec<String>,
    /// Sessions still pending after this run (an error stopped it).
    pub pending: usize,
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
/// plugin's); logs the outcome, never fails. What the plugin's database process runs after its sync.
pub fn run_if_configured(paths: &Paths, env: &crate::paths::EnvSnapshot) {
    let Some(found) = super::credentials::load(paths, env) else { return };
    let c = &found.credentials;
    let result = OpenSyncClient::new(&c.url, &c.api_key)
        .map_err(ExportError::from)
        .and_then(|client| run(paths, &client, Mode::Changed, &Options::default()));
    match result {
        Ok(r) if r.sessions_sent + r.messages_sent > 0 || !r.refused.is_empty() => tracing::info!(
            "opensync: sent {} sessions and {} messages{}",
            r.sessions_sent,
            r.messages_sent,
            if r.refused.is_empty() { String::new() } else { format!("; refused: {}", r.refused.join("; ")) }
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("opensync export failed (the sessions stay pending): {e}"),
    }
}

/// Sessions changed since the last export (their count only, for status).
pub fn pending(paths: &Paths) -> Result<usize, ExportError> {
    let st = state::load(&state::file(paths));
    if !paths.opencode_db.is_file() {
        return Ok(0);
    }
    let db = OpencodeDb::open(&paths.opencode_db).map_err(|e| ExportError::Local(e.to_string()))?;
    let signals = db.session_signals().map_err(|e| ExportError::Local(e.to_string()))?;
    Ok(signals.iter().filter(|s| st.signals.get(&s.id) != Some(&signal_of(s))).count())
}

fn signal_of(s: &crate::source::opencode_db::SessionSignal) -> String {
    format!("{}:{}:{}:{}", s.time_updated, s.messages, s.parts, s.totals)
}

/// Runs one export with `client`.
pub fn run(paths: &Paths, client: &OpenSyncClient, mode: Mode, opts: &Options) -> Result<ExportReport, ExportError> {
    let state_file = state::file(paths);
    let mut st = state::load(&state_file);
    if st.url != client.url() {
        st = SentState { url: client.url().to_owned(), ..Default::default() };
    }
    let mut report = ExportReport { url: client.url().to_owned(), ..Default::default() };
    let result = export(paths, client, mode, opts, &mut st, &mut report);
    st.last_sync_ms = Some(crate::sync::run::system_now_ms());
    st.last_error = result.as_ref().err().map(|e| e.to_string());
    state::save(&state_file, &st).map_err(|e| ExportError::Local(format!("cannot write {}: {e}", state_file.display())))?;
    result.map(|()| report)
}

fn export(
    paths: &Paths,
    client: &OpenSyncClient,
    mode: Mode,
    opts: &Options,
    st: &mut SentState,
    report: &mut ExportReport,
) -> Result<(), ExportError> {
    let local = |e: crate::source::opencode_db::DbError| ExportError::Local(e.to_string());
    if !paths.opencode_db.is_file() {
        return Ok(()); // OpenCode has not run on this machine yet: nothing to send
    }
    let db = OpencodeDb::open(&paths.opencode_db).map_err(local)?;
    let signals = db.session_signals().map_err(local)?;
    let todo: Vec<_> = signals
        .iter()
        .filter(|s| mode != Mode::Changed || st.signals.get(&s.id) != Some(&signal_of(s)))
        .collect();
    report.sessions_looked_at = todo.len();
    report.pending = todo.len();
    let mut batch = Batch::default();
    for s in &todo {
        let Some(session_doc) = db.read_session_doc(&s.id).map_err(local)? else { continue };
        let project_doc = db.read_project_doc(&s.project_id).map_err(local)?;
        let messages_doc = db.read_messages_doc(&s.id).map_err(local)?;
        let session = payload::session_payload(&session_doc, project_doc.as_deref(), messages_doc.as_deref(), opts)
            .map_err(|e| ExportError::Local(format!("session {}: {e}", s.id)))?;
        let messages = match &messages_doc {
            Some(doc) => payload::message_payloads(&s.id, doc, opts).map_err(|e| ExportError::Local(format!("session {}: {e}", s.id)))?,
            None => Vec::new(),
        };
        let force = mode == Mode::Force;
        let fp = payload::fingerprint(&session);
        if force || st.sessions.get(&s.id) != Some(&fp) {
            batch.sessions.push((s.id.clone(), fp, session));
        }
        for m in messages {
            let id = m["externalId"].as_str().unwrap_or_default().to_owned();
            let fp = payload::fingerprint(&m);
            if force || st.messages.get(&id) != Some(&fp) {
                batch.messages.push((id, fp, m));
            }
        }
        batch.done_signals.push((s.id.clone(), signal_of(s)));
        if batch.len() >= BATCH_ITEMS || batch.bytes() >= BATCH_BYTES {
            batch.send(client, st, report)?;
        }
    }
    batch.send(client, st, report)?;
    report.pending = 0;
    Ok(())
}

/// Items waiting to be sent, with their fingerprints.
#[derive(Default)]
struct Batch {
    sessions: Vec<(String, String, Value)>,
    messages: Vec<(String, String, Value)>,
    /// Sessions fully added to this batch: (id, signal) recorded once it is accepted.
    done_signals: Vec<(String, String)>,
    size: usize,
}

impl Batch {
    fn len(&self) -> usize {
        self.sessions.len() + self.messages.len()
    }

    fn bytes(&mut self) -> usize {
        if self.size == 0 {
            self.size = self.sessions.iter().chain(&self.messages).map(|(_, _, v)| v.to_string().len()).sum();
        }
        self.size
    }

    /// Sends everything (in requests of at most BATCH_ITEMS items); records what was accepted.
    fn send(&mut self, client: &OpenSyncClient, st: &mut SentState, report: &mut ExportReport) -> Result<(), ExportError> {
        let sessions = std::mem::take(&mut self.sessions);
        let messages = std::mem::take(&mut self.messages);
        let done = std::mem::take(&mut self.done_signals);
        self.size = 0;
        if sessions.is_empty() && messages.is_empty() {
            for (id, sig) in done {
                st.signals.insert(id, sig);
            }
            return Ok(());
        }
        // Sessions first, so messages never create bare sessions.
        let mut refused_sessions: BTreeMap<String, ()> = BTreeMap::new();
        for chunk in sessions.chunks(BATCH_ITEMS) {
            let payloads: Vec<Value> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
            let r = client.batch(&payloads, &[])?;
            let refused: BTreeMap<&str, &str> = r.errors.iter().filter(|e| e.0 == "session").map(|e| (e.1.as_str(), e.2.as_str())).collect();
            for (id, fp, _) in chunk {
                match refused.get(id.as_str()) {
                    Some(err) => {
                        report.refused.push(format!("session {id}: {err}"));
                        refused_sessions.insert(id.clone(), ());
                    }
                    None => {
                        st.sessions.insert(id.clone(), fp.clone());
                        report.sessions_sent += 1;
                    }
                }
            }
        }
        let mut refused_messages = 0usize;
        for chunk in messages.chunks(BATCH_ITEMS) {
            let payloads: Vec<Value> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
            let r = client.batch(&[], &payloads)?;
            let refused: BTreeMap<&str, &str> = r.errors.iter().filter(|e| e.0 == "message").map(|e| (e.1.as_str(), e.2.as_str())).collect();
            for (id, fp, _) in chunk {
                match refused.get(id.as_str()) {
                    Some(err) => {
                        report.refused.push(format!("message {id}: {err}"));
                        refused_messages += 1;
                    }
                    None => {
                        st.messages.insert(id.clone(), fp.clone());
                        report.messages_sent += 1;
                    }
                }
            }
        }
        // A session counts as exported only when nothing of it was refused.
        if refused_sessions.is_empty() && refused_messages == 0 {
            for (id, sig) in done {
                st.signals.insert(id, sig);
            }
        } else {
            for (id, sig) in done {
                if !refused_sessions.contains_key(&id) && refused_messages == 0 {
                    st.signals.insert(id, sig);
                }
            }
        }
        Ok(())
    }
}
