//! OpenCode's SQLite database (1.18.33 schema) as JSON documents, independent of where the file is.
//!
//! See `docs/opencode-db.md` for the measured facts this relies on. Rules:
//! - the file is opened in place (never copied, never VACUUMed, journal mode untouched), with
//!   `busy_timeout=10000` and `foreign_keys=ON`; a missing file is an error, never a new database;
//! - every read runs in one deferred transaction (a consistent snapshot under WAL);
//! - every write is one `BEGIN IMMEDIATE` transaction, retried a few times on `SQLITE_BUSY`, and only
//!   when [`check_schema`] says [`SchemaStatus::Known`];
//! - rows are upserted with `INSERT … ON CONFLICT(pk) DO UPDATE`, never `INSERT OR REPLACE` (which
//!   deletes the old row and so CASCADES to the session's messages, parts and todos).
//!
//! Documents (bytes are deterministic; see [`docs`] for the row encoding):
//! - `sessions/<sid>`: `{"format":1,"session":{row},"project":{row without time_updated}}\n`
//! - `messages/<sid>`: `{"format":1,"sessionId":"..","messages":[\n{row},...\n],"parts":[\n{row},...\n]}\n`,
//!   messages sorted by `(time_created, id)`, parts by `(message_id, id)` (ids sort with time, so this
//!   is conversation order)
//! - `todos/<sid>`: `{"format":1,"sessionId":"..","todos":[\n{row},...\n]}\n`, sorted by `position`
//! - `projects/<pid>`: `{"format":1,"project":{row without time_updated}}\n` (`project.time_updated`
//!   changes at every OpenCode start, so it is not synced; the local value is kept)

pub mod create;
pub mod docs;
mod fixtures;
mod json;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;
use sha2::{Digest, Sha256};

use docs::{DocProblem, Row};
pub use fixtures::{create_test_db, insert_fake_session};
pub use schema::{KNOWN_MIGRATIONS, SchemaStatus, check_schema};

/// SQLite's own wait for a lock, per attempt.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Extra attempts at `BEGIN IMMEDIATE` after the busy timeout ran out (with backoff).
const BEGIN_RETRIES: u32 = 3;
const BEGIN_BACKOFF: Duration = Duration::from_millis(250);

/// What went wrong, saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "OpenCode's database {} does not exist: OpenCode has not run on this machine yet (start it once), or the path is wrong",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("cannot open OpenCode's database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("OpenCode's database {}: {context}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "OpenCode's database {} stayed locked by another process for {} attempts of {} s each: retry later (is an OpenCode process stuck?)",
        path.display(), attempts, BUSY_TIMEOUT.as_secs()
    )]
    Busy { path: PathBuf, attempts: u32 },
    #[error(
        "OpenCode's database at {} has schema {last} ({count} migrations), which this oc-sync does not know (it knows OpenCode {}, up to {}): sessions are read and pushed but not written here; upgrade oc-sync",
        path.display(), schema::KNOWN_OPENCODE_VERSION, schema::last_known_migration()
    )]
    UnknownSchema {
        path: PathBuf,
        last: String,
        count: usize,
    },
    #[error(
        "OpenCode's database at {} has no migrations recorded: OpenCode has not finished creating it; start OpenCode once, then sync again",
        path.display()
    )]
    NoSchema { path: PathBuf },
    #[error(
        "cannot write {what} of session {session_id} into {}: the session does not exist there; write sessions/{session_id} first",
        path.display()
    )]
    SessionMissing {
        path: PathBuf,
        session_id: String,
        what: &'static str,
    },
    #[error("refusing to write {doc} into {}: {field}: {problem} (the document is damaged or not from a compatible oc-sync)", path.display())]
    InvalidDoc {
        path: PathBuf,
        doc: String,
        field: String,
        problem: String,
    },
}

/// Cheap per-session change indicators (no message/part data is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSignal {
    pub id: String,
    pub project_id: String,
    pub parent_id: Option<String>,
    pub directory: String,
    pub time_created: i64,
    pub time_updated: i64,
    pub time_archived: Option<i64>,
    pub messages: u64,
    pub parts: u64,
    pub todos: u64,
    /// Largest `todo.time_updated` of the session (0 without todos).
    pub todos_updated: i64,
    /// The session's cost and token totals (`cost:input:output:reasoning:cache_read:cache_write`):
    /// they change without `time_updated` when messages are written.
    pub totals: String,
}

/// An open OpenCode database.
pub struct OpencodeDb {
    conn: Connection,
    path: PathBuf,
    /// Inside [`OpencodeDb::write_batch`]: the sessions whose totals need recomputing.
    batch: std::cell::RefCell<Option<std::collections::BTreeSet<String>>>,
    /// Write transactions committed (see [`OpencodeDb::write_transactions`]).
    commits: std::cell::Cell<u64>,
}

impl std::fmt::Debug for OpencodeDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpencodeDb")
            .field("path", &self.path)
            .finish()
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn now_ms() -> i64 {
    crate::time::now_ms() as i64
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// How a table's rows are upserted.
struct Upsert<'a> {
    table: &'a str,
    conflict: &'a [&'a str],
    json_col: Option<&'a str>,
    /// Columns left as they are when the row already exists.
    keep: &'a [&'a str],
}

const SESSION_KEEP: &[&str] = &["share_url", "workspace_id"];

