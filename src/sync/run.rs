//! One sync: read every local item, the remote's manifest and this machine's base, decide per item
//! ([`super::plan::decide`]), merge what both sides changed, settle real conflicts by the configured
//! strategy, and publish everything as ONE compare-and-swap commit. A losing racer re-reads, merges
//! again and retries (maxRetryAttempts, retryDelayMs doubling). Local files are written only after
//! the commit succeeded, each re-checked first: a file the person changed during the sync is left
//! alone (and its base kept), so the next sync merges that edit instead of overwriting it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::clock::VectorClock;
use crate::config::{Config, ConflictStrategy};
use crate::merge::{self, MergeKind, Side};
use crate::remote::{sha256_hex, Changes, CommitOutcome, Entry, Manifest, Remote, Version};
use crate::source::{Category, Source, SourceError, WriteOp};

use crate::fault;

use super::codec::Codec;
use super::conflicts::{NewConflict, Winner};
use super::error::SyncError;
use super::intent::{merged_side_base, IntentStore};
use super::progress::{Phase, Tracker};
use super::refusals::Refusal;
use super::sources::Scope;
use super::state::{BaseEntry, StateStore, SyncState};

/// Deleting at least this many items of a category, and more than half of it, needs --allow-deletions.
pub const DELETION_SHARE_MIN: usize = 3;
/// Deleting more than this many items at once always needs --allow-deletions.
pub const DELETION_MAX_AT_ONCE: usize = 25;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Decide and report, change nothing anywhere.
    pub dry_run: bool,
    /// Allow a sync that deletes many items (see [`DELETION_SHARE_MIN`], [`DELETION_MAX_AT_ONCE`]).
    pub allow_deletions: bool,
    /// Re-encrypt every sealed item (after a passphrase change): push them again with the current key.
    pub reseal: bool,
    /// Which categories this sync covers.
    pub scope: Scope,
}

/// A conflict this sync met (the losing side is kept by the caller's conflict store).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetConflict {
    pub key: String,
    pub strategy: ConflictStrategy,
    /// "local", "remote", "merged" or "none" (ask: nothing applied until resolved).
    pub winner: Winner,
    pub needs_person: bool,
    pub details: Vec<String>,
    #[serde(skip)]
    pub local: Option<Vec<u8>>,
    #[serde(skip)]
    pub remote: Option<Vec<u8>>,
    #[serde(skip)]
    pub base: Option<Vec<u8>>,
    pub local_clock: VectorClock,
    pub remote_clock: VectorClock,
    pub remote_machine: String,
}

impl MetConflict {
    /// How it was settled, for logs and the CLI: kept for the person, or which side won.
    pub fn describe(&self) -> String {
        if self.needs_person {
            format!("conflict in {} waits for you: `oc-sync resolve {} --local|--remote|--file PATH`", self.key, self.key)
        } else {
            format!("conflict in {} settled by {} ({} kept; the other side is kept, see `oc-sync conflicts`)", self.key, self.strategy, self.winner)
        }
    }

    /// The record of this conflict for the conflict store (`local_machine`: this machine's id).
    pub fn to_record(&self, local_machine: &str) -> NewConflict {
        NewConflict {
            strategy: self.strategy,
            winner: self.winner,
            needs_person: self.needs_person,
            local_clock: self.local_clock.clone(),
            remote_clock: self.remote_clock.clone(),
            local_machine: local_machine.to_string(),
            remote_machine: self.remote_machine.clone(),
            details: self.details.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub dry_run: bool,
    pub remote: String,
    pub version: Option<String>,
    pub pushed: Vec<String>,
    pub pulled: Vec<String>,
    pub merged: Vec<String>,
    /// Local deletions sent to the remote as tombstones.
    pub deleted_remote: Vec<String>,
    /// Local files removed because another machine deleted them.
    pub deleted_local: Vec<String>,
    pub conflicts: Vec<MetConflict>,
    /// Items waiting for `oc-sync resolve` (strategy "ask").
    pub blocked: Vec<String>,
    /// Items changed on this machine while the sync ran: left for the next sync.
    pub deferred: Vec<String>,
    /// Expired tombstones dropped from the remote.
    pub expired: Vec<String>,
    /// Local files deliberately not synced ("key: reason"), e.g. symlinks or files over the size limit.
    pub skipped: Vec<String>,
    /// Remote items this machine will not take ("key: reason"): keys outside a category's shape,
    /// content that does not match its key, items it cannot write here. Nothing was written.
    pub refused: Vec<String>,
    pub attempts: u32,
    /// The `opencode` program that created OpenCode's database for this sync (a machine where
    /// OpenCode had never run).
    pub database_created_by: Option<String>,
    /// Why the database categories could not sync on this machine yet (no database and no OpenCode
    /// to create it): the sessions wait, and the person is told why.
    pub sessions_waiting: Option<String>,
    /// This sync upgraded the remote from repository format 1 (see [`super::upgrade`]).
    pub upgraded: Option<super::upgrade::Upgraded>,
}

impl SyncReport {
    /// One line for the logs, the same for the CLI and auto-sync.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}pushed {}, pulled {}, merged {}, deleted {} here / {} on the remote, conflicts {}",
            if self.dry_run { "dry run (nothing changed): would have " } else { "" },
            self.pushed.len(),
            self.pulled.len(),
            self.merged.len(),
            self.deleted_local.len(),
            self.deleted_remote.len(),
            self.conflicts.len()
        );
        let waiting: BTreeSet<&str> =
            self.blocked.iter().map(String::as_str).chain(self.conflicts.iter().filter(|c| c.needs_person).map(|c| c.key.as_str())).collect();
        if !waiting.is_empty() {
            s.push_str(&format!(", waiting for you {}", waiting.len()));
        }
        if let Some(u) = &self.upgraded {
            s.push_str(&format!("; {}", u.summary()));
        }
        s
    }

