use super::*;
use proptest::prelude::*;
use serde_json::json;

fn ov(v: Value) -> Overrides {
    match v {
        Value::Object(m) => Overrides::from_map(m),
        _ => panic!("overrides must be an object"),
    }
}

fn value(bytes: &[u8]) -> Value {
    crate::jsonc::parse(std::str::from_utf8(bytes).unwrap())
        .unwrap()
        .unwrap_or_else(|| json!({}))
}

fn s(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

const SHARED: &str = r#"{
  // shared model
  "model": "anthropic/claude",
  "provider": {
    // cloud
    "anthropic": { "options": { "timeout": 5 } }
  },
  "theme": "dark" // theme comment
}
"#;

fn machine_overrides() -> Overrides {
    ov(json!({
        "model": "ollama/llama3",
        "provider": { "ollama": { "options": { "baseURL": "http://localhost:11434" } } }
    }))
}

#[test]
fn to_local_sets_values_creates_paths_and_keeps_comments() {
    let o = machine_overrides();
    let out = s(o.to_local(SHARED.as_bytes()).unwrap());
    assert_eq!(
        value(out.as_bytes()),
        json!({
            "model": "ollama/llama3",
            "provider": {
                "anthropic": { "options": { "timeout": 5 } },
                "ollama": { "options": { "baseURL": "http://localhost:11434" } }
            },
            "theme": "dark"
        })
    );
    for c in ["// shared model", "// cloud", "// theme comment"] {
        assert!(out.contains(c), "lost {c:?}:\n{out}");
    }
}

#[test]
fn to_shared_restores_shared_values_and_keeps_local_comments() {
    let o = machine_overrides();
    let local = r#"{
  // my machine
  "model": "ollama/llama3", // local model
  "provider": {
    "anthropic": { "options": { "timeout": 9 } }, // a real local edit
    "ollama": { "options": { "baseURL": "http://localhost:11434" } }
  },
  "theme": "light"
}
"#;
    let out = s(o
        .to_shared(local.as_bytes(), Some(SHARED.as_bytes()))
        .unwrap());
    assert_eq!(
        value(out.as_bytes()),
        json!({
            "model": "anthropic/claude",
            "provider": { "anthropic": { "options": { "timeout": 9 } } },
            "theme": "light"
        })
    );
    for c in ["// my machine", "// local model", "// a real local edit"] {
        assert!(out.contains(c), "lost {c:?}:\n{out}");
    }
    assert!(!out.contains("ollama"), "{out}");
}

#[test]
fn nested_override_keeps_shared_siblings() {
    let o = ov(json!({"provider": {"openai": {"options": {"baseURL": "http://proxy"}}}}));
    let shared = r#"{"provider": {"openai": {"options": {"baseURL": "https://api", "apiKey": "{env:K}"}, "models": {}}}}"#;
    let local = s(o.to_local(shared.as_bytes()).unwrap());
    assert_eq!(
        value(local.as_bytes()),
        json!({"provider": {"openai": {"options": {"baseURL": "http://proxy", "apiKey": "{env:K}"}, "models": {}}}})
    );
    let back = o
        .to_shared(local.as_bytes(), Some(shared.as_bytes()))
        .unwrap();
    assert_eq!(value(&back), value(shared.as_bytes()));
}

#[test]
fn shared_lacking_a_key_removes_it() {
    let o = ov(json!({"model": "local/m", "small_model": "x"}));
    let shared = r#"{ "model": "shared/m" }"#;
    let local =
        "{\n  // c\n  \"model\": \"local/m\",\n  \"small_model\": \"x\",\n  \"theme\": \"t\"\n}\n";
    let out = s(o
        .to_shared(local.as_bytes(), Some(shared.as_bytes()))
        .unwrap());
    assert_eq!(
        value(out.as_bytes()),
        json!({"model": "shared/m", "theme": "t"})
    );
    assert!(out.contains("// c"));
}

#[test]
fn never_synced_shared_removes_every_overridden_key() {
    let o = machine_overrides();
    let local = r#"{
  "model": "ollama/llama3",
  "provider": { "ollama": { "options": { "baseURL": "http://localhost:11434" } } },
  // keep
  "theme": "dark"
}"#;
    let out = s(o.to_shared(local.as_bytes(), None).unwrap());
    assert_eq!(value(out.as_bytes()), json!({"theme": "dark"}));
    assert!(out.contains("// keep"), "{out}");
    // Local without the overridden keys at all: nothing to do.
    let plain = "{ \"theme\": \"dark\" } // x\n";
    assert_eq!(
        o.to_shared(plain.as_bytes(), None).unwrap(),
        plain.as_bytes()
    );
}

