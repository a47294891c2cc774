//! Encrypted credentials end to end, driving the real `oc-sync` binary with one HOME per machine and a
//! shared folder remote: nobody who can read the remote can read the secrets.

use std::path::{Path, PathBuf};

use crate::common::{Machine, Out};

const PASS1: &str = "correct horse battery staple";
const PASS2: &str = "a completely different passphrase";

/// A machine with HOME `<root>/<name>` syncing through the folder `<root>/remote`, with `vars`.
fn machine(root: &Path, name: &str, vars: &[(&str, &str)]) -> Machine {
    let mut m = Machine::under(root, name).folder_remote(&root.join("remote")).env("OC_SYNC_KDF_ITERATIONS", "1000");
    for (k, v) in vars {
        m = m.env(k, v);
    }
    std::fs::create_dir_all(m.data_dir()).unwrap();
    m
}

/// Every byte stored under the remote folder, file by file.
fn remote_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            remote_files(&p, out);
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
}

fn b64(s: &str) -> Vec<String> {
    use base64::Engine;
    let engines = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE];
    // The secret may start at any offset of a base64 stream: check the three alignments.
    let mut out = Vec::new();
    for e in engines {
        for pad in 0..3 {
            let prefixed = format!("{}{s}", "x".repeat(pad));
            let enc = e.encode(prefixed.as_bytes());
            // Drop the characters that depend on the prefix and on what follows.
            let skip = (pad * 4).div_ceil(3);
            out.push(enc[skip..enc.len().saturating_sub(4)].trim_end_matches('=').to_string());
        }
    }
    out
}

fn assert_no_secret_in_remote(remote: &Path, secrets: &[&str]) {
    let mut files = Vec::new();
    remote_files(remote, &mut files);
    assert!(!files.is_empty());
    // The folder remote's git objects are compressed: read them through git, uncompressed.
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(remote.join("repo.git"))
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .unwrap();
    assert!(o.status.success() && o.stdout.len() > 100, "git cat-file: {}", String::from_utf8_lossy(&o.stderr));
    files.push((remote.join("repo.git (every object)"), o.stdout));
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        for s in secrets {
            assert!(!text.contains(s), "{} holds the secret in plain text", path.display());
            for enc in b64(s) {
                assert!(enc.len() < 8 || !text.contains(&enc), "{} holds the secret in base64", path.display());
            }
        }
    }
}

