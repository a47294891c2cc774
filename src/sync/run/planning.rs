//! Planning one attempt: what each item needs (push, pull, merge, delete, nothing) given its local,
//! base and remote sides, collected into a [`Plan`]: the commit's changes, the local writes to do
//! once it is in, the new bases and the report. Remote items this machine will not take are
//! refused here (and remembered, see [`crate::sync::refusals`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::VectorClock;
use crate::remote::{sha256_hex, Changes, Entry, Manifest};
use crate::source::{Category, SourceError};
use crate::sync::progress::{Phase, Remaining};
use crate::sync::plan::{decide, Action, Local, Versioned};
use crate::sync::refusals::{self, Refusal};
use crate::sync::state::{BaseEntry, SyncState};

use super::{
    base_of, base_with, category_rank, refusable, round_bytes, FreshPrints, LocalItem, LocalWrite, Plan, Settled, SyncError, SyncOptions,
    SyncReport, Syncer,
};

/// What planning reads once per attempt, and the bytes pulled so far.
struct Round<'p> {
    manifest: &'p Manifest,
    state: &'p SyncState,
    opts: &'p SyncOptions,
    local: &'p BTreeMap<String, LocalItem>,
    now: u64,
    grace_ms: u64,
    pulled_bytes: u64,
}

/// One item's three sides, as planning sees them.
struct ItemSides<'p> {
    key: &'p str,
    local: Option<&'p LocalItem>,
    base: Option<&'p BaseEntry>,
    remote: Option<&'p Entry>,
    category: String,
}

impl ItemSides<'_> {
    /// The clock of the local side: the base's, bumped for `me` when the local item changed since
    /// (or is new).
    fn local_clock(&self, me: &str) -> VectorClock {
        let mut c = self.base.map(|b| b.clock.clone()).unwrap_or_default();
        let changed = self.local.map(|i| Some(i.hash.as_str())) != self.base.map(|b| b.hash.as_deref());
        if changed || self.base.is_none() {
            c.bump(me);
        }
        c
    }
}

impl Round<'_> {
    /// Whether pulling `r` would go over the round's byte budget (then it waits for the next round).
    fn over_budget(&self, r: &Entry) -> bool {
        self.pulled_bytes > 0 && self.pulled_bytes + r.size > round_bytes()
    }
}

impl<'a> Syncer<'a> {
    pub(super) fn plan(&self, manifest: &Manifest, state: &SyncState, opts: &SyncOptions) -> Result<Plan, SyncError> {
        let now = (self.now_ms)();
        let mut skipped = Vec::new();
        let mut later = BTreeSet::new();
        let mut fresh = FreshPrints::new();
        let (local, over_budget) = self.read_local(state, &mut skipped, &mut later, &mut fresh)?;
        // Files present but not syncable (symlinks, too large) are neither deletions nor pull
        // targets; items left for a later round are not touched in this one.
        let later_count = later.len() as u64;
        let untouchable: BTreeSet<String> = skipped.iter().map(|(k, _)| k.clone()).chain(later).collect();
        let skipped: Vec<String> = skipped.into_iter().map(|(k, r)| format!("{k}: {r}")).collect();
        let outright = self.outright_refusals(manifest);
        let synced = |key: &str| self.is_synced(key, manifest, &local, &outright);
        let keys = ordered_keys(&local, state, manifest, &synced);
        let mut plan = Plan {
            more: over_budget,
            fresh,
            changes: Changes { message: format!("oc-sync from {}", self.machine), ..Default::default() },
            writes: Vec::new(),
            new_bases: BTreeMap::new(),
            dropped_bases: Vec::new(),
            report: SyncReport { dry_run: opts.dry_run, skipped, ..Default::default() },
            refusals: Self::carried_refusals(manifest, state).chain(outright.clone()).collect(),
            remote_hashes: BTreeMap::new(),
        };
        if !opts.dry_run {
            if let Some(p) = self.progress {
                let left = self.remaining(manifest, state, &local, &untouchable, later_count, &synced);
                p.remaining(left.items, left.bytes);
            }
            self.prefetch_new_blobs(manifest, state, &local, &untouchable, &synced)?;
        }
        let grace_ms = u64::from(self.config.tombstone_grace_days) * 86_400_000;
        let mut round = Round { manifest, state, opts, local: &local, now, grace_ms, pulled_bytes: 0 };
        for key in keys {
            let key = key.as_str();
            if self.blocked.contains(key) {
                plan.report.blocked.push(key.to_string());
                continue;
            }
            if untouchable.contains(key) {
                continue;
            }
            plan.refusals.remove(key);
            self.plan_item(key, &mut round, &mut plan)?;
        }
        if !opts.allow_deletions {
            self.check_deletions(&plan.report, &local, state)?;
        }
        plan.report.refused = plan.refusals.iter().map(|(k, r)| r.line(k)).collect();
        Ok(plan)
    }