#[test]
fn shared_non_object_replaced_locally_is_given_back() {
    let o = ov(json!({"provider": {"ollama": {"model": "m"}}}));
    let shared = r#"{"provider": "none", "a": 1}"#;
    let local = o.to_local(shared.as_bytes()).unwrap();
    assert_eq!(
        value(&local),
        json!({"provider": {"ollama": {"model": "m"}}, "a": 1})
    );
    let back = o.to_shared(&local, Some(shared.as_bytes())).unwrap();
    assert_eq!(value(&back), value(shared.as_bytes()));
}

#[test]
fn local_missing_overridden_key_gets_shared_value() {
    // The overridden value is not this machine's to change in the shared config.
    let o = ov(json!({"model": "local/m"}));
    let out = o
        .to_shared(b"{\"theme\": \"t\"}", Some(b"{\"model\": \"s\"}"))
        .unwrap();
    assert_eq!(value(&out), json!({"theme": "t", "model": "s"}));
}

#[test]
fn empty_texts_and_empty_overrides() {
    let o = machine_overrides();
    let out = o.to_local(b"").unwrap();
    assert_eq!(
        value(&out),
        json!({"model": "ollama/llama3", "provider": {"ollama": {"options": {"baseURL": "http://localhost:11434"}}}})
    );
    let back = o.to_shared(&out, Some(b"")).unwrap();
    assert_eq!(value(&back), json!({}));
    let none = ov(json!({"provider": {}}));
    assert!(none.is_empty());
    assert_eq!(none.to_local(SHARED.as_bytes()).unwrap(), SHARED.as_bytes());
    assert_eq!(
        none.to_shared(SHARED.as_bytes(), None).unwrap(),
        SHARED.as_bytes()
    );
}

#[test]
fn leaf_paths_and_is_empty() {
    let o = ov(json!({"model": "m", "provider": {"a/b": {"x~": [1]}, "e": {}}, "n": null}));
    assert!(!o.is_empty());
    assert_eq!(o.leaf_paths(), vec!["/model", "/provider/a~1b/x~0", "/n"]);
}

#[test]
fn invalid_config_text_is_an_error() {
    let o = machine_overrides();
    let e = o.to_local(b"{\"a\": 1 \"b\": 2}").unwrap_err();
    assert!(
        matches!(
            e,
            OverridesError::Config {
                which: "shared",
                ..
            }
        ),
        "{e}"
    );
    let e = o.to_shared(b"[1]", None).unwrap_err();
    assert!(e.to_string().contains("local config"), "{e}");
    assert!(o.to_shared(b"{}", Some(b"{,}")).is_err());
}

#[test]
fn load_missing_empty_valid_and_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(Overrides::load(dir).unwrap().is_none());
    let path = dir.join(Overrides::FILE_NAME);
    std::fs::write(&path, "// nothing yet\n").unwrap();
    assert!(Overrides::load(dir).unwrap().unwrap().is_empty());
    std::fs::write(&path, "{\n  // mine\n  \"model\": \"ollama/llama3\",\n}\n").unwrap();
    let o = Overrides::load(dir).unwrap().unwrap();
    assert_eq!(o.value().get("model"), Some(&json!("ollama/llama3")));

    std::fs::write(&path, "{\n  \"model\": \"a\"\n  \"theme\": \"b\"\n}\n").unwrap();
    let e = Overrides::load(dir).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, OverridesError::Invalid { line: 3, .. }),
        "{msg}"
    );
    assert!(msg.contains(Overrides::FILE_NAME), "{msg}");
    assert!(msg.contains("line 3, column"), "{msg}");
    assert!(
        msg.contains("Fix the file") && msg.contains("delete it"),
        "{msg}"
    );

    std::fs::write(&path, "[\"model\"]").unwrap();
    let e = Overrides::load(dir).unwrap_err();
    assert!(matches!(e, OverridesError::NotObject { .. }), "{e}");
    assert!(e.to_string().contains(Overrides::FILE_NAME));

    std::fs::write(&path, b"{\n \"a\": \"\xff\"}").unwrap();
    let e = Overrides::load(dir).unwrap_err();
    assert!(matches!(e, OverridesError::Invalid { line: 2, .. }), "{e}");
}