#[test]
fn two_machines_merge_providers_and_the_remote_never_sees_a_secret() {
    let t = tempfile::tempdir().unwrap();
    let a = machine(t.path(), "a", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    let b = machine(t.path(), "b", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    std::fs::write(a.auth(), r#"{"openai":{"type":"api","key":"sk-test-SECRET-openai-1234567890"}}"#).unwrap();
    std::fs::write(b.auth(), r#"{"anthropic":{"type":"oauth","refresh":"rt-SECRET-anthropic-0987654321","access":"at-SECRET-xyz-5555"}}"#).unwrap();
    a.sync();
    b.sync();
    a.sync();
    let (ja, jb) = (a.auth_json(), b.auth_json());
    assert_eq!(ja, jb);
    assert_eq!(ja["openai"]["key"], "sk-test-SECRET-openai-1234567890");
    assert_eq!(ja["anthropic"]["refresh"], "rt-SECRET-anthropic-0987654321");
    #[cfg(unix)]
    for m in [&a, &b] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(m.auth()).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_no_secret_in_remote(&t.path().join("remote"), &["sk-test-SECRET-openai-1234567890", "rt-SECRET-anthropic-0987654321", "at-SECRET-xyz-5555"]);
}

#[test]
fn without_a_passphrase_credentials_never_leave_the_machine() {
    let t = tempfile::tempdir().unwrap();
    let a = machine(t.path(), "a", &[]);
    std::fs::write(a.auth(), r#"{"openai":{"key":"sk-test-SECRET-nopass-1111111111"}}"#).unwrap();
    std::fs::create_dir_all(a.home.join(".config/opencode")).unwrap();
    std::fs::write(a.home.join(".config/opencode/AGENTS.md"), "x\n").unwrap();
    a.sync();
    assert_no_secret_in_remote(&t.path().join("remote"), &["sk-test-SECRET-nopass-1111111111"]);
    let Out { out, .. } = a.run(&["status"]);
    assert!(out.contains("not synced credentials: no passphrase"), "{out}");
    let Out { code, err, .. } = a.run(&["rekey"]);
    assert_eq!(code, 1);
    assert!(err.contains("no passphrase"), "{err}");
}

#[test]
fn a_wrong_passphrase_is_a_clear_error_and_overwrites_nothing() {
    let t = tempfile::tempdir().unwrap();
    let a = machine(t.path(), "a", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    let b = machine(t.path(), "b", &[("OC_SYNC_PASSPHRASE", PASS2)]);
    std::fs::write(a.auth(), r#"{"openai":{"key":"sk-A"}}"#).unwrap();
    a.sync();
    std::fs::write(b.auth(), r#"{"openai":{"key":"sk-B-local"}}"#).unwrap();
    let Out { code, out, err } = b.run(&["sync"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("the passphrase on this machine does not match the one that encrypted the remote credentials"), "{err}");
    assert_eq!(std::fs::read_to_string(b.auth()).unwrap(), r#"{"openai":{"key":"sk-B-local"}}"#);
}

#[test]
fn passphrase_rotation_with_old_key_and_rekey() {
    let t = tempfile::tempdir().unwrap();
    let a = machine(t.path(), "a", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    let b = machine(t.path(), "b", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    std::fs::write(a.auth(), r#"{"openai":{"key":"sk-rotate"}}"#).unwrap();
    a.sync();
    b.sync();
    // Both machines move to PASS2, keeping PASS1 as the old key; A re-encrypts everything.
    let cfg = |m: &Machine| {
        std::fs::create_dir_all(m.home.join(".config/opencode")).unwrap();
        std::fs::write(
            m.home.join(".config/opencode/opencode-sync.json"),
            format!(r#"{{ "encryptionKey": "{PASS2}", "oldEncryptionKey": "{PASS1}" }}"#),
        )
        .unwrap();
    };
    let a = a.without_env("OC_SYNC_PASSPHRASE");
    cfg(&a);
    let Out { code, out, err } = a.run(&["rekey"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("push 1: credentials/auth.json"), "{out}");
    // A new machine that only knows PASS2 can read everything.
    let c = machine(t.path(), "c", &[("OC_SYNC_PASSPHRASE", PASS2)]);
    c.sync();
    assert_eq!(c.auth_json()["openai"]["key"], "sk-rotate");
    // B, still on PASS1 only, is told clearly.
    let Out { code, err, .. } = b.run(&["sync"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn a_ciphertext_moved_onto_another_item_is_refused() {
    use crate::common::lib::{Changes, LocalRemote, Remote};
    let t = tempfile::tempdir().unwrap();
    let a = machine(t.path(), "a", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    std::fs::write(a.auth(), r#"{"openai":{"key":"sk-moved"}}"#).unwrap();
    std::fs::write(a.home.join(".local/share/opencode/mcp-auth.json"), r#"{"srv":{"token":"t-original"}}"#).unwrap();
    a.sync();
    // Someone with write access to the remote puts auth.json's ciphertext under mcp-auth.json.
    let remote = LocalRemote::open(t.path().join("remote")).unwrap();
    let head = remote.head().unwrap().unwrap();
    let manifest = remote.manifest(&head).unwrap();
    let mut moved = manifest.entries["credentials/auth.json"].clone();
    moved.clock = manifest.entries["credentials/mcp-auth.json"].clock.clone();
    moved.clock.bump("mallory");
    let mut changes = Changes { message: "swap".into(), ..Default::default() };
    changes.entries.insert("credentials/mcp-auth.json".into(), moved);
    remote.commit(Some(&head), changes).unwrap();
    let b = machine(t.path(), "b", &[("OC_SYNC_PASSPHRASE", PASS1)]);
    let Out { code, err, .. } = b.run(&["sync"]);
    assert_eq!(code, 1);
    assert!(err.contains("credentials/mcp-auth.json"), "{err}");
    assert!(!b.home.join(".local/share/opencode/mcp-auth.json").exists(), "nothing written");
}
