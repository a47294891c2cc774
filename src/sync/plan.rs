//! The per-item decision of a sync, as a pure function of three observations:
//!
//! - the local content now (absent, or present with a content hash),
//! - the *base*: what this machine last synced for the item (its vector clock and content hash;
//!   a `None` hash is a synced deletion), or nothing if it never synced the item,
//! - the remote entry (clock and hash; a `None` hash is a tombstone), or nothing.
//!
//! "Local changed" means the local content differs from the base content. A local change is
//! conceptually a new event of this machine, so the local clock is the base clock bumped for this
//! machine; comparing it with the remote clock gives equal / local ahead / remote ahead / concurrent.
//! Equal content on both sides never needs a merge, whatever the clocks say: the machine then adopts
//! the remote's clock (the remote's version already covers that content).
//! A deletion concurrent with an edit keeps the edit.
//! A local change is never pulled over: if the remote's clock looks newer than the changed local
//! item, this machine's base is stale (a commit of its own landed unheard), so it is a merge.

use crate::clock::{ClockOrder, VectorClock};

/// What this machine has for an item now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Absent,
    Present { hash: String },
}

impl Local {
    fn hash(&self) -> Option<&str> {
        match self {
            Local::Absent => None,
            Local::Present { hash } => Some(hash),
        }
    }
}

/// A versioned observation: the clock and the content hash (`None` = deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub clock: VectorClock,
    pub hash: Option<String>,
}

/// What to do with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed anywhere.
    Nothing,
    /// Both sides hold the same content: record the remote's version as the new base, no I/O.
    Adopt,
    /// Send the local content (or the local deletion, as a tombstone) with the local clock.
    Push { deletion: bool },
    /// Take the remote content (or delete the local file for a remote tombstone).
    Pull { deletion: bool },
    /// Both changed the item since the base: three-way merge (or settle by strategy).
    Merge,
    /// A local deletion met a remote edit (or the reverse): the edit wins. `keep_local` says
    /// whether the surviving edit is the local one (push it) or the remote one (pull it).
    EditWinsOverDeletion { keep_local: bool },
}