    /// Whether anything changed (or would change, in a dry run).
    pub fn changed_anything(&self) -> bool {
        [&self.pushed, &self.pulled, &self.merged, &self.deleted_remote, &self.deleted_local].iter().any(|v| !v.is_empty())
    }

    /// Whether a conflict waits for the person (strategy "ask"): `oc-sync resolve` settles it.
    pub fn waits_for_person(&self) -> bool {
        !self.blocked.is_empty() || self.conflicts.iter().any(|c| c.needs_person)
    }

    /// Adds a later round's report to this one.
    pub fn append(&mut self, later: SyncReport) {
        if later.upgraded.is_some() {
            self.upgraded = later.upgraded.clone();
        }
        self.pushed.extend(later.pushed);
        self.pulled.extend(later.pulled);
        self.merged.extend(later.merged);
        self.deleted_remote.extend(later.deleted_remote);
        self.deleted_local.extend(later.deleted_local);
        self.conflicts.extend(later.conflicts);
        self.blocked = later.blocked;
        self.deferred = later.deferred;
        self.expired.extend(later.expired);
        self.skipped = later.skipped;
        self.refused = later.refused;
        self.attempts += later.attempts;
        self.version = later.version;
        self.remote = later.remote;
    }
}

/// Everything a sync works with. The engine does not know where items come from or go to.
pub struct Syncer<'a> {
    pub machine: String,
    pub config: &'a Config,
    pub remote: &'a dyn Remote,
    pub sources: Vec<Box<dyn Source + 'a>>,
    pub state: StateStore,
    /// Keys that must not sync now (open "ask" conflicts).
    pub blocked: BTreeSet<String>,
    /// Milliseconds since the epoch; replaceable in tests.
    pub now_ms: fn() -> u64,
    /// Told about every local write or deletion, before (`false`) and after (`true`) it happens,
    /// so a file watcher can tell oc-sync's own writes from the person's.
    pub on_local_write: Option<&'a WriteObserver<'a>>,
    /// Encryption of the items it applies to (credentials); None = nothing is sealed.
    pub codec: Option<&'a dyn Codec>,
    /// Told the running totals after each round of a sync that needs several (a first sync of a
    /// large database), e.g. to show progress.
    pub on_progress: Option<&'a dyn Fn(&SyncReport)>,
    /// Told the items and bytes done of the total as the sync goes (a progress bar).
    pub progress: Option<&'a Tracker<'a>>,
}

/// Called with an item key before (`false`) and after (`true`) oc-sync writes or deletes it locally.
pub type WriteObserver<'a> = dyn Fn(&str, bool) + Sync + 'a;

/// One local item as read at the start of the sync.
struct LocalItem {
    /// Empty when `unread`.
    bytes: Vec<u8>,
    hash: String,
    kind: MergeKind,
    modified_ms: u64,
    /// Not read: its source's fingerprint says it is unchanged since the last sync, so its
    /// content is the base (kept in the state store).
    unread: bool,
}

impl From<crate::source::Item> for LocalItem {
    fn from(item: crate::source::Item) -> Self {
        LocalItem {
            hash: sha256_hex(&item.bytes),
            kind: item.meta.kind,
            modified_ms: item.meta.modified_ms,
            bytes: item.bytes,
            unread: false,
        }
    }
}

