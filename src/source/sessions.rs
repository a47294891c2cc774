//! Sessions, messages, todos and projects from OpenCode's database, as sync items.
//!
//! Keys (one document each, see [`super::opencode_db`] for the formats):
//! - `sessions/<projectId>/<sessionId>.json`: the session row (+ its project row, so a machine
//!   without the project can still insert the session);
//! - `messages/<projectId>/<sessionId>/<messageId>.json`: one message with its parts (a small
//!   document, so appending a message to a long session changes one small item); the format-1
//!   `messages/<projectId>/<sessionId>.json` (all of a session's messages) is refused, and
//!   [`split_legacy_messages_doc`] turns one into the new items;
//! - `todos/<projectId>/<sessionId>.json`: its todo list;
//! - `projects/<projectId>.json`: the project row.
//!
//! Change detection is cheap ([`Source::fingerprints`]): a session's `time_updated` and its
//! message/part/todo counts through OpenCode's indexes; only changed sessions are read. Message
//! items are fingerprinted one by one (the message's `time_updated` and size, its parts' count,
//! latest `time_updated` and size), computed only for sessions whose session-level signal changed
//! and otherwise taken from a cache in oc-sync's state dir ([`PRINTS_FILE`]).
//!
//! **Writes** of a batch ([`Source::write_batch`]) are one SQLite transaction, each item a
//! savepoint in it (a refused item undoes itself only); session totals are recomputed once per
//! batch.
//!
//! **Paths.** A project has the same id on every machine (its git root commit) but its own
//! worktree path. A pulled session's `directory` becomes `<local worktree>/<session.path>` when
//! the project exists here, else it goes through `sessionPathMap`, else it stays as it is. What
//! was mapped is remembered (`<oc-sync state>/opencode-paths.json`) and mapped back when the
//! session is read again, so the synced document stays the same on every machine (no ping-pong).
//!
//! **Writes** only when OpenCode's schema is one this build knows (else every write is refused
//! with the reason, and reads go on).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::opencode_db::{messages_doc_ids, DbError, OpencodeDb, SchemaStatus, SessionSignal};
use super::{Category, Fingerprints, Item, ItemMeta, Source, SourceError, WriteOp};
use crate::config::Config;
use crate::merge::MergeKind;
use crate::merge::rows::render_doc;

/// Project columns that belong to one machine (its paths, when it first opened the project):
/// never in the shared document, kept as they are locally.
const MACHINE_PROJECT_COLUMNS: &[&str] = &["worktree", "sandboxes", "time_created", "time_initialized"];

/// File (in oc-sync's state dir) remembering which paths were mapped on this machine.
pub const PATHS_FILE: &str = "opencode-paths.json";

/// File (in oc-sync's state dir) caching the message fingerprints of each session, with the
/// session-level signal they were computed at: session id → (signal, message id → print).
pub const PRINTS_FILE: &str = "opencode-message-prints.json";

/// Why a format-1 `messages/<projectId>/<sessionId>.json` key is refused.
pub const LEGACY_MESSAGES_REFUSAL: &str = "an old format-1 session document; migrated by the remote upgrade";