/// Decides what one sync does with one item. `me` is this machine's id.
pub fn decide(local: &Local, base: Option<&Versioned>, remote: Option<&Versioned>, me: &str) -> Action {
    let local_hash = local.hash();
    let base_hash = base.and_then(|b| b.hash.as_deref());
    let local_changed = match base {
        Some(_) => local_hash != base_hash,
        None => local_hash.is_some(),
    };
    let Some(remote) = remote else {
        // The remote has no entry: new here, or the remote forgot it (expired tombstone, new remote).
        return match (local_hash, local_changed) {
            (Some(_), _) => Action::Push { deletion: false },
            (None, _) => Action::Nothing,
        };
    };
    let remote_hash = remote.hash.as_deref();
    if local_hash == remote_hash {
        return if base.is_some_and(|b| b.clock == remote.clock && b.hash == remote.hash) {
            Action::Nothing
        } else {
            Action::Adopt
        };
    }
    let local_clock = match (base, local_changed) {
        (Some(b), false) => b.clock.clone(),
        (Some(b), true) => {
            let mut c = b.clock.clone();
            c.bump(me);
            c
        }
        (None, true) => {
            let mut c = VectorClock::new();
            c.bump(me);
            c
        }
        (None, false) => VectorClock::new(),
    };
    let order = if base.is_none() && local_hash.is_some() {
        // Created here without knowing the remote's item: concurrent with whatever the remote has.
        ClockOrder::Concurrent
    } else {
        local_clock.compare(&remote.clock)
    };
    match order {
        ClockOrder::Equal | ClockOrder::After => {
            if local_changed || order == ClockOrder::After {
                Action::Push { deletion: local_hash.is_none() }
            } else {
                Action::Nothing
            }
        }
        ClockOrder::Before if !local_changed => Action::Pull { deletion: remote_hash.is_none() },
        // A local change is an event the remote cannot have seen (equal content was handled
        // above): a remote that looks newer only means this machine's base is stale (a commit of
        // its own landed unanswered). Never a pull over the change: merge it.
        ClockOrder::Before | ClockOrder::Concurrent => match (local_hash, remote_hash) {
            (Some(_), Some(_)) => Action::Merge,
            (Some(_), None) => Action::EditWinsOverDeletion { keep_local: true },
            (None, Some(_)) => Action::EditWinsOverDeletion { keep_local: false },
            (None, None) => Action::Adopt,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(pairs: &[(&str, u64)]) -> VectorClock {
        let mut c = VectorClock::new();
        for (m, n) in pairs {
            for _ in 0..*n {
                c.bump(m);
            }
        }
        c
    }
    fn v(pairs: &[(&str, u64)], hash: Option<&str>) -> Versioned {
        Versioned { clock: clock(pairs), hash: hash.map(str::to_owned) }
    }
    fn present(h: &str) -> Local {
        Local::Present { hash: h.into() }
    }

    #[test]
    fn new_local_item_is_pushed() {
        assert_eq!(decide(&present("a"), None, None, "m1"), Action::Push { deletion: false });
    }

    #[test]
    fn new_remote_item_is_pulled() {
        assert_eq!(decide(&Local::Absent, None, Some(&v(&[("m2", 1)], Some("b"))), "m1"), Action::Pull { deletion: false });
    }

    #[test]
    fn unchanged_everywhere_is_nothing() {
        let b = v(&[("m1", 2)], Some("a"));
        assert_eq!(decide(&present("a"), Some(&b), Some(&b.clone()), "m1"), Action::Nothing);
    }

    #[test]
    fn local_edit_is_pushed_remote_edit_is_pulled() {
        let b = v(&[("m1", 1), ("m2", 1)], Some("a"));
        assert_eq!(decide(&present("x"), Some(&b), Some(&b.clone()), "m1"), Action::Push { deletion: false });
        let r = v(&[("m1", 1), ("m2", 2)], Some("y"));
        assert_eq!(decide(&present("a"), Some(&b), Some(&r), "m1"), Action::Pull { deletion: false });
    }

    #[test]
    fn both_edited_is_a_merge() {
        let b = v(&[("m1", 1)], Some("a"));
        let r = v(&[("m1", 1), ("m2", 1)], Some("y"));
        assert_eq!(decide(&present("x"), Some(&b), Some(&r), "m1"), Action::Merge);
    }

    #[test]
    fn same_content_on_both_sides_is_adopted_without_merge() {
        let b = v(&[("m1", 1)], Some("a"));
        let r = v(&[("m1", 1), ("m2", 1)], Some("x"));
        assert_eq!(decide(&present("x"), Some(&b), Some(&r), "m1"), Action::Adopt);
        // Two machines created the same file independently.
        assert_eq!(decide(&present("x"), None, Some(&r), "m1"), Action::Adopt);
    }

    #[test]
    fn independently_created_different_files_merge() {
        let r = v(&[("m2", 1)], Some("y"));
        assert_eq!(decide(&present("x"), None, Some(&r), "m1"), Action::Merge);
    }

    #[test]
    fn deletions_travel_as_tombstones() {
        let b = v(&[("m1", 1)], Some("a"));
        assert_eq!(decide(&Local::Absent, Some(&b), Some(&b.clone()), "m1"), Action::Push { deletion: true });
        let tomb = v(&[("m1", 1), ("m2", 1)], None);
        assert_eq!(decide(&present("a"), Some(&b), Some(&tomb), "m1"), Action::Pull { deletion: true });
        // Already deleted on both sides.
        assert_eq!(decide(&Local::Absent, Some(&v(&[("m1", 1)], None)), Some(&tomb), "m1"), Action::Adopt);
    }

    #[test]
    fn deletion_concurrent_with_edit_keeps_the_edit() {
        let b = v(&[("m1", 1)], Some("a"));
        let remote_edit = v(&[("m1", 1), ("m2", 1)], Some("y"));
        assert_eq!(decide(&Local::Absent, Some(&b), Some(&remote_edit), "m1"), Action::EditWinsOverDeletion { keep_local: false });
        let remote_delete = v(&[("m1", 1), ("m2", 1)], None);
        assert_eq!(decide(&present("x"), Some(&b), Some(&remote_delete), "m1"), Action::EditWinsOverDeletion { keep_local: true });
    }

    #[test]
    fn remote_that_forgot_an_item_gets_it_back() {
        let b = v(&[("m1", 1)], Some("a"));
        assert_eq!(decide(&present("a"), Some(&b), None, "m1"), Action::Push { deletion: false });
        assert_eq!(decide(&Local::Absent, Some(&b), None, "m1"), Action::Nothing);
    }

    #[test]
    fn remote_behind_the_base_is_brought_forward() {
        // The remote was restored from an older state: this machine's base is ahead.
        let b = v(&[("m1", 3)], Some("a"));
        let r = v(&[("m1", 2)], Some("old"));
        assert_eq!(decide(&present("a"), Some(&b), Some(&r), "m1"), Action::Push { deletion: false });
    }

    #[test]
    fn a_local_change_is_never_pulled_over_even_when_the_remote_looks_newer() {
        // This machine's merge {m1:2, m2:1} landed but its base stayed at {m1:1} (answer lost);
        // then the person edited again: the remote looks newer than the edit. Merge, never pull.
        let b = v(&[("m1", 1)], Some("a"));
        let r = v(&[("m1", 2), ("m2", 1)], Some("merged"));
        assert_eq!(decide(&present("edited"), Some(&b), Some(&r), "m1"), Action::Merge);
        assert_eq!(decide(&Local::Absent, Some(&b), Some(&r), "m1"), Action::EditWinsOverDeletion { keep_local: false });
        let tomb = v(&[("m1", 2), ("m2", 1)], None);
        assert_eq!(decide(&present("edited"), Some(&b), Some(&tomb), "m1"), Action::EditWinsOverDeletion { keep_local: true });
        // Unchanged here: a plain pull.
        assert_eq!(decide(&present("a"), Some(&b), Some(&r), "m1"), Action::Pull { deletion: false });
    }

    #[test]
    fn decisions_are_mirror_images_across_machines() {
        // m1 edited, m2 did not: m1 pushes; after that m2 pulls.
        let b = v(&[("m1", 1), ("m2", 1)], Some("a"));
        assert_eq!(decide(&present("x"), Some(&b), Some(&b.clone()), "m1"), Action::Push { deletion: false });
        let after_push = v(&[("m1", 2), ("m2", 1)], Some("x"));
        assert_eq!(decide(&present("a"), Some(&b), Some(&after_push), "m2"), Action::Pull { deletion: false });
    }
}