/// Most bytes one sync round reads from fingerprinted sources or pulls from the remote; the rest
/// waits for the next round (so memory stays flat on a first sync of a large database).
pub const ROUND_BYTES: u64 = 4 << 20;
#[cfg(test)]
thread_local! {
    /// Tests shrink the round size on their own thread.
    pub(crate) static ROUND_BYTES_OVERRIDE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// The byte budget of one round.
fn round_bytes() -> u64 {
    #[cfg(test)]
    if let Some(n) = ROUND_BYTES_OVERRIDE.with(|c| c.get()) {
        return n;
    }
    ROUND_BYTES
}

/// Most rounds one sync runs.
const MAX_ROUNDS: u32 = 100_000;

/// What one round read from fingerprinted sources: key → (fingerprint, content hash).
type FreshPrints = BTreeMap<String, (String, String)>;

/// What to do locally once the commit is in.
enum LocalWrite {
    Write { key: String, bytes: Vec<u8> },
    Delete { key: String },
}

/// The outcome of planning one attempt.
struct Plan {
    /// Work left for another round (the byte budget was reached).
    more: bool,
    /// Fingerprints of the items read this round.
    fresh: FreshPrints,
    changes: Changes,
    writes: Vec<(LocalWrite, Option<String>)>, // with the local hash it expects to replace
    new_bases: BTreeMap<String, (BaseEntry, Option<Vec<u8>>)>,
    dropped_bases: Vec<String>,
    report: SyncReport,
    /// Remote items refused this round (or remembered as refused and not fetched again).
    refusals: BTreeMap<String, Refusal>,
    /// The remote entry hash each local write comes from (what a refusal is remembered with).
    remote_hashes: BTreeMap<String, Option<String>>,
}

pub fn kind_name(kind: MergeKind) -> &'static str {
    match kind {
        MergeKind::Json => "json",
        MergeKind::Jsonc => "jsonc",
        MergeKind::Jsonl => "jsonl",
        MergeKind::Text => "text",
        MergeKind::Binary => "binary",
        MergeKind::Rows => "rows",
    }
}

pub fn kind_from_name(name: &str) -> MergeKind {
    match name {
        "json" => MergeKind::Json,
        "jsonc" => MergeKind::Jsonc,
        "jsonl" => MergeKind::Jsonl,
        "text" => MergeKind::Text,
        "rows" => MergeKind::Rows,
        _ => MergeKind::Binary,
    }
}

impl<'a> Syncer<'a> {
    pub(crate) fn source_for(&self, key: &str) -> Option<&(dyn Source + 'a)> {
        let cat = Category::of_key(key)?;
        self.sources.iter().find(|s| s.category() == cat).map(|s| s.as_ref())
    }

    /// Runs one sync: rounds of at most [`ROUND_BYTES`] each until nothing is left, each round
    /// one commit (retrying lost races).
    pub fn sync(&self, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
        if !opts.dry_run {
            self.remove_stale_temps();
        }
        let mut total: Option<SyncReport> = None;
        // The head a round that committed nothing left the remote at: the next round starts from
        // it without asking again (a first pull in many rounds costs no request per round; if
        // another machine pushed meanwhile, a commit on it loses the race and re-reads).
        let mut known_head: Option<Option<Version>> = None;
        for round in 1..=MAX_ROUNDS {
            let (report, more) = self.sync_round(opts, known_head.take())?;
            let committed = [&report.pushed, &report.merged, &report.deleted_remote, &report.expired].iter().any(|v| !v.is_empty());
            if !committed {
                known_head = Some(report.version.clone().map(Version));
            }
            let progress = report.pushed.len()
                + report.pulled.len()
                + report.merged.len()
                + report.deleted_remote.len()
                + report.deleted_local.len();
            total = Some(match total {
                None => report,
                Some(mut t) => {
                    t.append(report);
                    t
                }
            });
            if !more || opts.dry_run {
                break;
            }
            if progress == 0 {
                // Items left over could not be taken (refused here): the next sync tries again.
                tracing::warn!("sync round {round} moved nothing; leaving the rest for the next sync");
                break;
            }
            tracing::info!("sync round {round} done; more to sync");
            if let Some(p) = self.on_progress {
                p(total.as_ref().expect("set above"));
            }
        }
        if let Some(p) = self.progress
            && !opts.dry_run
        {
            p.finish();
        }
        Ok(total.expect("at least one round"))
    }

