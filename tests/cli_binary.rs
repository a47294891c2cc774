//! Drives the real `oc-sync` binary as a person would, in a temporary HOME.

use std::process::Command;

fn oc_sync(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oc-sync"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run oc-sync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_follow_the_contract() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(oc_sync(home.path(), &["--version"]).0, 0);
    assert_eq!(oc_sync(home.path(), &["status"]).0, 0);
    assert_eq!(oc_sync(home.path(), &["bogus"]).0, 2);
    assert_eq!(oc_sync(home.path(), &["paths", "--nope"]).0, 2);
    std::fs::create_dir_all(home.path().join(".config/opencode")).unwrap();
    std::fs::write(home.path().join(".config/opencode/opencode-sync.json"), "{ nope").unwrap();
    let (code, out, _) = oc_sync(home.path(), &["status"]);
    assert_eq!(code, 1);
    assert!(out.contains("invalid JSON at line 1"), "{out}");
}

#[test]
fn status_json_on_fresh_machine_is_valid_json() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = oc_sync(home.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["nextSteps"].as_array().unwrap().len() >= 2);
}
