//! Recovery through the commit journal ([`crate::sync::intent`]): an attempt journals what it is
//! about to commit and write locally before the compare-and-swap, and the next attempt settles a
//! journal left behind (adopting the commit's bases and finishing its local writes when it landed).

use std::collections::BTreeMap;

use crate::remote::{sha256_hex, Manifest, Version};
use crate::sync::intent::{landed, merged_side_base, Intent, IntentItem, IntentStore, Settled, INTENT_FORMAT};
use crate::sync::state::{BaseEntry, SyncState};

use super::{LocalWrite, Plan, SyncError, Syncer};

impl Syncer<'_> {
    /// Journals what this attempt is about to commit and write locally (see [`crate::sync::intent`]),
    /// durably, with the content of every base it implies already in the base store.
    pub(super) fn record_intent(&self, expected: Option<&Version>, plan: &Plan) -> Result<(), SyncError> {
        let pending: BTreeMap<&str, &Option<String>> = plan
            .writes
            .iter()
            .map(|(w, exp)| match w {
                LocalWrite::Write { key, .. } | LocalWrite::Delete { key } => (key.as_str(), exp),
            })
            .collect();
        let mut items = BTreeMap::new();
        for key in plan.changes.entries.keys().map(String::as_str).chain(pending.keys().copied()) {
            let Some((base, bytes)) = plan.new_bases.get(key) else { continue };
            if let Some(b) = bytes {
                self.state.put_base(b)?;
            }
            let write_over = pending.get(key).map(|e| (*e).clone());
            let committed = plan.changes.entries.contains_key(key);
            items.insert(key.to_string(), IntentItem { base: base.clone(), write_over, committed });
        }
        let intent = Intent {
            format: INTENT_FORMAT,
            remote: self.remote.describe(),
            expected: expected.map(|v| v.0.clone()),
            items,
            removed: plan.changes.removed.clone(),
        };
        self.state.sync_bases()?;
        IntentStore::new(&self.state).save(&intent)?;
        Ok(())
    }

    /// Settles a pending intent (see [`crate::sync::intent`]) against the remote's current manifest;
    /// `state` is updated and saved when the commit landed. None: there was no intent.
    pub(crate) fn settle_intent(&self, manifest: &Manifest, state: &mut SyncState) -> Result<Option<Settled>, SyncError> {
        let store = IntentStore::new(&self.state);
        let Some(intent) = store.load()? else { return Ok(None) };
        if intent.remote != self.remote.describe() || !landed(&intent, manifest, state) {
            tracing::info!("the last sync's commit did not reach the remote; nothing to adopt");
            store.clear()?;
            return Ok(Some(Settled::Discarded));
        }
        let applied = store.applied();
        let (mut written, mut left) = (0, 0);
        for (key, item) in &intent.items {
            if state.items.get(key) == Some(&item.base) {
                continue; // already adopted (the state was saved before the journal was cleared)
            }
            if let Some(expected) = &item.write_over
                && !applied.contains(key)
            {
                match self.finish_write(key, item, expected.as_deref(), state.items.get(key))? {
                    true => written += 1,
                    false => {
                        left += 1;
                        if let Some(b) = item.committed.then(|| merged_side_base(&self.state, &item.base, expected.as_deref(), state.items.get(key))).flatten() {
                            state.items.insert(key.clone(), b);
                        }
                        continue;
                    }
                }
            }
            state.items.insert(key.clone(), item.base.clone());
        }
        for key in &intent.removed {
            state.items.remove(key);
        }
        self.state.save(state)?;
        store.clear()?;
        tracing::info!("the last sync's commit had reached the remote: adopted it ({written} local writes finished, {left} left to merge)");
        Ok(Some(Settled::Adopted { written, left }))
    }

    /// Whether the local item of `key` holds the intent's content: already (true), or written now
    /// (a merge whose local item is still `expected`; pulls are left to the plan). False: left
    /// alone (edited before the write happened, unreadable).
    fn finish_write(&self, key: &str, item: &IntentItem, expected: Option<&str>, old: Option<&BaseEntry>) -> Result<bool, SyncError> {
        let Some(src) = self.source_for(key) else { return Ok(false) };
        let target = item.base.hash.as_deref();
        let now = match src.read(key) {
            Ok(item) => item.map(|i| sha256_hex(&i.bytes)),
            Err(e) => {
                tracing::warn!("cannot finish the write of {key}: {e}; the next sync merges it");
                return Ok(false);
            }
        };
        if now.as_deref() == target {
            return Ok(true);
        }
        if !item.committed || now.as_deref() != expected {
            return Ok(false); // a pull (planned again), or edited since: merged with the old base
        }
        let Some(bytes) = target.and_then(|t| self.state.base(t)) else { return Ok(false) };
        if let Some(f) = self.on_local_write {
            f(key, false);
        }
        let old_bytes = old.and_then(|b| b.hash.as_deref()).and_then(|h| self.state.base(h));
        let result = src.write_over(key, &bytes, old_bytes.as_deref());
        if let Some(f) = self.on_local_write {
            f(key, true);
        }
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!("cannot finish the write of {key}: {e}; the next sync merges it");
                Ok(false)
            }
        }
    }
}
