//! Property tests for `merge` across kinds.
//!
//! Inputs are drawn from small alphabets (few keys, few distinct lines) so that the three sides
//! overlap a lot and conflicts, deletions and identical additions actually happen.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::json::merge_values;
use super::{MergeKind, MergeOutcome, Side, merge};

const CASES: u32 = 256;

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "model", "ключ", "日本", "a/b~"])
        .prop_map(str::to_string)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::from),
        prop::sample::select(vec!["x", "y", "é", "🦀", "quote\"", "line\nbreak", ""])
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly objects (the real case), sometimes any value.
fn doc() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => btree_map(key(), value(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => value(),
    ]
}

/// A "descendant" of `base`: either base itself, a random doc, or base with some top-level edits.
fn triple() -> impl Strategy<Value = (Value, Value, Value)> {
    doc().prop_flat_map(|base| {
        let b = base.clone();
        (Just(base.clone()), descendant(b.clone()), descendant(b))
    })
}

fn descendant(base: Value) -> impl Strategy<Value = Value> {
    let edited = {
        let base = base.clone();
        vec((key(), prop::option::of(value())), 0..3).prop_map(move |edits| match &base {
            Value::Object(m) => {
                let mut m = m.clone();
                for (k, v) in edits {
                    match v {
                        Some(v) => {
                            m.insert(k, v);
                        }
                        None => {
                            m.shift_remove(&k);
                        }
                    }
                }
                Value::Object(m)
            }
            other => other.clone(),
        })
    };
    prop_oneof![2 => Just(base), 4 => edited, 1 => doc()]
}

/// Renders a value as JSONC with a line comment before every top-level key (`// about <key>`), a
/// block comment inside, and trailing commas.
fn to_jsonc(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut s = String::from("{\n  /* header */\n");
            for (k, v) in m {
                s.push_str(&format!(
                    "  // about {k}\n  {}: {}, /* after */\n",
                    Value::from(k.as_str()),
                    v
                ));
            }
            s.push_str("}\n");
            s
        }
        other => format!("// root\n{other}\n"),
    }
}

fn json_of(out: &MergeOutcome) -> Value {
    crate::jsonc::parse(std::str::from_utf8(&out.bytes).unwrap())
        .unwrap()
        .unwrap_or_else(|| Value::Object(Map::new()))
}

fn text_lines(bytes: &[u8]) -> Vec<String> {
    std::str::from_utf8(bytes)
        .unwrap()
        .replace("\r\n", "\n")
        .lines()
        .map(str::to_string)
        .collect()
}

fn line_doc() -> impl Strategy<Value = Vec<String>> {
    vec(
        prop::sample::select(vec!["a", "b", "c", "d", "é", "日本", "{\"ts\":1}", "x y"])
            .prop_map(str::to_string),
        0..8,
    )
}