impl OpencodeDb {
    /// Opens the database file in place. A missing file is [`DbError::NotFound`] (never created).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(DbError::NotFound { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|source| {
            if source.sqlite_error_code() == Some(ErrorCode::CannotOpen) && !path.exists() {
                DbError::NotFound { path: path.clone() }
            } else {
                DbError::Open {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let setup = conn
            .busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.execute_batch("PRAGMA foreign_keys=ON;"));
        if let Err(source) = setup {
            return Err(DbError::Open { path, source });
        }
        Ok(OpencodeDb { conn, path, batch: Default::default(), commits: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection (tests, diagnostics). Do not start transactions on it while a
    /// method of this type runs.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql(&self, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
        let context = context.into();
        move |source| DbError::Sqlite {
            path: self.path.clone(),
            context,
            source,
        }
    }

    fn invalid(&self, doc: impl Into<String>) -> impl FnOnce(DocProblem) -> DbError + '_ {
        let doc = doc.into();
        move |p| DbError::InvalidDoc {
            path: self.path.clone(),
            doc,
            field: p.field,
            problem: p.problem,
        }
    }

    /// The schema status (see [`check_schema`]).
    pub fn schema(&self) -> Result<SchemaStatus, DbError> {
        check_schema(&self.conn).map_err(self.sql("reading the migration table"))
    }

    /// Runs `f` in a deferred (snapshot) transaction (inside a batch: in the batch's transaction).
    fn read_tx<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if !self.conn.is_autocommit() {
            return f(&self.conn);
        }
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(self.sql("starting a read transaction"))?;
        let out = f(&tx)?;
        tx.commit().map_err(self.sql("ending a read transaction"))?;
        Ok(out)
    }

