//! Vector clocks: one counter per machine, used to tell whether one version of an item
//! happened before another or whether two machines changed it concurrently.
//!
//! Serialized as a plain JSON object, e.g. `{"laptop":3,"desktop":1}`. A missing machine
//! counts as 0, so `{}` and `{"a":0}` compare `Equal`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How two clocks relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOrder {
    /// Same history.
    Equal,
    /// `self` happened before `other` (other has seen everything self has, and more).
    Before,
    /// `self` happened after `other`.
    After,
    /// Neither has seen all of the other's changes: a real conflict.
    Concurrent,
}

impl ClockOrder {
    /// The relation seen from the other side.
    pub fn reverse(self) -> ClockOrder {
        match self {
            ClockOrder::Before => ClockOrder::After,
            ClockOrder::After => ClockOrder::Before,
            o => o,
        }
    }
}

/// A vector clock: machine id → number of changes that machine made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VectorClock(pub BTreeMap<String, u64>);

impl VectorClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter for `machine` (0 when absent).
    pub fn get(&self, machine: &str) -> u64 {
        self.0.get(machine).copied().unwrap_or(0)
    }

    /// True when no machine has a non-zero counter.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|&v| v == 0)
    }

    /// Records one more change by `machine`. Saturates instead of overflowing.
    pub fn bump(&mut self, machine: &str) {
        let c = self.0.entry(machine.to_owned()).or_insert(0);
        *c = c.saturating_add(1);
    }

    /// Pointwise maximum: the clock of a version that has seen both histories.
    pub fn join(&self, other: &VectorClock) -> VectorClock {
        let mut out = self.0.clone();
        for (m, &v) in &other.0 {
            let e = out.entry(m.clone()).or_insert(0);
            *e = (*e).max(v);
        }
        VectorClock(out)
    }

    /// Compares two clocks (absent counters are 0).
    pub fn compare(&self, other: &VectorClock) -> ClockOrder {
        let mut less = false; // some counter of self < other
        let mut greater = false; // some counter of self > other
        for m in self.0.keys().chain(other.0.keys()) {
            match self.get(m).cmp(&other.get(m)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
            if less && greater {
                return ClockOrder::Concurrent;
            }
        }
        match (less, greater) {
            (false, false) => ClockOrder::Equal,
            (true, false) => ClockOrder::Before,
            (false, true) => ClockOrder::After,
            (true, true) => ClockOrder::Concurrent,
        }
    }
}

impl FromIterator<(String, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> Self {
        VectorClock(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vc(pairs: &[(&str, u64)]) -> VectorClock {
        pairs.iter().map(|(m, v)| (m.to_string(), *v)).collect()
    }

    #[test]
    fn serde_is_plain_object() {
        let c = vc(&[("machineA", 3), ("b", 1)]);
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"b":1,"machineA":3}"#);
        let back: VectorClock = serde_json::from_str(r#"{"machineA":3,"b":1}"#).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<VectorClock>(r#"{"a":-1}"#).is_err());
        assert!(serde_json::from_str::<VectorClock>(r#"[1]"#).is_err());
    }

    #[test]
    fn compare_basic() {
        let a = vc(&[("a", 1)]);
        let b = vc(&[("a", 1), ("b", 1)]);
        let c = vc(&[("a", 2)]);
        assert_eq!(a.compare(&a), ClockOrder::Equal);
        assert_eq!(a.compare(&b), ClockOrder::Before);
        assert_eq!(b.compare(&a), ClockOrder::After);
        assert_eq!(b.compare(&c), ClockOrder::Concurrent);
        assert_eq!(
            VectorClock::new().compare(&vc(&[("x", 0)])),
            ClockOrder::Equal
        );
        assert_eq!(VectorClock::new().compare(&a), ClockOrder::Before);
    }

    #[test]
    fn bump_get_empty_join() {
        let mut c = VectorClock::new();
        assert!(c.is_empty());
        assert_eq!(c.get("m"), 0);
        c.bump("m");
        c.bump("m");
        assert_eq!(c.get("m"), 2);
        assert!(!c.is_empty());
        let j = c.join(&vc(&[("m", 1), ("n", 5)]));
        assert_eq!(j, vc(&[("m", 2), ("n", 5)]));
        let mut max = vc(&[("m", u64::MAX)]);
        max.bump("m");
        assert_eq!(max.get("m"), u64::MAX);
    }

    fn arb_clock() -> impl Strategy<Value = VectorClock> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "d"]),
            0u64..5,
            0..4,
        )
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    proptest! {
        #[test]
        fn join_commutative(a in arb_clock(), b in arb_clock()) {
            prop_assert_eq!(a.join(&b), b.join(&a));
        }

        #[test]
        fn join_associative(a in arb_clock(), b in arb_clock(), c in arb_clock()) {
            prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        }

        #[test]
        fn join_idempotent(a in arb_clock()) {
            prop_assert_eq!(a.join(&a), a.clone());
        }

        #[test]
        fn join_is_upper_bound(a in arb_clock(), b in arb_clock()) {
            let j = a.join(&b);
            prop_assert!(matches!(a.compare(&j), ClockOrder::Before | ClockOrder::Equal));
            prop_assert!(matches!(b.compare(&j), ClockOrder::Before | ClockOrder::Equal));
        }

        #[test]
        fn bump_is_after(a in arb_clock(), m in prop::sample::select(vec!["a", "b", "z"])) {
            let mut b = a.clone();
            b.bump(m);
            prop_assert_eq!(b.compare(&a), ClockOrder::After);
            prop_assert_eq!(a.compare(&b), ClockOrder::Before);
        }

        #[test]
        fn compare_antisymmetric(a in arb_clock(), b in arb_clock()) {
            prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
        }
    }
}