type PrintCache = BTreeMap<String, (String, BTreeMap<String, String>)>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PathMemory {
    /// Session id → (directory in the synced document, directory written here).
    #[serde(default)]
    sessions: BTreeMap<String, Mapped>,
    /// Projects this machine created only so a pulled session could be inserted: hidden from the
    /// `projects` category until the project's own item is written.
    #[serde(default)]
    synthesized: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mapped {
    shared: String,
    local: String,
}

/// Which sessions this machine syncs.
#[derive(Debug, Clone, Default)]
struct Filter {
    /// Sessions updated before this (ms since the epoch) are left alone; 0 = all.
    cutoff_ms: u64,
    /// Project ids, names or worktrees; empty = all.
    projects: Vec<String>,
    max_bytes: u64,
}

/// This machine's projects: id → (name, worktree).
type LocalProjects = HashMap<String, (Option<String>, String)>;

struct Shared {
    db: OpencodeDb,
    filter: Filter,
    path_map: Vec<(String, String)>,
    memory: RefCell<PathMemory>,
    memory_file: PathBuf,
    /// Why writes are refused, if they are.
    read_only: Option<String>,
    /// Session signals of this moment; dropped after every write.
    signals: RefCell<Option<Rc<Vec<SessionSignal>>>>,
    /// Local projects: id → (name, worktree).
    projects: RefCell<Option<Rc<LocalProjects>>>,
    /// Message fingerprints per session ([`PRINTS_FILE`]), loaded on first use.
    prints: RefCell<Option<PrintCache>>,
    prints_file: PathBuf,
}

/// What `read` needs to know about one session.
struct SessionCounts {
    project_id: String,
    todos: u64,
    time_updated: i64,
}

/// One category's view of the database.
pub struct DbSource {
    cat: Category,
    shared: Rc<Shared>,
}

/// Why the database categories do not sync on this machine, if they do not (nothing to read yet).
pub fn unavailable_reason(db_path: &Path) -> Option<String> {
    (!db_path.is_file()).then(|| {
        format!(
            "OpenCode's database {} does not exist yet: `oc-sync sync` has OpenCode create it (needs `opencode` on PATH)",
            db_path.display()
        )
    })
}

/// The sources of the enabled database categories, or none when the database does not exist yet.
/// Messages and todos need sessions (they are written into a session row).
pub fn sources(db_path: &Path, state_dir: &Path, config: &Config, now_ms: u64) -> Result<Vec<DbSource>, SourceError> {
    let s = &config.sync;
    let cats: Vec<Category> = [
        (Category::Sessions, s.sessions),
        (Category::Messages, s.sessions && s.messages),
        (Category::Projects, s.projects),
        (Category::Todos, s.sessions && s.todos),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(c, _)| c)
    .collect();
    if cats.is_empty() || unavailable_reason(db_path).is_some() {
        return Ok(Vec::new());
    }
    let db = OpencodeDb::open(db_path).map_err(db_err)?;
    let read_only = match db.schema().map_err(db_err)? {
        SchemaStatus::Known => None,
        other => Some(schema_refusal(&db, &other)),
    };
    let memory_file = state_dir.join(PATHS_FILE);
    let memory = std::fs::read(&memory_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let cutoff_ms = match config.session_max_age_days {
        0 => 0,
        d => now_ms.saturating_sub(u64::from(d) * 86_400_000),
    };
    let shared = Rc::new(Shared {
        db,
        filter: Filter { cutoff_ms, projects: config.session_projects.clone(), max_bytes: config.session_max_bytes },
        path_map: config.session_path_map.clone(),
        memory: RefCell::new(memory),
        memory_file,
        read_only,
        signals: RefCell::new(None),
        projects: RefCell::new(None),
        prints: RefCell::new(None),
        prints_file: state_dir.join(PRINTS_FILE),
    });
    Ok(cats.into_iter().map(|cat| DbSource { cat, shared: shared.clone() }).collect())
}

fn schema_refusal(db: &OpencodeDb, status: &SchemaStatus) -> String {
    match status {
        SchemaStatus::Known => String::new(),
        SchemaStatus::Unknown { last, count } => format!(
            "OpenCode's database {} has schema {last} ({count} migrations), which this oc-sync does not know (it knows OpenCode 1.18.33, up to {}): sessions are read and pushed but not written here; upgrade oc-sync",
            db.path().display(),
            super::opencode_db::schema::last_known_migration()
        ),
        SchemaStatus::Missing => format!(
            "OpenCode's database {} has no migration table (not an OpenCode database, or not initialised): sessions are not written here",
            db.path().display()
        ),
    }
}

/// A document the database refused is refused for that item; other failures stop the sync.
fn write_err(key: &str, e: DbError) -> SourceError {
    match e {
        DbError::InvalidDoc { .. } | DbError::SessionMissing { .. } => refused(key, e.to_string()),
        e => db_err(e),
    }
}

fn db_err_text(text: &str) -> SourceError {
    SourceError::Io { context: text.to_owned(), source: std::io::Error::other("database") }
}

fn db_err(e: DbError) -> SourceError {
    SourceError::Io { context: e.to_string(), source: std::io::Error::other("database") }
}

fn refused(key: &str, reason: impl Into<String>) -> SourceError {
    SourceError::KeyRefused { key: key.into(), reason: reason.into() }
}

/// (project id, session id) of a session-scoped key of `cat`.
fn session_key(cat: Category, key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(cat.as_str())?.strip_prefix('/')?.strip_suffix(".json")?;
    let (pid, sid) = rest.split_once('/')?;
    (valid_id(pid) && valid_id(sid)).then_some((pid, sid))
}

/// (project id, session id, message id) of a `messages/<pid>/<sid>/<mid>.json` key.
fn message_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix("messages/")?.strip_suffix(".json")?;
    let mut it = rest.split('/');
    let (pid, sid, mid) = (it.next()?, it.next()?, it.next()?);
    (it.next().is_none() && valid_id(pid) && valid_id(sid) && valid_id(mid)).then_some((pid, sid, mid))
}

/// (project id, session id) of any session-scoped key of `cat` (a message key's session).
fn session_of_key(cat: Category, key: &str) -> Option<(&str, &str)> {
    match cat {
        Category::Messages => message_key(key).map(|(p, s, _)| (p, s)),
        _ => session_key(cat, key),
    }
}

fn project_key(key: &str) -> Option<&str> {
    let pid = key.strip_prefix("projects/")?.strip_suffix(".json")?;
    valid_id(pid).then_some(pid)
}

/// OpenCode ids (`ses_…`, git hashes, `global`): plain ASCII, no separators.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `dir` without the trailing relative path `rel` (the worktree a session directory lies in).
fn strip_rel(dir: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    if rel.is_empty() || rel == "." {
        return dir.to_string();
    }
    dir.trim_end_matches('/').strip_suffix(rel).map(|d| d.trim_end_matches('/').to_string()).unwrap_or_else(|| dir.to_string())
}

/// `root` joined with the `/`-separated relative `rel` (empty = root itself).
fn join_rel(root: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    if rel.is_empty() || rel == "." {
        root.to_string()
    } else {
        format!("{}/{rel}", root.trim_end_matches('/'))
    }
}

impl Shared {
    fn signals(&self) -> Result<Rc<Vec<SessionSignal>>, SourceError> {
        if let Some(s) = self.signals.borrow().as_ref() {
            return Ok(s.clone());
        }
        let s = Rc::new(self.db.session_signals().map_err(db_err)?);
        *self.signals.borrow_mut() = Some(s.clone());
        Ok(s)
    }

    fn local_projects(&self) -> Result<Rc<LocalProjects>, SourceError> {
        if let Some(p) = self.projects.borrow().as_ref() {
            return Ok(p.clone());
        }
        let mut out = HashMap::new();
        for (pid, _) in self.db.project_signals().map_err(db_err)? {
            if let Some(doc) = self.db.read_project_doc(&pid).map_err(db_err)?
                && let Ok(v) = serde_json::from_slice::<Value>(&doc)
            {
                let row = &v["project"];
                let name = row["name"].as_str().map(str::to_owned);
                let worktree = row["worktree"].as_str().unwrap_or("").to_owned();
                out.insert(pid, (name, worktree));
            }
        }
        let out = Rc::new(out);
        *self.projects.borrow_mut() = Some(out.clone());
        Ok(out)
    }

    /// Forgets what a write may have changed (the projects list only when projects changed).
    fn changed(&self, projects: bool) {
        *self.signals.borrow_mut() = None;
        if projects {
            *self.projects.borrow_mut() = None;
        }
    }

    fn project_selected(&self, pid: &str) -> Result<bool, SourceError> {
        if self.filter.projects.is_empty() {
            return Ok(true);
        }
        let projects = self.local_projects()?;
        let (name, worktree) = projects.get(pid).cloned().unwrap_or((None, String::new()));
        Ok(self.filter.projects.iter().any(|p| {
            let p = p.trim_end_matches('/');
            p == pid || name.as_deref() == Some(p) || (!worktree.is_empty() && worktree.trim_end_matches('/') == p)
        }))
    }

    /// Applies `sessionPathMap` (longest matching prefix) to a path from another machine.
    fn map_path(&self, path: &str) -> Option<String> {
        self.path_map
            .iter()
            .filter(|(from, _)| {
                let from = from.trim_end_matches('/');
                !from.is_empty() && (path == from || path.starts_with(&format!("{from}/")))
            })
            .max_by_key(|(from, _)| from.len())
            .map(|(from, to)| format!("{}{}", to.trim_end_matches('/'), &path[from.trim_end_matches('/').len()..]))
    }

    fn set_synthesized(&self, pid: &str, on: bool) {
        let dirty = {
            let mut m = self.memory.borrow_mut();
            if on { m.synthesized.insert(pid.to_owned()) } else { m.synthesized.remove(pid) }
        };
        if dirty {
            self.save_memory();
        }
    }

    fn is_synthesized(&self, pid: &str) -> bool {
        self.memory.borrow().synthesized.contains(pid)
    }

    fn save_memory(&self) {
        let m = self.memory.borrow();
        match serde_json::to_vec_pretty(&*m) {
            Ok(bytes) => {
                if let Err(e) = crate::fsutil::atomic_write(&self.memory_file, &bytes, None) {
                    tracing::warn!("cannot write {}: {e}", self.memory_file.display());
                }
            }
            Err(e) => tracing::warn!("cannot serialize the path memory: {e}"),
        }
    }

    /// Remembers the directory a session was written with here (forgotten when not mapped).
    fn remember(&self, sid: &str, mapped: Mapped) {
        let dirty = {
            let mut m = self.memory.borrow_mut();
            if mapped.shared == mapped.local {
                m.sessions.remove(sid).is_some()
            } else {
                m.sessions.insert(sid.to_owned(), mapped.clone()) != Some(mapped)
            }
        };
        if dirty {
            self.save_memory();
        }
    }

    /// The shared form of a session directory read here: the other machine's original when this
    /// machine wrote it mapped.
    fn shared_dir(&self, sid: &str, local: &str) -> Option<String> {
        self.memory.borrow().sessions.get(sid).filter(|m| m.local == local).map(|m| m.shared.clone())
    }

    /// Runs `f` on the message print cache (loaded from [`PRINTS_FILE`] on first use).
    fn with_prints<T>(&self, f: impl FnOnce(&mut PrintCache) -> T) -> T {
        let mut cache = self.prints.borrow_mut();
        let cache = cache.get_or_insert_with(|| {
            std::fs::read(&self.prints_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
        });
        f(cache)
    }

    fn save_prints(&self) {
        let bytes = self.with_prints(|c| serde_json::to_vec(c));
        match bytes {
            Ok(bytes) => {
                if let Err(e) = crate::fsutil::atomic_write(&self.prints_file, &bytes, None) {
                    tracing::warn!("cannot write {}: {e}", self.prints_file.display());
                }
            }
            Err(e) => tracing::warn!("cannot serialize the message prints: {e}"),
        }
    }

    /// Forgets (durably, before a write of their messages) the cached prints of `sessions`: a
    /// write may change a message without changing the session-level signal.
    fn forget_prints<'s>(&self, sessions: impl IntoIterator<Item = &'s str>) {
        let removed = self.with_prints(|c| sessions.into_iter().fold(false, |acc, sid| c.remove(sid).is_some() | acc));
        if removed {
            self.save_prints();
        }
    }

    fn write_guard(&self, key: &str) -> Result<(), SourceError> {
        match &self.read_only {
            Some(why) => Err(refused(key, why.clone())),
            None => Ok(()),
        }
    }
}

/// Turns a format-1 `messages/<projectId>/<sessionId>.json` document (all of a session's messages
/// and parts) into the format-2 items `messages/<projectId>/<sessionId>/<messageId>.json`, each
/// byte for byte what this source reads from the same rows. For the remote upgrade. Refuses a
/// key of another shape, a damaged document, one naming another session, and message ids that
/// cannot be keys.
pub fn split_legacy_messages_doc(key: &str, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    let (pid, sid) = session_key(Category::Messages, key)
        .ok_or_else(|| refused(key, "not a format-1 messages key (messages/<projectId>/<sessionId>.json)"))?;
    let (doc_sid, items) = super::opencode_db::split_messages_doc(bytes)
        .map_err(|p| refused(key, format!("not a valid messages document: {}: {}", p.field, p.problem)))?;
    if doc_sid != sid {
        return Err(refused(key, format!("its content names sessionId {doc_sid:?}, not {sid:?} as its key does")));
    }
    items
        .into_iter()
        .map(|(mid, doc)| {
            if valid_id(&mid) {
                Ok((format!("messages/{pid}/{sid}/{mid}.json"), doc))
            } else {
                Err(refused(key, format!("message id {mid:?} cannot be part of an item key")))
            }
        })
        .collect()
}

/// Why `key` is not a key of `cat`'s shape, if it is not.
fn key_shape_refusal(cat: Category, key: &str) -> Option<String> {
    match cat {
        Category::Projects => project_key(key).is_none().then(|| "not a projects key (projects/<projectId>.json)".to_string()),
        Category::Messages if session_key(cat, key).is_some() => Some(LEGACY_MESSAGES_REFUSAL.to_string()),
        Category::Messages => {
            message_key(key).is_none().then(|| "not a messages key (messages/<projectId>/<sessionId>/<messageId>.json)".to_string())
        }
        _ => session_key(cat, key).is_none().then(|| format!("not a {cat} key ({cat}/<projectId>/<sessionId>.json)")),
    }
}

/// Checks that a document names the session or project its key names (and nothing else): the
/// project row of `projects/<pid>`, the session row (and embedded project) of
/// `sessions/<pid>/<sid>`, every row of `messages/…/<sid>` and `todos/…/<sid>`.
fn check_matches_key(cat: Category, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
    if let Some(why) = key_shape_refusal(cat, key) {
        return Err(refused(key, why));
    }
    let doc = parse_doc(key, bytes)?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("(none)").to_string();
    let expect = |field: &str, found: String, want: &str| {
        if found == want {
            Ok(())
        } else {
            Err(refused(key, format!("its content names {field} {found:?}, not {want:?} as its key does")))
        }
    };
    if cat == Category::Projects {
        let pid = project_key(key).unwrap_or_default();
        return expect("project.id", text(doc.get("project").and_then(|p| p.get("id"))), pid);
    }
    let (pid, sid) = session_of_key(cat, key).unwrap_or_default();
    if cat == Category::Sessions {
        let session = doc.get("session");
        expect("session.id", text(session.and_then(|s| s.get("id"))), sid)?;
        expect("session.project_id", text(session.and_then(|s| s.get("project_id"))), pid)?;
        return match doc.get("project") {
            None | Some(Value::Null) => Ok(()),
            Some(p) => expect("project.id", text(p.get("id")), pid),
        };
    }
    expect("sessionId", text(doc.get("sessionId")), sid)?;
    if let Some((_, _, mid)) = message_key(key) {
        // Exactly the key's message, and only its parts.
        let messages = doc.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if messages.len() != 1 {
            return Err(refused(key, format!("a message item holds exactly one message row, not {}", messages.len())));
        }
        expect("messages[0].id", text(messages[0].get("id")), mid)?;
        for (i, row) in doc.get("parts").and_then(Value::as_array).into_iter().flatten().enumerate() {
            expect(&format!("parts[{i}].message_id"), text(row.get("message_id")), mid)?;
        }
    }
    for list in ["messages", "parts", "todos"] {
        for (i, row) in doc.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            expect(&format!("{list}[{i}].session_id"), text(row.get("session_id")), sid)?;
        }
    }
    Ok(())
}