    /// Whether a key this machine does not hold locally is synced here: it has a source, is not
    /// refused outright, and (remote only) its source wants it.
    fn is_synced(&self, key: &str, manifest: &Manifest, local: &BTreeMap<String, LocalItem>, outright: &BTreeMap<String, Refusal>) -> bool {
        match (self.source_for(key), manifest.entries.get(key)) {
            (None, _) => false,
            _ if outright.contains_key(key) => false,
            (Some(src), Some(e)) if !local.contains_key(key) => src.wants_remote(key, e.modified_ms, e.size),
            (Some(_), _) => true,
        }
    }

    /// The work this sync has left, for its progress: remote content to download (as
    /// [`Self::prefetch_new_blobs`] picks it, without the round's budget), local items changed or
    /// deleted since their last sync, and items left unread for a later round (their size
    /// estimated, see [`Remaining::add_unread`]).
    fn remaining(
        &self,
        manifest: &Manifest,
        state: &SyncState,
        local: &BTreeMap<String, LocalItem>,
        untouchable: &BTreeSet<String>,
        later: u64,
        synced: &dyn Fn(&str) -> bool,
    ) -> Remaining {
        let mut left = Remaining::default();
        let base_hash = |k: &str| state.items.get(k).and_then(|b| b.hash.as_ref());
        for (k, e) in &manifest.entries {
            if !synced(k) || self.blocked.contains(k) || untouchable.contains(k) {
                continue;
            }
            match &e.hash {
                Some(h) if base_hash(k) != Some(h) && local.get(k).is_none_or(|i| &i.hash != h) => left.add(e.size),
                None if base_hash(k).is_some() && local.contains_key(k) => left.add(0),
                _ => {}
            }
        }
        let (mut read, mut read_bytes) = (0u64, 0u64);
        for (k, i) in local {
            if !i.unread && base_hash(k) != Some(&i.hash) && !self.blocked.contains(k) {
                left.add(i.bytes.len() as u64);
                read += 1;
                read_bytes += i.bytes.len() as u64;
            }
        }
        let deleted = state.items.iter().filter(|(k, b)| b.hash.is_some() && !local.contains_key(*k) && !untouchable.contains(*k) && synced(k)).count();
        left.items += deleted as u64;
        left.add_unread(later, read, read_bytes);
        left
    }

    /// Blobs this sync will download (remote content this machine has neither synced nor holds),
    /// up to the round's byte budget: a remote may fetch them in bulk.
    fn prefetch_new_blobs(
        &self,
        manifest: &Manifest,
        state: &SyncState,
        local: &BTreeMap<String, LocalItem>,
        untouchable: &BTreeSet<String>,
        synced: &dyn Fn(&str) -> bool,
    ) -> Result<(), SyncError> {
        let mut budget = 0u64;
        let wanted: BTreeSet<String> = manifest
            .entries
            .iter()
            .filter(|(k, _)| synced(k) && !self.blocked.contains(*k) && !untouchable.contains(*k))
            .filter_map(|(k, e)| {
                let h = e.hash.as_ref()?;
                let seen = state.items.get(k).and_then(|b| b.hash.as_ref()) == Some(h) || local.get(k).is_some_and(|i| &i.hash == h);
                (!seen).then(|| (h.clone(), e.size))
            })
            .take_while(|(_, size)| {
                budget += size;
                budget <= round_bytes()
            })
            .map(|(h, _)| h)
            .collect();
        if !wanted.is_empty() {
            if let Some(p) = self.progress {
                p.phase(Phase::Downloading);
            }
            self.remote.prefetch(&wanted.into_iter().collect::<Vec<_>>())?;
        }
        Ok(())
    }