    /// `BEGIN IMMEDIATE` (retried while the database is busy), then checks the schema is known.
    fn begin_write(&self) -> Result<Transaction<'_>, DbError> {
        let mut attempt = 0;
        let tx = loop {
            match Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate) {
                Ok(tx) => break tx,
                Err(e) if is_busy(&e) => {
                    attempt += 1;
                    if attempt > BEGIN_RETRIES {
                        return Err(DbError::Busy {
                            path: self.path.clone(),
                            attempts: attempt,
                        });
                    }
                    tracing::warn!(path = %self.path.display(), attempt, "OpenCode's database is locked; retrying");
                    std::thread::sleep(BEGIN_BACKOFF * (1 << (attempt - 1)));
                }
                Err(e) => return Err(self.sql("starting a write transaction")(e)),
            }
        };
        match check_schema(&tx).map_err(self.sql("reading the migration table"))? {
            SchemaStatus::Known => Ok(tx),
            SchemaStatus::Unknown { last, count } => Err(DbError::UnknownSchema {
                path: self.path.clone(),
                last,
                count,
            }),
            SchemaStatus::Missing => Err(DbError::NoSchema {
                path: self.path.clone(),
            }),
        }
    }

    /// Commits a write transaction (after the `db-import` fault point), counting it.
    fn commit_write(&self, tx: Transaction<'_>) -> Result<(), DbError> {
        crate::fault::step(crate::fault::DB_IMPORT).map_err(|e| DbError::Sqlite {
            path: self.path.clone(),
            context: e.to_string(),
            source: rusqlite::Error::ExecuteReturnedResults,
        })?;
        tx.commit().map_err(self.sql("committing"))?;
        self.commits.set(self.commits.get() + 1);
        Ok(())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, after checking the schema is known. Inside
    /// [`Self::write_batch`]: in a savepoint of the batch's transaction (an error undoes this
    /// write only).
    fn write_tx<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if self.batch.borrow().is_some() {
            self.conn
                .execute_batch("SAVEPOINT oc_sync_item")
                .map_err(self.sql("starting a savepoint"))?;
            return match f(&self.conn) {
                Ok(v) => {
                    self.conn
                        .execute_batch("RELEASE oc_sync_item")
                        .map_err(self.sql("releasing a savepoint"))?;
                    Ok(v)
                }
                Err(e) => {
                    self.conn
                        .execute_batch("ROLLBACK TO oc_sync_item; RELEASE oc_sync_item")
                        .map_err(self.sql("rolling back a savepoint"))?;
                    Err(e)
                }
            };
        }
        let tx = self.begin_write()?;
        let out = f(&tx)?; // dropping `tx` on error rolls back
        self.commit_write(tx)?;
        Ok(out)
    }

    /// Runs `f` (which calls this type's write methods) in ONE write transaction: each write of
    /// `f` is a savepoint (a refused write undoes itself only), the session totals that message
    /// writes touched are raised once at the end, and everything is committed at once. Err:
    /// nothing of `f` is written (begin or commit failed). Not reentrant.
    pub fn write_batch<T>(&self, f: impl FnOnce() -> T) -> Result<T, DbError> {
        let tx = self.begin_write()?;
        *self.batch.borrow_mut() = Some(std::collections::BTreeSet::new());
        let out = f();
        let touched = self.batch.borrow_mut().take().unwrap_or_default();
        for sid in &touched {
            if self.session_exists(&tx, sid)? {
                self.set_totals_from_db(&tx, sid)?;
            }
        }
        self.commit_write(tx)?;
        Ok(out)
    }

    /// How many write transactions this handle committed (tests: batching).
    #[doc(hidden)]
    pub fn write_transactions(&self) -> u64 {
        self.commits.get()
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// Rows of `sql` (all columns) as JSON objects.
    fn rows(
        &self,
        conn: &Connection,
        sql: &str,
        param: &str,
        json_col: Option<&str>,
        skip: &[&str],
    ) -> Result<Vec<Row>, DbError> {
        let ctx = || format!("running {sql:?}");
        let mut stmt = conn.prepare_cached(sql).map_err(self.sql(ctx()))?;
        let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = stmt.query([param]).map_err(self.sql(ctx()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(self.sql(ctx()))? {
            out.push(docs::row_to_json(r, &names, json_col, skip).map_err(self.sql(ctx()))?);
        }
        Ok(out)
    }

    fn project_row(&self, conn: &Connection, id: &str) -> Result<Option<Row>, DbError> {
        Ok(self
            .rows(
                conn,
                "SELECT * FROM project WHERE id = ?1",
                id,
                None,
                &["time_updated"],
            )?
            .pop())
    }

    /// `sessions/<id>`, or `None` when the session does not exist.
    pub fn read_session_doc(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.read_tx(|tx| {
            let Some(session) = self
                .rows(tx, "SELECT * FROM session WHERE id = ?1", id, None, &[])?
                .pop()
            else {
                return Ok(None);
            };
            let project = match session.get("project_id") {
                Some(Value::String(pid)) => self.project_row(tx, pid)?,
                _ => None,
            };
            Ok(Some(docs::session_doc(&session, project.as_ref())))
        })
    }

    /// `messages/<sid>`, or `None` when the session does not exist. Parts whose message is not a
    /// message of the session are left out (they cannot be written back).
    pub fn read_messages_doc(&self, sid: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.read_tx(|tx| {
            if !self.session_exists(tx, sid)? {
                return Ok(None);
            }
            let messages = self.rows(
                tx,
                "SELECT * FROM message WHERE session_id = ?1 ORDER BY time_created, id",
                sid,
                Some("data"),
                &[],
            )?;
            let ids: HashSet<&str> = messages
                .iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str))
                .collect();
            let mut parts = self.rows(
                tx,
                "SELECT * FROM part WHERE session_id = ?1 ORDER BY message_id, id",
                sid,
                Some("data"),
                &[],
            )?;
            parts.retain(|p| {
                let keep = p
                    .get("message_id")
                    .and_then(Value::as_str)
                    .is_some_and(|m| ids.contains(m));
                if !keep {
                    tracing::warn!(session = sid, part = ?p.get("id"), "part of another session's message left out");
                }
                keep
            });
            Ok(Some(docs::messages_doc(sid, &messages, &parts)))
        })
    }

    /// One message of session `sid` with its parts, as a messages document of that one message
    /// (`messages/<pid>/<sid>/<mid>` items), or `None` when the session has no such message. Parts
    /// recorded under another session are left out (as in [`Self::read_messages_doc`]).
    pub fn read_message_doc(&self, sid: &str, mid: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.read_tx(|tx| {
            let mut messages = self.rows(tx, "SELECT * FROM message WHERE id = ?1", mid, Some("data"), &[])?;
            messages.retain(|m| m.get("session_id").and_then(Value::as_str) == Some(sid));
            if messages.is_empty() {
                return Ok(None);
            }
            let mut parts = self.rows(tx, "SELECT * FROM part WHERE message_id = ?1 ORDER BY id", mid, Some("data"), &[])?;
            parts.retain(|p| p.get("session_id").and_then(Value::as_str) == Some(sid));
            Ok(Some(docs::messages_doc(sid, &messages, &parts)))
        })
    }

    /// Every message as (session id, message id), by session in conversation order (a covering scan of
    /// `message_session_time_created_id_idx`: no message data is read).
    pub fn message_ids(&self) -> Result<Vec<(String, String)>, DbError> {
        self.read_tx(|tx| {
            let sql = SQL_MESSAGE_IDS;
            let mut stmt = tx.prepare_cached(sql).map_err(self.sql(format!("running {sql:?}")))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.sql(format!("running {sql:?}")))?;
            Ok(rows)
        })
    }

    /// Change signals of one session's messages: message id → `time_updated:data bytes:part
    /// count:latest part time_updated:part data bytes`. Reads the session's rows (call it only for
    /// sessions whose session-level signal changed).
    pub fn message_prints(&self, sid: &str) -> Result<Vec<(String, String)>, DbError> {
        self.read_tx(|tx| {
            let sql = SQL_MESSAGE_PRINTS;
            let mut stmt = tx.prepare_cached(sql).map_err(self.sql(format!("running {sql:?}")))?;
            let rows = stmt
                .query_map([sid], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        format!(
                            "{}:{}:{}:{}:{}",
                            r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                            r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                            r.get::<_, Option<i64>>(5)?.unwrap_or(0)
                        ),
                    ))
                })
                .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.sql(format!("running {sql:?}")))?;
            Ok(rows)
        })
    }

    /// `todos/<sid>`, or `None` when the session does not exist.
    pub fn read_todos_doc(&self, sid: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.read_tx(|tx| {
            if !self.session_exists(tx, sid)? {
                return Ok(None);
            }
            let todos = self.rows(
                tx,
                "SELECT * FROM todo WHERE session_id = ?1 ORDER BY position",
                sid,
                None,
                &[],
            )?;
            Ok(Some(docs::todos_doc(sid, &todos)))
        })
    }

    /// `projects/<pid>`, or `None` when the project does not exist.
    pub fn read_project_doc(&self, pid: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.read_tx(|tx| Ok(self.project_row(tx, pid)?.map(|p| docs::project_doc(&p))))
    }

    fn session_exists(&self, conn: &Connection, sid: &str) -> Result<bool, DbError> {
        conn.prepare_cached("SELECT 1 FROM session WHERE id = ?1")
            .and_then(|mut s| s.exists([sid]))
            .map_err(self.sql("looking up a session"))
    }

    /// Every session with its change indicators, sorted by id. Counts come from covering scans of
    /// `message_session_time_created_id_idx`, `part_session_idx` and `todo_session_idx`.
    pub fn session_signals(&self) -> Result<Vec<SessionSignal>, DbError> {
        self.read_tx(|tx| {
            let counts = |sql: &str| -> Result<HashMap<String, (u64, i64)>, DbError> {
                let mut stmt = tx.prepare(sql).map_err(self.sql(format!("running {sql:?}")))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64, r.get::<_, Option<i64>>(2)?.unwrap_or(0)))))
                    .and_then(|it| it.collect::<rusqlite::Result<HashMap<_, _>>>())
                    .map_err(self.sql(format!("running {sql:?}")))?;
                Ok(rows)
            };
            let messages = counts(SQL_MESSAGE_COUNTS)?;
            let parts = counts(SQL_PART_COUNTS)?;
            let todos = counts(SQL_TODO_COUNTS)?;
            let sql = "SELECT id, project_id, parent_id, directory, time_created, time_updated, time_archived, \
                       cost || ':' || tokens_input || ':' || tokens_output || ':' || tokens_reasoning || ':' || \
                       tokens_cache_read || ':' || tokens_cache_write FROM session ORDER BY id";
            let mut stmt = tx.prepare(sql).map_err(self.sql("listing sessions"))?;
            let out = stmt
                .query_map([], |r| {
                    let id: String = r.get(0)?;
                    let (t, tu) = todos.get(&id).copied().unwrap_or((0, 0));
                    Ok(SessionSignal {
                        messages: messages.get(&id).map_or(0, |c| c.0),
                        parts: parts.get(&id).map_or(0, |c| c.0),
                        todos: t,
                        todos_updated: tu,
                        totals: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                        project_id: r.get(1)?,
                        parent_id: r.get(2)?,
                        directory: r.get(3)?,
                        time_created: r.get(4)?,
                        time_updated: r.get(5)?,
                        time_archived: r.get(6)?,
                        id,
                    })
                })
                .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.sql("listing sessions"))?;
            Ok(out)
        })
    }

    /// Every project as (id, hex SHA-256 of its `projects/<id>` document), sorted by id.
    pub fn project_signals(&self) -> Result<Vec<(String, String)>, DbError> {
        self.read_tx(|tx| {
            let rows = self.rows(
                tx,
                "SELECT * FROM project WHERE ?1 = ?1 ORDER BY id",
                "",
                None,
                &["time_updated"],
            )?;
            Ok(rows
                .iter()
                .map(|p| {
                    let id = p
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    (id, hex::encode(Sha256::digest(docs::project_doc(p))))
                })
                .collect())
        })
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    fn table_columns(&self, conn: &Connection, table: &str) -> Result<Vec<String>, DbError> {
        let sql = format!("PRAGMA table_info({})", quote(table));
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(self.sql(format!("reading the columns of {table}")))?;
        stmt.query_map([], |r| r.get::<_, String>(1))
            .and_then(|it| it.collect())
            .map_err(self.sql(format!("reading the columns of {table}")))
    }

    /// Inserts or updates one row. Only columns that exist locally are written (columns of a newer
    /// OpenCode are dropped); `overrides` replace the document's values.
    fn upsert(
        &self,
        conn: &Connection,
        u: &Upsert<'_>,
        local_cols: &[String],
        row: &Row,
        overrides: &[(&str, SqlValue)],
    ) -> Result<(), DbError> {
        let mut cols = Vec::with_capacity(local_cols.len());
        let mut values = Vec::with_capacity(local_cols.len());
        for c in local_cols {
            if let Some((_, v)) = overrides.iter().find(|(k, _)| k == c) {
                cols.push(c.as_str());
                values.push(v.clone());
            } else if let Some(v) = row.get(c) {
                cols.push(c.as_str());
                // Checked by `check_values` before the transaction.
                values.push(
                    docs::json_to_sql(v, u.json_col == Some(c.as_str())).unwrap_or(SqlValue::Null),
                );
            }
        }
        let updates: Vec<String> = cols
            .iter()
            .filter(|c| !u.conflict.contains(c) && !u.keep.contains(c))
            .map(|c| format!("{0} = excluded.{0}", quote(c)))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT({}) DO {}",
            quote(u.table),
            cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            (1..=cols.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            u.conflict
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", "),
            if updates.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", updates.join(", "))
            }
        );
        let ctx = || {
            let id = u
                .conflict
                .iter()
                .map(|c| row.get(*c).map_or("?".into(), Value::to_string))
                .collect::<Vec<_>>()
                .join(", ");
            format!("writing {} row {id}", u.table)
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(self.sql(ctx()))?;
        stmt.execute(rusqlite::params_from_iter(values))
            .map_err(self.sql(ctx()))?;
        Ok(())
    }

    fn exists(&self, conn: &Connection, sql: &str, id: &str) -> Result<bool, DbError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.exists([id]))
            .map_err(self.sql(format!("running {sql:?}")))
    }

    /// Writes `sessions/<sid>`: inserts the embedded project when it is missing (worktree =
    /// `worktree` or the document's), then upserts the session (directory = `directory` or the
    /// document's). `share_url` and `workspace_id` keep their local values when the session
    /// exists; `workspace_id` is NULL on insert (workspaces are machine-local).
    pub fn write_session_doc(
        &self,
        doc: &[u8],
        directory: Option<&str>,
        worktree: Option<&str>,
    ) -> Result<(), DbError> {
        let (session, project) =
            parse_session_doc(doc).map_err(self.invalid("a sessions document"))?;
        let sid = session
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pid = session
            .get("project_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.write_tx(|tx| {
            if !self.exists(tx, "SELECT 1 FROM project WHERE id = ?1", &pid)? {
                let Some(project) = &project else {
                    return Err(DbError::InvalidDoc {
                        path: self.path.clone(),
                        doc: format!("sessions/{sid}"),
                        field: "project".into(),
                        problem: format!("is null and project {pid} does not exist locally"),
                    });
                };
                let cols = self.table_columns(tx, "project")?;
                let mut ov = vec![("time_updated", SqlValue::Integer(now_ms()))];
                if let Some(w) = worktree {
                    ov.push(("worktree", SqlValue::Text(w.to_string())));
                }
                self.upsert(
                    tx,
                    &Upsert {
                        table: "project",
                        conflict: &["id"],
                        json_col: None,
                        keep: &[],
                    },
                    &cols,
                    project,
                    &ov,
                )?;
            }
            let cols = self.table_columns(tx, "session")?;
            let mut ov = vec![("workspace_id", SqlValue::Null)];
            if let Some(d) = directory {
                ov.push(("directory", SqlValue::Text(d.to_string())));
            }
            self.upsert(
                tx,
                &Upsert {
                    table: "session",
                    conflict: &["id"],
                    json_col: None,
                    keep: SESSION_KEEP,
                },
                &cols,
                &session,
                &ov,
            )
        })
    }

    /// Writes `messages/<sid>`: the session's messages and parts become exactly the document's
    /// (upsert by id, delete the others), then the session's cost and token totals are recomputed
    /// from the messages. `session.time_updated` is not changed.
    pub fn write_messages_doc(&self, doc: &[u8]) -> Result<(), DbError> {
        self.write_messages_doc_over(doc, None)
    }

    /// Checks, before messages and parts of session `sid` are written, that the session exists
    /// here and that none of their rows belongs to another session.
    fn check_messages_target(&self, tx: &Connection, sid: &str, messages: &[Row], parts: &[Row]) -> Result<(), DbError> {
        if !self.session_exists(tx, sid)? {
            return Err(DbError::SessionMissing { path: self.path.clone(), session_id: sid.to_string(), what: "messages" });
        }
        self.check_rows_owned(tx, "message", messages, sid)?;
        self.check_rows_owned(tx, "part", parts, sid)
    }

    /// Like [`Self::write_messages_doc`], but deletes only rows whose ids are in `deletable` (when
    /// given): the rows of the document last synced. Rows added here since (by OpenCode, even
    /// while this write waited for the database) are not the remote's to delete.
    pub fn write_messages_doc_over(&self, doc: &[u8], deletable: Option<&HashSet<String>>) -> Result<(), DbError> {
        let (sid, messages, parts) =
            parse_messages_doc(doc).map_err(self.invalid("a messages document"))?;
        self.write_tx(|tx| {
            self.check_messages_target(tx, &sid, &messages, &parts)?;
            let keep_msgs: HashSet<&str> = messages
                .iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str))
                .collect();
            let keep_parts: HashSet<&str> = parts
                .iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str))
                .collect();
            for (table, keep) in [("part", &keep_parts), ("message", &keep_msgs)] {
                let local = self.ids(
                    tx,
                    &format!("SELECT id FROM {table} WHERE session_id = ?1"),
                    &sid,
                )?;
                let mut del = tx
                    .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
                    .map_err(self.sql(format!("deleting from {table}")))?;
                let gone = |id: &&String| !keep.contains(id.as_str()) && deletable.is_none_or(|d| d.contains(*id));
                for id in local.iter().filter(gone) {
                    del.execute([id])
                        .map_err(self.sql(format!("deleting {table} {id}")))?;
                }
            }
            let mcols = self.table_columns(tx, "message")?;
            let mu = Upsert {
                table: "message",
                conflict: &["id"],
                json_col: Some("data"),
                keep: &[],
            };
            for m in &messages {
                self.upsert(tx, &mu, &mcols, m, &[])?;
            }
            let pcols = self.table_columns(tx, "part")?;
            let pu = Upsert {
                table: "part",
                conflict: &["id"],
                json_col: Some("data"),
                keep: &[],
            };
            for p in &parts {
                self.upsert(tx, &pu, &pcols, p, &[])?;
            }
            self.set_totals(tx, &sid, &messages)
        })
    }

    /// Writes one message item (`messages/<pid>/<sid>/<mid>`: a messages document holding exactly
    /// message `mid`): the message row is upserted, its parts become the document's (upsert by
    /// id; local parts of the message deleted only when in `deletable`, the rows last synced, when
    /// given), then the session totals are raised to the sums over all its messages when those
    /// exceed them (see `set_totals_from_db`; once per batch inside [`Self::write_batch`]). Other
    /// messages of the session are not touched.
    pub fn write_message_doc_over(&self, mid: &str, doc: &[u8], deletable: Option<&HashSet<String>>) -> Result<(), DbError> {
        let (sid, messages, parts) =
            parse_messages_doc(doc).map_err(self.invalid("a message document"))?;
        if messages.len() != 1 || messages[0].get("id").and_then(Value::as_str) != Some(mid) {
            return Err(DbError::InvalidDoc {
                path: self.path.clone(),
                doc: format!("messages/{sid}/{mid}"),
                field: "messages".into(),
                problem: format!("must hold exactly message {mid}"),
            });
        }
        self.write_tx(|tx| {
            self.check_messages_target(tx, &sid, &messages, &parts)?;
            let keep: HashSet<&str> = parts.iter().filter_map(|p| p.get("id").and_then(Value::as_str)).collect();
            let local = self.ids(tx, "SELECT id FROM part WHERE message_id = ?1", mid)?;
            let mut del = tx
                .prepare_cached("DELETE FROM part WHERE id = ?1")
                .map_err(self.sql("deleting from part"))?;
            for id in local.iter().filter(|id| !keep.contains(id.as_str()) && deletable.is_none_or(|d| d.contains(*id))) {
                del.execute([id]).map_err(self.sql(format!("deleting part {id}")))?;
            }
            let mcols = self.table_columns(tx, "message")?;
            let mu = Upsert { table: "message", conflict: &["id"], json_col: Some("data"), keep: &[] };
            self.upsert(tx, &mu, &mcols, &messages[0], &[])?;
            let pcols = self.table_columns(tx, "part")?;
            let pu = Upsert { table: "part", conflict: &["id"], json_col: Some("data"), keep: &[] };
            for p in &parts {
                self.upsert(tx, &pu, &pcols, p, &[])?;
            }
            self.totals_changed(tx, &sid)
        })
    }

    /// Deletes one message of session `sid` with its parts (absent: no-op). The session totals are
    /// left as they are (a reverted message's cost was spent; the session row that comes with the
    /// change carries OpenCode's own totals).
    pub fn delete_message(&self, sid: &str, mid: &str) -> Result<(), DbError> {
        self.write_tx(|tx| {
            let n = tx
                .execute("DELETE FROM message WHERE id = ?1 AND session_id = ?2", [mid, sid])
                .map_err(self.sql(format!("deleting message {mid}")))?;
            if n > 0 {
                tx.execute("DELETE FROM part WHERE message_id = ?1", [mid])
                    .map_err(self.sql(format!("deleting the parts of message {mid}")))?;
            }
            Ok(())
        })
    }

    /// The session's totals follow its messages: now, or at the end of the batch.
    fn totals_changed(&self, conn: &Connection, sid: &str) -> Result<(), DbError> {
        if let Some(touched) = self.batch.borrow_mut().as_mut() {
            touched.insert(sid.to_owned());
            return Ok(());
        }
        self.set_totals_from_db(conn, sid)
    }

    /// Raises the session's totals to the sums over its messages here when those exceed them
    /// (any token count higher, or the cost higher beyond rounding); never lowers them. Message
    /// items arrive one by one, possibly over several batches or syncs, while the session row
    /// already carries the other machine's totals for all of them: a partial sum must not replace
    /// those (and be pushed back). When messages of two machines meet (two offline continuations
    /// of one session), the sums exceed either side's row and become the totals.
    fn set_totals_from_db(&self, conn: &Connection, sid: &str) -> Result<(), DbError> {
        let messages = self.rows(conn, "SELECT * FROM message WHERE session_id = ?1", sid, Some("data"), &[])?;
        let t = totals(&messages);
        conn.prepare_cached(
            "UPDATE session SET cost = CASE WHEN abs(cost - ?2) <= 1e-12 * max(abs(cost), abs(?2), 1e-300) THEN cost ELSE ?2 END, \
             tokens_input = ?3, tokens_output = ?4, tokens_reasoning = ?5, \
             tokens_cache_read = ?6, tokens_cache_write = ?7 WHERE id = ?1 AND \
             (?2 - cost > 1e-12 * max(abs(cost), abs(?2), 1e-300) OR ?3 > tokens_input OR ?4 > tokens_output \
              OR ?5 > tokens_reasoning OR ?6 > tokens_cache_read OR ?7 > tokens_cache_write)",
        )
        .and_then(|mut s| s.execute(rusqlite::params![sid, t.cost, t.input, t.output, t.reasoning, t.cache_read, t.cache_write]))
        .map_err(self.sql(format!("updating the totals of session {sid}")))?;
        Ok(())
    }

    /// Refuses rows whose id already belongs to another session here: upserting them by id would
    /// move another session's message or part into this one.
    fn check_rows_owned(&self, conn: &Connection, table: &str, rows: &[Row], sid: &str) -> Result<(), DbError> {
        let sql = format!("SELECT session_id FROM {table} WHERE id = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(self.sql(format!("running {sql:?}")))?;
        for (i, row) in rows.iter().enumerate() {
            let Some(id) = row.get("id").and_then(Value::as_str) else { continue };
            let owner: Option<String> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(self.sql(format!("running {sql:?}")))?;
            if let Some(owner) = owner.filter(|o| o != sid) {
                return Err(DbError::InvalidDoc {
                    path: self.path.clone(),
                    doc: format!("messages/{sid}"),
                    field: format!("{table}s[{i}].id"),
                    problem: format!("{id} belongs to session {owner} here, not to {sid}"),
                });
            }
        }
        Ok(())
    }

    fn ids(&self, conn: &Connection, sql: &str, param: &str) -> Result<Vec<String>, DbError> {
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.sql(format!("running {sql:?}")))?;
        stmt.query_map([param], |r| r.get(0))
            .and_then(|it| it.collect())
            .map_err(self.sql(format!("running {sql:?}")))
    }

    /// Session totals = sums over the assistant messages, in (time_created, id) order, of
    /// `data.cost` and `data.tokens.{input,output,reasoning,cache.read,cache.write}`.
    fn set_totals(&self, conn: &Connection, sid: &str, messages: &[Row]) -> Result<(), DbError> {
        let t = totals(messages);
        // The cost is left alone when it already matches up to rounding (OpenCode adds step
        // costs one by one; summing per message may differ in the last bit): no change, no resync.
        conn.prepare_cached(
            "UPDATE session SET cost = CASE WHEN abs(cost - ?2) <= 1e-12 * max(abs(cost), abs(?2), 1e-300) THEN cost ELSE ?2 END, \
             tokens_input = ?3, tokens_output = ?4, tokens_reasoning = ?5, \
             tokens_cache_read = ?6, tokens_cache_write = ?7 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(rusqlite::params![sid, t.cost, t.input, t.output, t.reasoning, t.cache_read, t.cache_write]))
        .map_err(self.sql(format!("updating the totals of session {sid}")))?;
        Ok(())
    }

    /// Writes `todos/<sid>`: the session's todo list becomes the document's.
    pub fn write_todos_doc(&self, doc: &[u8]) -> Result<(), DbError> {
        let (sid, todos) = parse_todos_doc(doc).map_err(self.invalid("a todos document"))?;
        self.write_tx(|tx| {
            if !self.session_exists(tx, &sid)? {
                return Err(DbError::SessionMissing {
                    path: self.path.clone(),
                    session_id: sid.clone(),
                    what: "todos",
                });
            }
            tx.execute("DELETE FROM todo WHERE session_id = ?1", [&sid])
                .map_err(self.sql(format!("deleting the todos of {sid}")))?;
            let cols = self.table_columns(tx, "todo")?;
            let u = Upsert {
                table: "todo",
                conflict: &["session_id", "position"],
                json_col: None,
                keep: &[],
            };
            for t in &todos {
                self.upsert(tx, &u, &cols, t, &[])?;
            }
            Ok(())
        })
    }

    /// Writes `projects/<pid>`: upserts the project, keeping the local `time_updated` (now() on
    /// insert) and the local `worktree` unless `worktree` is given.
    pub fn write_project_doc(&self, doc: &[u8], worktree: Option<&str>) -> Result<(), DbError> {
        let project = parse_project_doc(doc).map_err(self.invalid("a projects document"))?;
        self.write_tx(|tx| {
            let cols = self.table_columns(tx, "project")?;
            let mut ov = vec![("time_updated", SqlValue::Integer(now_ms()))];
            let mut keep = vec!["time_updated"];
            match worktree {
                Some(w) => ov.push(("worktree", SqlValue::Text(w.to_string()))),
                None => keep.push("worktree"),
            }
            self.upsert(
                tx,
                &Upsert {
                    table: "project",
                    conflict: &["id"],
                    json_col: None,
                    keep: &keep,
                },
                &cols,
                &project,
                &ov,
            )
        })
    }

    /// Deletes a session with everything that cascades from it (messages, parts, todos, shares...),
    /// and its parts by `session_id` (parts have no FK to the session). Absent: no-op.
    pub fn delete_session(&self, id: &str) -> Result<(), DbError> {
        self.write_tx(|tx| {
            tx.execute("DELETE FROM part WHERE session_id = ?1", [id])
                .and_then(|_| tx.execute("DELETE FROM session WHERE id = ?1", [id]))
                .map_err(self.sql(format!("deleting session {id}")))?;
            Ok(())
        })
    }

    /// Deletes a session's messages and parts and zeroes its totals (the session stays).
    pub fn delete_messages(&self, sid: &str) -> Result<(), DbError> {
        self.write_tx(|tx| {
            tx.execute("DELETE FROM part WHERE session_id = ?1", [sid])
                .and_then(|_| tx.execute("DELETE FROM message WHERE session_id = ?1", [sid]))
                .map_err(self.sql(format!("deleting the messages of {sid}")))?;
            self.set_totals(tx, sid, &[])
        })
    }

    /// Deletes a session's todos.
    pub fn delete_todos(&self, sid: &str) -> Result<(), DbError> {
        self.write_tx(|tx| {
            tx.execute("DELETE FROM todo WHERE session_id = ?1", [sid])
                .map_err(self.sql(format!("deleting the todos of {sid}")))?;
            Ok(())
        })
    }

    /// Deletes a project, only when nothing local hangs on it: no session, workspace or permission
    /// row references it (those would cascade). Returns whether it was deleted.
    pub fn delete_project(&self, pid: &str) -> Result<bool, DbError> {
        self.write_tx(|tx| {
            for sql in [
                "SELECT 1 FROM session WHERE project_id = ?1",
                "SELECT 1 FROM workspace WHERE project_id = ?1",
                "SELECT 1 FROM permission WHERE project_id = ?1",
            ] {
                if self.exists(tx, sql, pid)? {
                    return Ok(false);
                }
            }
            let n = tx
                .execute("DELETE FROM project WHERE id = ?1", [pid])
                .map_err(self.sql(format!("deleting project {pid}")))?;
            Ok(n > 0)
        })
    }
}

