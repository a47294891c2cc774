//! One sync of this machine, as the CLI and auto-sync run it: takes the machine-wide lock, opens
//! the remote the config names, builds the sources and codecs, runs the [`Syncer`], and keeps the
//! copies of every conflict it met where the person can get them back.

use crate::category::Category;
use crate::config::Config;
use crate::machine_id;
use crate::paths::{EnvSnapshot, Paths};
use crate::remote::open::open_remote;
use crate::remote::{Remote, Version};
use crate::source::opencode_db::create::{have_opencode_create, Created};
use crate::time::now_ms;

use super::codec::{Codec, Codecs};
use super::conflicts::ConflictStore;
use super::error::SyncError;
use super::failure;
use super::lock::{SyncLock, LOCK_WAIT};
use super::progress::Tracker;
use super::run::{MetConflict, SyncOptions, SyncReport, Syncer, WriteObserver};
use super::sources::scoped_sources;
use super::state::StateStore;

/// What the caller wants to hear about while a sync runs.
#[derive(Clone, Copy, Default)]
pub struct Hooks<'a> {
    /// Told about each local write (see [`Syncer::on_local_write`]).
    pub on_local_write: Option<&'a WriteObserver<'a>>,
    /// Told the running totals after each round of a sync that needs several (a first sync of a
    /// large database).
    pub on_progress: Option<&'a dyn Fn(&SyncReport)>,
    /// Told the items and bytes done of the total as the sync goes (see [`Tracker`]).
    pub progress: Option<&'a Tracker<'a>>,
}

/// Runs one full sync on this machine, holding the machine-wide sync lock. A failure is also
/// recorded for `status` (see [`super::failure`]).
pub fn sync_now(paths: &Paths, config: &Config, env: &EnvSnapshot, opts: &SyncOptions, hooks: Hooks<'_>) -> Result<SyncReport, SyncError> {
    let result = sync_locked(paths, config, env, opts, hooks);
    if let Err(e) = &result
        && !opts.dry_run
    {
        failure::record(paths, e, now_ms());
    }
    result
}

fn sync_locked(paths: &Paths, config: &Config, env: &EnvSnapshot, opts: &SyncOptions, hooks: Hooks<'_>) -> Result<SyncReport, SyncError> {
    let machine = machine_id::get_or_create(config.machine_id.as_deref(), &paths.machine_id_file)
        .map_err(|e| SyncError::local("cannot get this machine's id", e))?;
    let _lock = SyncLock::acquire(&paths.sync_lock_file(), LOCK_WAIT)?;
    let remote = open_remote(config, paths, env)?;
    let conflicts = ConflictStore::new(paths.conflicts_dir());
    let codec = Codecs::for_config(config, env)?;
    let run = || -> Result<SyncReport, SyncError> {
        let state = StateStore::new(paths.sync_state_dir());
        let blocked = conflicts
            .waiting()
            .map_err(|e| SyncError::local(format!("cannot read {}", conflicts.root().display()), e))?
            .into_iter()
            .collect();
        let syncer = Syncer {
            machine: machine.id.clone(),
            config,
            remote: remote.as_ref(),
            sources: scoped_sources(paths, config, &state, opts.scope)?,
            state,
            blocked,
            now_ms,
            on_local_write: hooks.on_local_write,
            codec: Some(&codec as &dyn Codec),
            on_progress: hooks.on_progress,
            progress: hooks.progress,
        };
        let report = syncer.sync(opts)?;
        if !opts.dry_run {
            for c in &report.conflicts {
                keep_conflict(&conflicts, c, &machine.id)?;
            }
        }
        Ok(report)
    };
    let mut report = run()?;
    if database_missing(paths, config, opts) && remote_has_database_items(remote.as_ref(), report.version.as_deref())? {
        match create_database(paths, env, opts) {
            Created::By(program) => {
                // The database sources exist now: a second pass imports the sessions.
                report.append(run()?);
                report.database_created_by = Some(program.display().to_string());
            }
            Created::Waiting(why) => report.sessions_waiting = Some(why),
        }
    }
    Ok(report)
}

/// Whether this sync covers OpenCode's database and it does not exist (OpenCode never ran here).
fn database_missing(paths: &Paths, config: &Config, opts: &SyncOptions) -> bool {
    let wanted = [Category::Sessions, Category::Projects].into_iter().any(|c| config.sync.get(c) && opts.scope.covers(c));
    let db = &paths.opencode_db;
    wanted && !db.is_file() && db.as_os_str() != ":memory:"
}

/// Whether the remote at `version` (the one the sync just saw: no new request for the head) holds
/// sessions or projects, which then wait for this machine's database.
fn remote_has_database_items(remote: &dyn Remote, version: Option<&str>) -> Result<bool, SyncError> {
    let Some(version) = version else { return Ok(false) };
    let manifest = remote.manifest(&Version(version.to_string()))?;
    Ok(manifest.entries.iter().any(|(key, e)| {
        e.hash.is_some() && matches!(Category::of_key(key), Some(Category::Sessions | Category::Projects))
    }))
}

/// On a machine where OpenCode has never run, has OpenCode create its database (never in a dry run).
fn create_database(paths: &Paths, env: &EnvSnapshot, opts: &SyncOptions) -> Created {
    let db = &paths.opencode_db;
    if opts.dry_run {
        return Created::Waiting(format!(
            "OpenCode's database {} does not exist yet: a sync that is not a dry run has OpenCode create it",
            db.display()
        ));
    }
    tracing::info!("OpenCode's database {} does not exist yet: having OpenCode create it", db.display());
    let created = have_opencode_create(db, env);
    match &created {
        Created::By(program) => tracing::info!("{} created OpenCode's database", program.display()),
        Created::Waiting(why) => tracing::warn!("sessions not synced: {why}"),
    }
    created
}

/// Keeps both sides (and the base) of a conflict the sync met, unless the same "ask" conflict is
/// already waiting for the person.
fn keep_conflict(conflicts: &ConflictStore, c: &MetConflict, local_machine: &str) -> Result<(), SyncError> {
    if c.needs_person && conflicts.open_for(&c.key).ok().flatten().is_some() {
        return Ok(());
    }
    let meta = c.to_record(local_machine);
    conflicts
        .record(&c.key, c.local.as_deref(), c.remote.as_deref(), c.base.as_deref(), meta)
        .map_err(|e| SyncError::local(format!("cannot keep the conflict copies of {}", c.key), e))?;
    Ok(())
}