    /// Decides one item and adds what it needs to the plan.
    fn plan_item(&self, key: &str, round: &mut Round<'_>, plan: &mut Plan) -> Result<(), SyncError> {
        let me = self.machine.as_str();
        let item = ItemSides {
            key,
            local: round.local.get(key),
            base: round.state.items.get(key),
            remote: round.manifest.entries.get(key),
            category: Category::of_key(key).map(|c| c.as_str()).unwrap_or("config").to_string(),
        };
        let local_obs = match item.local {
            Some(i) => Local::Present { hash: i.hash.clone() },
            None => Local::Absent,
        };
        let base_v = item.base.map(|b| Versioned { clock: b.clock.clone(), hash: b.hash.clone() });
        let remote_v = item.remote.map(|r| Versioned { clock: r.clock.clone(), hash: r.hash.clone() });
        let action = decide(&local_obs, base_v.as_ref(), remote_v.as_ref(), me);
        // After a passphrase change: send sealed items again, encrypted with the current key.
        let action = match (action, item.local, item.remote) {
            (Action::Nothing, Some(i), Some(r))
                if round.opts.reseal && !r.is_tombstone() && self.codec.is_some_and(|c| c.applies_to(key) && c.reseals(key, &i.bytes)) =>
            {
                Action::Push { deletion: false }
            }
            (a, _, _) => a,
        };
        match action {
            Action::Nothing => plan_expiry(&item, round, plan),
            Action::Adopt => {
                let r = item.remote.expect("adopt needs a remote entry");
                let bytes = item.local.map(|i| self.local_bytes(i)).transpose()?;
                plan.new_bases.insert(key.to_string(), (base_of(r, round.now), bytes));
            }
            Action::Push { deletion: false } | Action::EditWinsOverDeletion { keep_local: true } => {
                let over_deletion = matches!(action, Action::EditWinsOverDeletion { .. });
                self.plan_push(&item, over_deletion, round.now, plan)?;
            }
            Action::Push { deletion: true } => self.plan_tombstone(&item, round.now, plan),
            Action::Pull { deletion: true } => {
                let r = item.remote.expect("pull needs a remote entry");
                plan.writes.push((LocalWrite::Delete { key: key.to_string() }, item.local.map(|i| i.hash.clone())));
                plan.new_bases.insert(key.to_string(), (base_of(r, round.now), None));
                plan.report.deleted_local.push(key.to_string());
            }
            Action::Pull { deletion: false } | Action::EditWinsOverDeletion { keep_local: false } => self.plan_pull(&item, round, plan)?,
            Action::Merge => self.plan_merge(&item, round, plan)?,
        }
        Ok(())
    }

    /// Sends the local item (a new version; joined with the remote's clock when a local edit wins
    /// over a remote deletion).
    fn plan_push(&self, item: &ItemSides<'_>, over_deletion: bool, now: u64, plan: &mut Plan) -> Result<(), SyncError> {
        let me = self.machine.as_str();
        let (key, remote) = (item.key, item.remote);
        let local = item.local.expect("push needs a local item");
        let mut clock = item.local_clock(me);
        if remote.is_some_and(|r| r.clock == clock) {
            clock.bump(me); // a re-send of unchanged content (reseal) is still a new version
        }
        if let Some(r) = remote
            && over_deletion
        {
            clock = clock.join(&r.clock);
            clock.bump(me);
        }
        let entry = self.push_entry(key, local, clock, &item.category, remote, plan)?;
        plan.new_bases.insert(key.to_string(), (base_with(&entry, &local.hash, now), Some(self.local_bytes(local)?)));
        plan.changes.entries.insert(key.to_string(), entry);
        plan.report.pushed.push(key.to_string());
        Ok(())
    }

    /// Sends a local deletion as a tombstone.
    fn plan_tombstone(&self, item: &ItemSides<'_>, now: u64, plan: &mut Plan) {
        let me = self.machine.as_str();
        let entry = Entry {
            clock: item.local_clock(me),
            hash: None,
            size: 0,
            kind: item.base.map(|b| b.kind.clone()).unwrap_or_else(|| "binary".into()),
            category: item.category.clone(),
            modified_ms: now,
            machine: me.to_string(),
            deleted_ms: Some(now),
        };
        let key = item.key.to_string();
        plan.new_bases.insert(key.clone(), (base_of(&entry, now), None));
        plan.changes.entries.insert(key.clone(), entry);
        plan.report.deleted_remote.push(key);
    }