fn render_lines(lines: &[String], crlf: bool, final_newline: bool) -> String {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut s = lines.join(eol);
    if final_newline && !lines.is_empty() {
        s.push_str(eol);
    }
    s
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

proptest! {
    // No failure persistence: regression files would be written outside src/merge/.
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn json_identity_laws((b, x, _) in triple(), prefer in prop::sample::select(vec![Side::Local, Side::Remote])) {
        for kind in [MergeKind::Json, MergeKind::Jsonc] {
            let (bt, xt) = (b.to_string(), x.to_string());
            let m = merge(kind, Some(bt.as_bytes()), xt.as_bytes(), bt.as_bytes(), prefer).unwrap();
            prop_assert!(m.conflicts.is_empty());
            prop_assert_eq!(json_of(&m), x.clone());
            let m = merge(kind, Some(bt.as_bytes()), bt.as_bytes(), xt.as_bytes(), prefer).unwrap();
            prop_assert!(m.conflicts.is_empty());
            prop_assert_eq!(json_of(&m), x.clone());
            let m = merge(kind, Some(bt.as_bytes()), xt.as_bytes(), xt.as_bytes(), prefer).unwrap();
            prop_assert!(m.conflicts.is_empty());
            prop_assert_eq!(json_of(&m), x.clone());
        }
    }

    #[test]
    fn json_symmetric_without_conflicts((b, l, r) in triple()) {
        let (m1, c1) = merge_values(Some(&b), &l, &r, Side::Local);
        let (m2, c2) = merge_values(Some(&b), &r, &l, Side::Local);
        prop_assert_eq!(c1.len(), c2.len());
        if c1.is_empty() {
            prop_assert_eq!(&m1, &m2);
        }
        // Prefer decides conflicts consistently: swapping sides and preference gives the same value.
        let (m3, _) = merge_values(Some(&b), &r, &l, Side::Remote);
        prop_assert_eq!(m1, m3);
    }

    #[test]
    fn jsonc_keeps_comments_and_means_the_merged_value(
        (b, l, r) in triple(),
        prefer in prop::sample::select(vec![Side::Local, Side::Remote]),
    ) {
        let (bt, lt, rt) = (to_jsonc(&b), to_jsonc(&l), to_jsonc(&r));
        let m = merge(MergeKind::Jsonc, Some(bt.as_bytes()), lt.as_bytes(), rt.as_bytes(), prefer).unwrap();
        let (expected, conflicts) = merge_values(Some(&b), &l, &r, prefer);
        prop_assert_eq!(m.conflicts, conflicts);
        let out = std::str::from_utf8(&m.bytes).unwrap();
        prop_assert_eq!(json_of(&MergeOutcome { bytes: m.bytes.clone(), conflicts: vec![] }), expected.clone());
        if let (Value::Object(lm), Value::Object(em)) = (&l, &expected) {
            for k in lm.keys().filter(|k| em.contains_key(*k)) {
                let comment = format!("// about {k}\n");
                prop_assert!(out.contains(&comment), "lost {:?} in\n{}", comment, out);
            }
            for k in lm.keys().filter(|k| !em.contains_key(*k)) {
                let comment = format!("// about {k}\n");
                prop_assert!(!out.contains(&comment), "kept {:?} of a removed key in\n{}", comment, out);
            }
        }
    }

    #[test]
    fn text_laws(
        b in line_doc(), x in line_doc(),
        crlf in any::<bool>(), nl in any::<bool>(),
        prefer in prop::sample::select(vec![Side::Local, Side::Remote]),
    ) {
        let bt = render_lines(&b, false, true);
        let xt = render_lines(&x, crlf, nl);
        let m = merge(MergeKind::Text, Some(bt.as_bytes()), xt.as_bytes(), bt.as_bytes(), prefer).unwrap();
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.bytes, xt.as_bytes());
        let m = merge(MergeKind::Text, Some(bt.as_bytes()), bt.as_bytes(), xt.as_bytes(), prefer).unwrap();
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(text_lines(&m.bytes), x.clone());
        let m = merge(MergeKind::Text, Some(bt.as_bytes()), xt.as_bytes(), xt.as_bytes(), prefer).unwrap();
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.bytes, xt.as_bytes());
    }

    #[test]
    fn text_symmetric_without_conflicts(b in line_doc(), l in line_doc(), r in line_doc()) {
        let (bt, lt, rt) = (render_lines(&b, false, true), render_lines(&l, false, true), render_lines(&r, false, true));
        let m1 = merge(MergeKind::Text, Some(bt.as_bytes()), lt.as_bytes(), rt.as_bytes(), Side::Local).unwrap();
        let m2 = merge(MergeKind::Text, Some(bt.as_bytes()), rt.as_bytes(), lt.as_bytes(), Side::Local).unwrap();
        if m1.conflicts.is_empty() && m2.conflicts.is_empty() {
            prop_assert_eq!(text_lines(&m1.bytes), text_lines(&m2.bytes));
        }
        // Never any conflict markers, whatever happens.
        prop_assert!(!String::from_utf8(m1.bytes).unwrap().contains("<<<<<<<"));
    }

    #[test]
    fn jsonl_laws(b in line_doc(), l in line_doc(), r in line_doc(), crlf in any::<bool>()) {
        let bt = render_lines(&b, false, true);
        let (lt, rt) = (render_lines(&l, crlf, true), render_lines(&r, false, true));
        let m = |base: &str, x: &str, y: &str| merge(MergeKind::Jsonl, Some(base.as_bytes()), x.as_bytes(), y.as_bytes(), Side::Local).unwrap();
        prop_assert_eq!(text_lines(&m(&bt, &lt, &bt).bytes), l.clone());
        prop_assert_eq!(text_lines(&m(&bt, &bt, &lt).bytes), l.clone());
        prop_assert_eq!(text_lines(&m(&bt, &lt, &lt).bytes), l.clone());
        let one = m(&bt, &lt, &rt);
        let two = m(&bt, &rt, &lt);
        prop_assert!(one.conflicts.is_empty());
        let out = text_lines(&one.bytes);
        prop_assert_eq!(sorted(out.clone()), sorted(text_lines(&two.bytes)));
        for added in l.iter().chain(&r).filter(|x| !b.contains(x)) {
            prop_assert!(out.contains(added), "lost added line {:?}", added);
        }
        let count = |v: &[String], x: &String| v.iter().filter(|y| *y == x).count();
        for line in &b {
            let (nb, nl, nr) = (count(&b, line), count(&l, line), count(&r, line));
            if (nl == 0 && nr <= nb) || (nr == 0 && nl <= nb) {
                prop_assert!(!out.contains(line), "deleted line {:?} came back", line);
            }
        }
    }

    #[test]
    fn binary_laws(b in vec(any::<u8>(), 0..6), x in vec(any::<u8>(), 0..6), prefer in prop::sample::select(vec![Side::Local, Side::Remote])) {
        let m = merge(MergeKind::Binary, Some(&b), &x, &b, prefer).unwrap();
        prop_assert_eq!((m.bytes, m.conflicts.len()), (x.clone(), 0));
        let m = merge(MergeKind::Binary, Some(&b), &b, &x, prefer).unwrap();
        prop_assert_eq!((m.bytes, m.conflicts.len()), (x.clone(), 0));
        let m = merge(MergeKind::Binary, Some(&b), &x, &x, prefer).unwrap();
        prop_assert_eq!((m.bytes, m.conflicts.len()), (x.clone(), 0));
    }
}