    /// One round, retrying lost races; also says whether work is left for another round.
    fn sync_round(&self, opts: &SyncOptions, mut known_head: Option<Option<Version>>) -> Result<(SyncReport, bool), SyncError> {
        let max_attempts = self.config.max_retry_attempts + 1;
        let mut attempt = 0;
        let mut upgraded = None;
        loop {
            attempt += 1;
            let head = match known_head.take().map(Ok).unwrap_or_else(|| self.remote.head()) {
                Err(crate::remote::RemoteError::NeedsUpgrade) if !opts.dry_run => {
                    upgraded = super::upgrade::upgrade_if_needed(self.remote, &super::upgrade::split_session_documents)?;
                    self.remote.head()?
                }
                other => other?,
            };
            let manifest = match &head {
                Some(v) => self.remote.manifest(v)?,
                None => Manifest::default(),
            };
            let mut state = self.state.load_for(&self.remote.describe())?;
            if !opts.dry_run {
                // A commit of an earlier attempt may have landed unanswered: settle that first.
                self.settle_intent(&manifest, &mut state)?;
            }
            let mut plan = self.plan(&manifest, &state, opts)?;
            plan.report.attempts = attempt;
            plan.report.upgraded = upgraded.clone();
            plan.report.remote = self.remote.describe();
            if opts.dry_run {
                plan.report.version = head.map(|v| v.0);
                return Ok((plan.report, plan.more));
            }
            let committing = !(plan.changes.entries.is_empty() && plan.changes.removed.is_empty());
            if committing || !plan.writes.is_empty() {
                self.record_intent(head.as_ref(), &plan)?;
            }
            let version = if !committing {
                head.clone()
            } else {
                fault::step(fault::BEFORE_COMMIT)?;
                let changes = std::mem::take(&mut plan.changes);
                let upload = (changes.entries.len() as u64, changes.blobs.values().map(|b| b.len() as u64).sum::<u64>());
                match self.remote.commit(head.as_ref(), changes)? {
                    CommitOutcome::Committed(v) => {
                        fault::step(fault::AFTER_COMMIT)?;
                        if let Some(p) = self.progress {
                            p.done(Phase::Uploading, upload.0, upload.1);
                        }
                        Some(v)
                    }
                    CommitOutcome::Conflict { .. } => {
                        if attempt >= max_attempts {
                            return Err(SyncError::TooManyRetries(attempt));
                        }
                        let delay = self.config.retry_delay_ms.saturating_mul(1 << (attempt - 1).min(10)).min(60_000);
                        tracing::info!("remote changed during sync; retrying in {delay} ms (attempt {attempt})");
                        std::thread::sleep(Duration::from_millis(delay));
                        continue;
                    }
                }
            };
            let written = self.apply_locally(&mut plan, &mut state)?;
            // Remember the fingerprint of items whose local content is now the agreed base.
            for (key, (print, hash)) in std::mem::take(&mut plan.fresh) {
                if written.contains(&key) {
                    continue;
                }
                if let Some(b) = state.items.get_mut(&key)
                    && b.hash.as_deref() == Some(hash.as_str())
                {
                    b.fingerprint = Some(print);
                }
            }
            state.version = version.as_ref().map(|v: &Version| v.0.clone());
            state.last_sync_ms = Some((self.now_ms)());
            fault::step(fault::BEFORE_STATE_SAVE)?;
            self.state.save(&state)?;
            IntentStore::new(&self.state).clear()?;
            self.state.prune_bases(&state);
            plan.report.version = state.version.clone();
            return Ok((plan.report, plan.more));
        }
    }