    /// The remote content of `key` for a pull or a merge. None when the round's byte budget is
    /// spent (the item waits for the next round) or the content is refused (remembered in `plan`).
    fn fetch_for_round(
        &self,
        key: &str,
        r: &Entry,
        local: Option<&LocalItem>,
        round: &mut Round<'_>,
        plan: &mut Plan,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        if round.over_budget(r) {
            plan.more = true;
            return Ok(None);
        }
        if self.still_refused(key, r, round.state, plan) {
            return Ok(None);
        }
        round.pulled_bytes += r.size;
        let bytes = self.fetch(key, r, local)?;
        if let Some(p) = self.progress
            && !round.opts.dry_run
        {
            p.done(Phase::Downloading, 0, r.size);
        }
        if self.refuses_content(key, r, &bytes, plan)? {
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Takes the remote content (unless over the round's budget or refused).
    fn plan_pull(&self, item: &ItemSides<'_>, round: &mut Round<'_>, plan: &mut Plan) -> Result<(), SyncError> {
        let (key, l) = (item.key, item.local);
        let r = item.remote.expect("pull needs a remote entry");
        let Some(bytes) = self.fetch_for_round(key, r, l, round, plan)? else { return Ok(()) };
        plan.remote_hashes.insert(key.to_string(), r.hash.clone());
        plan.writes.push((LocalWrite::Write { key: key.to_string(), bytes: bytes.clone() }, l.map(|i| i.hash.clone())));
        plan.new_bases.insert(key.to_string(), (base_with(r, &sha256_hex(&bytes), round.now), Some(bytes)));
        plan.report.pulled.push(key.to_string());
        Ok(())
    }

    /// Merges an item both sides changed (unless over the round's budget or refused) and settles
    /// its conflicts by the strategy.
    fn plan_merge(&self, item: &ItemSides<'_>, round: &mut Round<'_>, plan: &mut Plan) -> Result<(), SyncError> {
        let key = item.key;
        let local = item.local.expect("merge needs a local item");
        debug_assert!(!local.unread, "an unread item equals its base, so it never needs a merge");
        let r = item.remote.expect("merge needs a remote entry");
        let Some(remote_bytes) = self.fetch_for_round(key, r, Some(local), round, plan)? else { return Ok(()) };
        if !round.opts.dry_run {
            // The merge's local side: the base of a later merge if this sync is cut
            // off before its local write (see crate::sync::intent).
            self.state.put_base(&local.bytes)?;
        }
        let base_bytes = item.base.and_then(|b| b.hash.as_deref()).and_then(|h| self.state.base(h));
        let local_clock = item.local_clock(&self.machine);
        match self.settle(key, local, r, &remote_bytes, base_bytes.as_deref(), local_clock.clone()) {
            Settled::Blocked(conflict) => {
                plan.report.blocked.push(key.to_string());
                plan.report.conflicts.push(conflict);
            }
            Settled::Result { bytes, conflict } => {
                let mut clock = local_clock.join(&r.clock);
                clock.bump(&self.machine);
                self.plan_merged(item, bytes, clock, round.now, plan)?;
                plan.report.conflicts.extend(conflict);
            }
        }
        Ok(())
    }

    /// Commits the merge result `bytes` with `clock`, and writes it locally when it differs from
    /// the local item.
    fn plan_merged(&self, item: &ItemSides<'_>, bytes: Vec<u8>, clock: VectorClock, now: u64, plan: &mut Plan) -> Result<(), SyncError> {
        let key = item.key;
        let local = item.local.expect("merge needs a local item");
        let merged_item = LocalItem { hash: sha256_hex(&bytes), kind: local.kind, modified_ms: now, bytes, unread: false };
        let entry = self.push_entry(key, &merged_item, clock, &item.category, item.remote, plan)?;
        if merged_item.hash != local.hash {
            plan.remote_hashes.insert(key.to_string(), entry.hash.clone());
            plan.writes.push((LocalWrite::Write { key: key.to_string(), bytes: merged_item.bytes.clone() }, Some(local.hash.clone())));
        }
        plan.new_bases.insert(key.to_string(), (base_with(&entry, &merged_item.hash, now), Some(merged_item.bytes)));
        plan.changes.entries.insert(key.to_string(), entry);
        plan.report.merged.push(key.to_string());
        Ok(())
    }

    /// The refusals remembered for remote entries that have not changed since.
    fn carried_refusals<'m>(manifest: &'m Manifest, state: &'m SyncState) -> impl Iterator<Item = (String, Refusal)> + 'm {
        state
            .refused
            .iter()
            .filter(|(k, r)| manifest.entries.get(*k).is_some_and(|e| e.hash == r.hash))
            .map(|(k, r)| (k.clone(), r.clone()))
    }

    /// The live remote keys refused outright, never fetched: keys the remote itself will not
    /// serve (not plain files there) and keys outside their category's shape or synced set.
    fn outright_refusals(&self, manifest: &Manifest) -> BTreeMap<String, Refusal> {
        let condition = refusals::condition(self.config, "");
        let mut out = BTreeMap::new();
        let from_remote = self.remote.refused_keys().into_iter().filter(|(k, _)| self.source_for(k).is_some());
        let by_shape = manifest
            .entries
            .iter()
            .filter(|(_, e)| !e.is_tombstone())
            .filter_map(|(k, _)| Some((k.clone(), self.source_for(k)?.refuse_key(k)?)));
        // A key the remote refuses may have no entry at all (format 2: a symbolic link or a
        // submodule where an item file should be has no header); it is refused by name all the same.
        for (key, reason) in from_remote.chain(by_shape) {
            if out.contains_key(&key) {
                continue;
            }
            tracing::warn!("refusing remote item {key}: {reason}");
            let hash = manifest.entries.get(&key).and_then(|e| e.hash.clone());
            out.insert(key, Refusal { hash, reason, condition: condition.clone() });
        }
        out
    }

    /// Whether `key` was refused before at this remote hash, with nothing changed here since: then
    /// it is listed again and not downloaded.
    fn still_refused(&self, key: &str, r: &Entry, state: &SyncState, plan: &mut Plan) -> bool {
        let Some(old) = state.refused.get(key) else { return false };
        if !old.holds(r.hash.as_ref(), &self.refusal_condition(key)) {
            return false;
        }
        plan.refusals.insert(key.to_string(), old.clone());
        true
    }

    /// Checks fetched remote content against its key; a mismatch refuses the item (nothing of
    /// it is merged, written or pushed).
    fn refuses_content(&self, key: &str, r: &Entry, bytes: &[u8], plan: &mut Plan) -> Result<bool, SyncError> {
        let Some(src) = self.source_for(key) else { return Ok(false) };
        match src.check_content(key, bytes) {
            Ok(()) => Ok(false),
            Err(e) if refusable(&e) => {
                self.remember_refusal(key, r.hash.clone(), &e, plan);
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn remember_refusal(&self, key: &str, hash: Option<String>, e: &SourceError, plan: &mut Plan) {
        tracing::warn!("refusing remote item {key}: {e}");
        let reason = match e {
            SourceError::KeyRefused { reason, .. } => reason.clone(),
            e => e.to_string(),
        };
        plan.refusals.insert(key.to_string(), Refusal { hash, reason, condition: self.refusal_condition(key) });
    }

    fn refusal_condition(&self, key: &str) -> String {
        let source = self.source_for(key).map(|s| s.write_condition(key)).unwrap_or_default();
        refusals::condition(self.config, &source)
    }
}

/// Expires an old tombstone this machine has already applied (nothing else to do for the item).
fn plan_expiry(item: &ItemSides<'_>, round: &Round<'_>, plan: &mut Plan) {
    if let (Some(r), None) = (item.remote, item.local)
        && r.is_tombstone()
        && r.deleted_ms.is_some_and(|d| round.now.saturating_sub(d) > round.grace_ms)
    {
        plan.changes.removed.push(item.key.to_string());
        plan.dropped_bases.push(item.key.to_string());
        plan.report.expired.push(item.key.to_string());
    }
}

/// Every key this sync looks at: local items, synced bases and synced remote entries; parents
/// first (a session before its messages), so that when the round's byte budget runs out, what was
/// taken can be written.
fn ordered_keys<'k>(
    local: &'k BTreeMap<String, LocalItem>,
    state: &'k SyncState,
    manifest: &'k Manifest,
    synced: &dyn Fn(&str) -> bool,
) -> Vec<&'k String> {
    let keys: BTreeSet<&String> = local
        .keys()
        .chain(state.items.keys().filter(|k| synced(k)))
        .chain(manifest.entries.keys().filter(|k| synced(k)))
        .collect();
    let mut keys: Vec<&String> = keys.into_iter().collect();
    keys.sort_by_key(|k| (category_rank(k), *k));
    keys
}