fn parse_doc(key: &str, bytes: &[u8]) -> Result<Map<String, Value>, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| refused(key, format!("not a valid document: {e}")))
}

impl DbSource {
    fn meta(&self, key: String, size: u64, modified_ms: u64) -> ItemMeta {
        ItemMeta { key, category: self.cat, kind: MergeKind::Rows, size, modified_ms, mode: None }
    }

    /// One session's project, todo count and time (cheap: the session's primary key and the todo
    /// index; called per message item, so no message or part counts).
    fn session_of(&self, sid: &str) -> Result<Option<SessionCounts>, SourceError> {
        if let Some(s) = self.shared.signals.borrow().as_ref() {
            // Sorted by id (see `session_signals`).
            return Ok(s.binary_search_by(|x| x.id.as_str().cmp(sid)).ok().map(|i| SessionCounts {
                project_id: s[i].project_id.clone(),
                todos: s[i].todos,
                time_updated: s[i].time_updated,
            }));
        }
        let sql = "SELECT project_id, (SELECT count(*) FROM todo WHERE session_id = ?1), time_updated FROM session WHERE id = ?1";
        let conn = self.shared.db.connection();
        let row = conn
            .prepare_cached(sql)
            .and_then(|mut st| {
                let mut rows = st.query([sid])?;
                match rows.next()? {
                    Some(r) => Ok(Some(SessionCounts {
                        project_id: r.get(0)?,
                        todos: r.get::<_, i64>(1)? as u64,
                        time_updated: r.get(2)?,
                    })),
                    None => Ok(None),
                }
            })
            .map_err(|e| db_err(DbError::Sqlite { path: self.shared.db.path().to_path_buf(), context: format!("looking up session {sid}"), source: e }))?;
        Ok(row)
    }

