//! Drives the real `oc-sync` binary as a person would, in a temporary HOME.

use crate::common::{Machine, Out};

#[test]
fn exit_codes_follow_the_contract() {
    let m = Machine::new("m");
    assert_eq!(m.run(&["--version"]).code, 0);
    assert_eq!(m.run(&["status"]).code, 0);
    assert_eq!(m.run(&["bogus"]).code, 2);
    assert_eq!(m.run(&["paths", "--nope"]).code, 2);
    std::fs::create_dir_all(m.home.join(".config/opencode")).unwrap();
    std::fs::write(m.home.join(".config/opencode/opencode-sync.json"), "{ nope").unwrap();
    let Out { code, out, .. } = m.run(&["status"]);
    assert_eq!(code, 1);
    assert!(out.contains("invalid JSON at line 1"), "{out}");
}

#[test]
fn status_json_on_fresh_machine_is_valid_json() {
    let m = Machine::new("m");
    let Out { code, out, err } = m.run(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["nextSteps"].as_array().unwrap().len() >= 2);
}