#[test]
fn target_key_prefers_existing_jsonc() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(Overrides::target_key(tmp.path()), "config/opencode.json");
    std::fs::write(tmp.path().join("opencode.json"), "{}").unwrap();
    assert_eq!(Overrides::target_key(tmp.path()), "config/opencode.json");
    std::fs::write(tmp.path().join("opencode.jsonc"), "{}").unwrap();
    assert_eq!(Overrides::target_key(tmp.path()), "config/opencode.jsonc");
}

// --- property tests ---

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
        prop::collection::vec((0i64..3).prop_map(|n| json!(n)), 0..2).prop_map(Value::Array),
    ]
}

fn keys() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string)
}

fn arb_value(depth: u32) -> BoxedStrategy<Value> {
    if depth == 0 {
        return arb_leaf().boxed();
    }
    prop_oneof![
        arb_leaf(),
        prop::collection::vec((keys(), arb_value(depth - 1)), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ]
    .boxed()
}

fn arb_object(depth: u32) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((keys(), arb_value(depth)), 0..4).prop_map(|kv| kv.into_iter().collect())
}

/// Renders a value as JSONC with a comment on each property, so the CST path is exercised.
fn commented(v: &Value) -> String {
    fn go(v: &Value, out: &mut String, indent: usize) {
        match v {
            Value::Object(m) => {
                out.push_str("{\n");
                for (k, v) in m {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str("// about ");
                    out.push_str(k);
                    out.push('\n');
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(": ");
                    go(v, out, indent + 2);
                    out.push_str(",\n");
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, &mut out, 0);
    out.push('\n');
    out
}

/// True when `l` has every override leaf value at its path.
fn has_override_values(l: &Map<String, Value>, o: &Map<String, Value>) -> bool {
    o.iter().all(|(k, ov)| match ov {
        Value::Object(oo) => {
            !has_leaves(oo)
                || l.get(k)
                    .and_then(Value::as_object)
                    .is_some_and(|lk| has_override_values(lk, oo))
        }
        leaf => l.get(k) == Some(leaf),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn shared_round_trip(shared in arb_object(3), o in arb_object(3)) {
        let o = Overrides::from_map(o);
        let s_text = commented(&Value::Object(shared.clone()));
        let local = o.to_local(s_text.as_bytes()).unwrap();
        let back = o.to_shared(&local, Some(s_text.as_bytes())).unwrap();
        // Comments of keys the overrides do not touch survive (no fallback to plain JSON).
        for k in shared.keys().filter(|k| !o.value().contains_key(*k)) {
            let c = format!("\n  // about {k}\n");
            prop_assert!(String::from_utf8_lossy(&local).contains(&c), "lost {:?} in {}", c, String::from_utf8_lossy(&local));
            prop_assert!(String::from_utf8_lossy(&back).contains(&c), "lost {:?} in {}", c, String::from_utf8_lossy(&back));
        }
        prop_assert_eq!(value(&back), Value::Object(shared));
    }

    #[test]
    fn local_round_trip(local in arb_object(3), shared in arb_object(3), o in arb_object(3)) {
        let o = Overrides::from_map(o);
        // Make the local side already carry the override values.
        let mut local = local;
        apply(&mut local, o.value());
        prop_assume!(has_override_values(&local, o.value()));
        let l_text = commented(&Value::Object(local.clone()));
        let s_text = commented(&Value::Object(shared));
        let pushed = o.to_shared(l_text.as_bytes(), Some(s_text.as_bytes())).unwrap();
        let again = o.to_local(&pushed).unwrap();
        prop_assert_eq!(value(&again), Value::Object(local.clone()));
        // Never synced too.
        let pushed = o.to_shared(l_text.as_bytes(), None).unwrap();
        let again = o.to_local(&pushed).unwrap();
        prop_assert_eq!(value(&again), Value::Object(local));
    }

    #[test]
    fn pushed_text_never_carries_override_values_absent_from_shared(shared in arb_object(2), o in arb_object(2)) {
        let o = Overrides::from_map(o);
        let s_text = serde_json::to_string(&Value::Object(shared.clone())).unwrap();
        let local = o.to_local(s_text.as_bytes()).unwrap();
        let pushed = value(&o.to_shared(&local, None).unwrap());
        // Every overridden leaf is gone from what is pushed when nothing was ever synced.
        for p in o.leaf_paths() {
            prop_assert!(pushed.pointer(&p).is_none(), "{} still in {}", p, pushed);
        }
    }
}