    /// Every message item with its print (see the module doc); the prints of a session whose
    /// session-level signal is the cached one come from the cache, the others from the database.
    fn message_fingerprints(&self) -> Result<Fingerprints, SourceError> {
        let mut out = Fingerprints::default();
        let signals = self.shared.signals()?;
        let ids = self.shared.db.message_ids().map_err(db_err)?;
        let mut by_session: HashMap<&str, Vec<&str>> = HashMap::new();
        for (sid, mid) in &ids {
            by_session.entry(sid.as_str()).or_default().push(mid.as_str());
        }
        let mut dirty = false;
        let mut present = HashSet::new();
        for s in signals.iter() {
            let Some(mids) = by_session.get(s.id.as_str()) else { continue };
            if !valid_id(&s.id) || !valid_id(&s.project_id) {
                continue;
            }
            let keys = mids.iter().filter(|m| valid_id(m)).map(|m| (*m, format!("messages/{}/{}/{m}.json", s.project_id, s.id)));
            let why = if (s.time_updated.max(0) as u64) < self.shared.filter.cutoff_ms {
                Some("its session is older than sessionMaxAgeDays")
            } else if !self.shared.project_selected(&s.project_id)? {
                Some("its project is not in sessionProjects")
            } else {
                None
            };
            if let Some(why) = why {
                out.skipped.extend(keys.map(|(_, k)| (k, why.to_string())));
                continue;
            }
            present.insert(s.id.clone());
            let signal = format!("{}:{}:{}", s.time_updated, s.messages, s.parts);
            let cached = self.shared.with_prints(|c| c.get(&s.id).filter(|(sig, _)| *sig == signal).map(|(_, p)| p.clone()));
            // A cache that misses a present message is stale: recomputed.
            let prints = match cached.filter(|p| mids.iter().all(|m| p.contains_key(*m))) {
                Some(p) => p,
                None => {
                    let p: BTreeMap<String, String> = self.shared.db.message_prints(&s.id).map_err(db_err)?.into_iter().collect();
                    self.shared.with_prints(|c| c.insert(s.id.clone(), (signal, p.clone())));
                    dirty = true;
                    p
                }
            };
            for (mid, key) in keys {
                // A message added between the two queries has no print yet: one that never
                // matches (it is read), never a missing key (which would look deleted).
                let print = prints.get(mid).cloned().unwrap_or_else(|| "new".into());
                out.items.push((key, print));
            }
        }
        dirty |= self.shared.with_prints(|c| {
            let before = c.len();
            c.retain(|sid, _| present.contains(sid));
            c.len() != before
        });
        if dirty {
            self.shared.save_prints();
        }
        out.items.sort();
        Ok(out)
    }