    /// Reads local items of every source. Sources with fingerprints are read only where the
    /// fingerprint changed since the last sync, and only up to [`ROUND_BYTES`]; items left for a
    /// later round are returned in `later` (not touched this round). Returns whether any were.
    fn read_local(
        &self,
        state: &SyncState,
        skipped: &mut Vec<(String, String)>,
        later: &mut BTreeSet<String>,
        fresh: &mut FreshPrints,
    ) -> Result<(BTreeMap<String, LocalItem>, bool), SyncError> {
        let mut out = BTreeMap::new();
        let mut read_bytes = 0u64;
        let mut over = false;
        for src in &self.sources {
            if let Some(prints) = src.fingerprints()? {
                skipped.extend(prints.skipped);
                for (key, print) in prints.items {
                    let base = state.items.get(&key);
                    if let Some(b) = base
                        && b.fingerprint.as_deref() == Some(print.as_str())
                        && let Some(h) = &b.hash
                    {
                        let unread = LocalItem { bytes: Vec::new(), hash: h.clone(), kind: kind_from_name(&b.kind), modified_ms: 0, unread: true };
                        out.insert(key, unread);
                        continue;
                    }
                    if over {
                        later.insert(key);
                        continue;
                    }
                    let item = match src.read(&key) {
                        Ok(Some(item)) => item,
                        Ok(None) => continue,
                        // Present but not syncable (too large...): left alone, like a skipped file.
                        Err(e) if refusable(&e) => {
                            skipped.push((key, e.to_string()));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    read_bytes += item.bytes.len() as u64;
                    let local = LocalItem::from(item);
                    fresh.insert(key.clone(), (print, local.hash.clone()));
                    out.insert(key, local);
                    if read_bytes >= round_bytes() {
                        over = true;
                    }
                }
                continue;
            }
            let (items, left_out) = src.read_all()?;
            skipped.extend(left_out);
            for item in items {
                let key = item.meta.key.clone();
                out.insert(key, LocalItem::from(item));
            }
        }
        Ok((out, over))
    }

    /// The content of a local item (from the base store when it was not read).
    fn local_bytes(&self, item: &LocalItem) -> Result<Vec<u8>, SyncError> {
        if !item.unread {
            return Ok(item.bytes.clone());
        }
        self.state
            .base(&item.hash)
            .ok_or_else(|| SyncError::LostBase(item.hash.clone()))
    }

    /// Removes temp files an interrupted write left behind (callers hold the sync lock).
    fn remove_stale_temps(&self) {
        let n = self.sources.iter().map(|s| s.remove_stale_temps()).sum::<usize>() + self.state.remove_stale_temps();
        if n > 0 {
            tracing::info!("removed {n} temp files left by an interrupted write");
        }
    }

    fn entry_for(&self, item: &LocalItem, clock: VectorClock, category: &str) -> Entry {
        Entry {
            clock,
            hash: Some(item.hash.clone()),
            size: item.bytes.len() as u64,
            kind: kind_name(item.kind).to_string(),
            category: category.to_string(),
            modified_ms: item.modified_ms,
            machine: self.machine.clone(),
            deleted_ms: None,
        }
    }

    /// The remote content of an item, decrypted when it is sealed (`local`: this machine's item).
    fn fetch(&self, key: &str, r: &Entry, local: Option<&LocalItem>) -> Result<Vec<u8>, SyncError> {
        let hash = r.hash.as_deref().ok_or(SyncError::Internal("fetch of a tombstone"))?;
        let blob = self.remote.blob(hash)?;
        match self.codec {
            Some(c) if c.applies_to(key) => {
                let local = local.map(|i| self.local_bytes(i)).transpose()?;
                c.open(key, &r.clock, &blob, local.as_deref())
            }
            _ => Ok(blob),
        }
    }

    /// The remote entry (and blob) for pushing `item` with `clock` over `remote` (the remote's
    /// current entry), sealed when the codec applies.
    fn push_entry(&self, key: &str, item: &LocalItem, clock: VectorClock, category: &str, remote: Option<&Entry>, plan: &mut Plan) -> Result<Entry, SyncError> {
        let mut entry = self.entry_for(item, clock, category);
        match self.codec {
            Some(c) if c.applies_to(key) => {
                let previous = match remote.and_then(|r| r.hash.as_deref()) {
                    Some(h) if c.wants_previous(key, &item.bytes) => Some(self.remote.blob(h)?),
                    _ => None,
                };
                let sealed = c.seal(key, &entry.clock, &item.bytes, previous.as_deref())?;
                let hash = sha256_hex(&sealed);
                entry.hash = Some(hash.clone());
                entry.size = sealed.len() as u64;
                entry.kind = kind_name(item.kind).to_string();
                plan.changes.blobs.insert(hash, sealed);
            }
            _ => {
                plan.changes.blobs.insert(item.hash.clone(), item.bytes.clone());
            }
        }
        Ok(entry)
    }

    /// Stops a sync that would delete a large share of a category.
    fn check_deletions(&self, report: &SyncReport, local: &BTreeMap<String, LocalItem>, state: &SyncState) -> Result<(), SyncError> {
        // Counted in deletion units: a deleted session's message items count once.
        let mut per_cat: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for key in report.deleted_local.iter().chain(&report.deleted_remote) {
            per_cat.entry(key.split('/').next().unwrap_or("")).or_default().insert(deletion_unit(key));
        }
        for (cat, keys) in per_cat {
            let prefix = format!("{cat}/");
            let known: BTreeSet<&str> = local
                .keys()
                .chain(state.items.iter().filter(|(_, e)| e.hash.is_some()).map(|(k, _)| k))
                .filter(|k| k.starts_with(&prefix))
                .map(|k| deletion_unit(k))
                .collect();
            let (count, total) = (keys.len(), known.len().max(keys.len()));
            if count > DELETION_MAX_AT_ONCE || (count >= DELETION_SHARE_MIN && count * 2 > total) {
                let sample = keys.iter().take(3).copied().collect::<Vec<_>>().join(", ");
                return Err(SyncError::TooManyDeletions { category: cat.to_string(), count, total, sample });
            }
        }
        Ok(())
    }

    /// Writes pulled and merged items in batches (see [`Self::apply_batch`]), re-checking each
    /// local item first.
    /// Returns the keys written or deleted locally.
    fn apply_locally(&self, plan: &mut Plan, state: &mut SyncState) -> Result<BTreeSet<String>, SyncError> {
        // Parents before children: categories in their declared order (a session before its
        // messages and todos), keys in order within one.
        plan.writes.sort_by_key(|w| match &w.0 {
            LocalWrite::Write { key, .. } | LocalWrite::Delete { key } => category_rank(key),
        });
        let mut done = Applied { written: BTreeSet::new(), deferred: BTreeMap::new(), refused: BTreeSet::new() };
        let journal = IntentStore::new(&self.state);
        // Batches of one category (so of one source), in that order, each at most
        // APPLY_BATCH_ITEMS items and about APPLY_BATCH_BYTES: a database source writes each batch
        // in one transaction.
        let mut batch: Vec<(LocalWrite, Option<String>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let write_len = |w: &LocalWrite| match w {
            LocalWrite::Write { bytes, .. } => bytes.len(),
            LocalWrite::Delete { .. } => 0,
        };
        for (write, expected) in std::mem::take(&mut plan.writes) {
            let cat = Category::of_key(local_write_key(&write));
            let full = batch.len() >= APPLY_BATCH_ITEMS || batch_bytes + write_len(&write) > APPLY_BATCH_BYTES;
            if let Some((last, _)) = batch.last()
                && (full || Category::of_key(local_write_key(last)) != cat)
            {
                self.apply_batch(std::mem::take(&mut batch), plan, state, &journal, &mut done)?;
                batch_bytes = 0;
            }
            batch_bytes += write_len(&write);
            batch.push((write, expected));
        }
        if !batch.is_empty() {
            self.apply_batch(batch, plan, state, &journal, &mut done)?;
        }
        let Applied { written, deferred, refused } = done;
        plan.refusals.retain(|k, _| !written.contains(k));
        plan.report.refused = plan.refusals.iter().map(|(k, r)| r.line(k)).collect();
        state.refused = std::mem::take(&mut plan.refusals);
        self.take_new_bases(plan, state, &deferred, &refused)?;
        // The report lists what happened here: not what was refused or left for later.
        for list in [&mut plan.report.pulled, &mut plan.report.merged, &mut plan.report.deleted_local] {
            list.retain(|k| !refused.contains(k) && !deferred.contains_key(k));
        }
        plan.report.deferred = deferred.into_keys().collect();
        Ok(written)
    }

    /// Writes one batch of local writes (all of one source): each re-checked first (changed
    /// during the sync: deferred; unreadable: refused), the rest given to [`Source::write_batch`]
    /// at once. Every write the source reports done is journaled as applied before a failure of
    /// another item stops the sync, so the next sync re-does exactly the writes that did not happen.
    fn apply_batch(
        &self,
        batch: Vec<(LocalWrite, Option<String>)>,
        plan: &mut Plan,
        state: &SyncState,
        journal: &IntentStore,
        done: &mut Applied,
    ) -> Result<(), SyncError> {
        let Some(src) = batch.first().and_then(|(w, _)| self.source_for(local_write_key(w))) else { return Ok(()) };
        let mut ready: Vec<(LocalWrite, Option<Vec<u8>>)> = Vec::with_capacity(batch.len());
        for (write, expected) in batch {
            let key = local_write_key(&write).to_owned();
            if let Some(p) = self.progress {
                p.done(Phase::Writing, 1, 0);
            }
            let now_hash = match src.read(&key) {
                Ok(item) => item.map(|i| sha256_hex(&i.bytes)),
                Err(e) if refusable(&e) => {
                    tracing::warn!("not applying {key} from the remote: {e}");
                    plan.report.skipped.push(format!("{key}: not applied from the remote: {e}"));
                    done.refused.insert(key);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if now_hash != expected {
                tracing::info!("{key} changed during the sync; it will be merged on the next sync");
                done.deferred.insert(key, expected);
                continue;
            }
            let base = match &write {
                LocalWrite::Write { key, .. } => state.items.get(key).and_then(|b| b.hash.as_deref()).and_then(|h| self.state.base(h)),
                LocalWrite::Delete { .. } => None,
            };
            ready.push((write, base));
        }
        if ready.is_empty() {
            return Ok(());
        }
        let ops: Vec<WriteOp<'_>> = ready
            .iter()
            .map(|(w, base)| match w {
                LocalWrite::Write { key, bytes } => WriteOp::Write { key, bytes, base: base.as_deref() },
                LocalWrite::Delete { key } => WriteOp::Delete { key },
            })
            .collect();
        if let Some(f) = self.on_local_write {
            ops.iter().for_each(|op| f(op.key(), false));
        }
        let mut results = src.write_batch(&ops);
        if let Some(f) = self.on_local_write {
            ops.iter().for_each(|op| f(op.key(), true));
        }
        if results.len() != ops.len() {
            tracing::error!("a source answered {} results for {} writes", results.len(), ops.len());
            results.truncate(ops.len());
        }
        let mut failure = None;
        for (op, result) in ops.iter().zip(results) {
            let key = op.key().to_owned();
            match result {
                Ok(()) => {
                    journal.log_applied(&key)?;
                    done.written.insert(key);
                    fault::step(fault::LOCAL_WRITE)?;
                }
                // An item this machine must not write (outside the synced set, behind a symlink, too
                // large): refuse it, keep syncing the rest, and leave its base alone.
                Err(e) if refusable(&e) => {
                    let hash = plan.remote_hashes.get(&key).cloned().flatten();
                    self.remember_refusal(&key, hash, &e, plan);
                    done.refused.insert(key);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Makes the planned bases this machine's memory, except for items refused or changed during
    /// the sync (a merged one takes the local side the commit merged, see [`merged_side_base`]).
    fn take_new_bases(
        &self,
        plan: &mut Plan,
        state: &mut SyncState,
        deferred: &BTreeMap<String, Option<String>>,
        refused: &BTreeSet<String>,
    ) -> Result<(), SyncError> {
        for (key, (entry, bytes)) in std::mem::take(&mut plan.new_bases) {
            if let Some(local_hash) = deferred.get(&key)
                && plan.report.merged.contains(&key)
                && let Some(b) = merged_side_base(&self.state, &entry, local_hash.as_deref(), state.items.get(&key))
            {
                state.items.insert(key, b);
                continue;
            }
            if deferred.contains_key(&key) || refused.contains(&key) {
                continue;
            }
            if let Some(b) = bytes {
                self.state.put_base(&b)?;
            }
            state.items.insert(key, entry);
        }
        for key in plan.dropped_bases.drain(..) {
            state.items.remove(&key);
        }
        Ok(())
    }

    /// Merges one concurrently changed item and settles real conflicts by the strategy.
    fn settle(&self, key: &str, local: &LocalItem, remote: &Entry, remote_bytes: &[u8], base: Option<&[u8]>, local_clock: VectorClock) -> Settled {
        let strategy = self.config.conflict_strategy;
        // Newest side by modification time; ties broken by machine id so every machine agrees.
        let local_newer = (local.modified_ms, self.machine.as_str()) > (remote.modified_ms, remote.machine.as_str());
        let newest = if local_newer { Side::Local } else { Side::Remote };
        let prefer = match strategy {
            ConflictStrategy::LocalWins => Side::Local,
            ConflictStrategy::RemoteWins => Side::Remote,
            _ => newest,
        };
        let merged = merge::merge(common_kind(kind_from_name(&remote.kind), local.kind), base, &local.bytes, remote_bytes, prefer);
        let (result_bytes, details): (Vec<u8>, Vec<String>) = match merged {
            Ok(out) if out.conflicts.is_empty() => return Settled::Result { bytes: out.bytes, conflict: None },
            Ok(out) => {
                let codec = self.codec.filter(|c| c.applies_to(key));
                let shown = |c: &merge::Conflict| match codec {
                    Some(codec) => {
                        let mut c = c.clone();
                        codec.redact(key, [&local.bytes, remote_bytes], &mut c);
                        describe_conflict(&c)
                    }
                    None => describe_conflict(c),
                };
                (out.bytes, out.conflicts.iter().map(shown).collect())
            }
            Err(e) => {
                let whole = if prefer == Side::Local { local.bytes.clone() } else { remote_bytes.to_vec() };
                (whole, vec![format!("cannot merge: {e}; one whole side wins")])
            }
        };
        let conflict = |winner: Winner, needs_person: bool| MetConflict {
            key: key.to_string(),
            strategy,
            winner,
            needs_person,
            details: details.clone(),
            local: Some(local.bytes.clone()),
            remote: Some(remote_bytes.to_vec()),
            base: base.map(<[u8]>::to_vec),
            local_clock: local_clock.clone(),
            remote_clock: remote.clock.clone(),
            remote_machine: remote.machine.clone(),
        };
        match strategy {
            ConflictStrategy::Ask => Settled::Blocked(conflict(Winner::None, true)),
            ConflictStrategy::NewestWins => {
                let (bytes, winner) = if newest == Side::Local { (local.bytes.clone(), Winner::Local) } else { (remote_bytes.to_vec(), Winner::Remote) };
                Settled::Result { bytes, conflict: Some(conflict(winner, false)) }
            }
            _ => {
                let winner = if result_bytes == local.bytes {
                    Winner::Local
                } else if result_bytes == remote_bytes {
                    Winner::Remote
                } else {
                    Winner::Merged
                };
                Settled::Result { bytes: result_bytes, conflict: Some(conflict(winner, false)) }
            }
        }
    }
}

enum Settled {
    Result { bytes: Vec<u8>, conflict: Option<MetConflict> },
    Blocked(MetConflict),
}

/// Errors that concern one item the source must not write (outside the synced set, behind a
/// symlink, too large, not a file), as opposed to I/O failures that stop the sync.
fn refusable(e: &SourceError) -> bool {
    matches!(
        e,
        SourceError::KeyRefused { .. } | SourceError::Symlink { .. } | SourceError::TooLarge { .. } | SourceError::NotAFile { .. }
    )
}

/// The base for an entry whose local content hashes to `content_hash` (differs from the entry's
/// hash when the remote holds a sealed copy).
fn base_with(e: &Entry, content_hash: &str, now: u64) -> BaseEntry {
    BaseEntry { hash: Some(content_hash.to_string()), ..base_of(e, now) }
}

fn base_of(e: &Entry, now: u64) -> BaseEntry {
    BaseEntry { clock: e.clock.clone(), hash: e.hash.clone(), kind: e.kind.clone(), category: e.category.clone(), synced_ms: now, fingerprint: None }
}

/// Most items one local write batch holds (see [`Source::write_batch`]).
pub const APPLY_BATCH_ITEMS: usize = 500;
/// About the most bytes one local write batch holds (a larger item is a batch of its own).
pub const APPLY_BATCH_BYTES: usize = 8 << 20;

/// What the local writes of one sync did so far.
struct Applied {
    written: BTreeSet<String>,
    /// Keys left alone because they changed during the sync, with the local hash planned on.
    deferred: BTreeMap<String, Option<String>>,
    refused: BTreeSet<String>,
}

fn local_write_key(w: &LocalWrite) -> &str {
    match w {
        LocalWrite::Write { key, .. } | LocalWrite::Delete { key } => key,
    }
}

/// What the deletion safety counts as one item: a session's message items count as one (deleting
/// a session deletes all its messages), every other key as itself.
fn deletion_unit(key: &str) -> &str {
    match key.strip_prefix("messages/") {
        Some(rest) if rest.matches('/').count() == 2 => &key[..key.rfind('/').unwrap_or(key.len())],
        _ => key,
    }
}

/// Position of a key's category in [`Category::ALL`] (parents before children).
fn category_rank(key: &str) -> usize {
    Category::of_key(key).and_then(|c| Category::ALL.iter().position(|x| *x == c)).unwrap_or(usize::MAX)
}

fn describe_conflict(c: &merge::Conflict) -> String {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    let place = if c.path.is_empty() { "whole item".to_string() } else { c.path.clone() };
    format!("{place}: local {} vs remote {}", show(&c.local), show(&c.remote))
}

/// When the two sides disagree on the kind (e.g. one machine saw invalid UTF-8), the most
/// conservative kind wins: binary over text over JSONL over the JSON kinds (JSONC over JSON over
/// session rows).
fn common_kind(a: MergeKind, b: MergeKind) -> MergeKind {
    let rank = |k: MergeKind| match k {
        MergeKind::Binary => 5,
        MergeKind::Text => 4,
        MergeKind::Jsonl => 3,
        MergeKind::Jsonc => 2,
        MergeKind::Json => 1,
        MergeKind::Rows => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}

mod planning;
mod recover;

#[cfg(test)]
mod tests;