/// Per-session counts, grouped through covering index scans (checked with EXPLAIN QUERY PLAN in
/// the tests).
pub(crate) const SQL_MESSAGE_COUNTS: &str =
    "SELECT session_id, count(*), NULL FROM message GROUP BY session_id";
pub(crate) const SQL_PART_COUNTS: &str =
    "SELECT session_id, count(*), NULL FROM part GROUP BY session_id";
pub(crate) const SQL_TODO_COUNTS: &str =
    "SELECT session_id, count(*), max(time_updated) FROM todo GROUP BY session_id";

/// Every message id by session (covering scan of `message_session_time_created_id_idx`).
pub(crate) const SQL_MESSAGE_IDS: &str = "SELECT session_id, id FROM message ORDER BY session_id, time_created, id";
/// One session's messages with their parts' change signals (`part_message_id_id_idx`).
pub(crate) const SQL_MESSAGE_PRINTS: &str = "SELECT m.id, m.time_updated, octet_length(m.data), \
     (SELECT count(*) FROM part p WHERE p.message_id = m.id), \
     (SELECT max(p.time_updated) FROM part p WHERE p.message_id = m.id), \
     (SELECT sum(octet_length(p.data)) FROM part p WHERE p.message_id = m.id) \
     FROM message m WHERE m.session_id = ?1";

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Totals {
    pub cost: f64,
    pub input: i64,
    pub output: i64,
    pub reasoning: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

pub(crate) fn totals(messages: &[Row]) -> Totals {
    let mut sorted: Vec<&Row> = messages.iter().collect();
    let key = |m: &Row| {
        (
            m.get("time_created").and_then(Value::as_i64).unwrap_or(0),
            m.get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    sorted.sort_by_key(|m| key(m));
    let mut t = Totals::default();
    for m in sorted {
        let Some(data) = m.get("data") else { continue };
        if data.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        t.cost += docs::num_at(data, &["cost"]);
        t.input += docs::int_at(data, &["tokens", "input"]);
        t.output += docs::int_at(data, &["tokens", "output"]);
        t.reasoning += docs::int_at(data, &["tokens", "reasoning"]);
        t.cache_read += docs::int_at(data, &["tokens", "cache", "read"]);
        t.cache_write += docs::int_at(data, &["tokens", "cache", "write"]);
    }
    t
}

fn parse_session_doc(doc: &[u8]) -> Result<(Row, Option<Row>), DocProblem> {
    let mut d = docs::parse_doc(doc)?;
    let session = docs::take_row(&mut d, "session")?;
    let sid = docs::str_field(&session, "id", "session")?;
    let pid = docs::str_field(&session, "project_id", "session")?;
    docs::check_values(&session, None, "session")?;
    let project = match d.get("project") {
        Some(Value::Null) | None => None,
        Some(_) => {
            let p = docs::take_row(&mut d, "project")?;
            if docs::str_field(&p, "id", "project")? != pid {
                return Err(DocProblem {
                    field: "project.id".into(),
                    problem: format!("is not session {sid}'s project_id {pid}"),
                });
            }
            docs::check_values(&p, None, "project")?;
            Some(p)
        }
    };
    Ok((session, project))
}

/// A session id with its messages' documents, as (message id, document).
pub type SplitMessages = (String, Vec<(String, Vec<u8>)>);

/// Splits a whole session's messages document (format 1 of the `messages/<pid>/<sid>` items)
/// into one document per message, in the document's message order: (session id, [(message id,
/// document)]). Each is byte for byte what [`OpencodeDb::read_message_doc`] renders from the same
/// rows (one message, its parts sorted by id).
pub fn split_messages_doc(doc: &[u8]) -> Result<SplitMessages, DocProblem> {
    let (sid, messages, parts) = parse_messages_doc(doc)?;
    let mut by_message: HashMap<String, Vec<Row>> = HashMap::new();
    for p in parts {
        let mid = p.get("message_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        by_message.entry(mid).or_default().push(p);
    }
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let mid = m.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut parts = by_message.remove(&mid).unwrap_or_default();
        parts.sort_by(|a, b| a.get("id").and_then(Value::as_str).cmp(&b.get("id").and_then(Value::as_str)));
        let bytes = docs::messages_doc(&sid, std::slice::from_ref(&m), &parts);
        out.push((mid, bytes));
    }
    Ok((sid, out))
}

/// The ids of the messages and parts of a messages document (empty when it does not parse).
pub fn messages_doc_ids(doc: &[u8]) -> HashSet<String> {
    let Ok((_, messages, parts)) = parse_messages_doc(doc) else { return HashSet::new() };
    messages.iter().chain(&parts).filter_map(|r| r.get("id").and_then(Value::as_str)).map(str::to_owned).collect()
}

fn parse_messages_doc(doc: &[u8]) -> Result<(String, Vec<Row>, Vec<Row>), DocProblem> {
    let mut d = docs::parse_doc(doc)?;
    let sid = docs::doc_str(&d, "sessionId")?;
    let messages = docs::take_rows(&mut d, "messages")?;
    let parts = docs::take_rows(&mut d, "parts")?;
    let mut msg_ids = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        check_owner(m, &sid, &at)?;
        let id = docs::str_field(m, "id", &at)?;
        if !msg_ids.insert(id) {
            return Err(DocProblem {
                field: format!("{at}.id"),
                problem: format!("{id} appears twice"),
            });
        }
        docs::check_values(m, Some("data"), &at)?;
    }
    let mut part_ids = HashSet::new();
    for (i, p) in parts.iter().enumerate() {
        let at = format!("parts[{i}]");
        check_owner(p, &sid, &at)?;
        let id = docs::str_field(p, "id", &at)?;
        if !part_ids.insert(id) {
            return Err(DocProblem {
                field: format!("{at}.id"),
                problem: format!("{id} appears twice"),
            });
        }
        let mid = docs::str_field(p, "message_id", &at)?;
        if !msg_ids.contains(mid) {
            return Err(DocProblem {
                field: format!("{at}.message_id"),
                problem: format!("{mid} is not a message of this document"),
            });
        }
        docs::check_values(p, Some("data"), &at)?;
    }
    Ok((sid, messages, parts))
}

fn check_owner(row: &Row, sid: &str, at: &str) -> Result<(), DocProblem> {
    let owner = docs::str_field(row, "session_id", at)?;
    if owner != sid {
        return Err(DocProblem {
            field: format!("{at}.session_id"),
            problem: format!("is {owner}, not the document's sessionId {sid}"),
        });
    }
    Ok(())
}

fn parse_todos_doc(doc: &[u8]) -> Result<(String, Vec<Row>), DocProblem> {
    let mut d = docs::parse_doc(doc)?;
    let sid = docs::doc_str(&d, "sessionId")?;
    let todos = docs::take_rows(&mut d, "todos")?;
    let mut positions = HashSet::new();
    for (i, t) in todos.iter().enumerate() {
        let at = format!("todos[{i}]");
        check_owner(t, &sid, &at)?;
        let pos = t
            .get("position")
            .and_then(Value::as_i64)
            .ok_or_else(|| DocProblem {
                field: format!("{at}.position"),
                problem: "missing or not an integer".into(),
            })?;
        if !positions.insert(pos) {
            return Err(DocProblem {
                field: format!("{at}.position"),
                problem: format!("{pos} appears twice"),
            });
        }
        docs::check_values(t, None, &at)?;
    }
    Ok((sid, todos))
}

fn parse_project_doc(doc: &[u8]) -> Result<Row, DocProblem> {
    let mut d = docs::parse_doc(doc)?;
    let p = docs::take_row(&mut d, "project")?;
    docs::str_field(&p, "id", "project")?;
    docs::check_values(&p, None, "project")?;
    Ok(p)
}