    /// The session document as shared: mapped paths put back.
    /// Refuses a session item whose session is in another project here: writing it would change
    /// the item of that other key (`<category>/<local project>/<sid>.json`).
    fn check_session_here(&self, key: &str) -> Result<(), SourceError> {
        if self.cat == Category::Projects {
            return Ok(());
        }
        let (pid, sid) = session_of_key(self.cat, key).ok_or_else(|| refused(key, "not a session key"))?;
        match self.session_of(sid)? {
            Some(c) if c.project_id != pid => Err(refused(
                key,
                format!("session {sid} belongs to project {} here (its item is {}/{}/{sid}.json)", c.project_id, self.cat, c.project_id),
            )),
            _ => Ok(()),
        }
    }

    fn shared_session_doc(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>, SourceError> {
        let mut doc = parse_doc(key, &bytes)?;
        let mut changed = false;
        if let Some(Value::Object(s)) = doc.get_mut("session") {
            let sid = s.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
            if let Some(dir) = s.get("directory").and_then(Value::as_str).map(str::to_owned)
                && let Some(shared) = self.shared.shared_dir(&sid, &dir)
            {
                s.insert("directory".into(), Value::String(shared));
                changed = true;
            }
        }
        // The project row is machine-specific (worktree, name, icon...): it travels in its own
        // item (`projects/`), not inside every session, so the session document is the same on
        // every machine.
        changed |= doc.shift_remove("project").is_some();
        Ok(if changed { render_doc(&doc) } else { bytes })
    }
}

/// A database write: Err(refusal or failure before writing), Ok(the database's own answer).
type DbWrite = Result<(), DbError>;

impl DbSource {
    /// Writes a project document over the local project row, keeping this machine's own columns.
    fn write_project(&self, key: &str, bytes: &[u8]) -> Result<DbWrite, SourceError> {
        let db = &self.shared.db;
        let pid = project_key(key).ok_or_else(|| refused(key, "not a project key"))?;
        let mut doc = parse_doc(key, bytes)?;
        // Only projects this machine has (its worktree is its own); a session of the
        // project creates it here first.
        let Some(local) = db.read_project_doc(pid).map_err(db_err)? else {
            return Err(refused(key, "the project is not on this machine yet (it is added with its first synced session)"));
        };
        let local = parse_doc(key, &local)?;
        if let (Some(Value::Object(p)), Some(Value::Object(l))) = (doc.get_mut("project"), local.get("project")) {
            for col in MACHINE_PROJECT_COLUMNS {
                match l.get(*col) {
                    Some(v) => p.insert((*col).to_string(), v.clone()),
                    None => p.shift_remove(*col),
                };
            }
        }
        let r = db.write_project_doc(&render_doc(&doc), None);
        if r.is_ok() {
            self.shared.set_synthesized(pid, false);
        }
        Ok(r)
    }

