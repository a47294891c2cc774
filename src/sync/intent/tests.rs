use super::*;
use crate::clock::VectorClock;
use crate::remote::Entry;

fn clock(pairs: &[(&str, u64)]) -> VectorClock {
    let mut c = VectorClock::new();
    for (m, n) in pairs {
        for _ in 0..*n {
            c.bump(m);
        }
    }
    c
}

fn base(c: &VectorClock) -> BaseEntry {
    BaseEntry { clock: c.clone(), hash: Some("h".into()), kind: "json".into(), category: "config".into(), synced_ms: 0, fingerprint: None }
}

fn entry(c: &VectorClock) -> Entry {
    Entry { clock: c.clone(), hash: Some("h".into()), size: 1, kind: "json".into(), category: "config".into(), modified_ms: 0, machine: "a".into(), deleted_ms: None }
}

fn intent(c: &VectorClock) -> Intent {
    Intent {
        format: INTENT_FORMAT,
        remote: "r".into(),
        expected: None,
        items: [("config/a.json".to_string(), IntentItem { base: base(c), write_over: None, committed: true })].into(),
        removed: vec![],
    }
}

#[test]
fn a_commit_landed_when_the_remote_holds_its_clock_or_a_later_one() {
    let old = clock(&[("a", 1)]);
    let committed = clock(&[("a", 2), ("b", 1)]);
    let mut state = SyncState::default();
    state.items.insert("config/a.json".into(), base(&old));
    let i = intent(&committed);
    let mut m = Manifest::default();
    assert!(!landed(&i, &m, &state), "absent on the remote");
    m.entries.insert("config/a.json".into(), entry(&clock(&[("b", 1), ("a", 1)])));
    assert!(!landed(&i, &m, &state), "the remote still has the version before the commit");
    m.entries.insert("config/a.json".into(), entry(&committed));
    assert!(landed(&i, &m, &state), "the remote holds the commit");
    m.entries.insert("config/a.json".into(), entry(&clock(&[("a", 2), ("b", 2)])));
    assert!(landed(&i, &m, &state), "the remote moved on from the commit");
    // A clock this machine's state already knows says nothing about this commit.
    state.items.insert("config/a.json".into(), base(&committed));
    assert!(!landed(&i, &m, &state));
}

#[test]
fn the_journal_round_trips_and_a_damaged_one_is_ignored() {
    let t = tempfile::tempdir().unwrap();
    let store = IntentStore::new(&StateStore::new(t.path()));
    assert_eq!(store.load().unwrap(), None);
    let i = intent(&clock(&[("a", 1)]));
    store.save(&i).unwrap();
    assert_eq!(store.load().unwrap(), Some(i));
    std::fs::write(t.path().join("intent.json"), "{ torn").unwrap();
    assert_eq!(store.load().unwrap(), None);
    store.clear().unwrap();
    store.clear().unwrap();
}

/// A pull of an item absent here journals `write_over: Some(None)`: it must come back as such (not
/// as "no write"), else a sync cut off after its commit adopts the base of a pull it never wrote
/// and the next sync takes the item for deleted here.
#[test]
fn a_pending_write_of_a_new_item_survives_the_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let store = IntentStore::new(&StateStore::new(t.path()));
    let mut i = intent(&clock(&[("a", 1)]));
    for (n, w) in [None, Some(None), Some(Some("h0".to_string()))].into_iter().enumerate() {
        i.items.insert(format!("config/{n}.json"), IntentItem { base: base(&clock(&[("a", 1)])), write_over: w, committed: false });
    }
    store.save(&i).unwrap();
    assert_eq!(store.load().unwrap(), Some(i));
}