    /// Writes a session document, its directory mapped to this machine (a minimal project row is
    /// made when the project is not here yet).
    fn write_session(&self, key: &str, bytes: &[u8]) -> Result<DbWrite, SourceError> {
        let db = &self.shared.db;
        let (pid, sid) = session_key(self.cat, key).ok_or_else(|| refused(key, "not a session key"))?;
        let doc = parse_doc(key, bytes)?;
        let session = doc.get("session").and_then(Value::as_object).ok_or_else(|| refused(key, "no session row"))?;
        if session.get("id").and_then(Value::as_str) != Some(sid) || session.get("project_id").and_then(Value::as_str) != Some(pid) {
            return Err(refused(key, "the session row's id or project does not match its key"));
        }
        let shared_dir = session.get("directory").and_then(Value::as_str).unwrap_or("").to_owned();
        let rel = session.get("path").and_then(Value::as_str).unwrap_or("");
        let projects = self.shared.local_projects()?;
        // The other machine's worktree: the session directory without its relative path.
        let shared_w = doc
            .get("project")
            .and_then(|p| p.get("worktree"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| strip_rel(&shared_dir, rel));
        let (local_dir, local_w) = match projects.get(pid) {
            // The project is here: the session goes into its local worktree.
            Some((_, w)) if !w.is_empty() && pid != "global" => (Some(join_rel(w, rel)), None),
            _ => (self.shared.map_path(&shared_dir), self.shared.map_path(&shared_w)),
        };
        let mut doc = doc.clone();
        let synthesize = !projects.contains_key(pid) && !doc.get("project").is_some_and(Value::is_object);
        if synthesize {
            // A minimal project row so the session can be inserted; the `projects` item
            // (when synced) fills in the rest.
            let created = session.get("time_created").cloned().unwrap_or(Value::from(0));
            let mut p = Map::new();
            p.insert("id".into(), Value::from(pid));
            p.insert("worktree".into(), Value::from(shared_w.clone()));
            p.insert("vcs".into(), if pid == "global" { Value::Null } else { Value::from("git") });
            p.insert("time_created".into(), created);
            p.insert("sandboxes".into(), Value::from("[]"));
            doc.insert("project".into(), Value::Object(p));
        }
        let r = db.write_session_doc(&render_doc(&doc), local_dir.as_deref(), local_w.as_deref());
        if r.is_ok() && synthesize {
            self.shared.set_synthesized(pid, true);
            self.shared.changed(true);
        }
        if r.is_ok()
            && let Some(l) = local_dir
        {
            self.shared.remember(sid, Mapped { shared: shared_dir.clone(), local: l });
        }
        Ok(r)
    }
}

impl DbSource {
    /// Write transactions the database handle of these sources committed (tests: batching).
    #[doc(hidden)]
    pub fn write_transactions(&self) -> u64 {
        self.shared.db.write_transactions()
    }
}

impl Source for DbSource {
    fn category(&self) -> Category {
        self.cat
    }

    fn list(&self) -> Result<Vec<ItemMeta>, SourceError> {
        let prints = self.fingerprints()?.unwrap_or_default();
        Ok(prints.items.into_iter().map(|(k, _)| self.meta(k, 0, 0)).collect())
    }

    fn fingerprints(&self) -> Result<Option<Fingerprints>, SourceError> {
        let mut out = Fingerprints::default();
        if self.cat == Category::Projects {
            for (pid, hash) in self.shared.db.project_signals().map_err(db_err)? {
                if valid_id(&pid) && !self.shared.is_synthesized(&pid) && self.shared.project_selected(&pid)? {
                    out.items.push((format!("projects/{pid}.json"), hash));
                }
            }
            return Ok(Some(out));
        }
        if self.cat == Category::Messages {
            return self.message_fingerprints().map(Some);
        }
        for s in self.shared.signals()?.iter() {
            if !valid_id(&s.id) || !valid_id(&s.project_id) {
                continue;
            }
            let key = format!("{}/{}/{}.json", self.cat.as_str(), s.project_id, s.id);
            if (s.time_updated.max(0) as u64) < self.shared.filter.cutoff_ms {
                out.skipped.push((key, "older than sessionMaxAgeDays".into()));
                continue;
            }
            if !self.shared.project_selected(&s.project_id)? {
                out.skipped.push((key, "its project is not in sessionProjects".into()));
                continue;
            }
            let print = match self.cat {
                Category::Sessions => format!("{}:{}:{}", s.time_updated, s.time_archived.unwrap_or(0), s.totals),
                Category::Todos => {
                    if s.todos == 0 {
                        continue; // no todo list: nothing to sync
                    }
                    format!("{}:{}", s.todos, s.todos_updated)
                }
                _ => continue,
            };
            out.items.push((key, print));
        }
        Ok(Some(out))
    }

    fn refuse_key(&self, key: &str) -> Option<String> {
        key_shape_refusal(self.cat, key)
    }

    fn check_content(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        check_matches_key(self.cat, key, bytes)
    }

    fn write_condition(&self, key: &str) -> String {
        let read_only = self.shared.read_only.clone().unwrap_or_default();
        // A project item is written only where the project exists; messages and todos only
        // where their session does.
        // A project item is written only where the project exists; a session's items only into
        // a session of the key's project (messages and todos: one that exists).
        let here = match self.cat {
            Category::Projects => project_key(key).map(|pid| self.shared.db.read_project_doc(pid).is_ok_and(|d| d.is_some()).to_string()),
            _ => session_of_key(self.cat, key).map(|(_, sid)| match self.session_of(sid) {
                Ok(Some(c)) => c.project_id,
                _ => String::new(),
            }),
        };
        format!("{read_only}|{here:?}")
    }

    fn wants_remote(&self, key: &str, modified_ms: u64, size: u64) -> bool {
        if size > self.shared.filter.max_bytes {
            return false;
        }
        if self.cat == Category::Projects {
            return project_key(key).is_some_and(|pid| self.shared.project_selected(pid).unwrap_or(false));
        }
        let Some((pid, sid)) = session_of_key(self.cat, key) else { return false };
        if !self.shared.project_selected(pid).unwrap_or(false) {
            return false;
        }
        // A message item is wanted with its session: also when the message is older than the
        // cutoff but its session here is recent.
        modified_ms >= self.shared.filter.cutoff_ms
            || (self.cat == Category::Messages
                && matches!(self.session_of(sid), Ok(Some(c)) if c.time_updated.max(0) as u64 >= self.shared.filter.cutoff_ms))
    }

    fn read(&self, key: &str) -> Result<Option<Item>, SourceError> {
        let db = &self.shared.db;
        let (bytes, modified) = if self.cat == Category::Projects {
            let pid = project_key(key).ok_or_else(|| refused(key, "not a project key"))?;
            if self.shared.is_synthesized(pid) {
                return Ok(None);
            }
            let Some(bytes) = db.read_project_doc(pid).map_err(db_err)? else { return Ok(None) };
            let mut doc = parse_doc(key, &bytes)?;
            if let Some(Value::Object(p)) = doc.get_mut("project") {
                for col in MACHINE_PROJECT_COLUMNS {
                    p.shift_remove(*col);
                }
            }
            (render_doc(&doc), 0)
        } else {
            if let Some(why) = key_shape_refusal(self.cat, key) {
                return Err(refused(key, why));
            }
            let (pid, sid) = session_of_key(self.cat, key).ok_or_else(|| refused(key, "not a session key"))?;
            let Some(SessionCounts { project_id, todos, time_updated }) = self.session_of(sid)? else {
                return Ok(None);
            };
            if project_id != pid {
                return Ok(None); // the session moved to another project: a new key
            }
            // An empty todo list is no item (as in the fingerprints).
            if self.cat == Category::Todos && todos == 0 {
                return Ok(None);
            }
            let bytes = match self.cat {
                Category::Sessions => match db.read_session_doc(sid).map_err(db_err)? {
                    Some(b) => self.shared_session_doc(key, b)?,
                    None => return Ok(None),
                },
                Category::Messages => {
                    let (_, _, mid) = message_key(key).ok_or_else(|| refused(key, "not a message key"))?;
                    match db.read_message_doc(sid, mid).map_err(db_err)? {
                        Some(b) => b,
                        None => return Ok(None),
                    }
                }
                _ => match db.read_todos_doc(sid).map_err(db_err)? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            };
            (bytes, time_updated.max(0) as u64)
        };
        if bytes.len() as u64 > self.shared.filter.max_bytes {
            return Err(SourceError::TooLarge {
                path: PathBuf::from(key),
                size: bytes.len() as u64,
                limit: self.shared.filter.max_bytes,
            });
        }
        Ok(Some(Item { meta: self.meta(key.to_owned(), bytes.len() as u64, modified), bytes }))
    }

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        self.shared.write_guard(key)?;
        check_matches_key(self.cat, key, bytes)?;
        self.check_session_here(key)?;
        let db = &self.shared.db;
        let result = match self.cat {
            Category::Projects => self.write_project(key, bytes)?,
            Category::Sessions => self.write_session(key, bytes)?,
            Category::Messages => {
                let (_, sid, mid) = message_key(key).ok_or_else(|| refused(key, "not a message key"))?;
                self.shared.forget_prints([sid]);
                db.write_message_doc_over(mid, bytes, None)
            }
            _ => {
                session_key(self.cat, key).ok_or_else(|| refused(key, "not a session key"))?;
                db.write_todos_doc(bytes)
            }
        };
        self.shared.changed(self.cat == Category::Projects);
        result.map_err(|e| write_err(key, e))
    }

    /// A message item keeps the parts added here since `base` (see
    /// [`OpencodeDb::write_message_doc_over`]); other items are written as usual.
    fn write_over(&self, key: &str, bytes: &[u8], base: Option<&[u8]>) -> Result<(), SourceError> {
        if self.cat != Category::Messages {
            return self.write(key, bytes);
        }
        self.shared.write_guard(key)?;
        check_matches_key(self.cat, key, bytes)?;
        self.check_session_here(key)?;
        let (_, sid, mid) = message_key(key).ok_or_else(|| refused(key, "not a message key"))?;
        let deletable: HashSet<String> = base.map(messages_doc_ids).unwrap_or_default();
        self.shared.forget_prints([sid]);
        let result = self.shared.db.write_message_doc_over(mid, bytes, Some(&deletable));
        self.shared.changed(false);
        result.map_err(|e| write_err(key, e))
    }

    /// One SQLite transaction for the whole batch (the engine sizes batches); each item is a
    /// savepoint, so a refused item undoes only itself. The cached message prints of the
    /// sessions concerned are forgotten first (durably).
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Vec<Result<(), SourceError>> {
        if let Some(why) = &self.shared.read_only {
            return ops.iter().map(|op| Err(refused(op.key(), why.clone()))).collect();
        }
        if self.cat == Category::Messages {
            self.shared.forget_prints(ops.iter().filter_map(|op| message_key(op.key()).map(|(_, s, _)| s)));
        }
        let run = || {
            ops.iter()
                .map(|op| match op {
                    WriteOp::Write { key, bytes, base } => self.write_over(key, bytes, *base),
                    WriteOp::Delete { key } => self.delete(key),
                })
                .collect::<Vec<_>>()
        };
        match self.shared.db.write_batch(run) {
            Ok(results) => results,
            Err(e) => {
                // Nothing of the batch was written.
                self.shared.changed(true);
                let why = e.to_string();
                ops.iter().map(|_| Err(db_err_text(&why))).collect()
            }
        }
    }

    fn delete(&self, key: &str) -> Result<(), SourceError> {
        self.shared.write_guard(key)?;
        let db = &self.shared.db;
        let r = if self.cat == Category::Projects {
            let pid = project_key(key).ok_or_else(|| refused(key, "not a project key"))?;
            db.delete_project(pid).map(|_| ())
        } else {
            if let Some(why) = key_shape_refusal(self.cat, key) {
                return Err(refused(key, why));
            }
            let (_, sid) = session_of_key(self.cat, key).ok_or_else(|| refused(key, "not a session key"))?;
            match self.cat {
                Category::Sessions => db.delete_session(sid),
                Category::Messages => {
                    let (_, _, mid) = message_key(key).ok_or_else(|| refused(key, "not a message key"))?;
                    self.shared.forget_prints([sid]);
                    db.delete_message(sid, mid)
                }
                _ => db.delete_todos(sid),
            }
        };
        self.shared.changed(self.cat == Category::Projects);
        r.map_err(db_err)
    }
}

#[cfg(test)]
mod tests;
